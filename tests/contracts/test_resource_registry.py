"""ResourceRegistry: registering, batching, superseding and licensing resources."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from evm_support import Deployment, expect_revert

NONE, DIGITISED_FROM, DERIVED_FROM, SUPERSEDES, CONTRIBUTED_BY = range(5)
ZERO32 = b"\x00" * 32
TERMS = '{"actions":["copy"]}'


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def resource(
    name: str,
    *,
    licence_id: int = 0,
    links: list[tuple[int, bytes]] | None = None,
    metadata: bytes | None = None,
    cid: bytes | None = None,
) -> tuple[Any, ...]:
    """A ResourceInput for the plaintext ``name``; the CID is a CIDv0 multihash."""
    content = sha(name.encode())
    return (
        content,
        bytes.fromhex("1220") + content if cid is None else cid,
        sha(b"meta:" + name.encode()) if metadata is None else metadata,
        licence_id,
        links or [],
    )


def resource_id(owner: str, content_hash: bytes) -> bytes:
    return keccak(encode(["address", "bytes32"], [owner, content_hash]))


def register(d: Deployment, owner: str, r: tuple[Any, ...]) -> bytes:
    d.send(d.resources.functions.register(r), owner)
    return resource_id(owner, r[0])


def issue(d: Deployment, licensor: str) -> int:
    fn = d.licences.functions.issue(sha(TERMS.encode()), TERMS)
    licence_id = int(fn.call({"from": licensor}))
    d.send(fn, licensor)
    return licence_id


def packed(r: tuple[Any, ...]) -> bytes:
    """``r`` as a registerBatch entry, encoded here from the contract's NatSpec."""
    content, cid, metadata, licence_id, links = r
    entry = content + metadata + struct.pack(">IH", licence_id, len(cid)) + cid
    entry += bytes([len(links)])
    for relation, target in links:
        entry += bytes([relation]) + target
    return entry


def batch_of(*rs: tuple[Any, ...]) -> bytes:
    return b"".join(packed(r) for r in rs)


RECORD = ("owner", "licenceId", "supersededBy", "registeredAt")


def record(d: Deployment, rid: bytes) -> dict[str, Any]:
    return dict(zip(RECORD, d.resources.functions.resourceOf(rid).call(), strict=True))


# -- register --------------------------------------------------------------------------------


def test_registry_points_at_its_consortium_and_licences(d: Deployment) -> None:
    assert d.resources.functions.consortium().call() == d.consortium.address
    assert d.resources.functions.licences().call() == d.licences.address


def test_resource_id_is_keccak_of_owner_and_content_hash(d: Deployment) -> None:
    content = sha(b"x")
    assert d.resources.functions.resourceIdOf(d.a, content).call() == resource_id(d.a, content)


def test_registered_resource_is_stored_and_emitted(d: Deployment) -> None:
    links = [(DIGITISED_FROM, sha(b"manuscript")), (CONTRIBUTED_BY, sha(b"CN-B"))]
    r = resource("rare book", links=links)
    fn = d.resources.functions.register(r)
    rid = resource_id(d.a, r[0])
    assert fn.call({"from": d.a}) == rid
    receipt = d.send(fn, d.a)
    assert d.events(d.resources, "ResourceRegistered", receipt) == [
        {
            "id": rid,
            "owner": d.a,
            "contentHash": r[0],
            "cid": r[1],
            "metadataHash": r[2],
            "licenceId": 0,
        }
    ]
    assert d.events(d.resources, "ProvenanceLinked", receipt) == [
        {"id": rid, "relation": rel, "target": target} for rel, target in links
    ]
    assert record(d, rid) == {
        "owner": d.a,
        "licenceId": 0,
        "supersededBy": ZERO32,
        "registeredAt": receipt["blockNumber"],
    }
    assert d.resources.functions.exists(rid).call()


def test_unregistered_resource_does_not_exist(d: Deployment) -> None:
    rid = resource_id(d.a, sha(b"nothing"))
    assert not d.resources.functions.exists(rid).call()
    with expect_revert("ResourceRegistryUnknownResource", id=rid):
        d.resources.functions.resourceOf(rid).call()


