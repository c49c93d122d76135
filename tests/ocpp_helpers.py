"""Builders for OCPP tests: an operator with a charger and its password, a resident with a
vehicle and its id token (all set up through the HTTP API), a client connection to the
central system, and the credits a list of export samples must earn under a tariff."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import websockets
from fastapi.testclient import TestClient
from websockets.asyncio.client import ClientConnection

from cityshare.bootstrap import Platform
from cityshare.energy.tariff import Tariff
from energy_helpers import wallets
from identity_helpers import assertion, new_key

PASSWORD = "correct-horse-battery-9"
TOKEN = "04A2B3C4D5E6F7"  # an RFID card's UID, as chargers read it

#: 2023-11-14 in UTC; the test platform's clock stands at 22:13:20 that day. In Kolkata
#: (the tariff's zone, UTC+5:30) 12:00 UTC is 17:30, and the peak window opens at 18:00.
DAY = "2023-11-14"


EXPORT = "Energy.Active.Export.Register"
IMPORT = "Energy.Active.Import.Register"


def at(hhmm: str) -> str:
    """An OCPP timestamp on DAY at hh:mm UTC."""
    return f"{DAY}T{hhmm}:00Z"


def ts(hhmm: str) -> int:
    """The unix time of `at(hhmm)`."""
    return int(dt.datetime.fromisoformat(at(hhmm)).timestamp())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Station:
    """An operator with one charger (password set) and a resident with a vehicle (token
    registered), made through the API as their users would."""

    org_id: int
    staff: dict[str, str]
    charger: str
    resident_id: int
    resident: dict[str, str]
    vehicle: str
    token: str

    def basic(self, password: str = PASSWORD, user: str | None = None) -> str:
        raw = f"{user or self.charger}:{password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def station(
    client: TestClient, platform: Platform, name: str = "Volt Bays", person: str = "asha"
) -> Station:
    org = client.post(
        "/api/v1/organisations", json={"kind": "operator", "name": name, "domain": "energy"}
    )
    assert org.status_code == 201, org.text
    org_id = org.json()["id"]
    cred = client.post(
        "/api/v1/credentials",
        json={
            "subject": f"staff-{org_id}",
            "role": "operator",
            "domain": "energy",
            "purposes": ["billing", "grid_operations"],
            "org_id": org_id,
        },
    )
    assert cred.status_code == 200, cred.text
    staff = bearer(cred.json()["token"])
    made = client.post(
        f"/api/v1/organisations/{org_id}/devices",
        headers=staff,
        json={"kind": "charger", "public_key": new_key()[1], "label": "Bay 1"},
    )
    assert made.status_code == 201, made.text
    charger = made.json()["id"]
    put = client.put(
        f"/api/v1/organisations/{org_id}/devices/{charger}/ocpp-password",
        headers=staff,
        json={"password": PASSWORD},
    )
    assert put.status_code == 200, put.text
    assert PASSWORD not in put.text

    token = TOKEN if person == "asha" else f"CARD-{person.upper()}"
    enrolled = client.post("/api/v1/residents", json={"assertion": assertion(platform, person)})
    assert enrolled.status_code == 201, enrolled.text
    resident = bearer(enrolled.json()["token"])
    vehicle = client.post(
        "/api/v1/me/devices",
        headers=resident,
        json={"kind": "vehicle", "public_key": new_key()[1], "label": "Nexon EV"},
    ).json()["id"]
    registered = client.post(
        f"/api/v1/me/devices/{vehicle}/id-tokens", headers=resident, json={"id_token": token}
    )
    assert registered.status_code == 201, registered.text
    return Station(org_id, staff, charger, enrolled.json()["resident_id"], resident, vehicle, token)


@contextlib.asynccontextmanager
async def connect(
    port: int, charger: str, protocol: str, authorization: str | None
) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": authorization} if authorization else {}
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ocpp/{charger}",
        subprotocols=[websockets.Subprotocol(protocol)],
        additional_headers=headers,
        open_timeout=10,
    ) as ws:
        yield ws


@contextlib.asynccontextmanager
async def running(cp: Any) -> AsyncIterator[Any]:
    """The `ocpp` ChargePoint client reading its connection while the test makes calls."""
    task = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def handshake_status(port: int, charger: str, protocol: str, auth: str | None) -> int:
    """The HTTP status a refused handshake gets (101 if it was accepted)."""
    try:
        async with connect(port, charger, protocol, auth):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


async def raw_call(ws: ClientConnection, frame: str) -> list[Any]:
    await ws.send(frame)
    answer: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return answer


def expected_credits(tariff: Tariff, exports: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(milli-points, grams CO2e) a chain of (ts, cumulative export Wh) earns: each interval
    at the rate of the window holding its start, floored once over the whole chain (the
    chain carries remainders)."""
    points = Fraction(0)
    for (t0, e0), (_, e1) in itertools.pairwise(exports):
        points += (e1 - e0) * tariff.points_rate(tariff.window_at(t0))
    total = exports[-1][1] - exports[0][1]
    grams = total * tariff.carbon_factor("charger").g_per_wh
    return math.floor(points), math.floor(grams)


def owner_wallets(platform: Platform, station: Station) -> dict[str, int]:
    return wallets(platform, station.resident_id)
