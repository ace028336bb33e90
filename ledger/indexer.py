"""The event indexer: follows the consortium contracts' events into the SQL index.

The service's hot path reads members, resources and licences from SQL, never from the
chain. :meth:`Indexer.sync` reads the logs of the four contracts from the block after
its cursor up to the chain head (less ``confirmations``) in pages of blocks; for each
page it applies the events to the index and moves the cursor in one transaction, so a
crash repeats a page instead of losing or doubling it. (A long-running follower comes
with the federation work; here the index is synced after each write and at start-up.)

Speed (tens of thousands of registrations come in a few blocks): logs are read raw, not
through web3's formatters, and decoded by offset; registrations and links are written
many rows per statement (COPY on PostgreSQL); the next page is read from the node while
this one is written.

Reorganisations: with each batch the indexer records the hash of the batch's last block
(:class:`~ledger.store.IndexedBlockRow`). Before indexing, and again after reading each
batch's logs, it checks that the chain still has that hash at that height. If not, a
reorganisation replaced blocks already in the index, and the indexer rebuilds the index
from the chain: in one transaction it empties the chain-derived tables, indexes again
from the deployment block and moves the cursor, so readers never see a half-built index.
Tables the chain does not derive (the trail, counters, metadata, keys, the outbox) are
left alone. Only blocks at least ``confirmations`` deep are indexed, so a reorganisation
shallower than that never reaches the index.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from psycopg import sql as psycopg_sql
from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, delete, select
from web3 import Web3
from web3.exceptions import BlockNotFound

from ledger.chain import Chain, RawLog
from ledger.cid import cid_to_string
from ledger.errors import ChainError, StorageError
from ledger.onchain import ConsortiumContracts
from ledger.store import (
    AnchoredHeadRow,
    CursorRow,
    Database,
    IndexedBlockRow,
    LicenceRow,
    LicenceVersionRow,
    MemberRow,
    ProvenanceRow,
    ResourceRow,
)

PAGE_BLOCKS = 2_000
"""The most blocks whose logs are read in one request."""
PAGE_LOGS = 2_000
"""About how many logs a page should hold: enough to amortise a request, few enough that
reading the next page overlaps writing this one."""
FIRST_PAGE_BLOCKS = 16
"""The blocks of a sync's first page; later pages are sized from the logs of the last."""
RECORDED_BLOCKS = 16
"""How many indexed block hashes to keep per cursor (they bound a reorg's depth in the log)."""

_DERIVED = (
    MemberRow,
    LicenceRow,
    LicenceVersionRow,
    ResourceRow,
    ProvenanceRow,
    AnchoredHeadRow,
)
"""The tables rebuilt from the chain after a reorganisation."""

_log = logging.getLogger("libshare.indexer")

_KINDS = {
    "MemberAdmitted": "members",
    "LicenceIssued": "licences",
    "LicenceRevoked": "licences",
    "ResourceRegistered": "resources",
    "ProvenanceLinked": "resources",
    "ResourceSuperseded": "resources",
    "ResourceLicenceChanged": "resources",
    "HeadAnchored": "heads",
}
"""Which index rows each event changes; caches refresh only for the kinds that changed."""


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class _Reorganised(Exception):
    """The chain no longer has a block the index (or the batch being read) rests on."""


