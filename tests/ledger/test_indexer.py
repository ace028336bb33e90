"""The event indexer on the embedded chain: resuming, confirmations and reorg rebuilds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, select

from ledger.cid import cid_to_string
from ledger.indexer import Indexer
from ledger.onchain import RELATIONS, ResourceInput, resource_ids_of
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
from ledger.types import sha256
from tests.conftest import Consortium, PostgresServer, make_consortium

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
def consortium(tmp_path: Path, database_url: str | None) -> Any:
    c = make_consortium(tmp_path, database_url=database_url)
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
    consortium: Consortium, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    chain = consortium.instance.chain
    if consortium.instance.db.engine.dialect.name == "postgresql":  # a second database there
        server: PostgresServer = request.getfixturevalue("postgres_server")
        second = server.create()
        request.addfinalizer(lambda: server.drop(second))
        db = Database(second)
    else:
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


# -- bulk ingestion ------------------------------------------------------------------------


def _register_on_chain(c: Consortium, items: list[ResourceInput], batch_size: int) -> list[str]:
    """Register straight through the contracts, leaving the index behind."""
    contracts = c.instance.require_contracts()
    ids = contracts.register_resources(c.members["CN-A"].account, items, batch_size=batch_size)
    return ["0x" + rid.hex() for rid in ids]


def _inputs(tag: str, n: int, licence_id: int) -> list[ResourceInput]:
    items = []
    for i in range(n):
        content = sha256(f"{tag} {i}".encode())
        links = (("derived_from", sha256(b"source %d" % i)),) if i % 3 == 0 else ()
        cid = b"\x12\x20" + sha256(b"stored " + content)
        items.append(ResourceInput(content, cid, sha256(b"meta " + content), licence_id, links))
    return items


def _second_database(
    consortium: Consortium, tmp_path: Path, request: pytest.FixtureRequest
) -> Database:
    """Another empty database on the consortium's kind of server."""
    if consortium.instance.db.engine.dialect.name == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create()
        request.addfinalizer(lambda: server.drop(url))
        return Database(url)
    return Database.sqlite(tmp_path / "second.db")


def test_many_events_over_many_small_pages_index_every_field(
    consortium: Consortium,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    items = _inputs("bulk", 40, consortium.licence_id)
    ids = _register_on_chain(consortium, items, batch_size=7)  # six blocks of registrations
    monkeypatch.setattr("ledger.indexer.FIRST_PAGE_BLOCKS", 1)
    monkeypatch.setattr("ledger.indexer.PAGE_LOGS", 5)  # a page or two per block

    applied = consortium.instance.sync()

    assert applied == 40 + 14  # registrations, and a link on every third
    db = consortium.instance.db
    with db.session() as session:
        for rid, item in zip(ids, items, strict=True):
            row = session.get(ResourceRow, rid)
            assert row is not None
            assert (row.owner, row.content_hash, row.cid, row.metadata_hash, row.licence_id) == (
                consortium.members["CN-A"].account.address,
                "0x" + item.content_hash.hex(),
                cid_to_string(item.cid),
                "0x" + item.metadata_hash.hex(),
                consortium.licence_id,
            )
            links = session.exec(select(ProvenanceRow).where(ProvenanceRow.resource_id == rid))
            assert [(r.relation, r.target) for r in links] == [
                (RELATIONS[name], "0x" + target.hex()) for name, target in item.links
            ]
    # A fresh indexer reading it all in its default pages builds the same index.
    monkeypatch.undo()
    fresh = _second_database(consortium, tmp_path, request)
    try:
        assert _new_indexer(consortium, fresh).sync() == applied + 5  # + make_consortium's
        assert _index(fresh) == _index(db)
    finally:
        fresh.close()


def test_changes_after_a_registration_in_the_same_page_apply_in_chain_order(
    consortium: Consortium,
) -> None:
    owner = consortium.members["CN-A"].account
    contracts = consortium.instance.require_contracts()
    chain = consortium.instance.chain
    first, second = _inputs("order", 2, consortium.licence_id)
    (old,) = _register_on_chain(consortium, [first], batch_size=1)
    chain.transact(owner, contracts.resources.functions.setLicence(old, 0))
    chain.transact(owner, contracts.resources.functions.supersede(old, second.as_tuple()))
    new = "0x" + resource_ids_of(owner.address, [second.content_hash])[0].hex()

    consortium.instance.sync()  # one page: register, change licence, supersede

    with consortium.instance.db.session() as session:
        old_row, new_row = session.get(ResourceRow, old), session.get(ResourceRow, new)
        assert old_row is not None and new_row is not None
        assert (old_row.licence_id, old_row.superseded_by) == (0, new)
        assert (new_row.licence_id, new_row.superseded_by) == (consortium.licence_id, None)
        links = session.exec(select(ProvenanceRow).where(ProvenanceRow.resource_id == new))
        assert {(r.relation, r.target) for r in links} == {(RELATIONS["supersedes"], old)}


def test_a_link_given_twice_is_indexed_once(consortium: Consortium) -> None:
    target = sha256(b"the manuscript")
    (item,) = _inputs("twice", 1, 0)
    item = ResourceInput(
        item.content_hash, item.cid, item.metadata_hash, 0, 2 * (("digitised_from", target),)
    )
    (rid,) = _register_on_chain(consortium, [item], batch_size=1)

    assert consortium.instance.sync() == 3

    with consortium.instance.db.session() as session:
        links = session.exec(select(ProvenanceRow).where(ProvenanceRow.resource_id == rid)).all()
        assert [(r.relation, r.target) for r in links] == [(1, "0x" + target.hex())]


def test_an_indexer_that_lost_the_race_to_another_goes_on_from_where_it_left_the_index(
    consortium: Consortium,
) -> None:
    db = consortium.instance.db
    _register_on_chain(consortium, _inputs("race", 3, 0), batch_size=3)
    first, second = _new_indexer(consortium, db), _new_indexer(consortium, db)
    read = second._read
    raced = []

    def read_after_the_other_indexed(*args: Any) -> Any:
        if not raced:
            raced.append(first.sync())  # the other indexer commits these blocks meanwhile
        return read(*args)

    second._read = read_after_the_other_indexed  # type: ignore[method-assign]

    assert second.sync() == 0  # its insert collided; it retried from the new cursor
    assert raced == [4]  # three registrations and one link
    assert second.cursor() == first.cursor() == consortium.instance.chain.block_number()
    assert _counts(db)["resource"] == 5
