"""Identity over HTTP: enrol, sign in, devices, purpose-limited staff reads, the access log."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from identity_helpers import a_vid, assertion, device_statement, new_key

NO_AUTH = {"Authorization": ""}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enrol(client: TestClient, platform: Platform, person: str, **kw: Any) -> dict[str, Any]:
    r = client.post(
        "/api/v1/residents", json={"assertion": assertion(platform, person, **kw)}, headers=NO_AUTH
    )
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def staff(
    client: TestClient,
    role: str,
    purposes: list[str],
    domain: str | None = None,
    subject: str = "someone",
) -> dict[str, str]:
    body: dict[str, Any] = {"subject": subject, "role": role, "purposes": purposes}
    if domain:
        body["domain"] = domain
    r = client.post("/api/v1/credentials", json=body)
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


def test_enrol_then_sign_in_again(client: TestClient, platform: Platform) -> None:
    vid = a_vid()
    first = enrol(client, platform, "asha", vid=vid)
    assert (first["created"], first["vid"], first["role"]) == (True, vid, "resident")
    me = client.get("/api/v1/me", headers=bearer(first["token"])).json()
    assert me["vid"] == vid
    assert me["ward"] == "12"
    assert [w["ledger"] for w in me["wallets"]] == ["CREDIT", "ENERGY", "CARBON", "INR"]
    again = client.post(
        "/api/v1/residents", json={"assertion": assertion(platform, "asha")}, headers=NO_AUTH
    )
    assert again.status_code == 200
    assert again.json()["resident_id"] == first["resident_id"]


def test_bad_enrolments_get_clear_errors(client: TestClient, platform: Platform) -> None:
    token = assertion(platform, "asha")
    assert client.post("/api/v1/residents", json={"assertion": token}).status_code == 201
    replay = client.post("/api/v1/residents", json={"assertion": token})
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "assertion_replayed"
    for body in (
        {"assertion": "x.y.z"},
        {"assertion": ""},
        {},
        {"assertion": token, "more": 1},
        {"assertion": assertion(platform, "bala", sector="elsewhere")},
    ):
        r = client.post("/api/v1/residents", json=body)
        assert r.status_code == 422, body
        assert r.json()["error"]["message"]


def test_devices_over_http(client: TestClient, platform: Platform) -> None:
    resident = bearer(enrol(client, platform, "asha")["token"])
    private, public = new_key()
    r = client.post(
        "/api/v1/me/devices",
        headers=resident,
        json={"kind": "meter", "public_key": public, "label": "roof"},
    )
    assert r.status_code == 201, r.text
    device = r.json()
    assert device["active"] is True
    assert device["id"].startswith("dev-")

    # The device proves it holds its key and gets a device credential.
    now = platform.clock.now_ns() // 10**9
    proof = device_statement(private, device["id"], "cityshare-api", now=now)
    token = client.post("/api/v1/devices/token", json={"proof": proof}, headers=NO_AUTH)
    assert token.status_code == 200, token.text
    assert token.json()["role"] == "device"
    forged = device_statement(new_key()[0], device["id"], "cityshare-api", now=now)
    assert client.post("/api/v1/devices/token", json={"proof": forged}).status_code == 401

    _, rotated = new_key()
    r = client.post(
        f"/api/v1/me/devices/{device['id']}/keys", headers=resident, json={"public_key": rotated}
    )
    assert [k["revoked_at"] is None for k in r.json()["keys"]] == [False, True]
    # The old key no longer proves anything.
    assert client.post("/api/v1/devices/token", json={"proof": proof}).status_code == 401

    r = client.delete(f"/api/v1/me/devices/{device['id']}", headers=resident)
    assert r.json()["active"] is False
    bad = client.post(
        "/api/v1/me/devices",
        headers=resident,
        json={"kind": "meter", "public_key": "not-a-key-at-all-but-long-enough-000000"},
    )
    assert bad.status_code == 422


def test_each_counterparty_sees_its_own_pseudonym_of_a_vehicle(
    client: TestClient, platform: Platform
) -> None:
    resident = bearer(enrol(client, platform, "asha")["token"])
    private, public = new_key()
    car = client.post(
        "/api/v1/me/devices", headers=resident, json={"kind": "vehicle", "public_key": public}
    ).json()
    now = platform.clock.now_ns() // 10**9

    def identify(counterparty: str) -> str:
        op = staff(client, "operator", ["billing"], "parking", subject=counterparty)
        r = client.post(
            "/api/v1/vehicles/identify",
            headers=op,
            json={"presentation": device_statement(private, car["id"], counterparty, now=now)},
        )
        assert r.status_code == 200, r.text
        vehicle: str = r.json()["vehicle"]
        return vehicle

    a1, a2, b = identify("parkco"), identify("parkco"), identify("chargeco")
    assert a1 == a2
    assert a1 != b
    assert car["id"] not in (a1 + b)
    # A presentation made for one counterparty is useless to another.
    other = staff(client, "operator", ["billing"], "parking", subject="chargeco")
    stolen = device_statement(private, car["id"], "parkco", now=now)
    r = client.post("/api/v1/vehicles/identify", headers=other, json={"presentation": stolen})
    assert r.status_code == 401


def test_staff_see_only_their_purpose_and_the_resident_sees_who_looked(
    client: TestClient, platform: Platform
) -> None:
    vid = a_vid()
    asha = enrol(client, platform, "asha", vid=vid, ward="7", age_band="40-49")
    resident = bearer(asha["token"])
    _, public = new_key()
    client.post(
        "/api/v1/me/devices", headers=resident, json={"kind": "meter", "public_key": public}
    )
    _, public = new_key()
    client.post(
        "/api/v1/me/devices", headers=resident, json={"kind": "vehicle", "public_key": public}
    )

    billing = staff(client, "operator", ["billing"], "energy", subject="energy-co")
    grid = staff(client, "operator", ["grid_operations"], "energy", subject="grid-co")
    research = staff(client, "analyst", ["research"], subject="uni")

    seen = client.get(f"/api/v1/residents/{vid}?purpose=billing", headers=billing).json()
    assert set(seen) == {"purpose", "vid", "wallets"}
    seen = client.get(f"/api/v1/residents/{vid}?purpose=grid_operations", headers=grid).json()
    assert set(seen) == {"purpose", "vid", "ward", "devices"}
    assert [d["kind"] for d in seen["devices"]] == ["meter"]  # grid ops never see the car
    assert "keys" not in seen["devices"][0]
    seen = client.get(f"/api/v1/residents/{vid}?purpose=research", headers=research).json()
    assert seen == {"purpose": "research", "ward": "7", "age_band": "40-49"}

    # A purpose not granted is refused, and so not recorded.
    r = client.get(f"/api/v1/residents/{vid}?purpose=billing", headers=research)
    assert r.status_code == 403
    assert client.get(
        "/api/v1/residents/1234567890123456?purpose=billing", headers=billing
    ).status_code in (404, 422)

    log = client.get("/api/v1/me/access-log", headers=resident).json()["records"]
    assert [(r["who"], r["purpose"]) for r in log] == [
        ("operator:energy-co", "billing"),
        ("operator:grid-co", "grid_operations"),
        ("analyst:uni", "research"),
    ]
    assert log[0]["what"] == "profile: vid, wallets"


def test_ledger_reads_of_a_residents_wallet_are_recorded(
    client: TestClient, platform: Platform
) -> None:
    asha = enrol(client, platform, "asha")
    me = client.get("/api/v1/me", headers=bearer(asha["token"])).json()
    wallet = me["wallets"][0]["account_id"]
    billing = staff(client, "operator", ["billing"], "platform", subject="finance")
    assert client.get(f"/api/v1/accounts/{wallet}", headers=billing).status_code == 200
    research = staff(client, "analyst", ["research"], subject="uni")
    assert client.get(f"/api/v1/accounts/{wallet}", headers=research).status_code == 403
    log = client.get("/api/v1/me/access-log", headers=bearer(asha["token"])).json()["records"]
    assert [(r["who"], r["what"]) for r in log] == [("operator:finance", f"account {wallet}")]


def test_credentials_are_only_issued_within_the_policy(client: TestClient) -> None:
    for body in (
        {"subject": "x", "role": "analyst", "purposes": ["billing"]},
        {"subject": "x", "role": "operator", "purposes": ["billing"]},  # no domain
        {"subject": "x", "role": "operator", "domain": "transit", "purposes": ["enforcement"]},
        {"subject": "x", "role": "resident", "purposes": ["billing"]},
        {"subject": "x", "role": "auditor", "domain": "energy", "purposes": ["audit"]},
        {"subject": "bad subject", "role": "auditor", "purposes": ["audit"]},
    ):
        r = client.post("/api/v1/credentials", json=body)
        assert r.status_code == 422, body
    analyst = staff(client, "analyst", ["research"])
    r = client.post(
        "/api/v1/credentials",
        headers=analyst,
        json={"subject": "x", "role": "admin", "purposes": ["audit"]},
    )
    assert r.status_code == 403


def test_tokens_expire_and_forgeries_are_refused(client: TestClient, platform: Platform) -> None:
    token = enrol(client, platform, "asha")["token"]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-4]}AAAA"
    assert client.get("/api/v1/me", headers=bearer(tampered)).status_code == 401
    platform.clock.advance(platform.settings.token_ttl_seconds + 1)  # type: ignore[attr-defined]
    expired = client.get("/api/v1/me", headers=bearer(token))
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
