// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TestBase} from "./TestBase.sol";
import {BlsTestSigner} from "./BlsTestSigner.sol";
import {MetisToken} from "../../src/MetisToken.sol";
import {LockingInfo} from "../../src/LockingInfo.sol";
import {LockingPool} from "../../src/LockingPool.sol";
import {BatchInbox} from "../../src/BatchInbox.sol";

/// @dev The whole L1 side deployed and wired the way the Rust deployer does it.
abstract contract Fixture is TestBase {
    address internal constant OWNER = address(0xA11CE);
    address internal constant PAYER = address(0xFEE5);
    uint256 internal constant GROUP_SK = 0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef;
    uint256 internal constant REWARD_PER_BLOCK = 1 ether;

    MetisToken internal token;
    LockingInfo internal info;
    LockingPool internal pool;
    BatchInbox internal inbox;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        token = new MetisToken(OWNER);
        info = new LockingInfo(OWNER, token, PAYER);
        pool = new LockingPool(OWNER, info, REWARD_PER_BLOCK);
        inbox = new BatchInbox(pool);
        vm.prank(OWNER);
        info.setPool(address(pool));
        vm.prank(OWNER);
        token.mint(PAYER, 10_000_000 ether);
        vm.prank(PAYER);
        token.approve(address(info), type(uint256).max);
    }

    function _registerGroupKey() internal returns (bytes memory pk) {
        pk = BlsTestSigner.publicKey(GROUP_SK);
        vm.prank(OWNER);
        pool.setGroupKey(pk);
    }

    function _user(uint256 i) internal pure returns (address) {
        // forge-lint: disable-next-line(unsafe-typecast) small test indexes
        return address(uint160(0x5000 + i));
    }

    function _signer(uint256 i) internal pure returns (address) {
        // forge-lint: disable-next-line(unsafe-typecast) small test indexes
        return address(uint160(0x6000 + i));
    }

    function _ck(uint256 i) internal pure returns (bytes memory) {
        return abi.encodePacked(keccak256(abi.encode("consensus", i)));
    }

    function _dk(uint256 i) internal pure returns (bytes memory) {
        return abi.encodePacked(keccak256(abi.encode("dkg", i)));
    }

    /// @dev Whitelists user i, funds it, approves the escrow and locks `amount` for a new sequencer.
    function _lock(uint256 i, uint256 amount) internal returns (uint256 seqId) {
        address user = _user(i);
        vm.prank(OWNER);
        pool.setWhitelist(user, true);
        vm.prank(OWNER);
        token.mint(user, 1_000_000 ether);
        vm.startPrank(user);
        token.approve(address(info), type(uint256).max);
        seqId = pool.lockFor(_signer(i), amount, _ck(i), _dk(i));
        vm.stopPrank();
    }
}
