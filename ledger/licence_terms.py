"""The licence profile: the typed terms a licence grants, as immutable values.

Terms say who (members, tiers, patron categories), what (method/scope grants), why
(purposes), where (destination countries, international delivery), how many (limits with
an explicit counter scope and window), when (validity, campaigns), money (fee, free grants)
and duties (attribution, watermark, notice). :mod:`ledger.licence` evaluates requests
against them; :mod:`ledger.licence_json` maps them to canonical JSON and back.

Conventions (each chosen so that anything unmentioned denies):

* ``members``, ``tiers`` and ``countries`` are filters: ``None`` means "unrestricted on
  this dimension" (any consortium member, any tier, any destination country); an empty set
  means "nobody" / "nowhere". Member and tier filters combine with AND. Patron categories,
  purposes and grants are always explicit sets: an empty set allows nothing.
* An ``AppliesTo`` filter of a limit uses ``None`` for "any method" / "any scope"; an empty
  set is refused, because a limit that silently never applies would allow too much.
* Countries are ISO 3166 alpha-2 codes in upper case; currencies ISO 4217; integers stay
  within 2^53-1 so that RFC 8785 JSON represents them exactly.
* All times are timezone-aware. Windows are half-open: the licence is valid in
  ``[valid_from, valid_until)`` (``valid_until=None``: open-ended), a campaign runs in
  ``[starts, ends)``. Campaigns may not overlap, so at most one is in force at any time.
* Values are normalised on construction: enum strings become enums, limits are sorted by
  name and campaigns by start, so equal terms are equal values with equal canonical bytes.
* ``free_grants`` must be a subset of ``grants``; limit names and campaign ids are unique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, TypeVar

from ledger.errors import InvalidInput

__all__ = [
    "AppliesTo", "Campaign", "CounterScope", "Fee", "Grant", "Licence", "Limit", "Method",
    "PatronCategory", "Purpose", "Scope", "Terms", "Window",
]  # fmt: skip


# The profile's vocabularies. Each value is its own lower-case name, as it appears in JSON.
Method = StrEnum("Method", "copy loan secure_electronic print view_online")
Scope = StrEnum("Scope", "part whole")  # part = an article or a chapter
Purpose = StrEnum("Purpose", "personal_study teaching research course_reserves commercial other")
PatronCategory = StrEnum("PatronCategory", "faculty student staff walk_in external")
CounterScope = StrEnum("CounterScope", "patron requesting_member resource title")
Window = StrEnum("Window", "campaign calendar_year rolling_days licence_lifetime")

E = TypeVar("E", bound=StrEnum)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_INT = 2**53 - 1  # the largest integer RFC 8785 (I-JSON) represents exactly


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} is a naive datetime", hint="give every time a timezone")


def _int(value: int, what: str, low: int) -> None:
    if type(value) is not int or not low <= value <= _MAX_INT:  # bool is not a count
        raise InvalidInput(f"{what} must be an integer in [{low}, 2^53-1], got {value!r}")


def _enum(kind: type[E], value: object, what: str) -> E:
    if isinstance(value, str) and value in kind.__members__:  # names are the values
        return kind(value)
    allowed = ", ".join(kind)
    raise InvalidInput(f"{what}: unknown value {value!r}", hint=f"use one of {allowed}")


def _enums(kind: type[E], values: Iterable[object], what: str) -> frozenset[E]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInput(f"{what} must be a set of {kind.__name__} values, got {values!r}")
    return frozenset(_enum(kind, v, what) for v in values)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalise a field of a frozen dataclass


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """A permitted (method, scope) pair, e.g. copy/part or loan/whole."""

    method: Method
    scope: Scope

    def __post_init__(self) -> None:
        _set(self, "method", _enum(Method, self.method, "grant method"))
        _set(self, "scope", _enum(Scope, self.scope, "grant scope"))

    def __str__(self) -> str:
        return f"{self.method}/{self.scope}"


@dataclass(frozen=True, slots=True)
class Fee:
    """A fee in minor units of an ISO 4217 currency (``Fee(1000, "CNY")`` is 10.00 CNY)."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        _int(self.amount_minor, "fee amount_minor", 0)
        if not _CURRENCY.fullmatch(self.currency):
            raise InvalidInput(f"currency must be ISO 4217 like 'CNY', got {self.currency!r}")


