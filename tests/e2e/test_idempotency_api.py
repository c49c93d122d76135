"""Over HTTP: the writes that are not idempotent by themselves (issuing and transferring shares,
registering a device) take an `Idempotency-Key`. A retry with the same key and request gets the
first answer again, byte for byte, with `Idempotent-Replayed: true`, and changes nothing
(holdings, devices, the audit log); the same key with another request is a 422; a malformed
key a 400; keys of different principals never meet; racing retries make one effect."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cityshare.audit import verify as audit
from cityshare.bootstrap import Platform
from identity_helpers import a_vid, assertion, new_key

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"

#: The writes that take the header (path templates as in the OpenAPI).
KEYED = [
    "/api/v1/organisations/{org_id}/shares",
    "/api/v1/me/shares/transfers",
    "/api/v1/me/devices",
    "/api/v1/organisations/{org_id}/devices",
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Resident:
    def __init__(self, client: TestClient, platform: Platform, name: str) -> None:
        self.vid = a_vid()
        r = client.post(
            "/api/v1/residents", json={"assertion": assertion(platform, name, vid=self.vid)}
        )
        assert r.status_code == 201, r.text
        self.headers = bearer(r.json()["token"])

    def with_key(self, key: str) -> dict[str, str]:
        return {**self.headers, KEY: key}


def staff_of(client: TestClient, asset: int, subject: str) -> dict[str, str]:
    r = client.post(
        "/api/v1/credentials",
        json={
            "subject": subject,
            "role": "operator",
            "domain": "energy",
            "purposes": ["billing"],
            "org_id": asset,
        },
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


@pytest.fixture
def asset(client: TestClient) -> int:
    r = client.post("/api/v1/organisations", json={"kind": "community", "name": "Ward 9 Solar"})
    assert r.status_code == 201, r.text
    org: int = r.json()["id"]
    return org


@pytest.fixture
def asha(client: TestClient, platform: Platform) -> Resident:
    return Resident(client, platform, "asha")


@pytest.fixture
def bala(client: TestClient, platform: Platform) -> Resident:
    return Resident(client, platform, "bala")


def log_size(client: TestClient) -> int:
    """The audit log's size, from its signed checkpoint (origin, size, root hash, ...)."""
    return int(client.get("/api/v1/log/checkpoint").text.splitlines()[1])


def post_raw(
    client: TestClient,
    url: str,
    body: Any,
    keys: list[bytes],
    auth: dict[str, str] | None = None,
) -> httpx.Response:
    """POST with exactly these `Idempotency-Key` header values, as bytes on the wire (httpx
    would merge repeated headers and encode text)."""
    request = client.build_request("POST", url, json=body)
    raw = [(k, v) for k, v in request.headers.raw if not (auth and k.lower() == b"authorization")]
    raw += [(k.encode(), v.encode()) for k, v in (auth or {}).items()]
    request.headers = httpx.Headers(raw + [(KEY.encode(), key) for key in keys])
    return client.send(request)


def shares_of(client: TestClient, resident: Resident) -> dict[int, int]:
    r = client.get("/api/v1/me/shares", headers=resident.headers)
    assert r.status_code == 200, r.text
    return {h["asset_id"]: h["shares"] for h in r.json()["holdings"]}


def devices_of(client: TestClient, resident: Resident) -> list[str]:
    r = client.get("/api/v1/me/devices", headers=resident.headers)
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()]


def state(client: TestClient, asset: int, *people: Resident) -> dict[str, Any]:
    """Everything a keyed write could change: holdings, devices, the log's size."""
    org = client.get(f"/api/v1/organisations/{asset}").json()
    return {
        "shares": [shares_of(client, p) for p in people],
        "devices": [devices_of(client, p) for p in people],
        "org_devices": sorted(d["id"] for d in org["devices"]),
        "log": log_size(client),
    }


def assert_replayed(first: httpx.Response, again: httpx.Response) -> None:
    assert REPLAYED not in first.headers
    assert again.headers[REPLAYED] == "true"
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.headers["content-type"] == "application/json"


def grant(client: TestClient, asset: int, resident: Resident, shares: int) -> None:
    """The admin issues shares (without a key)."""
    r = client.post(
        f"/api/v1/organisations/{asset}/shares", json={"vid": resident.vid, "shares": shares}
    )
    assert r.status_code == 201, r.text


