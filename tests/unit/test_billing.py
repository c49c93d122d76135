"""Billing arithmetic and price lists (pure): whole paise with the remainder carried, so no
paisa is ever lost or invented; price lists hold per-kWh prices and nothing else."""

from __future__ import annotations

import zoneinfo
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityshare.billing.model import (
    MAX_PAISE_PER_KWH,
    BillingError,
    Choices,
    PriceBook,
    PriceVersion,
    charge,
    month_of,
    parse_price_list,
    plan_payments,
    price_windows,
    window_price,
)
from cityshare.billing.records import BILL_FIELDS, bill_entry
from cityshare.tlog.entries import encode_record

WINDOWS = price_windows(["solar", "peak"])
NOW = 1_800_000_000
PRICES = {"normal": 650, "solar": 480, "peak": 790}


def bill_all(intervals: list[tuple[int, int]], carry: int = 0) -> tuple[int, int]:
    """Bill (Wh, paise per kWh) intervals in order: (paise charged, carry after)."""
    total = 0
    for wh, price in intervals:
        amount, carry = charge(wh, price, carry)
        total += amount
    return total, carry


@given(st.lists(st.integers(0, 5_000), max_size=200), st.integers(0, MAX_PAISE_PER_KWH))
def test_billing_many_small_intervals_equals_billing_their_sum(whs: list[int], price: int) -> None:
    small = bill_all([(wh, price) for wh in whs])
    assert small == charge(sum(whs), price, 0)


@given(
    st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, MAX_PAISE_PER_KWH)), max_size=200),
    st.integers(0, 999),
)
def test_no_paisa_is_lost_or_invented_across_windows(
    intervals: list[tuple[int, int]], carry: int
) -> None:
    charged, left = bill_all(intervals, carry)
    exact = sum(wh * price for wh, price in intervals) + carry  # thousandths of a paisa
    assert charged * 1000 + left == exact
    assert 0 <= left < 1000
    assert charged == exact // 1000


def test_the_carry_is_a_remainder_in_thousandths_of_a_paisa() -> None:
    assert charge(1234, 600, 0) == (740, 400)
    assert charge(1, 600, 400) == (1, 0)
    assert charge(0, 600, 999) == (0, 999)
    for bad in ((-1, 600, 0), (1, -600, 0), (1, 600, 1000), (1, 600, -1)):
        with pytest.raises(ValueError, match="non-negative"):
            charge(*bad)


@given(st.integers(0, 10_000), st.lists(st.integers(1, 3_000), max_size=30))
def test_payments_go_oldest_first_and_never_overdraw(available: int, amounts: list[int]) -> None:
    due = list(enumerate(amounts, start=1))
    paid, unpaid = plan_payments(available, due)
    assert paid + unpaid == due  # every bill is either paid or waits, in order
    assert sum(a for _, a in paid) <= available
    if unpaid:  # the first bill left is one the rest of the money could not cover
        assert unpaid[0][1] > available - sum(a for _, a in paid)


def test_a_price_list_holds_a_per_kwh_price_for_every_window() -> None:
    assert WINDOWS == ("normal", "peak", "solar")
    prices, effective = parse_price_list({"prices": PRICES}, WINDOWS, now_s=NOW)
    assert prices == {"normal": 650, "peak": 790, "solar": 480}
    assert effective == NOW
    later = parse_price_list({"prices": PRICES, "effective_from": NOW + 60}, WINDOWS, now_s=NOW)
    assert later[1] == NOW + 60
    assert window_price(prices, "peak") == 790
    assert window_price(prices, "shoulder") == 650  # a window added to the tariff later


