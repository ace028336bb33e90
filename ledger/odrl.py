"""Licence terms as W3C ODRL 2.2 policies in JSON-LD, and back — losslessly and strictly.

:func:`terms_to_odrl` writes an ``Offer``: the licensor (``assigner``) offers the terms to
every consortium member who meets the constraints. Not an ``Agreement`` (there is no single
assignee) and not a ``Set`` (the licensor is known and an Offer must name it).
:func:`terms_from_odrl` reads what export writes and hand-written equivalents (any key order,
one value or a list where ODRL allows both, ``reproduce`` / ``odrl:reproduce`` / full IRIs,
``and`` constraints); anything else is refused with
:class:`~ledger.errors.InvalidInput` naming the construct and its JSON path, because a term
silently dropped would widen what the licence allows. ``terms_from_odrl(terms_to_odrl(t))
== t`` for every ``t`` with at least one grant (an ODRL policy needs at least one rule).

Mapping (terms → ODRL; ``docs/odrl-profile.md`` has every profile term and an example):

==================  =========================================================================
terms               ODRL
==================  =========================================================================
grants              one ``permission`` per grant: ``action`` copy → ``reproduce``, print →
                    ``print``, view_online → ``display``, loan → ``libshare:loan``,
                    secure_electronic → ``libshare:secureElectronicDelivery``; the scope as
                    constraint ``libshare:scope eq libshare:part|libshare:whole``
members, tiers      ``libshare:requestingMember`` / ``libshare:requestingTier`` ``isAnyOf``
                    (no constraint = any member / any tier)
patron_categories   ``libshare:patronCategory isAnyOf`` [``libshare:faculty`` …] (required)
purposes            ``purpose isAnyOf`` [``libshare:personalStudy`` …] (required)
countries           ``spatial isAnyOf`` [``iso3166:CN`` …] (no constraint = anywhere)
international       ``libshare:international eq false`` when domestic only; the home
                    country is the policy's ``libshare:homeCountry``
valid_from/until    ``dateTime gteq`` / ``dateTime lt`` an ``xsd:dateTime``
limits              ``count lteq max`` on each permission the limit counts, qualified by
                    ``libshare:counter`` (name: one counter shared by those permissions),
                    ``libshare:counterScope``, ``libshare:window``, ``libshare:rollingDays``,
                    ``libshare:appliesToAction``, ``libshare:appliesToScope``,
                    ``libshare:internationalOnly``; a limit that counts no granted
                    permission is kept in the policy's ``libshare:inactiveLimit``
campaigns           policy ``libshare:campaign`` entries: ``libshare:campaignId``,
                    ``libshare:starts``, ``libshare:ends`` (``xsd:dateTime``),
                    ``libshare:feeWaived``
fee, free_grants    policy ``libshare:fee`` (``payAmount eq`` decimal in major units, ``unit``
                    ``libshare:currency/CNY``); each non-free permission has duty
                    ``compensate`` refined by the same payAmount, constrained by
                    ``libshare:campaignInForce isNoneOf`` [fee-waived campaign ids]; a free
                    permission has no compensate duty and ``libshare:freeGrant: true``
attribution         duty ``attribute`` with ``libshare:text``
watermark           duty ``watermark`` (ODRL common vocabulary)
notice              duty ``inform`` with ``libshare:text``
==================  =========================================================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger import odrl_vocab as v
from ledger.errors import InvalidInput
from ledger.licence_json import time_to_json
from ledger.licence_terms import Fee, Licence, Limit, Terms
from ledger.odrl_read import licence_from_odrl, terms_from_odrl

__all__ = ["licence_from_odrl", "licence_to_odrl", "terms_from_odrl", "terms_to_odrl"]


def _c(left: str, op: str, right: Any, **extra: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": op, "rightOperand": right, **extra}


def _dt(t: datetime) -> dict[str, str]:
    return {"@value": time_to_json(t), "@type": "xsd:dateTime"}


def _pay(fee: Fee) -> dict[str, Any]:
    exp, n = v.minor_exponent(fee.currency), fee.amount_minor
    text = f"{n // 10**exp}.{n % 10**exp:0{exp}d}" if exp else str(n)
    amount = {"@value": text, "@type": "xsd:decimal"}
    return _c(v.PAY_AMOUNT, "eq", amount, unit={"@id": v.CURRENCY_UNIT + fee.currency})


def _limit(lim: Limit) -> dict[str, Any]:
    out = _c(v.COUNT, "lteq", lim.max, **{
        "libshare:counter": lim.name,
        "libshare:counterScope": v.ref(v.COUNTER_SCOPES[lim.scope]),
        "libshare:window": v.ref(v.WINDOWS[lim.window]),
    })  # fmt: skip
    if lim.rolling_days is not None:
        out["libshare:rollingDays"] = lim.rolling_days
    a = lim.applies_to
    if a.methods is not None:
        out["libshare:appliesToAction"] = [v.ref(v.ACTIONS[m]) for m in sorted(a.methods)]
    if a.scopes is not None:
        out["libshare:appliesToScope"] = [v.ref(v.SCOPES[s]) for s in sorted(a.scopes)]
    if a.international_only:
        out["libshare:internationalOnly"] = True
    return out


def _common(terms: Terms) -> list[dict[str, Any]]:
    """Who, why, where and when: the same constraints on every permission."""
    out = []
    if terms.members is not None:
        out.append(_c(v.MEMBER, "isAnyOf", sorted(terms.members)))
    if terms.tiers is not None:
        out.append(_c(v.TIER, "isAnyOf", sorted(terms.tiers)))
    cats = [v.ref(v.PATRON_CATEGORIES[p]) for p in sorted(terms.patron_categories)]
    out.append(_c(v.PATRON, "isAnyOf", cats))
    out.append(_c(v.PURPOSE, "isAnyOf", [v.ref(v.PURPOSES[p]) for p in sorted(terms.purposes)]))
    if terms.countries is not None:
        places = [v.ref(f"iso3166:{c}") for c in sorted(terms.countries)]
        out.append(_c(v.SPATIAL, "isAnyOf", places))
    if not terms.international:
        out.append(_c(v.INTERNATIONAL, "eq", False))
    out.append(_c(v.DATETIME, "gteq", _dt(terms.valid_from)))
    if terms.valid_until is not None:
        out.append(_c(v.DATETIME, "lt", _dt(terms.valid_until)))
    return out


def _iri_arg(value: str, name: str) -> None:
    if not isinstance(value, str) or ":" not in value:
        raise InvalidInput(f"{name} must be an absolute IRI, got {value!r}")


def terms_to_odrl(
    terms: Terms, *, uid: str, assigner: str, target: str | None = None
) -> dict[str, Any]:
    """The ODRL 2.2 ``Offer`` of ``terms`` as a JSON-LD object.

    ``uid`` is the policy IRI, ``assigner`` the licensor's IRI, ``target`` the IRI of the
    resources the licence covers (default ``<uid>/resources``).
    """
    target = uid + "/resources" if target is None else target
    for value, name in ((uid, "uid"), (assigner, "assigner"), (target, "target")):
        _iri_arg(value, name)
    if not terms.grants:
        raise InvalidInput("terms grant nothing", hint="an ODRL policy needs a permission")
    duties: list[dict[str, Any]] = []
    if terms.attribution is not None:
        duties.append({"action": "attribute", "libshare:text": terms.attribution})
    if terms.watermark:
        duties.append({"action": "watermark"})
    if terms.notice is not None:
        duties.append({"action": "inform", "libshare:text": terms.notice})
    waived = [c.id for c in terms.campaigns if c.fee_waived]
    permissions = []
    for g in sorted(terms.grants):
        constraints = [*_common(terms), _c(v.SCOPE, "eq", v.ref(v.SCOPES[g.scope]))]
        constraints += [
            _limit(lim) for lim in terms.limits if lim.applies_to.matches(g.method, g.scope)
        ]
        perm: dict[str, Any] = {"target": target, "action": v.ACTIONS[g.method]}
        perm["constraint"] = constraints
        duty = []
        if g in terms.free_grants:
            perm["libshare:freeGrant"] = True
        else:
            action = [{"rdf:value": {"@id": "odrl:compensate"}, "refinement": [_pay(terms.fee)]}]
            pay: dict[str, Any] = {"action": action}
            if waived:
                pay["constraint"] = [_c(v.CAMPAIGN_IN_FORCE, "isNoneOf", waived)]
            duty.append(pay)
        if duty + duties:
            perm["duty"] = duty + duties
        permissions.append(perm)
    policy: dict[str, Any] = {
        "@context": v.context(),
        "type": "Offer",
        "uid": uid,
        "profile": v.PROFILE,
        "assigner": assigner,
        "libshare:homeCountry": v.ref(f"iso3166:{terms.home_country}"),
        "libshare:fee": _pay(terms.fee),
    }
    if terms.campaigns:
        policy["libshare:campaign"] = [
            {"libshare:campaignId": c.id, "libshare:starts": _dt(c.starts),
             "libshare:ends": _dt(c.ends), "libshare:feeWaived": c.fee_waived}
            for c in terms.campaigns
        ]  # fmt: skip

    def counts(lim: Limit) -> bool:
        return any(lim.applies_to.matches(g.method, g.scope) for g in terms.grants)

    inactive = [lim for lim in terms.limits if not counts(lim)]
    if inactive:
        policy["libshare:inactiveLimit"] = [_limit(lim) for lim in inactive]
    policy["permission"] = permissions
    return policy


def licence_to_odrl(licence: Licence, *, base: str) -> dict[str, Any]:
    """The ODRL ``Offer`` of one licence version, named under ``base`` (the service's URL).

    The policy uid is ``<base>/licences/<id>/versions/<version>``, the assigner
    ``<base>/members/<licensor>``; id, version, licensor and revocation are kept as
    ``libshare:licenceId``, ``libshare:version``, ``libshare:licensor``, ``libshare:revokedAt``.
    """
    base = base.rstrip("/")
    lid = f"{base}/licences/{licence.licence_id}"
    policy = terms_to_odrl(
        licence.terms,
        uid=f"{lid}/versions/{licence.version}",
        assigner=f"{base}/members/{licence.licensor}",
        target=f"{lid}/resources",
    )
    policy["libshare:licenceId"] = licence.licence_id
    policy["libshare:version"] = licence.version
    policy["libshare:licensor"] = licence.licensor
    if licence.revoked_at is not None:
        policy["libshare:revokedAt"] = _dt(licence.revoked_at)
    return policy
