"""Reading ODRL 2.2 policies of the libshare profile back into licence terms, strictly.

:func:`terms_from_odrl` accepts what :func:`ledger.odrl.terms_to_odrl` writes and
hand-written equivalents: any key order; one value or a list where ODRL allows both; bare
ODRL names, compact IRIs or full IRIs (``reproduce``, ``odrl:reproduce``,
``http://www.w3.org/ns/odrl/2/reproduce``); ``{"@id": ...}`` or plain strings for IRIs;
``{"@value": ...}`` or plain JSON for literals; ``and`` constraints (flattened); the policy
``target`` or one per permission. Everything else — an unknown action, left operand, operator
or key, a ``prohibition``, an ``or``/``xone``/``andSequence`` constraint, a refinement the
profile does not define, permissions that disagree on who/why/where/when — is refused with
:class:`~ledger.errors.InvalidInput` naming the construct and its JSON path, because a term
dropped silently would widen what the licence allows. The mapping is in :mod:`ledger.odrl`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger import odrl_vocab as v
from ledger.errors import InvalidInput
from ledger.licence_terms import AppliesTo, Campaign, Fee, Grant, Licence, Limit, Terms

__all__ = ["licence_from_odrl", "terms_from_odrl"]

_HINT = "docs/odrl-profile.md lists what the libshare ODRL profile expresses"


def _cannot(kind: str, name: object, path: str, on: str = "") -> InvalidInput:
    on = f" on {on}" if on else ""
    return InvalidInput(
        f'ODRL policy uses {kind} "{name}"{on} at {path}, which the libshare profile cannot'
        " express",
        hint=_HINT,
    )


def _show(fee: Fee) -> str:
    return f"{fee.currency} {fee.amount_minor} (minor units)"


def _key(key: str) -> str:
    """A key as export writes it: ``@type`` → ``type``, ``odrl:permission`` → ``permission``."""
    key = {"@type": "type", "@id": "uid"}.get(key, key)
    if ":" not in key:
        return key
    short = v.compact(v.expand(key))
    return short[5:] if short.startswith("odrl:") else short


class _Node:
    """One JSON object of the policy: keys normalised, unknown keys refused by path."""

    def __init__(self, obj: object, path: str, allowed: frozenset[str]) -> None:
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"{path} must be a JSON object, got {type(obj).__name__}")
        self.path, self.d = path, dict[str, Any]()
        for raw, value in obj.items():
            key = _key(str(raw))
            if key not in allowed:
                raise _cannot("key", key, self.at(str(raw)))
            if key in self.d:
                raise InvalidInput(f"{path} gives {key} twice")
            self.d[key] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def req(self, key: str) -> Any:
        if key not in self.d:
            raise InvalidInput(f"{self.at(key)} is missing", hint=_HINT)
        return self.d[key]


def _many(value: Any) -> list[Any]:
    if isinstance(value, Mapping) and set(value) == {"@list"}:
        value = value["@list"]
    return list(value) if isinstance(value, list) else [value]


def _iri(value: Any, path: str) -> str:
    if isinstance(value, Mapping) and set(value) == {"@id"}:
        value = value["@id"]
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{path} must be an IRI, got {value!r}")
    return v.expand(value)


def _lit(value: Any, kind: type, path: str) -> Any:
    if isinstance(value, Mapping) and "@value" in value and set(value) <= {"@value", "@type"}:
        value = value["@value"]
        if kind is int and isinstance(value, str) and value.isdigit():
            value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"{path} must be {kind.__name__}, got {value!r}")
    return value


def _time(value: Any, path: str) -> datetime:
    text = _lit(value, str, path)
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not an xsd:dateTime: {text!r}") from exc
    if t.tzinfo is None:
        raise InvalidInput(f"{path} has no timezone: {text!r}")
    return t.astimezone(UTC)


def _enum(table: dict[str, Any], value: Any, path: str, kind: str) -> Any:
    iri = _iri(value, path)
    if iri not in table:
        raise _cannot(kind, v.compact(iri), path)
    return table[iri]


_ACTIONS, _SCOPES = v.by_iri(v.ACTIONS), v.by_iri(v.SCOPES)
_PURPOSES, _PATRONS = v.by_iri(v.PURPOSES), v.by_iri(v.PATRON_CATEGORIES)
_COUNTER_SCOPES, _WINDOWS = v.by_iri(v.COUNTER_SCOPES), v.by_iri(v.WINDOWS)
_SETS = {v.MEMBER: "members", v.TIER: "tiers", v.PATRON: "patron_categories",
         v.PURPOSE: "purposes", v.SPATIAL: "countries"}  # fmt: skip
_OPS = {
    **dict.fromkeys(_SETS, ("isAnyOf", "eq")), v.INTERNATIONAL: ("eq",),
    v.DATETIME: ("gteq", "lt"), v.SCOPE: ("eq",), v.COUNT: ("lteq",),
    v.PAY_AMOUNT: ("eq",), v.CAMPAIGN_IN_FORCE: ("isNoneOf",),
}  # fmt: skip
_LEFT = {v.expand(term): term for term in _OPS}
_QUALIFIERS = frozenset({
    "libshare:counter", "libshare:counterScope", "libshare:window", "libshare:rollingDays",
    "libshare:appliesToAction", "libshare:appliesToScope", "libshare:internationalOnly",
})  # fmt: skip
_CONSTRAINT_KEYS = frozenset({"leftOperand", "operator", "rightOperand", "unit"}) | _QUALIFIERS


def _constraints(value: Any, path: str) -> list[_Node]:
    """The atomic constraints at ``path``; ``and`` is flattened, other logic refused."""
    out = []
    for i, item in enumerate(_many(value)):
        p = f"{path}[{i}]"
        keys = item if isinstance(item, Mapping) else ()
        logic = [k for k in keys if _key(str(k)) in ("and", "or", "xone", "andSequence")]
        if logic:
            if _key(logic[0]) != "and" or len(item) != 1:
                raise _cannot("logical constraint", _key(logic[0]), f"{p}.{logic[0]}")
            out += _constraints(item[logic[0]], f"{p}.{logic[0]}")
        else:
            out.append(_Node(item, p, _CONSTRAINT_KEYS))
    return out


def _operands(node: _Node, keys: frozenset[str] = frozenset()) -> tuple[str, str, Any]:
    """(left operand, operator, right operand) of ``node``, checked against the profile."""
    left = _iri(node.req("leftOperand"), node.at("leftOperand"))
    if left not in _LEFT:
        raise _cannot("left operand", v.compact(left), node.at("leftOperand"))
    term = _LEFT[left]
    op = v.compact(_iri(node.req("operator"), node.at("operator"))).removeprefix("odrl:")
    if op not in _OPS[term]:
        raise _cannot("operator", op, node.at("operator"), on=term)
    for key in set(node.d) - {"leftOperand", "operator", "rightOperand"} - keys:
        raise _cannot("key", key, node.at(key), on=term)
    return term, op, node.req("rightOperand")


def _set_value(term: str, op: str, right: Any, path: str) -> frozenset[Any]:
    values = _many(right) if op == "isAnyOf" else [right]
    if op == "eq" and isinstance(right, list):
        raise InvalidInput(f"{path} must be one value for eq", hint="use isAnyOf for a list")
    out = []
    for i, item in enumerate(values):
        p = f"{path}[{i}]" if op == "isAnyOf" else path
        if term == v.MEMBER:
            out.append(_lit(item, str, p))
        elif term == v.TIER:
            out.append(_lit(item, int, p))
        elif term == v.PATRON:
            out.append(_enum(_PATRONS, item, p, "patron category"))
        elif term == v.PURPOSE:
            out.append(_enum(_PURPOSES, item, p, "purpose"))
        elif isinstance(item, str) and len(item) == 2:
            out.append(item)  # a bare ISO 3166 code, as people write them by hand
        else:
            iri = _iri(item, p)
            if not iri.startswith(v.ISO3166):
                raise _cannot("spatial value", v.compact(iri), p)
            out.append(iri[len(v.ISO3166) :])
    if len(set(out)) != len(out):
        raise InvalidInput(f"{path} repeats a value")
    return frozenset(out)


def _fee(node: _Node) -> Fee:
    _, _, right = _operands(node, frozenset({"unit"}))
    unit = v.compact(_iri(node.req("unit"), node.at("unit")))
    prefix = "libshare:" + v.CURRENCY_UNIT.partition(":")[2]
    if not unit.startswith(prefix):
        raise _cannot("unit", unit, node.at("unit"))
    currency = unit[len(prefix) :]
    amount = right["@value"] if isinstance(right, Mapping) and "@value" in right else right
    try:
        # a float only from hand-written JSON; repr gives its shortest decimal spelling
        d = Decimal(repr(amount) if isinstance(amount, float) else str(amount))
        minor = d.scaleb(v.minor_exponent(currency))
        ok = d.is_finite() and minor == minor.to_integral_value() and not isinstance(amount, bool)
    except InvalidOperation:
        ok = False
    if not ok:
        raise InvalidInput(f"{node.at('rightOperand')} is not a {currency} amount: {amount!r}")
    return Fee(int(minor), currency)


def _limit_from(node: _Node) -> Limit:
    _, _, right = _operands(node, _QUALIFIERS)
    d, at = node.d, node.at
    methods = d.get("libshare:appliesToAction")
    scopes = d.get("libshare:appliesToScope")
    days = d.get("libshare:rollingDays")
    return Limit(
        name=_lit(node.req("libshare:counter"), str, at("libshare:counter")),
        max=_lit(right, int, at("rightOperand")),
        scope=_enum(_COUNTER_SCOPES, node.req("libshare:counterScope"),
                    at("libshare:counterScope"), "counter scope"),
        window=_enum(_WINDOWS, node.req("libshare:window"), at("libshare:window"), "window"),
        rolling_days=None if days is None else _lit(days, int, at("libshare:rollingDays")),
        applies_to=AppliesTo(
            None if methods is None else frozenset(
                _enum(_ACTIONS, m, f"{at('libshare:appliesToAction')}[{i}]", "action")
                for i, m in enumerate(_many(methods))),
            None if scopes is None else frozenset(
                _enum(_SCOPES, s, f"{at('libshare:appliesToScope')}[{i}]", "scope")
                for i, s in enumerate(_many(scopes))),
            _lit(d.get("libshare:internationalOnly", False), bool,
                 at("libshare:internationalOnly")),
        ),
    )  # fmt: skip


def _action(value: Any, path: str) -> tuple[str, Any]:
    """(action IRI, refinement or None) of a rule's single action."""
    items = _many(value)
    if len(items) != 1:
        raise InvalidInput(f"{path} must be exactly one action", hint="ODRL 2.2 §2.2")
    item = items[0]
    if isinstance(item, Mapping) and "@id" not in item:
        node = _Node(item, f"{path}[0]", frozenset({"rdf:value", "refinement"}))
        return _iri(node.req("rdf:value"), node.at("rdf:value")), node.d.get("refinement")
    return _iri(item, path), None


