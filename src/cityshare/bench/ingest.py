"""`cityshare bench ingest`: signed meter readings end to end through the service layer.

Setup (not timed): N residents, each with one meter (registered in bulk, logged as usual), and
N * K signed readings made beforehand: K consecutive 15-minute intervals per meter from local
midnight, cumulative registers following a rooftop-solar day (a clear-sky bell between about
06:15 and 18:45 local time scaled by each roof's size and the day's cloud, less a household
load with morning and evening peaks; the surplus is exported, the deficit imported).

Timed: the readings in time order (every meter's interval k, then k+1, …) in batches of B,
each through `IngestReadings` on the message bus: parse, look up devices and keys, verify
every Ed25519 signature, deduplicate, store, judge and credit each interval, post the
transfers, append every record to the audit log, sign a checkpoint, one durable commit. The
report splits the time into signature checking (`ReadingVerifier.check`: parse, key lookup,
verify) and the rest (the write transaction).

`--workers W` parses and checks signatures in W processes; `--pipeline` checks batch k+1 in a
thread (and so in the pool, or in this process) while batch k is written, through the same
two service functions the handler runs one after the other. Pipelined, the two times overlap
and do not add up to the run's.

The report also gives what bounds the rate on this machine: one core's parse and Ed25519
times (`single_core`), and the CPU time per reading of this process (all its threads) and of
the verifier's pool (`cpu`), with the rate every core would reach doing nothing else (the
PostgreSQL server's own CPU, on the same machine, is not counted). `--audit` runs
`cityshare audit verify` on the result (untimed); `--keep DIR` leaves the database and the
log's key there.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import multiprocessing
import os
import queue
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey
from pydantic import SecretStr

from cityshare.audit import verify as audit_service
from cityshare.bench.ledger import machine
from cityshare.bootstrap import Platform, bootstrap, unit_of_work
from cityshare.energy import commands
from cityshare.energy import handlers as energy
from cityshare.energy.readings import parse, signature_valid
from cityshare.energy.verify import Checked
from cityshare.identity import records as identity_records
from cityshare.identity.model import DeviceKeyRow, DeviceRow, EnrolmentRow, ResidentRow, new_vid
from cityshare.identity.residents import wallet_accounts
from cityshare.identity.tables import device_keys, residents
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.db import is_sqlite
from cityshare.ledger import handlers as ledger_service
from cityshare.settings import Settings
from cityshare.tlog import note

Progress = Callable[[int], None]

INTERVAL = 900
#: The bench's day starts at local midnight, 2026-06-01 in India (a sunny month).
START = int(
    dt.datetime(2026, 6, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))).timestamp()
)
SETUP_CHUNK = 2_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def solar_day(rng: random.Random, intervals: int) -> list[tuple[int, int]]:
    """Cumulative (import_wh, export_wh) registers of one home at the end of each interval."""
    peak_w = rng.uniform(2_000, 8_000)  # the roof's output at noon on a clear day
    base_w = rng.uniform(250, 600)
    registers = []
    imported = rng.randrange(0, 2_000_000)
    exported = rng.randrange(0, 4_000_000)
    cloud = rng.uniform(0.6, 1.0)
    for k in range(intervals):
        hour = (k * INTERVAL / 3600) % 24
        if hour < 0.25:
            cloud = rng.uniform(0.6, 1.0)  # a new day, new weather
        sun = math.sin(math.pi * (hour - 6.25) / 12.5) if 6.25 < hour < 18.75 else 0.0
        generation = peak_w * cloud * sun**1.3 * rng.uniform(0.85, 1.0)
        load = base_w + (400 if 6 <= hour < 9 else 0) + (800 if 18 <= hour < 22 else 0)
        load *= rng.uniform(0.7, 1.3)
        net_wh = (generation - load) * INTERVAL / 3600
        if net_wh >= 0:
            exported += round(net_wh)
        else:
            imported += round(-net_wh)
        registers.append((imported, exported))
    return registers


def make_readings(keys: list[tuple[str, SigningKey]], intervals: int, seed: int) -> list[list[str]]:
    """Signed readings per interval: result[k] holds every meter's reading k."""
    rng = random.Random(seed)
    per_device = [solar_day(rng, intervals) for _ in keys]
    headers = [_b64(json.dumps({"alg": "EdDSA", "kid": d}).encode()) for d, _ in keys]
    out: list[list[str]] = []
    for k in range(intervals):
        ts = START + INTERVAL * (k + 1)
        row = []
        for (_, key), header, registers in zip(keys, headers, per_device, strict=True):
            imported, exported = registers[k]
            payload = _b64(
                json.dumps(
                    {"seq": k, "ts": ts, "import_wh": imported, "export_wh": exported},
                    separators=(",", ":"),
                ).encode()
            )
            signing_input = f"{header}.{payload}"
            signature = key.sign(signing_input.encode()).signature
            row.append(f"{signing_input}.{_b64(signature)}")
        out.append(row)
    return out


