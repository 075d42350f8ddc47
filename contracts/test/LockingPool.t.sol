// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Fixture} from "./base/Fixture.sol";
import {BlsTestSigner} from "./base/BlsTestSigner.sol";
import {LockingPool} from "../src/LockingPool.sol";
import {LockingInfo} from "../src/LockingInfo.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

contract LockingPoolTest is Fixture {
    uint256 internal constant MIN = 20_000 ether;
    uint256 internal constant MAX = 100_000 ether;

    // ------------------------------------------------------------------ lockFor

    function test_lockFor_registersSequencer() public {
        address user = _user(1);
        vm.prank(OWNER);
        pool.setWhitelist(user, true);
        vm.prank(OWNER);
        token.mint(user, 50_000 ether);
        vm.startPrank(user);
        token.approve(address(info), 50_000 ether);
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.Locked(_signer(1), 1, 1, user, 30_000 ether, 30_000 ether, bytes32(_ck(1)), bytes32(_dk(1)));
        uint256 id = pool.lockFor(_signer(1), 30_000 ether, _ck(1), _dk(1));
        vm.stopPrank();

        assertEq(id, 1, "first id");
        LockingPool.Sequencer memory s = pool.sequencers(id);
        assertEq(s.amount, 30_000 ether, "amount");
        assertEq(s.owner, user, "owner");
        assertEq(s.signer, _signer(1), "signer");
        assertEq(s.rewardRecipient, user, "default reward recipient");
        assertEq(uint256(s.status), uint256(LockingPool.Status.Active), "status");
        assertEq(s.consensusKey, bytes32(_ck(1)), "consensus key");
        assertEq(s.dkgKey, bytes32(_dk(1)), "dkg key");
        assertEq(pool.seqOwners(user), 1, "seqOwners");
        assertEq(pool.seqSigners(_signer(1)), 1, "seqSigners");
        assertEq(pool.totalLocked(), 30_000 ether, "totalLocked");
        assertEq(token.balanceOf(address(info)), 30_000 ether, "escrowed");
        assertEq(token.balanceOf(user), 20_000 ether, "user balance");
    }

    function test_lockFor_requiresWhitelist() public {
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.NotWhitelisted.selector, _user(1)));
        pool.lockFor(_signer(1), MIN, _ck(1), _dk(1));
    }

    function test_lockFor_onePerOwner() public {
        _lock(1, MIN);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AlreadyHasSequencer.selector, _user(1)));
        pool.lockFor(_signer(2), MIN, _ck(2), _dk(2));
    }

    function test_lockFor_rejectsBadSigner() public {
        _lock(1, MIN);
        vm.prank(OWNER);
        pool.setWhitelist(_user(2), true);
        vm.prank(_user(2));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidSigner.selector, _signer(1)));
        pool.lockFor(_signer(1), MIN, _ck(2), _dk(2));
        vm.prank(_user(2));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidSigner.selector, address(0)));
        pool.lockFor(address(0), MIN, _ck(2), _dk(2));
    }

    function test_lockFor_checksKeyShape() public {
        _lock(1, MIN);
        address user = _user(2);
        vm.prank(OWNER);
        pool.setWhitelist(user, true);
        vm.startPrank(user);
        vm.expectRevert(LockingPool.InvalidKey.selector);
        pool.lockFor(_signer(2), MIN, new bytes(31), _dk(2));
        vm.expectRevert(LockingPool.InvalidKey.selector);
        pool.lockFor(_signer(2), MIN, abi.encodePacked(_ck(2), bytes1(0x01)), _dk(2));
        vm.expectRevert(LockingPool.InvalidKey.selector);
        pool.lockFor(_signer(2), MIN, new bytes(32), _dk(2));
        vm.expectRevert(LockingPool.InvalidKey.selector);
        pool.lockFor(_signer(2), MIN, _ck(2), _ck(2));
        // A key already registered by another sequencer.
        vm.expectRevert(LockingPool.InvalidKey.selector);
        pool.lockFor(_signer(2), MIN, _ck(1), _dk(2));
        vm.expectRevert(LockingPool.InvalidKey.selector);
        pool.lockFor(_signer(2), MIN, _ck(2), _dk(1));
        vm.stopPrank();
    }

    function test_lockFor_bounds() public {
        address user = _user(1);
        vm.prank(OWNER);
        pool.setWhitelist(user, true);
        vm.prank(OWNER);
        token.mint(user, 1_000_000 ether);
        vm.startPrank(user);
        token.approve(address(info), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, MIN - 1, MIN, MAX));
        pool.lockFor(_signer(1), MIN - 1, _ck(1), _dk(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, MAX + 1, MIN, MAX));
        pool.lockFor(_signer(1), MAX + 1, _ck(1), _dk(1));
        pool.lockFor(_signer(1), MAX, _ck(1), _dk(1));
        vm.stopPrank();
    }

    function test_lockFor_followsOwnerSetBounds() public {
        vm.prank(OWNER);
        info.setMinLock(1_000 ether);
        _lock(1, 1_000 ether);
        assertEq(pool.sequencers(1).amount, 1_000 ether, "locked at the new minimum");
    }

    // ------------------------------------------------------------------ relock / withdraw

    function test_relock_addsStake() public {
        uint256 id = _lock(1, MIN);
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.LockUpdate(id, 2, MIN + 5_000 ether);
        vm.prank(_user(1));
        pool.relock(id, 5_000 ether, false);
        assertEq(pool.sequencers(id).amount, MIN + 5_000 ether, "amount");
        assertEq(pool.totalLocked(), MIN + 5_000 ether, "total");
    }

    function test_relock_capAndAccess() public {
        uint256 id = _lock(1, MAX - 1 ether);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, MAX + 1 ether, MIN, MAX));
        pool.relock(id, 2 ether, false);
        vm.prank(_user(2));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.NotSequencerOwner.selector, id));
        pool.relock(id, 1 ether, false);
        vm.prank(_user(1));
        vm.expectRevert(LockingPool.ZeroAmount.selector);
        pool.relock(id, 0, false);
    }

    function test_relock_lockReward() public {
        _registerGroupKey();
        uint256 id = _lock(1, MIN);
        _submitRewards(1, 0, 0, _one(id), _one(10));
        vm.prank(_user(1));
        pool.relock(id, 0, true);
        assertEq(pool.sequencers(id).amount, MIN + 10 ether, "reward locked");
        assertEq(pool.sequencers(id).reward, 0, "reward consumed");
    }

    function test_withdraw_keepsMinimum() public {
        uint256 id = _lock(1, MIN + 10_000 ether);
        uint256 before = token.balanceOf(_user(1));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.Withdraw(id, 4_000 ether);
        vm.prank(_user(1));
        pool.withdraw(id, 4_000 ether);
        assertEq(token.balanceOf(_user(1)), before, "nothing paid before the exit delay");
        assertEq(pool.sequencers(id).amount, MIN + 6_000 ether, "left");
        assertEq(pool.sequencers(id).withdrawing, 4_000 ether, "set aside");
        assertEq(pool.totalLocked(), MIN + 6_000 ether, "out of the locked total");
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, MIN - 1 ether, MIN, MAX));
        pool.withdraw(id, 6_001 ether);
        vm.prank(_user(1));
        vm.expectRevert(LockingPool.ZeroAmount.selector);
        pool.withdraw(id, 0);
    }

    function test_withdraw_claimAfterTheExitDelay() public {
        uint256 id = _lock(1, MIN + 10_000 ether);
        uint256 before = token.balanceOf(_user(1));
        vm.prank(_user(1));
        pool.withdraw(id, 4_000 ether);
        uint256 claimAt = block.timestamp + 21 days;
        assertEq(pool.sequencers(id).withdrawClaimTime, claimAt, "claim time");
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.ExitNotReady.selector, claimAt));
        pool.withdrawClaim(id);
        vm.warp(claimAt);
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.WithdrawClaimed(id, _user(1), 4_000 ether);
        vm.prank(_user(1));
        pool.withdrawClaim(id);
        assertEq(token.balanceOf(_user(1)) - before, 4_000 ether, "paid out");
        assertEq(pool.sequencers(id).withdrawing, 0, "nothing pending");
        vm.prank(_user(1));
        vm.expectRevert(LockingPool.NothingToClaim.selector);
        pool.withdrawClaim(id);
        vm.prank(_user(2));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.NotSequencerOwner.selector, id));
        pool.withdrawClaim(id);
    }

    function test_withdraw_staysSlashableUntilClaimed() public {
        _registerGroupKey();
        uint256 id = _lock(1, MIN + 10_000 ether);
        // Expecting a slash, the owner takes out all it may: the stake withdrawn is still slashable.
        vm.prank(_user(1));
        pool.withdraw(id, 10_000 ether);
        _slash(id, MIN + 2_000 ether, keccak256("double vote"));
        assertEq(pool.sequencers(id).amount, 0, "locked stake taken first");
        assertEq(pool.sequencers(id).withdrawing, 8_000 ether, "then the withdrawal");
        assertEq(token.balanceOf(pool.BURN_ADDRESS()), MIN + 2_000 ether, "burnt");
        assertEq(pool.totalLocked(), 0, "total");
        bytes32 ev = keccak256("more");
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, pool.slashDigest(id, 8_001 ether, ev));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, 8_001 ether, 1, 8_000 ether));
        pool.slash(id, 8_001 ether, ev, sig);
    }

    function test_unlockClaim_waitsForAPendingWithdrawal() public {
        uint256 id = _lock(1, MIN + 10_000 ether);
        uint256 before = token.balanceOf(_user(1));
        vm.prank(_user(1));
        pool.unlock(id);
        vm.warp(block.timestamp + 10 days);
        // Unlocked sequencers cannot withdraw; the withdrawal must come first.
        vm.prank(_user(1));
        vm.expectRevert(
            abi.encodeWithSelector(LockingPool.InvalidSequencerStatus.selector, id, LockingPool.Status.Unlocked)
        );
        pool.withdraw(id, 1 ether);
        vm.warp(block.timestamp + 11 days);
        vm.prank(_user(1));
        pool.unlockClaim(id);
        assertEq(token.balanceOf(_user(1)) - before, MIN + 10_000 ether, "all paid");

        // A withdrawal still pending when the exit could be claimed (the delay was shortened in between).
        uint256 id2 = _lock(2, MIN + 10_000 ether);
        vm.prank(_user(2));
        pool.withdraw(id2, 5_000 ether);
        uint256 withdrawAt = pool.sequencers(id2).withdrawClaimTime;
        vm.prank(OWNER);
        pool.setExitDelay(1 days);
        vm.prank(_user(2));
        pool.unlock(id2);
        vm.warp(block.timestamp + 1 days);
        vm.prank(_user(2));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.ExitNotReady.selector, withdrawAt));
        pool.unlockClaim(id2);
        vm.warp(withdrawAt);
        uint256 before2 = token.balanceOf(_user(2));
        vm.prank(_user(2));
        pool.unlockClaim(id2);
        assertEq(token.balanceOf(_user(2)) - before2, MIN + 10_000 ether, "stake and withdrawal paid");
    }

    // ------------------------------------------------------------------ unlock

    function test_unlock_delayThenClaim() public {
        uint256 id = _lock(1, MIN);
        uint256 claimAt = block.timestamp + 21 days;
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.UnlockInit(_user(1), id, 2, block.timestamp, claimAt, MIN);
        vm.prank(_user(1));
        pool.unlock(id);
        assertEq(uint256(pool.sequencers(id).status), uint256(LockingPool.Status.Unlocked), "status");

        // Exiting sequencers can no longer change stake.
        vm.prank(_user(1));
        vm.expectRevert(
            abi.encodeWithSelector(LockingPool.InvalidSequencerStatus.selector, id, LockingPool.Status.Unlocked)
        );
        pool.relock(id, 1 ether, false);

        vm.warp(claimAt - 1);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.ExitNotReady.selector, claimAt));
        pool.unlockClaim(id);

        vm.warp(claimAt);
        uint256 before = token.balanceOf(_user(1));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.Unlocked(_user(1), id, MIN, 0);
        vm.prank(_user(1));
        pool.unlockClaim(id);
        assertEq(token.balanceOf(_user(1)) - before, MIN, "stake returned");
        assertEq(uint256(pool.sequencers(id).status), uint256(LockingPool.Status.Inactive), "inactive");
        assertEq(pool.seqOwners(_user(1)), 0, "owner freed");
        assertEq(pool.seqSigners(_signer(1)), 0, "signer freed");

        // The owner may come back as a new sequencer, with new keys.
        vm.startPrank(_user(1));
        uint256 id2 = pool.lockFor(_signer(1), MIN, _ck(11), _dk(11));
        vm.stopPrank();
        assertEq(id2, id + 1, "new id");
    }

    function test_unlockClaim_requiresUnlock() public {
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        vm.expectRevert(
            abi.encodeWithSelector(LockingPool.InvalidSequencerStatus.selector, id, LockingPool.Status.Active)
        );
        pool.unlockClaim(id);
    }

    function test_exitDelay_ownerSettable() public {
        vm.prank(OWNER);
        pool.setExitDelay(1 hours);
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        pool.unlock(id);
        vm.warp(block.timestamp + 1 hours);
        vm.prank(_user(1));
        pool.unlockClaim(id);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, _user(1)));
        pool.setExitDelay(0);
    }

    function test_forceUnlock_ownerOnly_evenWhenPaused() public {
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, _user(1)));
        pool.forceUnlock(id);
        vm.prank(OWNER);
        pool.setPause(true);
        vm.prank(OWNER);
        pool.forceUnlock(id);
        assertEq(uint256(pool.sequencers(id).status), uint256(LockingPool.Status.Unlocked), "force-unlocked");
    }

    // ------------------------------------------------------------------ signer, owner, recipient

    function test_updateSigner_throttled() public {
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.SignerUpdateTooSoon.selector, block.timestamp + 1 days));
        pool.updateSigner(id, address(0xBEEF));
        vm.warp(block.timestamp + 1 days);
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.SignerChange(id, 2, _signer(1), address(0xBEEF));
        vm.prank(_user(1));
        pool.updateSigner(id, address(0xBEEF));
        assertEq(pool.seqSigners(address(0xBEEF)), id, "new signer mapped");
        assertEq(pool.seqSigners(_signer(1)), 0, "old signer unmapped");
        // And again only after the throttle.
        vm.warp(block.timestamp + 1 days - 1);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.SignerUpdateTooSoon.selector, block.timestamp + 1));
        pool.updateSigner(id, address(0xBEEF2));
    }

    function test_updateSigner_rejectsTakenSigner() public {
        uint256 id = _lock(1, MIN);
        _lock(2, MIN);
        vm.warp(block.timestamp + 1 days);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidSigner.selector, _signer(2)));
        pool.updateSigner(id, _signer(2));
    }

    function test_setSequencerOwner() public {
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.NotWhitelisted.selector, _user(9)));
        pool.setSequencerOwner(id, _user(9));
        vm.prank(OWNER);
        pool.setWhitelist(_user(9), true);
        vm.prank(_user(1));
        pool.setSequencerOwner(id, _user(9));
        assertEq(pool.sequencers(id).owner, _user(9), "new owner");
        assertEq(pool.seqOwners(_user(9)), id, "mapped");
        assertEq(pool.seqOwners(_user(1)), 0, "old unmapped");
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(LockingPool.NotSequencerOwner.selector, id));
        pool.withdraw(id, 1);
    }

    function test_signerUpdateThrottle_ownerSettable() public {
        vm.prank(OWNER);
        pool.setSignerUpdateThrottle(1 hours);
        uint256 id = _lock(1, MIN);
        vm.warp(block.timestamp + 1 hours);
        vm.prank(_user(1));
        pool.updateSigner(id, address(0xBEEF));
        assertEq(pool.sequencers(id).signer, address(0xBEEF), "rotated after the shorter throttle");
    }

    function test_events_whitelistOwnerJail() public {
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.WhitelistChanged(_user(5), true);
        vm.prank(OWNER);
        pool.setWhitelist(_user(5), true);
        uint256 id = _lock(1, MIN);
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.Relocked(id, 1 ether, MIN + 1 ether);
        vm.prank(_user(1));
        pool.relock(id, 1 ether, false);
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.SequencerOwnerChanged(id, _user(1), _user(5));
        vm.prank(_user(1));
        pool.setSequencerOwner(id, _user(5));
        _registerGroupKey();
        bytes32 ev = keccak256("e");
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, pool.slashDigest(id, 1 ether, ev));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.Jailed(id, true);
        pool.slash(id, 1 ether, ev, sig);
        vm.prank(_user(5));
        vm.expectRevert(LockingPool.ZeroAddress.selector);
        pool.setSequencerRewardRecipient(id, address(0));
    }

    function test_setSequencerOwner_notAfterExit() public {
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        pool.unlock(id);
        vm.warp(block.timestamp + 21 days);
        vm.prank(_user(1));
        pool.unlockClaim(id);
        vm.prank(OWNER);
        pool.setWhitelist(_user(9), true);
        vm.prank(_user(1));
        vm.expectRevert(
            abi.encodeWithSelector(LockingPool.InvalidSequencerStatus.selector, id, LockingPool.Status.Inactive)
        );
        pool.setSequencerOwner(id, _user(9));
    }

    function test_rewardRecipient_receivesRewards() public {
        _registerGroupKey();
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        pool.setSequencerRewardRecipient(id, address(0xCAFE));
        _submitRewards(1, 0, 3, _one(id), _one(7));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.ClaimRewards(id, address(0xCAFE), 7 ether, 7 ether);
        vm.prank(_user(1));
        pool.withdrawRewards(id);
        assertEq(token.balanceOf(address(0xCAFE)), 7 ether, "paid to recipient");
        vm.prank(_user(1));
        vm.expectRevert(LockingPool.NothingToClaim.selector);
        pool.withdrawRewards(id);
    }

    // ------------------------------------------------------------------ pause and owner params

    function test_pause_blocksSequencerActions() public {
        uint256 id = _lock(1, MIN);
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, _user(1)));
        pool.setPause(true);
        vm.prank(OWNER);
        pool.setPause(true);
        vm.startPrank(_user(1));
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.relock(id, 1 ether, false);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.withdraw(id, 1 ether);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.unlock(id);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.updateSigner(id, address(0xBEEF));
        vm.stopPrank();
        vm.prank(OWNER);
        pool.setWhitelist(_user(2), true);
        vm.prank(_user(2));
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.lockFor(_signer(2), MIN, _ck(2), _dk(2));
        vm.prank(OWNER);
        pool.setPause(false);
        vm.prank(_user(1));
        pool.relock(id, 1 ether, false);
    }

    function test_ownerParams_accessAndEvents() public {
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.RewardPerBlockChanged(REWARD_PER_BLOCK, 3 ether);
        vm.prank(OWNER);
        pool.updateBlockReward(3 ether);
        assertEq(pool.rewardPerBlock(), 3 ether, "reward");
        address stranger = _user(7);
        bytes memory pk = BlsTestSigner.publicKey(GROUP_SK);
        vm.startPrank(stranger);
        bytes memory unauthorized = abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger);
        vm.expectRevert(unauthorized);
        pool.updateBlockReward(1);
        vm.expectRevert(unauthorized);
        pool.setWhitelist(stranger, true);
        vm.expectRevert(unauthorized);
        pool.setSignerUpdateThrottle(0);
        vm.expectRevert(unauthorized);
        pool.setTreasury(stranger);
        vm.expectRevert(unauthorized);
        pool.unjail(1);
        vm.expectRevert(unauthorized);
        pool.setGroupKey(pk);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ group key

    function test_setGroupKey_validatesAndDerivesAddress() public {
        assertEq(pool.groupPublicKey().length, 0, "no key before genesis");
        bytes memory pk = BlsTestSigner.publicKey(GROUP_SK);
        address derived = address(uint160(uint256(keccak256(pk))));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.GroupKeyUpdated(1, derived, pk);
        vm.prank(OWNER);
        pool.setGroupKey(pk);
        assertEq(pool.groupPublicKey(), pk, "stored key");
        assertEq(pool.mpcAddress(), derived, "mpc address");
        assertEq(pool.groupKeyVersion(), 1, "version");

        vm.startPrank(OWNER);
        vm.expectRevert(LockingPool.InvalidGroupKey.selector);
        pool.setGroupKey(new bytes(256));
        vm.expectRevert(LockingPool.InvalidGroupKey.selector);
        pool.setGroupKey(new bytes(96));
        bytes memory bad = abi.encodePacked(pk);
        bad[200] = bytes1(uint8(bad[200]) ^ 1);
        vm.expectRevert(LockingPool.InvalidGroupKey.selector);
        pool.setGroupKey(bad);
        // Replacement by the owner.
        bytes memory pk2 = BlsTestSigner.publicKey(GROUP_SK + 1);
        pool.setGroupKey(pk2);
        vm.stopPrank();
        assertEq(pool.groupPublicKey(), pk2, "replaced key");
        assertEq(pool.groupKeyVersion(), 2, "version 2");
    }

    // ------------------------------------------------------------------ rewards

    function _one(uint256 v) internal pure returns (uint256[] memory a) {
        a = new uint256[](1);
        a[0] = v;
    }

    function _two(uint256 a0, uint256 a1) internal pure returns (uint256[] memory a) {
        a = new uint256[](2);
        a[0] = a0;
        a[1] = a1;
    }

    function _submitRewards(uint256 batchId, uint256 start, uint256 end, uint256[] memory ids, uint256[] memory blocks)
        internal
    {
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, this.digestOf(batchId, start, end, ids, blocks));
        pool.batchSubmitRewards(batchId, start, end, ids, blocks, sig);
    }

    function digestOf(uint256 batchId, uint256 start, uint256 end, uint256[] calldata ids, uint256[] calldata blocks)
        external
        view
        returns (bytes32)
    {
        return pool.rewardsDigest(batchId, start, end, ids, blocks);
    }

    function test_batchSubmitRewards_credits() public {
        _registerGroupKey();
        uint256 a = _lock(1, MIN);
        uint256 b = _lock(2, MIN);
        uint256 payerBefore = token.balanceOf(PAYER);
        uint256[] memory ids = _two(a, b);
        uint256[] memory blocks = _two(30, 70);
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, this.digestOf(1, 0, 4, ids, blocks));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.BatchSubmitReward(1, 0, 4, 100 ether);
        uint256 g = gasleft();
        pool.batchSubmitRewards(1, 0, 4, ids, blocks, sig);
        emit log_named_uint("gas: batchSubmitRewards (2 sequencers, in-call)", g - gasleft());
        assertEq(pool.sequencers(a).reward, 30 ether, "a credited");
        assertEq(pool.sequencers(b).reward, 70 ether, "b credited");
        assertEq(payerBefore - token.balanceOf(PAYER), 100 ether, "pulled from payer");
        assertEq(pool.lastRewardBatchId(), 1, "batch id");
        assertEq(pool.nextRewardEpoch(), 5, "next epoch");
    }

    function test_batchSubmitRewards_replayAndOrdering() public {
        _registerGroupKey();
        uint256 a = _lock(1, MIN);
        uint256[] memory ids = _one(a);
        uint256[] memory blocks = _one(5);
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, this.digestOf(1, 0, 0, ids, blocks));
        pool.batchSubmitRewards(1, 0, 0, ids, blocks, sig);
        // Same report again.
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidBatchId.selector, 2, 1));
        pool.batchSubmitRewards(1, 0, 0, ids, blocks, sig);
        // Skipping a batch id.
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidBatchId.selector, 2, 3));
        pool.batchSubmitRewards(3, 1, 1, ids, blocks, sig);
        // A gap or overlap in epochs.
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidEpochRange.selector, 1, 2, 2));
        pool.batchSubmitRewards(2, 2, 2, ids, blocks, sig);
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidEpochRange.selector, 1, 0, 1));
        pool.batchSubmitRewards(2, 0, 1, ids, blocks, sig);
        vm.expectRevert(abi.encodeWithSelector(LockingPool.InvalidEpochRange.selector, 1, 1, 0));
        pool.batchSubmitRewards(2, 1, 0, ids, blocks, sig);
        // The old signature does not cover the next report.
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.batchSubmitRewards(2, 1, 1, ids, blocks, sig);
        assertEq(pool.sequencers(a).reward, 5 ether, "credited once");
    }

    function test_batchSubmitRewards_rejectsBadInput() public {
        uint256 a = _lock(1, MIN);
        uint256 b = _lock(2, MIN);
        uint256[] memory blocks = _one(5);
        vm.expectRevert(LockingPool.NoGroupKey.selector);
        pool.batchSubmitRewards(1, 0, 0, _one(a), blocks, new bytes(128));
        _registerGroupKey();
        vm.expectRevert(LockingPool.LengthMismatch.selector);
        pool.batchSubmitRewards(1, 0, 0, _two(a, b), blocks, new bytes(128));
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.batchSubmitRewards(1, 0, 0, _one(a), blocks, new bytes(128));
        // Signed by another key.
        bytes memory other = BlsTestSigner.sign(GROUP_SK + 1, this.digestOf(1, 0, 0, _one(a), blocks));
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.batchSubmitRewards(1, 0, 0, _one(a), blocks, other);
        // Signed for other numbers.
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, this.digestOf(1, 0, 0, _one(a), _one(6)));
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.batchSubmitRewards(1, 0, 0, _one(a), blocks, sig);
        // A sequencer listed twice would be credited twice: ids must be strictly increasing.
        uint256[] memory dup = _two(a, a);
        sig = BlsTestSigner.sign(GROUP_SK, this.digestOf(1, 0, 0, dup, _two(1, 1)));
        vm.expectRevert(LockingPool.UnsortedSequencerIds.selector);
        pool.batchSubmitRewards(1, 0, 0, dup, _two(1, 1), sig);
    }

    function test_batchSubmitRewards_skipsUnlockedAndJailed() public {
        _registerGroupKey();
        uint256 a = _lock(1, MIN);
        uint256 b = _lock(2, MIN);
        uint256 c = _lock(3, MIN);
        vm.prank(_user(2));
        pool.unlock(b);
        _slash(c, 1 ether, keccak256("evidence"));
        uint256[] memory ids = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (a, b, c);
        uint256[] memory blocks = new uint256[](3);
        (blocks[0], blocks[1], blocks[2]) = (10, 10, 10);
        uint256 payerBefore = token.balanceOf(PAYER);
        _submitRewards(1, 0, 0, ids, blocks);
        assertEq(pool.sequencers(a).reward, 10 ether, "active credited");
        assertEq(pool.sequencers(b).reward, 0, "unlocked not credited");
        assertEq(pool.sequencers(c).reward, 0, "jailed not credited");
        assertEq(payerBefore - token.balanceOf(PAYER), 10 ether, "only credited rewards pulled");
    }

    function test_batchSubmitRewards_survivesSignerRotation() public {
        _registerGroupKey();
        uint256 a = _lock(1, MIN);
        vm.warp(block.timestamp + 1 days);
        vm.prank(_user(1));
        pool.updateSigner(a, address(0xBEEF));
        _submitRewards(1, 0, 0, _one(a), _one(4));
        assertEq(pool.sequencers(a).reward, 4 ether, "credited by id after signer rotation");
    }

    // ------------------------------------------------------------------ slashing

    function _slash(uint256 id, uint256 amount, bytes32 evidence) internal {
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, pool.slashDigest(id, amount, evidence));
        pool.slash(id, amount, evidence, sig);
    }

    function test_slash_burnsAndJails() public {
        _registerGroupKey();
        uint256 id = _lock(1, MIN + 5_000 ether);
        bytes32 ev = keccak256("double sign at height 7");
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, pool.slashDigest(id, 5_000 ether, ev));
        vm.expectEmit(true, true, true, true, address(pool));
        emit LockingPool.Slashed(id, 2, 5_000 ether, ev, MIN);
        pool.slash(id, 5_000 ether, ev, sig);
        assertEq(token.balanceOf(pool.BURN_ADDRESS()), 5_000 ether, "burnt");
        assertEq(pool.sequencers(id).amount, MIN, "stake reduced");
        assertTrue(pool.sequencers(id).jailed, "jailed");
        assertEq(pool.totalLocked(), MIN, "total");
        // Each evidence slashes once.
        vm.expectRevert(abi.encodeWithSelector(LockingPool.EvidenceAlreadyUsed.selector, ev));
        pool.slash(id, 5_000 ether, ev, sig);
        // The owner can unjail.
        vm.prank(OWNER);
        pool.unjail(id);
        assertTrue(!pool.sequencers(id).jailed, "unjailed");
    }

    function test_unjail_notBelowTheMinimumLock() public {
        _registerGroupKey();
        uint256 id = _lock(1, MIN);
        _slash(id, 1_000 ether, keccak256("below the minimum"));
        vm.prank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, MIN - 1_000 ether, MIN, MAX));
        pool.unjail(id);
        // Topped up to the minimum, it can be unjailed.
        vm.prank(_user(1));
        pool.relock(id, 1_000 ether, false);
        vm.prank(OWNER);
        pool.unjail(id);
        assertTrue(!pool.sequencers(id).jailed, "unjailed after the relock");
        assertEq(pool.votes().getVotes(_user(1)), MIN, "votes again");
    }

    function test_slash_toTreasury() public {
        _registerGroupKey();
        vm.prank(OWNER);
        pool.setTreasury(address(0x7EA5));
        uint256 id = _lock(1, MIN);
        _slash(id, 2 ether, keccak256("e"));
        assertEq(token.balanceOf(address(0x7EA5)), 2 ether, "to treasury");
    }

    function test_slash_rejectsBadInput() public {
        uint256 id = _lock(1, MIN);
        bytes32 ev = keccak256("e");
        vm.expectRevert(LockingPool.NoGroupKey.selector);
        pool.slash(id, 1 ether, ev, new bytes(128));
        _registerGroupKey();
        bytes memory sig = BlsTestSigner.sign(GROUP_SK, pool.slashDigest(id, 1 ether, ev));
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.slash(id, 2 ether, ev, sig);
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.slash(id, 1 ether, keccak256("other"), sig);
        vm.expectRevert(abi.encodeWithSelector(LockingPool.AmountOutOfBounds.selector, MIN + 1, 1, MIN));
        pool.slash(id, MIN + 1, ev, sig);
        vm.expectRevert(
            abi.encodeWithSelector(LockingPool.InvalidSequencerStatus.selector, 99, LockingPool.Status.Inactive)
        );
        pool.slash(99, 1 ether, ev, sig);
        // A signature for this chain is not valid on another chain id.
        vm.chainId(999);
        vm.expectRevert(LockingPool.InvalidSignature.selector);
        pool.slash(id, 1 ether, ev, sig);
    }
}

