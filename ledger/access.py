"""The access check: decide a share request, record it in the trail, then answer.

:meth:`AccessService.check` reads the resource, its licence and the requesting member
from the SQL index, reads the counters the licence needs, calls the pure
:func:`ledger.licence.evaluate`, and appends the decision to the supplying member's
trail in the same transaction that increments the counters. Only after that commit is
the decision returned, so every answer given is on disk and counted exactly once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

import rfc8785
from sqlalchemy import func
from sqlmodel import Session, col, select

from ledger.errors import InvalidInput, NotFound
from ledger.licence import (
    CounterKey,
    Decision,
    Licence,
    Method,
    Outcome,
    PatronCategory,
    Purpose,
    Reason,
    Request,
    Scope,
    counters_needed,
    evaluate,
)
from ledger.licence_json import terms_from_json
from ledger.store import (
    CounterEventRow,
    CounterRow,
    Database,
    LicenceRow,
    LicenceVersionRow,
    MemberRow,
    ResourceRow,
)
from ledger.trail import Trail
from ledger.types import LeafHash

ENTRY_VERSION = 1

E = TypeVar("E", bound=StrEnum)


def parse_enum(kind: type[E], value: str, field: str) -> E:
    """``value`` as a member of ``kind``, or an InvalidInput naming the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(
            f"{field} {value!r} is not known", hint=f"use one of: {allowed}"
        ) from None


@dataclass(frozen=True)
class CheckResult:
    """A recorded decision: the decision and where it sits in the supplier's trail."""

    decision: Decision
    supplier: str  # library id of the resource's owner, whose trail holds the entry
    decision_id: str
    trail_seq: int
    leaf_hash: LeafHash
    entry: bytes  # the canonical JSON recorded


def counter_key_text(key: CounterKey) -> str:
    """The storage key of a counter (rolling windows are counted by time elsewhere)."""
    return f"{key.limit}|{key.scope}|{key.subject}|{key.window_key}"


