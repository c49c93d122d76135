"""The `cityshare` command as a user runs it: a real process, a real server, real files."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from processes import Server, ok
from processes import cityshare as run_cityshare


def cityshare(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = run_cityshare(*args, cwd=cwd, env=env)
    return ok(result) if check else result


def test_version_and_help(tmp_path: Path) -> None:
    assert cityshare("--version", cwd=tmp_path).stdout.startswith("cityshare ")
    helptext = cityshare("--help", cwd=tmp_path).stdout
    for command in ("serve", "db", "ledger", "bench"):
        assert command in helptext
    assert "--transfers" in cityshare("bench", "ledger", "--help", cwd=tmp_path).stdout

    # A docstring wrapped in the source reads as one paragraph, wrapped to the terminal.
    energy = cityshare("energy", "--help", cwd=tmp_path).stdout
    assert "pay what residents' wallets can; bills left unpaid (arrears)" in energy


def test_db_upgrade_creates_the_default_sqlite_database_in_wal_mode(tmp_path: Path) -> None:
    cityshare("db", "upgrade", cwd=tmp_path)
    db = tmp_path / "cityshare.db"
    assert db.exists()
    with create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT count(*) FROM ledger_clock")).scalar() == 1


def test_ledger_check_fails_loudly_on_a_tampered_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    cityshare(
        "bench",
        "ledger",
        "--transfers",
        "500",
        "--accounts",
        "20",
        "--naive",
        "5",
        "--db",
        url,
        "--json",
        cwd=tmp_path,
    )
    ok = json.loads(cityshare("ledger", "check", "--db", url, "--json", cwd=tmp_path).stdout)
    assert ok["ok"] is True
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE accounts SET debits_posted = debits_posted - 7 WHERE id = 1000"))
    bad = cityshare("ledger", "check", "--db", url, cwd=tmp_path, check=False)
    assert bad.returncode == 1
    assert "account 1000" in bad.stdout


def test_bench_ledger_prints_one_json_object(tmp_path: Path) -> None:
    out = cityshare(
        "bench",
        "ledger",
        "--transfers",
        "2000",
        "--accounts",
        "50",
        "--batch",
        "500",
        "--naive",
        "20",
        "--json",
        cwd=tmp_path,
    ).stdout
    result = json.loads(out)
    assert result["scenario"] == "ledger"
    assert result["n"] == 2000
    assert result["created"] + result["rejected"] == 2000
    assert result["seconds"] > 0
    assert result["transfers_per_second"] > 0
    assert result["raw_rows_per_second"] > 0
    assert result["invariants_ok"] is True
    assert not list(tmp_path.glob("cityshare-bench-*")), "the bench left its temporary folder"


def test_serve_demo_answers_health_docs_and_the_ledger(tmp_path: Path) -> None:
    server = Server(tmp_path, token="e2e-token", args=("--demo",))
    server.start()
    try:
        health = httpx.get(f"{server.url}/healthz", timeout=2)
        assert health.json()["status"] == "ok"
        assert httpx.get(f"{server.url}/docs").status_code == 200
        with server.api() as api:
            asha = api.get("/api/v1/accounts/101").json()
            assert asha["owner"] == "demo-asha"
            assert asha["balance"] == 42_000 - 3_500
            assert api.get("/api/v1/ledger/check").json()["ok"] is True
    finally:
        code = server.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)


@pytest.mark.parametrize("bad_id", ["0", str(2**64), "abc"])
def test_ledger_account_rejects_ids_out_of_range_with_a_usage_error(
    tmp_path: Path, bad_id: str
) -> None:
    result = cityshare(
        "ledger", "account", bad_id, "--db", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_ledger_account_and_statement_name_the_ledger_and_flags_as_the_api_does(
    tmp_path: Path,
) -> None:
    """A script reads the same JSON from `cityshare ledger account/statement --json` as from
    `GET /api/v1/accounts/{id}[/statement]`: the ledger and flags by name, never as numbers."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from cityshare.api.app import create_app
    from cityshare.bootstrap import bootstrap
    from cityshare.settings import Settings
    from ledger_helpers import fund, open_accounts

    url = f"sqlite:///{tmp_path}/x.db"
    platform = bootstrap(Settings(database_url=url, operator_token=SecretStr("t")))
    try:
        open_accounts(platform, [7])
        fund(platform, 7, 250, transfer_id=1)
        with TestClient(
            create_app(platform, run_jobs=False), headers={"Authorization": "Bearer t"}
        ) as api:
            via_api = api.get("/api/v1/accounts/7").json()
            statement_via_api = api.get("/api/v1/accounts/7/statement").json()
    finally:
        platform.close()

    account = cityshare("ledger", "account", "7", "--db", url, "--json", cwd=tmp_path).stdout
    via_cli = json.loads(account)
    assert via_cli == via_api
    assert via_cli["ledger"] == "CREDIT"
    assert via_cli["flags"] == ["debits_must_not_exceed_credits"]
    statement = cityshare("ledger", "statement", "7", "--db", url, "--json", cwd=tmp_path).stdout
    assert json.loads(statement) == statement_via_api

    table = cityshare("ledger", "account", "7", "--db", url, cwd=tmp_path).stdout
    assert "CREDIT" in table
    assert "debits_must_not_exceed_credits" in table
    table = cityshare("ledger", "statement", "7", "--db", url, cwd=tmp_path).stdout
    assert "CREDIT" in table
    assert "debits_must_not_exceed_credits" in table


def test_a_script_captures_an_organisations_and_its_devices_ids_from_plain_output(
    tmp_path: Path,
) -> None:
    """`ORG=$(cityshare org create ...)`, `PUB=$(cityshare device keygen ...)` and
    `CP=$(cityshare org add-device ...)` each print just what a script needs; a refusal is a
    message on stderr and a nonzero exit, never a traceback or an empty id."""
    db = ("--db", f"sqlite:///{tmp_path}/x.db")
    org = cityshare("org", "create", "--kind", "operator", "--name", "Volt Bays",
                    "--domain", "energy", *db, cwd=tmp_path).stdout.strip()  # fmt: skip
    assert org.isdigit()
    pub = cityshare("device", "keygen", "--out", "cp.key", cwd=tmp_path).stdout.strip()
    added = cityshare("org", "add-device", "--org", org, "--kind", "charger",
                      "--public-key", pub, *db, cwd=tmp_path).stdout.strip()  # fmt: skip
    assert re.fullmatch(r"dev-[a-z2-7]{16}", added)
    meter_pub = cityshare("device", "keygen", "--out", "m.key", cwd=tmp_path).stdout.strip()
    listed = json.loads(
        cityshare("org", "add-device", "--org", org, "--kind", "meter", "--public-key", meter_pub,
                  "--label", "bay meter", *db, "--json", cwd=tmp_path).stdout
    )  # fmt: skip
    assert (listed["kind"], listed["label"], listed["active"]) == ("meter", "bay meter", True)
    again = cityshare("org", "add-device", "--org", org, "--kind", "charger",
                      "--public-key", pub, *db, cwd=tmp_path, check=False)  # fmt: skip
    assert again.returncode == 2
    assert again.stdout == ""
    assert "error:" in again.stderr
    assert "Traceback" not in again.stderr
