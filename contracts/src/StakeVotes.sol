// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Votes} from "@openzeppelin/contracts/governance/utils/Votes.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @title StakeVotes
/// @notice The pool's governance votes (IERC5805, OpenZeppelin `Votes`, clock = L1 block number): an owner's voting
/// units are its sequencer's locked stake while the sequencer is active and not jailed. The LockingPool that
/// deployed it sets the units on every change; an owner is its own delegate until it delegates elsewhere.
/// @dev A contract of its own rather than a base of LockingPool: the pool's code stays far under EIP-170's limit.
contract StakeVotes is Votes {
    /// @notice The LockingPool; the only caller of `setUnits`.
    address public immutable pool;

    mapping(address account => uint256) private _units;

    error NotPool();
    error ZeroDelegate();

    constructor() EIP712("Metis sequencer stake votes", "1") {
        pool = msg.sender;
    }

    /// @notice Sets `account`'s voting units (the pool only). An account that never delegated delegates to
    /// itself first, so its stake votes without a transaction of its own.
    function setUnits(address account, uint256 units) external {
        if (msg.sender != pool) revert NotPool();
        uint256 old = _units[account];
        if (old == units) return;
        if (delegates(account) == address(0)) _delegate(account, account);
        _units[account] = units;
        if (units > old) {
            _transferVotingUnits(address(0), account, units - old);
        } else {
            _transferVotingUnits(account, address(0), old - units);
        }
    }

    /// @notice `account`'s voting units now (before delegation).
    function unitsOf(address account) external view returns (uint256) {
        return _units[account];
    }

    function _getVotingUnits(address account) internal view override returns (uint256) {
        return _units[account];
    }

    /// @dev Delegating to nobody is refused: "never delegated" and "delegates to itself" stay the only defaults.
    function _delegate(address account, address delegatee) internal override {
        if (delegatee == address(0)) revert ZeroDelegate();
        super._delegate(account, delegatee);
    }
}
