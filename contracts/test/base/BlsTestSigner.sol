// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BLS} from "../../src/BLS.sol";

/// @dev Makes real BLS keys and signatures inside the EVM with the EIP-2537 MSM precompiles, so Solidity tests
/// need no off-chain signer. (Rust-made threshold signatures are checked against the contracts on anvil.)
library BlsTestSigner {
    bytes internal constant G2_GENERATOR = hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
        hex"0000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
        hex"000000000000000000000000000000000ce5d527727d6e118cc9cdc6da2e351aadfd9baa8cbdd3a76d429a695160d12c923ac9cc3baca289e193548608b82801"
        hex"000000000000000000000000000000000606c4a02ea734cc32acd2b02bc28b99cb3e287e85a763af267492ab572e99ab3f370d275cec1da1aaa9075ff05f79be";

    function publicKey(uint256 sk) internal view returns (bytes memory pk) {
        bool ok;
        (ok, pk) = address(0x0e).staticcall(abi.encodePacked(G2_GENERATOR, sk));
        require(ok && pk.length == 256, "G2MSM failed");
    }

    function sign(uint256 sk, bytes32 digest) internal view returns (bytes memory sig) {
        bytes memory h = BLS.hashToG1(BLS.signingMessage(digest), BLS.DST);
        bool ok;
        (ok, sig) = address(0x0c).staticcall(abi.encodePacked(h, sk));
        require(ok && sig.length == 128, "G1MSM failed");
    }
}
