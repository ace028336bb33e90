"""An instance's state at a glance: chain, index, outbox, content store, trails and anchors.

Read-only and safe while ``libshare serve`` runs on the same data dir. A node that does
not answer is reported, not raised: the status of an instance is most wanted when
something is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import col, select

from ledger.errors import ChainError
from ledger.instance import Instance
from ledger.outbox import PENDING, OutboxState, counts_by_state
from ledger.store import AnchoredHeadRow, CursorRow, MemberRow, TrailEntryRow

INDEX_LAG_WARN = 50
"""Blocks the index may trail the chain head before the status asks for attention."""


@dataclass(frozen=True)
class TrailStatus:
    library_id: str
    entries: int
    anchored_size: int  # 0 when no head of it is on chain yet
    anchored_block: int | None
    anchored_tx: str | None

    @property
    def unanchored(self) -> int:
        return self.entries - self.anchored_size


@dataclass(frozen=True)
class InstanceStatus:
    chain: str
    chain_block: int | None  # None: the node did not answer
    chain_error: str | None
    deployed: bool
    indexed_block: int | None
    outbox: dict[str, int]
    content_store: str
    trails: list[TrailStatus] = field(default_factory=list)

    @property
    def index_lag(self) -> int | None:
        if self.chain_block is None or self.indexed_block is None:
            return None
        return max(0, self.chain_block - self.indexed_block)

    @property
    def outbox_depth(self) -> int:
        return sum(self.outbox.get(state.value, 0) for state in PENDING)

    def problems(self) -> list[str]:
        """What needs an operator's attention, one line each; empty when all is well."""
        found = []
        if self.chain_block is None:
            found.append(f"the chain node does not answer ({self.chain_error})")
        if not self.deployed:
            found.append("no consortium is deployed or joined in this data dir")
        lag = self.index_lag
        if lag is not None and lag > INDEX_LAG_WARN:
            found.append(f"the index is {lag} blocks behind the chain")
        if self.outbox.get(OutboxState.FAILED.value, 0):
            found.append(
                f"{self.outbox[OutboxState.FAILED.value]} chain writes failed "
                "(see the outbox table's last_error)"
            )
        return found


def instance_status(instance: Instance) -> InstanceStatus:
    """Collect the status of ``instance`` from its database and, if it answers, its node."""
    try:
        chain_block: int | None = instance.chain.block_number()
        chain_error = None
    except ChainError as exc:
        chain_block, chain_error = None, str(exc)
    with instance.db.session() as session:
        cursor = session.get(CursorRow, "events")
        sizes = dict(
            session.exec(
                select(TrailEntryRow.member, func.count()).group_by(col(TrailEntryRow.member))
            ).all()
        )
        accounts = {m.library_id: m.account for m in session.exec(select(MemberRow)).all()}
        trails = []
        for library_id in sorted(sizes):
            head = session.exec(
                select(AnchoredHeadRow)
                .where(AnchoredHeadRow.member == accounts.get(library_id, ""))
                .order_by(col(AnchoredHeadRow.size).desc())
                .limit(1)
            ).first()
            trails.append(
                TrailStatus(
                    library_id,
                    int(sizes[library_id]),
                    head.size if head else 0,
                    head.block if head else None,
                    head.tx_hash if head else None,
                )
            )
    store = (
        f"IPFS node at {instance.config.ipfs_api}"
        if instance.config.ipfs_api
        else f"local blockstore in {instance.config.data_dir / 'blocks'}"
    )
    return InstanceStatus(
        chain=instance.chain.description,
        chain_block=chain_block,
        chain_error=chain_error,
        deployed=instance.deployed,
        indexed_block=cursor.block if cursor else None,
        outbox=counts_by_state(instance.db),
        content_store=store,
        trails=trails,
    )
