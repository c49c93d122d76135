"""Organisations over HTTP: admins register them, anyone signed in lists them, and only an
organisation's own staff (or an admin) sees its wallets and manages its devices."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from identity_helpers import assertion, new_key


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def staff_of(client: TestClient, org_id: int, domain: str = "energy") -> dict[str, str]:
    r = client.post(
        "/api/v1/credentials",
        json={
            "subject": f"staff-{org_id}",
            "role": "operator",
            "domain": domain,
            "purposes": ["billing"],
            "org_id": org_id,
        },
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


def test_an_operator_registers_chargers_and_sees_only_its_own_organisation(
    client: TestClient, platform: Platform
) -> None:
    made: list[dict[str, Any]] = [
        client.post("/api/v1/organisations", json=body).json()
        for body in (
            {"kind": "operator", "name": "Highway Chargers", "domain": "energy"},
            {"kind": "provider", "name": "City Power"},
        )
    ]
    chargers, power = made[0]["id"], made[1]["id"]
    assert made[1]["domain"] == "energy"
    ours = staff_of(client, chargers)

    r = client.post(
        f"/api/v1/organisations/{chargers}/devices",
        headers=ours,
        json={"kind": "charger", "public_key": new_key()[1], "label": "Bay 1"},
    )
    assert r.status_code == 201, r.text
    charger = r.json()["id"]
    account = client.get(f"/api/v1/organisations/{chargers}", headers=ours).json()
    assert [d["id"] for d in account["devices"]] == [charger]
    assert {w["ledger"] for w in account["wallets"]} == {"CREDIT", "ENERGY", "CARBON", "INR"}

    # Another organisation's account and devices are not ours.
    assert client.get(f"/api/v1/organisations/{power}", headers=ours).status_code == 403
    assert (
        client.post(
            f"/api/v1/organisations/{power}/devices",
            headers=ours,
            json={"kind": "meter", "public_key": new_key()[1]},
        ).status_code
        == 403
    )
    # A resident lists organisations (to choose a provider) but sees no account.
    resident = client.post(
        "/api/v1/residents", json={"assertion": assertion(platform, "asha")}
    ).json()["token"]
    listed = client.get("/api/v1/organisations", headers=bearer(resident)).json()
    assert [o["name"] for o in listed] == ["Highway Chargers", "City Power"]
    assert "wallets" not in listed[0]
    only = client.get("/api/v1/organisations?kind=provider", headers=bearer(resident)).json()
    assert [o["id"] for o in only] == [power]
    assert (
        client.get(f"/api/v1/organisations/{chargers}", headers=bearer(resident)).status_code == 403
    )

    revoked = client.delete(f"/api/v1/organisations/{chargers}/devices/{charger}", headers=ours)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False


def test_bad_requests_get_reasons(client: TestClient) -> None:
    def post(body: dict[str, Any]) -> tuple[int, str]:
        r = client.post("/api/v1/organisations", json=body)
        return r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else ""

    assert post({"kind": "operator", "name": "No Domain"}) == (422, "invalid_domain")
    assert post({"kind": "bank", "name": "A Bank"})[0] == 422
    assert post({"kind": "provider", "name": "P", "extra": 1})[0] == 422
    assert post({"kind": "provider", "name": "P"})[0] == 201
    assert post({"kind": "provider", "name": "P"}) == (409, "name_taken")
    assert client.get("/api/v1/organisations/5").status_code == 422  # not an organisation id
    missing = client.get(f"/api/v1/organisations/{(1 << 57) + 99}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.post(
        "/api/v1/credentials",
        json={"subject": "x", "role": "analyst", "purposes": ["research"], "org_id": 1 << 57},
    )
    assert wrong.status_code == 422
    assert "only an operator" in wrong.json()["error"]["message"]
