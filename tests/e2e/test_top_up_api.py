"""Top-ups over HTTP: fiat reached the platform's bank, a platform operator credits it to a
resident's INR wallet from the platform's INR settlement account (904), once per reference."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityshare.audit import verify as audit
from cityshare.bootstrap import Platform, unit_of_work
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger, NewAccount
from identity_helpers import a_vid, assertion
from processes import cityshare, ok


def enrol(client: TestClient, platform: Platform) -> tuple[str, int, dict[str, str]]:
    vid = a_vid()
    r = client.post("/api/v1/residents", json={"assertion": assertion(platform, "asha", vid=vid)})
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    wallets = client.get("/api/v1/me", headers=headers).json()["wallets"]
    inr = next(w["account_id"] for w in wallets if w["ledger"] == "INR")
    return vid, inr, headers


def test_an_operator_tops_a_wallet_up_from_the_settlement_account_once_per_reference(
    client: TestClient, platform: Platform
) -> None:
    vid, inr, resident = enrol(client, platform)
    url = f"/api/v1/residents/{vid}/top-ups"

    first = client.post(url, json={"amount": 50_000, "reference": "UPI/412345678901"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True
    assert (body["amount"], body["debit_account_id"], body["credit_account_id"]) == (
        50_000,
        904,
        inr,
    )

    # The bank's reference is the idempotency key: a retry answers the same top-up, posts nothing.
    again = client.post(url, json={"amount": 50_000, "reference": "UPI/412345678901"})
    assert again.status_code == 200
    assert again.json() == {**body, "created": False}
    reused = client.post(url, json={"amount": 40_000, "reference": "UPI/412345678901"})
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "reference_reused"

    wallets = client.get("/api/v1/me", headers=resident).json()["wallets"]
    assert next(w["balance"] for w in wallets if w["ledger"] == "INR") == 50_000
    # The settlement account mirrors the bank: debited by what came in, never credited beyond.
    settlement = client.get("/api/v1/accounts/904").json()
    assert settlement["ledger"] == "INR"
    assert settlement["owner"] == "platform:inr-settlement"
    assert settlement["flags"] == ["credits_must_not_exceed_debits"]
    assert settlement["balance"] == -50_000
    assert client.get("/api/v1/accounts", params={"owner": "platform:inr-settlement"}).json()
    transfer = client.get(f"/api/v1/transfers/{body['transfer_id']}").json()
    assert (transfer["debit_account_id"], transfer["credit_account_id"]) == (904, inr)
    assert (transfer["amount"], transfer["code"]) == (50_000, 5002)
    assert transfer["user_data"] == body["id"]

    # The top-up and its transfer are leaves of the audit log, and check out.
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, report.problems


def test_a_top_up_that_cannot_be_made_is_refused_and_writes_nothing(
    client: TestClient, platform: Platform
) -> None:
    vid, _, _ = enrol(client, platform)
    with platform.uow() as uow:
        before = uow.log.size()
    refusals = [
        (f"/api/v1/residents/{a_vid()}/top-ups", {"amount": 1, "reference": "R1"}, 404),
        (f"/api/v1/residents/{vid}/top-ups", {"amount": 0, "reference": "R1"}, 422),
        (f"/api/v1/residents/{vid}/top-ups", {"amount": 1.5, "reference": "R1"}, 422),
        (f"/api/v1/residents/{vid}/top-ups", {"amount": 1, "reference": ""}, 422),
        (f"/api/v1/residents/{vid}/top-ups", {"amount": 1, "reference": "a b"}, 422),
        (f"/api/v1/residents/{vid}/top-ups", {"amount": 1}, 422),
    ]
    for url, body, status in refusals:
        r = client.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()
    # Only the platform moves fiat: a resident (or another domain's operator) may not.
    resident_token = client.post(
        "/api/v1/credentials",
        json={"subject": "desk", "role": "operator", "purposes": ["billing"], "domain": "energy"},
    ).json()["token"]
    r = client.post(
        f"/api/v1/residents/{vid}/top-ups",
        json={"amount": 1, "reference": "R1"},
        headers={"Authorization": f"Bearer {resident_token}"},
    )
    assert r.status_code == 403
    with platform.uow() as uow:
        assert uow.log.size() == before


def test_the_cli_tops_up_as_the_api_does(
    client: TestClient, platform: Platform, database_url: str, tmp_path: Path
) -> None:
    vid, inr, _ = enrol(client, platform)

    def top_up(vid: str, paise: int, reference: str, *more: str) -> Any:
        return cityshare(
            "ledger", "top-up", "--vid", vid, "--amount-paise", str(paise),
            "--reference", reference, "--db", database_url, *more, cwd=tmp_path,
        )  # fmt: skip

    first = json.loads(ok(top_up(vid, 2500, "UTR9", "--json")).stdout)
    assert (first["amount"], first["credit_account_id"], first["created"]) == (2500, inr, True)
    assert "already topped up (nothing posted)" in ok(top_up(vid, 2500, "UTR9")).stdout
    reused = top_up(vid, 7, "UTR9")
    assert reused.returncode == 2
    assert "reference_reused" in reused.stderr
    unknown = top_up(a_vid(), 1, "UTR10")
    assert unknown.returncode == 1
    assert "no resident" in unknown.stderr

    # The platform's own accounts are listed, opened or not.
    listed = cityshare("ledger", "system-accounts", "--db", database_url, "--json", cwd=tmp_path)
    system = {a["id"]: a for a in json.loads(ok(listed).stdout)}
    assert sorted(system) == [901, 902, 903, 904]
    assert system[904]["owner"] == "platform:inr-settlement"
    assert system[904]["account"]["balance"] == -2500
    assert system[901]["opened"] is False  # no energy credited yet


def test_a_settlement_account_a_client_opened_first_refuses_top_ups_with_a_503_and_an_alarm(
    client: TestClient, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """Account 904 opened with other fields (by a client, before it was reserved) cannot be the
    platform's settlement account: a top-up answers 503 `settlement_account_unusable` naming
    it, posts nothing and raises an alarm; never a 500."""
    vid, _, _ = enrol(client, platform)
    signer = platform.log_signer
    with unit_of_work(platform.engine, platform.clock, log_signer=signer) as uow:
        last = uow.ledger.lock_ledger()
        ledger_service.open_accounts(
            uow, [NewAccount(904, Ledger.INR, 1, 0, "someone")], last_timestamp=last, atomic=True
        )
        uow.commit()
        before = uow.log.size()

    with caplog.at_level(logging.ERROR, logger="cityshare.billing.top_ups"):
        r = client.post(f"/api/v1/residents/{vid}/top-ups", json={"amount": 1, "reference": "R1"})

    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "settlement_account_unusable"
    assert "904" in error["message"]
    assert any(rec.levelno == logging.ERROR and "904" in rec.getMessage() for rec in caplog.records)
    with platform.uow() as uow:
        assert uow.log.size() == before
    spec = client.get("/openapi.json").json()
    assert "503" in spec["paths"]["/api/v1/residents/{vid}/top-ups"]["post"]["responses"]


def test_a_reference_is_case_insensitive_as_bank_references_are(
    client: TestClient, platform: Platform
) -> None:
    """`utr-x` and `UTR-X` are the same bank reference: the second is a retry of the first
    (nothing posted), and the reference is kept in upper case."""
    vid, _, resident = enrol(client, platform)
    url = f"/api/v1/residents/{vid}/top-ups"

    first = client.post(url, json={"amount": 100, "reference": "utr-x"})
    assert first.status_code == 201, first.text
    assert first.json()["reference"] == "UTR-X"
    again = client.post(url, json={"amount": 100, "reference": "UTR-X"})
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "created": False}
    other = client.post(url, json={"amount": 7, "reference": "Utr-X"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "reference_reused"

    wallets = client.get("/api/v1/me", headers=resident).json()["wallets"]
    assert next(w["balance"] for w in wallets if w["ledger"] == "INR") == 100
