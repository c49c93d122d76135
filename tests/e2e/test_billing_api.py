"""Over HTTP, end to end: a provider's staff publish a price list, a resident chooses that
provider, their meter imports energy, a platform operator tops their wallet up, billing pays
what it can, and the monthly statement shows bills, payments, arrears and the wallet; staff
read it only for billing (recorded), and no resident reads another's."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cityshare.billing import commands
from cityshare.bootstrap import Platform
from cityshare.kernel.clock import ManualClock
from energy_helpers import sign
from identity_helpers import a_vid, assertion, new_key

NO_AUTH = {"Authorization": ""}
MONTH = "2023-11"  # the test clock starts on 15 November 2023


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def staff(client: TestClient, subject: str, purposes: list[str], **extra: Any) -> dict[str, str]:
    body = {"subject": subject, "role": "operator", "purposes": purposes, **extra}
    r = client.post("/api/v1/credentials", json=body)
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


def enrol(client: TestClient, platform: Platform, person: str, vid: str) -> dict[str, Any]:
    r = client.post("/api/v1/residents", json={"assertion": assertion(platform, person, vid=vid)})
    assert r.status_code == 201, r.text
    headers = bearer(r.json()["token"])
    wallets = client.get("/api/v1/me", headers=headers).json()["wallets"]
    inr = next(w["account_id"] for w in wallets if w["ledger"] == "INR")
    return {"headers": headers, "inr": inr, "vid": vid}


def top_up(client: TestClient, reference: str, vid: str, paise: int) -> None:
    """A platform operator credits rupees received at the bank to a resident's INR wallet."""
    r = client.post(
        f"/api/v1/residents/{vid}/top-ups", json={"amount": paise, "reference": reference}
    )
    assert r.status_code == 201, r.text
    assert r.json()["created"] is True


