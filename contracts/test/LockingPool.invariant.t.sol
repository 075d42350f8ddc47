// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Fixture} from "./base/Fixture.sol";
import {BlsTestSigner} from "./base/BlsTestSigner.sol";
import {Vm} from "./base/Vm.sol";
import {MetisToken} from "../src/MetisToken.sol";
import {LockingInfo} from "../src/LockingInfo.sol";
import {LockingPool} from "../src/LockingPool.sol";
import {StakeVotes} from "../src/StakeVotes.sol";

/// @dev What forge's invariant runs call: five owners lock, relock, withdraw, claim, unlock, delegate their votes
/// to each other, get slashed by the pool's group key and unjailed by the owner, in any order, with time and L1
/// blocks passing between. Inputs are bounded to what could succeed, so most calls do something; the ones that
/// revert change nothing.
contract PoolHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 internal constant ACTORS = 5;

    LockingPool public immutable pool;
    LockingInfo public immutable info;
    MetisToken public immutable token;
    address public immutable admin;
    uint256 public immutable groupSk;

    /// Keys are never reused, so each new lock of an owner takes the next generation's.
    uint256 public generation;
    uint256 public calls;
    uint256 public slashes;
    /// Blocks `wait` left behind, and the active, unjailed stake each ended with (what votes at that block).
    uint256[] public passed;
    mapping(uint256 block => uint256) public activeAt;

    constructor(LockingPool pool_, LockingInfo info_, MetisToken token_, address admin_, uint256 groupSk_) {
        pool = pool_;
        info = info_;
        token = token_;
        admin = admin_;
        groupSk = groupSk_;
    }

    function owner(uint256 seed) public pure returns (address) {
        // forge-lint: disable-next-line(unsafe-typecast) small indexes
        return address(uint160(0x7000 + (seed % ACTORS)));
    }

    function _clamp(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + (x % (hi - lo + 1));
    }

    function lock(uint256 seed, uint256 amount) external {
        calls++;
        address user = owner(seed);
        if (pool.seqOwners(user) != 0) return;
        generation++;
        amount = _clamp(amount, info.minLock(), info.maxLock());
        vm.prank(admin);
        pool.setWhitelist(user, true);
        vm.prank(admin);
        token.mint(user, amount);
        vm.startPrank(user);
        token.approve(address(info), amount);
        // forge-lint: disable-next-line(unsafe-typecast) small indexes
        address signer = address(uint160(0x8000 + generation));
        pool.lockFor(
            signer,
            amount,
            abi.encodePacked(keccak256(abi.encode("inv-ck", generation))),
            abi.encodePacked(keccak256(abi.encode("inv-dk", generation)))
        );
        vm.stopPrank();
    }

    function relock(uint256 seed, uint256 amount) external {
        calls++;
        address user = owner(seed);
        uint256 id = pool.seqOwners(user);
        LockingPool.Sequencer memory s = pool.sequencers(id);
        if (id == 0 || s.status != LockingPool.Status.Active || s.amount >= info.maxLock()) return;
        amount = _clamp(amount, 1, info.maxLock() - s.amount);
        vm.prank(admin);
        token.mint(user, amount);
        vm.startPrank(user);
        token.approve(address(info), amount);
        pool.relock(id, amount, false);
        vm.stopPrank();
    }

    function withdraw(uint256 seed, uint256 amount) external {
        calls++;
        address user = owner(seed);
        uint256 id = pool.seqOwners(user);
        LockingPool.Sequencer memory s = pool.sequencers(id);
        if (id == 0 || s.status != LockingPool.Status.Active || s.amount <= info.minLock()) return;
        amount = _clamp(amount, 1, s.amount - info.minLock());
        vm.prank(user);
        pool.withdraw(id, amount);
    }

    function withdrawClaim(uint256 seed) external {
        calls++;
        address user = owner(seed);
        uint256 id = pool.seqOwners(user);
        LockingPool.Sequencer memory s = pool.sequencers(id);
        if (id == 0 || s.withdrawing == 0 || block.timestamp < s.withdrawClaimTime) return;
        vm.prank(user);
        pool.withdrawClaim(id);
    }

    function unlock(uint256 seed) external {
        calls++;
        address user = owner(seed);
        uint256 id = pool.seqOwners(user);
        if (id == 0 || pool.sequencers(id).status != LockingPool.Status.Active) return;
        vm.prank(user);
        pool.unlock(id);
    }

    function unlockClaim(uint256 seed) external {
        calls++;
        address user = owner(seed);
        uint256 id = pool.seqOwners(user);
        LockingPool.Sequencer memory s = pool.sequencers(id);
        if (id == 0 || s.status != LockingPool.Status.Unlocked || block.timestamp < s.unlockClaimTime) return;
        if (s.withdrawing > 0 && block.timestamp < s.withdrawClaimTime) return;
        vm.prank(user);
        pool.unlockClaim(id);
    }

    function slash(uint256 seed, uint256 amount, bytes32 evidence) external {
        calls++;
        uint256 id = pool.seqOwners(owner(seed));
        LockingPool.Sequencer memory s = pool.sequencers(id);
        uint256 slashable = s.amount + s.withdrawing;
        if (id == 0 || slashable == 0 || pool.usedEvidence(evidence)) return;
        amount = _clamp(amount, 1, slashable);
        bytes memory sig = BlsTestSigner.sign(groupSk, pool.slashDigest(id, amount, evidence));
        pool.slash(id, amount, evidence, sig);
        slashes++;
    }

    function unjail(uint256 seed) external {
        calls++;
        uint256 id = pool.seqOwners(owner(seed));
        LockingPool.Sequencer memory s = pool.sequencers(id);
        if (id == 0 || !s.jailed) return;
        if (s.status == LockingPool.Status.Active && s.amount < info.minLock()) return;
        vm.prank(admin);
        pool.unjail(id);
    }

    function delegate(uint256 seed, uint256 to) external {
        calls++;
        StakeVotes votes = pool.votes();
        vm.prank(owner(seed));
        votes.delegate(owner(to));
    }

    /// The stake that votes now: active and not jailed.
    function activeStake() public view returns (uint256 total) {
        for (uint256 id = 1; id < pool.nextSequencerId(); id++) {
            LockingPool.Sequencer memory s = pool.sequencers(id);
            if (s.status == LockingPool.Status.Active && !s.jailed) total += s.amount;
        }
    }

    function passedCount() external view returns (uint256) {
        return passed.length;
    }

    function wait(uint256 secs) external {
        calls++;
        activeAt[block.number] = activeStake();
        passed.push(block.number);
        vm.roll(block.number + 1);
        vm.warp(block.timestamp + _clamp(secs, 1, 30 days));
    }
}

