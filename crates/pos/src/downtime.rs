//! Downtime: which validators the commits of the last `window` heights left out, and who proposed the blocks that
//! carried those commits.
//!
//! A block carries its parent's commit as its proposer collected it, so a proposer chooses whose precommits are
//! in it (as in CometBFT). In this pool one producer makes a whole epoch's blocks; counted plainly, a producer
//! could leave an honest validator out of every commit and jail it. So the misses any one proposer's blocks
//! report count at most `cap` (a little over half the limit): a validator is jailed only when the blocks of at
//! least two proposers left it out, which a single Byzantine producer cannot arrange.

use crate::types::SequencerId;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The last `window` heights (slot `height % window`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct DowntimeWindow {
    window: u64,
    /// Per slot: the proposer of the block whose carried commit was counted there (none: nothing counted).
    proposers: Vec<Option<SequencerId>>,
    /// Per validator: a bit per slot, set when that commit left it out.
    missed: BTreeMap<SequencerId, Vec<u8>>,
}

/// The misses one proposer's blocks may add to a validator's count: a little over half of `max_missed`, so that
/// one proposer alone never crosses the limit and any two can.
pub fn per_proposer_cap(max_missed: u64) -> u64 {
    max_missed / 2 + 1
}

impl DowntimeWindow {
    fn slot(&self, height: u64) -> usize {
        usize::try_from(height % self.window.max(1)).unwrap_or(0)
    }

    fn bit(bits: &[u8], slot: usize) -> bool {
        bits.get(slot / 8).is_some_and(|b| b & (1 << (slot % 8)) != 0)
    }

    /// Commits of the window that left `id` out.
    pub fn missed(&self, id: SequencerId) -> u32 {
        self.missed
            .get(&id)
            .map_or(0, |bits| bits.iter().map(|b| b.count_ones()).sum())
    }

    /// The misses that count against `id`: per proposer at most `cap`.
    pub fn counted(&self, id: SequencerId, cap: u64) -> u64 {
        let Some(bits) = self.missed.get(&id) else {
            return 0;
        };
        let mut by: BTreeMap<SequencerId, u64> = BTreeMap::new();
        for (slot, p) in self.proposers.iter().enumerate() {
            if let (Some(p), true) = (p, Self::bit(bits, slot)) {
                *by.entry(*p).or_default() += 1;
            }
        }
        by.values().map(|n| (*n).min(cap)).sum()
    }

    /// Counts the commit block `height` (by `proposer`) carried: `set` are the validators that signed the parent,
    /// `signers` those its commit holds; `None` counts nothing at this height (the slot is cleared). A new window
    /// size starts afresh.
    pub fn record(
        &mut self,
        window: u64,
        height: u64,
        proposer: SequencerId,
        set: &[SequencerId],
        signers: Option<&[SequencerId]>,
    ) {
        let len = usize::try_from(window).unwrap_or(usize::MAX);
        if self.window != window || self.proposers.len() != len {
            *self = Self {
                window,
                proposers: vec![None; len],
                missed: BTreeMap::new(),
            };
        }
        let slot = self.slot(height);
        let bytes = len.div_ceil(8);
        self.missed.retain(|id, _| set.contains(id));
        for bits in self.missed.values_mut() {
            if let Some(b) = bits.get_mut(slot / 8) {
                *b &= !(1 << (slot % 8));
            }
        }
        let Some(signers) = signers else {
            if let Some(p) = self.proposers.get_mut(slot) {
                *p = None;
            }
            return;
        };
        if let Some(p) = self.proposers.get_mut(slot) {
            *p = Some(proposer);
        }
        for id in set.iter().filter(|id| !signers.contains(id)) {
            let bits = self.missed.entry(*id).or_insert_with(|| vec![0; bytes]);
            if let Some(b) = bits.get_mut(slot / 8) {
                *b |= 1 << (slot % 8);
            }
        }
        self.missed.retain(|_, bits| bits.iter().any(|b| *b != 0));
    }

    /// Forgets `id`'s misses (a validator released from jail starts clean).
    pub fn clear(&mut self, id: SequencerId) {
        self.missed.remove(&id);
    }

    pub(crate) fn hash_input(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.window.to_be_bytes());
        for p in &self.proposers {
            match p {
                None => buf.push(0),
                Some(id) => {
                    buf.push(1);
                    buf.extend_from_slice(&id.to_be_bytes());
                }
            }
        }
        buf.extend_from_slice(&(self.missed.len() as u64).to_be_bytes());
        for (id, bits) in &self.missed {
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(bits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: [SequencerId; 4] = [1, 2, 3, 4];

    #[test]
    fn the_window_counts_only_the_last_commits() {
        let mut w = DowntimeWindow::default();
        for h in 0..10 {
            w.record(10, h, 1, &SET, Some(&[1, 2, 3]));
        }
        assert_eq!(w.missed(4), 10);
        // Signing again pushes the misses out of the window one by one.
        for i in 1..=10 {
            w.record(10, 9 + i, 1, &SET, Some(&SET));
            assert_eq!(w.missed(4), 10 - i as u32);
        }
        w.record(10, 20, 1, &SET, Some(&[1]));
        assert_eq!((w.missed(2), w.missed(4)), (1, 1));
        // A height not counted clears its slot; a new window size counts afresh.
        w.record(10, 30, 1, &SET, None);
        assert_eq!(w.missed(2), 0);
        w.record(10, 31, 1, &SET, Some(&[1]));
        w.record(20, 32, 1, &SET, Some(&SET));
        assert_eq!(w.missed(2), 0);
    }

    #[test]
    fn one_proposer_alone_never_counts_past_the_cap() {
        let mut w = DowntimeWindow::default();
        let cap = per_proposer_cap(6);
        assert_eq!(cap, 4);
        // Proposer 1 leaves 4 out of all ten commits.
        for h in 0..10 {
            w.record(10, h, 1, &SET, Some(&[1, 2, 3]));
        }
        assert_eq!((w.missed(4), w.counted(4, cap)), (10, 4));
        // Proposer 2's blocks report it missing too: now two proposers agree and it counts.
        for h in 10..13 {
            w.record(10, h, 2, &SET, Some(&[1, 2, 3]));
        }
        assert_eq!((w.missed(4), w.counted(4, cap)), (10, 7));
    }

    #[test]
    fn a_validator_leaving_the_set_leaves_the_window() {
        let mut w = DowntimeWindow::default();
        w.record(10, 1, 1, &SET, Some(&[1, 2]));
        assert_eq!(w.missed(4), 1);
        w.record(10, 2, 1, &[1, 2, 3], Some(&[1, 2, 3]));
        assert_eq!(w.missed(4), 0);
        assert_eq!(w.missed(3), 1);
    }
}
