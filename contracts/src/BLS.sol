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

    address private constant G2MSM = address(0x0e);

    /// @dev EIP-2537 pairing price for two pairs. A precompile that fails burns all the gas it is given, so a
    /// malformed signature must only ever cost this much.
    uint256 private constant PAIRING_2_GAS = 37_700 + 2 * 32_600;
    uint256 private constant G2MSM_1_GAS = 22_500;

    /// @dev The negated G2 generator, EIP-2537 encoded: e(sig, -g2) * e(H(m), pk) == 1 <=> e(sig, g2) == e(H(m), pk).
    bytes private constant NEG_G2 =
        hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb80000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bcb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed";

    error DstTooLong();
    error PrecompileFailed();

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
    function verify(bytes memory pk, bytes memory signature, bytes memory message) internal view returns (bool ok) {
        if (pk.length != G2_LENGTH || signature.length != G1_LENGTH) return false;
        // The pairing precompile accepts the point at infinity; a zero signature or key must never verify.
        if (_isZero(signature) || _isZero(pk)) return false;
        // One buffer, filled in place: signature | -g2 | H(message) | pk.
        bytes memory input = new bytes(2 * (G1_LENGTH + G2_LENGTH));
        bytes memory negG2 = NEG_G2;
        uint256 h;
        assembly ("memory-safe") {
            let b := add(input, 32)
            mcopy(b, add(signature, 32), 128)
            mcopy(add(b, 128), add(negG2, 32), 256)
            mcopy(add(b, 512), add(pk, 32), 256)
            h := add(b, 384)
        }
        _hashToG1Into(message, DST, h);
        // The precompile checks that every point is on its curve and in the prime-order subgroup.
        uint256 gasLimit = PAIRING_2_GAS;
        assembly ("memory-safe") {
            let success := staticcall(gasLimit, 0x0f, add(input, 32), 768, 0x00, 32)
            ok := and(success, and(eq(returndatasize(), 32), eq(mload(0x00), 1)))
        }
    }

    /// @notice True when `pk` is an EIP-2537-encoded G2 point, not infinity, in the prime-order subgroup.
    function isValidG2(bytes memory pk) internal view returns (bool) {
        if (pk.length != G2_LENGTH || _isZero(pk)) return false;
        // G2 MSM checks subgroup membership of its inputs; 1 * pk must give back pk.
        (bool ok, bytes memory out) = G2MSM.staticcall{gas: G2MSM_1_GAS}(abi.encodePacked(pk, uint256(1)));
        return ok && keccak256(out) == keccak256(pk);
    }

    /// @notice RFC 9380 hash_to_curve for G1 with expand_message_xmd(SHA-256), returned EIP-2537 encoded.
    function hashToG1(bytes memory message, bytes memory dst) internal view returns (bytes memory out) {
        out = new bytes(G1_LENGTH);
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(out, 32)
        }
        _hashToG1Into(message, dst, ptr);
    }

    /// @dev Writes H(message) (128 bytes) at memory `out`. Works in scratch memory past the free memory pointer:
    /// msg' for b0, the b_i inputs, two MODEXP inputs laid out so b1..b4 land where the reductions read them,
    /// the two field elements, and Q0 || Q1 for G1ADD.
    function _hashToG1Into(bytes memory message, bytes memory dst, uint256 out) private view {
        uint256 dlen = dst.length;
        if (dlen > 255) revert DstTooLong();
        bool ok;
        assembly ("memory-safe") {
            let mlen := mload(message)
            let m := mload(0x40)
            // msg' = Z_pad(64) || msg || I2OSP(128, 2) || I2OSP(0, 1) || DST || I2OSP(len(DST), 1)
            mstore(m, 0)
            mstore(add(m, 32), 0)
            mcopy(add(m, 64), add(message, 32), mlen)
            let p := add(add(m, 64), mlen)
            mstore(p, 0) // zero the three length/counter bytes
            mstore8(add(p, 1), 0x80)
            mcopy(add(p, 3), add(dst, 32), dlen)
            mstore8(add(add(p, 3), dlen), dlen)
            let msgLen := add(sub(add(p, 4), m), dlen)

            // t: input of b_i = (b0 xor b_{i-1}) || I2OSP(i, 1) || DST'; w: b0; e0, e1: MODEXP inputs.
            let t := add(m, and(add(msgLen, 63), not(31)))
            let w := add(t, 320)
            let e0 := add(w, 32)
            let e1 := add(e0, 256)
            let f := add(e1, 256) // two 64-byte field elements
            let q := add(f, 128) // Q0 || Q1

            ok := staticcall(gas(), 0x02, m, msgLen, w, 32)
            let b0 := mload(w)
            mcopy(add(t, 33), add(dst, 32), dlen)
            mstore8(add(add(t, 33), dlen), dlen)
            let tLen := add(34, dlen)

            // b1 -> e0+96, b2 -> e0+128, b3 -> e1+96, b4 -> e1+128
            mstore(t, b0)
            mstore8(add(t, 32), 1)
            ok := and(ok, staticcall(gas(), 0x02, t, tLen, add(e0, 96), 32))
            mstore(t, xor(b0, mload(add(e0, 96))))
            mstore8(add(t, 32), 2)
            ok := and(ok, staticcall(gas(), 0x02, t, tLen, add(e0, 128), 32))
            mstore(t, xor(b0, mload(add(e0, 128))))
            mstore8(add(t, 32), 3)
            ok := and(ok, staticcall(gas(), 0x02, t, tLen, add(e1, 96), 32))
            mstore(t, xor(b0, mload(add(e1, 96))))
            mstore8(add(t, 32), 4)
            ok := and(ok, staticcall(gas(), 0x02, t, tLen, add(e1, 128), 32))

            // MODEXP(base = 64 bytes, exponent = 1, modulus = p): u_i = uniform_i mod p.
            for { let e := e0 } lt(e, f) { e := add(e, 256) } {
                mstore(e, 64)
                mstore(add(e, 32), 1)
                mstore(add(e, 64), 48)
                mstore8(add(e, 160), 1)
                mstore(add(e, 161), 0x1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f624)
                mstore(add(e, 193), shl(128, 0x1eabfffeb153ffffb9feffffffffaaab))
            }
            mstore(f, 0)
            mstore(add(f, 64), 0)
            ok := and(ok, staticcall(gas(), 0x05, e0, 209, add(f, 16), 48))
            ok := and(ok, eq(returndatasize(), 48))
            ok := and(ok, staticcall(gas(), 0x05, e1, 209, add(f, 80), 48))
            ok := and(ok, eq(returndatasize(), 48))

            // map_to_curve (with cofactor clearing) of each, then their sum.
            ok := and(ok, staticcall(gas(), 0x10, f, 64, q, 128))
            ok := and(ok, eq(returndatasize(), 128))
            ok := and(ok, staticcall(gas(), 0x10, add(f, 64), 64, add(q, 128), 128))
            ok := and(ok, eq(returndatasize(), 128))
            ok := and(ok, staticcall(gas(), 0x0b, q, 256, out, 128))
            ok := and(ok, eq(returndatasize(), 128))
        }
        if (!ok) revert PrecompileFailed();
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