def test_a_resident_pays_for_imported_energy_and_reads_the_statement(
    client: TestClient, platform: Platform, clock: ManualClock
) -> None:
    # Two providers; each one's own staff set its prices.
    orgs = [
        client.post("/api/v1/organisations", json={"kind": "provider", "name": name}).json()["id"]
        for name in ("City Power", "SunLease")
    ]
    city, sunlease = orgs
    city_staff = staff(client, "city-billing", ["billing"], domain="energy", org_id=city)
    sun_staff = staff(client, "sun-billing", ["billing"], domain="energy", org_id=sunlease)
    prices = {"normal": 500, "solar": 350, "peak": 800}
    r = client.put(
        f"/api/v1/organisations/{sunlease}/price-list", headers=sun_staff, json={"prices": prices}
    )
    assert r.status_code == 201, r.text
    assert r.json()["prices"] == prices
    assert r.json()["set_by"] == "operator:sun-billing"
    # Another provider's staff cannot touch it; a subscription fee is refused with the reason.
    assert (
        client.put(
            f"/api/v1/organisations/{sunlease}/price-list",
            headers=city_staff,
            json={"prices": prices},
        ).status_code
        == 403
    )
    for body, code in (
        ({"prices": prices, "subscription_fee": 9900}, "fixed_charge"),
        ({"prices": {**prices, "peak": 7.5}}, "invalid_price"),
        ({"prices": {**prices, "night": 100}}, "unknown_window"),
        ({"prices": {**prices, "normal": -1}}, "invalid_price"),
    ):
        r = client.put(f"/api/v1/organisations/{city}/price-list", headers=city_staff, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code
    assert client.get(f"/api/v1/organisations/{city}/price-list").json()["current"] is None
    r = client.put(
        f"/api/v1/organisations/{city}/price-list",
        headers=city_staff,
        json={"prices": {"normal": 600, "solar": 400, "peak": 900}},
    )
    assert r.status_code == 201, r.text

    asha = enrol(client, platform, "asha", a_vid())
    bala = enrol(client, platform, "bala", a_vid())
    mine = client.get("/api/v1/me/energy/provider", headers=asha["headers"]).json()
    assert mine["basis"] == "default"
    assert mine["provider"]["name"] == "City Power"  # the first provider registered
    r = client.put(
        "/api/v1/me/energy/provider", headers=asha["headers"], json={"provider_id": sunlease}
    )
    assert r.status_code == 200, r.text
    assert r.json()["basis"] == "chosen"
    assert r.json()["provider"]["current"]["prices"] == prices
    assert (
        client.put(
            "/api/v1/me/energy/provider", headers=asha["headers"], json={"provider_id": 5}
        ).status_code
        == 404
    )

    # Asha's meter imports 1000, 1500 and 1500 Wh in normal hours: 500 + 750 + 750 paise.
    key, public = new_key()
    meter = client.post(
        "/api/v1/me/devices", headers=asha["headers"], json={"kind": "meter", "public_key": public}
    ).json()["id"]
    start = clock.now_ns() // 10**9
    clock.advance(600)
    registers = [0, 1000, 2500, 4000]
    readings = [
        sign(key, meter, seq=k, ts=start + 60 * (k + 1), import_wh=wh, export_wh=0)
        for k, wh in enumerate(registers)
    ]
    assert client.post("/api/v1/readings", json=readings, headers=NO_AUTH).json()["accepted"] == 4

    # A platform operator tops Asha up with ₹15 from the settlement account.
    top_up(client, "UTR-1", asha["vid"], 1500)
    first = platform.bus.handle(commands.BillEnergy())
    assert (first.bills, first.paid, first.unpaid_bills) == (3, 1250, 1)

    statement = client.get(f"/api/v1/me/statements/{MONTH}", headers=asha["headers"])
    assert statement.status_code == 200, statement.text
    s = statement.json()
    assert s["imports"] == [
        {
            "provider_id": sunlease,
            "provider": "SunLease",
            "window": "normal",
            "import_wh": 4000,
            "amount": 2000,
            "bills": 3,
        }
    ]
    assert s["wallet"] == {
        "opening": 0,
        "received": 1500,
        "paid": 1250,
        "other_debits": 0,
        "closing": 250,
    }
    assert s["arrears"] == {"at_close": 750, "bills_at_close": 1, "now": 750, "bills_now": 1}
    assert s["totals"]["billed"] == s["wallet"]["paid"] + s["arrears"]["now"]

    # After another top-up the next run pays the arrears.
    top_up(client, "UTR-2", asha["vid"], 1000)
    assert platform.bus.handle(commands.BillEnergy()).paid == 750
    s = client.get(f"/api/v1/me/statements/{MONTH}", headers=asha["headers"]).json()
    assert s["wallet"]["closing"] == 2500 - 2000
    assert s["arrears"]["now"] == 0
    assert s["payments"] == [
        {"provider_id": sunlease, "provider": "SunLease", "amount": 2000, "count": 3}
    ]

    # Billing staff read it (recorded in Asha's access log); another resident cannot.
    url = f"/api/v1/residents/{asha['vid']}/statements/{MONTH}"
    biller = staff(client, "platform-billing", ["billing"], domain="platform")
    r = client.get(url, headers=biller, params={"purpose": "billing"})
    assert r.status_code == 200, r.text
    assert r.json() == s
    log = client.get("/api/v1/me/access-log", headers=asha["headers"]).json()["records"]
    assert [(x["who"], x["purpose"], x["what"]) for x in log] == [
        ("operator:platform-billing", "billing", f"energy statement {MONTH}")
    ]
    assert client.get(url, headers=bala["headers"], params={"purpose": "billing"}).status_code == (
        403
    )
    grid = staff(client, "grid", ["grid_operations"], domain="energy")
    assert client.get(url, headers=grid, params={"purpose": "grid_operations"}).status_code == 403
    assert client.get(url, headers=grid, params={"purpose": "billing"}).status_code == 403
    theirs = client.get(f"/api/v1/me/statements/{MONTH}", headers=bala["headers"]).json()
    assert theirs["imports"] == []
    assert theirs["wallet"]["closing"] == 0
    for month in ("2023-13", "2300-01", "9999-12"):
        refused = client.get(f"/api/v1/me/statements/{month}", headers=bala["headers"])
        assert refused.status_code == 422, month
