"""Anchoring a member's trail head on chain, and verifying a trail against the chain.

:func:`anchor_trail` sends the member's current tree head with the RFC 9162 consistency
proof from its previously anchored head; the TrailAnchor contract checks that proof, so
the chain refuses any head that rewrites history. :func:`queue_anchor` does the same
through the durable outbox (:mod:`ledger.outbox`), so it works while the node is down.
:func:`verify_member_trail` reads the anchored heads from the chain's own events, not
from this server's index.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from eth_account.signers.local import LocalAccount
from sqlmodel import col, select
from web3 import Web3

from ledger.audit import Head, TrailReport, verify_trail
from ledger.errors import ChainUnavailable, Conflict, InvalidInput, LedgerError
from ledger.instance import Instance
from ledger.onchain import AnchoredHead
from ledger.outbox import PENDING, Outbox
from ledger.store import AnchoredHeadRow

_log = logging.getLogger("libshare.anchoring")

ANCHOR = "anchor"
"""The outbox kind of trail anchors."""

SERVICE_BACKOFF_S = (1.0, 2.0, 5.0)
"""Delays between the service's attempts at an anchor the node did not take.

Shorter than the outbox's default (up to 30 s): while the node is down each attempt is
one refused connection, and a head must be on chain soon after the node returns — with a
30 s delay, an outage of about 50 s left the queue waiting 30 s after the node was back
(tests/faults/test_chain_outage.py).
"""


def anchor_trail(instance: Instance, library_id: str, member: LocalAccount) -> AnchoredHead | None:
    """Anchor the current head of ``library_id``'s trail; None when nothing is new."""
    contracts = instance.require_contracts()
    trail = instance.access.trail(library_id)
    head = trail.head()
    old_size, old_root = contracts.head_of(member.address)
    if head.size == old_size:
        return None
    if head.size < old_size:
        raise Conflict(
            f"the chain has a head of size {old_size} for {library_id}, but the local trail "
            f"has only {head.size} entries",
            hint="this database is behind the chain; restore the trail before anchoring",
        )
    if old_size and trail.root_at(old_size) != old_root:
        raise Conflict(
            f"the local trail of {library_id} does not match its anchored head of size {old_size}",
            hint="run `libshare audit verify` to find the first entry that differs",
        )
    proof = trail.consistency_proof(old_size, head.size) if old_size else []
    anchored = contracts.anchor_head(member, head.size, head.root, proof)
    instance.sync()
    return anchored


def verify_member_trail(instance: Instance, library_id: str, account: str) -> TrailReport:
    """Verify ``library_id``'s stored trail against the heads the chain holds for ``account``."""
    contracts = instance.require_contracts()
    heads = [Head(h.size, h.root, h.block, h.tx_hash) for h in contracts.anchored_heads(account)]
    trail = instance.access.trail(library_id)
    entries = ((row.seq, row.body, row.leaf_hash) for row in trail.entries())
    return verify_trail(entries, heads)


def queue_anchor(
    instance: Instance, outbox: Outbox, library_id: str, member: str | LocalAccount
) -> int | None:
    """Queue the current head of ``library_id``'s trail for anchoring; return the outbox row.

    ``member`` is the account (or its key) that anchors. Returns None when the head is
    no larger than the last head anchored or queued.

    The consistency proof starts from the last head *anchored or queued*: the larger of
    the index's latest anchored head and the newest outbox anchor that has not failed.
    The outbox signs a sender's rows one at a time, in order, each after the previous
    one is mined, so a queued head's proof is checked against exactly the head it was
    built from. If that earlier anchor fails, the ones built on it fail too (at their
    ``eth_call``, spending no nonce) and the next call here starts again from what the
    index holds. Everything is read locally, so anchors queue while the node is down.
    The idempotency key names both sizes; asking again for an anchor that already failed
    with the same sizes returns that failed row rather than repeating a refused write.

    An anchor that fails with ``TrailAnchorSizeNotIncreasing`` means the chain already
    holds a head at least that large (anchored by another writer): anchoring is
    cumulative, so no entry is left uncovered; :func:`verify_member_trail` checks that
    the chain's head is a head of this trail.
    """
    contracts = instance.require_contracts()
    account = Web3.to_checksum_address(member if isinstance(member, str) else member.address)
    instance.catch_up()  # learn heads anchored by other writers meanwhile
    trail = instance.access.trail(library_id)
    head = trail.head()
    with instance.db.session() as session:
        stmt = (
            select(AnchoredHeadRow)
            .where(AnchoredHeadRow.member == account)
            .order_by(col(AnchoredHeadRow.size).desc())
            .limit(1)
        )
        anchored = session.exec(stmt).first()
    base = 0
    if anchored is not None:
        if anchored.size > head.size:
            raise Conflict(
                f"the chain has a head of size {anchored.size} for {library_id}, but the local "
                f"trail has only {head.size} entries",
                hint="this database is behind the chain; restore the trail before anchoring",
            )
        if not hmac.compare_digest(
            trail.root_at(anchored.size), bytes.fromhex(anchored.root.removeprefix("0x"))
        ):
            raise Conflict(
                f"the local trail of {library_id} does not match its anchored head of size "
                f"{anchored.size}",
                hint="run `libshare audit verify` to find the first entry that differs",
            )
        base = anchored.size
    queued = outbox.last(ANCHOR, account)
    if queued is not None:
        args = contracts.trail.decode_function_input(queued.calldata)[1]
        base = max(base, int(args["size"]))
    if head.size <= base:
        return None
    proof = trail.consistency_proof(base, head.size) if base else []
    fn = contracts.trail.functions.anchor(head.size, head.root, proof)
    return outbox.enqueue(ANCHOR, f"{ANCHOR}:{account}:{base}:{head.size}", account, fn)


