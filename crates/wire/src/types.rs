//! The Malachite context: what a height, a validator, a value, a vote and a proposal are in this chain.
//!
//! - A validator is a sequencer; its address is its ed25519 consensus public key (the key the PoS ledger holds).
//! - The decided value is one L2 block, identified by its block hash; the block itself travels as proposal parts
//!   (and as raw bytes in sync), so votes and proposals stay small.
//! - The proposer schedule comes from the PoS ledger and is carried in the validator set of each height:
//!   round 0 is the epoch's elected sequencer, round r > 0 the fallback order by stake.

use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{self as mc, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType, VotingPower};
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its ed25519 consensus public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The network layer matches validators by this string, so it is the full key.
        write!(f, "0x{}", hex_str(&self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex_str(&self.0))
    }
}

impl mc::Address for Address {}

pub fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An ed25519 signature.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}", hex_str(&self.0[..8]))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519;

#[derive(Debug, thiserror::Error)]
#[error("bad ed25519 encoding")]
pub struct KeyDecodeError;

impl mc::SigningScheme for Ed25519 {
    type DecodingError = KeyDecodeError;
    type Signature = Signature;
    type PublicKey = ed25519_dalek::VerifyingKey;
    type PrivateKey = ed25519_dalek::SigningKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, KeyDecodeError> {
        Ok(Signature(bytes.try_into().map_err(|_| KeyDecodeError)?))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<ed25519_dalek::VerifyingKey, KeyDecodeError> {
        let b: [u8; 32] = bytes.try_into().map_err(|_| KeyDecodeError)?;
        ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|_| KeyDecodeError)
    }

    fn encode_public_key(public_key: &ed25519_dalek::VerifyingKey) -> Vec<u8> {
        public_key.to_bytes().to_vec()
    }
}

/// The decided value: an L2 block, by hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlockHash(pub [u8; 32]);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex_str(&self.0[..6]))
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex_str(&self.0))
    }
}

impl mc::Value for BlockHash {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        *self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: BlockHash,
    pub pol_round: Round,
    pub proposer: Address,
}

impl mc::Proposal<MetisContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockHash {
        &self.value
    }
    fn take_value(self) -> BlockHash {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub vote_type: VoteType,
    pub height: Height,
    pub round: Round,
    pub value: NilOrVal<BlockHash>,
    pub validator: Address,
    /// Threshold-key messages on precommits while a key round runs (see `metis_keyrounds`).
    pub extension: Option<SignedExtension<MetisContext>>,
}

impl Vote {
    /// The bytes a validator signs: everything but the extension, under a domain tag.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = b"metis-seq/vote/v1".to_vec();
        // Borsh into a Vec cannot fail.
        let _ = (&self.vote_type, &self.height, &self.round, &self.value, &self.validator).serialize(&mut out);
        out
    }
}

impl mc::Vote<MetisContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.vote_type
    }
    fn validator_address(&self) -> &Address {
        &self.validator
    }
    fn extension(&self) -> Option<&SignedExtension<MetisContext>> {
        self.extension.as_ref()
    }
    fn take_extension(&mut self) -> Option<SignedExtension<MetisContext>> {
        self.extension.take()
    }
    fn extend(self, extension: SignedExtension<MetisContext>) -> Self {
        Self {
            extension: Some(extension),
            ..self
        }
    }
}

/// The first part of a streamed proposal: who proposes what, where.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PartInit {
    pub height: Height,
    pub round: Round,
    pub pol_round: Round,
    pub proposer: Address,
    /// The hash of the block the stream carries: what the proposer's signature commits to, so two signed
    /// streams for one height and round naming different blocks prove a double proposal on their own.
    pub value: BlockHash,
    /// Length of the encoded block, so a receiver can refuse oversize streams before buffering them.
    pub total_len: u32,
}

/// A proposal travels as Init, Data chunks of the encoded block, and Fin with the proposer's signature over
/// all of it (parts are gossiped and relayed, so the publisher's peer id proves nothing).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    Init(PartInit),
    Data(Vec<u8>),
    Fin(Signature),
}

