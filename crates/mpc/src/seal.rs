//! Sealing a private DKG dealing to one player, so it can travel in a public PoS transaction: X25519 between a
//! fresh ephemeral key and the player's registered DKG key, a symmetric key from SHA-256 over the shared secret and
//! both public keys, and XChaCha20-Poly1305 with the caller's associated data (round, dealer, player), so a sealed
//! dealing cannot be moved to another round or pair.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const DOMAIN: &[u8] = b"metis-seq/dkg-seal/v1";
/// Ephemeral public key + nonce + tag.
pub const OVERHEAD: usize = 32 + 24 + 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("system randomness unavailable")]
    Random,
    #[error("the recipient key is a low-order point")]
    WeakKey,
    #[error("sealed dealing is malformed or not for this key and context")]
    Open,
}

/// A player's DKG key pair (its public half is the `dkgKey` registered on L1). Zeroized on drop.
pub struct DkgSecret(StaticSecret);

impl std::fmt::Debug for DkgSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DkgSecret(<redacted>)")
    }
}

fn random32() -> Result<[u8; 32], SealError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| SealError::Random)?;
    Ok(b)
}

impl DkgSecret {
    pub fn generate() -> Result<Self, SealError> {
        Ok(Self(StaticSecret::from(random32()?)))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The secret's bytes, for the key store.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }
}

fn key(shared: &[u8; 32], eph: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(shared);
    h.update(eph);
    h.update(recipient);
    Zeroizing::new(h.finalize().into())
}

/// Seals `plaintext` to `recipient` (a registered DKG key) under `aad`.
pub fn seal(recipient: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let eph = StaticSecret::from(random32()?);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let k = key(shared.as_bytes(), &eph_pub, recipient);
    let cipher = XChaCha20Poly1305::new_from_slice(k.as_ref()).map_err(|_| SealError::Open)?;
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let nonce_arr = XNonce::try_from(&nonce[..]).map_err(|_| SealError::Open)?;
    let ct = cipher
        .encrypt(&nonce_arr, Payload { msg: plaintext, aad })
        .map_err(|_| SealError::Open)?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a dealing sealed to `secret` under `aad`.
pub fn open(secret: &DkgSecret, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < OVERHEAD {
        return Err(SealError::Open);
    }
    let mut eph_pub = [0u8; 32];
    eph_pub.copy_from_slice(&sealed[..32]);
    let shared = secret.0.diffie_hellman(&PublicKey::from(eph_pub));
    if !shared.was_contributory() {
        return Err(SealError::Open);
    }
    let k = key(shared.as_bytes(), &eph_pub, &secret.public());
    let cipher = XChaCha20Poly1305::new_from_slice(k.as_ref()).map_err(|_| SealError::Open)?;
    let nonce_arr = XNonce::try_from(&sealed[32..56]).map_err(|_| SealError::Open)?;
    cipher
        .decrypt(
            &nonce_arr,
            Payload {
                msg: &sealed[56..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_context_binding() {
        let player = DkgSecret::generate().unwrap();
        let other = DkgSecret::generate().unwrap();
        let msg = b"dealer 3's evaluation for player 5";
        let sealed = seal(&player.public(), b"round 7|dealer 3|player 5", msg).unwrap();
        assert_eq!(sealed.len(), OVERHEAD + msg.len());
        assert!(
            !sealed.windows(msg.len()).any(|w| w == msg),
            "no plaintext in the sealed bytes"
        );
        assert_eq!(
            open(&player, b"round 7|dealer 3|player 5", &sealed).unwrap().as_slice(),
            msg
        );
        // Another player's key, another context, or a flipped bit: refused.
        assert_eq!(
            open(&other, b"round 7|dealer 3|player 5", &sealed),
            Err(SealError::Open)
        );
        assert_eq!(
            open(&player, b"round 8|dealer 3|player 5", &sealed),
            Err(SealError::Open)
        );
        let mut bad = sealed.clone();
        bad[60] ^= 1;
        assert_eq!(open(&player, b"round 7|dealer 3|player 5", &bad), Err(SealError::Open));
        assert_eq!(open(&player, b"", &sealed[..10]), Err(SealError::Open));
        // Two seals of the same message differ (fresh ephemeral key and nonce).
        assert_ne!(
            seal(&player.public(), b"x", msg).unwrap(),
            seal(&player.public(), b"x", msg).unwrap()
        );
        // A low-order recipient key is refused.
        assert_eq!(seal(&[0u8; 32], b"x", msg), Err(SealError::WeakKey));
        assert_eq!(format!("{player:?}"), "DkgSecret(<redacted>)");
    }
}
