//! EIP-2537 encodings of BLS12-381 points, as the L1 contracts take them: each Fp element is 64 bytes
//! big-endian (16 zero bytes, then 48); G1 = x || y (128 bytes); G2 = x.c0 || x.c1 || y.c0 || y.c1 (256 bytes).
//!
//! blst's uncompressed serialization is the ZCash layout (48-byte elements, and c1 before c0 in G2), so the
//! conversions here reorder and pad; commonware's codec is the 48/96-byte compressed form.

use crate::{MpcError, G1, G2};
use alloy_primitives::{keccak256, Address};
use commonware_codec::{DecodeExt, Encode};

pub const FP_LEN: usize = 48;
pub const G1_EIP2537_LEN: usize = 128;
pub const G2_EIP2537_LEN: usize = 256;

fn pad(out: &mut [u8], slot: usize, fp: &[u8]) {
    out[slot * 64 + 16..slot * 64 + 64].copy_from_slice(fp);
}

fn unpad(input: &[u8], slot: usize) -> Result<&[u8], MpcError> {
    let word = &input[slot * 64..slot * 64 + 64];
    if word[..16].iter().any(|b| *b != 0) {
        return Err(MpcError::InvalidEncoding("non-zero padding in a field element"));
    }
    Ok(&word[16..])
}

/// A G1 point (a signature) in the EIP-2537 layout.
pub fn g1_to_eip2537(point: &G1) -> [u8; G1_EIP2537_LEN] {
    let compressed = point.encode();
    let mut out = [0u8; G1_EIP2537_LEN];
    // A commonware G1 is always a valid group element, so its encoding always decompresses.
    if let Ok(p) = blst::min_sig::Signature::uncompress(&compressed) {
        let ser = p.serialize();
        pad(&mut out, 0, &ser[..FP_LEN]);
        pad(&mut out, 1, &ser[FP_LEN..]);
    }
    out
}

/// A G2 point (a public key) in the EIP-2537 layout.
pub fn g2_to_eip2537(point: &G2) -> [u8; G2_EIP2537_LEN] {
    let compressed = point.encode();
    let mut out = [0u8; G2_EIP2537_LEN];
    if let Ok(p) = blst::min_sig::PublicKey::uncompress(&compressed) {
        let ser = p.serialize();
        pad(&mut out, 0, &ser[FP_LEN..2 * FP_LEN]); // x.c0
        pad(&mut out, 1, &ser[..FP_LEN]); // x.c1
        pad(&mut out, 2, &ser[3 * FP_LEN..]); // y.c0
        pad(&mut out, 3, &ser[2 * FP_LEN..3 * FP_LEN]); // y.c1
    }
    out
}

/// Parses an EIP-2537 G1 point, checking it is on the curve, in the subgroup and not infinity.
pub fn g1_from_eip2537(bytes: &[u8]) -> Result<G1, MpcError> {
    if bytes.len() != G1_EIP2537_LEN {
        return Err(MpcError::InvalidEncoding("G1 point must be 128 bytes"));
    }
    let mut ser = [0u8; 2 * FP_LEN];
    ser[..FP_LEN].copy_from_slice(unpad(bytes, 0)?);
    ser[FP_LEN..].copy_from_slice(unpad(bytes, 1)?);
    let p = blst::min_sig::Signature::deserialize(&ser).map_err(|_| MpcError::InvalidPoint)?;
    p.validate(true).map_err(|_| MpcError::InvalidPoint)?;
    G1::decode(p.compress().to_vec()).map_err(|_| MpcError::InvalidPoint)
}

/// Parses an EIP-2537 G2 point, checking it is on the curve, in the subgroup and not infinity.
pub fn g2_from_eip2537(bytes: &[u8]) -> Result<G2, MpcError> {
    if bytes.len() != G2_EIP2537_LEN {
        return Err(MpcError::InvalidEncoding("G2 point must be 256 bytes"));
    }
    let mut ser = [0u8; 4 * FP_LEN];
    ser[..FP_LEN].copy_from_slice(unpad(bytes, 1)?);
    ser[FP_LEN..2 * FP_LEN].copy_from_slice(unpad(bytes, 0)?);
    ser[2 * FP_LEN..3 * FP_LEN].copy_from_slice(unpad(bytes, 3)?);
    ser[3 * FP_LEN..].copy_from_slice(unpad(bytes, 2)?);
    let p = blst::min_sig::PublicKey::deserialize(&ser).map_err(|_| MpcError::InvalidPoint)?;
    p.validate().map_err(|_| MpcError::InvalidPoint)?;
    G2::decode(p.compress().to_vec()).map_err(|_| MpcError::InvalidPoint)
}

