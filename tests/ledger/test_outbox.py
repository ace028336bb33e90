"""The outbox pushes every chain write through to a receipt, once, across crashes and outages.

Everything runs on the real embedded chain. The only test double is :class:`Network`, the
wire between libshare and that node: it can refuse connections, lose a transaction, or
kill the "process" (raise :class:`Crash`) just before or just after a request reaches
the node. The node itself keeps running, as a separate node process would.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.middleware import Web3Middleware
from web3.types import MakeRequestFn, RPCEndpoint, RPCResponse

from ledger.anchoring import queue_anchor, verify_member_trail
from ledger.chain import Chain
from ledger.errors import Conflict
from ledger.instance import Instance, InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N
from ledger.onchain import ConsortiumContracts, Deployment, FounderInput
from ledger.outbox import Outbox, OutboxState
from ledger.store import Database
from ledger.trail import Trail

ETHER = 10**18


class Crash(BaseException):
    """The outbox's process dies here (a stand-in for kill -9, not an error it may catch)."""


class Network:
    """Web3 middleware between libshare and the real node, with faults to switch on."""

    def __init__(self) -> None:
        self.down = False  # every request fails to connect
        self.crash_before: str | None = None  # die before this request leaves (once)
        self.crash_after: str | None = None  # the node gets it, then the process dies (once)
        self.down_after: str | None = None  # the node gets it, then the link goes down (once)
        self.lose: str | None = None  # the request "succeeds" but never reaches the node (once)
        self.calls: Counter[str] = Counter()  # requests that reached the node

    def attach(self, w3: Web3) -> None:
        """Put this wire between ``w3`` and its node, outermost, before any other layer."""
        network = self

        class Wire(Web3Middleware):
            def wrap_make_request(self, make_request: MakeRequestFn) -> MakeRequestFn:
                return network.wrap(make_request)

        w3.middleware_onion.inject(Wire, name="network", layer=0)

    def wrap(self, make_request: MakeRequestFn) -> MakeRequestFn:
        def request(method: RPCEndpoint, params: Any) -> RPCResponse:
            if self.down:
                raise requests.ConnectionError(f"{method}: connection refused")
            if method == self.crash_before:
                self.crash_before = None
                raise Crash(f"died before {method}")
            if method == self.lose:
                self.lose = None
                return {"jsonrpc": "2.0", "id": 0, "result": _hash_of_raw(params[0])}
            self.calls[method] += 1
            response = make_request(method, params)
            if method == self.crash_after:
                self.crash_after = None
                raise Crash(f"died after {method}")
            if method == self.down_after:
                self.down_after = None
                self.down = True
            return response

        return request


def _hash_of_raw(raw: Any) -> str:
    data = bytes(raw) if isinstance(raw, bytes) else bytes.fromhex(str(raw).removeprefix("0x"))
    return "0x" + keccak(data).hex()


@dataclass
class Clock:
    """The outbox's clock; its ``sleep`` advances the time instead of waiting."""

    now: datetime
    slept: float = 0.0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


ADMIN, MEMBER_A, MEMBER_B, CANDIDATE = (Account.create() for _ in range(4))
KEYS = {acct.address: acct for acct in (ADMIN, MEMBER_A, MEMBER_B, CANDIDATE)}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deployment]:
    """A chain with the consortium (members A and B, one approval) deployed, made once."""
    path = tmp_path_factory.mktemp("template") / "chain.sqlite"
    chain = Chain.open_embedded(path)
    for acct in (ADMIN, MEMBER_A, MEMBER_B):
        chain.fund_from_node(acct.address, ETHER)
    founders = [
        FounderInput("CN-A", 1, "CN", MEMBER_A.address),
        FounderInput("CN-B", 2, "CN", MEMBER_B.address),
    ]
    contracts = ConsortiumContracts.deploy(chain, ADMIN, founders, 1)
    chain.close()
    return path, contracts.deployment


@dataclass
class World:
    chain: Chain
    contracts: ConsortiumContracts
    db: Database
    network: Network
    clock: Clock
    tmp_path: Path

    def outbox(self, **kwargs: Any) -> Outbox:
        """A fresh outbox over the same database: what a restarted process builds."""
        return Outbox(
            self.db, self.chain, KEYS.__getitem__, self.clock, sleep=self.clock.sleep, **kwargs
        )

    def trail(self, member: str) -> Trail:
        return Trail(self.db, member)

    def anchor_events(self, account: str) -> list[tuple[int, bytes]]:
        return [(h.size, h.root) for h in self.contracts.anchored_heads(account)]


