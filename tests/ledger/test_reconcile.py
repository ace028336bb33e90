"""Reconciling two trails: every answer has its receipt and back; what differs is named."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.access import canonical_entry
from ledger.federation import (
    ANSWER,
    RECEIPT,
    SHARED_FIELDS,
    Domain,
    ShareAnswer,
    ShareRequestMessage,
    answer_fields,
    receipt_fields,
    sign,
)
from ledger.reconcile import Signatures, TrailSide, reconcile, side_from_export

KEYS = {"CN-A": Account.from_key(b"\x0a" * 32), "CN-B": Account.from_key(b"\x0b" * 32)}
ACCOUNTS = {lib: key.address for lib, key in KEYS.items()}
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


@dataclass(frozen=True)
class Exchange:
    supplier: str
    allowed: bool
    patron: int
    campaign: bool


@dataclass
class Trails:
    bodies: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"CN-A": [], "CN-B": []}
    )
    receipts: dict[str, int] = field(default_factory=dict)  # request id -> seq in borrower's
    answers: dict[str, int] = field(default_factory=dict)  # request id -> seq in supplier's
    borrower: dict[str, str] = field(default_factory=dict)

    def append(self, member: str, body: dict[str, Any]) -> int:
        self.bodies[member].append(body)
        return len(self.bodies[member]) - 1

    def side(self, member: str) -> TrailSide:
        side = TrailSide(member)
        for seq, body in enumerate(self.bodies[member]):
            side.add(seq, body)
        return side


def build(exchanges: list[Exchange], *, signed: bool = False) -> Trails:
    """Both trails as the services write them: decision, answer (supplier), receipt (borrower)."""
    trails = Trails()
    for n, ex in enumerate(exchanges):
        borrower = "CN-B" if ex.supplier == "CN-A" else "CN-A"
        # Local checks in between: decisions for the member's own patrons are not federated.
        trails.append(ex.supplier, _decision(ex.supplier, ex.supplier, n, "allow", "0"))
        request = ShareRequestMessage(
            request_id=f"0x{n:064x}",
            supplier=ex.supplier,
            requesting_member=borrower,
            resource_id=f"0x{n + 1000:064x}",
            patron=f"2026:{ex.patron:064x}",
            patron_category="student",
            purpose="research",
            method="copy",
            scope="part",
            destination_country="CN",
            campaign="free-month" if ex.campaign else "",
            expires_at=1_800_000_000 + n,
        )
        outcome = "allow" if ex.allowed else "deny"
        decision = _decision(ex.supplier, borrower, n, outcome, request.patron)
        decision.update(resource_id=request.resource_id, campaign=request.campaign or None)
        seq = len(trails.bodies[ex.supplier])
        decision["decision_id"] = f"{ex.supplier}:{seq}"
        trails.append(ex.supplier, decision)
        answer = ShareAnswer(
            request_id=request.request_id,
            supplier=ex.supplier,
            requesting_member=borrower,
            resource_id=request.resource_id,
            decision_id=decision["decision_id"],
            decision_seq=seq,
            decision=outcome,
            reason=decision["reason"],
            licence_id=1,
            licence_version=2,
            fee_minor=0,
            currency="",
            content_hash=f"0x{n + 2000:064x}",
        )
        req_sig = sign(request, DOMAIN, KEYS[borrower]) if signed else "0x"
        ans_sig = sign(answer, DOMAIN, KEYS[ex.supplier]) if signed else "0x"
        signer = ACCOUNTS[borrower]
        answer_body = {"v": 1, "kind": ANSWER, **answer_fields(request, req_sig, signer, answer)}
        trails.answers[request.request_id] = trails.append(ex.supplier, answer_body)
        received = answer.content_hash if ex.allowed else None
        receipt = receipt_fields(
            request, answer, ans_sig, "received" if ex.allowed else "denied", received
        )
        trails.receipts[request.request_id] = trails.append(
            borrower, {"v": 1, "kind": RECEIPT, **receipt}
        )
        trails.borrower[request.request_id] = borrower
    return trails


def _decision(supplier: str, requester: str, n: int, outcome: str, patron: str) -> dict[str, Any]:
    return {
        "v": 1, "decision_id": f"{supplier}:?", "at": "2026-01-01T00:00:00+00:00",
        "supplier": supplier, "resource_id": f"0x{n:064x}", "requesting_member": requester,
        "patron": patron, "patron_category": "student", "purpose": "research",
        "method": "copy", "scope": "part", "destination_country": "CN", "campaign": None,
        "decision": outcome, "reason": "allowed" if outcome == "allow" else "limit_exceeded",
        "term": "t", "licence_id": 1, "licence_version": 2, "fee_minor": None,
        "currency": None, "obligations": [],
    }  # fmt: skip


exchanges = st.lists(
    st.builds(
        Exchange,
        supplier=st.sampled_from(["CN-A", "CN-B"]),
        allowed=st.booleans(),
        patron=st.integers(0, 5),
        campaign=st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


def _findings(trails: Trails) -> list[Any]:
    results = reconcile(trails.side("CN-A"), trails.side("CN-B"))
    return [f for r in results for f in r.findings]


@given(exchanges)
@settings(max_examples=60, deadline=None)
def test_complete_trails_reconcile(exs: list[Exchange]) -> None:
    trails = build(exs)
    a_to_b, b_to_a = reconcile(trails.side("CN-A"), trails.side("CN-B"))
    assert a_to_b.reconciled and b_to_a.reconciled, a_to_b.findings + b_to_a.findings
    assert a_to_b.matched == sum(e.supplier == "CN-A" for e in exs)
    assert b_to_a.matched == sum(e.supplier == "CN-B" for e in exs)


@given(exchanges, st.data())
@settings(max_examples=60, deadline=None)
def test_a_withheld_receipt_is_reported(exs: list[Exchange], data: st.DataObject) -> None:
    trails = build(exs)
    rid = data.draw(st.sampled_from(sorted(trails.receipts)))
    borrower = trails.borrower[rid]
    trails.bodies[borrower][trails.receipts[rid]] = {"v": 1, "kind": "note"}  # seqs kept
    (finding,) = _findings(trails)
    assert (finding.problem, finding.request_id) == ("receipt_missing", rid)
    assert finding.supplier_seq == trails.answers[rid] and finding.borrower_seq is None
    assert "has no receipt" in str(finding)


@given(exchanges, st.data())
@settings(max_examples=60, deadline=None)
def test_a_receipt_without_an_answer_is_reported(exs: list[Exchange], data: st.DataObject) -> None:
    trails = build(exs)
    rid = data.draw(st.sampled_from(sorted(trails.answers)))
    supplier = "CN-A" if trails.borrower[rid] == "CN-B" else "CN-B"
    trails.bodies[supplier][trails.answers[rid]] = {"v": 1, "kind": "note"}  # seqs kept
    (finding,) = _findings(trails)
    assert (finding.problem, finding.request_id) == ("answer_missing", rid)
    assert finding.borrower_seq == trails.receipts[rid]


@given(exchanges, st.data())
@settings(max_examples=80, deadline=None)
def test_an_altered_receipt_field_is_named(exs: list[Exchange], data: st.DataObject) -> None:
    trails = build(exs)
    rid = data.draw(st.sampled_from(sorted(trails.receipts)))
    name = data.draw(st.sampled_from([f for f in SHARED_FIELDS if f != "request_id"]))
    receipt = trails.bodies[trails.borrower[rid]][trails.receipts[rid]]
    receipt[name] = "altered" if receipt[name] != "altered" else "other"
    found = _findings(trails)
    assert found and all(f.request_id == rid for f in found)
    mismatch = [f for f in found if f.problem == "field_mismatch"]
    assert len(mismatch) == 1 and f"{name}: " in mismatch[0].detail
    assert '"altered"' in mismatch[0].detail or '"other"' in mismatch[0].detail


@given(exchanges, st.data())
@settings(max_examples=40, deadline=None)
def test_an_allowed_answer_whose_content_did_not_arrive_is_reported(
    exs: list[Exchange], data: st.DataObject
) -> None:
    trails = build([*exs, Exchange("CN-A", True, 0, False)])
    rid = max(trails.receipts)  # the allowed one just added
    receipt = trails.bodies["CN-B"][trails.receipts[rid]]
    receipt.update(
        data.draw(
            st.sampled_from(
                [
                    {"outcome": "content_unavailable", "received_hash": None},
                    {"outcome": "content_mismatch", "received_hash": "0x" + "ee" * 32},
                    {"outcome": "received", "received_hash": "0x" + "ee" * 32},
                ]
            )
        )
    )
    (finding,) = _findings(trails)
    assert (finding.problem, finding.request_id) == ("not_received", rid)


def test_a_duplicate_receipt_is_reported() -> None:
    trails = build([Exchange("CN-A", True, 1, False)])
    (rid,) = trails.receipts
    trails.bodies["CN-B"].append(dict(trails.bodies["CN-B"][trails.receipts[rid]]))
    (finding,) = _findings(trails)
    assert finding.problem == "duplicate" and "2 receipts" in finding.detail


def test_an_answer_that_misstates_its_decision_is_reported() -> None:
    trails = build([Exchange("CN-A", False, 1, False)])
    (rid,) = trails.answers
    # The answer (and the receipt) say allow; the decision it names denied.
    for member, seq in (("CN-A", trails.answers[rid]), ("CN-B", trails.receipts[rid])):
        trails.bodies[member][seq]["decision"] = "allow"
    found = {f.problem for f in _findings(trails)}
    assert "decision_mismatch" in found


def test_an_answer_naming_no_decision_is_reported() -> None:
    trails = build([Exchange("CN-A", True, 1, False)])
    (rid,) = trails.answers
    seq = trails.answers[rid]
    trails.bodies["CN-A"][seq]["decision_seq"] = 0  # a local decision, another id
    trails.bodies["CN-B"][trails.receipts[rid]]["decision_seq"] = 0
    (finding,) = _findings(trails)
    assert finding.problem == "decision_missing"


def test_signatures_verify_against_the_registry_and_a_forged_one_is_named() -> None:
    trails = build(
        [Exchange("CN-A", True, 1, False), Exchange("CN-B", False, 2, True)], signed=True
    )
    signatures = Signatures(DOMAIN, ACCOUNTS)
    results = reconcile(trails.side("CN-A"), trails.side("CN-B"), signatures=signatures)
    assert all(r.reconciled for r in results), [r.findings for r in results]
    rid = min(trails.receipts)  # CN-A supplied it: CN-B holds the receipt
    receipt = trails.bodies["CN-B"][trails.receipts[rid]]
    answer_body = trails.bodies["CN-A"][trails.answers[rid]]
    answer_body["signature"] = receipt["answer_signature"]  # the supplier's, not CN-B's
    results = reconcile(trails.side("CN-A"), trails.side("CN-B"), signatures=signatures)
    (finding,) = [f for r in results for f in r.findings]
    assert finding.problem == "bad_signature"
    assert f"not by CN-B's registered account {ACCOUNTS['CN-B']}" in finding.detail


def test_the_export_reader_takes_what_the_exporter_writes() -> None:
    trails = build([Exchange("CN-A", True, 1, False)])
    header = {"type": "libshare-trail", "version": 2, "member": "CN-B", "account": "0x0",
              "chain_id": 1, "trail_anchor": "0x0", "exported_at": "", "size": 1}  # fmt: skip
    lines = [json.dumps(header) + "\n"]
    for seq, body in enumerate(trails.bodies["CN-B"]):
        data = canonical_entry(body).decode()
        lines.append(f'{{"type":"entry","seq":{seq},"leaf_hash":"{"0" * 64}","body":{data}}}\n')
    lines.append('{"type":"head","size":1,"root":"' + "0" * 64 + '","block":1,"tx":"0x"}\n')
    side = side_from_export(lines)
    assert side.member == "CN-B" and side.entries == 1 and list(side.receipts) == [0]


def test_two_trails_of_one_member_are_refused() -> None:
    with pytest.raises(ValueError, match="both trails are CN-A's"):
        reconcile(TrailSide("CN-A"), TrailSide("CN-A"))
