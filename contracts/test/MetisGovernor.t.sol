// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Fixture} from "./base/Fixture.sol";
import {MetisGovernor} from "../src/MetisGovernor.sol";
import {PosParams} from "../src/PosParams.sol";
import {StakeVotes} from "../src/StakeVotes.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {LockingInfo} from "../src/LockingInfo.sol";
import {LockingPool} from "../src/LockingPool.sol";

/// @dev The pool governed by its stake: four owners lock 40k, 30k, 20k and 20k METIS, the contracts are handed to
/// the timelock the way the devnet does it, and proposals go propose -> vote -> queue -> execute.
contract MetisGovernorTest is Fixture {
    uint48 internal constant DELAY_BLOCKS = 2;
    uint32 internal constant PERIOD_BLOCKS = 20;
    uint256 internal constant THRESHOLD = 20_000 ether;
    uint256 internal constant QUORUM_PERCENT = 50;
    uint256 internal constant TIMELOCK_DELAY = 1 hours;

    StakeVotes internal votes;
    TimelockController internal timelock;
    MetisGovernor internal governor;
    PosParams internal params;

    function setUp() public override {
        super.setUp();
        vm.roll(1_000);
        votes = pool.votes();
        _lock(1, 40_000 ether);
        _lock(2, 30_000 ether);
        _lock(3, 20_000 ether);
        _lock(4, 20_000 ether);
        params = new PosParams(OWNER, _genesisParams());
        _handOver();
        vm.roll(block.number + 1);
    }

    function _genesisParams() internal pure returns (uint256[] memory v) {
        v = new uint256[](10);
        (v[0], v[1], v[2], v[3], v[4]) = (10, 3, 2, 10, 0);
        (v[5], v[6], v[7], v[8], v[9]) = (2, 500, 1000, 100, 5000);
    }

    /// The hand-over: the timelock (with this test as its temporary proposer and admin) accepts the ownership
    /// the old owner offers, then the temporary roles go. Only the governor proposes from then on.
    function _handOver() internal {
        address[] memory proposers = new address[](1);
        proposers[0] = address(this);
        address[] memory executors = new address[](1);
        executors[0] = address(0);
        timelock = new TimelockController(TIMELOCK_DELAY, proposers, executors, address(this));
        governor = new MetisGovernor(votes, timelock, DELAY_BLOCKS, PERIOD_BLOCKS, THRESHOLD, QUORUM_PERCENT);
        timelock.grantRole(timelock.PROPOSER_ROLE(), address(governor));
        timelock.grantRole(timelock.CANCELLER_ROLE(), address(governor));
        vm.startPrank(OWNER);
        pool.transferOwnership(address(timelock));
        info.transferOwnership(address(timelock));
        params.transferOwnership(address(timelock));
        vm.stopPrank();
        address[] memory targets = new address[](3);
        (targets[0], targets[1], targets[2]) = (address(pool), address(info), address(params));
        uint256[] memory values = new uint256[](3);
        bytes[] memory calls = new bytes[](3);
        for (uint256 i; i < 3; ++i) {
            calls[i] = abi.encodeWithSignature("acceptOwnership()");
        }
        timelock.scheduleBatch(targets, values, calls, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        timelock.executeBatch(targets, values, calls, bytes32(0), bytes32(0));
        timelock.revokeRole(timelock.PROPOSER_ROLE(), address(this));
        timelock.renounceRole(timelock.DEFAULT_ADMIN_ROLE(), address(this));
    }

    function _one(address target, bytes memory data)
        internal
        pure
        returns (address[] memory t, uint256[] memory v, bytes[] memory c)
    {
        t = new address[](1);
        t[0] = target;
        v = new uint256[](1);
        c = new bytes[](1);
        c[0] = data;
    }

    function _propose(address target, bytes memory data, string memory description) internal returns (uint256 id) {
        (address[] memory t, uint256[] memory v, bytes[] memory c) = _one(target, data);
        vm.prank(_user(1));
        id = governor.propose(t, v, c, description);
    }

    function _vote(uint256 id, uint256 user, uint8 support) internal {
        vm.prank(_user(user));
        governor.castVote(id, support);
    }

    function _queue(address target, bytes memory data, string memory description) internal {
        (address[] memory t, uint256[] memory v, bytes[] memory c) = _one(target, data);
        governor.queue(t, v, c, keccak256(bytes(description)));
    }

    function _execute(address target, bytes memory data, string memory description) internal {
        (address[] memory t, uint256[] memory v, bytes[] memory c) = _one(target, data);
        governor.execute(t, v, c, keccak256(bytes(description)));
    }

    function _pastVoting(uint256 id) internal {
        vm.roll(governor.proposalDeadline(id) + 1);
    }

    function _startVoting(uint256 id) internal {
        vm.roll(governor.proposalSnapshot(id) + 1);
    }

    // ------------------------------------------------------------------ configuration

    function test_configuration() public view {
        assertEq(keccak256(bytes(governor.name())), keccak256("Metis sequencer pool"), "name");
        assertEq(governor.votingDelay(), DELAY_BLOCKS, "voting delay");
        assertEq(governor.votingPeriod(), PERIOD_BLOCKS, "voting period");
        assertEq(governor.proposalThreshold(), THRESHOLD, "threshold");
        assertEq(governor.quorumNumerator(), QUORUM_PERCENT, "quorum share");
        assertEq(address(governor.token()), address(votes), "votes");
        assertEq(governor.timelock(), address(timelock), "timelock");
        assertEq(governor.quorum(block.number - 1), 55_000 ether, "half of the stake that votes");
        assertEq(pool.owner(), address(timelock), "pool owned by the timelock");
        assertEq(info.owner(), address(timelock), "info owned by the timelock");
        assertEq(params.owner(), address(timelock), "params owned by the timelock");
        assertTrue(!timelock.hasRole(timelock.DEFAULT_ADMIN_ROLE(), address(this)), "no admin left");
        assertTrue(!timelock.hasRole(timelock.PROPOSER_ROLE(), address(this)), "only the governor proposes");
        assertTrue(timelock.hasRole(timelock.PROPOSER_ROLE(), address(governor)), "the governor proposes");
    }

    function test_theOldOwnerKeyCanDoNothingAfterTheHandOver() public {
        vm.startPrank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OWNER));
        pool.setWhitelist(_user(7), true);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OWNER));
        info.setMaxLock(1);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OWNER));
        params.set(0, 20);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OWNER));
        pool.setPause(true);
        vm.stopPrank();
    }

    function test_theGuardianMayPauseAndNothingElse() public {
        bytes memory call = abi.encodeCall(LockingPool.setGuardian, (address(0x6A2D)));
        string memory d = "Name a guardian";
        uint256 id = _propose(address(pool), call, d);
        _startVoting(id);
        _vote(id, 1, 1);
        _vote(id, 2, 1);
        _pastVoting(id);
        _queue(address(pool), call, d);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        _execute(address(pool), call, d);
        assertEq(pool.guardian(), address(0x6A2D), "guardian named by vote");
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.NotGuardian.selector, address(0xBAD)));
        pool.guardianPause();
        vm.startPrank(address(0x6A2D));
        pool.guardianPause();
        assertTrue(pool.paused(), "paused by the guardian");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0x6A2D)));
        pool.setPause(false);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0x6A2D)));
        pool.setWhitelist(address(0x6A2D), true);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ the life of a proposal

    function test_raiseMaxLockByVote() public {
        bytes memory call = abi.encodeCall(LockingInfo.setMaxLock, (200_000 ether));
        string memory d = "Raise maxLock to 200k METIS";
        uint256 id = _propose(address(info), call, d);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Pending), "pending");
        _startVoting(id);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Active), "active");
        _vote(id, 1, 1);
        _vote(id, 2, 1);
        _vote(id, 3, 1);
        _vote(id, 4, 0);
        (uint256 against, uint256 forVotes, uint256 abstain) = governor.proposalVotes(id);
        assertEq(forVotes, 90_000 ether, "for");
        assertEq(against, 20_000 ether, "against");
        assertEq(abstain, 0, "abstain");
        _pastVoting(id);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Succeeded), "succeeded");
        _queue(address(info), call, d);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Queued), "queued");
        // Not before the timelock's delay.
        vm.expectRevert();
        _execute(address(info), call, d);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        _execute(address(info), call, d);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Executed), "executed");
        assertEq(info.maxLock(), 200_000 ether, "maxLock raised");
    }

    function test_aProposalWithoutQuorumIsDefeated() public {
        bytes memory call = abi.encodeCall(LockingPool.setWhitelist, (_user(8), true));
        string memory d = "Whitelist user 8";
        uint256 id = _propose(address(pool), call, d);
        _startVoting(id);
        // 20k of 110k for: under half.
        _vote(id, 4, 1);
        _pastVoting(id);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Defeated), "defeated");
        vm.expectRevert();
        _queue(address(pool), call, d);
    }

    function test_aVoteAfterThePeriodReverts() public {
        uint256 id = _propose(address(pool), abi.encodeCall(LockingPool.setPause, (true)), "Pause");
        _pastVoting(id);
        vm.prank(_user(2));
        vm.expectRevert();
        governor.castVote(id, 1);
    }

    function test_anAddressWithoutStakeVotesZero() public {
        uint256 id = _propose(address(pool), abi.encodeCall(LockingPool.setPause, (true)), "Pause");
        _startVoting(id);
        vm.prank(address(0xBAD));
        uint256 weight = governor.castVote(id, 1);
        assertEq(weight, 0, "no stake, no weight");
        (, uint256 forVotes,) = governor.proposalVotes(id);
        assertEq(forVotes, 0, "nothing counted");
    }

    function test_tooLittleStakeCannotPropose() public {
        (address[] memory t, uint256[] memory v, bytes[] memory c) =
            _one(address(pool), abi.encodeCall(LockingPool.setPause, (true)));
        vm.prank(address(0xBAD));
        vm.expectRevert(
            abi.encodeWithSelector(IGovernor.GovernorInsufficientProposerVotes.selector, address(0xBAD), 0, THRESHOLD)
        );
        governor.propose(t, v, c, "Pause");
    }

    function test_votesAreTakenAtTheSnapshot() public {
        uint256 id = _propose(address(pool), abi.encodeCall(LockingPool.setPause, (true)), "Pause");
        _startVoting(id);
        // Stake locked after the snapshot does not vote on it.
        vm.prank(_user(3));
        pool.relock(3, 50_000 ether, false);
        _vote(id, 3, 1);
        (, uint256 forVotes,) = governor.proposalVotes(id);
        assertEq(forVotes, 20_000 ether, "the stake at the snapshot");
    }

    function test_aParameterOutOfBoundsFailsAtExecutionAndChangesNothing() public {
        bytes memory call = abi.encodeCall(PosParams.set, (params.EPOCH_LENGTH(), 1));
        string memory d = "epoch_length = 1";
        uint256 id = _propose(address(params), call, d);
        _startVoting(id);
        _vote(id, 1, 1);
        _vote(id, 2, 1);
        _pastVoting(id);
        _queue(address(params), call, d);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectRevert();
        _execute(address(params), call, d);
        assertEq(uint256(governor.state(id)), uint256(IGovernor.ProposalState.Queued), "still queued");
        assertEq(params.get(params.EPOCH_LENGTH()), 10, "unchanged");
    }

    function test_changeEpochLengthByVote() public {
        bytes memory call = abi.encodeCall(PosParams.set, (params.EPOCH_LENGTH(), 20));
        string memory d = "epoch_length = 20";
        uint256 id = _propose(address(params), call, d);
        _startVoting(id);
        _vote(id, 1, 1);
        _vote(id, 2, 1);
        _vote(id, 3, 2);
        _pastVoting(id);
        _queue(address(params), call, d);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectEmit(true, true, true, true, address(params));
        emit PosParams.ParamChanged(0, 10, 20, 1);
        _execute(address(params), call, d);
        assertEq(params.get(params.EPOCH_LENGTH()), 20, "changed");
    }
}
