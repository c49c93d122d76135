"""The audit log's storage on SQLite and PostgreSQL: batched appends, proofs from stored nodes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from cityshare.bootstrap import Platform
from cityshare.tlog import merkle
from cityshare.tlog import repo as log_repo
from cityshare.tlog.repo import (
    FIRST_NODE_LEVEL,
    LEVEL_SHIFT,
    LogRepository,
    is_stored_level,
    node_key,
    stored_level,
)


def append(platform: Platform, entries: list[bytes]) -> tuple[int, int]:
    with platform.engine.begin() as conn:
        return LogRepository(conn).append(entries)


def reference(entries: list[bytes]) -> merkle.MemoryTree:
    tree = merkle.MemoryTree()
    for e in entries:
        tree.append(merkle.leaf_hash(e))
    return tree


def test_batched_appends_give_the_rfc_6962_tree_and_verifiable_proofs(platform: Platform) -> None:
    entries: list[bytes] = []
    for batch_size in (1, 2, 5, 8, 13, 1, 34):
        batch = [f"record {len(entries) + i}".encode() for i in range(batch_size)]
        first, size = append(platform, batch)
        assert first == len(entries)
        entries += batch
        assert size == len(entries)
    tree = reference(entries)
    n = len(entries)
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        assert log.size() == n
        for size in range(1, n + 1):
            assert log.root(size) == tree.root(size)
        for index in range(0, n, 7):
            proof = log.inclusion_proof(index, n)
            merkle.verify_inclusion(index, n, merkle.leaf_hash(entries[index]), proof, tree.root())
        for size1 in range(1, n + 1, 5):
            proof = log.consistency_proof(size1, n)
            merkle.verify_consistency(size1, n, tree.root(size1), tree.root(), proof)
        assert log.entries(3, 6) == [(i, entries[i]) for i in range(3, 6)]


def test_an_append_rolled_back_with_its_transaction_leaves_no_trace(platform: Platform) -> None:
    append(platform, [b"kept"])
    conn = platform.engine.connect()
    transaction = conn.begin()
    LogRepository(conn).append([b"lost 1", b"lost 2"])
    transaction.rollback()  # the records failed, so their leaves go too
    conn.close()
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        assert log.size() == 1
        assert log.root(1) == merkle.leaf_hash(b"kept")
        assert conn.execute(text("SELECT count(*) FROM log_nodes")).scalar() == 0


# -- what is stored: leaves, and perfect subtrees of the stored levels only ------------------


def stored_nodes(platform: Platform) -> dict[tuple[int, int], bytes]:
    mask = (1 << LEVEL_SHIFT) - 1
    with platform.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, hash FROM log_nodes")).all()
    return {(key >> LEVEL_SHIFT, key & mask): bytes(h) for key, h in rows}


def test_the_stored_levels_rule() -> None:
    assert stored_level(0) == 0
    for level in range(1, 64):
        assert stored_level(level) <= level
        assert is_stored_level(stored_level(level))
        assert is_stored_level(level) == (stored_level(level) == level)
    assert is_stored_level(FIRST_NODE_LEVEL)
    assert not any(is_stored_level(level) for level in range(1, FIRST_NODE_LEVEL))


def test_every_size_up_to_300_has_the_right_root_and_verifiable_proofs(
    platform: Platform,
) -> None:
    """Batches of odd sizes cross every block boundary of the levels that are not stored."""
    entries: list[bytes] = []
    sizes = [1, 2, 3, 1, 7, 9, 16, 17, 31, 33, 1, 64, 5, 100, 10]
    assert sum(sizes) == 300
    for batch_size in sizes:
        batch = [f"leaf {len(entries) + i}".encode() * (1 + i % 3) for i in range(batch_size)]
        assert append(platform, batch) == (len(entries), len(entries) + batch_size)
        entries += batch
    tree = reference(entries)
    rng = random.Random(6962)
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        for size in range(1, 301):
            root = tree.root(size)
            assert log.root(size) == root
            for index in {0, size - 1, size // 2, rng.randrange(size)}:
                proof = log.inclusion_proof(index, size)
                assert proof == merkle.inclusion_proof(tree, index, size)
                merkle.verify_inclusion(index, size, tree.levels[0][index], proof, root)
            for size1 in {1, size, (size + 1) // 2, rng.randint(1, size)}:
                proof = log.consistency_proof(size1, size)
                assert proof == merkle.consistency_proof(tree, size1, size)
                merkle.verify_consistency(size1, size, tree.root(size1), root, proof)


def test_only_complete_subtrees_of_the_stored_levels_are_kept(platform: Platform) -> None:
    entries = [f"e{i}".encode() for i in range(300)]
    for start in range(0, 300, 37):
        append(platform, entries[start : start + 37])
    tree = reference(entries)
    expected = {
        (level, index): tree.perfect(level, index)
        for level in range(1, len(tree.levels))
        if is_stored_level(level)
        for index in range(len(tree.levels[level]))
    }
    assert expected  # 300 leaves reach level 8
    assert stored_nodes(platform) == expected
    with platform.engine.connect() as conn:
        leaves = conn.execute(text("SELECT idx, hash FROM log_leaves ORDER BY idx")).all()
    assert [(i, bytes(h)) for i, h in leaves] == list(enumerate(tree.levels[0]))


def test_fetch_perfect_rebuilds_the_levels_it_does_not_store(platform: Platform) -> None:
    entries = [f"e{i}".encode() for i in range(100)]
    append(platform, entries)
    tree = reference(entries)
    wanted = {(level, index) for level in range(7) for index in range(100 >> level)}
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        assert log.fetch_perfect(wanted) == {key: tree.perfect(*key) for key in wanted}
        # Subtrees the log does not have yet (incomplete, or beyond its size) are left out.
        assert log.fetch_perfect([(2, 25), (3, 12), (0, 100), (7, 0)]) == {}


def test_a_log_that_stored_every_level_reads_the_same(platform: Platform) -> None:
    """Databases written when every level was stored: the extra rows are simply not read."""
    entries = [f"e{i}".encode() for i in range(70)]
    append(platform, entries)
    tree = reference(entries)
    with platform.engine.begin() as conn:
        for level in range(1, len(tree.levels)):
            if not is_stored_level(level):
                for index, h in enumerate(tree.levels[level]):
                    conn.execute(
                        text("INSERT INTO log_nodes (id, hash) VALUES (:id, :h)"),
                        {"id": node_key(level, index), "h": h},
                    )
    append(platform, [b"one more"])
    entries.append(b"one more")
    tree = reference(entries)
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        for size in (1, 8, 15, 16, 17, 70, 71):
            assert log.root(size) == tree.root(size)
        assert log.inclusion_proof(13, 71) == merkle.inclusion_proof(tree, 13, 71)


def test_entries_of_any_length_round_trip_and_bulk_inserts_split(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal and mixed lengths, empty entries, and batches split into several statements."""
    monkeypatch.setattr(log_repo, "_SQLITE_LEAF_CHUNK", 5)
    monkeypatch.setattr(log_repo, "_SQLITE_MAX_CHUNK_BYTES", 40)
    batches = [
        [b""],
        [b"", b""],
        [bytes([i]) * 105 for i in range(12)],  # all one length
        [b"x" * (i * 7 % 50) for i in range(23)],  # mixed, with empties
        [b"\x00" * 300, b"", b"\xff"],  # one entry bigger than a chunk's byte budget
    ]
    entries: list[bytes] = []
    for batch in batches:
        append(platform, batch)
        entries += batch
    tree = reference(entries)
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        assert log.entries(0, len(entries)) == list(enumerate(entries))
        assert log.root(len(entries)) == tree.root()
        stored = conn.execute(text("SELECT hash FROM log_leaves ORDER BY idx")).scalars().all()
    assert [bytes(h) for h in stored] == tree.levels[0]