_PERMISSION_KEYS = frozenset({"target", "action", "constraint", "duty", "libshare:freeGrant"})
_DUTIES = {"compensate": "fee", "attribute": "attribution", "watermark": "watermark",
           "inform": "notice"}  # fmt: skip
_DEFAULTS = {"members": None, "tiers": None, "countries": None, "international": True,
             "valid_until": None, "attribution": None, "watermark": False,
             "notice": None}  # fmt: skip
_REQUIRED = {"patron_categories": v.PATRON, "purposes": v.PURPOSE, "valid_from": "dateTime gteq",
             "scope": v.SCOPE}  # fmt: skip


class _Rule:
    """What one permission says, before the permissions are checked against each other."""

    def __init__(self, value: Any, path: str, policy_target: bool) -> None:
        node = _Node(value, path, _PERMISSION_KEYS)
        if "target" in node.d:
            _iri(node.d["target"], node.at("target"))  # any asset: terms do not name resources
        elif not policy_target:
            raise InvalidInput(f"{path} has no target", hint="give it or the policy a target")
        iri, refinement = _action(node.req("action"), node.at("action"))
        if iri not in _ACTIONS:
            raise _cannot("action", v.compact(iri), node.at("action"))
        if refinement is not None:
            raise _cannot("refinement of action", v.compact(iri), node.at("action"))
        self.path, self.fee_path, self.waived = path, path, frozenset[str]()
        self.fee: Fee | None = None
        self.limits: list[tuple[Limit, str]] = []
        common: dict[str, Any] = {}
        for c in _constraints(node.d.get("constraint", []), node.at("constraint")):
            if _LEFT.get(_iri(c.req("leftOperand"), c.at("leftOperand"))) == v.COUNT:
                self.limits.append((_limit_from(c), c.path))
                continue
            term, op, right = _operands(c)
            where = c.at("rightOperand")
            if term in _SETS:
                field, value = _SETS[term], _set_value(term, op, right, where)
            elif term == v.INTERNATIONAL:
                if _lit(right, bool, where):  # "eq true" would mean international only
                    raise _cannot("value", "true", where, on=v.INTERNATIONAL)
                field, value = "international", False
            elif term == v.DATETIME:
                field = "valid_from" if op == "gteq" else "valid_until"
                value = _time(right, where)
            elif term == v.SCOPE:
                field, value = "scope", _enum(_SCOPES, right, where, "scope")
            else:
                raise _cannot("permission constraint", term, c.at("leftOperand"))
            if field in common:
                raise InvalidInput(f"{c.path} repeats the {field} constraint")
            common[field] = value
        self._duties(node, common)
        for field, label in _REQUIRED.items():
            if field not in common:
                raise InvalidInput(f"{path} has no {label} constraint", hint=_HINT)
        self.grant = Grant(_ACTIONS[iri], common.pop("scope"))
        self.common = {**_DEFAULTS, **common}
        mark = node.d.get("libshare:freeGrant")
        if mark is not None and _lit(mark, bool, node.at("libshare:freeGrant")) != (
            self.fee is None
        ):
            has = "has" if self.fee else "has no"
            flag = "true" if mark else "false"
            raise InvalidInput(f"{path} says libshare:freeGrant {flag} but {has} compensate duty")

    def _duties(self, node: _Node, common: dict[str, Any]) -> None:
        for j, item in enumerate(_many(node.d.get("duty", []))):
            d = _Node(item, f"{node.at('duty')}[{j}]", frozenset({"action", "constraint",
                                                                   "libshare:text"}))  # fmt: skip
            iri, refinement = _action(d.req("action"), d.at("action"))
            name = v.compact(iri).removeprefix("odrl:")
            field = _DUTIES.get(name)
            if field is None or (refinement is not None and field != "fee"):
                raise _cannot("duty action", v.compact(iri), d.at("action"))
            if field in common or (field == "fee" and self.fee is not None):
                raise InvalidInput(f"{d.path} repeats the {name} duty")
            extra = {"fee": "libshare:text", "watermark": "libshare:text"}.get(field, "constraint")
            if extra in d.d:
                raise _cannot("key", extra, d.at(extra), on=f"a {name} duty")
            if field == "fee":
                refs = _constraints(refinement or [], f"{d.at('action')}[0].refinement")
                if len(refs) != 1:
                    raise InvalidInput(f"{d.at('action')} must be refined by one payAmount")
                self.fee, self.fee_path = _fee(refs[0]), d.path
                for c in _constraints(d.d.get("constraint", []), d.at("constraint")):
                    term, _, right = _operands(c)
                    if term != v.CAMPAIGN_IN_FORCE:
                        raise _cannot("compensate constraint", term, c.at("leftOperand"))
                    where = c.at("rightOperand")
                    self.waived = frozenset(_lit(x, str, where) for x in _many(right))
            elif field == "watermark":
                common[field] = True
            else:
                common[field] = _lit(d.req("libshare:text"), str, d.at("libshare:text"))


