//! Encoded transactions this node admitted from its users, numbered from 1.

use alloy_primitives::Bytes;
use std::collections::VecDeque;

/// Encoded transactions this node's RPC admitted, numbered from 1. Gossip reads it with a cursor per peer; a
/// peer whose cursor fell off the front is sent the whole mempool instead, so nothing is lost to a slow link.
#[derive(Default)]
pub struct LocalLog {
    next_seq: u64,
    entries: VecDeque<(u64, Bytes)>,
    /// Bytes of the entries kept.
    bytes: usize,
}

/// Entries the log keeps, and their bytes (beyond either, a reader that fell behind gets the whole mempool
/// instead): 200,000 transfers, or 512 transactions of the largest size.
pub const LOCAL_LOG_CAP: usize = 200_000;
pub const LOCAL_LOG_MAX_BYTES: usize = 64 * 1024 * 1024;

impl LocalLog {
    /// Appends `raw`, then drops the oldest entries until at most `cap` entries and `max_bytes` remain (the
    /// newest entry always stays).
    pub fn push(&mut self, raw: Bytes, cap: usize, max_bytes: usize) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.bytes = self.bytes.saturating_add(raw.len());
        self.entries.push_back((seq, raw));
        while self.entries.len() > 1 && (self.entries.len() > cap || self.bytes > max_bytes) {
            if let Some((_, old)) = self.entries.pop_front() {
                self.bytes = self.bytes.saturating_sub(old.len());
            }
        }
    }

    /// Bytes of the entries kept.
    pub fn bytes(&self) -> usize {
        self.bytes
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
            log.push(Bytes::from(vec![i]), 3, usize::MAX);
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

    #[test]
    fn the_byte_cap_drops_the_oldest_first() {
        let mut log = LocalLog::default();
        for i in 0..10u8 {
            log.push(Bytes::from(vec![i; 100]), usize::MAX, 350);
        }
        assert_eq!(log.bytes(), 300, "three entries of 100 bytes fit in 350");
        let r = log.since(7, 10);
        assert_eq!(r.txs.len(), 3);
        assert!(log.since(6, 10).gap, "entry 7 is gone");
        // One entry larger than the cap is still kept, alone.
        log.push(Bytes::from(vec![0; 1000]), usize::MAX, 350);
        assert_eq!(log.bytes(), 1000);
    }
}