@given(st.integers(0, 300), st.lists(st.integers(0, 70), max_size=6))
def test_a_frontier_appends_whole_levels_like_leaf_by_leaf(start: int, batches: list[int]) -> None:
    """`Frontier.append_levels`, which appends use, creates what `Frontier.append` creates."""
    tree = reference([f"e{i}".encode() for i in range(start)])
    by_level = merkle.Frontier.of(tree, start)
    by_leaf = merkle.Frontier.of(tree, start)
    for n in batches:
        leaves = merkle.leaf_hashes(f"more {by_leaf.size + i}".encode() for i in range(n))
        created = by_leaf.append(leaves)
        levels = by_level.append_levels(leaves)
        flat = [
            (level, first + i, h)
            for level, (first, hashes) in enumerate(levels)
            for i, h in enumerate(hashes)
        ]
        assert sorted(flat) == sorted(created)
        assert (by_level.size, by_level.nodes) == (by_leaf.size, by_leaf.nodes)
        assert by_level.root() == by_leaf.root()


def test_proofs_planned_from_ranges_are_the_rfc_6962_proofs() -> None:
    """The repository plans its reads from `inclusion_ranges` / `consistency_ranges` and
    `range_subtrees`; hashed, those ranges are exactly `inclusion_proof` / `consistency_proof`."""
    tree = reference([f"e{i}".encode() for i in range(70)])
    for size in range(1, 71):
        for index in range(size):
            ranges = merkle.inclusion_ranges(index, size)
            expected = merkle.inclusion_proof(tree, index, size)
            assert [merkle.range_hash(tree, lo, hi) for lo, hi in ranges] == expected
        for size1 in range(1, size + 1):
            ranges = merkle.consistency_ranges(size1, size)
            expected = merkle.consistency_proof(tree, size1, size)
            assert [merkle.range_hash(tree, lo, hi) for lo, hi in ranges] == expected
        for lo in range(size):
            subtrees = merkle.range_subtrees(lo, size)
            assert sum(1 << level for level, _ in subtrees) == size - lo
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_ranges(0, 5)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_ranges(6, 5)


def test_a_proof_that_needs_a_missing_row_fails_loudly(platform: Platform) -> None:
    append(platform, [f"e{i}".encode() for i in range(40)])
    with platform.engine.begin() as conn:
        conn.execute(text("DELETE FROM log_nodes WHERE id = :id"), {"id": node_key(4, 1)})
        conn.execute(text("DELETE FROM log_leaves WHERE idx = 37"))
    tree = reference([f"e{i}".encode() for i in range(40)])
    with platform.engine.connect() as conn:
        log = LogRepository(conn)
        with pytest.raises(RuntimeError, match="missing 1 tree nodes"):
            log.inclusion_proof(0, 32)  # its path needs the level-4 node of leaves 16..31
        with pytest.raises(RuntimeError, match="missing 1 tree nodes"):
            log.root(40)  # needs level 3 of leaves 32..39, rebuilt from the leaves
        assert log.root(32) == tree.root(32)  # the level-5 node is still there
        assert log.inclusion_proof(20, 24) == merkle.inclusion_proof(tree, 20, 24)
