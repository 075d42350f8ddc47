//! Signing and verifying consensus messages with the sequencer's ed25519 consensus key. Every message type has
//! its own domain tag, so a signature over one kind can never be replayed as another.

use crate::types::{MetisContext, PartInit, Proposal, Signature, Vote};
use async_trait::async_trait;
use borsh::BorshSerialize;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use malachitebft_core_types::{SignedMessage, ValidatorProof, VoteExtensionScope};
use malachitebft_signing::{Error, Signer, VerificationResult, Verifier};
use sha2::{Digest, Sha256};

/// What a proposal's signature covers: the proposal under its domain tag.
pub fn proposal_bytes(p: &Proposal) -> Vec<u8> {
    let mut out = b"metis-seq/proposal/v1".to_vec();
    let _ = p.serialize(&mut out);
    out
}

/// What a vote extension's signature covers: the precommit it rides on (height, round, value, validator) and
/// its content, so it can be neither replayed elsewhere nor altered.
pub fn extension_bytes(scope: &VoteExtensionScope<MetisContext>, extension: &[u8]) -> Vec<u8> {
    let mut out = b"metis-seq/vote-ext/v2".to_vec();
    let _ = (&scope.height, &scope.round, &scope.value_id, &scope.validator_address).serialize(&mut out);
    out.extend_from_slice(&Sha256::digest(extension));
    out
}

/// The digest of a stream's Data chunks, in order (each with its length).
pub fn content_digest(chunks: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in chunks {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c);
    }
    h.finalize().into()
}

/// What the Fin part of a streamed proposal signs: the Init (which names the block's hash) and the digest of the
/// Data chunks. Small on purpose: two such signatures for one height and round with different blocks are
/// evidence anyone can check without the blocks.
pub fn stream_fin_bytes(init: &PartInit, content: &[u8; 32]) -> Vec<u8> {
    let mut out = b"metis-seq/proposal-parts/v2".to_vec();
    let _ = init.serialize(&mut out);
    out.extend_from_slice(content);
    out
}

/// [`stream_fin_bytes`] of a whole stream.
pub fn stream_digest(init: &PartInit, chunks: &[Vec<u8>]) -> Vec<u8> {
    stream_fin_bytes(init, &content_digest(chunks))
}

/// Whether `sig` is `key`'s signature of `msg` (ed25519, strict). A signature found valid is remembered: every
/// precommit is checked when it arrives as a vote, again when Malachite builds the decided certificate from it
/// and when it finalizes the height, and again when the next block carries the certificate; three of those four
/// ed25519 checks (about 55 us each on a 2-core VM; two of them on the path to this node's vote or decision)
/// become a hash lookup.
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
    let id = verified_id(key, msg, sig);
    if verified().contains(&id) {
        return true;
    }
    let ok = key
        .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
        .is_ok();
    if ok {
        verified().insert(id);
    }
    ok
}

/// Valid signatures remembered: a few heights' votes among 100 validators. Only valid ones are kept, so a flood
/// of bad signatures cannot evict anything; a validator signing many messages only pushes older entries out
/// (they are then checked again).
const VERIFIED_CAP: usize = 8192;

/// The identity of one (key, message, signature): a SHA-256 over all three, length-prefixed.
fn verified_id(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"metis-seq/verified/v1");
    h.update(key.as_bytes());
    h.update(sig.0);
    h.update((msg.len() as u64).to_be_bytes());
    h.update(msg);
    h.finalize().into()
}

#[derive(Default)]
struct Verified {
    set: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl Verified {
    fn contains(&self, id: &[u8; 32]) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: [u8; 32]) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > VERIFIED_CAP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

fn verified() -> std::sync::MutexGuard<'static, Verified> {
    static VERIFIED: std::sync::LazyLock<std::sync::Mutex<Verified>> = std::sync::LazyLock::new(Default::default);
    // The set holds only valid results, each inserted whole: a panic elsewhere cannot leave a wrong entry.
    VERIFIED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Signs with the node's consensus key. The key never leaves this struct and is not printed.
pub struct ConsensusSigner {
    key: SigningKey,
}

impl ConsensusSigner {
    pub fn new(key: SigningKey) -> Self {
        Self { key }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign_bytes(&self, msg: &[u8]) -> Signature {
        Signature(self.key.sign(msg).to_bytes())
    }
}

#[async_trait]
impl Signer<MetisContext> for ConsensusSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<MetisContext, Vote>, Error> {
        let sig = self.sign_bytes(&vote.signing_bytes());
        Ok(SignedMessage::new(vote, sig))
    }

