//! The mempool: per-sender nonce order, pending (executable now) and queued (behind a nonce gap),
//! replacement only with a >= 10% fee bump, a size limit that evicts the cheapest, and re-validation after
//! every block. Block building takes pending transactions best tip first, each sender in nonce order.

use alloy_primitives::{Address, B256};
use metis_execution::ChainSpec;
use metis_execution::{Account, WorldState};
use metis_execution::{RecoveredTx, TxError};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// Pool limits.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Transactions in the mempool at most.
    pub max_txs: usize,
    /// Encoded bytes of all its transactions at most (20,000 transactions of up to 128 KiB each would be 2.5 GiB).
    pub max_bytes: usize,
    /// Transactions of one sender at most (pending + queued).
    pub max_per_sender: usize,
    /// How far ahead of the account nonce a transaction may be.
    pub max_nonce_gap: u64,
    /// Percent a replacement must raise both the fee cap and the tip by.
    pub price_bump_percent: u128,
    /// Blocks a queued transaction (behind a nonce gap) may wait before it is dropped (geth: 3 hours).
    pub max_queued_blocks: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 20_000,
            max_bytes: 128 * 1024 * 1024,
            max_per_sender: 1_000,
            max_nonce_gap: 1_000,
            price_bump_percent: 10,
            max_queued_blocks: 10_800,
        }
    }
}

/// Why the mempool refuses a transaction (besides validation errors). Messages are geth's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("already known")]
    AlreadyKnown,
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    #[error("txpool is full")]
    Full,
    #[error("transaction underpriced")]
    Underpriced,
    #[error("nonce too high: too far ahead of the account nonce")]
    NonceGapTooLarge,
    #[error("account limit exceeded")]
    SenderLimit,
    #[error("this node is a read-only replica and takes no transactions")]
    ReadOnly,
    #[error(transparent)]
    Invalid(#[from] TxError),
}

/// What `add` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    /// Executable now (its nonce follows the account's and its predecessors).
    Pending,
    /// Waiting for a lower nonce.
    Queued,
}

#[derive(Default)]
pub struct Mempool {
    config: MempoolConfig,
    by_sender: HashMap<Address, BTreeMap<u64, RecoveredTx>>,
    by_hash: HashMap<B256, (Address, u64)>,
    /// Encoded bytes of the transactions held.
    bytes: usize,
    /// Blocks seen, and the count at each transaction's admission (how long a queued one has waited).
    blocks: u64,
    added: HashMap<B256, u64>,
    tails: Tails,
}

/// The last transaction of each sender's line (the only ones eviction takes, so no gap opens), ordered by tip
/// and by fee cap. A transaction's effective tip at base fee b is min(tip, fee cap - b), so the cheapest over all
/// tails is min(smallest tip, smallest fee cap - b): two lookups instead of a scan of every sender.
#[derive(Default)]
struct Tails {
    of: HashMap<Address, (u128, u128, B256)>,
    by_tip: BTreeSet<(u128, B256)>,
    by_fee: BTreeSet<(u128, B256)>,
}

impl Tails {
    /// Records `tail` as `sender`'s last transaction (none: the sender has nothing left).
    fn set(&mut self, sender: Address, tail: Option<&RecoveredTx>) {
        if let Some((tip, fee, hash)) = self.of.remove(&sender) {
            self.by_tip.remove(&(tip, hash));
            self.by_fee.remove(&(fee, hash));
        }
        if let Some(t) = tail {
            let (tip, fee) = (envelope_max_tip(t), t.max_fee_per_gas());
            self.of.insert(sender, (tip, fee, t.hash));
            self.by_tip.insert((tip, t.hash));
            self.by_fee.insert((fee, t.hash));
        }
    }

