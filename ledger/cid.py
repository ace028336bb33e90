"""Content identifiers exactly as Kubo's ``ipfs add --only-hash`` computes them.

A file is cut into fixed-size chunks; each chunk becomes a leaf block (a dag-pb node
holding a UnixFS ``File``, or a raw block); leaves are gathered under dag-pb UnixFS
``File`` nodes in boxo's *balanced* layout (``ipld/unixfs/importer/balanced``): a root
holds at most ``max_links`` children, and when it is full and more data follows, a new
root one level higher takes the old root as its first child and is filled with full
subtrees of the old depth. The CID of the root block is the file's CID.

Streaming and constant memory: :class:`CidBuilder` keeps one chunk buffer and the
pending links of each level (``O(depth * max_links)``), hands every block to an optional
``on_block`` callback as it is made, and computes the sha-256 of the whole plaintext in
the same pass.

Byte layouts followed (``spec`` = ipfs/specs):

* dag-pb (``ipld/specs`` dag-pb): ``PBNode`` serialises ``Links`` (field 2) *before*
  ``Data`` (field 1); a ``PBLink`` is ``Hash`` (1, binary CID), ``Name`` (2) and
  ``Tsize`` (3, the cumulative size of the child's whole sub-DAG). go-merkledag always
  writes ``Name``, empty for file chunks, so every link carries ``12 00``.
* UnixFS ``Data``: ``Type`` (1) = File (2), ``Data`` (2), ``filesize`` (3, always
  written, also when 0), ``blocksizes`` (4, repeated and *not* packed).
* multihash sha2-256 = ``12 20 || digest``; CIDv0 = base58btc(multihash); CIDv1 =
  ``01 || codec || multihash`` printed as ``b`` + lower-case unpadded base32.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from ledger.errors import InvalidInput
from ledger.types import Cid, Sha256Digest

__all__ = [
    "PROFILES",
    "Block",
    "CidBuilder",
    "Profile",
    "ProfileSpec",
    "RootInfo",
    "cid_from_string",
    "cid_of_bytes",
    "cid_of_file",
    "cid_to_string",
    "decode_varint",
    "encode_varint",
]

# multicodec table codes
_SHA2_256 = 0x12
_DAG_PB = 0x70
_RAW = 0x55
_MULTIHASH_PREFIX = bytes((_SHA2_256, 32))

_MAX_CHUNK = 1 << 20
"""boxo's ``helpers.BlockSizeLimit``: Kubo refuses leaves larger than 1 MiB."""

_PARALLEL_MIN = 1 << 20
"""Pieces at least this long get their whole-file sha-256 on a worker thread."""

_READ_BUFFER = 4 << 20
"""Read size: small enough that both hashes find each piece still in the CPU cache."""


class Profile(StrEnum):
    """The ``ipfs add`` settings a CID is computed under."""

    KUBO_V0 = "kubo-v0"
    """Kubo's default: CIDv0, 256 KiB chunks, dag-pb UnixFS leaves, 174 links per node."""
    UNIXFS_V1_2025 = "unixfs-v1-2025"
    """IPIP-499 ``unixfs-v1-2025``: CIDv1, raw leaves, 1 MiB chunks, 1024 links per node."""
    V1_RAW_256K = "v1-raw-256k"
    """``ipfs add --cid-version=1``: CIDv1, raw leaves, 256 KiB chunks, 174 links."""


@dataclass(frozen=True)
class ProfileSpec:
    """The parameters of a profile; construct one directly only for tests and experiments.

    ``chunk_size`` is the fixed chunker size in bytes (1 to 1 MiB), ``max_links`` the most
    children of one dag-pb node (at least 2), ``cid_version`` 0 or 1, and ``raw_leaves``
    whether leaves are raw blocks (CIDv1 only) instead of dag-pb UnixFS ``File`` nodes.
    """

    chunk_size: int
    max_links: int
    cid_version: int
    raw_leaves: bool

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= _MAX_CHUNK:
            raise InvalidInput(
                f"chunk_size {self.chunk_size} is out of range",
                hint=f"use 1 to {_MAX_CHUNK} bytes, the largest block Kubo accepts",
            )
        if self.max_links < 2:
            raise InvalidInput(
                f"max_links {self.max_links} is out of range",
                hint="a balanced DAG needs at least 2 links per node",
            )
        if self.cid_version not in (0, 1):
            raise InvalidInput(f"cid_version {self.cid_version} is not 0 or 1", hint="use 0 or 1")
        if self.cid_version == 0 and self.raw_leaves:
            raise InvalidInput(
                "CIDv0 cannot address raw leaves",
                hint="use cid_version=1 with raw_leaves, or raw_leaves=False with CIDv0",
            )


