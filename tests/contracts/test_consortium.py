"""Consortium: founders, governed admission, roles."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak
from evm_support import APPROVALS_REQUIRED, FOUNDERS, Deployment, expect_revert
from web3 import Web3

ZERO = "0x0000000000000000000000000000000000000000"
ADMIN_ROLE = b"\x00" * 32
MEMBER_ROLE = keccak(text="MEMBER")
AUDITOR_ROLE = keccak(text="AUDITOR")
DELIVERY_ROLE = keccak(text="DELIVERY")


def candidate_of(d: Deployment, library_id: str = "FR-D", account: str | None = None):
    return (library_id, 2, b"FR", account or d.candidate)


def propose(d: Deployment, candidate=None, proposer: str | None = None) -> int:
    fn = d.consortium.functions.proposeAdmission(candidate or candidate_of(d))
    proposal_id = fn.call({"from": proposer or d.a})
    d.send(fn, proposer or d.a)
    return int(proposal_id)


def approve_by(d: Deployment, proposal_id: int, *members: str) -> None:
    for member in members:
        d.send(d.consortium.functions.approveAdmission(proposal_id), member)


# -- deployment ----------------------------------------------------------------------------


def test_roles_are_the_documented_constants(d: Deployment) -> None:
    f = d.consortium.functions
    assert f.ADMIN_ROLE().call() == ADMIN_ROLE == f.DEFAULT_ADMIN_ROLE().call()
    assert f.MEMBER_ROLE().call() == MEMBER_ROLE
    assert f.AUDITOR_ROLE().call() == AUDITOR_ROLE
    assert f.DELIVERY_ROLE().call() == DELIVERY_ROLE
    assert f.getRoleAdmin(MEMBER_ROLE).call() == ADMIN_ROLE


def test_deployer_becomes_admin_and_founders_become_members(d: Deployment) -> None:
    f = d.consortium.functions
    assert f.hasRole(ADMIN_ROLE, d.admin).call()
    assert not f.isMember(d.admin).call()
    assert [f.isMember(m).call() for m in d.members] == [True, True, True]
    assert [f.hasRole(MEMBER_ROLE, m).call() for m in d.members] == [True, True, True]
    assert f.memberCount().call() == 3
    assert f.approvalsRequired().call() == APPROVALS_REQUIRED
    assert f.proposalCount().call() == 0


def test_deployment_emits_member_admitted_per_founder(d: Deployment) -> None:
    admitted = d.events(d.consortium, "MemberAdmitted", d.consortium_receipt)
    assert admitted == [
        {"account": acct, "libraryId": lib, "tier": tier, "country": country}
        for (lib, tier, country), acct in zip(FOUNDERS, d.members, strict=True)
    ]
    granted = d.events(d.consortium, "RoleGranted", d.consortium_receipt)
    assert [(g["role"], g["account"]) for g in granted] == [(ADMIN_ROLE, d.admin)] + [
        (MEMBER_ROLE, m) for m in d.members
    ]


def test_member_of_returns_the_founders_record(d: Deployment) -> None:
    record = d.consortium.functions.memberOf(d.b).call()
    assert record == ["CN-B", 2, b"CN", d.b, d.consortium_receipt["blockNumber"]] or record == (
        "CN-B",
        2,
        b"CN",
        d.b,
        d.consortium_receipt["blockNumber"],
    )


def test_account_of_finds_a_member_by_library_id(d: Deployment) -> None:
    assert d.consortium.functions.accountOf("DE-C").call() == d.c


@pytest.mark.parametrize("required", [0, 4])
def test_threshold_outside_one_to_founders_is_rejected(d: Deployment, required: int) -> None:
    founders = [("CN-A", 1, b"CN", d.a), ("CN-B", 1, b"CN", d.b), ("CN-C", 1, b"CN", d.c)]
    with expect_revert("ConsortiumInvalidThreshold", required=required, members=3):
        d.deploy("Consortium", required, founders)


def test_consortium_without_founders_is_rejected(d: Deployment) -> None:
    with expect_revert("ConsortiumInvalidThreshold", required=1, members=0):
        d.deploy("Consortium", 1, [])


def test_founders_with_the_same_account_are_rejected(d: Deployment) -> None:
    founders = [("CN-A", 1, b"CN", d.a), ("CN-B", 1, b"CN", d.a)]
    with expect_revert("ConsortiumAlreadyMember", account=d.a):
        d.deploy("Consortium", 1, founders)


def test_founders_with_the_same_library_id_are_rejected(d: Deployment) -> None:
    founders = [("CN-A", 1, b"CN", d.a), ("CN-A", 1, b"CN", d.b)]
    with expect_revert("ConsortiumLibraryIdTaken", libraryId="CN-A"):
        d.deploy("Consortium", 1, founders)


@pytest.mark.parametrize("library_id, zero_account", [("", False), ("CN-A", True)])
def test_founder_without_library_id_or_account_is_rejected(
    d: Deployment, library_id: str, zero_account: bool
) -> None:
    account = ZERO if zero_account else d.a
    with expect_revert("ConsortiumInvalidCandidate", libraryId=library_id, account=account):
        d.deploy("Consortium", 1, [(library_id, 1, b"CN", account)])


# -- views -----------------------------------------------------------------------------------


def test_member_of_a_non_member_reverts(d: Deployment) -> None:
    with expect_revert("ConsortiumNotMember", account=d.outsider):
        d.consortium.functions.memberOf(d.outsider).call()


def test_account_of_an_unknown_library_reverts(d: Deployment) -> None:
    with expect_revert("ConsortiumUnknownLibrary", libraryId="XX-NONE"):
        d.consortium.functions.accountOf("XX-NONE").call()


@pytest.mark.parametrize("proposal_id", [0, 1])
def test_unknown_proposal_reverts(d: Deployment, proposal_id: int) -> None:
    with expect_revert("ConsortiumUnknownProposal", proposalId=proposal_id):
        d.consortium.functions.proposal(proposal_id).call()


def test_supports_the_access_control_interface(d: Deployment) -> None:
    f = d.consortium.functions
    assert f.supportsInterface(bytes.fromhex("7965db0b")).call()  # IAccessControl
    assert f.supportsInterface(bytes.fromhex("01ffc9a7")).call()  # IERC165
    assert not f.supportsInterface(bytes.fromhex("ffffffff")).call()


# -- admission -------------------------------------------------------------------------------


def test_proposal_ids_start_at_one_and_increase(d: Deployment) -> None:
    assert propose(d) == 1
    assert propose(d, candidate_of(d, "FR-E", d.spare), proposer=d.b) == 2
    assert d.consortium.functions.proposalCount().call() == 2


def test_proposing_emits_admission_proposed_and_records_the_candidate(d: Deployment) -> None:
    receipt = d.send(d.consortium.functions.proposeAdmission(candidate_of(d)), d.a)
    assert d.events(d.consortium, "AdmissionProposed", receipt) == [
        {"proposalId": 1, "proposer": d.a, "libraryId": "FR-D", "account": d.candidate}
    ]
    candidate, approvals, executed = d.consortium.functions.proposal(1).call()
    assert tuple(candidate) == ("FR-D", 2, b"FR", d.candidate)
    assert (approvals, executed) == (0, False)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin", "candidate"])
def test_non_member_cannot_propose_admission(d: Deployment, who: str) -> None:
    sender = getattr(d, who)
    with expect_revert("ConsortiumNotMember", account=sender):
        d.send(d.consortium.functions.proposeAdmission(candidate_of(d)), sender)


def test_proposing_an_existing_member_is_rejected(d: Deployment) -> None:
    with expect_revert("ConsortiumAlreadyMember", account=d.b):
        d.send(d.consortium.functions.proposeAdmission(candidate_of(d, account=d.b)), d.a)


def test_proposing_a_taken_library_id_is_rejected(d: Deployment) -> None:
    with expect_revert("ConsortiumLibraryIdTaken", libraryId="CN-B"):
        d.send(d.consortium.functions.proposeAdmission(candidate_of(d, "CN-B")), d.a)


@pytest.mark.parametrize("library_id, zero_account", [("", False), ("FR-D", True)])
def test_proposing_a_candidate_without_id_or_account_is_rejected(
    d: Deployment, library_id: str, zero_account: bool
) -> None:
    account = ZERO if zero_account else d.candidate
    with expect_revert("ConsortiumInvalidCandidate", libraryId=library_id, account=account):
        d.send(d.consortium.functions.proposeAdmission((library_id, 1, b"FR", account)), d.a)


def test_approvals_are_counted_and_emitted(d: Deployment) -> None:
    pid = propose(d)
    r1 = d.send(d.consortium.functions.approveAdmission(pid), d.a)
    r2 = d.send(d.consortium.functions.approveAdmission(pid), d.c)
    assert d.events(d.consortium, "AdmissionApproved", r1) == [
        {"proposalId": pid, "approver": d.a, "approvals": 1}
    ]
    assert d.events(d.consortium, "AdmissionApproved", r2) == [
        {"proposalId": pid, "approver": d.c, "approvals": 2}
    ]
    assert d.consortium.functions.proposal(pid).call()[1] == 2
    f = d.consortium.functions
    assert [f.hasApproved(pid, m).call() for m in d.members] == [True, False, True]


def test_member_cannot_approve_twice(d: Deployment) -> None:
    pid = propose(d)
    approve_by(d, pid, d.b)
    with expect_revert("ConsortiumAlreadyApproved", proposalId=pid, approver=d.b):
        d.send(d.consortium.functions.approveAdmission(pid), d.b)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin", "candidate"])
def test_non_member_cannot_approve(d: Deployment, who: str) -> None:
    pid = propose(d)
    sender = getattr(d, who)
    with expect_revert("ConsortiumNotMember", account=sender):
        d.send(d.consortium.functions.approveAdmission(pid), sender)


def test_approving_an_unknown_proposal_reverts(d: Deployment) -> None:
    with expect_revert("ConsortiumUnknownProposal", proposalId=7):
        d.send(d.consortium.functions.approveAdmission(7), d.a)


def test_execution_below_the_threshold_reverts(d: Deployment) -> None:
    pid = propose(d)
    approve_by(d, pid, d.a)
    with expect_revert("ConsortiumNotEnoughApprovals", proposalId=pid, approvals=1, required=2):
        d.send(d.consortium.functions.executeAdmission(pid), d.a)


def test_executed_admission_admits_the_candidate(d: Deployment) -> None:
    pid = propose(d)
    approve_by(d, pid, d.a, d.b)
    receipt = d.send(d.consortium.functions.executeAdmission(pid), d.c)
    assert d.events(d.consortium, "MemberAdmitted", receipt) == [
        {"account": d.candidate, "libraryId": "FR-D", "tier": 2, "country": b"FR"}
    ]
    granted = d.events(d.consortium, "RoleGranted", receipt)
    assert [(g["role"], g["account"], g["sender"]) for g in granted] == [
        (MEMBER_ROLE, d.candidate, d.c)
    ]
    f = d.consortium.functions
    assert f.isMember(d.candidate).call()
    assert f.memberCount().call() == 4
    assert f.accountOf("FR-D").call() == d.candidate
    assert tuple(f.memberOf(d.candidate).call()) == (
        "FR-D",
        2,
        b"FR",
        d.candidate,
        receipt["blockNumber"],
    )
    assert f.proposal(pid).call()[2] is True


def test_admitted_member_can_vote_on_the_next_admission(d: Deployment) -> None:
    pid = propose(d)
    approve_by(d, pid, d.a, d.b)
    d.send(d.consortium.functions.executeAdmission(pid), d.a)
    second = propose(d, candidate_of(d, "FR-E", d.spare), proposer=d.candidate)
    approve_by(d, second, d.candidate, d.c)
    d.send(d.consortium.functions.executeAdmission(second), d.candidate)
    assert d.consortium.functions.isMember(d.spare).call()


def test_executed_proposal_cannot_be_executed_or_approved_again(d: Deployment) -> None:
    pid = propose(d)
    approve_by(d, pid, d.a, d.b)
    d.send(d.consortium.functions.executeAdmission(pid), d.a)
    with expect_revert("ConsortiumProposalAlreadyExecuted", proposalId=pid):
        d.send(d.consortium.functions.executeAdmission(pid), d.a)
    with expect_revert("ConsortiumProposalAlreadyExecuted", proposalId=pid):
        d.send(d.consortium.functions.approveAdmission(pid), d.c)


def test_executing_an_unknown_proposal_reverts(d: Deployment) -> None:
    with expect_revert("ConsortiumUnknownProposal", proposalId=1):
        d.send(d.consortium.functions.executeAdmission(1), d.a)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin", "candidate"])
def test_non_member_cannot_execute(d: Deployment, who: str) -> None:
    pid = propose(d)
    approve_by(d, pid, d.a, d.b)
    sender = getattr(d, who)
    with expect_revert("ConsortiumNotMember", account=sender):
        d.send(d.consortium.functions.executeAdmission(pid), sender)


def test_second_proposal_for_an_admitted_account_cannot_be_executed(d: Deployment) -> None:
    first = propose(d)
    second = propose(d, candidate_of(d, "FR-OTHER"))
    for pid in (first, second):
        approve_by(d, pid, d.a, d.b)
    d.send(d.consortium.functions.executeAdmission(first), d.a)
    with expect_revert("ConsortiumAlreadyMember", account=d.candidate):
        d.send(d.consortium.functions.executeAdmission(second), d.a)


def test_second_proposal_for_a_taken_library_id_cannot_be_executed(d: Deployment) -> None:
    first = propose(d)
    second = propose(d, candidate_of(d, "FR-D", d.spare))
    for pid in (first, second):
        approve_by(d, pid, d.a, d.b)
    d.send(d.consortium.functions.executeAdmission(first), d.a)
    with expect_revert("ConsortiumLibraryIdTaken", libraryId="FR-D"):
        d.send(d.consortium.functions.executeAdmission(second), d.a)


# -- roles -----------------------------------------------------------------------------------


def test_admin_grants_and_revokes_the_auditor_role(d: Deployment) -> None:
    f = d.consortium.functions
    granted = d.send(f.grantRole(AUDITOR_ROLE, d.spare), d.admin)
    assert d.events(d.consortium, "RoleGranted", granted) == [
        {"role": AUDITOR_ROLE, "account": d.spare, "sender": d.admin}
    ]
    assert f.hasRole(AUDITOR_ROLE, d.spare).call()
    revoked = d.send(f.revokeRole(AUDITOR_ROLE, d.spare), d.admin)
    assert d.events(d.consortium, "RoleRevoked", revoked) == [
        {"role": AUDITOR_ROLE, "account": d.spare, "sender": d.admin}
    ]
    assert not f.hasRole(AUDITOR_ROLE, d.spare).call()


def test_admin_granted_the_delivery_role_at_setup(d: Deployment) -> None:
    f = d.consortium.functions
    assert f.hasRole(DELIVERY_ROLE, d.delivery).call()
    assert f.hasRole(AUDITOR_ROLE, d.auditor).call()
    assert not f.isMember(d.delivery).call()


@pytest.mark.parametrize("who", ["a", "auditor", "delivery", "outsider"])
def test_non_admin_cannot_grant_roles(d: Deployment, who: str) -> None:
    sender = getattr(d, who)
    with expect_revert("AccessControlUnauthorizedAccount", account=sender, neededRole=ADMIN_ROLE):
        d.send(d.consortium.functions.grantRole(DELIVERY_ROLE, d.spare), sender)


def test_non_admin_cannot_revoke_roles(d: Deployment) -> None:
    with expect_revert("AccessControlUnauthorizedAccount", account=d.a, neededRole=ADMIN_ROLE):
        d.send(d.consortium.functions.revokeRole(AUDITOR_ROLE, d.auditor), d.a)


@pytest.mark.parametrize("who", ["admin", "a", "outsider"])
def test_member_role_cannot_be_granted_directly(d: Deployment, who: str) -> None:
    with expect_revert("ConsortiumMemberRoleByAdmissionOnly"):
        d.send(d.consortium.functions.grantRole(MEMBER_ROLE, d.spare), getattr(d, who))


def test_member_role_cannot_be_revoked_by_role_management(d: Deployment) -> None:
    with expect_revert("ConsortiumMemberRoleByAdmissionOnly"):
        d.send(d.consortium.functions.revokeRole(MEMBER_ROLE, d.a), d.admin)


def test_member_cannot_renounce_its_member_role(d: Deployment) -> None:
    with expect_revert("ConsortiumMemberRoleByAdmissionOnly"):
        d.send(d.consortium.functions.renounceRole(MEMBER_ROLE, d.a), d.a)
    assert d.consortium.functions.isMember(d.a).call()


def test_auditor_can_renounce_its_role(d: Deployment) -> None:
    receipt = d.send(d.consortium.functions.renounceRole(AUDITOR_ROLE, d.auditor), d.auditor)
    assert d.events(d.consortium, "RoleRevoked", receipt) == [
        {"role": AUDITOR_ROLE, "account": d.auditor, "sender": d.auditor}
    ]


def test_renouncing_for_someone_else_reverts(d: Deployment) -> None:
    with expect_revert("AccessControlBadConfirmation"):
        d.send(d.consortium.functions.renounceRole(AUDITOR_ROLE, d.auditor), d.outsider)


def test_role_ids_are_keccak_of_their_names() -> None:
    assert Web3.keccak(text="MEMBER") == MEMBER_ROLE
