"""CAR v1 archives (https://ipld.io/specs/transport/car/carv1/), as ``ipfs dag export``.

Layout::

    varint(len(header)) || header || (varint(len(cid) + len(data)) || cid || data)*

The header is the DAG-CBOR map ``{"roots": [CID, ...], "version": 1}``. DAG-CBOR is
canonical: map keys sorted length first, then bytewise, so ``"roots"`` (5 bytes) comes
before ``"version"`` (7 bytes); a CID is CBOR tag 42 over a byte string holding ``0x00``
(the multibase "identity" prefix) followed by the binary CID. The header encoder is
written out by hand below; the reader decodes the small CBOR subset a header may use.

Blocks follow in the order :func:`ledger.unixfs.walk` gives (depth first, parents
first, left to right — Kubo's ``dag export`` order), each block once. CIDv0 blocks are
written with their CIDv0 bytes (the bare multihash), as go-car does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from ledger.cid import Block, cid_from_string, cid_to_string, decode_varint, encode_varint
from ledger.errors import InvalidInput
from ledger.types import Cid
from ledger.unixfs import block_matches_cid, walk

__all__ = ["encode_header", "read_car", "write_car"]

_MAX_HEADER = 1 << 20
_MAX_SECTION = 8 << 20
"""Kubo's largest block is 2 MiB; anything near this is not a block but a broken file."""

_MAX_DEPTH = 8
_CID_TAG = b"\xd8\x2a"  # major type 6 (tag), 1-byte argument 42


def _cbor_head(major: int, value: int) -> bytes:
    """A CBOR item head in its shortest form (RFC 8949 §3, required by DAG-CBOR)."""
    if value < 24:
        return bytes((major << 5 | value,))
    for extra, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * width):
            return bytes((major << 5 | extra,)) + value.to_bytes(width, "big")
    raise InvalidInput(f"CBOR length {value} is too large")


def encode_header(roots: Sequence[bytes]) -> bytes:
    """The DAG-CBOR header ``{"roots": [...], "version": 1}`` for binary root CIDs."""
    out = bytearray(b"\xa2")  # map, 2 entries
    out += b"\x65roots" + _cbor_head(4, len(roots))  # text(5), array(n)
    for cid in roots:
        out += _CID_TAG + _cbor_head(2, len(cid) + 1) + b"\x00" + cid  # tag 42, bytes
    out += b"\x67version\x01"  # text(7), unsigned 1
    return bytes(out)


def write_car(roots: Sequence[Cid], get_block: Callable[[Cid], bytes], out: BinaryIO) -> int:
    """Write a CAR v1 holding every block under each of ``roots``; return bytes written.

    ``get_block`` returns verified block bytes (e.g. ``ContentStore.get_block``). A block
    shared by several DAGs is written once. Memory grows only with the number of blocks
    (the set of CIDs already written), never with their size.
    """
    header = encode_header([cid_from_string(root) for root in roots])
    written = _write(out, encode_varint(len(header)) + header)
    seen: set[bytes] = set()
    for root in roots:
        for block in walk(root, get_block):
            if block.cid in seen:
                continue
            seen.add(block.cid)
            prefix = encode_varint(len(block.cid) + len(block.data)) + block.cid
            written += _write(out, prefix) + _write(out, block.data)
    return written


def _write(out: BinaryIO, data: bytes) -> int:
    out.write(data)
    return len(data)


# ---------------------------------------------------------------- reading


def read_car(stream: BinaryIO) -> tuple[list[Cid], Iterator[Block]]:
    """Read a CAR v1: its roots now, then its blocks lazily, each checked against its CID.

    Raises :class:`InvalidInput` for a malformed archive, a CARv2, a CID that is not
    sha2-256, or a block whose bytes do not hash to its CID (naming the block).
    """
    length = _read_varint(stream, "header length")
    if length is None or not 0 < length <= _MAX_HEADER:
        raise _bad_car(f"header length {length} is missing or out of range")
    header = _read_exact(stream, length, "header")
    roots = _decode_header(header)
    return [cid_to_string(root) for root in roots], _blocks(stream)


def _blocks(stream: BinaryIO) -> Iterator[Block]:
    index = 0
    while (length := _read_varint(stream, f"length of block {index}")) is not None:
        if not 0 < length <= _MAX_SECTION:
            raise _bad_car(f"block {index} has section length {length}, out of range")
        section = _read_exact(stream, length, f"block {index}")
        cid_len = _cid_length(section, index)
        cid, data = section[:cid_len], section[cid_len:]
        if not block_matches_cid(cid, data):
            raise InvalidInput(
                f"block {index} ({_show(cid)}) in the CAR does not hash to its CID",
                hint="the archive is damaged or was altered; export it again from the source",
            )
        yield Block(cid, data)
        index += 1


