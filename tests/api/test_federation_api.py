"""Federation over HTTP, in one process: CN-B borrows CN-A's resource through the API.

One instance serves CN-A, CN-B and CN-C here (the embedded chain lives in one data dir),
so CN-B's instance reaches CN-A's through the same app; each member still has its own
trail, key and signature. tests/federation/ runs three separate instances on a node.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from api.routes.federation import Federation
from ledger.federation import ANSWER, RECEIPT, Domain, ShareRequestMessage, sign
from ledger.federation_service import Borrower, Supplier, domain_of
from ledger.onchain import FounderInput
from ledger.reconcile import Signatures, TrailSide, reconcile
from tests.api.conftest import Api

BORROW = {
    "patron_category": "student",
    "purpose": "research",
    "method": "copy",
    "scope": "part",
    "destination_country": "CN",
}


@dataclass
class Fed:
    api: Api
    domain: Domain
    peers_file: Path

    @property
    def instance(self) -> Any:
        return self.api.consortium.instance

    def borrow(self, **body: Any) -> httpx.Response:
        payload = {"resource_id": self.api.consortium.resource_id, "patron_id": "p-1", **BORROW}
        payload.update(body)
        return self.api.client.post(
            "/v1/federation/borrow", json=payload, headers=self.api.headers("CN-B", "delivery")
        )

    def request(self, signer: Any, **change: Any) -> tuple[ShareRequestMessage, str]:
        fields: dict[str, Any] = {
            "request_id": "0x" + Account.create().key.hex().removeprefix("0x"),
            "supplier": "CN-A",
            "requesting_member": "CN-B",
            "resource_id": self.api.consortium.resource_id,
            "patron": "2026:" + "ab" * 32,
            "campaign": "",
            "expires_at": int(time.time()) + 60,
            **BORROW,
        }
        fields.update(change)
        message = ShareRequestMessage(**fields)
        return message, sign(message, self.domain, signer)

    def send(self, message: ShareRequestMessage, signature: str) -> httpx.Response:
        return self.api.client.post(
            "/v1/federation/requests",
            json={"request": message.as_json(), "signature": signature},
        )


@pytest.fixture(scope="module")
def fed(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    instance = api.consortium.instance
    # CN-C joins by CN-A's vote (one approval suffices in this consortium).
    c = instance.keystore.create("CN-C")
    instance.chain.fund_from_node(c.account.address, 10**20)
    contracts = instance.require_contracts()
    a = api.consortium.members["CN-A"].account
    proposal = contracts.propose_admission(a, FounderInput("CN-C", 3, "CN", c.account.address))
    contracts.approve_admission(a, proposal)
    contracts.execute_admission(a, proposal)
    instance.sync()
    peers_file = tmp_path_factory.mktemp("peers") / "peers.json"
    peers_file.write_text(json.dumps({"CN-A": "http://testserver"}))
    app = api.client.app
    app.state.federation = Federation(  # type: ignore[attr-defined]
        instance,
        Supplier(instance),
        # CN-A's instance is this same app: reach it through the test client.
        Borrower(instance, peers_file, client_factory=lambda url: api.client),
    )
    yield Fed(api, domain_of(instance), peers_file)
    del app.state.federation  # type: ignore[attr-defined]


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def _entry(fed: Fed, member: str, seq: int) -> dict[str, Any]:
    (row,) = fed.instance.access.trail(member).entries(seq, seq + 1)
    body: dict[str, Any] = json.loads(row.body)
    return body


def test_b_borrows_a_resource_of_a_and_both_trails_record_it(fed: Fed) -> None:
    response = fed.borrow(patron_id="patron-7")
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["decision"], got["outcome"], got["supplier"]) == ("allow", "received", "CN-A")
    content = fed.api.client.get(got["content_url"], headers=fed.api.headers("CN-B", "delivery"))
    assert content.status_code == 200 and content.content == b"a rare book"
    again = fed.api.client.get(got["content_url"], headers=fed.api.headers("CN-B", "delivery"))
    _problem(again, 404)

    decision = _entry(fed, "CN-A", got["supplier_seq"])
    answer = _entry(fed, "CN-A", got["supplier_seq"] + 1)
    receipt = _entry(fed, "CN-B", got["receipt_seq"])
    assert decision["decision_id"] == got["decision_id"] and decision["requesting_member"] == "CN-B"
    assert answer["kind"] == ANSWER and answer["decision_id"] == got["decision_id"]
    assert receipt["kind"] == RECEIPT and receipt["received_hash"] == got["content_hash"]
    # The patron id never left CN-B: both trails hold CN-B's pseudonym of it.
    assert "patron-7" not in json.dumps([decision, answer, receipt])
    assert decision["patron"] == answer["patron"] == receipt["patron"]


def test_a_denied_borrow_is_answered_and_receipted_without_content(fed: Fed) -> None:
    response = fed.borrow(purpose="commercial")
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["decision"], got["reason"], got["outcome"]) == (
        "deny",
        "purpose_not_allowed",
        "denied",
    )
    assert got["content_url"] is None


def test_the_two_trails_reconcile_with_every_signature_checked(fed: Fed) -> None:
    fed.borrow(patron_id="patron-9")
    sides = []
    for member in ("CN-A", "CN-B"):
        side = TrailSide(member)
        for row in fed.instance.access.trail(member).entries():
            side.add(row.seq, json.loads(row.body))
        sides.append(side)
    accounts = {m: k.account.address for m, k in fed.api.consortium.members.items()}
    a_to_b, b_to_a = reconcile(*sides, signatures=Signatures(fed.domain, accounts))
    assert a_to_b.reconciled, a_to_b.findings
    assert b_to_a.reconciled and b_to_a.matched == 0
    assert a_to_b.matched == a_to_b.answers == a_to_b.receipts >= 2


def test_a_request_signed_by_a_non_member_is_refused(fed: Fed) -> None:
    problem = _problem(fed.send(*fed.request(Account.create())), 403)
    assert problem["title"] == "Signer is not a member"
    assert "not a consortium member's account" in problem["detail"]


def test_a_request_signed_by_c_but_claiming_b_is_refused(fed: Fed) -> None:
    c = fed.instance.member_keys("CN-C").account
    problem = _problem(fed.send(*fed.request(c)), 403)
    assert problem["title"] == "Signer is another member"
    assert "names CN-B but is signed by" in problem["detail"] and "CN-C" in problem["detail"]


def test_an_expired_request_is_refused(fed: Fed) -> None:
    b = fed.instance.member_keys("CN-B").account
    problem = _problem(fed.send(*fed.request(b, expires_at=int(time.time()) - 5)), 409)
    assert problem["title"] == "Share request expired"


def test_a_replayed_request_is_refused_and_recorded_once(fed: Fed) -> None:
    b = fed.instance.member_keys("CN-B").account
    message, signature = fed.request(b)
    size = fed.instance.access.trail("CN-A").head().size
    first = fed.send(message, signature)
    assert first.status_code == 200, first.text
    assert fed.instance.access.trail("CN-A").head().size == size + 2  # decision + answer
    problem = _problem(fed.send(message, signature), 409)
    assert problem["title"] == "Share request already answered"
    assert first.json()["answer"]["decision_id"] in problem["detail"]
    assert fed.instance.access.trail("CN-A").head().size == size + 2


def test_the_content_of_an_answer_needs_its_token(fed: Fed) -> None:
    b = fed.instance.member_keys("CN-B").account
    answered = fed.send(*fed.request(b)).json()
    url = answered["content_url"]
    _problem(fed.api.client.get(url, headers={"X-Libshare-Content-Token": "guess"}), 403)
    ok = fed.api.client.get(url, headers={"X-Libshare-Content-Token": answered["content_token"]})
    assert ok.content == b"a rare book"


def test_a_request_for_a_resource_another_member_owns_is_refused(fed: Fed) -> None:
    b = fed.instance.member_keys("CN-B").account
    problem = _problem(fed.send(*fed.request(b, supplier="CN-C")), 404)
    assert "belongs to CN-A, not CN-C" in problem["detail"]


def test_a_malformed_signature_is_invalid(fed: Fed) -> None:
    message, _ = fed.request(fed.instance.member_keys("CN-B").account)
    _problem(fed.send(message, "0x1234"), 422)


def test_only_a_delivery_key_borrows(fed: Fed) -> None:
    response = fed.api.client.post(
        "/v1/federation/borrow",
        json={"resource_id": fed.api.consortium.resource_id, "patron_id": "p", **BORROW},
        headers=fed.api.headers("CN-B", "auditor"),
    )
    _problem(response, 403)


def test_an_unreachable_supplier_is_a_502(fed: Fed) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    borrower = Borrower(fed.instance, _peers(fed, f"http://127.0.0.1:{port}"), timeout_s=2.0)
    with _borrower(fed, borrower):
        problem = _problem(fed.borrow(), 502)
    assert problem["title"] == "Peer instance failed"
    assert f"cannot reach CN-A's instance at http://127.0.0.1:{port}" in problem["detail"]


def test_a_supplier_that_does_not_answer_in_time_is_a_504(fed: Fed) -> None:
    with socket.socket() as s:  # accepts connections (backlog), never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        borrower = Borrower(fed.instance, _peers(fed, url), timeout_s=0.5)
        with _borrower(fed, borrower):
            problem = _problem(fed.borrow(), 504)
    assert "did not answer within 0.5 s" in problem["detail"]


def test_a_supplier_without_a_peer_entry_is_named(fed: Fed) -> None:
    borrower = Borrower(fed.instance, fed.peers_file.with_name("none.json"))
    with _borrower(fed, borrower):
        problem = _problem(fed.borrow(), 500)
    assert "no peer URL for CN-A" in problem["detail"]


def _peers(fed: Fed, url: str) -> Path:
    path = fed.peers_file.with_name(f"peers-{abs(hash(url))}.json")
    path.write_text(json.dumps({"CN-A": url}))
    return path


@contextlib.contextmanager
def _borrower(fed: Fed, borrower: Borrower) -> Iterator[None]:
    """Swap the app's borrower for one test."""
    state = fed.api.client.app.state  # type: ignore[attr-defined]
    saved, state.federation.borrower = state.federation.borrower, borrower
    try:
        yield
    finally:
        state.federation.borrower = saved
