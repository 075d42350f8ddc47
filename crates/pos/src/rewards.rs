//! Reward reports: every `reward_epochs` ended epochs, the blocks each sequencer produced in them, as
//! LockingPool.batchSubmitRewards takes them (report ids from 1, contiguous epoch ranges from epoch 0, sequencer
//! ids strictly increasing). Made from decided data only, so every node reports the same thing and the pool's
//! threshold key signs it.

use crate::types::SequencerId;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct RewardReport {
    pub batch_id: u64,
    pub start_epoch: u64,
    pub end_epoch: u64,
    /// (sequencer id, blocks produced in the range), ids increasing, no zero counts.
    pub blocks: Vec<(SequencerId, u64)>,
    /// The block whose decision ended the range's last epoch.
    pub height: u64,
}

/// Reports made so far: the next one's id and first epoch, and the last one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct RewardState {
    pub next_epoch: u64,
    pub last: Option<RewardReport>,
}

impl RewardState {
    /// Called when epoch `ended` has ended at `height`: makes the report if `every` epochs are done since the
    /// last one. `produced(epoch)` gives the blocks per sequencer in an epoch; `paid(id)` says whether a
    /// sequencer may still be credited (one that left is skipped, as LockingPool would).
    pub fn on_epoch_end(
        &mut self,
        ended: u64,
        height: u64,
        every: u64,
        produced: impl Fn(u64) -> BTreeMap<SequencerId, u64>,
        paid: impl Fn(SequencerId) -> bool,
    ) -> Option<&RewardReport> {
        if every == 0 || ended + 1 < self.next_epoch + every {
            return None;
        }
        let mut total: BTreeMap<SequencerId, u64> = BTreeMap::new();
        for e in self.next_epoch..=ended {
            for (id, n) in produced(e) {
                *total.entry(id).or_default() += n;
            }
        }
        let report = RewardReport {
            batch_id: self.last.as_ref().map_or(1, |r| r.batch_id + 1),
            start_epoch: self.next_epoch,
            end_epoch: ended,
            blocks: total.into_iter().filter(|(id, n)| *n > 0 && paid(*id)).collect(),
            height,
        };
        self.next_epoch = ended + 1;
        self.last = Some(report);
        self.last.as_ref()
    }

    /// The report made by block `height`, if that block made one.
    pub fn report_at(&self, height: u64) -> Option<&RewardReport> {
        self.last.as_ref().filter(|r| r.height == height)
    }

    pub(crate) fn hash_input(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.next_epoch.to_be_bytes());
        if let Some(r) = &self.last {
            for v in [r.batch_id, r.start_epoch, r.end_epoch, r.height, r.blocks.len() as u64] {
                buf.extend_from_slice(&v.to_be_bytes());
            }
            for (id, n) in &r.blocks {
                buf.extend_from_slice(&id.to_be_bytes());
                buf.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_contiguous_and_count_every_block_once() {
        let produced = |e: u64| -> BTreeMap<SequencerId, u64> { [(1, e + 1), (2, 2), (3, 0)].into() };
        let mut s = RewardState::default();
        assert!(s.on_epoch_end(0, 10, 2, produced, |_| true).is_none());
        let r = s.on_epoch_end(1, 20, 2, produced, |_| true).cloned().unwrap();
        // Epochs 0 and 1: sequencer 1 made 1 + 2, sequencer 2 made 2 + 2; sequencer 3 none (left out).
        assert_eq!((r.batch_id, r.start_epoch, r.end_epoch), (1, 0, 1));
        assert_eq!(r.blocks, vec![(1, 3), (2, 4)]);
        assert_eq!(s.report_at(20), Some(&r));
        assert_eq!(s.report_at(21), None);
        assert!(s.on_epoch_end(2, 30, 2, produced, |_| true).is_none());
        // A sequencer that left is not credited.
        let r2 = s.on_epoch_end(3, 40, 2, produced, |id| id != 2).cloned().unwrap();
        assert_eq!((r2.batch_id, r2.start_epoch, r2.end_epoch), (2, 2, 3));
        assert_eq!(r2.blocks, vec![(1, 3 + 4)]);
        // Off: nothing.
        let mut off = RewardState::default();
        assert!(off.on_epoch_end(5, 60, 0, produced, |_| true).is_none());
    }
}
