"""Federation: answering other members' signed share requests, and borrowing from them.

``POST /v1/federation/requests`` takes no API key: the EIP-712 signature authenticates
the requesting member (its signer must be the account the Consortium contract registers
for ``requesting_member``). ``POST /v1/federation/borrow`` is for this member's delivery
desk (its delivery key): this instance signs the request and asks the supplier's
instance named in the peers file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StringConstraints

from api.deps import Delivery, InstanceDep
from ledger.delivery import Delivery as ContentDelivery
from ledger.federation import ShareRequestMessage
from ledger.federation_service import CONTENT_TOKEN_HEADER, Borrower, Supplier
from ledger.instance import Instance

router = APIRouter(prefix="/v1/federation", tags=["federation"])

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Hex32 = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{64}$")]
Signed = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A signed field: taken exactly as sent (stripping it would change what was signed)."""


@dataclass
class Federation:
    """The supplier and borrower services of one opened instance."""

    instance: Instance
    supplier: Supplier
    borrower: Borrower

    @classmethod
    def open(cls, instance: Instance) -> Federation:
        config = instance.config
        return cls(
            instance,
            Supplier(instance),
            Borrower(
                instance,
                config.peers_file or config.data_dir / "peers.json",
                timeout_s=config.federation_timeout_s,
            ),
        )


_opening = threading.Lock()


def get_federation(request: Request, instance: InstanceDep) -> Federation:
    """The federation services of the app's instance, made on first use."""
    state = request.app.state
    federation: Federation | None = getattr(state, "federation", None)
    if federation is None or federation.instance is not instance:
        with _opening:
            federation = getattr(state, "federation", None)
            if federation is None or federation.instance is not instance:
                federation = state.federation = Federation.open(instance)
    return federation


FederationDep = Annotated[Federation, Depends(get_federation)]


class ShareRequestBody(BaseModel):
    """The signed fields (see ledger.federation.ShareRequestMessage)."""

    request_id: Hex32 = Field(description="32 random bytes chosen by the borrower, 0x-hex")
    supplier: Signed = Field(description="library id of the member that owns the resource")
    requesting_member: Signed
    resource_id: Hex32
    patron: Signed = Field(description="the borrower's HMAC pseudonym of the patron")
    patron_category: Signed
    purpose: Signed
    method: Signed
    scope: Signed
    destination_country: Signed
    campaign: str = Field(default="", max_length=200, description='"" for none')
    expires_at: int = Field(ge=0, le=2**64 - 1, description="Unix seconds (UTC)")


class SignedShareRequest(BaseModel):
    request: ShareRequestBody
    signature: str = Field(description="EIP-712 signature by the requesting member's account")


class ShareAnswerBody(BaseModel):
    """The signed fields of the answer (see ledger.federation.ShareAnswer)."""

    request_id: str
    supplier: str
    requesting_member: str
    resource_id: str
    decision_id: str
    decision_seq: int
    decision: str
    reason: str
    licence_id: int
    licence_version: int
    fee_minor: int
    currency: str
    content_hash: str


class FederatedAnswer(BaseModel):
    answer: ShareAnswerBody
    signature: str = Field(description="EIP-712 signature by the supplier's account")
    term: str
    detail: str
    obligations: list[str]
    decided_at: datetime
    record_seq: int = Field(description="where the supplier's trail records this answer")
    content_url: str | None = Field(description="fetch once with the content token header")
    content_token: str | None


@router.post("/requests", response_model=FederatedAnswer)
def answer_request(body: SignedShareRequest, federation: FederationDep) -> FederatedAnswer:
    """Answer another member's signed share request (no API key: the signature is the key).

    The decision and the signed request are in this member's trail before this answers.
    An expired request or a request id already answered is refused with 409.
    """
    message = ShareRequestMessage(**body.request.model_dump())
    answered = federation.supplier.answer(message, body.signature)
    d = answered.result.decision
    return FederatedAnswer(
        answer=ShareAnswerBody(**answered.answer.as_json()),
        signature=answered.signature,
        term=d.term,
        detail=d.detail,
        obligations=list(d.obligations),
        decided_at=answered.result.at,
        record_seq=answered.record.seq,
        content_url=(
            f"/v1/federation/requests/{message.request_id}/content"
            if answered.content_token
            else None
        ),
        content_token=answered.content_token,
    )


