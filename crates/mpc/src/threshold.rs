//! Threshold signing over the 32-byte digests the L1 contracts define.
//!
//! Every message is framed as commonware's `union_unique(NAMESPACE, digest)` (one length byte, the namespace,
//! the digest) and hashed to G1 with the MinSig message DST, exactly what `BLS.signingMessage` and
//! `BLS.verifyDigest` do on L1.

use crate::{MinSig, MpcError, PartialSignature, Share, Sharing, G1, G2};
use commonware_cryptography::bls12381::primitives::ops;
use commonware_parallel::Sequential;

/// Namespace of every threshold-signed message of this project (BLS.NAMESPACE on L1).
pub const NAMESPACE: &[u8] = b"METIS_SEQ";

/// The bytes hashed to the curve for `digest`.
pub fn signing_message(digest: &[u8; 32]) -> Vec<u8> {
    commonware_utils::union_unique(NAMESPACE, digest)
}

/// This share's partial signature over `digest`.
pub fn sign_partial(share: &Share, digest: &[u8; 32]) -> PartialSignature<MinSig> {
    ops::threshold::sign_message::<MinSig>(share, NAMESPACE, digest)
}

/// Checks one partial signature against the public sharing (so a bad partial can be attributed and dropped).
pub fn verify_partial(
    sharing: &Sharing<MinSig>,
    digest: &[u8; 32],
    partial: &PartialSignature<MinSig>,
) -> Result<(), MpcError> {
    ops::threshold::verify_message::<MinSig>(sharing, NAMESPACE, digest, partial).map_err(|_| MpcError::BadSignature)
}

/// Recovers the group signature from at least `sharing.required()` partials and checks it under the group
/// key: interpolation alone does not prove the partials were valid.
pub fn aggregate<'a>(
    sharing: &Sharing<MinSig>,
    digest: &[u8; 32],
    partials: impl IntoIterator<Item = &'a PartialSignature<MinSig>>,
) -> Result<G1, MpcError> {
    let sig = ops::threshold::recover::<MinSig, _>(sharing, partials, &Sequential)
        .map_err(|e| MpcError::Recovery(e.to_string()))?;
    verify(sharing.public(), digest, &sig)?;
    Ok(sig)
}

/// Verifies a (group) signature over `digest`.
pub fn verify(public: &G2, digest: &[u8; 32], signature: &G1) -> Result<(), MpcError> {
    ops::verify_message::<MinSig>(public, NAMESPACE, digest, signature).map_err(|_| MpcError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::bls12381::{dkg::feldman_desmedt::deal_anonymous, primitives::sharing::Mode};
    use commonware_utils::N3f1;
    use rand::{rngs::StdRng, SeedableRng};
    use std::num::NonZeroU32;

    fn deal(n: u32) -> (Sharing<MinSig>, Vec<Share>) {
        let n = NonZeroU32::new(n).unwrap();
        deal_anonymous::<MinSig, N3f1>(StdRng::seed_from_u64(1), Mode::NonZeroCounter, n)
    }

    #[test]
    fn quorum_of_partials_recovers_a_valid_signature() {
        let (sharing, shares) = deal(4);
        assert_eq!(sharing.required(), 3, "n = 4 tolerates f = 1: quorum 3");
        let digest = [7u8; 32];
        let partials: Vec<_> = shares.iter().map(|s| sign_partial(s, &digest)).collect();
        for p in &partials {
            verify_partial(&sharing, &digest, p).unwrap();
        }
        // Any quorum gives the same signature.
        let a = aggregate(&sharing, &digest, &partials[..3]).unwrap();
        let b = aggregate(&sharing, &digest, [&partials[0], &partials[2], &partials[3]]).unwrap();
        assert_eq!(a, b);
        verify(sharing.public(), &digest, &a).unwrap();
        assert!(verify(sharing.public(), &[8u8; 32], &a).is_err());
    }

    #[test]
    fn too_few_or_bad_partials_fail() {
        let (sharing, shares) = deal(4);
        let digest = [1u8; 32];
        let partials: Vec<_> = shares.iter().map(|s| sign_partial(s, &digest)).collect();
        assert!(matches!(
            aggregate(&sharing, &digest, &partials[..2]),
            Err(MpcError::Recovery(_))
        ));
        let wrong = sign_partial(&shares[1], &[2u8; 32]);
        assert!(verify_partial(&sharing, &digest, &wrong).is_err());
        assert!(aggregate(&sharing, &digest, [&partials[0], &wrong, &partials[2]]).is_err());
    }

    #[test]
    fn signing_message_is_length_prefixed_namespace_then_digest() {
        let m = signing_message(&[0xab; 32]);
        assert_eq!(m[0] as usize, NAMESPACE.len());
        assert_eq!(&m[1..1 + NAMESPACE.len()], NAMESPACE);
        assert_eq!(&m[1 + NAMESPACE.len()..], &[0xab; 32]);
    }
}
