"""Signed readings through the message bus, on SQLite and PostgreSQL: exact credits in the
right wallets, exactly-once under replay storms and crashes, every bad item refused with its
reason while good ones go through, and an audit log that still verifies."""

from __future__ import annotations

import datetime as dt
import logging
import random
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from cityshare.audit import verify as audit
from cityshare.audit.report import AuditReport
from cityshare.bootstrap import Platform, bootstrap, unit_of_work
from cityshare.energy import commands as energy_commands
from cityshare.energy import handlers as energy
from cityshare.energy import queries
from cityshare.energy import tables as energy_tables
from cityshare.energy.model import EnergyCode, transfer_id
from cityshare.energy.verify import ReadingVerifier
from cityshare.identity import commands as identity_commands
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger import tables as ledger_tables
from cityshare.ledger.ids import CARBON_ISSUANCE, CREDIT_ISSUANCE, GRID_ENERGY
from cityshare.ledger.model import Ledger, NewAccount, Transfer
from cityshare.tlog import entries
from energy_helpers import Meter, add_device, enrol, ingest, resident_with_meter, sign, wallets

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
#: The ManualClock starts at 1_700_000_000: 2023-11-15 03:43:20 in India.
DAY = dt.date(2023, 11, 15)


def ist(hh: int, mm: int = 0) -> int:
    return int(dt.datetime.combine(DAY, dt.time(hh, mm), IST).timestamp())


