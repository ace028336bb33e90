"""The access check: decide a share request, record it in the trail, then answer.

:meth:`AccessService.check` hands the request to one writer thread. The writer takes
every request waiting (up to ``max_batch``) and, in one database transaction, decides
each in arrival order — reading the resource, licence and member from the index, the
counters the licence needs, and calling the pure :func:`ledger.licence.evaluate` —
appends each decision to the supplying member's trail and increments its counters. Only
after that transaction commits does any caller get its answer (group commit): every
answer given is on disk and counted exactly once, and one fsync serves many requests.
Decisions within a batch see the counters of the decisions before them, so the result
is exactly that of deciding the requests one by one.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from ledger.errors import InvalidInput, LedgerError, NotFound, StorageError, StorageUnavailable
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
from ledger.sqlfast import BulkInsert, SelectIn
from ledger.store import (
    CounterEventRow,
    CounterRow,
    Database,
    DeliveryGrantRow,
    LicenceRow,
    LicenceVersionRow,
    MemberRow,
    ResourceRow,
)
from ledger.trail import Appender, Trail
from ledger.types import LeafHash

ENTRY_VERSION = 1

_log = logging.getLogger("libshare.access")

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
class ShareRequest:
    """A validated share request; ``patron`` is already a pseudonym, never a patron id."""

    resource_id: str
    requesting_member: str
    patron: str
    patron_category: PatronCategory
    purpose: Purpose
    method: Method
    scope: Scope
    destination_country: str
    campaign: str | None = None

    @classmethod
    def parse(
        cls,
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
    ) -> ShareRequest:
        """Build from plain strings, refusing unknown vocabulary with the allowed values."""
        for name, value in (
            ("resource_id", resource_id),
            ("requesting_member", requesting_member),
            ("campaign", campaign or ""),
        ):
            if not value.isprintable():
                raise InvalidInput(
                    f"{name} holds control or unpaired surrogate characters",
                    hint="send printable UTF-8 text",
                )
        country = destination_country
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            raise InvalidInput(
                f"destination_country {country!r} is not an ISO 3166-1 alpha-2 code",
                hint="e.g. CN, DE, US",
            )
        return cls(
            resource_id=resource_id,
            requesting_member=requesting_member,
            patron=patron,
            patron_category=parse_enum(PatronCategory, patron_category, "patron_category"),
            purpose=parse_enum(Purpose, purpose, "purpose"),
            method=parse_enum(Method, method, "method"),
            scope=parse_enum(Scope, scope, "scope"),
            destination_country=country.upper(),
            campaign=campaign or None,
        )


@dataclass(frozen=True)
class CheckResult:
    """A recorded decision: the decision and where it sits in the supplier's trail."""

    decision: Decision
    supplier: str  # library id of the resource's owner, whose trail holds the entry
    decision_id: str
    trail_seq: int
    leaf_hash: LeafHash
    entry: bytes  # the canonical JSON recorded
    at: datetime


def counter_key_text(key: CounterKey) -> str:
    """The storage key of a counter."""
    return f"{key.limit}|{key.scope}|{key.subject}|{key.window_key}"


class _Callback:
    """Settles a job by calling a function (from the writer thread) instead of a Future.

    For callers on an event loop, which hand the outcome to their loop themselves: a
    ``concurrent.futures.Future`` (a lock and a condition each) wrapped in an asyncio
    future costs more than the decision.
    """

    __slots__ = ("_done", "fn")

    def __init__(self, fn: Callable[[CheckResult | BaseException], None]) -> None:
        self.fn = fn
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: CheckResult) -> None:
        self._settle(result)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(exc)

    def _settle(self, outcome: CheckResult | BaseException) -> None:
        self._done = True
        try:
            self.fn(outcome)
        except Exception:  # the caller's problem; the writer goes on
            _log.exception("a decision's callback failed")


@dataclass
class _Job:
    request: ShareRequest
    grant_to: str | None = None  # API key id allowed to fetch the content once, if allowed
    future: Future[CheckResult] | _Callback = field(default_factory=Future)


