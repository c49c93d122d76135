"""The ledger over HTTP: the contract, authentication, bad input (a clear 4xx, nothing written)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityshare.identity.residents import MAX_RESIDENT_ID, resident_of

WALLET = ["debits_must_not_exceed_credits"]


def setup_wallets(client: TestClient) -> None:
    accounts = [
        {"id": 1, "ledger": "CREDIT", "code": 1},
        {"id": 10, "ledger": "CREDIT", "code": 2, "flags": WALLET, "owner": "resident-10"},
        {"id": 11, "ledger": "CREDIT", "code": 2, "flags": WALLET},
        {"id": 20, "ledger": "ENERGY", "code": 2},
    ]
    r = client.post("/api/v1/accounts", json=accounts)
    assert r.status_code == 200, r.text
    fund = client.post(
        "/api/v1/transfers",
        json=[
            {
                "id": 1,
                "debit_account_id": 1,
                "credit_account_id": 10,
                "amount": 1000,
                "ledger": "CREDIT",
            }
        ],
    )
    assert fund.status_code == 200, fund.text


def balances(client: TestClient) -> dict[int, int]:
    return {i: client.get(f"/api/v1/accounts/{i}").json()["balance"] for i in (1, 10, 11)}


def test_health_and_openapi_are_public(client: TestClient) -> None:
    health = client.get("/healthz", headers={"Authorization": ""})
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert "/api/v1/transfers" in spec["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc"])
def test_ledger_operations_need_the_operator_token(client: TestClient, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {"Authorization": ""}
    r = client.get("/api/v1/accounts/1", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_a_payment_round_trip(client: TestClient) -> None:
    setup_wallets(client)
    pay = [
        {
            "id": 2,
            "debit_account_id": 10,
            "credit_account_id": 11,
            "amount": 250,
            "ledger": "CREDIT",
            "code": 7,
        }
    ]
    r = client.post("/api/v1/transfers", json=pay)
    assert r.json() == {"created": 1, "results": [{"index": 0, "id": 2, "result": "created"}]}
    again = client.post("/api/v1/transfers", json=pay)
    assert again.status_code == 200
    assert again.json()["results"][0]["result"] == "exists"
    assert balances(client) == {1: -1000, 10: 750, 11: 250}
    assert client.get("/api/v1/transfers/2").json()["amount"] == 250
    statement = client.get("/api/v1/accounts/10/statement").json()
    assert [(x["change"], x["balance"]) for x in statement["lines"]] == [(1000, 1000), (-250, 750)]
    found = client.get("/api/v1/accounts", params={"owner": "resident-10"}).json()
    assert [a["id"] for a in found] == [10]
    check = client.get("/api/v1/ledger/check").json()
    assert check["ok"] is True


def test_a_hold_then_partial_post_over_http(client: TestClient) -> None:
    setup_wallets(client)
    hold = client.post(
        "/api/v1/transfers",
        json=[
            {
                "id": 5,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 400,
                "ledger": "CREDIT",
                "flags": ["pending"],
                "timeout": 600,
            }
        ],
    )
    assert hold.status_code == 200
    assert client.get("/api/v1/accounts/10").json()["available"] == 600
    post = client.post(
        "/api/v1/transfers",
        json=[{"id": 6, "pending_id": 5, "amount": 150, "flags": ["post_pending_transfer"]}],
    )
    assert post.status_code == 200, post.text
    view = client.get("/api/v1/transfers/5").json()
    assert view["pending_state"] == "posted"
    assert view["resolved_by"] == 6
    assert balances(client)[10] == 850


def test_a_failed_linked_chain_over_http_is_reported_per_item(client: TestClient) -> None:
    setup_wallets(client)
    r = client.post(
        "/api/v1/transfers",
        params={"atomic": "false"},
        json=[
            {
                "id": 7,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 600,
                "ledger": "CREDIT",
                "flags": ["linked"],
            },
            {
                "id": 8,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 600,
                "ledger": "CREDIT",
            },
            {
                "id": 9,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 5,
                "ledger": "CREDIT",
            },
        ],
    )
    assert r.status_code == 200
    assert [x["result"] for x in r.json()["results"]] == [
        "linked_event_failed",
        "exceeds_credits",
        "created",
    ]


BAD_TRANSFERS: list[tuple[str, Any, int, str]] = [
    (
        "zero amount",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 0,
                "ledger": "CREDIT",
            }
        ],
        422,
        "invalid_request",
    ),
    (
        "negative amount",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": -5,
                "ledger": "CREDIT",
            }
        ],
        422,
        "invalid_request",
    ),
    (
        "fractional amount",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 1.5,
                "ledger": "CREDIT",
            }
        ],
        422,
        "invalid_request",
    ),
    (
        "amount as text",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": "10",
                "ledger": "CREDIT",
            }
        ],
        422,
        "invalid_request",
    ),
    (
        "huge amount",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 2**64,
                "ledger": "CREDIT",
            }
        ],
        422,
        "invalid_request",
    ),
    (
        "unknown field",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 1,
                "ledger": "CREDIT",
                "owner": "x",
            }
        ],
        422,
        "invalid_request",
    ),
    (
        "unknown ledger",
        [{"id": 3, "debit_account_id": 10, "credit_account_id": 11, "amount": 1, "ledger": "GOLD"}],
        422,
        "invalid_request",
    ),
    ("not a list", {"id": 3}, 422, "invalid_request"),
    ("empty batch", [], 422, "empty_batch"),
    (
        "unknown account",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 5,
                "ledger": "CREDIT",
            },
            {
                "id": 4,
                "debit_account_id": 10,
                "credit_account_id": 999,
                "amount": 5,
                "ledger": "CREDIT",
            },
        ],
        422,
        "transfers_rejected",
    ),
    (
        "mixed ledgers",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 5,
                "ledger": "CREDIT",
            },
            {
                "id": 4,
                "debit_account_id": 10,
                "credit_account_id": 20,
                "amount": 5,
                "ledger": "CREDIT",
            },
        ],
        422,
        "transfers_rejected",
    ),
    (
        "overdraft",
        [
            {
                "id": 3,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 1001,
                "ledger": "CREDIT",
            }
        ],
        422,
        "transfers_rejected",
    ),
    (
        "oversized batch",
        [
            {
                "id": 100 + i,
                "debit_account_id": 10,
                "credit_account_id": 11,
                "amount": 1,
                "ledger": "CREDIT",
            }
            for i in range(1001)
        ],
        413,
        "batch_too_large",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [b[1:] for b in BAD_TRANSFERS], ids=[b[0] for b in BAD_TRANSFERS]
)
def test_bad_transfers_get_a_clear_4xx_and_nothing_is_written(
    client: TestClient, body: Any, status: int, code: str
) -> None:
    setup_wallets(client)
    before = balances(client)
    r = client.post("/api/v1/transfers", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert balances(client) == before
    assert client.get("/api/v1/transfers/3").status_code == 404
    assert client.get("/api/v1/ledger/check").json()["ok"] is True


@pytest.mark.parametrize("raw", [b"{not json", b'[{"id": 1,', b"\xff\xfe", b""])
def test_malformed_json_is_a_400(client: TestClient, raw: bytes) -> None:
    r = client.post("/api/v1/transfers", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422)
    assert r.json()["error"]["code"] in ("malformed_json", "invalid_request")


def test_bad_accounts_are_rejected_whole(client: TestClient) -> None:
    r = client.post(
        "/api/v1/accounts",
        json=[
            {"id": 50, "ledger": "CREDIT"},
            {
                "id": 51,
                "ledger": "CREDIT",
                "flags": ["debits_must_not_exceed_credits", "credits_must_not_exceed_debits"],
            },
        ],
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "accounts_rejected"
    assert client.get("/api/v1/accounts/50").status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/v1/accounts/0", "/api/v1/accounts/abc", f"/api/v1/transfers/{2**64}"]
)
def test_bad_ids_in_paths_are_4xx(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert 400 <= r.status_code < 500
    assert "error" in r.json()


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert client.get("/api/v1/accounts/12345").json()["error"]["code"] == "account_not_found"
    assert client.get("/api/v1/transfers/12345").status_code == 404
    assert client.get("/api/v1/accounts/12345/statement").status_code == 404


def test_an_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    r = client.post(
        "/api/v1/transfers",
        content=b"[" + b" " * (2 * 1024 * 1024) + b"]",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("after", [2**63, 2**64, -1, "soon"])
def test_a_statement_cursor_out_of_range_is_a_4xx_not_a_crash(
    client: TestClient, after: object
) -> None:
    setup_wallets(client)
    r = client.get("/api/v1/accounts/10/statement", params={"after": after})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"


def test_openapi_documents_the_error_shape_the_api_really_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/v1/transfers"]["post"]["responses"]
    for status in ("401", "413", "422"):
        ref = post[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorOut")
    assert "HTTPValidationError" not in spec.get("components", {}).get("schemas", {})
    rejected = client.post("/api/v1/transfers", json=[{"id": 1}]).json()
    assert set(rejected) == {"error"}
    assert {"code", "message"} <= set(rejected["error"])


# -- ids from 2^61 up are the platform's own ---------------------------------------------------

#: An energy credit's id (interval 11, points): the id the issue's probe posted.
PLATFORM_TRANSFER_ID = 2**62 + 44
LAST_CLIENT_ID = 2**61 - 1


@pytest.mark.parametrize(
    "transfer",
    [
        {"id": PLATFORM_TRANSFER_ID, "debit_account_id": 10, "credit_account_id": 11,
         "amount": 5, "ledger": "CREDIT"},
        {"id": 2**61, "debit_account_id": 10, "credit_account_id": 11, "amount": 5,
         "ledger": "CREDIT"},
        {"id": 3, "pending_id": PLATFORM_TRANSFER_ID, "flags": ["void_pending_transfer"]},
    ],
    ids=["energy-credit-id", "first-reserved-id", "pending-id"],
)  # fmt: skip
def test_a_transfer_id_in_the_platforms_range_is_refused_and_nothing_is_written(
    client: TestClient, transfer: dict[str, Any]
) -> None:
    setup_wallets(client)
    before = balances(client)
    r = client.post("/api/v1/transfers", json=[transfer])
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "reserved_id"
    assert str(LAST_CLIENT_ID) in error["message"]
    assert client.get(f"/api/v1/transfers/{transfer['id']}").status_code == 404
    assert balances(client) == before
    assert client.get("/api/v1/ledger/check").json()["ok"] is True


@pytest.mark.parametrize(
    "accounts",
    [(10, 901), (904, 10), (903, 902)],
    ids=["credits-credit-issuance", "debits-inr-settlement", "between-named-accounts"],
)
def test_a_transfer_naming_a_platform_account_is_refused_and_nothing_is_written(
    client: TestClient, accounts: tuple[int, int]
) -> None:
    """Accounts 901-904 move only by the platform's own postings (energy credits, INR top-ups,
    each with its record): a client naming one as debit or credit gets 422 `reserved_id`."""
    setup_wallets(client)
    before = balances(client)
    debit, credit = accounts
    r = client.post(
        "/api/v1/transfers",
        json=[{"id": 50, "debit_account_id": debit, "credit_account_id": credit, "amount": 5,
               "ledger": "CREDIT"}],
    )  # fmt: skip
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "reserved_id"
    assert "901, 902, 903, 904" in error["message"]
    assert client.get("/api/v1/transfers/50").status_code == 404
    assert balances(client) == before


def test_the_last_client_id_is_still_a_client_id(client: TestClient) -> None:
    setup_wallets(client)
    r = client.post(
        "/api/v1/transfers",
        json=[{"id": LAST_CLIENT_ID, "debit_account_id": 10, "credit_account_id": 11,
               "amount": 5, "ledger": "CREDIT"}],
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["result"] == "created"


@pytest.mark.parametrize(
    "account_id",
    [2**62 | (1 << 3) | 1, 2**61, 901],
    ids=["resident-1-credit-wallet", "first-reserved-id", "energy-credit-issuance"],
)
def test_an_account_id_the_platform_opens_itself_is_refused(
    client: TestClient, account_id: int
) -> None:
    r = client.post(
        "/api/v1/accounts",
        json=[{"id": 60, "ledger": "CREDIT"}, {"id": account_id, "ledger": "CREDIT"}],
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "reserved_id"
    assert str(LAST_CLIENT_ID) in error["message"]
    assert client.get(f"/api/v1/accounts/{account_id}").status_code == 404
    assert client.get("/api/v1/accounts/60").status_code == 404


def test_openapi_bounds_the_ids_a_client_may_choose(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    # Exclusive, because the spec's bounds are floats: 2^61 is exact, 2^61-1 is not.
    assert schemas["TransferIn"]["properties"]["id"]["exclusiveMaximum"] == 2**61
    assert schemas["TransferIn"]["properties"]["pending_id"]["exclusiveMaximum"] == 2**61
    assert schemas["AccountIn"]["properties"]["id"]["exclusiveMaximum"] == 2**61
    assert "reserved_id" in schemas["TransferIn"]["properties"]["id"]["description"]


@pytest.mark.parametrize(
    "owner", ["resident:²", "resident:٣", "resident:99999999999999999999", "resident:0"]
)
def test_an_account_search_by_an_owner_that_names_no_resident_is_a_4xx_not_a_crash(
    client: TestClient, owner: str
) -> None:
    """Digits that are not ASCII, or a resident number past the range, used to reach `int()`
    or the database (a 500) through the owner search, for an admin and an organisation's desk."""
    org = client.post("/api/v1/organisations", json={"kind": "provider", "name": "Desk Power"})
    made = client.post(
        "/api/v1/credentials",
        json={"subject": "desk", "role": "operator", "domain": "energy",
              "purposes": ["billing"], "org_id": org.json()["id"]},
    )  # fmt: skip
    desk = {"Authorization": f"Bearer {made.json()['token']}"}
    for headers in ({}, desk):
        answer = client.get("/api/v1/accounts", params={"owner": owner}, headers=headers)
        assert answer.status_code in (200, 404, 422), (owner, answer.text)
        if answer.status_code == 200:
            assert answer.json() == []


def test_resident_of_reads_only_an_owner_that_can_name_a_resident() -> None:
    assert resident_of("resident:42") == 42
    assert resident_of(f"resident:{MAX_RESIDENT_ID}") == MAX_RESIDENT_ID
    for owner in (None, "org:42", "resident:", "resident:0", "resident:042", "resident:²",
                  "resident:٣", f"resident:{MAX_RESIDENT_ID + 1}", "resident:4 ", "platform:x"):
        assert resident_of(owner) is None, owner
