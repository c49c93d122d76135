"""Over HTTP: a meter posts signed readings, the resident watches the credit arrive."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform, unit_of_work
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger, NewAccount
from energy_helpers import sign
from identity_helpers import assertion, device_statement, new_key

NO_AUTH = {"Authorization": ""}


def enrol_with_meter(client: TestClient, platform: Platform) -> dict[str, Any]:
    enrolled = client.post("/api/v1/residents", json={"assertion": assertion(platform)}).json()
    resident = {"Authorization": f"Bearer {enrolled['token']}"}
    key, public = new_key()
    meter = client.post(
        "/api/v1/me/devices", headers=resident, json={"kind": "meter", "public_key": public}
    ).json()["id"]
    return {"resident": resident, "key": key, "meter": meter}


def test_a_meter_posts_readings_and_the_resident_sees_the_credit(
    client: TestClient, platform: Platform, clock: ManualClock
) -> None:
    world = enrol_with_meter(client, platform)
    start = clock.now_ns() // 10**9
    clock.advance(3000)  # within the resident's token lifetime
    key, meter = world["key"], world["meter"]
    readings = [
        sign(key, meter, seq=seq, ts=start + 900 * seq, import_wh=10 * seq, export_wh=1000 * seq)
        for seq in range(4)
    ]
    # No bearer token: the signatures are the credential.
    first = client.post("/api/v1/readings", json=[*readings[:3], "junk"], headers=NO_AUTH)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "accepted": 3,
        "anomalies": 0,
        "duplicates": 0,
        "rejected": 1,
        "results": [
            {"index": 0, "result": "accepted", "device": meter},
            {"index": 1, "result": "accepted", "device": meter},
            {"index": 2, "result": "accepted", "device": meter},
            {"index": 3, "result": "rejected:malformed", "device": None},
        ],
    }
    # A device's own bearer token is accepted and ignored; a replay changes nothing.
    now = clock.now_ns() // 10**9
    device_token = client.post(
        "/api/v1/devices/token",
        json={"proof": device_statement(key, meter, "cityshare-api", now=now)},
    ).json()["token"]
    again = client.post(
        "/api/v1/readings",
        json=readings,
        headers={"Authorization": f"Bearer {device_token}"},
    )
    assert again.status_code == 200
    assert [r["result"] for r in again.json()["results"]] == ["duplicate"] * 3 + ["accepted"]

    energy = client.get("/api/v1/me/energy", headers=world["resident"], params={"days": 2})
    assert energy.status_code == 200, energy.text
    body = energy.json()
    assert body["timezone"] == "Asia/Kolkata"
    assert body["devices"] == [
        {
            "device": meter,
            "kind": "meter",
            "label": None,
            "seq": 3,
            "ts": start + 2700,
            "import_wh": 30,
            "export_wh": 3000,
            "waiting": 0,
            "waiting_seqs": [],
        }
    ]
    # 3 kWh at night (normal hours): 3 points and 3 * 861 g.
    assert body["totals"] == {
        "exported_wh": 3000,
        "imported_wh": 30,
        "carbon_g": 2583,
        "credit_milli": 3000,
    }
    assert len(body["days"]) == 2
    assert sum(day["carbon_g"] for day in body["days"]) == 2583
    me = client.get("/api/v1/me", headers=world["resident"]).json()
    balances = {w["ledger"]: w["balance"] for w in me["wallets"]}
    assert (balances["CARBON"], balances["CREDIT"], balances["ENERGY"]) == (2583, 3000, 2970)


def test_the_batch_summary_counts_anomalies_apart_from_accepted_readings(
    client: TestClient, platform: Platform, clock: ManualClock
) -> None:
    """An anomaly is stored but credits nothing: the summary must not count it as accepted."""
    world = enrol_with_meter(client, platform)
    key, meter = world["key"], world["meter"]
    now = clock.now_ns() // 10**9
    first = sign(key, meter, seq=0, ts=now - 900, import_wh=0, export_wh=0)
    ahead = sign(key, meter, seq=1, ts=now + 30 * 86400, import_wh=10, export_wh=10)
    client.post("/api/v1/readings", json=[first], headers=NO_AUTH)
    answer = client.post("/api/v1/readings", json=[first, ahead, "junk"], headers=NO_AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["result"] for r in body["results"]] == [
        "duplicate",
        "anomaly:future_timestamp",
        "rejected:malformed",
    ]
    counts = {k: body[k] for k in ("accepted", "anomalies", "duplicates", "rejected")}
    assert counts == {"accepted": 0, "anomalies": 1, "duplicates": 1, "rejected": 1}


def test_a_meter_shows_the_latest_reading_credited_and_apart_what_waits_for_a_gap(
    client: TestClient, platform: Platform, clock: ManualClock
) -> None:
    """A reading beyond a missing one is stored and waits; the meter's latest reading stays the
    top of its chain (not the highest seq received, here 2^63-1), and the waiting one is listed."""
    world = enrol_with_meter(client, platform)
    key, meter = world["key"], world["meter"]
    now = clock.now_ns() // 10**9

    def meter_view() -> dict[str, Any]:
        body = client.get("/api/v1/me/energy", headers=world["resident"]).json()
        view: dict[str, Any] = body["devices"][0]
        return view

    assert meter_view()["seq"] is None  # nothing received yet
    assert meter_view()["waiting"] == 0
    far = 2**63 - 1
    readings = [
        sign(key, meter, seq=0, ts=now + 100, import_wh=0, export_wh=0),
        sign(key, meter, seq=1, ts=now + 1000, import_wh=5, export_wh=500),
        sign(key, meter, seq=3, ts=now + 2800, import_wh=9, export_wh=900),
        sign(key, meter, seq=far, ts=now + 3000, import_wh=10, export_wh=1000),
    ]
    clock.advance(3000)
    answer = client.post("/api/v1/readings", json=readings, headers=NO_AUTH)
    assert answer.json()["accepted"] == 4, answer.json()
    view = meter_view()
    latest = (view["seq"], view["ts"], view["import_wh"], view["export_wh"])
    assert latest == (1, now + 1000, 5, 500)
    assert (view["waiting"], view["waiting_seqs"]) == (2, [3, far])


def test_batch_level_problems_are_4xx_and_write_nothing(
    client: TestClient, platform: Platform
) -> None:
    with platform.uow() as uow:
        before = uow.log.size()
    too_many = client.post("/api/v1/readings", json=["x"] * 1001, headers=NO_AUTH)
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "batch_too_large"
    for body, status in (([], 422), ({"readings": []}, 422), ([1, 2], 422)):
        r = client.post("/api/v1/readings", json=body, headers=NO_AUTH)
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()
    malformed = client.post(
        "/api/v1/readings",
        content=b"[not json",
        headers={**NO_AUTH, "content-type": "application/json"},
    )
    assert malformed.status_code == 400
    with platform.uow() as uow:
        assert uow.log.size() == before


def test_only_residents_read_their_energy(client: TestClient) -> None:
    assert client.get("/api/v1/me/energy", headers=NO_AUTH).status_code == 401
    assert client.get("/api/v1/me/energy").status_code == 403  # the operator token is an admin
    spec = client.get("/openapi.json").json()
    assert "/api/v1/readings" in spec["paths"]
    assert "/api/v1/me/energy" in spec["paths"]


def test_intervals_awaiting_review_are_shown_to_the_resident_and_to_grid_operations(
    client: TestClient, clock: ManualClock, platform: Platform
) -> None:
    """Issue 9, defect 3: energy not credited (a meter reset) is visible, never silent."""
    world = enrol_with_meter(client, platform)
    start = clock.now_ns() // 10**9
    clock.advance(3000)
    key, meter = world["key"], world["meter"]
    claims = [(0, 5000), (900, 5100), (1800, 3), (2700, 50)]  # the third: a meter reset
    readings = [
        sign(key, meter, seq=i, ts=start + t, import_wh=imp, export_wh=0)
        for i, (t, imp) in enumerate(claims)
    ]
    assert client.post("/api/v1/readings", json=readings, headers=NO_AUTH).status_code == 200
    body = client.get("/api/v1/me/energy", headers=world["resident"]).json()
    review = [(r["device"], r["seq"], r["prev_seq"], r["status"]) for r in body["awaiting_review"]]
    assert review == [(meter, 2, 1, "meter_reset")]
    grants = {"subject": "grid", "role": "operator", "domain": "energy"}
    grid = client.post("/api/v1/credentials", json={**grants, "purposes": ["grid_operations"]})
    billing = client.post("/api/v1/credentials", json={**grants, "purposes": ["billing"]})
    seen = client.get(
        "/api/v1/energy/review", headers={"Authorization": f"Bearer {grid.json()['token']}"}
    )
    assert seen.status_code == 200, seen.text
    assert seen.json() == body["awaiting_review"]
    refused = client.get(
        "/api/v1/energy/review", headers={"Authorization": f"Bearer {billing.json()['token']}"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "purpose_not_granted"
    assert client.get("/api/v1/energy/review", headers=world["resident"]).status_code == 403


def test_the_review_queue_shows_an_organisation_only_its_related_residents_and_is_recorded(
    client: TestClient, clock: ManualClock, platform: Platform
) -> None:
    """A provider's grid desk sees the meters of its own customers awaiting review, not every
    resident's; each resident named in the queue finds the read in their access log."""
    world = enrol_with_meter(client, platform)
    start = clock.now_ns() // 10**9
    clock.advance(3000)
    claims = [(0, 5000), (900, 5100), (1800, 3), (2700, 50)]  # the third: a meter reset
    readings = [
        sign(world["key"], world["meter"], seq=i, ts=start + t, import_wh=imp, export_wh=0)
        for i, (t, imp) in enumerate(claims)
    ]
    assert client.post("/api/v1/readings", json=readings, headers=NO_AUTH).status_code == 200
    ours, theirs = (
        client.post("/api/v1/organisations", json={"kind": "provider", "name": name}).json()["id"]
        for name in ("Ours Power", "Theirs Power")
    )
    prices = {"normal": 650, "solar": 480, "peak": 790}
    listed = client.put(f"/api/v1/organisations/{ours}/price-list", json={"prices": prices})
    assert listed.status_code == 201, listed.text
    chosen = client.put(
        "/api/v1/me/energy/provider", headers=world["resident"], json={"provider_id": ours}
    )
    assert chosen.status_code == 200, chosen.text

    def desk(org: int) -> dict[str, str]:
        made = client.post(
            "/api/v1/credentials",
            json={"subject": f"grid-{org}", "role": "operator", "domain": "energy",
                  "purposes": ["grid_operations"], "org_id": org},
        )  # fmt: skip
        assert made.status_code in (200, 201), made.text
        return {"Authorization": f"Bearer {made.json()['token']}"}

    assert client.get("/api/v1/energy/review", headers=desk(theirs)).json() == []
    seen = client.get("/api/v1/energy/review", headers=desk(ours))
    assert [r["device"] for r in seen.json()] == [world["meter"]]
    log = client.get("/api/v1/me/access-log", headers=world["resident"]).json()["records"]
    reads = [(e["who"], e["purpose"], e["what"]) for e in log]
    assert reads == [(f"operator:grid-{ours}", "grid_operations", "meters awaiting review")]


def test_readings_are_refused_with_a_503_while_the_platforms_energy_accounts_are_unusable(
    client: TestClient, platform: Platform, clock: ManualClock
) -> None:
    """Account 901 opened with other fields (by a client, before 901-904 were reserved) stops
    crediting: a reading is answered 503 `ingestion_unavailable` and nothing is written, so the
    meter's retry is safe once an operator mends it; never a 500."""
    world = enrol_with_meter(client, platform)
    with unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer) as uow:
        last = uow.ledger.lock_ledger()
        ledger_service.open_accounts(
            uow, [NewAccount(901, Ledger.CREDIT, 1, 0, "someone")], last_timestamp=last,
            atomic=True,
        )  # fmt: skip
        uow.commit()
        before = uow.log.size()
    clock.advance(900)
    now = clock.now_ns() // 10**9
    readings = [
        sign(world["key"], world["meter"], seq=i, ts=now - 900 + 900 * i, import_wh=0,
             export_wh=500 * i)
        for i in range(2)
    ]  # fmt: skip
    answer = client.post("/api/v1/readings", json=readings, headers=NO_AUTH)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "ingestion_unavailable"
    with platform.uow() as uow:
        assert uow.log.size() == before
