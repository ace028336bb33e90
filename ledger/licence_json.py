"""Licence terms, licences and decisions as JSON, and the canonical bytes that get hashed.

The JSON form of :class:`~ledger.licence_terms.Terms` is flat, with every key present:
sets become sorted lists, ``None`` becomes ``null``, times become RFC 3339 strings in UTC
(``2026-03-01T00:00:00Z``, with microseconds only when there are some). Reading it back is
strict — an unknown key, a missing key or a value of the wrong type is refused with
:class:`~ledger.errors.InvalidInput` naming the path — because a term that is silently
dropped would widen what the licence allows. ``terms_from_json(terms_to_json(t)) == t``.

:func:`canonical_terms` is RFC 8785 (JCS) canonical JSON of that form; :func:`terms_hash`
is its sha-256, the digest recorded on chain for each licence version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import rfc8785

from ledger.errors import InvalidInput
from ledger.licence_terms import (
    AppliesTo,
    Campaign,
    Fee,
    Grant,
    Licence,
    Limit,
    Terms,
)
from ledger.types import Sha256Digest, sha256

if TYPE_CHECKING:
    from ledger.licence import CounterKey, Decision, Request

__all__ = [
    "canonical_json", "canonical_terms", "decision_to_json", "licence_from_json",
    "licence_to_json", "request_to_json", "terms_from_json", "terms_hash", "terms_to_json",
]  # fmt: skip

T = TypeVar("T")


def time_to_json(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when non-zero."""
    u = t.astimezone(UTC)
    frac = f".{u.microsecond:06d}" if u.microsecond else ""
    return u.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of a JSON-ready value."""
    try:
        return bytes(rfc8785.dumps(obj))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonical JSON: {exc}") from exc


def _sorted(values: Iterable[Any]) -> list[Any]:
    return sorted(values)


def _opt_sorted(values: Iterable[Any] | None) -> list[Any] | None:
    return None if values is None else sorted(values)


def _opt_set(values: list[T] | None) -> frozenset[T] | None:
    return None if values is None else frozenset(values)


def _grant(g: Grant) -> dict[str, Any]:
    return {"method": g.method.value, "scope": g.scope.value}


def terms_to_json(terms: Terms) -> dict[str, Any]:
    """The JSON form of ``terms`` (every key present; sets as sorted lists)."""
    opt = _opt_sorted
    return {
        "members": opt(terms.members),
        "tiers": opt(terms.tiers),
        "patron_categories": _sorted(p.value for p in terms.patron_categories),
        "grants": [_grant(g) for g in sorted(terms.grants)],
        "purposes": _sorted(p.value for p in terms.purposes),
        "countries": opt(terms.countries),
        "home_country": terms.home_country,
        "international": terms.international,
        "limits": [
            {
                "name": lim.name,
                "max": lim.max,
                "scope": lim.scope.value,
                "window": lim.window.value,
                "rolling_days": lim.rolling_days,
                "applies_to": {
                    "methods": opt(None if a.methods is None else {m.value for m in a.methods}),
                    "scopes": opt(None if a.scopes is None else {s.value for s in a.scopes}),
                    "international_only": a.international_only,
                },
            }
            for lim in terms.limits
            for a in (lim.applies_to,)
        ],
        "valid_from": time_to_json(terms.valid_from),
        "valid_until": None if terms.valid_until is None else time_to_json(terms.valid_until),
        "campaigns": [
            {
                "id": c.id,
                "starts": time_to_json(c.starts),
                "ends": time_to_json(c.ends),
                "fee_waived": c.fee_waived,
            }
            for c in terms.campaigns
        ],
        "fee": _fee(terms.fee),
        "free_grants": [_grant(g) for g in sorted(terms.free_grants)],
        "attribution": terms.attribution,
        "watermark": terms.watermark,
        "notice": terms.notice,
    }


def _fee(fee: Fee) -> dict[str, Any]:
    return {"amount_minor": fee.amount_minor, "currency": fee.currency}


class _Reader:
    """Strict, path-aware access to one JSON object: every key read, none unknown."""

    def __init__(self, obj: object, path: str, keys: tuple[str, ...]) -> None:
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"{path} must be a JSON object, got {type(obj).__name__}")
        unknown = sorted(str(k) for k in obj if k not in keys)
        if unknown:
            raise InvalidInput(
                f"unknown key {path}.{unknown[0]} in licence terms",
                hint=f"the profile knows only {', '.join(keys)}; unknown terms are refused",
            )
        missing = [k for k in keys if k not in obj]
        if missing:
            raise InvalidInput(f"missing key {path}.{missing[0]} in licence terms")
        self.obj, self.path = obj, path

    def get(self, key: str, kind: type[T], *, null: bool = False) -> T:
        """The value at ``key``, of type ``kind`` (``None`` too when ``null``)."""
        value = self.obj[key]
        if value is None and null:
            return cast(T, None)  # callers that pass null=True annotate T | None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            also = " or null" if null else ""
            raise InvalidInput(f"{self.path}.{key} must be {kind.__name__}{also}, got {value!r}")
        return value

    def items(self, key: str, kind: type[T], *, null: bool = False) -> list[T] | None:
        values = self.get(key, list, null=null)
        if values is None:
            return None
        for i, v in enumerate(values):
            if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
                raise InvalidInput(f"{self.path}.{key}[{i}] must be {kind.__name__}, got {v!r}")
        if kind is not dict and len(set(values)) != len(values):
            raise InvalidInput(f"{self.path}.{key} repeats a value")
        return values

    def time(self, key: str) -> datetime:
        text = self.get(key, str)
        try:
            t = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(f"{self.path}.{key} is not an RFC 3339 time: {text!r}") from exc
        if t.tzinfo is None:
            raise InvalidInput(f"{self.path}.{key} has no timezone: {text!r}")
        return t.astimezone(UTC)

    def each(self, key: str, read: Callable[[_Reader], T], keys: tuple[str, ...]) -> list[T]:
        return [
            read(_Reader(item, f"{self.path}.{key}[{i}]", keys))
            for i, item in enumerate(self.items(key, dict) or [])
        ]


_TERMS_KEYS = (
    "members", "tiers", "patron_categories", "grants", "purposes", "countries", "home_country",
    "international", "limits", "valid_from", "valid_until", "campaigns", "fee", "free_grants",
    "attribution", "watermark", "notice",
)  # fmt: skip
_LIMIT_KEYS = ("name", "max", "scope", "window", "rolling_days", "applies_to")
_APPLIES_KEYS = ("methods", "scopes", "international_only")
_FEE_KEYS = ("amount_minor", "currency")


def _read_grant(r: _Reader) -> Grant:
    return Grant(r.get("method", str), r.get("scope", str))  # type: ignore[arg-type]


def _read_limit(r: _Reader) -> Limit:
    a = _Reader(r.get("applies_to", dict), f"{r.path}.applies_to", _APPLIES_KEYS)
    methods, scopes = a.items("methods", str, null=True), a.items("scopes", str, null=True)
    return Limit(
        name=r.get("name", str),
        max=r.get("max", int),
        scope=r.get("scope", str),  # type: ignore[arg-type]  # validated by Limit
        window=r.get("window", str),  # type: ignore[arg-type]
        rolling_days=r.get("rolling_days", int, null=True),
        applies_to=AppliesTo(
            None if methods is None else frozenset(methods),  # type: ignore[arg-type]
            None if scopes is None else frozenset(scopes),  # type: ignore[arg-type]
            a.get("international_only", bool),
        ),
    )


def _read_campaign(r: _Reader) -> Campaign:
    return Campaign(r.get("id", str), r.time("starts"), r.time("ends"), r.get("fee_waived", bool))


def _read_fee(r: _Reader) -> Fee:
    return Fee(r.get("amount_minor", int), r.get("currency", str))


def terms_from_json(obj: Mapping[str, Any]) -> Terms:
    """Read terms from their JSON form; refuse unknown or missing keys and wrong types."""
    r = _Reader(obj, "terms", _TERMS_KEYS)
    opt = _opt_set
    valid_until = None if r.obj["valid_until"] is None else r.time("valid_until")
    return Terms(
        members=opt(r.items("members", str, null=True)),
        tiers=opt(r.items("tiers", int, null=True)),
        patron_categories=frozenset(r.items("patron_categories", str) or ()),  # type: ignore[arg-type]
        grants=frozenset(r.each("grants", _read_grant, ("method", "scope"))),
        purposes=frozenset(r.items("purposes", str) or ()),  # type: ignore[arg-type]
        countries=opt(r.items("countries", str, null=True)),
        home_country=r.get("home_country", str),
        international=r.get("international", bool),
        limits=tuple(r.each("limits", _read_limit, _LIMIT_KEYS)),
        valid_from=r.time("valid_from"),
        valid_until=valid_until,
        campaigns=tuple(
            r.each("campaigns", _read_campaign, ("id", "starts", "ends", "fee_waived"))
        ),
        fee=_read_fee(_Reader(r.get("fee", dict), "terms.fee", _FEE_KEYS)),
        free_grants=frozenset(r.each("free_grants", _read_grant, ("method", "scope"))),
        attribution=r.get("attribution", str, null=True),
        watermark=r.get("watermark", bool),
        notice=r.get("notice", str, null=True),
    )


def canonical_terms(terms: Terms) -> bytes:
    """RFC 8785 canonical JSON bytes of ``terms`` — the same terms always give the same bytes."""
    return canonical_json(terms_to_json(terms))


def terms_hash(terms: Terms) -> Sha256Digest:
    """sha-256 of :func:`canonical_terms`, recorded on chain for each licence version."""
    return sha256(canonical_terms(terms))


def licence_to_json(licence: Licence) -> dict[str, Any]:
    """The JSON form of one licence version, terms included."""
    revoked = licence.revoked_at
    return {
        "licence_id": licence.licence_id,
        "version": licence.version,
        "licensor": licence.licensor,
        "terms": terms_to_json(licence.terms),
        "revoked_at": None if revoked is None else time_to_json(revoked),
    }


def licence_from_json(obj: Mapping[str, Any]) -> Licence:
    """Read one licence version; strict like :func:`terms_from_json`."""
    r = _Reader(obj, "licence", ("licence_id", "version", "licensor", "terms", "revoked_at"))
    return Licence(
        licence_id=r.get("licence_id", int),
        version=r.get("version", int),
        licensor=r.get("licensor", str),
        terms=terms_from_json(r.get("terms", dict)),
        revoked_at=None if r.obj["revoked_at"] is None else r.time("revoked_at"),
    )


def request_to_json(request: Request) -> dict[str, Any]:
    """The JSON form of a request, as recorded in the usage trail (the patron is a pseudonym)."""
    out: dict[str, Any] = {
        name: getattr(request, name) for name in request.__dataclass_fields__ if name != "at"
    }
    out.update({k: str(v) for k, v in out.items() if isinstance(v, str)})  # enums as text
    out["at"] = time_to_json(request.at)
    return out


def _key_to_json(key: CounterKey) -> dict[str, Any]:
    return {
        "limit": key.limit,
        "scope": str(key.scope),
        "subject": key.subject,
        "window_key": key.window_key,
        "since": None if key.since is None else time_to_json(key.since),
    }


def decision_to_json(decision: Decision) -> dict[str, Any]:
    """The JSON form of a decision, as recorded in the usage trail."""
    return {
        "outcome": str(decision.outcome),
        "reason": str(decision.reason),
        "term": decision.term,
        "detail": decision.detail,
        "licence_id": decision.licence_id,
        "licence_version": decision.licence_version,
        "fee": None if decision.fee is None else _fee(decision.fee),
        "obligations": list(decision.obligations),
        "increments": [_key_to_json(k) for k in decision.increments],
    }