def test_resource_without_metadata_hash_is_registered(d: Deployment) -> None:
    r = resource("thesis", metadata=ZERO32)
    receipt = d.send(d.resources.functions.register(r), d.a)
    (event,) = d.events(d.resources, "ResourceRegistered", receipt)
    assert event["metadataHash"] == ZERO32
    assert d.resources.functions.exists(resource_id(d.a, r[0])).call()


def test_resource_under_own_licence_is_registered(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    rid = register(d, d.a, resource("thesis", licence_id=licence_id))
    assert record(d, rid)["licenceId"] == licence_id


def test_same_content_by_two_members_is_two_resources(d: Deployment) -> None:
    ra = register(d, d.a, resource("shared e-book"))
    rb = register(d, d.b, resource("shared e-book"))
    assert ra != rb
    assert record(d, ra)["owner"] == d.a
    assert record(d, rb)["owner"] == d.b


def test_registering_twice_reverts(d: Deployment) -> None:
    rid = register(d, d.a, resource("thesis"))
    with expect_revert("ResourceRegistryAlreadyRegistered", id=rid):
        d.send(d.resources.functions.register(resource("thesis")), d.a)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin"])
def test_non_member_cannot_register(d: Deployment, who: str) -> None:
    sender = getattr(d, who)
    with expect_revert("ResourceRegistryNotMember", account=sender):
        d.send(d.resources.functions.register(resource("thesis")), sender)


def test_zero_content_hash_is_rejected(d: Deployment) -> None:
    r = (ZERO32, b"\x12\x20" + ZERO32, ZERO32, 0, [])
    with expect_revert("ResourceRegistryEmptyContentHash"):
        d.send(d.resources.functions.register(r), d.a)


def test_empty_cid_is_rejected(d: Deployment) -> None:
    r = resource("thesis", cid=b"")
    with expect_revert("ResourceRegistryEmptyCid", contentHash=r[0]):
        d.send(d.resources.functions.register(r), d.a)


@pytest.mark.parametrize(
    "link", [(NONE, sha(b"t")), (DERIVED_FROM, ZERO32)], ids=["none-relation", "zero-target"]
)
def test_invalid_link_is_rejected(d: Deployment, link: tuple[int, bytes]) -> None:
    r = resource("thesis", links=[(DIGITISED_FROM, sha(b"ok")), link])
    with expect_revert(
        "ResourceRegistryInvalidLink", linkIndex=1, relation=link[0], target=link[1]
    ):
        d.send(d.resources.functions.register(r), d.a)


def test_supersedes_link_via_register_is_rejected(d: Deployment) -> None:
    old = register(d, d.a, resource("v1"))
    r = resource("v2", links=[(SUPERSEDES, old)])
    with expect_revert("ResourceRegistrySupersedesLinkNotAllowed", linkIndex=0, target=old):
        d.send(d.resources.functions.register(r), d.a)


def test_member_cannot_register_under_another_members_licence(d: Deployment) -> None:
    licence_id = issue(d, d.b)
    with expect_revert("ResourceRegistryNotLicensor", licenceId=licence_id, account=d.a):
        d.send(d.resources.functions.register(resource("t", licence_id=licence_id)), d.a)


def test_registering_under_a_revoked_licence_reverts(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    d.send(d.licences.functions.revoke(licence_id), d.a)
    with expect_revert("ResourceRegistryLicenceRevoked", licenceId=licence_id):
        d.send(d.resources.functions.register(resource("t", licence_id=licence_id)), d.a)


def test_registering_under_an_unknown_licence_reverts(d: Deployment) -> None:
    with expect_revert("ResourceRegistryUnknownLicence", licenceId=3):
        d.send(d.resources.functions.register(resource("t", licence_id=3)), d.a)


def test_licence_id_beyond_32_bits_is_unknown_not_truncated(d: Deployment) -> None:
    """Storage keeps licence ids in 32 bits: a larger one must never reach it."""
    licence_id = issue(d, d.a)
    wide = (1 << 32) + licence_id
    with expect_revert("ResourceRegistryUnknownLicence", licenceId=wide):
        d.send(d.resources.functions.register(resource("t", licence_id=wide)), d.a)
    rid = register(d, d.a, resource("t"))
    with expect_revert("ResourceRegistryUnknownLicence", licenceId=wide):
        d.send(d.resources.functions.setLicence(rid, wide), d.a)


# -- registerBatch ---------------------------------------------------------------------------


def test_batch_registers_every_resource_in_order(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    links = [(DERIVED_FROM, sha(b"b1")), (CONTRIBUTED_BY, sha(b"CN-B"))]
    batch = [
        resource("b1", licence_id=licence_id),
        resource("b2", licence_id=licence_id, links=links),
        resource("b3", metadata=ZERO32),
    ]
    ids = [resource_id(d.a, r[0]) for r in batch]
    receipt = d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)
    assert d.events(d.resources, "ResourceRegistered", receipt) == [
        {
            "id": rid,
            "owner": d.a,
            "contentHash": r[0],
            "cid": r[1],
            "metadataHash": r[2],
            "licenceId": r[3],
        }
        for rid, r in zip(ids, batch, strict=True)
    ]
    assert d.events(d.resources, "ProvenanceLinked", receipt) == [
        {"id": ids[1], "relation": rel, "target": target} for rel, target in links
    ]
    assert [record(d, rid) for rid in ids] == [
        {
            "owner": d.a,
            "licenceId": r[3],
            "supersededBy": ZERO32,
            "registeredAt": receipt["blockNumber"],
        }
        for r in batch
    ]


def test_batch_events_come_resource_by_resource(d: Deployment) -> None:
    """Each resource's links follow its registration, so a reader can group them."""
    batch = [resource(f"b{i}", links=[(DIGITISED_FROM, sha(b"s%d" % i))]) for i in range(3)]
    receipt = d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)
    registered = keccak(text="ResourceRegistered(bytes32,address,bytes32,bytes,bytes32,uint256)")
    linked = keccak(text="ProvenanceLinked(bytes32,uint8,bytes32)")
    topics = [bytes(log["topics"][0]) for log in receipt["logs"]]
    assert topics == [registered, linked] * 3


def test_batch_entry_may_carry_a_long_cid(d: Deployment) -> None:
    cid = bytes(range(256)) * 4  # 1 KiB: the length field is 16 bits, not 8
    r = resource("long", cid=cid)
    receipt = d.send(d.resources.functions.registerBatch(batch_of(r)), d.a)
    (event,) = d.events(d.resources, "ResourceRegistered", receipt)
    assert event["cid"] == cid


def test_empty_batch_registers_nothing(d: Deployment) -> None:
    receipt = d.send(d.resources.functions.registerBatch(b""), d.a)
    assert receipt["logs"] == []


def test_batch_costs_at_most_30k_gas_per_resource(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    n = 100
    batch = batch_of(*(resource(f"gas-{i}", licence_id=licence_id) for i in range(n)))
    receipt = d.send(d.resources.functions.registerBatch(batch), d.a)
    assert len(d.events(d.resources, "ResourceRegistered", receipt)) == n
    assert receipt["gasUsed"] / n <= 30_000


def test_ledger_packing_is_what_the_contract_reads(d: Deployment) -> None:
    from ledger.onchain import ResourceInput

    r = resource("ledger", links=[(DERIVED_FROM, sha(b"x"))])
    item = ResourceInput(r[0], r[1], r[2], 0, (("derived_from", sha(b"x")),))
    assert item.packed() == packed(r)
    receipt = d.send(d.resources.functions.registerBatch(item.packed()), d.a)
    (event,) = d.events(d.resources, "ResourceRegistered", receipt)
    assert (event["contentHash"], event["cid"], event["metadataHash"]) == r[:3]


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin"])
def test_non_member_cannot_register_a_batch(d: Deployment, who: str) -> None:
    sender = getattr(d, who)
    with expect_revert("ResourceRegistryNotMember", account=sender):
        d.send(d.resources.functions.registerBatch(batch_of(resource("b1"))), sender)


def test_one_bad_resource_reverts_the_whole_batch(d: Deployment) -> None:
    batch = [resource("b1"), resource("b2", cid=b"")]
    with expect_revert("ResourceRegistryEmptyCid", contentHash=batch[1][0]):
        d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)
    assert not d.resources.functions.exists(resource_id(d.a, batch[0][0])).call()


def test_batch_entry_with_zero_content_hash_is_rejected(d: Deployment) -> None:
    r = (ZERO32, b"\x12\x20" + ZERO32, ZERO32, 0, [])
    with expect_revert("ResourceRegistryEmptyContentHash"):
        d.send(d.resources.functions.registerBatch(batch_of(resource("b1"), r)), d.a)


def test_duplicate_within_a_batch_reverts(d: Deployment) -> None:
    r = resource("b1")
    with expect_revert("ResourceRegistryAlreadyRegistered", id=resource_id(d.a, r[0])):
        d.send(d.resources.functions.registerBatch(batch_of(r, r)), d.a)


def test_batch_cannot_register_a_resource_again(d: Deployment) -> None:
    rid = register(d, d.a, resource("b1"))
    with expect_revert("ResourceRegistryAlreadyRegistered", id=rid):
        d.send(d.resources.functions.registerBatch(batch_of(resource("b1"))), d.a)


def test_batch_checks_every_distinct_licence(d: Deployment) -> None:
    own = issue(d, d.a)
    foreign = issue(d, d.b)
    batch = [resource("b1", licence_id=own), resource("b2", licence_id=foreign)]
    with expect_revert("ResourceRegistryNotLicensor", licenceId=foreign, account=d.a):
        d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)