_POLICY_KEYS = frozenset({
    "@context", "type", "uid", "profile", "assigner", "target", "permission",
    "libshare:homeCountry", "libshare:fee", "libshare:campaign", "libshare:inactiveLimit",
    "libshare:licenceId", "libshare:version", "libshare:licensor", "libshare:revokedAt",
})  # fmt: skip
_CAMPAIGN_KEYS = frozenset({"libshare:campaignId", "libshare:starts", "libshare:ends",
                            "libshare:feeWaived"})  # fmt: skip
_ODRL_CONTEXTS = (v.ODRL_CONTEXT, v.ODRL_CONTEXT.replace("http:", "https:"))


def _policy(policy: object) -> _Node:
    node = _Node(policy, "", _POLICY_KEYS)
    contexts = _many(node.req("@context"))
    if not any(c in _ODRL_CONTEXTS for c in contexts):
        raise InvalidInput(f"@context must include {v.ODRL_CONTEXT}", hint=_HINT)
    for i, c in enumerate(contexts):
        if isinstance(c, Mapping):
            for k, iri in c.items():  # a prefix we would read differently is refused
                if v.PREFIXES.get(k) != iri:
                    raise _cannot("context term", k, f"@context[{i}].{k}")
        elif c not in _ODRL_CONTEXTS:
            raise _cannot("context", c, f"@context[{i}]")
    kind = v.compact(_iri(node.req("type"), "type")).removeprefix("odrl:")
    if kind not in ("Offer", "Set"):
        raise _cannot("policy type", kind, "type")
    _iri(node.req("uid"), "uid")
    for i, p in enumerate(_many(node.req("profile"))):
        if _iri(p, "profile") != v.PROFILE:
            raise _cannot("profile", p, f"profile[{i}]" if isinstance(node.d["profile"], list)
                          else "profile")  # fmt: skip
    if kind == "Offer" or "assigner" in node.d:
        _iri(node.req("assigner"), "assigner")
    if "target" in node.d:
        _iri(node.d["target"], "target")
    return node