@dataclass
class _Batch:
    """What one group-commit transaction has staged so far."""

    session: Session
    appenders: dict[str, Appender] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # fixed windows, new values
    events: list[dict[str, Any]] = field(default_factory=list)  # counter_event rows
    grants: list[tuple[str, str, str, datetime]] = field(default_factory=list)  # _INSERT_GRANTS


@dataclass(frozen=True, slots=True)
class _Plan:
    """A request ready to decide: the licence it falls under and the counters it reads."""

    request: Request
    supplier: str  # library id of the resource's owner
    licence: Licence | None
    member: bool  # whether the requesting library is a consortium member
    keys: tuple[CounterKey, ...]


_SELECT_COUNTERS = SelectIn(CounterRow.__table__, ("key", "value"), "key")  # type: ignore[attr-defined]
_UPSERT_COUNTERS = BulkInsert(
    CounterRow.__table__,  # type: ignore[attr-defined]
    ("key", "value"),
    upsert_on=("key",),
    update=("value",),
)

_INSERT_GRANTS = BulkInsert(
    DeliveryGrantRow.__table__,  # type: ignore[attr-defined]
    ("decision_id", "resource_id", "key_id", "expires_at"),
)

COUNTER_CACHE_MAX = 200_000
"""Fixed-window counter values kept in memory between batches, at most."""


# -- entries other than decisions (federation answers and receipts) ---------------------


@dataclass(frozen=True)
class RecordedEntry:
    """An entry other than a decision, recorded in ``member``'s trail at ``seq``."""

    member: str
    seq: int
    leaf_hash: LeafHash
    entry: bytes  # the canonical JSON recorded
    at: datetime

    @property
    def entry_id(self) -> str:
        """``<member>:<seq>``, named like decision ids."""
        return f"{self.member}:{self.seq}"


@dataclass
class _Record:
    member: str
    kind: str
    fields: dict[str, str | int | list[str] | None]
    future: Future[RecordedEntry] = field(default_factory=Future)


_RESERVED = frozenset(("v", "kind", "at"))


# -- the access service -------------------------------------------------------------------


