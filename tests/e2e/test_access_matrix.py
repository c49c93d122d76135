"""Every endpoint, called by every role, about one resident: nothing leaks beyond the policy.

Resident A's personal data is planted with recognisable values (VID, ward, device ids, a
balance, the sector pseudonym). Each GET is called by each role with every purpose; the
answer may contain only the markers that role is allowed to see through some purpose it
holds. Each write is tried by each role it is not meant for, and must be refused without
writing anything. A new endpoint fails the test until it is placed in the tables below.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from cityshare.identity.policy import Purpose
from identity_helpers import a_vid, assertion, device_statement, new_key, pseudonym_of

NO_AUTH = {"Authorization": ""}
BALANCE = 987_654_321
WARD = "Zetaward9"

#: What each role may see of resident A, through any purpose it holds.
MAY_SEE: dict[str, set[str]] = {
    "anonymous": set(),
    "resident_a": {"vid", "ward", "meter", "vehicle", "balance"},
    "resident_b": set(),
    "device_a": set(),
    "operator_platform": {"vid", "balance"},
    "operator_energy": {"vid", "balance", "ward", "meter"},
    "operator_transit": {"vid", "balance", "ward"},
    "operator_parking": {"vid", "balance", "vehicle"},
    # Energy staff of a community asset A holds shares of: billing reaches its shareholders;
    # grid operations reaches a provider's customers, not holders.
    "operator_org": {"vid", "balance"},
    "analyst": {"ward"},
    "auditor": {"vid", "ward", "meter", "vehicle", "balance", "pseudonym"},
    "regulator": {"vid", "ward", "meter", "vehicle", "balance", "pseudonym"},
    "admin": {"vid", "ward", "meter", "vehicle", "balance", "pseudonym"},
}

#: Writes, and the roles that may make them (everyone else must be refused).
WRITES: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/v1/accounts"): {"admin", "operator_platform"},
    ("POST", "/api/v1/transfers"): {"admin", "operator_platform"},
    ("POST", "/api/v1/ledger/expire"): {"admin", "operator_platform"},
    ("POST", "/api/v1/credentials"): {"admin"},
    ("POST", "/api/v1/me/devices"): {"resident_a", "resident_b"},
    ("POST", "/api/v1/me/devices/{device_id}/keys"): {"resident_a"},
    ("DELETE", "/api/v1/me/devices/{device_id}"): {"resident_a"},
    # The credential is in the body (an assertion, a device's or witness's signature), so
    # these are open to all; they are refused here because the bodies sent are not valid.
    ("POST", "/api/v1/residents"): set(),
    ("POST", "/api/v1/devices/token"): set(),
    ("POST", "/api/v1/vehicles/identify"): set(),
    ("POST", "/api/v1/log/cosignatures"): set(),
    # Signed readings carry their own credential (the device's signature); every role is
    # refused here because no body is sent (a valid batch gets per-item results, see
    # tests/e2e/test_energy_api.py).
    ("POST", "/api/v1/readings"): set(),
    ("POST", "/api/v1/organisations"): {"admin"},
    ("POST", "/api/v1/organisations/{org_id}/devices"): {"admin", "operator_org"},
    ("POST", "/api/v1/organisations/{org_id}/devices/{device_id}/keys"): {"admin", "operator_org"},
    ("DELETE", "/api/v1/organisations/{org_id}/devices/{device_id}"): {"admin", "operator_org"},
    ("PUT", "/api/v1/organisations/{org_id}/devices/{device_id}/ocpp-password"): {
        "admin",
        "operator_org",
    },
    ("POST", "/api/v1/me/devices/{device_id}/id-tokens"): {"resident_a"},
    ("DELETE", "/api/v1/me/devices/{device_id}/id-tokens/{token_id}"): {"resident_a"},
    ("PUT", "/api/v1/organisations/{org_id}/price-list"): {"admin", "operator_org"},
    ("PUT", "/api/v1/me/energy/provider"): {"resident_a", "resident_b"},
    ("POST", "/api/v1/organisations/{org_id}/shares"): {"admin", "operator_org"},
    ("POST", "/api/v1/organisations/{org_id}/distributions"): {"admin", "operator_org"},
    ("POST", "/api/v1/me/shares/transfers"): {"resident_a", "resident_b"},
    ("POST", "/api/v1/residents/{vid}/top-ups"): {"admin", "operator_platform"},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(client: TestClient, platform: Platform) -> dict[str, Any]:
    vid = a_vid()
    a = client.post(
        "/api/v1/residents", json={"assertion": assertion(platform, "asha", vid=vid, ward=WARD)}
    ).json()
    b = client.post("/api/v1/residents", json={"assertion": assertion(platform, "bala")}).json()
    resident_a, resident_b = bearer(a["token"]), bearer(b["token"])
    meter_key, meter_public = new_key()
    meter = client.post(
        "/api/v1/me/devices", headers=resident_a, json={"kind": "meter", "public_key": meter_public}
    ).json()["id"]
    vehicle = client.post(
        "/api/v1/me/devices",
        headers=resident_a,
        json={"kind": "vehicle", "public_key": new_key()[1]},
    ).json()["id"]
    wallets = client.get("/api/v1/me", headers=resident_a).json()["wallets"]
    credit = next(w["account_id"] for w in wallets if w["ledger"] == "CREDIT")
    assert client.post("/api/v1/accounts", json=[{"id": 1, "ledger": "CREDIT"}]).status_code == 200
    funded = client.post(
        "/api/v1/transfers",
        json=[
            {
                "id": 1,
                "debit_account_id": 1,
                "credit_account_id": credit,
                "amount": BALANCE,
                "ledger": "CREDIT",
            }
        ],
    )
    assert funded.status_code == 200, funded.text

    org = client.post(
        "/api/v1/organisations", json={"kind": "community", "name": "Rooftops of Ward 9"}
    ).json()["id"]
    # Resident A holds shares of the community asset: its staff may list holders by VID.
    shares = client.post(f"/api/v1/organisations/{org}/shares", json={"vid": vid, "shares": 5})
    assert shares.status_code == 201, shares.text

    def staff(
        role: str, purposes: list[str], domain: str | None = None, org_id: int | None = None
    ) -> dict[str, str]:
        body: dict[str, Any] = {"subject": f"{role}-{domain}", "role": role, "purposes": purposes}
        if domain:
            body["domain"] = domain
        if org_id:
            body["org_id"] = org_id
        r = client.post("/api/v1/credentials", json=body)
        assert r.status_code == 200, r.text
        return bearer(r.json()["token"])

    now = platform.clock.now_ns() // 10**9
    device_token = client.post(
        "/api/v1/devices/token",
        json={"proof": device_statement(meter_key, meter, "cityshare-api", now=now)},
    ).json()["token"]
    headers = {
        "anonymous": NO_AUTH,
        "resident_a": resident_a,
        "resident_b": resident_b,
        "device_a": bearer(device_token),
        "operator_platform": staff("operator", ["billing"], "platform"),
        "operator_energy": staff("operator", ["billing", "grid_operations"], "energy"),
        "operator_transit": staff("operator", ["billing", "transit_planning"], "transit"),
        "operator_parking": staff("operator", ["billing", "enforcement"], "parking"),
        "operator_org": staff("operator", ["billing", "grid_operations"], "energy", org),
        "analyst": staff("analyst", ["research"]),
        "auditor": staff("auditor", ["audit"]),
        "regulator": staff("regulator", ["audit", "enforcement"]),
        "admin": {},  # the client's default header: the operator token from settings
    }
    markers = {
        "vid": vid,
        "ward": WARD,
        "meter": meter,
        "vehicle": vehicle,
        "balance": str(BALANCE),
        "pseudonym": pseudonym_of("asha"),
    }
    params = {
        "vid": vid,
        "account_id": credit,
        "transfer_id": 1,
        "device_id": meter,
        "size": 1,
        "org_id": org,
        "token_id": 1,
        "month": "2023-11",  # the test clock's month (statements)
    }
    return {"headers": headers, "markers": markers, "params": params}


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every operation the app serves under /api/v1 (from its OpenAPI, which lists them all)."""
    spec = client.app.openapi()  # type: ignore[attr-defined]
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    ]


