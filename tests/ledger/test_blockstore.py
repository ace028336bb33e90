"""ledger.blockstore: the embedded content store, blocks as verified files."""

from __future__ import annotations

import base64
import io
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.blockstore import LocalBlockstore
from ledger.cid import (
    PROFILES,
    Profile,
    ProfileSpec,
    cid_from_string,
    cid_of_bytes,
    cid_to_string,
)
from ledger.content import ContentStore
from ledger.errors import InvalidInput, NotFound, StorageError
from ledger.types import Cid
from ledger.unixfs import links, walk

TINY = ProfileSpec(chunk_size=8, max_links=3, cid_version=0, raw_leaves=False)
TINY_RAW = ProfileSpec(chunk_size=8, max_links=3, cid_version=1, raw_leaves=True)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlockstore:
    return LocalBlockstore(tmp_path / "content")


def _block_file(store: LocalBlockstore, cid: bytes) -> Path:
    # The documented layout: blocks/<next-to-last 2 chars>/<"b" + base32 of the binary CID>.
    key = "b" + base64.b32encode(cid).decode().rstrip("=").lower()
    return store.root / "blocks" / key[-3:-1] / key


def _block_count(store: LocalBlockstore) -> int:
    return sum(1 for _ in (store.root / "blocks").glob("*/*"))


def _sizes(spec: ProfileSpec) -> list[int]:
    chunk, fanout = spec.chunk_size, spec.max_links
    return [0, 1, chunk - 1, chunk, chunk + 1, chunk * fanout, chunk * fanout + 1]


def test_the_local_blockstore_is_a_content_store(store: LocalBlockstore) -> None:
    assert isinstance(store, ContentStore)


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("which", range(7))
def test_put_then_cat_gives_back_the_bytes_under_the_kubo_cid(
    store: LocalBlockstore, profile: Profile, which: int
) -> None:
    spec = PROFILES[profile]
    # every boundary of the real profiles, capped at 3 chunks past one full node
    size = min(_sizes(spec)[which], spec.chunk_size * 3 + 1)
    data = random.Random(which).randbytes(size)
    info = store.put(io.BytesIO(data), profile=profile)
    assert info.cid == cid_of_bytes(data, profile)
    assert info.size == size
    assert b"".join(store.cat(info.cid)) == data


@pytest.mark.parametrize("spec", [TINY, TINY_RAW], ids=["dag-pb-leaves", "raw-leaves"])
@pytest.mark.parametrize("size", [*_sizes(TINY), 8 * 9, 8 * 9 + 1, 8 * 27 + 5])
def test_multi_level_trees_round_trip(store: LocalBlockstore, spec: ProfileSpec, size: int) -> None:
    data = random.Random(size).randbytes(size)
    pieces = [data[i : i + 5] for i in range(0, len(data), 5)]  # odd pieces from an iterator
    info = store.put(iter(pieces), profile=spec)
    assert info.cid == cid_of_bytes(data, spec)
    assert b"".join(store.cat(info.cid)) == data
    assert store.pins() == [info.cid]


def test_a_corrupted_block_on_disk_is_detected_and_never_served(store: LocalBlockstore) -> None:
    data = bytes(range(256)) * 4
    info = store.put([data], profile=TINY_RAW)
    leaves = [b.cid for b in walk(info.cid, store.get_block) if b.cid[:2] == b"\x01\x55"]
    leaf = leaves[2]  # the third 8-byte leaf
    path = _block_file(store, leaf)
    path.write_bytes(b"X" + path.read_bytes()[1:])
    served = bytearray()
    with pytest.raises(
        StorageError,
        match=r"is corrupt on disk \(hash mismatch\) — restore it from a copy or re-add",
    ):
        for chunk in store.cat(info.cid):
            served += chunk
    assert served == data[:16]  # the two intact leaves before it, and not a byte more
    with pytest.raises(StorageError, match="is corrupt on disk"):
        store.get_block(Cid(cid_to_string(leaf)))


def test_re_adding_the_file_repairs_a_corrupt_block(store: LocalBlockstore) -> None:
    data = b"library consortium " * 50
    info = store.put([data], profile=TINY)
    path = _block_file(store, info.cid_bytes)
    path.write_bytes(b"garbage")
    with pytest.raises(StorageError):
        store.cat(info.cid)
    store.put([data], profile=TINY)
    assert b"".join(store.cat(info.cid)) == data


def test_gc_removes_what_no_pin_reaches_and_keeps_the_pinned(store: LocalBlockstore) -> None:
    kept = store.put([b"kept " * 40], profile=TINY)
    dropped = store.put([b"dropped " * 40], profile=TINY)
    before = _block_count(store)
    kept_blocks = {b.cid for b in walk(kept.cid, store.get_block)}
    store.unpin(dropped.cid)
    removed = store.gc()
    assert removed == before - len(kept_blocks) > 0
    assert _block_count(store) == len(kept_blocks)
    assert b"".join(store.cat(kept.cid)) == b"kept " * 40
    assert not store.has(dropped.cid)
    assert store.gc() == 0


