//! The pool's threshold key inside a node (its DKG and reshare rounds are `metis_keyrounds`): the
//! signer ([`signer`]) and the batch headers it signs, derived from the node's own chain ([`batches`]). It follows the chain's commits (`metis_chain::Committed`): nothing can be
//! requested from the network or the RPC.

pub mod batches;
pub mod signer;

pub use signer::{
    batch_request, rewards_request, spawn, SharedSignerStatus, SignatureRecord, SignerConfig, SignerStatus,
};
