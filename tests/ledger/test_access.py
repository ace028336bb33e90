"""The access check decides, records in the trail and counts before it answers."""

from __future__ import annotations

import json
import string
from concurrent.futures import ThreadPoolExecutor
from queue import Queue
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from ledger.access import CheckResult, ShareRequest, canonical_entry
from ledger.errors import InvalidInput, NotFound, StorageError
from ledger.registration import revoke_licence
from ledger.store import TrailEntryRow
from tests.conftest import Consortium, make_consortium


def _request(c: Consortium, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "resource_id": c.resource_id,
        "requesting_member": "CN-B",
        "patron": c.members["CN-B"].pseudonym("patron-1", c.instance.clock()),
        "patron_category": "faculty",
        "purpose": "research",
        "method": "copy",
        "scope": "part",
        "destination_country": "CN",
    }
    fields.update(overrides)
    return fields


def test_a_decision_is_in_the_trail_when_the_answer_arrives(consortium: Consortium) -> None:
    result = consortium.instance.access.check(**_request(consortium))
    with consortium.instance.db.session() as session:
        row = session.get(TrailEntryRow, ("CN-A", result.trail_seq))
    assert row is not None
    assert row.body == result.entry
    assert json.loads(row.body)["decision_id"] == result.decision_id


def test_single_article_copy_is_allowed_free_with_obligations(consortium: Consortium) -> None:
    result = consortium.instance.access.check(**_request(consortium))
    assert str(result.decision.reason) == "allowed"
    assert result.decision.fee is not None and result.decision.fee.amount_minor == 0
    assert "watermark" in result.decision.obligations


def test_concurrent_whole_book_copies_for_one_patron_allow_exactly_three(
    consortium: Consortium,
) -> None:
    patron = consortium.members["CN-B"].pseudonym("patron-whole", consortium.instance.clock())
    request = _request(consortium, patron=patron, scope="whole")
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: consortium.instance.access.check(**request), range(12)))
    reasons = sorted(str(r.decision.reason) for r in results)
    assert reasons == ["allowed"] * 3 + ["limit_exceeded"] * 9
    seqs = sorted(r.trail_seq for r in results)
    assert seqs == list(range(seqs[0], seqs[0] + 12))


def test_a_resource_without_licence_is_denied_no_licence(consortium: Consortium) -> None:
    result = consortium.instance.access.check(
        **_request(consortium, resource_id=consortium.unlicensed_id)
    )
    assert str(result.decision.reason) == "no_licence"


def test_a_requester_outside_the_consortium_is_denied_member_not_allowed(
    consortium: Consortium,
) -> None:
    result = consortium.instance.access.check(**_request(consortium, requesting_member="XX-NONE"))
    assert str(result.decision.reason) == "member_not_allowed"


def test_a_callback_gets_the_committed_decision_or_the_error(consortium: Consortium) -> None:
    access = consortium.instance.access
    outcomes: Queue[object] = Queue()
    access.submit_to(ShareRequest.parse(**_request(consortium)), outcomes.put)
    result = outcomes.get(timeout=10)
    assert isinstance(result, CheckResult)
    assert access.trail("CN-A").head().size == result.trail_seq + 1  # committed first
    access.submit_to(ShareRequest.parse(**_request(consortium, resource_id="0xdead")), outcomes.put)
    assert isinstance(outcomes.get(timeout=10), NotFound)


def test_a_failing_callback_does_not_stop_the_writer(consortium: Consortium) -> None:
    def broken(_: object) -> None:
        raise RuntimeError("the caller's bug")

    consortium.instance.access.submit_to(ShareRequest.parse(**_request(consortium)), broken)
    assert consortium.instance.access.check(**_request(consortium)).decision.allowed


def test_an_unknown_resource_is_not_found_and_nothing_is_recorded(consortium: Consortium) -> None:
    trail = consortium.instance.access.trail("CN-A")
    before = trail.head().size
    with pytest.raises(NotFound, match="resource 0xdead is not registered"):
        consortium.instance.access.check(**_request(consortium, resource_id="0xdead"))
    assert trail.head().size == before


def test_unknown_vocabulary_is_refused_with_the_allowed_values(consortium: Consortium) -> None:
    with pytest.raises(InvalidInput, match=r"purpose 'fun' is not known.*personal_study"):
        consortium.instance.access.check(**_request(consortium, purpose="fun"))


def test_a_failed_commit_answers_with_an_error_and_records_nothing(
    consortium: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = consortium.instance.access
    trail = access.trail("CN-A")
    before = trail.head()

    def broken(self: object, batch: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(type(access), "_write_counters", broken)
    with pytest.raises(StorageError, match=r"could not be recorded.*disk full"):
        access.check(**_request(consortium))
    monkeypatch.undo()
    assert trail.head() == before
    result = access.check(**_request(consortium))
    assert result.trail_seq == before.size


def test_a_revoked_licence_denies_from_its_revocation(
    tmp_path: Any, database_url: str | None
) -> None:
    c = make_consortium(tmp_path, database_url=database_url)
    try:
        assert str(c.instance.access.check(**_request(c)).decision.reason) == "allowed"
        revoke_licence(c.instance, c.members["CN-A"].account, c.licence_id)
        assert str(c.instance.access.check(**_request(c)).decision.reason) == "licence_revoked"
        with c.instance.db.session() as session:
            reasons = [
                json.loads(row.body)["reason"]
                for row in session.exec(select(TrailEntryRow).order_by(TrailEntryRow.seq))
            ]
        assert reasons == ["allowed", "licence_revoked"]
    finally:
        c.instance.close()


ENTRY_TEXT = st.text(max_size=40)
ENTRY_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    ENTRY_TEXT,
    st.lists(ENTRY_TEXT, max_size=4),
)


@given(st.dictionaries(st.text(alphabet=string.ascii_letters + "_", max_size=20), ENTRY_VALUES))
def test_the_fast_canonical_entry_equals_rfc8785(entry: dict[str, Any]) -> None:
    assert canonical_entry(entry) == rfc8785.dumps(entry)


def test_a_resource_id_with_an_unpaired_surrogate_is_refused(consortium: Consortium) -> None:
    with pytest.raises(InvalidInput, match="unpaired surrogate"):
        consortium.instance.access.check(**_request(consortium, resource_id="0x\ud800"))