def audit_ok(platform: Platform) -> None:
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, "\n".join(str(p) for p in report.problems)


# -- a retry answers the first answer and changes nothing ------------------------------------


def test_issuing_shares_again_with_the_key_replays_the_first_answer(
    client: TestClient, platform: Platform, asset: int, asha: Resident
) -> None:
    staff = {**staff_of(client, asset, "ward9-desk"), KEY: "issue-asha-5"}
    url = f"/api/v1/organisations/{asset}/shares"
    first = client.post(url, headers=staff, json={"vid": asha.vid, "shares": 5})
    assert first.status_code == 201, first.text
    assert first.json()["holding"] == 5
    before = state(client, asset, asha)

    # The same request, the body spelled differently (other key order, white space).
    again = client.post(
        url,
        headers={**staff, "Content-Type": "application/json"},
        content=f'{{ "shares": 5,  "vid": "{asha.vid}" }}',
    )

    assert_replayed(first, again)
    assert state(client, asset, asha) == before
    assert shares_of(client, asha) == {asset: 5}
    audit_ok(platform)


def test_transferring_shares_again_with_the_key_moves_them_once(
    client: TestClient, asset: int, asha: Resident, bala: Resident
) -> None:
    grant(client, asset, asha, 5)
    body = {"asset_id": asset, "to_vid": bala.vid, "shares": 2}
    first = client.post("/api/v1/me/shares/transfers", headers=asha.with_key("gift-1"), json=body)
    assert first.status_code == 201, first.text
    assert first.json()["holding"] == 3
    before = state(client, asset, asha, bala)

    for _ in range(3):
        again = client.post(
            "/api/v1/me/shares/transfers", headers=asha.with_key("gift-1"), json=body
        )
        assert_replayed(first, again)
    assert state(client, asset, asha, bala) == before
    assert (shares_of(client, asha), shares_of(client, bala)) == ({asset: 3}, {asset: 2})


def test_registering_a_device_again_with_the_key_answers_the_same_device(
    client: TestClient, asset: int, asha: Resident
) -> None:
    body = {"kind": "meter", "public_key": new_key()[1], "label": "roof"}
    first = client.post("/api/v1/me/devices", headers=asha.with_key("meter-1"), json=body)
    assert first.status_code == 201, first.text
    before = state(client, asset, asha)

    again = client.post("/api/v1/me/devices", headers=asha.with_key("meter-1"), json=body)

    assert_replayed(first, again)
    assert state(client, asset, asha) == before
    assert devices_of(client, asha) == [first.json()["id"]]
    # Without a key a repeated registration writes nothing either, but is refused (the
    # public key is in use) instead of answering the device: the key is what makes a retry
    # after a lost answer get that answer.
    plain = client.post("/api/v1/me/devices", headers=asha.headers, json=body)
    assert plain.status_code == 409
    assert plain.json()["error"]["code"] == "key_in_use"


def test_an_organisation_registering_a_device_again_gets_the_same_device(
    client: TestClient, asset: int
) -> None:
    staff = {**staff_of(client, asset, "ward9-desk"), KEY: "array-meter"}
    url = f"/api/v1/organisations/{asset}/devices"
    body = {"kind": "meter", "public_key": new_key()[1]}
    first = client.post(url, headers=staff, json=body)
    assert first.status_code == 201, first.text
    before = state(client, asset)

    again = client.post(url, headers=staff, json=body)

    assert_replayed(first, again)
    assert state(client, asset) == before
    assert before["org_devices"] == [first.json()["id"]]


def test_without_a_key_each_request_is_its_own(
    client: TestClient, asset: int, asha: Resident
) -> None:
    url = f"/api/v1/organisations/{asset}/shares"
    for _ in range(2):
        r = client.post(url, json={"vid": asha.vid, "shares": 1})
        assert r.status_code == 201
        assert REPLAYED not in r.headers
    assert shares_of(client, asha) == {asset: 2}


# -- refusals --------------------------------------------------------------------------------


