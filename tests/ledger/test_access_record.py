"""Entries other than decisions go through the decision writer, into the same trail."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import rfc8785

from ledger.anchoring import anchor_trail, verify_member_trail
from ledger.errors import InvalidInput
from tests.conftest import Consortium


def _check(c: Consortium, n: int) -> int:
    return c.instance.access.check(
        resource_id=c.resource_id,
        requesting_member="CN-B",
        patron=f"{n:064x}",
        patron_category="student",
        purpose="research",
        method="copy",
        scope="part",
        destination_country="CN",
    ).trail_seq


def _record(c: Consortium, n: int) -> int:
    fields = {"request_id": f"0x{n:064x}", "note": "federated", "decision_seq": n}
    return c.instance.access.record("CN-A", "federation_answer", fields).result(timeout=30).seq


def test_a_record_is_canonical_and_in_the_trail_when_its_future_resolves(
    consortium: Consortium,
) -> None:
    recorded = consortium.instance.access.record(
        "CN-A", "federation_answer", {"request_id": "0x01", "campaign": None, "seq": 3}
    ).result(timeout=30)
    (row,) = consortium.instance.access.trail("CN-A").entries(recorded.seq, recorded.seq + 1)
    assert row.body == recorded.entry == rfc8785.dumps(json.loads(recorded.entry))
    body = json.loads(row.body)
    assert body["kind"] == "federation_answer" and body["v"] == 1
    assert body["at"] == recorded.at.isoformat()
    assert recorded.entry_id == f"CN-A:{recorded.seq}"


def test_records_and_decisions_from_many_threads_share_one_gapless_trail(
    consortium: Consortium,
) -> None:
    trail = consortium.instance.access.trail("CN-A")
    before = trail.head().size
    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = list(pool.map(lambda n: (_check, _record)[n % 2](consortium, n), range(40)))
    assert sorted(seqs) == list(range(before, before + 40))
    kinds = [json.loads(row.body).get("kind") for row in trail.entries(before)]
    assert kinds.count("federation_answer") == 20 and kinds.count(None) == 20
    account = consortium.members["CN-A"].account
    assert anchor_trail(consortium.instance, "CN-A", account) is not None
    report = verify_member_trail(consortium.instance, "CN-A", account.address)
    assert report.entries == trail.head().size and report.unanchored == 0


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("federation_answer", {"v": 2}),
        ("federation_answer", {"kind": "other"}),
        ("federation_answer", {"at": "yesterday"}),
        ("", {}),
        ("two words", {}),
    ],
)
def test_reserved_keys_and_bad_kinds_are_refused_before_anything_is_queued(
    consortium: Consortium, kind: str, fields: dict[str, str | int]
) -> None:
    size = consortium.instance.access.trail("CN-A").head().size
    with pytest.raises(InvalidInput):
        consortium.instance.access.record("CN-A", kind, fields)
    assert consortium.instance.access.trail("CN-A").head().size == size
