//! The sequencer pool's Tendermint layer: a Malachite (arc-malachitebft 0.8.2) application in which the
//! sequencers decide one L2 block per height. The proposer schedule comes from the PoS ledger (round 0: the
//! epoch's elected sequencer; later rounds: fallbacks by stake), so a dead producer costs one propose timeout.

pub mod app;
pub mod batches;
pub mod block;
pub mod codec;
pub mod gossip;
pub mod history;
pub mod keys;
pub mod node;
pub mod pacing;
pub mod pool_signer;
pub mod posapi;
pub mod poster;
pub mod proposals;
pub mod sighub;
pub mod signing;
pub mod types;

pub use app::{validator_set, App, AppError, Fault, Timing};
pub use block::BlockData;
pub use codec::WireCodec;
pub use signing::{ConsensusSigner, ConsensusVerifier};
pub use types::{Address, BlockHash, Height, MetisContext, ValidatorSet};
