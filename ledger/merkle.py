"""The RFC 9162 §2.1 Merkle tree of the usage trail: hashes, proofs and the right frontier.

Everything here is a pure function over hashes: no I/O, no clock. Proof *generation* takes a
:data:`RangeHasher` (``MTH`` of the leaves ``[start, end)``), so the trail can answer from
stored subtree hashes and tests can answer from a list. Every proof function also accepts a
plain list of leaf hashes.

Arguments are checked before anything is hashed. A bad argument (index beyond the tree, sizes
out of order, a hash that is not 32 bytes) raises :class:`~ledger.errors.InvalidInput`; a proof
of the wrong length raises :class:`~ledger.errors.ProofError`; a proof that hashes to another
root raises :class:`~ledger.errors.RootMismatch` carrying both roots.

An inclusion proof binds the tree size only through the root: check it against a root that
is itself bound to its size (a signed or anchored tree head), never against a bare root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeAlias

from ledger.errors import InvalidInput, ProofError, RootMismatch
from ledger.types import LeafHash, NodeHash, digests_equal

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "RangeHasher",
    "aligned_subtrees",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hasher",
    "root_from_inclusion_proof",
    "root_from_leaves",
    "root_from_subtrees",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every leaf, node and root hash (SHA-256)."""

RangeHasher: TypeAlias = Callable[[int, int], bytes]
"""MTH of the leaves [start, end); the trail supplies one backed by stored subtree hashes."""

_sha256 = hashlib.sha256
EMPTY_ROOT = NodeHash(_sha256(b"").digest())
"""MTH({}) = SHA-256() — the root of the empty tree (RFC 9162 §2.1.1)."""


def leaf_hash(data: bytes) -> LeafHash:
    """Hash one entry as a leaf: SHA-256(0x00 || data) (RFC 9162 §2.1.1)."""
    return LeafHash(_sha256(b"\x00" + data).digest())


def node_hash(left: bytes, right: bytes) -> NodeHash:
    """Hash two children: SHA-256(0x01 || left || right) (RFC 9162 §2.1.1).

    The raw primitive, unchecked so hot loops stay fast; the public proof functions check
    hash lengths at their boundary.
    """
    return NodeHash(_sha256(b"\x01" + left + right).digest())


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> NodeHash:
    """Return MTH over a list of leaf *hashes* (RFC 9162 §2.1.1).

    Built level by level: pairing neighbours and lifting an odd last node unchanged gives the
    same left-balanced tree as the RFC's recursive split, without recursion.
    """
    _check_hashes(leaf_hashes, "leaf hash")
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        level = _parents(level, carry=True)
    return NodeHash(bytes(level[0]))


def root_from_subtrees(hashes: Sequence[bytes]) -> NodeHash:
    """Return MTH of a range from the hashes of its :func:`aligned_subtrees`, left to right.

    Valid when the range starts on a boundary of a subtree at least as large as the range —
    every prefix ``[0, n)`` and every range the proof functions ask for. The subtrees then
    shrink left to right and the RFC 9162 §2.1.1 split folds them from the right.
    """
    _check_hashes(hashes, "subtree hash")
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return NodeHash(bytes(root))


