// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Consortium} from "./Consortium.sol";

/**
 * @title TrailAnchor
 * @notice Anchors the tree heads of every member's usage trail, an RFC 9162 Merkle log.
 *
 * A member's new head is accepted only with a valid RFC 9162 §2.1.4.2 consistency proof
 * from its previous head, so the chain itself refuses a rewritten history. Only the
 * latest head per member is stored; the history of heads lives in {HeadAnchored} events.
 */
contract TrailAnchor {
    /// @notice A signed-off tree head; `anchoredAt` is the block it was anchored in.
    struct Head {
        uint64 size;
        bytes32 root;
        uint64 anchoredAt;
    }

    // Storage layout, packed: size, block and head count share one slot, the root another.
    struct Stored {
        uint64 size;
        uint64 anchoredAt;
        uint64 count;
        bytes32 root;
    }

    /// @notice The consortium whose members anchor their trails.
    Consortium public immutable consortium;

    mapping(address member => Stored) private _heads;

    /// @notice `account` is not a consortium member.
    error TrailAnchorNotMember(address account);
    /// @notice A new head must be larger than the previous one (`previousSize`).
    error TrailAnchorSizeNotIncreasing(uint64 previousSize, uint64 size);
    /// @notice The proof does not lead from the previous head to the new one.
    error TrailAnchorInconsistent(uint64 previousSize, uint64 size);
    /// @notice A proof from `previousSize` to `size` cannot have `proofLength` hashes
    /// (the first head takes an empty proof).
    error TrailAnchorInvalidProofLength(uint64 previousSize, uint64 size, uint256 proofLength);
    /// @notice A head needs a non-zero root.
    error TrailAnchorEmptyRoot();

    /// @notice `member` anchored the head (`size`, `root`) after (`previousSize`, `previousRoot`).
    event HeadAnchored(
        address indexed member, uint64 size, bytes32 root, uint64 previousSize, bytes32 previousRoot
    );

    constructor(Consortium consortium_) {
        consortium = consortium_;
    }

    /**
     * @notice Anchors the caller's trail head (`size`, `root`).
     * @param consistencyProof RFC 9162 consistency proof from the caller's previous head;
     * empty for the first head.
     *
     * Requirements:
     * - the caller is a consortium member.
     * - `root` is not zero and `size` is larger than the previous head's size.
     * - `consistencyProof` proves the previous head is a prefix of the new one.
     *
     * Emits a {HeadAnchored} event.
     */
    function anchor(uint64 size, bytes32 root, bytes32[] calldata consistencyProof) external {
        if (!consortium.isMember(msg.sender)) revert TrailAnchorNotMember(msg.sender);
        if (root == bytes32(0)) revert TrailAnchorEmptyRoot();
        Stored storage head = _heads[msg.sender];
        uint64 previousSize = head.size;
        bytes32 previousRoot = head.root;
        if (size <= previousSize) revert TrailAnchorSizeNotIncreasing(previousSize, size);
        if (previousSize == 0) {
            if (consistencyProof.length != 0) {
                revert TrailAnchorInvalidProofLength(0, size, consistencyProof.length);
            }
        } else {
            _verifyConsistency(previousSize, size, previousRoot, root, consistencyProof);
        }
        head.size = size;
        head.anchoredAt = uint64(block.number);
        ++head.count;
        head.root = root;
        emit HeadAnchored(msg.sender, size, root, previousSize, previousRoot);
    }

    /// @notice The latest head `member` anchored; all zero if none.
    function headOf(address member) external view returns (Head memory) {
        Stored storage head = _heads[member];
        return Head({size: head.size, root: head.root, anchoredAt: head.anchoredAt});
    }

    /// @notice How many heads `member` has anchored.
    function headCount(address member) external view returns (uint256) {
        return _heads[member].count;
    }

    /// @dev RFC 9162 §2.1.4.2, for 0 < first < second. Which path element is used where
    /// depends only on the sizes, so a path of the wrong length is told apart from one
    /// whose hashes do not match.
    function _verifyConsistency(
        uint64 first,
        uint64 second,
        bytes32 firstHash,
        bytes32 secondHash,
        bytes32[] calldata path
    ) private pure {
        if (path.length == 0) revert TrailAnchorInvalidProofLength(first, second, 0);
        // A power-of-two first tree is a complete subtree of the second: RFC 9162 then
        // prepends first_hash to the path, which is the same as starting from it.
        bool firstIsComplete = (first & (first - 1)) == 0;
        bytes32 fr = firstIsComplete ? firstHash : path[0];
        bytes32 sr = fr;
        uint64 fn = first - 1;
        uint64 sn = second - 1;
        while ((fn & 1) == 1) {
            fn >>= 1;
            sn >>= 1;
        }
        for (uint256 i = firstIsComplete ? 0 : 1; i < path.length; ++i) {
            if (sn == 0) revert TrailAnchorInvalidProofLength(first, second, path.length);
            bytes32 c = path[i];
            if ((fn & 1) == 1 || fn == sn) {
                fr = _node(c, fr);
                sr = _node(c, sr);
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                sr = _node(sr, c);
            }
            fn >>= 1;
            sn >>= 1;
        }
        if (sn != 0) revert TrailAnchorInvalidProofLength(first, second, path.length);
        if (fr != firstHash || sr != secondHash) revert TrailAnchorInconsistent(first, second);
    }

    /// @dev RFC 9162 §2.1.1: an interior node hashes 0x01 || left || right.
    function _node(bytes32 left, bytes32 right) private pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }
}
