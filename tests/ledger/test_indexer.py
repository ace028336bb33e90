"""The event indexer on the embedded chain: resuming, confirmations and reorg rebuilds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, select

from ledger.indexer import Indexer
from ledger.registration import NewResource, register_resources
from ledger.store import (
    AnchoredHeadRow,
    CursorRow,
    Database,
    IndexedBlockRow,
    LicenceRow,
    LicenceVersionRow,
    MemberRow,
    ProvenanceRow,
    ResourceContentRow,
    ResourceRow,
)
from tests.conftest import Consortium, make_consortium

_DERIVED: tuple[type[SQLModel], ...] = (
    MemberRow,
    LicenceRow,
    LicenceVersionRow,
    ResourceRow,
    ProvenanceRow,
    AnchoredHeadRow,
)


def _index(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every chain-derived row, as plain dicts, in a stable order."""
    with db.session() as session:
        return {
            str(table.__tablename__): sorted(
                (row.model_dump() for row in session.exec(select(table)).all()), key=repr
            )
            for table in _DERIVED
        }


def _counts(db: Database) -> dict[str, int]:
    return {name: len(rows) for name, rows in _index(db).items()}


def _new_indexer(c: Consortium, db: Database, *, confirmations: int = 0) -> Indexer:
    return Indexer(
        c.instance.chain, c.instance.require_contracts(), db, confirmations=confirmations
    )


@pytest.fixture
def consortium(tmp_path: Path) -> Any:
    c = make_consortium(tmp_path)
    try:
        yield c
    finally:
        c.instance.close()


def test_a_restarted_indexer_resumes_from_its_cursor_without_reapplying_events(
    consortium: Consortium,
) -> None:
    db = consortium.instance.db
    before = _index(db)
    assert _counts(db) == {
        "member": 2,
        "licence": 1,
        "licence_version": 1,
        "resource": 2,
        "provenance": 0,
        "anchored_head": 0,
    }
    cursor = _new_indexer(consortium, db).cursor()
    assert cursor == consortium.instance.chain.block_number()

    again = _new_indexer(consortium, db)
    assert again.sync() == 0
    assert again.cursor() == cursor
    assert _index(db) == before


def test_with_two_confirmations_the_last_two_blocks_wait_for_two_more(
    consortium: Consortium, tmp_path: Path
) -> None:
    chain = consortium.instance.chain
    db = Database.sqlite(tmp_path / "confirmed.db")
    try:
        indexer = _new_indexer(consortium, db, confirmations=2)
        indexer.sync()
        assert indexer.cursor() == chain.block_number() - 2

        (extra,) = register_resources(
            consortium.instance,
            consortium.members["CN-B"],
            [NewResource(b"a new map", "text", {"title": "Map"}, 0)],
        )
        registered_at = chain.block_number()
        indexer.sync()
        assert indexer.cursor() == registered_at - 2
        with db.session() as session:
            assert session.get(ResourceRow, extra.resource_id) is None

        chain.fund_from_node(consortium.admin.account.address, 1)
        indexer.sync()
        with db.session() as session:
            assert session.get(ResourceRow, extra.resource_id) is None

        chain.fund_from_node(consortium.admin.account.address, 1)
        indexer.sync()
        assert indexer.cursor() == registered_at
        with db.session() as session:
            assert session.get(ResourceRow, extra.resource_id) is not None
        assert _index(db) == _index(consortium.instance.db)
    finally:
        db.close()


def test_a_changed_hash_at_the_cursor_rebuilds_the_same_index_and_keeps_local_tables(
    consortium: Consortium, caplog: pytest.LogCaptureFixture
) -> None:
    instance = consortium.instance
    db = instance.db
    indexer = instance.indexer
    assert indexer is not None
    before = _index(db)
    cursor = indexer.cursor()
    with db.session() as session:
        local = len(session.exec(select(ResourceContentRow)).all())
        recorded = session.get(IndexedBlockRow, (indexer.cursor_name, cursor))
        assert recorded is not None
        recorded.block_hash = "0x" + "00" * 32
        session.add(recorded)
    generations = dict(db.generations)

    with caplog.at_level(logging.WARNING, logger="libshare.indexer"):
        applied = indexer.sync()

    assert applied == 5  # two admissions, one licence issued, two registrations
    assert _index(db) == before
    assert indexer.cursor() == cursor
    assert "chain reorganisation: indexed block" in caplog.text
    assert "Rebuilding the index from the chain" in caplog.text
    assert all(db.generations[k] > generations.get(k, 0) for k in generations)
    assert {"members", "licences", "resources", "heads"} <= set(db.generations)
    with db.session() as session:
        assert len(session.exec(select(ResourceContentRow)).all()) == local
        row = session.get(IndexedBlockRow, (indexer.cursor_name, cursor))
        assert row is not None and row.block_hash != "0x" + "00" * 32
        cursor_row = session.get(CursorRow, indexer.cursor_name)
        assert cursor_row is not None and cursor_row.block == cursor
    # And the next sync trusts the index again.
    assert indexer.sync() == 0