def _cid_length(section: bytes, index: int) -> int:
    """Length of the binary CID at the start of a section; only sha2-256 is accepted."""
    try:
        if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
            pos = 2
        else:
            version, pos = decode_varint(section, 0)
            if version != 1:
                raise InvalidInput(f"CID version {version}")
            _codec, pos = decode_varint(section, pos)
            hash_code, pos = decode_varint(section, pos)
            digest_len, pos = decode_varint(section, pos)
            if (hash_code, digest_len) != (0x12, 32):
                raise InvalidInput(f"multihash 0x{hash_code:x}/{digest_len} is not sha2-256")
    except InvalidInput as exc:
        reason = f"block {index} does not start with a supported CID: {exc.message}"
        raise _bad_car(reason) from exc
    if len(section) < pos + 32:
        raise _bad_car(f"block {index} is shorter than its CID")
    return pos + 32


def _show(cid: bytes) -> str:
    try:
        return cid_to_string(cid)
    except InvalidInput:
        return cid.hex()


def _read_varint(stream: BinaryIO, what: str) -> int | None:
    """Read a varint; ``None`` at a clean end of stream."""
    raw = bytearray()
    while True:
        byte = stream.read(1)
        if not byte:
            if raw:
                raise _bad_car(f"the archive ends inside the {what}")
            return None
        raw += byte
        if not byte[0] & 0x80:
            return decode_varint(bytes(raw))[0]
        if len(raw) > 9:
            raise _bad_car(f"the {what} is an overlong varint")


def _read_exact(stream: BinaryIO, length: int, what: str) -> bytes:
    data = stream.read(length)
    if len(data) != length:
        raise _bad_car(f"the archive ends inside {what} ({len(data)} of {length} bytes)")
    return data


def _bad_car(reason: str) -> InvalidInput:
    return InvalidInput(
        f"not a valid CAR v1 archive: {reason}",
        hint="export it again with `ipfs dag export` or libshare, and check the transfer",
    )


# ---------------------------------------------------------------- the header's CBOR


def _decode_header(data: bytes) -> list[bytes]:
    value, pos = _cbor_item(data, 0)
    if pos != len(data):
        raise _bad_car("trailing bytes after the header map")
    if not isinstance(value, dict):
        raise _bad_car("the header is not a map")
    version = value.get("version")
    if version != 1:
        raise _bad_car(
            f"version {version!r} is not 1 (a CARv2? unwrap it with `car extract`)"
            if version == 2
            else f"version {version!r} is not 1"
        )
    roots = value.get("roots")
    if not isinstance(roots, list):
        raise _bad_car("roots is not a list of CIDs")
    links = [root for root in roots if isinstance(root, _Link)]
    if len(links) != len(roots):
        raise _bad_car("roots is not a list of CIDs")
    return [bytes(link) for link in links]


class _Link(bytes):
    """A CBOR tag-42 value (a CID) seen while decoding the header."""


_CborValue = int | bytes | str | list["_CborValue"] | dict[str, "_CborValue"] | bool | None


def _cbor_item(data: bytes, pos: int, depth: int = 0) -> tuple[_CborValue, int]:
    """Decode one CBOR item at ``pos``: the subset a CAR header can hold."""
    if depth > _MAX_DEPTH:
        raise _bad_car(f"the header nests deeper than {_MAX_DEPTH} levels")
    if pos >= len(data):
        raise _bad_car("the header ends early")
    major, info = data[pos] >> 5, data[pos] & 31
    pos += 1
    if major == 7:
        simple = {20: False, 21: True, 22: None}
        if info not in simple:
            raise _bad_car(f"unsupported CBOR simple value {info} in the header")
        return simple[info], pos
    if info < 24:
        arg = info
    elif info <= 27:
        width = 1 << (info - 24)
        if pos + width > len(data):
            raise _bad_car("the header ends early")
        arg = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    else:
        raise _bad_car("indefinite-length CBOR is not allowed in DAG-CBOR")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        if pos + arg > len(data):
            raise _bad_car("the header ends early")
        raw = data[pos : pos + arg]
        if major == 2:
            return raw, pos + arg
        try:
            return raw.decode("utf-8", "strict"), pos + arg
        except UnicodeDecodeError as exc:
            raise _bad_car("a header string is not UTF-8") from exc
    if major == 4:
        items: list[_CborValue] = []
        for _ in range(arg):
            item, pos = _cbor_item(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        mapping: dict[str, _CborValue] = {}
        for _ in range(arg):
            key, pos = _cbor_item(data, pos, depth + 1)
            item, pos = _cbor_item(data, pos, depth + 1)
            if not isinstance(key, str):
                raise _bad_car("a header map key is not a string")
            mapping[key] = item
        return mapping, pos
    if major == 6 and arg == 42:
        inner, pos = _cbor_item(data, pos, depth + 1)
        if not isinstance(inner, bytes) or inner[:1] != b"\x00":
            raise _bad_car("a CID (tag 42) is not a byte string starting with 0x00")
        return _Link(inner[1:]), pos
    raise _bad_car(f"unsupported CBOR major type {major} in the header")
