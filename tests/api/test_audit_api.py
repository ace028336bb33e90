"""Auditors read heads, entries and proofs; each can be checked against the chain's roots."""

from __future__ import annotations

import hashlib

import pytest

from ledger import merkle
from ledger.anchoring import anchor_trail
from tests.api.conftest import Api


@pytest.fixture(scope="module")
def anchored(api: Api) -> Api:
    """Eleven more decisions: anchored after four and after nine, two left unanchored."""
    c = api.consortium
    body = {
        "resource_id": c.resource_id,
        "requesting_member": "CN-B",
        "patron_category": "student",
        "purpose": "research",
        "method": "copy",
        "scope": "part",
        "destination_country": "CN",
    }
    headers = api.headers("CN-B", "delivery")
    for batch in (4, 5, 2):
        for n in range(batch):
            response = api.client.post(
                "/v1/access/check", json={**body, "patron_id": f"p-{batch}-{n}"}, headers=headers
            )
            assert response.status_code == 200
        if batch != 2:
            anchor_trail(c.instance, "CN-A", c.members["CN-A"].account)
    return api


def _get(api: Api, path: str, role: str = "auditor", member: str = "CN-B") -> dict:  # type: ignore[type-arg]
    response = api.client.get(path, headers=api.headers(member, role))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_heads_match_what_the_chain_holds(anchored: Api) -> None:
    c = anchored.consortium
    heads = _get(anchored, "/v1/audit/heads?member=CN-A")
    size, root = c.instance.require_contracts().head_of(c.members["CN-A"].account.address)
    assert heads["anchored"][-1]["size"] == size
    assert heads["anchored"][-1]["root"] == root.hex()
    assert heads["trail_size"] > size


def test_every_entry_hashes_to_its_leaf(anchored: Api) -> None:
    entries = _get(anchored, "/v1/audit/entries?member=CN-A&from=0&to=50")
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    for e in entries:
        leaf = hashlib.sha256(b"\x00" + e["body"].encode()).hexdigest()
        assert leaf == e["leaf_hash"]


def test_an_inclusion_proof_verifies_against_an_anchored_root(anchored: Api) -> None:
    head = _get(anchored, "/v1/audit/heads?member=CN-A")["anchored"][-1]
    for seq in range(head["size"]):
        p = _get(anchored, f"/v1/audit/proofs/inclusion?member=CN-A&seq={seq}&size={head['size']}")
        merkle.verify_inclusion(
            seq,
            head["size"],
            bytes.fromhex(p["leaf_hash"]),
            [bytes.fromhex(h) for h in p["proof"]],
            bytes.fromhex(head["root"]),
        )


def test_a_consistency_proof_links_consecutive_anchored_heads(anchored: Api) -> None:
    old, new = _get(anchored, "/v1/audit/heads?member=CN-A")["anchored"][-2:]
    p = _get(
        anchored, f"/v1/audit/proofs/consistency?member=CN-A&from={old['size']}&to={new['size']}"
    )
    merkle.verify_consistency(
        old["size"],
        new["size"],
        bytes.fromhex(old["root"]),
        bytes.fromhex(new["root"]),
        [bytes.fromhex(h) for h in p["proof"]],
    )


@pytest.mark.parametrize(
    ("role", "member", "status"),
    [("auditor", "CN-B", 200), ("admin", "CN-A", 200), ("admin", "CN-B", 403),
     ("member", "CN-A", 403), ("delivery", "CN-A", 403)],
)  # fmt: skip
def test_auditors_read_every_trail_and_admins_only_their_own(
    anchored: Api, role: str, member: str, status: int
) -> None:
    response = anchored.client.get(
        "/v1/audit/heads?member=CN-A", headers=anchored.headers(member, role)
    )
    assert response.status_code == status


def test_a_proof_beyond_the_trail_is_a_clear_422(anchored: Api) -> None:
    response = anchored.client.get(
        "/v1/audit/proofs/inclusion?member=CN-A&seq=0&size=100000",
        headers=anchored.headers("CN-B", "auditor"),
    )
    assert response.status_code == 422
    assert "out of range" in response.json()["detail"]


def test_an_unknown_member_is_404(anchored: Api) -> None:
    response = anchored.client.get(
        "/v1/audit/heads?member=XX-NONE", headers=anchored.headers("CN-B", "auditor")
    )
    assert response.status_code == 404
