"""The durable outbox: every chain write is a row in SQL before it is a transaction.

A write is enqueued under an idempotency key, then moved through these states, each
change committed to the database before the next side effect on the chain::

    queued ──sign──▶ signed ──send──▶ sent ──receipt status 1, confirmations──▶ confirmed
      │                │                │
      │                │                └── receipt status 0 ──▶ failed (custom error)
      │                └── its nonce was taken by another transaction ──▶ failed
      └── the eth_call before signing reverts (no nonce spent) ──▶ failed (custom error)

Crash safety. The signed bytes, their hash and nonce are committed (``signed``) before the
first send, and a ``signed`` or ``sent`` row is only ever re-sent with those same bytes.
One signed transaction can be mined at most once, so re-sending after a crash, a timeout
or a dropped transaction never writes twice; a crash before the commit leaves the row
``queued`` with nothing on the chain. The ``queued → signed`` change is a compare-and-set,
so two workers cannot sign one row with two nonces. An unreachable node changes no state:
the row's attempts go up, it waits out the backoff, and the queue drains when the node
answers again.

Ordering. Per sender, rows are signed in enqueue order and a row is signed only when the
sender's previous row is mined or failed, so its ``eth_call`` sees the state it will run
on and most reverts are caught before a nonce is spent. Nonces come from
``max(node's pending nonce, highest nonce this outbox assigned + 1)``. A failed row never
blocks the next one; a signed row is never abandoned while its nonce is unused (it is
retried with backoff), so the outbox leaves no nonce gaps.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, select
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from ledger.chain import Chain
from ledger.errors import (
    ChainError,
    ChainUnavailable,
    ConfigError,
    Conflict,
    ContractReverted,
    InvalidInput,
    LedgerError,
    NotFound,
)
from ledger.store import BigInt, Database


class OutboxState(StrEnum):
    QUEUED = "queued"
    SIGNED = "signed"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"


PENDING = (OutboxState.QUEUED, OutboxState.SIGNED, OutboxState.SENT)
_SCAN_LIMIT = 10_000  # pending rows looked at per pass
_MAX_PASSES = 10_000  # drain stops after this many passes even if the clock stands still


class OutboxRow(SQLModel, table=True):
    """One chain write and how far it got. Datetimes are UTC."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    kind: str = Field(index=True)  # what it does, e.g. "anchor"
    idempotency_key: str = Field(unique=True)  # e.g. "anchor:<member>:<from>:<to>"
    sender: str = Field(index=True)  # checksum address that signs it
    target: str  # contract address
    calldata: str  # 0x-hex
    state: str = Field(default=OutboxState.QUEUED, index=True)
    nonce: int | None = Field(default=None, sa_type=BigInt)
    raw_tx: str | None = None  # 0x-hex signed transaction, fixed once signed
    tx_hash: str | None = None  # 0x-hex
    attempts: int = Field(default=0, sa_type=BigInt)  # attempts that failed and were rescheduled
    next_attempt_at: datetime
    sent_at: datetime | None = None  # last time the raw transaction went to the node
    receipt_block: int | None = Field(default=None, sa_type=BigInt)
    last_error: str | None = None
    error_name: str | None = None  # the contract's custom error, when it reverted
    error_args: str | None = None  # its arguments as JSON
    created_at: datetime
    updated_at: datetime