def test_batch_checks_a_licence_that_comes_back_after_another(d: Deployment) -> None:
    own = issue(d, d.a)
    other = issue(d, d.a)
    batch = [resource(f"b{i}", licence_id=lid) for i, lid in enumerate((own, other, own))]
    receipt = d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)
    registered = d.events(d.resources, "ResourceRegistered", receipt)
    assert [e["licenceId"] for e in registered] == [own, other, own]


def test_batch_under_a_revoked_licence_reverts(d: Deployment) -> None:
    own = issue(d, d.a)
    revoked = issue(d, d.a)
    d.send(d.licences.functions.revoke(revoked), d.a)
    batch = [resource("b1", licence_id=own), resource("b2", licence_id=revoked)]
    with expect_revert("ResourceRegistryLicenceRevoked", licenceId=revoked):
        d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)


def test_batch_under_an_unknown_licence_reverts(d: Deployment) -> None:
    with expect_revert("ResourceRegistryUnknownLicence", licenceId=7):
        d.send(d.resources.functions.registerBatch(batch_of(resource("b1", licence_id=7))), d.a)


def test_batch_with_a_supersedes_link_reverts(d: Deployment) -> None:
    batch = [resource("b1", links=[(SUPERSEDES, sha(b"old"))])]
    with expect_revert("ResourceRegistrySupersedesLinkNotAllowed", linkIndex=0, target=sha(b"old")):
        d.send(d.resources.functions.registerBatch(batch_of(*batch)), d.a)


