"""Read the UnixFS DAGs that :mod:`ledger.cid` writes: dag-pb nodes, UnixFS data, walks.

Pure: no I/O. A walk asks a ``get_block`` callable for each block it needs, so the same
code serves the local blockstore, a Kubo node and a CAR writer.

Byte layouts (``ipld/specs`` dag-pb, ``ipfs/specs`` UnixFS), the inverse of ``cid.py``:

* ``PBNode``: ``Links`` (field 2, repeated ``PBLink``) then ``Data`` (field 1, bytes).
  ``PBLink``: ``Hash`` (1, binary CID), ``Name`` (2, UTF-8), ``Tsize`` (3, varint).
  Decoding is strict as the dag-pb spec asks: no unknown fields, no wrong wire types,
  no duplicate ``Data``, no ``Links`` after ``Data``, link fields in order, every link
  has a ``Hash``.
* UnixFS ``Data``: ``Type`` (1), ``Data`` (2), ``filesize`` (3), ``blocksizes`` (4,
  repeated, packed or not), ``hashType`` (5), ``fanout`` (6), ``mode`` (7), ``mtime``
  (8); a file's bytes are its own ``Data`` followed by its children's, in link order.
* A raw-codec (0x55) block is a leaf whose bytes are the payload.

Every malformed block raises :class:`InvalidInput` naming its CID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from ledger.cid import Block, cid_from_string, cid_to_string, decode_varint, encode_varint
from ledger.errors import InvalidInput
from ledger.types import Cid, digests_equal

__all__ = [
    "PBLink",
    "PBNode",
    "UnixFSData",
    "UnixFSType",
    "block_matches_cid",
    "decode_node",
    "decode_unixfs",
    "encode_node",
    "encode_unixfs",
    "file_chunks",
    "file_data",
    "is_raw",
    "links",
    "walk",
]

_RAW_PREFIX = b"\x01\x55"
_VARINT, _LEN = 0, 2


class UnixFSType(IntEnum):
    """UnixFS ``Data.DataType``."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True)
class PBLink:
    """A dag-pb link: child CID (binary), optional name, optional cumulative size."""

    hash: bytes
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True)
class PBNode:
    """A decoded dag-pb block: its links in order and its optional ``Data`` bytes."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


@dataclass(frozen=True)
class UnixFSData:
    """A decoded UnixFS ``Data`` message (the fields a file reader needs)."""

    type: UnixFSType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())


# ---------------------------------------------------------------- protobuf reading


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)``; only varint and length-delimited."""
    pos = 0
    end = len(buf)
    while pos < end:
        try:
            key, pos = decode_varint(buf, pos)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise InvalidInput(f"field number 0 at offset {pos}")
            if wire == _VARINT:
                value, pos = decode_varint(buf, pos)
                yield number, wire, value
            elif wire == _LEN:
                length, pos = decode_varint(buf, pos)
                if length > end - pos:
                    raise InvalidInput(f"field {number} runs past the end of the block")
                yield number, wire, buf[pos : pos + length]
                pos += length
            else:
                raise InvalidInput(f"field {number} has unsupported wire type {wire}")
        except InvalidInput as exc:
            raise _malformed(where, exc.message) from exc


def _malformed(where: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"block {where} is not a valid dag-pb/UnixFS block: {reason}",
        hint="the block is damaged or was not written by an IPFS implementation; "
        "fetch it again from a trusted copy",
    )


def _name(cid: bytes | None) -> str:
    if cid is None:
        return "<unnamed>"
    try:
        return cid_to_string(cid)
    except InvalidInput:
        return cid.hex()


# ---------------------------------------------------------------- dag-pb


def decode_node(block_data: bytes, *, cid: bytes | None = None) -> PBNode:
    """Decode a dag-pb block strictly; ``cid`` (binary) only names it in errors."""
    where = _name(cid)
    node_links: list[PBLink] = []
    data: bytes | None = None
    for number, wire, value in _fields(block_data, where):
        if number == 2 and isinstance(value, bytes):
            if data is not None:
                raise _malformed(where, "Links after Data")
            node_links.append(_decode_link(value, where))
        elif number == 1 and isinstance(value, bytes):
            if data is not None:
                raise _malformed(where, "duplicate Data")
            data = value
        else:
            raise _malformed(where, f"unexpected PBNode field {number} (wire type {wire})")
    return PBNode(tuple(node_links), data)


