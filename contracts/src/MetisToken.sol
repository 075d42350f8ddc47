// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MetisToken
/// @notice Devnet stand-in for METIS on L1: a plain 18-decimals ERC20 its owner can mint.
contract MetisToken is ERC20, Ownable {
    constructor(address initialOwner) ERC20("Metis Token", "METIS") Ownable(initialOwner) {}

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
