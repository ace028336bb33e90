"""The chain client: every revert as ContractReverted with the decoded custom error, and
several transactions in flight at once."""

from __future__ import annotations

import pytest
from web3.contract.contract import ContractFunction

from ledger.errors import ChainError, ContractReverted
from ledger.onchain import ConsortiumContracts, FounderInput, ResourceInput, resource_ids_of
from ledger.types import sha256
from tests.conftest import Consortium


def test_a_reverting_write_raises_the_contracts_custom_error(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    with pytest.raises(ContractReverted, match="ConsortiumUnknownProposal") as info:
        contracts.execute_admission(consortium.members["CN-A"].account, 99)
    assert info.value.error == "ConsortiumUnknownProposal"
    assert info.value.error_args == {"proposalId": 99}


def test_a_non_member_cannot_propose_and_is_told_why(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    candidate = FounderInput("CN-C", 3, "CN", consortium.admin.account.address)
    with pytest.raises(ContractReverted, match="ConsortiumNotMember"):
        contracts.propose_admission(consortium.admin.account, candidate)


def test_a_reverting_view_raises_the_custom_error(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    fn = contracts.consortium.functions.memberOf(consortium.admin.account.address)
    with pytest.raises(ContractReverted, match="ConsortiumNotMember"):
        consortium.instance.chain.call(fn)


# -- several transactions in flight ------------------------------------------------------


def _batch(contracts: ConsortiumContracts, tag: str) -> ContractFunction:
    content = sha256(tag.encode())
    item = ResourceInput(content, b"\x12\x20" + sha256(b"stored " + content), content, 0)
    return contracts.resources.functions.registerBatch(item.packed())


def test_transact_many_returns_every_mined_transaction_in_order(consortium: Consortium) -> None:
    contracts = consortium.instance.require_contracts()
    owner = consortium.members["CN-A"].account
    tags = [f"in flight {i}" for i in range(3)]

    mined = consortium.instance.chain.transact_many(
        owner, [_batch(contracts, tag) for tag in tags], in_flight=2
    )

    ids = resource_ids_of(owner.address, [sha256(tag.encode()) for tag in tags])
    assert [tx.logs[0].topics[1] for tx in mined] == ids
    assert [tx.block for tx in mined] == sorted({tx.block for tx in mined})
    assert all(tx.gas_used > 21_000 for tx in mined)
    assert all(tx.logs[0].address == contracts.resources.address.lower() for tx in mined)


def test_transact_many_stops_at_the_first_revert_and_keeps_what_came_before(
    consortium: Consortium,
) -> None:
    contracts = consortium.instance.require_contracts()
    owner = consortium.members["CN-A"].account
    calls = [_batch(contracts, "kept"), _batch(contracts, "kept"), _batch(contracts, "never sent")]

    with pytest.raises(ContractReverted, match="ResourceRegistryAlreadyRegistered"):
        consortium.instance.chain.transact_many(owner, calls, in_flight=3)

    kept, never = resource_ids_of(owner.address, [sha256(b"kept"), sha256(b"never sent")])
    assert consortium.instance.chain.call(contracts.resources.functions.exists(kept))
    assert not consortium.instance.chain.call(contracts.resources.functions.exists(never))


def test_transact_many_needs_room_for_one_transaction(consortium: Consortium) -> None:
    owner = consortium.members["CN-A"].account
    with pytest.raises(ChainError, match="in_flight must be at least 1"):
        consortium.instance.chain.transact_many(owner, [], in_flight=0)