def _setup(platform: Platform, devices: int, seed: int) -> list[tuple[str, SigningKey]]:
    """N residents with their wallets and one meter each, written in bulk (each record and
    its log leaf as the handlers write them, without a commit per resident)."""
    rng = random.Random(seed)
    now = platform.clock.now_ns()
    keys: list[tuple[str, SigningKey]] = []
    for start in range(0, devices, SETUP_CHUNK):
        count = min(SETUP_CHUNK, devices - start)
        uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
        with uow:
            last = uow.ledger.lock_ledger()
            repo = uow.identity
            first_resident = repo.next_id(residents)
            first_key = repo.next_id(device_keys)
            leaves: list[bytes] = []
            wallets = []
            for i in range(count):
                rid = first_resident + i
                resident = ResidentRow(rid, _b64(secrets.token_bytes(32)), "bench", now)
                enrolment = EnrolmentRow(
                    rid, rid, new_vid(rng), {"ward": str(rid % 30)}, f"bench-{rid}", now
                )
                signing = SigningKey.generate()
                device = DeviceRow(f"dev-{_b32(rng)}", rid, "meter", None, now)
                key = DeviceKeyRow(first_key + i, device.id, bytes(signing.verify_key), now)
                repo.insert_resident(resident)
                repo.insert_enrolment(enrolment)
                repo.insert_device(device)
                repo.insert_key(key)
                leaves += [
                    identity_records.RESIDENT.of(resident),
                    identity_records.ENROLMENT.of(enrolment),
                    identity_records.DEVICE.of(device),
                    identity_records.DEVICE_KEY.of(key),
                ]
                wallets += wallet_accounts(rid)
                keys.append((device.id, signing))
            uow.log.append(leaves)
            ledger_service.open_accounts(uow, wallets, last_timestamp=last, atomic=True)
            uow.commit()
    return keys


def _b32(rng: random.Random) -> str:
    return base64.b32encode(rng.randbytes(10)).decode().lower()


def _single_core(sample: list[str], keys: dict[str, bytes]) -> dict[str, float]:
    """One core checking `sample` (in this process, untimed by the run): parsing, Ed25519
    verification (libsodium), and the readings per second both make."""
    started = time.perf_counter()
    parsed = [parse(token) for token in sample]
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    for r in parsed:
        signature_valid(keys[r.device_id], r.signing_input, r.signature)
    verify_s = time.perf_counter() - started
    n = len(sample)
    return {
        "per_s": round(n / (parse_s + verify_s), 1),
        "parse_us": round(parse_s / n * 1e6, 1),
        "signature_us": round(verify_s / n * 1e6, 1),
    }