def _decode_link(buf: bytes, where: str) -> PBLink:
    hash_: bytes | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    for number, wire, value in _fields(buf, where):
        if number <= last:
            raise _malformed(where, f"PBLink field {number} out of order or repeated")
        last = number
        if number == 1 and isinstance(value, bytes):
            hash_ = value
        elif number == 2 and isinstance(value, bytes):
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _malformed(where, "PBLink Name is not UTF-8") from exc
        elif number == 3 and isinstance(value, int):
            tsize = value
        else:
            raise _malformed(where, f"unexpected PBLink field {number} (wire type {wire})")
    if hash_ is None:
        raise _malformed(where, "PBLink without Hash")
    return PBLink(hash_, name, tsize)


def _len_field(number: int, payload: bytes) -> bytes:
    return bytes(((number << 3) | _LEN,)) + encode_varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return bytes((number << 3,)) + encode_varint(value)


def encode_node(node: PBNode) -> bytes:
    """Serialise a dag-pb node canonically (Links first, present fields only)."""
    parts = []
    for link in node.links:
        body = _len_field(1, link.hash)
        if link.name is not None:
            body += _len_field(2, link.name.encode("utf-8"))
        if link.tsize is not None:
            body += _varint_field(3, link.tsize)
        parts.append(_len_field(2, body))
    if node.data is not None:
        parts.append(_len_field(1, node.data))
    return b"".join(parts)


# ---------------------------------------------------------------- UnixFS Data

_UNIXFS_VARINT_FIELDS = {1, 3, 4, 5, 6, 7}
_UNIXFS_LEN_FIELDS = {2, 4, 8}  # 4 when packed; 8 is the mtime message


def decode_unixfs(data: bytes, *, cid: bytes | None = None) -> UnixFSData:
    """Decode a UnixFS ``Data`` message (the ``Data`` of a dag-pb node)."""
    where = _name(cid)
    kind: int | None = None
    payload: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, wire, value in _fields(data, where):
        allowed = _UNIXFS_VARINT_FIELDS if wire == _VARINT else _UNIXFS_LEN_FIELDS
        if number not in allowed:
            raise _malformed(where, f"unexpected UnixFS field {number} (wire type {wire})")
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, bytes):
            payload = value
        elif number == 3 and isinstance(value, int):
            filesize = value
        elif number == 4 and isinstance(value, int):
            blocksizes.append(value)
        elif number == 4 and isinstance(value, bytes):  # packed repeated varints
            pos = 0
            while pos < len(value):
                try:
                    size, pos = decode_varint(value, pos)
                except InvalidInput as exc:
                    raise _malformed(where, "bad packed blocksizes") from exc
                blocksizes.append(size)
    if kind is None:
        raise _malformed(where, "UnixFS Data without Type")
    try:
        unixfs_type = UnixFSType(kind)
    except ValueError as exc:
        raise _malformed(where, f"unknown UnixFS Type {kind}") from exc
    return UnixFSData(unixfs_type, payload, filesize, tuple(blocksizes))


def encode_unixfs(message: UnixFSData) -> bytes:
    """Serialise UnixFS ``Data`` as go-unixfs does (blocksizes not packed)."""
    out = _varint_field(1, int(message.type))
    if message.data is not None:
        out += _len_field(2, message.data)
    if message.filesize is not None:
        out += _varint_field(3, message.filesize)
    for size in message.blocksizes:
        out += _varint_field(4, size)
    return out


# ---------------------------------------------------------------- files


def is_raw(cid: bytes) -> bool:
    """Whether the binary CID uses the raw codec (its block is plain payload bytes)."""
    return cid[:2] == _RAW_PREFIX


def links(block_data: bytes, *, cid: bytes | None = None) -> list[tuple[bytes, int]]:
    """The ``(child cid, Tsize)`` pairs of a block, in order; a raw block has none."""
    if cid is not None and is_raw(cid):
        return []
    return [(link.hash, link.tsize or 0) for link in decode_node(block_data, cid=cid).links]