contract MetisTokenTest is Fixture {
    function test_mint_ownerOnly() public {
        vm.prank(OWNER);
        token.mint(_user(1), 5 ether);
        assertEq(token.balanceOf(_user(1)), 5 ether, "minted");
        assertEq(token.decimals(), 18, "decimals");
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, _user(1)));
        token.mint(_user(1), 1);
    }
}

contract LockingInfoTest is Fixture {
    function test_bounds_ownerSettable() public {
        vm.expectEmit(true, true, true, true, address(info));
        emit LockingInfo.SetMinLock(20_000 ether, 30_000 ether);
        vm.prank(OWNER);
        info.setMinLock(30_000 ether);
        vm.expectEmit(true, true, true, true, address(info));
        emit LockingInfo.SetMaxLock(100_000 ether, 200_000 ether);
        vm.prank(OWNER);
        info.setMaxLock(200_000 ether);
        vm.startPrank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(LockingInfo.InvalidLockBounds.selector, 300_000 ether, 200_000 ether));
        info.setMinLock(300_000 ether);
        vm.expectRevert(abi.encodeWithSelector(LockingInfo.InvalidLockBounds.selector, 0, 200_000 ether));
        info.setMinLock(0);
        vm.expectRevert(abi.encodeWithSelector(LockingInfo.InvalidLockBounds.selector, 30_000 ether, 1 ether));
        info.setMaxLock(1 ether);
        vm.stopPrank();
        vm.prank(_user(1));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, _user(1)));
        info.setMinLock(1);
    }

    function test_escrow_onlyPool() public {
        vm.expectRevert(LockingInfo.NotPool.selector);
        info.payOut(_user(1), 1);
        vm.expectRevert(LockingInfo.NotPool.selector);
        info.deposit(_user(1), 1);
        vm.expectRevert(LockingInfo.NotPool.selector);
        info.pullRewards(1);
        vm.prank(OWNER);
        vm.expectRevert(LockingInfo.PoolAlreadySet.selector);
        info.setPool(address(0x1));
    }

    function test_rewardPayer_eventAndRequired() public {
        vm.expectEmit(true, true, true, true, address(info));
        emit LockingInfo.SetRewardPayer(PAYER, address(0));
        vm.prank(OWNER);
        info.setRewardPayer(address(0));
        vm.prank(address(pool));
        vm.expectRevert(LockingInfo.NoRewardPayer.selector);
        info.pullRewards(1);
    }
}
