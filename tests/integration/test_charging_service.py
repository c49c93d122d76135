"""The charging capability behind the OCPP door, on SQLite and PostgreSQL: id tokens and
charger passwords, sessions credited through the same `IngestReadings` as every door, the
peak incentive, exactly-once across resends, restarts and two central-system processes
sharing one database, chargers revoked while connected, and the audit log."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from cityshare.audit import verify as audit
from cityshare.bootstrap import Platform, bootstrap
from cityshare.charging import commands as charging_commands
from cityshare.charging import handlers as charging
from cityshare.charging.handlers import Charger
from cityshare.charging.model import (
    ChargingError,
    OcppVersion,
    Sample,
    SessionRow,
    SessionStatus,
    hash_password,
)
from cityshare.charging.ocpp.door import ChargerRevokedError, ChargingDoor, HandshakeError
from cityshare.energy import commands as energy_commands
from cityshare.energy import queries as energy
from cityshare.energy.handlers import IngestOutcome
from cityshare.identity import access
from cityshare.identity import commands as identity_commands
from cityshare.identity import handlers as identity
from cityshare.identity.access import ReadRefused
from cityshare.identity.devices import parse_public_key
from cityshare.identity.policy import Domain, Purpose, Role
from cityshare.identity.residents import wallet_account_id
from cityshare.identity.tokens import Principal
from cityshare.kernel.clock import ManualClock
from cityshare.ledger.model import Ledger
from energy_helpers import add_device, enrol, ingest, wallets
from identity_helpers import new_key

PASSWORD = "s3cret-charger-pass"
CARD = "04a2b3c4d5e6f7"


def utc(text_: str) -> int:
    """Unix seconds of a UTC time on 2023-11-14 (the test clock stands at 22:13:20 UTC)."""
    return int(dt.datetime.fromisoformat(f"2023-11-14T{text_}:00+00:00").timestamp())


@dataclass
class World:
    door: ChargingDoor
    charger: Charger
    org_id: int
    resident_id: int
    vehicle: str


def world(platform: Platform, person: str = "asha", name: str = "Volt Bays") -> World:
    org = platform.bus.handle(identity_commands.CreateOrganisation("operator", name, "energy"))
    device = platform.bus.handle(
        identity_commands.RegisterDevice(org.id, "charger", parse_public_key(new_key()[1]), "Bay 1")
    )
    platform.bus.handle(charging_commands.SetChargerPassword(org.id, device.id, PASSWORD))
    resident = enrol(platform, person)
    vehicle = add_device(platform, resident, "vehicle").device_id
    platform.bus.handle(charging_commands.RegisterIdToken(resident, vehicle, CARD))
    door = ChargingDoor(platform)
    charger = door.authenticate(device.id, _basic(device.id, PASSWORD))
    return World(door, charger, org.id, resident, vehicle)


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def start(w: World, at: str, token: str = CARD, meter_start: int = 1_000) -> SessionRow:
    return w.door.start(w.charger, OcppVersion.V16, f"1@{utc(at)}", 1, token, utc(at),
                        meter_start)  # fmt: skip


def export(w: World, session: SessionRow, *samples: tuple[str, int]) -> None:
    w.door.meter_values(w.charger, session, [Sample(utc(t), None, wh) for t, wh in samples], "{}")


def test_tokens_name_one_vehicle_and_only_a_keyed_hash_is_kept(platform: Platform) -> None:
    w = world(platform)
    # Case does not matter (OCPP compares idTags case-insensitively): the same registration.
    again = platform.bus.handle(
        charging_commands.RegisterIdToken(w.resident_id, w.vehicle, CARD.upper())
    )
    assert [t.id for t in charging.vehicle_tokens(platform.uow(), w.resident_id, w.vehicle)] == [
        again.id
    ]
    other = enrol(platform, "bala")
    their_car = add_device(platform, other, "vehicle").device_id
    with pytest.raises(ChargingError) as refused:
        platform.bus.handle(charging_commands.RegisterIdToken(other, their_car, CARD))
    assert refused.value.code == "token_in_use"
    with pytest.raises(ChargingError) as not_theirs:
        platform.bus.handle(charging_commands.RegisterIdToken(other, w.vehicle, "ANOTHER"))
    assert not_theirs.value.code == "not_found"
    meter = add_device(platform, other, "meter").device_id
    with pytest.raises(ChargingError) as not_a_vehicle:
        platform.bus.handle(charging_commands.RegisterIdToken(other, meter, "ANOTHER"))
    assert not_a_vehicle.value.code == "not_a_vehicle"
    with pytest.raises(ChargingError) as bad:
        platform.bus.handle(
            charging_commands.RegisterIdToken(w.resident_id, w.vehicle, "has space")
        )
    assert bad.value.code == "invalid_id_token"
    with platform.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM vehicle_id_tokens")).scalars().all()
    assert stored
    assert all(CARD.upper() not in h and CARD not in h for h in stored)

    # Removed, the token may go to another vehicle, and is then answered for that one.
    platform.bus.handle(charging_commands.RemoveIdToken(w.resident_id, w.vehicle, again.id))
    assert w.door.authorize(CARD) == SessionStatus.UNKNOWN
    platform.bus.handle(charging_commands.RegisterIdToken(other, their_car, CARD))
    assert w.door.authorize(CARD) == SessionStatus.ACCEPTED


def test_chargers_log_in_with_their_current_password_only(platform: Platform) -> None:
    w = world(platform)
    charger = w.charger.device_id
    with pytest.raises(HandshakeError) as wrong:
        w.door.authenticate(charger, _basic(charger, "not-the-password"))
    assert wrong.value.status == 401
    platform.bus.handle(
        charging_commands.SetChargerPassword(w.org_id, charger, "a-brand-new-password")
    )
    with pytest.raises(HandshakeError):
        w.door.authenticate(charger, _basic(charger, PASSWORD))
    renewed = w.door.authenticate(charger, _basic(charger, "a-brand-new-password"))
    assert (renewed.device_id, renewed.operator_id) == (charger, w.org_id)
    # A connection let in with the old password is no longer admitted; the new one is.
    assert not w.door.admitted(w.charger)
    assert w.door.admitted(renewed)
    with platform.engine.connect() as conn:
        hashes = conn.execute(text("SELECT secret_hash FROM charger_secrets")).scalars().all()
    assert len(hashes) == 2
    assert all(h.startswith("scrypt$") and PASSWORD not in h for h in hashes)

    # Only an operator's chargers take passwords, and short ones are refused.
    with pytest.raises(ChargingError) as short:
        platform.bus.handle(charging_commands.SetChargerPassword(w.org_id, charger, "short"))
    assert short.value.code == "invalid_password"
    community = platform.bus.handle(identity_commands.CreateOrganisation("community", "Roof Share"))
    meter = platform.bus.handle(
        identity_commands.RegisterDevice(community.id, "charger", parse_public_key(new_key()[1]))
    )
    with pytest.raises(ChargingError) as not_operator:
        platform.bus.handle(charging_commands.SetChargerPassword(community.id, meter.id, PASSWORD))
    assert not_operator.value.code == "not_an_operator"


def test_a_password_hash_changed_in_the_database_admits_no_charger(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """The hash is not in the public log; its row's seal (keyed by a secret that is neither in
    the database nor in the log) covers it: a hash written by anyone but the platform lets
    nobody in, not even with the password it was made from, is logged, and is reported by
    `audit verify`."""
    w = world(platform)
    charger = w.charger.device_id
    with platform.engine.begin() as conn:
        conn.execute(
            text("UPDATE charger_secrets SET secret_hash = :h"),
            {"h": hash_password("an-attackers-password")},
        )
    with caplog.at_level(logging.ERROR, logger="cityshare.kernel.seals"):
        for password in ("an-attackers-password", PASSWORD):
            with pytest.raises(HandshakeError) as refused:
                w.door.authenticate(charger, _basic(charger, password))
            assert refused.value.status == 401
        # A connection let in before the change is no longer admitted either.
        assert not w.door.admitted(w.charger)
    assert any(
        r.levelno == logging.ERROR and "charger_secrets 1: the row's seal does not verify"
        in r.getMessage() for r in caplog.records
    )  # fmt: skip
    report = audit.verify(platform.uow(), platform.log_signer.verifier, sealer=platform.sealer)
    assert [str(p) for p in report.problems] == [
        "charger_secrets 1: the row's seal does not verify (a field was changed outside the "
        "platform, or the row was sealed with another key)"
    ]
    # Its operator setting a new password lets it in again.
    platform.bus.handle(
        charging_commands.SetChargerPassword(w.org_id, charger, "a-brand-new-password")
    )
    assert w.door.authenticate(charger, _basic(charger, "a-brand-new-password"))


def test_a_v2g_export_at_peak_earns_more_per_wh_than_at_midday(platform: Platform) -> None:
    w = world(platform)
    midday = start(w, "06:00")  # 11:30 in Kolkata: the solar window (x 0.8)
    export(w, midday, ("06:00", 10_000), ("06:30", 11_000))
    after_midday = wallets(platform, w.resident_id)
    peak = start(w, "13:00")  # 18:30 in Kolkata: the peak window (x 1.2 x 1.5 incentive)
    export(w, peak, ("13:00", 11_000), ("13:30", 12_000))
    after_peak = wallets(platform, w.resident_id)

    assert after_midday["CREDIT"] == 800  # 1000 Wh x 1 milli-point x 0.8
    assert after_peak["CREDIT"] - after_midday["CREDIT"] == 1_800  # x 1.2 x 1.5
    assert after_peak["CARBON"] == 2 * 861  # the same carbon factor at any hour


def test_resends_and_restarts_credit_each_interval_once(platform: Platform) -> None:
    w = world(platform)
    session = start(w, "10:00")
    assert start(w, "10:00").id == session.id  # a resent start: the same transaction
    export(w, session, ("10:00", 5_000), ("10:10", 5_600))
    export(w, session, ("10:00", 5_000), ("10:10", 5_600))  # resent as it was
    # The central system restarts: a new door carries on from what is stored.
    restarted = ChargingDoor(platform)
    stored = charging.session_at(platform.uow(), w.charger.device_id, session.id)
    assert stored is not None
    resent = [Sample(utc("10:10"), None, 5_600), Sample(utc("10:20"), None, 6_000)]
    restarted.meter_values(w.charger, stored, resent, "{}")
    restarted.stop(w.charger, stored, utc("10:20"), 1_000, "Local")
    restarted.stop(w.charger, stored, utc("10:20"), 1_000, "Local")
    assert wallets(platform, w.resident_id)["ENERGY"] == 1_000
    [view] = charging.owner_sessions(platform.uow(), w.resident_id)
    assert view.totals.export_wh == 1_000
    assert view.stop is not None
    assert view.stop.reason == "Local"
    with platform.engine.connect() as conn:
        seqs = (
            conn.execute(
                text("SELECT seq FROM meter_readings WHERE device_id = :c ORDER BY seq"),
                {"c": session.chain_id},
            )
            .scalars()
            .all()
        )
    assert seqs == [0, 1, 2]


def test_a_reading_planned_but_never_stored_is_bridged_by_the_sweep(
    platform: Platform, clock: ManualClock
) -> None:
    w = world(platform)
    session = start(w, "06:00")
    export(w, session, ("06:00", 10_000))
    # Planned, then the process dies before the readings are stored; the charger never resends.
    w.door.plan(w.charger, session, [Sample(utc("06:10"), None, 10_400)], "{}")
    export(w, session, ("06:20", 11_000))
    assert wallets(platform, w.resident_id)["ENERGY"] == 0  # 06:20 waits for 06:10
    clock.advance(platform.tariff.gap_horizon_s)
    # A transaction's chain is no device: the sweep credits its owner all the same, as if
    # 06:10 had never been planned (11:30-11:50 in Kolkata, the solar window: x 0.8).
    swept = platform.bus.handle(energy_commands.SweepWaitingReadings())
    assert (swept.devices, swept.intervals) == (1, 1)
    assert wallets(platform, w.resident_id) == {"CREDIT": 800, "CARBON": 861, "ENERGY": 1_000}
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, report.problems


#: Changes to the plan of a chain whose 06:10 sample was planned (seq 1) but never stored.
PLAN_TAMPERS = {
    "unstored-seq-moved": (
        "UPDATE charging_chain_seqs SET seq = 7 WHERE seq = 1",
        "the plan has a gap",
    ),
    "unstored-row-moved-to-another-chain": (
        "UPDATE charging_chain_seqs SET chain_id = 'ocpp-aaaaaaaaaaaaaaaaaaaaaaaa' WHERE seq = 1",
        "planned for a chain that is no charging session's",
    ),
    "unstored-row-removed": (
        "DELETE FROM charging_chain_seqs WHERE seq = 1",
        "the plan has a gap",
    ),
    "stored-row-removed": (
        "DELETE FROM charging_chain_seqs WHERE seq = 2",
        "a reading of the chain was stored for it, but it is not planned",
    ),
    "unstored-time-after-the-next": (
        "UPDATE charging_chain_seqs SET ts = ts + 1200 WHERE seq = 1",
        "not after seq 1",
    ),
    "whole-plan-shifted": (
        "UPDATE charging_chain_seqs SET seq = seq + 5",
        "follows no stored reading",
    ),
}


@pytest.mark.parametrize("change", PLAN_TAMPERS.values(), ids=PLAN_TAMPERS.keys())
def test_a_plan_changed_in_the_database_is_reported_even_where_no_reading_was_stored(
    platform: Platform, change: tuple[str, str]
) -> None:
    """A planned row is what `plan_readings` gave out: contiguous seqs of a session's chain,
    rising times, every stored reading planned. A row moved or removed breaks that shape, so
    `audit verify` sees it even when no reading was stored for the row."""
    w = world(platform)
    session = start(w, "06:00")
    export(w, session, ("06:00", 10_000))
    w.door.plan(w.charger, session, [Sample(utc("06:10"), None, 10_400)], "{}")
    export(w, session, ("06:20", 11_000))
    verifier = platform.log_signer.verifier
    assert audit.verify(platform.uow(), verifier).ok
    sql, expected = change
    with platform.engine.begin() as conn:
        conn.execute(text(sql))
    report = audit.verify(platform.uow(), verifier)
    assert any(p.table == "charging_chain_seqs" and expected in str(p) for p in report.problems), [
        str(p) for p in report.problems
    ]


def test_unknown_and_blocked_tokens_credit_nobody(platform: Platform) -> None:
    w = world(platform)
    stranger = start(w, "10:00", token="NOBODY")
    assert (stranger.status, stranger.owner_id) == (SessionStatus.UNKNOWN, None)
    export(w, stranger, ("10:00", 1_000), ("10:30", 2_000))
    platform.bus.handle(identity_commands.RevokeDevice(w.resident_id, w.vehicle))
    blocked = start(w, "11:00")
    assert blocked.status == SessionStatus.BLOCKED
    export(w, blocked, ("11:00", 1_000), ("11:30", 2_000))
    assert wallets(platform, w.resident_id) == {"CREDIT": 0, "CARBON": 0, "ENERGY": 0}
    with platform.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM meter_readings")).scalar_one() == 0


def test_attested_readings_come_only_from_the_ocpp_door(platform: Platform) -> None:
    w = world(platform)
    forged = energy_commands.AttestedReading(
        "ocpp-forged", "charger", w.resident_id, 0, 0, utc("10:00"), 0, 0, "{}"
    )
    for source in ("http", "mqtt"):
        outcome = platform.bus.handle(energy_commands.IngestReadings([forged], source))
        assert [r.result for r in outcome.results] == ["rejected:malformed"]
    with platform.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM meter_readings")).scalar_one() == 0


def test_sessions_and_tokens_are_in_the_audit_log(platform: Platform) -> None:
    w = world(platform)
    session = start(w, "10:00")
    export(w, session, ("10:00", 5_000), ("10:10", 5_600))
    w.door.stop(w.charger, session, utc("10:10"), 1_000, None)
    verifier = platform.log_signer.verifier
    report = audit.verify(platform.uow(), verifier)
    assert report.ok, [str(p) for p in report.problems]
    assert {
        t: report.records[t]
        for t in ("charger_secrets", "vehicle_id_tokens", "charging_sessions",
                  "charging_session_stops")
    } == {"charger_secrets": 1, "vehicle_id_tokens": 1, "charging_sessions": 1,
          "charging_session_stops": 1}  # fmt: skip

    # Whom a session credits cannot be changed without `audit verify` noticing.
    with platform.engine.begin() as conn:
        conn.execute(text("UPDATE charging_sessions SET owner_id = owner_id + 1"))
    report = audit.verify(platform.uow(), verifier)
    assert not report.ok
    assert any(p.table == "charging_sessions" for p in report.problems)


def chain_readings(platform: Platform, chain: str) -> list[tuple[int, int, int]]:
    """(seq, ts, export_wh) of a chain's stored readings, by seq."""
    with platform.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, ts, export_wh FROM meter_readings WHERE device_id = :c ORDER BY seq"),
            {"c": chain},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def test_a_charger_revoked_or_given_a_new_password_is_no_longer_admitted(
    platform: Platform,
) -> None:
    w = world(platform)
    session = start(w, "10:00")
    export(w, session, ("10:00", 5_000), ("10:10", 5_600))
    credited = wallets(platform, w.resident_id)
    assert credited["ENERGY"] == 600

    platform.bus.handle(charging_commands.SetChargerPassword(w.org_id, w.charger.device_id,
                                                    "a-brand-new-password"))  # fmt: skip
    assert not w.door.admitted(w.charger)
    with pytest.raises(ChargerRevokedError):
        export(w, session, ("10:20", 6_000))
    # Let in again with the new password, it carries on; then its operator revokes it.
    charger = w.charger.device_id
    w.charger = w.door.authenticate(charger, _basic(charger, "a-brand-new-password"))
    export(w, session, ("10:20", 6_000))
    assert wallets(platform, w.resident_id)["ENERGY"] == 1_000
    platform.bus.handle(identity_commands.RevokeDevice(w.org_id, w.charger.device_id))
    assert not w.door.admitted(w.charger)
    with pytest.raises(ChargerRevokedError):
        export(w, session, ("10:30", 7_000))
    with pytest.raises(ChargerRevokedError):
        start(w, "11:00")
    assert wallets(platform, w.resident_id)["ENERGY"] == 1_000
    assert [ts for _, ts, _ in chain_readings(platform, session.chain_id)] == [
        utc("10:00"),
        utc("10:10"),
        utc("10:20"),
    ]
    assert len(charging.operator_sessions(platform.uow(), w.org_id, platform.pseudonym_secret)) == 1


