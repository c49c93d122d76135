"""`cityshare bench ingest` as a user runs it: one JSON object, every reading stored and
credited once, invariants and the audit log checked (never timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from services import PostgresServer


def cityshare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityshare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


def bench_ingest(*args: str, cwd: Path) -> dict[str, Any]:
    result = cityshare("bench", "ingest", *args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def check_shape(result: dict[str, Any], *, n: int, database: str) -> None:
    assert result["scenario"] == "ingest"
    assert result["database"] == database
    # Every reading is new, authentic and in order: each is stored and joins its meter's chain
    # (the first as the baseline, each later one closing an interval).
    assert result["n"] == result["stored"] == result["intervals_credited"] == n
    # Each reading and interval is a log leaf, besides the residents, wallets and transfers.
    assert result["log_leaves"] > 2 * n
    assert result["invariants_ok"] is True
    assert result["audit"]["ok"] is True, result["audit"]["problems"]
    assert result["audit"]["checked"]["records"]["meter_readings"] == n
    assert result["audit"]["checked"]["records"]["meter_intervals"] == n
    assert result["seconds"] > 0
    assert result["readings_per_s"] > 0
    assert set(result["time"]) == {
        "verify_s",
        "write_s",
        "verify_us_per_reading",
        "write_us_per_reading",
    }
    assert result["single_core"]["per_s"] == result["single_core_verify_per_s"] > 0
    assert result["cpu"]["cores"] >= 1
    assert result["machine"]


def test_bench_ingest_stores_credits_and_logs_every_reading_once(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    result = bench_ingest(
        *("--devices", "6", "--intervals", "8", "--batch", "10"),
        *("--audit", "--keep", str(kept), "--replay"),
        cwd=tmp_path,
    )
    check_shape(result, n=48, database="sqlite")  # the audit ran after the replay
    assert result["replay"]["n"] == 48
    assert result["replay"]["results"] == {"duplicate": 48}
    assert result["replay"]["changed_nothing"] is True
    assert result["batch"] == 10
    assert result["workers"] == 0
    assert result["pipeline"] is False
    assert result["kept"]["database_url"] == f"sqlite:///{kept / 'bench.db'}"
    assert not list(tmp_path.glob("cityshare-bench-*")), "the bench left its temporary folder"

    # What it kept passes the auditor's own command, with the key it kept.
    vkey = Path(result["kept"]["log_key"]).read_text().strip()
    verify = cityshare(
        "audit", "verify", "--db", result["kept"]["database_url"], "--log-key", vkey, cwd=tmp_path
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_bench_ingest_checks_in_a_pool_while_it_writes(tmp_path: Path) -> None:
    # 512 readings in one batch: large enough for the verifier's pool (parse and verify there).
    result = bench_ingest(
        *("--devices", "64", "--intervals", "8", "--batch", "512"),
        *("--workers", "2", "--pipeline", "--audit", "--replay"),
        cwd=tmp_path,
    )
    check_shape(result, n=512, database="sqlite")
    # In the pool the replayed readings are checked again; the writer finds them stored.
    assert result["replay"]["results"] == {"duplicate": 512}
    assert result["replay"]["changed_nothing"] is True
    assert result["workers"] == 2
    assert result["pipeline"] is True


@pytest.mark.postgres
def test_bench_ingest_on_postgresql(tmp_path: Path, pg_server: PostgresServer) -> None:
    url = pg_server.create_database(f"bench_ingest_{uuid.uuid4().hex[:8]}")
    result = bench_ingest(
        *("--devices", "6", "--intervals", "8", "--batch", "10", "--db", url, "--audit"),
        cwd=tmp_path,
    )
    check_shape(result, n=48, database="postgresql")


def test_bench_ingest_will_not_keep_a_run_over_an_earlier_one(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    bench_ingest("--devices", "2", "--intervals", "2", "--keep", str(kept), cwd=tmp_path)
    again = cityshare(
        "bench", "ingest", "--devices", "2", "--intervals", "2", "--keep", str(kept), cwd=tmp_path
    )
    assert again.returncode == 2
    assert "exists" in again.stderr
    assert "Traceback" not in again.stderr
