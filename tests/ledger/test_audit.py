"""Verifying a trail against anchored heads finds the first place that differs."""

from __future__ import annotations

import pytest

from ledger import merkle
from ledger.audit import Head, TrailMismatch, verify_trail

BODIES = [b'{"seq":%d,"decision":"allow"}' % i for i in range(10)]


def _heads(*sizes: int) -> list[Head]:
    leaves = [merkle.leaf_hash(b) for b in BODIES]
    return [Head(n, merkle.root_from_leaves(leaves[:n])) for n in sizes]


def _entries(bodies: list[bytes]) -> list[tuple[int, bytes, bytes | None]]:
    return [(i, b, None) for i, b in enumerate(bodies)]


def test_an_untouched_trail_verifies_with_its_unanchored_tail_counted() -> None:
    report = verify_trail(_entries(BODIES), _heads(3, 7))
    assert (report.entries, report.heads, report.anchored_size, report.unanchored) == (10, 2, 7, 3)


def test_an_edited_entry_is_reported_at_the_first_head_covering_it() -> None:
    bodies = list(BODIES)
    bodies[4] = bodies[4].replace(b"allow", b"deny")
    with pytest.raises(TrailMismatch, match="head of size 7") as info:
        verify_trail(_entries(bodies), _heads(3, 7))
    assert info.value.head_size == 7


def test_a_deleted_entry_is_reported_by_its_sequence_number() -> None:
    entries = _entries(BODIES)
    del entries[5]
    with pytest.raises(TrailMismatch, match="entry 5 is missing") as info:
        verify_trail(entries, _heads(9))
    assert info.value.seq == 6


def test_a_leaf_hash_that_does_not_match_its_body_is_reported() -> None:
    entries = _entries(BODIES)
    entries[2] = (2, BODIES[2], b"\x00" * 32)
    with pytest.raises(TrailMismatch, match="entry 2: stored leaf hash"):
        verify_trail(entries, _heads(5))


def test_a_truncated_trail_is_reported_at_the_head_it_cannot_reach() -> None:
    with pytest.raises(TrailMismatch, match="size 7 is anchored but the trail has only 5"):
        verify_trail(_entries(BODIES[:5]), _heads(3, 7))
