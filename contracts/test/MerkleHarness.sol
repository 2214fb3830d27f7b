// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MerkleVerifier} from "../lib/MerkleVerifier.sol";

/// @title Test harness exposing MerkleVerifier (never deployed outside tests).
contract MerkleHarness {
    function leafHash(bytes calldata leaf) external pure returns (bytes32) {
        return MerkleVerifier.leafHash(leaf);
    }

    function dealLeafHash(bytes32 pieceId, bytes32 pieceRoot, uint64 size) external pure returns (bytes32) {
        return MerkleVerifier.dealLeafHash(pieceId, pieceRoot, size);
    }

    function proofLength(uint256 index, uint256 leafCount) external pure returns (uint256) {
        return MerkleVerifier.proofLength(index, leafCount);
    }

    function verifyLeaf(bytes32 root, bytes calldata leaf, uint256 index, uint256 leafCount, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        return MerkleVerifier.verify(root, MerkleVerifier.leafHash(leaf), index, leafCount, proof);
    }

    function verifyHash(bytes32 root, bytes32 leaf, uint256 index, uint256 leafCount, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        return MerkleVerifier.verify(root, leaf, index, leafCount, proof);
    }
}
