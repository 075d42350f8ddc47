// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TestBase} from "./base/TestBase.sol";
import {BlsTestSigner} from "./base/BlsTestSigner.sol";
import {BLS} from "../src/BLS.sol";

contract BLSHarness {
    function verifyDigest(bytes memory pk, bytes memory sig, bytes32 digest) external view returns (bool) {
        return BLS.verifyDigest(pk, sig, digest);
    }

    /// @dev Gas of the signature check alone (hash to curve + pairing), as the contracts run it.
    function verifyGas(bytes memory pk, bytes memory sig, bytes32 digest)
        external
        view
        returns (bool ok, uint256 used)
    {
        uint256 before = gasleft();
        ok = BLS.verifyDigest(pk, sig, digest);
        used = before - gasleft();
    }

    function hashToG1(bytes memory message, bytes memory dst) external view returns (bytes memory) {
        return BLS.hashToG1(message, dst);
    }

    function isValidG2(bytes memory pk) external view returns (bool) {
        return BLS.isValidG2(pk);
    }
}

contract BLSTest is TestBase {
    BLSHarness internal h;
    uint256 internal constant SK = 0x2a5f1c7a9f3e5b7d11c0ffee0123456789abcdef0fedcba9876543210aa55aa5;

    function setUp() public {
        h = new BLSHarness();
    }

    function _fp(bytes memory be48) internal pure returns (bytes memory) {
        return abi.encodePacked(bytes16(0), be48);
    }

    // RFC 9380 appendix J.9.1, suite BLS12381G1_XMD:SHA-256_SSWU_RO_.
    function test_hashToG1_rfc9380() public view {
        bytes memory dst = "QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_";
        bytes memory p = h.hashToG1("", dst);
        assertEq(
            p,
            abi.encodePacked(
                _fp(
                    hex"052926add2207b76ca4fa57a8734416c8dc95e24501772c814278700eed6d1e4e8cf62d9c09db0fac349612b759e79a1"
                ),
                _fp(
                    hex"08ba738453bfed09cb546dbb0783dbb3a5f1f566ed67bb6be0e8c67e2e81a4cc68ee29813bb7994998f3eae0c9c6a265"
                )
            ),
            "H(\"\")"
        );
        p = h.hashToG1("abc", dst);
        assertEq(
            p,
            abi.encodePacked(
                _fp(
                    hex"03567bc5ef9c690c2ab2ecdf6a96ef1c139cc0b2f284dca0a9a7943388a49a3aee664ba5379a7655d3c68900be2f6903"
                ),
                _fp(
                    hex"0b9c15f3fe6e5cf4211f346271d7b01c8f3b28be689c8429c85b67af215533311f0b8dfaaa154fa6b88176c229f2885d"
                )
            ),
            "H(abc)"
        );
    }

    function test_verify_valid() public view {
        bytes memory pk = BlsTestSigner.publicKey(SK);
        bytes32 digest = keccak256("batch 1");
        bytes memory sig = BlsTestSigner.sign(SK, digest);
        assertTrue(h.verifyDigest(pk, sig, digest), "valid signature rejected");
    }

    function test_verify_rejectsWrongMessageKeyOrSignature() public view {
        bytes memory pk = BlsTestSigner.publicKey(SK);
        bytes32 digest = keccak256("batch 1");
        bytes memory sig = BlsTestSigner.sign(SK, digest);
        assertTrue(!h.verifyDigest(pk, sig, keccak256("batch 2")), "other message accepted");
        assertTrue(!h.verifyDigest(BlsTestSigner.publicKey(SK + 1), sig, digest), "other key accepted");
        assertTrue(!h.verifyDigest(pk, BlsTestSigner.sign(SK + 1, digest), digest), "other signer accepted");
    }

    function test_verify_rejectsMalformed() public view {
        bytes memory pk = BlsTestSigner.publicKey(SK);
        bytes32 digest = keccak256("batch 1");
        bytes memory sig = BlsTestSigner.sign(SK, digest);
        // Point at infinity, as signature and as key.
        assertTrue(!h.verifyDigest(pk, new bytes(128), digest), "infinity signature accepted");
        assertTrue(!h.verifyDigest(new bytes(256), sig, digest), "infinity key accepted");
        // Wrong lengths (e.g. a compressed 48-byte signature).
        assertTrue(!h.verifyDigest(pk, new bytes(48), digest), "short signature accepted");
        assertTrue(!h.verifyDigest(pk, abi.encodePacked(sig, bytes1(0)), digest), "long signature accepted");
        // Not on the curve: flip a bit of y.
        bytes memory bad = abi.encodePacked(sig);
        bad[127] = bytes1(uint8(bad[127]) ^ 1);
        assertTrue(!h.verifyDigest(pk, bad, digest), "off-curve signature accepted");
        // Non-canonical field encoding: a non-zero padding byte.
        bad = abi.encodePacked(sig);
        bad[0] = 0x01;
        assertTrue(!h.verifyDigest(pk, bad, digest), "bad padding accepted");
    }

    function test_verify_malformedCostsBoundedGas() public view {
        bytes memory pk = BlsTestSigner.publicKey(SK);
        bytes memory bad = new bytes(128);
        bad[127] = 0x05; // (0, 5) is not on the curve: the precompile fails and burns only what it was given.
        (bool ok, uint256 used) = h.verifyGas(pk, bad, keccak256("x"));
        assertTrue(!ok, "off-curve accepted");
        assertTrue(used < 130_000, "malformed signature burnt unbounded gas");
    }

    function test_gas_signatureCheck() public {
        bytes memory pk = BlsTestSigner.publicKey(SK);
        bytes32 digest = keccak256("batch 1");
        bytes memory sig = BlsTestSigner.sign(SK, digest);
        (bool ok, uint256 used) = h.verifyGas(pk, sig, digest);
        assertTrue(ok, "valid signature rejected");
        emit log_named_uint("gas: BLS signature check (hash-to-G1 + pairing)", used);
        assertTrue(used <= 130_000, "signature check above 130k gas");
    }

    function test_isValidG2() public view {
        bytes memory pk = BlsTestSigner.publicKey(SK);
        assertTrue(h.isValidG2(pk), "valid key rejected");
        assertTrue(!h.isValidG2(new bytes(256)), "infinity accepted");
        assertTrue(!h.isValidG2(new bytes(96)), "compressed length accepted");
        bytes memory bad = abi.encodePacked(pk);
        bad[255] = bytes1(uint8(bad[255]) ^ 1);
        assertTrue(!h.isValidG2(bad), "off-curve key accepted");
    }
}
