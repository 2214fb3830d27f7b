// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title DstorToken — the ERC-20 used for stake, escrow and payment.
/// @notice Six decimals (like USDC): small enough that careless rounding
/// shows up in tests. The faucet exists only when deployed with
/// `faucetEnabled` (dev chains); on a real network it is compiled in but dead.
contract DstorToken is ERC20 {
    /// @notice Whether {faucet} may mint (dev chains only).
    bool public immutable faucetEnabled;
    /// @notice Largest amount one {faucet} call may mint.
    uint256 public immutable faucetLimit;

    /// @notice The faucet is disabled on this deployment.
    error FaucetDisabled();
    /// @notice A faucet request above {faucetLimit}.
    error FaucetLimitExceeded(uint256 requested, uint256 limit);

    /// @notice Tokens minted by the faucet (mints are the only supply changes).
    event FaucetMint(address indexed to, uint256 amount);

    constructor(bool faucetEnabled_, uint256 faucetLimit_, address initialHolder, uint256 initialSupply)
        ERC20("dstor", "DSTOR")
    {
        faucetEnabled = faucetEnabled_;
        faucetLimit = faucetLimit_;
        if (initialSupply > 0) _mint(initialHolder, initialSupply);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` to `to` on dev chains.
    function faucet(address to, uint256 amount) external {
        if (!faucetEnabled) revert FaucetDisabled();
        if (amount > faucetLimit) revert FaucetLimitExceeded(amount, faucetLimit);
        _mint(to, amount);
        emit FaucetMint(to, amount);
    }
}
