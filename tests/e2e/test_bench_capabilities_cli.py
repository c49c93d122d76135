"""`cityshare bench billing` and `bench community` as a user runs them: one JSON object whose
figures add up and whose reruns change nothing (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def bench(*args: str, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "cityshare", "bench", *args, "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_bench_billing_bills_every_import_once_and_leaves_arrears_where_wallets_are_empty(
    tmp_path: Path,
) -> None:
    r = bench("billing", "--residents", "20", "--intervals", "8", cwd=tmp_path)
    assert r["scenario"] == "billing"
    assert r["invariants_ok"] is True
    assert r["rerun_billed_nothing"] is True
    assert r["bills"] == r["n"] > 0
    assert r["paid_bills"] + r["unpaid_bills"] == r["bills"]
    assert r["paid_paise"] <= r["billed_paise"]
    assert r["residents_short"] == 2  # every tenth resident's wallet is left empty
    assert r["unpaid_bills"] > 0


def test_bench_community_pays_out_exactly_and_a_rerun_pays_nothing(tmp_path: Path) -> None:
    r = bench("community", "--holders", "20", cwd=tmp_path)
    assert r["scenario"] == "community"
    assert r["invariants_ok"] is True
    assert r["exact"] is True
    assert r["left_in_wallets"] == {"CREDIT": 0, "CARBON": 0}
    assert r["transfers"] == 2 * 20
    assert r["rerun_paid_nothing"] is True