class AnchorScheduler:
    """Queues each served member's trail head every ``every_entries`` new entries or
    ``every_seconds``, whichever comes first, and drives the outbox that sends them.

    :meth:`tick` does one bounded round and never raises for an unreachable node: the
    outbox keeps the queued anchors and sends them when the node returns.
    """

    def __init__(
        self,
        instance: Instance,
        outbox: Outbox,
        members: Mapping[str, LocalAccount],
        *,
        every_entries: int = 1000,
        every_seconds: float = 60.0,
    ) -> None:
        if every_entries < 1 or every_seconds <= 0:
            raise InvalidInput("anchoring needs every_entries >= 1 and every_seconds > 0")
        self.instance = instance
        self.outbox = outbox
        self.members = dict(members)
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self._last: dict[str, tuple[int, datetime]] = {}  # member -> (size queued, when)

    def due(self, library_id: str) -> bool:
        """Whether ``library_id``'s trail has grown enough, or waited long enough."""
        size = self.instance.access.trail(library_id).head().size
        queued, when = self._last.get(library_id, (0, datetime.min.replace(tzinfo=UTC)))
        if size <= queued:
            return False
        waited = (self.instance.clock() - when).total_seconds()
        return size - queued >= self.every_entries or waited >= self.every_seconds

    def _on_its_way(self, account: LocalAccount) -> bool:
        """Whether an anchor of ``account``'s is still queued or unconfirmed.

        The next one waits for it: anchors are cumulative, so one sent after the node
        returns covers every entry since, where a queue filled through an outage would
        send one transaction per interval the node was away.
        """
        row = self.outbox.last(ANCHOR, account.address)
        return row is not None and row.state in PENDING

    def tick(self) -> int:
        """Queue the heads that are due and let the outbox send what it can; return queued."""
        queued = 0
        for library_id, account in self.members.items():
            if not self.due(library_id) or self._on_its_way(account):
                continue
            try:
                if queue_anchor(self.instance, self.outbox, library_id, account) is not None:
                    queued += 1
            except Conflict:
                continue  # the trail and the chain disagree: left for an operator to audit
            self._last[library_id] = (
                self.instance.access.trail(library_id).head().size,
                self.instance.clock(),
            )
        with contextlib.suppress(ChainUnavailable):
            self.outbox.process()
        return queued


def run_anchoring(instance: Instance, stop: threading.Event, *, poll_s: float = 1.0) -> None:
    """Anchor the served members' trails until ``stop`` is set (the service's background job).

    Every ``poll_s`` it queues the heads that are due and drives the outbox; a node that
    is down only delays the anchors, which the outbox keeps.
    """
    members = instance.served_members()
    if not members or not instance.deployed:
        return
    by_address: dict[str, LocalAccount] = {a.address: a for a in members.values()}
    outbox = Outbox(
        instance.db,
        instance.chain,
        by_address.__getitem__,
        instance.clock,
        backoff=SERVICE_BACKOFF_S,
    )
    scheduler = AnchorScheduler(
        instance,
        outbox,
        members,
        every_entries=instance.config.anchor_every_entries,
        every_seconds=instance.config.anchor_every_seconds,
    )
    while not stop.wait(poll_s):
        try:
            scheduler.tick()
        except LedgerError as exc:  # keep anchoring; the next tick retries
            _log.warning("anchoring round failed: %s", exc)
