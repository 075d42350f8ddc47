//! Wire and WAL encoding of every consensus message: borsh, strict (trailing bytes are an error). Frame sizes
//! are bounded by the network layer (`pubsub_max_size`, `rpc_max_size`) before anything reaches a decoder, and
//! borsh never preallocates more than the input can hold.

use crate::types::{Address, BlockHash, Height, MetisContext, ProposalPart, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use malachitebft_codec::{Codec, HasEncodedLen};
use malachitebft_core_consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_core_types::{
    CommitCertificate, ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, SignedExtension,
    ValidatorProof,
};
use malachitebft_engine::util::streaming::StreamMessage;
use malachitebft_sync::{RawDecidedValue, Response, ValueResponse};

#[derive(Clone, Copy, Debug, Default)]
pub struct WireCodec;

#[derive(Debug, thiserror::Error)]
#[error("decoding {what}: {source}")]
pub struct CodecError {
    what: &'static str,
    source: std::io::Error,
}

fn encode<T: BorshSerialize>(what: &'static str, v: &T) -> Result<Bytes, CodecError> {
    borsh::to_vec(v)
        .map(Bytes::from)
        .map_err(|source| CodecError { what, source })
}

fn decode<T: BorshDeserialize>(what: &'static str, b: &[u8]) -> Result<T, CodecError> {
    borsh::from_slice(b).map_err(|source| CodecError { what, source })
}

macro_rules! borsh_codec {
    ($t:ty, $name:literal) => {
        impl Codec<$t> for WireCodec {
            type Error = CodecError;
            fn decode(&self, bytes: Bytes) -> Result<$t, CodecError> {
                decode($name, &bytes)
            }
            fn encode(&self, msg: &$t) -> Result<Bytes, CodecError> {
                encode($name, msg)
            }
        }
    };
}

borsh_codec!(ProposalPart, "proposal part");
borsh_codec!(SignedConsensusMsg<MetisContext>, "consensus message");
borsh_codec!(LivenessMsg<MetisContext>, "liveness message");
borsh_codec!(StreamMessage<ProposalPart>, "stream message");
borsh_codec!(ProposedValue<MetisContext>, "proposed value");
borsh_codec!(PolkaCertificate<MetisContext>, "polka certificate");
borsh_codec!(malachitebft_sync::Status<MetisContext>, "sync status");
borsh_codec!(malachitebft_sync::Request<MetisContext>, "sync request");

#[derive(BorshSerialize, BorshDeserialize)]
struct WireProof {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

impl Codec<ValidatorProof<MetisContext>> for WireCodec {
    type Error = CodecError;
    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<MetisContext>, CodecError> {
        let w: WireProof = decode("validator proof", &bytes)?;
        Ok(ValidatorProof::new(w.public_key, w.peer_id, w.signature))
    }
    fn encode(&self, p: &ValidatorProof<MetisContext>) -> Result<Bytes, CodecError> {
        encode(
            "validator proof",
            &WireProof {
                public_key: p.public_key.clone(),
                peer_id: p.peer_id.clone(),
                signature: p.signature.clone(),
            },
        )
    }
}

/// A commit certificate as stored and sent in sync (the core type has no borsh encoding of its own).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct WireCertificate {
    pub height: Height,
    pub round: Round,
    pub value_id: BlockHash,
    pub signatures: Vec<(Address, Signature, Option<SignedExtension<MetisContext>>)>,
}

impl From<&ExtendedCommitCertificate<MetisContext>> for WireCertificate {
    fn from(c: &ExtendedCommitCertificate<MetisContext>) -> Self {
        Self {
            height: c.height,
            round: c.round,
            value_id: c.value_id,
            signatures: c
                .commit_signatures
                .iter()
                .map(|s| (s.address, s.signature.clone(), s.extension.clone()))
                .collect(),
        }
    }
}

impl WireCertificate {
    /// The certificate with each signer's vote extension, where it sent one.
    pub fn with_extensions(
        c: &CommitCertificate<MetisContext>,
        extensions: &malachitebft_core_types::VoteExtensions<MetisContext>,
    ) -> Self {
        let mut w = Self::from(c);
        for (addr, _, ext) in w.signatures.iter_mut() {
            *ext = extensions
                .extensions
                .iter()
                .find(|(a, _)| a == addr)
                .map(|(_, e)| e.clone());
        }
        w
    }
}

impl From<&CommitCertificate<MetisContext>> for WireCertificate {
    fn from(c: &CommitCertificate<MetisContext>) -> Self {
        Self {
            height: c.height,
            round: c.round,
            value_id: c.value_id,
            signatures: c
                .commit_signatures
                .iter()
                .map(|s| (s.address, s.signature.clone(), None))
                .collect(),
        }
    }
}

impl From<WireCertificate> for ExtendedCommitCertificate<MetisContext> {
    fn from(w: WireCertificate) -> Self {
        ExtendedCommitCertificate {
            height: w.height,
            round: w.round,
            value_id: w.value_id,
            commit_signatures: w
                .signatures
                .into_iter()
                .map(|(a, s, e)| ExtendedCommitSignature::new(a, s, e))
                .collect(),
        }
    }
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireResponse {
    start_height: Height,
    values: Vec<(Vec<u8>, WireCertificate)>,
}

fn wire_response(r: &Response<MetisContext>) -> WireResponse {
    let Response::ValueResponse(v) = r;
    WireResponse {
        start_height: v.start_height,
        values: v
            .values
            .iter()
            .map(|d| (d.value_bytes.to_vec(), WireCertificate::from(&d.certificate)))
            .collect(),
    }
}

impl Codec<Response<MetisContext>> for WireCodec {
    type Error = CodecError;
    fn decode(&self, bytes: Bytes) -> Result<Response<MetisContext>, CodecError> {
        let w: WireResponse = decode("sync response", &bytes)?;
        Ok(Response::ValueResponse(ValueResponse::new(
            w.start_height,
            w.values
                .into_iter()
                .map(|(b, c)| RawDecidedValue::new(Bytes::from(b), c.into()))
                .collect(),
        )))
    }
    fn encode(&self, r: &Response<MetisContext>) -> Result<Bytes, CodecError> {
        encode("sync response", &wire_response(r))
    }
}

impl HasEncodedLen<Response<MetisContext>> for WireCodec {
    fn encoded_len(&self, r: &Response<MetisContext>) -> Result<usize, CodecError> {
        borsh::object_length(&wire_response(r)).map_err(|source| CodecError {
            what: "sync response",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PartInit, Vote};
    use malachitebft_core_types::{NilOrVal, SignedMessage, VoteType};

    #[test]
    fn roundtrips_and_rejects_trailing_bytes() {
        let part = ProposalPart::Init(PartInit {
            height: Height(7),
            round: Round::new(1),
            pol_round: Round::Nil,
            proposer: Address([3; 32]),
            value: BlockHash([4; 32]),
            total_len: 99,
        });
        let b = Codec::<ProposalPart>::encode(&WireCodec, &part).unwrap();
        assert_eq!(Codec::<ProposalPart>::decode(&WireCodec, b.clone()).unwrap(), part);
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(Codec::<ProposalPart>::decode(&WireCodec, longer.into()).is_err());

        let vote = SignedMessage::new(
            Vote {
                vote_type: VoteType::Precommit,
                height: Height(3),
                round: Round::new(0),
                value: NilOrVal::Val(BlockHash([9; 32])),
                validator: Address([1; 32]),
                extension: None,
            },
            Signature([5; 64]),
        );
        let msg = SignedConsensusMsg::Vote(vote);
        let b = Codec::<SignedConsensusMsg<MetisContext>>::encode(&WireCodec, &msg).unwrap();
        assert_eq!(
            Codec::<SignedConsensusMsg<MetisContext>>::decode(&WireCodec, b).unwrap(),
            msg
        );
        assert!(Codec::<SignedConsensusMsg<MetisContext>>::decode(&WireCodec, Bytes::from_static(&[7, 1, 2])).is_err());
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // A Data part claiming 4 GiB with 3 bytes behind it.
        let bytes = Bytes::from_static(&[1, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(Codec::<ProposalPart>::decode(&WireCodec, bytes).is_err());
    }
}