def visible_text(body: str) -> str:
    """The answer as a reader sees it, with base64 log entries decoded."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        body += "".join(base64.b64decode(e).decode("latin-1") for e in data["entries"])
    return body


def fill(path: str, params: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), path)


def read_queries(path: str) -> list[dict[str, Any]]:
    """Every purpose for routes that take one, and the parameters a route needs."""
    base: dict[str, Any] = {}
    if path.endswith("/log/entries"):
        base = {"start": 0, "end": 1000}
    elif path.endswith("/proof/inclusion"):
        base = {"index": 0, "size": 1}
    elif path.endswith("/proof/consistency"):
        base = {"first": 1, "second": 1}
    elif path == "/api/v1/accounts":
        base = {"owner": None}
    return [{**base, "purpose": p.value} for p in Purpose] + [base]


def test_no_role_reads_more_than_its_purposes_allow(
    client: TestClient, world: dict[str, Any]
) -> None:
    markers: dict[str, str] = world["markers"]
    reads = [(m, p) for m, p in api_routes(client) if m == "GET"]
    assert reads, "no GET endpoints found"
    seen_by: dict[str, set[str]] = {role: set() for role in MAY_SEE}
    for _, path in reads:
        url = fill(path, world["params"])
        for query in read_queries(path):
            query = {k: v for k, v in query.items() if v is not None}
            for role, headers in world["headers"].items():
                r = client.get(url, params=query, headers=headers)
                assert r.status_code < 500, (role, url, query, r.text)
                text = visible_text(r.text)
                leaked = {name for name, value in markers.items() if value in text}
                assert leaked <= MAY_SEE[role], (role, url, query, leaked - MAY_SEE[role])
                seen_by[role] |= leaked
    # And the policy is not vacuous: each role really sees what it may.
    assert seen_by == MAY_SEE


def test_every_write_is_refused_to_the_roles_it_is_not_for(
    client: TestClient, platform: Platform, world: dict[str, Any]
) -> None:
    writes = [(m, p) for m, p in api_routes(client) if m != "GET"]
    assert set(writes) == set(WRITES), "classify new write endpoints in WRITES"
    bodies: dict[str, Any] = {
        "/api/v1/accounts": [{"id": 555, "ledger": "CREDIT"}],
        "/api/v1/transfers": [
            {
                "id": 777,
                "debit_account_id": world["params"]["account_id"],
                "credit_account_id": 1,
                "amount": 1,
                "ledger": "CREDIT",
            }
        ],
        "/api/v1/credentials": {"subject": "x", "role": "admin", "purposes": ["audit"]},
        "/api/v1/me/devices": {"kind": "meter", "public_key": "A" * 43},
        "/api/v1/me/devices/{device_id}/keys": {"public_key": new_key()[1]},
        "/api/v1/organisations": {"kind": "provider", "name": "Sneaky Power"},
        "/api/v1/organisations/{org_id}/devices": {"kind": "meter", "public_key": new_key()[1]},
        "/api/v1/organisations/{org_id}/devices/{device_id}/keys": {"public_key": new_key()[1]},
        "/api/v1/organisations/{org_id}/shares": {"vid": world["markers"]["vid"], "shares": 1},
        "/api/v1/me/shares/transfers": {
            "asset_id": world["params"]["org_id"],
            "to_vid": world["markers"]["vid"],
            "shares": 1,
        },
        "/api/v1/organisations/{org_id}/price-list": {
            "prices": {"normal": 600, "solar": 400, "peak": 900}
        },
        "/api/v1/me/energy/provider": {"provider_id": world["params"]["org_id"]},
        "/api/v1/residents": {"assertion": "a.b.c"},
        "/api/v1/devices/token": {"proof": "a.b.c"},
        "/api/v1/vehicles/identify": {"presentation": "a.b.c"},
        "/api/v1/organisations/{org_id}/devices/{device_id}/ocpp-password": {
            "password": "a-valid-charger-password"
        },
        "/api/v1/me/devices/{device_id}/id-tokens": {"id_token": "CARD0001"},
        "/api/v1/residents/{vid}/top-ups": {"amount": 100, "reference": "UTR0001"},
    }
    with platform.uow() as uow:
        before = uow.log.size()
    for (method, path), allowed in WRITES.items():
        url = fill(path, world["params"])
        for role, headers in world["headers"].items():
            if role in allowed:
                continue
            if path == "/api/v1/log/cosignatures":
                r = client.request(method, url, content=b"not a note\n", headers=headers)
            else:
                r = client.request(method, url, json=bodies.get(path), headers=headers)
            assert r.status_code in (401, 403, 404, 409, 422), (role, method, url, r.text)
    with platform.uow() as uow:
        assert uow.log.size() == before  # nothing refused was written


def test_an_organisations_staff_read_only_the_residents_related_to_it(
    client: TestClient, platform: Platform, world: dict[str, Any]
) -> None:
    """A purpose reaches, through an organisation, only the residents it has that purpose's
    relationship with (`cityshare.identity.policy`): a community asset's billing desk reads its
    shareholders, a provider's its customers; platform-wide roles read everyone."""
    params = world["params"]
    holder_vid, holder_credit = params["vid"], params["account_id"]
    asset_desk = world["headers"]["operator_org"]  # billing staff of the community asset

    # Chandra holds no shares of the asset; she buys energy from SunLease (not the default
    # provider, which is the first registered: City Power).
    city, sunlease = (
        client.post("/api/v1/organisations", json={"kind": "provider", "name": n}).json()["id"]
        for n in ("City Power", "SunLease")
    )
    prices = {"prices": {"normal": 500, "solar": 350, "peak": 800}}
    assert client.put(f"/api/v1/organisations/{sunlease}/price-list", json=prices).is_success
    vid = a_vid()
    enrolled = client.post(
        "/api/v1/residents", json={"assertion": assertion(platform, "chandra", vid=vid)}
    ).json()
    chandra = bearer(enrolled["token"])
    chose = {"provider_id": sunlease}
    assert client.put("/api/v1/me/energy/provider", headers=chandra, json=chose).is_success
    inr = next(
        w["account_id"]
        for w in client.get("/api/v1/me", headers=chandra).json()["wallets"]
        if w["ledger"] == "INR"
    )
    assert client.post("/api/v1/accounts", json=[{"id": 2, "ledger": "INR"}]).is_success
    top_up = [{"id": 2, "debit_account_id": 2, "credit_account_id": inr, "amount": 500,
               "ledger": "INR"}]  # fmt: skip
    assert client.post("/api/v1/transfers", json=top_up).is_success

    def reads(vid: str, account: int, transfer: int) -> dict[str, tuple[str, dict[str, str]]]:
        billing = {"purpose": "billing"}
        return {
            "profile": (f"/api/v1/residents/{vid}", billing),
            "account": (f"/api/v1/accounts/{account}", billing),
            "statement": (f"/api/v1/accounts/{account}/statement", billing),
            "transfer": (f"/api/v1/transfers/{transfer}", billing),
            "energy statement": (f"/api/v1/residents/{vid}/statements/2023-11", billing),
        }

    # The asset's desk cannot read Chandra: each read is 404 `not_related` with the reason ...
    for name, (url, query) in reads(vid, inr, 2).items():
        r = client.get(url, params=query, headers=asset_desk)
        assert r.status_code == 404, (name, r.text)
        assert r.json()["error"]["code"] == "not_related", name
        assert "its shareholders" in r.json()["error"]["message"]
    # ... the very answer it gets for a VID or an account nobody has (existence is not told).
    unrelated = client.get(f"/api/v1/residents/{vid}", params={"purpose": "billing"},
                           headers=asset_desk)  # fmt: skip
    unknown = client.get(f"/api/v1/residents/{a_vid()}", params={"purpose": "billing"},
                         headers=asset_desk)  # fmt: skip
    assert unknown.status_code == 404
    assert unknown.json() == unrelated.json()
    gone = client.get(f"/api/v1/accounts/{inr + 8}", headers=asset_desk)  # no such resident
    assert gone.json()["error"]["message"].replace(str(inr + 8), "N") == client.get(
        f"/api/v1/accounts/{inr}", headers=asset_desk
    ).json()["error"]["message"].replace(str(inr), "N")
    # Nor list the ledger at large, nor read for a purpose its credential lacks (403).
    assert client.get("/api/v1/accounts", headers=asset_desk).status_code == 403
    research = client.get(f"/api/v1/residents/{vid}", params={"purpose": "research"},
                          headers=asset_desk)  # fmt: skip
    assert research.status_code == 403
    assert research.json()["error"]["code"] == "purpose_not_granted"

    # It reads its shareholder, every read of them recorded in their access log.
    for name, (url, query) in reads(holder_vid, holder_credit, 1).items():
        r = client.get(url, params=query, headers=asset_desk)
        assert r.status_code == 200, (name, r.text)
    holder_log = client.get("/api/v1/me/access-log", headers=world["headers"]["resident_a"])
    assert {
        (x["who"], x["what"]) for x in holder_log.json()["records"]
    } == {("operator:operator-energy", what) for what in (  # the asset desk's subject
        "profile: vid, wallets", f"account {holder_credit}",
        f"statement of account {holder_credit}", "transfer 1", "energy statement 2023-11",
    )}  # fmt: skip

    # SunLease's billing staff read their customer's statement, not the shareholder's.
    sun_desk = bearer(client.post("/api/v1/credentials", json={
        "subject": "sun-desk", "role": "operator", "purposes": ["billing"], "domain": "energy",
        "org_id": sunlease,
    }).json()["token"])  # fmt: skip
    _, (url, query) = list(reads(vid, inr, 2).items())[-1]
    assert client.get(url, params=query, headers=sun_desk).status_code == 200
    holders_statement = reads(holder_vid, holder_credit, 1)["energy statement"][0]
    assert client.get(holders_statement, params=query, headers=sun_desk).status_code == 404
    # City Power is the default provider of whoever never chose: the shareholder, not Chandra.
    city_desk = bearer(client.post("/api/v1/credentials", json={
        "subject": "city-desk", "role": "operator", "purposes": ["billing"], "domain": "energy",
        "org_id": city,
    }).json()["token"])  # fmt: skip
    assert client.get(holders_statement, params=query, headers=city_desk).status_code == 200
    assert client.get(url, params=query, headers=city_desk).status_code == 404

    # Platform-wide roles still read everyone.
    for who in ("operator_platform", "admin"):
        for name, (url, query) in reads(vid, inr, 2).items():
            r = client.get(url, params=query, headers=world["headers"][who])
            assert r.status_code == 200, (who, name, r.text)
    chandra_log = client.get("/api/v1/me/access-log", headers=chandra).json()["records"]
    assert {x["who"] for x in chandra_log} == {
        "operator:sun-desk", "operator:operator-platform", "admin:settings-operator-token"
    }  # fmt: skip


