"""`cityshare audit verify` as an auditor runs it: a real process on a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cityshare.audit import registry as audit_registry
from cityshare.bootstrap import bootstrap
from cityshare.charging import commands as charging_commands
from cityshare.identity import commands as identity_commands
from cityshare.identity.devices import parse_public_key
from cityshare.kernel.clock import ManualClock
from cityshare.ledger.model import Ledger, Transfer, TransferFlags
from cityshare.settings import Settings
from cityshare.tlog import entries, note
from identity_helpers import new_key
from ledger_helpers import fund, open_accounts, post

CREDIT = int(Ledger.CREDIT)


def cityshare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSHARE_")}
    return subprocess.run(
        [sys.executable, "-m", "cityshare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A small ledger whose log key the platform made itself, in keys/ beside the file."""
    url = f"sqlite:///{tmp_path}/city.db"
    clock = ManualClock()
    platform = bootstrap(Settings(database_url=url), clock=clock)
    try:
        open_accounts(platform, [10, 11])
        fund(platform, 10, 10_000, transfer_id=1)
        post(platform, Transfer(2, 10, 11, 2_500, CREDIT))
        post(
            platform,
            Transfer(3, 11, 10, 400, CREDIT, flags=int(TransferFlags.PENDING), timeout=5),
        )
        clock.advance(10)
        post(platform, Transfer(4, 11, 10, 100, CREDIT))
    finally:
        platform.close()
    assert (tmp_path / "keys" / "log.skey").is_file()
    return url


def leaf_of(url: str, table: str, key: int) -> int:
    with create_engine(url).connect() as conn:
        for idx, data in conn.execute(text("SELECT idx, data FROM log_leaves ORDER BY idx")):
            if audit_registry.entry_key(entries.decode(data)) == (table, key):
                return int(idx)
    raise AssertionError(f"no leaf for {table} {key}")


def test_a_clean_database_exits_0_with_a_summary(tmp_path: Path, db: str) -> None:
    result = cityshare("audit", "verify", "--db", db, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 7 leaves" in result.stdout
    assert "4 transfers" in result.stdout
    assert "consistent" in result.stdout


def test_a_tampered_database_exits_1_naming_the_record_and_its_leaf(
    tmp_path: Path, db: str
) -> None:
    leaf = leaf_of(db, "transfers", 2)
    with create_engine(db).begin() as conn:
        conn.execute(text("UPDATE transfers SET amount = 2400 WHERE id = 2"))
    result = cityshare("audit", "verify", "--db", db, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"transfers 2 (leaf {leaf}): the stored row does not match its log entry "
        "(amount: 2400 in the row, 2500 in the log)"
    ) in result.stdout
    assert "problems found" in result.stdout


def test_json_output(tmp_path: Path, db: str) -> None:
    clean = json.loads(cityshare("audit", "verify", "--db", db, "--json", cwd=tmp_path).stdout)
    assert clean["ok"] is True
    assert clean["problems"] == []
    assert clean["problem_count"] == 0
    records = clean["checked"].pop("records")
    assert clean["checked"] == {
        "leaves": 7,
        "nodes": 0,
        "checkpoints": 5,
        "cosignatures": 0,
        "cosignatures_unchecked": 0,
        "seals": 0,
        "seals_unchecked": 0,
        "accounts": 3,
        "pending_transfers": 1,
    }
    # Every registered record type is reported; only the ledger ones have rows here.
    ledger_records = {"accounts": 3, "transfers": 4, "pending_transfers": 0}
    assert {name: records[name] for name in ledger_records} == ledger_records
    assert set(records) > set(ledger_records)
    assert all(count == 0 for name, count in records.items() if name not in ledger_records)
    with create_engine(db).begin() as conn:
        conn.execute(text("UPDATE accounts SET code = 77 WHERE id = 11"))
    result = cityshare("audit", "verify", "--db", db, "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["problems"] == [
        {
            "table": "accounts",
            "key": 11,
            "leaf": leaf_of(db, "accounts", 11),
            "message": f"accounts 11 (leaf {leaf_of(db, 'accounts', 11)}): the stored row does "
            "not match its log entry (code: 77 in the row, 2 in the log)",
        }
    ]


def test_the_auditor_passes_the_key_they_trust(tmp_path: Path, db: str) -> None:
    skey = (tmp_path / "keys" / "log.skey").read_text().strip()
    trusted = note.Signer.parse(skey).verifier.vkey
    ok = cityshare("audit", "verify", "--db", db, "--log-key", trusted, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    impostor = note.Signer.generate(note.Signer.parse(skey).name).verifier.vkey
    bad = cityshare("audit", "verify", "--db", db, "--log-key", impostor, cwd=tmp_path)
    assert bad.returncode == 1
    assert "log_checkpoints 3: the note does not verify with the log key" in bad.stdout


def test_bad_usage_exits_2(tmp_path: Path, db: str) -> None:
    garbled = cityshare("audit", "verify", "--db", db, "--log-key", "nonsense", cwd=tmp_path)
    assert garbled.returncode == 2
    assert "--log-key is not a signed-note verifier key" in garbled.stderr

    missing = cityshare("audit", "verify", "--db", f"sqlite:///{tmp_path}/nope.db", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no database file" in missing.stderr
    assert not (tmp_path / "nope.db").exists()  # verifying never creates anything

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "city.db").write_bytes((tmp_path / "city.db").read_bytes())
    keyless = cityshare("audit", "verify", "--db", f"sqlite:///{elsewhere}/city.db", cwd=tmp_path)
    assert keyless.returncode == 2
    assert "pass --log-key" in keyless.stderr
    assert not (elsewhere / "keys").exists()

    (tmp_path / "empty.db").write_bytes(b"")
    empty = cityshare("audit", "verify", "--db", f"sqlite:///{tmp_path}/empty.db", cwd=tmp_path)
    assert empty.returncode == 2
    assert "cannot read the database" in empty.stderr


def test_sealed_rows_are_checked_with_the_platforms_seal_key_when_it_is_there(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/city.db"
    platform = bootstrap(Settings(database_url=url))
    try:
        org = platform.bus.handle(
            identity_commands.CreateOrganisation("operator", "Volt Bays", "energy")
        )
        charger = platform.bus.handle(
            identity_commands.RegisterDevice(org.id, "charger", parse_public_key(new_key()[1]))
        )
        platform.bus.handle(
            charging_commands.SetChargerPassword(org.id, charger.id, "s3cret-pass-word")
        )
    finally:
        platform.close()
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE charger_secrets SET secret_hash = 'scrypt$forged'"))
    result = cityshare("audit", "verify", "--db", url, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "charger_secrets 1: the row's seal does not verify" in result.stdout
    # Without the seal key (an auditor's copy of the database) they are only counted, and
    # the summary says so: the hash is no public fact, so only the platform can check it.
    (tmp_path / "keys" / "seal.secret").unlink()
    result = cityshare("audit", "verify", "--db", url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 row seals checked, 1 not (no seal key" in result.stdout