def _pool_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's live multiprocessing
    children (the verifier's pool), from /proc (0 where there is none)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for child in multiprocessing.active_children():
        try:
            stat = Path(f"/proc/{child.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime and stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def _cpu_report(n: int, own: float, pool: float) -> dict[str, float | int]:
    """CPU time per reading, of this process (every thread) and of the verifier's pool; and
    the rate all cores would reach if they did nothing else (PostgreSQL's own processes are
    not counted)."""
    total = own + pool
    cores = os.cpu_count() or 1
    return {
        "this_process_us_per_reading": round(own / n * 1e6, 1),
        "pool_us_per_reading": round(pool / n * 1e6, 1),
        "total_us_per_reading": round(total / n * 1e6, 1),
        "cores": cores,
        "all_cores_per_s": round(cores * n / total, 1) if total else 0.0,
    }


def run(
    *,
    devices: int,
    intervals: int,
    batch: int,
    database_url: str | None = None,
    workers: int = 0,
    pipeline: bool = False,
    seed: int = 20261125,
    progress: Progress | None = None,
    keep: Path | None = None,
    audit: bool = False,
    replay: bool = False,
) -> dict[str, Any]:
    """`keep`: a folder for the SQLite database (when no `database_url` is given) and the
    log's verifier key (`log.vkey`), left for `cityshare audit verify`. `audit`: run that
    verification on the result (untimed) and report it. `replay`: then send every reading
    again, shuffled, as a replay storm would, and time that separately (`replay`)."""
    with tempfile.TemporaryDirectory(prefix="cityshare-bench-") as tmp:
        folder = Path(tmp) if keep is None else keep
        folder.mkdir(parents=True, exist_ok=True)
        url = database_url or f"sqlite:///{folder / 'bench.db'}"
        if keep is not None and database_url is None and (folder / "bench.db").exists():
            raise ValueError(f"{folder / 'bench.db'} exists: keep a run in an empty folder")
        signer = note.Signer.generate("bench.cityshare.local/log")
        settings = Settings(
            database_url=url,
            log_key=SecretStr(signer.skey),
            token_key=SecretStr(note.Signer.generate("bench.cityshare.local/tokens").skey),
            pseudonym_secret=SecretStr(secrets.token_urlsafe(32)),
            key_dir=Path(tmp) / "keys",
            max_batch=max(batch, 1),
            verify_workers=workers,
        )
        clock = ManualClock((START - 3600) * 1_000_000_000)
        platform = bootstrap(settings, clock=clock)
        try:
            result = _run(
                platform, clock, devices, intervals, batch, workers, pipeline, seed, progress,
                replay,
            )  # fmt: skip
            if audit:
                started = time.perf_counter()
                report = audit_service.verify(
                    unit_of_work(platform.engine, write=False), signer.verifier
                )
                found = report.as_dict()
                result["audit"] = {
                    "ok": report.ok,
                    "seconds": round(time.perf_counter() - started, 1),
                    "checked": found["checked"],
                    "problem_count": found["problem_count"],
                    "problems": [p["message"] for p in found["problems"][:10]],
                }
        finally:
            platform.close()
        if keep is not None:
            (folder / "log.vkey").write_text(signer.verifier.vkey + "\n")
            result["kept"] = {"database_url": url, "log_key": str(folder / "log.vkey")}
        return result


def _batches(readings: list[list[str]], batch: int) -> Iterator[list[str]]:
    flat = [token for row in readings for token in row]
    for start in range(0, len(flat), batch):
        yield flat[start : start + batch]


def _run(
    platform: Platform,
    clock: ManualClock,
    devices: int,
    intervals: int,
    batch: int,
    workers: int,
    pipeline: bool,
    seed: int,
    progress: Progress | None,
    replay: bool = False,
) -> dict[str, Any]:
    setup_started = time.perf_counter()
    keys = _setup(platform, devices, seed)
    readings = make_readings(keys, intervals, seed)
    setup_seconds = time.perf_counter() - setup_started
    clock.advance(INTERVAL * (intervals + 1) + 3600)
    total = devices * intervals
    verifier = platform.reading_verifier
    if workers:  # start the pool before timing (its processes import the package once)
        warm = next(_batches(readings, max(verifier.pool_threshold, workers)))
        verifier.check(warm[: max(verifier.pool_threshold, workers)])

    verify_seconds = 0.0
    real_check = verifier.check

    def timed_check(items: Any) -> Checked:
        nonlocal verify_seconds
        started = time.perf_counter()
        try:
            return real_check(items)
        finally:
            verify_seconds += time.perf_counter() - started

    verifier.check = timed_check  # type: ignore[method-assign]
    stored = intervals_credited = 0
    cpu_started = time.process_time(), _pool_cpu()
    started = time.perf_counter()
    if pipeline:
        stored, intervals_credited, write_seconds = _pipelined(platform, readings, batch, progress)
    else:
        for chunk in _batches(readings, batch):
            outcome = platform.bus.handle(commands.IngestReadings(chunk, "http"))
            stored += outcome.stored
            intervals_credited += outcome.intervals
            if progress is not None:
                progress(len(chunk))
        write_seconds = 0.0
    seconds = time.perf_counter() - started
    own_cpu = time.process_time() - cpu_started[0]
    pool_cpu = _pool_cpu() - cpu_started[1]
    verifier.check = real_check  # type: ignore[method-assign]
    if not pipeline:
        write_seconds = seconds - verify_seconds

    replayed = _replay(platform, readings, batch, seed) if replay else None
    public = {d: bytes(k.verify_key) for d, k in keys}
    sample = [t for row in readings for t in row][: min(total, 5_000)]
    single = _single_core(sample, public)
    report = ledger_service.check_invariants(platform.uow())
    with platform.uow() as uow:
        leaves = uow.log.size()
    rate = total / seconds if seconds else 0.0
    return {
        "scenario": "ingest",
        "n": total,
        "seconds": round(seconds, 3),
        "readings_per_s": round(rate, 1),
        "per_s": round(rate, 1),
        "devices": devices,
        "intervals": intervals,
        "batch": batch,
        "workers": workers,
        "pipeline": pipeline,
        "database": "sqlite" if is_sqlite(platform.engine) else "postgresql",
        "stored": stored,
        "intervals_credited": intervals_credited,
        "log_leaves": leaves,
        "time": {
            "verify_s": round(verify_seconds, 3),
            "write_s": round(write_seconds, 3),
            "verify_us_per_reading": round(verify_seconds / total * 1e6, 1),
            "write_us_per_reading": round(write_seconds / total * 1e6, 1),
        },
        "single_core_verify_per_s": single["per_s"],
        "single_core": single,
        "cpu": _cpu_report(total, own_cpu, pool_cpu),
        "setup_seconds": round(setup_seconds, 1),
        "invariants_ok": report.ok,
        "machine": machine(),
    } | ({"replay": replayed} if replayed is not None else {})


def _replay(
    platform: Platform, readings: list[list[str]], batch: int, seed: int
) -> dict[str, Any]:
    """Every reading sent again, shuffled, in batches of `batch` through the bus (serially):
    a replay storm's rate, and whether it changed nothing (every item `duplicate`, no leaf)."""
    storm = [t for row in readings for t in row]
    random.Random(seed + 1).shuffle(storm)
    with platform.uow() as uow:
        leaves = uow.log.size()
    answers: dict[str, int] = {}
    started = time.perf_counter()
    for chunk in _batches([storm], batch):
        outcome = platform.bus.handle(commands.IngestReadings(chunk, "http"))
        for r in outcome.results:
            answers[r.result] = answers.get(r.result, 0) + 1
    seconds = time.perf_counter() - started
    with platform.uow() as uow:
        unchanged = uow.log.size() == leaves
    return {
        "n": len(storm),
        "seconds": round(seconds, 3),
        "per_s": round(len(storm) / seconds, 1) if seconds else 0.0,
        "results": answers,
        "changed_nothing": unchanged and answers == {"duplicate": len(storm)},
    }


def _pipelined(
    platform: Platform, readings: list[list[str]], batch: int, progress: Progress | None
) -> tuple[int, int, float]:
    """Check batch k+1 in a thread while batch k is written (one writer, as always)."""
    verifier = platform.reading_verifier
    checked: queue.Queue[tuple[int, Checked] | None] = queue.Queue(maxsize=2)

    def checker() -> None:
        try:
            for chunk in _batches(readings, batch):
                checked.put((len(chunk), verifier.check(chunk)))
        finally:
            checked.put(None)

    thread = threading.Thread(target=checker, name="bench-verify", daemon=True)
    thread.start()
    stored = credited = 0
    write_seconds = 0.0
    while (item := checked.get()) is not None:
        n, result = item
        started = time.perf_counter()
        uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
        outcome = energy.ingest_checked(uow, n, result, source="http", tariff=platform.tariff)
        write_seconds += time.perf_counter() - started
        stored += outcome.stored
        credited += outcome.intervals
        if progress is not None:
            progress(n)
    thread.join()
    return stored, credited, write_seconds
