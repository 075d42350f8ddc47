// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Where the sequencer pool's threshold (MPC) public key lives on L1.
interface IGroupKeyRegistry {
    /// @notice The group public key in G2, EIP-2537 encoded (256 bytes); empty before genesis registration.
    function groupPublicKey() external view returns (bytes memory);
}