class AccessService:
    """Decides share requests for the members whose trails this instance keeps."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._trails: dict[str, Trail] = {}
        self._licences: dict[tuple[int, int], Licence] = {}
        self._lock = threading.Lock()

    def trail(self, library_id: str) -> Trail:
        """The trail of ``library_id`` (created empty on first use)."""
        with self._lock:
            if library_id not in self._trails:
                self._trails[library_id] = Trail(self.db, library_id)
            return self._trails[library_id]

    def check(
        self,
        *,
        resource_id: str,
        requesting_member: str,
        patron: str,
        patron_category: str,
        purpose: str,
        method: str,
        scope: str,
        destination_country: str,
        campaign: str | None = None,
    ) -> CheckResult:
        """Decide one request, record it, and return the recorded decision.

        ``patron`` is already a pseudonym; the patron's own id never reaches this layer.
        Raises :class:`NotFound` for a resource the index does not know.
        """
        at = self.clock()
        with self.db.session() as session:
            resource = session.get(ResourceRow, resource_id)
            if resource is None:
                raise NotFound(
                    f"resource {resource_id} is not registered",
                    hint="check the id, or wait for the index to catch up with the chain",
                )
            supplier = session.exec(
                select(MemberRow).where(MemberRow.account == resource.owner)
            ).one()
            requester = session.exec(
                select(MemberRow).where(MemberRow.library_id == requesting_member)
            ).first()
            licence = self._licence(session, resource.licence_id, at)
        request = Request(
            resource_id=resource_id,
            title_id=None,
            requesting_member=requesting_member,
            requesting_tier=requester.tier if requester else -1,
            patron=patron,
            patron_category=parse_enum(PatronCategory, patron_category, "patron_category"),
            purpose=parse_enum(Purpose, purpose, "purpose"),
            method=parse_enum(Method, method, "method"),
            scope=parse_enum(Scope, scope, "scope"),
            destination_country=destination_country,
            campaign=campaign,
            at=at,
        )
        trail = self.trail(supplier.library_id)
        with trail.appending() as appender:
            decision = self._decide(appender.session, licence, request, requester is not None)
            decision_id = f"{supplier.library_id}:{appender.size}"
            entry = _entry(decision_id, supplier.library_id, request, decision)
            seq, leaf = appender.append(entry)
            if decision.outcome is Outcome.allow:
                for key in decision.increments:
                    _increment(appender.session, key, at)
        return CheckResult(decision, supplier.library_id, decision_id, seq, leaf, entry)

    def _decide(
        self, session: Session, licence: Licence | None, request: Request, is_member: bool
    ) -> Decision:
        if not is_member:
            # The profile's member filters assume a consortium member; a stranger is
            # refused before any term is read.
            return Decision(
                Outcome.deny,
                Reason.member_not_allowed,
                "consortium",
                f"{request.requesting_member} is not a consortium member",
                licence.licence_id if licence else None,
                licence.version if licence else None,
            )
        keys = counters_needed(licence, request)
        counts = _read_counters(session, keys)
        return evaluate(licence, request, counts)

    def _licence(self, session: Session, licence_id: int, at: datetime) -> Licence | None:
        if licence_id == 0:
            return None
        row = session.get(LicenceRow, licence_id)
        if row is None:
            return None
        revoked_at = None
        if row.revoked_at is not None:
            # The index holds the revocation, so it is in force for every check from now
            # on, even if the block's timestamp runs ahead of this server's clock.
            revoked_at = min(_aware(row.revoked_at), at)
        cached = self._licences.get((licence_id, row.latest_version))
        if cached is None or (cached.revoked_at is None) != (revoked_at is None):
            version = session.get(LicenceVersionRow, (licence_id, row.latest_version))
            if version is None:
                return None
            terms = terms_from_json(json.loads(version.terms_json))
            cached = Licence(
                licence_id=licence_id,
                version=row.latest_version,
                licensor=row.licensor,
                terms=terms,
                revoked_at=revoked_at,
            )
            self._licences[(licence_id, row.latest_version)] = cached
        return cached


def _aware(value: datetime) -> datetime:
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite drops the zone; the index stores UTC


def _read_counters(session: Session, keys: tuple[CounterKey, ...]) -> Mapping[CounterKey, int]:
    counts: dict[CounterKey, int] = {}
    fixed = {counter_key_text(k): k for k in keys if k.since is None}
    if fixed:
        rows = session.exec(select(CounterRow).where(col(CounterRow.key).in_(list(fixed))))
        counts.update({fixed[row.key]: row.value for row in rows})
    for key in keys:
        if key.since is not None:
            # A rolling window counts the increments made at or after ``since``.
            stmt = select(func.count()).where(
                CounterEventRow.key == counter_key_text(key), CounterEventRow.at >= key.since
            )
            counts[key] = int(session.exec(stmt).one())
    return counts


def _increment(session: Session, key: CounterKey, at: datetime) -> None:
    text = counter_key_text(key)
    if key.since is not None:
        session.add(CounterEventRow(key=text, at=at))
        return
    row = session.get(CounterRow, text)
    if row is None:
        session.add(CounterRow(key=text, value=1))
    else:
        row.value += 1
        session.add(row)


def _entry(decision_id: str, supplier: str, request: Request, decision: Decision) -> bytes:
    """The trail entry: the decision as RFC 8785 canonical JSON, no personal data."""
    fee = decision.fee
    return rfc8785.dumps(
        {
            "v": ENTRY_VERSION,
            "decision_id": decision_id,
            "at": request.at.isoformat(),
            "supplier": supplier,
            "resource_id": request.resource_id,
            "requesting_member": request.requesting_member,
            "patron": request.patron,
            "patron_category": str(request.patron_category),
            "purpose": str(request.purpose),
            "method": str(request.method),
            "scope": str(request.scope),
            "destination_country": request.destination_country,
            "campaign": request.campaign,
            "decision": str(decision.outcome),
            "reason": str(decision.reason),
            "term": decision.term,
            "licence_id": decision.licence_id,
            "licence_version": decision.licence_version,
            "fee_minor": fee.amount_minor if fee else None,
            "currency": fee.currency if fee else None,
            "obligations": list(decision.obligations),
        }
    )
