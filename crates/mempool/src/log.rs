//! Encoded transactions this node admitted from its users, numbered from 1.

use alloy_primitives::Bytes;
use std::collections::VecDeque;

/// Encoded transactions this node's RPC admitted, numbered from 1. Gossip reads it with a cursor per peer; a
/// peer whose cursor fell off the front is sent the whole mempool instead, so nothing is lost to a slow link.
#[derive(Default)]
pub struct LocalLog {
    next_seq: u64,
    entries: VecDeque<(u64, Bytes)>,
}

/// Entries the log keeps (beyond, a reader that fell behind gets the whole mempool instead).
pub const LOCAL_LOG_CAP: usize = 200_000;

impl LocalLog {
    pub fn push(&mut self, raw: Bytes, cap: usize) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.entries.push_back((seq, raw));
        if self.entries.len() > cap {
            self.entries.pop_front();
        }
    }

    pub fn since(&self, cursor: u64, max: usize) -> LocalTxs {
        let first = self.entries.front().map(|(s, _)| *s).unwrap_or(self.next_seq + 1);
        if cursor + 1 < first && cursor < self.next_seq {
            return LocalTxs {
                txs: Vec::new(),
                cursor: self.next_seq,
                gap: true,
            };
        }
        let start = (cursor + 1).saturating_sub(first) as usize;
        let txs: Vec<Bytes> = self
            .entries
            .iter()
            .skip(start)
            .take(max)
            .map(|(_, b)| b.clone())
            .collect();
        let cursor = cursor.max(first.saturating_sub(1)) + txs.len() as u64;
        LocalTxs {
            txs,
            cursor,
            gap: false,
        }
    }
}

/// What a gossip reader gets from [`LocalLog::since`].
pub struct LocalTxs {
    pub txs: Vec<Bytes>,
    /// The cursor to ask from next time.
    pub cursor: u64,
    /// Entries after the old cursor were already evicted: send the whole mempool.
    pub gap: bool,
}

impl LocalLog {
    /// The sequence number of the newest entry (a reader starting now passes it as its cursor).
    pub fn head(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_log_cursor_batches_and_gap() {
        let mut log = LocalLog::default();
        let r = log.since(0, 10);
        assert!(r.txs.is_empty() && !r.gap && r.cursor == 0);
        for i in 0..5u8 {
            log.push(Bytes::from(vec![i]), 3);
        }
        // Entries 3, 4, 5 are kept; a reader at 0 missed 1 and 2.
        let r = log.since(0, 10);
        assert!(r.gap);
        assert_eq!(r.cursor, 5);
        let r = log.since(2, 2);
        assert!(!r.gap);
        assert_eq!(r.txs, vec![Bytes::from(vec![2u8]), Bytes::from(vec![3u8])]);
        assert_eq!(r.cursor, 4);
        let r = log.since(r.cursor, 10);
        assert_eq!(r.txs, vec![Bytes::from(vec![4u8])]);
        assert_eq!(r.cursor, 5);
        assert!(log.since(5, 10).txs.is_empty());
    }
}
