"""Licences: issue, read every version, add a version, revoke."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import InstanceDep, Reader, Writer, own_member
from ledger.errors import InvalidInput, NotFound
from ledger.instance import Instance
from ledger.licence_json import terms_from_json
from ledger.licence_terms import Licence, Terms
from ledger.odrl import licence_to_odrl
from ledger.odrl_read import terms_from_odrl
from ledger.registration import issue_licence, issue_licence_version, revoke_licence
from ledger.store import LicenceRow, LicenceVersionRow, MemberRow

router = APIRouter(prefix="/v1/licences", tags=["licences"])

ODRL_BASE = "https://libshare.example/consortium"
MAX_LICENCE_ID = 2**32 - 1  # ResourceRegistry packs licence ids into 32 bits
LicenceId = Annotated[int, Path(ge=1, le=MAX_LICENCE_ID, description="the licence's id")]


class LicenceCreate(BaseModel):
    """Terms in the profile's JSON form, or as a W3C ODRL 2.2 policy (docs/odrl-profile.md)."""

    terms: dict[str, Any] | None = Field(
        default=None, description="licence terms in the libshare profile's JSON form"
    )
    odrl: dict[str, Any] | None = Field(
        default=None, description="instead of terms: an ODRL 2.2 JSON-LD policy"
    )

    def parsed(self) -> Terms:
        if (self.terms is None) == (self.odrl is None):
            raise InvalidInput(
                "send either terms or an odrl policy", hint="exactly one of the two fields"
            )
        return (
            terms_from_json(self.terms)
            if self.terms is not None
            else terms_from_odrl(self.odrl or {})
        )


class LicenceVersionPublic(BaseModel):
    version: int
    terms_hash: str
    terms: dict[str, Any]
    issued_block: int


class LicencePublic(BaseModel):
    licence_id: int
    licensor: str = Field(description="library id of the member that issued it")
    latest_version: int
    revoked_block: int | None
    revoked_at: datetime | None
    versions: list[LicenceVersionPublic]


def _licensor_library(instance: Instance, account: str) -> str:
    with instance.db.session() as session:
        row = session.exec(select(MemberRow).where(MemberRow.account == account)).first()
    return row.library_id if row else account


def _read(instance: Instance, licence_id: int) -> LicencePublic:
    with instance.db.session() as session:
        row = session.get(LicenceRow, licence_id)
        if row is None:
            raise NotFound(f"licence {licence_id} does not exist", hint="check the licence id")
        versions = session.exec(
            select(LicenceVersionRow)
            .where(LicenceVersionRow.licence_id == licence_id)
            .order_by(col(LicenceVersionRow.version))
        ).all()
    return LicencePublic(
        licence_id=row.licence_id,
        licensor=_licensor_library(instance, row.licensor),
        latest_version=row.latest_version,
        revoked_block=row.revoked_block,
        revoked_at=row.revoked_at,
        versions=[
            LicenceVersionPublic(
                version=v.version,
                terms_hash=v.terms_hash,
                terms=json.loads(v.terms_json),
                issued_block=v.issued_block,
            )
            for v in versions
        ],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LicencePublic)
def create_licence(body: LicenceCreate, instance: InstanceDep, caller: Writer) -> LicencePublic:
    """Issue a new licence (version 1) for the caller's member library."""
    terms = body.parsed()
    keys = instance.member_keys(caller.member)
    licence_id, _ = issue_licence(instance, keys.account, terms)
    return _read(instance, licence_id)


@router.get("/{licence_id}", response_model=LicencePublic)
def get_licence(licence_id: LicenceId, instance: InstanceDep, caller: Reader) -> LicencePublic:
    """A licence with every version it ever had."""
    return _read(instance, licence_id)


@router.get("/{licence_id}/odrl", response_model=dict[str, Any])
def get_licence_odrl(
    licence_id: LicenceId,
    instance: InstanceDep,
    caller: Reader,
    version: Annotated[int | None, Query(ge=1, le=2**32 - 1)] = None,
) -> dict[str, Any]:
    """A licence version (the latest by default) as an ODRL 2.2 JSON-LD policy."""
    current = _read(instance, licence_id)
    wanted = version or current.latest_version
    match = [v for v in current.versions if v.version == wanted]
    if not match:
        raise NotFound(
            f"licence {licence_id} has no version {wanted}",
            hint=f"versions 1 to {current.latest_version} exist",
        )
    licence = Licence(
        licence_id=licence_id,
        version=wanted,
        licensor=current.licensor,
        terms=terms_from_json(match[0].terms),
        revoked_at=(
            current.revoked_at.replace(tzinfo=current.revoked_at.tzinfo or UTC)
            if current.revoked_at
            else None
        ),
    )
    return licence_to_odrl(licence, base=ODRL_BASE)


@router.post(
    "/{licence_id}/versions", status_code=status.HTTP_201_CREATED, response_model=LicencePublic
)
def add_version(
    licence_id: LicenceId, body: LicenceCreate, instance: InstanceDep, caller: Writer
) -> LicencePublic:
    """Issue the next version of a licence; earlier versions stay as they were."""
    current = _read(instance, licence_id)
    own_member(caller, current.licensor, f"licence {licence_id}")
    terms = body.parsed()
    issue_licence_version(instance, instance.member_keys(caller.member).account, licence_id, terms)
    return _read(instance, licence_id)


@router.post("/{licence_id}/revoke", response_model=LicencePublic)
def revoke(licence_id: LicenceId, instance: InstanceDep, caller: Writer) -> LicencePublic:
    """Revoke a licence: checks under it deny from the revocation block on."""
    current = _read(instance, licence_id)
    own_member(caller, current.licensor, f"licence {licence_id}")
    revoke_licence(instance, instance.member_keys(caller.member).account, licence_id)
    return _read(instance, licence_id)