/// @dev The stake accounting holds whatever the owners and the pool's key do.
contract LockingPoolInvariantTest is Fixture {
    PoolHandler internal handler;

    function setUp() public override {
        super.setUp();
        _registerGroupKey();
        // The handler whitelists and funds the owners it plays as the contracts' owner (by prank).
        handler = new PoolHandler(pool, info, token, OWNER, GROUP_SK);
    }

    /// forge's invariant runner calls only these.
    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    /// The escrow holds exactly what the sequencers are owed: stake locked, stake being withdrawn, reward.
    function invariant_escrowHoldsWhatIsOwed() public view {
        uint256 owed;
        uint256 locked;
        for (uint256 id = 1; id < pool.nextSequencerId(); id++) {
            LockingPool.Sequencer memory s = pool.sequencers(id);
            owed += s.amount + s.withdrawing + s.reward;
            locked += s.amount;
        }
        assertEq(token.balanceOf(address(info)), owed, "escrow balance");
        assertEq(pool.totalLocked(), locked, "totalLocked");
    }

    /// Every owner's voting units are its sequencer's stake while it is active and unjailed, none otherwise, and
    /// the votes of all delegates add up to the stake that votes.
    function invariant_votesFollowTheStake() public view {
        StakeVotes votes = pool.votes();
        for (uint256 id = 1; id < pool.nextSequencerId(); id++) {
            LockingPool.Sequencer memory s = pool.sequencers(id);
            if (pool.seqOwners(s.owner) != id) continue;
            bool votesNow = s.status == LockingPool.Status.Active && !s.jailed;
            assertEq(votes.unitsOf(s.owner), votesNow ? s.amount : 0, "units of an owner");
        }
        uint256 sum;
        for (uint256 a; a < 5; a++) {
            sum += votes.getVotes(handler.owner(a));
        }
        assertEq(sum, handler.activeStake(), "votes of all delegates");
    }

    /// At every block the runs left behind, the past votes of all delegates add up to the past total, and both are
    /// the stake that was active and unjailed when the block ended.
    function invariant_pastVotesAddUpAtEveryBlock() public view {
        StakeVotes votes = pool.votes();
        uint256 n = handler.passedCount();
        for (uint256 k = n > 16 ? n - 16 : 0; k < n; k++) {
            uint256 b = handler.passed(k);
            uint256 sum;
            for (uint256 a; a < 5; a++) {
                sum += votes.getPastVotes(handler.owner(a), b);
            }
            assertEq(votes.getPastTotalSupply(b), handler.activeAt(b), "past total");
            assertEq(sum, handler.activeAt(b), "past votes of all delegates");
        }
    }

    /// Owners and signers map to their live sequencer and back; a finished exit leaves nothing behind; an active,
    /// unslashed stake stays within the bounds.
    function invariant_sequencerRecordsAgree() public view {
        for (uint256 id = 1; id < pool.nextSequencerId(); id++) {
            LockingPool.Sequencer memory s = pool.sequencers(id);
            if (s.status == LockingPool.Status.Inactive) {
                assertEq(s.amount + s.withdrawing, 0, "an exited sequencer holds stake");
                assertTrue(pool.seqOwners(s.owner) != id, "an exited sequencer keeps its owner");
                continue;
            }
            assertEq(pool.seqOwners(s.owner), id, "owner -> id");
            assertEq(pool.seqSigners(s.signer), id, "signer -> id");
            if (s.status == LockingPool.Status.Active && !s.jailed) {
                assertTrue(s.amount >= info.minLock() && s.amount <= info.maxLock(), "active stake out of bounds");
            }
        }
    }
}
