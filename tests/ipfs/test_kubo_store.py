"""KuboStore: behaviour against the real daemon, error mapping with injected transports."""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
from collections.abc import Callable

import httpx
import pytest

from ledger.cid import Block, CidBuilder, Profile, cid_of_bytes, cid_to_string, encode_varint
from ledger.content import ContentStore
from ledger.errors import InvalidInput, NotFound, StorageError
from ledger.kubo import BlockMismatch, ContentUnavailable, KuboStore

CHUNK = 262_144
STORABLE = [Profile.KUBO_V0, Profile.V1_RAW_256K]


def _bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed + size).randbytes(size)


def _pinned(api: str, cid: str) -> bool:
    response = httpx.post(f"{api}/api/v0/pin/ls", params={"arg": cid, "type": "recursive"})
    return response.status_code == 200


# ---------------------------------------------------------------- against the daemon


@pytest.mark.parametrize("profile", STORABLE, ids=lambda p: p.value)
@pytest.mark.parametrize("size", [0, 1, CHUNK + 1, 3 * CHUNK + 17])
def test_put_then_cat_gives_back_the_bytes_under_our_cid(
    kubo_store: KuboStore, profile: Profile, size: int
) -> None:
    data = _bytes(size)
    info = kubo_store.put(iter([data[: size // 2], data[size // 2 :]]), profile=profile)
    assert info.cid == cid_of_bytes(data, profile)
    assert info.size == size
    assert info.sha256 == hashlib.sha256(data).digest()
    assert b"".join(kubo_store.cat(info.cid)) == data


def test_put_streams_a_two_level_file_object_and_cat_walks_every_block(
    kubo_store: KuboStore,
) -> None:
    data = _bytes(174 * CHUNK + 5)  # past one full root: a second level of nodes
    info = kubo_store.put(io.BytesIO(data))
    assert info.cid == cid_of_bytes(data)
    pieces = list(kubo_store.cat(info.cid))
    assert len(pieces) == 175
    assert b"".join(pieces) == data


def test_the_store_is_a_content_store(kubo_store: KuboStore) -> None:
    assert isinstance(kubo_store, ContentStore)


def test_put_pins_and_unpin_then_pin_toggle_the_pin(kubo_api: str, kubo_store: KuboStore) -> None:
    info = kubo_store.put(iter([_bytes(1000, seed=1)]))
    assert _pinned(kubo_api, info.cid)
    kubo_store.unpin(info.cid)
    assert not _pinned(kubo_api, info.cid)
    kubo_store.unpin(info.cid)  # unpinning what is not pinned is not an error
    kubo_store.pin(info.cid)
    assert _pinned(kubo_api, info.cid)


def test_get_block_returns_bytes_that_hash_to_the_cid(kubo_store: KuboStore) -> None:
    data = _bytes(2 * CHUNK + 3, seed=2)
    blocks: list[Block] = []
    builder = CidBuilder(Profile.V1_RAW_256K, on_block=blocks.append)
    builder.update(data)
    root = builder.finish()
    kubo_store.put(iter([data]), profile=Profile.V1_RAW_256K)
    for block in blocks:
        got = kubo_store.get_block(cid_to_string(block.cid))
        assert got == block.data
    assert hashlib.sha256(kubo_store.get_block(root.cid)).digest() == root.cid_bytes[-32:]


def test_has_is_true_for_a_stored_block_and_false_for_an_unknown_one(
    kubo_store: KuboStore,
) -> None:
    info = kubo_store.put(iter([_bytes(100, seed=3)]))
    assert kubo_store.has(info.cid)
    assert not kubo_store.has(cid_of_bytes(b"never stored " + _bytes(32, seed=99)))


def test_cat_of_content_the_node_lacks_raises_not_found(kubo_api: str) -> None:
    missing = cid_of_bytes(b"not on the node " + _bytes(32, seed=98))
    with KuboStore(kubo_api, timeout=1.0) as store, pytest.raises(NotFound, match=missing):
        b"".join(store.cat(missing))


def test_put_refuses_the_1024_link_profile_the_daemon_cannot_build(kubo_store: KuboStore) -> None:
    with pytest.raises(InvalidInput, match=r"unixfs-v1-2025 .* 1024 links per node"):
        kubo_store.put(iter([b"x"]), profile=Profile.UNIXFS_V1_2025)


def test_dag_import_stores_a_car_whose_root_cat_returns(kubo_store: KuboStore) -> None:
    data = _bytes(3 * CHUNK, seed=4)
    blocks: list[Block] = []
    builder = CidBuilder(Profile.KUBO_V0, on_block=blocks.append)
    builder.update(data)
    root = builder.finish()
    roots = kubo_store.dag_import(_car(root.cid_bytes, blocks))
    assert roots == [root.cid]
    assert b"".join(kubo_store.cat(root.cid)) == data


def test_version_names_the_daemon(kubo_store: KuboStore) -> None:
    assert kubo_store.version()


# ---------------------------------------------------------------- without a daemon


def test_a_daemon_that_is_down_gives_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    url = f"http://127.0.0.1:{port}"
    with KuboStore(url, timeout=2.0) as store:
        message = rf"IPFS daemon at {url} is not answering .* start it or check LIBSHARE_IPFS_API"
        with pytest.raises(ContentUnavailable, match=message):
            store.put(iter([b"hello"]))
        with pytest.raises(ContentUnavailable, match=message):
            store.has(cid_of_bytes(b"hello"))
        with pytest.raises(ConnectionError):
            store.version()


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> KuboStore:
    return KuboStore("http://ipfs.test", transport=httpx.MockTransport(handler))


def test_a_block_whose_bytes_do_not_match_its_cid_raises() -> None:
    cid = cid_of_bytes(b"the real bytes", Profile.V1_RAW_256K)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v0/block/get"
        return httpx.Response(200, content=b"other bytes")

    store = _mock(handler)
    with pytest.raises(BlockMismatch, match=f"served a block for {cid} whose sha-256 is"):
        store.get_block(cid)
    with pytest.raises(BlockMismatch):
        b"".join(store.cat(cid))


def test_an_unexpected_answer_is_a_storage_error_with_the_daemons_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"Message": "repo is locked", "Code": 0, "Type": "error"})

    with pytest.raises(StorageError, match=r"refused /api/v0/pin/add: repo is locked"):
        _mock(handler).pin(cid_of_bytes(b"x"))


def test_a_missing_block_is_not_found_and_has_says_false() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = "Failed to get block stats: request timed out"
        return httpx.Response(500, json={"Message": message, "Code": 0, "Type": "error"})

    store = _mock(handler)
    assert not store.has(cid_of_bytes(b"x"))
    with pytest.raises(NotFound, match="does not have"):
        store.get_block(cid_of_bytes(b"x"))


def test_put_raises_naming_both_cids_when_the_daemon_disagrees() -> None:
    other = cid_of_bytes(b"something else")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/api/v0/add":
            request.read()
            return httpx.Response(200, text=json.dumps({"Name": "file", "Hash": other}) + "\n")
        return httpx.Response(200, json={"Pins": [other]})

    ours = cid_of_bytes(b"hello")
    with pytest.raises(
        StorageError, match=f"stored the file as {other} but libshare computes {ours}"
    ):
        _mock(handler).put(iter([b"hello"]))
    assert seen == ["/api/v0/add", "/api/v0/pin/rm"]  # the stray pin is removed


def test_put_sends_the_profile_options_and_the_bytes_as_multipart() -> None:
    captured: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        captured["params"] = dict(request.url.params)
        captured["body"] = request.read()
        cid = cid_of_bytes(b"hello world\n", Profile.V1_RAW_256K)
        return httpx.Response(200, text=json.dumps({"Hash": cid}) + "\n")

    _mock(handler).put(iter([b"hello ", b"world\n"]), profile=Profile.V1_RAW_256K)
    params = captured["params"]
    assert isinstance(params, dict)
    assert params["cid-version"] == "1"
    assert params["raw-leaves"] == "true"
    assert params["chunker"] == "size-262144"
    body = captured["body"]
    assert isinstance(body, bytes)
    assert b"\r\n\r\nhello world\n\r\n--" in body


# ---------------------------------------------------------------- helpers


def _car(root: bytes, blocks: list[Block]) -> bytes:
    """A CARv1: a DAG-CBOR header {roots: [root], version: 1}, then (cid, data) sections."""
    link = b"\x00" + root  # DAG-CBOR tag 42 holds the CID behind a 0x00 multibase byte
    header = (
        b"\xa2"  # map of 2, keys in DAG-CBOR order (shorter first)
        + b"\x65roots\x81\xd8\x2a\x58"
        + bytes((len(link),))
        + link
        + b"\x67version\x01"
    )
    out = [encode_varint(len(header)), header]
    for block in blocks:
        out += [encode_varint(len(block.cid) + len(block.data)), block.cid, block.data]
    return b"".join(out)
