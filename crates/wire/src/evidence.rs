//! Evidence of equivocation: two messages one validator signed for the same height and round (and, for votes,
//! the same type) with different values. It carries both signed messages in full, so anyone who knows the
//! offender's consensus key (registered on L1) can check it without trusting whoever reported it.
//!
//! The pair is kept in one canonical order (by value), so the same equivocation reported by different nodes
//! has one encoding and one hash, and cannot be spent twice under two hashes.

use crate::signing::{proposal_bytes, stream_fin_bytes, verify};
use crate::types::{Address, BlockHash, Height, PartInit, Proposal, Signature, Vote};
use alloy_primitives::{keccak256, B256};
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{NilOrVal, Round};

/// Bytes of one encoded evidence item at most (two votes or proposals and their signatures need ~450).
pub const MAX_EVIDENCE_BYTES: usize = 1024;

/// A vote (its extension dropped: the signature does not cover it) and its signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedVoteRecord {
    pub vote: Vote,
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedProposalRecord {
    pub proposal: Proposal,
    pub signature: Signature,
}

/// A proposal stream as its Fin signature covers it: the Init (naming the block) and the digest of the chunks.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedStreamRecord {
    pub init: PartInit,
    pub content: [u8; 32],
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Evidence {
    DoubleVote {
        first: SignedVoteRecord,
        second: SignedVoteRecord,
    },
    DoubleProposal {
        first: SignedProposalRecord,
        second: SignedProposalRecord,
    },
    /// Two signed proposal streams for one height and round naming different blocks (the app's own check).
    DoubleStream {
        first: SignedStreamRecord,
        second: SignedStreamRecord,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the two messages are by different validators")]
    DifferentSigners,
    #[error("the two messages are not for the same height, round and type")]
    DifferentSlots,
    #[error("the two messages carry the same value")]
    SameValue,
    #[error("the pair is not in canonical order")]
    NotCanonical,
    #[error("signature {0} does not verify under the offender's key")]
    BadSignature(u8),
    #[error("the offender's key is not an ed25519 key")]
    BadKey,
    #[error("evidence encoding: {0}")]
    Encoding(String),
}

/// Two proposals (or streams) conflict: one proposer, one height and round, different blocks, in order.
fn proposal_pair(
    a: (Address, Height, Round, BlockHash),
    b: (Address, Height, Round, BlockHash),
) -> Result<(), EvidenceError> {
    if a.0 != b.0 {
        return Err(EvidenceError::DifferentSigners);
    }
    if (a.1, a.2) != (b.1, b.2) {
        return Err(EvidenceError::DifferentSlots);
    }
    match a.3 .0.cmp(&b.3 .0) {
        std::cmp::Ordering::Equal => Err(EvidenceError::SameValue),
        std::cmp::Ordering::Greater => Err(EvidenceError::NotCanonical),
        std::cmp::Ordering::Less => Ok(()),
    }
}

/// The order key of a vote's value: nil first, then by block hash.
fn vote_key(v: &NilOrVal<BlockHash>) -> (u8, [u8; 32]) {
    match v {
        NilOrVal::Nil => (0, [0; 32]),
        NilOrVal::Val(h) => (1, h.0),
    }
}

impl Evidence {
    /// Two conflicting votes, in canonical order (extensions dropped); refused unless they conflict.
    pub fn double_vote(a: SignedVoteRecord, b: SignedVoteRecord) -> Result<Self, EvidenceError> {
        let strip = |mut r: SignedVoteRecord| {
            r.vote.extension = None;
            r
        };
        let (a, b) = (strip(a), strip(b));
        let (first, second) = if vote_key(&a.vote.value) <= vote_key(&b.vote.value) {
            (a, b)
        } else {
            (b, a)
        };
        let e = Self::DoubleVote { first, second };
        e.check_shape()?;
        Ok(e)
    }

    /// Two conflicting proposals, in canonical order; refused unless they conflict.
    pub fn double_proposal(a: SignedProposalRecord, b: SignedProposalRecord) -> Result<Self, EvidenceError> {
        let (first, second) = if a.proposal.value.0 <= b.proposal.value.0 {
            (a, b)
        } else {
            (b, a)
        };
        let e = Self::DoubleProposal { first, second };
        e.check_shape()?;
        Ok(e)
    }

    /// Two signed streams for one slot, in canonical order; refused unless they name different blocks.
    pub fn double_stream(a: SignedStreamRecord, b: SignedStreamRecord) -> Result<Self, EvidenceError> {
        let (first, second) = if a.init.value.0 <= b.init.value.0 {
            (a, b)
        } else {
            (b, a)
        };
        let e = Self::DoubleStream { first, second };
        e.check_shape()?;
        Ok(e)
    }

    pub fn offender(&self) -> Address {
        match self {
            Self::DoubleVote { first, .. } => first.vote.validator,
            Self::DoubleProposal { first, .. } => first.proposal.proposer,
            Self::DoubleStream { first, .. } => first.init.proposer,
        }
    }

    pub fn height(&self) -> Height {
        match self {
            Self::DoubleVote { first, .. } => first.vote.height,
            Self::DoubleProposal { first, .. } => first.proposal.height,
            Self::DoubleStream { first, .. } => first.init.height,
        }
    }

    pub fn round(&self) -> Round {
        match self {
            Self::DoubleVote { first, .. } => first.vote.round,
            Self::DoubleProposal { first, .. } => first.proposal.round,
            Self::DoubleStream { first, .. } => first.init.round,
        }
    }

    pub fn kind(&self) -> metis_pos::OffenceKind {
        match self {
            Self::DoubleVote { .. } => metis_pos::OffenceKind::DoubleVote,
            Self::DoubleProposal { .. } | Self::DoubleStream { .. } => metis_pos::OffenceKind::DoubleProposal,
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EvidenceError> {
        borsh::to_vec(self).map_err(|e| EvidenceError::Encoding(e.to_string()))
    }

    /// Decodes at most [`MAX_EVIDENCE_BYTES`], trailing bytes refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::Encoding(format!("{} bytes", bytes.len())));
        }
        borsh::from_slice(bytes).map_err(|e| EvidenceError::Encoding(e.to_string()))
    }

    /// The hash L1 and the ledger know the evidence by.
    pub fn hash(&self) -> Result<B256, EvidenceError> {
        Ok(keccak256(self.to_bytes()?))
    }

    /// Same signer, same slot, different values, canonical order: what makes the pair a conflict at all.
    fn check_shape(&self) -> Result<(), EvidenceError> {
        match self {
            Self::DoubleVote { first, second } => {
                let (a, b) = (&first.vote, &second.vote);
                if a.validator != b.validator {
                    return Err(EvidenceError::DifferentSigners);
                }
                if (a.vote_type, a.height, a.round) != (b.vote_type, b.height, b.round) {
                    return Err(EvidenceError::DifferentSlots);
                }
                match vote_key(&a.value).cmp(&vote_key(&b.value)) {
                    std::cmp::Ordering::Equal => Err(EvidenceError::SameValue),
                    std::cmp::Ordering::Greater => Err(EvidenceError::NotCanonical),
                    std::cmp::Ordering::Less => Ok(()),
                }
            }
            Self::DoubleProposal { first, second } => {
                let (a, b) = (&first.proposal, &second.proposal);
                proposal_pair(
                    (a.proposer, a.height, a.round, a.value),
                    (b.proposer, b.height, b.round, b.value),
                )
            }
            Self::DoubleStream { first, second } => {
                let (a, b) = (&first.init, &second.init);
                proposal_pair(
                    (a.proposer, a.height, a.round, a.value),
                    (b.proposer, b.height, b.round, b.value),
                )
            }
        }
    }

    /// The whole proof: the pair conflicts and both signatures verify under the offender's key (its address
    /// is its ed25519 public key).
    pub fn verify(&self) -> Result<(), EvidenceError> {
        self.check_shape()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.offender().0).map_err(|_| EvidenceError::BadKey)?;
        let signed: [(Vec<u8>, &Signature); 2] = match self {
            Self::DoubleVote { first, second } => [
                (first.vote.signing_bytes(), &first.signature),
                (second.vote.signing_bytes(), &second.signature),
            ],
            Self::DoubleProposal { first, second } => [
                (proposal_bytes(&first.proposal), &first.signature),
                (proposal_bytes(&second.proposal), &second.signature),
            ],
            Self::DoubleStream { first, second } => [
                (stream_fin_bytes(&first.init, &first.content), &first.signature),
                (stream_fin_bytes(&second.init, &second.content), &second.signature),
            ],
        };
        for (i, (msg, sig)) in signed.iter().enumerate() {
            if !verify(&key, msg, sig) {
                return Err(EvidenceError::BadSignature(i as u8));
            }
        }
        Ok(())
    }

    /// What the ledger takes from it, for the sequencer with this consensus key.
    pub fn misbehaviour(&self, sequencer: u64) -> Result<metis_pos::Misbehaviour, EvidenceError> {
        Ok(metis_pos::Misbehaviour {
            kind: self.kind(),
            sequencer,
            height: self.height().0,
            evidence: self.hash()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::ConsensusSigner;
    use malachitebft_core_types::VoteType;

    fn key(i: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[i; 32])
    }

    fn vote(k: &ed25519_dalek::SigningKey, value: NilOrVal<BlockHash>, round: u32) -> SignedVoteRecord {
        let vote = Vote {
            vote_type: VoteType::Prevote,
            height: Height(7),
            round: Round::new(round),
            value,
            validator: Address(k.verifying_key().to_bytes()),
            extension: None,
        };
        let signature = ConsensusSigner::new(k.clone()).sign_bytes(&vote.signing_bytes());
        SignedVoteRecord { vote, signature }
    }

    fn proposal(k: &ed25519_dalek::SigningKey, value: u8) -> SignedProposalRecord {
        let proposal = Proposal {
            height: Height(7),
            round: Round::new(0),
            value: BlockHash([value; 32]),
            pol_round: Round::Nil,
            proposer: Address(k.verifying_key().to_bytes()),
        };
        let signature = ConsensusSigner::new(k.clone()).sign_bytes(&proposal_bytes(&proposal));
        SignedProposalRecord { proposal, signature }
    }

    #[test]
    fn a_double_vote_verifies_and_has_one_hash_whoever_reports_it() {
        let k = key(1);
        let (a, b) = (
            vote(&k, NilOrVal::Val(BlockHash([1; 32])), 0),
            vote(&k, NilOrVal::Nil, 0),
        );
        let e = Evidence::double_vote(a.clone(), b.clone()).unwrap();
        assert_eq!(e.verify(), Ok(()));
        let reversed = Evidence::double_vote(b, a).unwrap();
        assert_eq!(e.hash().unwrap(), reversed.hash().unwrap());
        assert_eq!(Evidence::from_bytes(&e.to_bytes().unwrap()).unwrap(), e);
        let m = e.misbehaviour(3).unwrap();
        assert_eq!(
            (m.sequencer, m.height, m.kind),
            (3, 7, metis_pos::OffenceKind::DoubleVote)
        );
    }

    #[test]
    fn a_double_proposal_verifies() {
        let k = key(2);
        let e = Evidence::double_proposal(proposal(&k, 9), proposal(&k, 4)).unwrap();
        assert_eq!(e.verify(), Ok(()));
    }

    fn stream(k: &ed25519_dalek::SigningKey, value: u8, content: u8) -> SignedStreamRecord {
        let init = PartInit {
            height: Height(7),
            round: Round::new(0),
            pol_round: Round::Nil,
            proposer: Address(k.verifying_key().to_bytes()),
            value: BlockHash([value; 32]),
            total_len: 100,
        };
        let content = [content; 32];
        let signature = ConsensusSigner::new(k.clone()).sign_bytes(&stream_fin_bytes(&init, &content));
        SignedStreamRecord {
            init,
            content,
            signature,
        }
    }

    #[test]
    fn two_streams_naming_different_blocks_verify_and_fit() {
        let k = key(3);
        let e = Evidence::double_stream(stream(&k, 9, 1), stream(&k, 4, 2)).unwrap();
        assert_eq!(e.verify(), Ok(()));
        assert_eq!(e.kind(), metis_pos::OffenceKind::DoubleProposal);
        assert!(e.to_bytes().unwrap().len() <= MAX_EVIDENCE_BYTES);
        // The same block streamed twice (another chunking) is no double proposal.
        assert_eq!(
            Evidence::double_stream(stream(&k, 9, 1), stream(&k, 9, 2)),
            Err(EvidenceError::SameValue)
        );
        let mut forged = stream(&key(4), 5, 1);
        forged.init.proposer = Address(k.verifying_key().to_bytes());
        let e = Evidence::double_stream(stream(&k, 9, 1), forged).unwrap();
        assert!(matches!(e.verify(), Err(EvidenceError::BadSignature(_))));
    }

    #[test]
    fn what_is_not_an_equivocation_is_refused() {
        let (k, other) = (key(1), key(2));
        let v = |k, value: u8, round| vote(k, NilOrVal::Val(BlockHash([value; 32])), round);
        assert_eq!(
            Evidence::double_vote(v(&k, 1, 0), v(&k, 1, 0)),
            Err(EvidenceError::SameValue)
        );
        assert_eq!(
            Evidence::double_vote(v(&k, 1, 0), v(&k, 2, 1)),
            Err(EvidenceError::DifferentSlots)
        );
        assert_eq!(
            Evidence::double_vote(v(&k, 1, 0), v(&other, 2, 0)),
            Err(EvidenceError::DifferentSigners)
        );
        assert_eq!(
            Evidence::double_proposal(proposal(&k, 1), proposal(&other, 2)),
            Err(EvidenceError::DifferentSigners)
        );
        // A forged signature (the other key signed a vote naming this validator).
        let mut forged = v(&other, 2, 0);
        forged.vote.validator = Address(k.verifying_key().to_bytes());
        let e = Evidence::double_vote(v(&k, 1, 0), forged).unwrap();
        assert!(matches!(e.verify(), Err(EvidenceError::BadSignature(_))));
        // A pair out of canonical order (built by hand, as a hostile encoder would).
        let (a, b) = (v(&k, 1, 0), v(&k, 2, 0));
        let swapped = Evidence::DoubleVote { first: b, second: a };
        assert_eq!(swapped.verify(), Err(EvidenceError::NotCanonical));
        // Oversized or trailing bytes.
        let mut bytes = Evidence::double_vote(v(&k, 1, 0), v(&k, 2, 0))
            .unwrap()
            .to_bytes()
            .unwrap();
        bytes.push(0);
        assert!(Evidence::from_bytes(&bytes).is_err());
        assert!(Evidence::from_bytes(&vec![0u8; MAX_EVIDENCE_BYTES + 1]).is_err());
    }
}
