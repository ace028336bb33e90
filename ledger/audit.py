"""Verify a usage trail against the heads anchored on chain.

:func:`verify_trail` needs nothing but the entries (sequence number, canonical JSON
bytes, optionally the leaf hash the server claims) and the heads read from the chain:
it recomputes every leaf hash, rebuilds the root at every anchored size, and stops at
the first entry or head that does not match, saying what was expected. Matching every
anchored head from one sequence of leaves also proves each head an append-only
extension of the one before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from ledger import merkle
from ledger.errors import ProofError
from ledger.types import digests_equal


@dataclass(frozen=True)
class Head:
    """An anchored tree head as the chain records it."""

    size: int
    root: bytes
    block: int | None = None
    tx_hash: str | None = None


@dataclass(frozen=True)
class TrailReport:
    """What a successful verification covered."""

    entries: int
    heads: int
    anchored_size: int
    root: bytes

    @property
    def unanchored(self) -> int:
        """Entries after the last anchored head (recorded, not yet anchored)."""
        return self.entries - self.anchored_size


class TrailMismatch(ProofError):
    """The trail does not match its anchors; ``seq`` or ``head_size`` names where."""

    def __init__(self, message: str, *, seq: int | None = None, head_size: int | None = None):
        super().__init__(message, hint="the trail was altered after it was anchored")
        self.seq = seq
        self.head_size = head_size


def verify_trail(
    entries: Iterable[tuple[int, bytes, bytes | None]], heads: Sequence[Head]
) -> TrailReport:
    """Check ``entries`` (seq, body, claimed leaf hash or None) against ``heads``.

    Heads must be in anchoring order. Raises :class:`TrailMismatch` at the first entry or
    head that does not match.
    """
    for earlier, later in pairwise(heads):
        if later.size <= earlier.size:
            raise TrailMismatch(
                f"anchored head of size {later.size} follows one of size {earlier.size}; "
                "sizes must strictly increase",
                head_size=later.size,
            )
    pending = list(heads)
    frontier = merkle.CompactRange(0, [])
    for expected_seq, (seq, body, claimed) in enumerate(entries):
        if seq != expected_seq:
            raise TrailMismatch(
                f"entry {expected_seq} is missing: found entry {seq} in its place", seq=seq
            )
        leaf = merkle.leaf_hash(body)
        if claimed is not None and not digests_equal(leaf, claimed):
            raise TrailMismatch(
                f"entry {seq}: stored leaf hash {claimed.hex()} is not the hash of its body "
                f"({leaf.hex()})",
                seq=seq,
            )
        frontier.append(leaf)
        while pending and pending[0].size == frontier.size:
            _check_head(pending.pop(0), frontier.root())
    if pending:
        head = pending[0]
        raise TrailMismatch(
            f"head of size {head.size} is anchored but the trail has only {frontier.size} entries",
            head_size=head.size,
        )
    anchored = heads[-1].size if heads else 0
    return TrailReport(frontier.size, len(heads), anchored, frontier.root())


def _check_head(head: Head, computed: bytes) -> None:
    if not digests_equal(head.root, computed):
        where = f" (block {head.block})" if head.block is not None else ""
        raise TrailMismatch(
            f"head of size {head.size}{where}: anchored root {head.root.hex()}, "
            f"recomputed {computed.hex()}; an entry before {head.size} differs",
            head_size=head.size,
        )
