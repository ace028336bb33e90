"""The chain client turns every revert into ContractReverted with the decoded custom error."""

from __future__ import annotations

import pytest

from ledger.errors import ContractReverted
from ledger.onchain import FounderInput
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