impl mc::ProposalPart<MetisContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, Self::Init(_))
    }
    fn is_last(&self) -> bool {
        matches!(self, Self::Fin(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub address: Address,
    pub public_key: ed25519_dalek::VerifyingKey,
    pub voting_power: VotingPower,
    /// The sequencer id in the PoS ledger.
    pub sequencer: u64,
}

impl mc::Validator<MetisContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }
    fn public_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.public_key
    }
    fn voting_power(&self) -> VotingPower {
        self.voting_power
    }
}

/// The validators of one height, sorted by address, with the proposer schedule of that height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    /// Indices into `validators`: round 0, then the fallbacks for rounds 1, 2, ... (cycled).
    schedule: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("empty validator set")]
    Empty,
    #[error("invalid consensus key for sequencer {0}")]
    BadKey(u64),
    #[error("proposer schedule names sequencer {0}, which is not a validator")]
    UnknownProposer(u64),
}

impl ValidatorSet {
    /// `validators`: (sequencer id, consensus key, power); `schedule`: sequencer ids, round 0 first.
    pub fn new(validators: &[(u64, [u8; 32], u64)], schedule: &[u64]) -> Result<Self, SetError> {
        let mut vs = Vec::with_capacity(validators.len());
        for (id, key, power) in validators {
            let public_key = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| SetError::BadKey(*id))?;
            vs.push(Validator {
                address: Address(*key),
                public_key,
                voting_power: *power,
                sequencer: *id,
            });
        }
        vs.sort_by_key(|v| v.address);
        if vs.is_empty() || schedule.is_empty() {
            return Err(SetError::Empty);
        }
        let schedule = schedule
            .iter()
            .map(|id| {
                vs.iter()
                    .position(|v| v.sequencer == *id)
                    .ok_or(SetError::UnknownProposer(*id))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            validators: vs,
            schedule,
        })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// The proposer of `round` (round 0 = the epoch's producer).
    pub fn proposer(&self, round: u32) -> &Validator {
        let i = if round == 0 || self.schedule.len() == 1 {
            self.schedule[0]
        } else {
            self.schedule[1 + (round as usize - 1) % (self.schedule.len() - 1)]
        };
        &self.validators[i]
    }

    pub fn by_address(&self, a: &Address) -> Option<&Validator> {
        self.validators
            .binary_search_by_key(a, |v| v.address)
            .ok()
            .map(|i| &self.validators[i])
    }
}

impl mc::ValidatorSet<MetisContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }
    fn total_voting_power(&self) -> VotingPower {
        self.validators.iter().map(|v| v.voting_power).sum()
    }
    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.by_address(address)
    }
    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

#[derive(Clone, Debug, Default)]
pub struct MetisContext;

impl mc::Context for MetisContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockHash;
    type Vote = Vote;
    /// Threshold-key messages (`keys::KeyExt`), checked by `VerifyVoteExtensions`.
    type Extension = Vec<u8>;
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(&self, set: &'a ValidatorSet, _height: Height, round: Round) -> &'a Validator {
        set.proposer(round.as_u32().unwrap_or(0))
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(&self, height: Height, round: Round, value: NilOrVal<BlockHash>, address: Address) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(&self, height: Height, round: Round, value: NilOrVal<BlockHash>, address: Address) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value,
            validator: address,
            extension: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&[i; 32])
            .verifying_key()
            .to_bytes()
    }

    #[test]
    fn schedule_round0_then_fallbacks_cycled() {
        let set = ValidatorSet::new(&[(1, key(1), 10), (2, key(2), 20), (3, key(3), 30)], &[2, 3, 1]).unwrap();
        assert_eq!(set.proposer(0).sequencer, 2);
        assert_eq!(set.proposer(1).sequencer, 3);
        assert_eq!(set.proposer(2).sequencer, 1);
        assert_eq!(set.proposer(3).sequencer, 3);
        assert!(ValidatorSet::new(&[(1, key(1), 10)], &[9]).is_err());
        assert!(set.by_address(&Address(key(3))).is_some());
    }
}
