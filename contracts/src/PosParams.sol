// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title PosParams
/// @notice The PoS ledger's parameters that governance may change, each within bounds. Owned by the timelock; every
/// change is an event the sequencers' L1 listeners read at the confirmation depth, and the ledger applies it at
/// the next epoch boundary on every node.
/// @dev Parameters are numbered (the ledger's `GovParam` has the same numbers); a number is never reused.
contract PosParams is Ownable2Step {
    uint8 public constant EPOCH_LENGTH = 0;
    uint8 public constant MISSED_LIMIT = 1;
    uint8 public constant JAIL_EPOCHS = 2;
    uint8 public constant BATCH_BLOCKS = 3;
    uint8 public constant BATCH_INTERVAL_SECS = 4;
    uint8 public constant REWARD_EPOCHS = 5;
    uint8 public constant SLASH_DOUBLE_SIGN_BPS = 6;
    uint8 public constant EVIDENCE_MAX_AGE = 7;
    uint8 public constant DOWNTIME_WINDOW = 8;
    uint8 public constant MIN_SIGNED_BPS = 9;
    uint8 public constant COUNT = 10;

    /// @notice The values in force on L1 (the chain's genesis values until a change).
    uint256[COUNT] internal _values;
    /// @notice Changes made so far; each change event carries its number.
    uint256 public changes;

    event ParamChanged(uint8 indexed param, uint256 oldValue, uint256 newValue, uint256 indexed nonce);

    error UnknownParam(uint256 param);
    error OutOfBounds(uint8 param, uint256 value, uint256 min, uint256 max);
    error WrongCount(uint256 got);

    /// @param initial the chain's genesis value of each parameter, in number order
    constructor(address initialOwner, uint256[] memory initial) Ownable(initialOwner) {
        if (initial.length != COUNT) revert WrongCount(initial.length);
        for (uint8 p; p < COUNT; ++p) {
            _check(p, initial[p]);
            _values[p] = initial[p];
        }
    }

    /// @notice Changes parameter `param` to `value` (the owner, i.e. the timelock, only).
    function set(uint8 param, uint256 value) external onlyOwner {
        _check(param, value);
        uint256 old = _values[param];
        _values[param] = value;
        uint256 nonce = ++changes;
        emit ParamChanged(param, old, value, nonce);
    }

    function get(uint8 param) external view returns (uint256) {
        if (param >= COUNT) revert UnknownParam(param);
        return _values[param];
    }

    /// @notice Every parameter's value, in number order.
    function all() external view returns (uint256[COUNT] memory) {
        return _values;
    }

    /// @notice The ledger's name of `param` (what `metis-seq gov propose --param NAME=VALUE` takes).
    function name(uint8 param) public pure returns (string memory) {
        string[COUNT] memory names = [
            "epoch_length",
            "missed_limit",
            "jail_epochs",
            "batch_blocks",
            "batch_interval_secs",
            "reward_epochs",
            "slash_double_sign_bps",
            "evidence_max_age",
            "downtime_window",
            "min_signed_bps"
        ];
        if (param >= COUNT) revert UnknownParam(param);
        return names[param];
    }

    /// @notice The values `param` may take, inclusive. The ledger holds the same bounds and ignores (with a
    /// recorded reason) a value outside them. Batch blocks and reward epochs may be 0 here only to match a
    /// genesis without batches or reward reports; the ledger neither starts nor stops either by a change.
    function bounds(uint8 param) public pure returns (uint256 min, uint256 max) {
        if (param == EPOCH_LENGTH) return (2, 100_000);
        if (param == MISSED_LIMIT) return (1, 1_000);
        if (param == JAIL_EPOCHS) return (0, 1_000);
        if (param == BATCH_BLOCKS) return (0, 10_000);
        if (param == BATCH_INTERVAL_SECS) return (0, 86_400);
        if (param == REWARD_EPOCHS) return (0, 10_000);
        if (param == SLASH_DOUBLE_SIGN_BPS) return (0, 10_000);
        if (param == EVIDENCE_MAX_AGE) return (10, 1_000_000);
        if (param == DOWNTIME_WINDOW) return (0, 100_000);
        if (param == MIN_SIGNED_BPS) return (0, 10_000);
        revert UnknownParam(param);
    }

    function _check(uint8 param, uint256 value) internal pure {
        (uint256 min, uint256 max) = bounds(param);
        if (value < min || value > max) revert OutOfBounds(param, value, min, max);
    }
}