def test_gc_keeps_blocks_shared_with_a_pinned_file(store: LocalBlockstore) -> None:
    shared = b"A" * 8 * 3
    pinned = store.put([shared + b"tail one"], profile=TINY_RAW)
    other = store.put([shared + b"tail two"], profile=TINY_RAW)
    store.unpin(other.cid)
    store.gc()
    assert b"".join(store.cat(pinned.cid)) == shared + b"tail one"


def test_a_put_that_fails_midway_leaves_garbage_that_gc_removes(store: LocalBlockstore) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * 100
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        store.put(failing(), profile=TINY_RAW)
    assert _block_count(store) > 0
    assert store.pins() == []
    assert store.gc() > 0
    assert _block_count(store) == 0


def test_gc_deletes_nothing_when_a_pinned_dag_is_broken(store: LocalBlockstore) -> None:
    info = store.put([b"q" * 100], profile=TINY)
    garbage = store.put([b"unpinned"], profile=TINY)
    store.unpin(garbage.cid)
    _block_file(store, info.cid_bytes).unlink()
    before = _block_count(store)
    with pytest.raises(StorageError, match="garbage collection stopped, nothing was deleted"):
        store.gc()
    assert _block_count(store) == before


def test_pin_of_an_absent_root_is_not_found(store: LocalBlockstore) -> None:
    absent = cid_of_bytes(b"never stored")
    with pytest.raises(NotFound, match=f"block {absent} is not in the local blockstore"):
        store.pin(absent)
    with pytest.raises(NotFound, match="not pinned"):
        store.unpin(absent)


def test_pin_of_an_incomplete_dag_names_the_missing_block(store: LocalBlockstore) -> None:
    info = store.put([b"w" * 100], profile=TINY)
    store.unpin(info.cid)
    child = links(store.get_block(info.cid), cid=info.cid_bytes)[1][0]
    _block_file(store, child).unlink()
    with pytest.raises(NotFound, match=f"block {cid_to_string(child)} is not in"):
        store.pin(info.cid)
    assert store.pins() == []


def test_pinning_twice_and_unpinning_once_leaves_it_unpinned(store: LocalBlockstore) -> None:
    info = store.put([b"abc"])
    store.pin(info.cid)
    assert store.pins() == [info.cid]
    store.unpin(info.cid)
    assert store.pins() == []


def test_cat_of_a_missing_file_is_not_found_before_streaming(store: LocalBlockstore) -> None:
    with pytest.raises(NotFound):
        store.cat(cid_of_bytes(b"absent"))


def test_a_bad_cid_string_is_invalid_input(store: LocalBlockstore) -> None:
    with pytest.raises(InvalidInput, match="is not a valid CID"):
        store.has(Cid("not-a-cid"))


def test_put_refuses_text_chunks(store: LocalBlockstore) -> None:
    with pytest.raises(InvalidInput, match="got a str chunk"):
        store.put(["text"])  # type: ignore[list-item]


def test_a_car_exported_by_one_store_imports_into_another(tmp_path: Path) -> None:
    source = LocalBlockstore(tmp_path / "a")
    target = LocalBlockstore(tmp_path / "b")
    first = source.put([b"first file " * 30], profile=TINY)
    second = source.put([b"second file " * 30], profile=TINY_RAW)
    car = io.BytesIO()
    source.export_car([first.cid, second.cid], car)
    car.seek(0)
    assert target.import_car(car) == [first.cid, second.cid]
    assert sorted(target.pins()) == sorted([first.cid, second.cid])
    assert b"".join(target.cat(second.cid)) == b"second file " * 30


def test_streaming_put_of_64_mib_holds_only_a_few_chunks(store: LocalBlockstore) -> None:
    rng = random.Random(7)

    def generate() -> Iterator[bytes]:
        for _ in range(64):
            yield rng.randbytes(1 << 20)

    tracemalloc.start()
    try:
        info = store.put(generate(), profile=Profile.KUBO_V0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == 64 << 20
    print(f"peak traced memory during a 64 MiB put: {peak / 2**20:.2f} MiB")
    assert peak < 8 << 20, f"put held {peak / 2**20:.1f} MiB at its peak"


def test_block_file_names_are_case_insensitive_safe_for_cidv0(store: LocalBlockstore) -> None:
    info = store.put([b"v0"], profile=Profile.KUBO_V0)
    assert info.cid.startswith("Qm")
    path = _block_file(store, cid_from_string(info.cid))
    assert path.is_file()
    assert path.name == path.name.lower()
