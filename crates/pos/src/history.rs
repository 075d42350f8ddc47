//! Records the ledger hands over to the node's store once they are old: ended epochs (with their production
//! counts), validator set changes and applied L1 events. The ledger keeps the recent ones and a count of those
//! handed over, so what a node writes with every block stays bounded however long the chain runs. Nothing here
//! is in the state hash beyond what the accumulators already commit to, so nodes may hand records over at
//! different times and still agree.

use crate::l1_events::AppliedL1;
use crate::types::{Epoch, SequencerId, SetChange};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many records of each kind have left the ledger (their positions in the full history start at 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Archived {
    pub epochs: u64,
    pub set_changes: u64,
    pub applied_l1: u64,
}

/// An ended epoch with the blocks each sequencer produced in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ArchivedEpoch {
    pub epoch: Epoch,
    pub produced: BTreeMap<SequencerId, u64>,
}

/// Records taken out of the ledger by one [`crate::Ledger::take_history`] call, each with its position in
/// the full history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub epochs: Vec<ArchivedEpoch>,
    pub set_changes: Vec<(u64, SetChange)>,
    pub applied_l1: Vec<(u64, AppliedL1)>,
}

impl History {
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty() && self.set_changes.is_empty() && self.applied_l1.is_empty()
    }
}
