"""Shared helpers of the contract tests: the deployment, and asserting decoded reverts.

Accounts: ``admin`` deploys (ADMIN_ROLE); ``a``, ``b``, ``c`` are the founding members
(two approvals admit a new member); ``candidate`` is free to be admitted; ``auditor``
and ``delivery`` hold those roles only; ``outsider`` holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from ledger.contracts import all_abis, decode_revert, load_artifact, revert_data_from

APPROVALS_REQUIRED = 2
TX_GAS = 15_000_000
FOUNDERS = (("CN-A", 1, b"CN"), ("CN-B", 2, b"CN"), ("DE-C", 3, b"DE"))


@dataclass
class Deployment:
    w3: Web3
    tester: EthereumTester
    consortium: Contract
    licences: Contract
    resources: Contract
    anchor: Contract
    consortium_receipt: TxReceipt
    admin: str
    a: str
    b: str
    c: str
    candidate: str
    auditor: str
    delivery: str
    outsider: str
    spare: str

    def send(self, fn: Any, sender: str) -> TxReceipt:
        """Transact ``fn`` from ``sender`` and return its (successful) receipt.

        A revert is raised by a preceding ``eth_call``: that is much faster on the
        in-process EVM than web3's gas estimation, a binary search of a dozen executions.
        """
        fn.call({"from": sender})
        tx = fn.transact({"from": sender, "gas": TX_GAS})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        return receipt

    def events(self, contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
        """The ``name`` events ``contract`` emitted in ``receipt``, as dicts of their args."""
        decoded = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
        return [dict(event["args"]) for event in decoded]

    def deploy(self, name: str, *args: Any, sender: str | None = None) -> Contract:
        """Deploy another instance of ``name``."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        # Gas estimation runs the constructor, so a revert is raised here.
        tx = factory.constructor(*args).transact({"from": sender or self.admin})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)

    @property
    def members(self) -> tuple[str, str, str]:
        return (self.a, self.b, self.c)

    @property
    def non_members(self) -> tuple[str, ...]:
        """Accounts that must not write: no role, auditor, delivery, and the admin."""
        return (self.outsider, self.auditor, self.delivery, self.admin)


@contextmanager
def expect_revert(name: str, **args: Any) -> Iterator[None]:
    """Assert the block reverts with the custom error ``name`` (and ``args``, if given)."""
    with pytest.raises((TransactionFailed, ContractLogicError)) as info:
        yield
    data = revert_data_from(info.value)
    assert data is not None, f"no revert data in {info.value!r}"
    decoded = decode_revert(all_abis(), data)
    assert decoded is not None, f"undecodable revert data 0x{data.hex()} in {info.value!r}"
    got_name, got_args = decoded
    assert got_name == name, f"reverted with {got_name}({got_args}), expected {name}"
    for key, want in args.items():
        assert key in got_args, f"{got_name} has no argument {key!r}: {got_args}"
        assert got_args[key] == want, f"{got_name}.{key} is {got_args[key]!r}, expected {want!r}"
