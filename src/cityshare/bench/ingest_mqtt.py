"""`cityshare bench ingest --via mqtt`: the same readings as `bench ingest`, through a broker.

Setup (not timed): the residents, meters and signed readings of `bench ingest` (its own
functions), a Mosquitto broker (the one given, or one started on a free loopback port for the
run), and W `cityshare ingest mqtt` worker processes sharing the readings through one shared
subscription, each connected and subscribed.

Timed: from the first publish until every reading is committed: this process publishes each
reading with QoS 1 to its device's topic (in time order, as the meters would), the broker hands
each to one worker, which verifies, stores and credits it in batches and then acknowledges it.
The workers use the system clock (the readings are of 2026-06-01, so in the past).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select

from cityshare.bench.ingest import INTERVAL, START, Progress, _setup, make_readings
from cityshare.bench.ledger import machine
from cityshare.bootstrap import Platform, bootstrap
from cityshare.energy import mqtt, tables
from cityshare.energy.mqtt_batching import reading_message
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.db import is_sqlite
from cityshare.ledger import handlers as ledger_service
from cityshare.settings import Settings
from cityshare.tlog import note

LOOPBACK = "127.0.0.1"
_START_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """The run cannot go on (no broker, a worker died); the message says why."""


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None
    )


@contextlib.contextmanager
def local_broker(folder: Path) -> Iterator[str]:
    """A Mosquitto on a free loopback port for the run (unbounded queues, no persistence)."""
    program = find_mosquitto()
    if program is None:
        raise BenchError(
            "no --broker given and mosquitto is not installed (Debian package mosquitto)"
        )
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} {LOOPBACK}\nallow_anonymous true\nmax_inflight_messages 0\n"
        "max_queued_messages 0\nmax_queued_bytes 0\nlog_dest stderr\nlog_type error\n"
        "log_type warning\n"
    )
    with (folder / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([program, "-c", str(config)], stdout=log, stderr=log)
    try:
        _wait(lambda: _accepts(port), proc, "mosquitto", folder / "mosquitto.log")
        yield f"mqtt://{LOOPBACK}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def _wait(ready: Any, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BenchError(f"{what} did not start:\n{tail}")
        time.sleep(0.05)


class Workers:
    """W `cityshare ingest mqtt` processes of one group, each logging to its own file."""

    def __init__(
        self, folder: Path, broker: str, settings: Settings, count: int, batch: int
    ) -> None:
        group = f"bench-{secrets.token_hex(4)}"
        env = dict(os.environ)
        env.update(
            {
                "CITYSHARE_DATABASE_URL": settings.database_url,
                "CITYSHARE_KEY_DIR": str(settings.key_dir),
                "CITYSHARE_VERIFY_WORKERS": str(settings.verify_workers),
                "CITYSHARE_LOG_LEVEL": "INFO",
            }
        )
        for name in ("log_key", "token_key", "pseudonym_secret"):
            secret = getattr(settings, name)
            if secret is not None:  # the same keys as the platform that was set up
                env[f"CITYSHARE_{name.upper()}"] = secret.get_secret_value()
        self.logs = [folder / f"worker-{i}.log" for i in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, log_path in enumerate(self.logs):
                command = [
                    *(sys.executable, "-m", "cityshare", "ingest", "mqtt", "--broker", broker),
                    *("--group", group, "--client-id", f"{group}-{i}", "--batch", str(batch)),
                    *("--linger-ms", "20", "--stats-every", "3600"),
                ]
                with log_path.open("ab") as log:
                    self.procs.append(
                        subprocess.Popen(
                            command, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT
                        )
                    )
            for proc, log_path in zip(self.procs, self.logs, strict=True):
                _wait(
                    lambda p=log_path: "subscribed topic=" in p.read_text(errors="replace"),
                    proc,
                    "a worker",
                    log_path,
                )
        except BaseException:
            self.stop()  # the workers started so far would otherwise outlive the bench
            raise

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise BenchError(f"a worker exited:\n{log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> list[dict[str, int]]:
        """SIGTERM each; what each one counted."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        counts = []
        for proc, log in zip(self.procs, self.logs[: len(self.procs)], strict=True):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            counts.append(_last_counts(log.read_text(errors="replace")))
        return counts


def _last_counts(log: str) -> dict[str, int]:
    for line in reversed(log.splitlines()):
        _, found, rest = line.partition("stopped ")
        if found:
            pairs = (field.split("=", 1) for field in rest.split())
            return {k: int(v) for k, v in pairs}
    return {}


