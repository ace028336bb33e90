// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Consortium} from "./Consortium.sol";
import {LicenceRegistry} from "./LicenceRegistry.sol";

/**
 * @title ResourceRegistry
 * @notice The resources member libraries share: owner, content hash, metadata hash,
 * licence and supersession.
 *
 * A resource's id is `keccak256(abi.encode(owner, contentHash))`, so the same bytes
 * registered by two members are two resources and nobody can squat another member's id.
 * The CID and the provenance links are kept only in events; the index follows them.
 */
contract ResourceRegistry {
    /// @notice How a resource relates to a link's target.
    enum Relation {
        None,
        DigitisedFrom,
        DerivedFrom,
        Supersedes,
        ContributedBy
    }

    /// @notice A provenance link from a resource to `target`.
    struct Link {
        Relation relation;
        bytes32 target;
    }

    /// @notice A resource as registered.
    /// @dev `contentHash` is the sha-256 of the plaintext; `cid` the raw binary CID of
    /// what is stored; `licenceId` 0 means no licence.
    struct ResourceInput {
        bytes32 contentHash;
        bytes cid;
        bytes32 metadataHash;
        uint256 licenceId;
        Link[] links;
    }

    /// @notice A registered resource; `registeredAt` is the registration block.
    struct Resource {
        address owner;
        bytes32 contentHash;
        bytes32 metadataHash;
        uint256 licenceId;
        bytes32 supersededBy;
        uint64 registeredAt;
    }

    // Storage layout, packed: owner, registration block and licence id share one slot.
    // Licence ids are sequential from 1, so a real one fits 32 bits for ever.
    struct Stored {
        address owner;
        uint64 registeredAt;
        uint32 licenceId;
        bytes32 contentHash;
        bytes32 metadataHash;
        bytes32 supersededBy;
    }

    /// @notice The consortium whose members may register resources.
    Consortium public immutable consortium;
    /// @notice The registry of the licences resources are shared under.
    LicenceRegistry public immutable licences;

    mapping(bytes32 id => Stored) private _resources;

    /// @notice `account` is not a consortium member.
    error ResourceRegistryNotMember(address account);
    /// @notice No resource has id `id`.
    error ResourceRegistryUnknownResource(bytes32 id);
    /// @notice `account` does not own resource `id`.
    error ResourceRegistryNotOwner(bytes32 id, address account);
    /// @notice Resource `id` is already registered.
    error ResourceRegistryAlreadyRegistered(bytes32 id);
    /// @notice Resource `id` was already superseded by `supersededBy`.
    error ResourceRegistryAlreadySuperseded(bytes32 id, bytes32 supersededBy);
    /// @notice A resource needs a non-zero content hash.
    error ResourceRegistryEmptyContentHash();
    /// @notice The resource with `contentHash` has an empty CID.
    error ResourceRegistryEmptyCid(bytes32 contentHash);
    /// @notice Link `linkIndex` has relation `None` or a zero target.
    error ResourceRegistryInvalidLink(uint256 linkIndex, Relation relation, bytes32 target);
    /// @notice Link `linkIndex` is a `Supersedes` link; supersede through {supersede}.
    error ResourceRegistrySupersedesLinkNotAllowed(uint256 linkIndex, bytes32 target);
    /// @notice No licence has id `licenceId`.
    error ResourceRegistryUnknownLicence(uint256 licenceId);
    /// @notice `account` is not the licensor of `licenceId`.
    error ResourceRegistryNotLicensor(uint256 licenceId, address account);
    /// @notice Licence `licenceId` is revoked.
    error ResourceRegistryLicenceRevoked(uint256 licenceId);

    /// @notice `owner` registered resource `id`.
    event ResourceRegistered(
        bytes32 indexed id,
        address indexed owner,
        bytes32 contentHash,
        bytes cid,
        bytes32 metadataHash,
        uint256 licenceId
    );
    /// @notice Resource `id` was linked to `target` by `relation`.
    event ProvenanceLinked(bytes32 indexed id, Relation relation, bytes32 target);
    /// @notice Resource `oldId` was superseded by `newId`.
    event ResourceSuperseded(bytes32 indexed oldId, bytes32 indexed newId);
    /// @notice Resource `id` moved from `previousLicenceId` to `licenceId` (0 = none).
    event ResourceLicenceChanged(bytes32 indexed id, uint256 previousLicenceId, uint256 licenceId);

    constructor(Consortium consortium_, LicenceRegistry licences_) {
        consortium = consortium_;
        licences = licences_;
    }

    /**
     * @notice Registers one resource owned by the caller.
     * @return id `resourceIdOf(msg.sender, r.contentHash)`.
     *
     * Requirements:
     * - the caller is a consortium member.
     * - `r.contentHash` is not zero and `r.cid` is not empty.
     * - every link has a relation other than `None` and `Supersedes`, and a non-zero target.
     * - `r.licenceId` is 0, or a licence the caller issued and has not revoked.
     * - the resource is not registered yet.
     *
     * Emits a {ResourceRegistered} event and a {ProvenanceLinked} event per link.
     */
    function register(ResourceInput calldata r) external returns (bytes32 id) {
        _checkMember();
        if (r.licenceId != 0) _checkLicence(r.licenceId);
        id = _register(r);
    }

    /**
     * @notice Registers several resources owned by the caller, in order.
     * @return ids the new ids, in the order of `rs`.
     *
     * Requirements: as {register}, for every element; the whole batch reverts if one fails.
     *
     * Emits, per resource, a {ResourceRegistered} event and a {ProvenanceLinked} per link.
     */
    function registerBatch(ResourceInput[] calldata rs) external returns (bytes32[] memory ids) {
        _checkMember();
        ids = new bytes32[](rs.length);
        // Batches usually share a licence: check each distinct run of it once.
        uint256 checkedLicence = 0;
        for (uint256 i = 0; i < rs.length; ++i) {
            uint256 licenceId = rs[i].licenceId;
            if (licenceId != 0 && licenceId != checkedLicence) {
                _checkLicence(licenceId);
                checkedLicence = licenceId;
            }
            ids[i] = _register(rs[i]);
        }
    }

    /**
     * @notice Registers `r` as the successor of the caller's resource `oldId`.
     * @return newId the id of the new resource.
     *
     * Requirements:
     * - the caller is a consortium member and owns `oldId`.
     * - `oldId` is not superseded yet.
     * - `r` satisfies the requirements of {register}.
     *
     * Emits {ResourceRegistered}, a {ProvenanceLinked} per link of `r` plus the implicit
     * `Supersedes` link to `oldId`, and {ResourceSuperseded}.
     */
    function supersede(bytes32 oldId, ResourceInput calldata r) external returns (bytes32 newId) {
        _checkMember();
        Stored storage old = _owned(oldId);
        if (old.supersededBy != bytes32(0)) {
            revert ResourceRegistryAlreadySuperseded(oldId, old.supersededBy);
        }
        if (r.licenceId != 0) _checkLicence(r.licenceId);
        newId = _register(r);
        old.supersededBy = newId;
        emit ProvenanceLinked(newId, Relation.Supersedes, oldId);
        emit ResourceSuperseded(oldId, newId);
    }

    /**
     * @notice Puts the caller's resource `id` under `licenceId` (0 = no licence).
     *
     * Requirements:
     * - the caller is a consortium member and owns `id`.
     * - `licenceId` is 0, or a licence the caller issued and has not revoked.
     *
     * Emits a {ResourceLicenceChanged} event.
     */
    function setLicence(bytes32 id, uint256 licenceId) external {
        _checkMember();
        Stored storage s = _owned(id);
        if (licenceId != 0) _checkLicence(licenceId);
        uint256 previous = s.licenceId;
        s.licenceId = uint32(licenceId);
        emit ResourceLicenceChanged(id, previous, licenceId);
    }

    /// @notice The id a resource of `owner` with `contentHash` has.
    function resourceIdOf(address owner, bytes32 contentHash) public pure returns (bytes32) {
        return keccak256(abi.encode(owner, contentHash));
    }

    /**
     * @notice The registered resource `id`.
     *
     * Requirements:
     * - `id` is registered.
     */
    function resourceOf(bytes32 id) external view returns (Resource memory) {
        Stored storage s = _resources[id];
        if (s.owner == address(0)) revert ResourceRegistryUnknownResource(id);
        return Resource({
            owner: s.owner,
            contentHash: s.contentHash,
            metadataHash: s.metadataHash,
            licenceId: s.licenceId,
            supersededBy: s.supersededBy,
            registeredAt: s.registeredAt
        });
    }

    /// @notice Whether `id` is registered.
    function exists(bytes32 id) external view returns (bool) {
        return _resources[id].owner != address(0);
    }

    function _register(ResourceInput calldata r) private returns (bytes32 id) {
        if (r.contentHash == bytes32(0)) revert ResourceRegistryEmptyContentHash();
        if (r.cid.length == 0) revert ResourceRegistryEmptyCid(r.contentHash);
        id = resourceIdOf(msg.sender, r.contentHash);
        Stored storage s = _resources[id];
        if (s.owner != address(0)) revert ResourceRegistryAlreadyRegistered(id);
        s.owner = msg.sender;
        s.registeredAt = uint64(block.number);
        // Fits: _checkLicence accepted it, and licence ids are sequential from 1.
        s.licenceId = uint32(r.licenceId);
        s.contentHash = r.contentHash;
        // A zero metadata hash costs no storage write.
        if (r.metadataHash != bytes32(0)) s.metadataHash = r.metadataHash;
        emit ResourceRegistered(id, msg.sender, r.contentHash, r.cid, r.metadataHash, r.licenceId);
        for (uint256 i = 0; i < r.links.length; ++i) {
            Link calldata link = r.links[i];
            if (link.relation == Relation.Supersedes) {
                revert ResourceRegistrySupersedesLinkNotAllowed(i, link.target);
            }
            if (link.relation == Relation.None || link.target == bytes32(0)) {
                revert ResourceRegistryInvalidLink(i, link.relation, link.target);
            }
            emit ProvenanceLinked(id, link.relation, link.target);
        }
    }

    function _checkMember() private view {
        if (!consortium.isMember(msg.sender)) revert ResourceRegistryNotMember(msg.sender);
    }

    function _owned(bytes32 id) private view returns (Stored storage s) {
        s = _resources[id];
        if (s.owner == address(0)) revert ResourceRegistryUnknownResource(id);
        if (s.owner != msg.sender) revert ResourceRegistryNotOwner(id, msg.sender);
    }

    function _checkLicence(uint256 licenceId) private view {
        LicenceRegistry.Licence memory licence = licences.licenceOf(licenceId);
        if (licence.licensor == address(0)) revert ResourceRegistryUnknownLicence(licenceId);
        if (licence.licensor != msg.sender) {
            revert ResourceRegistryNotLicensor(licenceId, msg.sender);
        }
        if (licence.revokedAt != 0) revert ResourceRegistryLicenceRevoked(licenceId);
    }
}
