"""The signed share request and answer: EIP-712 signing, recovery, registry and freshness."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from ledger.errors import InvalidInput
from ledger.federation import (
    Domain,
    RequestExpired,
    ShareAnswer,
    ShareRequestMessage,
    SignerMismatch,
    SignerNotMember,
    answer_fields,
    answer_from_fields,
    check_fresh,
    check_signer,
    receipt_fields,
    recover_signer,
    request_from_fields,
    sign,
)

B = Account.from_key(b"\x0b" * 32)
C = Account.from_key(b"\x0c" * 32)
A = Account.from_key(b"\x0a" * 32)
ACCOUNTS = {"CN-A": A.address, "CN-B": B.address, "CN-C": C.address}
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")

REQUEST = ShareRequestMessage(
    request_id="0x" + "11" * 32,
    supplier="CN-A",
    requesting_member="CN-B",
    resource_id="0x" + "22" * 32,
    patron="2026:" + "ab" * 32,
    patron_category="student",
    purpose="research",
    method="copy",
    scope="part",
    destination_country="CN",
    campaign="",
    expires_at=1_800_000_000,
)
ANSWER = ShareAnswer(
    request_id=REQUEST.request_id,
    supplier="CN-A",
    requesting_member="CN-B",
    resource_id=REQUEST.resource_id,
    decision_id="CN-A:7",
    decision_seq=7,
    decision="allow",
    reason="allowed",
    licence_id=3,
    licence_version=1,
    fee_minor=0,
    currency="",
    content_hash="0x" + "33" * 32,
)


def test_a_signed_request_recovers_its_signer() -> None:
    signature = sign(REQUEST, DOMAIN, B)
    assert recover_signer(REQUEST, DOMAIN, signature) == B.address
    check_signer(B.address, "CN-B", ACCOUNTS, "share request")


def test_the_signature_is_standard_eip712_v4() -> None:
    # The same bytes any wallet's eth_signTypedData_v4 signs: the domain separator and
    # struct hash of encode_typed_data, with the type string as EIP-712 defines it.
    signable = encode_typed_data(full_message=REQUEST.typed_data(DOMAIN))
    signature = sign(REQUEST, DOMAIN, B)
    assert Account.recover_message(signable, signature=bytes.fromhex(signature[2:])) == B.address
    assert REQUEST.typed_data(DOMAIN)["domain"]["verifyingContract"] == DOMAIN.verifying_contract


@pytest.mark.parametrize(
    "change",
    [
        {"patron_category": "faculty"},
        {"method": "loan"},
        {"requesting_member": "CN-C"},
        {"expires_at": REQUEST.expires_at + 1},
        {"campaign": "free-month"},
    ],
)
def test_any_changed_field_recovers_another_signer(change: dict[str, object]) -> None:
    signature = sign(REQUEST, DOMAIN, B)
    altered = dataclasses.replace(REQUEST, **change)  # type: ignore[arg-type]
    assert recover_signer(altered, DOMAIN, signature) != B.address


def test_a_signature_for_another_chain_or_consortium_does_not_verify_here() -> None:
    signature = sign(REQUEST, DOMAIN, B)
    for other in (
        Domain(1, DOMAIN.verifying_contract),
        Domain(DOMAIN.chain_id, "0x" + "44" * 20),
    ):
        assert recover_signer(REQUEST, other, signature) != B.address


def test_a_stranger_is_not_a_member() -> None:
    stranger = Account.from_key(b"\x0d" * 32)
    signer = recover_signer(REQUEST, DOMAIN, sign(REQUEST, DOMAIN, stranger))
    with pytest.raises(SignerNotMember, match="not a consortium member's account"):
        check_signer(signer, "CN-B", ACCOUNTS, "share request")


def test_c_cannot_sign_for_b() -> None:
    signer = recover_signer(REQUEST, DOMAIN, sign(REQUEST, DOMAIN, C))
    with pytest.raises(SignerMismatch, match=r"names CN-B but is signed by .* the account of CN-C"):
        check_signer(signer, "CN-B", ACCOUNTS, "share request")


@pytest.mark.parametrize("signature", ["", "0x", "0x" + "zz" * 65, "0x" + "00" * 64, 42])
def test_a_malformed_signature_is_invalid_input(signature: object) -> None:
    with pytest.raises(InvalidInput):
        recover_signer(REQUEST, DOMAIN, signature)  # type: ignore[arg-type]


def test_an_out_of_range_signature_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="does not recover"):
        recover_signer(REQUEST, DOMAIN, "0x" + "ff" * 65)


def test_freshness() -> None:
    check_fresh(1000, 999)
    with pytest.raises(RequestExpired, match="expired 0 s ago"):
        check_fresh(1000, 1000)
    with pytest.raises(RequestExpired, match="expired 60 s ago"):
        check_fresh(1000, 1060)
    with pytest.raises(InvalidInput, match="valid for 301 s, more than the 300 s"):
        check_fresh(1301, 1000)


@pytest.mark.parametrize(
    "change",
    [
        {"request_id": "0x1234"},
        {"resource_id": "0x" + "AB" * 32},  # upper-case hex would sign other bytes than shown
        {"patron": ""},
        {"purpose": "x" * 201},
        {"method": "copy\n"},
        {"expires_at": -1},
        {"expires_at": 2**64},
    ],
)
def test_malformed_requests_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        dataclasses.replace(REQUEST, **change)  # type: ignore[arg-type]


def test_entries_keep_what_was_signed() -> None:
    request_signature = sign(REQUEST, DOMAIN, B)
    answer_signature = sign(ANSWER, DOMAIN, A)
    answer_entry = answer_fields(REQUEST, request_signature, B.address, ANSWER)
    receipt_entry = receipt_fields(
        REQUEST, ANSWER, answer_signature, "received", ANSWER.content_hash
    )
    assert "patron_id" not in answer_entry and answer_entry["patron"] == REQUEST.patron
    assert answer_entry["campaign"] is None and answer_entry["currency"] is None
    # An auditor rebuilds the signed messages from the entries and checks the signatures.
    assert request_from_fields(answer_entry) == REQUEST
    assert answer_from_fields(receipt_entry) == ANSWER
    assert recover_signer(request_from_fields(answer_entry), DOMAIN, request_signature) == (
        B.address
    )
    assert recover_signer(answer_from_fields(receipt_entry), DOMAIN, answer_signature) == (
        A.address
    )


def test_a_receipt_outcome_is_one_of_the_known() -> None:
    with pytest.raises(InvalidInput, match="outcome 'lost' is not known"):
        receipt_fields(REQUEST, ANSWER, "0x", "lost", None)
