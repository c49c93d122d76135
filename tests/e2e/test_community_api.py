"""Over HTTP: a community solar array's staff register its meter and issue shares, the meter
earns, a holder gives shares away, the asset is settled, and each holder sees their payout;
staff see holders by VID only for billing, and every such read is in the holder's access log."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from cityshare.kernel.clock import ManualClock
from energy_helpers import sign
from identity_helpers import a_vid, assertion, new_key

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NOV_15 = dt.date(2023, 11, 15)  # the ManualClock starts that morning in India


def ist(day: dt.date, hh: int = 0, mm: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hh, mm), IST).timestamp())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def move_to(clock: ManualClock, unix_s: int) -> None:
    clock.advance(unix_s - clock.now_ns() // 10**9)


def staff_of(client: TestClient, asset: int, subject: str, purpose: str) -> dict[str, str]:
    """A fresh credential of the asset's staff (tokens last an hour; the test moves days)."""
    r = client.post(
        "/api/v1/credentials",
        json={
            "subject": subject,
            "role": "operator",
            "domain": "energy",
            "purposes": [purpose],
            "org_id": asset,
        },
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


def sign_in(client: TestClient, platform: Platform, name: str, vid: str) -> dict[str, str]:
    r = client.post("/api/v1/residents", json={"assertion": assertion(platform, name, vid=vid)})
    assert r.status_code in (200, 201), r.text
    return bearer(r.json()["token"])


def test_a_community_array_pays_its_shareholders(
    client: TestClient, platform: Platform, clock: ManualClock
) -> None:
    asset = client.post(
        "/api/v1/organisations", json={"kind": "community", "name": "Ward 9 Solar"}
    ).json()["id"]
    staff = staff_of(client, asset, "ward9-desk", "billing")
    # Its meter is a device of the organisation.
    key: Ed25519PrivateKey
    key, public = new_key()
    meter = client.post(
        f"/api/v1/organisations/{asset}/devices",
        headers=staff,
        json={"kind": "meter", "public_key": public, "label": "array"},
    ).json()["id"]

    people = {}
    for name in ("asha", "bala", "chitra"):
        vid = a_vid()
        people[name] = (vid, sign_in(client, platform, name, vid))
    for name, shares in (("asha", 1), ("bala", 2), ("chitra", 4)):
        r = client.post(
            f"/api/v1/organisations/{asset}/shares",
            headers=staff,
            json={"vid": people[name][0], "shares": shares},
        )
        assert r.status_code == 201, r.text
        assert r.json()["holding"] == shares

    # Chitra gives Asha one share; giving more than she holds is refused.
    chitra = people["chitra"][1]
    r = client.post(
        "/api/v1/me/shares/transfers",
        headers=chitra,
        json={"asset_id": asset, "to_vid": people["asha"][0], "shares": 1},
    )
    assert r.status_code == 201, r.text
    assert r.json()["holding"] == 3
    r = client.post(
        "/api/v1/me/shares/transfers",
        headers=chitra,
        json={"asset_id": asset, "to_vid": people["asha"][0], "shares": 4},
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "insufficient_shares"

    # The array exports 1 kWh in solar hours: 800 milli-points and 861 g CO2e for the asset.
    move_to(clock, ist(NOV_15, 23))
    staff = staff_of(client, asset, "ward9-desk", "billing")
    readings = [
        sign(key, meter, seq=0, ts=ist(NOV_15, 10), import_wh=0, export_wh=0),
        sign(key, meter, seq=1, ts=ist(NOV_15, 10, 15), import_wh=0, export_wh=1000),
    ]
    r = client.post("/api/v1/readings", json=readings, headers={"Authorization": ""})
    assert r.status_code == 200, r.text
    wallets = client.get(f"/api/v1/organisations/{asset}", headers=staff).json()["wallets"]
    assert {w["ledger"]: w["balance"] for w in wallets}["CREDIT"] == 800

    # While the period is open nothing is due, and the answer says why and until when.
    r = client.post(f"/api/v1/organisations/{asset}/distributions", headers=staff)
    assert r.status_code == 200, r.text
    nothing = r.json()
    assert nothing["settlements"] == []
    assert nothing["period"] == "monthly"
    assert nothing["current_period_end"] == "2023-12-01T00:00:00+05:30"
    assert nothing["checked_until"] == "2023-11-15T23:00:00+05:30"
    assert nothing["message"].startswith("nothing was due: no monthly period of this asset")
    assert "2023-12-01T00:00:00+05:30" in nothing["message"]

    # A period that has not ended cannot be settled; on 1 December it can, once.
    early = client.post(
        f"/api/v1/organisations/{asset}/distributions",
        headers=staff,
        json={"period_end": "2023-12-01"},
    )
    assert early.status_code == 422
    assert early.json()["error"]["code"] == "period_not_ended"
    move_to(clock, ist(dt.date(2023, 12, 1), 9))
    staff = staff_of(client, asset, "ward9-desk", "billing")
    blind = staff_of(client, asset, "ward9-grid", "grid_operations")
    people = {
        name: (vid, sign_in(client, platform, name, vid)) for name, (vid, _) in people.items()
    }
    chitra = people["chitra"][1]
    r = client.post(f"/api/v1/organisations/{asset}/distributions", headers=staff)
    assert r.status_code == 200, r.text
    [settled] = r.json()["settlements"]
    assert r.json()["message"] == "1 period end(s) settled: 1 distributed"
    assert settled["status"] == "distributed"
    assert settled["period_end"] == "2023-12-01T00:00:00+05:30"
    assert settled["distribution"]["credit_milli"] == 800
    assert settled["distribution"]["carbon_g"] == 861
    again = client.post(
        f"/api/v1/organisations/{asset}/distributions",
        headers=staff,
        json={"period_end": "2023-12-01"},
    ).json()
    assert [s["status"] for s in again["settlements"]] == ["already_distributed"]

    # Shares 2:2:3 of 800 = 228.57, 228.57, 342.86: floors 798, the two milli-points left go
    # to the largest remainders (.86, then .57 of the lower resident id, Asha).
    paid = {}
    for name, (_, headers) in people.items():
        mine = client.get("/api/v1/me/shares", headers=headers).json()
        [holding] = mine["holdings"]
        [payout] = mine["payouts"]
        assert holding["asset_name"] == "Ward 9 Solar"
        assert holding["total_shares"] == 7
        assert payout["shares"] == holding["shares"]
        paid[name] = (payout["shares"], payout["credit_milli"], payout["carbon_g"])
        balances = {
            w["ledger"]: w["balance"]
            for w in client.get("/api/v1/me", headers=headers).json()["wallets"]
        }
        assert (balances["CREDIT"], balances["CARBON"]) == paid[name][1:]
    assert paid == {"asha": (2, 229, 246), "bala": (2, 228, 246), "chitra": (3, 343, 369)}
    assert sum(p[1] for p in paid.values()) == 800
    assert sum(p[2] for p in paid.values()) == 861

    # Staff see counts; holders by VID only for billing, and each holder sees that read.
    counts = client.get(f"/api/v1/organisations/{asset}/shares", headers=staff).json()
    assert (counts["holders"], counts["total_shares"]) == (3, 7)
    assert "holdings" not in counts
    assert counts["distributions"][0]["credit_milli"] == 800
    refused = client.get(f"/api/v1/organisations/{asset}/shares?purpose=billing", headers=blind)
    assert refused.status_code == 403
    listed = client.get(f"/api/v1/organisations/{asset}/shares?purpose=billing", headers=staff)
    assert sorted((h["vid"], h["shares"]) for h in listed.json()["holdings"]) == sorted(
        [(people["asha"][0], 2), (people["bala"][0], 2), (people["chitra"][0], 3)]
    )
    log = client.get("/api/v1/me/access-log", headers=people["bala"][1]).json()["records"]
    assert [(a["who"], a["purpose"]) for a in log] == [("operator:ward9-desk", "billing")]
    # A resident cannot read the asset's holders at all.
    assert client.get(f"/api/v1/organisations/{asset}/shares", headers=chitra).status_code == 403
