//! The pool's threshold key inside a node (its DKG and reshare rounds are `metis_keyrounds`): the signer and
//! the batch headers it signs, derived from the node's own chain ([`batches`]). It follows the chain's commits
//! (`metis_chain::Committed`): nothing can be requested from the network or the RPC.
//!
//! The signer is a task ([`task::spawn`]) with a mailbox ([`mailbox`]: commits, peers' messages, a repeat
//! timer) and a state ([`state`]) that acts on one input at a time.

pub mod batches;
pub mod mailbox;
mod state;
pub mod task;

pub use state::{
    batch_request, rewards_request, slash_request, SharedSignerStatus, SignatureRecord, SignerConfig, SignerStatus,
    SigningKey,
};
pub use task::{spawn, Resume};
