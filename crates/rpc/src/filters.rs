//! Polling filters (eth_newFilter, eth_newBlockFilter, eth_newPendingTransactionFilter): each remembers where
//! its last poll ended; idle ones expire.

use alloy_primitives::U256;
use alloy_rpc_types_eth::Filter;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const FILTER_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_FILTERS: usize = 10_000;

#[derive(Clone, Debug)]
pub enum FilterKind {
    /// Logs; `next_block` is the first block the next poll reads.
    Logs {
        filter: Box<Filter>,
        next_block: u64,
    },
    Blocks {
        next_block: u64,
    },
    PendingTxs {
        last_seq: u64,
    },
}

#[derive(Default)]
pub struct Filters {
    active: HashMap<U256, (FilterKind, Instant)>,
}

impl Filters {
    pub fn install(&mut self, kind: FilterKind) -> Option<U256> {
        self.expire();
        if self.active.len() >= MAX_FILTERS {
            return None;
        }
        // 128 random bits: one client cannot guess (and read or remove) another's filter.
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).ok()?;
        let id = U256::from(u128::from_be_bytes(seed));
        if self.active.contains_key(&id) {
            return None;
        }
        self.active.insert(id, (kind, Instant::now()));
        Some(id)
    }

    pub fn get_mut(&mut self, id: &U256) -> Option<&mut FilterKind> {
        self.expire();
        let (kind, touched) = self.active.get_mut(id)?;
        *touched = Instant::now();
        Some(kind)
    }

    pub fn uninstall(&mut self, id: &U256) -> bool {
        self.active.remove(id).is_some()
    }

    fn expire(&mut self) {
        let now = Instant::now();
        self.active.retain(|_, (_, t)| now.duration_since(*t) < FILTER_TIMEOUT);
    }
}