def file_data(block_data: bytes, *, cid: bytes | None = None) -> bytes:
    """The file bytes a block itself holds: a raw block's bytes, a UnixFS node's ``Data``."""
    if cid is not None and is_raw(cid):
        return block_data
    node = decode_node(block_data, cid=cid)
    if node.data is None:
        raise _malformed(_name(cid), "dag-pb node without UnixFS Data")
    return decode_unixfs(node.data, cid=cid).data or b""


def block_matches_cid(cid: bytes, data: bytes) -> bool:
    """Whether ``data`` hashes to the sha2-256 digest inside the binary ``cid``."""
    return len(cid) >= 32 and digests_equal(cid[-32:], hashlib.sha256(data).digest())


def walk(root: Cid, get_block: Callable[[Cid], bytes]) -> Iterator[Block]:
    """Every block of the DAG under ``root``: depth first, parents before children, left
    to right — the order that reassembles a file and that ``ipfs dag export`` writes.

    ``get_block`` returns a block's bytes already checked against its CID
    (:meth:`ContentStore.get_block` does). A block reachable twice is yielded twice.
    """
    stack: list[Iterator[bytes]] = [iter((cid_from_string(root),))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        data = get_block(cid_to_string(child))
        yield Block(child, data)
        if not is_raw(child):
            stack.append(iter([c for c, _ in links(data, cid=child)]))


@dataclass
class _Frame:
    """A file node being read: its remaining children and the bytes it should hold."""

    cid: bytes
    children: Iterator[tuple[bytes, int | None]]
    filesize: int | None
    emitted: int


def _file_node(cid: bytes, data: bytes) -> tuple[PBNode, UnixFSData]:
    node = decode_node(data, cid=cid)
    if node.data is None:
        raise _malformed(_name(cid), "dag-pb node without UnixFS Data")
    message = decode_unixfs(node.data, cid=cid)
    if message.type not in (UnixFSType.FILE, UnixFSType.RAW):
        raise InvalidInput(
            f"{_name(cid)} is a UnixFS {message.type.name.lower()}, not a file",
            hint="give the CID of a file; directories are not served as content",
        )
    if message.blocksizes and len(message.blocksizes) != len(node.links):
        raise _malformed(
            _name(cid), f"{len(message.blocksizes)} blocksizes for {len(node.links)} links"
        )
    return node, message


def _check_size(cid: bytes, what: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise _malformed(_name(cid), f"{what} says {expected} bytes but the DAG holds {actual}")


def file_chunks(root: Cid, get_block: Callable[[Cid], bytes]) -> Iterator[bytes]:
    """The bytes of the UnixFS file under ``root``, block by block, in order.

    ``get_block`` is as for :func:`walk`. Besides decoding, checks that every node is a
    file (``File`` or ``Raw``), and that each node's ``filesize`` and each parent's
    ``blocksizes`` match the bytes actually found beneath them, so the file read here is
    byte for byte the one any IPFS implementation reads.
    """
    frames: list[_Frame] = []
    pending: tuple[bytes, int | None] | None = (cid_from_string(root), None)
    while True:
        if pending is not None:
            cid, expected = pending
            data = get_block(cid_to_string(cid))
            if is_raw(cid):
                _check_size(cid, "its parent's blocksizes", expected, len(data))
                if frames:
                    frames[-1].emitted += len(data)
                if data:
                    yield data
            else:
                node, message = _file_node(cid, data)
                _check_size(cid, "its parent's blocksizes", expected, message.filesize or 0)
                own = message.data or b""
                sizes: list[int | None] = list(message.blocksizes) or [None] * len(node.links)
                children = zip((link.hash for link in node.links), sizes, strict=True)
                frames.append(_Frame(cid, iter(children), message.filesize, len(own)))
                if own:
                    yield own
        pending = None
        while frames and pending is None:
            pending = next(frames[-1].children, None)
            if pending is None:
                done = frames.pop()
                _check_size(done.cid, "its filesize", done.filesize, done.emitted)
                if frames:
                    frames[-1].emitted += done.emitted
        if pending is None:
            return
