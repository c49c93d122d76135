"""The charging capability behind the OCPP door, on SQLite and PostgreSQL: id tokens and
charger passwords, sessions credited through the same `IngestReadings` as every door, the
peak incentive, exactly-once across resends and restarts, and the audit log."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from cityshare.bootstrap import Platform
from cityshare.domain import commands
from cityshare.domain.charging import ChargingError, OcppVersion, SessionStatus
from cityshare.domain.devices import parse_public_key
from cityshare.ingest.ocpp.door import ChargingDoor, HandshakeError
from cityshare.ingest.ocpp.sessions import Sample
from cityshare.services import audit, charging
from cityshare.services.charging import Charger
from cityshare.store.charging_repo import SessionRow
from energy_helpers import add_device, enrol, wallets
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
    org = platform.bus.handle(commands.CreateOrganisation("operator", name, "energy"))
    device = platform.bus.handle(
        commands.RegisterDevice(org.id, "charger", parse_public_key(new_key()[1]), "Bay 1")
    )
    platform.bus.handle(commands.SetChargerPassword(org.id, device.id, PASSWORD))
    resident = enrol(platform, person)
    vehicle = add_device(platform, resident, "vehicle").device_id
    platform.bus.handle(commands.RegisterIdToken(resident, vehicle, CARD))
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
    w.door.meter_values(session, [Sample(utc(t), None, wh) for t, wh in samples], "{}")


def test_tokens_name_one_vehicle_and_only_a_keyed_hash_is_kept(platform: Platform) -> None:
    w = world(platform)
    # Case does not matter (OCPP compares idTags case-insensitively): the same registration.
    again = platform.bus.handle(commands.RegisterIdToken(w.resident_id, w.vehicle, CARD.upper()))
    assert [t.id for t in charging.vehicle_tokens(platform.uow(), w.resident_id, w.vehicle)] == [
        again.id
    ]
    other = enrol(platform, "bala")
    their_car = add_device(platform, other, "vehicle").device_id
    with pytest.raises(ChargingError) as refused:
        platform.bus.handle(commands.RegisterIdToken(other, their_car, CARD))
    assert refused.value.code == "token_in_use"
    with pytest.raises(ChargingError) as not_theirs:
        platform.bus.handle(commands.RegisterIdToken(other, w.vehicle, "ANOTHER"))
    assert not_theirs.value.code == "not_found"
    meter = add_device(platform, other, "meter").device_id
    with pytest.raises(ChargingError) as not_a_vehicle:
        platform.bus.handle(commands.RegisterIdToken(other, meter, "ANOTHER"))
    assert not_a_vehicle.value.code == "not_a_vehicle"
    with pytest.raises(ChargingError) as bad:
        platform.bus.handle(commands.RegisterIdToken(w.resident_id, w.vehicle, "has space"))
    assert bad.value.code == "invalid_id_token"
    with platform.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM vehicle_id_tokens")).scalars().all()
    assert stored
    assert all(CARD.upper() not in h and CARD not in h for h in stored)

    # Removed, the token may go to another vehicle, and is then answered for that one.
    platform.bus.handle(commands.RemoveIdToken(w.resident_id, w.vehicle, again.id))
    assert w.door.authorize(CARD) == SessionStatus.UNKNOWN
    platform.bus.handle(commands.RegisterIdToken(other, their_car, CARD))
    assert w.door.authorize(CARD) == SessionStatus.ACCEPTED


def test_chargers_log_in_with_their_current_password_only(platform: Platform) -> None:
    w = world(platform)
    charger = w.charger.device_id
    with pytest.raises(HandshakeError) as wrong:
        w.door.authenticate(charger, _basic(charger, "not-the-password"))
    assert wrong.value.status == 401
    platform.bus.handle(commands.SetChargerPassword(w.org_id, charger, "a-brand-new-password"))
    with pytest.raises(HandshakeError):
        w.door.authenticate(charger, _basic(charger, PASSWORD))
    assert w.door.authenticate(charger, _basic(charger, "a-brand-new-password")) == w.charger
    with platform.engine.connect() as conn:
        hashes = conn.execute(text("SELECT secret_hash FROM charger_secrets")).scalars().all()
    assert len(hashes) == 2
    assert all(h.startswith("scrypt$") and PASSWORD not in h for h in hashes)

    # Only an operator's chargers take passwords, and short ones are refused.
    with pytest.raises(ChargingError) as short:
        platform.bus.handle(commands.SetChargerPassword(w.org_id, charger, "short"))
    assert short.value.code == "invalid_password"
    community = platform.bus.handle(commands.CreateOrganisation("community", "Roof Share"))
    meter = platform.bus.handle(
        commands.RegisterDevice(community.id, "charger", parse_public_key(new_key()[1]))
    )
    with pytest.raises(ChargingError) as not_operator:
        platform.bus.handle(commands.SetChargerPassword(community.id, meter.id, PASSWORD))
    assert not_operator.value.code == "not_an_operator"


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
    restarted.meter_values(stored, [Sample(utc("10:10"), None, 5_600),
                                    Sample(utc("10:20"), None, 6_000)], "{}")  # fmt: skip
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


def test_unknown_and_blocked_tokens_credit_nobody(platform: Platform) -> None:
    w = world(platform)
    stranger = start(w, "10:00", token="NOBODY")
    assert (stranger.status, stranger.owner_id) == (SessionStatus.UNKNOWN, None)
    export(w, stranger, ("10:00", 1_000), ("10:30", 2_000))
    platform.bus.handle(commands.RevokeDevice(w.resident_id, w.vehicle))
    blocked = start(w, "11:00")
    assert blocked.status == SessionStatus.BLOCKED
    export(w, blocked, ("11:00", 1_000), ("11:30", 2_000))
    assert wallets(platform, w.resident_id) == {"CREDIT": 0, "CARBON": 0, "ENERGY": 0}
    with platform.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM meter_readings")).scalar_one() == 0


def test_attested_readings_come_only_from_the_ocpp_door(platform: Platform) -> None:
    w = world(platform)
    forged = commands.AttestedReading(
        "ocpp-forged", "charger", w.resident_id, 0, 0, utc("10:00"), 0, 0, "{}"
    )
    for source in ("http", "mqtt"):
        outcome = platform.bus.handle(commands.IngestReadings([forged], source))
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