class AccessService:
    """Decides share requests for the members whose trails this instance keeps."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        max_batch: int = 512,
        grant_validity: timedelta = timedelta(minutes=5),
    ) -> None:
        self.db = db
        self.clock = clock
        self.max_batch = max_batch
        self.grant_validity = grant_validity
        self._trails: dict[str, Trail] = {}
        self._trails_lock = threading.Lock()
        self._index = _IndexCache(db)
        self._counters: dict[str, int] = {}  # committed fixed-window counter values
        self._queue: queue.SimpleQueue[_Job | _Record | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False

    def trail(self, library_id: str) -> Trail:
        """The trail of ``library_id`` (created empty on first use)."""
        with self._trails_lock:
            if library_id not in self._trails:
                self._trails[library_id] = Trail(self.db, library_id)
            return self._trails[library_id]

    def check(self, **fields: str | None) -> CheckResult:
        """Decide one request (fields as :meth:`ShareRequest.parse` takes them), recorded.

        Raises :class:`NotFound` for a resource the index does not know; nothing is
        recorded then.
        """
        return self.check_request(ShareRequest.parse(**fields))  # type: ignore[arg-type]

    def check_request(
        self, request: ShareRequest, *, grant_to: str | None = None, timeout_s: float = 30.0
    ) -> CheckResult:
        """Decide a parsed request; returns once the decision is committed.

        With ``grant_to`` (an API key id), an allowed decision also records a one-time
        permission for that key to fetch the content within ``grant_validity``.
        """
        return self.submit(request, grant_to=grant_to).result(timeout=timeout_s)

    def submit(self, request: ShareRequest, *, grant_to: str | None = None) -> Future[CheckResult]:
        """Queue a parsed request; the future resolves once its decision is committed."""
        future: Future[CheckResult] = Future()
        self._start_writer()
        self._queue.put(_Job(request, grant_to, future))
        return future

    def submit_to(
        self,
        request: ShareRequest,
        on_done: Callable[[CheckResult | BaseException], None],
        *,
        grant_to: str | None = None,
    ) -> None:
        """Queue a parsed request; ``on_done`` gets its result (or error) once committed.

        ``on_done`` runs on the writer thread and must only hand the outcome on (e.g. with
        ``loop.call_soon_threadsafe``).
        """
        job = _Job(request, grant_to, _Callback(on_done))
        self._start_writer()
        self._queue.put(job)

    def close(self) -> None:
        """Stop the writer thread after it has finished what it holds."""
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=10)
            self._writer = None

    # -- the writer --------------------------------------------------------------------

    def _start_writer(self) -> None:
        if self._writer is not None:
            return
        with self._writer_lock:
            if self._closed:
                raise StorageError("the access service is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name="libshare-decision-writer", daemon=True
                )
                self._writer.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self._process(jobs)
            if stop:
                return

    def _process(self, jobs: list[_Job | _Record]) -> None:
        results: list[tuple[_Job | _Record, Any]] = []  # (job, its result or exception)
        appenders: dict[str, Appender] = {}
        try:
            with self.db.session() as session:
                batch = _Batch(session, appenders)
                # Times are taken in arrival order, so the trail's entries keep that order.
                prepared = [
                    self.clock() if isinstance(job, _Record) else self._prepare(batch, job)
                    for job in jobs
                ]
                self._prefetch_counters(batch, prepared)
                for job, plan in zip(jobs, prepared, strict=True):
                    if isinstance(plan, LedgerError):  # this request only: nothing staged
                        results.append((job, plan))
                        continue
                    try:
                        if isinstance(job, _Record):
                            assert isinstance(plan, datetime)
                            results.append((job, self._append_record(batch, job, plan)))
                        else:
                            assert isinstance(plan, _Plan)
                            results.append((job, self._decide(batch, job, plan)))
                    except LedgerError as exc:  # this request only: nothing was staged
                        results.append((job, exc))
                for appender in appenders.values():
                    appender.write()
                self._write_counters(batch)
            for appender in appenders.values():  # committed: the frontiers move on
                appender.trail.promote(appender)
        except BaseException as exc:  # the transaction failed: nobody's decision counts
            for appender in appenders.values():  # its commit may have landed: re-read
                appender.trail.reload()
            self._counters.clear()
            self._index._seen.clear()  # a failed refresh must not pass for a done one
            unavailable = isinstance(exc, StorageUnavailable)  # 503 with Retry-After
            failure = (StorageUnavailable if unavailable else StorageError)(
                f"the decision could not be recorded ({type(exc).__name__}: {exc})",
                hint="retry the request; nothing was recorded",
            )
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(failure)
            return
        finally:
            for appender in appenders.values():
                appender.trail.lock.release()
        self._counters.update(batch.counters)
        for job, outcome in results:
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _prepare(self, batch: _Batch, job: _Job) -> _Plan | LedgerError:
        """What deciding ``job`` needs, read before any decision of the batch is made."""
        req = job.request
        at = self.clock()
        index = self._index.refresh(batch.session)
        resource = index.resources.get(req.resource_id)
        if resource is None:
            return NotFound(
                f"resource {req.resource_id} is not registered",
                hint="check the id, or wait for the index to catch up with the chain",
            )
        supplier, licence_id = resource
        try:
            licence = self._index.licence(batch.session, licence_id, at)
        except LedgerError as exc:
            return exc
        tier = index.tiers.get(req.requesting_member)
        request = Request(
            req.resource_id, None, req.requesting_member, -1 if tier is None else tier,
            req.patron, req.patron_category, req.purpose, req.method, req.scope,
            req.destination_country, req.campaign, at,
        )  # fmt: skip
        keys = () if tier is None else counters_needed(licence, request)
        return _Plan(request, supplier, licence, tier is not None, keys)

    def _decide(self, batch: _Batch, job: _Job, plan: _Plan) -> CheckResult:
        req, request, licence, supplier = job.request, plan.request, plan.licence, plan.supplier
        at = request.at
        if not plan.member:
            # The profile's member filters assume a consortium member; a stranger is
            # refused before any term is read.
            decision = Decision(
                Outcome.deny, Reason.member_not_allowed, "consortium",
                f"{req.requesting_member} is not a consortium member",
                licence.licence_id if licence else None, licence.version if licence else None,
            )  # fmt: skip
        else:
            decision = evaluate(licence, request, self._read_counters(batch, plan.keys))
        appender = self._appender(batch, supplier)
        decision_id = f"{supplier}:{appender.size}"
        entry = _entry(decision_id, supplier, request, decision)
        seq, leaf = appender.append(entry)
        if decision.outcome is Outcome.allow:
            if job.grant_to is not None:
                batch.grants.append(
                    (decision_id, req.resource_id, job.grant_to, at + self.grant_validity)
                )
            for key in decision.increments:
                text = counter_key_text(key)
                if key.since is not None:
                    batch.events.append({"key": text, "at": at})
                else:
                    batch.counters[text] = self._counter(batch, text) + 1
        return CheckResult(decision, supplier, decision_id, seq, leaf, entry, at)

    # -- counters ------------------------------------------------------------------------

    def _prefetch_counters(
        self, batch: _Batch, plans: list[_Plan | LedgerError | datetime]
    ) -> None:
        """Read every fixed-window counter the batch needs and the cache lacks, in one query."""
        if len(self._counters) > COUNTER_CACHE_MAX:
            self._counters.clear()  # a bound on memory; what is needed is re-read below
        wanted = {
            counter_key_text(key)
            for plan in plans
            if isinstance(plan, _Plan)
            for key in plan.keys
            if key.since is None
        }
        missing = [text for text in wanted if text not in self._counters]
        if missing:
            rows = _SELECT_COUNTERS.run(batch.session.connection(), missing)
            found: dict[str, int] = {key: value for key, value in rows}
            for text in missing:
                self._counters[text] = int(found.get(text, 0))

    def _counter(self, batch: _Batch, text: str) -> int:
        if text in batch.counters:
            return batch.counters[text]
        if text not in self._counters:
            table = CounterRow.__table__  # type: ignore[attr-defined]
            value = (
                batch.session.connection()
                .execute(select(table.c.value).where(table.c.key == text))
                .scalar()
            )
            self._counters[text] = int(value or 0)
        return self._counters[text]

    def _read_counters(
        self, batch: _Batch, keys: tuple[CounterKey, ...]
    ) -> Mapping[CounterKey, int]:
        counts: dict[CounterKey, int] = {}
        for key in keys:
            text = counter_key_text(key)
            if key.since is None:
                counts[key] = self._counter(batch, text)
                continue
            # A rolling window counts the increments made at or after ``since``.
            since = key.since
            stmt = select(func.count()).where(
                CounterEventRow.key == text, col(CounterEventRow.at) >= since
            )
            staged = sum(1 for e in batch.events if e["key"] == text and e["at"] >= since)
            counts[key] = int(batch.session.exec(stmt).one()) + staged
        return counts

    def _write_counters(self, batch: _Batch) -> None:
        conn = batch.session.connection()
        _UPSERT_COUNTERS.run(conn, list(batch.counters.items()))
        if batch.events:
            conn.execute(insert(CounterEventRow.__table__), batch.events)  # type: ignore[attr-defined]
        _INSERT_GRANTS.run(conn, batch.grants)

    # -- entries other than decisions (federation answers and receipts) -----------------

    def record(
        self, member: str, kind: str, fields: Mapping[str, str | int | list[str] | None]
    ) -> Future[RecordedEntry]:
        """Queue an entry that is not a decision for ``member``'s trail.

        The entry is ``{"v", "kind", "at", **fields}`` as canonical JSON, appended by the
        decision writer in its group commits, so each trail keeps a single writer and the
        entry is anchored and verified like any other. The future resolves once it is
        committed. ``fields`` hold no personal data (pseudonyms only) and do not use the
        keys ``v``, ``kind`` and ``at`` (a decision entry is the one without ``kind``).
        """
        clash = sorted(_RESERVED & set(fields))
        if clash or not kind or not kind.isidentifier():
            raise InvalidInput(
                f"a {kind!r} entry cannot set {', '.join(clash) or 'that kind'}",
                hint="name the kind as an identifier; v, kind and at are reserved",
            )
        job = _Record(member, kind, dict(fields))
        self._start_writer()
        self._queue.put(job)
        return job.future

    def _appender(self, batch: _Batch, member: str) -> Appender:
        """The batch's appender to ``member``'s trail, begun (and the trail locked) once."""
        appender = batch.appenders.get(member)
        if appender is None:
            trail = self.trail(member)
            trail.lock.acquire()  # released by _process once the batch is over
            try:
                appender = trail.begin(batch.session)
            except BaseException:
                trail.lock.release()
                raise
            batch.appenders[member] = appender
        return appender

    def _append_record(self, batch: _Batch, job: _Record, at: datetime) -> RecordedEntry:
        appender = self._appender(batch, job.member)
        body = {**job.fields, "v": ENTRY_VERSION, "kind": job.kind, "at": at.isoformat()}
        entry = canonical_entry(body)
        seq, leaf = appender.append(entry)
        return RecordedEntry(job.member, seq, leaf, entry, at)


class _IndexCache:
    """The index rows the hot path needs, cached until the indexer applies new events."""

    @dataclass
    class View:
        resources: dict[str, tuple[str, int]]  # resource id -> (owner library id, licence)
        tiers: dict[str, int]  # library id -> tier

    def __init__(self, db: Database) -> None:
        self.db = db
        self._seen: dict[str, int] = {}
        self._owners: dict[str, str] = {}  # account -> library id
        self._view = _IndexCache.View({}, {})
        self._licences: dict[int, Licence | None] = {}

    def _changed(self, kind: str) -> bool:
        generation = self.db.generations[kind]
        if self._seen.get(kind) == generation:
            return False
        self._seen[kind] = generation
        return True

    def refresh(self, session: Session) -> _IndexCache.View:
        """The cached view, reloading only the kinds of rows the indexer changed."""
        members_changed = self._changed("members")
        if members_changed:
            members = session.exec(select(MemberRow)).all()
            self._owners = {m.account: m.library_id for m in members}
            self._view.tiers = {m.library_id: m.tier for m in members}
        if self._changed("resources") or members_changed:
            table = ResourceRow.__table__  # type: ignore[attr-defined]
            rows = session.connection().execute(
                select(table.c.id, table.c.owner, table.c.licence_id)
            )  # Core rows, not ORM objects: the whole table loads at start-up
            self._view.resources = {
                rid: (self._owners[owner], licence_id)
                for rid, owner, licence_id in rows
                if owner in self._owners
            }
        if self._changed("licences"):
            self._licences = {}
        return self._view

    def licence(self, session: Session, licence_id: int, at: datetime) -> Licence | None:
        if licence_id == 0:
            return None
        if licence_id not in self._licences:
            self._licences[licence_id] = self._load(session, licence_id, at)
        return self._licences[licence_id]

    @staticmethod
    def _load(session: Session, licence_id: int, at: datetime) -> Licence | None:
        row = session.get(LicenceRow, licence_id)
        if row is None:
            return None
        version = session.get(LicenceVersionRow, (licence_id, row.latest_version))
        if version is None:
            return None
        revoked_at = None
        if row.revoked_at is not None:
            # The index holds the revocation, so it is in force for every check from now
            # on, even if the block's timestamp runs ahead of this server's clock.
            revoked_at = min(_aware(row.revoked_at), at)
        return Licence(
            licence_id=licence_id,
            version=row.latest_version,
            licensor=row.licensor,
            terms=terms_from_json(json.loads(version.terms_json)),
            revoked_at=revoked_at,
        )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite drops the zone; the index stores UTC


def canonical_entry(entry: Mapping[str, str | int | list[str] | None]) -> bytes:
    """RFC 8785 canonical JSON of a trail entry, fast.

    For an object whose keys are ASCII and whose values are strings, integers, null and
    lists of strings — all a trail entry holds — RFC 8785 is exactly Python's JSON with
    sorted keys, no spaces, and UTF-8 rather than ``\\u`` escapes: ECMAScript escapes
    the same characters with the same short forms and lower-case hex. A test holds this
    equal to the reference implementation.
    """
    return _CANONICAL.encode(entry).encode()


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""One encoder for every entry: ``json.dumps`` with options builds a new one per call."""


def _entry(decision_id: str, supplier: str, request: Request, decision: Decision) -> bytes:
    """The trail entry: the decision as RFC 8785 canonical JSON, no personal data."""
    fee = decision.fee
    return canonical_entry(
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