@pytest.fixture
def world(tmp_path: Path, template: tuple[Path, Deployment]) -> Iterator[World]:
    path, deployment = template
    shutil.copy(path, tmp_path / "chain.sqlite")
    chain = Chain.open_embedded(tmp_path / "chain.sqlite")
    network = Network()
    network.attach(chain.w3)
    db = Database.sqlite(tmp_path / "libshare.sqlite")
    clock = Clock(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))
    yield World(chain, ConsortiumContracts(chain, deployment), db, network, clock, tmp_path)
    db.close()
    chain.close()


def _grow(trail: Trail, n: int) -> None:
    with trail.appending() as appender:
        for _ in range(n):
            appender.append(b'{"entry":%d}' % appender.size)


def _enqueue_anchor(
    w: World, outbox: Outbox, member: LocalAccount, trail: Trail, old: int, grow: int
) -> int:
    """Grow ``trail`` by ``grow`` entries and queue its head with a proof from size ``old``."""
    _grow(trail, grow)
    head = trail.head()
    proof = trail.consistency_proof(old, head.size) if old else []
    fn = w.contracts.trail.functions.anchor(head.size, head.root, proof)
    return outbox.enqueue("anchor", f"anchor:{member.address}:{head.size}", member.address, fn)


# -- the happy path and idempotency ----------------------------------------------------


def test_enqueued_anchor_drains_to_confirmed_with_its_receipt(world: World) -> None:
    outbox = world.outbox()
    trail = world.trail("CN-A")
    row_id = _enqueue_anchor(world, outbox, MEMBER_A, trail, 0, 5)
    assert outbox.get(row_id).state == OutboxState.QUEUED

    report = outbox.drain(timeout_s=10)

    row = outbox.get(row_id)
    receipt = outbox.receipt(row_id)
    assert (report.confirmed, report.remaining, row.state) == (1, 0, OutboxState.CONFIRMED)
    assert receipt is not None and receipt["status"] == 1
    assert receipt["blockNumber"] == row.receipt_block
    assert "0x" + bytes(receipt["transactionHash"]).hex() == row.tx_hash
    assert world.contracts.head_of(MEMBER_A.address) == (5, trail.head().root)


def test_enqueue_with_the_same_key_keeps_one_row_and_sends_one_transaction(world: World) -> None:
    outbox = world.outbox()
    trail = world.trail("CN-A")
    _grow(trail, 3)
    fn = world.contracts.trail.functions.anchor(3, trail.head().root, [])

    first = outbox.enqueue("anchor", "anchor:A:3", MEMBER_A.address, fn)
    second = outbox.enqueue("anchor", "anchor:A:3", MEMBER_A.address, fn)
    outbox.drain(timeout_s=10)
    third = outbox.enqueue("anchor", "anchor:A:3", MEMBER_A.address, fn)

    assert first == second == third
    assert outbox.stats() == {"queued": 0, "signed": 0, "sent": 0, "confirmed": 1, "failed": 0}
    assert world.network.calls["eth_sendRawTransaction"] == 1
    assert world.anchor_events(MEMBER_A.address) == [(3, trail.head().root)]


def test_reusing_a_key_for_a_different_write_is_a_conflict(world: World) -> None:
    outbox = world.outbox()
    anchor = world.contracts.trail.functions.anchor
    outbox.enqueue("anchor", "anchor:A:1", MEMBER_A.address, anchor(1, b"\x01" * 32, []))
    with pytest.raises(Conflict, match=r"key 'anchor:A:1' is already used by row 1"):
        outbox.enqueue("anchor", "anchor:A:1", MEMBER_A.address, anchor(1, b"\x02" * 32, []))


def test_rows_of_one_sender_confirm_in_enqueue_order_with_consecutive_nonces(
    world: World,
) -> None:
    outbox = world.outbox()
    trail = world.trail("CN-A")
    ids = [
        _enqueue_anchor(world, outbox, MEMBER_A, trail, 0, 2),
        _enqueue_anchor(world, outbox, MEMBER_A, trail, 2, 2),
        _enqueue_anchor(world, outbox, MEMBER_A, trail, 4, 3),
    ]

    outbox.drain(timeout_s=10)

    rows = [outbox.get(i) for i in ids]
    assert [r.state for r in rows] == [OutboxState.CONFIRMED] * 3
    assert [r.nonce for r in rows] == [0, 1, 2]
    assert [size for size, _ in world.anchor_events(MEMBER_A.address)] == [2, 4, 7]


