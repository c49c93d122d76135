"""The digital twin as an auditor runs it: a real `cityshare serve`, real `cityshare twin`
processes, and a primary that lies — rewriting its history with its own key, or shrinking."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from cityshare.kernel.db import make_engine
from cityshare.tlog import entries, merkle, note
from cityshare.tlog.cosignature import CosignatureVerifier
from cityshare.tlog.repo import LogRepository
from processes import Server, cityshare, free_port, ok

TOKEN = "twin-e2e-token"
WITNESS = "twin.test/witness"
CITYSHARE = (sys.executable, "-m", "cityshare")


def Primary(  # noqa: N802 - reads as the thing it makes
    folder: Path, witness_keys: str = "", port: int = 0
) -> Server:
    """The primary: a `cityshare serve` that trusts the twin's key as a witness."""
    return Server(
        folder,
        TOKEN,
        env={"CITYSHARE_WITNESS_KEYS": witness_keys, "CITYSHARE_EXPIRY_SWEEP_SECONDS": "0.2"},
        db_name="primary.db",
        port=port,
    )


@pytest.fixture
def primary_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "primary"
    folder.mkdir()
    return folder


@pytest.fixture
def twin_dir(tmp_path: Path) -> Path:
    return tmp_path / "twin"


def init_twin(twin_dir: Path, cwd: Path) -> str:
    out = ok(cityshare("twin", "init", "--dir", str(twin_dir), "--name", WITNESS, cwd=cwd)).stdout
    match = re.search(r"CITYSHARE_WITNESS_KEYS=(\S+)", out)
    assert match, out
    return match.group(1)


@pytest.fixture
def witnessed(primary_folder: Path, twin_dir: Path) -> Iterator[tuple[Server, str]]:
    vkey = init_twin(twin_dir, primary_folder.parent)
    primary = Primary(primary_folder, witness_keys=vkey)
    primary.start()
    try:
        yield primary, vkey
    finally:
        primary.stop()


def sync(twin_dir: Path, primary: Server, *extra: str) -> subprocess.CompletedProcess[str]:
    return cityshare(
        "twin",
        "sync",
        "--from",
        primary.url,
        "--dir",
        str(twin_dir),
        *extra,
        cwd=twin_dir.parent,
        env={"CITYSHARE_OPERATOR_TOKEN": TOKEN},
    )


def sync_json(twin_dir: Path, primary: Server, *extra: str) -> dict[str, Any]:
    result = ok(sync(twin_dir, primary, "--json", *extra))
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def post(client: httpx.Client, path: str, body: list[dict[str, Any]]) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text


def transfer(tid: int, debit: int, credit: int, amount: int, **more: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "ledger": "CREDIT",
        **more,
    }


def first_history(primary: Server) -> None:
    wallet = {"flags": ["debits_must_not_exceed_credits"]}
    with primary.api() as api:
        post(
            api,
            "/api/v1/accounts",
            [
                {"id": 1, "ledger": "CREDIT", "code": 1},
                {"id": 10, "ledger": "CREDIT", "code": 2, **wallet},
                {"id": 11, "ledger": "CREDIT", "code": 2, **wallet},
                {"id": 12, "ledger": "CREDIT", "code": 2, **wallet},
            ],
        )
        for i in range(5):
            post(api, "/api/v1/transfers", [transfer(100 + i, 1, 10 + i % 3, 1_000 * (i + 1))])
        post(
            api,
            "/api/v1/transfers",
            [
                transfer(200, 10, 11, 600, flags=["pending"], timeout=600),
                transfer(201, 11, 12, 300, flags=["pending"]),
                transfer(202, 12, 10, 50, flags=["pending"], timeout=1),
            ],
        )
        post(
            api,
            "/api/v1/transfers",
            [
                {"id": 203, "pending_id": 200, "amount": 450, "flags": ["post_pending_transfer"]},
                {"id": 204, "pending_id": 201, "flags": ["void_pending_transfer"]},
            ],
        )
        # Hold 202 lapses after its 1 s timeout; release it (the server's sweeper may already
        # have: releasing is idempotent) so the lapse is in the log the twin replays.
        time.sleep(1.1)
        assert api.post("/api/v1/ledger/expire").status_code == 200
        assert api.get("/api/v1/transfers/202").json()["pending_state"] == "expired"