def late_evening(clock: ManualClock) -> None:
    """Move the platform's clock to 23:00 that day, so the day's readings are in the past."""
    clock.advance(ist(23) - clock.now_ns() // 10**9)


def results(outcome: energy.IngestOutcome) -> list[str]:
    return [r.result for r in outcome.results]


def count(platform: Platform, table: Any) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def balance(platform: Platform, account_id: int) -> int:
    account = ledger_service.get_account(platform.uow(), account_id)
    assert account is not None
    return account.balance


def audit_ok(platform: Platform) -> AuditReport:
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, "\n".join(str(p) for p in report.problems)
    assert ledger_service.check_invariants(platform.uow()).ok
    return report


# -- credits ---------------------------------------------------------------------------------


def test_credits_land_in_the_owners_wallets_in_exact_integers(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    outcome = ingest(
        platform,
        [
            meter.reading(0, ist(10, 0), 100, 5000),  # the baseline
            meter.reading(1, ist(10, 15), 120, 6000),  # solar hours: 1 kWh out, 20 Wh in
            meter.reading(2, ist(18, 15), 150, 6001),  # starts in solar hours: 1 Wh out
            meter.reading(3, ist(18, 30), 150, 7001),  # peak: 1 kWh out, with the incentive
        ],
    )
    assert results(outcome) == ["accepted"] * 4
    assert (outcome.stored, outcome.intervals) == (4, 4)
    # Carbon: 1000 * 0.861 = 861 g; then 1 Wh leaves 0.861 g carried; then 861 + 0.861 -> 861.
    # Points: 0.8/Wh in solar hours -> 800; 1 Wh -> 0.8 carried; peak 1.2 * 1.5 = 1.8/Wh -> 1800.
    assert wallets(platform, meter.resident_id) == {
        "CREDIT": 800 + 0 + 1800,
        "CARBON": 861 + 0 + 861,
        "ENERGY": 2001 - 50,  # net export
    }
    assert balance(platform, CREDIT_ISSUANCE) == -2600
    assert balance(platform, CARBON_ISSUANCE) == -1722
    assert balance(platform, GRID_ENERGY) == -1951
    # Every posting names its interval and has the id derived from it.
    with platform.engine.connect() as conn:
        interval_ids = dict(
            conn.execute(
                select(
                    energy_tables.meter_intervals.c.seq, energy_tables.meter_intervals.c.id
                ).where(energy_tables.meter_intervals.c.device_id == meter.device_id)
            ).all()
        )
        posted = conn.execute(
            select(
                ledger_tables.transfers.c.id,
                ledger_tables.transfers.c.code,
                ledger_tables.transfers.c.user_data,
            )
        ).all()
    expected_codes = {
        1: [4001, 4002, 4003, 4004],
        2: [4003, 4004],  # 0 points and 0 g yet (both carried), 1 Wh out, 30 Wh in
        3: [4001, 4002, 4003],
    }
    assert {(t.id, t.code, t.user_data) for t in posted} == {
        (transfer_id(interval_ids[seq], EnergyCode(code)), code, interval_ids[seq])
        for seq, codes in expected_codes.items()
        for code in codes
    }
    audit_ok(platform)


def test_a_resident_sees_their_meters_and_credits_per_day(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    ingest(platform, [meter.reading(0, ist(9), 0, 0), meter.reading(1, ist(9, 15), 5, 1000)])
    summary = queries.energy_summary(
        platform.uow(), meter.resident_id, days=3, tariff=platform.tariff
    )
    assert [(d.device_id, d.seq, d.ts, d.import_wh, d.export_wh) for d in summary.devices] == [
        (meter.device_id, 1, ist(9, 15), 5, 1000)
    ]
    assert (summary.totals.export_wh, summary.totals.carbon_g, summary.totals.credit_milli) == (
        1000,
        861,
        800,
    )
    assert [d.date for d in summary.days] == [DAY - dt.timedelta(days=i) for i in (2, 1, 0)]
    assert summary.days[-1].sums == summary.totals
    other = enrol(platform, "bala")
    empty = queries.energy_summary(platform.uow(), other, days=1, tariff=platform.tariff)
    assert (empty.devices, empty.totals.export_wh) == ([], 0)


# -- exactly once ----------------------------------------------------------------------------


def day_of_readings(meter: Meter) -> list[str]:
    """Twenty readings from 08:00, every 15 minutes, across the start of solar hours, with a
    meter reset in the middle."""
    out = []
    imported, exported = 2_000, 50_000
    for seq in range(20):
        if seq == 10:
            imported, exported = 0, 150  # the meter was replaced
        else:
            imported += 10 + seq
            exported += 300 + 37 * seq
        out.append(meter.reading(seq, ist(8) + 900 * seq, imported, exported))
    return out


def test_a_replay_storm_credits_exactly_what_orderly_delivery_does(
    platform: Platform, clock: ManualClock
) -> None:
    orderly, stormy = resident_with_meter(platform, "asha"), resident_with_meter(platform, "bala")
    late_evening(clock)
    calm = day_of_readings(orderly)
    for start in range(0, len(calm), 5):
        assert set(results(ingest(platform, calm[start : start + 5]))) <= {
            "accepted",
            "anomaly:meter_reset",
        }
    storm = day_of_readings(stormy) * 3
    random.Random(7).shuffle(storm)
    seen: list[str] = []
    i = 0
    rng = random.Random(8)
    while i < len(storm):
        size = rng.randint(1, 9)
        seen += results(ingest(platform, storm[i : i + size], source="mqtt"))
        i += size
    assert seen.count("duplicate") == 40
    expected = wallets(platform, orderly.resident_id)
    assert expected["CARBON"] > 0
    assert wallets(platform, stormy.resident_id) == expected
    assert count(platform, energy_tables.meter_readings) == 40
    assert count(platform, energy_tables.meter_intervals) == 40
    # And a whole batch sent again changes nothing at all.
    with platform.uow() as uow:
        size = uow.log.size()
    assert set(results(ingest(platform, calm))) == {"duplicate"}
    with platform.uow() as uow:
        assert uow.log.size() == size
    audit_ok(platform)


def test_a_batch_retried_after_a_crash_loses_and_doubles_nothing(
    platform: Platform, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    batch = day_of_readings(meter)[:8]
    with platform.uow() as uow:
        log_size = uow.log.size()
    real_post = energy.post_transfers

    def crash_after_crediting(*args: Any, **kwargs: Any) -> Any:
        real_post(*args, **kwargs)  # the readings, intervals and transfers are written ...
        raise RuntimeError("power cut")  # ... and the commit never happens

    monkeypatch.setattr(energy, "post_transfers", crash_after_crediting)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest(platform, batch)
    monkeypatch.undo()
    with platform.uow() as uow:
        assert uow.log.size() == log_size
    assert count(platform, energy_tables.meter_readings) == 0
    assert wallets(platform, meter.resident_id) == {"CREDIT": 0, "CARBON": 0, "ENERGY": 0}

    assert results(ingest(platform, batch)) == ["accepted"] * 8
    after_retry = wallets(platform, meter.resident_id)
    assert results(ingest(platform, batch)) == ["duplicate"] * 8
    assert wallets(platform, meter.resident_id) == after_retry
    # The same as if nothing had crashed: 7 intervals of 300+37*seq Wh from 08:00.
    exported = sum(300 + 37 * seq for seq in range(1, 8))
    assert after_retry["ENERGY"] == exported - sum(10 + seq for seq in range(1, 8))
    audit_ok(platform)


# -- bad items never stop good ones ----------------------------------------------------------


def test_signed_and_attested_readings_come_by_their_own_commands(platform: Platform) -> None:
    """`IngestReadings` carries JWS strings from the HTTP and MQTT doors; the OCPP door's
    attested readings come as `IngestAttestedReadings` (source "ocpp"), which checks no JWS."""
    with pytest.raises(ValueError, match="unknown source"):
        platform.bus.handle(energy_commands.IngestReadings([], "ocpp"))
    outcome = platform.bus.handle(energy_commands.IngestAttestedReadings(["a.b.c"]))  # type: ignore[list-item]
    assert results(outcome) == ["rejected:malformed"]
    assert count(platform, energy_tables.meter_readings) == 0


def test_every_bad_item_is_refused_with_its_reason_and_the_good_ones_go_through(
    platform: Platform, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    meter = resident_with_meter(platform, "asha")
    revoked = add_device(platform, meter.resident_id)
    vehicle = add_device(platform, meter.resident_id, kind="vehicle")
    platform.bus.handle(identity_commands.RevokeDevice(meter.resident_id, revoked.device_id))
    late_evening(clock)
    good = [meter.reading(seq, ist(12) + 900 * seq, 0, 1000 * seq) for seq in range(4)]
    stranger = Ed25519PrivateKey.generate()
    batch = [
        good[0],
        sign(stranger, meter.device_id, seq=9, ts=ist(12), import_wh=0, export_wh=9),  # forged
        jwt.encode({"seq": 9, "ts": ist(12), "import_wh": 0, "export_wh": 9}, None,
                   algorithm="none", headers={"kid": meter.device_id}),  # unsigned
        good[1],
        revoked.reading(0, ist(12), 0, 0),  # signed by a revoked key
        vehicle.reading(0, ist(12), 0, 0),  # not a meter or charger
        sign(stranger, "dev-aaaaaaaaaaaaaaaa", seq=0, ts=ist(12), import_wh=0, export_wh=0),
        "this is not a JWS",
        good[2],
        good[2][:-10] + "A" * 1100,  # oversized
        meter.reading(2, ist(12, 30), 0, 99_999),  # seq 2 again, other registers
        good[3],
        good[3],
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="cityshare.energy.handlers"):
        outcome = ingest(platform, batch)
    assert [(r.index, r.result) for r in outcome.results] == [
        (0, "accepted"),
        (1, "rejected:bad_signature"),
        (2, "rejected:unsupported_alg"),
        (3, "accepted"),
        (4, "rejected:revoked_key"),
        (5, "rejected:wrong_kind"),
        (6, "rejected:unknown_device"),
        (7, "rejected:malformed"),
        (8, "accepted"),
        (9, "rejected:too_large"),
        (10, "rejected:seq_reused"),
        (11, "accepted"),
        (12, "duplicate"),
    ]
    assert outcome.results[4].device == revoked.device_id  # authentic, so named
    assert outcome.results[1].device is None  # a forgery names no one
    assert wallets(platform, meter.resident_id)["CARBON"] == 3000 * 861 // 1000
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert [r.getMessage().rsplit(": ", 1)[1] for r in rejected] == [
        "bad_signature",
        "unsupported_alg",
        "revoked_key",
        "wrong_kind",
        "unknown_device",
        "malformed",
        "too_large",
        "seq_reused",
    ]
    logged = caplog.text
    assert meter.device_id not in logged
    assert revoked.device_id not in logged
    audit_ok(platform)


def test_a_key_revoked_between_verification_and_writing_is_refused(
    platform: Platform, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    real_check = ReadingVerifier.check

    def check_then_revoke(self: ReadingVerifier, items: Any) -> Any:
        checked = real_check(self, items)
        platform.bus.handle(identity_commands.RevokeDevice(meter.resident_id, meter.device_id))
        return checked

    monkeypatch.setattr(ReadingVerifier, "check", check_then_revoke)
    outcome = ingest(platform, [meter.reading(0, ist(12), 0, 0)])
    assert results(outcome) == ["rejected:revoked_key"]
    assert count(platform, energy_tables.meter_readings) == 0


def test_a_reading_stored_before_its_key_was_revoked_is_a_duplicate_when_redelivered(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    stored = [meter.reading(seq, ist(12) + 900 * seq, 0, 1000 * seq) for seq in range(2)]
    assert results(ingest(platform, stored)) == ["accepted", "accepted"]
    credited = wallets(platform, meter.resident_id)
    platform.bus.handle(identity_commands.RevokeDevice(meter.resident_id, meter.device_id))

    late = meter.reading(2, ist(12, 30), 0, 2000)  # signed with the key now revoked
    outcome = ingest(platform, [stored[1], late, late, stored[0]])
    assert results(outcome) == [
        "duplicate",
        "rejected:revoked_key",
        "rejected:revoked_key",  # a copy of a refused reading is refused, not a "duplicate"
        "duplicate",
    ]
    assert outcome.stored == 0
    assert wallets(platform, meter.resident_id) == credited
    audit_ok(platform)


def test_anomalies_are_stored_and_logged_but_credit_nothing(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    now = clock.now_ns() // 10**9
    outcome = ingest(
        platform,
        [
            meter.reading(0, ist(12), 0, 1000),
            meter.reading(1, ist(12, 15), 0, 40_000),  # 156 kW from a home meter
            meter.reading(2, ist(12, 30), 0, 41_000),
            meter.reading(3, now + 3600, 0, 42_000),  # an hour ahead of the platform
        ],
    )
    assert results(outcome) == [
        "accepted",
        "anomaly:impossible_power",
        "accepted",
        "anomaly:future_timestamp",
    ]
    assert wallets(platform, meter.resident_id)["ENERGY"] == 1000
    assert count(platform, energy_tables.meter_readings) == 4
    with platform.uow() as uow:
        logged = [entries.decode(data) for _, data in uow.log.entries(0, uow.log.size())]
    statuses = [
        e.fields["status"]
        for e in logged
        if isinstance(e, entries.RecordEntry) and e.type == "meter_interval"
    ]
    assert statuses == ["baseline", "impossible_power", "ok", "future_timestamp"]
    audit_ok(platform)


def test_one_corrupt_reading_does_not_freeze_billing_and_no_import_escapes(
    platform: Platform, clock: ManualClock
) -> None:
    """Issue 9, defect 3: import 1040 -> 3040 Wh in 30 s (a corrupt reading) -> 1240 -> 1440,
    one batch each. The honest readings are credited from the register before the jump, so all
    440 Wh imported reach the ENERGY wallet (and billing); the jump awaits review until the
    reading after it covers it."""
    meter = resident_with_meter(platform)
    late_evening(clock)
    readings = [
        meter.reading(0, ist(12), 1000, 0),
        meter.reading(1, ist(12, 5), 1040, 0),
        meter.reading(2, ist(12, 5) + 30, 3040, 0),
        meter.reading(3, ist(12, 10), 1240, 0),
        meter.reading(4, ist(12, 15), 1440, 0),
    ]
    answers = [results(ingest(platform, [r]))[0] for r in readings[:3]]
    assert answers == ["accepted", "accepted", "anomaly:impossible_power"]
    review = queries.awaiting_review(platform.uow(), owner_id=meter.resident_id)
    assert [(i.seq, i.status) for i in review] == [(2, "impossible_power")]
    assert [results(ingest(platform, [r]))[0] for r in readings[3:]] == ["accepted"] * 2
    assert wallets(platform, meter.resident_id)["ENERGY"] == -(1440 - 1000)
    with platform.uow() as uow:
        assert uow.energy.owner_totals(meter.resident_id).import_wh == 440
    assert queries.awaiting_review(platform.uow(), owner_id=meter.resident_id) == []
    audit_ok(platform)


def test_a_reset_and_a_jump_that_persists_wait_for_review(
    platform: Platform, clock: ManualClock
) -> None:
    """Energy that no reading will ever cover stays visible, never silently dropped."""
    meter = resident_with_meter(platform)
    late_evening(clock)
    ingest(
        platform,
        [
            meter.reading(0, ist(12), 5000, 0),
            meter.reading(1, ist(12, 1), 9000, 0),  # 240 kW: a jump ...
            meter.reading(2, ist(12, 30), 9100, 0),  # ... that persists
            meter.reading(3, ist(13), 3, 0),  # a meter reset
            meter.reading(4, ist(13, 30), 50, 0),
        ],
    )
    review = queries.awaiting_review(platform.uow(), owner_id=meter.resident_id)
    assert [(i.device_id, i.seq, i.status) for i in review] == [
        (meter.device_id, 1, "impossible_power"),
        (meter.device_id, 3, "meter_reset"),
    ]
    assert queries.awaiting_review(platform.uow()) == review  # the operators' view: every meter
    assert queries.awaiting_review(platform.uow(), owner_id=meter.resident_id + 1) == []


def test_a_backlog_split_across_workers_credits_what_orderly_delivery_does(
    platform: Platform, clock: ManualClock
) -> None:
    """A meter back online uploads 17 hours of readings; two workers take alternate ones and
    the odd ones commit first. No gap may be bridged: they all arrived within the horizon."""
    orderly, split = resident_with_meter(platform, "asha"), resident_with_meter(platform, "bala")
    late_evening(clock)

    def backlog(meter: Meter) -> list[str]:
        return [
            meter.reading(seq, ist(6) + 900 * seq, 3 * seq, sum((j * 53) % 700 for j in range(seq)))
            for seq in range(68)
        ]

    assert set(results(ingest(platform, backlog(orderly)))) == {"accepted"}
    readings = backlog(split)
    assert set(results(ingest(platform, readings[1::2], source="mqtt"))) == {"accepted"}
    assert wallets(platform, split.resident_id)["ENERGY"] == 0  # the odd ones wait
    clock.advance(5)
    assert set(results(ingest(platform, readings[0::2], source="mqtt"))) == {"accepted"}
    assert wallets(platform, split.resident_id) == wallets(platform, orderly.resident_id)
    audit_ok(platform)


def test_a_backlog_posted_newest_first_credits_what_orderly_delivery_does(
    platform: Platform, clock: ManualClock
) -> None:
    """5000, 3000 (a glitch below the high-water mark, within the power limit), 5100 Wh
    exported, in one POST newest first: the chain starts at the lowest reading, where orderly
    delivery starts it, so 100 Wh are credited, not 2100. Newest first one POST at a time, seq
    1 and 2 credit their 2100 Wh before seq 0 comes and contradicts them from below: it is
    refused and awaits review (`domain.energy`, *Trust at the bottom of the chain*)."""
    orderly, batch, one_by_one = (resident_with_meter(platform, n) for n in ("a", "b", "c"))
    late_evening(clock)

    def glitch(meter: Meter) -> list[str]:
        return [
            meter.reading(0, ist(12), 0, 5000),
            meter.reading(1, ist(12, 15), 0, 3000),
            meter.reading(2, ist(12, 30), 0, 5100),
        ]

    answers = ["accepted", "anomaly:register_backwards", "accepted"]
    assert results(ingest(platform, glitch(orderly))) == answers
    assert results(ingest(platform, glitch(batch)[::-1])) == answers[::-1]
    assert wallets(platform, batch.resident_id) == wallets(platform, orderly.resident_id)
    assert wallets(platform, batch.resident_id)["ENERGY"] == 100
    for r in glitch(one_by_one)[::-1]:
        ingest(platform, [r])
    assert wallets(platform, one_by_one.resident_id)["ENERGY"] == 5100 - 3000
    review = queries.awaiting_review(platform.uow(), owner_id=one_by_one.resident_id)
    assert [(i.seq, i.prev_seq, i.status) for i in review] == [(0, 1, "register_backwards")]
    audit_ok(platform)


def test_a_reading_lost_for_good_is_bridged_once_the_next_has_waited_the_horizon(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    r = [meter.reading(seq, ist(20) + 600 * seq, 0, 500 * seq) for seq in range(6)]
    assert results(ingest(platform, [r[0], r[2], r[3]])) == ["accepted"] * 3
    clock.advance(platform.tariff.gap_horizon_s - 1)
    assert results(ingest(platform, [r[4]])) == ["accepted"]
    assert wallets(platform, meter.resident_id)["ENERGY"] == 0  # still waiting for 1
    clock.advance(1)
    # The meter's next reading finds 2 overdue: the gap is bridged and everything credited.
    assert results(ingest(platform, [r[5]])) == ["accepted"]
    assert wallets(platform, meter.resident_id)["ENERGY"] == 2500
    assert results(ingest(platform, [r[1]])) == ["accepted"]  # fills the profile only
    assert wallets(platform, meter.resident_id)["ENERGY"] == 2500
    audit_ok(platform)


def sweep(platform: Platform, limit: int = 1000) -> energy.SweepOutcome:
    outcome: energy.SweepOutcome = platform.bus.handle(energy_commands.SweepWaitingReadings(limit))
    return outcome


def log_size(platform: Platform) -> int:
    with platform.uow() as uow:
        return uow.log.size()


def test_a_meter_gone_silent_after_a_lost_reading_is_credited_by_the_sweep(
    platform: Platform, clock: ManualClock
) -> None:
    silent = resident_with_meter(platform, "asha")
    talking = resident_with_meter(platform, "ravi")
    late_evening(clock)

    def readings(meter: Meter) -> list[str]:
        return [meter.reading(seq, ist(20) + 600 * seq, 0, 500 * seq) for seq in range(5)]

    s, t = readings(silent), readings(talking)
    for r in (s, t):  # reading 1 is lost for good
        assert results(ingest(platform, [r[0], r[2], r[3]])) == ["accepted"] * 3
    assert count(platform, energy_tables.meter_waiting) == 2
    clock.advance(platform.tariff.gap_horizon_s - 1)
    before = log_size(platform)
    assert sweep(platform) == energy.SweepOutcome()  # nothing overdue yet
    assert log_size(platform) == before
    assert wallets(platform, silent.resident_id)["ENERGY"] == 0

    clock.advance(1)
    # The talking meter's next reading bridges its gap; the silent meter has only the sweep.
    assert results(ingest(platform, [t[4]])) == ["accepted"]
    outcome = sweep(platform)
    assert (outcome.devices, outcome.intervals) == (1, 2)
    assert outcome.credited.export_wh == 1500
    assert wallets(platform, silent.resident_id)["ENERGY"] == 1500
    assert count(platform, energy_tables.meter_waiting) == 0
    before = log_size(platform)
    assert sweep(platform) == energy.SweepOutcome()
    assert log_size(platform) == before

    # When the silent meter speaks again, it ends up exactly where the talking one is.
    assert results(ingest(platform, [s[4], s[1]])) == ["accepted"] * 2
    assert wallets(platform, silent.resident_id) == wallets(platform, talking.resident_id)
    assert count(platform, energy_tables.meter_waiting) == 0  # 1 is inside the chain: nothing waits
    audit_ok(platform)


def test_the_sweep_bridges_below_the_base_and_works_through_every_overdue_device(
    platform: Platform, clock: ManualClock
) -> None:
    meters = [resident_with_meter(platform, f"person{i}") for i in range(5)]
    late_evening(clock)
    for m in meters:  # the chain starts at 2; 0 waits below it for 1, which never comes
        r = [m.reading(seq, ist(20) + 600 * seq, 0, 500 * seq) for seq in range(4)]
        assert results(ingest(platform, [r[2], r[3]])) == ["accepted"] * 2
        assert results(ingest(platform, [r[0]])) == ["accepted"]  # (with them, 0 would start it)
        assert wallets(platform, m.resident_id)["ENERGY"] == 500
    clock.advance(platform.tariff.gap_horizon_s)
    outcome = sweep(platform, limit=2)  # three transactions
    assert (outcome.devices, outcome.intervals) == (5, 5)
    for m in meters:
        assert wallets(platform, m.resident_id)["ENERGY"] == 1500
    assert count(platform, energy_tables.meter_waiting) == 0
    audit_ok(platform)


def test_only_readings_beside_a_chain_are_marked_for_the_sweep(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform, "asha")
    broken = resident_with_meter(platform, "ravi")
    late_evening(clock)
    now = clock.now_ns() // 10**9
    # A device whose every reading is anomalous has no chain to bridge to: nothing to sweep.
    assert results(ingest(platform, [broken.reading(5, now + 86_400, 0, 0)])) == [
        "anomaly:future_timestamp"
    ]
    assert count(platform, energy_tables.meter_waiting) == 0
    r = [meter.reading(seq, ist(20) + 600 * seq, 0, 500 * seq) for seq in range(3)]
    assert results(ingest(platform, [r[0], r[2]])) == ["accepted"] * 2
    assert count(platform, energy_tables.meter_waiting) == 1
    assert results(ingest(platform, [r[1]])) == ["accepted"]  # the missing one came
    assert count(platform, energy_tables.meter_waiting) == 0
    assert wallets(platform, meter.resident_id)["ENERGY"] == 1000
    audit_ok(platform)


def test_audit_verify_finds_a_sweep_mark_removed_or_invented(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform, "asha")
    other = resident_with_meter(platform, "ravi")
    late_evening(clock)
    r = [meter.reading(seq, ist(20) + 600 * seq, 0, 500 * seq) for seq in range(3)]
    ingest(platform, [r[0], r[2], other.reading(0, ist(20), 0, 0)])
    audit_ok(platform)
    with platform.engine.begin() as conn:
        [marked] = conn.execute(select(energy_tables.meter_waiting)).mappings().all()
        conn.execute(energy_tables.meter_waiting.delete())
        conn.execute(
            energy_tables.meter_waiting.insert().values({**marked, "device_id": other.device_id})
        )
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    found = {(p.table, p.key) for p in report.problems}
    assert found == {("meter_waiting", meter.device_id), ("meter_waiting", other.device_id)}

    # A mark in place, but for another owner or another kind's rules, is found too.
    for change in ({"owner_id": other.resident_id}, {"kind": "charger"}, {"registered_at": 1}):
        with platform.engine.begin() as conn:
            conn.execute(energy_tables.meter_waiting.delete())
            conn.execute(energy_tables.meter_waiting.insert().values({**marked, **change}))
        report = audit.verify(platform.uow(), platform.log_signer.verifier)
        assert [(p.table, p.key) for p in report.problems] == [
            ("meter_waiting", meter.device_id)
        ], change
    with platform.engine.begin() as conn:
        conn.execute(energy_tables.meter_waiting.delete())
        conn.execute(energy_tables.meter_waiting.insert().values(marked))
    audit_ok(platform)


def test_readings_wait_for_a_missing_one_and_are_credited_when_it_comes(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    r = [meter.reading(seq, ist(20) + 900 * seq, 0, 500 * seq) for seq in range(5)]
    assert results(ingest(platform, [r[0], r[2], r[3]])) == ["accepted"] * 3
    assert wallets(platform, meter.resident_id)["ENERGY"] == 0  # 2 and 3 wait for 1
    assert results(ingest(platform, [r[4], r[1]])) == ["accepted"] * 2
    assert wallets(platform, meter.resident_id)["ENERGY"] == 2000
    audit_ok(platform)


# -- tariffs and verification options -------------------------------------------------------


def test_a_new_tariff_is_logged_once_and_carries_follow_it(
    platform: Platform, clock: ManualClock, database_url: str, tmp_path: Path
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    ingest(platform, [meter.reading(0, ist(4), 0, 0), meter.reading(1, ist(4, 15), 0, 1)])
    shipped = Path(energy.__file__).parent.parent / "data" / "tariffs.toml"
    path = tmp_path / "tariffs.toml"
    path.write_text(shipped.read_text().replace('points_per_kwh = "1"', 'points_per_kwh = "3"'))
    settings = platform.settings.model_copy(update={"tariffs_path": path})
    again = bootstrap(settings, clock=clock)
    try:
        ingest(again, [meter.reading(2, ist(4, 30), 0, 1001)])
        assert count(again, energy_tables.tariffs) == 2
        # 1 Wh at 1 point/kWh, then 1000 Wh at 3 points/kWh.
        assert wallets(again, meter.resident_id)["CREDIT"] == 1 + 3000
        assert wallets(again, meter.resident_id)["CARBON"] == 1001 * 861 // 1000
        audit_ok(again)
    finally:
        again.close()


def test_a_replayed_reading_is_answered_from_the_store_without_a_signature_check(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    late_evening(clock)
    stored = [meter.reading(seq, ist(12) + 900 * seq, 0, 1000 * seq) for seq in range(3)]
    assert results(ingest(platform, stored)) == ["accepted"] * 3
    credited = wallets(platform, meter.resident_id)
    head, payload, signature = stored[1].split(".")
    tampered = f"{head}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    # The same claims signed again into other bytes (the payload's keys in another order).
    resigned = sign(meter.key, meter.device_id, export_wh=2000, import_wh=0, seq=2,
                    ts=ist(12) + 1800)  # fmt: skip
    assert resigned != stored[2]
    batch = [stored[0], tampered, resigned, stored[2]]

    checked = platform.reading_verifier.check(batch)
    assert checked.duplicates == {0: meter.device_id, 3: meter.device_id}  # looked up only
    assert checked.rejected == {1: "bad_signature"}  # same seq and claims, not the same bytes
    assert [v.index for v in checked.verified] == [2]  # authentic: the writer finds it stored

    assert results(ingest(platform, batch)) == [
        "duplicate",
        "rejected:bad_signature",
        "duplicate",
        "duplicate",
    ]
    assert wallets(platform, meter.resident_id) == credited


def test_signatures_checked_in_a_process_pool_give_the_same_answers(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform)
    stranger = Ed25519PrivateKey.generate()
    items: list[object] = [meter.reading(seq, ist(1) + seq, 0, seq) for seq in range(40)]
    items[7] = sign(stranger, meter.device_id, seq=7, ts=ist(1), import_wh=0, export_wh=0)
    items[9] = "junk"
    local = ReadingVerifier(platform.uow, workers=0)
    pool = ReadingVerifier(platform.uow, workers=2, pool_threshold=1)
    try:
        a, b = local.check(items), pool.check(items)
    finally:
        pool.close()
    assert (
        [v.index for v in a.verified]
        == [v.index for v in b.verified]
        == [i for i in range(40) if i not in (7, 9)]
    )
    assert a.rejected == b.rejected == {7: "bad_signature", 9: "malformed"}


# -- a collision with a platform-minted id is an alarm, never a wedge -----------------------


def plant_transfer(platform: Platform, transfer_id: int) -> None:
    """Put a foreign transfer at `transfer_id` straight into the store, past the API's guard
    (as a bug or a hand-edited database would): the ledger then refuses the platform's own
    posting at that id as `exists_with_different_fields`."""
    platform.bus.handle(
        ledger_commands.CreateAccounts(
            [NewAccount(1, Ledger.CREDIT, 1), NewAccount(2, Ledger.CREDIT, 1)]
        )
    )
    uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
    with uow:
        last = uow.ledger.lock_ledger()
        planted = Transfer(transfer_id, 1, 2, 7, Ledger.CREDIT)
        outcome = ledger_service.post_transfers(uow, [planted], last_timestamp=last, atomic=True)
        assert not outcome.failed
        uow.commit()


def next_interval_id(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        return (
            int(conn.execute(select(func.max(energy_tables.meter_intervals.c.id))).scalar_one()) + 1
        )


def test_a_planted_collision_leaves_one_interval_uncredited_and_every_other_meter_credited(
    platform: Platform, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    asha = resident_with_meter(platform, "asha")
    ravi = resident_with_meter(platform, "ravi")
    late_evening(clock)
    ingest(platform, [asha.reading(0, ist(10), 0, 0), ravi.reading(0, ist(10), 0, 0)])
    collides = next_interval_id(platform)  # asha's next interval: first in the next batch
    plant_transfer(platform, transfer_id(collides, EnergyCode.EXPORT_CREDIT))

    with caplog.at_level(logging.ERROR, logger="cityshare.energy.handlers"):
        outcome = ingest(
            platform, [asha.reading(1, ist(10, 15), 0, 1000), ravi.reading(1, ist(10, 15), 0, 1000)]
        )

    # No exception reached the door: both readings are stored and recorded as intervals.
    assert results(outcome) == ["accepted", "accepted"]
    assert outcome.intervals == 2
    assert outcome.uncredited == [collides]
    assert outcome.credited.export_wh == 1000  # ravi's only
    assert wallets(platform, asha.resident_id) == {"CREDIT": 0, "CARBON": 0, "ENERGY": 0}
    assert wallets(platform, ravi.resident_id) == {"CREDIT": 800, "CARBON": 861, "ENERGY": 1000}
    [alarm] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(collides) in alarm.getMessage()
    assert str(transfer_id(collides, EnergyCode.EXPORT_CREDIT)) in alarm.getMessage()
    assert "exists_with_different_fields" in alarm.getMessage()

    # The ledger still balances, and the audit names the one uncredited interval.
    assert ledger_service.check_invariants(platform.uow()).ok
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert [(p.table, p.key) for p in report.problems] == [("meter_intervals", collides)]

    # Nothing is wedged: the next readings of both meters are credited as usual.
    outcome = ingest(
        platform, [asha.reading(2, ist(10, 30), 0, 2000), ravi.reading(2, ist(10, 30), 0, 2000)]
    )
    assert outcome.uncredited == []
    assert wallets(platform, asha.resident_id)["ENERGY"] == 1000
    assert wallets(platform, ravi.resident_id)["ENERGY"] == 2000
