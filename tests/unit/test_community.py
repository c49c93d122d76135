"""Splitting a community asset's earnings pro rata, and its settlement periods."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityshare.community.model import (
    NANOSECONDS,
    SettlementPeriod,
    boundaries,
    is_boundary,
    next_boundary,
    period_start,
    split_pro_rata,
)

amounts = st.integers(min_value=0, max_value=2**63 - 1)
holdings = st.dictionaries(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**12),
    max_size=40,
)
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")


def ns(year: int, month: int, day: int, zone: zoneinfo.ZoneInfo = KOLKATA) -> int:
    return int(dt.datetime(year, month, day, tzinfo=zone).timestamp()) * NANOSECONDS


# -- the split -------------------------------------------------------------------------------


def test_one_two_four_splits_seven_units_exactly() -> None:
    assert split_pro_rata(7_000, {1: 1, 2: 2, 3: 4}) == {1: 1_000, 2: 2_000, 3: 4_000}


def test_leftover_units_go_to_the_largest_remainders() -> None:
    # 10 * 1/7 = 1.43, 10 * 2/7 = 2.86, 10 * 4/7 = 5.71: floors 1, 2, 5 leave 2 units, which
    # go to the remainders .86 and .71 (not .43).
    assert split_pro_rata(10, {1: 1, 2: 2, 3: 4}) == {1: 1, 2: 3, 3: 6}


def test_equal_remainders_go_to_the_lower_resident_id() -> None:
    assert split_pro_rata(2, {30: 1, 10: 1, 20: 1}) == {10: 1, 20: 1, 30: 0}


def test_no_holders_or_nothing_to_split_gives_nothing() -> None:
    assert split_pro_rata(500, {}) == {}
    assert split_pro_rata(500, {1: 0}) == {}
    assert split_pro_rata(0, {1: 3, 2: 1}) == {1: 0, 2: 0}


def test_negative_amounts_and_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="amount"):
        split_pro_rata(-1, {1: 1})
    with pytest.raises(ValueError, match="share counts"):
        split_pro_rata(1, {1: -1})


@given(amounts, holdings)
def test_the_split_adds_up_to_the_amount_exactly(amount: int, held: dict[int, int]) -> None:
    split = split_pro_rata(amount, held)
    if held:
        assert sum(split.values()) == amount
        assert set(split) == set(held)
    else:
        assert split == {}


@given(amounts, holdings)
def test_nobody_gets_a_unit_more_than_their_exact_share_or_less_than_its_floor(
    amount: int, held: dict[int, int]
) -> None:
    total = sum(held.values())
    for resident, paid in split_pro_rata(amount, held).items():
        exact = Fraction(amount * held[resident], total)
        assert exact - 1 < paid <= exact + 1
        assert paid in (exact.__floor__(), exact.__floor__() + 1)


@given(amounts, holdings, st.randoms())
def test_the_split_is_deterministic_and_independent_of_order(
    amount: int, held: dict[int, int], rng: random.Random
) -> None:
    items = list(held.items())
    rng.shuffle(items)
    assert split_pro_rata(amount, dict(items)) == split_pro_rata(amount, held)


@given(st.integers(min_value=0, max_value=10**9), holdings)
def test_more_shares_never_get_less(amount: int, held: dict[int, int]) -> None:
    split = split_pro_rata(amount, held)
    for a in held:
        for b in held:
            if held[a] > held[b]:
                assert split[a] >= split[b]


# -- settlement periods ----------------------------------------------------------------------


def test_monthly_periods_end_at_local_midnight_on_the_first() -> None:
    mid_march = ns(2026, 3, 15) + 13 * 3600 * NANOSECONDS
    assert period_start(mid_march, KOLKATA, SettlementPeriod.MONTHLY) == ns(2026, 3, 1)
    assert next_boundary(mid_march, KOLKATA, SettlementPeriod.MONTHLY) == ns(2026, 4, 1)
    assert next_boundary(ns(2026, 12, 1), KOLKATA, SettlementPeriod.MONTHLY) == ns(2027, 1, 1)
    # Local midnight in India is 18:30 UTC the day before.
    assert dt.datetime.fromtimestamp(ns(2026, 4, 1) // NANOSECONDS, dt.UTC).hour == 18


def test_daily_periods_and_boundaries() -> None:
    assert is_boundary(ns(2026, 3, 2), KOLKATA, SettlementPeriod.DAILY)
    assert not is_boundary(ns(2026, 3, 2), KOLKATA, SettlementPeriod.MONTHLY)
    assert not is_boundary(ns(2026, 3, 2) + 1, KOLKATA, SettlementPeriod.DAILY)
    assert boundaries(
        ns(2026, 3, 1) + 1, ns(2026, 3, 4), KOLKATA, SettlementPeriod.DAILY, limit=10
    ) == [ns(2026, 3, 2), ns(2026, 3, 3), ns(2026, 3, 4)]
    assert boundaries(ns(2026, 3, 1), ns(2026, 3, 4), KOLKATA, SettlementPeriod.DAILY, limit=2) == [
        ns(2026, 3, 3),
        ns(2026, 3, 4),
    ]


def test_a_daylight_saving_day_is_still_one_period() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # 29 March 2026: clocks go forward, the day has 23 hours.
    day = ns(2026, 3, 29, berlin)
    assert next_boundary(day, berlin, SettlementPeriod.DAILY) == ns(2026, 3, 30, berlin)
    assert ns(2026, 3, 30, berlin) - day == 23 * 3600 * NANOSECONDS
