"""Merkle trees as in RFC 6962 / RFC 9162 (Certificate Transparency): hashes, proofs, checks.

leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right). Proofs are built
from a :class:`SubtreeSource`, which answers the hash of any *perfect* subtree (2^level leaves
starting at a multiple of 2^level). A store that keeps those nodes, as the audit log does, then
answers any proof with O(log n) lookups; :class:`MemoryTree` is the in-memory one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof, a root or a size that does not check out."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """`leaf_hash` of each entry, in one tight loop (the audit log hashes batches of 10^4)."""
    sha256 = hashlib.sha256
    return [sha256(b"\x00" + e).digest() for e in entries]


def parent_hashes(hashes: Sequence[bytes]) -> list[bytes]:
    """`node_hash` of each pair (hashes[0], hashes[1]), (hashes[2], hashes[3]), …

    The level above a run of sibling subtrees; an odd last hash has no parent yet and is left.
    """
    sha256 = hashlib.sha256
    pairs = iter(hashes)
    return [
        sha256(b"\x01" + left + right).digest()
        for left, right in zip(pairs, pairs, strict=False)  # an odd last hash waits
    ]


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of the perfect subtree whose 2^k consecutive, aligned children are `hashes`."""
    if not hashes or len(hashes) & (len(hashes) - 1):
        raise ValueError("a perfect subtree has a power-of-two number of children")
    level = list(hashes)
    while len(level) > 1:
        level = parent_hashes(level)
    return level[0]


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class SubtreeSource(Protocol):
    def perfect(self, level: int, index: int) -> bytes:
        """Hash of leaves [index * 2^level, (index + 1) * 2^level)."""
        ...


def range_hash(source: SubtreeSource, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for a range that starts on a boundary RFC 6962's recursion produces."""
    n = hi - lo
    if n <= 0:
        raise ValueError("empty range")
    if n & (n - 1) == 0 and lo % n == 0:
        return source.perfect(n.bit_length() - 1, lo // n)
    k = _split(n)
    return node_hash(range_hash(source, lo, lo + k), range_hash(source, lo + k, hi))


def root(source: SubtreeSource, size: int) -> bytes:
    return EMPTY_ROOT if size == 0 else range_hash(source, 0, size)


def inclusion_proof(source: SubtreeSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(range_hash(source, lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(source, lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(source: SubtreeSource, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 6962 §2.1.2."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(range_hash(source, lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(source, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(range_hash(source, lo, hi))
    proof.reverse()
    return proof


def range_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect subtrees, as (level, index), that `range_hash(source, lo, hi)` reads."""
    out: list[tuple[int, int]] = []
    todo = [(lo, hi)]
    while todo:
        lo, hi = todo.pop()
        n = hi - lo
        if n <= 0:
            raise ValueError("empty range")
        if n & (n - 1) == 0 and lo % n == 0:
            out.append((n.bit_length() - 1, lo // n))
        else:
            k = _split(n)
            todo += ((lo + k, hi), (lo, lo + k))  # the left half is taken first
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose `range_hash`es, in this order, are PATH(index, D[0:size]).

    `inclusion_proof` without a source: a store plans its reads from these (with
    `range_subtrees`) and then hashes each range, in one round of reads.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m = lo + k, m - k
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose `range_hash`es, in this order, are PROOF(size1, D[0:size2])."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _check_hashes(proof: Sequence[bytes]) -> None:
    for h in proof:
        if len(h) != HASH_SIZE:
            raise ProofError("a proof hash is not 32 bytes")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check that `leaf` (a leaf hash) is at `index` of the tree of `size` with that root.

    RFC 9162 §2.1.3.2. Raises :class:`ProofError` when it is not.
    """
    if len(leaf) != HASH_SIZE:
        raise ProofError("the leaf hash is not 32 bytes")
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short")
    if r != expected_root:
        raise ProofError("the proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `size2` with `root2` extends the tree of `size1` with `root1`.

    RFC 9162 §2.1.4.2. A proof from the empty tree proves nothing and is refused.
    """
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size2 < size1:
        raise ProofError(f"size {size2} is smaller than size {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if root1 != root2:
            raise ProofError("trees of equal size have different roots")
        return
    if not proof:
        raise ProofError("the proof is empty")
    _check_hashes(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short")
    if fr != root1:
        raise ProofError("the proof does not lead to the first root")
    if sr != root2:
        raise ProofError("the proof does not lead to the second root")


class MemoryTree:
    """An append-only tree in memory that keeps every perfect subtree's hash."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]
        self._frontier = Frontier()

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf *hash*; return its index."""
        for level, _, h in self._frontier.append([leaf]):
            if len(self.levels) == level:
                self.levels.append([])
            self.levels[level].append(h)
        return self.size - 1

    def perfect(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root(self, self.size if size is None else size)


class Frontier:
    """The right edge of a tree: one perfect subtree hash per set bit of its size.

    Enough to append leaves and compute the root without reading the rest of the tree, which
    is how the audit log appends a commit batch: load the frontier, append, store new nodes.
    """

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != size.bit_count():
            raise ValueError("a frontier has one node per set bit of the size")
        self.size = size
        #: Hashes of the perfect subtrees, largest (leftmost) first.
        self.nodes = list(nodes)

    @classmethod
    def of(cls, source: SubtreeSource, size: int) -> Frontier:
        nodes, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                nodes.append(source.perfect(level, start >> level))
                start += 1 << level
        return cls(size, nodes)

    def append(self, leaves: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Add leaf hashes; return every new perfect subtree as (level, index, hash)."""
        created: list[tuple[int, int, bytes]] = []
        nodes = self.nodes
        size = self.size
        for leaf in leaves:
            h, level, index = leaf, 0, size
            created.append((0, index, h))
            while index & 1:
                h = node_hash(nodes.pop(), h)
                level, index = level + 1, index >> 1
                created.append((level, index, h))
            nodes.append(h)
            size += 1
        self.size = size
        return created

    def append_levels(self, leaves: Sequence[bytes]) -> list[tuple[int, list[bytes]]]:
        """Add leaf hashes a whole level at a time; return the new perfect subtrees by level.

        Element `level` of the result is (index of the first new subtree of that level, their
        hashes in index order); level 0 is the leaves. The same subtrees as :meth:`append`
        creates, computed with one tight loop per level instead of a Python loop per leaf.
        """
        size = self.size
        new_size = size + len(leaves)
        set_bits = [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]
        old = dict(zip(set_bits, self.nodes, strict=True))
        levels: list[tuple[int, list[bytes]]] = []
        current = list(leaves)
        level = 0
        while current:
            first = size >> level
            levels.append((first, current))
            # A new subtree with an odd index pairs with the old right edge of its level.
            current = parent_hashes([old[level], *current] if first & 1 else current)
            level += 1
        self.nodes = [
            levels[level][1][-1] if level < len(levels) else old[level]
            for level in range(new_size.bit_length() - 1, -1, -1)
            if new_size >> level & 1
        ]
        self.size = new_size
        return levels

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        h = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            h = node_hash(left, h)
        return h
