"""The audit log's storage on SQLite and PostgreSQL: batched appends, proofs from stored nodes."""

from __future__ import annotations

from sqlalchemy import text

from cityshare.bootstrap import Platform
from cityshare.store.log_repo import LogRepository
from cityshare.trust import merkle


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