@dataclass
class PassReport:
    """What one :meth:`Outbox.process` pass (or a whole :meth:`Outbox.drain`) did."""

    signed: int = 0
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    retried: int = 0  # rows rescheduled after an unreachable node or a refusal
    unavailable: bool = False  # the node could not be reached; the pass stopped there
    remaining: int = 0  # rows still pending afterwards (set by drain)

    @property
    def progressed(self) -> bool:
        return bool(self.signed or self.sent or self.confirmed or self.failed)

    def add(self, other: PassReport) -> None:
        for f in fields(self):
            if f.name not in ("unavailable", "remaining"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        if other.unavailable or other.progressed:  # the latest word from the node counts
            self.unavailable = other.unavailable


class Outbox:
    """Queue chain writes durably and push them through to confirmed receipts.

    ``signer_for`` gives the key of a sender address; ``clock`` returns the time (UTC);
    ``confirmations`` is how many blocks must follow a receipt's block before it counts;
    ``backoff`` the delays in seconds after each failed attempt (the last one repeats);
    ``resend_after_s`` how long a sent transaction may lack a receipt before it is sent
    again; ``sleep`` is what :meth:`drain` waits with.
    """

    def __init__(
        self,
        db: Database,
        chain: Chain,
        signer_for: Callable[[str], LocalAccount],
        clock: Callable[[], datetime],
        *,
        confirmations: int = 0,
        backoff: Sequence[float] = (1, 2, 5, 10, 30),
        resend_after_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if confirmations < 0 or not backoff or min(backoff) < 0:
            raise InvalidInput(
                f"outbox needs confirmations >= 0 and non-negative backoff delays, got "
                f"{confirmations} and {tuple(backoff)}"
            )
        self.db = db
        self.chain = chain
        self.confirmations = confirmations
        self.backoff = tuple(backoff)
        self.resend_after = timedelta(seconds=resend_after_s)
        self._signer_for = signer_for
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    # -- queueing and reading -------------------------------------------------------

    def enqueue(self, kind: str, key: str, sender: str, fn: ContractFunction) -> int:
        """Queue ``fn`` to be sent by ``sender``; return the row id.

        ``key`` makes it idempotent: a second enqueue with the same key returns the
        existing row (whatever its state) and changes nothing. Reusing a key for a
        different write is a :class:`Conflict`.
        """
        sender = Web3.to_checksum_address(sender)
        target = Web3.to_checksum_address(str(fn.address))
        calldata = str(fn._encode_transaction_data())  # web3 has no public encoder here
        now = self._now()
        row = OutboxRow(
            kind=kind,
            idempotency_key=key,
            sender=sender,
            target=target,
            calldata=calldata,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        existing = self._by_key(key)
        if existing is None:
            try:
                with self.db.session() as session:
                    session.add(row)
                    session.flush()
                    assert row.id is not None
                    return row.id
            except IntegrityError:  # another writer enqueued the same key meanwhile
                existing = self._by_key(key)
        assert existing is not None and existing.id is not None
        if (existing.sender, existing.target, existing.calldata) != (sender, target, calldata):
            raise Conflict(
                f"outbox key {key!r} is already used by row {existing.id} for a different write",
                hint="make the key name everything that makes the write distinct",
            )
        return existing.id

    def get(self, row_id: int) -> OutboxRow:
        """The row ``row_id``; :class:`NotFound` if there is none."""
        with self.db.session() as session:
            row = session.get(OutboxRow, row_id)
        if row is None:
            raise NotFound(f"no outbox row {row_id}")
        return row

    def receipt(self, row_id: int) -> TxReceipt | None:
        """The receipt of row ``row_id``'s transaction, once it is signed and mined."""
        row = self.get(row_id)
        return None if row.tx_hash is None else self.chain.receipt(_unhex(row.tx_hash))

    def pending(self) -> list[OutboxRow]:
        """Rows not yet confirmed or failed, in enqueue order (the first 10 000)."""
        with self.db.session() as session:
            stmt = (
                select(OutboxRow)
                .where(col(OutboxRow.state).in_(PENDING))
                .order_by(col(OutboxRow.id))
                .limit(_SCAN_LIMIT)
            )
            return list(session.exec(stmt))

    def last(self, kind: str, sender: str) -> OutboxRow | None:
        """The newest row of ``kind`` from ``sender`` that has not failed."""
        stmt = (
            select(OutboxRow)
            .where(OutboxRow.kind == kind, OutboxRow.sender == Web3.to_checksum_address(sender))
            .where(OutboxRow.state != OutboxState.FAILED)
            .order_by(col(OutboxRow.id).desc())
        )
        with self.db.session() as session:
            return session.exec(stmt.limit(1)).first()

    def stats(self) -> dict[str, int]:
        """How many rows are in each state."""
        return counts_by_state(self.db)

    # -- working the queue ----------------------------------------------------------

    def process(self, max_items: int = 100) -> PassReport:
        """One bounded pass over the pending rows: at most ``max_items`` are worked on.

        Stops at the first :class:`ChainUnavailable`; that row keeps its state and is
        rescheduled by the backoff.
        """
        report = PassReport()
        with self._lock:
            now = self._now()
            held: set[str] = set()  # senders whose next row must wait for an earlier one
            worked = 0
            for row in self.pending():
                if worked >= max_items:
                    break
                if row.sender in held:
                    continue
                if row.next_attempt_at <= now:
                    worked += 1
                    try:
                        self._step(row, now, report)
                    except ChainUnavailable as exc:
                        self._retry_later(row, exc, now, report)
                        report.unavailable = True
                        return report
                if _in_flight(row):
                    held.add(row.sender)
        return report

    def drain(self, timeout_s: float, *, poll_s: float = 0.5) -> PassReport:
        """Process until nothing is pending or ``timeout_s`` has passed; return the totals."""
        total = PassReport()
        deadline = self._now() + timedelta(seconds=timeout_s)
        for _ in range(_MAX_PASSES):
            report = self.process()
            total.add(report)
            pending = self.pending()
            total.remaining = len(pending)
            now = self._now()
            if not pending or now >= deadline:
                break
            if not report.progressed:  # wait for the next row due, a receipt, or the end
                due = min(row.next_attempt_at for row in pending)
                wake = min(max(due, now + timedelta(seconds=poll_s)), deadline)
                self._sleep((wake - now).total_seconds())
        return total

    # -- one row ----------------------------------------------------------------------

    def _step(self, row: OutboxRow, now: datetime, report: PassReport) -> None:
        if row.state == OutboxState.QUEUED and not self._sign(row, now, report):
            return
        if row.state == OutboxState.SIGNED and not self._send(row, now, report):
            return
        if row.state == OutboxState.SENT:
            self._check(row, now, report)

    def _sign(self, row: OutboxRow, now: datetime, report: PassReport) -> bool:
        try:
            signer = self._signer_for(row.sender)
            if signer.address != row.sender:
                raise ConfigError(f"the key given for {row.sender} is {signer.address}'s")
        except LedgerError as exc:  # no (right) key for it yet: keep it queued
            return self._retry_later(row, exc, now, report)
        nonce = max(self.chain.pending_nonce(row.sender), self._highest_nonce(row.sender) + 1)
        try:
            signed = self.chain.sign_call(signer, row.target, _unhex(row.calldata), nonce)
        except ContractReverted as exc:
            return self._fail(row, now, report, str(exc), exc)
        except ChainUnavailable:
            raise
        except ChainError as exc:
            return self._retry_later(row, exc, now, report)
        # Committed before the first send: from here on only these bytes are ever sent.
        changed = self._transition(
            row,
            OutboxState.QUEUED,
            now,
            state=OutboxState.SIGNED,
            nonce=signed.nonce,
            raw_tx=_hex(signed.raw),
            tx_hash=_hex(signed.tx_hash),
        )
        report.signed += changed
        return changed

    def _send(self, row: OutboxRow, now: datetime, report: PassReport) -> bool:
        """Send the row's signed bytes (again); True when the node has the transaction."""
        assert row.raw_tx is not None and row.tx_hash is not None and row.nonce is not None
        tx_hash = _unhex(row.tx_hash)
        try:
            self.chain.send_raw(_unhex(row.raw_tx))
        except ChainUnavailable:
            raise
        except ChainError as exc:
            # "already known" or "nonce too low" may just mean it is in: ask the node.
            if not (self.chain.receipt(tx_hash) or self.chain.is_known(tx_hash)):
                if self.chain.mined_nonce(row.sender) > row.nonce:
                    return self._fail(
                        row, now, report, f"nonce {row.nonce} was used by another transaction"
                    )
                return self._retry_later(row, exc, now, report)
        if row.state == OutboxState.SIGNED:
            changed = self._transition(
                row, OutboxState.SIGNED, now, state=OutboxState.SENT, sent_at=now
            )
            report.sent += changed
            return changed
        return self._transition(row, OutboxState.SENT, now, sent_at=now)

    def _check(self, row: OutboxRow, now: datetime, report: PassReport) -> None:
        assert row.tx_hash is not None and row.sent_at is not None
        tx_hash = _unhex(row.tx_hash)
        receipt = self.chain.receipt(tx_hash)
        if receipt is None:
            if row.receipt_block is not None:  # mined once, then reorganised away
                self._transition(row, OutboxState.SENT, now, receipt_block=None)
            # Dropped by the node (or it never got there): send the same bytes again.
            if now - row.sent_at < self.resend_after or not self._send(row, now, report):
                return
            receipt = self.chain.receipt(tx_hash)
            if receipt is None:
                return
        block = int(receipt["blockNumber"])
        if row.receipt_block != block:
            self._transition(row, OutboxState.SENT, now, receipt_block=block)
        if receipt["status"] != 1:
            error = self.chain.revert_of(row.sender, row.target, _unhex(row.calldata), receipt)
            self._fail(row, now, report, str(error), error)
        elif self.chain.block_number() - block >= self.confirmations:
            report.confirmed += self._transition(
                row, OutboxState.SENT, now, state=OutboxState.CONFIRMED
            )

    # -- recording --------------------------------------------------------------------

    def _transition(
        self, row: OutboxRow, expected: OutboxState, now: datetime, **changes: Any
    ) -> bool:
        """Apply ``changes`` if the row is still in ``expected`` (compare-and-set)."""
        values = {**changes, "updated_at": now}
        stmt = (
            update(OutboxRow)
            .where(col(OutboxRow.id) == row.id, col(OutboxRow.state) == expected)
            .values(**values)
        )
        with self.db.session() as session:
            done = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
        if done:
            for name, value in values.items():
                setattr(row, name, value)
        return bool(done)

    def _retry_later(
        self, row: OutboxRow, exc: Exception, now: datetime, report: PassReport
    ) -> bool:
        delay = self.backoff[min(row.attempts, len(self.backoff) - 1)]
        report.retried += self._transition(
            row,
            OutboxState(row.state),
            now,
            attempts=row.attempts + 1,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=str(exc),
        )
        return False

    def _fail(
        self,
        row: OutboxRow,
        now: datetime,
        report: PassReport,
        reason: str,
        error: ChainError | None = None,
    ) -> bool:
        changes: dict[str, Any] = {"state": OutboxState.FAILED, "last_error": reason}
        if isinstance(error, ContractReverted):
            changes["error_name"] = error.error
            changes["error_args"] = json.dumps(error.error_args, default=_jsonable)
        report.failed += self._transition(row, OutboxState(row.state), now, **changes)
        return False

    def _highest_nonce(self, sender: str) -> int:
        with self.db.session() as session:
            stmt = select(func.max(OutboxRow.nonce)).where(OutboxRow.sender == sender)
            highest = session.exec(stmt).one()
        return -1 if highest is None else int(highest)

    def _by_key(self, key: str) -> OutboxRow | None:
        with self.db.session() as session:
            stmt = select(OutboxRow).where(OutboxRow.idempotency_key == key)
            return session.exec(stmt).first()

    def _now(self) -> datetime:
        now = self._clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _in_flight(row: OutboxRow) -> bool:
    """Whether a later row of the same sender must wait for this one."""
    if row.state in (OutboxState.QUEUED, OutboxState.SIGNED):
        return True
    return row.state == OutboxState.SENT and row.receipt_block is None


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return _hex(bytes(value))
    return str(value)


def counts_by_state(db: Database) -> dict[str, int]:
    """How many outbox rows are in each state (read-only; no node or key needed)."""
    counts = {state.value: 0 for state in OutboxState}
    with db.session() as session:
        stmt = select(OutboxRow.state, func.count()).group_by(col(OutboxRow.state))
        for state, count in session.exec(stmt):
            counts[state] = int(count)
    return counts