@pytest.mark.parametrize(
    ("document", "code", "says"),
    [
        ({"prices": {**PRICES, "peak": -1}}, "invalid_price", "prices.peak"),
        ({"prices": {**PRICES, "peak": 7.9}}, "invalid_price", "integers only"),
        ({"prices": {**PRICES, "peak": True}}, "invalid_price", "prices.peak"),
        ({"prices": {**PRICES, "peak": MAX_PAISE_PER_KWH + 1}}, "invalid_price", "between"),
        ({"prices": PRICES, "fixed_charge": 100}, "fixed_charge", "no fixed"),
        ({"prices": PRICES, "subscription": 100}, "fixed_charge", "subscription"),
        ({"prices": {**PRICES, "monthly_minimum": 100}}, "fixed_charge", "no fixed"),
        ({"prices": {**PRICES, "night": 100}}, "unknown_window", "normal, peak, solar"),
        ({"prices": {"normal": 650}}, "missing_window", "peak, solar"),
        ({"prices": PRICES, "currency": "INR"}, "invalid_price_list", "unknown field"),
        ({"prices": PRICES, "effective_from": NOW - 1}, "retroactive_price", "never in the past"),
        ({"prices": PRICES, "effective_from": 1.5e9}, "invalid_effective_from", "unix seconds"),
        ({"prices": PRICES, "effective_from": NOW + 10**9}, "invalid_effective_from", "ahead"),
        ({"prices": [650]}, "invalid_price_list", "prices"),
        ("650", "invalid_price_list", "JSON object"),
    ],
    ids=[
        "negative", "float", "bool", "too_high", "fixed_field", "subscription_field",
        "fixed_window", "unknown_window", "missing_window", "unknown_field", "past", "float_time",
        "far_future", "prices_not_object", "not_object",
    ],
)  # fmt: skip
def test_a_bad_price_list_is_refused_with_its_reason(document: Any, code: str, says: str) -> None:
    with pytest.raises(BillingError) as refused:
        parse_price_list(document, WINDOWS, now_s=NOW)
    assert refused.value.code == code
    assert says in str(refused.value)


def test_the_price_in_force_is_the_latest_to_take_effect() -> None:
    book = PriceBook(
        [
            PriceVersion(1, 7, 100, {"normal": 1}),
            PriceVersion(2, 7, 200, {"normal": 2}),
            PriceVersion(3, 7, 200, {"normal": 3}),  # same instant, set later: wins
            PriceVersion(4, 8, 150, {"normal": 4}),
        ]
    )
    assert book.at(7, 99) is None
    assert [book.at(7, t).id for t in (100, 199, 200, 10**9)] == [1, 1, 3, 3]  # type: ignore[union-attr]
    assert book.at(8, 149) is None
    assert book.at(9, 500) is None
    assert [v.id for v in book.upcoming(7, 150)] == [2, 3]


def test_the_provider_chosen_at_an_instant() -> None:
    choices = Choices([(1, 70, 100, 1), (1, 80, 200, 2), (1, 90, 200, 3), (2, 70, 50, 4)])
    assert [choices.at(1, t) for t in (99, 100, 199, 200)] == [None, 70, 70, 90]
    assert choices.at(2, 60) == 70
    assert choices.at(3, 60) is None


def test_a_month_is_local_midnight_to_local_midnight() -> None:
    zone = zoneinfo.ZoneInfo("Asia/Kolkata")
    nov = month_of("2026-11", zone)
    assert (nov.name, nov.end_s - nov.start_s) == ("2026-11", 30 * 86400)
    assert nov.start_s == 1_793_471_400  # 2026-10-31T18:30:00Z
    assert month_of("2026-12", zone).end_s == month_of("2027-01", zone).start_s
    assert month_of("2261-12", zone).end_s * 10**9 < 2**63  # the last month ledger time holds
    for bad in ("2026-13", "2026-1", "26-11", "1969-12", "2026-11-01", "2262-05", "9999-12"):
        with pytest.raises(BillingError):
            month_of(bad, zone)


@given(
    st.tuples(*(st.integers(0, 2**63 - 1) for _ in range(4))),
    st.text(max_size=32),
    st.tuples(*(st.integers(0, 2**63 - 1) for _ in range(7))),
)
def test_a_bill_is_logged_exactly_as_the_reference_encoding(
    head: tuple[int, ...], tod: str, tail: tuple[int, ...]
) -> None:
    row = (*head, tod, *tail)
    assert bill_entry(row) == encode_record("energy_bill", dict(zip(BILL_FIELDS, row, strict=True)))  # type: ignore[arg-type]