@pytest.fixture
def second_process(platform: Platform) -> Iterator[Platform]:
    """Another central-system process on the same database: its own engine, bus and door."""
    other = bootstrap(platform.settings, clock=platform.clock)
    yield other
    other.close()


#: A V2G session in the solar window (x 0.8): a baseline, then two messages; M2 is the
#: transaction's last (its stop), so a reading of it that went missing would never be made up.
MESSAGES = {"M0": ("06:00", 10_000), "M1": ("06:10", 10_400), "M2": ("06:20", 11_000)}

#: Steps of two processes A and B serving the same transaction (the charger sends M1 to A,
#: loses the connection and sends M2, or M1 again, to B), interleaved: "plan" is the first
#: half of a MeterValues (the readings planned and recorded), "store" the second (handed to
#: the energy capability).
INTERLEAVINGS = {
    "a-stores-first": [("A", "plan", "M1"), ("B", "plan", "M2"), ("A", "store", "M1"),
                       ("B", "store", "M2")],
    "b-stores-first": [("A", "plan", "M1"), ("B", "plan", "M2"), ("B", "store", "M2"),
                       ("A", "store", "M1")],
    "later-message-planned-first": [("B", "plan", "M2"), ("A", "plan", "M1"),
                                    ("A", "store", "M1"), ("B", "store", "M2")],
    "resent-to-b-meanwhile": [("A", "plan", "M1"), ("B", "plan", "M1"), ("B", "store", "M1"),
                              ("B", "plan", "M2"), ("B", "store", "M2"), ("A", "store", "M1")],
}  # fmt: skip


