// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Consortium} from "./Consortium.sol";
import {LicenceRegistry} from "./LicenceRegistry.sol";

/**
 * @title ResourceRegistry
 * @notice The resources member libraries share: owner, licence, registration block and
 * supersession on chain; content hash, CID, metadata hash and provenance in events.
 *
 * A resource's id is `keccak256(abi.encode(owner, contentHash))`, so the same bytes
 * registered by two members are two resources and nobody can squat another member's id.
 * Storage holds only what the contract must enforce — that an id is taken, who may
 * change it, its licence — in one slot per resource; everything else is in the events,
 * which the index follows. Bulk registration takes a packed encoding ({registerBatch}):
 * ABI-encoded structs cost about three times the calldata.
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

    /// @notice A registered resource as the contract keeps it: `licenceId` 0 means no
    /// licence, `supersededBy` 0 means not superseded, `registeredAt` is the block.
    /// @dev Its content hash, CID and metadata hash are in its {ResourceRegistered} event.
    struct Resource {
        address owner;
        uint256 licenceId;
        bytes32 supersededBy;
        uint64 registeredAt;
    }

    // One slot per resource: owner (20 bytes), licence id (4) and block (8). Licence ids
    // are sequential from 1, so a real one fits 32 bits for ever. Successors live in a
    // mapping of their own: few resources are ever superseded.
    struct Stored {
        address owner;
        uint32 licenceId;
        uint64 registeredAt;
    }

    // Packed batch entry: contentHash (32 bytes), metadataHash (32), licenceId (uint32,
    // 4), cid length (uint16, 2), cid, link count (uint8, 1), then per link its relation
    // (uint8, 1) and target (32). Integers are big-endian.
    uint256 private constant _ENTRY_HEAD = 70;
    uint256 private constant _LINK_SIZE = 33;

    /// @notice The consortium whose members may register resources.
    Consortium public immutable consortium;
    /// @notice The registry of the licences resources are shared under.
    LicenceRegistry public immutable licences;

    mapping(bytes32 id => Stored) private _resources;
    mapping(bytes32 id => bytes32 newId) private _successors;

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
    /// @notice The packed batch entry starting at byte `offset` is cut short or has a
    /// relation outside {Relation}.
    error ResourceRegistryMalformedBatch(uint256 offset);

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
        id = _registerInput(r);
    }

    /**
     * @notice Registers the resources packed in `batch`, owned by the caller, in order.
     * @param batch the entries back to back, each: `contentHash` (32 bytes),
     * `metadataHash` (32), `licenceId` (uint32, 4), the CID's length (uint16, 2), the
     * CID, the number of links (uint8, 1), then per link its `Relation` (uint8, 1) and
     * target (32). Integers are big-endian. About a third of the calldata of the same
     * entries as ABI-encoded {ResourceInput}s.
     *
     * Requirements:
     * - the caller is a consortium member.
     * - every entry is complete and its relations are {Relation} values.
     * - every entry satisfies the requirements of {register}; the whole batch reverts
     *   if one does not.
     *
     * Emits, per resource, a {ResourceRegistered} event and a {ProvenanceLinked} per link;
     * the new ids are in the events, in the order of `batch`.
     */
    function registerBatch(bytes calldata batch) external {
        _checkMember();
        // Batches usually share a licence: check each distinct run of it once.
        uint256 checkedLicence = 0;
        uint256 offset = 0;
        while (offset < batch.length) {
            (offset, checkedLicence) = _registerEntry(batch, offset, checkedLicence);
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
        _owned(oldId);
        bytes32 successor = _successors[oldId];
        if (successor != bytes32(0)) revert ResourceRegistryAlreadySuperseded(oldId, successor);
        newId = _registerInput(r);
        _successors[oldId] = newId;
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
        // Fits: _checkLicence accepted it, and licence ids are sequential from 1.
        s.licenceId = uint32(licenceId);
        emit ResourceLicenceChanged(id, previous, licenceId);
    }

    /// @notice The id a resource of `owner` with `contentHash` has.
    function resourceIdOf(address owner, bytes32 contentHash) public pure returns (bytes32 id) {
        // keccak256(abi.encode(owner, contentHash)), hashed in scratch space so that a
        // batch does not grow memory by 64 bytes per resource.
        assembly ("memory-safe") {
            mstore(0x00, owner)
            mstore(0x20, contentHash)
            id := keccak256(0x00, 0x40)
        }
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
            licenceId: s.licenceId,
            supersededBy: _successors[id],
            registeredAt: s.registeredAt
        });
    }

    /// @notice Whether `id` is registered.
    function exists(bytes32 id) external view returns (bool) {
        return _resources[id].owner != address(0);
    }

    function _registerInput(ResourceInput calldata r) private returns (bytes32 id) {
        if (r.licenceId != 0) _checkLicence(r.licenceId);
        id = _store(r.contentHash, r.cid, r.metadataHash, r.licenceId);
        for (uint256 i = 0; i < r.links.length; ++i) {
            _link(id, i, r.links[i].relation, r.links[i].target);
        }
    }

    /// @dev Registers the packed entry at `offset` of `batch` (see {registerBatch});
    /// returns where the next entry starts and the licence checked last.
    function _registerEntry(bytes calldata batch, uint256 offset, uint256 checkedLicence)
        private
        returns (uint256 end, uint256)
    {
        // No overflow: offsets stay below the calldata's length, an entry is shorter than
        // 2^17 bytes, and its words are read only once it is known to lie inside `batch`
        // (the head's word may run past the end; calldataload reads zeros there).
        unchecked {
            uint256 head = uint256(_word(batch, offset + 64));
            uint256 licenceId = head >> 224;
            uint256 cidEnd = offset + _ENTRY_HEAD + ((head >> 208) & 0xffff);
            if (batch.length <= cidEnd) revert ResourceRegistryMalformedBatch(offset);
            uint256 linkCount = uint256(_word(batch, cidEnd)) >> 248;
            end = cidEnd + 1 + linkCount * _LINK_SIZE;
            if (batch.length < end) revert ResourceRegistryMalformedBatch(offset);
            if (licenceId != 0 && licenceId != checkedLicence) {
                _checkLicence(licenceId);
                checkedLicence = licenceId;
            }
            bytes32 id = _store(
                _word(batch, offset),
                batch[offset + _ENTRY_HEAD:cidEnd],
                _word(batch, offset + 32),
                licenceId
            );
            if (linkCount != 0) _linkEntry(batch, offset, id, cidEnd + 1, linkCount);
        }
        return (end, checkedLicence);
    }

    /// @dev Applies to `id` the `count` packed links from byte `at` of the entry that
    /// starts at `offset`.
    function _linkEntry(
        bytes calldata batch,
        uint256 offset,
        bytes32 id,
        uint256 at,
        uint256 count
    ) private {
        unchecked {
            for (uint256 i = 0; i < count; ++i) {
                uint256 relation = uint256(_word(batch, at)) >> 248;
                if (relation > uint8(type(Relation).max)) {
                    revert ResourceRegistryMalformedBatch(offset);
                }
                _link(id, i, Relation(relation), _word(batch, at + 1));
                at += _LINK_SIZE;
            }
        }
    }

    /// @dev Records a new resource of the caller; `licenceId` must have been checked.
    function _store(
        bytes32 contentHash,
        bytes calldata cid,
        bytes32 metadataHash,
        uint256 licenceId
    ) private returns (bytes32 id) {
        if (contentHash == bytes32(0)) revert ResourceRegistryEmptyContentHash();
        if (cid.length == 0) revert ResourceRegistryEmptyCid(contentHash);
        id = resourceIdOf(msg.sender, contentHash);
        Stored storage s = _resources[id];
        if (s.owner != address(0)) revert ResourceRegistryAlreadyRegistered(id);
        // The Stored layout written in one SSTORE (field by field, Solidity would read and
        // write the slot three times). The licence id fits: _checkLicence accepted it.
        uint256 packed = uint256(uint160(msg.sender)) | (uint256(uint32(licenceId)) << 160)
            | (block.number << 192);
        assembly ("memory-safe") {
            sstore(s.slot, packed)
        }
        emit ResourceRegistered(id, msg.sender, contentHash, cid, metadataHash, licenceId);
    }

    /// @dev The 32 bytes of `data` from `offset`, unchecked: the caller knows they lie
    /// inside `data` (or, for the head of an entry, checks afterwards).
    function _word(bytes calldata data, uint256 offset) private pure returns (bytes32 word) {
        assembly ("memory-safe") {
            word := calldataload(add(data.offset, offset))
        }
    }

    function _link(bytes32 id, uint256 linkIndex, Relation relation, bytes32 target) private {
        if (relation == Relation.Supersedes) {
            revert ResourceRegistrySupersedesLinkNotAllowed(linkIndex, target);
        }
        if (relation == Relation.None || target == bytes32(0)) {
            revert ResourceRegistryInvalidLink(linkIndex, relation, target);
        }
        emit ProvenanceLinked(id, relation, target);
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
