"""RFC 6962 / RFC 9162 Merkle trees: transparency-dev's golden vectors, and our own proofs."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityshare.tlog.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "rfc6962"


def vectors(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS))) for f in files]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def require_vectors() -> None:
    if not VECTORS.is_dir():
        pytest.skip(f"the shared test data is absent: {VECTORS}")


@pytest.mark.parametrize("v", vectors("inclusion") or [None])
def test_inclusion_vectors(v: dict[str, Any] | None) -> None:
    require_vectors()
    assert v is not None
    proof = [b64(p) for p in v["proof"] or []]
    args = (v["leafIdx"], v["treeSize"], b64(v["leafHash"]), proof, b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("v", vectors("consistency") or [None])
def test_consistency_vectors(v: dict[str, Any] | None) -> None:
    require_vectors()
    assert v is not None
    proof = [b64(p) for p in v["proof"] or []]
    args = (v["size1"], v["size2"], b64(v["root1"]), b64(v["root2"]), proof)
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_the_vector_set_is_all_there() -> None:
    require_vectors()
    assert len(vectors("inclusion")) + len(vectors("consistency")) == 196


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def tree_of(n: int) -> tuple[MemoryTree, list[bytes]]:
    data = [f"entry {i}".encode() for i in range(n)]
    tree = MemoryTree()
    for d in data:
        tree.append(leaf_hash(d))
    return tree, data


def test_the_empty_tree_has_the_hash_of_nothing_as_root() -> None:
    assert MemoryTree().root() == EMPTY_ROOT


@given(st.integers(1, 300))
def test_roots_match_the_rfc_definition_at_every_size(n: int) -> None:
    tree, data = tree_of(n)
    assert tree.root() == reference_root(data)
    assert tree.root(n // 2 or 1) == reference_root(data[: n // 2 or 1])


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(case: tuple[int, int]) -> None:
    n, i = case
    tree, data = tree_of(n)
    proof = inclusion_proof(tree, i, n)
    assert len(proof) <= n.bit_length()
    verify_inclusion(i, n, leaf_hash(data[i]), proof, tree.root())
    with pytest.raises(ProofError):
        verify_inclusion(i, n, leaf_hash(b"forged"), proof, tree.root())


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(
    case: tuple[int, int],
) -> None:
    m, n = case
    tree, data = tree_of(n)
    proof = consistency_proof(tree, m, n)
    verify_consistency(m, n, tree.root(m), tree.root(), proof)
    forged, _ = tree_of(0)
    for i, d in enumerate(data):
        forged.append(leaf_hash(b"rewritten" if i == 0 else d))
    if m < n:
        with pytest.raises(ProofError):
            verify_consistency(m, n, tree.root(m), forged.root(), consistency_proof(forged, m, n))


@given(st.integers(0, 200), st.lists(st.integers(1, 40), max_size=6))
def test_a_frontier_appends_batches_like_the_whole_tree(start: int, batches: list[int]) -> None:
    tree, _ = tree_of(start)
    frontier = Frontier.of(tree, start)
    assert frontier.root() == tree.root()
    for n in batches:
        leaves = [leaf_hash(f"more {tree.size + i}".encode()) for i in range(n)]
        created = frontier.append(leaves)
        for leaf in leaves:
            tree.append(leaf)
        assert frontier.root() == tree.root()
        for level, index, h in created:
            assert tree.perfect(level, index) == h
        assert sum(1 for level, _, _ in created if level == 0) == n
