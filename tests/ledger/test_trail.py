"""The SQL trail is an RFC 9162 log: roots and proofs from stored hashes match the pure tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import merkle
from ledger.errors import InvalidInput
from ledger.store import Database
from ledger.trail import Trail


@pytest.fixture
def trail(tmp_path: Path, database_url: str | None) -> Iterator[Trail]:
    """A trail on a fresh database: SQLite, and (marked postgres) PostgreSQL."""
    db = Database(database_url or f"sqlite:///{tmp_path / 't.sqlite'}")
    try:
        yield Trail(db, "CN-XJTU")
    finally:
        db.close()


def _fill(trail: Trail, n: int) -> list[bytes]:
    bodies = [b'{"n":%d}' % i for i in range(n)]
    for body in bodies:
        with trail.appending() as appender:
            appender.append(body)
    return [merkle.leaf_hash(b) for b in bodies]


def test_root_at_every_size_equals_the_pure_tree(trail: Trail) -> None:
    leaves = _fill(trail, 37)
    for size in range(38):
        assert trail.root_at(size) == merkle.root_from_leaves(leaves[:size])


def test_every_inclusion_and_consistency_proof_verifies(trail: Trail) -> None:
    leaves = _fill(trail, 21)
    for size in range(1, 22):
        root = merkle.root_from_leaves(leaves[:size])
        for index in range(size):
            proof = trail.inclusion_proof(index, size)
            merkle.verify_inclusion(index, size, leaves[index], proof, root)
        for old in range(1, size + 1):
            proof = trail.consistency_proof(old, size)
            old_root = merkle.root_from_leaves(leaves[:old])
            merkle.verify_consistency(old, size, old_root, root, proof)


def test_a_failed_transaction_leaves_no_entry_and_the_next_append_reuses_its_place(
    trail: Trail,
) -> None:
    _fill(trail, 3)
    with pytest.raises(RuntimeError), trail.appending() as appender:
        appender.append(b"lost")
        raise RuntimeError("crash before commit")
    assert trail.head().size == 3
    with trail.appending() as appender:
        seq, _ = appender.append(b"kept")
    assert seq == 3
    assert [row.body for row in trail.entries(3)] == [b"kept"]


def test_a_reopened_trail_resumes_from_stored_hashes(trail: Trail) -> None:
    leaves = _fill(trail, 13)
    again = Trail(trail.db, trail.member)
    with again.appending() as appender:
        appender.append(b"more")
    leaves.append(merkle.leaf_hash(b"more"))
    assert again.head().root == merkle.root_from_leaves(leaves)


def test_a_size_beyond_the_trail_is_refused(trail: Trail) -> None:
    _fill(trail, 2)
    with pytest.raises(InvalidInput, match="has 2 entries; size 3 is out of range"):
        trail.root_at(3)
