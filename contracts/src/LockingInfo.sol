// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title LockingInfo
/// @notice Escrow of the sequencers' locked METIS and of credited rewards, with the lock bounds and the account
/// rewards are pulled from. Only the LockingPool moves tokens in or out.
contract LockingInfo is Ownable2Step {
    using SafeERC20 for IERC20;

    IERC20 public immutable token;
    /// @notice The LockingPool allowed to move escrowed tokens; set once.
    address public pool;
    uint256 public minLock = 20_000 ether;
    uint256 public maxLock = 100_000 ether;
    /// @notice Account rewards are pulled from (it approves this contract).
    address public rewardPayer;

    event SetPool(address indexed pool);
    event SetMinLock(uint256 oldMinLock, uint256 newMinLock);
    event SetMaxLock(uint256 oldMaxLock, uint256 newMaxLock);
    event SetRewardPayer(address indexed oldPayer, address indexed newPayer);

    error NotPool();
    error PoolAlreadySet();
    error ZeroAddress();
    error InvalidLockBounds(uint256 minLock, uint256 maxLock);
    error NoRewardPayer();

    modifier onlyPool() {
        if (msg.sender != pool) revert NotPool();
        _;
    }

    constructor(address initialOwner, IERC20 token_, address rewardPayer_) Ownable(initialOwner) {
        if (address(token_) == address(0)) revert ZeroAddress();
        token = token_;
        rewardPayer = rewardPayer_;
        emit SetMinLock(0, minLock);
        emit SetMaxLock(0, maxLock);
        emit SetRewardPayer(address(0), rewardPayer_);
    }

    function setPool(address pool_) external onlyOwner {
        if (pool != address(0)) revert PoolAlreadySet();
        if (pool_ == address(0)) revert ZeroAddress();
        pool = pool_;
        emit SetPool(pool_);
    }

    function setMinLock(uint256 newMinLock) external onlyOwner {
        if (newMinLock == 0 || newMinLock > maxLock) revert InvalidLockBounds(newMinLock, maxLock);
        emit SetMinLock(minLock, newMinLock);
        minLock = newMinLock;
    }

    function setMaxLock(uint256 newMaxLock) external onlyOwner {
        if (newMaxLock < minLock) revert InvalidLockBounds(minLock, newMaxLock);
        emit SetMaxLock(maxLock, newMaxLock);
        maxLock = newMaxLock;
    }

    function setRewardPayer(address newPayer) external onlyOwner {
        emit SetRewardPayer(rewardPayer, newPayer);
        rewardPayer = newPayer;
    }

    /// @notice Takes `amount` from `from` (who approved this contract) into escrow.
    function deposit(address from, uint256 amount) external onlyPool {
        token.safeTransferFrom(from, address(this), amount);
    }

    /// @notice Pays `amount` out of escrow.
    function payOut(address to, uint256 amount) external onlyPool {
        token.safeTransfer(to, amount);
    }

    /// @notice Pulls `amount` of rewards from the reward payer into escrow.
    function pullRewards(uint256 amount) external onlyPool {
        if (rewardPayer == address(0)) revert NoRewardPayer();
        token.safeTransferFrom(rewardPayer, address(this), amount);
    }
}
