"""`cityshare bench ingest --via mqtt` as a user runs it: one JSON object, every reading stored
once, invariants checked (never timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from services import MosquittoServer, mosquitto_unavailable_reason, needs


def bench(*args: str, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "cityshare", "bench", "ingest", "--via", "mqtt", *args, "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_bench_ingest_via_mqtt_stores_every_reading_once_with_two_workers(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    result = bench(
        *("--devices", "20", "--intervals", "12", "--batch", "50"),
        *("--mqtt-workers", "2", "--broker", mqtt_broker.url),
        cwd=tmp_path,
    )
    assert result["scenario"] == "ingest"
    assert result["via"] == "mqtt"
    assert result["n"] == result["stored"] == 240
    assert result["intervals_credited"] == 240  # each meter's baseline and 11 intervals
    assert result["broker"] == mqtt_broker.url
    assert len(result["per_worker"]) == 2
    assert sum(w["accepted"] for w in result["per_worker"]) == 240
    assert result["duplicates"] == result["rejected"] == 0
    assert result["invariants_ok"] is True
    assert result["seconds"] > 0
    assert result["per_s"] > 0


def test_bench_ingest_via_mqtt_starts_its_own_broker(tmp_path: Path) -> None:
    needs("Mosquitto", mosquitto_unavailable_reason())
    result = bench("--devices", "5", "--intervals", "4", "--batch", "8", cwd=tmp_path)
    assert result["stored"] == 20
    assert result["broker"].startswith("mosquitto on loopback")
    assert result["invariants_ok"] is True


def test_bench_ingest_refuses_options_that_do_not_go_together(tmp_path: Path) -> None:
    for args in (["--via", "carrier-pigeon"], ["--via", "mqtt", "--pipeline"]):
        result = subprocess.run(
            [sys.executable, "-m", "cityshare", "bench", "ingest", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "error:" in result.stderr
        assert "Traceback" not in result.stderr
