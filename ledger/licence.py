"""Pure evaluation of a share request against a licence.

A delivery service asks "may a patron of library B receive resource R of library A, for
purpose P, by method M?". :func:`evaluate` answers from the licence terms, the request and
the counter values the caller read for :func:`counters_needed` — no clock, no I/O, no
settings. The same inputs always give the same :class:`Decision`.

Conventions (each chosen so that anything unmentioned denies):

* The profile's own conventions (``None`` vs empty sets, half-open windows) are in
  :mod:`ledger.licence_terms`.
* The campaign in force is the one whose window contains ``at`` (campaigns never
  overlap), chosen by time alone; a request may also name it. Naming an unknown campaign
  denies with ``unknown_term``; naming a known campaign that is not running at ``at`` denies with
  ``outside_validity`` (rather than silently charging a fee the request did not expect).
* Counters are named by the limit: licences that use the same limit name share its
  counters (a consortium-wide quota such as "3 whole books per patron"). The window key is
  ``"<year>"`` (calendar year in UTC), ``"campaign:<id>"`` (only while a campaign is in
  force — outside campaigns a campaign-window limit does not apply), ``"rolling:<n>"``
  with ``since = at - n days`` (the store counts increments at or after ``since``), or
  ``"licence:<licence_id>"`` (the licence's lifetime, across all its versions).
  A title-scoped limit counts against the resource id when the request names no title.
* The fee is zero for a free grant, or inside a fee-waived campaign; otherwise ``fee``.
  A denial carries no fee and no obligations.

Evaluation order — the first failing check decides: no licence (``no_licence``); revoked
(``licence_revoked``); unknown campaign (``unknown_term``); outside the validity window or
a named campaign not running (``outside_validity``); member, then tier
(``member_not_allowed``); patron category; purpose; method and scope
(``method_not_allowed``); destination countries (``region_not_allowed``); international
(``international_not_allowed``); limits in name order (``limit_exceeded`` when
``count + 1 > max``); else ``allowed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from ledger.errors import InvalidInput
from ledger.licence_json import canonical_terms, terms_from_json, terms_hash, terms_to_json
from ledger.licence_terms import (
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
)

__all__ = [
    "AppliesTo", "Campaign", "CounterKey", "CounterScope", "Decision", "Fee", "Grant",
    "Licence", "Limit", "Method", "Outcome", "PatronCategory", "Purpose", "Reason", "Request",
    "Scope", "Terms", "Window", "canonical_terms", "consortium_terms", "counters_needed",
    "evaluate", "terms_from_json", "terms_hash", "terms_to_json",
]  # fmt: skip

Outcome = StrEnum("Outcome", "allow deny")
Reason = StrEnum(
    "Reason",
    "allowed no_licence licence_revoked outside_validity member_not_allowed"
    " patron_category_not_allowed purpose_not_allowed method_not_allowed region_not_allowed"
    " international_not_allowed limit_exceeded unknown_term",
)
"""Stable reason codes: part of the API, recorded in every trail entry."""


@dataclass(frozen=True, slots=True)
class Request:
    """A share request: who asks for what, why, how, where to and when.

    ``patron`` is the pseudonym (HMAC of the patron id), never the patron id itself.
    """

    resource_id: str
    title_id: str | None
    requesting_member: str
    requesting_tier: int
    patron: str
    patron_category: PatronCategory
    purpose: Purpose
    method: Method
    scope: Scope
    destination_country: str
    campaign: str | None
    at: datetime

    def __post_init__(self) -> None:
        # Kept cheap: this runs for every request on the delivery hot path.
        if self.at.tzinfo is None:
            raise InvalidInput("request time is a naive datetime", hint="give it a timezone")
        dc = self.destination_country
        if len(dc) != 2 or not dc.isascii() or not dc.isupper():
            raise InvalidInput(f"destination_country must be ISO 3166 alpha-2, got {dc!r}")


class CounterKey(NamedTuple):
    """The exact counter a limit reads for a request.

    ``subject`` is the patron pseudonym, member id, resource id or title id per ``scope``.
    ``since`` is set for rolling windows only: the store answers the number of increments
    of (limit, scope, subject, window_key) recorded at or after it. A named tuple rather
    than a dataclass because it is built and hashed on every check (C-speed hash and eq).
    """

    limit: str
    scope: CounterScope
    subject: str
    window_key: str
    since: datetime | None = None


class Decision(NamedTuple):
    """The answer to a request, with the term that decided and what follows from it.

    ``term`` is a short path into the terms (``"purposes"``, ``"limits.whole_book_copies"``);
    ``detail`` one sentence for people. ``fee`` is ``None`` on a denial (nothing is charged),
    a zero ``Fee`` when free or waived. ``increments`` are the counters to increment if, and
    only if, the delivery goes ahead. A named tuple, like :class:`CounterKey`, because one is
    built for every check; use :meth:`_asdict` or :func:`ledger.licence_json.decision_to_json`.
    """

    outcome: Outcome
    reason: Reason
    term: str
    detail: str
    licence_id: int | None
    licence_version: int | None
    fee: Fee | None = None
    obligations: tuple[str, ...] = ()
    increments: tuple[CounterKey, ...] = ()

    @property
    def allowed(self) -> bool:
        """Whether the delivery may go ahead."""
        return self.outcome is _ALLOW


def _campaign_at(terms: Terms, at: datetime) -> Campaign | None:
    for c in terms.campaigns:
        if c.starts <= at < c.ends:
            return c
    return None


# Enum members bound once: looking a member up on its class costs more than the check.
_YEAR, _CAMPAIGN, _ROLLING = Window.calendar_year, Window.campaign, Window.rolling_days
_PATRON, _MEMBER, _TITLE = CounterScope.patron, CounterScope.requesting_member, CounterScope.title
_ALLOW, _DENY, _ALLOWED = Outcome.allow, Outcome.deny, Reason.allowed
# Build named tuples without the generated __new__'s argument handling (hot path only).
_new_key = _new_decision = tuple.__new__
_NONE: tuple[list[Limit], tuple[CounterKey, ...]] = ([], ())


def _keys(
    licence: Licence, request: Request, limits: tuple[Limit, ...], campaign: Campaign | None
) -> tuple[list[Limit], tuple[CounterKey, ...]]:
    """The limits among ``limits`` that count ``request``, and the counter each reads."""
    terms = licence.terms
    international = request.destination_country != terms.home_country
    at = request.at
    applied, keys = [], []
    for lim in limits:
        if lim.applies_to.international_only and not international:
            continue
        window, since = lim.window, None
        if window is _YEAR:
            key = str((at if at.tzinfo is UTC else at.astimezone(UTC)).year)
        elif window is _CAMPAIGN:
            if campaign is None:
                continue  # a campaign-window limit counts only while a campaign is in force
            key = "campaign:" + campaign.id
        elif window is _ROLLING:
            key = f"rolling:{lim.rolling_days}"
            since = at - timedelta(days=lim.rolling_days or 0)
        else:
            key = f"licence:{licence.licence_id}"
        scope = lim.scope
        if scope is _PATRON:
            subject = request.patron
        elif scope is _MEMBER:
            subject = request.requesting_member
        elif scope is _TITLE and request.title_id is not None:
            subject = request.title_id
        else:
            subject = request.resource_id
        applied.append(lim)
        keys.append(_new_key(CounterKey, (lim.name, scope, subject, key, since)))
    return applied, tuple(keys)


def counters_needed(licence: Licence | None, request: Request) -> tuple[CounterKey, ...]:
    """The counters :func:`evaluate` reads for ``request``; read them all, then evaluate.

    Missing counters count as 0. Returns ``()`` when there is no licence, the method is not
    granted, or the request names an unknown campaign (evaluation denies before limits).
    """
    if licence is None:
        return ()
    terms = licence.terms
    plan = terms._granted.get((request.method, request.scope))
    if plan is None or not plan.limits:
        return ()
    if request.campaign is not None:
        campaign = terms._campaigns.get(request.campaign)
        if campaign is None:
            return ()
    else:
        campaign = _campaign_at(terms, request.at)
    return _keys(licence, request, plan.limits, campaign)[1]


def _deny(licence: Licence | None, reason: Reason, term: str, detail: str) -> Decision:
    lid, version = (None, None) if licence is None else (licence.licence_id, licence.version)
    return _new_decision(Decision, (_DENY, reason, term, detail, lid, version, None, (), ()))


def _when(t: datetime) -> str:
    return t.isoformat()


_WINDOW_TEXT = {
    Window.calendar_year: "in calendar year {}",
    Window.campaign: "in campaign {}",
    Window.rolling_days: "in the last {} days",
    Window.licence_lifetime: "over the lifetime of licence {}",
}


def evaluate(
    licence: Licence | None, request: Request, counters: Mapping[CounterKey, int]
) -> Decision:
    """Decide ``request`` under ``licence`` given the counter values the caller read.

    ``counters`` maps the keys from :func:`counters_needed` to their current counts
    (missing keys count as 0). On allow, ``increments`` lists the counters to increment.
    """
    if licence is None:
        return _deny(None, Reason.no_licence, "licence", "no licence covers this resource")
    at = request.at
    if licence.revoked_at is not None and licence.revoked_at <= at:
        return _deny(licence, Reason.licence_revoked, "revoked_at",
                     f"licence revoked at {_when(licence.revoked_at)}")  # fmt: skip
    terms = licence.terms
    if request.campaign is not None:
        campaign = terms._campaigns.get(request.campaign)
        if campaign is None:
            return _deny(licence, Reason.unknown_term, "campaigns",
                         f"the licence knows no campaign {request.campaign!r}")  # fmt: skip
        if not campaign.starts <= at < campaign.ends:
            return _deny(licence, Reason.outside_validity, f"campaigns.{campaign.id}",
                         f"campaign {campaign.id} runs from {_when(campaign.starts)} "
                         f"until {_when(campaign.ends)}")  # fmt: skip
    else:
        campaign = _campaign_at(terms, at) if terms.campaigns else None
    if at < terms.valid_from:
        return _deny(licence, Reason.outside_validity, "valid_from",
                     f"licence valid from {_when(terms.valid_from)}")  # fmt: skip
    if terms.valid_until is not None and at >= terms.valid_until:
        return _deny(licence, Reason.outside_validity, "valid_until",
                     f"licence valid until {_when(terms.valid_until)}")  # fmt: skip
    if terms.members is not None and request.requesting_member not in terms.members:
        return _deny(licence, Reason.member_not_allowed, "members",
                     f"member {request.requesting_member} is not licensed")  # fmt: skip
    if terms.tiers is not None and request.requesting_tier not in terms.tiers:
        return _deny(licence, Reason.member_not_allowed, "tiers",
                     f"tier {request.requesting_tier} members are not licensed")  # fmt: skip
    if request.patron_category not in terms.patron_categories:
        return _deny(licence, Reason.patron_category_not_allowed, "patron_categories",
                     f"{request.patron_category} patrons are not licensed")  # fmt: skip
    if request.purpose not in terms.purposes:
        return _deny(licence, Reason.purpose_not_allowed, "purposes",
                     f"purpose {request.purpose} is not licensed")  # fmt: skip
    plan = terms._granted.get((request.method, request.scope))
    if plan is None:
        return _deny(licence, Reason.method_not_allowed, "grants",
                     f"{request.method}/{request.scope} is not granted")  # fmt: skip
    country = request.destination_country
    if terms.countries is not None and country not in terms.countries:
        return _deny(licence, Reason.region_not_allowed, "countries",
                     f"delivery to {country} is not licensed")  # fmt: skip
    if not terms.international and country != terms.home_country:
        return _deny(licence, Reason.international_not_allowed, "international",
                     f"international delivery ({terms.home_country} to {country}) "
                     "is not licensed")  # fmt: skip
    applied, keys = _keys(licence, request, plan.limits, campaign) if plan.limits else _NONE
    for lim, key in zip(applied, keys, strict=True):
        used = counters.get(key, 0)
        if used + 1 > lim.max:
            where = key.window_key.partition(":")[2] if ":" in key.window_key else key.window_key
            window = _WINDOW_TEXT[lim.window].format(where)
            return _deny(licence, Reason.limit_exceeded, f"limits.{lim.name}",
                         f"{lim.name.replace('_', ' ')} for this {lim.scope.replace('_', ' ')}"
                         f" {window}: {used} of {lim.max} used")  # fmt: skip
    if plan.free:
        fee, detail = terms._free, plan.detail
    elif campaign is not None and campaign.fee_waived:
        fee, detail = terms._free, plan.term[7:] + " granted; fee waived in " + campaign.id
    else:
        fee, detail = terms.fee, plan.detail
    return _new_decision(Decision, (_ALLOW, _ALLOWED, plan.term, detail, licence.licence_id,
                         licence.version, fee, terms._obligations, keys))  # fmt: skip


CONSORTIUM_FREE_MONTH = Campaign(
    "free-delivery-2026-03",
    datetime(2026, 3, 1, tzinfo=UTC),
    datetime(2026, 4, 1, tzinfo=UTC),
    fee_waived=True,
)


CONSORTIUM_FEE = Fee(1000, "CNY")  # 10.00 CNY per delivery, unless free or waived


def consortium_terms(
    *,
    valid_from: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    valid_until: datetime | None = datetime(2027, 1, 1, tzinfo=UTC),
    campaigns: tuple[Campaign, ...] = (CONSORTIUM_FREE_MONTH,),
    fee: Fee = CONSORTIUM_FEE,
    home_country: str = "CN",
    members: frozenset[str] | None = None,
) -> Terms:
    """The consortium's document-delivery rules, as a university library consortium runs them.

    Single-article delivery free; whole-book copies at most 3 per patron per calendar year;
    international deliveries at most 3 per patron within a campaign; fee waived in
    free-delivery campaigns; delivered copies only for personal study, teaching and research.
    ``members=None`` admits every consortium member.
    """
    part = (Grant(Method.copy, Scope.part), Grant(Method.secure_electronic, Scope.part))
    whole = (Grant(Method.copy, Scope.whole), Grant(Method.loan, Scope.whole))
    return Terms(
        members=members,
        patron_categories=frozenset(
            {PatronCategory.faculty, PatronCategory.student, PatronCategory.staff}
        ),
        grants=frozenset(part + whole),
        purposes=frozenset({Purpose.personal_study, Purpose.teaching, Purpose.research}),
        home_country=home_country,
        international=True,
        limits=(
            Limit(
                "whole_book_copies",
                3,
                CounterScope.patron,
                Window.calendar_year,
                applies_to=AppliesTo(frozenset({Method.copy}), frozenset({Scope.whole})),
            ),
            Limit(
                "international_deliveries",
                3,
                CounterScope.patron,
                Window.campaign,
                applies_to=AppliesTo(international_only=True),
            ),
        ),
        valid_from=valid_from,
        valid_until=valid_until,
        campaigns=campaigns,
        fee=fee,
        free_grants=frozenset(part),
        attribution="Supplied through the consortium document delivery service",
        watermark=True,
        notice="For personal study, teaching and research only",
    )