PROFILES: Mapping[Profile, ProfileSpec] = MappingProxyType(
    {
        Profile.KUBO_V0: ProfileSpec(
            chunk_size=262_144, max_links=174, cid_version=0, raw_leaves=False
        ),
        Profile.UNIXFS_V1_2025: ProfileSpec(
            chunk_size=1_048_576, max_links=1024, cid_version=1, raw_leaves=True
        ),
        Profile.V1_RAW_256K: ProfileSpec(
            chunk_size=262_144, max_links=174, cid_version=1, raw_leaves=True
        ),
    }
)


@dataclass(frozen=True)
class Block:
    """One block of a file's DAG: its binary CID and its serialised bytes."""

    cid: bytes
    data: bytes


@dataclass(frozen=True)
class RootInfo:
    """What hashing a whole file gives.

    ``cid`` / ``cid_bytes`` name the root block, ``size`` is the number of file bytes,
    ``sha256`` the digest of the whole file (None when the builder was asked not to
    compute it) and ``dag_size`` the cumulative size of
    every block of the DAG (the root's ``Tsize``, what ``ipfs object stat`` calls
    ``CumulativeSize``).
    """

    cid: Cid
    cid_bytes: bytes
    size: int
    sha256: Sha256Digest | None
    dag_size: int


class _Link(NamedTuple):
    cid: bytes
    tsize: int  # serialised size of the child's whole sub-DAG
    filesize: int  # file bytes under the child


BlockSink = Callable[[Block], None]

# ---------------------------------------------------------------- protobuf pieces


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as an unsigned LEB128 varint (protobuf, multiformats)."""
    if value < 0:
        raise InvalidInput(f"cannot encode {value} as a varint", hint="varints are unsigned")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint at ``offset``; return ``(value, offset after it)``."""
    value = 0
    shift = 0
    pos = offset
    while pos < len(data) and shift <= 63:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise InvalidInput(f"truncated or overlong varint at offset {offset}")


def _bytes_field(number: int, payload: bytes) -> bytes:
    return bytes(((number << 3) | 2,)) + encode_varint(len(payload)) + payload


def _dag_pb_leaf_frame(size: int) -> tuple[bytes, bytes]:
    """The bytes around a chunk of ``size`` bytes in its dag-pb UnixFS leaf.

    Leaf = PBNode{Data: UnixFS{Type: File, Data: chunk, filesize: size}}; there are no
    links, so the block is ``0a len( 08 02 12 len(chunk) chunk 18 size )``.
    """
    n = encode_varint(size)
    inner_len = 2 + 1 + len(n) + size + 1 + len(n)
    prefix = b"\x0a" + encode_varint(inner_len) + b"\x08\x02\x12" + n
    return prefix, b"\x18" + n


# go-unixfs writes Type=File and filesize=0, and omits the nil Data (Layout's empty case).
_EMPTY_DAG_PB_LEAF = _bytes_field(1, b"\x08\x02\x18\x00")


def _internal_node(links: list[_Link]) -> bytes:
    """Serialise a dag-pb node over ``links``: Links first, then UnixFS Data."""
    parts = []
    filesize = 0
    blocksizes = bytearray()
    for link in links:
        # PBLink{Hash, Name: "", Tsize}; go-merkledag writes the empty Name.
        body = _bytes_field(1, link.cid) + b"\x12\x00\x18" + encode_varint(link.tsize)
        parts.append(_bytes_field(2, body))
        filesize += link.filesize
        blocksizes += b"\x20" + encode_varint(link.filesize)
    unixfs = b"\x08\x02\x18" + encode_varint(filesize) + bytes(blocksizes)
    parts.append(_bytes_field(1, unixfs))
    return b"".join(parts)


# ---------------------------------------------------------------- the builder

