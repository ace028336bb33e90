"""Registering what a member shares: resources with their metadata, and licences.

A resource's bytes go to the content store — sealed (AES-256-GCM, its data key wrapped
by the owner's KEK) unless it is public — and it is registered with the sha-256 of its
plaintext, the CID of what is stored (as Kubo would compute it) and the sha-256 of its
Dublin Core metadata; the metadata itself stays off chain, in the index. Licence terms
go on chain as their RFC 8785 canonical JSON (in the event) and its sha-256 (in storage).
Every function waits for the index to catch up, so what it returns can be checked
against at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import rfc8785
from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from sqlmodel import select
from web3 import Web3

from ledger.cid import Profile, cid_from_string
from ledger.errors import Conflict, InvalidInput, LedgerError, StorageError
from ledger.instance import Instance
from ledger.keys import MemberKeys
from ledger.licence_json import canonical_terms, terms_hash
from ledger.licence_terms import Terms
from ledger.onchain import ResourceInput
from ledger.sealed import new_data_key, seal, wrap_key
from ledger.store import ResourceContentRow, ResourceMetadataRow, ResourceRow
from ledger.types import Cid, Sha256Digest, sha256

MEDIA_TYPES = ("text", "image", "audio", "video", "3d_object", "dataset")

# Dublin Core elements (the fifteen of DCMES 1.1) that the metadata may carry.
DC_ELEMENTS = frozenset(
    {
        "title", "creator", "subject", "description", "publisher", "contributor", "date",
        "type", "format", "identifier", "source", "language", "relation", "coverage", "rights",
    }
)  # fmt: skip


@dataclass(frozen=True)
class NewResource:
    """A resource to register: its bytes (or a file), media type and Dublin Core metadata.

    Content is stored sealed (encrypted, delivered only after an allowed check) unless
    ``public`` is set, in which case the stored CID is the plaintext's own CID.
    """

    data: bytes | Path | BinaryIO | Iterable[bytes]
    media_type: str
    metadata: dict[str, Any]
    licence_id: int = 0
    links: tuple[tuple[str, bytes], ...] = field(default=())
    public: bool = False

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise InvalidInput(
                f"media type {self.media_type!r} is not known",
                hint=f"use one of {', '.join(MEDIA_TYPES)}",
            )
        unknown = set(self.metadata) - DC_ELEMENTS
        if unknown:
            raise InvalidInput(
                f"metadata has fields outside Dublin Core: {', '.join(sorted(unknown))}",
                hint="use the fifteen DCMES 1.1 element names",
            )
        if not str(self.metadata.get("title", "")).strip():
            raise InvalidInput("metadata has no title", hint="every resource needs a dc:title")


@dataclass(frozen=True)
class RegisteredResource:
    resource_id: str  # 0x-hex bytes32
    content_hash: Sha256Digest
    cid: Cid  # what is stored (the ciphertext's CID when sealed)
    size: int  # plaintext bytes
    metadata_hash: Sha256Digest
    title: str
    media_type: str
    sealed: bool


def resource_id_of(owner: str, content_hash: bytes) -> str:
    """The id ResourceRegistry gives: keccak256(abi.encode(owner, contentHash))."""
    encoded = encode(["address", "bytes32"], [Web3.to_checksum_address(owner), content_hash])
    return "0x" + keccak(encoded).hex()


def register_resources(
    instance: Instance, owner: MemberKeys, items: Sequence[NewResource]
) -> list[RegisteredResource]:
    """Store, describe and register ``items`` for ``owner``, batching on chain.

    Content and its wrapped key are stored first; if registering on chain fails, they
    are removed again, so nothing half-registered is left behind.
    """
    contracts = instance.require_contracts()
    prepared = [_store(instance, owner, item) for item in items]
    ids = [res.resource_id for res, _, _ in prepared]
    with instance.db.session() as session:
        taken = [
            rid
            for rid in ids
            if session.get(ResourceRow, rid) or session.get(ResourceContentRow, rid)
        ]
    if taken or len(set(ids)) != len(ids):
        _unpin_unreferenced(instance, [row.stored_cid for _, _, row in prepared])
        duplicate = taken[0] if taken else next(i for i in ids if ids.count(i) > 1)
        raise Conflict(
            f"resource {duplicate} is already registered by this member",
            hint="supersede it to publish a new version, or leave it as it is",
        )
    try:
        with instance.db.session() as session:
            for res, meta_body, row in prepared:
                session.merge(
                    ResourceMetadataRow(
                        metadata_hash="0x" + res.metadata_hash.hex(),
                        media_type=res.media_type,
                        title=res.title,
                        body=meta_body,
                    )
                )
                session.merge(row)
        inputs = [
            ResourceInput(
                res.content_hash,
                cid_from_string(res.cid),
                res.metadata_hash,
                item.licence_id,
                item.links,
            )
            for (res, _, _), item in zip(prepared, items, strict=True)
        ]
        registered = contracts.register_resources(owner.account, inputs)
    except BaseException:
        _forget(instance, [row for _, _, row in prepared])
        raise
    instance.sync()
    for rid, (res, _, _) in zip(registered, prepared, strict=True):
        if "0x" + rid.hex() != res.resource_id:
            raise StorageError(f"chain gave resource id 0x{rid.hex()}, expected {res.resource_id}")
    return [res for res, _, _ in prepared]


def _store(
    instance: Instance, owner: MemberKeys, item: NewResource
) -> tuple[RegisteredResource, str, ResourceContentRow]:
    hasher = hashlib.sha256()
    size = 0

    def plaintext() -> Iterator[bytes]:
        nonlocal size
        for chunk in _chunks(item.data):
            hasher.update(chunk)
            size += len(chunk)
            yield chunk

    data_key = new_data_key()
    stream = plaintext() if item.public else seal(plaintext(), data_key)
    root = instance.content.put(stream, profile=Profile.KUBO_V0)
    content_hash = Sha256Digest(hasher.digest())
    meta = dict(item.metadata)
    meta.setdefault("type", item.media_type)
    meta_body = rfc8785.dumps(meta).decode("utf-8")
    resource_id = resource_id_of(owner.account.address, content_hash)
    row = ResourceContentRow(
        resource_id=resource_id,
        stored_cid=root.cid,
        size=size,
        media_type=item.media_type,
        sealed=not item.public,
        wrapped_key=None if item.public else wrap_key(owner.kek, data_key, content_hash),
    )
    registered = RegisteredResource(
        resource_id=resource_id,
        content_hash=content_hash,
        cid=root.cid,
        size=size,
        metadata_hash=sha256(meta_body.encode("utf-8")),
        title=str(meta["title"]),
        media_type=item.media_type,
        sealed=not item.public,
    )
    return registered, meta_body, row


def _forget(instance: Instance, rows: Sequence[ResourceContentRow]) -> None:
    """Undo stored content whose registration failed (best effort; gc collects the rest)."""
    with instance.db.session() as session:
        for row in rows:
            existing = session.get(ResourceContentRow, row.resource_id)
            if existing is not None:
                session.delete(existing)
    _unpin_unreferenced(instance, [row.stored_cid for row in rows])


def _unpin_unreferenced(instance: Instance, cids: Sequence[str]) -> None:
    with instance.db.session() as session:
        for cid in set(cids):
            used = session.exec(
                select(ResourceContentRow).where(ResourceContentRow.stored_cid == cid)
            ).first()
            if used is None:
                with contextlib.suppress(LedgerError):
                    instance.content.unpin(Cid(cid))


def _chunks(data: bytes | Path | BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(data, bytes):
        return [data]
    if isinstance(data, Path):
        return _file_chunks(data)
    if hasattr(data, "read"):
        reader = data.read
        return iter(lambda: reader(1 << 20), b"")
    return data


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """Read ``path`` in pieces; refuse directories, unreadable files and files that change."""
    try:
        before = path.stat()
        if not stat.S_ISREG(before.st_mode):
            raise InvalidInput(f"{path} is not a regular file", hint="give the path of a file")
        with path.open("rb") as f:
            while chunk := f.read(size):
                yield chunk
        after = path.stat()
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist", hint="check the path") from None
    except PermissionError:
        raise InvalidInput(
            f"{path} cannot be read (permission denied)", hint="check its permissions"
        ) from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a directory", hint="give the files inside it") from None
    except OSError as exc:
        raise InvalidInput(f"{path} could not be read ({exc.strerror})") from exc
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise InvalidInput(
            f"{path} changed while being read",
            hint="register it again once nothing is writing to it",
        )


def issue_licence(instance: Instance, licensor: LocalAccount, terms: Terms) -> tuple[int, int]:
    """Issue ``terms`` as a new licence; return (licence id, version)."""
    contracts = instance.require_contracts()
    body = canonical_terms(terms).decode("utf-8")
    licence = contracts.issue_licence(licensor, terms_hash(terms), body)
    instance.sync()
    return licence


def issue_licence_version(
    instance: Instance, licensor: LocalAccount, licence_id: int, terms: Terms
) -> tuple[int, int]:
    """Issue ``terms`` as the next version of ``licence_id``; old versions stay as they were."""
    contracts = instance.require_contracts()
    body = canonical_terms(terms).decode("utf-8")
    licence = contracts.issue_licence_version(licensor, licence_id, terms_hash(terms), body)
    instance.sync()
    return licence


def revoke_licence(instance: Instance, licensor: LocalAccount, licence_id: int) -> int:
    """Revoke ``licence_id``; checks from the revocation block on deny. Returns the block."""
    block = instance.require_contracts().revoke_licence(licensor, licence_id)
    instance.sync()
    return block
