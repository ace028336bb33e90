"""The licence profile and its evaluation, as a consortium's librarians state the rules."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.licence import (
    AppliesTo,
    Campaign,
    CounterKey,
    CounterScope,
    Decision,
    Fee,
    Grant,
    Licence,
    Limit,
    Method,
    Outcome,
    PatronCategory,
    Purpose,
    Reason,
    Request,
    Scope,
    Terms,
    Window,
    canonical_terms,
    consortium_terms,
    counters_needed,
    evaluate,
    terms_from_json,
    terms_hash,
    terms_to_json,
)
from ledger.licence_json import canonical_json, decision_to_json, licence_from_json, licence_to_json

T = TypeVar("T")
MAY = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)  # an ordinary day, no campaign
MARCH = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)  # inside the free-delivery month
LICENCE = Licence(licence_id=7, version=2, licensor="CN-PKU", terms=consortium_terms())
PATRON = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a pseudonym


def request(**changes: object) -> Request:
    base = Request(
        resource_id="res:PKU:rare-0042",
        title_id="title:0042",
        requesting_member="CN-XJTU",
        requesting_tier=1,
        patron=PATRON,
        patron_category=PatronCategory.student,
        purpose=Purpose.research,
        method=Method.copy,
        scope=Scope.part,
        destination_country="CN",
        campaign=None,
        at=MAY,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def decide(req: Request, used: int = 0, licence: Licence | None = LICENCE) -> Decision:
    """Evaluate with every counter the request reads already at ``used``."""
    return evaluate(licence, req, dict.fromkeys(counters_needed(licence, req), used))


# --- the consortium's rules ----------------------------------------------------------------


def test_single_article_copy_is_free() -> None:
    for method in (Method.copy, Method.secure_electronic):
        d = decide(request(method=method, scope=Scope.part))
        assert (d.outcome, d.reason) == (Outcome.allow, Reason.allowed)
        assert d.fee == Fee(0, "CNY")
        assert d.term == f"grants.{method}/part"
        assert d.increments == ()
        assert (d.licence_id, d.licence_version) == (7, 2)


def test_fourth_whole_book_copy_for_same_patron_is_denied_with_limit_exceeded() -> None:
    req = request(scope=Scope.whole)
    (key,) = counters_needed(LICENCE, req)
    assert key == CounterKey("whole_book_copies", CounterScope.patron, PATRON, "2026")

    third = evaluate(LICENCE, req, {key: 2})
    assert third.allowed and third.fee == Fee(1000, "CNY")
    assert third.increments == (key,)

    fourth = evaluate(LICENCE, req, {key: 3})
    assert (fourth.outcome, fourth.reason) == (Outcome.deny, Reason.limit_exceeded)
    assert fourth.term == "limits.whole_book_copies"
    assert fourth.detail == "whole book copies for this patron in calendar year 2026: 3 of 3 used"
    assert fourth.increments == () and fourth.fee is None and fourth.obligations == ()


def test_whole_book_limit_does_not_count_loans_or_other_patrons() -> None:
    assert counters_needed(LICENCE, request(method=Method.loan, scope=Scope.whole)) == ()
    other = request(scope=Scope.whole, patron="another-pseudonym")
    assert decide(other, used=0).allowed


def test_fourth_international_delivery_in_campaign_is_denied_while_domestic_still_passes() -> None:
    abroad = request(destination_country="US", at=MARCH)
    (key,) = counters_needed(LICENCE, abroad)
    assert key.window_key == "campaign:free-delivery-2026-03"
    assert evaluate(LICENCE, abroad, {key: 2}).allowed

    fourth = evaluate(LICENCE, abroad, {key: 3})
    assert fourth.reason is Reason.limit_exceeded
    assert fourth.term == "limits.international_deliveries"
    assert fourth.detail == (
        "international deliveries for this patron in campaign free-delivery-2026-03: 3 of 3 used"
    )

    home = request(destination_country="CN", at=MARCH)
    assert counters_needed(LICENCE, home) == ()
    assert evaluate(LICENCE, home, {key: 3}).allowed


def test_international_limit_counts_only_within_a_campaign() -> None:
    abroad_in_may = request(destination_country="US", at=MAY)
    assert counters_needed(LICENCE, abroad_in_may) == ()
    assert decide(abroad_in_may, used=99).allowed


def test_fee_is_waived_inside_free_delivery_campaign_and_charged_outside() -> None:
    whole = request(scope=Scope.whole)
    march_1 = datetime(2026, 3, 1, tzinfo=UTC)
    april_1 = datetime(2026, 4, 1, tzinfo=UTC)
    assert decide(replace(whole, at=MARCH)).fee == Fee(0, "CNY")
    assert decide(replace(whole, at=march_1)).fee == Fee(0, "CNY")
    assert "fee waived in free-delivery-2026-03" in decide(replace(whole, at=MARCH)).detail
    assert decide(replace(whole, at=march_1 - timedelta(microseconds=1))).fee == Fee(1000, "CNY")
    assert decide(replace(whole, at=april_1)).fee == Fee(1000, "CNY")  # [starts, ends)
    named = decide(replace(whole, at=MARCH, campaign="free-delivery-2026-03"))
    assert named.fee == Fee(0, "CNY")


@pytest.mark.parametrize("purpose", list(Purpose))
def test_only_personal_study_teaching_and_research_are_allowed_purposes(purpose: Purpose) -> None:
    d = decide(request(purpose=purpose))
    if purpose in {Purpose.personal_study, Purpose.teaching, Purpose.research}:
        assert d.allowed
    else:
        assert (d.reason, d.term) == (Reason.purpose_not_allowed, "purposes")


def test_allowed_delivery_carries_watermark_notice_and_attribution() -> None:
    assert decide(request()).obligations == (
        "watermark",
        "notice:For personal study, teaching and research only",
        "attribution:Supplied through the consortium document delivery service",
    )


# --- every deny has its reason code --------------------------------------------------------


def test_revoked_licence_denies_from_revocation_time() -> None:
    revoked = replace(LICENCE, revoked_at=MAY)
    assert decide(request(at=MAY - timedelta(microseconds=1)), licence=revoked).allowed
    for at in (MAY, MAY + timedelta(days=30)):
        d = decide(request(at=at), licence=revoked)
        assert (d.reason, d.term) == (Reason.licence_revoked, "revoked_at")


def test_request_outside_validity_is_denied() -> None:
    before = decide(request(at=datetime(2025, 12, 31, 23, 59, tzinfo=UTC)))
    assert (before.reason, before.term) == (Reason.outside_validity, "valid_from")
    after = decide(request(at=datetime(2027, 1, 1, tzinfo=UTC)))  # valid_until is exclusive
    assert (after.reason, after.term) == (Reason.outside_validity, "valid_until")


def test_member_not_named_in_terms_is_denied() -> None:
    licence = replace(LICENCE, terms=consortium_terms(members=frozenset({"CN-XJTU"})))
    assert decide(request(), licence=licence).allowed
    d = decide(request(requesting_member="CN-FDU"), licence=licence)
    assert (d.reason, d.term) == (Reason.member_not_allowed, "members")
    assert "CN-FDU" in d.detail


def test_member_of_unlisted_tier_is_denied() -> None:
    licence = replace(LICENCE, terms=replace(LICENCE.terms, tiers=frozenset({1, 2})))
    d = decide(request(requesting_tier=3), licence=licence)
    assert (d.reason, d.term) == (Reason.member_not_allowed, "tiers")


def test_empty_member_set_admits_nobody() -> None:
    licence = replace(LICENCE, terms=consortium_terms(members=frozenset()))
    assert decide(request(), licence=licence).reason is Reason.member_not_allowed


@pytest.mark.parametrize("category", [PatronCategory.walk_in, PatronCategory.external])
def test_walk_in_and_external_patrons_are_denied(category: PatronCategory) -> None:
    d = decide(request(patron_category=category))
    assert (d.reason, d.term) == (Reason.patron_category_not_allowed, "patron_categories")


@pytest.mark.parametrize(
    ("method", "scope"),
    [(Method.print, Scope.part), (Method.view_online, Scope.whole), (Method.loan, Scope.part)],
)
def test_method_not_granted_is_denied(method: Method, scope: Scope) -> None:
    d = decide(request(method=method, scope=scope))
    assert (d.reason, d.term) == (Reason.method_not_allowed, "grants")
    assert d.detail == f"{method}/{scope} is not granted"


def test_destination_outside_listed_countries_is_denied_with_region_not_allowed() -> None:
    terms = replace(LICENCE.terms, countries=frozenset({"CN", "HK"}))
    d = decide(request(destination_country="US"), licence=replace(LICENCE, terms=terms))
    assert (d.reason, d.term) == (Reason.region_not_allowed, "countries")


def test_international_delivery_is_denied_when_the_licence_is_domestic() -> None:
    terms = replace(LICENCE.terms, international=False)
    d = decide(request(destination_country="US"), licence=replace(LICENCE, terms=terms))
    assert (d.reason, d.term) == (Reason.international_not_allowed, "international")
    assert decide(request(), licence=replace(LICENCE, terms=terms)).allowed


def test_unknown_campaign_is_denied_with_unknown_term() -> None:
    req = request(campaign="free-delivery-2031-01")
    assert counters_needed(LICENCE, req) == ()
    d = decide(req)
    assert (d.reason, d.term) == (Reason.unknown_term, "campaigns")


def test_naming_a_campaign_that_is_not_running_is_denied_rather_than_charged() -> None:
    d = decide(request(campaign="free-delivery-2026-03", at=MAY))
    assert (d.reason, d.term) == (Reason.outside_validity, "campaigns.free-delivery-2026-03")


def test_no_licence_is_denied() -> None:
    d = evaluate(None, request(), {})
    assert (d.outcome, d.reason, d.licence_id, d.licence_version) == (
        Outcome.deny,
        Reason.no_licence,
        None,
        None,
    )
    assert counters_needed(None, request()) == ()


def test_first_failing_check_decides() -> None:
    everything_wrong = request(
        patron_category=PatronCategory.walk_in, purpose=Purpose.commercial, method=Method.print
    )
    assert decide(everything_wrong).reason is Reason.patron_category_not_allowed


# --- counters: scopes and windows ----------------------------------------------------------


def test_rolling_member_and_lifetime_title_counters_name_their_windows() -> None:
    terms = replace(
        LICENCE.terms,
        limits=(
            Limit("member_monthly", 100, CounterScope.requesting_member, Window.rolling_days, 30),
            Limit("title_total", 5, CounterScope.title, Window.licence_lifetime),
        ),
    )
    licence = replace(LICENCE, terms=terms)
    monthly, total = counters_needed(licence, request())
    assert monthly == CounterKey(
        "member_monthly",
        CounterScope.requesting_member,
        "CN-XJTU",
        "rolling:30",
        MAY - timedelta(30),
    )
    assert total == CounterKey("title_total", CounterScope.title, "title:0042", "licence:7")
    untitled = counters_needed(licence, request(title_id=None))[1]
    assert untitled.subject == "res:PKU:rare-0042"  # the resource is its own title
    d = evaluate(licence, request(), {total: 5})
    assert d.detail == "title total for this title over the lifetime of licence 7: 5 of 5 used"


def test_missing_counters_count_as_zero() -> None:
    assert evaluate(LICENCE, request(scope=Scope.whole), {}).allowed


def test_calendar_year_counter_follows_utc() -> None:
    shanghai = datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=8)))
    licence = replace(LICENCE, terms=replace(LICENCE.terms, valid_until=None))
    (key,) = counters_needed(licence, request(scope=Scope.whole, at=shanghai))
    assert key.window_key == "2026"  # 23:30 in Shanghai is 15:30 UTC, still in 2026


# --- values are validated ------------------------------------------------------------------


def test_overlapping_campaigns_are_refused() -> None:
    a = Campaign("a", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), True)
    b = Campaign("b", datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), True)
    with pytest.raises(InvalidInput, match="campaigns a and b overlap"):
        consortium_terms(campaigns=(a, b))


def test_free_grant_that_is_not_granted_is_refused() -> None:
    with pytest.raises(InvalidInput, match="free_grants not granted: print/part"):
        replace(LICENCE.terms, free_grants=frozenset({Grant(Method.print, Scope.part)}))


def test_limit_filter_with_empty_set_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"applies_to\.methods is empty"):
        AppliesTo(methods=frozenset())


def test_naive_times_and_lowercase_countries_are_refused() -> None:
    with pytest.raises(InvalidInput, match="naive"):
        request(at=datetime(2026, 5, 12))
    with pytest.raises(InvalidInput, match="destination_country"):
        request(destination_country="cn")
    with pytest.raises(InvalidInput, match="valid_from is a naive datetime"):
        consortium_terms(valid_from=datetime(2026, 1, 1))


def test_unknown_enum_value_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInput, match="purposes: unknown value 'leisure'"):
        replace(LICENCE.terms, purposes=frozenset({"leisure"}))  # type: ignore[arg-type]


# --- JSON, canonical bytes and hash --------------------------------------------------------


def test_unknown_key_in_terms_json_is_refused_naming_the_key() -> None:
    obj = terms_to_json(LICENCE.terms) | {"concurrent_loans": 2}
    with pytest.raises(InvalidInput, match=r"unknown key terms\.concurrent_loans"):
        terms_from_json(obj)
    nested = terms_to_json(LICENCE.terms)
    nested["limits"][0]["applies_to"]["patron_categories"] = ["student"]
    with pytest.raises(InvalidInput, match=r"terms\.limits\[0\]\.applies_to\.patron_categories"):
        terms_from_json(nested)


def test_missing_key_or_wrong_type_in_terms_json_is_refused() -> None:
    obj = terms_to_json(LICENCE.terms)
    del obj["purposes"]
    with pytest.raises(InvalidInput, match=r"missing key terms\.purposes"):
        terms_from_json(obj)
    obj = terms_to_json(LICENCE.terms)
    obj["limits"][0]["max"] = True
    with pytest.raises(InvalidInput, match=r"terms\.limits\[0\]\.max must be int"):
        terms_from_json(obj)


def test_canonical_bytes_do_not_depend_on_key_or_set_order() -> None:
    obj = terms_to_json(LICENCE.terms)
    shuffled = dict(reversed(list(obj.items())))
    shuffled["grants"] = list(reversed(shuffled["grants"]))
    shuffled["patron_categories"] = list(reversed(shuffled["patron_categories"]))
    again = terms_from_json(json.loads(json.dumps(shuffled)))
    assert again == LICENCE.terms
    assert canonical_terms(again) == canonical_terms(LICENCE.terms)
    reordered = replace(LICENCE.terms, limits=tuple(reversed(LICENCE.terms.limits)))
    assert terms_hash(reordered) == terms_hash(LICENCE.terms)


def test_consortium_terms_hash_is_pinned() -> None:
    # The hash is recorded on chain: changing the JSON form is a breaking change.
    assert canonical_terms(LICENCE.terms).startswith(b'{"attribution":"Supplied through')
    assert terms_hash(LICENCE.terms).hex() == (
        "1a7936e03ea5aafb08d4ef648d8f7b762de787ead68bc25a65fdaf1d9ae06371"
    )


def test_licence_and_decision_serialise_to_canonical_json() -> None:
    revoked = replace(LICENCE, revoked_at=MAY)
    assert licence_from_json(licence_to_json(revoked)) == revoked
    d = decide(request(scope=Scope.whole), used=1)
    body = json.loads(canonical_json(decision_to_json(d)))
    assert body["reason"] == "allowed" and body["fee"] == {"amount_minor": 1000, "currency": "CNY"}
    assert body["increments"][0]["window_key"] == "2026"


_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_times = st.integers(0, 2 * 365 * 24 * 3600).map(lambda s: _T0 + timedelta(seconds=s))
_grants = st.builds(Grant, st.sampled_from(list(Method)), st.sampled_from(list(Scope)))
_names = st.sampled_from(["whole_book_copies", "international_deliveries", "a", "x_1", "loans"])
_countries = st.sampled_from(["CN", "HK", "US", "DE", "JP"])
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1).filter(
    str.strip
)


@st.composite
def _limits(draw: st.DrawFn) -> Limit:
    window = draw(st.sampled_from(list(Window)))
    return Limit(
        name=draw(_names),
        max=draw(st.integers(0, 2**53 - 1)),
        scope=draw(st.sampled_from(list(CounterScope))),
        window=window,
        rolling_days=draw(st.integers(1, 3650)) if window is Window.rolling_days else None,
        applies_to=AppliesTo(
            draw(st.none() | st.frozensets(st.sampled_from(list(Method)), min_size=1)),
            draw(st.none() | st.frozensets(st.sampled_from(list(Scope)), min_size=1)),
            draw(st.booleans()),
        ),
    )


@st.composite
def _campaigns(draw: st.DrawFn) -> tuple[Campaign, ...]:
    bounds = sorted(draw(st.sets(_times, max_size=6)))
    pairs = list(zip(bounds[::2], bounds[1::2], strict=False))
    return tuple(Campaign(f"c{i}", s, e, draw(st.booleans())) for i, (s, e) in enumerate(pairs))


def opt_set(elements: st.SearchStrategy[T]) -> st.SearchStrategy[frozenset[T] | None]:
    return st.none() | st.frozensets(elements, max_size=4)


@st.composite
def terms_strategy(draw: st.DrawFn) -> Terms:
    grants = draw(st.frozensets(_grants))
    valid_from = draw(_times)
    return Terms(
        members=draw(opt_set(st.sampled_from(["CN-XJTU", "CN-PKU", "CN-FDU", "HK-HKU", "é-lib"]))),
        tiers=draw(opt_set(st.integers(0, 9))),
        patron_categories=draw(st.frozensets(st.sampled_from(list(PatronCategory)))),
        grants=grants,
        purposes=draw(st.frozensets(st.sampled_from(list(Purpose)))),
        countries=draw(opt_set(_countries)),
        home_country=draw(_countries),
        international=draw(st.booleans()),
        limits=tuple({lim.name: lim for lim in draw(st.lists(_limits(), max_size=4))}.values()),
        valid_from=valid_from,
        valid_until=draw(st.none() | st.just(valid_from + timedelta(days=400))),
        campaigns=draw(_campaigns()),
        fee=Fee(draw(st.integers(0, 10**9)), draw(st.sampled_from(["CNY", "EUR", "JPY"]))),
        free_grants=draw(st.frozensets(st.sampled_from(sorted(grants)))) if grants else frozenset(),
        attribution=draw(st.none() | _text),
        watermark=draw(st.booleans()),
        notice=draw(st.none() | _text),
    )


@settings(max_examples=100, deadline=None)
@given(terms_strategy())
def test_terms_json_round_trip_is_lossless(terms: Terms) -> None:
    obj = json.loads(json.dumps(terms_to_json(terms)))
    again = terms_from_json(obj)
    assert again == terms
    assert canonical_terms(again) == canonical_terms(terms)


_requests = st.builds(
    Request,
    resource_id=st.sampled_from(["r1", "r2"]),
    title_id=st.sampled_from([None, "t1"]),
    requesting_member=st.sampled_from(["CN-XJTU", "CN-FDU"]),
    requesting_tier=st.integers(0, 3),
    patron=st.sampled_from(["p1", "p2"]),
    patron_category=st.sampled_from(list(PatronCategory)),
    purpose=st.sampled_from(list(Purpose)),
    method=st.sampled_from(list(Method)),
    scope=st.sampled_from(list(Scope)),
    destination_country=st.sampled_from(["CN", "US", "HK"]),
    campaign=st.sampled_from([None, "free-delivery-2026-03", "nope"]),
    at=_times,
)


@settings(max_examples=300, deadline=None)
@given(_requests, st.integers(0, 4), st.randoms(use_true_random=False))
def test_same_inputs_always_give_the_same_decision(
    req: Request, used: int, rnd: random.Random
) -> None:
    keys = counters_needed(LICENCE, req)
    counters = {k: rnd.randint(0, used) for k in keys}
    first = evaluate(LICENCE, req, counters)
    twin = replace(req)  # an equal, distinct request
    assert evaluate(LICENCE, twin, dict(reversed(counters.items()))) == first
    assert counters_needed(LICENCE, twin) == keys


@settings(max_examples=300, deadline=None)
@given(_requests, st.integers(0, 4))
def test_allowed_increments_are_exactly_the_applicable_counters(req: Request, used: int) -> None:
    keys = counters_needed(LICENCE, req)
    d = evaluate(LICENCE, req, dict.fromkeys(keys, used))
    if not d.allowed:
        assert d.increments == ()
        return
    assert d.increments == keys
    limits = {lim.name: lim for lim in LICENCE.terms.limits}
    for key in keys:
        lim = limits[key.limit]
        assert lim.applies_to.matches(req.method, req.scope)
        assert not lim.applies_to.international_only or req.destination_country != "CN"
