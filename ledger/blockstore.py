"""The embedded content store: IPFS blocks as files in the data dir.

Layout under ``root``::

    blocks/<shard>/<key>   one file per block, its exact bytes
    pins/<key>             one empty file per pinned root (recursive pins, a set)
    tmp/                   files being written; renamed into place when complete
    lock                   flock: shared by put/pin/import, exclusive for gc

``key`` is the binary CID in lower-case base32 with the multibase prefix ``b``: for a
CIDv1 that is exactly its CID string; a CIDv0 (``Qm…``, case-sensitive base58) is
spelled the same way so that names stay distinct on case-insensitive file systems.
``shard`` is the two characters before the key's last one (go-ds-flatfs
``next-to-last/2``), which spreads blocks evenly over 1024 directories.

Durability: every block and pin is written to ``tmp/``, fsynced and renamed into place,
and the touched directories are fsynced before the root is pinned, so a pin never names
a DAG that a crash could lose. Reads check every block's sha-256 against its CID; a
mismatch is reported, never served. Putting the same bytes again rewrites any block
found corrupt, so re-adding a file repairs it.

Garbage: if ``put`` or ``import_car`` fails midway, the blocks already written stay on
disk unpinned; :meth:`LocalBlockstore.gc` removes them with everything else no pin
reaches. ``gc`` holds the lock exclusively, so it never runs while a put (in this or
another process) has written blocks it has not pinned yet. A ``cat`` is not locked: do
not unpin and collect a file that is being streamed.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ledger.car import read_car, write_car
from ledger.cid import (
    Block,
    CidBuilder,
    Profile,
    ProfileSpec,
    RootInfo,
    cid_from_string,
    cid_to_string,
)
from ledger.errors import InvalidInput, LedgerError, NotFound, StorageError
from ledger.types import Cid
from ledger.unixfs import block_matches_cid, file_chunks, is_raw, links, walk

__all__ = ["LocalBlockstore"]

_READ_SIZE = 1 << 20


def _key(cid: bytes) -> str:
    return "b" + base64.b32encode(cid).decode("ascii").rstrip("=").lower()


def _cid_of_key(key: str) -> bytes:
    body = key[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


class LocalBlockstore:
    """A :class:`ledger.content.ContentStore` over a directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blocks = root / "blocks"
        self._pins = root / "pins"
        self._tmp = root / "tmp"
        try:
            for folder in (self._blocks, self._pins, self._tmp):
                folder.mkdir(parents=True, exist_ok=True)
            (root / "lock").touch(exist_ok=True)
        except OSError as exc:
            raise self._io_error(f"cannot create the blockstore in {root}", exc) from exc

    # ------------------------------------------------------------ ContentStore

    def put(
        self, data: BinaryIO | Iterable[bytes], *, profile: Profile | ProfileSpec = Profile.KUBO_V0
    ) -> RootInfo:
        """Store a file as a UnixFS DAG, streaming in constant memory, and pin its root.

        ``data`` is a binary file object (read in 1 MiB pieces) or an iterable of byte
        chunks of any size; ``profile`` is as for :class:`ledger.cid.CidBuilder`.
        """
        with self._locked(exclusive=False):
            dirs: set[Path] = set()
            builder = CidBuilder(profile, on_block=lambda block: self._store(block, dirs))
            for chunk in _pieces(data):
                builder.update(chunk)
            info = builder.finish()
            self._sync(dirs)
            self._write_pin(info.cid_bytes)
        return info

    def cat(self, cid: Cid) -> Iterator[bytes]:
        """Stream the file under ``cid``; every block is verified before its bytes are used.

        Errors about the root (absent, corrupt, a directory) are raised by this call; later
        ones while iterating. Raises :class:`NotFound` for a missing block and
        :class:`StorageError` for a corrupt one.
        """
        chunks = file_chunks(cid, self.get_block)
        first = next(chunks, None)
        if first is None:
            return iter(())
        return itertools.chain((first,), chunks)

    def get_block(self, cid: Cid) -> bytes:
        """One block's bytes, verified against ``cid``."""
        return self._read(cid_from_string(cid))

    def has(self, cid: Cid) -> bool:
        """Whether the block ``cid`` is present (its bytes are checked when read)."""
        return self._path(cid_from_string(cid)).is_file()

    def pin(self, cid: Cid) -> None:
        """Pin the DAG under ``cid``; every block of it must be present and intact.

        Raises :class:`NotFound` naming the first missing block.
        """
        with self._locked(exclusive=False):
            self._pin_complete(cid)

    def unpin(self, cid: Cid) -> None:
        """Remove the pin on ``cid``; its blocks go at the next :meth:`gc` unless pinned."""
        path = self._pins / _key(cid_from_string(cid))
        try:
            path.unlink()
        except FileNotFoundError as exc:
            raise NotFound(
                f"{cid} is not pinned in {self.root}", hint="list the pins with pins()"
            ) from exc
        except OSError as exc:
            raise self._io_error(f"cannot unpin {cid}", exc) from exc

    # ------------------------------------------------------------ beyond the protocol

    def pins(self) -> list[Cid]:
        """The pinned roots, sorted by key."""
        return [cid_to_string(_cid_of_key(p.name)) for p in sorted(self._pins.iterdir())]

    def gc(self) -> int:
        """Delete every block no pin reaches (and stale temporary files); return the count.

        Raises :class:`StorageError` and deletes nothing if a pinned DAG cannot be read
        completely, since what hangs below a missing or corrupt node is unknown.
        """
        with self._locked(exclusive=True):
            live = self._live_keys()
            removed = 0
            try:
                for shard in self._blocks.iterdir():
                    for path in shard.iterdir():
                        if path.name not in live:
                            path.unlink()
                            removed += 1
                for path in self._tmp.iterdir():
                    path.unlink()
            except OSError as exc:
                raise self._io_error("garbage collection failed", exc) from exc
        return removed

    def import_car(self, stream: BinaryIO) -> list[Cid]:
        """Store every block of a CAR v1 (each verified) and pin its roots; return them."""
        roots, blocks = read_car(stream)
        with self._locked(exclusive=False):
            dirs: set[Path] = set()
            for block in blocks:
                cid_to_string(block.cid)  # only dag-pb and raw sha2-256 blocks
                self._store(block, dirs)
            self._sync(dirs)
            for root in roots:
                self._pin_complete(root)
        return roots

    def export_car(self, roots: Sequence[Cid], out: BinaryIO) -> int:
        """Write the DAGs under ``roots`` as a CAR v1 to ``out``; return the bytes written."""
        return write_car(roots, self.get_block, out)

    # ------------------------------------------------------------ internals

    def _path(self, cid: bytes) -> Path:
        key = _key(cid)
        return self._blocks / key[-3:-1] / key

    def _read(self, cid: bytes) -> bytes:
        path = self._path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(
                f"block {cid_to_string(cid)} is not in the local blockstore",
                hint="add the file again, or import a CAR that holds it",
            ) from exc
        except OSError as exc:
            raise self._io_error(f"cannot read block {cid_to_string(cid)}", exc) from exc
        if not block_matches_cid(cid, data):
            raise StorageError(
                f"block {cid_to_string(cid)} is corrupt on disk (hash mismatch)",
                hint="restore it from a copy or re-add the file",
            )
        return data

    def _store(self, block: Block, dirs: set[Path]) -> None:
        path = self._path(block.cid)
        try:
            if path.is_file() and block_matches_cid(block.cid, path.read_bytes()):
                return  # already stored; a corrupt copy falls through and is replaced
            path.parent.mkdir(exist_ok=True)
            self._write_atomically(path, block.data)
        except OSError as exc:
            raise self._io_error(f"cannot write block {cid_to_string(block.cid)}", exc) from exc
        dirs.add(path.parent)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        tmp = self._tmp / f"{path.name}.{secrets.token_hex(6)}"
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def _sync(self, dirs: Iterable[Path]) -> None:
        try:
            for folder in dirs:
                _fsync_dir(folder)
        except OSError as exc:
            raise self._io_error("cannot sync the blockstore", exc) from exc

    def _write_pin(self, cid: bytes) -> None:
        try:
            self._write_atomically(self._pins / _key(cid), b"")
            _fsync_dir(self._pins)
        except OSError as exc:
            raise self._io_error(f"cannot pin {cid_to_string(cid)}", exc) from exc

    def _pin_complete(self, cid: Cid) -> None:
        for _ in walk(cid, self.get_block):
            pass  # reads (and so verifies) every block; NotFound names a missing one
        self._write_pin(cid_from_string(cid))

    def _live_keys(self) -> set[str]:
        live: set[str] = set()
        for pin in self._pins.iterdir():
            stack = [_cid_of_key(pin.name)]
            while stack:
                cid = stack.pop()
                key = _key(cid)
                if key in live:
                    continue
                live.add(key)
                if is_raw(cid):
                    continue  # a raw leaf has no links: no need to read it
                try:
                    data = self._read(cid)
                except LedgerError as exc:
                    raise StorageError(
                        f"garbage collection stopped, nothing was deleted: the pinned DAG "
                        f"{cid_to_string(_cid_of_key(pin.name))} cannot be read: {exc.message}",
                        hint="restore the block from a copy, re-add the file, or unpin it",
                    ) from exc
                stack.extend(child for child, _ in links(data, cid=cid))
        return live

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        with open(self.root / "lock", "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _io_error(self, what: str, exc: OSError) -> StorageError:
        return StorageError(
            f"{what}: {exc.strerror or exc}",
            hint=f"check free space and permissions under {self.root}",
        )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pieces(data: BinaryIO | Iterable[bytes]) -> Iterator[bytes | bytearray | memoryview]:
    read = getattr(data, "read", None)
    source: Iterable[object] = iter(lambda: read(_READ_SIZE), b"") if callable(read) else data
    for chunk in source:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"put() got a {type(chunk).__name__} chunk",
                hint="pass a file opened in binary mode or an iterable of bytes",
            )
        yield chunk
