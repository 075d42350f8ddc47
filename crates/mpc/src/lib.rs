//! The sequencer pool's threshold BLS12-381 key.
//!
//! Scheme: commonware-cryptography's `MinSig` variant (public key in G2, signature in G1, hash-to-G1 with the
//! DST `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_`), the setting the L1 contracts verify with the EIP-2537
//! precompiles. [`encoding`] converts points to and from the EIP-2537 byte layout; [`threshold`] frames the
//! 32-byte digests the contracts define, signs partials with a share and aggregates them.

pub mod collect;
pub mod dkg;
pub mod encoding;
pub mod seal;
pub mod session;
pub mod threshold;

pub use commonware_cryptography::bls12381::primitives::{
    group::{Share, G1, G2},
    sharing::Sharing,
    variant::{MinSig, PartialSignature},
};

/// The threshold key a node signs with: a key round's public sharing and this node's share of it, if any.
#[derive(Clone)]
pub struct SigningKey {
    pub round: u64,
    pub sharing: Sharing<MinSig>,
    pub share: Option<Share>,
    /// Consensus key of the player holding each share index: a partial counts only from its own holder.
    pub players: Vec<[u8; 32]>,
}

/// Never prints the share.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("round", &self.round)
            .field("has_share", &self.share.is_some())
            .field("players", &self.players.len())
            .finish()
    }
}

/// Errors of the threshold-key primitives.
#[derive(Debug, thiserror::Error)]
pub enum MpcError {
    #[error("invalid point encoding: {0}")]
    InvalidEncoding(&'static str),
    #[error("point is not in the prime-order subgroup or is the point at infinity")]
    InvalidPoint,
    #[error("threshold signature recovery failed: {0}")]
    Recovery(String),
    #[error("signature does not verify under the group public key")]
    BadSignature,
}
