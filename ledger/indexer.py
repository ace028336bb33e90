"""The event indexer: follows the consortium contracts' events into the SQL index.

The service's hot path reads members, resources and licences from SQL, never from the
chain. :meth:`Indexer.sync` reads the logs of the four contracts from the block after
its cursor up to the chain head (less ``confirmations``), applies each event to the
index and moves the cursor, all in one transaction, so a crash repeats a batch instead
of losing or doubling it. (A long-running follower comes with the federation work; here
the index is synced after each write and at start-up.)

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

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select
from web3._utils.events import get_event_data
from web3.exceptions import BlockNotFound
from web3.types import EventData, LogReceipt

from ledger.chain import Chain
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
        self._abis: dict[bytes, tuple[dict[str, Any], Callable[[Session, EventData], None]]] = {}
        handlers: dict[str, Callable[[Session, EventData], None]] = {
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
                    self._abis[topic] = (dict(event_abi), handlers[event_abi["name"]])
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
        while start <= target:
            end = min(target, start + PAGE_BLOCKS - 1)
            try:
                end_hash, logs = self._read(start, end, self._anchor())
            except _Reorganised:
                return applied + self._rebuild()
            with self.db.session() as session:
                for log in logs:
                    kind = self._apply(session, log)
                    if kind is not None:
                        kinds.add(kind)
                        applied += 1
                session.merge(CursorRow(name=self.cursor_name, block=end))
                self._record(session, end, end_hash)
            for kind in kinds:
                self.db.generations[kind] += 1
            start = end + 1
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
            start = first
            while start <= target:
                end = min(target, start + PAGE_BLOCKS - 1)
                end_hash, logs = self._read(start, end, anchor)
                for log in logs:
                    if self._apply(session, log) is not None:
                        applied += 1
                anchor = (end, end_hash)
                start = end + 1
            if anchor is not None:
                session.merge(CursorRow(name=self.cursor_name, block=anchor[0]))
                self._record(session, *anchor)
        return applied

    # -- reorganisations -------------------------------------------------------------

    def _read(
        self, start: int, end: int, anchor: tuple[int, str] | None
    ) -> tuple[str, list[LogReceipt]]:
        """The hash of block ``end`` and the logs of blocks ``start..end``.

        The hash is read before the logs and ``anchor`` (the block the batch follows) is
        checked after them: a reorganisation in between either shows now (raising
        :class:`_Reorganised`) or changes ``end``'s hash, which the next sync notices.
        """
        end_hash = self._block_hash(end)
        if end_hash is None:
            raise _Reorganised
        addresses = [c.address for c in self.contracts.by_name().values()]
        with self.chain.translate_errors():
            logs = self.chain.w3.eth.get_logs(
                {"address": addresses, "fromBlock": start, "toBlock": end}
            )
        if not self._agrees(anchor):
            raise _Reorganised
        return end_hash, list(logs)

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

    def _apply(self, session: Session, log: LogReceipt) -> str | None:
        """Apply one log; return the kind of index rows it changed (None: not ours)."""
        topics = log["topics"]
        if not topics:
            return None
        found = self._abis.get(bytes(topics[0]))
        if found is None:
            return None
        abi, handler = found
        data = get_event_data(self.chain.w3.codec, cast(ABIEvent, abi), log)
        handler(session, data)
        return _KINDS[str(abi["name"])]

    def _block_time(self, block: int) -> datetime:
        if block not in self._timestamps:
            with self.chain.translate_errors():
                ts = int(self.chain.w3.eth.get_block(block)["timestamp"])
            self._timestamps[block] = datetime.fromtimestamp(ts, UTC)
        return self._timestamps[block]

    def _member_admitted(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        session.merge(
            MemberRow(
                account=str(a["account"]),
                library_id=str(a["libraryId"]),
                tier=int(a["tier"]),
                country=bytes(a["country"]).decode("ascii"),
                admitted_block=int(ev["blockNumber"]),
            )
        )

    def _licence_issued(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        licence_id, version = int(a["licenceId"]), int(a["version"])
        terms_json = str(a["termsJson"])
        try:
            json.loads(terms_json)
        except ValueError as exc:
            raise StorageError(f"licence {licence_id} v{version} carries invalid JSON") from exc
        session.merge(
            LicenceVersionRow(
                licence_id=licence_id,
                version=version,
                terms_hash=_hex(a["termsHash"]),
                terms_json=terms_json,
                issued_block=int(ev["blockNumber"]),
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

    def _licence_revoked(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        row = session.get(LicenceRow, int(a["licenceId"]))
        if row is None:
            raise StorageError(f"revocation of unknown licence {a['licenceId']} in the index")
        row.revoked_block = int(a["blockNumber"])
        row.revoked_at = self._block_time(int(ev["blockNumber"]))
        session.add(row)

    def _resource_registered(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        session.merge(
            ResourceRow(
                id=_hex(a["id"]),
                owner=str(a["owner"]),
                content_hash=_hex(a["contentHash"]),
                cid=cid_to_string(bytes(a["cid"])),
                metadata_hash=_hex(a["metadataHash"]),
                licence_id=int(a["licenceId"]),
                registered_block=int(ev["blockNumber"]),
            )
        )

    def _provenance_linked(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        session.merge(
            ProvenanceRow(
                resource_id=_hex(a["id"]), relation=int(a["relation"]), target=_hex(a["target"])
            )
        )

    def _resource_superseded(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        row = session.get(ResourceRow, _hex(a["oldId"]))
        if row is not None:
            row.superseded_by = _hex(a["newId"])
            session.add(row)

    def _resource_licence_changed(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        row = session.get(ResourceRow, _hex(a["id"]))
        if row is not None:
            row.licence_id = int(a["licenceId"])
            session.add(row)

    def _head_anchored(self, session: Session, ev: EventData) -> None:
        a = ev["args"]
        session.merge(
            AnchoredHeadRow(
                member=str(a["member"]),
                size=int(a["size"]),
                root=_hex(a["root"]),
                block=int(ev["blockNumber"]),
                tx_hash=_hex(ev["transactionHash"]),
            )
        )