_executor_lock = threading.Lock()
_executor_instance: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    # hashlib releases the GIL on large buffers, so the whole-file sha-256 runs on a
    # second core while this thread hashes the leaves: both digests in one pass.
    global _executor_instance
    with _executor_lock:
        if _executor_instance is None:
            _executor_instance = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="libshare-cid"
            )
        return _executor_instance


def _resolve(profile: Profile | ProfileSpec | str) -> ProfileSpec:
    if isinstance(profile, ProfileSpec):
        return profile
    try:
        return PROFILES[Profile(profile)]
    except ValueError as exc:
        known = ", ".join(p.value for p in Profile)
        raise InvalidInput(f"unknown CID profile {profile!r}", hint=f"use one of {known}") from exc


class CidBuilder:
    """Compute a file's CID and sha-256 from its bytes, fed in pieces of any size.

    ``profile`` names the ``ipfs add`` settings (or is a :class:`ProfileSpec`);
    ``on_block`` is called with every block, children before their parents, the root
    last. Call :meth:`update` any number of times, then :meth:`finish` once.
    """

    def __init__(
        self,
        profile: Profile | ProfileSpec = Profile.KUBO_V0,
        on_block: BlockSink | None = None,
        *,
        sha256: bool = True,
    ) -> None:
        """``sha256=False`` skips the whole-file digest when only the CID is wanted."""
        spec = _resolve(profile)
        self._spec = spec
        self._on_block = on_block
        self._chunk_size = spec.chunk_size
        self._max_links = spec.max_links
        self._buf = bytearray(spec.chunk_size)
        self._fill = 0
        self._levels: list[list[_Link]] = [[]]
        self._sha = hashlib.sha256() if sha256 else None
        self._size = 0
        self._finished = False
        self._node_prefix = _MULTIHASH_PREFIX if spec.cid_version == 0 else b"\x01\x70\x12\x20"
        self._full_frame = _dag_pb_leaf_frame(spec.chunk_size)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next ``data`` bytes of the file (the buffer may be reused afterwards)."""
        if self._finished:
            raise InvalidInput(
                "CidBuilder.update() called after finish()",
                hint="use a new CidBuilder for each file",
            )
        view = memoryview(data).cast("B")
        n = len(view)
        if n == 0:
            return
        self._size += n
        if self._sha is None:
            self._take(view)
            return
        if n < _PARALLEL_MIN:
            self._sha.update(view)
            self._take(view)
            return
        whole = _executor().submit(self._sha.update, view)
        try:
            self._take(view)
        finally:
            whole.result()

    def finish(self) -> RootInfo:
        """Close the DAG and return the root's CID, the file size and its sha-256."""
        if self._finished:
            raise InvalidInput(
                "CidBuilder.finish() called twice", hint="use a new CidBuilder for each file"
            )
        self._finished = True
        if self._fill:
            self._leaf(memoryview(self._buf)[: self._fill])
            self._fill = 0
        root = self._empty_leaf() if self._size == 0 else self._collapse()
        return RootInfo(
            cid=cid_to_string(root.cid),
            cid_bytes=root.cid,
            size=self._size,
            sha256=Sha256Digest(self._sha.digest()) if self._sha is not None else None,
            dag_size=root.tsize,
        )

    # -- chunking

    def _take(self, view: memoryview) -> None:
        size = self._chunk_size
        n = len(view)
        pos = 0
        if self._fill:
            pos = min(size - self._fill, n)
            self._buf[self._fill : self._fill + pos] = view[:pos]
            self._fill += pos
            if self._fill < size:
                return
            self._leaf(memoryview(self._buf))
            self._fill = 0
        # Whole chunks straight from the caller's buffer: no copy.
        while n - pos >= size:
            self._leaf(view[pos : pos + size])
            pos += size
        if pos < n:
            self._buf[: n - pos] = view[pos:]
            self._fill = n - pos

    def _leaf(self, chunk: memoryview) -> None:
        n = len(chunk)
        sink = self._on_block
        if self._spec.raw_leaves:
            if sink is None:
                digest = hashlib.sha256(chunk).digest()
                cid = b"\x01\x55\x12\x20" + digest
            else:
                data = bytes(chunk)
                cid = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()
                sink(Block(cid, data))
            self._push(0, _Link(cid, n, n))
            return
        prefix, suffix = self._full_frame if n == self._chunk_size else _dag_pb_leaf_frame(n)
        if sink is None:
            h = hashlib.sha256(prefix)
            h.update(chunk)
            h.update(suffix)
            cid = self._node_prefix + h.digest()
        else:
            data = b"".join((prefix, chunk, suffix))
            cid = self._node_prefix + hashlib.sha256(data).digest()
            sink(Block(cid, data))
        self._push(0, _Link(cid, len(prefix) + n + len(suffix), n))

    def _empty_leaf(self) -> _Link:
        # balanced.Layout: no data at all gives a single empty leaf (raw or dag-pb).
        if self._spec.raw_leaves:
            data = b""
            cid = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()
        else:
            data = _EMPTY_DAG_PB_LEAF
            cid = self._node_prefix + hashlib.sha256(data).digest()
        if self._on_block is not None:
            self._on_block(Block(cid, data))
        return _Link(cid, len(data), 0)

    # -- the balanced layout

    def _push(self, level: int, link: _Link) -> None:
        # A full node is only closed when another sibling arrives: boxo's fillNodeRec
        # stops at max_links and Layout grows a new root only while data remains.
        while True:
            if level == len(self._levels):
                self._levels.append([])
            links = self._levels[level]
            if len(links) < self._max_links:
                links.append(link)
                return
            parent = self._node(links)
            self._levels[level] = [link]
            link = parent
            level += 1

    def _collapse(self) -> _Link:
        level = 0
        while True:
            links = self._levels[level]
            if level == len(self._levels) - 1:
                if level == 0 and len(links) == 1:
                    return links[0]  # the whole file is one chunk: its leaf is the root
                return self._node(links)
            self._levels[level] = []
            self._push(level + 1, self._node(links))
            level += 1

    def _node(self, links: list[_Link]) -> _Link:
        data = _internal_node(links)
        cid = self._node_prefix + hashlib.sha256(data).digest()
        if self._on_block is not None:
            self._on_block(Block(cid, data))
        tsize = len(data) + sum(link.tsize for link in links)
        return _Link(cid, tsize, sum(link.filesize for link in links))


