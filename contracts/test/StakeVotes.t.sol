// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Fixture} from "./base/Fixture.sol";
import {BlsTestSigner} from "./base/BlsTestSigner.sol";
import {StakeVotes} from "../src/StakeVotes.sol";

/// @dev The governance votes follow the stake exactly: every staking action moves the owner's checkpoints, and
/// past votes read at a block stay what they were then.
contract StakeVotesTest is Fixture {
    uint256 internal constant MIN = 20_000 ether;

    StakeVotes internal votes;

    function setUp() public override {
        super.setUp();
        votes = pool.votes();
        vm.roll(100);
    }

    function _next() internal {
        vm.roll(block.number + 1);
    }

    function test_aLockVotesAtOnceThroughSelfDelegation() public {
        assertEq(votes.pool(), address(pool), "deployed by the pool");
        _lock(1, MIN + 1_000 ether);
        assertEq(votes.delegates(_user(1)), _user(1), "its own delegate");
        assertEq(votes.getVotes(_user(1)), MIN + 1_000 ether, "votes = stake");
        assertEq(votes.unitsOf(_user(1)), MIN + 1_000 ether, "units");
        _next();
        assertEq(votes.getPastVotes(_user(1), block.number - 1), MIN + 1_000 ether, "past votes");
        assertEq(votes.getPastTotalSupply(block.number - 1), MIN + 1_000 ether, "past total");
        assertEq(votes.getPastVotes(_user(1), 99), 0, "none before the lock");
    }

    function test_relockWithdrawUnlockMoveTheCheckpoints() public {
        uint256 id = _lock(1, MIN);
        uint256 b0 = block.number;
        _next();
        vm.prank(_user(1));
        pool.relock(id, 5_000 ether, false);
        uint256 b1 = block.number;
        _next();
        vm.prank(_user(1));
        pool.withdraw(id, 2_000 ether);
        uint256 b2 = block.number;
        _next();
        vm.prank(_user(1));
        pool.unlock(id);
        uint256 b3 = block.number;
        _next();
        assertEq(votes.getPastVotes(_user(1), b0), MIN, "after lock");
        assertEq(votes.getPastVotes(_user(1), b1), MIN + 5_000 ether, "after relock");
        assertEq(votes.getPastVotes(_user(1), b2), MIN + 3_000 ether, "after withdraw");
        assertEq(votes.getPastVotes(_user(1), b3), 0, "after unlock: an exiting sequencer does not vote");
        assertEq(votes.getPastTotalSupply(b3), 0, "total after unlock");
        assertEq(votes.getPastTotalSupply(b1), MIN + 5_000 ether, "total after relock");
    }

    function test_aSlashJailsTheVotesAndUnjailBringsThemBack() public {
        _registerGroupKey();
        uint256 id = _lock(1, MIN + 5_000 ether);
        _lock(2, MIN);
        bytes32 ev = keccak256("double sign");
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, pool.slashDigest(id, 5_000 ether, ev));
        pool.slash(id, 5_000 ether, ev, sig);
        assertEq(votes.getVotes(_user(1)), 0, "jailed: no votes");
        assertEq(votes.getVotes(_user(2)), MIN, "the other keeps its votes");
        vm.prank(OWNER);
        pool.unjail(id);
        assertEq(votes.getVotes(_user(1)), MIN, "unjailed: the stake left after the slash");
        _next();
        assertEq(votes.getPastTotalSupply(block.number - 1), 2 * MIN, "total");
    }

    function test_delegationMovesVotesNotUnits() public {
        uint256 id = _lock(1, MIN);
        _lock(2, MIN + 1 ether);
        vm.prank(_user(1));
        votes.delegate(_user(2));
        assertEq(votes.getVotes(_user(1)), 0, "delegated away");
        assertEq(votes.getVotes(_user(2)), 2 * MIN + 1 ether, "delegate holds both");
        // A later relock goes to the delegate, not back to the owner.
        vm.prank(_user(1));
        pool.relock(id, 1_000 ether, false);
        assertEq(votes.getVotes(_user(2)), 2 * MIN + 1_001 ether, "relock follows the delegation");
        assertEq(votes.getVotes(_user(1)), 0, "still delegated");
        vm.prank(_user(1));
        vm.expectRevert(StakeVotes.ZeroDelegate.selector);
        votes.delegate(address(0));
    }

    function test_handingTheSequencerOverMovesItsVotes() public {
        uint256 id = _lock(1, MIN);
        vm.prank(OWNER);
        pool.setWhitelist(_user(9), true);
        vm.prank(_user(1));
        pool.setSequencerOwner(id, _user(9));
        assertEq(votes.getVotes(_user(1)), 0, "the old owner");
        assertEq(votes.getVotes(_user(9)), MIN, "the new owner");
        assertEq(votes.unitsOf(_user(1)), 0, "old units");
    }

    function test_onlyThePoolSetsUnits() public {
        vm.expectRevert(StakeVotes.NotPool.selector);
        votes.setUnits(_user(1), 1);
    }

    function test_votesAreReadOnlyInThePast() public {
        _lock(1, MIN);
        vm.expectRevert();
        votes.getPastVotes(_user(1), block.number);
        assertEq(keccak256(bytes(votes.CLOCK_MODE())), keccak256("mode=blocknumber&from=default"), "clock");
    }
}
