// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {DstorUnits} from "./lib/DstorUnits.sol";

/// @title Registry — farmers with their stake, price and reputation; renters' metadata pointers.
/// @notice Peer ids: the wallet binds a libp2p peer id by sending the join
/// transaction; the peer key's Ed25519 signature over
/// "dstor/v1/peer-binding" || chainId || registry || wallet is stored here and
/// checked OFF-chain by renters before they trust a farmer (Ed25519 is too
/// costly to verify in the EVM). A peer id can be held by one wallet at a time.
contract Registry is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice A farmer's lifecycle.
    enum Status {
        None,
        Active,
        Leaving,
        Left,
        Disqualified
    }

    /// @notice One farmer's record.
    struct Farmer {
        Status status;
        uint64 joinedAt;
        uint64 disqualifiedAt;
        uint32 activeDeals;
        uint64 successes;
        uint64 failures;
        uint256 stake;
        uint256 pricePerTBMonth;
        uint256 capacityBytes;
        bytes peerId;
        bytes peerSignature;
        string[] multiaddrs;
    }

    /// @notice A renter's metadata pointer: where the latest encrypted snapshot lives.
    struct MetadataPointer {
        bytes location;
        bytes32 contentRoot;
        uint64 sequence;
        bytes32 leaseHolder;
        uint64 leaseExpiresAt;
    }

    /// @notice Stake, escrow and payment token.
    IERC20 public immutable token;
    /// @notice Minimum stake per TB of offered capacity, in token units.
    uint256 public immutable minStakePerTB;
    /// @notice Failures within {failureWindow} that disqualify a farmer.
    uint256 public immutable failureThreshold;
    /// @notice Length of the failure window in seconds.
    uint256 public immutable failureWindow;
    /// @notice The market allowed to record deals and audits (set once).
    address public market;
    address private immutable _deployer;

    mapping(address => Farmer) private _farmers;
    mapping(bytes32 peerIdHash => address) public peerOwner;
    mapping(address => uint64[]) private _failureTimes;
    mapping(address => uint256) private _failureCursor;
    /// @notice Failures recorded against `farmer` caused by `renter`'s deals.
    mapping(address farmer => mapping(address renter => uint256)) public failuresBy;
    /// @notice Stake of a disqualified farmer left to be claimed, fixed at disqualification.
    mapping(address farmer => uint256) public slashedStake;
    mapping(address farmer => mapping(address renter => bool)) public claimed;
    mapping(address => MetadataPointer) private _pointers;
    address[] private _farmerList;

    error MarketAlreadySet();
    error NotMarket();
    error AlreadyRegistered();
    error NotRegistered();
    error NotActive();
    error StakeTooLow(uint256 stake, uint256 required);
    error PeerIdTaken(address owner);
    error EmptyPeerId();
    error DealsStillActive(uint256 activeDeals);
    error NothingToWithdraw();
    error NotDisqualified();
    error NothingToClaim();
    error AlreadyClaimed();
    error SequenceMismatch(uint64 expected, uint64 actual);
    error LeaseHeld(bytes32 holder, uint64 expiresAt);

    event FarmerJoined(address indexed farmer, bytes peerId, bytes peerSignature, uint256 stake);
    event FarmerUpdated(address indexed farmer, uint256 pricePerTBMonth, uint256 capacityBytes, string[] multiaddrs);
    event StakeAdded(address indexed farmer, uint256 amount, uint256 stake);
    event FarmerLeaving(address indexed farmer);
    event StakeReturned(address indexed farmer, uint256 amount);
    event AuditRecorded(address indexed farmer, address indexed renter, bool success);
    event FarmerDisqualified(address indexed farmer, uint256 slashedStake, uint256 failures);
    event StakeClaimed(address indexed farmer, address indexed renter, uint256 amount);
    event PointerUpdated(address indexed renter, uint64 sequence, bytes32 contentRoot, bytes location);
    event LeaseAcquired(address indexed renter, bytes32 holder, uint64 expiresAt);

    constructor(IERC20 token_, uint256 minStakePerTB_, uint256 failureThreshold_, uint256 failureWindow_) {
        require(failureThreshold_ > 0 && failureThreshold_ <= 64, "threshold");
        token = token_;
        minStakePerTB = minStakePerTB_;
        failureThreshold = failureThreshold_;
        failureWindow = failureWindow_;
        _deployer = msg.sender;
    }

    modifier onlyMarket() {
        if (msg.sender != market) revert NotMarket();
        _;
    }

    /// @notice Connects the market once, right after deployment.
    function setMarket(address market_) external {
        if (market != address(0) || msg.sender != _deployer) revert MarketAlreadySet();
        market = market_;
    }

    // ---------------------------------------------------------------- farmers

    /// @notice Joins as a farmer; pulls `stake` tokens (approve first).
    function join(
        uint256 stake,
        uint256 pricePerTBMonth,
        uint256 capacityBytes,
        bytes calldata peerId,
        bytes calldata peerSignature,
        string[] calldata multiaddrs
    ) external nonReentrant {
        Farmer storage f = _farmers[msg.sender];
        if (f.status != Status.None && f.status != Status.Left) revert AlreadyRegistered();
        if (peerId.length == 0) revert EmptyPeerId();
        _requireStake(stake, capacityBytes);
        _claimPeerId(peerId);
        if (f.status == Status.None) _farmerList.push(msg.sender);
        f.status = Status.Active;
        f.joinedAt = uint64(block.timestamp);
        f.stake = stake;
        f.pricePerTBMonth = pricePerTBMonth;
        f.capacityBytes = capacityBytes;
        f.peerId = peerId;
        f.peerSignature = peerSignature;
        _setMultiaddrs(f, multiaddrs);
        emit FarmerJoined(msg.sender, peerId, peerSignature, stake);
        emit FarmerUpdated(msg.sender, pricePerTBMonth, capacityBytes, multiaddrs);
        token.safeTransferFrom(msg.sender, address(this), stake);
    }

    /// @notice Changes price (for new deals), capacity and addresses.
    function update(uint256 pricePerTBMonth, uint256 capacityBytes, string[] calldata multiaddrs) external {
        Farmer storage f = _farmers[msg.sender];
        if (f.status != Status.Active) revert NotActive();
        _requireStake(f.stake, capacityBytes);
        f.pricePerTBMonth = pricePerTBMonth;
        f.capacityBytes = capacityBytes;
        _setMultiaddrs(f, multiaddrs);
        emit FarmerUpdated(msg.sender, pricePerTBMonth, capacityBytes, multiaddrs);
    }

    function _requireStake(uint256 stake, uint256 capacityBytes) private view {
        uint256 required = DstorUnits.stakeFor(minStakePerTB, capacityBytes);
        if (stake < required) revert StakeTooLow(stake, required);
    }

    function _claimPeerId(bytes calldata peerId) private {
        bytes32 key = keccak256(peerId);
        address owner = peerOwner[key];
        if (owner != address(0) && owner != msg.sender) revert PeerIdTaken(owner);
        peerOwner[key] = msg.sender;
    }

    function _setMultiaddrs(Farmer storage f, string[] calldata multiaddrs) private {
        delete f.multiaddrs;
        for (uint256 i = 0; i < multiaddrs.length; i++) f.multiaddrs.push(multiaddrs[i]);
    }

    /// @notice Adds `amount` to the caller's stake.
    function addStake(uint256 amount) external nonReentrant {
        Farmer storage f = _farmers[msg.sender];
        if (f.status != Status.Active) revert NotActive();
        f.stake += amount;
        emit StakeAdded(msg.sender, amount, f.stake);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Stops taking new deals; the stake comes back once every deal has ended.
    function beginExit() external {
        Farmer storage f = _farmers[msg.sender];
        if (f.status != Status.Active) revert NotActive();
        f.status = Status.Leaving;
        emit FarmerLeaving(msg.sender);
    }

    /// @notice Returns a leaving farmer's stake after its last deal closed.
    function withdrawStake() external nonReentrant {
        Farmer storage f = _farmers[msg.sender];
        if (f.status != Status.Leaving) revert NotActive();
        if (f.activeDeals != 0) revert DealsStillActive(f.activeDeals);
        uint256 amount = f.stake;
        if (amount == 0) revert NothingToWithdraw();
        f.stake = 0;
        f.status = Status.Left;
        delete peerOwner[keccak256(f.peerId)];
        emit StakeReturned(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------ market callbacks

    /// @notice True when `farmer` may take a new deal.
    function canTakeDeals(address farmer) public view returns (bool) {
        return _farmers[farmer].status == Status.Active;
    }

    /// @notice True when `farmer` was disqualified.
    function isDisqualified(address farmer) external view returns (bool) {
        return _farmers[farmer].status == Status.Disqualified;
    }

    /// @notice Time of disqualification, or zero.
    function disqualifiedAt(address farmer) external view returns (uint256) {
        return _farmers[farmer].disqualifiedAt;
    }

    /// @notice The price a new deal with `farmer` gets.
    function priceOf(address farmer) external view returns (uint256) {
        return _farmers[farmer].pricePerTBMonth;
    }

    /// @notice Called by the market when a deal opens.
    function dealOpened(address farmer) external onlyMarket {
        if (!canTakeDeals(farmer)) revert NotActive();
        _farmers[farmer].activeDeals += 1;
    }

    /// @notice Called by the market when a deal closes.
    function dealClosed(address farmer) external onlyMarket {
        _farmers[farmer].activeDeals -= 1;
    }

    /// @notice Records an audit outcome; enough failures within the window disqualify.
    function recordAudit(address farmer, address renter, bool success) external onlyMarket {
        Farmer storage f = _farmers[farmer];
        emit AuditRecorded(farmer, renter, success);
        if (success) {
            f.successes += 1;
            return;
        }
        // Counts freeze at disqualification so the pro-rata claims stay fixed.
        if (f.status == Status.Disqualified) return;
        f.failures += 1;
        failuresBy[farmer][renter] += 1;
        // Ring buffer of the last `failureThreshold` failure times: when the
        // oldest of them is still inside the window, the threshold is reached.
        uint64[] storage times = _failureTimes[farmer];
        uint64 nowTs = uint64(block.timestamp);
        if (times.length < failureThreshold) {
            times.push(nowTs);
            if (times.length < failureThreshold) return;
            if (nowTs - times[0] > failureWindow) return;
        } else {
            uint256 c = _failureCursor[farmer];
            times[c] = nowTs;
            c = (c + 1) % failureThreshold;
            _failureCursor[farmer] = c;
            if (nowTs - times[c] > failureWindow) return;
        }
        _disqualify(farmer);
    }

    function _disqualify(address farmer) private {
        Farmer storage f = _farmers[farmer];
        f.status = Status.Disqualified;
        f.disqualifiedAt = uint64(block.timestamp);
        slashedStake[farmer] = f.stake;
        f.stake = 0;
        emit FarmerDisqualified(farmer, slashedStake[farmer], f.failures);
    }

    /// @notice A renter's share of a disqualified farmer's stake, pro rata to the failures its deals saw.
    function claimable(address farmer, address renter) public view returns (uint256) {
        Farmer storage f = _farmers[farmer];
        if (f.status != Status.Disqualified || claimed[farmer][renter] || f.failures == 0) return 0;
        return (slashedStake[farmer] * failuresBy[farmer][renter]) / f.failures;
    }

    /// @notice Withdraws the caller's claim on a disqualified farmer's stake.
    function claim(address farmer) external nonReentrant {
        if (_farmers[farmer].status != Status.Disqualified) revert NotDisqualified();
        if (claimed[farmer][msg.sender]) revert AlreadyClaimed();
        uint256 amount = claimable(farmer, msg.sender);
        if (amount == 0) revert NothingToClaim();
        claimed[farmer][msg.sender] = true;
        emit StakeClaimed(farmer, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ----------------------------------------------------------------- views

    /// @notice The full record of `farmer`.
    function farmerInfo(address farmer_) external view returns (Farmer memory) {
        return _farmers[farmer_];
    }

    /// @notice Reputation: successes, failures, age in seconds and whether disqualified.
    function reputation(address farmer_)
        external
        view
        returns (uint64 successes, uint64 failures, uint256 ageSeconds, bool disqualified)
    {
        Farmer storage f = _farmers[farmer_];
        uint256 age = f.joinedAt == 0 ? 0 : block.timestamp - f.joinedAt;
        return (f.successes, f.failures, age, f.status == Status.Disqualified);
    }

    /// @notice Number of wallets that ever joined.
    function farmerCount() external view returns (uint256) {
        return _farmerList.length;
    }

    /// @notice A page of farmer wallets, for discovery.
    function farmersPage(uint256 offset, uint256 limit) external view returns (address[] memory page) {
        uint256 n = _farmerList.length;
        if (offset >= n) return new address[](0);
        uint256 end = offset + limit > n ? n : offset + limit;
        page = new address[](end - offset);
        for (uint256 i = offset; i < end; i++) page[i - offset] = _farmerList[i];
    }

    // ------------------------------------------------------ metadata pointer

    /// @notice The metadata pointer of `renter`.
    function pointer(address renter) external view returns (MetadataPointer memory) {
        return _pointers[renter];
    }

    /// @notice Takes (or renews) the one-device write lease for `duration` seconds.
    /// @dev Devices share the renter wallet (the phrase derives it), so the lease
    /// is a coordination aid between honest devices, not an access control.
    function acquireLease(bytes32 holder, uint64 duration) external {
        MetadataPointer storage p = _pointers[msg.sender];
        if (p.leaseHolder != holder && p.leaseExpiresAt > block.timestamp) revert LeaseHeld(p.leaseHolder, p.leaseExpiresAt);
        p.leaseHolder = holder;
        p.leaseExpiresAt = uint64(block.timestamp) + duration;
        emit LeaseAcquired(msg.sender, holder, p.leaseExpiresAt);
    }

    /// @notice Compare-and-swap: moves the pointer from `expectedSequence` to `expectedSequence + 1`.
    function setPointer(uint64 expectedSequence, bytes32 holder, bytes calldata location, bytes32 contentRoot) external {
        MetadataPointer storage p = _pointers[msg.sender];
        if (p.sequence != expectedSequence) revert SequenceMismatch(expectedSequence, p.sequence);
        if (p.leaseHolder != holder && p.leaseExpiresAt > block.timestamp) revert LeaseHeld(p.leaseHolder, p.leaseExpiresAt);
        p.sequence = expectedSequence + 1;
        p.location = location;
        p.contentRoot = contentRoot;
        emit PointerUpdated(msg.sender, p.sequence, contentRoot, location);
    }
}