@dataclass(frozen=True, slots=True)
class AppliesTo:
    """Which requests a limit counts. ``None`` = any method / any scope."""

    methods: frozenset[Method] | None = None
    scopes: frozenset[Scope] | None = None
    international_only: bool = False

    def __post_init__(self) -> None:
        # An empty filter would make the limit silently never apply: refuse it.
        if self.methods is not None:
            if not self.methods:
                raise InvalidInput("applies_to.methods is empty", hint="use None for any")
            _set(self, "methods", _enums(Method, self.methods, "applies_to.methods"))
        if self.scopes is not None:
            if not self.scopes:
                raise InvalidInput("applies_to.scopes is empty", hint="use None for any")
            _set(self, "scopes", _enums(Scope, self.scopes, "applies_to.scopes"))

    def matches(self, method: Method, scope: Scope) -> bool:
        """Whether a request by ``method`` for ``scope`` is counted (ignoring destination)."""
        return (self.methods is None or method in self.methods) and (
            self.scopes is None or scope in self.scopes
        )


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max`` matching deliveries per ``scope`` subject within ``window``."""

    name: str
    max: int
    scope: CounterScope
    window: Window
    rolling_days: int | None = None
    applies_to: AppliesTo = AppliesTo()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidInput(f"limit name must match [a-z][a-z0-9_]*, got {self.name!r}")
        _int(self.max, f"limits.{self.name}.max", 0)
        _set(self, "scope", _enum(CounterScope, self.scope, f"limits.{self.name}.scope"))
        _set(self, "window", _enum(Window, self.window, f"limits.{self.name}.window"))
        if self.window is Window.rolling_days:
            if self.rolling_days is None:
                raise InvalidInput(f"limits.{self.name} has a rolling window but no days")
            _int(self.rolling_days, f"limits.{self.name}.rolling_days", 1)
        elif self.rolling_days is not None:
            raise InvalidInput(f"limits.{self.name}.rolling_days set for a {self.window} window")


@dataclass(frozen=True, slots=True)
class Campaign:
    """A period with its own rules, e.g. a free-delivery month, running in [starts, ends)."""

    id: str
    starts: datetime
    ends: datetime
    fee_waived: bool

    def __post_init__(self) -> None:
        if not _CAMPAIGN_ID.fullmatch(self.id):
            raise InvalidInput(f"campaign id {self.id!r} is not a short [A-Za-z0-9_.:-] id")
        _aware(self.starts, f"campaigns.{self.id}.starts")
        _aware(self.ends, f"campaigns.{self.id}.ends")
        if self.starts >= self.ends:
            raise InvalidInput(f"campaign {self.id} ends before it starts")


class _GrantPlan(NamedTuple):
    """What evaluation needs for one granted (method, scope), computed once per Terms."""

    limits: tuple[Limit, ...]  # the limits that count this grant, in name order
    term: str  # "grants.copy/part"
    detail: str  # the allow sentence when no campaign waives the fee
    free: bool


@dataclass(frozen=True, slots=True)
class Terms:
    """The licence profile: who, what, why, where, how many, when, money and duties."""

    patron_categories: frozenset[PatronCategory]
    grants: frozenset[Grant]
    purposes: frozenset[Purpose]
    home_country: str
    international: bool
    valid_from: datetime
    fee: Fee
    members: frozenset[str] | None = None
    tiers: frozenset[int] | None = None
    countries: frozenset[str] | None = None
    limits: tuple[Limit, ...] = ()
    valid_until: datetime | None = None
    campaigns: tuple[Campaign, ...] = ()
    free_grants: frozenset[Grant] = frozenset()
    attribution: str | None = None
    watermark: bool = False
    notice: str | None = None
    # Pre-computed for the hot path; not part of the value.
    _granted: dict[tuple[str, str], _GrantPlan] = field(init=False, repr=False, compare=False)
    _campaigns: dict[str, Campaign] = field(init=False, repr=False, compare=False)
    _obligations: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _free: Fee = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._normalise()
        self._check()
        fee = f"fee {self.fee.currency} {self.fee.amount_minor} (minor units)"
        granted = {}
        for g in self.grants:
            limits = tuple(lim for lim in self.limits if lim.applies_to.matches(g.method, g.scope))
            free = g in self.free_grants
            detail = f"{g} granted; " + ("free" if free else fee)
            granted[g.method, g.scope] = _GrantPlan(limits, f"grants.{g}", detail, free)
        _set(self, "_granted", granted)
        _set(self, "_campaigns", {c.id: c for c in self.campaigns})
        duties = ["watermark"] if self.watermark else []
        duties += [f"notice:{self.notice}"] if self.notice is not None else []
        duties += [f"attribution:{self.attribution}"] if self.attribution is not None else []
        _set(self, "_obligations", tuple(duties))
        _set(self, "_free", Fee(0, self.fee.currency))

    def _normalise(self) -> None:
        # Accept any iterables and enum values as strings; store canonical values, so that
        # equal terms are equal values whatever order or spelling they were given in.
        cats = _enums(PatronCategory, self.patron_categories, "patron_categories")
        _set(self, "patron_categories", cats)
        _set(self, "purposes", _enums(Purpose, self.purposes, "purposes"))
        for name in ("grants", "free_grants"):
            grants = getattr(self, name)
            if any(not isinstance(g, Grant) for g in grants):
                raise InvalidInput(f"{name} must be Grant values, got {grants!r}")
            _set(self, name, frozenset(grants))
        for name in ("members", "tiers", "countries"):
            if getattr(self, name) is not None:
                _set(self, name, frozenset(getattr(self, name)))
        for name, kind in (("limits", Limit), ("campaigns", Campaign)):
            if any(not isinstance(x, kind) for x in getattr(self, name)):
                raise InvalidInput(f"{name} must be {kind.__name__} values")
        _set(self, "limits", tuple(sorted(self.limits, key=lambda lim: lim.name)))
        _set(self, "campaigns", tuple(sorted(self.campaigns, key=lambda c: (c.starts, c.id))))
        if not isinstance(self.fee, Fee):
            raise InvalidInput(f"fee must be a Fee, got {self.fee!r}")
        for name in ("international", "watermark"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _check(self) -> None:
        if any(not isinstance(m, str) or not m for m in self.members or ()):
            raise InvalidInput("members must be non-empty library ids")
        for tier in self.tiers or ():
            _int(tier, "tiers", 0)
        for code in (self.home_country, *(self.countries or ())):
            if not isinstance(code, str) or not _COUNTRY.fullmatch(code):
                raise InvalidInput(f"country must be ISO 3166 alpha-2 like 'CN', got {code!r}")
        if not self.free_grants <= self.grants:
            extra = ", ".join(sorted(str(g) for g in self.free_grants - self.grants))
            raise InvalidInput(f"free_grants not granted: {extra}", hint="add them to grants")
        _aware(self.valid_from, "valid_from")
        if self.valid_until is not None:
            _aware(self.valid_until, "valid_until")
            if self.valid_until <= self.valid_from:
                raise InvalidInput("valid_until is not after valid_from")
        names = [lim.name for lim in self.limits]
        if len(set(names)) != len(names):
            raise InvalidInput(f"limit names repeat: {sorted(names)}")
        for before, after in zip(self.campaigns, self.campaigns[1:], strict=False):
            if after.starts < before.ends or after.id == before.id:
                raise InvalidInput(f"campaigns {before.id} and {after.id} overlap")
        if len({c.id for c in self.campaigns}) != len(self.campaigns):
            raise InvalidInput("campaign ids repeat")
        for text in (self.attribution, self.notice):
            if text is not None and not text.strip():
                raise InvalidInput("attribution and notice must be None or non-empty text")


@dataclass(frozen=True, slots=True)
class Licence:
    """One version of a licence; a new version is a new value, never an edit."""

    licence_id: int
    version: int
    licensor: str
    terms: Terms
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        _int(self.licence_id, "licence_id", 0)
        _int(self.version, "version", 1)
        if self.revoked_at is not None:
            _aware(self.revoked_at, "revoked_at")
