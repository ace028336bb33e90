"""ledger.cid: Kubo-identical CIDs, computed in one streaming pass."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.cid import (
    PROFILES,
    Block,
    CidBuilder,
    Profile,
    ProfileSpec,
    cid_from_string,
    cid_of_bytes,
    cid_of_file,
    cid_to_string,
)
from ledger.errors import InvalidInput

VECTORS_FILE = Path(__file__).parent.parent / "data" / "cid" / "vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]
SLOW = os.environ.get("LIBSHARE_SLOW_TESTS") == "1"


def _generate(vector: dict[str, Any]) -> bytes:
    spec = vector["input"]
    size: int = vector["size"]
    if "hex" in spec:
        data = bytes.fromhex(str(spec["hex"]))
        assert len(data) == size
        return data
    generator = spec["generator"]
    if generator == "zeros":
        return bytes(size)
    period = {"pattern251": 251, "pattern16": 16}[generator]
    return (bytes(range(period)) * (size // period + 1))[:size]


# -- golden vectors


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if not v.get("slow")],
    ids=lambda v: f"{v['profile']}-{v['input'].get('generator', 'hex')}-{v['size']}",
)
def test_golden_vector_gives_the_recorded_cid(vector: dict[str, Any]) -> None:
    assert cid_of_bytes(_generate(vector), Profile(vector["profile"])) == vector["cid"]


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="hashes ~8 GB; set LIBSHARE_SLOW_TESTS=1 to run")
@pytest.mark.parametrize("vector", [v for v in VECTORS if v.get("slow")], ids=lambda v: v["cid"])
def test_golden_vector_past_depth_two_gives_the_recorded_cid(vector: dict[str, Any]) -> None:
    assert vector["input"]["generator"] == "zeros"
    builder = CidBuilder(Profile(vector["profile"]))
    piece = bytes(8 << 20)
    left = vector["size"]
    while left:
        n = min(left, len(piece))
        builder.update(memoryview(piece)[:n])
        left -= n
    assert builder.finish().cid == vector["cid"]


def test_every_vector_names_its_source() -> None:
    assert all(v["source"] and v["cid"] for v in VECTORS)
    assert {v["profile"] for v in VECTORS} == {p.value for p in Profile}


def test_profiles_carry_the_documented_parameters() -> None:
    assert PROFILES[Profile.KUBO_V0] == ProfileSpec(262_144, 174, 0, False)
    assert PROFILES[Profile.UNIXFS_V1_2025] == ProfileSpec(1_048_576, 1024, 1, True)
    assert PROFILES[Profile.V1_RAW_256K] == ProfileSpec(262_144, 174, 1, True)


def test_cid_prefixes_follow_the_profile() -> None:
    data = b"x" * 600_000
    assert cid_of_bytes(data, Profile.KUBO_V0).startswith("Qm")
    assert cid_of_bytes(data, Profile.V1_RAW_256K).startswith("bafy")  # dag-pb root
    assert cid_of_bytes(data, Profile.UNIXFS_V1_2025).startswith("bafk")  # one raw chunk


# -- an independent model: a literal port of boxo's balanced.Layout / fillNodeRec


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _reference_root(data: bytes, spec: ProfileSpec) -> tuple[bytes, int]:
    """(root CID, cumulative size) the way boxo builds it, recursively and all at once."""
    node_prefix = b"\x12\x20" if spec.cid_version == 0 else b"\x01\x70\x12\x20"
    pending = deque(data[i : i + spec.chunk_size] for i in range(0, len(data), spec.chunk_size))

    def leaf(chunk: bytes) -> tuple[bytes, int, int]:
        if spec.raw_leaves:
            return b"\x01\x55\x12\x20" + hashlib.sha256(chunk).digest(), len(chunk), len(chunk)
        unixfs = b"\x08\x02" + (_field(2, chunk) if chunk else b"") + b"\x18" + _varint(len(chunk))
        block = _field(1, unixfs)
        return node_prefix + hashlib.sha256(block).digest(), len(block), len(chunk)

    def node(children: list[tuple[bytes, int, int]]) -> tuple[bytes, int, int]:
        links = b"".join(
            _field(2, _field(1, c) + _field(2, b"") + b"\x18" + _varint(t)) for c, t, _ in children
        )
        total = sum(f for _, _, f in children)
        unixfs = b"\x08\x02\x18" + _varint(total)
        unixfs += b"".join(b"\x20" + _varint(f) for _, _, f in children)
        block = links + _field(1, unixfs)
        tsize = len(block) + sum(t for _, t, _ in children)
        return node_prefix + hashlib.sha256(block).digest(), tsize, total

    def fill(children: list[tuple[bytes, int, int]], depth: int) -> tuple[bytes, int, int]:
        while len(children) < spec.max_links and pending:
            children.append(leaf(pending.popleft()) if depth == 1 else fill([], depth - 1))
        return node(children)

    if not pending:
        cid, tsize, _ = leaf(b"")
        return cid, tsize
    root = leaf(pending.popleft())
    depth = 1
    while pending:
        root = fill([root], depth)
        depth += 1
    return root[0], root[1]


TINY_SPECS = st.builds(
    ProfileSpec,
    chunk_size=st.integers(1, 7),
    max_links=st.integers(2, 5),
    cid_version=st.just(1),
    raw_leaves=st.booleans(),
) | st.builds(
    ProfileSpec,
    chunk_size=st.integers(1, 7),
    max_links=st.integers(2, 5),
    cid_version=st.just(0),
    raw_leaves=st.just(False),
)


@settings(max_examples=300, deadline=None)
@given(spec=TINY_SPECS, data=st.binary(max_size=400))
def test_streaming_builder_matches_boxo_balanced_layout(spec: ProfileSpec, data: bytes) -> None:
    builder = CidBuilder(spec)
    builder.update(data)
    info = builder.finish()
    assert (info.cid_bytes, info.dag_size) == _reference_root(data, spec)


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    profile=st.sampled_from(list(Profile)),
)
def test_any_split_into_pieces_gives_the_same_root(
    data: bytes, cuts: list[int], profile: Profile
) -> None:
    spec = PROFILES[profile]
    small = ProfileSpec(64, 3, spec.cid_version, spec.raw_leaves)
    whole = CidBuilder(small)
    whole.update(data)
    pieces = CidBuilder(small)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for start, end in itertools.pairwise(bounds):
        pieces.update(memoryview(data)[start:end])
    assert pieces.finish() == whole.finish()


# -- the tree shape at the max_links boundaries


def _decode_links(block: bytes) -> list[bytes]:
    """The child CIDs of a dag-pb block (minimal protobuf reader, independent of ledger.cid)."""

    def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos

    def fields(buf: bytes) -> list[tuple[int, bytes | int]]:
        out: list[tuple[int, bytes | int]] = []
        pos = 0
        while pos < len(buf):
            key, pos = read_varint(buf, pos)
            if key & 7 == 2:
                length, pos = read_varint(buf, pos)
                out.append((key >> 3, buf[pos : pos + length]))
                pos += length
            else:
                value, pos = read_varint(buf, pos)
                out.append((key >> 3, value))
        return out

    links = []
    for number, value in fields(block):
        if number == 2:
            assert isinstance(value, bytes)
            link = dict(fields(value))
            assert link[2] == b""  # Name present and empty, as go-merkledag writes it
            cid = link[1]
            assert isinstance(cid, bytes)
            links.append(cid)
    return links


def _depth(data: bytes, spec: ProfileSpec) -> int:
    blocks: dict[bytes, bytes] = {}
    builder = CidBuilder(spec, on_block=lambda b: blocks.__setitem__(b.cid, b.data))
    builder.update(data)
    cid = builder.finish().cid_bytes
    depth = 0
    while cid[:2] != b"\x01\x55" and (children := _decode_links(blocks[cid])):
        cid = children[0]
        depth += 1
    return depth


@pytest.mark.parametrize(
    ("chunks", "depth"),
    [(1, 0), (2, 1), (174, 1), (175, 2), (174 * 174, 2), (174 * 174 + 1, 3)],
)
def test_depth_grows_only_past_max_links_to_the_power_of_depth(chunks: int, depth: int) -> None:
    spec = ProfileSpec(chunk_size=1, max_links=174, cid_version=1, raw_leaves=True)
    assert _depth(os.urandom(chunks), spec) == depth


def test_175_chunks_make_a_full_subtree_and_a_one_leaf_subtree() -> None:
    spec = ProfileSpec(chunk_size=1, max_links=174, cid_version=0, raw_leaves=False)
    blocks: dict[bytes, bytes] = {}
    builder = CidBuilder(spec, on_block=lambda b: blocks.__setitem__(b.cid, b.data))
    builder.update(os.urandom(175))
    root = _decode_links(blocks[builder.finish().cid_bytes])
    assert [len(_decode_links(blocks[c])) for c in root] == [174, 1]


# -- blocks handed to on_block


@pytest.mark.parametrize("profile", list(Profile))
def test_every_block_hashes_to_its_cid_and_parents_follow_children(profile: Profile) -> None:
    spec = PROFILES[profile]
    small = ProfileSpec(100, 4, spec.cid_version, spec.raw_leaves)
    data = os.urandom(100 * 37 + 5)
    delivered: list[Block] = []
    builder = CidBuilder(small, on_block=delivered.append)
    builder.update(data)
    info = builder.finish()

    seen: set[bytes] = set()
    for block in delivered:
        assert block.cid.endswith(hashlib.sha256(block.data).digest())
        if block.cid[:2] != b"\x01\x55":
            assert all(child in seen for child in _decode_links(block.data))
        seen.add(block.cid)
    assert delivered[-1].cid == info.cid_bytes
    assert info.dag_size == sum(len(b.data) for b in delivered)
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).digest()


def test_on_block_does_not_change_the_cid() -> None:
    data = os.urandom(700_000)
    for profile in Profile:
        builder = CidBuilder(profile, on_block=lambda _b: None)
        builder.update(data)
        assert builder.finish().cid == cid_of_bytes(data, profile)


def test_empty_file_delivers_its_single_block() -> None:
    delivered: list[Block] = []
    builder = CidBuilder(on_block=delivered.append)
    info = builder.finish()
    assert info.cid == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert delivered == [Block(info.cid_bytes, bytes.fromhex("0a0408021800"))]
    assert (info.size, info.dag_size) == (0, 6)
    assert info.sha256 == hashlib.sha256(b"").digest()


def test_builder_refuses_update_after_finish() -> None:
    builder = CidBuilder()
    builder.finish()
    with pytest.raises(InvalidInput, match=r"update\(\) called after finish\(\)"):
        builder.update(b"late")
    with pytest.raises(InvalidInput, match="finish\\(\\) called twice"):
        builder.finish()


# -- files


def test_file_gives_the_same_root_as_its_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * 262_144 + 99)
    path = tmp_path / "scan.tiff"
    path.write_bytes(data)
    for profile in Profile:
        info = cid_of_file(path, profile)
        assert info.cid == cid_of_bytes(data, profile)
        assert info.sha256 == hashlib.sha256(data).digest()
        assert info.size == len(data)


def test_missing_file_is_invalid_input_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nope\.pdf'.*no such file — check the path"):
        cid_of_file(tmp_path / "nope.pdf")


def test_directory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="it is a directory — give the path of a regular file"):
        cid_of_file(tmp_path)


def test_path_through_a_file_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"plain/inner'.*Not a directory"):
        cid_of_file(tmp_path / "plain" / "inner")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "secret.pdf"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(InvalidInput, match="permission denied — grant the service read access"):
        cid_of_file(path)


def test_file_growing_while_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "growing.bin"
    path.write_bytes(os.urandom(300_000))

    def append(_block: Block) -> None:
        with path.open("ab") as handle:
            handle.write(b"more")

    with pytest.raises(InvalidInput, match="changed while being read"):
        cid_of_file(path, on_block=append)


# -- CID strings


@pytest.mark.parametrize(
    "text",
    [
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        cid_of_bytes(b"y" * 300_000, Profile.V1_RAW_256K),
    ],
)
def test_cid_string_round_trips(text: str) -> None:
    assert cid_to_string(cid_from_string(text)) == text


@settings(max_examples=50)
@given(
    digest=st.binary(min_size=32, max_size=32),
    prefix=st.sampled_from([b"\x12\x20", b"\x01\x70\x12\x20", b"\x01\x55\x12\x20"]),
)
def test_any_sha256_cid_round_trips(digest: bytes, prefix: bytes) -> None:
    assert cid_from_string(cid_to_string(prefix + digest)) == prefix + digest


_B32_SHORT_DIGEST = "b" + base64.b32encode(b"\x01\x55\x12\x20" + bytes(31)).decode().lower().rstrip(
    "="
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a base58btc CIDv0"),
        ("zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7", "not a base58btc CIDv0"),
        ("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff50", "bad character '0'"),
        (_B32_SHORT_DIGEST, "digest length"),
        ("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei", "Incorrect padding"),
        ("bafkrei!jjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4", "Non-base32|Incorrect"),
    ],
)
def test_bad_cid_string_is_invalid_input_naming_it(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=f"{text!r} is not a valid CID: .*({reason})"):
        cid_from_string(text)


def test_bad_binary_cid_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="1220ab is not a supported binary CID"):
        cid_to_string(b"\x12\x20\xab")


# -- profile specs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size 0 is out of range — use 1 to 1048576"),
        ({"chunk_size": 2 << 20}, "chunk_size 2097152 is out of range"),
        ({"max_links": 1}, "max_links 1 is out of range"),
        ({"cid_version": 2}, "cid_version 2 is not 0 or 1"),
        ({"cid_version": 0, "raw_leaves": True}, "CIDv0 cannot address raw leaves"),
    ],
)
def test_profile_spec_refuses_impossible_settings(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "chunk_size": 1024,
        "max_links": 4,
        "cid_version": 1,
        "raw_leaves": True,
    }
    with pytest.raises(InvalidInput, match=message):
        ProfileSpec(**(base | kwargs))


def test_unknown_profile_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown CID profile 'kubo-v2' — use one of kubo-v0"):
        CidBuilder("kubo-v2")  # type: ignore[arg-type]
