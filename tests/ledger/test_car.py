"""ledger.car: CAR v1 export and import, byte-exact with go-car and Kubo."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from ledger.car import encode_header, read_car, write_car
from ledger.cid import (
    CidBuilder,
    Profile,
    ProfileSpec,
    cid_from_string,
    cid_to_string,
    encode_varint,
)
from ledger.errors import InvalidInput
from ledger.types import Cid
from ledger.unixfs import block_matches_cid, file_chunks, walk

VECTORS = json.loads((Path(__file__).parent.parent / "data" / "car" / "vectors.json").read_text())
SMALL = ProfileSpec(chunk_size=64, max_links=3, cid_version=1, raw_leaves=True)


class _Blocks(dict[bytes, bytes]):
    def add(self, data: bytes, profile: Profile | ProfileSpec) -> Cid:
        builder = CidBuilder(profile, on_block=lambda b: self.__setitem__(b.cid, b.data))
        builder.update(data)
        return builder.finish().cid

    def get(self, cid: Cid) -> bytes:  # type: ignore[override]
        return self[cid_from_string(cid)]


def _car(roots: list[Cid], blocks: _Blocks) -> bytes:
    out = io.BytesIO()
    written = write_car(roots, blocks.get, out)
    assert written == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize("profile", [*Profile, SMALL], ids=str)
def test_a_written_car_reads_back_with_the_root_and_every_block_verified(
    profile: Profile | ProfileSpec,
) -> None:
    blocks = _Blocks()
    data = os.urandom(700_000 if isinstance(profile, Profile) else 1000)
    root = blocks.add(data, profile)
    roots, read = read_car(io.BytesIO(_car([root], blocks)))
    assert roots == [root]
    got = list(read)
    assert got == list(walk(root, blocks.get))  # dag export order: root first, depth first
    assert all(block_matches_cid(b.cid, b.data) for b in got)
    again = {b.cid: b.data for b in got}
    assert b"".join(file_chunks(root, lambda cid: again[cid_from_string(cid)])) == data


def test_a_car_of_several_roots_holds_each_shared_block_once() -> None:
    blocks = _Blocks()
    common = bytes(range(64)) * 3
    first = blocks.add(common + b"first", SMALL)
    second = blocks.add(common + b"second!", SMALL)
    roots, read = read_car(io.BytesIO(_car([first, second], blocks)))
    assert roots == [first, second]
    cids = [b.cid for b in read]
    assert len(cids) == len(set(cids))
    wanted = {b.cid for b in walk(first, blocks.get)} | {b.cid for b in walk(second, blocks.get)}
    assert set(cids) == wanted
    assert cids[0] == cid_from_string(first)


def test_the_header_matches_go_car_byte_for_byte() -> None:
    vector = VECTORS["go_car_single_root"]
    section = bytes.fromhex(vector["header_section_hex"])
    header = encode_header([bytes.fromhex(vector["root_hex"])])
    assert encode_varint(len(header)) + header == section


def test_the_header_and_blocks_match_a_car_an_ipfs_gateway_served() -> None:
    vector = VECTORS["gateway_range"]
    car = bytes.fromhex(vector["car_hex"])
    header = encode_header([cid_from_string(vector["root"])])
    assert encode_varint(len(header)) + header == car[: vector["header_section_length"]]
    roots, read = read_car(io.BytesIO(car))
    assert roots == [vector["root"]]
    assert [cid_to_string(b.cid) for b in read] == [vector["root"], vector["file_cid"]]


def test_a_cidv0_root_header_is_the_hand_derived_dag_cbor() -> None:
    # {"roots": [CID], "version": 1}, keys length-first ("roots" 5 < "version" 7):
    # a2 | 65 "roots" | 81 | d8 2a (tag 42) | 58 23 (bytes, 35) 00 <34-byte CIDv0> |
    # 67 "version" | 01; 56 bytes in all, so the section starts with varint 0x38.
    root = Cid("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")  # the empty file, kubo-v0
    expected = (
        bytes.fromhex("38a265726f6f747381d82a582300")
        + cid_from_string(root)
        + bytes.fromhex("6776657273696f6e01")
    )
    blocks = _Blocks()
    assert blocks.add(b"", Profile.KUBO_V0) == root
    car = _car([root], blocks)
    assert car[:57] == expected
    empty_leaf = bytes.fromhex("0a0408021800")
    assert car[57:] == encode_varint(34 + 6) + cid_from_string(root) + empty_leaf


def test_a_tampered_block_is_refused_naming_it() -> None:
    blocks = _Blocks()
    root = blocks.add(b"x" * 200, SMALL)
    car = bytearray(_car([root], blocks))
    car[-1] ^= 0x01
    _, read = read_car(io.BytesIO(bytes(car)))
    with pytest.raises(
        InvalidInput, match=r"block \d+ \(b\w+\) in the CAR does not hash to its CID"
    ):
        list(read)


def test_a_truncated_car_is_refused() -> None:
    blocks = _Blocks()
    root = blocks.add(b"y" * 200, SMALL)
    car = _car([root], blocks)
    _, read = read_car(io.BytesIO(car[:-3]))
    with pytest.raises(InvalidInput, match="ends inside block"):
        list(read)


def test_a_carv2_or_a_bad_header_is_refused() -> None:
    v2 = bytes.fromhex("0aa16776657273696f6e02")  # the CARv2 pragma {"version": 2}
    with pytest.raises(InvalidInput, match=r"version 2 is not 1 \(a CARv2\?"):
        read_car(io.BytesIO(v2))
    with pytest.raises(InvalidInput, match="header length"):
        read_car(io.BytesIO(b""))
    with pytest.raises(InvalidInput, match="roots is not a list of CIDs"):
        read_car(io.BytesIO(bytes.fromhex("11a265726f6f7473016776657273696f6e01")))


def test_a_block_section_with_a_non_sha256_cid_is_refused() -> None:
    header = encode_header([b"\x01\x55\x12\x20" + hashlib.sha256(b"").digest()])
    body = b"\x01\x55\x13\x40" + bytes(64)  # sha2-512
    car = encode_varint(len(header)) + header + encode_varint(len(body)) + body
    _, read = read_car(io.BytesIO(car))
    with pytest.raises(InvalidInput, match="is not sha2-256"):
        list(read)


def test_empty_roots_list_round_trips() -> None:
    roots, read = read_car(io.BytesIO(_car([], _Blocks())))
    assert roots == []
    assert list(read) == []
