"""`cityshare bench log` as a user runs it: one JSON object, proofs checked (never timings)."""

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


def bench_log(*args: str, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "cityshare", "bench", "log", *args, "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def check_shape(result: dict[str, Any], backend: str) -> None:
    assert result["scenario"] == "log"
    assert result["backend"] == backend
    assert result["n"] == 2000
    assert result["batch"] == 500
    assert result["checkpoints_signed"] == 4  # one per commit
    assert result["seconds"] > 0
    assert result["leaves_per_second"] > 0
    assert result["raw_rows_per_second"] > 0
    assert result["ratio_to_raw"] > 0
    for kind in ("inclusion_proof", "consistency_proof"):
        summary = result[kind]
        assert summary["n"] > 0
        assert 0 < summary["median_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert result["proofs_verified"] is True
    assert len(bytes.fromhex(result["root"])) == 32
    assert result["machine"]


def test_bench_log_prints_one_json_object_and_verifies_its_proofs(tmp_path: Path) -> None:
    result = bench_log("--leaves", "2000", "--batch", "500", cwd=tmp_path)
    check_shape(result, "sqlite")
    assert not list(tmp_path.glob("cityshare-bench-*")), "the bench left its temporary folder"


@pytest.mark.postgres
def test_bench_log_on_postgresql(tmp_path: Path, pg_server: PostgresServer) -> None:
    url = pg_server.create_database(f"bench_log_{uuid.uuid4().hex[:8]}")
    result = bench_log(
        "--leaves", "2000", "--batch", "500", "--proofs", "200", "--db", url, cwd=tmp_path
    )
    check_shape(result, "postgresql")
    assert result["inclusion_proof"]["n"] == 200


def test_bench_log_refuses_a_log_that_is_not_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/used.db"
    bench_log("--leaves", "10", "--batch", "5", "--proofs", "5", "--db", url, cwd=tmp_path)
    again = subprocess.run(
        [sys.executable, "-m", "cityshare", "bench", "log", "--leaves", "10", "--db", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2
    assert "empty" in again.stderr
    assert "Traceback" not in again.stderr
