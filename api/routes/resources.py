"""Resources: register (upload, or a CID already in the store) and read."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status
from pydantic import BaseModel, Field
from sqlmodel import select

from api.deps import InstanceDep, Reader, Writer
from ledger.cid import cid_from_string
from ledger.errors import InvalidInput, NotFound, PayloadTooLarge
from ledger.instance import Instance
from ledger.onchain import RELATIONS
from ledger.registration import DC_ELEMENTS, MEDIA_TYPES, NewResource, register_resources
from ledger.store import (
    MemberRow,
    ProvenanceRow,
    ResourceContentRow,
    ResourceMetadataRow,
    ResourceRow,
)
from ledger.types import Cid

router = APIRouter(prefix="/v1/resources", tags=["resources"])

MAX_UPLOAD = 4 << 30  # 4 GiB
RELATION_NAMES = {v: k for k, v in RELATIONS.items()}


class ProvenanceLink(BaseModel):
    relation: str = Field(examples=["digitised_from"])
    target: str


class ResourcePublic(BaseModel):
    resource_id: str
    owner: str = Field(description="library id of the owning member")
    content_hash: str = Field(description="sha-256 of the plaintext")
    cid: str = Field(description="CID of what is stored (the ciphertext when sealed)")
    metadata_hash: str
    metadata: dict[str, Any] | None
    media_type: str | None
    size: int | None = Field(description="plaintext bytes, when this instance stores it")
    sealed: bool | None
    licence_id: int
    superseded_by: str | None
    registered_block: int
    provenance: list[ProvenanceLink]


def read_resource(instance: Instance, resource_id: str) -> ResourcePublic:
    instance.catch_up()
    with instance.db.session() as session:
        row = session.get(ResourceRow, resource_id)
        if row is None:
            raise NotFound(f"resource {resource_id} is not registered", hint="check the id")
        owner = session.exec(select(MemberRow).where(MemberRow.account == row.owner)).first()
        meta = session.get(ResourceMetadataRow, row.metadata_hash)
        content = session.get(ResourceContentRow, resource_id)
        links = session.exec(
            select(ProvenanceRow).where(ProvenanceRow.resource_id == resource_id)
        ).all()
    return ResourcePublic(
        resource_id=row.id,
        owner=owner.library_id if owner else row.owner,
        content_hash=row.content_hash,
        cid=row.cid,
        metadata_hash=row.metadata_hash,
        metadata=json.loads(meta.body) if meta else None,
        media_type=meta.media_type if meta else None,
        size=content.size if content else None,
        sealed=content.sealed if content else None,
        licence_id=row.licence_id,
        superseded_by=row.superseded_by,
        registered_block=row.registered_block,
        provenance=[
            ProvenanceLink(
                relation=RELATION_NAMES.get(p.relation, str(p.relation)), target=p.target
            )
            for p in links
        ],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ResourcePublic)
def create_resource(
    instance: InstanceDep,
    caller: Writer,
    media_type: Annotated[str, Form(description=f"one of {', '.join(MEDIA_TYPES)}")],
    metadata: Annotated[
        str, Form(description="Dublin Core metadata as a JSON object; `title` is required")
    ],
    licence_id: Annotated[int, Form(ge=0, le=2**32 - 1, description="0: none yet")] = 0,
    public: Annotated[bool, Form(description="store unencrypted (CID of the plaintext)")] = False,
    file: Annotated[UploadFile | None, File(description="the content")] = None,
    cid: Annotated[str | None, Form(description="instead of a file: a CID already stored")] = None,
) -> ResourcePublic:
    """Store and register one resource for the caller's member library."""
    try:
        meta = json.loads(metadata)
    except ValueError:
        raise InvalidInput(
            "metadata is not JSON", hint='send a JSON object such as {"title": "…"}'
        ) from None
    if not isinstance(meta, dict):
        raise InvalidInput(
            "metadata must be a JSON object", hint=f"keys from {sorted(DC_ELEMENTS)}"
        )
    if (file is None) == (cid is None):
        raise InvalidInput("send either a file or a cid", hint="exactly one of the two")
    data: Any
    if file is not None:
        if file.size is not None and file.size > MAX_UPLOAD:
            raise PayloadTooLarge(
                f"the upload is {file.size} bytes; the limit is {MAX_UPLOAD}",
                hint="store it in the IPFS node first and register it by CID",
            )
        data = file.file
    else:
        cid_from_string(cid or "")  # a malformed CID is refused here with its reason
        if not public:
            raise InvalidInput(
                "content registered by CID is stored as it is, unencrypted",
                hint="set public=true, or upload the file to have it sealed",
            )
        data = instance.content.cat(Cid(cid or ""))
    item = NewResource(data, media_type, meta, licence_id, public=public)
    (registered,) = register_resources(instance, instance.member_keys(caller.member), [item])
    return read_resource(instance, registered.resource_id)


@router.get("/{resource_id}", response_model=ResourcePublic)
def get_resource(resource_id: str, instance: InstanceDep, caller: Reader) -> ResourcePublic:
    """A resource as the chain and this instance's index know it."""
    return read_resource(instance, resource_id)