def test_a_statement_names_only_the_counterparties_its_reader_may_read_and_records_them(
    client: TestClient, platform: Platform
) -> None:
    """A wallet's statement names the other account of each transfer, and a wallet id names its
    resident: an organisation's desk sees the counterparty only where it is its own, the
    platform's, another organisation's or a related resident's account; a resident it is not
    related to shows as null (as `GET /transfers/{id}` of that transfer is 404 not_related).
    Every resident whose account a statement names is recorded as read: platform-wide staff
    see all of them."""
    _city, sun = (
        client.post("/api/v1/organisations", json={"kind": "provider", "name": n}).json()["id"]
        for n in ("City Power", "SunLease")  # City: the default provider
    )
    prices = {"prices": {"normal": 500, "solar": 350, "peak": 800}}
    assert client.put(f"/api/v1/organisations/{sun}/price-list", json=prices).is_success

    def enrol(name: str, provider: int | None) -> tuple[dict[str, str], int]:
        token = client.post(
            "/api/v1/residents", json={"assertion": assertion(platform, name, vid=a_vid())}
        ).json()["token"]
        if provider is not None:
            chose = {"provider_id": provider}
            assert client.put("/api/v1/me/energy/provider", headers=bearer(token), json=chose)
        inr = next(w["account_id"] for w in client.get("/api/v1/me", headers=bearer(token))
                   .json()["wallets"] if w["ledger"] == "INR")  # fmt: skip
        return bearer(token), inr

    asha, asha_inr = enrol("asha", sun)
    bala, bala_inr = enrol("bala", None)  # City's customer: not related to SunLease
    chandra, chandra_inr = enrol("chandra", sun)
    assert client.post("/api/v1/accounts", json=[{"id": 2, "ledger": "INR"}]).is_success
    moves = [(3, 2, asha_inr, 1000), (77, asha_inr, bala_inr, 300),
             (78, asha_inr, chandra_inr, 200)]  # fmt: skip
    posted = client.post("/api/v1/transfers", json=[
        {"id": i, "debit_account_id": d, "credit_account_id": c, "amount": a, "ledger": "INR"}
        for i, d, c, a in moves
    ])  # fmt: skip
    assert posted.is_success, posted.text
    sun_desk = bearer(client.post("/api/v1/credentials", json={
        "subject": "sun-desk", "role": "operator", "purposes": ["billing"], "domain": "energy",
        "org_id": sun,
    }).json()["token"])  # fmt: skip
    assert client.get("/api/v1/transfers/77", headers=sun_desk).json()["error"]["code"] == (
        "not_related"
    )

    def counterparties(headers: dict[str, str]) -> list[tuple[int, int | None]]:
        r = client.get(f"/api/v1/accounts/{asha_inr}/statement", headers=headers)
        assert r.status_code == 200, r.text
        return [(x["transfer_id"], x["counterparty"]) for x in r.json()["lines"]]

    def log(headers: dict[str, str]) -> list[tuple[str, str]]:
        records = client.get("/api/v1/me/access-log", headers=headers).json()["records"]
        return [(x["who"], x["what"]) for x in records]

    named = f"counterparty in statement of account {asha_inr}"
    assert counterparties(sun_desk) == [(3, 2), (77, None), (78, chandra_inr)]
    assert log(bala) == []
    assert log(chandra) == [("operator:sun-desk", named)]
    assert log(asha) == [("operator:sun-desk", f"statement of account {asha_inr}")]
    assert counterparties({}) == [(3, 2), (77, bala_inr), (78, chandra_inr)]  # the admin
    assert log(bala) == [("admin:settings-operator-token", named)]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["StatementLineOut"]
    assert "null" in schema["properties"]["counterparty"]["description"]
