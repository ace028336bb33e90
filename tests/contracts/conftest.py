"""The four contracts deployed once on the in-process EVM, rolled back after each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_tester import EthereumTester, PyEVMBackend
from evm_support import APPROVALS_REQUIRED, FOUNDERS, Deployment
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.types import TxReceipt

from ledger.contracts import load_artifact


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    provider = w3.provider
    assert isinstance(provider, EthereumTesterProvider)
    accounts = w3.eth.accounts
    admin, a, b, c, candidate, auditor, delivery, outsider, spare = accounts[:9]

    def deploy(name: str, *args: Any) -> tuple[Contract, TxReceipt]:
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).transact({"from": admin})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        address = receipt["contractAddress"]
        return w3.eth.contract(address=address, abi=artifact.abi), receipt

    founders = [
        (lib, tier, country, acct)
        for (lib, tier, country), acct in zip(FOUNDERS, (a, b, c), strict=True)
    ]
    consortium, consortium_receipt = deploy("Consortium", APPROVALS_REQUIRED, founders)
    licences, _ = deploy("LicenceRegistry", consortium.address)
    resources, _ = deploy("ResourceRegistry", consortium.address, licences.address)
    anchor, _ = deploy("TrailAnchor", consortium.address)
    for role, account in ((b"AUDITOR", auditor), (b"DELIVERY", delivery)):
        tx = consortium.functions.grantRole(Web3.keccak(role), account).transact({"from": admin})
        w3.eth.wait_for_transaction_receipt(tx)
    return Deployment(
        w3=w3,
        tester=provider.ethereum_tester,
        consortium=consortium,
        licences=licences,
        resources=resources,
        anchor=anchor,
        consortium_receipt=consortium_receipt,
        admin=admin,
        a=a,
        b=b,
        c=c,
        candidate=candidate,
        auditor=auditor,
        delivery=delivery,
        outsider=outsider,
        spare=spare,
    )


@pytest.fixture
def d(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment, rolled back to its initial state after the test."""
    snapshot = deployment.tester.take_snapshot()
    try:
        yield deployment
    finally:
        deployment.tester.revert_to_snapshot(snapshot)
