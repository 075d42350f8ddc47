//! The sequencer pool's Tendermint layer: a Malachite (arc-malachitebft 0.8.2) application in which the
//! sequencers decide one L2 block per height. The proposer schedule comes from the PoS ledger (round 0: the
//! epoch's elected sequencer; later rounds: fallbacks by stake), so a dead producer costs one propose timeout.
//! A decided block goes to the chain's commit path (`metis_chain`), which tells the signer and the poster.
//! The types that travel (context, votes, blocks, certificates) are `metis_wire`'s.

pub mod app;
#[cfg(feature = "test-faults")]
pub mod faults;
pub mod guard;
pub mod pacing;
pub mod proposals;

pub use app::{validator_set, App, AppError, Timing};