@pytest.mark.parametrize(
    "link", [(NONE, sha(b"t")), (DERIVED_FROM, ZERO32)], ids=["none-relation", "zero-target"]
)
def test_batch_with_an_invalid_link_reverts(d: Deployment, link: tuple[int, bytes]) -> None:
    r = resource("b1", links=[(DIGITISED_FROM, sha(b"ok")), link])
    with expect_revert(
        "ResourceRegistryInvalidLink", linkIndex=1, relation=link[0], target=link[1]
    ):
        d.send(d.resources.functions.registerBatch(batch_of(r)), d.a)


FIRST = packed(resource("first"))
SECOND = packed(resource("second", links=[(DERIVED_FROM, sha(b"src"))]))


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        (SECOND[:1], "one byte of an entry"),
        (SECOND[:69], "head cut short"),
        (SECOND[:70], "head without its CID"),
        (SECOND[: 70 + 34], "CID without the link count"),
        (SECOND[:-1], "last link cut short"),
        (SECOND[:-33], "link count promises one more link"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_truncated_batch_entry_reverts_with_its_offset(
    d: Deployment, tail: bytes, why: str
) -> None:
    with expect_revert("ResourceRegistryMalformedBatch", offset=len(FIRST)):
        d.send(d.resources.functions.registerBatch(FIRST + tail), d.a)
    assert not d.resources.functions.exists(resource_id(d.a, resource("first")[0])).call()


def test_a_cid_length_past_the_end_reverts(d: Deployment) -> None:
    entry = bytearray(packed(resource("b1")))
    entry[68:70] = (0xFFFF).to_bytes(2, "big")
    with expect_revert("ResourceRegistryMalformedBatch", offset=0):
        d.send(d.resources.functions.registerBatch(bytes(entry)), d.a)


@pytest.mark.parametrize("relation", [5, 255])
def test_a_relation_outside_the_enum_reverts(d: Deployment, relation: int) -> None:
    entry = bytearray(SECOND)
    entry[-33] = relation
    with expect_revert("ResourceRegistryMalformedBatch", offset=len(FIRST)):
        d.send(d.resources.functions.registerBatch(FIRST + bytes(entry)), d.a)


# -- supersede -------------------------------------------------------------------------------


def test_superseding_links_old_and_new(d: Deployment) -> None:
    old = register(d, d.a, resource("edition 1"))
    new_input = resource("edition 2", links=[(DERIVED_FROM, sha(b"scan"))])
    new = resource_id(d.a, new_input[0])
    fn = d.resources.functions.supersede(old, new_input)
    assert fn.call({"from": d.a}) == new
    receipt = d.send(fn, d.a)
    assert [e["id"] for e in d.events(d.resources, "ResourceRegistered", receipt)] == [new]
    assert d.events(d.resources, "ProvenanceLinked", receipt) == [
        {"id": new, "relation": DERIVED_FROM, "target": sha(b"scan")},
        {"id": new, "relation": SUPERSEDES, "target": old},
    ]
    assert d.events(d.resources, "ResourceSuperseded", receipt) == [{"oldId": old, "newId": new}]
    assert record(d, old)["supersededBy"] == new
    assert record(d, new)["supersededBy"] == ZERO32


def test_superseded_successor_can_be_superseded_in_turn(d: Deployment) -> None:
    v1 = register(d, d.a, resource("v1"))
    d.send(d.resources.functions.supersede(v1, resource("v2")), d.a)
    v2 = resource_id(d.a, resource("v2")[0])
    d.send(d.resources.functions.supersede(v2, resource("v3")), d.a)
    assert record(d, v2)["supersededBy"] == resource_id(d.a, resource("v3")[0])


def test_resource_cannot_be_superseded_twice(d: Deployment) -> None:
    old = register(d, d.a, resource("v1"))
    d.send(d.resources.functions.supersede(old, resource("v2")), d.a)
    new = resource_id(d.a, resource("v2")[0])
    with expect_revert("ResourceRegistryAlreadySuperseded", id=old, supersededBy=new):
        d.send(d.resources.functions.supersede(old, resource("v3")), d.a)


def test_member_cannot_supersede_another_members_resource(d: Deployment) -> None:
    old = register(d, d.a, resource("v1"))
    with expect_revert("ResourceRegistryNotOwner", id=old, account=d.b):
        d.send(d.resources.functions.supersede(old, resource("v2")), d.b)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin"])
def test_non_member_cannot_supersede(d: Deployment, who: str) -> None:
    old = register(d, d.a, resource("v1"))
    sender = getattr(d, who)
    with expect_revert("ResourceRegistryNotMember", account=sender):
        d.send(d.resources.functions.supersede(old, resource("v2")), sender)


def test_superseding_an_unknown_resource_reverts(d: Deployment) -> None:
    missing = resource_id(d.a, sha(b"missing"))
    with expect_revert("ResourceRegistryUnknownResource", id=missing):
        d.send(d.resources.functions.supersede(missing, resource("v2")), d.a)


def test_superseding_with_the_same_content_reverts(d: Deployment) -> None:
    old = register(d, d.a, resource("v1"))
    with expect_revert("ResourceRegistryAlreadyRegistered", id=old):
        d.send(d.resources.functions.supersede(old, resource("v1")), d.a)


def test_supersede_rejects_an_explicit_supersedes_link(d: Deployment) -> None:
    old = register(d, d.a, resource("v1"))
    r = resource("v2", links=[(SUPERSEDES, old)])
    with expect_revert("ResourceRegistrySupersedesLinkNotAllowed", linkIndex=0, target=old):
        d.send(d.resources.functions.supersede(old, r), d.a)


def test_supersede_checks_the_successors_licence(d: Deployment) -> None:
    old = register(d, d.a, resource("v1"))
    foreign = issue(d, d.c)
    with expect_revert("ResourceRegistryNotLicensor", licenceId=foreign, account=d.a):
        d.send(d.resources.functions.supersede(old, resource("v2", licence_id=foreign)), d.a)


# -- setLicence ------------------------------------------------------------------------------


def test_owner_changes_and_clears_the_licence(d: Deployment) -> None:
    rid = register(d, d.a, resource("map"))
    licence_id = issue(d, d.a)
    changed = d.send(d.resources.functions.setLicence(rid, licence_id), d.a)
    assert d.events(d.resources, "ResourceLicenceChanged", changed) == [
        {"id": rid, "previousLicenceId": 0, "licenceId": licence_id}
    ]
    assert record(d, rid)["licenceId"] == licence_id
    cleared = d.send(d.resources.functions.setLicence(rid, 0), d.a)
    assert d.events(d.resources, "ResourceLicenceChanged", cleared) == [
        {"id": rid, "previousLicenceId": licence_id, "licenceId": 0}
    ]
    assert record(d, rid)["licenceId"] == 0


def test_member_cannot_change_the_licence_of_another_members_resource(d: Deployment) -> None:
    rid = register(d, d.a, resource("map"))
    licence_id = issue(d, d.b)
    with expect_revert("ResourceRegistryNotOwner", id=rid, account=d.b):
        d.send(d.resources.functions.setLicence(rid, licence_id), d.b)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin"])
def test_non_member_cannot_set_a_licence(d: Deployment, who: str) -> None:
    rid = register(d, d.a, resource("map"))
    sender = getattr(d, who)
    with expect_revert("ResourceRegistryNotMember", account=sender):
        d.send(d.resources.functions.setLicence(rid, 0), sender)


def test_setting_the_licence_of_an_unknown_resource_reverts(d: Deployment) -> None:
    missing = resource_id(d.a, sha(b"missing"))
    with expect_revert("ResourceRegistryUnknownResource", id=missing):
        d.send(d.resources.functions.setLicence(missing, 0), d.a)


def test_owner_cannot_attach_another_members_licence(d: Deployment) -> None:
    rid = register(d, d.a, resource("map"))
    foreign = issue(d, d.b)
    with expect_revert("ResourceRegistryNotLicensor", licenceId=foreign, account=d.a):
        d.send(d.resources.functions.setLicence(rid, foreign), d.a)


def test_owner_cannot_attach_a_revoked_licence(d: Deployment) -> None:
    rid = register(d, d.a, resource("map"))
    licence_id = issue(d, d.a)
    d.send(d.licences.functions.revoke(licence_id), d.a)
    with expect_revert("ResourceRegistryLicenceRevoked", licenceId=licence_id):
        d.send(d.resources.functions.setLicence(rid, licence_id), d.a)


def test_owner_cannot_attach_an_unknown_licence(d: Deployment) -> None:
    rid = register(d, d.a, resource("map"))
    with expect_revert("ResourceRegistryUnknownLicence", licenceId=42):
        d.send(d.resources.functions.setLicence(rid, 42), d.a)