def more_history(primary: Server, first_id: int, n: int = 3) -> None:
    with primary.api() as api:
        for i in range(n):
            post(api, "/api/v1/transfers", [transfer(first_id + i, 1, 11, 7 + i)])


def checkpoint(primary: Server) -> str:
    return httpx.get(f"{primary.url}/api/v1/log/checkpoint", timeout=10).text


def test_sync_cosign_and_verify_against_a_live_primary(
    witnessed: tuple[Server, str], twin_dir: Path
) -> None:
    primary, vkey = witnessed
    first_history(primary)
    size = note.Checkpoint.parse(checkpoint(primary).split("\n\n")[0] + "\n").size

    first = sync(twin_dir, primary, "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "on first use" in first.stderr
    report = json.loads(first.stdout)
    assert (report["previous_size"], report["size"], report["fetched"]) == (0, size, size)
    assert report["pinned_on_first_use"] is True
    assert report["accepted"] == [WITNESS]
    assert (twin_dir / "checkpoint").read_text().startswith(report["origin"] + "\n")
    assert oct((twin_dir / "witness.skey").stat().st_mode & 0o777) == "0o600"

    # The primary now serves the twin's cosignature with its checkpoint, and it verifies.
    served = checkpoint(primary)
    log_verifier = note.Verifier.parse(report["log_key"])
    opened = note.open_note(served, log_verifier)
    [line] = opened.other_signatures
    assert line.startswith(f"— {WITNESS} ")
    assert CosignatureVerifier.parse(vkey).verify(opened.text, line) <= time.time() + 1

    more_history(primary, 300)
    second = sync_json(twin_dir, primary)
    assert second["previous_size"] == size
    assert second["size"] == size + 3
    assert second["fetched"] == 3
    assert second["pinned_on_first_use"] is False
    again = sync_json(twin_dir, primary)  # nothing new: idempotent, cosigns afresh
    assert (again["size"], again["fetched"], again["accepted"]) == (size + 3, 0, [WITNESS])
    assert len(note.open_note(checkpoint(primary), log_verifier).other_signatures) == 1

    result = cityshare("twin", "verify", "--dir", str(twin_dir), "--json", cwd=twin_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    verified = json.loads(result.stdout)
    assert verified["ok"] is True
    assert verified["size"] == size + 3
    assert verified["entries"]["holds_expired"] == 1
    with primary.api() as api:
        for account in verified["accounts"]:
            theirs = api.get(f"/api/v1/accounts/{account['id']}").json()
            for key in (
                "debits_pending",
                "debits_posted",
                "credits_pending",
                "credits_posted",
                "balance",
                "owner",
            ):
                assert account[key] == theirs[key], (account["id"], key)
        assert api.get("/api/v1/ledger/check").json()["ok"] is True
    assert {a["id"] for a in verified["accounts"]} == {1, 10, 11, 12}

    human = ok(cityshare("twin", "verify", "--dir", str(twin_dir), cwd=twin_dir.parent)).stdout
    assert "CREDIT" in human
    assert "ledger replays clean" in human


def rewrite_history(db: Path, key_file: Path) -> tuple[int, int]:
    """What a dishonest operator with full control of the primary does: change an old transfer,
    then make everything it stores agree again — the leaf, every tree node and the head, every
    checkpoint (re-signed with the log's own key) — and drop the witness cosignatures that no
    longer verify. Returns (index of the changed leaf, new amount)."""
    signer = note.Signer.parse(key_file.read_text().strip())
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT idx, data FROM log_leaves ORDER BY idx").fetchall()
    leaves = [bytes(data) for _, data in rows]
    index = next(
        i
        for i, data in enumerate(leaves)
        if isinstance(entries.decode(data), entries.TransferRecord)
    )
    record = entries.decode(leaves[index])
    assert isinstance(record, entries.TransferRecord)
    forged = record._replace(amount=record.amount + 1_000_000)
    leaves[index] = entries.encode_transfer(forged)

    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE transfers SET amount = :a WHERE id = :id"),
                {"a": forged.amount, "id": forged.id},
            )
            # Rebuild the whole tree the way the primary stores it.
            conn.execute(text("DELETE FROM log_leaves"))
            conn.execute(text("DELETE FROM log_nodes"))
            conn.execute(text("UPDATE log_head SET size = 0 WHERE id = 1"))
            LogRepository(conn).append(leaves)
            tree = merkle.MemoryTree()
            for data in leaves:
                tree.append(merkle.leaf_hash(data))
            sizes = [row[0] for row in conn.execute(text("SELECT size FROM log_checkpoints"))]
            for size in sizes:
                root = tree.root(size)
                signed = note.sign_note(note.Checkpoint(signer.name, size, root).text(), signer)
                conn.execute(
                    text("UPDATE log_checkpoints SET root = :r, note = :n WHERE size = :s"),
                    {"r": root, "n": signed, "s": size},
                )
            conn.execute(text("DELETE FROM log_cosignatures"))
    finally:
        engine.dispose()
    return index, forged.amount


def test_a_rewritten_history_is_caught_even_with_every_hash_and_signature_redone(
    witnessed: tuple[Server, str], twin_dir: Path
) -> None:
    primary, _ = witnessed
    first_history(primary)
    trusted = sync_json(twin_dir, primary)
    trusted_size = trusted["size"]
    trusted_file = (twin_dir / "checkpoint").read_text()

    primary.stop()
    index, _ = rewrite_history(primary.db, primary.folder / "keys" / "log.skey")
    primary.start()
    # The primary is self-consistent: its re-signed checkpoint verifies with its key and its
    # entries hash to that root. Only a copy of the past it cannot rewrite can tell.
    with primary.api() as api:
        log_verifier = note.Verifier.parse(api.get("/api/v1/log/key").text.strip())
        opened = note.open_note(api.get("/api/v1/log/checkpoint").text, log_verifier)
        served = api.get("/api/v1/log/entries", params={"start": 0, "end": 1000}).json()
    tree = merkle.MemoryTree()
    for item in served["entries"]:
        tree.append(merkle.leaf_hash(base64.b64decode(item)))
    assert tree.size == trusted_size
    assert tree.root() == note.Checkpoint.parse(opened.text).root_hash
    assert tree.root() != base64.b64decode(trusted["root"])
    more_history(primary, 400)
    new_size = trusted_size + 3

    result = sync(twin_dir, primary)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "tampering detected" in message
    assert f"new checkpoint of size {new_size} is inconsistent" in message
    assert f"checkpoint of size {trusted_size} this twin trusts" in message
    assert "Traceback" not in result.stderr
    assert "both signed checkpoints are kept in" in message
    # Nothing new was trusted, and the replica still verifies on its own; but the twin keeps
    # the two contradicting signed checkpoints, and verify fails while it holds them.
    assert (twin_dir / "checkpoint").read_text() == trusted_file
    verify = cityshare("twin", "verify", "--dir", str(twin_dir), "--json", cwd=twin_dir.parent)
    assert verify.returncode == 1
    verified = json.loads(verify.stdout)
    assert (verified["ok"], verified["size"], verified["problems"]) == (False, trusted_size, [])
    [evidence] = verified["evidence"]
    assert evidence["kind"] == "inconsistent"
    assert evidence["problem"] is None
    assert (evidence["trusted"]["size"], evidence["offered"]["size"]) == (trusted_size, new_size)
    [kept] = (twin_dir / "evidence").iterdir()
    assert json.loads(kept.read_text())["trusted"] == trusted_file
    shown = cityshare("twin", "verify", "--dir", str(twin_dir), cwd=twin_dir.parent)
    assert shown.returncode == 1
    assert "✗ evidence" in shown.stdout
    assert "history it had published was rewritten" in " ".join(shown.stdout.split())
    # And it keeps refusing: a rerun reaches the same verdict.
    assert sync(twin_dir, primary).returncode != 0
    assert index < trusted_size
    # Once someone has dealt with it and moved the file away, verify passes again.
    kept.rename(twin_dir / kept.name)
    ok(cityshare("twin", "verify", "--dir", str(twin_dir), cwd=twin_dir.parent))


def test_a_shrunk_log_is_refused_and_an_unconfigured_witness_is_only_a_warning(
    primary_folder: Path, twin_dir: Path
) -> None:
    init_twin(twin_dir, primary_folder.parent)
    primary = Primary(primary_folder)  # the twin's key is not configured here
    primary.start()
    try:
        first_history(primary)
        result = sync(twin_dir, primary)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "did not keep this twin's cosignature" in " ".join(result.stderr.split())
        trusted = sync_json(twin_dir, primary)["size"]
        trusted_file = (twin_dir / "checkpoint").read_text()
        primary.stop()

        with sqlite3.connect(primary.db) as conn:
            sizes = [r[0] for r in conn.execute("SELECT size FROM log_checkpoints ORDER BY size")]
            keep = sizes[-3]  # roll back two commits
            conn.execute("DELETE FROM log_checkpoints WHERE size > ?", (keep,))
            conn.execute("DELETE FROM log_leaves WHERE idx >= ?", (keep,))
            conn.execute("UPDATE log_head SET size = ? WHERE id = 1", (keep,))
        primary.start()

        refused = sync(twin_dir, primary)
        assert refused.returncode != 0
        message = " ".join(refused.stderr.split())
        assert f"the log shrank: its checkpoint is of size {keep}" in message
        assert f"already trusts a checkpoint of size {trusted}" in message
        assert (twin_dir / "checkpoint").read_text() == trusted_file
        verify = cityshare(
            "twin", "verify", "--dir", str(twin_dir), "--json", cwd=twin_dir.parent
        )
        assert verify.returncode == 1
        [evidence] = json.loads(verify.stdout)["evidence"]
        assert (evidence["kind"], evidence["offered"]["size"]) == ("rollback", keep)
        assert "an old checkpoint served again" in evidence["detail"]
    finally:
        primary.stop()


def test_a_wrong_log_key_is_refused(witnessed: tuple[Server, str], tmp_path: Path) -> None:
    primary, _ = witnessed
    first_history(primary)
    real_key = httpx.get(f"{primary.url}/api/v1/log/key").text.strip()
    impostor = note.Signer.generate(real_key.split("+")[0]).verifier.vkey

    fresh = tmp_path / "fresh-twin"
    init_twin(fresh, tmp_path)
    result = sync(fresh, primary, "--log-key", impostor)
    assert result.returncode != 0
    assert "does not verify with the log key" in " ".join(result.stderr.split())
    assert not (fresh / "checkpoint").exists()

    # With the right key it syncs; afterwards the pinned key cannot be swapped.
    ok(sync(fresh, primary, "--log-key", real_key))
    swapped = sync(fresh, primary, "--log-key", impostor)
    assert swapped.returncode != 0
    assert "already trusts the log key" in " ".join(swapped.stderr.split())


def test_sync_without_a_token_or_against_garbage_fails_clearly(
    witnessed: tuple[Server, str], twin_dir: Path, tmp_path: Path
) -> None:
    primary, _ = witnessed
    first_history(primary)
    env_without_token = {k: v for k, v in os.environ.items() if k != "CITYSHARE_OPERATOR_TOKEN"}
    no_token = subprocess.run(
        [*CITYSHARE, "twin", "sync", "--from", primary.url, "--dir", str(twin_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env_without_token, "COLUMNS": "200"},
        timeout=300,
    )
    assert no_token.returncode == 1
    assert "--token" in no_token.stderr
    assert not (twin_dir / "checkpoint").exists()

    # Nothing listening there.
    nowhere = sync(twin_dir, Primary(tmp_path, port=free_port()))
    assert nowhere.returncode == 1
    assert "cannot reach the primary" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr + no_token.stderr


def test_twin_key_prints_the_witness_key_that_init_made_and_nothing_else(tmp_path: Path) -> None:
    """`twin key` is for scripts (export CITYSHARE_WITNESS_KEYS=$(cityshare twin key ...)),
    as `issuer key` is: one line, the vkey `twin init` printed; no key is a clear exit 1."""
    made = ok(cityshare("twin", "init", "--dir", "t", "--name", WITNESS, cwd=tmp_path)).stdout
    printed = ok(cityshare("twin", "key", "--dir", "t", cwd=tmp_path)).stdout
    assert printed.endswith("\n")
    assert printed.count("\n") == 1
    assert printed.startswith(WITNESS + "+")
    assert f"CITYSHARE_WITNESS_KEYS={printed.strip()}" in made.replace("\n", "")

    missing = cityshare("twin", "key", "--dir", "nowhere", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "twin init" in missing.stderr
