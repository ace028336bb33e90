"""Access checks and the delivery of content they allow."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StringConstraints

from api.deps import Delivery, InstanceDep, own_member
from ledger.access import CheckResult, ShareRequest
from ledger.apikeys import Principal
from ledger.delivery import redeem
from ledger.instance import Instance

router = APIRouter(prefix="/v1/access", tags=["access"])

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class AccessCheck(BaseModel):
    """May a patron of ``requesting_member`` receive ``resource_id``, why and how?"""

    resource_id: Text
    requesting_member: Text = Field(description="library id of the patron's library")
    patron_id: Text = Field(
        description="the patron's local id; turned into an HMAC pseudonym at once, never stored"
    )
    patron_category: Text = Field(examples=["faculty"])
    purpose: Text = Field(examples=["research"])
    method: Text = Field(examples=["copy"])
    scope: Text = Field(examples=["part"], description="part (article, chapter) or whole")
    destination_country: Text = Field(examples=["CN"])
    campaign: Text | None = None


class AccessDecision(BaseModel):
    decision: str = Field(examples=["allow"])
    reason: str = Field(examples=["allowed"])
    term: str
    detail: str
    licence_id: int | None
    licence_version: int | None
    fee: int | None = Field(description="fee in minor units (e.g. fen, cents)")
    currency: str | None
    obligations: list[str]
    decision_id: str
    trail_seq: int
    supplier: str
    decided_at: datetime
    content_url: str | None = Field(
        description="where the caller may fetch the content once, if allowed"
    )


@router.get(
    "/{decision_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def content(decision_id: str, instance: InstanceDep, caller: Delivery) -> StreamingResponse:
    """Stream the content an allowed check opened: once, within its validity, to its caller."""
    delivery = redeem(instance, decision_id, caller.key_id)
    return StreamingResponse(
        delivery.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(delivery.size),
            "X-Libshare-Resource": delivery.resource_id,
            "X-Libshare-Media-Type": delivery.media_type,
        },
    )


@router.post("/check", response_model=AccessDecision)
async def check(body: AccessCheck, instance: InstanceDep, caller: Delivery) -> AccessDecision:
    """Decide a share request; the decision is in the supplier's trail before this answers."""
    # Awaited on the event loop: the decision writer commits it with others (group commit).
    result = await asyncio.wrap_future(submit_check(instance, body, caller))
    return answer(result)


def submit_check(instance: Instance, body: AccessCheck, caller: Principal) -> Future[CheckResult]:
    """Authorise, pseudonymise and queue one check; the future resolves once it is committed."""
    return instance.access.submit(share_request(instance, body, caller), grant_to=caller.key_id)


def share_request(instance: Instance, body: AccessCheck, caller: Principal) -> ShareRequest:
    """The request to decide: the caller may ask for this member's patron, who is pseudonymised.

    Shared by the route above and :mod:`api.fastpath`, so both decide exactly alike.
    """
    own_member(caller, body.requesting_member, "the patron")
    patron = instance.member_keys(body.requesting_member).pseudonym(
        body.patron_id, instance.clock()
    )
    return ShareRequest.parse(
        resource_id=body.resource_id,
        requesting_member=body.requesting_member,
        patron=patron,
        patron_category=body.patron_category,
        purpose=body.purpose,
        method=body.method,
        scope=body.scope,
        destination_country=body.destination_country,
        campaign=body.campaign,
    )


def answer(result: CheckResult) -> AccessDecision:
    """The response to a committed decision."""
    d = result.decision
    return AccessDecision(
        decision=str(d.outcome),
        reason=str(d.reason),
        term=d.term,
        detail=d.detail,
        licence_id=d.licence_id,
        licence_version=d.licence_version,
        fee=d.fee.amount_minor if d.fee else None,
        currency=d.fee.currency if d.fee else None,
        obligations=list(d.obligations),
        decision_id=result.decision_id,
        trail_seq=result.trail_seq,
        supplier=result.supplier,
        decided_at=result.at,
        content_url=f"/v1/access/{result.decision_id}/content" if d.allowed else None,
    )