@pytest.mark.parametrize("steps", INTERLEAVINGS.values(), ids=INTERLEAVINGS.keys())
def test_two_processes_serving_one_transaction_lose_nothing_and_double_nothing(
    platform: Platform, second_process: Platform, steps: list[tuple[str, str, str]]
) -> None:
    w = world(platform)
    doors = {"A": w.door, "B": ChargingDoor(second_process)}
    session = start(w, "06:00", meter_start=1_000)

    def samples(message: str) -> list[Sample]:
        at, wh = MESSAGES[message]
        return [Sample(utc(at), None, wh)]

    outcomes: list[IngestOutcome | None] = [
        w.door.meter_values(w.charger, session, samples("M0"), "{}")
    ]
    planned: dict[tuple[str, str], list[energy_commands.AttestedReading]] = {}
    for door, step, message in steps:
        if step == "plan":
            planned[door, message] = doors[door].plan(w.charger, session, samples(message), "{}")
        else:
            outcomes.append(doors[door].ingest(session, planned.pop((door, message))))

    results = [r.result for o in outcomes if o is not None for r in o.results]
    assert set(results) <= {"accepted", "duplicate"}
    # Everything the charger reported is credited once: 1000 Wh at 0.8 milli-points/Wh.
    credited = wallets(platform, w.resident_id)
    assert credited == {"CREDIT": 800, "CARBON": 861, "ENERGY": 1_000}
    stored = chain_readings(platform, session.chain_id)
    assert [seq for seq, _, _ in stored] == list(range(len(stored)))
    assert stored[-1] == (len(stored) - 1, utc("06:20"), 11_000)
    assert all(a[1] < b[1] for a, b in itertools.pairwise(stored))
    # (M1 is a reading of its own unless M2 was planned before it: then it is older than the
    # chain's newest sample and the interval to M2 credits its energy.)

    # Every message resent to either process afterwards changes nothing.
    for door in doors.values():
        for message in MESSAGES:
            door.meter_values(w.charger, session, samples(message), "{}")
    assert wallets(platform, w.resident_id) == credited
    assert chain_readings(platform, session.chain_id) == stored


