"""`cityshare bench log`: the audit log's durable append rate and its proof latency.

1. Appends: N realistic entries (encoded transfer records, 105 bytes each) in batches of B,
   each batch one durable commit through the real unit of work, which signs one checkpoint
   per commit, as every ledger writer does.
2. Proofs at the final size: random inclusion and consistency proofs, each the way the API
   serves it (a read transaction, the log's size, then the proof from stored nodes), timed
   one by one and then verified against the last signed checkpoint.
3. The yardstick: the same leaf rows (index, hash, entry) written with no tree at all, one
   durable commit per batch: `executemany` on SQLite, binary `COPY` on PostgreSQL; on SQLite
   also one INSERT ... SELECT per batch, the bulk statement the log itself uses for leaves
   (the fastest way we know to write those rows, so the true ceiling).
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from cityshare import migrate
from cityshare.bench.ledger import machine
from cityshare.bootstrap import unit_of_work
from cityshare.kernel.clock import SystemClock
from cityshare.kernel.db import is_sqlite, make_engine
from cityshare.kernel.uow import SqlUnitOfWork
from cityshare.ledger.model import Ledger, TransferRecord
from cityshare.tlog import entries, merkle, note
from cityshare.tlog import handlers as audit_log
from cityshare.tlog.repo import FIRST_NODE_LEVEL

#: Called with a phase ("append", "proofs", "raw", ...), how much of it just got done, its total.
Progress = Callable[[str, int, int], None]

FIRST_TRANSFER = 1_000_000_000
EPOCH_NS = 1_764_000_000 * 1_000_000_000
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_RAW_TABLE = "bench_log_raw"


def synthetic_transfer(i: int) -> TransferRecord:
    """A plausible committed transfer, a pure function of `i` (so rows can be made again)."""
    x = (i * _MIX) & _MASK
    return TransferRecord(
        FIRST_TRANSFER + i,
        1_000 + x % 10_000,
        1_000 + (x >> 16) % 10_000,
        1 + (x >> 32) % 1_000_000,
        int(Ledger.CREDIT),
        7,
        0,
        0,
        0,
        x >> 40,
        EPOCH_NS + i * 1_000,
        (x >> 2) % 10**12,
        (x >> 3) % 10**12,
    )


def synthetic_entries(first: int, count: int) -> list[bytes]:
    """The log entries of leaves [first, first + count): encoded synthetic transfers."""
    return entries.encode_transfers([synthetic_transfer(i) for i in range(first, first + count)])


def _batches(n: int, batch: int) -> Iterator[tuple[int, int]]:
    for first in range(0, n, batch):
        yield first, min(batch, n - first)


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def _summary(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ordered),
        "median_ms": round(_percentile(ordered, 0.5), 4),
        "p99_ms": round(_percentile(ordered, 0.99), 4),
        "max_ms": round(ordered[-1], 4),
    }


def _leaf_rows(first: int, count: int) -> list[tuple[int, bytes, bytes]]:
    """The rows `log_leaves` holds for leaves [first, first + count), made before the clock."""
    work = synthetic_entries(first, count)
    return list(zip(range(first, first + count), merkle.leaf_hashes(work), work, strict=True))


def _append(
    engine: Engine, signer: note.Signer, n: int, batch: int, progress: Progress | None
) -> float:
    clock = SystemClock()
    seconds = 0.0
    for first, count in _batches(n, batch):
        work = synthetic_entries(first, count)
        start = time.perf_counter()
        uow = unit_of_work(engine, clock, log_signer=signer)
        with uow:
            uow.ledger.lock_ledger()  # as every ledger writer does before it appends
            uow.log.append(work)
            uow.commit()
        seconds += time.perf_counter() - start
        if progress:
            progress("append", count, n)
    return seconds


#: The fastest way we know to write the same rows on SQLite (the log's own leaf insert does
#: this): one INSERT ... SELECT that slices the rows out of two blobs inside SQLite.
_RAW_BULK = (
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?4) "
    f"INSERT INTO {_RAW_TABLE} (idx, hash, data) "
    "SELECT ?1 + i, substr(?2, i * 32 + 1, 32), substr(?3, i * ?5 + 1, ?5) FROM k"
)


def _raw_sqlite(path: Path, n: int, batch: int, progress: Progress | None, *, bulk: bool) -> float:
    """Leaf rows with no tree: `executemany`, or with `bulk` one INSERT ... SELECT per batch."""
    engine = make_engine(f"sqlite:///{path}")  # the same pragmas: WAL, synchronous=FULL
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        conn.execute(
            f"CREATE TABLE {_RAW_TABLE} "
            "(idx INTEGER PRIMARY KEY, hash BLOB NOT NULL, data BLOB NOT NULL)"
        )
        seconds = 0.0
        for first, count in _batches(n, batch):
            rows = _leaf_rows(first, count)
            if bulk:
                _, hashes, data = zip(*rows, strict=True)
                params = (first, b"".join(hashes), b"".join(data), count, len(data[0]))
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            if bulk:
                conn.execute(_RAW_BULK, params)
            else:
                conn.executemany(f"INSERT INTO {_RAW_TABLE} VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
            seconds += time.perf_counter() - start
            if progress:
                progress("raw bulk" if bulk else "raw", count, n)
    finally:
        raw.close()
        engine.dispose()
    return seconds


def _raw_postgres(engine: Engine, n: int, batch: int, progress: Progress | None) -> float:
    with engine.connect() as sa_conn:
        conn: Any = sa_conn.connection.driver_connection
        conn.commit()
        conn.autocommit = True
        conn.execute(f"DROP TABLE IF EXISTS {_RAW_TABLE}")
        conn.execute(
            f"CREATE TABLE {_RAW_TABLE} "
            "(idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL, data BYTEA NOT NULL)"
        )
        conn.autocommit = False
        seconds = 0.0
        copy_sql = f"COPY {_RAW_TABLE} (idx, hash, data) FROM STDIN (FORMAT BINARY)"
        for first, count in _batches(n, batch):
            rows = _leaf_rows(first, count)
            start = time.perf_counter()
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(["int8", "bytea", "bytea"])
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            seconds += time.perf_counter() - start
            if progress:
                progress("raw", count, n)
        conn.autocommit = True
        conn.execute(f"DROP TABLE {_RAW_TABLE}")
    return seconds


def _trusted_root(engine: Engine, signer: note.Signer, n: int) -> bytes:
    """The root of the last checkpoint, once its signature checks out."""
    view = audit_log.latest_checkpoint(unit_of_work(engine, write=False), signer)
    checkpoint = note.Checkpoint.parse(note.open_note(view.note, signer.verifier).text)
    if checkpoint.size != n:
        raise RuntimeError(f"the last checkpoint is of size {checkpoint.size}, not {n}")
    return checkpoint.root_hash


def _proofs(
    engine: Engine, signer: note.Signer, n: int, count: int, seed: int, progress: Progress | None
) -> dict[str, Any]:
    rng = random.Random(seed)
    indices = [rng.randrange(n) for _ in range(count)]
    sizes = [rng.randrange(1, n + 1) for _ in range(count)]

    def read() -> SqlUnitOfWork:
        return unit_of_work(engine, write=False)

    inclusion: list[list[bytes]] = []
    inclusion_seconds: list[float] = []
    for index in indices:
        start = time.perf_counter()
        proof = audit_log.inclusion_proof(read(), index, n)
        inclusion_seconds.append(time.perf_counter() - start)
        inclusion.append(proof)
        if progress:
            progress("proofs", 1, 2 * count)
    consistency: list[list[bytes]] = []
    consistency_seconds: list[float] = []
    for size in sizes:
        start = time.perf_counter()
        proof = audit_log.consistency_proof(read(), size, n)
        consistency_seconds.append(time.perf_counter() - start)
        consistency.append(proof)
        if progress:
            progress("proofs", 1, 2 * count)

    # Untimed: every proof must lead to the root the log signed.
    root = _trusted_root(engine, signer, n)
    for index, proof in zip(indices, inclusion, strict=True):
        leaf = merkle.leaf_hash(synthetic_entries(index, 1)[0])
        merkle.verify_inclusion(index, n, leaf, proof, root)
    with read() as uow:
        old_roots = [uow.log.root(size) for size in sizes]
    for size, old_root, proof in zip(sizes, old_roots, consistency, strict=True):
        merkle.verify_consistency(size, n, old_root, root, proof)
    return {
        "inclusion_proof": _summary(inclusion_seconds),
        "consistency_proof": _summary(consistency_seconds),
        "proofs_verified": True,
        "root": root.hex(),
    }


def _bytes_per_leaf(engine: Engine, n: int) -> float | None:
    """SQLite: the database file's size per leaf once the WAL is copied back (untimed)."""
    if not is_sqlite(engine) or not engine.url.database:
        return None
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return round(os.path.getsize(engine.url.database) / n, 1)


