"""ledger.sealed: segmented AES-256-GCM streams and wrapped data keys."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput, ProofError
from ledger.sealed import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    SealError,
    new_data_key,
    open_sealed,
    seal,
    sealed_size,
    unwrap_key,
    wrap_key,
)

KEY = bytes(range(32))
SEG = 64  # a small segment size keeps multi-segment cases fast
SEALED_SEG = SEG + TAG_SIZE


def _seal(data: bytes, segment_size: int = SEG, key: bytes = KEY) -> bytes:
    return b"".join(seal([data], key, segment_size=segment_size))


def _open(sealed: bytes, key: bytes = KEY) -> bytes:
    return b"".join(open_sealed([sealed], key))


def _segments(sealed: bytes) -> list[bytes]:
    body = sealed[HEADER_SIZE:]
    return [body[i : i + SEALED_SEG] for i in range(0, len(body), SEALED_SEG)]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize(
    "size",
    [0, 1, DEFAULT_SEGMENT_SIZE - 1, DEFAULT_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE + 1, 200_000],
)
def test_sealing_then_opening_gives_back_the_bytes_at_the_default_segment_size(
    size: int,
) -> None:
    data = os.urandom(size)
    sealed = b"".join(seal([data], KEY))
    assert len(sealed) == sealed_size(size)
    assert _open(sealed) == data


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=SEG * 6 + 3),
    cuts=st.lists(st.integers(0, SEG * 7), max_size=8),
    open_cuts=st.lists(st.integers(0, SEG * 9), max_size=8),
)
def test_any_chunking_of_plaintext_or_ciphertext_round_trips(
    data: bytes, cuts: list[int], open_cuts: list[int]
) -> None:
    sealed = b"".join(seal(_split(data, cuts), KEY, segment_size=SEG))
    assert len(sealed) == sealed_size(len(data), SEG)
    assert b"".join(open_sealed(_split(sealed, open_cuts), KEY)) == data


def test_empty_plaintext_still_seals_one_final_segment() -> None:
    sealed = _seal(b"")
    assert len(sealed) == HEADER_SIZE + TAG_SIZE
    assert _open(sealed) == b""


def test_the_same_plaintext_seals_differently_each_time() -> None:
    assert _seal(b"same") != _seal(b"same")


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, SEG * 3 + 5), bit=st.integers(0, 10_000))
def test_flipping_any_bit_of_the_ciphertext_fails(size: int, bit: int) -> None:
    sealed = bytearray(_seal(bytes(size)))
    position = bit % (len(sealed) * 8)
    sealed[position // 8] ^= 1 << (position % 8)
    with pytest.raises(SealError):
        _open(bytes(sealed))


def test_swapping_two_segments_fails_naming_the_first() -> None:
    sealed = _seal(os.urandom(SEG * 3 + 1))
    segs = _segments(sealed)
    swapped = sealed[:HEADER_SIZE] + segs[1] + segs[0] + b"".join(segs[2:])
    with pytest.raises(SealError, match="ciphertext segment 0 failed authentication"):
        _open(swapped)


@pytest.mark.parametrize("size", [SEG * 3, SEG * 3 + 1])
def test_dropping_the_last_segment_is_reported_as_truncated(size: int) -> None:
    sealed = _seal(os.urandom(size))
    with pytest.raises(SealError, match="ciphertext is truncated"):
        _open(sealed[: -len(_segments(sealed)[-1])])


def test_a_header_alone_or_a_cut_header_is_truncated() -> None:
    sealed = _seal(b"data")
    with pytest.raises(SealError, match="ciphertext is truncated"):
        _open(sealed[:HEADER_SIZE])
    with pytest.raises(SealError, match="ciphertext is truncated"):
        _open(sealed[: HEADER_SIZE - 1])


def test_appending_a_segment_is_reported_as_data_after_the_final_segment() -> None:
    sealed = _seal(os.urandom(SEG * 2))  # the final segment is a full one
    extra = _segments(sealed)[0]
    with pytest.raises(SealError, match="ciphertext has data after its final segment"):
        _open(sealed + extra)


@pytest.mark.parametrize("size", [0, 5, SEG, SEG * 2 + 7])
@pytest.mark.parametrize("extra", [b"\x00", bytes(TAG_SIZE), os.urandom(SEALED_SEG + 3)])
def test_appending_bytes_fails(size: int, extra: bytes) -> None:
    with pytest.raises(SealError):
        _open(_seal(os.urandom(size)) + extra)


def test_a_wrong_key_fails_at_the_first_segment() -> None:
    sealed = _seal(os.urandom(SEG * 2 + 1))
    with pytest.raises(SealError, match=r"segment 0 failed authentication \(.*wrong key\)"):
        _open(sealed, key=new_data_key())


def test_no_plaintext_of_a_tampered_segment_is_released() -> None:
    data = os.urandom(SEG * 3)
    sealed = bytearray(_seal(data))
    sealed[HEADER_SIZE + SEALED_SEG + 5] ^= 0x80  # inside segment 1
    released = bytearray()
    with pytest.raises(SealError, match="segment 1"):
        for piece in open_sealed([bytes(sealed)], KEY):
            released += piece
    assert released == data[:SEG]


def test_a_changed_segment_size_in_the_header_fails() -> None:
    sealed = bytearray(_seal(os.urandom(SEG * 2)))
    sealed[8] = SEG // 2  # segment size is bytes 5..8 (u32 big endian)
    with pytest.raises(SealError):
        _open(bytes(sealed))


def test_a_foreign_stream_is_refused_by_its_magic() -> None:
    with pytest.raises(SealError, match="not a libshare sealed stream"):
        _open(b"PK\x03\x04" + bytes(60))


def test_seal_errors_are_proof_errors() -> None:
    assert issubclass(SealError, ProofError)


def test_a_short_key_or_a_silly_segment_size_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="data key is 16 bytes long, not 32"):
        list(seal([b"x"], bytes(16)))
    with pytest.raises(InvalidInput, match="segment size 8 is out of range"):
        list(seal([b"x"], KEY, segment_size=8))


# ---------------------------------------------------------------- key wrapping

KEK = hashlib.sha256(b"member kek").digest()
CONTEXT = hashlib.sha256(b"resource plaintext").digest()


def test_a_wrapped_key_unwraps_with_the_same_kek_and_context() -> None:
    data_key = new_data_key()
    wrapped = wrap_key(KEK, data_key, CONTEXT)
    assert len(wrapped) == 69
    assert data_key not in wrapped
    assert unwrap_key(KEK, wrapped, CONTEXT) == data_key


def test_a_wrong_kek_is_named_as_such() -> None:
    wrapped = wrap_key(KEK, new_data_key(), CONTEXT)
    with pytest.raises(SealError, match="wrapped under another key-encryption key"):
        unwrap_key(new_data_key(), wrapped, CONTEXT)


def test_a_wrong_context_fails() -> None:
    wrapped = wrap_key(KEK, new_data_key(), CONTEXT)
    with pytest.raises(SealError, match="does not open for this context"):
        unwrap_key(KEK, wrapped, hashlib.sha256(b"another resource").digest())


@pytest.mark.parametrize("index", range(0, 69, 4))
def test_a_tampered_wrapped_key_fails(index: int) -> None:
    wrapped = bytearray(wrap_key(KEK, new_data_key(), CONTEXT))
    wrapped[index] ^= 0x01
    with pytest.raises(SealError):
        unwrap_key(KEK, bytes(wrapped), CONTEXT)


def test_a_malformed_wrapped_key_is_refused() -> None:
    with pytest.raises(SealError, match="wrapped data key is malformed"):
        unwrap_key(KEK, b"\x01" + bytes(10), CONTEXT)
