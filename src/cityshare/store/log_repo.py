"""Audit log storage: leaves, perfect subtree nodes and the head, appended in bulk.

An append runs inside the caller's transaction (the same one as the records it logs), so a
record and its leaf commit together or not at all. Proofs fetch every node they need in one
query: the proof is first planned against a recording source, then computed from the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, select

from cityshare.store.driver import DriverRepository
from cityshare.store.tables import log_checkpoints, log_cosignatures
from cityshare.trust import merkle

LEVEL_SHIFT = 48
T = TypeVar("T")


def node_key(level: int, index: int) -> int:
    return (level << LEVEL_SHIFT) | index


class _Recorder:
    """A SubtreeSource that notes which perfect subtrees a computation asks for."""

    def __init__(self) -> None:
        self.wanted: set[tuple[int, int]] = set()

    def perfect(self, level: int, index: int) -> bytes:
        self.wanted.add((level, index))
        return bytes(merkle.HASH_SIZE)


class _Fetched:
    def __init__(self, nodes: dict[tuple[int, int], bytes]) -> None:
        self.nodes = nodes

    def perfect(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    #: The signed note as the log signed it (cosignatures are kept apart and added on reads).
    note: str
    timestamp: int


class LogRepository(DriverRepository):
    """Appends to and reads the audit log inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        #: The tree's right edge after this transaction's appends (None if it appended nothing).
        self.appended: merkle.Frontier | None = None

    def size(self) -> int:
        return self._single_value(
            "SELECT size FROM log_head WHERE id = 1", "the log head row is missing"
        )

    def fetch_perfect(self, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Hashes of the perfect subtrees named by (level, index), in at most two queries."""
        leaves = [index for level, index in wanted if level == 0]
        nodes = [node_key(level, index) for level, index in wanted if level > 0]
        found: dict[tuple[int, int], bytes] = {}
        for idx, h in self._fetch_by_ids(
            f"SELECT idx, hash FROM log_leaves WHERE {self._in_ids('idx')}", leaves
        ):
            found[(0, idx)] = bytes(h)
        mask = (1 << LEVEL_SHIFT) - 1
        for key, h in self._fetch_by_ids(
            f"SELECT id, hash FROM log_nodes WHERE {self._in_ids('id')}", nodes
        ):
            found[(key >> LEVEL_SHIFT, key & mask)] = bytes(h)
        return found

    def computed(self, compute: Callable[[merkle.SubtreeSource], T]) -> T:
        """Run `compute` (a proof or root) against the stored tree with one round of reads."""
        recorder = _Recorder()
        compute(recorder)
        nodes = self.fetch_perfect(recorder.wanted)
        missing = recorder.wanted - nodes.keys()
        if missing:
            raise RuntimeError(f"the audit log is missing {len(missing)} tree nodes")
        return compute(_Fetched(nodes))

    def append(self, entries: Sequence[bytes]) -> tuple[int, int]:
        """Append leaves (already-encoded entries); return (index of the first, new size).

        The caller holds the ledger's write lock, so appends are serialised.
        """
        size = self.size()
        if not entries:
            return size, size
        frontier = self.computed(lambda source: merkle.Frontier.of(source, size))
        hashes = [merkle.leaf_hash(e) for e in entries]
        created = frontier.append(hashes)
        self.appended = frontier
        cur = self._cursor()
        try:
            cur.executemany(
                self._sql("INSERT INTO log_leaves (idx, hash, data) VALUES (?, ?, ?)"),
                [(size + i, h, e) for i, (h, e) in enumerate(zip(hashes, entries, strict=True))],
            )
            cur.executemany(
                self._sql("INSERT INTO log_nodes (id, hash) VALUES (?, ?)"),
                [(node_key(level, index), h) for level, index, h in created if level > 0],
            )
            cur.execute(self._sql("UPDATE log_head SET size = ? WHERE id = 1"), (frontier.size,))
        finally:
            cur.close()
        return size, frontier.size

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return self.computed(lambda source: merkle.root(source, size))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.computed(lambda source: merkle.inclusion_proof(source, index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.computed(lambda source: merkle.consistency_proof(source, size1, size2))

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        cur = self._cursor()
        try:
            cur.execute(
                self._sql(
                    "SELECT idx, data FROM log_leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
                ),
                (start, end),
            )
            return [(int(i), bytes(d)) for i, d in cur.fetchall()]
        finally:
            cur.close()

    # -- checkpoints and cosignatures ------------------------------------------------------

    def insert_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.conn.execute(
            log_checkpoints.insert().values(
                size=checkpoint.size,
                root=checkpoint.root,
                note=checkpoint.note,
                timestamp=checkpoint.timestamp,
            )
        )

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.conn.execute(
            select(log_checkpoints).order_by(log_checkpoints.c.size.desc()).limit(1)
        ).first()
        return None if row is None else _checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        row = self.conn.execute(
            select(log_checkpoints).where(log_checkpoints.c.size == size)
        ).first()
        return None if row is None else _checkpoint(row)

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self.conn.execute(select(log_checkpoints).order_by(log_checkpoints.c.size))
        return [_checkpoint(r) for r in rows]

    def cosignatures(self, size: int) -> list[str]:
        """Signature lines witnesses added to the checkpoint of `size`, ordered by witness name."""
        rows = self.conn.execute(
            select(log_cosignatures.c.line)
            .where(log_cosignatures.c.size == size)
            .order_by(log_cosignatures.c.witness)
        )
        return [row.line for row in rows]

    def save_cosignature(self, size: int, witness: str, line: str, timestamp: int) -> None:
        """Keep a witness's newest cosignature of the checkpoint of `size` (one per witness)."""
        self.conn.execute(
            log_cosignatures.delete().where(
                (log_cosignatures.c.size == size) & (log_cosignatures.c.witness == witness)
            )
        )
        self.conn.execute(
            log_cosignatures.insert().values(
                size=size, witness=witness, line=line, timestamp=timestamp
            )
        )


def _checkpoint(row: Row[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(row.size, bytes(row.root), row.note, row.timestamp)