def _stream(delivery: ContentDelivery) -> StreamingResponse:
    return StreamingResponse(
        delivery.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(delivery.size),
            "X-Libshare-Resource": delivery.resource_id,
            "X-Libshare-Media-Type": delivery.media_type,
        },
    )


@router.get(
    "/requests/{request_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def request_content(
    request_id: str,
    federation: FederationDep,
    token: Annotated[str, Header(alias=CONTENT_TOKEN_HEADER, min_length=1, max_length=200)],
) -> StreamingResponse:
    """The content of an allowed answer: once, within 5 minutes, for its content token."""
    return _stream(federation.supplier.deliver(request_id, token))


class BorrowBody(BaseModel):
    """Borrow another member's resource for one of your patrons."""

    resource_id: Text
    supplier: Text | None = Field(
        default=None, description="the owning member; checked against the registry if given"
    )
    patron_id: Text = Field(
        description="the patron's local id; pseudonymised here, never sent to the supplier"
    )
    patron_category: Text = Field(examples=["faculty"])
    purpose: Text = Field(examples=["research"])
    method: Text = Field(examples=["copy"])
    scope: Text = Field(examples=["part"])
    destination_country: Text = Field(examples=["CN"])
    campaign: Text | None = None


class BorrowResult(BaseModel):
    decision: str
    reason: str
    term: str
    detail: str
    licence_id: int | None
    licence_version: int | None
    fee: int | None = Field(description="fee in minor units, charged by the supplier")
    currency: str | None
    obligations: list[str]
    supplier: str
    decision_id: str = Field(description="the decision in the supplier's trail")
    supplier_seq: int
    request_id: str
    receipt_id: str = Field(description="the receipt in this member's trail")
    receipt_seq: int
    content_hash: str
    outcome: str = Field(description="received or denied")
    content_url: str | None = Field(description="fetch the content here once, if received")


@router.post("/borrow", response_model=BorrowResult)
def borrow(body: BorrowBody, federation: FederationDep, caller: Delivery) -> BorrowResult:
    """Ask the owning member's instance; the receipt is in this member's trail before this answers.

    502 when the supplier cannot be reached, refuses, or answers with anything that does
    not verify; 504 when it does not answer in time.
    """
    got = federation.borrower.borrow(
        caller.member,
        caller.key_id,
        resource_id=body.resource_id,
        patron_id=body.patron_id,
        patron_category=body.patron_category,
        purpose=body.purpose,
        method=body.method,
        scope=body.scope,
        destination_country=body.destination_country,
        campaign=body.campaign,
        supplier=body.supplier,
    )
    a = got.answer
    return BorrowResult(
        decision=a.decision,
        reason=a.reason,
        term=got.term,
        detail=got.detail,
        licence_id=a.licence_id or None,
        licence_version=a.licence_version or None,
        fee=a.fee_minor if a.currency else None,
        currency=a.currency or None,
        obligations=got.obligations,
        supplier=a.supplier,
        decision_id=a.decision_id,
        supplier_seq=a.decision_seq,
        request_id=a.request_id,
        receipt_id=got.receipt.entry_id,
        receipt_seq=got.receipt.seq,
        content_hash=a.content_hash,
        outcome=got.outcome,
        content_url=got.content_url,
    )


@router.get(
    "/receipts/{receipt_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def receipt_content(
    receipt_id: str, federation: FederationDep, caller: Delivery
) -> StreamingResponse:
    """Borrowed content, checked against its registered hash: once, for the key that borrowed."""
    return _stream(federation.borrower.collect(receipt_id, caller.key_id))