    async fn sign_proposal(&self, proposal: Proposal) -> Result<SignedMessage<MetisContext, Proposal>, Error> {
        let sig = self.sign_bytes(&proposal_bytes(&proposal));
        Ok(SignedMessage::new(proposal, sig))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<MetisContext>,
        extension: Vec<u8>,
    ) -> Result<SignedMessage<MetisContext, Vec<u8>>, Error> {
        let sig = self.sign_bytes(&extension_bytes(&scope, &extension));
        Ok(SignedMessage::new(extension, sig))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<MetisContext>, Error> {
        let sig = self.sign_bytes(&ValidatorProof::<MetisContext>::signing_bytes(&public_key, &peer_id));
        Ok(ValidatorProof::new(public_key, peer_id, sig))
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ConsensusVerifier;

#[async_trait]
impl Verifier<MetisContext> for ConsensusVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &VerifyingKey,
    ) -> Result<VerificationResult, Error> {
        Ok(VerificationResult::from_bool(verify(
            public_key,
            &vote.signing_bytes(),
            signature,
        )))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &VerifyingKey,
    ) -> Result<VerificationResult, Error> {
        Ok(VerificationResult::from_bool(verify(
            public_key,
            &proposal_bytes(proposal),
            signature,
        )))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<MetisContext>,
        extension: &Vec<u8>,
        signature: &Signature,
        public_key: &VerifyingKey,
    ) -> Result<VerificationResult, Error> {
        Ok(VerificationResult::from_bool(verify(
            public_key,
            &extension_bytes(scope, extension),
            signature,
        )))
    }

    async fn verify_validator_proof(&self, proof: &ValidatorProof<MetisContext>) -> Result<VerificationResult, Error> {
        let Ok(bytes) = <[u8; 32]>::try_from(proof.public_key.as_slice()) else {
            return Ok(VerificationResult::Invalid);
        };
        let Ok(key) = VerifyingKey::from_bytes(&bytes) else {
            return Ok(VerificationResult::Invalid);
        };
        Ok(VerificationResult::from_bool(verify(
            &key,
            &proof.preimage(),
            &proof.signature,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Address, BlockHash, Height};
    use malachitebft_core_types::{NilOrVal, Round, VoteType};

    #[tokio::test]
    async fn votes_verify_and_tampering_fails() {
        let signer = ConsensusSigner::new(SigningKey::from_bytes(&[7; 32]));
        let vote = Vote {
            vote_type: VoteType::Prevote,
            height: Height(5),
            round: Round::new(0),
            value: NilOrVal::Val(BlockHash([1; 32])),
            validator: Address(signer.public_key().to_bytes()),
            extension: None,
        };
        let signed = signer.sign_vote(vote.clone()).await.unwrap();
        let pk = signer.public_key();
        assert!(ConsensusVerifier
            .verify_signed_vote(&vote, &signed.signature, &pk)
            .await
            .unwrap()
            .is_valid());
        let mut other = vote.clone();
        other.vote_type = VoteType::Precommit;
        assert!(ConsensusVerifier
            .verify_signed_vote(&other, &signed.signature, &pk)
            .await
            .unwrap()
            .is_invalid());
        // A vote signature is not a proposal signature.
        let p = Proposal {
            height: Height(5),
            round: Round::new(0),
            value: BlockHash([1; 32]),
            pol_round: Round::Nil,
            proposer: vote.validator,
        };
        assert!(ConsensusVerifier
            .verify_signed_proposal(&p, &signed.signature, &pk)
            .await
            .unwrap()
            .is_invalid());
    }

    #[test]
    fn a_remembered_signature_passes_only_for_its_own_key_and_message() {
        let a = ConsensusSigner::new(SigningKey::from_bytes(&[21; 32]));
        let b = ConsensusSigner::new(SigningKey::from_bytes(&[22; 32]));
        let msg = b"metis-seq/test/remembered".to_vec();
        let sig = a.sign_bytes(&msg);
        assert!(verify(&a.public_key(), &msg, &sig));
        assert!(
            verify(&a.public_key(), &msg, &sig),
            "the second check (from memory) agrees"
        );
        assert!(!verify(&b.public_key(), &msg, &sig), "another key");
        assert!(
            !verify(&a.public_key(), b"metis-seq/test/other", &sig),
            "another message"
        );
        let mut bad = sig.clone();
        bad.0[0] ^= 1;
        assert!(!verify(&a.public_key(), &msg, &bad), "another signature");
        // Invalid results are not remembered: still invalid, and the valid one still passes.
        assert!(!verify(&a.public_key(), &msg, &bad));
        assert!(verify(&a.public_key(), &msg, &sig));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut v = Verified::default();
        for i in 0..(VERIFIED_CAP + 10) as u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            v.insert(id);
        }
        assert_eq!(v.set.len(), VERIFIED_CAP);
        assert_eq!(v.order.len(), VERIFIED_CAP);
        assert!(!v.contains(&[0u8; 32]), "the oldest went first");
    }
}
