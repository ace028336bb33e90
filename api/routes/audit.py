"""What auditors read: anchored heads, trail entries, inclusion and consistency proofs.

Every answer can be checked independently: entries against their leaf hashes, proofs
against the roots the chain holds (``GET /v1/audit/heads`` gives each head's block and
transaction, so an auditor reads the root from the chain, not from this server).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import Auditor, InstanceDep, own_member
from ledger.apikeys import Principal, Role
from ledger.errors import InvalidInput, NotFound
from ledger.instance import Instance
from ledger.store import AnchoredHeadRow, MemberRow

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Member = Annotated[str, Query(min_length=1, max_length=64, description="library id, e.g. CN-XJTU")]
PAGE = 1000
MAX_SEQ = 2**53 - 1  # trail sizes are 64-bit on chain; JSON numbers stay exact below this


class HeadPublic(BaseModel):
    size: int
    root: str
    block: int
    tx_hash: str


class HeadsPublic(BaseModel):
    member: str
    account: str
    trail_size: int = Field(description="entries recorded so far, anchored or not")
    trail_root: str
    anchored: list[HeadPublic] = Field(description="heads anchored on chain, oldest first")


class EntryPublic(BaseModel):
    seq: int
    leaf_hash: str
    body: str = Field(description="the entry's RFC 8785 canonical JSON, exactly as hashed")


class InclusionProof(BaseModel):
    member: str
    seq: int
    size: int
    leaf_hash: str
    root: str
    proof: list[str]


class ConsistencyProof(BaseModel):
    member: str
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]


def _account(instance: Instance, member: str, caller: Principal) -> str:
    if caller.role is Role.admin:  # auditors read every member's trail; admins their own
        own_member(caller, member, "the trail")
    with instance.db.session() as session:
        row = session.exec(select(MemberRow).where(MemberRow.library_id == member)).first()
    if row is None:
        raise NotFound(f"{member} is not a consortium member", hint="check the library id")
    return row.account


@router.get("/heads", response_model=HeadsPublic)
def heads(member: Member, instance: InstanceDep, caller: Auditor) -> HeadsPublic:
    """The member's trail head now, and every head anchored on chain."""
    account = _account(instance, member, caller)
    instance.catch_up()
    with instance.db.session() as session:
        rows = session.exec(
            select(AnchoredHeadRow)
            .where(AnchoredHeadRow.member == account)
            .order_by(col(AnchoredHeadRow.size))
        ).all()
    head = instance.access.trail(member).head()
    return HeadsPublic(
        member=member,
        account=account,
        trail_size=head.size,
        trail_root=head.root.hex(),
        anchored=[
            HeadPublic(
                size=r.size, root=r.root.removeprefix("0x"), block=r.block, tx_hash=r.tx_hash
            )
            for r in rows
        ],
    )


@router.get("/entries", response_model=list[EntryPublic])
def entries(
    member: Member,
    instance: InstanceDep,
    caller: Auditor,
    start: Annotated[int, Query(alias="from", ge=0, le=MAX_SEQ)] = 0,
    end: Annotated[int | None, Query(alias="to", ge=0, le=MAX_SEQ, description="exclusive")] = None,
) -> list[EntryPublic]:
    """Entries ``from <= seq < to`` (at most 1,000 per call; page with ``from``)."""
    _account(instance, member, caller)
    stop = start + PAGE if end is None else min(end, start + PAGE)
    return [
        EntryPublic(seq=row.seq, leaf_hash=row.leaf_hash.hex(), body=row.body.decode("utf-8"))
        for row in instance.access.trail(member).entries(start, stop)
    ]


@router.get("/proofs/inclusion", response_model=InclusionProof)
def inclusion(
    member: Member,
    instance: InstanceDep,
    caller: Auditor,
    seq: Annotated[int, Query(ge=0, le=MAX_SEQ)],
    size: Annotated[int, Query(ge=1, le=MAX_SEQ)],
) -> InclusionProof:
    """RFC 9162 inclusion proof of entry ``seq`` in the tree of ``size`` entries."""
    _account(instance, member, caller)
    trail = instance.access.trail(member)
    if seq >= size:
        raise InvalidInput(f"seq {seq} is not below size {size}", hint="ask for a larger size")
    proof = trail.inclusion_proof(seq, size)
    (entry,) = list(trail.entries(seq, seq + 1))
    return InclusionProof(
        member=member,
        seq=seq,
        size=size,
        leaf_hash=entry.leaf_hash.hex(),
        root=trail.root_at(size).hex(),
        proof=[p.hex() for p in proof],
    )


@router.get("/proofs/consistency", response_model=ConsistencyProof)
def consistency(
    member: Member,
    instance: InstanceDep,
    caller: Auditor,
    old: Annotated[int, Query(alias="from", ge=0, le=MAX_SEQ)],
    new: Annotated[int, Query(alias="to", ge=0, le=MAX_SEQ)],
) -> ConsistencyProof:
    """RFC 9162 consistency proof between the trees of ``from`` and ``to`` entries."""
    _account(instance, member, caller)
    trail = instance.access.trail(member)
    proof = trail.consistency_proof(old, new)
    return ConsistencyProof(
        member=member,
        old_size=old,
        new_size=new,
        old_root=trail.root_at(old).hex(),
        new_root=trail.root_at(new).hex(),
        proof=[p.hex() for p in proof],
    )