def run(
    *,
    leaves: int,
    batch: int,
    database_url: str | None,
    proofs: int = 2_000,
    seed: int = 42,
    progress: Progress | None = None,
) -> dict[str, Any]:
    if leaves < 1 or batch < 1 or proofs < 1:
        raise ValueError("leaves, batch and proofs must be at least 1")
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if database_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="cityshare-bench-", dir=os.getcwd())
        database_url = f"sqlite:///{tmp.name}/log.db"
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        with unit_of_work(engine, write=False) as uow:
            if uow.log.size() != 0:
                raise ValueError("the log benchmark needs a database whose audit log is empty")
        signer = note.Signer.generate("bench.cityshare.local/log")
        sqlite_backend = is_sqlite(engine)

        seconds = _append(engine, signer, leaves, batch, progress)
        with unit_of_work(engine, write=False) as uow:
            checkpoints = len(uow.log.checkpoints())
        measured = _proofs(engine, signer, leaves, proofs, seed, progress)
        bytes_per_leaf = _bytes_per_leaf(engine, leaves)

        bulk_seconds: float | None = None
        if sqlite_backend:
            raw_path = Path(engine.url.database or "log.db").with_suffix(".raw.db")
            for bulk in (False, True):
                took = _raw_sqlite(raw_path, leaves, batch, progress, bulk=bulk)
                if bulk:
                    bulk_seconds = took
                else:
                    raw_seconds = took
                for suffix in ("", "-wal", "-shm"):
                    Path(str(raw_path) + suffix).unlink(missing_ok=True)
        else:
            raw_seconds = _raw_postgres(engine, leaves, batch, progress)
    finally:
        engine.dispose()
        if tmp is not None:
            tmp.cleanup()

    rate = leaves / seconds if seconds else 0.0
    raw_rate = leaves / raw_seconds if raw_seconds else 0.0
    bulk_rate = leaves / bulk_seconds if bulk_seconds else None
    return {
        "scenario": "log",
        "backend": "sqlite" if sqlite_backend else "postgresql",
        "n": leaves,
        "batch": batch,
        "entry_bytes": len(synthetic_entries(0, 1)[0]),
        "seconds": round(seconds, 4),
        "leaves_per_second": round(rate),
        "checkpoints_signed": checkpoints,
        "stored_node_levels": f"leaves, and every level >= {FIRST_NODE_LEVEL}",
        "database_bytes_per_leaf": bytes_per_leaf,
        "raw_insert": (
            "the same leaf rows (idx, hash, entry), sqlite3 executemany, no tree"
            if sqlite_backend
            else "the same leaf rows (idx, hash, entry), psycopg binary COPY, no tree"
        ),
        "raw_rows_per_second": round(raw_rate),
        "ratio_to_raw": round(rate / raw_rate, 3) if raw_rate else None,
        "raw_bulk_insert": (
            "the same leaf rows, one INSERT ... SELECT from two blobs per batch, no tree"
            if sqlite_backend
            else None
        ),
        "raw_bulk_rows_per_second": round(bulk_rate) if bulk_rate else None,
        "ratio_to_raw_bulk": round(rate / bulk_rate, 3) if bulk_rate else None,
        **measured,
        "proof_way": "as the API: a read transaction, the log size, the proof (one node query)",
        "durability": "synchronous=FULL (WAL)" if sqlite_backend else "fsync=on, commit per batch",
        "machine": machine(),
    }
