"""Reads of a resident's data from the `cityshare` CLI are checked and recorded like the same
reads over HTTP: the rule lives in the service layer, which every door calls.

The operator at the shell reads as `admin:cli:<login name>` for the purpose given with
`--purpose` (billing by default: what a statement and a wallet serve)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from conftest import LOG_KEY
from identity_helpers import a_vid, assertion
from processes import cityshare

MONTH = "2023-11"  # the test clock's month


def enrol(client: TestClient, platform: Platform) -> dict[str, Any]:
    vid = a_vid()
    r = client.post("/api/v1/residents", json={"assertion": assertion(platform, "asha", vid=vid)})
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    wallets = client.get("/api/v1/me", headers=headers).json()["wallets"]
    inr = next(w["account_id"] for w in wallets if w["ledger"] == "INR")
    return {"vid": vid, "headers": headers, "inr": inr}


def access_log(client: TestClient, resident: dict[str, Any]) -> list[tuple[str, str, str]]:
    r = client.get("/api/v1/me/access-log", headers=resident["headers"])
    assert r.status_code == 200, r.text
    return [(x["who"], x["purpose"], x["what"]) for x in r.json()["records"]]


def run(database_url: str, tmp_path: Path, *args: str) -> Any:
    # The platform's own log key, so the CLI's records are signed into the same log.
    env = {"CITYSHARE_LOG_KEY": LOG_KEY.skey}
    return cityshare(*args, "--db", database_url, cwd=tmp_path, env=env)


def test_a_statement_read_at_the_shell_is_in_the_residents_access_log(
    client: TestClient, platform: Platform, database_url: str, tmp_path: Path
) -> None:
    asha = enrol(client, platform)
    me = f"admin:cli:{getpass.getuser()}"

    shown = run(
        database_url, tmp_path, "energy", "statement", "--vid", asha["vid"], "--month", MONTH,
        "--json",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["month"] == MONTH
    assert access_log(client, asha) == [(me, "billing", f"energy statement {MONTH}")]


def test_a_residents_wallet_read_at_the_shell_is_recorded_and_a_wrong_purpose_is_refused(
    client: TestClient, platform: Platform, database_url: str, tmp_path: Path
) -> None:
    asha = enrol(client, platform)
    me = f"admin:cli:{getpass.getuser()}"
    inr = str(asha["inr"])

    assert run(database_url, tmp_path, "ledger", "account", inr).returncode == 0
    assert run(database_url, tmp_path, "ledger", "statement", inr, "--json").returncode == 0
    assert access_log(client, asha) == [
        (me, "billing", f"account {inr}"),
        (me, "billing", f"statement of account {inr}"),
    ]

    # Research does not see wallets, nor does it serve a statement: refused, nothing recorded.
    refused = [
        run(database_url, tmp_path, "ledger", "account", inr, "--purpose", "research"),
        run(
            database_url, tmp_path, "energy", "statement", "--vid", asha["vid"], "--month", MONTH,
            "--purpose", "research",
        ),
    ]  # fmt: skip
    for result in refused:
        assert result.returncode == 1, result.stdout
        assert "wrong_purpose" in result.stderr
        assert "Traceback" not in result.stderr
    assert len(access_log(client, asha)) == 2
