"""Federation between member instances: the signed share request and answer (pure).

When a patron of member B asks for a resource of member A, B's instance sends the
request to A's instance signed with B's chain key as EIP-712 typed data; A answers with
its decision signed by A's chain key. Each side can then check the other against the
consortium's member registry on chain, without sharing any secret::

    B's desk ──▶ B's instance ── ShareRequest, signed by B ──▶ A's instance
                                                               │ signer is B's registered
                                                               │ account? fresh? new id?
                                                               │ decide (A's trail)
                                                               │ record the answer (A's trail)
    B's desk ◀── B's instance ◀── ShareAnswer, signed by A ────┘
                 │ signer is A's registered account? content hash as registered?
                 └ record the receipt (B's trail)

The EIP-712 domain is ``{name: "libshare", version: "1", chainId, verifyingContract:
the Consortium contract}``, so a signature is valid for one consortium on one chain
only. The patron travels as B's HMAC pseudonym, never as a patron id.

Replay: every request carries a random 32-byte ``request_id`` and an expiry at most
:data:`MAX_VALIDITY_S` ahead. The supplier refuses an expired request, and a request id
it has already answered, with a 409 problem (:class:`RequestExpired`,
:class:`RequestReplayed`): answering again would give the content twice for one signed
request. A borrower that lost an answer asks again with a new request.

This module is pure: no clock, no keys on disk, no network. The trail entries both
sides record are built here (:func:`answer_fields`, :func:`receipt_fields`), so the
reconciler (:mod:`ledger.reconcile`) reads exactly what was written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.exceptions import ValidationError
from web3 import Web3

from ledger.errors import Conflict, InvalidInput, PermissionDenied

__all__ = [
    "ANSWER",
    "ANSWER_FIELDS",
    "MAX_VALIDITY_S",
    "RECEIPT",
    "RECEIPT_FIELDS",
    "RECEIPT_OUTCOMES",
    "SHARED_FIELDS",
    "Domain",
    "RequestExpired",
    "RequestReplayed",
    "ShareAnswer",
    "ShareRequestMessage",
    "SignerMismatch",
    "SignerNotMember",
    "answer_fields",
    "answer_from_fields",
    "check_fresh",
    "check_signer",
    "receipt_fields",
    "recover_signer",
    "request_from_fields",
    "sign",
]

DOMAIN_NAME = "libshare"
DOMAIN_VERSION = "1"
MAX_VALIDITY_S = 300
"""The longest a signed request may stay valid (its expiry minus the supplier's clock)."""

ANSWER = "federation_answer"
"""Trail entry kind: the supplier's record of a signed request it answered."""
RECEIPT = "federation_receipt"
"""Trail entry kind: the borrower's record of the answer (and content) it received."""

RECEIPT_OUTCOMES = ("received", "denied", "content_mismatch", "content_unavailable")
"""What a borrower's receipt says happened: the content arrived and hashes as registered;
the supplier denied; bytes arrived that do not hash as registered; no bytes arrived."""

_BYTES32 = re.compile(r"0x[0-9a-f]{64}")
_MAX_TEXT = 200
_UINT64 = 2**64 - 1

_REQUEST_TYPE = [
    {"name": "requestId", "type": "bytes32"},
    {"name": "supplier", "type": "string"},
    {"name": "requestingMember", "type": "string"},
    {"name": "resourceId", "type": "bytes32"},
    {"name": "patron", "type": "string"},
    {"name": "patronCategory", "type": "string"},
    {"name": "purpose", "type": "string"},
    {"name": "method", "type": "string"},
    {"name": "scope", "type": "string"},
    {"name": "destinationCountry", "type": "string"},
    {"name": "campaign", "type": "string"},
    {"name": "expiresAt", "type": "uint64"},
]
_ANSWER_TYPE = [
    {"name": "requestId", "type": "bytes32"},
    {"name": "supplier", "type": "string"},
    {"name": "requestingMember", "type": "string"},
    {"name": "resourceId", "type": "bytes32"},
    {"name": "decisionId", "type": "string"},
    {"name": "decisionSeq", "type": "uint64"},
    {"name": "decision", "type": "string"},
    {"name": "reason", "type": "string"},
    {"name": "licenceId", "type": "uint64"},
    {"name": "licenceVersion", "type": "uint64"},
    {"name": "feeMinor", "type": "uint64"},
    {"name": "currency", "type": "string"},
    {"name": "contentHash", "type": "bytes32"},
]
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class RequestExpired(Conflict):
    """A signed share request arrived after its expiry."""

    title = "Share request expired"


class RequestReplayed(Conflict):
    """A signed share request whose id the supplier has already answered."""

    title = "Share request already answered"


class SignerNotMember(PermissionDenied):
    """A request or answer is signed by an account the consortium has not admitted."""

    title = "Signer is not a member"


class SignerMismatch(PermissionDenied):
    """A request or answer is signed by one member's account but names another member."""

    title = "Signer is another member"


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain: one consortium (its Consortium contract) on one chain."""

    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": Web3.to_checksum_address(self.verifying_contract),
        }


def _bytes32(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not _BYTES32.fullmatch(value):
        raise InvalidInput(
            f"{what} {str(value)[:80]!r} is not 0x and 64 lower-case hex digits",
            hint="send the 32-byte value as 0x-hex",
        )
    return bytes.fromhex(value[2:])


def _text(value: str, what: str, *, empty: bool = False) -> None:
    if not isinstance(value, str) or (not value and not empty):
        raise InvalidInput(f"{what} is empty", hint=f"send a {what}")
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise InvalidInput(
            f"{what} is longer than {_MAX_TEXT} characters or holds control characters",
            hint="send printable text",
        )


def _uint64(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= _UINT64:
        raise InvalidInput(f"{what} {value!r} is not an unsigned 64-bit integer")


@dataclass(frozen=True)
class ShareRequestMessage:
    """What the borrowing member signs: one share request, for one supplier, until a time.

    ``patron`` is the borrower's HMAC pseudonym; ``campaign`` is ``""`` for none;
    ``expires_at`` is Unix seconds (UTC).
    """

    request_id: str
    supplier: str
    requesting_member: str
    resource_id: str
    patron: str
    patron_category: str
    purpose: str
    method: str
    scope: str
    destination_country: str
    campaign: str
    expires_at: int

    def __post_init__(self) -> None:
        _bytes32(self.request_id, "request_id")
        _bytes32(self.resource_id, "resource_id")
        for name in ("supplier", "requesting_member", "patron", "patron_category", "purpose"):
            _text(getattr(self, name), name)
        for name in ("method", "scope", "destination_country"):
            _text(getattr(self, name), name)
        _text(self.campaign, "campaign", empty=True)
        _uint64(self.expires_at, "expires_at")

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The EIP-712 typed data (``eth_signTypedData_v4`` form) of this request."""
        return {
            "types": {"EIP712Domain": _DOMAIN_TYPE, "ShareRequest": _REQUEST_TYPE},
            "primaryType": "ShareRequest",
            "domain": domain.as_dict(),
            "message": {
                "requestId": _bytes32(self.request_id, "request_id"),
                "supplier": self.supplier,
                "requestingMember": self.requesting_member,
                "resourceId": _bytes32(self.resource_id, "resource_id"),
                "patron": self.patron,
                "patronCategory": self.patron_category,
                "purpose": self.purpose,
                "method": self.method,
                "scope": self.scope,
                "destinationCountry": self.destination_country,
                "campaign": self.campaign,
                "expiresAt": self.expires_at,
            },
        }

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShareAnswer:
    """What the supplier signs: its decision on one request, where its trail holds it.

    ``licence_id``/``licence_version`` are 0 when no licence applied; ``currency`` is
    ``""`` when no fee is charged (``fee_minor`` is then 0); ``content_hash`` is the
    resource's registered sha-256, as 0x-hex.
    """

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

    def __post_init__(self) -> None:
        for name in ("request_id", "resource_id", "content_hash"):
            _bytes32(getattr(self, name), name)
        for name in ("supplier", "requesting_member", "decision_id", "decision", "reason"):
            _text(getattr(self, name), name)
        _text(self.currency, "currency", empty=True)
        for name in ("decision_seq", "licence_id", "licence_version", "fee_minor"):
            _uint64(getattr(self, name), name)

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The EIP-712 typed data of this answer."""
        return {
            "types": {"EIP712Domain": _DOMAIN_TYPE, "ShareAnswer": _ANSWER_TYPE},
            "primaryType": "ShareAnswer",
            "domain": domain.as_dict(),
            "message": {
                "requestId": _bytes32(self.request_id, "request_id"),
                "supplier": self.supplier,
                "requestingMember": self.requesting_member,
                "resourceId": _bytes32(self.resource_id, "resource_id"),
                "decisionId": self.decision_id,
                "decisionSeq": self.decision_seq,
                "decision": self.decision,
                "reason": self.reason,
                "licenceId": self.licence_id,
                "licenceVersion": self.licence_version,
                "feeMinor": self.fee_minor,
                "currency": self.currency,
                "contentHash": _bytes32(self.content_hash, "content_hash"),
            },
        }

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Signed = ShareRequestMessage | ShareAnswer


def sign(message: Signed, domain: Domain, account: LocalAccount) -> str:
    """The EIP-712 signature of ``message`` by ``account``, as 0x-hex (65 bytes)."""
    signable = encode_typed_data(full_message=message.typed_data(domain))
    return "0x" + bytes(account.sign_message(signable).signature).hex()


def recover_signer(message: Signed, domain: Domain, signature: str) -> str:
    """The checksum address whose key made ``signature`` over ``message`` in ``domain``.

    A signature made for another message, domain or chain recovers some other address;
    the caller compares it with the account the member registry holds. Raises
    :class:`InvalidInput` for a signature that is not 65 bytes of 0x-hex.
    """
    if not isinstance(signature, str) or not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
        raise InvalidInput(
            "the signature is not 65 bytes of 0x-hex", hint="sign the EIP-712 typed data"
        )
    signable = encode_typed_data(full_message=message.typed_data(domain))
    try:
        return str(Account.recover_message(signable, signature=bytes.fromhex(signature[2:])))
    except (ValueError, TypeError, BadSignature, ValidationError) as exc:  # r, s or v out of range
        raise InvalidInput(
            f"the signature does not recover a signer ({exc})", hint="sign the EIP-712 typed data"
        ) from exc


def check_signer(signer: str, claimed_member: str, accounts: Mapping[str, str], what: str) -> None:
    """``signer`` must be the account the registry holds for ``claimed_member``.

    ``accounts`` maps library ids to their registered accounts (the index of the
    Consortium contract). Raises :class:`SignerNotMember` or :class:`SignerMismatch`.
    """
    by_account = {Web3.to_checksum_address(a): lib for lib, a in accounts.items()}
    signer = Web3.to_checksum_address(signer)
    signer_member = by_account.get(signer)
    if signer_member is None:
        raise SignerNotMember(
            f"the {what} is signed by {signer}, which is not a consortium member's account",
            hint="sign with the member's chain key (the account the Consortium contract "
            "registers for it)",
        )
    if signer_member != claimed_member:
        registered = accounts.get(claimed_member, "no account (not a member)")
        raise SignerMismatch(
            f"the {what} names {claimed_member} but is signed by {signer}, the account of "
            f"{signer_member}; {claimed_member}'s registered account is {registered}",
            hint="a member signs only for itself",
        )


def check_fresh(expires_at: int, now_s: int, *, max_validity_s: int = MAX_VALIDITY_S) -> None:
    """Refuse a request that has expired, or that claims validity beyond the maximum.

    ``now_s`` is the supplier's clock in Unix seconds.
    """
    if now_s >= expires_at:
        raise RequestExpired(
            f"the request expired {now_s - expires_at} s ago (expires_at {expires_at}, "
            f"now {now_s})",
            hint="send a new request, signed with a fresh expiry; check both clocks",
        )
    if expires_at - now_s > max_validity_s:
        raise InvalidInput(
            f"the request is valid for {expires_at - now_s} s, more than the {max_validity_s} s "
            "a supplier accepts",
            hint=f"set expires_at at most {max_validity_s} s ahead",
        )


# -- the trail entries ---------------------------------------------------------------

Fields = dict[str, str | int | list[str] | None]

SHARED_FIELDS = (
    "request_id", "supplier", "requesting_member", "resource_id", "patron",
    "patron_category", "purpose", "method", "scope", "destination_country", "campaign",
    "expires_at", "decision_id", "decision_seq", "decision", "reason", "licence_id",
    "licence_version", "fee_minor", "currency", "content_hash",
)  # fmt: skip
"""Fields the supplier's answer record and the borrower's receipt must agree on."""

ANSWER_FIELDS = (*SHARED_FIELDS, "signer", "signature")
RECEIPT_FIELDS = (*SHARED_FIELDS, "answer_signature", "outcome", "received_hash")


def _request_fields(request: ShareRequestMessage) -> Fields:
    return {**asdict(request), "campaign": request.campaign or None}


_SHARED = frozenset(("request_id", "supplier", "requesting_member", "resource_id"))
"""Fields an answer repeats from its request; an entry holds them once."""


def _answer_fields(answer: ShareAnswer) -> Fields:
    fields = {k: v for k, v in asdict(answer).items() if k not in _SHARED}
    # The signed message uses 0 and "" for "none"; the trail entry uses null.
    fields.update(
        licence_id=answer.licence_id or None,
        licence_version=answer.licence_version or None,
        fee_minor=answer.fee_minor if answer.currency else None,
        currency=answer.currency or None,
    )
    return fields


def answer_fields(
    request: ShareRequestMessage, signature: str, signer: str, answer: ShareAnswer
) -> Fields:
    """The supplier's trail entry for an answered request (kind :data:`ANSWER`).

    It keeps the borrower's signature, so an auditor can check, from the chain alone,
    that the requesting member really asked.
    """
    return {
        **_request_fields(request),
        **_answer_fields(answer),
        "signer": Web3.to_checksum_address(signer),
        "signature": signature,
    }


def receipt_fields(
    request: ShareRequestMessage,
    answer: ShareAnswer,
    answer_signature: str,
    outcome: str,
    received_hash: str | None,
) -> Fields:
    """The borrower's trail entry for an answer it received (kind :data:`RECEIPT`).

    ``outcome`` is one of :data:`RECEIPT_OUTCOMES`; ``received_hash`` the sha-256 (0x-hex)
    of the bytes that arrived, None when none did. It keeps the supplier's signature.
    """
    if outcome not in RECEIPT_OUTCOMES:
        raise InvalidInput(
            f"receipt outcome {outcome!r} is not known",
            hint=f"use one of: {', '.join(RECEIPT_OUTCOMES)}",
        )
    return {
        **_request_fields(request),
        **_answer_fields(answer),
        "answer_signature": answer_signature,
        "outcome": outcome,
        "received_hash": received_hash,
    }


def request_from_fields(fields: dict[str, Any]) -> ShareRequestMessage:
    """The signed request an answer or receipt entry records (to check its signature)."""
    values = {f.name: fields[f.name] for f in dataclass_fields(ShareRequestMessage)}
    return ShareRequestMessage(**{**values, "campaign": values["campaign"] or ""})


def answer_from_fields(fields: dict[str, Any]) -> ShareAnswer:
    """The signed answer an answer or receipt entry records (to check its signature)."""
    values = {f.name: fields[f.name] for f in dataclass_fields(ShareAnswer)}
    for name in ("licence_id", "licence_version", "fee_minor"):
        values[name] = values[name] or 0
    return ShareAnswer(**{**values, "currency": values["currency"] or ""})
