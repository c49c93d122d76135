"""`cityshare worker`: the periodic jobs without `serve`, as a real process on a SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cityshare.bootstrap import Platform, bootstrap
from cityshare.kernel.scheduler_tables import scheduler_leases
from cityshare.ledger.model import Transfer, TransferFlags
from cityshare.settings import Settings
from ledger_helpers import account, fund, open_accounts, post
from processes import Server, cityshare, ok


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """The platform on the SQLite file the worker runs on (its keys beside it), on real time."""
    p = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/cityshare.db"))
    yield p
    p.close()


def hold(platform: Platform, transfer_id: int, timeout: int = 1) -> None:
    """A pending transfer of 100 from wallet 10 to 20 that expires after `timeout` seconds."""
    pending = Transfer(transfer_id, 10, 20, 100, 1, 2, TransferFlags.PENDING, timeout=timeout)
    assert post(platform, pending) == ["created"]
    assert account(platform, 10).debits_pending == 100


def test_the_worker_expires_holds_without_serve_and_stops_on_sigterm(
    platform: Platform, tmp_path: Path
) -> None:
    open_accounts(platform, [10, 20])
    fund(platform, 10, 1_000, 1)
    hold(platform, 2)
    log_file = tmp_path / "worker.log"
    env = {**os.environ, "CITYSHARE_EXPIRY_SWEEP_SECONDS": "0.2"}
    command = [sys.executable, "-m", "cityshare", "worker", "--db", str(platform.engine.url)]
    with log_file.open("wb") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while account(platform, 10).debits_pending:
            assert proc.poll() is None, log_file.read_text()
            if time.monotonic() > deadline:  # a give-up bound for a hung worker, not a speed check
                pytest.fail(f"the worker never released the hold:\n{log_file.read_text()}")
            time.sleep(0.2)
        assert account(platform, 10).debits_posted == 0  # released, not posted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_file.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_file.read_text()
    assert "expire-holds" in output
    assert "Stopped." in output
    # It gave the lease up as it stopped, so another scheduler takes over at once.
    with platform.engine.connect() as conn:
        assert conn.execute(select(scheduler_leases.c.expires_at)).scalar_one() == 0


def test_worker_once_runs_every_job_once_and_exits(platform: Platform, tmp_path: Path) -> None:
    open_accounts(platform, [10, 20])
    fund(platform, 10, 1_000, 1)
    hold(platform, 2)
    time.sleep(1.1)
    result = ok(cityshare("worker", "--once", "--db", str(platform.engine.url), cwd=tmp_path))
    assert "expire-holds" in result.stdout
    assert "bill-energy" in result.stdout
    assert account(platform, 10).debits_pending == 0


def test_worker_help_says_what_it_is_for(tmp_path: Path) -> None:
    helptext = " ".join(ok(cityshare("worker", "--help", cwd=tmp_path)).stdout.split())
    for words in ("without the HTTP server", "MQTT and OCPP workers", "--once", "lease"):
        assert words in helptext


def test_serve_holds_the_lease_so_a_worker_on_its_database_runs_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path, token="e2e-token")
    server.start()
    try:
        url = f"sqlite:///{server.db}"
        result = ok(cityshare("worker", "--once", "--db", url, cwd=tmp_path))
        assert "Another scheduler holds the lease" in result.stderr
        assert "Ran:" not in result.stdout
    finally:
        server.stop()
    # serve gave the lease up as it stopped: a worker now runs the jobs.
    result = ok(cityshare("worker", "--once", "--db", url, cwd=tmp_path))
    assert "expire-holds" in result.stdout
