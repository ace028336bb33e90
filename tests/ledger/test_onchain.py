"""Registering resources through ConsortiumContracts: the packed batch entries and their ids."""

from __future__ import annotations

import pytest

from ledger.errors import InvalidInput
from ledger.onchain import ResourceInput, resource_ids_of
from ledger.registration import resource_id_of
from ledger.types import sha256
from tests.conftest import Consortium

CONTENT = sha256(b"an atlas")
CID = b"\x12\x20" + sha256(b"stored atlas")
META = sha256(b"dc:atlas")


def test_a_packed_entry_is_laid_out_as_the_contract_reads_it() -> None:
    target = sha256(b"the printed atlas")
    entry = ResourceInput(CONTENT, CID, META, 258, (("digitised_from", target),)).packed()
    assert entry == (
        CONTENT + META + bytes.fromhex("00000102") + bytes.fromhex("0022") + CID
        + b"\x01" + b"\x01" + target
    )  # fmt: skip


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (ResourceInput(CONTENT, CID, META, 1 << 32), "does not fit 32 bits"),
        (ResourceInput(CONTENT, CID, META, -1), "does not fit 32 bits"),
        (ResourceInput(CONTENT, b"\x01" * 65_536, META, 0), "too long to register"),
        (ResourceInput(CONTENT[:31], CID, META, 0), "content hash has 31 bytes"),
        (ResourceInput(CONTENT, CID, META + b"\x00", 0), "metadata hash has 33 bytes"),
        (
            ResourceInput(CONTENT, CID, META, 0, (("derived_from", META),) * 256),
            "at most 255 links",
        ),
        (ResourceInput(CONTENT, CID, META, 0, (("copied_from", META),)), "unknown provenance"),
        (ResourceInput(CONTENT, CID, META, 0, (("derived_from", META[:20]),)), "20 bytes"),
    ],
    ids=[
        "licence-too-large",
        "licence-negative",
        "cid-too-long",
        "short-content-hash",
        "long-metadata-hash",
        "too-many-links",
        "unknown-relation",
        "short-target",
    ],
)
def test_an_entry_the_contract_could_not_read_is_refused_before_sending(
    item: ResourceInput, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        item.packed()


def test_ids_are_what_the_registry_computes() -> None:
    owner = "0x" + "ab" * 20
    hashes = [sha256(b"one"), sha256(b"two")]
    assert resource_ids_of(owner, hashes) == [
        bytes.fromhex(resource_id_of(owner, h)[2:]) for h in hashes
    ]


def test_register_resources_batches_and_returns_the_ids_in_order(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    owner = consortium.members["CN-B"].account
    items = [
        ResourceInput(sha256(b"map %d" % i), CID, META, 0, (("derived_from", META),) * (i % 2))
        for i in range(7)
    ]
    before = consortium.instance.chain.block_number()

    ids = contracts.register_resources(owner, items, batch_size=3, in_flight=2)

    assert ids == resource_ids_of(owner.address, [item.content_hash for item in items])
    assert consortium.instance.chain.block_number() == before + 3  # 3 + 3 + 1
    for rid in ids:
        assert consortium.instance.chain.call(contracts.resources.functions.exists(rid))


def test_a_bad_item_stops_the_registration_before_anything_is_sent(
    consortium: Consortium,
) -> None:
    contracts = consortium.instance.require_contracts()
    owner = consortium.members["CN-B"].account
    good = ResourceInput(sha256(b"good"), CID, META, 0)
    bad = ResourceInput(sha256(b"bad"), CID, META, 1 << 40)
    before = consortium.instance.chain.block_number()
    with pytest.raises(InvalidInput):
        contracts.register_resources(owner, [good, bad], batch_size=1)
    assert consortium.instance.chain.block_number() == before


def test_register_resource_sends_one_register_transaction(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    owner = consortium.members["CN-B"].account
    item = ResourceInput(sha256(b"single"), CID, META, 0, (("contributed_by", META),))
    assert (
        contracts.register_resource(owner, item)
        == resource_ids_of(owner.address, [item.content_hash])[0]
    )


def test_a_batch_size_below_one_is_refused(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    with pytest.raises(InvalidInput, match="batch size must be at least 1"):
        contracts.register_resources(consortium.members["CN-B"].account, [], batch_size=0)
