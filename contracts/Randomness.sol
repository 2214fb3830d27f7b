// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Source of one random seed per epoch.
/// @notice Pluggable per chain (a beacon, VRF or RANDAO source can implement
/// this). A seed, once non-zero, must never change, and must come from data
/// that was not known when the epoch began.
interface IRandomnessSource {
    /// @notice Timestamp at which epoch 0 starts.
    function genesis() external view returns (uint256);
    /// @notice Epoch length in seconds.
    function epochSeconds() external view returns (uint256);
    /// @notice The fixed seed of `epoch`, or zero while it is not fixed yet.
    function seedOf(uint256 epoch) external view returns (bytes32);
}

/// @title Seeds from the hash of a block mined after the epoch started.
/// @notice Two steps, each callable by anyone: the first call in an epoch
/// (at or after its start) anchors the epoch to the block it is mined in; a
/// later call, within 256 blocks, stores that block's hash as the seed. The
/// caller of the first step cannot know the hash of the block that will
/// include it, and the seed is fixed before any answer is sent, so no answer
/// transaction can influence its own challenge. (The block producer of the
/// anchor block has one bit of influence — publish or not — which the
/// per-epoch challenge probability makes worthless.)
contract BlockhashRandomness is IRandomnessSource {
    /// @inheritdoc IRandomnessSource
    uint256 public immutable genesis;
    /// @inheritdoc IRandomnessSource
    uint256 public immutable epochSeconds;

    mapping(uint256 epoch => uint256 blockNumber) public anchorBlock;
    mapping(uint256 epoch => bytes32 seed) private _seeds;

    /// @notice `fixSeed` for an epoch that has not started.
    error EpochNotStarted(uint256 epoch);
    /// @notice The seed of the epoch is already fixed.
    error SeedAlreadyFixed(uint256 epoch);

    /// @notice An epoch was anchored to `blockNumber`; its hash becomes the seed.
    event SeedAnchored(uint256 indexed epoch, uint256 blockNumber);
    /// @notice The seed of `epoch` is fixed.
    event SeedFixed(uint256 indexed epoch, bytes32 seed);

    constructor(uint256 genesis_, uint256 epochSeconds_) {
        require(epochSeconds_ > 0, "epochSeconds");
        genesis = genesis_;
        epochSeconds = epochSeconds_;
    }

    /// @notice The epoch containing `timestamp`.
    function epochAt(uint256 timestamp) public view returns (uint256) {
        return timestamp < genesis ? 0 : (timestamp - genesis) / epochSeconds;
    }

    /// @inheritdoc IRandomnessSource
    function seedOf(uint256 epoch) external view returns (bytes32) {
        return _seeds[epoch];
    }

    /// @notice Advances the seed of `epoch`: anchors it, or fixes it from the anchor block.
    /// @return seedFixed True when this call fixed the seed.
    function fixSeed(uint256 epoch) external returns (bool seedFixed) {
        if (_seeds[epoch] != 0) revert SeedAlreadyFixed(epoch);
        if (block.timestamp < genesis + epoch * epochSeconds) revert EpochNotStarted(epoch);
        uint256 anchor = anchorBlock[epoch];
        // Unanchored, or the anchor's hash fell out of the 256-block window: re-anchor.
        if (anchor == 0 || block.number > anchor + 256) {
            anchorBlock[epoch] = block.number;
            emit SeedAnchored(epoch, block.number);
            return false;
        }
        if (block.number == anchor) return false; // anchor block not mined yet
        bytes32 seed = keccak256(abi.encode(blockhash(anchor), epoch));
        _seeds[epoch] = seed;
        emit SeedFixed(epoch, seed);
        return true;
    }
}
