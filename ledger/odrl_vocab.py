"""The vocabulary of libshare's ODRL 2.2 profile: IRIs, the JSON-LD context, IRI helpers.

:mod:`ledger.odrl` maps :class:`~ledger.licence_terms.Terms` to ODRL policies with these
terms; ``docs/odrl-profile.md`` describes each of them for people. Every table here is a
bijection between a profile enum and one IRI, so import and export are each other's inverse.

IRIs are written compact (``odrl:reproduce``, ``libshare:loan``, ``iso3166:CN``) with the
prefixes of :data:`PREFIXES`; a bare name (``reproduce``) is an ODRL term, as the ODRL
JSON-LD context defines it. :func:`expand` turns any of the three spellings into the full IRI.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from ledger.licence_terms import CounterScope, Method, PatronCategory, Purpose, Scope, Window

ODRL = "http://www.w3.org/ns/odrl/2/"
ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
PROFILE = "https://libshare.example/odrl/profile"
LIBSHARE = PROFILE + "#"
# ISO's Online Browsing Platform names each ISO 3166-1 alpha-2 code with this IRI prefix.
ISO3166 = "https://www.iso.org/obp/ui/#iso:code:3166:"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

# odrl, xsd and rdf are defined by the ODRL context itself; libshare and iso3166 by ours.
PREFIXES = {"odrl": ODRL, "libshare": LIBSHARE, "iso3166": ISO3166, "xsd": XSD, "rdf": RDF}
LOCAL_CONTEXT = {"libshare": LIBSHARE, "iso3166": ISO3166}


def context() -> list[Any]:
    """A fresh ``@context`` for an exported policy (callers may mutate what they get)."""
    return [ODRL_CONTEXT, dict(LOCAL_CONTEXT)]


def expand(term: str) -> str:
    """The full IRI of ``term``: a bare ODRL name, a compact IRI or already a full IRI."""
    prefix, sep, rest = term.partition(":")
    if not sep:
        return ODRL + term  # the ODRL context defines every ODRL term by its bare name
    if prefix in PREFIXES and not rest.startswith("//"):
        return PREFIXES[prefix] + rest
    return term


def compact(iri: str) -> str:
    """``iri`` with a known prefix (``odrl:sell``), for messages and key matching."""
    for prefix, ns in PREFIXES.items():
        if iri.startswith(ns) and len(iri) > len(ns):
            return f"{prefix}:{iri[len(ns) :]}"
    return iri


def ref(term: str) -> dict[str, str]:
    """A JSON-LD node reference to ``term`` (bare ODRL names get the ``odrl:`` prefix)."""
    return {"@id": term if ":" in term else "odrl:" + term}


# What: one action per method. ODRL 2.2 deprecates odrl:lend and odrl:copy, and has no
# action for secure electronic delivery, so those two are profile actions.
ACTIONS: dict[Method, str] = {
    Method.copy: "reproduce",
    Method.loan: "libshare:loan",
    Method.secure_electronic: "libshare:secureElectronicDelivery",
    Method.print: "print",
    Method.view_online: "display",
}
SCOPES: dict[Scope, str] = {Scope.part: "libshare:part", Scope.whole: "libshare:whole"}
PURPOSES: dict[Purpose, str] = {
    Purpose.personal_study: "libshare:personalStudy",
    Purpose.teaching: "libshare:teaching",
    Purpose.research: "libshare:research",
    Purpose.course_reserves: "libshare:courseReserves",
    Purpose.commercial: "libshare:commercialUse",
    Purpose.other: "libshare:otherPurpose",
}
PATRON_CATEGORIES: dict[PatronCategory, str] = {
    PatronCategory.faculty: "libshare:faculty",
    PatronCategory.student: "libshare:student",
    PatronCategory.staff: "libshare:staff",
    PatronCategory.walk_in: "libshare:walkIn",
    PatronCategory.external: "libshare:externalPatron",
}
COUNTER_SCOPES: dict[CounterScope, str] = {
    CounterScope.patron: "libshare:perPatron",
    CounterScope.requesting_member: "libshare:perRequestingMember",
    CounterScope.resource: "libshare:perResource",
    CounterScope.title: "libshare:perTitle",
}
WINDOWS: dict[Window, str] = {
    Window.campaign: "libshare:campaignWindow",
    Window.calendar_year: "libshare:calendarYear",
    Window.rolling_days: "libshare:rollingWindow",
    Window.licence_lifetime: "libshare:licenceLifetime",
}

# Left operands. Bare names are ODRL common vocabulary; the others the profile defines.
MEMBER = "libshare:requestingMember"
TIER = "libshare:requestingTier"
PATRON = "libshare:patronCategory"
PURPOSE = "purpose"
SPATIAL = "spatial"
INTERNATIONAL = "libshare:international"
DATETIME = "dateTime"
SCOPE = "libshare:scope"
COUNT = "count"
PAY_AMOUNT = "payAmount"
CAMPAIGN_IN_FORCE = "libshare:campaignInForce"

E = TypeVar("E", bound=StrEnum)


def by_iri(table: dict[E, str]) -> dict[str, E]:
    """The inverse of a profile table, keyed by full IRI."""
    return {expand(term): value for value, term in table.items()}


# ISO 4217 minor-unit exponents that are not 2; payAmount is written in major units.
_ZERO = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
         "VND", "VUV", "XAF", "XOF", "XPF")  # fmt: skip
_THREE = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")
_EXPONENTS = {**dict.fromkeys(_ZERO, 0), **dict.fromkeys(_THREE, 3), "CLF": 4, "UYW": 4}


def minor_exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency`` (ISO 4217; 2 when not listed)."""
    return _EXPONENTS.get(currency, 2)


CURRENCY_UNIT = "libshare:currency/"  # + ISO 4217 code: the ``unit`` of a payAmount