def test_a_chain_from_before_planned_readings_were_recorded_carries_on(
    platform: Platform,
) -> None:
    w = world(platform)
    session = start(w, "06:00", meter_start=1_000)
    export(w, session, ("06:00", 10_000), ("06:10", 10_400))
    with platform.engine.begin() as conn:  # as a database upgraded mid-session has it
        conn.execute(text("DELETE FROM charging_chain_seqs"))
    export(w, session, ("06:10", 10_400), ("06:20", 11_000))
    assert wallets(platform, w.resident_id)["ENERGY"] == 1_000
    assert [seq for seq, _, _ in chain_readings(platform, session.chain_id)] == [0, 1, 2]
    # Its plan starts after the readings from before: `audit verify` takes that as it is.
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, [str(p) for p in report.problems]


def test_a_charging_operators_staff_do_not_reach_the_owners_who_charged_there(
    platform: Platform, clock: ManualClock
) -> None:
    """Access scoping (`cityshare.identity.policy`): a vehicle's sessions at an operator's
    chargers relate its owner to nothing there. The operator reads its own sessions, with the
    vehicle as its pseudonym (DESIGN §3: no organisation tracks a vehicle across the city);
    the owner's profile, home meters awaiting review and wallets stay out of reach (404
    not_related, as before the car charged), and nothing is read of them."""
    w = world(platform)
    bala = enrol(platform, "bala")
    staff = Principal(
        "volt-desk", Role.OPERATOR, frozenset({Purpose.GRID_OPERATIONS}), Domain.ENERGY,
        org_id=w.org_id,
    )  # fmt: skip
    with platform.uow() as uow:
        vid = uow.identity.latest_enrolment(w.resident_id)
    assert vid is not None
    home = add_device(platform, w.resident_id, "meter")  # a meter reset awaits review
    clock.advance(3600)
    t0 = home.registered_at
    readings = [home.reading(0, t0, 5000), home.reading(1, t0 + 900, 5100),
                home.reading(2, t0 + 1800, 3)]  # fmt: skip
    ingested = [r.result for r in ingest(platform, readings).results]
    assert ingested == ["accepted", "accepted", "anomaly:meter_reset"]
    assert energy.awaiting_review(platform.uow(), after_id=0, limit=10)

    session = start(w, "11:00")
    assert session.status == SessionStatus.ACCEPTED
    seen = charging.operator_sessions(platform.uow(), w.org_id, platform.pseudonym_secret)
    assert [s.session.id for s in seen] == [session.id]
    assert seen[0].vehicle not in (None, w.vehicle)  # its pseudonym, not the device id
    assert access.relationships(
        platform.uow(), w.org_id, [w.resident_id, bala], default_provider=None
    ) == {w.resident_id: set(), bala: set()}
    with pytest.raises(ReadRefused) as profile:
        platform.personal_data.profile(staff, vid.vid, Purpose.GRID_OPERATIONS)
    assert (profile.value.status, profile.value.code) == (404, "not_related")
    wallet = wallet_account_id(w.resident_id, Ledger.CREDIT)
    with pytest.raises(ReadRefused) as account:
        platform.personal_data.account(staff, wallet, Purpose.GRID_OPERATIONS)
    assert (account.value.status, account.value.code) == (404, "not_related")
    review = platform.personal_data.awaiting_review(
        staff, Purpose.GRID_OPERATIONS, after=0, limit=10
    )
    assert review == []
    assert identity.access_log(platform.uow(), w.resident_id) == []