    /// The tail with the lowest effective tip at `base_fee`, and that tip.
    fn cheapest(&self, base_fee: u64) -> Option<(B256, u128)> {
        let by_tip = self.by_tip.first().map(|(tip, h)| (*h, *tip));
        let by_fee = self
            .by_fee
            .first()
            .map(|(fee, h)| (*h, fee.saturating_sub(u128::from(base_fee))));
        match (by_tip, by_fee) {
            (Some(a), Some(b)) => Some(if a.1 <= b.1 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

fn bumped(old: u128, percent: u128) -> u128 {
    old.saturating_mul(100 + percent).div_ceil(100)
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Encoded bytes of the transactions held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &B256) -> bool {
        self.by_hash.contains_key(hash)
    }

    pub fn get(&self, hash: &B256) -> Option<&RecoveredTx> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.by_sender.get(sender)?.get(nonce)
    }

    /// How many transactions can run now (pending: each sender's run of nonces from its account's) and how many
    /// wait behind a gap (queued).
    pub fn status(&self, state: &WorldState) -> (usize, usize) {
        let mut pending = 0usize;
        for (sender, txs) in &self.by_sender {
            let mut n = state.account(sender).map_or(0, |a| a.nonce);
            while txs.contains_key(&n) {
                pending += 1;
                n = n.saturating_add(1);
            }
        }
        (pending, self.by_hash.len().saturating_sub(pending))
    }

    /// The nonce the sender's next transaction should carry, counting its pending ones ("pending" tag).
    pub fn next_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
        let mut n = account_nonce;
        if let Some(txs) = self.by_sender.get(sender) {
            while txs.contains_key(&n) {
                n += 1;
            }
        }
        n
    }

    /// Validates `tx` against the chain and the sender's account, then admits it.
    pub fn add(
        &mut self,
        tx: RecoveredTx,
        spec: &ChainSpec,
        account: Option<&Account>,
        base_fee: u64,
    ) -> Result<Added, MempoolError> {
        if self.by_hash.contains_key(&tx.hash) {
            return Err(MempoolError::AlreadyKnown);
        }
        tx.check_static(spec)?;
        tx.check_against(account, base_fee)?;
        let account_nonce = account.map_or(0, |a| a.nonce);
        if tx.nonce() > account_nonce.saturating_add(self.config.max_nonce_gap) {
            return Err(MempoolError::NonceGapTooLarge);
        }
        let sender = tx.sender;
        let nonce = tx.nonce();
        let existing = self.by_sender.get(&sender).and_then(|m| m.get(&nonce)).cloned();
        if let Some(old) = &existing {
            let p = self.config.price_bump_percent;
            let old_tip = envelope_max_tip(old);
            if tx.max_fee_per_gas() < bumped(old.max_fee_per_gas(), p) || envelope_max_tip(&tx) < bumped(old_tip, p) {
                return Err(MempoolError::ReplacementUnderpriced);
            }
        } else {
            let count = self.by_sender.get(&sender).map_or(0, BTreeMap::len);
            if count >= self.config.max_per_sender {
                return Err(MempoolError::SenderLimit);
            }
            if self.by_hash.len() >= self.config.max_txs {
                self.evict_cheapest_below(tx.effective_tip(base_fee), base_fee)?;
            }
        }
        // The byte budget: cheaper transactions make room, or this one is refused.
        loop {
            // The transaction this one replaces frees its bytes (unless it was evicted meanwhile).
            let freed = existing
                .as_ref()
                .filter(|o| self.by_hash.contains_key(&o.hash))
                .map_or(0, |o| o.encoded_len);
            if self.bytes.saturating_sub(freed).saturating_add(tx.encoded_len) <= self.config.max_bytes {
                break;
            }
            self.evict_cheapest_below(tx.effective_tip(base_fee), base_fee)?;
        }
        if let Some(old) = existing {
            self.remove(&old.hash);
        }
        self.bytes = self.bytes.saturating_add(tx.encoded_len);
        self.added.insert(tx.hash, self.blocks);
        self.by_hash.insert(tx.hash, (sender, nonce));
        let line = self.by_sender.entry(sender).or_default();
        line.insert(nonce, tx);
        self.tails.set(sender, line.values().next_back());
        Ok(if self.next_nonce(&sender, account_nonce) > nonce {
            Added::Pending
        } else {
            Added::Queued
        })
    }

    /// Makes room by dropping the cheapest transaction that is last in its sender's line (so no gap opens),
    /// if it pays less than `tip`.
    fn evict_cheapest_below(&mut self, tip: u128, base_fee: u64) -> Result<(), MempoolError> {
        match self.tails.cheapest(base_fee) {
            Some((hash, victim_tip)) if victim_tip < tip => {
                self.remove(&hash);
                Ok(())
            }
            _ => Err(MempoolError::Full),
        }
    }

    pub fn remove(&mut self, hash: &B256) -> Option<RecoveredTx> {
        let (sender, nonce) = self.by_hash.remove(hash)?;
        self.added.remove(hash);
        let txs = self.by_sender.get_mut(&sender)?;
        let tx = txs.remove(&nonce);
        self.tails.set(sender, txs.values().next_back());
        if txs.is_empty() {
            self.by_sender.remove(&sender);
        }
        if let Some(t) = &tx {
            self.bytes = self.bytes.saturating_sub(t.encoded_len);
        }
        tx
    }

    /// Executable transactions for the next block: best tip first across senders, each sender in nonce order
    /// from its account nonce, skipping senders whose next transaction cannot pay `base_fee`; the longest such
    /// prefix within `max_bytes` of encoded transactions (only those are copied out).
    pub fn best(&self, state: &WorldState, base_fee: u64, max_bytes: usize) -> Vec<RecoveredTx> {
        // Per sender: its run of consecutive nonces from the account nonce.
        let mut lanes: Vec<Vec<&RecoveredTx>> = Vec::with_capacity(self.by_sender.len());
        for (sender, txs) in &self.by_sender {
            let mut n = state.account(sender).map_or(0, |a| a.nonce);
            let mut lane = Vec::new();
            while let Some(tx) = txs.get(&n) {
                if tx.max_fee_per_gas() < u128::from(base_fee) {
                    break;
                }
                lane.push(tx);
                n += 1;
            }
            if !lane.is_empty() {
                lane.reverse(); // pop() from the end gives the lowest nonce
                lanes.push(lane);
            }
        }
        let mut heap: BinaryHeap<(u128, Reverse<B256>, usize)> = BinaryHeap::new();
        for (i, lane) in lanes.iter().enumerate() {
            if let Some(tx) = lane.last() {
                heap.push((tx.effective_tip(base_fee), Reverse(tx.hash), i));
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some((_, _, i)) = heap.pop() {
            if let Some(tx) = lanes[i].pop() {
                bytes = bytes.saturating_add(tx.encoded_len);
                // A prefix keeps every sender's nonce order; the next block starts where this one stops.
                if bytes > max_bytes {
                    break;
                }
                out.push(tx.clone());
            }
            if let Some(next) = lanes[i].last() {
                heap.push((next.effective_tip(base_fee), Reverse(next.hash), i));
            }
        }
        out
    }

    /// After a block: drops included and stale transactions (nonce below the account's), those the sender can
    /// no longer pay for, and queued ones that waited `max_queued_blocks`; returns the hashes dropped.
    pub fn on_block(&mut self, state: &WorldState, included: &[B256]) -> Vec<B256> {
        self.blocks = self.blocks.saturating_add(1);
        let mut dropped = Vec::new();
        for h in included {
            if self.remove(h).is_some() {
                dropped.push(*h);
            }
        }
        let mut stale = Vec::new();
        for (sender, txs) in &self.by_sender {
            let account = state.account(sender);
            let nonce = account.map_or(0, |a| a.nonce);
            let balance = account.map(|a| a.balance).unwrap_or_default();
            // Pending: the run of consecutive nonces from the account's; the rest is queued.
            let mut next = nonce;
            for tx in txs.values() {
                let queued = tx.nonce() != next;
                if !queued {
                    next = next.saturating_add(1);
                }
                let waited = self
                    .blocks
                    .saturating_sub(self.added.get(&tx.hash).copied().unwrap_or(self.blocks));
                if tx.nonce() < nonce
                    || tx.max_cost().is_none_or(|c| c > balance)
                    || (queued && waited >= self.config.max_queued_blocks)
                {
                    stale.push(tx.hash);
                }
            }
        }
        for h in stale {
            self.remove(&h);
            dropped.push(h);
        }
        dropped
    }

    /// The gas the pool's transactions ask for, counted up to `cap` (a block's limit): how big the next block
    /// will likely be. Queued ones count too, so this errs high.
    pub fn gas_up_to(&self, cap: u64) -> u64 {
        let mut gas = 0u64;
        for tx in self.all() {
            gas = gas.saturating_add(tx.gas_limit());
            if gas >= cap {
                return cap;
            }
        }
        gas
    }

    /// All transactions, pending and queued (for txpool-style inspection).
    pub fn all(&self) -> impl Iterator<Item = &RecoveredTx> {
        self.by_sender.values().flat_map(|m| m.values())
    }
}

fn envelope_max_tip(tx: &RecoveredTx) -> u128 {
    alloy_consensus::Transaction::max_priority_fee_per_gas(&tx.envelope).unwrap_or(tx.max_fee_per_gas())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Bytes, TxKind, U256};
    use metis_execution::testutil::{eip1559, eip1559_priced, keys};

    const CHAIN: u64 = 9;

    fn setup(n: usize) -> (ChainSpec, WorldState, Vec<alloy_signer_local::PrivateKeySigner>) {
        let ks = keys(n);
        let addrs: Vec<_> = ks.iter().map(|k| k.address()).collect();
        let spec = ChainSpec::dev(CHAIN, &addrs, U256::from(10u128.pow(21)));
        let (state, _) = WorldState::genesis(&spec);
        (spec, state, ks)
    }

    fn send(k: &alloy_signer_local::PrivateKeySigner, nonce: u64) -> RecoveredTx {
        eip1559(
            k,
            CHAIN,
            nonce,
            TxKind::Call(Address::ZERO),
            U256::from(1),
            Bytes::new(),
            21_000,
        )
    }

    #[test]
    fn pending_queued_and_gap_filling() {
        let (spec, state, ks) = setup(1);
        let acct = state.account(&ks[0].address()).cloned();
        let mut mempool = Mempool::default();
        assert_eq!(
            mempool.add(send(&ks[0], 0), &spec, acct.as_ref(), 1),
            Ok(Added::Pending)
        );
        assert_eq!(mempool.add(send(&ks[0], 2), &spec, acct.as_ref(), 1), Ok(Added::Queued));
        assert_eq!(
            mempool.best(&state, 1, usize::MAX).len(),
            1,
            "nonce 2 waits behind the gap"
        );
        assert_eq!(mempool.next_nonce(&ks[0].address(), 0), 1);
        assert_eq!(
            mempool.add(send(&ks[0], 1), &spec, acct.as_ref(), 1),
            Ok(Added::Pending)
        );
        let best = mempool.best(&state, 1, usize::MAX);
        assert_eq!(best.iter().map(|t| t.nonce()).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(
            mempool.add(send(&ks[0], 1), &spec, acct.as_ref(), 1),
            Err(MempoolError::AlreadyKnown)
        );
    }

    #[test]
    fn replacement_needs_a_ten_percent_bump() {
        let (spec, state, ks) = setup(1);
        let acct = state.account(&ks[0].address()).cloned();
        let mut mempool = Mempool::default();
        let base = eip1559_priced(&ks[0], CHAIN, 0, 1_000_000_000, 100_000_000);
        mempool.add(base.clone(), &spec, acct.as_ref(), 1).unwrap();
        let small = eip1559_priced(&ks[0], CHAIN, 0, 1_050_000_000, 105_000_000);
        assert_eq!(
            mempool.add(small, &spec, acct.as_ref(), 1),
            Err(MempoolError::ReplacementUnderpriced)
        );
        let enough = eip1559_priced(&ks[0], CHAIN, 0, 1_100_000_000, 110_000_000);
        assert_eq!(mempool.add(enough.clone(), &spec, acct.as_ref(), 1), Ok(Added::Pending));
        assert!(!mempool.contains(&base.hash) && mempool.contains(&enough.hash));
        assert_eq!(mempool.len(), 1);
    }

    #[test]
    fn best_orders_by_tip_across_senders_and_nonces_within() {
        let (_, state, ks) = setup(2);
        let spec = ChainSpec::dev(CHAIN, &[ks[0].address(), ks[1].address()], U256::from(10u128.pow(21)));
        let mut mempool = Mempool::default();
        let a = |k, n, tip| eip1559_priced(k, CHAIN, n, 10_000_000_000, tip);
        // Sender 0: a cheap first tx then a rich one; sender 1: medium.
        mempool
            .add(a(&ks[0], 0, 1), &spec, state.account(&ks[0].address()), 1)
            .unwrap();
        mempool
            .add(a(&ks[0], 1, 1_000), &spec, state.account(&ks[0].address()), 1)
            .unwrap();
        mempool
            .add(a(&ks[1], 0, 500), &spec, state.account(&ks[1].address()), 1)
            .unwrap();
        let order: Vec<_> = mempool
            .best(&state, 1, usize::MAX)
            .iter()
            .map(|t| (t.sender, t.nonce()))
            .collect();
        assert_eq!(
            order,
            vec![(ks[1].address(), 0), (ks[0].address(), 0), (ks[0].address(), 1)]
        );
    }

    #[test]
    fn the_tail_index_finds_the_same_victim_as_a_scan_of_every_sender() {
        let (spec, state, ks) = setup(12);
        let mut mempool = Mempool::new(MempoolConfig::default());
        // A small xorshift: fee caps and tips spread around the base fees tried below.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut held = Vec::new();
        for step in 0..400u64 {
            let k = &ks[(next() % 12) as usize];
            if step % 5 == 4 && !held.is_empty() {
                let h = held.swap_remove((next() as usize) % held.len());
                mempool.remove(&h);
            } else {
                let nonce = mempool.next_nonce(&k.address(), 0) + next() % 2;
                let fee = 1_000 + u128::from(next() % 2_000);
                let tip = u128::from(next() % 1_500).min(fee);
                let tx = eip1559_priced(k, CHAIN, nonce, fee, tip);
                if mempool.add(tx.clone(), &spec, state.account(&k.address()), 1).is_ok() {
                    held.push(tx.hash);
                }
            }
            for base_fee in [1u64, 500, 1_000, 1_800, 2_500] {
                let scan = mempool
                    .by_sender
                    .values()
                    .filter_map(|m| m.values().next_back())
                    .map(|t| t.effective_tip(base_fee))
                    .min();
                let indexed = mempool.tails.cheapest(base_fee).map(|(h, tip)| {
                    assert_eq!(
                        mempool.get(&h).map(|t| t.effective_tip(base_fee)),
                        Some(tip),
                        "step {step}"
                    );
                    tip
                });
                assert_eq!(indexed, scan, "step {step}, base fee {base_fee}");
            }
        }
        assert_eq!(mempool.tails.of.len(), mempool.by_sender.len());
    }

    #[test]
    fn full_pool_evicts_the_cheapest_or_refuses() {
        let (spec, state, ks) = setup(3);
        let mut mempool = Mempool::new(MempoolConfig {
            max_txs: 2,
            ..Default::default()
        });
        let a = |k, tip| eip1559_priced(k, CHAIN, 0, 10_000_000_000, tip);
        mempool
            .add(a(&ks[0], 100), &spec, state.account(&ks[0].address()), 1)
            .unwrap();
        let cheap = a(&ks[1], 10);
        mempool
            .add(cheap.clone(), &spec, state.account(&ks[1].address()), 1)
            .unwrap();
        assert_eq!(
            mempool.add(a(&ks[2], 5), &spec, state.account(&ks[2].address()), 1),
            Err(MempoolError::Full)
        );
        mempool
            .add(a(&ks[2], 50), &spec, state.account(&ks[2].address()), 1)
            .unwrap();
        assert!(!mempool.contains(&cheap.hash), "the cheapest was evicted");
        assert_eq!(mempool.len(), 2);
    }

    /// A transaction queued behind a nonce gap is dropped once it has waited `max_queued_blocks`; a pending one
    /// waits as long as it must.
    #[test]
    fn queued_transactions_expire() {
        let (spec, state, ks) = setup(1);
        let acct = state.account(&ks[0].address()).cloned();
        let mut mempool = Mempool::new(MempoolConfig {
            max_queued_blocks: 3,
            ..Default::default()
        });
        let pending = send(&ks[0], 0);
        let queued = send(&ks[0], 5);
        assert_eq!(
            mempool.add(pending.clone(), &spec, acct.as_ref(), 1),
            Ok(Added::Pending)
        );
        assert_eq!(mempool.add(queued.clone(), &spec, acct.as_ref(), 1), Ok(Added::Queued));
        for _ in 0..2 {
            assert!(mempool.on_block(&state, &[]).is_empty());
        }
        assert_eq!(mempool.on_block(&state, &[]), vec![queued.hash]);
        for _ in 0..10 {
            mempool.on_block(&state, &[]);
        }
        assert!(mempool.contains(&pending.hash));
    }

    /// The byte budget holds however big the transactions: a full pool refuses a transaction that pays no more
    /// than what it holds, and makes room for one that pays more.
    #[test]
    fn the_byte_budget_holds() {
        let (spec, state, ks) = setup(6);
        let mut mempool = Mempool::new(MempoolConfig {
            max_bytes: 300 * 1024,
            ..Default::default()
        });
        let big = |k: &alloy_signer_local::PrivateKeySigner| {
            eip1559(
                k,
                CHAIN,
                0,
                TxKind::Call(Address::ZERO),
                U256::from(1),
                Bytes::from(vec![1u8; 100 * 1024]),
                5_000_000,
            )
        };
        for k in &ks[..2] {
            mempool.add(big(k), &spec, state.account(&k.address()), 1).unwrap();
        }
        assert!(mempool.bytes() > 200 * 1024);
        assert_eq!(
            mempool.add(big(&ks[2]), &spec, state.account(&ks[2].address()), 1),
            Err(MempoolError::Full)
        );
        assert!(mempool.bytes() <= 300 * 1024);
        let rich = eip1559_priced(&ks[3], CHAIN, 0, 10u128.pow(12), 10u128.pow(11));
        let big_bytes = mempool.bytes();
        mempool
            .add(rich.clone(), &spec, state.account(&ks[3].address()), 1)
            .unwrap_or_else(|e| panic!("{e}: with {big_bytes} bytes held"));
        assert!(mempool.contains(&rich.hash));
        assert!(mempool.bytes() <= 300 * 1024);
        // Removal gives the bytes back.
        let held: Vec<B256> = mempool.all().map(|t| t.hash).collect();
        for h in held {
            mempool.remove(&h);
        }
        assert_eq!(mempool.bytes(), 0);
    }

    #[test]
    fn invalid_transactions_are_refused_with_geth_errors() {
        let (spec, state, ks) = setup(1);
        let acct = state.account(&ks[0].address()).cloned();
        let mut mempool = Mempool::default();
        let wrong_chain = eip1559(
            &ks[0],
            1,
            0,
            TxKind::Call(Address::ZERO),
            U256::ZERO,
            Bytes::new(),
            21_000,
        );
        assert!(mempool
            .add(wrong_chain, &spec, acct.as_ref(), 1)
            .unwrap_err()
            .to_string()
            .starts_with("invalid chain id"));
        let rich = eip1559(
            &ks[0],
            CHAIN,
            0,
            TxKind::Call(Address::ZERO),
            U256::from(10u128.pow(22)),
            Bytes::new(),
            21_000,
        );
        assert!(mempool
            .add(rich, &spec, acct.as_ref(), 1)
            .unwrap_err()
            .to_string()
            .starts_with("insufficient funds"));
        // A value near 2^256: gas * fee + value would wrap to almost nothing.
        let wraps = eip1559(
            &ks[0],
            CHAIN,
            0,
            TxKind::Call(Address::ZERO),
            U256::MAX,
            Bytes::new(),
            21_000,
        );
        assert!(mempool
            .add(wraps, &spec, acct.as_ref(), 1)
            .unwrap_err()
            .to_string()
            .starts_with("insufficient funds"));
        let low_fee = eip1559_priced(&ks[0], CHAIN, 0, 5, 1);
        assert!(mempool
            .add(low_fee, &spec, acct.as_ref(), 1_000)
            .unwrap_err()
            .to_string()
            .starts_with("max fee per gas less than block base fee"));
        let far = send(&ks[0], 5_000);
        assert_eq!(
            mempool.add(far, &spec, acct.as_ref(), 1),
            Err(MempoolError::NonceGapTooLarge)
        );
        assert!(mempool.is_empty());
    }

    #[test]
    fn on_block_drops_included_and_stale() {
        let (spec, state, ks) = setup(1);
        let acct = state.account(&ks[0].address()).cloned();
        let mut mempool = Mempool::default();
        let t0 = send(&ks[0], 0);
        let t1 = send(&ks[0], 1);
        mempool.add(t0.clone(), &spec, acct.as_ref(), 1).unwrap();
        mempool.add(t1.clone(), &spec, acct.as_ref(), 1).unwrap();
        let mut next = state.clone();
        let mut cs = metis_execution::Changeset::default();
        let mut a = acct.clone().unwrap();
        a.nonce = 2; // both nonces used (e.g. t1 arrived elsewhere and was included)
        cs.accounts.insert(
            ks[0].address(),
            metis_execution::AccountChange {
                info: Some(a),
                ..Default::default()
            },
        );
        next.apply(&cs);
        let dropped = mempool.on_block(&next, &[t0.hash]);
        assert_eq!(dropped.len(), 2);
        assert!(mempool.is_empty());
    }
}