# ---------------------------------------------------------------- one-shot helpers


def cid_of_bytes(
    data: bytes | bytearray | memoryview, profile: Profile | ProfileSpec = Profile.KUBO_V0
) -> Cid:
    """Return the CID ``ipfs add --only-hash`` gives for ``data`` under ``profile``."""
    builder = CidBuilder(profile)
    builder.update(data)
    return builder.finish().cid


def cid_of_file(
    path: str | os.PathLike[str],
    profile: Profile | ProfileSpec = Profile.KUBO_V0,
    on_block: BlockSink | None = None,
    *,
    sha256: bool = True,
) -> RootInfo:
    """Hash the regular file at ``path`` in one streaming pass.

    ``profile``, ``on_block`` and ``sha256`` are as for :class:`CidBuilder`. Raises
    :class:`InvalidInput` when the path is missing, unreadable, not a regular file, or
    the file changes while it is read.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"cannot compute the CID of {name!r}: no such file",
            hint="check the path and that the file was not moved",
        ) from exc
    except IsADirectoryError as exc:
        raise _directory(name) from exc
    except PermissionError as exc:
        raise InvalidInput(
            f"cannot compute the CID of {name!r}: permission denied",
            hint="grant the service read access to the file",
        ) from exc
    except OSError as exc:
        raise InvalidInput(
            f"cannot compute the CID of {name!r}: {exc.strerror or exc}",
            hint="check that the path names a readable regular file",
        ) from exc
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        os.close(fd)
        if stat.S_ISDIR(before.st_mode):
            raise _directory(name)
        raise InvalidInput(
            f"cannot compute the CID of {name!r}: not a regular file",
            hint="copy the content into a regular file first",
        )
    with open(fd, "rb", buffering=0, closefd=True) as handle:
        spec = _resolve(profile)
        # A whole number of chunks, so full chunks are hashed in place without copying.
        size = max(spec.chunk_size, _READ_BUFFER // spec.chunk_size * spec.chunk_size)
        views = (memoryview(bytearray(size)), memoryview(bytearray(size)))
        builder = CidBuilder(spec, on_block, sha256=sha256)
        # Double buffering: the next read (a copy out of the page cache, GIL released)
        # overlaps the hashing of the current buffer.
        reading = _executor().submit(handle.readinto, views[0])
        turn = 0
        try:
            while n := reading.result():
                current = views[turn]
                turn ^= 1
                reading = _executor().submit(handle.readinto, views[turn])
                builder.update(current[:n])
        except OSError as exc:
            raise InvalidInput(
                f"cannot compute the CID of {name!r}: read failed: {exc.strerror or exc}",
                hint="check the disk and try again",
            ) from exc
        finally:
            concurrent.futures.wait([reading])  # never close the file under a running read
        after = os.fstat(fd)
    info = builder.finish()
    if (
        after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
        or info.size != before.st_size
    ):
        raise InvalidInput(
            f"{name!r} changed while being read ({before.st_size} bytes before, "
            f"{info.size} read, {after.st_size} after)",
            hint="compute the CID again once nothing is writing to the file",
        )
    return info


def _directory(name: str) -> InvalidInput:
    return InvalidInput(
        f"cannot compute the CID of {name!r}: it is a directory",
        hint="give the path of a regular file; directories are not registered as content",
    )


# ---------------------------------------------------------------- CID strings

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


_B58_PAIRS = [a + b for a in _B58_ALPHABET for b in _B58_ALPHABET]


def _b58encode(data: bytes) -> str:
    # Two digits per division: half the big-integer arithmetic (the indexer prints a CID
    # per registration). A pair's leading "1" (a zero digit) is stripped at the front.
    zeros = len(data) - len(data.lstrip(b"\x00"))
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58 * 58)
        out.append(_B58_PAIRS[rem])
    return "1" * zeros + "".join(reversed(out)).lstrip("1")


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _B58_INDEX[char]  # KeyError on a foreign character
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * zeros + body


def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    data = base64.b32decode(padded)
    if _b32encode(data) != text.lower():
        raise ValueError("non-canonical base32")
    return data


def _parse_binary(cid: bytes) -> None:
    """Check that ``cid`` is a CIDv0 or CIDv1 with a sha2-256 multihash; raise ValueError."""
    if len(cid) == 34 and cid[:2] == _MULTIHASH_PREFIX:
        return
    if not cid or cid[0] != 1:
        raise ValueError("neither a CIDv0 multihash nor a CIDv1")
    codec, pos = decode_varint(cid, 1)
    if codec not in (_DAG_PB, _RAW):
        raise ValueError(f"codec 0x{codec:x} is neither dag-pb nor raw")
    hash_code, pos = decode_varint(cid, pos)
    length, pos = decode_varint(cid, pos)
    if hash_code != _SHA2_256 or length != 32:
        raise ValueError("multihash is not sha2-256")
    if len(cid) - pos != 32:
        raise ValueError("digest length does not match the multihash")


def cid_to_string(cid_bytes: bytes) -> Cid:
    """Print a binary CID: CIDv0 as base58btc ``Qm…``, CIDv1 as base32 ``b…``."""
    try:
        _parse_binary(cid_bytes)
    except (ValueError, InvalidInput) as exc:
        raise InvalidInput(
            f"{cid_bytes.hex()} is not a supported binary CID: {exc}",
            hint="pass a CIDv0 or CIDv1 with a sha2-256 multihash",
        ) from exc
    if cid_bytes[0] == _SHA2_256:
        return Cid(_b58encode(cid_bytes))
    return Cid("b" + _b32encode(cid_bytes))


def cid_from_string(text: str) -> bytes:
    """Parse a CID string (``Qm…`` CIDv0 or ``b…`` base32 CIDv1) into binary form."""
    try:
        if text.startswith("Qm") and len(text) == 46:
            cid = _b58decode(text)
        elif text[:1] in ("b", "B") and len(text) > 1:
            cid = _b32decode(text[1:])
        else:
            raise ValueError("not a base58btc CIDv0 (Qm…) or a base32 CIDv1 (b…)")
        _parse_binary(cid)
    except (ValueError, KeyError, binascii.Error, InvalidInput) as exc:
        reason = f"bad character {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InvalidInput(
            f"{text!r} is not a valid CID: {reason}",
            hint="give a CIDv0 (Qm…, base58btc) or a CIDv1 in base32 (b…) over sha2-256",
        ) from exc
    return cid
