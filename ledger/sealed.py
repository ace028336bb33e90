"""Sealed content: streaming authenticated encryption for restricted resources.

Each restricted resource gets its own random 256-bit *data key*. The plaintext is cut
into fixed-size segments, each sealed with AES-256-GCM — the STREAM construction
(Hoang, Reyhanitabar, Rogaway, Vizár 2015) as Tink's ``AesGcmHkdfStreaming`` uses it —
so sealing and opening run in constant memory and every segment is checked before its
plaintext is released.

Sealed stream layout (version 1)::

    header (32 bytes) = magic "LSSL" || version 0x01 || segment size (u32 BE)
                        || salt (16 random bytes) || nonce prefix (7 random bytes)
    segment i         = AES-256-GCM(segment key, nonce_i, plaintext_i, aad = header)
                        (plaintext_i is ``segment size`` bytes, except the last: 0 to
                        ``segment size`` bytes; each sealed segment is 16 bytes longer)

    segment key = HKDF-SHA256(ikm = data key, salt = salt,
                              info = "libshare sealed v1" || header)
    nonce_i     = nonce prefix (7) || i (u32 BE) || 0x01 if i is the last segment else 0x00

* the index in the nonce makes reordering or swapping segments fail authentication;
* the last-segment flag makes truncation at a segment boundary fail (the new last
  segment was sealed as "not last") and extension fail (the old last segment was sealed
  as "last"); the opener retries a failed segment with the opposite flag only to name
  the failure precisely ("truncated", "data after its final segment");
* the header is the AAD of every segment and feeds the key derivation, so changing the
  segment size, salt or prefix fails too; the fresh salt gives every stream its own
  segment key, so sealing the same resource twice under one data key reuses no nonce;
* an empty plaintext still yields one (last, empty) segment, so "no segments" means
  "truncated".

Opening releases each segment's plaintext as soon as that segment authenticates, so a
truncation is only known at the end: a consumer that forwards plaintext as it comes (an
HTTP response) must abort the delivery when :class:`SealError` arrives, not finish it.

Data keys are stored *wrapped* under the member's key-encryption key (KEK) with
:func:`wrap_key`: AES-256-GCM with a random 96-bit nonce and the resource's context
(e.g. its plaintext sha-256) as associated data. GCM is chosen over AES-KW (RFC 3394 /
5649) because it binds the context natively — a wrapped key copied onto another
resource does not open — and the random nonce is safe at the few wraps a KEK performs.
The wrapped form also carries a 64-bit KEK identifier (HMAC-SHA-256 of a constant under
the KEK) so that a wrong KEK is told apart from a wrong context.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.errors import InvalidInput, ProofError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "TAG_SIZE",
    "SealError",
    "new_data_key",
    "open_sealed",
    "seal",
    "sealed_size",
    "unwrap_key",
    "wrap_key",
]

DEFAULT_SEGMENT_SIZE = 64 * 1024
"""Plaintext bytes per segment: large enough that GCM runs near full speed."""

HEADER_SIZE = 32
TAG_SIZE = 16
_MAGIC = b"LSSL"
_VERSION = 1
_MIN_SEGMENT = 16
_MAX_SEGMENT = 1 << 24
_MAX_SEGMENTS = 1 << 32
_HKDF_INFO = b"libshare sealed v1"
_WRAP_VERSION = 1
_WRAP_AAD = b"libshare wrapped data key v1"
_KEK_ID_SIZE = 8
_WRAPPED_SIZE = 1 + _KEK_ID_SIZE + 12 + 32 + TAG_SIZE


class SealError(ProofError):
    """Sealed content or a wrapped key does not authenticate (tampered or wrong key)."""

    title = "Sealed content does not open"


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(32)


def sealed_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """How many bytes :func:`seal` produces for ``plaintext_size`` bytes of plaintext."""
    segments = max(1, -(-plaintext_size // segment_size))
    return HEADER_SIZE + plaintext_size + segments * TAG_SIZE


def _check_key(key: bytes, what: str) -> None:
    if len(key) != 32:
        raise InvalidInput(
            f"the {what} is {len(key)} bytes long, not 32",
            hint=f"use a 256-bit {what} (new_data_key() makes a data key)",
        )


def _segment_cipher(data_key: bytes, header: bytes) -> AESGCM:
    salt = header[9:25]
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO + header)
    return AESGCM(hkdf.derive(data_key))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= _MAX_SEGMENTS:
        raise InvalidInput(
            f"a sealed stream holds at most {_MAX_SEGMENTS} segments",
            hint="use a larger segment size",
        )
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def seal(
    chunks: Iterable[bytes], data_key: bytes, *, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> Iterator[bytes]:
    """Encrypt a stream of plaintext chunks (any sizes); yield the header, then segments.

    Holds at most one segment of plaintext besides the caller's current chunk.
    """
    _check_key(data_key, "data key")
    if not _MIN_SEGMENT <= segment_size <= _MAX_SEGMENT:
        raise InvalidInput(
            f"segment size {segment_size} is out of range",
            hint=f"use {_MIN_SEGMENT} to {_MAX_SEGMENT} bytes",
        )
    salt, prefix = os.urandom(16), os.urandom(7)
    header = _MAGIC + struct.pack(">BI", _VERSION, segment_size) + salt + prefix
    cipher = _segment_cipher(data_key, header)
    yield header
    pending = bytearray()
    index = 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        pos, end = 0, len(view)
        while pos < end:
            # A segment is sealed as "not last" only once a byte after it is known.
            if len(pending) == segment_size:
                yield cipher.encrypt(_nonce(prefix, index, False), pending, header)
                index += 1
                pending.clear()
            if not pending and end - pos > segment_size:
                segment = view[pos : pos + segment_size]  # straight from the chunk, no copy
                yield cipher.encrypt(_nonce(prefix, index, False), segment, header)
                index += 1
                pos += segment_size
                continue
            take = min(segment_size - len(pending), end - pos)
            pending += view[pos : pos + take]
            pos += take
    yield cipher.encrypt(_nonce(prefix, index, True), pending, header)


class _Buffer:
    """Ciphertext arriving in chunks of any size, consumed from the front.

    Pieces are kept as views of the caller's chunks: a segment lying inside one chunk is
    decrypted in place, and only one spanning chunks is joined (copied).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pieces: deque[memoryview] = deque()
        self.size = 0
        self._ended = False

    def available(self, wanted: int) -> int:
        """Read chunks until ``wanted`` bytes are buffered or the input ends."""
        while self.size < wanted and not self._ended:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._ended = True
            elif chunk:
                view = memoryview(chunk).cast("B")
                self._pieces.append(view)
                self.size += len(view)
        return self.size

    def take(self, n: int) -> bytes | memoryview:
        """Remove and return the first ``n`` buffered bytes (``n <= size``)."""
        if n == 0:
            return b""
        self.size -= n
        first = self._pieces[0]
        if len(first) >= n:
            if len(first) == n:
                self._pieces.popleft()
            else:
                self._pieces[0] = first[n:]
            return first[:n]
        parts = []
        while n:
            piece = self._pieces.popleft()
            if len(piece) > n:
                self._pieces.appendleft(piece[n:])
                piece = piece[:n]
            parts.append(piece)
            n -= len(piece)
        return b"".join(parts)


