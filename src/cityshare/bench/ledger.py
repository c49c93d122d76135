"""`cityshare bench ledger`: batched transfers through the real engine, against two yardsticks.

1. The engine: N random transfers among M funded wallets, every rule checked, through the message
   bus and unit of work, each batch one durable commit.
2. The ceiling: the same rows `executemany`'d (SQLite) or `COPY`'d (PostgreSQL) into bare tables
   with no index and no checks, one durable commit per batch: each committed transfer row and,
   since every transfer is also an audit-log leaf, its leaf row (index, leaf hash, entry), so
   the ratio compares like with like (the tree, the checks and the balances are the overhead).
3. The naive way: one transfer per transaction through the same engine.
"""

from __future__ import annotations

import os
import platform
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from cityshare.bootstrap import Platform, bootstrap
from cityshare.kernel.db import is_sqlite
from cityshare.ledger import commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import AccountFlags, Ledger, NewAccount, Transfer, TransferRecord
from cityshare.ledger.repo import TRANSFER_COLUMNS
from cityshare.tlog import entries, merkle

Progress = Callable[[int], None]

FUNDING_ACCOUNT = 1
FIRST_WALLET = 1_000
FIRST_TRANSFER = 1_000_000_000
INITIAL_FUNDS = 10**12


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def _setup(platform_: Platform, accounts: int) -> list[int]:
    bus = platform_.bus
    wallets = list(range(FIRST_WALLET, FIRST_WALLET + accounts))
    new = [NewAccount(FUNDING_ACCOUNT, Ledger.CREDIT, 1)]
    new += [
        NewAccount(w, Ledger.CREDIT, 2, int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS))
        for w in wallets
    ]
    for start in range(0, len(new), 8_000):
        bus.handle(commands.CreateAccounts(new[start : start + 8_000]))
    funding = [
        Transfer(
            FIRST_TRANSFER - accounts - 1 + i, FUNDING_ACCOUNT, w, INITIAL_FUNDS, Ledger.CREDIT
        )
        for i, w in enumerate(wallets)
    ]
    for start in range(0, len(funding), 8_000):
        bus.handle(commands.CreateTransfers(funding[start : start + 8_000]))
    return wallets


def random_transfers(n: int, wallets: Sequence[int], first_id: int, seed: int) -> list[Transfer]:
    rng = random.Random(seed)
    out = []
    m = len(wallets)
    for i in range(n):
        a = rng.randrange(m)
        b = rng.randrange(m - 1)
        if b >= a:
            b += 1
        out.append(
            Transfer(first_id + i, wallets[a], wallets[b], rng.randint(1, 1_000), Ledger.CREDIT, 7)
        )
    return out


LeafRow = tuple[int, bytes, bytes]


def _leaf_rows(batches: Sequence[Sequence[TransferRecord]]) -> list[list[LeafRow]]:
    """The audit-log leaf row (index, leaf hash, entry) of each transfer, made before timing."""
    out: list[list[LeafRow]] = []
    idx = 0
    for batch in batches:
        data = entries.encode_transfers(list(batch))
        hashes = merkle.leaf_hashes(data)
        out.append(list(zip(range(idx, idx + len(data)), hashes, data, strict=True)))
        idx += len(data)
    return out


