// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title BLS
/// @notice BLS12-381 signatures in the min-sig setting (public key in G2, signature in G1), checked with the
/// EIP-2537 precompiles. Points use the EIP-2537 encoding: every Fp element is 64 bytes big-endian (16 zero
/// bytes, then 48), a G1 point is x || y (128 bytes), a G2 point is x.c0 || x.c1 || y.c0 || y.c1 (256 bytes).
/// Hashing to G1 follows RFC 9380 (BLS12381G1_XMD:SHA-256_SSWU_RO_): expand_message_xmd with SHA-256, two
/// field elements, the precompile's map_to_curve (which clears the cofactor), then their sum.
library BLS {
    uint256 internal constant G1_LENGTH = 128;
    uint256 internal constant G2_LENGTH = 256;

    /// @notice The DST commonware-cryptography's MinSig variant uses for messages, so the Rust side signs with it.
    bytes internal constant DST = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

    /// @notice Namespace every threshold-signed message of this project carries (commonware's union_unique
    /// framing: one length byte, the namespace, then the message).
    bytes internal constant NAMESPACE = "METIS_SEQ";

    address private constant MODEXP = address(0x05);
    address private constant G1ADD = address(0x0b);
    address private constant G2MSM = address(0x0e);
    address private constant PAIRING = address(0x0f);
    address private constant MAP_FP_TO_G1 = address(0x10);

    /// @dev EIP-2537 pairing price for two pairs. A precompile that fails burns all the gas it is given, so a
    /// malformed signature must only ever cost this much.
    uint256 private constant PAIRING_2_GAS = 37_700 + 2 * 32_600;
    uint256 private constant G2MSM_1_GAS = 22_500;

    /// @dev The field modulus p, 48 bytes.
    bytes private constant P =
        hex"1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab";

    /// @dev The negated G2 generator, EIP-2537 encoded: e(sig, -g2) * e(H(m), pk) == 1 <=> e(sig, g2) == e(H(m), pk).
    bytes private constant NEG_G2 =
        hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb80000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bcb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed";

    error DstTooLong();
    error OutputTooLong();
    error PrecompileFailed(address precompile);

    /// @notice The bytes that get hashed to the curve for a 32-byte digest: len(NAMESPACE) || NAMESPACE || digest.
    function signingMessage(bytes32 digest) internal pure returns (bytes memory) {
        return abi.encodePacked(uint8(NAMESPACE.length), NAMESPACE, digest);
    }

    /// @notice Verifies a signature in G1 over `digest` (framed by signingMessage) under public key `pk` in G2.
    /// @return false for a wrong, malformed, off-curve, out-of-subgroup or infinity signature or key.
    function verifyDigest(bytes memory pk, bytes memory signature, bytes32 digest) internal view returns (bool) {
        return verify(pk, signature, signingMessage(digest));
    }

    /// @notice Verifies a signature in G1 over `message` under the public key `pk` in G2 (DST = BLS.DST).
    function verify(bytes memory pk, bytes memory signature, bytes memory message) internal view returns (bool) {
        if (pk.length != G2_LENGTH || signature.length != G1_LENGTH) return false;
        // The pairing precompile accepts the point at infinity; a zero signature or key must never verify.
        if (_isZero(signature) || _isZero(pk)) return false;
        bytes memory h = hashToG1(message, DST);
        // The precompile checks that every point is on its curve and in the prime-order subgroup.
        (bool ok, bytes memory out) = PAIRING.staticcall{gas: PAIRING_2_GAS}(abi.encodePacked(signature, NEG_G2, h, pk));
        // forge-lint: disable-next-line(unsafe-typecast) length checked to be exactly 32
        return ok && out.length == 32 && uint256(bytes32(out)) == 1;
    }

    /// @notice True when `pk` is an EIP-2537-encoded G2 point, not infinity, in the prime-order subgroup.
    function isValidG2(bytes memory pk) internal view returns (bool) {
        if (pk.length != G2_LENGTH || _isZero(pk)) return false;
        // G2 MSM checks subgroup membership of its inputs; 1 * pk must give back pk.
        (bool ok, bytes memory out) = G2MSM.staticcall{gas: G2MSM_1_GAS}(abi.encodePacked(pk, uint256(1)));
        return ok && keccak256(out) == keccak256(pk);
    }

    /// @notice RFC 9380 hash_to_curve for G1 with expand_message_xmd(SHA-256), returned EIP-2537 encoded.
    function hashToG1(bytes memory message, bytes memory dst) internal view returns (bytes memory) {
        bytes memory uniform = expandMessageXmd(message, dst, 128);
        bytes memory q0 = _mapToG1(_reduce(uniform, 0));
        bytes memory q1 = _mapToG1(_reduce(uniform, 64));
        (bool ok, bytes memory sum) = G1ADD.staticcall(abi.encodePacked(q0, q1));
        if (!ok || sum.length != G1_LENGTH) revert PrecompileFailed(G1ADD);
        return sum;
    }

    /// @notice RFC 9380 section 5.3.1 expand_message_xmd with SHA-256 (b_in_bytes 32, s_in_bytes 64).
    function expandMessageXmd(bytes memory message, bytes memory dst, uint16 lenInBytes)
        internal
        pure
        returns (bytes memory out)
    {
        if (dst.length > 255) revert DstTooLong();
        uint256 ell = (uint256(lenInBytes) + 31) / 32;
        if (ell > 255) revert OutputTooLong();
        bytes memory dstPrime = abi.encodePacked(dst, uint8(dst.length));
        bytes32 b0 = sha256(abi.encodePacked(bytes32(0), bytes32(0), message, lenInBytes, uint8(0), dstPrime));
        bytes32 bi = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        out = new bytes(ell * 32);
        assembly ("memory-safe") {
            mstore(add(out, 32), bi)
        }
        for (uint256 i = 2; i <= ell; i++) {
            // forge-lint: disable-next-line(unsafe-typecast) i <= ell <= 255 for any uint16 length we use
            bi = sha256(abi.encodePacked(b0 ^ bi, uint8(i), dstPrime));
            assembly ("memory-safe") {
                mstore(add(out, mul(i, 32)), bi)
            }
        }
        assembly ("memory-safe") {
            mstore(out, lenInBytes)
        }
    }

    /// @dev 64 bytes of `uniform` at `offset`, taken mod p, as a 64-byte EIP-2537 field element (via MODEXP, e = 1).
    function _reduce(bytes memory uniform, uint256 offset) private view returns (bytes memory fe) {
        bytes32 hi;
        bytes32 lo;
        assembly ("memory-safe") {
            hi := mload(add(add(uniform, 32), offset))
            lo := mload(add(add(uniform, 64), offset))
        }
        (bool ok, bytes memory r) =
            MODEXP.staticcall(abi.encodePacked(uint256(64), uint256(1), uint256(48), hi, lo, uint8(1), P));
        if (!ok || r.length != 48) revert PrecompileFailed(MODEXP);
        fe = abi.encodePacked(bytes16(0), r);
    }

    function _mapToG1(bytes memory fe) private view returns (bytes memory point) {
        bool ok;
        (ok, point) = MAP_FP_TO_G1.staticcall(fe);
        if (!ok || point.length != G1_LENGTH) revert PrecompileFailed(MAP_FP_TO_G1);
    }

    function _isZero(bytes memory b) private pure returns (bool) {
        uint256 acc;
        assembly ("memory-safe") {
            let p := add(b, 32)
            let end := add(p, mload(b))
            for {} lt(p, end) { p := add(p, 32) } { acc := or(acc, mload(p)) }
        }
        // Lengths here are multiples of 32, so no bytes past the end are read.
        return acc == 0;
    }
}