# -- crashes ------------------------------------------------------------------------------


def test_crash_after_signing_before_sending_sends_the_same_bytes_once_on_restart(
    world: World,
) -> None:
    trail = world.trail("CN-A")
    row_id = _enqueue_anchor(world, world.outbox(), MEMBER_A, trail, 0, 4)
    world.network.crash_before = "eth_sendRawTransaction"
    with pytest.raises(Crash):
        world.outbox().process()
    signed = world.outbox().get(row_id)
    assert signed.state == OutboxState.SIGNED and signed.raw_tx and signed.nonce == 0
    assert world.anchor_events(MEMBER_A.address) == []

    report = world.outbox().drain(timeout_s=10)

    row = world.outbox().get(row_id)
    assert (report.confirmed, row.state) == (1, OutboxState.CONFIRMED)
    assert (row.raw_tx, row.tx_hash) == (signed.raw_tx, signed.tx_hash)
    assert world.network.calls["eth_sendRawTransaction"] == 1
    assert world.anchor_events(MEMBER_A.address) == [(4, trail.head().root)]


def test_crash_after_sending_before_marking_sent_finds_the_receipt_without_a_second_anchor(
    world: World,
) -> None:
    trail = world.trail("CN-A")
    row_id = _enqueue_anchor(world, world.outbox(), MEMBER_A, trail, 0, 4)
    world.network.crash_after = "eth_sendRawTransaction"
    with pytest.raises(Crash):
        world.outbox().process()
    assert world.outbox().get(row_id).state == OutboxState.SIGNED
    assert len(world.anchor_events(MEMBER_A.address)) == 1

    report = world.outbox().drain(timeout_s=10)

    assert (report.confirmed, world.outbox().get(row_id).state) == (1, OutboxState.CONFIRMED)
    assert world.anchor_events(MEMBER_A.address) == [(4, trail.head().root)]
    assert world.chain.mined_nonce(MEMBER_A.address) == 1


# -- an unreachable or forgetful node -------------------------------------------------------


def test_unreachable_node_keeps_rows_queued_with_backoff_then_drains_when_it_returns(
    world: World,
) -> None:
    outbox = world.outbox(backoff=(1, 2, 5))
    trail = world.trail("CN-A")
    ids = [
        _enqueue_anchor(world, outbox, MEMBER_A, trail, 0, 2),
        _enqueue_anchor(world, outbox, MEMBER_A, trail, 2, 2),
    ]
    world.network.down = True
    start = world.clock.now

    first = outbox.process()
    again_at_once = outbox.process()
    world.clock.advance(1)
    after_backoff = outbox.process()

    row = outbox.get(ids[0])
    assert first.unavailable and not again_at_once.retried and after_backoff.retried == 1
    assert (row.state, row.attempts) == (OutboxState.QUEUED, 2)
    assert row.next_attempt_at == start + timedelta(seconds=3)
    assert "cannot reach" in (row.last_error or "")

    stalled = outbox.drain(timeout_s=30)
    assert stalled.remaining == 2 and stalled.unavailable
    assert outbox.stats()["queued"] == 2 and world.clock.slept <= 31

    world.network.down = False
    drained = outbox.drain(timeout_s=30)

    assert (drained.confirmed, drained.remaining) == (2, 0)
    assert [outbox.get(i).nonce for i in ids] == [0, 1]
    assert [size for size, _ in world.anchor_events(MEMBER_A.address)] == [2, 4]


def test_node_lost_after_sending_leaves_the_row_sent_until_it_answers(world: World) -> None:
    outbox = world.outbox()
    trail = world.trail("CN-A")
    row_id = _enqueue_anchor(world, outbox, MEMBER_A, trail, 0, 3)
    world.network.down_after = "eth_sendRawTransaction"

    report = outbox.process()

    row = outbox.get(row_id)
    assert report.unavailable and (row.state, row.attempts) == (OutboxState.SENT, 1)
    world.network.down = False
    assert outbox.drain(timeout_s=10).confirmed == 1
    assert world.network.calls["eth_sendRawTransaction"] == 1
    assert len(world.anchor_events(MEMBER_A.address)) == 1


