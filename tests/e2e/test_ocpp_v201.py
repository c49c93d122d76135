"""OCPP 2.0.1 end to end: the `ocpp` package's own ChargePoint client sends a V2G transaction
(TransactionEvent Started / Updated / Ended) over a real WebSocket; the vehicle's owner is
credited at the tariff's rates, the operator sees only a pseudonym, a resend credits
nothing, unknown tokens earn nothing, garbage frames get a CALLERROR, and a charger revoked
while connected gets a SecurityError and is disconnected."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ocpp.exceptions import SecurityError
from ocpp.v201 import ChargePoint, call
from sqlalchemy import text

from cityshare.bootstrap import Platform
from cityshare.charging.ocpp.server import ServerThread
from ocpp_helpers import (
    EXPORT,
    IMPORT,
    PASSWORD,
    Station,
    at,
    connect,
    expected_credits,
    handshake_status,
    owner_wallets,
    raw_call,
    running,
    station,
    ts,
)

TX = "0b7e2a4c-v2g-0001"


#: 17:30-18:30 in Kolkata: 5 kWh discharged across the 18:00 peak boundary, 250 Wh charged.
EXPORTS = [("12:00", 80_000), ("12:20", 81_200), ("12:30", 82_000), ("12:50", 84_500),
           ("13:00", 85_000)]  # fmt: skip


def meter(hhmm: str, export_wh: float, import_wh: int | None = None, unit: str = "Wh") -> Any:
    values: list[dict[str, Any]] = [
        {"value": export_wh, "measurand": EXPORT, "unit_of_measure": {"unit": unit}}
    ]
    if import_wh is not None:
        values.append({"value": import_wh, "measurand": IMPORT})
    return [{"timestamp": at(hhmm), "sampled_value": values}]


async def v2g_transaction(port: int, s: Station, token: str) -> dict[str, Any]:
    id_token = {"id_token": token, "type": "ISO14443"}
    evse = {"id": 1, "connector_id": 1}
    async with (
        connect(port, s.charger, "ocpp2.0.1", s.basic()) as ws,
        running(ChargePoint(s.charger, ws)) as cp,
    ):
        boot = await cp.call(
            call.BootNotification(
                charging_station={"model": "V2G-22", "vendor_name": "Bidi"},
                reason="PowerUp",
            )
        )
        auth = await cp.call(call.Authorize(id_token=id_token))

        def event(kind: str, seq_no: int, hhmm: str, **extra: Any) -> Any:
            return call.TransactionEvent(
                event_type=kind,
                timestamp=at(hhmm),
                trigger_reason="MeterValuePeriodic" if kind == "Updated" else "Authorized",
                seq_no=seq_no,
                transaction_info={"transaction_id": TX, **extra.pop("info", {})},
                evse=evse,
                **extra,
            )

        started = await cp.call(
                event("Started", 0, "12:00", id_token=id_token,
                      meter_value=meter("12:00", 80_000, 20_000))
            )  # fmt: skip
        await cp.call(event("Updated", 1, "12:20", meter_value=meter("12:20", 81.2, unit="kWh")))
        await cp.call(event("Updated", 2, "12:30", meter_value=meter("12:30", 82_000)))
        await cp.call(event("Updated", 3, "12:50", meter_value=meter("12:50", 84_500)))
        ended = await cp.call(
                event("Ended", 4, "13:00", id_token=id_token,
                      meter_value=meter("13:00", 85_000, 20_250),
                      info={"stopped_reason": "EVDisconnected"})
            )  # fmt: skip
    return {"boot": boot, "auth": auth, "started": started, "ended": ended}


@pytest.fixture
def port(platform: Platform) -> Iterator[int]:
    with ServerThread(platform) as server:
        yield server.port


def test_a_v2g_transaction_credits_the_vehicle_owner_at_the_time_of_day_rates(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    before = owner_wallets(platform, s)

    answers = asyncio.run(v2g_transaction(port, s, s.token))

    assert answers["boot"].status == "Accepted"
    assert answers["auth"].id_token_info["status"] == "Accepted"
    assert answers["started"].id_token_info["status"] == "Accepted"
    assert answers["ended"].id_token_info["status"] == "Accepted"
    points, grams = expected_credits(platform.tariff, [(ts(t), wh) for t, wh in EXPORTS])
    # 2000 Wh before 18:00 at 1 milli-point/Wh, 3000 Wh after at 1.2 x 1.5 (peak incentive).
    assert (points, grams) == (2_000 + 5_400, 4_305)
    after = owner_wallets(platform, s)
    assert after["CREDIT"] - before["CREDIT"] == points
    assert after["CARBON"] - before["CARBON"] == grams
    assert after["ENERGY"] - before["ENERGY"] == 5_000 - 250

    listed = client.get(f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff)
    [session] = listed.json()
    assert (session["transaction_id"], session["ocpp_version"]) == (TX, "2.0.1")
    assert (session["exported_wh"], session["imported_wh"]) == (5_000, 250)
    assert session["stop_reason"] == "EVDisconnected"
    assert session["vehicle"].startswith("veh-")
    for secret in (s.vehicle, s.token, PASSWORD, "resident", "owner"):
        assert secret not in listed.text
    # Another operator would know the same vehicle by another name.
    other = station(client, platform, "Other Bays", "bala")
    asyncio.run(v2g_transaction(port, other, s.token))
    [theirs] = client.get(
        f"/api/v1/organisations/{other.org_id}/charging-sessions", headers=other.staff
    ).json()
    assert theirs["vehicle"].startswith("veh-")
    assert theirs["vehicle"] != session["vehicle"]
    mine = client.get("/api/v1/me/charging-sessions", headers=s.resident).json()
    assert [m["credit_milli"] for m in mine] == [points, points]
    credited = owner_wallets(platform, s)

    # Everything resent after a reconnect: nothing more.
    asyncio.run(v2g_transaction(port, s, s.token))
    assert owner_wallets(platform, s) == credited


def test_an_unknown_token_is_refused_and_earns_nothing(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    before = owner_wallets(platform, s)
    answers = asyncio.run(v2g_transaction(port, s, "NOT-A-CARD"))
    assert answers["auth"].id_token_info["status"] == "Unknown"
    assert answers["started"].id_token_info["status"] == "Unknown"
    assert owner_wallets(platform, s) == before
    [session] = client.get(
        f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff
    ).json()
    assert (session["status"], session["vehicle"], session["exported_wh"]) == ("unknown", None, 0)


def test_handshake_and_frames(client: TestClient, platform: Platform, port: int) -> None:
    s = station(client, platform)

    async def exchange() -> tuple[list[int], list[list[Any]]]:
        statuses = [
            await handshake_status(port, s.charger, "ocpp2.0.1", s.basic()),
            await handshake_status(port, s.charger, "ocpp2.0.1", s.basic("not-the-password!")),
        ]
        async with connect(port, s.charger, "ocpp2.0.1", s.basic()) as ws:
            answers = [
                await raw_call(ws, frame)
                for frame in (
                    "{{{",
                    "[]",
                    '[5, "m1", "Heartbeat", {}]',
                    '[2, "m2", "Heartbeat", []]',
                    '[2, "m3", "StartTransaction", {}]',
                    '[2, "m4", "TransactionEvent", {"eventType": "Started"}]',
                    '[2, "m5", "Heartbeat", {}]',
                )
            ]
        return statuses, answers

    statuses, answers = asyncio.run(exchange())
    assert statuses == [101, 401]
    assert [(a[0], a[1], a[2] if a[0] == 4 else "ok") for a in answers] == [
        (4, "-1", "RpcFrameworkError"),
        (4, "-1", "RpcFrameworkError"),
        (4, "m1", "MessageTypeNotSupported"),
        (4, "m2", "FormatViolation"),
        (4, "m3", "NotSupported"),  # a 1.6 action on a 2.0.1 connection
        (4, "m4", "ProtocolError"),
        (3, "m5", "ok"),
    ]


NEW_PASSWORD = "a-brand-new-password-201"


@pytest.mark.parametrize("event", ["Updated", "Started"])
@pytest.mark.parametrize("change", ["revoked", "new_password"])
def test_a_charger_revoked_while_connected_gets_a_security_error_and_is_disconnected(
    client: TestClient, platform: Platform, port: int, change: str, event: str
) -> None:
    s = station(client, platform)
    id_token = {"id_token": s.token, "type": "ISO14443"}

    def transaction_event(kind: str, seq_no: int, hhmm: str, tx: str, **extra: Any) -> Any:
        return call.TransactionEvent(
            event_type=kind,
            timestamp=at(hhmm),
            trigger_reason="MeterValuePeriodic" if kind == "Updated" else "Authorized",
            seq_no=seq_no,
            transaction_info={"transaction_id": tx},
            evse={"id": 1, "connector_id": 1},
            **extra,
        )

    def readings() -> int:
        with platform.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM meter_readings")).scalar_one())

    def withdraw() -> None:
        base = f"/api/v1/organisations/{s.org_id}/devices/{s.charger}"
        done = (
            client.delete(base, headers=s.staff)
            if change == "revoked"
            else client.put(f"{base}/ocpp-password", headers=s.staff,
                            json={"password": NEW_PASSWORD})
        )  # fmt: skip
        assert done.status_code == 200, done.text

    async def session() -> tuple[int | None, dict[str, int], int]:
        async with connect(port, s.charger, "ocpp2.0.1", s.basic()) as ws:
            async with running(ChargePoint(s.charger, ws)) as cp:
                started = meter("12:00", 80_000)
                await cp.call(
                    transaction_event("Started", 0, "12:00", TX, id_token=id_token,
                                      meter_value=started)
                )  # fmt: skip
                await cp.call(
                    transaction_event("Updated", 1, "12:20", TX, meter_value=meter("12:20", 81_200))
                )
                credited, stored = owner_wallets(platform, s), readings()
                withdraw()
                after = (
                    transaction_event("Updated", 2, "12:30", TX, meter_value=meter("12:30", 82_000))
                    if event == "Updated"
                    else transaction_event("Started", 0, "12:30", "another-transaction",
                                           id_token=id_token, meter_value=meter("12:30", 0))
                )  # fmt: skip
                with pytest.raises(SecurityError):
                    await cp.call(after, suppress=False)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code, credited, stored

    close_code, credited, stored = asyncio.run(session())

    assert close_code == 1008  # policy violation
    # Credited up to the change (12:00-12:20), and nothing it sent after it.
    assert credited["ENERGY"] == 1_200
    assert owner_wallets(platform, s) == credited
    assert readings() == stored
    listed = client.get(f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff)
    assert [x["transaction_id"] for x in listed.json()] == [TX]
    # It is let in again only as the operator now says.
    again = [
        asyncio.run(handshake_status(port, s.charger, "ocpp2.0.1", s.basic())),
        asyncio.run(handshake_status(port, s.charger, "ocpp2.0.1", s.basic(NEW_PASSWORD))),
    ]
    assert again == ([401, 401] if change == "revoked" else [401, 101])
