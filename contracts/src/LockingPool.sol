// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {BLS} from "./BLS.sol";
import {IGroupKeyRegistry} from "./IGroupKeyRegistry.sol";
import {LockingInfo} from "./LockingInfo.sol";
import {StakeVotes} from "./StakeVotes.sol";

/// @title LockingPool
/// @notice The staked sequencer set on L1: whitelisted owners lock METIS for one sequencer each, register the keys
/// the PoS layer needs, and exit after a delay. It also holds the pool's threshold (MPC) group public key, and
/// accepts reward reports and slashing only when signed by that key. Its `votes` (StakeVotes, IERC5805) give each
/// owner its sequencer's locked stake as governance votes while the sequencer is active and not jailed.
/// @dev Every event that changes a sequencer carries its nonce so the L1 listener can order and dedupe them.
contract LockingPool is Ownable2Step, Pausable, IGroupKeyRegistry {
    enum Status {
        Inactive,
        Active,
        Unlocked
    }

    struct Sequencer {
        uint256 amount;
        uint256 reward;
        uint256 rewardClaimed;
        address owner;
        uint64 nonce;
        uint64 activationBlock;
        address signer;
        uint64 lastSignerUpdate;
        uint64 unlockClaimTime;
        address rewardRecipient;
        Status status;
        bool jailed;
        bytes32 consensusKey;
        bytes32 dkgKey;
        /// Stake withdrawn but not yet claimed: out of the voting power, still slashable until claimed.
        uint256 withdrawing;
        uint64 withdrawClaimTime;
    }

    bytes32 public constant REWARDS_TAG = keccak256("metis-seq/LockingPool.batchSubmitRewards/v1");
    bytes32 public constant SLASH_TAG = keccak256("metis-seq/LockingPool.slash/v1");
    /// @dev Slashed stake goes here when no treasury is set (plain ERC20s cannot burn to address(0)).
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    LockingInfo public immutable escrow;
    /// @notice The owners' governance votes, kept equal to their active, unjailed stake.
    StakeVotes public immutable votes;

    uint256 public nextSequencerId = 1;
    mapping(uint256 => Sequencer) internal _sequencers;
    mapping(address => uint256) public seqOwners;
    mapping(address => uint256) public seqSigners;
    /// @notice Consensus and DKG keys ever registered; a key is never reused, even after its sequencer left.
    mapping(bytes32 => bool) public usedKeys;
    mapping(address => bool) public whitelist;

    uint256 public exitDelay = 21 days;
    uint256 public signerUpdateThrottle = 1 days;
    uint256 public rewardPerBlock;
    uint256 public totalLocked;
    address public treasury;
    /// @notice May pause, nothing else (see `guardianPause`).
    address public guardian;

    uint256 public lastRewardBatchId;
    uint256 public nextRewardEpoch;
    mapping(bytes32 => bool) public usedEvidence;

    /// @dev The group key's bytes live in the code of a data contract: one EXTCODECOPY is far cheaper than
    /// eight SLOADs on every signature check.
    address internal _groupKeyPointer;
    uint256 public groupKeyVersion;
    address public mpcAddress;

    event Locked(
        address indexed signer,
        uint256 indexed sequencerId,
        uint256 nonce,
        address indexed owner,
        uint256 amount,
        uint256 total,
        bytes32 consensusKey,
        bytes32 dkgKey
    );
    event Relocked(uint256 indexed sequencerId, uint256 amount, uint256 total);
    /// Stake left the voting power now; it is paid by `withdrawClaim` after the exit delay.
    event Withdraw(uint256 indexed sequencerId, uint256 amount);
    event WithdrawClaimed(uint256 indexed sequencerId, address to, uint256 amount);
    event LockUpdate(uint256 indexed sequencerId, uint256 indexed nonce, uint256 indexed newAmount);
    event ClaimRewards(
        uint256 indexed sequencerId, address recipient, uint256 indexed amount, uint256 indexed totalAmount
    );
    event UnlockInit(
        address indexed user,
        uint256 indexed sequencerId,
        uint256 nonce,
        uint256 deactivationTime,
        uint256 unlockClaimTime,
        uint256 indexed amount
    );
    event Unlocked(address indexed user, uint256 indexed sequencerId, uint256 amount, uint256 total);
    event SignerChange(
        uint256 indexed sequencerId, uint256 nonce, address indexed oldSigner, address indexed newSigner
    );
    event BatchSubmitReward(uint256 indexed batchId, uint256 startEpoch, uint256 endEpoch, uint256 totalReward);
    event Slashed(
        uint256 indexed sequencerId, uint256 nonce, uint256 amount, bytes32 indexed evidenceHash, uint256 newAmount
    );
    event Jailed(uint256 indexed sequencerId, bool jailed);
    event WhitelistChanged(address indexed user, bool allowed);
    event SequencerOwnerChanged(uint256 indexed sequencerId, address indexed oldOwner, address indexed newOwner);
    event SequencerRewardRecipientChanged(uint256 indexed sequencerId, address recipient);
    event RewardPerBlockChanged(uint256 oldReward, uint256 newReward);
    event ExitDelayChanged(uint256 oldDelay, uint256 newDelay);
    event SignerUpdateThrottleChanged(uint256 oldThrottle, uint256 newThrottle);
    event TreasuryChanged(address indexed oldTreasury, address indexed newTreasury);
    event GuardianChanged(address indexed oldGuardian, address indexed newGuardian);
    event GroupKeyUpdated(uint256 indexed version, address indexed mpcAddress, bytes publicKey);

    error NotWhitelisted(address user);
    error AlreadyHasSequencer(address owner);
    error NotSequencerOwner(uint256 sequencerId);
    error InvalidSequencerStatus(uint256 sequencerId, Status status);
    error SequencerJailed(uint256 sequencerId);
    error InvalidSigner(address signer);
    error InvalidKey();
    error AmountOutOfBounds(uint256 amount, uint256 min, uint256 max);
    error ZeroAmount();
    error ExitNotReady(uint256 unlockClaimTime);
    error SignerUpdateTooSoon(uint256 nextAllowed);
    error NoGroupKey();
    error InvalidGroupKey();
    error InvalidSignature();
    error InvalidBatchId(uint256 expected, uint256 got);
    error InvalidEpochRange(uint256 expectedStart, uint256 start, uint256 end);
    error LengthMismatch();
    error UnsortedSequencerIds();
    error EvidenceAlreadyUsed(bytes32 evidenceHash);
    error NothingToClaim();
    error ZeroAddress();
    error NotGuardian(address caller);

    constructor(address initialOwner, LockingInfo escrow_, uint256 rewardPerBlock_) Ownable(initialOwner) {
        if (address(escrow_) == address(0)) revert ZeroAddress();
        escrow = escrow_;
        votes = new StakeVotes();
        rewardPerBlock = rewardPerBlock_;
        emit RewardPerBlockChanged(0, rewardPerBlock_);
    }

    modifier onlySequencerOwner(uint256 seqId) {
        if (_sequencers[seqId].owner != msg.sender || msg.sender == address(0)) revert NotSequencerOwner(seqId);
        _;
    }

    // ----------------------------------------------------------------------------------------- views

    function sequencers(uint256 seqId) external view returns (Sequencer memory) {
        return _sequencers[seqId];
    }

    /// @inheritdoc IGroupKeyRegistry
    function groupPublicKey() public view returns (bytes memory pk) {
        address ptr = _groupKeyPointer;
        if (ptr == address(0)) return pk;
        pk = new bytes(BLS.G2_LENGTH);
        assembly ("memory-safe") {
            extcodecopy(ptr, add(pk, 32), 1, 256)
        }
    }

    /// @notice The digest the group key signs for a reward report (framed by BLS.signingMessage).
    function rewardsDigest(
        uint256 batchId,
        uint256 startEpoch,
        uint256 endEpoch,
        uint256[] calldata sequencerIds,
        uint256[] calldata blocks
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                REWARDS_TAG,
                block.chainid,
                address(this),
                batchId,
                startEpoch,
                endEpoch,
                keccak256(abi.encodePacked(sequencerIds)),
                keccak256(abi.encodePacked(blocks))
            )
        );
    }

    /// @notice The digest the group key signs to slash a sequencer.
    function slashDigest(uint256 seqId, uint256 amount, bytes32 evidenceHash) public view returns (bytes32) {
        return keccak256(abi.encode(SLASH_TAG, block.chainid, address(this), seqId, amount, evidenceHash));
    }

    // ----------------------------------------------------------------------------------------- owner

    function setWhitelist(address user, bool allowed) external onlyOwner {
        if (user == address(0)) revert ZeroAddress();
        whitelist[user] = allowed;
        emit WhitelistChanged(user, allowed);
    }

    function setPause(bool paused_) external onlyOwner {
        if (paused_) _pause();
        else _unpause();
    }

    /// @notice Names the guardian (zero: none): an account that may pause the pool in an emergency and do
    /// nothing else; only the owner (governance, through its timelock) unpauses.
    function setGuardian(address newGuardian) external onlyOwner {
        emit GuardianChanged(guardian, newGuardian);
        guardian = newGuardian;
    }

    /// @notice Pauses the pool (the guardian only).
    function guardianPause() external {
        if (msg.sender != guardian || msg.sender == address(0)) revert NotGuardian(msg.sender);
        _pause();
    }

    function updateBlockReward(uint256 newReward) external onlyOwner {
        emit RewardPerBlockChanged(rewardPerBlock, newReward);
        rewardPerBlock = newReward;
    }

    function setExitDelay(uint256 newDelay) external onlyOwner {
        emit ExitDelayChanged(exitDelay, newDelay);
        exitDelay = newDelay;
    }

    function setSignerUpdateThrottle(uint256 newThrottle) external onlyOwner {
        emit SignerUpdateThrottleChanged(signerUpdateThrottle, newThrottle);
        signerUpdateThrottle = newThrottle;
    }

    function setTreasury(address newTreasury) external onlyOwner {
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Registers (at genesis) or replaces the threshold group public key. Resharing keeps the key, so
    /// this is only needed once; replacing it is an owner decision (e.g. after a lost quorum).
    function setGroupKey(bytes calldata publicKey) external onlyOwner {
        if (!BLS.isValidG2(publicKey)) revert InvalidGroupKey();
        // Data contract: init code copies the runtime (0x00 || key) and returns it; 0x00 makes it unexecutable.
        bytes memory runtime = abi.encodePacked(hex"00", publicKey);
        bytes memory init = abi.encodePacked(hex"63", uint32(runtime.length), hex"80600e6000396000f3", runtime);
        address ptr;
        assembly ("memory-safe") {
            ptr := create(0, add(init, 32), mload(init))
        }
        if (ptr == address(0)) revert InvalidGroupKey();
        _groupKeyPointer = ptr;
        address derived = address(uint160(uint256(keccak256(publicKey))));
        mpcAddress = derived;
        groupKeyVersion += 1;
        emit GroupKeyUpdated(groupKeyVersion, derived, publicKey);
    }

    /// @notice Starts the exit of a sequencer on the owner's authority (works while paused).
    function forceUnlock(uint256 seqId) external onlyOwner {
        _startUnlock(seqId);
    }

    /// @notice Lets a jailed sequencer vote and be credited again. A slash may have left its stake under the
    /// minimum lock: its owner relocks first, as an active sequencer never holds less than the minimum.
    function unjail(uint256 seqId) external onlyOwner {
        Sequencer storage s = _sequencers[seqId];
        if (s.status == Status.Inactive) revert InvalidSequencerStatus(seqId, s.status);
        uint256 min = escrow.minLock();
        if (s.status == Status.Active && s.amount < min) revert AmountOutOfBounds(s.amount, min, escrow.maxLock());
        s.jailed = false;
        _syncVotes(s);
        emit Jailed(seqId, false);
    }

    // ----------------------------------------------------------------------------------------- sequencers

    /// @notice Locks `amount` (approved to the LockingInfo escrow) and registers a sequencer owned by the caller.
    /// @param signer the sequencer's L1 signer address
    /// @param consensusKey its 32-byte consensus (Tendermint, ed25519) public key
    /// @param dkgKey its 32-byte key for receiving encrypted key shares in the DKG
    function lockFor(address signer, uint256 amount, bytes calldata consensusKey, bytes calldata dkgKey)
        external
        whenNotPaused
        returns (uint256 seqId)
    {
        if (!whitelist[msg.sender]) revert NotWhitelisted(msg.sender);
        if (seqOwners[msg.sender] != 0) revert AlreadyHasSequencer(msg.sender);
        if (signer == address(0) || seqSigners[signer] != 0) revert InvalidSigner(signer);
        bytes32 ck = _checkKey(consensusKey);
        bytes32 dk = _checkKey(dkgKey);
        if (ck == dk) revert InvalidKey();
        _checkBounds(amount);

        seqId = nextSequencerId++;
        usedKeys[ck] = true;
        usedKeys[dk] = true;
        seqOwners[msg.sender] = seqId;
        seqSigners[signer] = seqId;
        Sequencer storage s = _sequencers[seqId];
        s.amount = amount;
        s.owner = msg.sender;
        s.nonce = 1;
        s.activationBlock = uint64(block.number);
        s.signer = signer;
        s.lastSignerUpdate = uint64(block.timestamp);
        s.rewardRecipient = msg.sender;
        s.status = Status.Active;
        s.consensusKey = ck;
        s.dkgKey = dk;
        totalLocked += amount;
        _syncVotes(s);

        escrow.deposit(msg.sender, amount);
        emit Locked(signer, seqId, 1, msg.sender, amount, totalLocked, ck, dk);
    }

    /// @notice Adds `amount` (and, if `lockReward`, the unclaimed reward) to an active sequencer's stake.
    function relock(uint256 seqId, uint256 amount, bool lockReward) external whenNotPaused onlySequencerOwner(seqId) {
        Sequencer storage s = _requireActive(seqId);
        uint256 fromReward = lockReward ? s.reward : 0;
        if (amount + fromReward == 0) revert ZeroAmount();
        uint256 newAmount = s.amount + amount + fromReward;
        _checkBounds(newAmount);
        s.reward -= fromReward;
        s.amount = newAmount;
        totalLocked += amount + fromReward;
        uint64 nonce = ++s.nonce;
        _syncVotes(s);
        if (amount > 0) escrow.deposit(msg.sender, amount);
        emit Relocked(seqId, amount + fromReward, totalLocked);
        emit LockUpdate(seqId, nonce, newAmount);
    }

    /// @notice Withdraws part of an active sequencer's stake, keeping at least minLock locked. The amount leaves
    /// the voting power at once but is paid only by `withdrawClaim` after the exit delay, and stays slashable
    /// until then: a sequencer cannot empty its stake ahead of a slash for something it already did. A new
    /// withdrawal restarts the delay for everything pending.
    function withdraw(uint256 seqId, uint256 amount) external whenNotPaused onlySequencerOwner(seqId) {
        Sequencer storage s = _requireActive(seqId);
        if (amount == 0) revert ZeroAmount();
        if (amount > s.amount) revert AmountOutOfBounds(amount, 0, s.amount);
        uint256 newAmount = s.amount - amount;
        _checkBounds(newAmount);
        s.amount = newAmount;
        totalLocked -= amount;
        s.withdrawing += amount;
        // forge-lint: disable-next-line(unsafe-typecast) timestamps fit in 64 bits for billions of years
        s.withdrawClaimTime = uint64(block.timestamp + exitDelay);
        uint64 nonce = ++s.nonce;
        _syncVotes(s);
        emit Withdraw(seqId, amount);
        emit LockUpdate(seqId, nonce, newAmount);
    }

    /// @notice Pays out what `withdraw` set aside, once the exit delay has passed.
    function withdrawClaim(uint256 seqId) external whenNotPaused onlySequencerOwner(seqId) {
        Sequencer storage s = _sequencers[seqId];
        uint256 amount = s.withdrawing;
        if (amount == 0) revert NothingToClaim();
        if (block.timestamp < s.withdrawClaimTime) revert ExitNotReady(s.withdrawClaimTime);
        s.withdrawing = 0;
        escrow.payOut(msg.sender, amount);
        emit WithdrawClaimed(seqId, msg.sender, amount);
    }

    /// @notice Starts the exit: the sequencer leaves the active set now and can claim its stake after exitDelay.
    function unlock(uint256 seqId) external whenNotPaused onlySequencerOwner(seqId) {
        _startUnlock(seqId);
    }

    /// @notice Finishes the exit after the delay: stake to the owner, unclaimed reward to the reward recipient.
    function unlockClaim(uint256 seqId) external whenNotPaused onlySequencerOwner(seqId) {
        Sequencer storage s = _sequencers[seqId];
        if (s.status != Status.Unlocked) revert InvalidSequencerStatus(seqId, s.status);
        if (block.timestamp < s.unlockClaimTime) revert ExitNotReady(s.unlockClaimTime);
        if (s.withdrawing > 0 && block.timestamp < s.withdrawClaimTime) revert ExitNotReady(s.withdrawClaimTime);
        uint256 amount = s.amount;
        uint256 pending = s.withdrawing;
        s.amount = 0;
        s.withdrawing = 0;
        s.status = Status.Inactive;
        totalLocked -= amount;
        delete seqOwners[s.owner];
        delete seqSigners[s.signer];
        ++s.nonce;
        uint256 reward = s.reward;
        if (reward > 0) _payReward(seqId, s, reward);
        if (amount + pending > 0) escrow.payOut(msg.sender, amount + pending);
        emit Unlocked(msg.sender, seqId, amount, totalLocked);
    }

    /// @notice Pays the sequencer's unclaimed rewards to its reward recipient.
    function withdrawRewards(uint256 seqId) external whenNotPaused onlySequencerOwner(seqId) {
        Sequencer storage s = _sequencers[seqId];
        uint256 reward = s.reward;
        if (reward == 0) revert NothingToClaim();
        _payReward(seqId, s, reward);
    }

    function setSequencerRewardRecipient(uint256 seqId, address recipient) external onlySequencerOwner(seqId) {
        if (recipient == address(0)) revert ZeroAddress();
        _sequencers[seqId].rewardRecipient = recipient;
        emit SequencerRewardRecipientChanged(seqId, recipient);
    }

    /// @notice Hands the sequencer to another whitelisted owner who has none.
    function setSequencerOwner(uint256 seqId, address newOwner) external whenNotPaused onlySequencerOwner(seqId) {
        Status status = _sequencers[seqId].status;
        // A finished sequencer has no owner slot left to hand over (unlockClaim freed it).
        if (status == Status.Inactive) revert InvalidSequencerStatus(seqId, status);
        if (!whitelist[newOwner]) revert NotWhitelisted(newOwner);
        if (seqOwners[newOwner] != 0) revert AlreadyHasSequencer(newOwner);
        delete seqOwners[msg.sender];
        seqOwners[newOwner] = seqId;
        _sequencers[seqId].owner = newOwner;
        // The votes go with the sequencer.
        votes.setUnits(msg.sender, 0);
        _syncVotes(_sequencers[seqId]);
        emit SequencerOwnerChanged(seqId, msg.sender, newOwner);
    }

    /// @notice Rotates the sequencer's L1 signer, at most once per signerUpdateThrottle. Rewards are keyed by
    /// sequencer id, so a rotation never breaks reward reports.
    function updateSigner(uint256 seqId, address newSigner) external whenNotPaused onlySequencerOwner(seqId) {
        Sequencer storage s = _requireActive(seqId);
        if (newSigner == address(0) || seqSigners[newSigner] != 0) revert InvalidSigner(newSigner);
        uint256 nextAllowed = uint256(s.lastSignerUpdate) + signerUpdateThrottle;
        if (block.timestamp < nextAllowed) revert SignerUpdateTooSoon(nextAllowed);
        address oldSigner = s.signer;
        delete seqSigners[oldSigner];
        seqSigners[newSigner] = seqId;
        s.signer = newSigner;
        s.lastSignerUpdate = uint64(block.timestamp);
        uint64 nonce = ++s.nonce;
        emit SignerChange(seqId, nonce, oldSigner, newSigner);
    }

    // ----------------------------------------------------------------------------------------- threshold-signed

    /// @notice Credits blocks x rewardPerBlock for a contiguous range of PoS epochs, signed by the group key.
    /// Only sequencers that are active and not jailed are credited; the rest of the report is skipped (and not
    /// paid for), so an exited sequencer never accrues rewards.
    function batchSubmitRewards(
        uint256 batchId,
        uint256 startEpoch,
        uint256 endEpoch,
        uint256[] calldata sequencerIds,
        uint256[] calldata blocks,
        bytes calldata signature
    ) external {
        if (batchId != lastRewardBatchId + 1) {
            revert InvalidBatchId(lastRewardBatchId + 1, batchId);
        }
        if (startEpoch != nextRewardEpoch || endEpoch < startEpoch) {
            revert InvalidEpochRange(nextRewardEpoch, startEpoch, endEpoch);
        }
        if (sequencerIds.length != blocks.length) revert LengthMismatch();
        _verifyGroupSignature(rewardsDigest(batchId, startEpoch, endEpoch, sequencerIds, blocks), signature);

        lastRewardBatchId = batchId;
        nextRewardEpoch = endEpoch + 1;
        uint256 perBlock = rewardPerBlock;
        uint256 total;
        uint256 prev;
        for (uint256 i; i < sequencerIds.length; ++i) {
            uint256 id = sequencerIds[i];
            // Strictly increasing ids: no sequencer is credited twice in one report.
            if (id <= prev) revert UnsortedSequencerIds();
            prev = id;
            Sequencer storage s = _sequencers[id];
            if (s.status != Status.Active || s.jailed) continue;
            uint256 r = blocks[i] * perBlock;
            s.reward += r;
            total += r;
        }
        if (total > 0) escrow.pullRewards(total);
        emit BatchSubmitReward(batchId, startEpoch, endEpoch, total);
    }

    /// @notice Slashes `amount` of a sequencer's stake for the evidence `evidenceHash`, signed by the group key;
    /// jails it. Each piece of evidence slashes once.
    function slash(uint256 seqId, uint256 amount, bytes32 evidenceHash, bytes calldata signature) external {
        Sequencer storage s = _sequencers[seqId];
        if (s.status == Status.Inactive) revert InvalidSequencerStatus(seqId, s.status);
        if (usedEvidence[evidenceHash]) revert EvidenceAlreadyUsed(evidenceHash);
        uint256 slashable = s.amount + s.withdrawing;
        if (amount == 0 || amount > slashable) revert AmountOutOfBounds(amount, 1, slashable);
        _verifyGroupSignature(slashDigest(seqId, amount, evidenceHash), signature);

        usedEvidence[evidenceHash] = true;
        // The locked stake first, then what is being withdrawn.
        uint256 fromLocked = amount < s.amount ? amount : s.amount;
        uint256 newAmount = s.amount - fromLocked;
        s.amount = newAmount;
        s.withdrawing -= amount - fromLocked;
        s.jailed = true;
        totalLocked -= fromLocked;
        uint64 nonce = ++s.nonce;
        _syncVotes(s);
        address to = treasury == address(0) ? BURN_ADDRESS : treasury;
        escrow.payOut(to, amount);
        emit Slashed(seqId, nonce, amount, evidenceHash, newAmount);
        emit LockUpdate(seqId, nonce, newAmount);
        emit Jailed(seqId, true);
    }

    // ----------------------------------------------------------------------------------------- internal

    function _verifyGroupSignature(bytes32 digest, bytes calldata signature) internal view {
        bytes memory pk = groupPublicKey();
        if (pk.length == 0) revert NoGroupKey();
        if (!BLS.verifyDigest(pk, signature, digest)) revert InvalidSignature();
    }

    function _startUnlock(uint256 seqId) internal {
        Sequencer storage s = _requireActive(seqId);
        s.status = Status.Unlocked;
        uint256 claimTime = block.timestamp + exitDelay;
        // forge-lint: disable-next-line(unsafe-typecast) timestamps fit in 64 bits for billions of years
        s.unlockClaimTime = uint64(claimTime);
        uint64 nonce = ++s.nonce;
        _syncVotes(s);
        emit UnlockInit(s.owner, seqId, nonce, block.timestamp, claimTime, s.amount);
    }

    /// @dev The owner's votes follow its sequencer: the locked stake while active and not jailed, else none. An
    /// owner has one sequencer at a time (`seqOwners`), and one that ended (Inactive) is never touched again.
    function _syncVotes(Sequencer storage s) internal {
        votes.setUnits(s.owner, s.status == Status.Active && !s.jailed ? s.amount : 0);
    }

    function _payReward(uint256 seqId, Sequencer storage s, uint256 reward) internal {
        s.reward = 0;
        s.rewardClaimed += reward;
        address recipient = s.rewardRecipient == address(0) ? s.owner : s.rewardRecipient;
        escrow.payOut(recipient, reward);
        emit ClaimRewards(seqId, recipient, reward, s.rewardClaimed);
    }

    function _requireActive(uint256 seqId) internal view returns (Sequencer storage s) {
        s = _sequencers[seqId];
        if (s.status != Status.Active) revert InvalidSequencerStatus(seqId, s.status);
    }

    function _checkKey(bytes calldata key) internal view returns (bytes32 k) {
        if (key.length != 32) revert InvalidKey();
        // forge-lint: disable-next-line(unsafe-typecast) length checked to be exactly 32 above
        k = bytes32(key);
        if (k == bytes32(0) || usedKeys[k]) revert InvalidKey();
    }

    function _checkBounds(uint256 amount) internal view {
        uint256 min = escrow.minLock();
        uint256 max = escrow.maxLock();
        if (amount < min || amount > max) revert AmountOutOfBounds(amount, min, max);
    }
}
