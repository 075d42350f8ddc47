//! The PoS ledger: a pure, deterministic state machine (no I/O, no clocks, no randomness of its own).
//!
//! Its only input is decided blocks ([`BlockInfo`]): the same decided blocks give the same ledger on every node,
//! byte for byte, and [`Ledger::state_hash`] commits to all of it so divergence is caught in the next header.
//!
//! - The sequencer set and the validator set (active sequencers, voting power from stake up to a cap).
//! - Epochs of `epoch_length` blocks; each has one elected producer, drawn by stake from a seed the consensus
//!   layer derives from decided data (see docs/architecture.md for the argument).
//! - Proposer schedule: round 0 = the epoch's producer; round r > 0 = a deterministic fallback order by stake.
//! - Missed proposals: a height decided in a round > 0 counts a miss against the producer; after
//!   `missed_limit` misses in an epoch the epoch ends early and a re-election excludes the failed sequencer,
//!   which is also kept out of elections for `jail_epochs` epochs. An idle chain is not a failure: empty blocks
//!   proposed in round 0 are blocks produced.
//! - Blocks produced per sequencer per epoch, for rewards.
//! - L1 staking events ([`PosTx`]), applied once each in L1 order; set changes take effect at the next epoch
//!   boundary and are reported as [`SetChange`] (the trigger for resharing the threshold key).
//! - The threshold key's life-cycle ([`KeyState`]): a DKG round when there is no key, a reshare round when the
//!   validators are not the key's members; the outcome (computed outside from the same decided messages) is
//!   taken with the round's last block; the old sharing signs until the new one is in.
//! - Reward reports ([`RewardState`]): blocks produced per sequencer over a range of epochs, for L1.
//! - Batch cuts ([`BatchState`]): which blocks form the next batch for L1, whose header the threshold key signs.
//! - Governed parameters ([`GovState`]): changes PosParams on L1 made (by the governor's timelock) apply at the
//!   next epoch boundary, each recorded with the value it replaced, or why it was refused.
//! - Accountability ([`OffenceState`]): proven equivocation jails at once and asks L1 for a slash; downtime
//!   (a signed-blocks window over the commits blocks carry) jails without a slash.

mod batch_cuts;
mod downtime;
mod election;
mod governance;
mod history;
mod key_state;
mod l1_events;
mod ledger;
mod offences;
mod rewards;
mod types;

pub use batch_cuts::{BatchCut, BatchState};
pub use downtime::{per_proposer_cap, DowntimeWindow};
pub use election::{elect, fallback_order, weight_of};
pub use governance::{GovParam, GovState, ParamChange, PendingChange};
pub use history::{Archived, ArchivedEpoch, History};
pub use key_state::{
    KeyEpoch, KeyError, KeyOutcome, KeyRecord, KeyRound, KeyRoundKind, KeyState, DEFAULT_PHASE_BLOCKS,
};
pub use l1_events::{AppliedL1, L1Event, L1Position, L1Source, NoL1, PosTx};
pub use ledger::{Ledger, LedgerError};
pub use offences::{Inadmissible, Jail, JailReason, Misbehaviour, Offence, OffenceKind, OffenceState, SlashRequest};
pub use rewards::{RewardReport, RewardState};
pub use types::{BlockInfo, ElectionReason, Epoch, Params, Sequencer, SequencerId, SequencerStatus, SetChange};