def _campaign(item: Any, path: str) -> Campaign:
    n = _Node(item, path, _CAMPAIGN_KEYS)
    return Campaign(
        _lit(n.req("libshare:campaignId"), str, n.at("libshare:campaignId")),
        _time(n.req("libshare:starts"), n.at("libshare:starts")),
        _time(n.req("libshare:ends"), n.at("libshare:ends")),
        _lit(n.req("libshare:feeWaived"), bool, n.at("libshare:feeWaived")),
    )


def terms_from_odrl(policy: Mapping[str, Any]) -> Terms:
    """Read terms from an ODRL policy of the libshare profile; refuse what it cannot express."""
    node = _policy(policy)
    items = _many(node.req("permission"))
    rules = [_Rule(p, f"permission[{i}]", "target" in node.d) for i, p in enumerate(items)]
    if not rules:
        raise InvalidInput("permission is empty", hint="an ODRL policy needs a permission")
    first, grants = rules[0].common, set[Grant]()
    for r in rules:
        for field, value in r.common.items():
            if value != first[field]:
                raise InvalidInput(
                    f"{r.path} differs from permission[0] in {field}",
                    hint="the libshare profile applies who, why, where, when and duties"
                    " to every permission alike",
                )
        if r.grant in grants:
            raise InvalidInput(f"{r.path} repeats the grant {r.grant}")
        grants.add(r.grant)
    fee = _fee(_Node(node.req("libshare:fee"), "libshare:fee", _CONSTRAINT_KEYS))
    campaigns = [
        _campaign(c, f"libshare:campaign[{i}]")
        for i, c in enumerate(_many(node.d.get("libshare:campaign", [])))
    ]
    waived = {c.id for c in campaigns if c.fee_waived}
    limits: dict[str, Limit] = {}
    placed: dict[str, set[Grant]] = {}
    for r in rules:
        if r.fee is not None and r.fee != fee:
            raise InvalidInput(f"{r.fee_path} charges {_show(r.fee)}, libshare:fee {_show(fee)}")
        if r.fee is not None and r.waived != waived:
            raise InvalidInput(
                f"{r.fee_path} waives the fee in campaigns {sorted(r.waived)}, but the"
                f" fee-waived campaigns are {sorted(waived)}"
            )
        for lim, path in r.limits:
            if limits.setdefault(lim.name, lim) != lim or r.grant in placed.get(lim.name, ()):
                raise InvalidInput(f"{path} redefines or repeats counter {lim.name}")
            placed.setdefault(lim.name, set()).add(r.grant)
    for i, item in enumerate(_many(node.d.get("libshare:inactiveLimit", []))):
        path = f"libshare:inactiveLimit[{i}]"
        lim = _limit_from(_Node(item, path, _CONSTRAINT_KEYS))
        if lim.name in limits:
            raise InvalidInput(f"{path} repeats counter {lim.name}")
        limits[lim.name], placed[lim.name] = lim, set()
    for name, lim in limits.items():
        want = {g for g in grants if lim.applies_to.matches(g.method, g.scope)}
        if placed[name] != want:
            on, counts = sorted(map(str, placed[name])), sorted(map(str, want))
            raise InvalidInput(
                f"counter {name} is on permissions {on} but counts {counts}",
                hint="put a count constraint on exactly the permissions whose grants it counts",
            )
    home = _set_value(v.SPATIAL, "eq", node.req("libshare:homeCountry"), "libshare:homeCountry")
    paid = {r.grant for r in rules if r.fee is not None}
    return Terms(
        grants=frozenset(grants), free_grants=frozenset(grants - paid),
        home_country=next(iter(home)), fee=fee, campaigns=tuple(campaigns),
        limits=tuple(limits.values()), **first,
    )  # fmt: skip


def licence_from_odrl(policy: Mapping[str, Any]) -> Licence:
    """Read one licence version written by :func:`licence_to_odrl`."""
    terms = terms_from_odrl(policy)
    n = _policy(policy)
    revoked = n.d.get("libshare:revokedAt")
    return Licence(
        licence_id=_lit(n.req("libshare:licenceId"), int, "libshare:licenceId"),
        version=_lit(n.req("libshare:version"), int, "libshare:version"),
        licensor=_lit(n.req("libshare:licensor"), str, "libshare:licensor"),
        terms=terms,
        revoked_at=None if revoked is None else _time(revoked, "libshare:revokedAt"),
    )
