// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {DstorUnits} from "./lib/DstorUnits.sol";
import {MerkleVerifier} from "./lib/MerkleVerifier.sol";
import {IRandomnessSource} from "./Randomness.sol";
import {Registry} from "./Registry.sol";

/// @title Market — storage deals, co-signed deal state, audits, pay and egress vouchers.
/// @notice Accounting design. Each deal keeps a piecewise-linear record of its
/// stored bytes over time (a checkpoint per co-signed state change), so the
/// byte-seconds V(t) at any instant are exact integers. The value of epoch e is
/// cost(V(end of e)) - cost(V(start of e)) with one monotone cost function, so
/// the epochs' values telescope: whatever order they settle in, paid + refunded
/// ends equal to cost(V(deal end)) and no unit is lost to rounding.
/// Epochs settle in order behind a cursor; money moves only when an epoch has
/// ended and its audit outcome (if it was challenged) is known.
contract Market is EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice One checkpoint of a deal's stored bytes.
    struct Checkpoint {
        uint64 time;
        uint64 bytesStored;
        uint128 byteSeconds;
    }

    /// @notice A storage deal between one renter and one farmer for one term.
    struct Deal {
        address renter;
        address farmer;
        uint64 term;
        uint64 start;
        uint64 end;
        bool closed;
        uint64 nextEpoch;
        uint256 pricePerTBMonth;
        uint256 deposited;
        uint256 storagePaid;
        uint256 storageRefunded;
        uint256 egressPaid;
        bytes32 root;
        uint64 pieceCount;
        uint64 totalBytes;
        uint64 version;
    }

    /// @notice A co-signed deal state (the EIP-712 message, minus deal id and term which come from the deal).
    struct DealState {
        bytes32 root;
        uint64 pieceCount;
        uint64 totalBytes;
        uint64 version;
    }

    /// @notice One answered sample: a piece (proved into the deal root) and one leaf of it (proved into the piece root).
    struct Sample {
        bytes32 pieceId;
        bytes32 pieceRoot;
        uint64 pieceSize;
        bytes32[] dealProof;
        bytes leaf;
        bytes32[] leafProof;
    }

    /// @notice Audit outcome of an epoch (before its money moves).
    enum Outcome {
        None,
        Passed,
        Failed
    }

    /// @notice Why a challenge failed.
    enum FailReason {
        Missing,
        Late,
        WrongAnswer
    }

    bytes32 public constant DEAL_STATE_TYPEHASH = keccak256(
        "DealState(uint256 dealId,uint64 term,bytes32 root,uint64 pieceCount,uint64 totalBytes,uint64 version)"
    );
    bytes32 public constant EGRESS_VOUCHER_TYPEHASH =
        keccak256("EgressVoucher(uint256 dealId,uint256 cumulativeAmount)");
    uint256 public constant PPM = 1_000_000;

    IERC20 public immutable token;
    Registry public immutable registry;
    IRandomnessSource public immutable randomness;
    /// @notice Start of epoch 0 (from the randomness source).
    uint256 public immutable genesis;
    /// @notice Epoch length in seconds (from the randomness source).
    uint256 public immutable epochSeconds;
    /// @notice Probability, in parts per million, that a deal is challenged in an epoch.
    uint256 public immutable challengeProbabilityPpm;
    /// @notice Leaves (piece, leaf pairs) asked per challenge.
    uint256 public immutable samplesPerChallenge;

    uint256 public dealCount;
    mapping(uint256 => Deal) private _deals;
    mapping(uint256 => Checkpoint[]) private _checkpoints;
    mapping(uint256 dealId => mapping(uint256 epoch => Outcome)) public outcomes;
    mapping(address renter => mapping(address farmer => uint256)) public latestDeal;
    mapping(address renter => mapping(address farmer => uint64)) public pairTerms;
    /// @notice Tokens each account may {withdraw}.
    mapping(address => uint256) public withdrawable;
    /// @notice Epochs in which a deal's renter asked for a challenge (after the farmer failed its off-chain checks).
    mapping(uint256 dealId => mapping(uint256 epoch => bool)) public requestedChallenges;

    error FarmerUnavailable(address farmer);
    error SelfDeal();
    error TermTooShort(uint256 termSeconds, uint256 minimum);
    error DealExists(uint256 dealId);
    error UnknownDeal(uint256 dealId);
    error DealNotActive(uint256 dealId);
    error NotAParty();
    error NotFarmer();
    error StaleVersion(uint64 current, uint64 submitted);
    error BadSignature();
    error InsufficientEscrow(uint256 available, uint256 required);
    error SeedNotFixed(uint256 epoch);
    error NotChallenged(uint256 dealId, uint256 epoch);
    error EpochOutOfTerm(uint256 epoch);
    error AlreadySettled(uint256 dealId, uint256 epoch);
    error TermNotOver(uint256 end);
    error DealNotSettled(uint256 nextEpoch);
    error VoucherNotNewer(uint256 redeemed, uint256 submitted);
    error NothingToWithdraw();
    error NotRenter();

    event DealOpened(uint256 indexed dealId, address indexed renter, address indexed farmer, uint64 term, uint256 pricePerTBMonth, uint64 start, uint64 end, uint256 escrow);
    event EscrowAdded(uint256 indexed dealId, uint256 amount, uint256 deposited);
    event DealStateUpdated(uint256 indexed dealId, uint64 version, bytes32 root, uint64 pieceCount, uint64 totalBytes);
    event ChallengePassed(uint256 indexed dealId, uint256 indexed epoch, address indexed farmer);
    event ChallengeFailed(uint256 indexed dealId, uint256 indexed epoch, address indexed farmer, FailReason reason);
    event EpochSettled(uint256 indexed dealId, uint256 indexed epoch, uint256 paid, uint256 refunded);
    event VoucherRedeemed(uint256 indexed dealId, uint256 cumulativeAmount, uint256 amount);
    event DealClosed(uint256 indexed dealId, uint256 refund);
    event Withdrawn(address indexed account, uint256 amount);
    event ChallengeRequested(uint256 indexed dealId, uint256 indexed epoch);

    constructor(
        IERC20 token_,
        Registry registry_,
        IRandomnessSource randomness_,
        uint256 challengeProbabilityPpm_,
        uint256 samplesPerChallenge_
    ) EIP712("dstor Market", "1") {
        require(challengeProbabilityPpm_ <= PPM, "probability");
        require(samplesPerChallenge_ > 0 && samplesPerChallenge_ <= 64, "samples");
        token = token_;
        registry = registry_;
        randomness = randomness_;
        genesis = randomness_.genesis();
        epochSeconds = randomness_.epochSeconds();
        challengeProbabilityPpm = challengeProbabilityPpm_;
        samplesPerChallenge = samplesPerChallenge_;
    }

    // ------------------------------------------------------------------ deals

    /// @notice Opens a deal with `farmer` at its current price for `termSeconds`, escrowing `escrow` tokens.
    function openDeal(address farmer, uint64 termSeconds, uint256 escrow) external nonReentrant returns (uint256 dealId) {
        if (farmer == msg.sender) revert SelfDeal();
        if (!registry.canTakeDeals(farmer)) revert FarmerUnavailable(farmer);
        if (termSeconds < epochSeconds) revert TermTooShort(termSeconds, epochSeconds);
        uint256 previous = latestDeal[msg.sender][farmer];
        if (previous != 0) {
            Deal storage p = _deals[previous];
            if (!p.closed && block.timestamp < p.end) revert DealExists(previous);
        }
        dealId = ++dealCount;
        uint64 term = ++pairTerms[msg.sender][farmer];
        uint64 start = uint64(block.timestamp);
        Deal storage d = _deals[dealId];
        d.renter = msg.sender;
        d.farmer = farmer;
        d.term = term;
        d.start = start;
        d.end = start + termSeconds;
        d.nextEpoch = uint64(epochAt(start));
        d.pricePerTBMonth = registry.priceOf(farmer);
        d.deposited = escrow;
        latestDeal[msg.sender][farmer] = dealId;
        _checkpoints[dealId].push(Checkpoint(start, 0, 0));
        registry.dealOpened(farmer);
        emit DealOpened(dealId, msg.sender, farmer, term, d.pricePerTBMonth, start, d.end, escrow);
        token.safeTransferFrom(msg.sender, address(this), escrow);
    }

    /// @notice Adds escrow to an open deal.
    function topUp(uint256 dealId, uint256 amount) external nonReentrant {
        Deal storage d = _existing(dealId);
        if (d.closed) revert DealNotActive(dealId);
        d.deposited += amount;
        emit EscrowAdded(dealId, amount, d.deposited);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice The renter asks for its deal to be challenged in the next epoch
    /// (whatever the challenge probability), e.g. after the farmer failed the
    /// renter's off-chain spot checks. The next epoch's seed is not known yet,
    /// so the farmer cannot prepare for the samples. Returns that epoch.
    function requestChallenge(uint256 dealId) external returns (uint256 epoch) {
        Deal storage d = _existing(dealId);
        if (msg.sender != d.renter) revert NotRenter();
        if (d.closed) revert DealNotActive(dealId);
        epoch = epochAt(block.timestamp) + 1;
        if (epoch > lastEpoch(dealId)) revert EpochOutOfTerm(epoch);
        requestedChallenges[dealId][epoch] = true;
        emit ChallengeRequested(dealId, epoch);
    }

    /// @notice Applies a deal state both parties signed; anyone may submit it.
    function updateState(uint256 dealId, DealState calldata s, bytes calldata renterSig, bytes calldata farmerSig) external {
        Deal storage d = _existing(dealId);
        if (d.closed || block.timestamp >= d.end || registry.isDisqualified(d.farmer)) revert DealNotActive(dealId);
        if (s.version <= d.version) revert StaleVersion(d.version, s.version);
        bytes32 digest = dealStateDigest(dealId, d.term, s);
        if (ECDSA.recover(digest, renterSig) != d.renter || ECDSA.recover(digest, farmerSig) != d.farmer) {
            revert BadSignature();
        }
        d.root = s.root;
        d.pieceCount = s.pieceCount;
        d.totalBytes = s.totalBytes;
        d.version = s.version;
        _checkpoint(dealId, s.totalBytes);
        uint256 required = _projectedCost(d, dealId);
        uint256 available = d.deposited - d.egressPaid;
        if (available < required) revert InsufficientEscrow(available, required);
        emit DealStateUpdated(dealId, s.version, s.root, s.pieceCount, s.totalBytes);
    }

    /// @notice EIP-712 digest of a deal state for `dealId` in `term`.
    function dealStateDigest(uint256 dealId, uint64 term, DealState calldata s) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(DEAL_STATE_TYPEHASH, dealId, term, s.root, s.pieceCount, s.totalBytes, s.version))
        );
    }

    /// @notice Settles every epoch of a finished deal and refunds what is left of the escrow.
    /// @dev Callable by either party once the term is over, or at once if the farmer was disqualified.
    function closeDeal(uint256 dealId) external {
        Deal storage d = _existing(dealId);
        if (msg.sender != d.renter && msg.sender != d.farmer) revert NotAParty();
        if (d.closed) revert DealNotActive(dealId);
        bool dq = registry.isDisqualified(d.farmer);
        if (block.timestamp < d.end && !dq) revert TermNotOver(d.end);
        uint256 last = lastEpoch(dealId);
        _settle(dealId, last);
        if (d.nextEpoch <= last) revert DealNotSettled(d.nextEpoch);
        d.closed = true;
        uint256 refund = d.deposited - d.storagePaid - d.storageRefunded - d.egressPaid;
        withdrawable[d.renter] += refund;
        emit DealClosed(dealId, refund);
        registry.dealClosed(d.farmer);
    }

    // ----------------------------------------------------------- audits & pay

    /// @notice The epoch containing `timestamp`.
    function epochAt(uint256 timestamp) public view returns (uint256) {
        return timestamp < genesis ? 0 : (timestamp - genesis) / epochSeconds;
    }

    /// @notice The last epoch a deal covers.
    function lastEpoch(uint256 dealId) public view returns (uint256) {
        return epochAt(_deals[dealId].end - 1);
    }

    /// @notice Time after which a challenge of `epoch` can no longer be answered (end of the next epoch).
    function answerDeadline(uint256 epoch) public view returns (uint256) {
        return genesis + (epoch + 2) * epochSeconds;
    }

    /// @notice The challenge of `dealId` in `epoch`: whether it is challenged (by chance, or because the renter
    /// requested it) and the hash that picks the samples.
    /// @dev Depends only on the fixed seed, the deal id and the epoch — never on the answering block.
    function challengeOf(uint256 dealId, uint256 epoch) public view returns (bool challenged, bytes32 challenge) {
        bytes32 seed = randomness.seedOf(epoch);
        if (seed == 0) return (false, 0);
        challenge = keccak256(abi.encode(seed, dealId, epoch));
        challenged =
            _deals[dealId].pieceCount > 0 && (requestedChallenges[dealId][epoch] || uint256(challenge) % PPM < challengeProbabilityPpm);
    }

    /// @notice The piece index of sample `k` of a challenge, given the deal's piece count.
    function samplePieceIndex(bytes32 challenge, uint256 k, uint256 pieceCount) public pure returns (uint256) {
        return uint256(keccak256(abi.encode(challenge, k, uint256(0)))) % pieceCount;
    }

    /// @notice The leaf index of sample `k` of a challenge, given the piece's leaf count.
    function sampleLeafIndex(bytes32 challenge, uint256 k, uint256 leafCount) public pure returns (uint256) {
        return uint256(keccak256(abi.encode(challenge, k, uint256(1)))) % leafCount;
    }

    /// @notice The farmer answers the challenge of `epoch` with leaf bytes and proofs.
    /// @dev A wrong or late answer does not revert: it is recorded as a failure
    /// (no pay, refund, reputation) — only the farmer can send one.
    function answerChallenge(uint256 dealId, uint256 epoch, Sample[] calldata samples) external {
        Deal storage d = _existing(dealId);
        if (msg.sender != d.farmer) revert NotFarmer();
        if (d.closed || epoch < d.nextEpoch || outcomes[dealId][epoch] != Outcome.None) {
            revert AlreadySettled(dealId, epoch);
        }
        if (epoch > lastEpoch(dealId)) revert EpochOutOfTerm(epoch);
        (bool challenged, bytes32 challenge) = challengeOf(dealId, epoch);
        if (challenge == 0) revert SeedNotFixed(epoch);
        if (!challenged) revert NotChallenged(dealId, epoch);
        if (block.timestamp >= answerDeadline(epoch)) {
            _recordOutcome(dealId, d, epoch, false, FailReason.Late);
        } else {
            _recordOutcome(dealId, d, epoch, _verify(d, challenge, samples), FailReason.WrongAnswer);
        }
        _settle(dealId, epoch);
    }

    function _verify(Deal storage d, bytes32 challenge, Sample[] calldata samples) private view returns (bool) {
        if (samples.length != samplesPerChallenge) return false;
        bytes32 root = d.root;
        uint256 pieceCount = d.pieceCount;
        for (uint256 k = 0; k < samples.length; k++) {
            Sample calldata s = samples[k];
            bytes32 dealLeaf = MerkleVerifier.dealLeafHash(s.pieceId, s.pieceRoot, s.pieceSize);
            if (!MerkleVerifier.verify(root, dealLeaf, samplePieceIndex(challenge, k, pieceCount), pieceCount, s.dealProof)) {
                return false;
            }
            uint256 size = s.pieceSize;
            uint256 leafCount = size == 0 ? 1 : (size + DstorUnits.LEAF_SIZE - 1) / DstorUnits.LEAF_SIZE;
            uint256 leafIndex = sampleLeafIndex(challenge, k, leafCount);
            // The contract hashes the bytes itself; their length must be the leaf's exact length.
            uint256 expected = size - leafIndex * DstorUnits.LEAF_SIZE;
            if (expected > DstorUnits.LEAF_SIZE) expected = DstorUnits.LEAF_SIZE;
            if (s.leaf.length != expected) return false;
            if (!MerkleVerifier.verify(s.pieceRoot, MerkleVerifier.leafHash(s.leaf), leafIndex, leafCount, s.leafProof)) {
                return false;
            }
        }
        return true;
    }

    function _recordOutcome(uint256 dealId, Deal storage d, uint256 epoch, bool passed, FailReason reason) private {
        outcomes[dealId][epoch] = passed ? Outcome.Passed : Outcome.Failed;
        if (passed) emit ChallengePassed(dealId, epoch, d.farmer);
        else emit ChallengeFailed(dealId, epoch, d.farmer, reason);
        registry.recordAudit(d.farmer, d.renter, passed);
    }

    /// @notice Settles the deal's epochs in order up to `upToEpoch`, as far as their outcomes are known.
    function settle(uint256 dealId, uint256 upToEpoch) external {
        Deal storage d = _existing(dealId);
        if (d.closed) revert DealNotActive(dealId);
        _settle(dealId, upToEpoch);
    }

    function _settle(uint256 dealId, uint256 upToEpoch) private {
        Deal storage d = _deals[dealId];
        uint256 last = lastEpoch(dealId);
        if (upToEpoch > last) upToEpoch = last;
        bool dq = registry.isDisqualified(d.farmer);
        uint256 e = d.nextEpoch;
        uint256 paid;
        uint256 refunded;
        for (; e <= upToEpoch; e++) {
            uint256 value = epochValue(dealId, e);
            if (dq) {
                // A disqualified farmer's deal ends: every unsettled epoch goes back to the renter.
                refunded += value;
                emit EpochSettled(dealId, e, 0, value);
                continue;
            }
            uint256 ends = genesis + (e + 1) * epochSeconds;
            if (ends > d.end) ends = d.end;
            if (block.timestamp < ends) break;
            Outcome o = outcomes[dealId][e];
            bool pay;
            if (o == Outcome.Passed) {
                pay = true;
            } else if (o == Outcome.Failed) {
                pay = false;
            } else {
                (bool challenged, bytes32 challenge) = challengeOf(dealId, e);
                bool overdue = block.timestamp >= answerDeadline(e);
                if (challenged) {
                    if (!overdue) break;
                    _recordOutcome(dealId, d, e, false, FailReason.Missing);
                    pay = false;
                } else {
                    // Unchallenged, or nobody fixed the seed before the deadline.
                    if (challenge == 0 && !overdue) break;
                    pay = true;
                }
            }
            if (pay) paid += value;
            else refunded += value;
            emit EpochSettled(dealId, e, pay ? value : 0, pay ? 0 : value);
        }
        d.nextEpoch = uint64(e);
        if (paid > 0) {
            d.storagePaid += paid;
            withdrawable[d.farmer] += paid;
        }
        if (refunded > 0) {
            d.storageRefunded += refunded;
            withdrawable[d.renter] += refunded;
        }
    }

    /// @notice Storage pay of `dealId` in `epoch` (its share of the term), in token units.
    function epochValue(uint256 dealId, uint256 epoch) public view returns (uint256) {
        Deal storage d = _deals[dealId];
        uint256 a = genesis + epoch * epochSeconds;
        uint256 b = a + epochSeconds;
        if (a < d.start) a = d.start;
        if (b > d.end) b = d.end;
        if (b <= a) return 0;
        return DstorUnits.storageCost(d.pricePerTBMonth, byteSecondsAt(dealId, b))
            - DstorUnits.storageCost(d.pricePerTBMonth, byteSecondsAt(dealId, a));
    }

    /// @notice Cumulative byte-seconds stored in `dealId` from its start to `t` (clamped to the term).
    function byteSecondsAt(uint256 dealId, uint256 t) public view returns (uint256) {
        Deal storage d = _deals[dealId];
        Checkpoint[] storage cps = _checkpoints[dealId];
        if (cps.length == 0) return 0;
        if (t > d.end) t = d.end;
        if (t <= d.start) return 0;
        // Binary search: the last checkpoint at or before t.
        uint256 lo = 0;
        uint256 hi = cps.length - 1;
        while (lo < hi) {
            uint256 mid = (lo + hi + 1) / 2;
            if (cps[mid].time <= t) lo = mid;
            else hi = mid - 1;
        }
        Checkpoint storage c = cps[lo];
        return uint256(c.byteSeconds) + uint256(c.bytesStored) * (t - c.time);
    }

    function _checkpoint(uint256 dealId, uint64 bytesStored) private {
        Checkpoint[] storage cps = _checkpoints[dealId];
        uint64 nowTs = uint64(block.timestamp);
        Checkpoint storage last = cps[cps.length - 1];
        uint128 bs = uint128(uint256(last.byteSeconds) + uint256(last.bytesStored) * (nowTs - last.time));
        if (last.time == nowTs) {
            last.bytesStored = bytesStored; // same second: the newest state wins
        } else {
            cps.push(Checkpoint(nowTs, bytesStored, bs));
        }
    }

    /// @notice Total storage value of the deal through its end if the current bytes stay.
    function _projectedCost(Deal storage d, uint256 dealId) private view returns (uint256) {
        return DstorUnits.storageCost(d.pricePerTBMonth, byteSecondsAt(dealId, d.end));
    }

    // ---------------------------------------------------------------- egress

    /// @notice EIP-712 digest of an egress voucher.
    function voucherDigest(uint256 dealId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(EGRESS_VOUCHER_TYPEHASH, dealId, cumulativeAmount)));
    }

    /// @notice Redeems a renter-signed cumulative egress voucher; pays the difference to the farmer.
    /// @dev The storage pay still owed for the term stays reserved: vouchers cannot eat into it.
    function redeemVoucher(uint256 dealId, uint256 cumulativeAmount, bytes calldata renterSig) external {
        Deal storage d = _existing(dealId);
        if (d.closed) revert DealNotActive(dealId);
        if (ECDSA.recover(voucherDigest(dealId, cumulativeAmount), renterSig) != d.renter) revert BadSignature();
        if (cumulativeAmount <= d.egressPaid) revert VoucherNotNewer(d.egressPaid, cumulativeAmount);
        uint256 amount = cumulativeAmount - d.egressPaid;
        uint256 free = d.deposited - d.egressPaid;
        uint256 reserved = _projectedCost(d, dealId);
        uint256 available = free > reserved ? free - reserved : 0;
        if (amount > available) revert InsufficientEscrow(available, amount);
        d.egressPaid = cumulativeAmount;
        withdrawable[d.farmer] += amount;
        emit VoucherRedeemed(dealId, cumulativeAmount, amount);
    }

    // --------------------------------------------------------------- withdraw

    /// @notice Sends the caller everything credited to it (pay, refunds, vouchers).
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ----------------------------------------------------------------- views

    /// @notice The full record of `dealId`.
    function deal(uint256 dealId) external view returns (Deal memory) {
        return _deals[dealId];
    }

    /// @notice Escrow not yet paid, refunded or redeemed.
    function escrowRemaining(uint256 dealId) external view returns (uint256) {
        Deal storage d = _deals[dealId];
        if (d.closed) return 0;
        return d.deposited - d.storagePaid - d.storageRefunded - d.egressPaid;
    }

    function _existing(uint256 dealId) private view returns (Deal storage d) {
        d = _deals[dealId];
        if (d.renter == address(0)) revert UnknownDeal(dealId);
    }
}
