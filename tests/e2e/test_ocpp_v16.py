"""OCPP 1.6-J end to end: the `ocpp` package's own ChargePoint client talks to the central
system over a real WebSocket on loopback; a V2G session credits the vehicle's owner at the
tariff's time-of-day rates, the operator sees only a pseudonym, a resend credits nothing,
and strangers, bad passwords, unknown tokens, garbage frames and chargers revoked while
connected get nowhere; the log names no token and no vehicle."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ocpp.exceptions import InternalError, SecurityError
from ocpp.v16 import ChargePoint, call
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cityshare.bootstrap import Platform
from cityshare.charging.ocpp.door import ChargingDoor
from cityshare.charging.ocpp.server import ServerThread
from cityshare.ledger.ids import CREDIT_ISSUANCE
from ocpp_helpers import (
    EXPORT,
    IMPORT,
    PASSWORD,
    TOKEN,
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

#: The session: 17:30-18:30 in Kolkata, discharging 5 kWh across the 18:00 peak boundary
#: (one sample in kWh), charging 400 Wh (meterStart 10000 -> meterStop 10400).
EXPORTS = [("12:00", 50_000), ("12:15", 51_000), ("12:30", 52_500), ("12:45", 54_000),
           ("13:00", 55_000)]  # fmt: skip


def sample(hhmm: str, *values: dict[str, str]) -> dict[str, Any]:
    return {"timestamp": at(hhmm), "sampled_value": list(values)}


def export(wh: int, unit: str = "Wh") -> dict[str, str]:
    value = str(wh) if unit == "Wh" else str(wh / 1000)
    return {"value": value, "measurand": EXPORT, "unit": unit, "context": "Sample.Periodic"}


async def v2g_session(port: int, s: Station, token: str = TOKEN) -> dict[str, Any]:
    """Boot, authorize, start, four MeterValues, stop; what the central system answered."""
    async with (
        connect(port, s.charger, "ocpp1.6", s.basic()) as ws,
        running(ChargePoint(s.charger, ws)) as cp,
    ):
        boot = await cp.call(
            call.BootNotification(charge_point_model="V2G-11", charge_point_vendor="Bidi")
        )
        auth = await cp.call(call.Authorize(id_tag=token))
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=token, meter_start=10_000, timestamp=at("12:00")
            )
        )
        tx = start.transaction_id
        begin = {"value": "10000", "measurand": IMPORT, "context": "Transaction.Begin"}
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[sample("12:00", begin, export(50_000))],
            )
        )
        for hhmm, wh in EXPORTS[1:4]:
            unit = "kWh" if wh == 52_500 else "Wh"
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[sample(hhmm, export(wh, unit))],
                )
            )
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=10_400,
                timestamp=at("13:00"),
                transaction_id=tx,
                id_tag=token,
                reason="EVDisconnected",
                transaction_data=[sample("13:00", export(55_000))],
            )
        )
    return {"boot": boot, "auth": auth, "start": start, "stop": stop}


@pytest.fixture
def port(platform: Platform) -> Iterator[int]:
    with ServerThread(platform) as server:
        yield server.port


def test_a_v2g_session_credits_the_vehicle_owner_at_the_time_of_day_rates(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    before = owner_wallets(platform, s)

    answers = asyncio.run(v2g_session(port, s))

    assert answers["boot"].status == "Accepted"
    assert answers["auth"].id_tag_info["status"] == "Accepted"
    assert answers["start"].id_tag_info["status"] == "Accepted"
    assert answers["stop"].id_tag_info["status"] == "Accepted"
    points, grams = expected_credits(platform.tariff, [(ts(t), wh) for t, wh in EXPORTS])
    # 2500 Wh before 18:00 at 1 milli-point/Wh, 2500 Wh after at 1.2 x 1.5 (peak incentive).
    assert (points, grams) == (2_500 + 4_500, 4_305)
    after = owner_wallets(platform, s)
    assert after["CREDIT"] - before["CREDIT"] == points
    assert after["CARBON"] - before["CARBON"] == grams
    assert after["ENERGY"] - before["ENERGY"] == 5_000 - 400  # net export

    mine = client.get("/api/v1/me/charging-sessions", headers=s.resident).json()
    assert [(m["vehicle_id"], m["exported_wh"], m["imported_wh"], m["credit_milli"],
             m["carbon_g"], m["stop_reason"]) for m in mine] == [
        (s.vehicle, 5_000, 400, points, grams, "EVDisconnected")
    ]  # fmt: skip

    # The operator sees the session, with the vehicle only as its own pseudonym.
    listed = client.get(f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff)
    assert listed.status_code == 200, listed.text
    [session] = listed.json()
    assert session["charger_id"] == s.charger
    assert session["transaction_id"] == str(answers["start"].transaction_id)
    assert (session["exported_wh"], session["status"]) == (5_000, "accepted")
    assert session["vehicle"].startswith("veh-")
    assert session["started_at"] == "2023-11-14T12:00:00+00:00"
    assert session["stopped_at"] == "2023-11-14T13:00:00+00:00"
    for secret in (s.vehicle, TOKEN, TOKEN.lower(), PASSWORD, "resident", "owner"):
        assert secret not in listed.text
    # No field of it names the resident (ids are small numbers, so by field, not by text).
    assert set(session) == {
        "session_id", "charger_id", "connector_id", "ocpp_version", "transaction_id", "status",
        "vehicle", "started_at", "stopped_at", "stop_reason", "exported_wh", "imported_wh",
    }  # fmt: skip
    # ... and no other operator's staff may list them.
    other = station(client, platform, "Other Bays", "bala")
    refused = client.get(f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=other.staff)
    assert refused.status_code == 403

    # The charger resends everything after a reconnect: same transaction, nothing more.
    again = asyncio.run(v2g_session(port, s))
    assert again["start"].transaction_id == answers["start"].transaction_id
    assert owner_wallets(platform, s) == after
    assert len(client.get("/api/v1/me/charging-sessions", headers=s.resident).json()) == 1


def test_an_unknown_token_is_refused_and_earns_nothing(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    with platform.uow() as uow:
        issued = uow.ledger.load_accounts([CREDIT_ISSUANCE]).get(CREDIT_ISSUANCE)
    before = owner_wallets(platform, s)

    answers = asyncio.run(v2g_session(port, s, token="DEADBEEF"))

    assert answers["auth"].id_tag_info["status"] == "Invalid"
    assert answers["start"].id_tag_info["status"] == "Invalid"
    assert owner_wallets(platform, s) == before
    with platform.uow() as uow:
        assert uow.ledger.load_accounts([CREDIT_ISSUANCE]).get(CREDIT_ISSUANCE) == issued
    [session] = client.get(
        f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff
    ).json()
    assert (session["status"], session["vehicle"], session["exported_wh"]) == ("unknown", None, 0)


def test_a_removed_token_stops_being_accepted(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    [token] = client.get(f"/api/v1/me/devices/{s.vehicle}/id-tokens", headers=s.resident).json()
    removed = client.delete(
        f"/api/v1/me/devices/{s.vehicle}/id-tokens/{token['id']}", headers=s.resident
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_at"]
    before = owner_wallets(platform, s)
    answers = asyncio.run(v2g_session(port, s))
    assert answers["start"].id_tag_info["status"] == "Invalid"
    assert owner_wallets(platform, s) == before


def test_strangers_and_wrong_passwords_are_refused_at_the_handshake(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    stranger = "dev-aaaaaaaaaaaaaaaa"

    async def statuses() -> list[int]:
        return [
            await handshake_status(port, s.charger, "ocpp1.6", s.basic()),
            await handshake_status(port, stranger, "ocpp1.6", s.basic(user=stranger)),
            await handshake_status(port, s.charger, "ocpp1.6", s.basic("wrong-password-123")),
            await handshake_status(port, s.charger, "ocpp1.6", None),
            await handshake_status(port, s.charger, "ocpp1.6", s.basic(user="someone-else")),
            await handshake_status(port, s.charger, "ocpp1.5", s.basic()),
        ]

    assert asyncio.run(statuses()) == [101, 401, 401, 401, 401, 400]

    # A revoked charger is no longer let in, whatever its password.
    revoked = client.delete(
        f"/api/v1/organisations/{s.org_id}/devices/{s.charger}", headers=s.staff
    )
    assert revoked.status_code == 200, revoked.text
    assert asyncio.run(handshake_status(port, s.charger, "ocpp1.6", s.basic())) == 401


def test_malformed_frames_get_a_callerror_and_the_connection_goes_on(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)

    async def exchange() -> list[list[Any]]:
        async with connect(port, s.charger, "ocpp1.6", s.basic()) as ws:
            answers = [
                await raw_call(ws, frame)
                for frame in (
                    "this is not json",
                    '{"not": "an array"}',
                    '[2, "m1"]',
                    '[7, "m2", "Heartbeat", {}]',
                    '[2, "m3", "Heartbeat", "not an object"]',
                    '[2, "m4", "TeleportVehicle", {}]',
                    '[2, "m5", "Authorize", {}]',
                    '[2, "m6", "Authorize", {"idTag": 42}]',
                    '[2, "m7", "StartTransaction", {"connectorId": 1, "idTag": "X", '
                    '"meterStart": 0, "timestamp": "yesterday-ish"}]',
                    json.dumps(
                        [
                            2,
                            "m8",
                            "MeterValues",
                            {
                                "connectorId": 1,
                                "transactionId": 1,
                                "meterValue": [
                                    {
                                        "timestamp": at("12:00"),
                                        "sampledValue": [{"value": "lots", "measurand": EXPORT}],
                                    }
                                ],
                            },
                        ]
                    ),
                    '[2, "m9", "Heartbeat", {}]',
                )
            ]
            # Another charger is served meanwhile, and this one still is afterwards.
            other = station(client, platform, "Neighbour Bays", "chitra")
            async with connect(port, other.charger, "ocpp1.6", other.basic()) as ws2:
                answers.append(await raw_call(ws2, '[2, "n1", "Heartbeat", {}]'))
            answers.append(await raw_call(ws, '[2, "m10", "Heartbeat", {}]'))
            return answers

    answers = asyncio.run(exchange())
    codes = [(a[0], a[1], a[2] if a[0] == 4 else "ok") for a in answers]
    assert codes == [
        (4, "-1", "FormationViolation"),
        (4, "-1", "FormationViolation"),
        (4, "m1", "FormationViolation"),
        (4, "m2", "ProtocolError"),
        (4, "m3", "FormationViolation"),
        (4, "m4", "NotSupported"),
        (4, "m5", "ProtocolError"),
        (4, "m6", "TypeConstraintViolation"),
        (4, "m7", "PropertyConstraintViolation"),
        (4, "m8", "PropertyConstraintViolation"),
        (3, "m9", "ok"),
        (3, "n1", "ok"),
        (3, "m10", "ok"),
    ]
    assert "currentTime" in answers[-1][2]
    # Nothing a malformed frame said was recorded.
    assert (
        client.get(f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff).json()
        == []
    )


NEW_PASSWORD = "a-brand-new-password-16"


def withdraw(client: TestClient, s: Station, change: str) -> None:
    """The operator revokes the charger, or sets it another password."""
    if change == "revoked":
        done = client.delete(f"/api/v1/organisations/{s.org_id}/devices/{s.charger}",
                             headers=s.staff)  # fmt: skip
    else:
        done = client.put(
            f"/api/v1/organisations/{s.org_id}/devices/{s.charger}/ocpp-password",
            headers=s.staff,
            json={"password": NEW_PASSWORD},
        )
    assert done.status_code == 200, done.text


def reading_count(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM meter_readings")).scalar_one())


@pytest.mark.parametrize("message", ["MeterValues", "StartTransaction"])
@pytest.mark.parametrize("change", ["revoked", "new_password"])
def test_a_charger_revoked_while_connected_gets_a_security_error_and_is_disconnected(
    client: TestClient, platform: Platform, port: int, change: str, message: str
) -> None:
    s = station(client, platform)

    async def session() -> tuple[int | None, dict[str, int], int]:
        async with connect(port, s.charger, "ocpp1.6", s.basic()) as ws:
            async with running(ChargePoint(s.charger, ws)) as cp:
                start = await cp.call(
                    call.StartTransaction(
                        connector_id=1, id_tag=TOKEN, meter_start=10_000, timestamp=at("12:00")
                    )
                )
                tx = start.transaction_id
                for hhmm, wh in EXPORTS[:2]:
                    meter_value = [sample(hhmm, export(wh))]
                    await cp.call(
                        call.MeterValues(connector_id=1, transaction_id=tx, meter_value=meter_value)
                    )
                credited = owner_wallets(platform, s)
                readings = reading_count(platform)
                withdraw(client, s, change)
                after: Any = (
                    call.MeterValues(connector_id=1, transaction_id=tx,
                                     meter_value=[sample("12:30", export(52_500))])
                    if message == "MeterValues"
                    else call.StartTransaction(connector_id=2, id_tag=TOKEN, meter_start=0,
                                               timestamp=at("12:30"))
                )
                with pytest.raises(SecurityError):
                    await cp.call(after, suppress=False)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code, credited, readings

    close_code, credited, readings = asyncio.run(session())

    assert close_code == 1008  # policy violation
    # Credited up to the change (12:00-12:15), and nothing it sent after it.
    assert credited["ENERGY"] == 1_000
    assert owner_wallets(platform, s) == credited
    assert reading_count(platform) == readings
    sessions = client.get(f"/api/v1/organisations/{s.org_id}/charging-sessions", headers=s.staff)
    assert len(sessions.json()) == 1
    # It is let in again only as the operator now says.
    again = [
        asyncio.run(handshake_status(port, s.charger, "ocpp1.6", s.basic())),
        asyncio.run(handshake_status(port, s.charger, "ocpp1.6", s.basic(NEW_PASSWORD))),
    ]
    assert again == ([401, 401] if change == "revoked" else [401, 101])


def test_a_charger_revoked_while_it_sends_nothing_is_disconnected_by_the_recheck(
    client: TestClient, platform: Platform
) -> None:
    revoked = station(client, platform, "Volt Bays", "asha")
    kept = station(client, platform, "Sun Chargers", "ravi")

    async def session(port: int) -> tuple[int | None, str]:
        async with (
            connect(port, revoked.charger, "ocpp1.6", revoked.basic()) as gone_ws,
            connect(port, kept.charger, "ocpp1.6", kept.basic()) as kept_ws,
            running(ChargePoint(revoked.charger, gone_ws)) as gone,
            running(ChargePoint(kept.charger, kept_ws)) as staying,
        ):
            await gone.call(call.Heartbeat())
            withdraw(client, revoked, "revoked")
            # The revoked charger sends nothing more; the re-check closes its connection.
            await asyncio.wait_for(gone_ws.wait_closed(), 10)
            # The other one, re-checked as often, is still served.
            answer = await staying.call(call.Authorize(id_tag=kept.token))
            return gone_ws.close_code, answer.id_tag_info["status"]

    with ServerThread(platform, recheck_seconds=0.05) as server:
        close_code, status = asyncio.run(session(server.port))
    assert close_code == 1008
    assert status == "Accepted"


def test_a_failed_admission_check_answers_internal_error_and_keeps_the_connection(
    client: TestClient, platform: Platform, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = station(client, platform)
    real = ChargingDoor.admitted
    failures = iter([True])

    def database_down_once(self: ChargingDoor, charger: Any) -> bool:
        if next(failures, False):
            raise OperationalError("SELECT 1", {}, Exception("connection reset"))
        return real(self, charger)

    monkeypatch.setattr(ChargingDoor, "admitted", database_down_once)

    async def session() -> str:
        async with (
            connect(port, s.charger, "ocpp1.6", s.basic()) as ws,
            running(ChargePoint(s.charger, ws)) as cp,
        ):
            with pytest.raises(InternalError):
                await cp.call(call.Heartbeat(), suppress=False)
            # Not taken for revoked: the next message is served on the same connection.
            answer = await cp.call(call.Authorize(id_tag=TOKEN))
            status: str = answer.id_tag_info["status"]
            return status

    assert asyncio.run(session()) == "Accepted"


def test_numbers_beyond_what_is_stored_are_refused_not_internal_errors(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)
    huge = 2**70

    def frame(uid: str, action: str, **payload: Any) -> str:
        return json.dumps([2, uid, action, payload])

    def exported(hhmm: str, value: str) -> list[dict[str, Any]]:
        return [{"timestamp": at(hhmm), "sampledValue": [{"value": value, "measurand": EXPORT}]}]

    async def session() -> dict[str, list[Any]]:
        async with connect(port, s.charger, "ocpp1.6", s.basic()) as ws:
            start = {"idTag": TOKEN, "meterStart": 0, "timestamp": at("12:00")}
            answers = {
                "connector": await raw_call(
                    ws, frame("c", "StartTransaction", **start | {"connectorId": 2**40})
                ),
                "meter_start": await raw_call(
                    ws, frame("m", "StartTransaction", **start | {"connectorId": 1,
                                                                  "meterStart": huge})
                ),
            }  # fmt: skip
            started = await raw_call(ws, frame("ok", "StartTransaction", **start,
                                               connectorId=1))  # fmt: skip
            tx = started[2]["transactionId"]
            answers["stop"] = await raw_call(ws, frame(
                "s", "StopTransaction", transactionId=tx, meterStop=huge, timestamp=at("12:10")
            ))  # fmt: skip
            answers["transaction"] = await raw_call(ws, frame(
                "t", "MeterValues", connectorId=1, transactionId=huge,
                meterValue=exported("12:05", "5"),
            ))  # fmt: skip
            answers["register"] = await raw_call(ws, frame(
                "r", "MeterValues", connectorId=1, transactionId=tx,
                meterValue=exported("12:06", "1e999990"),
            ))  # fmt: skip
            answers["heartbeat"] = await raw_call(ws, frame("h", "Heartbeat"))
            return answers

    answers = asyncio.run(session())
    for refused in ("connector", "meter_start", "stop", "register"):
        assert answers[refused][0] == 4, (refused, answers[refused])  # a CALLERROR ...
        assert answers[refused][2] != "InternalError", (refused, answers[refused])  # ... of ours
    assert answers["transaction"][0] == 3  # no such transaction: answered, nothing credited
    assert answers["heartbeat"][0] == 3  # and the connection goes on
    assert owner_wallets(platform, s)["ENERGY"] == 0


def test_a_request_that_passes_the_password_but_is_no_websocket_leaves_nothing_behind(
    client: TestClient, platform: Platform
) -> None:
    s = station(client, platform)
    with ServerThread(platform) as thread:
        for _ in range(3):  # valid credentials, but no Upgrade header: 426
            with socket.create_connection(("127.0.0.1", thread.port)) as sock:
                sock.sendall(
                    f"GET /ocpp/{s.charger} HTTP/1.1\r\nHost: x\r\n"
                    f"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: {s.basic()}\r\n\r\n"
                    .encode()
                )
                assert sock.recv(200).startswith(b"HTTP/1.1 426")
        # What the handshake admitted for them goes with their connections.
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), thread.loop).result(10)
        gc.collect()
        assert len(thread.server._admitted) == 0


def test_each_reading_keeps_its_own_meter_values_of_the_message_as_evidence(
    client: TestClient, platform: Platform, port: int
) -> None:
    s = station(client, platform)

    async def session() -> None:
        async with (
            connect(port, s.charger, "ocpp1.6", s.basic()) as ws,
            running(ChargePoint(s.charger, ws)) as cp,
        ):
            start = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag=TOKEN, meter_start=0, timestamp=at("12:00")
                )
            )
            await cp.call(call.MeterValues(
                connector_id=1, transaction_id=start.transaction_id,
                meter_value=[sample(hhmm, export(wh)) for hhmm, wh in EXPORTS[:3]],
            ))  # fmt: skip

    asyncio.run(session())
    with platform.engine.connect() as conn:
        stored = conn.execute(text("SELECT ts, jws FROM meter_readings ORDER BY seq")).all()
    assert [stamp for stamp, _ in stored] == [ts(hhmm) for hhmm, _ in EXPORTS[:3]]
    for reading_ts, jws in stored:
        message_type, _, action, payload = json.loads(jws)
        assert (message_type, action) == (2, "MeterValues")
        # One message of three samples: each reading keeps the message with its sample only.
        assert [ts(v["timestamp"][11:16]) for v in payload["meterValue"]] == [reading_ts]


def test_the_log_names_no_token_and_no_vehicle(
    client: TestClient, platform: Platform, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    s = station(client, platform)
    caplog.set_level(logging.DEBUG)
    too_long = "SECRETCARD-0123456789"  # 21 characters: more than an idTag holds

    async def exchange() -> None:
        async with connect(port, s.charger, "ocpp1.6", s.basic()) as ws:
            for frame in (
                json.dumps([2, "m1", "Authorize", {"idTag": too_long}]),
                json.dumps([2, "m2", "StartTransaction", {"connectorId": 1, "idTag": TOKEN,
                                                          "meterStart": 0,
                                                          "timestamp": "yesterday"}]),
            ):  # fmt: skip
                assert (await raw_call(ws, frame))[0] == 4

    asyncio.run(v2g_session(port, s))
    asyncio.run(exchange())

    # The central system's lines (the charger's own, the client here, log what they like).
    ours = [r for r in caplog.records if r.name.startswith("cityshare")]
    logged = [r.getMessage() + (r.exc_text or "") for r in ours]
    assert any(r.name == "cityshare.charging.ocpp.package" for r in ours)
    assert any("[redacted]" in m for m in logged)
    for secret in (TOKEN, TOKEN.lower(), too_long, s.vehicle, PASSWORD):
        assert not [m for m in logged if secret in m], secret