def aligned_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into maximal complete aligned subtrees, left to right.

    Each ``(level, index)`` covers the leaves ``[index << level, (index + 1) << level)``.
    A range has at most ``2 * log2(end - start)`` of them.
    """
    if not 0 <= start <= end:
        raise InvalidInput(f"leaf range [{start}, {end}) is not a range of leaf indices")
    out: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1  # the largest that fits...
        if start:
            level = min(level, (start & -start).bit_length() - 1)  # ...and is aligned at start
        out.append((level, start >> level))
        start += 1 << level
    return out


def range_hasher(leaf_hashes: Sequence[bytes]) -> RangeHasher:
    """Return an in-memory :data:`RangeHasher` over a snapshot of ``leaf_hashes``.

    The first query hashes every complete aligned subtree once (O(n)); after that a query for
    any range a proof needs costs O(log n). Other ranges are still answered exactly.
    """
    _check_hashes(leaf_hashes, "leaf hash")
    levels: list[list[bytes]] = [list(leaf_hashes)]
    size = len(levels[0])

    def complete(level: int, index: int) -> bytes:
        if len(levels) == 1:  # warm up: every complete aligned subtree, level by level
            while len(levels[-1]) > 1:
                levels.append(_parents(levels[-1], carry=False))
        return levels[level][index]

    def mth(start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return levels[0][start] if level == 0 else complete(level, start >> level)
        mid = start + _split(n)  # RFC 9162 §2.1.1
        return node_hash(mth(start, mid), mth(mid, end))

    def hasher(start: int, end: int) -> bytes:
        if not 0 <= start <= end <= size:
            raise InvalidInput(f"leaf range [{start}, {end}) is outside the {size} leaves held")
        return EMPTY_ROOT if start == end else mth(start, end)

    return hasher


def inclusion_proof(index: int, size: int, subtree: RangeHasher | Sequence[bytes]) -> list[bytes]:
    """Return PATH(index, D[size]), the audit path of leaf ``index`` (RFC 9162 §2.1.3.1).

    ``subtree`` is a :data:`RangeHasher` or the list of leaf hashes (at least ``size`` long).
    The proof for a tree of one leaf is empty.
    """
    _check_index(index, size)
    hasher = _as_hasher(subtree, size)
    return [_ask(hasher, start, end) for start, end in _inclusion_ranges(index, size)]


def consistency_proof(
    old_size: int, new_size: int, subtree: RangeHasher | Sequence[bytes]
) -> list[bytes]:
    """Return PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1).

    ``subtree`` is a :data:`RangeHasher` or the list of leaf hashes (at least ``new_size``
    long). The proof is empty when the sizes are equal and, by this module's choice, when
    ``old_size`` is 0: the empty tree is a prefix of every tree.
    """
    _check_sizes(old_size, new_size)
    hasher = _as_hasher(subtree, new_size)
    return [_ask(hasher, start, end) for start, end in _consistency_ranges(old_size, new_size)]


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> NodeHash:
    """Return the root that ``proof`` gives for leaf hash ``leaf`` at ``index`` (§2.1.3.2).

    Raises ProofError when the proof has the wrong number of hashes for ``index`` and ``size``.
    """
    _check_index(index, size)
    _check_hash(leaf, "leaf hash")
    want = len(_inclusion_ranges(index, size))
    if len(proof) != want:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, want {want}"
            f" for index {index} in a tree of {size}"
        )
    _check_hashes(proof, "inclusion proof hash")
    # RFC 9162 §2.1.3.2. The length check above makes its "sn is 0" failure unreachable.
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return NodeHash(r)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash ``leaf`` is at ``index`` in the tree of ``size`` with ``root``.

    Follows RFC 9162 §2.1.3.2. Raises RootMismatch when the proof leads to another root.
    """
    _check_hash(root, "root")
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if not digests_equal(computed, root):
        raise RootMismatch(
            f"inclusion proof for index {index} in a tree of {size} does not lead to the root",
            expected=bytes(root),
            computed=computed,
            hint="the leaf, the proof or the root is not from this tree",
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of the new tree.

    Follows RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots; ``old_size``
    0 needs an empty proof and ``old_root`` equal to :data:`EMPTY_ROOT`.
    """
    _check_sizes(old_size, new_size)
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    want = len(_consistency_ranges(old_size, new_size))
    if len(proof) != want:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, want {want}"
            f" from size {old_size} to size {new_size}"
        )
    _check_hashes(proof, "consistency proof hash")
    if old_size == 0:
        _match(EMPTY_ROOT, old_root, "the old root is not the root of an empty tree")
    if old_size == new_size:
        _match(old_root, new_root, f"two trees of size {old_size} have different roots")
    if old_size in (0, new_size):
        return
    # RFC 9162 §2.1.4.2. The length check makes its "sn is 0" failures unreachable.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is a complete subtree of the new one
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    _match(old_root, fr, f"consistency proof from size {old_size} does not lead to the old root")
    _match(new_root, sr, f"consistency proof to size {new_size} does not lead to the new root")


class CompactRange:
    """The right frontier of a growing tree: append leaf hashes one at a time in O(log n) state.

    ``hashes`` are the roots of :func:`aligned_subtrees` ``(0, size)``, largest first; store
    them with ``size`` and pass both back to resume.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise InvalidInput(f"tree size is {size}, want 0 or more")
        want = size.bit_count()
        if len(hashes) != want:
            raise InvalidInput(
                f"frontier has {len(hashes)} hashes, want {want} for a tree of {size}"
            )
        _check_hashes(hashes, "frontier hash")
        self._size = size
        self._hashes: list[bytes] = [bytes(h) for h in hashes]

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> list[NodeHash]:
        """The frontier: roots of the complete subtrees covering ``[0, size)``, largest first."""
        return [NodeHash(h) for h in self._hashes]

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, NodeHash]]:
        """Append one leaf hash; return the ``(level, index, hash)`` of each new complete subtree.

        The first is the leaf itself at level 0, then every subtree it completes, lowest first,
        so a store can keep every node a :data:`RangeHasher` needs.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise InvalidInput(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
        h = bytes(leaf_hash)
        index, level, formed = self._size, 0, [(0, self._size, NodeHash(h))]
        while index & 1:  # each set low bit is a left sibling that is now complete
            h = _sha256(b"\x01" + self._hashes.pop() + h).digest()
            index, level = index >> 1, level + 1
            formed.append((level, index, NodeHash(h)))
        self._hashes.append(h)
        self._size += 1
        return formed

    def root(self) -> NodeHash:
        """Return MTH of the leaves appended so far (:data:`EMPTY_ROOT` when none)."""
        return root_from_subtrees(self._hashes)


def _parents(row: list[bytes], *, carry: bool) -> list[bytes]:
    """Hash neighbours pairwise; with ``carry`` an odd last node moves up unchanged."""
    up = [_sha256(b"\x01" + a + b).digest() for a, b in zip(row[::2], row[1::2], strict=False)]
    if carry and len(row) % 2:
        up.append(row[-1])
    return up


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1) — RFC 9162 §2.1.1's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH make up PATH(index, D[size]), in proof order (§2.1.3.1)."""
    start, end = 0, size
    out: list[tuple[int, int]] = []
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            out.append((mid, end))
            end = mid
        else:
            out.append((start, mid))
            start = mid
    out.reverse()  # the recursion emits the deepest sibling first
    return out


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH make up PROOF(old_size, D[new_size]), in proof order (§2.1.4.1)."""
    if old_size in (0, new_size):
        return []
    start, end, whole = 0, new_size, True
    out: list[tuple[int, int]] = []
    while old_size != end:
        mid = start + _split(end - start)
        if old_size <= mid:
            out.append((mid, end))
            end = mid
        else:
            out.append((start, mid))
            start, whole = mid, False
    if not whole:  # SUBPROOF(m, D[m], false) = [MTH(D[m])]
        out.append((start, end))
    out.reverse()
    return out


def _as_hasher(subtree: RangeHasher | Sequence[bytes], size: int) -> RangeHasher:
    if callable(subtree):
        return subtree
    if len(subtree) < size:
        raise InvalidInput(f"{len(subtree)} leaf hashes given, want at least {size}")
    leaves = subtree
    return lambda start, end: root_from_leaves(leaves[start:end])


def _ask(hasher: RangeHasher, start: int, end: int) -> bytes:
    h = hasher(start, end)
    if len(h) != HASH_SIZE:
        raise InvalidInput(f"subtree hasher gave {len(h)} bytes for [{start}, {end})")
    return bytes(h)


def _match(expected: bytes, computed: bytes, message: str) -> None:
    if not digests_equal(expected, computed):
        raise RootMismatch(message, expected=bytes(expected), computed=bytes(computed))


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise InvalidInput(f"leaf index {index} is outside a tree of size {size}")


def _check_sizes(old_size: int, new_size: int) -> None:
    if not 0 <= old_size <= new_size:
        raise InvalidInput(f"tree sizes {old_size} -> {new_size} are not 0 <= old <= new")


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidInput(f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_hashes(values: Sequence[bytes], what: str) -> None:
    if set(map(len, values)) - {HASH_SIZE}:
        first = next(i for i, v in enumerate(values) if len(v) != HASH_SIZE)
        raise InvalidInput(f"{what} {first} is {len(values[first])} bytes, want {HASH_SIZE}")