/// Parses a 96-byte compressed G2 point (commonware's and blst's encoding of a public key), with the same checks.
pub fn g2_from_compressed(bytes: &[u8]) -> Result<G2, MpcError> {
    let p = blst::min_sig::PublicKey::uncompress(bytes)
        .map_err(|_| MpcError::InvalidEncoding("not a compressed G2 point"))?;
    p.validate().map_err(|_| MpcError::InvalidPoint)?;
    G2::decode(p.compress().to_vec()).map_err(|_| MpcError::InvalidPoint)
}

/// The "MPC address" of a group key: the last 20 bytes of keccak256 of its EIP-2537 encoding, as
/// LockingPool.setGroupKey derives it.
pub fn mpc_address(group_key: &G2) -> Address {
    Address::from_slice(&keccak256(g2_to_eip2537(group_key))[12..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::bls12381::primitives::{ops, variant::MinSig};
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn roundtrip_and_rejects_tampering() {
        let mut rng = StdRng::seed_from_u64(7);
        let (sk, pk) = ops::keypair::<_, MinSig>(&mut rng);
        let sig = ops::sign_message::<MinSig>(&sk, b"ns", b"msg");

        let pk_bytes = g2_to_eip2537(&pk);
        assert_eq!(g2_from_eip2537(&pk_bytes).unwrap(), pk);
        let sig_bytes = g1_to_eip2537(&sig);
        assert_eq!(g1_from_eip2537(&sig_bytes).unwrap(), sig);

        let mut bad = sig_bytes;
        bad[127] ^= 1;
        assert!(g1_from_eip2537(&bad).is_err());
        let mut bad = sig_bytes;
        bad[0] = 1;
        assert!(matches!(g1_from_eip2537(&bad), Err(MpcError::InvalidEncoding(_))));
        assert!(g1_from_eip2537(&[0u8; 128]).is_err(), "infinity must be rejected");
        assert!(g1_from_eip2537(&sig_bytes[..96]).is_err());
        let mut bad = pk_bytes;
        bad[255] ^= 1;
        assert!(g2_from_eip2537(&bad).is_err());
        assert!(g2_from_eip2537(&[0u8; 256]).is_err(), "infinity must be rejected");
    }

    /// The G2 generator in EIP-2537 layout, as the contracts hard-code it (c0 before c1).
    #[test]
    fn g2_generator_layout_matches_eip2537() {
        use commonware_math::algebra::CryptoGroup;
        let g = g2_to_eip2537(&G2::generator());
        let x_c0 = &g[16..64];
        assert_eq!(
            alloy_primitives::hex::encode(x_c0),
            "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
        );
    }
}

#[cfg(test)]
mod rfc9380 {
    /// blst's hash_to_g1 against RFC 9380 J.9.1, the same vectors the Solidity BLS tests check: both sides
    /// implement the same suite.
    #[test]
    fn hash_to_g1_vectors() {
        let dst = b"QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_";
        for (msg, x) in [
            (
                &b""[..],
                "052926add2207b76ca4fa57a8734416c8dc95e24501772c814278700eed6d1e4e8cf62d9c09db0fac349612b759e79a1",
            ),
            (
                &b"abc"[..],
                "03567bc5ef9c690c2ab2ecdf6a96ef1c139cc0b2f284dca0a9a7943388a49a3aee664ba5379a7655d3c68900be2f6903",
            ),
        ] {
            let mut p = blst::blst_p1::default();
            let mut a = blst::blst_p1_affine::default();
            let mut out = [0u8; 96];
            // SAFETY: blst's C API with valid, correctly sized buffers.
            unsafe {
                blst::blst_hash_to_g1(
                    &mut p,
                    msg.as_ptr(),
                    msg.len(),
                    dst.as_ptr(),
                    dst.len(),
                    std::ptr::null(),
                    0,
                );
                blst::blst_p1_to_affine(&mut a, &p);
                blst::blst_p1_affine_serialize(out.as_mut_ptr(), &a);
            }
            assert_eq!(alloy_primitives::hex::encode(&out[..48]), x);
        }
    }
}