def test_transaction_lost_on_the_way_is_sent_again_with_the_same_bytes(world: World) -> None:
    outbox = world.outbox(resend_after_s=60)
    trail = world.trail("CN-A")
    row_id = _enqueue_anchor(world, outbox, MEMBER_A, trail, 0, 3)
    world.network.lose = "eth_sendRawTransaction"

    outbox.process()
    world.clock.advance(30)
    outbox.process()
    waiting = outbox.get(row_id)
    world.clock.advance(31)
    outbox.process()

    row = outbox.get(row_id)
    assert waiting.state == OutboxState.SENT and waiting.receipt_block is None
    assert row.state == OutboxState.CONFIRMED and row.tx_hash == waiting.tx_hash
    assert world.network.calls["eth_sendRawTransaction"] == 1  # the one that got through
    assert len(world.anchor_events(MEMBER_A.address)) == 1


# -- reverts and nonces ---------------------------------------------------------------------


def test_write_reverting_at_its_call_fails_with_the_custom_error_and_spends_no_nonce(
    world: World,
) -> None:
    outbox = world.outbox()
    trail = world.trail("CN-A")
    _grow(trail, 4)
    bad = world.contracts.trail.functions.anchor(4, trail.head().root, [b"\x00" * 32])
    bad_id = outbox.enqueue("anchor", "anchor:bad", MEMBER_A.address, bad)
    good_id = _enqueue_anchor(world, outbox, MEMBER_A, trail, 0, 1)

    report = outbox.drain(timeout_s=10)

    failed, good = outbox.get(bad_id), outbox.get(good_id)
    assert (report.failed, report.confirmed) == (1, 1)
    assert failed.state == OutboxState.FAILED and failed.nonce is None
    assert failed.error_name == "TrailAnchorInvalidProofLength"
    assert failed.error_args == '{"previousSize": 0, "size": 4, "proofLength": 1}'
    assert (good.state, good.nonce) == (OutboxState.CONFIRMED, 0)
    assert world.chain.mined_nonce(MEMBER_A.address) == 1


def test_mined_revert_fails_with_the_replayed_error_and_the_next_row_takes_the_next_nonce(
    world: World,
) -> None:
    contracts = world.contracts
    proposal = contracts.propose_admission(
        MEMBER_A, FounderInput("CN-C", 1, "CN", CANDIDATE.address)
    )
    contracts.approve_admission(MEMBER_A, proposal)
    execute = contracts.consortium.functions.executeAdmission(proposal)
    late_id = world.outbox().enqueue("admit", "admit:1", MEMBER_B.address, execute)
    world.network.crash_before = "eth_sendRawTransaction"
    with pytest.raises(Crash):
        world.outbox().process()
    contracts.execute_admission(MEMBER_A, proposal)  # A gets there first
    outbox = world.outbox()
    next_id = _enqueue_anchor(world, outbox, MEMBER_B, world.trail("CN-B"), 0, 2)

    report = outbox.drain(timeout_s=10)

    late, following = outbox.get(late_id), outbox.get(next_id)
    assert (report.failed, report.confirmed) == (1, 1)
    assert late.state == OutboxState.FAILED and late.receipt_block is not None
    assert late.error_name == "ConsortiumProposalAlreadyExecuted"
    assert "ConsortiumProposalAlreadyExecuted(proposalId=1)" in (late.last_error or "")
    assert (late.nonce, following.nonce) == (0, 1)
    assert world.chain.mined_nonce(MEMBER_B.address) == 2


def test_signed_row_whose_nonce_another_writer_used_fails_and_the_next_row_proceeds(
    world: World,
) -> None:
    trail = world.trail("CN-A")
    stolen_id = _enqueue_anchor(world, world.outbox(), MEMBER_A, trail, 0, 2)
    world.network.crash_before = "eth_sendRawTransaction"
    with pytest.raises(Crash):
        world.outbox().process()
    # Another writer with the same key anchors a smaller head directly, taking nonce 0.
    world.contracts.anchor_head(MEMBER_A, 1, trail.root_at(1), [])
    outbox = world.outbox()
    next_id = _enqueue_anchor(world, outbox, MEMBER_A, trail, 1, 2)

    outbox.drain(timeout_s=10)

    stolen, following = outbox.get(stolen_id), outbox.get(next_id)
    assert stolen.state == OutboxState.FAILED
    assert stolen.last_error == "nonce 0 was used by another transaction"
    assert (following.state, following.nonce) == (OutboxState.CONFIRMED, 1)
    assert [size for size, _ in world.anchor_events(MEMBER_A.address)] == [1, 4]


