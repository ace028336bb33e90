"""The event indexer: follows the consortium contracts' events into the SQL index.

The service's hot path reads members, resources and licences from SQL, never from the
chain. :meth:`Indexer.sync` reads the logs of the four contracts from the block after
its cursor up to the chain head (less ``confirmations``), applies each event to the
index and moves the cursor, all in one transaction, so a crash repeats a batch instead
of losing or doubling it. (Reorg handling and a long-running follower come with the
federation work; here the index is synced after each write and at start-up.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from web3._utils.events import get_event_data
from web3.types import EventData, LogReceipt

from ledger.chain import Chain
from ledger.cid import cid_to_string
from ledger.errors import StorageError
from ledger.onchain import ConsortiumContracts
from ledger.store import (
    AnchoredHeadRow,
    CursorRow,
    Database,
    LicenceRow,
    LicenceVersionRow,
    MemberRow,
    ProvenanceRow,
    ResourceRow,
)

PAGE_BLOCKS = 2_000

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
        target = self.chain.block_number() - self.confirmations
        applied = 0
        kinds: set[str] = set()
        start = self.cursor() + 1
        addresses = [c.address for c in self.contracts.by_name().values()]
        while start <= target:
            end = min(target, start + PAGE_BLOCKS - 1)
            with self.chain.translate_errors():
                logs = self.chain.w3.eth.get_logs(
                    {"address": addresses, "fromBlock": start, "toBlock": end}
                )
            with self.db.session() as session:
                for log in logs:
                    kind = self._apply(session, log)
                    if kind is not None:
                        kinds.add(kind)
                        applied += 1
                session.merge(CursorRow(name=self.cursor_name, block=end))
            for kind in kinds:
                self.db.generations[kind] += 1
            start = end + 1
        return applied

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
