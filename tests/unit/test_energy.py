"""Energy rules (energy/chain.py, energy/tariff.py): tariffs as data, integer credits with
carried remainders, every anomaly, resets, and a chain that credits the same whatever order
readings arrive in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cityshare.energy.chain import (
    ChainState,
    Device,
    Reading,
    Step,
    advance,
    rescale_carries,
)
from cityshare.energy.model import BASELINE, OK, Anomaly
from cityshare.energy.tariff import (
    NORMAL,
    Tariff,
    TariffError,
    load_tariff,
    tariff_from_data,
    tariff_from_json,
)

TARIFF = load_tariff()
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
#: 2026-01-15 00:00 in India, in unix seconds.
MIDNIGHT = int(dt.datetime(2026, 1, 15, tzinfo=IST).timestamp())
NOW_NS = (MIDNIGHT + 2 * 86400) * 10**9
METER = Device("meter", (MIDNIGHT - 86400) * 10**9)
CHARGER = Device("charger", (MIDNIGHT - 86400) * 10**9)


def at(hh: int, mm: int = 0, ss: int = 0) -> int:
    return MIDNIGHT + hh * 3600 + mm * 60 + ss


def reading(
    seq: int, ts: int, imported: int = 0, exported: int = 0, *, now: int = NOW_NS
) -> Reading:
    return Reading(seq, ts, imported, exported, now)


def run(
    readings: list[Reading],
    device: Device = METER,
    tariff: Tariff = TARIFF,
    state: ChainState | None = None,
    now: int = NOW_NS,
) -> list[Step]:
    """Feed readings one at a time, as separate batches at `now`, and return every step."""
    steps: list[Step] = []
    waiting: dict[int, Reading] = {}
    for r in readings:
        if state is not None and state.base_seq <= r.seq <= state.top_seq:
            continue  # inside the chain: fills the profile only
        if r.seq in waiting:
            continue  # a duplicate (the service drops these before the chain sees them)
        waiting[r.seq] = r
        taken = advance(state, waiting, device, tariff, 1, now=now)
        if taken:
            state = taken[-1].state
        steps += taken
    return steps


def credited(steps: list[Step]) -> tuple[int, int, int, int]:
    ok = [s for s in steps if s.status == OK]
    return (
        sum(s.import_wh for s in ok),
        sum(s.export_wh for s in ok),
        sum(s.carbon_g for s in ok),
        sum(s.credit_milli for s in ok),
    )


# -- the tariff shipped in the package -------------------------------------------------------


def test_the_default_tariff_is_data_with_its_sources_named() -> None:
    assert TARIFF.timezone == "Asia/Kolkata"
    factor = TARIFF.carbon_factor("meter")
    assert factor.g_per_wh == Fraction(861, 1000)  # 0.861 tCO2/MWh
    assert "CO2 Baseline Database" in factor.reference
    assert "version 20" in factor.reference
    assert "combined margin" in factor.reference
    assert "Rights of Consumers) Amendment Rules, 2023" in TARIFF.credit_reference
    windows = {w.name: w for w in TARIFF.windows}
    assert (windows["solar"].start, windows["solar"].end) == (9 * 60, 17 * 60)  # 8 hours
    assert windows["solar"].multiplier <= Fraction(8, 10)  # at least 20% cheaper
    assert (windows["peak"].start, windows["peak"].end) == (18 * 60, 22 * 60)
    assert windows["peak"].multiplier >= Fraction(11, 10)  # at least 10-20% dearer
    assert windows["peak"].peak
    assert TARIFF.max_power_w == {"meter": 100_000, "charger": 350_000}


def test_a_tariff_round_trips_through_its_logged_json() -> None:
    again = tariff_from_json(TARIFF.canonical_json())
    assert again == TARIFF
    assert again.digest == TARIFF.digest
    assert len(TARIFF.digest) == 64


@pytest.mark.parametrize(
    ("ts", "window"),
    [
        (at(0), "normal"),
        (at(8, 59, 59), "normal"),
        (at(9), "solar"),
        (at(16, 59, 59), "solar"),
        (at(17), "normal"),
        (at(17, 59, 59), "normal"),
        (at(18), "peak"),
        (at(21, 59, 59), "peak"),
        (at(22), "normal"),
        (at(23, 59, 59), "normal"),
    ],
)
def test_windows_are_half_open_in_local_time(ts: int, window: str) -> None:
    assert TARIFF.window_at(ts).name == window


def test_windows_follow_india_time_not_utc() -> None:
    nine_ist = at(9)
    assert dt.datetime.fromtimestamp(nine_ist, dt.UTC).strftime("%H:%M") == "03:30"
    assert TARIFF.window_at(nine_ist).name == "solar"
    utc_tariff = tariff_from_data({**TARIFF.as_data(), "timezone": "UTC"})
    assert utc_tariff.window_at(nine_ist).name == "normal"  # 03:30 UTC
    assert utc_tariff.window_at(nine_ist + 5 * 3600 + 1800).name == "solar"


def test_points_per_wh_by_window() -> None:
    rates = {w.name: TARIFF.points_rate(w) for w in (NORMAL, *TARIFF.windows)}
    assert rates == {"normal": 1, "solar": Fraction(4, 5), "peak": Fraction(9, 5)}  # 1.2 * 1.5
    assert TARIFF.credit_denominator == 5


def _data(**changes: object) -> dict[str, object]:
    data = TARIFF.as_data()
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"credit__points_per_kwh": 1.0}, "decimal as a string"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"rules__max_power_w": {"meter": 100}}, "no limit for a charger"),
        ({"carbon__source_by_device_kind": {"meter": "solar"}}, "no carbon factor"),
        (
            {
                "credit__windows": [
                    {"name": "a", "start": "10:00", "end": "09:00", "multiplier": "1"}
                ]
            },
            "start before end",
        ),
        (
            {
                "credit__windows": [
                    {"name": "a", "start": "09:00", "end": "12:00", "multiplier": "1"},
                    {"name": "b", "start": "11:00", "end": "13:00", "multiplier": "1"},
                ]
            },
            "overlap",
        ),
        ({"rules__gap_horizon_s": 0}, "gap_horizon_s"),
    ],
)
def test_bad_tariffs_are_refused_with_the_reason(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TariffError, match=message):
        tariff_from_data(_data(**changes))


def test_a_tariff_file_overrides_the_shipped_one(tmp_path: Path) -> None:
    shipped = (Path(__file__).parents[2] / "src/cityshare/data/tariffs.toml").read_text()
    path = tmp_path / "tariffs.toml"
    path.write_text(shipped.replace('points_per_kwh = "1"', 'points_per_kwh = "2.5"'))
    assert load_tariff(path).points_per_kwh == Fraction(5, 2)
    with pytest.raises(TariffError, match="cannot read"):
        load_tariff(tmp_path / "missing.toml")


# -- credits: integers, remainders carried ---------------------------------------------------


def test_an_interval_credits_energy_carbon_and_points_exactly() -> None:
    steps = run([reading(0, at(10), 0, 0), reading(1, at(10, 15), 20, 1000)])
    assert [s.status for s in steps] == [BASELINE, OK]
    step = steps[1]
    assert (step.window, step.import_wh, step.export_wh) == ("solar", 20, 1000)
    assert step.carbon_g == 861  # 1 kWh * 0.861 g/Wh
    assert step.credit_milli == 800  # 0.8 point in solar hours


def test_peak_exports_earn_the_incentive() -> None:
    steps = run([reading(0, at(18, 30)), reading(1, at(18, 45), 0, 1000)])
    assert steps[1].window == "peak"
    assert steps[1].credit_milli == 1800  # 1 point * 1.2 * 1.5


def test_the_window_is_the_one_an_interval_starts_in() -> None:
    steps = run([reading(0, at(16, 45)), reading(1, at(17, 0), 0, 1000)])
    assert steps[1].window == "solar"
    steps = run([reading(0, at(17, 45)), reading(1, at(18, 0), 0, 1000)])
    assert steps[1].window == "normal"


def test_remainders_are_carried_so_small_intervals_lose_nothing() -> None:
    readings = [reading(i, at(1) + 20 * i, 0, i) for i in range(1001)]  # 1 Wh every 20 s
    steps = run(readings)
    assert credited(steps) == (0, 1000, 861, 1000)
    grams = [s.carbon_g for s in steps[1:]]
    assert set(grams) == {0, 1}  # never more than the Wh allow at any point
    assert steps[-1].state.carbon_carry == 0


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_credits_equal_the_total_divided_once(deltas: list[int]) -> None:
    """However the export is cut into intervals, the device gets floor(total * rate)."""
    readings = [reading(0, at(1))]
    total = 0
    for i, delta in enumerate(deltas, start=1):
        total += delta
        readings.append(reading(i, at(1) + 900 * i, 0, total))
    steps = run(readings)  # every interval starts before 09:00: normal hours
    assert credited(steps)[2] == total * 861 // 1000
    assert credited(steps)[3] == total  # 1 milli-point per Wh at night
    assert steps[-1].state.carbon_carry == total * 861 % 1000


def test_carries_move_to_a_new_tariff_rounding_down() -> None:
    state = run([reading(0, at(1)), reading(1, at(1, 15), 0, 1)])[-1].state
    assert (state.carbon_carry, state.credit_carry) == (861, 0)
    thirds = tariff_from_data(_data(credit__points_per_kwh="0.3333"))
    moved = rescale_carries(dataclasses.replace(state, credit_carry=3), TARIFF, thirds, "meter", 2)
    assert moved.tariff_id == 2
    assert moved.carbon_carry == 861  # same carbon denominator
    assert moved.credit_carry == 3 * thirds.credit_denominator // TARIFF.credit_denominator
    assert rescale_carries(state, TARIFF, TARIFF, "meter", 1) is state


# -- anomalies -------------------------------------------------------------------------------


def test_a_timestamp_in_the_future_credits_nothing_and_does_not_move_the_chain() -> None:
    now = at(12) * 10**9
    steps = run(
        [
            reading(0, at(11, 45), 0, 0, now=now),
            reading(1, at(12, 6), 0, 500, now=now),  # 6 minutes ahead of the platform
            reading(2, at(12, 15), 0, 1000, now=at(12, 20) * 10**9),
        ]
    )
    assert [s.status for s in steps] == [BASELINE, Anomaly.FUTURE_TIMESTAMP, OK]
    assert steps[2].export_wh == 1000  # the next reading credits from the last good one
    on_time = run([reading(0, at(11, 45), now=now), reading(1, at(12, 5), 0, 500, now=now)])
    assert on_time[1].status == OK  # 5 minutes is tolerated


def test_a_reading_from_before_the_device_was_registered_is_an_anomaly() -> None:
    device = Device("meter", at(10) * 10**9)
    steps = run([reading(0, at(9, 30)), reading(1, at(10, 15), 0, 10)], device)
    # The early one cannot start the chain: the later one does; the early one joins below it.
    assert [(s.seq, s.status) for s in steps] == [
        (1, BASELINE),
        (0, Anomaly.BEFORE_REGISTRATION),
    ]
    assert credited(steps) == (0, 0, 0, 0)


def test_sequence_and_time_must_increase_together() -> None:
    steps = run([reading(0, at(10)), reading(1, at(10)), reading(2, at(10, 15), 0, 100)])
    assert [s.status for s in steps] == [BASELINE, Anomaly.SEQ_TS_ORDER, OK]
    assert steps[2].export_wh == 100


def test_a_register_going_backwards_is_never_credited_twice() -> None:
    steps = run(
        [
            reading(0, at(10), 0, 5000),
            reading(1, at(10, 15), 0, 3000),  # a glitch: the register seems to fall
            reading(2, at(10, 30), 0, 5100),
        ]
    )
    assert [s.status for s in steps] == [BASELINE, Anomaly.REGISTER_BACKWARDS, OK]
    assert credited(steps)[1] == 100  # from the high-water mark, not from the glitch


def test_a_meter_reset_starts_a_new_baseline() -> None:
    steps = run(
        [
            reading(0, at(10), 40_000, 90_000),
            reading(1, at(10, 15), 40_100, 91_000),
            reading(2, at(10, 30), 3, 200),  # replaced meter: both registers near zero
            reading(3, at(10, 45), 13, 1200),
        ]
    )
    assert [s.status for s in steps] == [BASELINE, OK, Anomaly.METER_RESET, OK]
    assert credited(steps)[:2] == (100 + 10, 1000 + 1000)
    one_register = run([reading(0, at(10), 40_000, 90_000), reading(1, at(10, 15), 40_000, 5)])
    assert one_register[1].status == Anomaly.REGISTER_BACKWARDS  # import did not fall to zero


def test_impossible_power_depends_on_the_device_kind() -> None:
    fifteen_minutes = [reading(0, at(10)), reading(1, at(10, 15), 0, 30_000)]  # 120 kW
    assert run(fifteen_minutes, METER)[1].status == Anomaly.IMPOSSIBLE_POWER
    assert run(fifteen_minutes, CHARGER)[1].status == OK
    at_the_limit = [reading(0, at(10)), reading(1, at(10, 15), 0, 25_000)]  # exactly 100 kW
    assert run(at_the_limit, METER)[1].status == OK
    # A jump that persists is skipped, never credited later: the chain continues from it.
    steps = run([*fifteen_minutes, reading(2, at(10, 30), 0, 31_000)], METER)
    assert credited(steps)[1] == 1_000


SPIKE = [
    reading(0, at(10), 1000, 0),
    reading(1, at(10, 5), 1040, 0),
    reading(2, at(10, 5, 30), 3040, 0),  # corrupt: 2000 Wh in 30 s is 240 kW
    reading(3, at(10, 10), 1240, 0),  # honest again
    reading(4, at(10, 15), 1440, 0),
]


def test_one_corrupt_jump_does_not_freeze_the_meter_and_no_import_escapes() -> None:
    """The probe's repro (issue 9): 1040 -> 3040 -> 1240 Wh. The honest reading after the
    jump is credited from the register before it, so every Wh imported is billed."""
    steps = run(SPIKE)
    assert [(s.seq, s.status) for s in steps] == [
        (0, BASELINE),
        (1, OK),
        (2, Anomaly.IMPOSSIBLE_POWER),
        (3, OK),
        (4, OK),
    ]
    assert steps[3].start_ts == at(10, 5)  # from 1040 Wh, before the jump
    assert steps[3].import_wh == 200
    assert credited(steps)[0] == 1440 - 1000  # nothing escapes


@pytest.mark.parametrize(
    "order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [1, 3, 2, 0, 4], [0, 4, 3, 2, 1]]
)
def test_a_corrupt_jump_credits_the_same_whatever_order_it_arrives_in(order: list[int]) -> None:
    steps = run([SPIKE[i] for i in order])
    assert credited(steps)[0] == 440


def test_a_corrupt_jump_below_the_chain_is_mirrored() -> None:
    """Readings arriving newest first: the jump is found at the bottom of the chain."""
    glitch = [
        reading(0, at(10), 2000, 5000),
        reading(1, at(10, 0, 30), 2000, 1000),  # corrupt: 4000 Wh less, then 4100 more in 30 s
        reading(2, at(10, 1), 2000, 5100),
    ]
    assert credited(run(glitch[::-1]))[1] == credited(run(glitch))[1] == 100


def test_a_jump_that_persists_stays_uncredited() -> None:
    steps = run([*SPIKE[:3], reading(3, at(10, 10), 3240, 0), reading(4, at(10, 15), 3440, 0)])
    assert [s.status for s in steps[2:]] == [Anomaly.IMPOSSIBLE_POWER, OK, OK]
    assert credited(steps)[0] == 40 + 200 + 200  # the 2000 Wh jump is never billed


# -- the chain: out of order, duplicated, gaps -----------------------------------------------


def test_a_late_reading_fills_its_interval_and_releases_those_waiting() -> None:
    r = [reading(i, at(10) + 900 * i, 0, 1000 * i) for i in range(4)]
    steps = run([r[0], r[2], r[3], r[1]])
    assert [(s.seq, s.prev_seq, s.status) for s in steps] == [
        (0, 0, BASELINE),
        (1, 0, OK),
        (2, 1, OK),
        (3, 2, OK),
    ]


def test_readings_older_than_the_first_join_below_it() -> None:
    r = [reading(i, at(10) + 900 * i, 0, 1000 * i) for i in range(4)]
    steps = run([r[2], r[0], r[3], r[1]])
    assert [(s.seq, s.status) for s in steps] == [(2, BASELINE), (3, OK), (1, OK), (0, OK)]
    assert credited(steps)[1] == 3000


GLITCH_LOW = [
    reading(0, at(10), 0, 5000),
    reading(1, at(10, 15), 0, 3000),  # a glitch below the high-water mark, within the power limit
    reading(2, at(10, 30), 0, 5100),
]


def test_a_backlog_arriving_newest_first_in_one_batch_credits_what_orderly_delivery_does() -> None:
    """The report after issue 9's defect 3: 5000, 3000, 5100 Wh exported, delivered newest
    first, credited 2100 Wh instead of 100, for the chain started at seq 2 (the first listed)
    and judged 3000 -> 5100 on its own. The lowest usable reading at hand starts the chain."""
    orderly = run(GLITCH_LOW)
    assert credited(orderly)[1] == 100
    steps = advance(None, {r.seq: r for r in GLITCH_LOW[::-1]}, METER, TARIFF, 1, now=NOW_NS)
    assert intervals(steps) == intervals(orderly)
    assert credited(steps) == credited(orderly)


def test_a_reading_that_contradicts_the_chain_from_below_is_refused_and_never_credited() -> None:
    """Newest first in separate batches, seq 2 then 1 credit 2100 Wh, as orderly delivery of
    those two does; seq 0, arriving last, says the register was at 5000 Wh before. Credits are
    final, so the chain keeps the readings it trusted and refuses the one contradicting them
    from below (it awaits review): it never credits more than its trusted span, 3000 -> 5100,
    nor anything twice later. Which reading is the glitch depends on which one came first: the
    one limit to order independence (module docstring, *Trust at the bottom of the chain*)."""
    steps = run(GLITCH_LOW[::-1])
    assert [(s.seq, s.prev_seq, s.status, s.export_wh) for s in steps] == [
        (2, 2, BASELINE, 0),
        (1, 2, OK, 2100),
        (0, 1, Anomaly.REGISTER_BACKWARDS, 0),
    ]
    state = steps[-1].state
    assert (state.base_export, state.hw_export) == (3000, 5100)
    assert credited(steps)[1] == state.hw_export - state.base_export
    assert credited(run([reading(3, at(10, 45), 0, 5200)], state=state))[1] == 100


def test_a_missing_reading_holds_the_chain_until_the_gap_is_bridged() -> None:
    horizon_ns = TARIFF.gap_horizon_s * 10**9
    r = [reading(i, at(1) + 900 * i, 0, 100 * i) for i in range(40)]  # received at NOW_NS
    # 1 is missing: the rest wait, however much newer (device time) they are than the top.
    steps = run([r[0], *r[2:]])
    assert [s.seq for s in steps] == [0]
    assert run(r[2:], state=steps[-1].state, now=NOW_NS + horizon_ns - 1) == []
    # Once a waiting reading has waited `gap_horizon_s` since it arrived, the gap is bridged.
    steps += run(r[2:], state=steps[-1].state, now=NOW_NS + horizon_ns)
    assert [(s.seq, s.prev_seq) for s in steps[1:3]] == [(2, 0), (3, 2)]
    assert credited(steps)[1] == 100 * 39
    # The missing reading, arriving after all, only fills the profile.
    assert run([r[1]], state=steps[-1].state, now=NOW_NS + horizon_ns) == []


def test_a_gap_below_the_chain_is_bridged_the_same_way() -> None:
    horizon_ns = TARIFF.gap_horizon_s * 10**9
    r = [reading(i, at(1) + 900 * i, 0, 100 * i) for i in range(6)]
    steps = run([r[5], r[3], r[2]])  # 5 starts the chain; 4 is missing, so 3 and 2 wait
    assert [s.seq for s in steps] == [5]
    steps += run([r[3], r[2]], state=steps[-1].state, now=NOW_NS + horizon_ns)
    assert [(s.seq, s.prev_seq) for s in steps[1:]] == [(3, 5), (2, 3)]
    assert credited(steps)[1] == 300


#: Anomalies of a reading on its own, whatever it is measured against.
OF_A_READING = {Anomaly.FUTURE_TIMESTAMP, Anomaly.BEFORE_REGISTRATION}


def intervals(steps: list[Step]) -> list[tuple[int, int, str, str, int, int]]:
    """The intervals judged, whichever end joined the chain, by what each measured: (device
    time from, to, status, window, Wh imported, Wh exported). A reading anomalous on its own is
    named by its seq instead (as (-1, seq, status, ...)): the span it is recorded with runs to
    the chain on the side it joined from, and so does the seq pair of the interval measured over
    it -- bookkeeping that depends on which neighbour came first, not what is credited."""
    return sorted(
        (-1, s.seq, s.status, "", 0, 0) if s.status in OF_A_READING
        else (s.start_ts, s.end_ts, s.status, s.window, s.import_wh, s.export_wh)
        for s in steps
        if s.status != BASELINE
    )  # fmt: skip


#: What a reading can be besides honest (see `_sequence`).
KINDS = ("honest",) * 5 + ("low", "high", "spike", "step", "reset", "stale", "future", "early")

READINGS = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=7200),  # seconds since the previous reading
        st.integers(min_value=0, max_value=3000),  # Wh imported meanwhile
        st.integers(min_value=0, max_value=20_000),  # Wh exported meanwhile
        st.sampled_from(KINDS),
        st.integers(min_value=1, max_value=6000),  # how far an anomalous reading strays
    ),
    min_size=1,
    # Up to 40 hours of device time: longer than the gap horizon, which counts arrival time,
    # so however the readings are shuffled (all arriving at once) no gap is ever bridged.
    max_size=20,
)


def _sequence(data: list[tuple[int, int, int, str, int]], start: int) -> list[Reading]:
    """One device's readings: the registers grow by the amounts drawn, but a reading may be
    `low` or `high` (its registers below or above the honest ones, within the power limit or
    not; the next is honest again), a `spike` (10^7 Wh too many, once), a `step` (10^7 Wh more
    that stays: a jump that persists), a `reset` (both registers start again near zero), `stale`
    (a timestamp not after the previous reading's), `future` (beyond the platform's clock) or
    `early` (before the device was registered)."""
    out = [reading(0, start, 5000, 80_000)]
    ts, imported, exported = start, 5000, 80_000
    for seq, (gap, d_imp, d_exp, kind, stray) in enumerate(data, start=1):
        ts += gap
        imported, exported = imported + d_imp, exported + d_exp
        if kind == "step":
            imported, exported = imported + 10**7, exported + 10**7
        elif kind == "reset":
            imported, exported = d_imp % 500, d_exp % 900
        r_ts, r_imp, r_exp = ts, imported, exported
        if kind == "low":
            r_imp, r_exp = max(imported - stray % 700, 0), max(exported - stray, 0)
        elif kind == "high":
            r_imp, r_exp = imported + stray % 700, exported + stray
        elif kind == "spike":
            r_exp = exported + 10**7
        elif kind == "stale":
            r_ts = ts - gap - stray % 600
        elif kind == "future":
            r_ts = NOW_NS // 10**9 + TARIFF.future_tolerance_s + stray
        elif kind == "early":
            r_ts = METER.registered_at // 10**9 - TARIFF.future_tolerance_s - stray
        out.append(reading(seq, r_ts, r_imp, r_exp))
    return out


def deliver(arrivals: list[Reading], device: Device, rng: random.Random) -> list[Step]:
    """Hand `arrivals` over in batches of 1 to 4 readings (as the service does: those inside
    the chain only fill the profile, duplicates are dropped), and return every step."""
    state: ChainState | None = None
    steps: list[Step] = []
    waiting: dict[int, Reading] = {}
    i = 0
    while i < len(arrivals):
        size = rng.randint(1, 4)
        for r in arrivals[i : i + size]:
            if state is None or not state.base_seq <= r.seq <= state.top_seq:
                waiting.setdefault(r.seq, r)
        taken = advance(state, waiting, device, TARIFF, 1, now=NOW_NS)
        if taken:
            state = taken[-1].state
        steps += taken
        i += size
    return steps


#: Judgments of a reading joining at the bottom that contradict the chain's base: in sequence
#: order the base would have been judged against that reading (module docstring, *Trust at the
#: bottom of the chain*).
CONTRADICTIONS = {Anomaly.REGISTER_BACKWARDS, Anomaly.SEQ_TS_ORDER, Anomaly.IMPOSSIBLE_POWER}


def contradicted_from_below(steps: list[Step]) -> bool:
    return any(s.seq < s.prev_seq and s.status in CONTRADICTIONS for s in steps)


def rises(registers: list[int]) -> int:
    """How much a register rose from each reading to the next: all the energy it shows."""
    return sum(max(b - a, 0) for a, b in itertools.pairwise(registers))


ANYHOW = (
    READINGS,
    st.integers(min_value=0, max_value=86_400),
    st.sampled_from([METER, CHARGER]),
    st.randoms(use_true_random=False),
)


@given(*ANYHOW)
@settings(max_examples=400, deadline=None)
def test_any_arrival_order_and_batch_shape_credits_what_orderly_delivery_does(
    data: list[tuple[int, int, int, str, int]],
    start: int,
    device: Device,
    rng: random.Random,
) -> None:
    """Honest readings and every kind of anomaly, shuffled, duplicated and cut into batches of
    any shape, credit exactly what orderly delivery does, interval by interval -- unless a
    reading contradicts the chain from below, the one case where which reading is trusted
    depends on which came first (then the next property still bounds the credits)."""
    readings = _sequence(data, MIDNIGHT + start)
    orderly = run(readings, device)
    storm = readings * rng.randint(1, 3)
    rng.shuffle(storm)
    delivered = deliver(storm, device, rng)
    assume(not contradicted_from_below(delivered))
    assert credited(delivered) == credited(orderly)
    assert intervals(delivered) == intervals(orderly)
    assert (delivered[-1].state.carbon_carry, delivered[-1].state.credit_carry) == (
        orderly[-1].state.carbon_carry,
        orderly[-1].state.credit_carry,
    )


@given(*ANYHOW)
@settings(max_examples=400, deadline=None)
def test_no_arrival_order_credits_more_than_the_trusted_readings_show(
    data: list[tuple[int, int, int, str, int]],
    start: int,
    device: Device,
    rng: random.Random,
) -> None:
    """In every arrival order, contradictions included: never more energy than the registers
    rose by, reading to reading in sequence order; and, without a reset, never more than from
    the chain's base (its lowest trusted registers, the baseline in orderly delivery) to its
    high-water mark (the highest): energy is never credited twice, nor from a glitch."""
    readings = _sequence(data, MIDNIGHT + start)
    storm = readings * rng.randint(1, 3)
    rng.shuffle(storm)
    for steps in (run(readings, device), deliver(storm, device, rng)):
        if not steps:
            continue  # every reading anomalous on its own: no chain
        imported, exported = credited(steps)[:2]
        assert imported <= rises([r.import_wh for r in readings])
        assert exported <= rises([r.export_wh for r in readings])
        if all(s.status != Anomaly.METER_RESET for s in steps):
            state = steps[-1].state
            assert imported <= state.hw_import - state.base_import
            assert exported <= state.hw_export - state.base_export


@given(
    st.lists(
        st.tuples(st.integers(min_value=60, max_value=3600), st.integers(0, 1000)),
        min_size=2,
        max_size=12,
    ),
    st.booleans(),
    st.data(),
    st.randoms(use_true_random=False),
)
@settings(max_examples=200, deadline=None)
def test_one_corrupt_reading_credits_the_same_in_any_order_and_loses_nothing(
    data: list[tuple[int, int]], below: bool, draw: st.DataObject, rng: random.Random
) -> None:
    """A corrupt reading far above the others, or far below them (a jump at whichever end of
    the chain meets it first: the fallback at the top and at the bottom), not the first reading
    of the meter, which is trusted, in any order of arrival except one that starts the chain
    with it: every Wh the honest registers went through is credited, and duplicates change
    nothing."""
    first = 10**7 + 5000
    readings = [reading(0, at(1), first, 0)]
    ts, imported = at(1), first
    for seq, (gap, d_imp) in enumerate(data, start=1):
        ts, imported = ts + gap, imported + d_imp
        readings.append(reading(seq, ts, imported, 0))
    k = draw.draw(st.integers(min_value=1, max_value=len(readings) - 1))
    corrupt = 2000 if below else readings[k].import_wh + 10**7  # (2000 Wh: not a reset)
    readings[k] = dataclasses.replace(readings[k], import_wh=corrupt)
    honest_span = readings[-1].import_wh - first if k < len(readings) - 1 else (
        readings[-2].import_wh - first
    )
    storm = readings * 2
    rng.shuffle(storm)
    while storm[0].seq == k:  # (both copies may lead)
        storm.append(storm.pop(0))
    assert credited(run(readings))[0] == honest_span
    assert credited(run(storm))[0] == honest_span


@given(
    st.permutations(range(13)),
    st.lists(st.integers(min_value=0, max_value=12), max_size=6),
    st.randoms(use_true_random=False),
)
@settings(max_examples=60, deadline=None)
def test_batches_of_any_shape_credit_the_same(
    order: list[int], again: list[int], rng: random.Random
) -> None:
    """Readings handed over in batches (several arriving at once), some of them twice, credit
    what orderly delivery does."""
    readings = [reading(i, at(10) + 600 * i, 10 * i, 700 * i) for i in range(13)]
    arrivals = [readings[i] for i in order]
    for i in again:
        arrivals.insert(rng.randint(0, len(arrivals)), readings[i])
    steps = deliver(arrivals, METER, rng)
    assert credited(steps) == credited(run(readings)) == (120, 8400, 7232, 6720)
    assert intervals(steps) == intervals(run(readings))
