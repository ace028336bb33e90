// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Consortium} from "./Consortium.sol";

/**
 * @title LicenceRegistry
 * @notice Licences issued by member libraries, by version.
 *
 * A licence has a licensor (the member that issued it), versions 1..n whose terms are
 * never overwritten, and may be revoked once. Only the sha-256 of the RFC 8785
 * canonical terms JSON is stored; the JSON itself travels in the {LicenceIssued} event.
 */
contract LicenceRegistry {
    /// @notice A licence's state; `revokedAt` is the revocation block, 0 while active.
    struct Licence {
        address licensor;
        uint32 latestVersion;
        uint64 revokedAt;
    }

    /// @notice The consortium whose members may issue licences.
    Consortium public immutable consortium;

    uint256 private _licenceCount;
    mapping(uint256 licenceId => Licence) private _licences;
    mapping(uint256 licenceId => mapping(uint32 version => bytes32 termsHash)) private _terms;

    /// @notice `account` is not a consortium member.
    error LicenceRegistryNotMember(address account);
    /// @notice No licence has id `licenceId`.
    error LicenceRegistryUnknownLicence(uint256 licenceId);
    /// @notice Licence `licenceId` has no version `version`.
    error LicenceRegistryUnknownVersion(uint256 licenceId, uint32 version);
    /// @notice `account` is not the licensor of `licenceId`.
    error LicenceRegistryNotLicensor(uint256 licenceId, address account);
    /// @notice Licence `licenceId` was revoked in block `revokedAt`.
    error LicenceRegistryRevoked(uint256 licenceId, uint64 revokedAt);
    /// @notice The terms hash is zero or the terms JSON is empty.
    error LicenceRegistryEmptyTerms();

    /// @notice `licensor` issued `version` of `licenceId` with the given terms.
    event LicenceIssued(
        uint256 indexed licenceId,
        address indexed licensor,
        uint32 version,
        bytes32 termsHash,
        string termsJson
    );
    /// @notice `licensor` revoked `licenceId` in block `blockNumber`.
    event LicenceRevoked(uint256 indexed licenceId, address indexed licensor, uint64 blockNumber);

    constructor(Consortium consortium_) {
        consortium = consortium_;
    }

    /**
     * @notice Issues a new licence (version 1). Licence ids start at 1.
     * @param termsHash sha-256 of the RFC 8785 canonical terms JSON.
     * @param termsJson the canonical terms JSON.
     * @return licenceId the new licence's id.
     *
     * Requirements:
     * - the caller is a consortium member.
     * - `termsHash` is not zero and `termsJson` is not empty.
     *
     * Emits a {LicenceIssued} event.
     */
    function issue(bytes32 termsHash, string calldata termsJson)
        external
        returns (uint256 licenceId)
    {
        if (!consortium.isMember(msg.sender)) revert LicenceRegistryNotMember(msg.sender);
        _checkTerms(termsHash, termsJson);
        licenceId = ++_licenceCount;
        _licences[licenceId] = Licence({licensor: msg.sender, latestVersion: 1, revokedAt: 0});
        _terms[licenceId][1] = termsHash;
        emit LicenceIssued(licenceId, msg.sender, 1, termsHash, termsJson);
    }

    /**
     * @notice Issues the next version of `licenceId`; earlier versions stay as they were.
     * @return version the new version number.
     *
     * Requirements:
     * - `licenceId` exists and is not revoked.
     * - the caller is its licensor.
     * - `termsHash` is not zero and `termsJson` is not empty.
     *
     * Emits a {LicenceIssued} event.
     */
    function issueVersion(uint256 licenceId, bytes32 termsHash, string calldata termsJson)
        external
        returns (uint32 version)
    {
        Licence storage licence = _licensedBySender(licenceId);
        if (licence.revokedAt != 0) revert LicenceRegistryRevoked(licenceId, licence.revokedAt);
        _checkTerms(termsHash, termsJson);
        version = ++licence.latestVersion;
        _terms[licenceId][version] = termsHash;
        emit LicenceIssued(licenceId, msg.sender, version, termsHash, termsJson);
    }

    /**
     * @notice Revokes `licenceId` from this block on.
     *
     * Requirements:
     * - `licenceId` exists and is not revoked.
     * - the caller is its licensor.
     *
     * Emits a {LicenceRevoked} event.
     */
    function revoke(uint256 licenceId) external {
        Licence storage licence = _licensedBySender(licenceId);
        if (licence.revokedAt != 0) revert LicenceRegistryRevoked(licenceId, licence.revokedAt);
        uint64 blockNumber = uint64(block.number);
        licence.revokedAt = blockNumber;
        emit LicenceRevoked(licenceId, msg.sender, blockNumber);
    }

    /// @notice The state of `licenceId`; all zero if there is no such licence.
    function licenceOf(uint256 licenceId) external view returns (Licence memory) {
        return _licences[licenceId];
    }

    /**
     * @notice The licensor of `licenceId`.
     *
     * Requirements:
     * - `licenceId` exists.
     */
    function licensorOf(uint256 licenceId) external view returns (address) {
        return _existing(licenceId).licensor;
    }

    /**
     * @notice The latest version of `licenceId`.
     *
     * Requirements:
     * - `licenceId` exists.
     */
    function latestVersion(uint256 licenceId) external view returns (uint32) {
        return _existing(licenceId).latestVersion;
    }

    /**
     * @notice The terms hash of `version` of `licenceId`.
     *
     * Requirements:
     * - `licenceId` exists and has `version` (1..latestVersion).
     */
    function termsHashOf(uint256 licenceId, uint32 version) external view returns (bytes32) {
        Licence storage licence = _existing(licenceId);
        if (version == 0 || version > licence.latestVersion) {
            revert LicenceRegistryUnknownVersion(licenceId, version);
        }
        return _terms[licenceId][version];
    }

    /**
     * @notice The block `licenceId` was revoked in, 0 while it is active.
     *
     * Requirements:
     * - `licenceId` exists.
     */
    function revokedAt(uint256 licenceId) external view returns (uint64) {
        return _existing(licenceId).revokedAt;
    }

    /// @notice Number of licences issued (the latest licence id).
    function licenceCount() external view returns (uint256) {
        return _licenceCount;
    }

    function _existing(uint256 licenceId) private view returns (Licence storage licence) {
        licence = _licences[licenceId];
        if (licence.licensor == address(0)) revert LicenceRegistryUnknownLicence(licenceId);
    }

    function _licensedBySender(uint256 licenceId) private view returns (Licence storage licence) {
        licence = _existing(licenceId);
        if (licence.licensor != msg.sender) {
            revert LicenceRegistryNotLicensor(licenceId, msg.sender);
        }
    }

    function _checkTerms(bytes32 termsHash, string calldata termsJson) private pure {
        if (termsHash == bytes32(0) || bytes(termsJson).length == 0) {
            revert LicenceRegistryEmptyTerms();
        }
    }
}
