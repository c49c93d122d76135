"""The twin's local store: one SQLite file (`replica.db`), authoritative for what is trusted.

It holds the entries, the right edge of the tree and the trusted checkpoints; the trusted
checkpoint is also written to `checkpoint` after each commit, for people and other tools. The
twin's errors live here too, since every other module of the twin raises them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cityshare.kernel.files import private_database
from cityshare.tlog import merkle

REPLICA_FILE = "replica.db"
CHECKPOINT_FILE = "checkpoint"

ProgressCallback = Callable[[int, int], None]


class TwinError(Exception):
    """A sync or verify that cannot go on: the message says why, for the person running it."""


class TamperError(TwinError):
    """The log is caught misbehaving: a bad signature, a rollback, a rewritten history, or
    entries that do not hash to the signed root. `evidence` is the file that keeps the two
    contradicting signed checkpoints, when there are two."""

    def __init__(self, message: str, evidence: Path | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class Trusted:
    size: int
    root: bytes
    #: The checkpoint note as the twin received and checked it.
    note: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS frontier (
    id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, nodes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, trusted_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO frontier (id, size, nodes) VALUES (1, 0, x'');
"""


class Replica:
    """The twin's SQLite file: entries, the tree's right edge, trusted checkpoints, the log key.

    Only the right edge of the tree (:class:`merkle.Frontier`) is kept besides the entries: it
    is enough to append and to compute the root, and `verify` rebuilds the rest from the
    entries rather than trusting stored hashes.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise TwinError(f"no replica at {path}: run `cityshare twin sync` first")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_database(path)  # the entries are the platform's records: owner-only, like the key
        # Autocommit mode: transactions are begun and committed explicitly below.
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        if not create:
            return  # a reader (verify) takes no write lock: a running sync does not block it
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the twin's write lock); rolled back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def frontier(self) -> merkle.Frontier:
        size, nodes = self.conn.execute("SELECT size, nodes FROM frontier WHERE id = 1").fetchone()
        blob = bytes(nodes)
        hashes = [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]
        try:
            return merkle.Frontier(int(size), hashes)
        except ValueError as exc:
            raise TwinError(f"the replica's tree state is damaged: {exc}") from exc

    def leaf_count(self) -> int:
        row = self.conn.execute("SELECT count(*), coalesce(max(idx) + 1, 0) FROM leaves").fetchone()
        return int(row[0]) if row[0] == row[1] else -1  # -1: a gap, the replica is damaged

    def append(self, frontier: merkle.Frontier, leaves: list[bytes]) -> None:
        """Store `leaves` after the current ones and advance `frontier` (inside a transaction)."""
        start = frontier.size
        frontier.append([merkle.leaf_hash(data) for data in leaves])
        self.conn.executemany(
            "INSERT INTO leaves (idx, data) VALUES (?, ?)",
            [(start + i, data) for i, data in enumerate(leaves)],
        )
        self.conn.execute(
            "UPDATE frontier SET size = ?, nodes = ? WHERE id = 1",
            (frontier.size, b"".join(frontier.nodes)),
        )

    def trusted(self) -> Trusted | None:
        row = self.conn.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else Trusted(int(row[0]), bytes(row[1]), str(row[2]))

    def trust(self, checkpoint: Trusted) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO checkpoints (size, root, note, trusted_at) VALUES (?, ?, ?, ?)",
            (checkpoint.size, checkpoint.root, checkpoint.note, time.time_ns()),
        )

    def iter_leaves(self, chunk: int = 10_000) -> Iterator[tuple[int, bytes]]:
        """Every stored entry in index order, read a chunk at a time."""
        start = 0
        while True:
            rows = self.conn.execute(
                "SELECT idx, data FROM leaves WHERE idx >= ? ORDER BY idx LIMIT ?", (start, chunk)
            ).fetchall()
            if not rows:
                return
            for idx, data in rows:
                yield int(idx), bytes(data)
            start = int(rows[-1][0]) + 1


def write_checkpoint_file(directory: Path, text: str) -> None:
    """Replace DIR/checkpoint atomically (write, fsync, rename)."""
    path = directory / CHECKPOINT_FILE
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