# -- anchoring through the outbox --------------------------------------------------------------


@pytest.fixture
def instance(world: World) -> Iterator[Instance]:
    """An instance over a copy of the world's chain, its own database and keystore."""
    data_dir = world.tmp_path / "data"
    data_dir.mkdir()
    world.chain.close()
    shutil.copy(world.tmp_path / "chain.sqlite", data_dir / "chain.sqlite")
    world.contracts.deployment.save(data_dir / "deployment.json")
    inst = Instance(InstanceConfig(data_dir, "pw", scrypt_n=LIGHT_SCRYPT_N))
    world.network.attach(inst.chain.w3)
    yield inst
    inst.close()


def _instance_outbox(instance: Instance, clock: Clock) -> Outbox:
    return Outbox(instance.db, instance.chain, KEYS.__getitem__, clock, sleep=clock.sleep)


def test_queue_anchor_chains_queued_heads_while_the_node_is_down_then_anchors_them(
    world: World, instance: Instance
) -> None:
    outbox = _instance_outbox(instance, world.clock)
    trail = instance.access.trail("CN-A")
    world.network.down = True
    _grow(trail, 3)
    first = queue_anchor(instance, outbox, "CN-A", MEMBER_A.address)
    _grow(trail, 4)
    second = queue_anchor(instance, outbox, "CN-A", MEMBER_A)
    assert first is not None and second is not None
    assert outbox.get(second).idempotency_key == f"anchor:{MEMBER_A.address}:3:7"

    world.network.down = False
    report = outbox.drain(timeout_s=30)

    assert (report.confirmed, report.remaining) == (2, 0)
    heads = instance.require_contracts().anchored_heads(MEMBER_A.address)
    assert [h.size for h in heads] == [3, 7]
    assert verify_member_trail(instance, "CN-A", MEMBER_A.address).anchored_size == 7


def test_queue_anchor_returns_none_when_the_head_is_already_anchored_or_queued(
    world: World, instance: Instance
) -> None:
    outbox = _instance_outbox(instance, world.clock)
    assert queue_anchor(instance, outbox, "CN-A", MEMBER_A.address) is None  # empty trail
    _grow(instance.access.trail("CN-A"), 2)
    row_id = queue_anchor(instance, outbox, "CN-A", MEMBER_A.address)
    assert queue_anchor(instance, outbox, "CN-A", MEMBER_A.address) is None  # queued
    outbox.drain(timeout_s=10)
    assert outbox.get(row_id or 0).state == OutboxState.CONFIRMED
    assert queue_anchor(instance, outbox, "CN-A", MEMBER_A.address) is None  # anchored


def test_queue_anchor_after_a_failed_anchor_starts_again_from_the_anchored_head(
    world: World, instance: Instance
) -> None:
    outbox = _instance_outbox(instance, world.clock)
    trail = instance.access.trail("CN-A")
    _grow(trail, 2)
    queue_anchor(instance, outbox, "CN-A", MEMBER_A.address)
    outbox.drain(timeout_s=10)
    _grow(trail, 2)
    world.network.down = True  # the index cannot learn what happens next
    doomed = queue_anchor(instance, outbox, "CN-A", MEMBER_A.address)
    world.network.down = False
    instance.require_contracts().anchor_head(  # another writer anchors size 4 first
        MEMBER_A, 4, trail.head().root, trail.consistency_proof(2, 4)
    )
    outbox.drain(timeout_s=10)
    assert outbox.get(doomed or 0).error_name == "TrailAnchorSizeNotIncreasing"

    _grow(trail, 1)
    again = queue_anchor(instance, outbox, "CN-A", MEMBER_A.address)
    outbox.drain(timeout_s=10)

    assert again is not None and outbox.get(again).state == OutboxState.CONFIRMED
    assert outbox.get(again).idempotency_key.endswith(":4:5")
    assert verify_member_trail(instance, "CN-A", MEMBER_A.address).anchored_size == 5