def _raw_sqlite(
    path: Path, batches: Sequence[Sequence[TransferRecord]], leaves: Sequence[Sequence[LeafRow]]
) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("DROP TABLE IF EXISTS bare")
    columns = ", ".join(
        f"{c.strip()} INTEGER" + (" PRIMARY KEY" if c.strip() == "id" else "")
        for c in TRANSFER_COLUMNS.split(",")
    )
    conn.execute(f"CREATE TABLE bare ({columns})")
    conn.execute("DROP TABLE IF EXISTS bare_leaves")
    conn.execute(
        "CREATE TABLE bare_leaves (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL, data BLOB NOT NULL)"
    )
    marks = ", ".join(["?"] * 13)
    start = time.perf_counter()
    for batch, leaf_rows in zip(batches, leaves, strict=True):
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO bare VALUES ({marks})", batch)
        conn.executemany("INSERT INTO bare_leaves VALUES (?, ?, ?)", leaf_rows)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def _raw_postgres(
    engine: Engine,
    batches: Sequence[Sequence[TransferRecord]],
    leaves: Sequence[Sequence[LeafRow]],
) -> float:
    with engine.connect() as sa_conn:
        conn: Any = sa_conn.connection.driver_connection
        conn.commit()
        conn.autocommit = True
        conn.execute("DROP TABLE IF EXISTS bench_bare")
        columns = ", ".join(
            f"{c.strip()} BIGINT" + (" PRIMARY KEY" if c.strip() == "id" else "")
            for c in TRANSFER_COLUMNS.split(",")
        )
        conn.execute(f"CREATE TABLE bench_bare ({columns})")
        conn.execute("DROP TABLE IF EXISTS bench_bare_leaves")
        conn.execute(
            "CREATE TABLE bench_bare_leaves "
            "(idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL, data BYTEA NOT NULL)"
        )
        conn.autocommit = False
        copy_leaves = "COPY bench_bare_leaves FROM STDIN (FORMAT BINARY)"
        start = time.perf_counter()
        for batch, leaf_rows in zip(batches, leaves, strict=True):
            with conn.cursor() as cur:
                with cur.copy("COPY bench_bare FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                with cur.copy(copy_leaves) as copy:
                    copy.set_types(["int8", "bytea", "bytea"])
                    for leaf in leaf_rows:
                        copy.write_row(leaf)
            conn.commit()
        seconds = time.perf_counter() - start
        conn.autocommit = True
        conn.execute("DROP TABLE bench_bare")
        conn.execute("DROP TABLE bench_bare_leaves")
    return seconds


def run(
    *,
    transfers: int,
    accounts: int,
    batch: int,
    database_url: str | None,
    naive: int = 2_000,
    seed: int = 42,
    progress: Progress | None = None,
) -> dict[str, Any]:
    if accounts < 2:
        raise ValueError("need at least 2 accounts")
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if database_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="cityshare-bench-", dir=os.getcwd())
        database_url = f"sqlite:///{tmp.name}/ledger.db"
    platform_ = bootstrap(database_url=database_url)
    try:
        wallets = _setup(platform_, accounts)
        work = random_transfers(transfers, wallets, FIRST_TRANSFER, seed)
        bus = platform_.bus
        committed: list[list[TransferRecord]] = []
        rejected = 0
        start = time.perf_counter()
        for offset in range(0, transfers, batch):
            outcome = bus.handle(commands.CreateTransfers(work[offset : offset + batch]))
            committed.append(outcome.records)
            rejected += len(outcome.failed)
            if progress:
                progress(len(outcome.results))
        seconds = time.perf_counter() - start
        created = sum(len(b) for b in committed)

        sqlite_backend = is_sqlite(platform_.engine)
        leaf_rows = _leaf_rows(committed)
        if sqlite_backend:
            raw_path = Path(platform_.engine.url.database or "ledger.db").with_suffix(".raw.db")
            raw_seconds = _raw_sqlite(raw_path, committed, leaf_rows)
            for suffix in ("", "-wal", "-shm"):
                Path(str(raw_path) + suffix).unlink(missing_ok=True)
        else:
            raw_seconds = _raw_postgres(platform_.engine, committed, leaf_rows)

        naive_work = random_transfers(naive, wallets, FIRST_TRANSFER + transfers, seed + 1)
        naive_start = time.perf_counter()
        for t in naive_work:
            bus.handle(commands.CreateTransfers([t]))
        naive_seconds = time.perf_counter() - naive_start

        report = ledger_service.check_invariants(platform_.uow())
    finally:
        platform_.close()
        if tmp is not None:
            tmp.cleanup()

    rate = created / seconds if seconds else 0.0
    raw_rate = created / raw_seconds if raw_seconds else 0.0
    naive_rate = naive / naive_seconds if naive_seconds else 0.0
    return {
        "scenario": "ledger",
        "backend": "sqlite" if sqlite_backend else "postgresql",
        "n": transfers,
        "accounts": accounts,
        "batch": batch,
        "created": created,
        "rejected": rejected,
        "seconds": round(seconds, 4),
        "transfers_per_second": round(rate),
        "raw_insert": ("sqlite3 executemany" if sqlite_backend else "psycopg COPY")
        + " of each committed transfer row and its audit-log leaf row (idx, hash, entry), "
        "one commit per batch, no index, no checks, no tree; the rate counts transfers",
        "raw_rows_per_second": round(raw_rate),
        "ratio_to_raw": round(rate / raw_rate, 3) if raw_rate else None,
        "naive_n": naive,
        "naive_transfers_per_second": round(naive_rate),
        "speedup_over_naive": round(rate / naive_rate, 1) if naive_rate else None,
        "invariants_ok": report.ok,
        "durability": "synchronous=FULL (WAL)" if sqlite_backend else "fsync=on, commit per batch",
        "machine": machine(),
    }
