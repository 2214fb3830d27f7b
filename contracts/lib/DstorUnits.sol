// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title Units of the dstor market, defined once.
/// @notice Storage is priced in token units per TB (10^12 bytes, decimal) per
/// month (30 days). Pay is always computed from cumulative byte-seconds,
/// multiplying before dividing, so per-epoch amounts never round away value:
/// the pay for any span is f(end) - f(start) of one monotone function.
library DstorUnits {
    /// @notice Bytes in one priced terabyte.
    uint256 internal constant BYTES_PER_TB = 1e12;
    /// @notice Seconds in one billing month (30 days).
    uint256 internal constant SECONDS_PER_MONTH = 30 days;
    /// @notice Denominator turning price x byte-seconds into token units.
    uint256 internal constant BYTE_SECONDS_PER_TB_MONTH = BYTES_PER_TB * SECONDS_PER_MONTH;
    /// @notice Size of one audited Merkle leaf.
    uint256 internal constant LEAF_SIZE = 1024;

    /// @notice Token units owed for `byteSeconds` at `pricePerTBMonth`, rounded down.
    /// @dev mulDiv keeps the full 512-bit product, so nothing overflows or is
    /// divided before it is multiplied.
    function storageCost(uint256 pricePerTBMonth, uint256 byteSeconds) internal pure returns (uint256) {
        return Math.mulDiv(pricePerTBMonth, byteSeconds, BYTE_SECONDS_PER_TB_MONTH);
    }

    /// @notice Minimum stake for `capacityBytes` at `stakePerTB`, rounded up.
    function stakeFor(uint256 stakePerTB, uint256 capacityBytes) internal pure returns (uint256) {
        return Math.mulDiv(stakePerTB, capacityBytes, BYTES_PER_TB, Math.Rounding.Ceil);
    }
}
