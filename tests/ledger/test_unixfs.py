"""ledger.unixfs: decoding what ledger.cid encodes, and walking file DAGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.cid import Block, CidBuilder, ProfileSpec, cid_from_string, cid_to_string
from ledger.errors import InvalidInput
from ledger.types import Cid
from ledger.unixfs import (
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    block_matches_cid,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
    file_chunks,
    file_data,
    is_raw,
    links,
    walk,
)

VECTORS = json.loads((Path(__file__).parent.parent / "data" / "car" / "vectors.json").read_text())

specs = st.builds(
    lambda chunk, fanout, kind: ProfileSpec(
        chunk_size=chunk, max_links=fanout, cid_version=0 if kind == 0 else 1, raw_leaves=kind == 2
    ),
    st.integers(1, 48),
    st.integers(2, 5),
    st.integers(0, 2),
)


def _build(data: bytes, spec: ProfileSpec) -> tuple[Cid, dict[bytes, bytes], list[Block]]:
    made: list[Block] = []
    builder = CidBuilder(spec, on_block=made.append)
    for i in range(0, len(data), 7):  # odd piece size, to cross chunk boundaries
        builder.update(data[i : i + 7])
    info = builder.finish()
    return info.cid, {b.cid: b.data for b in made}, made


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=1500), spec=specs)
def test_every_block_cid_py_writes_decodes_and_encodes_back_byte_for_byte(
    data: bytes, spec: ProfileSpec
) -> None:
    _, _, made = _build(data, spec)
    for block in made:
        if is_raw(block.cid):
            assert file_data(block.data, cid=block.cid) == block.data
            continue
        node = decode_node(block.data, cid=block.cid)
        assert encode_node(node) == block.data
        assert node.data is not None
        assert encode_unixfs(decode_unixfs(node.data)) == node.data


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=1500), spec=specs)
def test_walk_visits_every_block_root_first_and_reassembles_the_file(
    data: bytes, spec: ProfileSpec
) -> None:
    root, blocks, made = _build(data, spec)
    walked = list(walk(root, lambda cid: blocks[cid_from_string(cid)]))
    assert walked[0].cid == made[-1].cid == cid_from_string(root)
    assert {b.cid for b in walked} == set(blocks)
    assert b"".join(file_data(b.data, cid=b.cid) for b in walked) == data
    assert b"".join(file_chunks(root, lambda cid: blocks[cid_from_string(cid)])) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_invalid_input_naming_the_block(raw: bytes) -> None:
    cid = bytes.fromhex("01701220") + bytes(32)
    try:
        node = decode_node(raw, cid=cid)
        if node.data is not None:
            decode_unixfs(node.data, cid=cid)
    except InvalidInput as exc:
        assert cid_to_string(cid) in str(exc)


def test_links_of_an_internal_node_are_its_children_with_tsize() -> None:
    spec = ProfileSpec(chunk_size=4, max_links=3, cid_version=1, raw_leaves=True)
    root, blocks, made = _build(b"abcdefghij", spec)
    root_bytes = cid_from_string(root)
    children = links(blocks[root_bytes], cid=root_bytes)
    assert [c for c, _ in children] == [b.cid for b in made[:-1]]
    assert [t for _, t in children] == [4, 4, 2]
    assert links(blocks[children[0][0]], cid=children[0][0]) == []


def test_a_real_gateway_file_node_decodes_to_four_raw_links_with_their_blocksizes() -> None:
    vector = VECTORS["gateway_range"]
    car = bytes.fromhex(vector["car_hex"])
    cid = cid_from_string(vector["file_cid"])
    data = car[car.rindex(cid) + len(cid) :]  # the last section
    assert block_matches_cid(cid, data)
    node = decode_node(data, cid=cid)
    assert all(is_raw(link.hash) and link.name == "" for link in node.links)
    assert [link.tsize for link in node.links] == vector["file_blocksizes"]
    assert node.data is not None
    message = decode_unixfs(node.data)
    assert message.type is UnixFSType.FILE
    assert message.filesize == vector["file_size"]
    assert list(message.blocksizes) == vector["file_blocksizes"]
    assert encode_node(node) == data


def test_a_directory_is_refused_as_a_file() -> None:
    directory = encode_node(
        PBNode((PBLink(bytes(36), "a.txt", 5),), encode_unixfs(UnixFSData(UnixFSType.DIRECTORY)))
    )
    cid = bytes.fromhex("01701220") + bytes(32)
    with pytest.raises(InvalidInput, match="is a UnixFS directory, not a file"):
        list(file_chunks(cid_to_string(cid), lambda _: directory))


def test_data_before_links_is_rejected_naming_the_block() -> None:
    cid = bytes.fromhex("01701220") + bytes(32)
    data_first = bytes.fromhex("0a020802") + encode_node(PBNode((PBLink(bytes(34)),)))
    with pytest.raises(InvalidInput, match=f"{cid_to_string(cid)}.*Links after Data"):
        decode_node(data_first, cid=cid)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes.fromhex("1a00"), "unexpected PBNode field 3"),
        (bytes.fromhex("0a02080200"), "field number 0"),
        (bytes.fromhex("0a05"), "runs past the end"),
        (bytes.fromhex("12021200"), "PBLink without Hash"),
        (bytes.fromhex("1204180012000a00"), "out of order"),
        (bytes.fromhex("0a000a00"), "duplicate Data"),
        (bytes.fromhex("0d00000000"), "unsupported wire type 5"),
    ],
)
def test_malformed_dag_pb_is_invalid_input(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        decode_node(raw)


def test_unixfs_without_type_or_with_an_unknown_type_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="without Type"):
        decode_unixfs(bytes.fromhex("1800"))
    with pytest.raises(InvalidInput, match="unknown UnixFS Type 9"):
        decode_unixfs(bytes.fromhex("0809"))


def test_packed_blocksizes_are_read_like_unpacked_ones() -> None:
    packed = bytes.fromhex("0802") + bytes.fromhex("1806") + bytes.fromhex("22020303")
    assert decode_unixfs(packed).blocksizes == (3, 3)


def test_a_parent_whose_blocksizes_lie_about_a_child_is_rejected() -> None:
    spec = ProfileSpec(chunk_size=4, max_links=3, cid_version=1, raw_leaves=True)
    _, blocks, made = _build(b"abcdefgh", spec)
    root = decode_node(made[-1].data)
    assert root.data is not None
    lying = UnixFSData(UnixFSType.FILE, None, 9, (5, 4))
    forged = encode_node(PBNode(root.links, encode_unixfs(lying)))
    forged_cid = b"\x01\x70\x12\x20" + bytes(32)
    blocks[forged_cid] = forged
    with pytest.raises(InvalidInput, match="blocksizes says 5 bytes but the DAG holds 4"):
        list(file_chunks(cid_to_string(forged_cid), lambda cid: blocks[cid_from_string(cid)]))


def test_a_filesize_that_disagrees_with_blocksizes_is_rejected() -> None:
    leaf = encode_node(PBNode((), encode_unixfs(UnixFSData(UnixFSType.FILE, b"abc", 4))))
    cid = b"\x12\x20" + bytes(32)
    with pytest.raises(InvalidInput, match="filesize says 4 bytes but the DAG holds 3"):
        list(file_chunks(cid_to_string(cid), lambda _: leaf))
