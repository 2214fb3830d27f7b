// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title dstor Merkle proofs, verified exactly as src/crypto builds them.
/// @notice Leaves: SHA-256(0x00 || leafBytes). Internal nodes: SHA-256(0x01 || l || r).
/// Deal leaves: SHA-256(0x02 || pieceId || pieceRoot || uint64be size).
/// A level with an odd count promotes its last node unchanged, so a proof
/// skips that level; the proof length is a function of (index, leafCount)
/// and any other length is rejected — a longer or shorter path cannot be
/// passed off as a different depth.
library MerkleVerifier {
    /// @notice Hash of one leaf's bytes.
    function leafHash(bytes calldata leaf) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x00), leaf));
    }

    /// @notice Hash of one deal leaf.
    function dealLeafHash(bytes32 pieceId, bytes32 pieceRoot, uint64 size) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x02), pieceId, pieceRoot, size));
    }

    /// @notice Number of sibling hashes a proof for `index` in a tree of `leafCount` leaves has.
    function proofLength(uint256 index, uint256 leafCount) internal pure returns (uint256 len) {
        uint256 n = leafCount;
        while (n > 1) {
            if (!(index == n - 1 && n % 2 == 1)) len++;
            index >>= 1;
            n = (n + 1) >> 1;
        }
    }

    /// @notice True when `proof` leads from `leaf` at `index` of `leafCount` to `root`.
    function verify(bytes32 root, bytes32 leaf, uint256 index, uint256 leafCount, bytes32[] calldata proof)
        internal
        pure
        returns (bool)
    {
        if (leafCount == 0 || index >= leafCount) return false;
        bytes32 h = leaf;
        uint256 n = leafCount;
        uint256 p;
        while (n > 1) {
            if (index == n - 1 && n % 2 == 1) {
                // Promoted unchanged: no sibling at this level.
            } else {
                if (p >= proof.length) return false;
                bytes32 sib = proof[p++];
                h = (index & 1) == 0
                    ? sha256(abi.encodePacked(bytes1(0x01), h, sib))
                    : sha256(abi.encodePacked(bytes1(0x01), sib, h));
            }
            index >>= 1;
            n = (n + 1) >> 1;
        }
        return p == proof.length && h == root;
    }
}