def run(
    *,
    devices: int,
    intervals: int,
    batch: int,
    database_url: str | None = None,
    broker_url: str | None = None,
    mqtt_workers: int = 1,
    workers: int = 0,
    seed: int = 20261125,
    progress: Progress | None = None,
) -> dict[str, Any]:
    if broker_url is not None:
        mqtt.parse_broker(broker_url)  # a bad URL fails before any setup
    with tempfile.TemporaryDirectory(prefix="cityshare-bench-") as tmp:
        folder = Path(tmp)
        settings = Settings(
            database_url=database_url or f"sqlite:///{folder / 'bench.db'}",
            log_key=SecretStr(note.Signer.generate("bench.cityshare.local/log").skey),
            token_key=SecretStr(note.Signer.generate("bench.cityshare.local/tokens").skey),
            pseudonym_secret=SecretStr(secrets.token_urlsafe(32)),
            key_dir=folder / "keys",
            max_batch=max(batch, 1),
            verify_workers=workers,
        )
        platform = bootstrap(settings, clock=ManualClock((START - 3600) * 1_000_000_000))
        try:
            with contextlib.ExitStack() as stack:
                broker = broker_url or stack.enter_context(local_broker(folder))
                return _run(
                    platform, settings, folder, broker, broker_url is None, devices,
                    intervals, batch, mqtt_workers, seed, progress,
                )  # fmt: skip
        finally:
            platform.close()


def _stored(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        count: int = conn.execute(
            select(func.count()).select_from(tables.meter_readings)
        ).scalar_one()
        return count


def _run(
    platform: Platform,
    settings: Settings,
    folder: Path,
    broker: str,
    local: bool,
    devices: int,
    intervals: int,
    batch: int,
    mqtt_workers: int,
    seed: int,
    progress: Progress | None,
) -> dict[str, Any]:
    setup_started = time.perf_counter()
    keys = _setup(platform, devices, seed)
    readings = make_readings(keys, intervals, seed)
    if START + INTERVAL * (intervals + 1) > time.time():
        raise BenchError("the readings would be in the future of the workers' clocks")
    messages = [reading_message(token) for row in readings for token in row]
    total = len(messages)
    pool = Workers(folder, broker, settings, mqtt_workers, batch)
    setup_seconds = time.perf_counter() - setup_started
    published: list[BaseException | float] = []

    def publisher() -> None:
        try:
            mqtt.publish_messages(mqtt.parse_broker(broker), messages, timeout_s=3600)
            published.append(time.perf_counter() - started)
        except BaseException as exc:
            published.append(exc)

    try:
        started = time.perf_counter()
        thread = threading.Thread(target=publisher, name="bench-publish", daemon=True)
        thread.start()
        done = 0
        while done < total:
            time.sleep(0.05)
            pool.check_alive()
            if published and isinstance(published[0], BaseException):
                raise BenchError(f"publishing failed: {published[0]}")
            now = _stored(platform)
            if progress is not None and now > done:
                progress(now - done)
            done = now
        seconds = time.perf_counter() - started
        thread.join()
    finally:
        counts = pool.stop()
    publish_seconds = published[0] if published and isinstance(published[0], float) else None
    report = ledger_service.check_invariants(platform.uow())
    with platform.uow() as uow:
        leaves = uow.log.size()
    with platform.engine.connect() as conn:
        credited = conn.execute(
            select(func.count()).select_from(tables.meter_intervals)
        ).scalar_one()
    rate = total / seconds if seconds else 0.0
    return {
        "scenario": "ingest",
        "via": "mqtt",
        "n": total,
        "seconds": round(seconds, 3),
        "readings_per_s": round(rate, 1),
        "per_s": round(rate, 1),
        "publish_seconds": round(publish_seconds, 3) if publish_seconds is not None else None,
        "devices": devices,
        "intervals": intervals,
        "batch": batch,
        "mqtt_workers": mqtt_workers,
        "workers": settings.verify_workers,
        "broker": "mosquitto on loopback (started for the run)" if local else broker,
        "database": "sqlite" if is_sqlite(platform.engine) else "postgresql",
        "stored": _stored(platform),
        "intervals_credited": credited,
        "log_leaves": leaves,
        "per_worker": counts,
        "duplicates": sum(c.get("duplicate", 0) for c in counts),
        "rejected": sum(c.get("rejected", 0) for c in counts),
        "setup_seconds": round(setup_seconds, 1),
        "invariants_ok": report.ok,
        "machine": machine(),
    }