def open_sealed(chunks: Iterable[bytes], data_key: bytes) -> Iterator[bytes]:
    """Decrypt a sealed stream (chunks of any sizes); yield each segment's plaintext
    only after it has authenticated.

    Raises :class:`SealError` for a wrong key or any tampering (a flipped bit, reordered,
    missing or extra segments) and names the first segment that fails.
    """
    _check_key(data_key, "data key")
    buffer = _Buffer(chunks)
    if buffer.available(HEADER_SIZE) < HEADER_SIZE:
        raise SealError("ciphertext is truncated (no complete header)", hint=_RESEAL)
    header = bytes(buffer.take(HEADER_SIZE))
    magic, version, segment_size = header[:4], header[4], struct.unpack(">I", header[5:9])[0]
    if magic != _MAGIC:
        raise SealError("not a libshare sealed stream (bad magic)", hint=_RESEAL)
    if version != _VERSION or not _MIN_SEGMENT <= segment_size <= _MAX_SEGMENT:
        raise SealError(
            f"unsupported sealed stream (version {version}, segment size {segment_size})",
            hint="open it with the libshare version that sealed it",
        )
    cipher = _segment_cipher(data_key, header)
    prefix = header[25:32]
    sealed_segment = segment_size + TAG_SIZE
    index = 0
    while True:
        # More than one sealed segment buffered: the first is not the last one.
        last = buffer.available(sealed_segment + 1) <= sealed_segment
        segment = buffer.take(min(sealed_segment, buffer.size))
        try:
            plaintext = cipher.decrypt(_nonce(prefix, index, last), segment, header)
        except InvalidTag:
            raise _diagnose(cipher, prefix, index, last, segment, header) from None
        yield plaintext
        if last:
            return
        index += 1


