"""Reconciling two members' trails: every federated answer has its receipt, and back.

When member B borrows from member A, A's trail holds the decision and an answer entry
(:data:`~ledger.federation.ANSWER`: the request B signed and what A answered), and B's
trail holds a receipt (:data:`~ledger.federation.RECEIPT`: what B got). Given the two
trails — exports already verified against the chain (:mod:`ledger.trail_export`) —
:func:`reconcile` matches them by request id in both directions (A supplying B, B
supplying A) and reports every discrepancy as a :class:`Finding`:

``receipt_missing``   an answer in the supplier's trail has no receipt in the borrower's
``answer_missing``    a receipt in the borrower's trail has no answer in the supplier's
``duplicate``         a request id appears twice on one side
``field_mismatch``    answer and receipt disagree on a field both record (names them)
``not_received``      an allowed answer whose receipt does not say the registered bytes
                      arrived, or a denied one whose receipt says otherwise
``decision_missing``  an answer names a decision its own trail does not hold
``decision_mismatch`` an answer says something else than the decision it names
``bad_signature``     a recorded signature is not the registered account's (checked when
                      the domain and the registry's accounts are given)
``misplaced``         an answer or receipt in the trail of a member it does not concern

Pure: takes parsed entries, reads no file and no chain.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from ledger.errors import InvalidInput, LedgerError
from ledger.federation import (
    ANSWER,
    RECEIPT,
    SHARED_FIELDS,
    Domain,
    answer_from_fields,
    recover_signer,
    request_from_fields,
)

__all__ = [
    "Finding",
    "Reconciliation",
    "Signatures",
    "TrailSide",
    "reconcile",
    "side_from_export",
]

# What an answer entry must say the same as the decision entry it names.
_DECISION_FIELDS = (
    "supplier", "resource_id", "requesting_member", "patron", "patron_category", "purpose",
    "method", "scope", "destination_country", "campaign", "decision", "reason",
    "licence_id", "licence_version", "fee_minor", "currency",
)  # fmt: skip


@dataclass
class TrailSide:
    """The entries of one member's trail that reconciliation reads.

    ``answers`` and ``receipts`` map sequence numbers to the bodies of the answer and
    receipt entries; ``decisions`` the decisions made for other members' patrons (the
    ones an answer can name).
    """

    member: str
    entries: int = 0
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    receipts: dict[int, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, seq: int, body: Mapping[str, Any]) -> None:
        """Take one entry of the trail (entries of other kinds are counted and dropped)."""
        self.entries += 1
        kind = body.get("kind")
        if kind == ANSWER:
            self.answers[seq] = dict(body)
        elif kind == RECEIPT:
            self.receipts[seq] = dict(body)
        elif (
            kind is None and "decision_id" in body and body.get("requesting_member") != self.member
        ):
            self.decisions[seq] = dict(body)


def side_from_export(lines: Iterable[str | bytes]) -> TrailSide:
    """Read a ``libshare audit export`` (header line first) into a :class:`TrailSide`.

    Verify the export first: this only parses it. Raises :class:`InvalidInput` for a line
    that is not the export format.
    """
    side: TrailSide | None = None
    for lineno, raw in enumerate(lines, start=1):
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"line {lineno} is not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InvalidInput(f"line {lineno} is not a JSON object")
        if side is None:
            if obj.get("type") != "libshare-trail" or not isinstance(obj.get("member"), str):
                raise InvalidInput("the first line is not a libshare-trail header")
            side = TrailSide(obj["member"])
            continue
        if obj.get("type") != "entry":
            continue
        body = obj.get("body")
        if isinstance(body, str):  # version 1 exports hold the body as a JSON string
            body = json.loads(body)
        if not isinstance(body, dict) or not isinstance(obj.get("seq"), int):
            raise InvalidInput(f"line {lineno} is not a trail entry")
        side.add(obj["seq"], body)
    if side is None:
        raise InvalidInput("the export is empty")
    return side


@dataclass(frozen=True)
class Finding:
    """One discrepancy: what, for which request, where in each trail."""

    problem: str
    supplier: str
    borrower: str
    request_id: str
    supplier_seq: int | None  # the supplier's answer entry
    borrower_seq: int | None  # the borrower's receipt entry
    detail: str

    def __str__(self) -> str:
        where = []
        if self.supplier_seq is not None:
            where.append(f"{self.supplier} entry {self.supplier_seq}")
        if self.borrower_seq is not None:
            where.append(f"{self.borrower} entry {self.borrower_seq}")
        return f"{self.problem}: request {self.request_id} ({', '.join(where)}): {self.detail}"


@dataclass(frozen=True)
class Reconciliation:
    """The result for one direction: ``supplier``'s answers to ``borrower``."""

    supplier: str
    borrower: str
    answers: int
    receipts: int
    matched: int
    findings: tuple[Finding, ...]

    @property
    def reconciled(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class Signatures:
    """What checking the recorded signatures needs: the domain and the registry's accounts."""

    domain: Domain
    accounts: Mapping[str, str]  # library id -> registered account


def reconcile(
    a: TrailSide, b: TrailSide, *, signatures: Signatures | None = None
) -> list[Reconciliation]:
    """Reconcile two members' trails in both directions: A supplying B, then B supplying A."""
    if a.member == b.member:
        raise InvalidInput(
            f"both trails are {a.member}'s", hint="give the trails of two different members"
        )
    return [
        _one_way(a, b, signatures),
        _one_way(b, a, signatures),
    ]


def _one_way(
    supplier: TrailSide, borrower: TrailSide, signatures: Signatures | None
) -> Reconciliation:
    findings: list[Finding] = []

    def found(problem: str, rid: str, s: int | None, b: int | None, detail: str) -> None:
        findings.append(Finding(problem, supplier.member, borrower.member, rid, s, b, detail))

    answers = _by_request(supplier.answers, "requesting_member", borrower.member)
    receipts = _by_request(borrower.receipts, "supplier", supplier.member)
    # Paired by request id alone, so a receipt that names another supplier (or an answer
    # another borrower) is reported as the field it gets wrong, not as two lone entries.
    all_answers = _by_request(supplier.answers, None, None)
    all_receipts = _by_request(borrower.receipts, None, None)
    for seq, body in sorted(supplier.answers.items()):
        if body.get("supplier") != supplier.member:
            found(
                "misplaced",
                str(body.get("request_id")),
                seq,
                None,
                f"an answer by {body.get('supplier')} in {supplier.member}'s trail",
            )
    for seq, body in sorted(borrower.receipts.items()):
        if body.get("requesting_member") != borrower.member:
            found(
                "misplaced",
                str(body.get("request_id")),
                None,
                seq,
                f"a receipt of {body.get('requesting_member')} in {borrower.member}'s trail",
            )
    for rid, seqs in sorted(answers.items()):
        if len(seqs) > 1:
            found(
                "duplicate",
                rid,
                seqs[1],
                None,
                f"{supplier.member} answered it {len(seqs)} times (entries {_list(seqs)})",
            )
    for rid, seqs in sorted(receipts.items()):
        if len(seqs) > 1:
            found(
                "duplicate",
                rid,
                None,
                seqs[1],
                f"{borrower.member} recorded {len(seqs)} receipts (entries {_list(seqs)})",
            )
    matched = 0
    for rid in sorted(answers.keys() | receipts.keys()):
        s_seq = all_answers[rid][0] if rid in all_answers else None
        b_seq = all_receipts[rid][0] if rid in all_receipts else None
        answer = supplier.answers[s_seq] if s_seq is not None else None
        receipt = borrower.receipts[b_seq] if b_seq is not None else None
        if answer is not None:
            for problem, detail in _check_answer(supplier, answer, signatures):
                found(problem, rid, s_seq, b_seq, detail)
        if receipt is not None and signatures is not None:
            for problem, detail in _check_receipt_signature(receipt, signatures):
                found(problem, rid, s_seq, b_seq, detail)
        if answer is None:
            found(
                "answer_missing",
                rid,
                None,
                b_seq,
                f"{borrower.member} recorded a receipt for decision "
                f"{receipt.get('decision_id') if receipt else '?'}, but {supplier.member}'s "
                "trail has no answer to this request",
            )
            continue
        if receipt is None:
            found(
                "receipt_missing",
                rid,
                s_seq,
                None,
                f"{supplier.member} answered {answer.get('decision')} (decision "
                f"{answer.get('decision_id')}), but {borrower.member}'s trail has no "
                "receipt for it",
            )
            continue
        matched += 1
        differ = [f for f in SHARED_FIELDS if answer.get(f) != receipt.get(f)]
        if differ:
            shown = "; ".join(
                f"{f}: {_show(answer.get(f))} in {supplier.member}'s, "
                f"{_show(receipt.get(f))} in {borrower.member}'s"
                for f in differ
            )
            found("field_mismatch", rid, s_seq, b_seq, shown)
        undelivered = _delivery_problem(answer, receipt)
        if undelivered:
            found("not_received", rid, s_seq, b_seq, undelivered)
    return Reconciliation(
        supplier=supplier.member,
        borrower=borrower.member,
        answers=sum(len(v) for v in answers.values()),
        receipts=sum(len(v) for v in receipts.values()),
        matched=matched,
        findings=tuple(findings),
    )


def _by_request(
    entries: Mapping[int, Mapping[str, Any]], party: str | None, member: str | None
) -> dict[str, list[int]]:
    """Request id -> sequence numbers of the entries whose ``party`` is ``member`` (None:
    all), in order."""
    out: dict[str, list[int]] = defaultdict(list)
    for seq, body in sorted(entries.items()):
        if party is None or body.get(party) == member:
            out[str(body.get("request_id"))].append(seq)
    return out


def _check_answer(
    supplier: TrailSide, answer: Mapping[str, Any], signatures: Signatures | None
) -> list[tuple[str, str]]:
    """The answer against the decision it names, and the requester's signature in it."""
    problems: list[tuple[str, str]] = []
    seq = answer.get("decision_seq")
    decision = supplier.decisions.get(seq) if isinstance(seq, int) else None
    if decision is None or decision.get("decision_id") != answer.get("decision_id"):
        problems.append(
            (
                "decision_missing",
                f"the answer names decision {answer.get('decision_id')} at entry {seq}, which "
                f"{supplier.member}'s trail does not hold",
            )
        )
    else:
        differ = [f for f in _DECISION_FIELDS if decision.get(f) != answer.get(f)]
        if differ:
            shown = "; ".join(
                f"{f}: {_show(decision.get(f))} decided, {_show(answer.get(f))} answered"
                for f in differ
            )
            problems.append(("decision_mismatch", shown))
    if signatures is not None:
        try:
            request = request_from_fields(dict(answer))
            signer = recover_signer(request, signatures.domain, str(answer.get("signature")))
        except (LedgerError, KeyError, TypeError) as exc:
            problems.append(("bad_signature", f"the recorded request does not verify ({exc})"))
        else:
            member = str(answer.get("requesting_member"))
            registered = signatures.accounts.get(member)
            if registered is None or not _same(signer, registered):
                problems.append(
                    (
                        "bad_signature",
                        f"the recorded request is signed by {signer}, not by {member}'s "
                        f"registered account {registered}",
                    )
                )
    return problems


def _check_receipt_signature(
    receipt: Mapping[str, Any], signatures: Signatures
) -> list[tuple[str, str]]:
    try:
        answer = answer_from_fields(dict(receipt))
        signer = recover_signer(answer, signatures.domain, str(receipt.get("answer_signature")))
    except (LedgerError, KeyError, TypeError) as exc:
        return [("bad_signature", f"the recorded answer does not verify ({exc})")]
    supplier = str(receipt.get("supplier"))
    registered = signatures.accounts.get(supplier)
    if registered is None or not _same(signer, registered):
        return [
            (
                "bad_signature",
                f"the recorded answer is signed by {signer}, not by {supplier}'s registered "
                f"account {registered}",
            )
        ]
    return []


def _delivery_problem(answer: Mapping[str, Any], receipt: Mapping[str, Any]) -> str | None:
    outcome = receipt.get("outcome")
    if answer.get("decision") == "allow":
        if outcome != "received":
            return f"the supplier allowed it, the receipt says {outcome}"
        if receipt.get("received_hash") != answer.get("content_hash"):
            return (
                f"the receipt's content hash {receipt.get('received_hash')} is not the "
                f"registered {answer.get('content_hash')}"
            )
        return None
    if outcome != "denied":
        return f"the supplier denied it, the receipt says {outcome}"
    return None


def _same(a: str, b: str) -> bool:
    try:
        return bool(Web3.to_checksum_address(a) == Web3.to_checksum_address(b))
    except ValueError:
        return False


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _list(seqs: list[int]) -> str:
    return ", ".join(str(s) for s in seqs)
