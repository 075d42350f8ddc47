//! Where batches are cut: every `batch_blocks` blocks, or once `batch_interval_secs` of block time have passed
//! since the batch's first block if it carries at least one transaction, whichever comes first. Only decided
//! block data (height, timestamp, tx count) goes in, so every node cuts at the same heights; the node derives
//! each cut batch's header from its own chain and the threshold key signs it.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A batch the ledger has fixed: consecutive blocks `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct BatchCut {
    pub index: u64,
    pub first: u64,
    pub last: u64,
}

/// The batch being filled and the last one cut.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct BatchState {
    /// Index the next cut gets.
    pub next_index: u64,
    /// First block of the batch being filled (0 until the first block after genesis).
    pub open_first: u64,
    /// Timestamp of that block.
    pub open_since: u64,
    /// Transactions in it so far.
    pub open_txs: u64,
    /// The last batch cut, and the height whose block cut it.
    pub last_cut: Option<BatchCut>,
}

impl BatchState {
    /// Takes one decided block (in height order); returns the batch it cuts, if any.
    pub fn on_block(
        &mut self,
        height: u64,
        timestamp: u64,
        txs: u64,
        batch_blocks: u64,
        interval_secs: u64,
    ) -> Option<BatchCut> {
        if batch_blocks == 0 {
            return None;
        }
        if self.open_first == 0 {
            self.open_first = height;
            self.open_since = timestamp;
        }
        self.open_txs += txs;
        let full = height + 1 - self.open_first >= batch_blocks;
        let timed =
            interval_secs > 0 && self.open_txs > 0 && timestamp.saturating_sub(self.open_since) >= interval_secs;
        if !full && !timed {
            return None;
        }
        let cut = BatchCut {
            index: self.next_index,
            first: self.open_first,
            last: height,
        };
        self.next_index += 1;
        self.open_first = 0;
        self.open_since = 0;
        self.open_txs = 0;
        self.last_cut = Some(cut);
        Some(cut)
    }

    /// The cut made by block `height`, if that block cut one.
    pub fn cut_at(&self, height: u64) -> Option<BatchCut> {
        self.last_cut.filter(|c| c.last == height)
    }

    pub(crate) fn hash_input(&self, buf: &mut Vec<u8>) {
        for v in [self.next_index, self.open_first, self.open_since, self.open_txs] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        if let Some(c) = self.last_cut {
            for v in [c.index, c.first, c.last] {
                buf.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_count_or_by_time_with_txs() {
        let mut s = BatchState::default();
        // Empty blocks, one second apart: only the count cuts (blocks 1..=4, 5..=8).
        let mut cuts = Vec::new();
        for h in 1..=8u64 {
            cuts.extend(s.on_block(h, 100 + h, 0, 4, 2));
        }
        assert_eq!(
            cuts,
            vec![
                BatchCut {
                    index: 0,
                    first: 1,
                    last: 4
                },
                BatchCut {
                    index: 1,
                    first: 5,
                    last: 8
                }
            ]
        );
        // A transaction in block 9: the interval (2 s) cuts at block 11.
        assert_eq!(s.on_block(9, 109, 3, 4, 2), None);
        assert_eq!(s.on_block(10, 110, 0, 4, 2), None);
        assert_eq!(
            s.on_block(11, 111, 0, 4, 2),
            Some(BatchCut {
                index: 2,
                first: 9,
                last: 11
            })
        );
        assert_eq!(s.cut_at(11).map(|c| c.index), Some(2));
        assert_eq!(s.cut_at(10), None);
        // Off: nothing is ever cut.
        let mut off = BatchState::default();
        assert!((1..100).all(|h| off.on_block(h, h, 1, 0, 1).is_none()));
    }
}
