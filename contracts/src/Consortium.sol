// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/**
 * @title Consortium
 * @notice Who belongs to the library consortium, and in which roles.
 *
 * Members are admitted only by governance: the founders at deployment, then by an
 * M-of-N vote of existing members (propose, approve, execute). The administrator
 * (`ADMIN_ROLE`, OpenZeppelin's default admin) grants and revokes the non-member
 * roles `AUDITOR_ROLE` and `DELIVERY_ROLE`; it cannot make anyone a member directly.
 *
 * Other libshare contracts ask {isMember} before letting an account write.
 */
contract Consortium is AccessControl {
    /// @notice Administers roles; the same role as OpenZeppelin's `DEFAULT_ADMIN_ROLE`.
    bytes32 public constant ADMIN_ROLE = DEFAULT_ADMIN_ROLE;
    /// @notice A member library: may register resources, issue licences, anchor its trail.
    bytes32 public constant MEMBER_ROLE = keccak256("MEMBER");
    /// @notice Reads and verifies; writes nothing.
    bytes32 public constant AUDITOR_ROLE = keccak256("AUDITOR");
    /// @notice A document-delivery service; writes nothing on chain.
    bytes32 public constant DELIVERY_ROLE = keccak256("DELIVERY");

    /// @notice A library as proposed for admission.
    struct MemberInput {
        string libraryId;
        uint8 tier;
        bytes2 country;
        address account;
    }

    /// @notice An admitted library; `admittedAt` is the block number of its admission.
    struct Member {
        string libraryId;
        uint8 tier;
        bytes2 country;
        address account;
        uint64 admittedAt;
    }

    struct Proposal {
        MemberInput candidate;
        uint256 approvals;
        bool executed;
    }

    /// @notice Approvals a proposal needs before it can be executed.
    uint256 public immutable approvalsRequired;

    uint256 private _memberCount;
    uint256 private _proposalCount;
    mapping(address account => Member) private _members;
    mapping(bytes32 libraryIdHash => address) private _accountByLibrary;
    mapping(uint256 proposalId => Proposal) private _proposals;
    mapping(uint256 proposalId => mapping(address member => bool)) private _approved;

    /// @notice `account` is not a member.
    error ConsortiumNotMember(address account);
    /// @notice `account` is already a member.
    error ConsortiumAlreadyMember(address account);
    /// @notice Another member already uses `libraryId`.
    error ConsortiumLibraryIdTaken(string libraryId);
    /// @notice A candidate needs a non-empty library id and a non-zero account.
    error ConsortiumInvalidCandidate(string libraryId, address account);
    /// @notice No proposal has id `proposalId`.
    error ConsortiumUnknownProposal(uint256 proposalId);
    /// @notice `approver` already approved `proposalId`.
    error ConsortiumAlreadyApproved(uint256 proposalId, address approver);
    /// @notice `proposalId` has `approvals` approvals; `required` are needed.
    error ConsortiumNotEnoughApprovals(uint256 proposalId, uint256 approvals, uint256 required);
    /// @notice `proposalId` was already executed.
    error ConsortiumProposalAlreadyExecuted(uint256 proposalId);
    /// @notice The threshold must be between 1 and the number of founding `members`.
    error ConsortiumInvalidThreshold(uint256 required, uint256 members);
    /// @notice No member has library id `libraryId`.
    error ConsortiumUnknownLibrary(string libraryId);
    /// @notice `MEMBER_ROLE` changes only through admission, never through role management.
    error ConsortiumMemberRoleByAdmissionOnly();

    /// @notice `proposer` proposed admitting `libraryId` with `account`.
    event AdmissionProposed(
        uint256 indexed proposalId, address indexed proposer, string libraryId, address account
    );
    /// @notice `approver` approved `proposalId`, which now has `approvals` approvals.
    event AdmissionApproved(uint256 indexed proposalId, address indexed approver, uint256 approvals);
    /// @notice `account` was admitted as library `libraryId`.
    event MemberAdmitted(address indexed account, string libraryId, uint8 tier, bytes2 country);

    modifier onlyMember() {
        if (!hasRole(MEMBER_ROLE, msg.sender)) revert ConsortiumNotMember(msg.sender);
        _;
    }

    /**
     * @notice Deploys the consortium: the deployer becomes administrator and the
     * `founders` are admitted.
     * @param approvalsRequired_ approvals an admission needs (1..founders.length).
     * @param founders the founding member libraries.
     *
     * Requirements:
     * - `1 <= approvalsRequired_ <= founders.length`.
     * - every founder is a valid candidate, with a distinct account and library id.
     *
     * Emits a {MemberAdmitted} event per founder and OpenZeppelin's {RoleGranted}.
     */
    constructor(uint256 approvalsRequired_, MemberInput[] memory founders) {
        if (approvalsRequired_ == 0 || approvalsRequired_ > founders.length) {
            revert ConsortiumInvalidThreshold(approvalsRequired_, founders.length);
        }
        approvalsRequired = approvalsRequired_;
        _grantRole(ADMIN_ROLE, msg.sender);
        for (uint256 i = 0; i < founders.length; ++i) {
            _checkCandidate(founders[i]);
            _admit(founders[i]);
        }
    }

    /**
     * @notice Proposes admitting `candidate`. Proposal ids start at 1.
     * @return proposalId the id to approve and execute.
     *
     * Requirements:
     * - the caller is a member.
     * - `candidate` has a non-empty library id and a non-zero account, neither in use.
     *
     * Emits an {AdmissionProposed} event.
     */
    function proposeAdmission(MemberInput calldata candidate)
        external
        onlyMember
        returns (uint256 proposalId)
    {
        _checkCandidate(candidate);
        proposalId = ++_proposalCount;
        _proposals[proposalId].candidate = candidate;
        emit AdmissionProposed(proposalId, msg.sender, candidate.libraryId, candidate.account);
    }

    /**
     * @notice Approves `proposalId`. The proposer approves too, by calling this.
     *
     * Requirements:
     * - the caller is a member and has not approved `proposalId` yet.
     * - `proposalId` exists and is not executed.
     *
     * Emits an {AdmissionApproved} event.
     */
    function approveAdmission(uint256 proposalId) external onlyMember {
        Proposal storage p = _openProposal(proposalId);
        if (_approved[proposalId][msg.sender]) {
            revert ConsortiumAlreadyApproved(proposalId, msg.sender);
        }
        _approved[proposalId][msg.sender] = true;
        uint256 approvals = ++p.approvals;
        emit AdmissionApproved(proposalId, msg.sender, approvals);
    }

    /**
     * @notice Admits the candidate of `proposalId`.
     *
     * Requirements:
     * - the caller is a member.
     * - `proposalId` exists, is not executed and has at least {approvalsRequired} approvals.
     * - the candidate's account and library id are still free.
     *
     * Emits a {MemberAdmitted} event and OpenZeppelin's {RoleGranted}.
     */
    function executeAdmission(uint256 proposalId) external onlyMember {
        Proposal storage p = _openProposal(proposalId);
        if (p.approvals < approvalsRequired) {
            revert ConsortiumNotEnoughApprovals(proposalId, p.approvals, approvalsRequired);
        }
        // Another proposal may have admitted the same account or library id meanwhile.
        _checkCandidate(p.candidate);
        p.executed = true;
        _admit(p.candidate);
    }

    /**
     * @notice Role management for the non-member roles.
     *
     * Requirements:
     * - `role` is not `MEMBER_ROLE` (members are admitted, see {proposeAdmission}).
     * - the caller has `role`'s admin role.
     */
    function grantRole(bytes32 role, address account) public override {
        if (role == MEMBER_ROLE) revert ConsortiumMemberRoleByAdmissionOnly();
        super.grantRole(role, account);
    }

    /**
     * @notice Role management for the non-member roles.
     *
     * Requirements:
     * - `role` is not `MEMBER_ROLE`: membership is not revoked by role management.
     * - the caller has `role`'s admin role.
     */
    function revokeRole(bytes32 role, address account) public override {
        if (role == MEMBER_ROLE) revert ConsortiumMemberRoleByAdmissionOnly();
        super.revokeRole(role, account);
    }

    /**
     * @notice Gives up one of the caller's roles.
     *
     * Requirements:
     * - `role` is not `MEMBER_ROLE`: a member's record must stay consistent with its role.
     * - `callerConfirmation` is the caller.
     */
    function renounceRole(bytes32 role, address callerConfirmation) public override {
        if (role == MEMBER_ROLE) revert ConsortiumMemberRoleByAdmissionOnly();
        super.renounceRole(role, callerConfirmation);
    }

    /// @notice Whether `account` is a member library.
    function isMember(address account) external view returns (bool) {
        return hasRole(MEMBER_ROLE, account);
    }

    /**
     * @notice The member record of `account`.
     *
     * Requirements:
     * - `account` is a member.
     */
    function memberOf(address account) external view returns (Member memory) {
        if (!hasRole(MEMBER_ROLE, account)) revert ConsortiumNotMember(account);
        return _members[account];
    }

    /**
     * @notice The account of the member with library id `libraryId`.
     *
     * Requirements:
     * - a member has `libraryId`.
     */
    function accountOf(string calldata libraryId) external view returns (address) {
        address account = _accountByLibrary[keccak256(bytes(libraryId))];
        if (account == address(0)) revert ConsortiumUnknownLibrary(libraryId);
        return account;
    }

    /// @notice Number of member libraries.
    function memberCount() external view returns (uint256) {
        return _memberCount;
    }

    /// @notice Number of admission proposals made so far (the latest proposal id).
    function proposalCount() external view returns (uint256) {
        return _proposalCount;
    }

    /**
     * @notice The state of admission proposal `proposalId`.
     *
     * Requirements:
     * - `proposalId` exists.
     */
    function proposal(uint256 proposalId)
        external
        view
        returns (MemberInput memory candidate, uint256 approvals, bool executed)
    {
        if (proposalId == 0 || proposalId > _proposalCount) {
            revert ConsortiumUnknownProposal(proposalId);
        }
        Proposal storage p = _proposals[proposalId];
        return (p.candidate, p.approvals, p.executed);
    }

    /// @notice Whether `member` approved `proposalId`.
    function hasApproved(uint256 proposalId, address member) external view returns (bool) {
        return _approved[proposalId][member];
    }

    function _openProposal(uint256 proposalId) private view returns (Proposal storage p) {
        if (proposalId == 0 || proposalId > _proposalCount) {
            revert ConsortiumUnknownProposal(proposalId);
        }
        p = _proposals[proposalId];
        if (p.executed) revert ConsortiumProposalAlreadyExecuted(proposalId);
    }

    function _checkCandidate(MemberInput memory candidate) private view {
        if (bytes(candidate.libraryId).length == 0 || candidate.account == address(0)) {
            revert ConsortiumInvalidCandidate(candidate.libraryId, candidate.account);
        }
        if (hasRole(MEMBER_ROLE, candidate.account)) {
            revert ConsortiumAlreadyMember(candidate.account);
        }
        if (_accountByLibrary[keccak256(bytes(candidate.libraryId))] != address(0)) {
            revert ConsortiumLibraryIdTaken(candidate.libraryId);
        }
    }

    function _admit(MemberInput memory candidate) private {
        _members[candidate.account] = Member({
            libraryId: candidate.libraryId,
            tier: candidate.tier,
            country: candidate.country,
            account: candidate.account,
            admittedAt: uint64(block.number)
        });
        _accountByLibrary[keccak256(bytes(candidate.libraryId))] = candidate.account;
        ++_memberCount;
        _grantRole(MEMBER_ROLE, candidate.account);
        emit MemberAdmitted(candidate.account, candidate.libraryId, candidate.tier, candidate.country);
    }
}