def test_the_same_key_with_another_request_is_a_422_and_changes_nothing(
    client: TestClient, asset: int, asha: Resident, bala: Resident
) -> None:
    staff = {**staff_of(client, asset, "ward9-desk"), KEY: "issue-1"}
    url = f"/api/v1/organisations/{asset}/shares"
    assert client.post(url, headers=staff, json={"vid": asha.vid, "shares": 5}).status_code == 201
    before = state(client, asset, asha, bala)
    other_asset = client.post(
        "/api/v1/organisations", json={"kind": "community", "name": "Ward 10 Wind"}
    ).json()["id"]

    for url_, body in (
        (url, {"vid": asha.vid, "shares": 6}),  # another body
        (url, {"vid": bala.vid, "shares": 5}),
        (f"/api/v1/organisations/{asset}/devices", {"kind": "meter", "public_key": new_key()[1]}),
    ):
        r = client.post(url_, headers=staff, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "idempotency_key_reused"
        assert "different request" in r.json()["error"]["message"]
    # The admin's own scope: the key is free there, on another path too.
    r = client.post(
        f"/api/v1/organisations/{other_asset}/shares",
        headers={KEY: "issue-1"},
        json={"vid": bala.vid, "shares": 1},
    )
    assert r.status_code == 201, r.text
    assert state(client, asset, asha, bala)["shares"] == [{asset: 5}, {other_asset: 1}]
    assert state(client, asset, asha, bala)["devices"] == before["devices"]


def test_a_stored_answer_changed_in_the_database_is_a_422_not_a_replay(
    client: TestClient, platform: Platform, asset: int, asha: Resident, bala: Resident
) -> None:
    staff = {**staff_of(client, asset, "ward9-desk"), KEY: "issue-1"}
    url = f"/api/v1/organisations/{asset}/shares"
    assert client.post(url, headers=staff, json={"vid": asha.vid, "shares": 5}).status_code == 201
    before = state(client, asset, asha, bala)
    with platform.engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET status = 200"))
    r = client.post(url, headers=staff, json={"vid": asha.vid, "shares": 5})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "idempotency_key_unverifiable"
    assert "not run again" in r.json()["error"]["message"]
    assert state(client, asset, asha, bala) == before


@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, b"tab\there", "caf\u00e9".encode(), b"\x7f"],
    ids=["empty", "256-chars", "tab", "non-ascii", "delete"],
)
@pytest.mark.parametrize("path", KEYED, ids=["issue", "transfer", "my-device", "org-device"])
def test_a_malformed_key_is_a_400_with_a_reason_and_writes_nothing(
    client: TestClient,
    asset: int,
    asha: Resident,
    bala: Resident,
    path: str,
    key: bytes,
) -> None:
    grant(client, asset, asha, 5)
    bodies: dict[str, Any] = {
        KEYED[0]: {"vid": bala.vid, "shares": 1},
        KEYED[1]: {"asset_id": asset, "to_vid": bala.vid, "shares": 1},
        KEYED[2]: {"kind": "meter", "public_key": new_key()[1]},
        KEYED[3]: {"kind": "meter", "public_key": new_key()[1]},
    }
    # Residents make their own transfers and registrations; the admin (default) the others.
    auth = asha.headers if path.startswith("/api/v1/me/") else None
    before = state(client, asset, asha, bala)
    r = post_raw(client, path.format(org_id=asset), bodies[path], [key], auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_idempotency_key"
    assert "1-255 printable ASCII" in r.json()["error"]["message"]
    assert state(client, asset, asha, bala) == before


def test_two_key_headers_are_a_400(client: TestClient, asset: int, asha: Resident) -> None:
    url = f"/api/v1/organisations/{asset}/shares"
    r = post_raw(client, url, {"vid": asha.vid, "shares": 1}, [b"one", b"two"])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_idempotency_key"
    assert "one Idempotency-Key" in r.json()["error"]["message"]
    assert shares_of(client, asha) == {}


def test_a_refusal_is_not_kept_so_the_corrected_request_may_use_the_key(
    client: TestClient, asset: int, asha: Resident, bala: Resident
) -> None:
    grant(client, asset, asha, 2)
    url = "/api/v1/me/shares/transfers"
    too_many = {"asset_id": asset, "to_vid": bala.vid, "shares": 3}
    for _ in range(2):  # refused each time: a refusal is never replayed
        r = client.post(url, headers=asha.with_key("gift"), json=too_many)
        assert r.status_code == 409, r.text
        assert REPLAYED not in r.headers
    fixed = client.post(url, headers=asha.with_key("gift"), json={**too_many, "shares": 2})
    assert fixed.status_code == 201, fixed.text
    assert (shares_of(client, asha), shares_of(client, bala)) == ({}, {asset: 2})


def test_a_caller_refused_by_role_hears_403_before_anything_about_its_key(
    client: TestClient, asset: int, asha: Resident
) -> None:
    r = client.post(
        f"/api/v1/organisations/{asset}/shares",
        headers=asha.with_key(""),
        json={"vid": asha.vid, "shares": 1},
    )
    assert r.status_code == 403


# -- principals ------------------------------------------------------------------------------


def test_principals_with_the_same_key_are_independent(
    client: TestClient, asset: int, asha: Resident, bala: Resident
) -> None:
    """Two residents, and two members of the asset's staff, choose the same key: each
    request is their own, and no one is answered with another's answer."""
    mine = client.post(
        "/api/v1/me/devices",
        headers=asha.with_key("my-meter"),
        json={"kind": "meter", "public_key": new_key()[1]},
    )
    theirs = client.post(
        "/api/v1/me/devices",
        headers=bala.with_key("my-meter"),
        json={"kind": "meter", "public_key": new_key()[1]},
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert REPLAYED not in theirs.headers
    assert devices_of(client, asha) == [mine.json()["id"]]
    assert devices_of(client, bala) == [theirs.json()["id"]]

    url = f"/api/v1/organisations/{asset}/shares"
    for desk in ("desk-1", "desk-2"):
        r = client.post(
            url,
            headers={**staff_of(client, asset, desk), KEY: "monday"},
            json={"vid": asha.vid, "shares": 3},
        )
        assert r.status_code == 201, r.text
        assert REPLAYED not in r.headers
    assert shares_of(client, asha) == {asset: 6}
    # A new credential of the same member of staff is the same principal: it replays.
    r = client.post(
        url,
        headers={**staff_of(client, asset, "desk-1"), KEY: "monday"},
        json={"vid": asha.vid, "shares": 3},
    )
    assert r.headers[REPLAYED] == "true"
    assert shares_of(client, asha) == {asset: 6}


# -- concurrency -----------------------------------------------------------------------------


def test_racing_identical_requests_make_one_effect(
    client: TestClient, platform: Platform, asset: int, asha: Resident, bala: Resident
) -> None:
    """Eight threads send one keyed transfer at once: it happens once, and every one of them
    gets its answer (one the first, the others the replay), none a 500."""
    grant(client, asset, asha, 10)
    threads = 8
    start = threading.Barrier(threads)
    body = {"asset_id": asset, "to_vid": bala.vid, "shares": 4}

    def send(_: int) -> httpx.Response:
        start.wait(timeout=60)  # all threads begin together, so they really race
        return client.post("/api/v1/me/shares/transfers", headers=asha.with_key("race"), json=body)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(send, range(threads)))

    assert [r.status_code for r in answers] == [201] * threads
    assert [r.headers.get(REPLAYED) for r in answers].count(None) == 1
    assert {r.content for r in answers} == {answers[0].content}
    assert (shares_of(client, asha), shares_of(client, bala)) == ({asset: 6}, {asset: 4})
    audit_ok(platform)


# -- the OpenAPI says so ---------------------------------------------------------------------


@pytest.mark.parametrize("path", KEYED, ids=["issue", "transfer", "my-device", "org-device"])
def test_openapi_declares_the_header_its_refusals_and_the_replay(
    client: TestClient, path: str
) -> None:
    operation = client.get("/openapi.json").json()["paths"][path]["post"]
    [header] = [p for p in operation["parameters"] if p["name"] == KEY]
    assert header["in"] == "header"
    assert header["required"] is False
    assert header["schema"]["maxLength"] == 255
    responses = operation["responses"]
    for status in ("400", "422"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorOut"
        )
    assert "invalid_idempotency_key" in responses["400"]["description"]
    assert "idempotency_key_reused" in responses["422"]["description"]
    assert "idempotency_key_unverifiable" in responses["422"]["description"]
    assert REPLAYED in responses["201"]["headers"]
