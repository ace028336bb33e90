"""Registration batches in flight, and the index read over pages, on a real node.

The node mines on a timer in the first tests, as a consortium's Besu network does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import SQLModel, select
from web3.types import RPCEndpoint

from ledger.errors import ContractReverted
from ledger.indexer import Indexer
from ledger.onchain import ResourceInput, resource_ids_of
from ledger.store import Database, ProvenanceRow, ResourceRow
from ledger.types import sha256
from tests.conftest import Consortium, make_consortium

pytestmark = pytest.mark.hardhat


@pytest.fixture(scope="module")
def on_node(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    consortium = make_consortium(tmp_path_factory.mktemp("pipelined"), rpc_url=rpc_url)
    try:
        yield consortium
    finally:
        consortium.instance.close()


@pytest.fixture
def timed(on_node: Consortium) -> Iterator[Consortium]:
    """The consortium, its node mining a block every 500 ms while the test runs."""
    provider = on_node.instance.chain.w3.provider
    provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    provider.make_request(RPCEndpoint("evm_setIntervalMining"), [500])
    try:
        yield on_node
    finally:
        provider.make_request(RPCEndpoint("evm_setIntervalMining"), [0])
        provider.make_request(RPCEndpoint("evm_setAutomine"), [True])


def _items(tag: str, n: int) -> list[ResourceInput]:
    cid = b"\x12\x20" + sha256(b"stored")
    return [ResourceInput(sha256(f"{tag} {i}".encode()), cid, sha256(b"dc"), 0) for i in range(n)]


def test_batches_in_flight_share_blocks(timed: Consortium) -> None:
    contracts = timed.instance.require_contracts()
    owner = timed.members["CN-A"].account
    items = _items("shared", 12)

    done = contracts.register_resources_mined(owner, items, batch_size=2, in_flight=6)

    assert [rid for ids, _ in done for rid in ids] == resource_ids_of(
        owner.address, [item.content_hash for item in items]
    )
    blocks = [tx.block for _, tx in done]
    assert len(set(blocks)) < len(blocks)  # one at a time would take a block each


def test_a_conflicting_batch_in_flight_fails_alone(timed: Consortium) -> None:
    contracts = timed.instance.require_contracts()
    owner = timed.members["CN-A"].account
    first, again = _items("twice", 1) * 2
    # Both pass gas estimation on the state before either; the second fails when mined.
    calls = [
        contracts.resources.functions.registerBatch(first.packed()),
        contracts.resources.functions.registerBatch(again.packed()),
    ]
    with pytest.raises(ContractReverted, match="ResourceRegistryAlreadyRegistered"):
        timed.instance.chain.transact_many(owner, calls, in_flight=2)
    (rid,) = resource_ids_of(owner.address, [first.content_hash])
    assert timed.instance.chain.call(contracts.resources.functions.exists(rid))


def test_a_revert_found_before_sending_is_raised_once_the_batches_sent_are_mined(
    timed: Consortium,
) -> None:
    contracts = timed.instance.require_contracts()
    owner = timed.members["CN-A"].account
    sent = _items("sent", 2)
    unknown = ResourceInput(sha256(b"unlicensed"), sent[0].cid, sent[0].metadata_hash, 999)
    calls = [contracts.resources.functions.registerBatch(i.packed()) for i in [*sent, unknown]]
    with pytest.raises(ContractReverted, match="ResourceRegistryUnknownLicence"):
        timed.instance.chain.transact_many(owner, calls, in_flight=3)
    for rid in resource_ids_of(owner.address, [item.content_hash for item in sent]):
        assert timed.instance.chain.call(contracts.resources.functions.exists(rid))


def test_the_index_read_over_prefetched_pages_is_the_index_read_at_once(
    on_node: Consortium, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contracts = on_node.instance.require_contracts()
    items = [
        ResourceInput(item.content_hash, item.cid, item.metadata_hash, 0, links)
        for i, item in enumerate(_items("paged", 30))
        for links in [(("derived_from", sha256(b"%d" % i)),) * (i % 2)]
    ]
    contracts.register_resources(on_node.members["CN-A"].account, items, batch_size=4)
    on_node.instance.sync()  # default pages: all of it in one
    monkeypatch.setattr("ledger.indexer.FIRST_PAGE_BLOCKS", 1)
    monkeypatch.setattr("ledger.indexer.PAGE_LOGS", 3)  # a page per block, read ahead
    paged = Database.sqlite(tmp_path / "paged.sqlite")
    try:
        applied = Indexer(on_node.instance.chain, contracts, paged).sync()
        assert applied >= 30 + 15  # and whatever the other tests registered
        for table in (ResourceRow, ProvenanceRow):
            assert _rows(paged, table) == _rows(on_node.instance.db, table)
    finally:
        paged.close()


def _rows(db: Database, table: type[SQLModel]) -> list[dict[str, object]]:
    with db.session() as session:
        return sorted((row.model_dump() for row in session.exec(select(table))), key=repr)