class Indexer:
    """Follows one deployment's events into one database."""

    def __init__(
        self,
        chain: Chain,
        contracts: ConsortiumContracts,
        db: Database,
        *,
        confirmations: int = 0,
        cursor_name: str = "events",
    ) -> None:
        self.chain = chain
        self.contracts = contracts
        self.db = db
        self.confirmations = confirmations
        self.cursor_name = cursor_name
        self._events: dict[bytes, _EventDecoder] = {}
        handlers: dict[str, Callable[[_Writes, _Event], None]] = {
            "MemberAdmitted": self._member_admitted,
            "LicenceIssued": self._licence_issued,
            "LicenceRevoked": self._licence_revoked,
            "ResourceRegistered": self._resource_registered,
            "ProvenanceLinked": self._provenance_linked,
            "ResourceSuperseded": self._resource_superseded,
            "ResourceLicenceChanged": self._resource_licence_changed,
            "HeadAnchored": self._head_anchored,
        }
        for contract in contracts.by_name().values():
            for item in contract.abi:
                if item.get("type") != "event":
                    continue
                event_abi = cast(ABIEvent, item)
                if event_abi["name"] in handlers:
                    topic = bytes(event_abi_to_log_topic(event_abi))
                    self._events[topic] = _EventDecoder(event_abi, handlers[event_abi["name"]])
        self._addresses = [c.address for c in contracts.by_name().values()]
        self._timestamps: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def cursor(self) -> int:
        """The last block whose events are in the index."""
        with self.db.session() as session:
            row = session.get(CursorRow, self.cursor_name)
            return row.block if row else self.contracts.deployment.block - 1

    def sync(self) -> int:
        """Index every confirmed block not yet indexed; return the number of events applied.

        One sync at a time: the service's request threads and its anchoring thread all
        sync, and two at once would apply the same events twice.
        """
        with self._lock:
            for _ in range(3):
                try:
                    return self._sync()
                except IntegrityError:
                    # Another process indexed the same blocks first (the transaction rolled
                    # back, the cursor moved on): go again from where it left the index.
                    continue
            return self._sync()

    def _sync(self) -> int:
        if not self._agrees(self._anchor()):
            return self._rebuild()
        applied = 0
        kinds: set[str] = set()
        start = self.cursor() + 1
        target = self.chain.block_number() - self.confirmations
        try:
            for end, end_hash, logs in self._pages(start, target, self._anchor()):
                with self.db.session() as session:
                    for kind in self._apply(session, logs):
                        kinds.add(kind)
                        applied += 1
                    session.merge(CursorRow(name=self.cursor_name, block=end))
                    self._record(session, end, end_hash)
                for kind in kinds:
                    self.db.generations[kind] += 1
        except _Reorganised:
            return applied + self._rebuild()
        return applied

    def _rebuild(self) -> int:
        """Empty the chain-derived tables and index them again from the deployment block."""
        self._warn_reorganised()
        for _ in range(3):
            try:
                applied = self._rebuild_once()
            except _Reorganised:
                continue  # the chain moved again while we read it: start over
            for kind in set(_KINDS.values()):
                self.db.generations[kind] += 1
            return applied
        raise ChainError(
            "the chain kept reorganising while the index was rebuilt from it",
            hint="sync again once the node has settled",
        )

    def _rebuild_once(self) -> int:
        self._timestamps.clear()
        applied = 0
        first = self.contracts.deployment.block
        target = self.chain.block_number() - self.confirmations
        with self.db.session() as session:
            for table in _DERIVED:
                session.exec(delete(table))
            session.exec(
                delete(IndexedBlockRow).where(col(IndexedBlockRow.name) == self.cursor_name)
            )
            session.merge(CursorRow(name=self.cursor_name, block=first - 1))
            anchor: tuple[int, str] | None = None
            for end, end_hash, logs in self._pages(first, target, None):
                applied += len(self._apply(session, logs))
                anchor = (end, end_hash)
            if anchor is not None:
                session.merge(CursorRow(name=self.cursor_name, block=anchor[0]))
                self._record(session, *anchor)
        return applied

    def _pages(
        self, start: int, target: int, anchor: tuple[int, str] | None
    ) -> Iterator[tuple[int, str, list[RawLog]]]:
        """(last block, its hash, logs) of consecutive pages of blocks ``start..target``.

        Each page is read from the node while the caller applies the one before, and is
        sized from the one before to hold about :data:`PAGE_LOGS` logs (at most
        :data:`PAGE_BLOCKS` blocks): on a busy chain fetching and writing then overlap,
        on a quiet one few requests cover many blocks. Each page is read against the
        (block, hash) the one before ended at, so a reorganisation in between raises
        :class:`_Reorganised` when its page is reached.
        """
        if start > target:
            return
        # The embedded chain runs in this process under one lock: nothing to overlap.
        pool = None if self.chain.is_embedded else ThreadPoolExecutor(1, "libshare-indexer")
        try:
            span = FIRST_PAGE_BLOCKS
            end = min(target, start + span - 1)
            reading = self._start_read(pool, start, end, anchor)
            while True:
                end_hash, logs = reading.result()
                following = end + 1
                if following <= target:
                    span = max(1, min(PAGE_BLOCKS, span * PAGE_LOGS // max(1, len(logs))))
                    following_end = min(target, following + span - 1)
                    reading = self._start_read(pool, following, following_end, (end, end_hash))
                yield end, end_hash, logs
                if following > target:
                    return
                end = following_end
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _start_read(
        self,
        pool: ThreadPoolExecutor | None,
        start: int,
        end: int,
        anchor: tuple[int, str] | None,
    ) -> Future[tuple[str, list[RawLog]]]:
        """:meth:`_read` on ``pool``'s thread, or here and now without one."""
        if pool is not None:
            return pool.submit(self._read, start, end, anchor)
        done: Future[tuple[str, list[RawLog]]] = Future()
        try:
            done.set_result(self._read(start, end, anchor))
        except Exception as exc:  # surfaces where the page is taken, as from the pool
            done.set_exception(exc)
        return done

    # -- reorganisations -------------------------------------------------------------

    def _read(
        self, start: int, end: int, anchor: tuple[int, str] | None
    ) -> tuple[str, list[RawLog]]:
        """The hash of block ``end`` and the logs of blocks ``start..end``.

        The hash is read before the logs and ``anchor`` (the block the batch follows) is
        checked after them: a reorganisation in between either shows now (raising
        :class:`_Reorganised`) or changes ``end``'s hash, which the next sync notices.
        """
        end_hash = self._block_hash(end)
        if end_hash is None:
            raise _Reorganised
        logs = self.chain.logs(self._addresses, start, end)
        if not self._agrees(anchor):
            raise _Reorganised
        return end_hash, logs

    def _block_hash(self, block: int) -> str | None:
        """The chain's hash of ``block``, or None if the chain has no such block now."""
        with self.chain.translate_errors():
            try:
                return _hex(self.chain.w3.eth.get_block(block)["hash"])
            except BlockNotFound:
                return None

    def _agrees(self, anchor: tuple[int, str] | None) -> bool:
        return anchor is None or self._block_hash(anchor[0]) == anchor[1]

    def _anchor(self) -> tuple[int, str] | None:
        """The newest recorded (block, hash), if it is the cursor's block."""
        recorded = self._recorded()
        if not recorded or recorded[0][0] != self.cursor():
            return None
        return recorded[0]

    def _recorded(self) -> list[tuple[int, str]]:
        """The recorded (block, hash) pairs, newest first."""
        with self.db.session() as session:
            rows = session.exec(
                select(IndexedBlockRow)
                .where(col(IndexedBlockRow.name) == self.cursor_name)
                .order_by(col(IndexedBlockRow.block).desc())
            ).all()
            return [(row.block, row.block_hash) for row in rows]

    def _record(self, session: Session, block: int, block_hash: str) -> None:
        """Record ``block``'s hash; forget all but the newest :data:`RECORDED_BLOCKS`."""
        session.merge(IndexedBlockRow(name=self.cursor_name, block=block, block_hash=block_hash))
        session.flush()
        oldest_kept = session.exec(
            select(IndexedBlockRow.block)
            .where(col(IndexedBlockRow.name) == self.cursor_name)
            .order_by(col(IndexedBlockRow.block).desc())
            .offset(RECORDED_BLOCKS - 1)
            .limit(1)
        ).first()
        if oldest_kept is not None:
            session.exec(
                delete(IndexedBlockRow).where(
                    col(IndexedBlockRow.name) == self.cursor_name,
                    col(IndexedBlockRow.block) < oldest_kept,
                )
            )

    def _warn_reorganised(self) -> None:
        recorded = self._recorded()
        if not recorded:
            return
        newest = recorded[0][0]
        for block, block_hash in recorded[1:]:
            if self._block_hash(block) == block_hash:
                depth = f"at most {newest - block} blocks deep (block {block} is unchanged)"
                break
        else:
            oldest = recorded[-1][0]
            depth = f"at least {newest - oldest + 1} blocks deep (no recorded block is unchanged)"
        _log.warning(
            "chain reorganisation: indexed block %d now has another hash; the reorg is %s. "
            "Rebuilding the index from the chain.",
            newest,
            depth,
        )

    # -- event handlers --------------------------------------------------------------

    def _apply(self, session: Session, logs: list[RawLog]) -> list[str]:
        """Apply ``logs`` in order; return the kind of index rows each of ours changed.

        Registrations and provenance links, nearly all of a busy chain's events, are
        gathered and inserted many rows per statement; any other event first writes
        what was gathered, so every event still sees the index as of the one before.
        """
        writes = _Writes(session)
        kinds = []
        for log in logs:
            decoder = self._events.get(log.topics[0]) if log.topics else None
            if decoder is None:
                continue
            event = decoder.decode(log)
            decoder.handler(writes, event)
            kinds.append(_KINDS[event.name])
        writes.flush()
        return kinds

    def _block_time(self, block: int) -> datetime:
        if block not in self._timestamps:
            with self.chain.translate_errors():
                ts = int(self.chain.w3.eth.get_block(block)["timestamp"])
            self._timestamps[block] = datetime.fromtimestamp(ts, UTC)
        return self._timestamps[block]

    def _member_admitted(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        writes.session.merge(
            MemberRow(
                account=str(a["account"]),
                library_id=str(a["libraryId"]),
                tier=int(a["tier"]),
                country=bytes(a["country"]).decode("ascii"),
                admitted_block=ev.block,
            )
        )

    def _licence_issued(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        licence_id, version = int(a["licenceId"]), int(a["version"])
        terms_json = str(a["termsJson"])
        try:
            json.loads(terms_json)
        except ValueError as exc:
            raise StorageError(f"licence {licence_id} v{version} carries invalid JSON") from exc
        session = writes.session
        session.merge(
            LicenceVersionRow(
                licence_id=licence_id,
                version=version,
                terms_hash=_hex(a["termsHash"]),
                terms_json=terms_json,
                issued_block=ev.block,
            )
        )
        row = session.get(LicenceRow, licence_id)
        if row is None:
            session.add(
                LicenceRow(
                    licence_id=licence_id, licensor=str(a["licensor"]), latest_version=version
                )
            )
        else:
            row.latest_version = max(row.latest_version, version)
            session.add(row)

    def _licence_revoked(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        row = writes.session.get(LicenceRow, int(a["licenceId"]))
        if row is None:
            raise StorageError(f"revocation of unknown licence {a['licenceId']} in the index")
        row.revoked_block = int(a["blockNumber"])
        row.revoked_at = self._block_time(ev.block)
        writes.session.add(row)

    def _resource_registered(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        writes.resources.append(
            {
                "id": _hex(a["id"]),
                "owner": a["owner"],
                "content_hash": _hex(a["contentHash"]),
                "cid": cid_to_string(a["cid"]),
                "metadata_hash": _hex(a["metadataHash"]),
                "licence_id": a["licenceId"],
                "superseded_by": None,
                "registered_block": ev.block,
            }
        )

    def _provenance_linked(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        row = {"resource_id": _hex(a["id"]), "relation": a["relation"], "target": _hex(a["target"])}
        # A resource registered with the same link twice emits it twice: one row.
        writes.links[(row["resource_id"], row["relation"], row["target"])] = row

    def _resource_superseded(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        writes.flush()
        row = writes.session.get(ResourceRow, _hex(a["oldId"]))
        if row is not None:
            row.superseded_by = _hex(a["newId"])
            writes.session.add(row)

    def _resource_licence_changed(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        writes.flush()
        row = writes.session.get(ResourceRow, _hex(a["id"]))
        if row is not None:
            row.licence_id = int(a["licenceId"])
            writes.session.add(row)

    def _head_anchored(self, writes: _Writes, ev: _Event) -> None:
        a = ev.args
        writes.session.merge(
            AnchoredHeadRow(
                member=str(a["member"]),
                size=int(a["size"]),
                root=_hex(a["root"]),
                block=ev.block,
                tx_hash=_hex(ev.tx_hash),
            )
        )


class _Writes:
    """The index changes of one batch of logs: inserts gathered, the rest through the ORM."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.resources: list[dict[str, Any]] = []
        self.links: dict[tuple[str, int, str], dict[str, Any]] = {}

    def flush(self) -> None:
        """Insert what was gathered, a table at a time."""
        if not (self.resources or self.links):
            return
        self.session.flush()  # ORM changes of earlier events go first
        connection = self.session.connection()
        if self.resources:
            _insert_many(connection, ResourceRow.__tablename__, self.resources)
            self.resources = []
        if self.links:
            _insert_many(connection, ProvenanceRow.__tablename__, list(self.links.values()))
            self.links = {}


def _insert_many(connection: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` in this transaction.

    On PostgreSQL through COPY, four times faster than psycopg's pipelined executemany;
    elsewhere one executemany. A duplicate key raises SQLAlchemy's IntegrityError either
    way, which :meth:`Indexer.sync` takes as another indexer having been first.
    """
    if connection.dialect.name != "postgresql":
        connection.execute(insert(SQLModel.metadata.tables[table]), rows)
        return
    columns = list(rows[0])
    command = psycopg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        psycopg_sql.Identifier(table),
        psycopg_sql.SQL(", ").join(map(psycopg_sql.Identifier, columns)),
    )
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(command) as copy:
            for row in rows:
                copy.write_row([row[column] for column in columns])
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError(f"COPY {table}", None, exc) from exc


@dataclass(frozen=True, slots=True)
class _Event:
    name: str
    args: dict[str, Any]
    block: int
    tx_hash: bytes


class _EventDecoder:
    """Decodes one event's logs straight from their bytes.

    Our events hold only static words, ``bytes`` and ``string``: reading those by offset
    is some twenty times faster than web3's general ABI decoder, which would otherwise
    take most of the time of indexing a registration.
    """

    def __init__(self, abi: ABIEvent, handler: Callable[[_Writes, _Event], None]) -> None:
        self.name = str(abi["name"])
        self.handler = handler
        inputs = abi.get("inputs", [])
        self._topics = [
            (str(i["name"]), _word_reader(str(i["type"]))) for i in inputs if i.get("indexed")
        ]
        # Per data field: its name, how to read its word (None: bytes or string, whose
        # word is an offset), and whether it is a string. Unknown types raise here.
        self._readers = [
            (
                str(i["name"]),
                None if i["type"] in ("bytes", "string") else _word_reader(str(i["type"])),
                i["type"] == "string",
            )
            for i in inputs
            if not i.get("indexed")
        ]

    def decode(self, log: RawLog) -> _Event:
        if len(log.topics) != len(self._topics) + 1:
            raise StorageError(f"a {self.name} log has {len(log.topics)} topics")
        args: dict[str, Any] = {
            name: read(topic)
            for (name, read), topic in zip(self._topics, log.topics[1:], strict=True)
        }
        data = log.data
        for position, (name, read, is_string) in enumerate(self._readers):
            word = data[32 * position : 32 * position + 32]
            if len(word) != 32:
                raise StorageError(f"a {self.name} log's data ends early")
            if read is not None:
                args[name] = read(word)
                continue
            offset = int.from_bytes(word)
            length = int.from_bytes(data[offset : offset + 32])
            value = data[offset + 32 : offset + 32 + length]
            if offset + 32 > len(data) or len(value) != length:
                raise StorageError(f"a {self.name} log's {name} runs past its data")
            args[name] = value.decode("utf-8") if is_string else value
        return _Event(self.name, args, log.block, log.tx_hash)


def _word_reader(kind: str) -> Callable[[bytes], Any]:
    """How to read one 32-byte ABI word of type ``kind``."""
    if kind.startswith("uint"):
        return _uint
    if kind == "address":
        return _address
    if kind.startswith("bytes") and kind[5:].isdigit():
        size = int(kind[5:])
        return lambda word: word[:size]
    if kind == "bool":
        return lambda word: word[-1] == 1
    raise StorageError(f"the indexer cannot decode event fields of type {kind}")


def _uint(word: bytes) -> int:
    return int.from_bytes(word)


@functools.lru_cache(maxsize=4096)
def _address(word: bytes) -> str:
    """The checksum address in ``word`` (cached: a handful of members emit everything)."""
    return Web3.to_checksum_address(word[12:])
