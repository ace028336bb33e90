"""Registering what a member shares: resources with their metadata, and licences.

A resource is registered with the sha-256 of its bytes, its IPFS CID (computed here, as
Kubo would) and the sha-256 of its Dublin Core metadata; the metadata itself stays off
chain, in the index. Licence terms go on chain as their RFC 8785 canonical JSON (in the
event) and its sha-256 (in storage). Every function waits for the index to catch up, so
what it returns can be checked against at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from eth_account.signers.local import LocalAccount

from ledger.cid import CidBuilder, Profile
from ledger.errors import InvalidInput
from ledger.instance import Instance
from ledger.licence_json import canonical_terms, terms_hash
from ledger.licence_terms import Terms
from ledger.onchain import ResourceInput
from ledger.store import ResourceMetadataRow
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
    """A resource to register: its bytes, media type and Dublin Core metadata."""

    data: bytes
    media_type: str
    metadata: dict[str, Any]
    licence_id: int = 0
    links: tuple[tuple[str, bytes], ...] = field(default=())

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
    cid: Cid
    size: int
    metadata_hash: Sha256Digest
    title: str
    media_type: str


def register_resources(
    instance: Instance, owner: LocalAccount, items: Sequence[NewResource]
) -> list[RegisteredResource]:
    """Hash, describe and register ``items`` for ``owner``, batching on chain."""
    contracts = instance.require_contracts()
    inputs: list[ResourceInput] = []
    prepared: list[tuple[RegisteredResource, str]] = []
    for item in items:
        builder = CidBuilder(Profile.KUBO_V0)
        builder.update(item.data)
        root = builder.finish()
        meta = dict(item.metadata)
        meta.setdefault("type", item.media_type)
        meta_body = rfc8785.dumps(meta).decode("utf-8")
        meta_hash = sha256(meta_body.encode("utf-8"))
        inputs.append(
            ResourceInput(root.sha256, root.cid_bytes, meta_hash, item.licence_id, item.links)
        )
        prepared.append(
            (
                RegisteredResource(
                    resource_id="",
                    content_hash=root.sha256,
                    cid=root.cid,
                    size=root.size,
                    metadata_hash=meta_hash,
                    title=str(meta["title"]),
                    media_type=item.media_type,
                ),
                meta_body,
            )
        )
    # Metadata first: the index may then show a resource the moment its event arrives.
    with instance.db.session() as session:
        for res, body in prepared:
            session.merge(
                ResourceMetadataRow(
                    metadata_hash="0x" + res.metadata_hash.hex(),
                    media_type=res.media_type,
                    title=res.title,
                    body=body,
                )
            )
    ids = contracts.register_resources(owner, inputs)
    instance.sync()
    return [
        RegisteredResource(
            resource_id="0x" + rid.hex(),
            content_hash=res.content_hash,
            cid=res.cid,
            size=res.size,
            metadata_hash=res.metadata_hash,
            title=res.title,
            media_type=res.media_type,
        )
        for rid, (res, _) in zip(ids, prepared, strict=True)
    ]


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
