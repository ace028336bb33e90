"""Licence terms as ODRL 2.2 JSON-LD: the consortium export, lossless round trips, refusals."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.licence import (
    AppliesTo,
    Campaign,
    CounterScope,
    Fee,
    Grant,
    Licence,
    Limit,
    Method,
    PatronCategory,
    Purpose,
    Scope,
    Terms,
    Window,
    consortium_terms,
)
from ledger.odrl import licence_from_odrl, licence_to_odrl, terms_from_odrl, terms_to_odrl

DOC = Path(__file__).resolve().parents[2] / "docs" / "odrl-profile.md"
UID = "https://xjtu.example/licences/1/versions/1"
ASSIGNER = "https://xjtu.example/members/CN-XJTU"
Policy = dict[str, Any]


def export(terms: Terms | None = None) -> Policy:
    """The export as a consumer sees it: plain JSON, no shared objects."""
    policy = terms_to_odrl(terms or consortium_terms(), uid=UID, assigner=ASSIGNER)
    return json.loads(json.dumps(policy))  # type: ignore[no-any-return]


def by_action(policy: Policy, action: str, scope: str) -> Policy:
    for perm in policy["permission"]:
        if perm["action"] == action and constraint(perm, "libshare:scope")["rightOperand"] == {
            "@id": f"libshare:{scope}"
        }:
            return perm  # type: ignore[no-any-return]
    raise AssertionError(f"no permission {action}/{scope}")


def constraint(perm: Policy, left: str, **match: Any) -> Policy:
    found = [
        c for c in perm["constraint"]
        if c["leftOperand"] == left and all(c.get(k) == want for k, want in match.items())
    ]  # fmt: skip
    assert len(found) == 1, (left, match, perm["constraint"])
    return found[0]  # type: ignore[no-any-return]


# --- the consortium terms, as a reviewer reads them ------------------------------------------


def test_consortium_grants_become_reproduce_loan_and_secure_delivery_permissions() -> None:
    actions = [(p["action"], constraint(p, "libshare:scope")["rightOperand"]["@id"])
               for p in export()["permission"]]  # fmt: skip
    assert actions == [
        ("reproduce", "libshare:part"),
        ("reproduce", "libshare:whole"),
        ("libshare:loan", "libshare:whole"),
        ("libshare:secureElectronicDelivery", "libshare:part"),
    ]


def test_every_consortium_permission_is_for_three_purposes_and_three_patron_categories() -> None:
    for perm in export()["permission"]:
        assert constraint(perm, "purpose")["operator"] == "isAnyOf"
        assert constraint(perm, "purpose")["rightOperand"] == [
            {"@id": "libshare:personalStudy"}, {"@id": "libshare:research"},
            {"@id": "libshare:teaching"},
        ]  # fmt: skip
        cats = constraint(perm, "libshare:patronCategory")["rightOperand"]
        assert cats == [{"@id": f"libshare:{c}"} for c in ("faculty", "staff", "student")]
        assert constraint(perm, "dateTime", operator="gteq")["rightOperand"]["@value"] == (
            "2026-01-01T00:00:00Z"
        )
        assert constraint(perm, "dateTime", operator="lt")["rightOperand"]["@value"] == (
            "2027-01-01T00:00:00Z"
        )


def test_whole_book_limit_is_a_count_constraint_on_the_whole_book_copy_permission_only() -> None:
    policy = export()
    whole_copy = constraint(by_action(policy, "reproduce", "whole"), "count",
                            **{"libshare:counter": "whole_book_copies"})  # fmt: skip
    assert whole_copy["operator"] == "lteq" and whole_copy["rightOperand"] == 3
    assert whole_copy["libshare:counterScope"] == {"@id": "libshare:perPatron"}
    assert whole_copy["libshare:window"] == {"@id": "libshare:calendarYear"}
    loan = by_action(policy, "libshare:loan", "whole")
    assert all(c.get("libshare:counter") != "whole_book_copies" for c in loan["constraint"])


def test_international_limit_counts_per_patron_per_campaign_on_every_permission() -> None:
    for perm in export()["permission"]:
        c = constraint(perm, "count", **{"libshare:counter": "international_deliveries"})
        assert c["rightOperand"] == 3 and c["libshare:internationalOnly"] is True
        assert c["libshare:window"] == {"@id": "libshare:campaignWindow"}


def test_articles_are_free_and_whole_books_pay_10_cny_except_in_the_free_month() -> None:
    policy = export()
    article = by_action(policy, "reproduce", "part")
    assert article["libshare:freeGrant"] is True
    assert all(d["action"] != "compensate" and not isinstance(d["action"], list)
               for d in article["duty"])  # fmt: skip
    pay = by_action(policy, "reproduce", "whole")["duty"][0]
    assert pay["action"][0]["rdf:value"] == {"@id": "odrl:compensate"}
    assert pay["action"][0]["refinement"] == [{
        "leftOperand": "payAmount", "operator": "eq",
        "rightOperand": {"@value": "10.00", "@type": "xsd:decimal"},
        "unit": {"@id": "libshare:currency/CNY"},
    }]  # fmt: skip
    assert pay["constraint"] == [{"leftOperand": "libshare:campaignInForce",
                                  "operator": "isNoneOf",
                                  "rightOperand": ["free-delivery-2026-03"]}]  # fmt: skip
    assert policy["libshare:campaign"][0]["libshare:feeWaived"] is True


def test_every_consortium_permission_requires_attribution_watermark_and_notice() -> None:
    for perm in export()["permission"]:
        duties = [d for d in perm["duty"] if isinstance(d["action"], str)]
        assert duties == [
            {"action": "attribute",
             "libshare:text": "Supplied through the consortium document delivery service"},
            {"action": "watermark"},
            {"action": "inform", "libshare:text": "For personal study, teaching and research only"},
        ]  # fmt: skip


def test_export_is_an_odrl_2_2_offer_in_json_ld() -> None:
    policy = export()
    assert policy["@context"] == [
        "http://www.w3.org/ns/odrl.jsonld",
        {"libshare": "https://libshare.example/odrl/profile#",
         "iso3166": "https://www.iso.org/obp/ui/#iso:code:3166:"},
    ]  # fmt: skip
    assert policy["type"] == "Offer" and policy["uid"] == UID and policy["assigner"] == ASSIGNER
    assert policy["profile"] == "https://libshare.example/odrl/profile"
    assert "prohibition" not in policy and "obligation" not in policy
    for perm in policy["permission"]:
        assert perm["target"] == UID + "/resources"
        assert isinstance(perm["action"], str)  # ODRL 2.2: one action per rule
        for c in perm["constraint"]:
            assert {"leftOperand", "operator", "rightOperand"} <= set(c)
        for d in perm["duty"]:
            assert "action" in d


def test_documented_example_policy_is_the_consortium_export() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert json.loads(blocks[0]) == export()


# --- round trips --------------------------------------------------------------------------


def test_consortium_terms_round_trip_through_odrl() -> None:
    assert terms_from_odrl(export()) == consortium_terms()


def test_licence_round_trips_with_id_version_licensor_and_revocation() -> None:
    licence = Licence(7, 2, "CN-XJTU", consortium_terms(), datetime(2026, 6, 1, tzinfo=UTC))
    policy = licence_to_odrl(licence, base="https://xjtu.example/")
    assert policy["uid"] == "https://xjtu.example/licences/7/versions/2"
    assert policy["assigner"] == "https://xjtu.example/members/CN-XJTU"
    assert licence_from_odrl(json.loads(json.dumps(policy))) == licence


@pytest.mark.parametrize(
    ("currency", "minor", "text"),
    [("CNY", 5, "0.05"), ("JPY", 1000, "1000"), ("BHD", 1500, "1.500")],
)
def test_pay_amount_is_in_major_units_of_the_currency(currency: str, minor: int, text: str) -> None:
    terms = consortium_terms(fee=Fee(minor, currency))
    policy = export(terms)
    assert policy["libshare:fee"]["rightOperand"]["@value"] == text
    assert terms_from_odrl(policy).fee == Fee(minor, currency)


_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_times = st.integers(0, 2 * 365 * 24 * 3600).map(lambda s: _T0 + timedelta(seconds=s))
_grants = st.builds(Grant, st.sampled_from(list(Method)), st.sampled_from(list(Scope)))
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1).filter(
    str.strip
)


def _opt_set(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[frozenset[Any] | None]:
    return st.none() | st.frozensets(elements, max_size=4)


@st.composite
def _limits(draw: st.DrawFn) -> Limit:
    window = draw(st.sampled_from(list(Window)))
    return Limit(
        name=draw(st.sampled_from(["whole_book_copies", "international_deliveries", "a", "x_1"])),
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
def exportable_terms(draw: st.DrawFn) -> Terms:
    """Random terms with at least one grant (an ODRL policy needs a permission)."""
    grants = draw(st.frozensets(_grants, min_size=1))
    valid_from = draw(_times)
    bounds = sorted(draw(st.sets(_times, max_size=6)))
    pairs = zip(bounds[::2], bounds[1::2], strict=False)
    countries = st.sampled_from(["CN", "HK", "US", "DE", "JP"])
    return Terms(
        members=draw(_opt_set(st.sampled_from(["CN-XJTU", "CN-PKU", "HK-HKU", "é-lib"]))),
        tiers=draw(_opt_set(st.integers(0, 9))),
        patron_categories=draw(st.frozensets(st.sampled_from(list(PatronCategory)))),
        grants=grants,
        purposes=draw(st.frozensets(st.sampled_from(list(Purpose)))),
        countries=draw(_opt_set(countries)),
        home_country=draw(countries),
        international=draw(st.booleans()),
        limits=tuple({lim.name: lim for lim in draw(st.lists(_limits(), max_size=4))}.values()),
        valid_from=valid_from,
        valid_until=draw(st.none() | st.just(valid_from + timedelta(days=400))),
        campaigns=tuple(
            Campaign(f"c{i}", s, e, draw(st.booleans())) for i, (s, e) in enumerate(pairs)
        ),
        fee=Fee(draw(st.integers(0, 10**9)), draw(st.sampled_from(["CNY", "EUR", "JPY", "KWD"]))),
        free_grants=draw(st.frozensets(st.sampled_from(sorted(grants)))),
        attribution=draw(st.none() | _text),
        watermark=draw(st.booleans()),
        notice=draw(st.none() | _text),
    )


@settings(max_examples=150, deadline=None)
@given(exportable_terms())
def test_a_licence_exported_to_odrl_and_imported_back_is_equal(terms: Terms) -> None:
    assert terms_from_odrl(export(terms)) == terms


@settings(max_examples=50, deadline=None)
@given(exportable_terms())
def test_export_import_export_gives_identical_json(terms: Terms) -> None:
    first = export(terms)
    again = export(terms_from_odrl(first))
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)


def test_terms_that_grant_nothing_cannot_be_exported() -> None:
    terms = Terms(frozenset(), frozenset(), frozenset(), "CN", True, _T0, Fee(0, "CNY"))
    with pytest.raises(InvalidInput, match="terms grant nothing"):
        terms_to_odrl(terms, uid=UID, assigner=ASSIGNER)


# --- hand-written equivalents -------------------------------------------------------------

Edit = Callable[[Policy], object]


def _compact_policy(p: Policy) -> None:
    """Policy-level target, '@type', reversed keys, single values and full IRIs."""
    target = p["permission"][0]["target"]
    for perm in p["permission"]:
        del perm["target"]
    p["target"] = target
    p["@type"] = p.pop("type")
    for perm in p["permission"]:
        perm["action"] = {"reproduce": "http://www.w3.org/ns/odrl/2/reproduce",
                          "libshare:loan": "https://libshare.example/odrl/profile#loan"}.get(
            perm["action"], perm["action"])  # fmt: skip
    p["permission"] = [dict(reversed(perm.items())) for perm in p["permission"]]


def _and_and_plain_strings(p: Policy) -> None:
    for perm in p["permission"]:
        scope = constraint(perm, "libshare:scope")
        perm["constraint"].remove(scope)
        scope["rightOperand"] = scope["rightOperand"]["@id"]  # a plain string IRI
        perm["constraint"].append({"and": [scope]})
        for d in perm["duty"]:
            if d["action"] in ("watermark", "attribute", "inform"):
                d["action"] = [{"@id": "odrl:" + d["action"]}]


def _eq_for_one_value(p: Policy) -> None:
    for perm in p["permission"]:
        perm["constraint"].append({"leftOperand": "odrl:spatial", "operator": "odrl:eq",
                                   "rightOperand": "CN"})  # fmt: skip


@pytest.mark.parametrize("edit", [_compact_policy, _and_and_plain_strings])
def test_hand_written_equivalents_import_to_the_same_terms(edit: Edit) -> None:
    policy = export()
    edit(policy)
    assert terms_from_odrl(policy) == consortium_terms()


def test_spatial_eq_one_bare_country_code_is_read_as_that_country() -> None:
    policy = export()
    _eq_for_one_value(policy)
    assert terms_from_odrl(policy).countries == frozenset({"CN"})


# --- refusals -----------------------------------------------------------------------------


def _set(path: str, value: object) -> Edit:
    def edit(p: Policy) -> None:
        *parents, last = re.findall(r"[^.\[\]]+", path)
        node: Any = p
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


def _add_constraint(c: Policy, perm: int = 0) -> Edit:
    return lambda p: p["permission"][perm]["constraint"].append(c)


_ISO = {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": []}
REFUSALS: list[tuple[str, Edit, str]] = [
    ("sell", _set("permission.2.action", "odrl:sell"),
     r'action "odrl:sell" at permission\[2\]\.action, which the libshare profile cannot'),
    ("prohibition", _set("prohibition", [{"action": "print", "target": UID}]),
     r'key "prohibition" at prohibition'),
    ("obligation", _set("obligation", []), r'key "obligation" at obligation'),
    ("left operand", _set("permission.0.constraint.0.leftOperand", "industry"),
     r'left operand "odrl:industry" at permission\[0\]\.constraint\[0\]\.leftOperand'),
    ("operator", _set("permission.1.constraint.1.operator", "isNoneOf"),
     r'operator "isNoneOf" on purpose at permission\[1\]\.constraint\[1\]\.operator'),
    ("or", _add_constraint({"or": [_ISO, _ISO]}),
     r'logical constraint "or" at permission\[0\]\.constraint\[6\]\.or'),
    ("xone", _add_constraint({"xone": [_ISO, _ISO]}), r'logical constraint "xone"'),
    ("refined action", _set("permission.0.action",
                            [{"rdf:value": {"@id": "odrl:reproduce"}, "refinement": [_ISO]}]),
     r'refinement of action "odrl:reproduce" at permission\[0\]\.action'),
    ("duty action", _set("permission.0.duty.0.action", "delete"),
     r'duty action "odrl:delete" at permission\[0\]\.duty\[0\]\.action'),
    ("purpose", _set("permission.0.constraint.1.rightOperand.0", {"@id": "libshare:leisure"}),
     r'purpose "libshare:leisure" at permission\[0\]\.constraint\[1\]\.rightOperand\[0\]'),
    ("policy type", _set("type", "Agreement"), r'policy type "Agreement" at type'),
    ("dataType", _set("permission.0.constraint.2.dataType", "xsd:dateTime"),
     r'key "dataType" at permission\[0\]\.constraint\[2\]\.dataType'),
    ("profile", _set("profile", "https://other.example/profile"), r'profile "https://other'),
    ("context", _set("@context.1.libshare", "https://other.example/#"),
     r'context term "libshare" at @context\[1\]\.libshare'),
    ("international only", _add_constraint({"leftOperand": "libshare:international",
                                            "operator": "eq", "rightOperand": True}),
     r'value "true" on libshare:international at permission\[0\]\.constraint\[6\]'),
    ("unit", _set("libshare:fee.unit", "http://dbpedia.org/resource/Euro"),
     r'unit "http://dbpedia.org/resource/Euro" at libshare:fee\.unit'),
    ("sub-cent fee", _set("libshare:fee.rightOperand.@value", "10.005"), r"not a CNY amount"),
    ("campaign constraint on a permission",
     _add_constraint({"leftOperand": "libshare:campaignInForce", "operator": "isNoneOf",
                      "rightOperand": []}),
     r'permission constraint "libshare:campaignInForce"'),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "match"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])  # fmt: skip
def test_construct_the_profile_cannot_express_is_refused_naming_it(edit: Edit, match: str) -> None:
    policy = export()
    edit(policy)
    with pytest.raises(InvalidInput, match=match):
        terms_from_odrl(policy)


def _drop(left: str, perm: int) -> Edit:
    def edit(p: Policy) -> None:
        cs = p["permission"][perm]["constraint"]
        cs[:] = [c for c in cs if c["leftOperand"] != left or c.get("libshare:counter") == "x"]

    return edit


INCONSISTENT: list[tuple[str, Edit, str]] = [
    ("purposes differ",
     _set("permission.1.constraint.1.rightOperand", [{"@id": "libshare:research"}]),
     r"permission\[1\] differs from permission\[0\] in purposes"),
    ("no purpose", _drop("purpose", 0), r"permission\[0\] has no purpose constraint"),
    ("limit moved", _drop("count", 1), r"counter \w+ is on permissions"),
    ("fee differs", _set("permission.1.duty.0.action.0.refinement.0.rightOperand", "9.00"),
     r"permission\[1\]\.duty\[0\] charges CNY 900 \(minor units\), libshare:fee CNY 1000"),
    ("campaign waiver differs", _set("permission.1.duty.0.constraint.0.rightOperand", []),
     r"waives the fee in campaigns \[\]"),
    ("free marker wrong", _set("permission.1.libshare:freeGrant", True),
     r"libshare:freeGrant true but has compensate duty"),
    ("repeated grant", lambda p: p["permission"].append(copy.deepcopy(p["permission"][0])),
     r"permission\[4\] repeats the grant copy/part"),
    ("no target", lambda p: p["permission"][0].pop("target"), r"permission\[0\] has no target"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "match"), [r[1:] for r in INCONSISTENT],
                         ids=[r[0] for r in INCONSISTENT])  # fmt: skip
def test_permissions_that_disagree_with_the_profile_are_refused(edit: Edit, match: str) -> None:
    policy = export()
    edit(policy)
    with pytest.raises(InvalidInput, match=match):
        terms_from_odrl(policy)
