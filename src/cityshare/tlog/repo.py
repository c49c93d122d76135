"""Audit log storage: leaves, perfect subtree nodes and the head, appended in bulk.

An append runs inside the caller's transaction (the same one as the records it logs), so a
record and its leaf commit together or not at all: it hashes the batch a level at a time
(`merkle.Frontier.append_levels`) and writes leaves and nodes with one bulk statement each
(SQLite) or binary COPY (PostgreSQL). Roots and proofs read every hash they need in one query:
the leaf ranges a proof hashes are planned first (`merkle.inclusion_ranges`,
`range_subtrees`), then hashed from the rows; `computed` does the same for any computation
over a `SubtreeSource`, planned by a recorded first pass.

What is stored (the rule `cityshare audit verify` and any other reader relies on):

- `log_leaves` holds every leaf: its index, its leaf hash (level 0) and the entry bytes.
- `log_nodes` holds the perfect subtree (level, index), 2^level leaves from index * 2^level,
  under the id `(level << 48) | index`, for **every level from `FIRST_NODE_LEVEL` (4) up**,
  and only once the subtree is complete. Levels 1 to 3 are never stored: a subtree of such a
  level is rebuilt from its 2, 4 or 8 leaf hashes (`stored_level`), so an inclusion proof
  reads one run of at most 15 neighbouring leaves (one range scan) and hashes at most 11
  nodes more.
  Databases written when every level was stored stay valid: readers only ask for the
  levels this rule names, and `audit verify` checks every node that is there, whatever its
  level. A rule that reads a level older databases did not store would need a migration.
- `log_head.size` is the number of leaves.

Why: levels 1 to 3 hold 7/8 of all the nodes (a tree of n leaves has n - 1), so leaving them
out writes about n/8 node rows instead of n - 1, which was most of an append's cost besides
the leaves themselves. Measured (BENCHMARKS.md) against keeping only levels 4, 8, 12, …:
that writes n/15 rows and appended ~5% faster, but a proof then rebuilds up to 11 hashes per
group of four levels and took ~40% longer (0.22 against 0.16 ms at 1M leaves).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, select

from cityshare.kernel.driver import DriverRepository, copy_binary
from cityshare.tlog import merkle
from cityshare.tlog.tables import log_checkpoints, log_cosignatures

LEVEL_SHIFT = 48
#: `log_nodes` keeps the complete subtrees of this level and every level above it.
FIRST_NODE_LEVEL = 4
T = TypeVar("T")

#: Leaves per bulk INSERT statement on SQLite (and the bytes its entries may take at most).
_SQLITE_LEAF_CHUNK = 32_768
_SQLITE_MAX_CHUNK_BYTES = 1 << 28

#: SQLite: insert a chunk of leaves from three parameters (first index, the leaf hashes end to
#: end, the entries end to end) and a JSON list of `offset << 32 | length` per entry. One
#: statement instead of an executemany: the rows are built inside SQLite, about twice as fast.
#: (substr of an empty blob is NULL, hence the coalesce for empty entries.)
_SQLITE_INSERT_LEAVES = (
    "INSERT INTO log_leaves (idx, hash, data) "
    "SELECT ?1 + key, substr(?2, key * 32 + 1, 32), "
    "coalesce(substr(?3, (value >> 32) + 1, value & 4294967295), x'') FROM json_each(?4)"
)
#: The same when every entry has one length (?5; a batch of transfers): ?4 of them, no JSON.
_SQLITE_INSERT_EQUAL_LEAVES = (
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?4) "
    "INSERT INTO log_leaves (idx, hash, data) "
    "SELECT ?1 + i, substr(?2, i * 32 + 1, 32), coalesce(substr(?3, i * ?5 + 1, ?5), x'') FROM k"
)
#: SQLite: insert one level's new nodes from (first key, their hashes end to end, how many).
_SQLITE_INSERT_NODES = (
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?3) "
    "INSERT INTO log_nodes (id, hash) SELECT ?1 + i, substr(?2, i * 32 + 1, 32) FROM k"
)


#: Reading stored hashes: one range scan per run of keys (see `_stored_hashes`).
_LEAF_RANGE = "SELECT idx, hash FROM log_leaves WHERE idx BETWEEN ? AND ?"
_NODE_RANGE = "SELECT id, hash FROM log_nodes WHERE id BETWEEN ? AND ?"
_FIRST_NODE_KEY = 1 << LEVEL_SHIFT
#: Runs of keys this close are read as one range (a few extra rows cost less than a query).
_MERGE_GAP = 4
#: Range scans per statement (SQLite allows at most 500 terms in a compound SELECT).
_RANGES_PER_QUERY = 100
#: PostgreSQL: every key in two arrays, one statement text (see `_stored_hashes`).
_PG_STORED_HASHES = (
    "SELECT idx, hash FROM log_leaves WHERE idx = ANY(%s::bigint[]) "
    "UNION ALL SELECT id, hash FROM log_nodes WHERE id = ANY(%s::bigint[])"
)


def node_key(level: int, index: int) -> int:
    return (level << LEVEL_SHIFT) | index


def stored_level(level: int) -> int:
    """The level a perfect subtree of `level` is stored at or rebuilt from (0: the leaves)."""
    return level if level >= FIRST_NODE_LEVEL else 0


def is_stored_level(level: int) -> bool:
    """Whether perfect subtrees of `level` are rows (of `log_leaves` for level 0)."""
    return stored_level(level) == level


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
        """Hashes of the perfect subtrees named by (level, index), in one query (SQLite: one
        per 100 runs of keys, far more than a proof needs).

        A subtree of a level that is not stored is rebuilt from its stored descendants; one
        whose rows are missing is left out of the answer.
        """
        # Every stored hash has one key: node_key(level, index), which for a leaf (level 0) is
        # its index. A subtree of a stored level is one key; one of a level below
        # FIRST_NODE_LEVEL is rebuilt from its 2^level leaves (`stored_level`, inlined).
        plan: list[tuple[tuple[int, int], int, int]] = []
        ranges: list[tuple[int, int]] = []
        for subtree in wanted:
            level, index = subtree
            if level >= FIRST_NODE_LEVEL or level == 0:
                key = level << LEVEL_SHIFT | index
                plan.append((subtree, key, 1))
                ranges.append((key, key))
            else:
                first, span = index << level, 1 << level
                plan.append((subtree, first, span))
                ranges.append((first, first + span - 1))
        rows = self._stored_hashes(ranges)
        found: dict[tuple[int, int], bytes] = {}
        for subtree, first, span in plan:
            if span == 1:
                h = rows.get(first)
                if h is not None:
                    found[subtree] = h
                continue
            try:
                children = [rows[key] for key in range(first, first + span)]
            except KeyError:
                continue
            while len(children) > 1:
                children = merkle.parent_hashes(children)
            found[subtree] = children[0]
        return found

    def _stored_hashes(self, ranges: list[tuple[int, int]]) -> dict[int, bytes]:
        """Stored hashes by key (a leaf's index, a node's id) for inclusive key ranges."""
        if not ranges:
            return {}
        cur = self._cursor()
        try:
            if self.sqlite:
                return self._stored_hashes_sqlite(cur, ranges)
            # PostgreSQL: one statement whose text never changes, so psycopg prepares it once
            # per connection; a compound of range scans was planned anew each time (~0.3 ms).
            leaves: list[int] = []
            nodes: list[int] = []
            for lo, hi in ranges:
                (leaves if lo < _FIRST_NODE_KEY else nodes).extend(range(lo, hi + 1))
            cur.execute(_PG_STORED_HASHES, (leaves, nodes))
            return dict(cur.fetchall())  # psycopg returns bytea as bytes
        finally:
            cur.close()

    @staticmethod
    def _stored_hashes_sqlite(cur: Any, ranges: list[tuple[int, int]]) -> dict[int, bytes]:
        """Nearby ranges merged, each read as one range scan: the bottom of a proof's path
        needs 15 of the 16 leaves of one aligned block, which is then one run."""
        ranges.sort()
        merged = [list(ranges[0])]
        for lo, hi in ranges[1:]:
            last = merged[-1]
            if lo <= last[1] + 1 + _MERGE_GAP:
                last[1] = max(last[1], hi)
            else:
                merged.append([lo, hi])
        found: dict[int, bytes] = {}
        for start in range(0, len(merged), _RANGES_PER_QUERY):
            chunk = merged[start : start + _RANGES_PER_QUERY]
            sql = " UNION ALL ".join(
                _LEAF_RANGE if lo < _FIRST_NODE_KEY else _NODE_RANGE for lo, _ in chunk
            )
            cur.execute(sql, [bound for pair in chunk for bound in pair])
            found.update(cur.fetchall())  # sqlite3 returns BLOBs as bytes
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

        The caller holds the ledger's write lock, so appends are serialised. Writes the leaves
        and the new complete subtrees of the stored levels (see the module docstring).
        """
        size = self.size()
        if not entries:
            return size, size
        frontier = self.computed(lambda source: merkle.Frontier.of(source, size))
        hashes = merkle.leaf_hashes(entries)
        levels = frontier.append_levels(hashes)
        self.appended = frontier
        stored = [
            (node_key(level, levels[level][0]), levels[level][1])
            for level in range(FIRST_NODE_LEVEL, len(levels))
        ]
        cur = self._cursor()
        try:
            if self.sqlite:
                self._insert_leaves_sqlite(cur, size, hashes, entries)
                for first_key, level_hashes in stored:
                    cur.execute(
                        _SQLITE_INSERT_NODES, (first_key, b"".join(level_hashes), len(level_hashes))
                    )
            else:
                # Binary COPY, row by row: psycopg sends rows while Python makes the next ones
                # (measured faster than building the whole binary payload first).
                leaves = zip(range(size, frontier.size), hashes, entries, strict=True)
                copy_binary(
                    cur, "log_leaves (idx, hash, data)", ["int8", "bytea", "bytea"], leaves
                )
                if stored:
                    nodes = (
                        (first_key + i, h)
                        for first_key, level_hashes in stored
                        for i, h in enumerate(level_hashes)
                    )
                    copy_binary(cur, "log_nodes (id, hash)", ["int8", "bytea"], nodes)
            cur.execute(self._sql("UPDATE log_head SET size = ? WHERE id = 1"), (frontier.size,))
        finally:
            cur.close()
        return size, frontier.size

    @staticmethod
    def _insert_leaves_sqlite(
        cur: Any, first: int, hashes: Sequence[bytes], entries: Sequence[bytes]
    ) -> None:
        for start in range(0, len(entries), _SQLITE_LEAF_CHUNK):
            end = min(start + _SQLITE_LEAF_CHUNK, len(entries))
            _insert_leaf_chunk_sqlite(cur, first + start, hashes[start:end], entries[start:end])

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return self._range_hashes([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._range_hashes(merkle.inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self._range_hashes(merkle.consistency_ranges(size1, size2))

    def _range_hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """MTH of each leaf range, with one round of reads: what `computed` does for a root or
        a proof, but planned directly from the ranges instead of by a first, recorded pass."""
        wanted = [subtree for lo, hi in ranges for subtree in merkle.range_subtrees(lo, hi)]
        nodes = self.fetch_perfect(wanted)
        if len(nodes) < len(set(wanted)):
            missing = len(set(wanted) - nodes.keys())
            raise RuntimeError(f"the audit log is missing {missing} tree nodes")
        source = _Fetched(nodes)
        return [merkle.range_hash(source, lo, hi) for lo, hi in ranges]

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

    def save_cosignature(self, size: int, witness: str, line: str) -> None:
        """Keep a witness's newest cosignature of the checkpoint of `size` (one per witness)."""
        self.conn.execute(
            log_cosignatures.delete().where(
                (log_cosignatures.c.size == size) & (log_cosignatures.c.witness == witness)
            )
        )
        self.conn.execute(
            log_cosignatures.insert().values(size=size, witness=witness, line=line)
        )


def _insert_leaf_chunk_sqlite(
    cur: Any, first: int, hashes: Sequence[bytes], entries: Sequence[bytes]
) -> None:
    lengths = [len(e) for e in entries]
    if sum(lengths) > _SQLITE_MAX_CHUNK_BYTES and len(entries) > 1:
        half = len(entries) // 2
        _insert_leaf_chunk_sqlite(cur, first, hashes[:half], entries[:half])
        _insert_leaf_chunk_sqlite(cur, first + half, hashes[half:], entries[half:])
        return
    hash_bytes, data = b"".join(hashes), b"".join(entries)
    if lengths.count(lengths[0]) == len(lengths):
        cur.execute(
            _SQLITE_INSERT_EQUAL_LEAVES, (first, hash_bytes, data, len(lengths), lengths[0])
        )
        return
    offsets = accumulate(lengths, initial=0)  # one longer than lengths: the end is unused
    packed = json.dumps(
        [offset << 32 | length for offset, length in zip(offsets, lengths, strict=False)]
    )
    cur.execute(_SQLITE_INSERT_LEAVES, (first, hash_bytes, data, packed))


def _checkpoint(row: Row[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(row.size, bytes(row.root), row.note)