_RESEAL = "restore the sealed copy from a backup, or seal the resource again from its source"


def _diagnose(
    cipher: AESGCM,
    prefix: bytes,
    index: int,
    last: bool,
    segment: bytes | memoryview,
    header: bytes,
) -> SealError:
    """Say why segment ``index`` failed: retry it with the other last-segment flag."""
    try:
        cipher.decrypt(_nonce(prefix, index, not last), segment, header)
    except InvalidTag:
        if last and len(segment) < TAG_SIZE:
            return SealError("ciphertext is truncated", hint=_RESEAL)
        return SealError(
            f"ciphertext segment {index} failed authentication (tampered, reordered or wrong key)",
            hint=_RESEAL,
        )
    if last:
        return SealError(f"ciphertext is truncated (it ends after segment {index})", hint=_RESEAL)
    return SealError(f"ciphertext has data after its final segment (segment {index})", hint=_RESEAL)


# ---------------------------------------------------------------- key wrapping


def _kek_id(kek: bytes) -> bytes:
    return hmac.new(kek, b"libshare kek id", hashlib.sha256).digest()[:_KEK_ID_SIZE]


def wrap_key(kek: bytes, data_key: bytes, context: bytes) -> bytes:
    """Encrypt ``data_key`` under ``kek``, bound to ``context`` (e.g. the plaintext sha-256).

    Returns ``0x01 || KEK id (8) || nonce (12) || AES-256-GCM(data key) || tag`` (69 bytes).
    """
    _check_key(kek, "key-encryption key")
    _check_key(data_key, "data key")
    head = bytes((_WRAP_VERSION,)) + _kek_id(kek)
    nonce = os.urandom(12)
    return head + nonce + AESGCM(kek).encrypt(nonce, data_key, _WRAP_AAD + head + context)


def unwrap_key(kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    """Recover a data key wrapped by :func:`wrap_key` with the same ``kek`` and ``context``."""
    _check_key(kek, "key-encryption key")
    if len(wrapped) != _WRAPPED_SIZE or wrapped[0] != _WRAP_VERSION:
        raise SealError(
            f"wrapped data key is malformed ({len(wrapped)} bytes, expected {_WRAPPED_SIZE} "
            f"starting with version {_WRAP_VERSION})",
            hint="read the wrapped key again from where it is stored",
        )
    head, nonce, body = wrapped[:9], wrapped[9:21], wrapped[21:]
    if not hmac.compare_digest(head[1:], _kek_id(kek)):
        raise SealError(
            f"data key was wrapped under another key-encryption key (id {head[1:].hex()}, "
            f"this one is {_kek_id(kek).hex()})",
            hint="unwrap it with the KEK of the member that sealed the resource",
        )
    try:
        return AESGCM(kek).decrypt(nonce, body, _WRAP_AAD + head + context)
    except InvalidTag:
        raise SealError(
            "wrapped data key does not open for this context (it belongs to another "
            "resource, or it was altered)",
            hint="use the wrapped key stored with this resource",
        ) from None
