"""A member's usage trail: an append-only RFC 9162 Merkle log kept in SQL.

Every entry is stored with its leaf hash, and every complete aligned subtree is stored
once, when the append that completes it happens. The root of any size and every proof
then need O(log n) stored hashes, never a rehash of the log. Appends happen inside
:meth:`Trail.appending`, one database transaction with whatever else the caller writes
(the decision's counters), so an acknowledged entry is on disk and a failed one left
nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from ledger import merkle
from ledger.errors import InvalidInput, NotFound
from ledger.sqlfast import BulkInsert
from ledger.store import Database, TrailEntryRow, TrailNodeRow
from ledger.types import LeafHash, NodeHash


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: NodeHash


class Appender:
    """Stages appends to one trail inside a caller's transaction.

    Rows are collected and written with :meth:`write` in one statement per table; the
    trail's in-memory frontier moves only when :meth:`Trail.promote` is called after the
    commit, so a rolled-back transaction leaves no trace.
    """

    def __init__(self, trail: Trail, frontier: merkle.CompactRange, session: Session) -> None:
        self.trail = trail
        self.session = session
        self._frontier = frontier
        self._entries: list[tuple[str, int, bytes, bytes]] = []
        self._nodes: list[tuple[str, int, int, bytes]] = []

    @property
    def size(self) -> int:
        return self._frontier.size

    def append(self, body: bytes) -> tuple[int, LeafHash]:
        """Add one entry; return its sequence number and leaf hash."""
        member = self.trail.member
        seq = self._frontier.size
        leaf = merkle.leaf_hash(body)
        completed = self._frontier.append(leaf)
        self._entries.append((member, seq, body, leaf))
        for level, index, digest in completed:
            if level > 0:  # level 0 is the leaf hash, already in trail_entry
                self._nodes.append((member, level, index, digest))
        return seq, leaf

    def write(self) -> None:
        """Insert the staged rows (inside the open transaction)."""
        # Plain executemany: the decision writer calls this on every group commit.
        conn = self.session.connection()
        _INSERT_ENTRIES.run(conn, self._entries)
        _INSERT_NODES.run(conn, self._nodes)
        self._entries, self._nodes = [], []


_INSERT_ENTRIES = BulkInsert(
    TrailEntryRow.__table__,  # type: ignore[attr-defined]
    ("member", "seq", "body", "leaf_hash"),
)
_INSERT_NODES = BulkInsert(
    TrailNodeRow.__table__,  # type: ignore[attr-defined]
    ("member", "level", "index", "hash"),
)


class Trail:
    """The usage trail of one member library."""

    def __init__(self, db: Database, member: str) -> None:
        self.db = db
        self.member = member
        self._lock = threading.Lock()
        self._frontier: merkle.CompactRange | None = None

    @contextmanager
    def appending(self) -> Iterator[Appender]:
        """Open a transaction to append entries; it commits when the block exits cleanly.

        The appender's ``session`` attribute is the open session, for writing whatever
        else belongs to the same transaction.
        """
        with self._lock:
            with self.db.session() as session:
                appender = self.begin(session)
                yield appender
                appender.write()
            self.promote(appender)

    def begin(self, session: Session) -> Appender:
        """Start staging appends on top of the committed trail (caller serialises appends)."""
        current = self._load_frontier(session)
        return Appender(self, merkle.CompactRange(current.size, current.hashes), session)

    def promote(self, appender: Appender) -> None:
        """Adopt the appender's frontier once its transaction has committed."""
        self._frontier = appender._frontier

    def reload(self) -> None:
        """Forget the cached frontier: the next append reads it from the database.

        For a commit whose outcome is unknown (the connection died during it): the
        database, not this process, then says where the trail ends.
        """
        self._frontier = None

    @property
    def lock(self) -> threading.Lock:
        """Held by whoever appends to this trail."""
        return self._lock

    def head(self) -> TreeHead:
        """The current size and root."""
        with self.db.session() as session:
            frontier = self._load_frontier(session)
            return TreeHead(frontier.size, frontier.root())

    def root_at(self, size: int) -> NodeHash:
        """The root of the first ``size`` entries, from O(log n) stored hashes."""
        with self.db.session() as session:
            self._check_size(session, size)
            if size == 0:
                return merkle.EMPTY_ROOT
            return NodeHash(self._range_hash(session, 0, size))

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        with self.db.session() as session:
            self._check_size(session, size)
            return merkle.inclusion_proof(seq, size, lambda a, b: self._range_hash(session, a, b))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self.db.session() as session:
            self._check_size(session, new_size)
            return merkle.consistency_proof(
                old_size, new_size, lambda a, b: self._range_hash(session, a, b)
            )

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[TrailEntryRow]:
        """Entries with ``start <= seq < end`` in order, streamed in pages."""
        page = 1000
        seq = start
        while end is None or seq < end:
            with self.db.session() as session:
                stmt = (
                    select(TrailEntryRow)
                    .where(TrailEntryRow.member == self.member, TrailEntryRow.seq >= seq)
                    .order_by(col(TrailEntryRow.seq))
                    .limit(page if end is None else min(page, end - seq))
                )
                rows = list(session.exec(stmt))
            if not rows:
                return
            yield from rows
            seq = rows[-1].seq + 1

    # -- internals -------------------------------------------------------------------

    def _count(self, session: Session) -> int:
        stmt = (
            select(func.count())
            .select_from(TrailEntryRow)
            .where(TrailEntryRow.member == self.member)
        )
        return int(session.exec(stmt).one())

    def _check_size(self, session: Session, size: int) -> None:
        have = self._count(session)
        if not 0 <= size <= have:
            raise InvalidInput(
                f"trail of {self.member} has {have} entries; size {size} is out of range",
                hint=f"ask for a size between 0 and {have}",
            )

    def _load_frontier(self, session: Session) -> merkle.CompactRange:
        if self._frontier is None:
            size = self._count(session)
            hashes = [
                self._subtree(session, level, index)
                for level, index in merkle.aligned_subtrees(0, size)
            ]
            self._frontier = merkle.CompactRange(size, hashes)
        return self._frontier

    def _subtree(self, session: Session, level: int, index: int) -> bytes:
        if level == 0:
            entry = session.get(TrailEntryRow, (self.member, index))
            if entry is None:
                raise NotFound(f"trail entry {index} of {self.member} is missing")
            return entry.leaf_hash
        node = session.get(TrailNodeRow, (self.member, level, index))
        if node is None:
            raise NotFound(f"trail node ({level}, {index}) of {self.member} is missing")
        return node.hash

    def _range_hash(self, session: Session, start: int, end: int) -> bytes:
        # The ranges RFC 9162's recursions ask for split into aligned complete subtrees,
        # largest first; folding them from the right rebuilds MTH(D[start:end]).
        parts = [self._subtree(session, lv, ix) for lv, ix in merkle.aligned_subtrees(start, end)]
        return merkle.root_from_subtrees(parts)
