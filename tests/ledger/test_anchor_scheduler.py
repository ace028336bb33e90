"""The anchoring service's scheduler: one anchor on its way per member, never a backlog."""

from __future__ import annotations

from pathlib import Path

from ledger.anchoring import ANCHOR, AnchorScheduler
from ledger.errors import ChainUnavailable
from ledger.outbox import PENDING, Outbox, PassReport
from tests.conftest import make_consortium, record_checks


class _NodeDown(Outbox):
    """An outbox whose node does not answer: every pass raises, as a refused connection does."""

    def process(self, max_items: int = 100) -> PassReport:
        raise ChainUnavailable("the node does not answer")


def _pending_anchors(outbox: Outbox) -> int:
    return sum(1 for row in outbox.pending() if row.kind == ANCHOR and row.state in PENDING)


def test_while_the_node_is_down_one_anchor_waits_and_the_next_covers_everything(
    tmp_path: Path,
) -> None:
    consortium = make_consortium(tmp_path)
    instance = consortium.instance
    account = consortium.members["CN-A"].account
    down = _NodeDown(
        instance.db, instance.chain, {account.address: account}.__getitem__, instance.clock
    )
    scheduler = AnchorScheduler(instance, down, {"CN-A": account}, every_entries=1)

    for round_ in range(5):  # five intervals of the outage, the trail growing in each
        record_checks(consortium, 3, start=3 * round_)
        scheduler.tick()
    assert _pending_anchors(down) == 1  # not five

    up = Outbox(instance.db, instance.chain, {account.address: account}.__getitem__, instance.clock)
    back = AnchorScheduler(instance, up, {"CN-A": account}, every_entries=1)
    up.drain(timeout_s=30)  # the node returns: the waiting anchor goes out
    back.tick()  # and the next one takes the head as it is now
    up.drain(timeout_s=30)
    contracts = instance.require_contracts()
    assert contracts.head_of(account.address)[0] == instance.access.trail("CN-A").head().size == 15
    assert _pending_anchors(up) == 0
