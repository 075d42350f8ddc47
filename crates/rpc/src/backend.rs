//! The node state the RPC serves: the execution engine, the mempool, and the notifications (new blocks, new
//! pending transactions) that subscriptions and filters follow. The block producer (dev mode now, consensus
//! later) drives `produce_block`; RPC reads take the engine's read lock only briefly.

use crate::convert::{block_logs, rpc_header};
use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256};
use alloy_rpc_types_eth::{Header as RpcHeader, Log as RpcLog};
use metis_execution::executor::{BlockContext, ExecutedBlock};
use metis_execution::{Engine, EngineError, Mempool, PoolConfig, PoolError, RecoveredTx};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};
use tracing::{debug, info};

/// A committed block as subscribers see it.
#[derive(Clone, Debug)]
pub struct NewBlock {
    pub header: RpcHeader,
    pub logs: Vec<RpcLog>,
}

/// Recent pending transaction hashes, numbered, for polling filters.
#[derive(Default)]
struct PendingLog {
    next_seq: u64,
    hashes: VecDeque<(u64, B256)>,
}

const PENDING_LOG_CAP: usize = 10_000;

/// Encoded transactions this node's RPC admitted, numbered from 1. Gossip reads it with a cursor per peer; a
/// peer whose cursor fell off the front is sent the whole pool instead, so nothing is lost to a slow link.
#[derive(Default)]
struct LocalLog {
    next_seq: u64,
    entries: VecDeque<(u64, Bytes)>,
}

const LOCAL_LOG_CAP: usize = 200_000;

impl LocalLog {
    fn push(&mut self, raw: Bytes, cap: usize) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.entries.push_back((seq, raw));
        if self.entries.len() > cap {
            self.entries.pop_front();
        }
    }

    fn since(&self, cursor: u64, max: usize) -> LocalTxs {
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

/// What a gossip reader gets from [`Backend::local_txs_since`].
pub struct LocalTxs {
    pub txs: Vec<Bytes>,
    /// The cursor to ask from next time.
    pub cursor: u64,
    /// Entries after the old cursor were already evicted: send the whole pool.
    pub gap: bool,
}

pub struct Backend {
    engine: RwLock<Engine>,
    pool: Mutex<Mempool>,
    new_blocks: broadcast::Sender<Arc<NewBlock>>,
    new_pending: broadcast::Sender<B256>,
    /// Transactions admitted from this node's RPC (not from peers), numbered, for gossip.
    local_log: Mutex<LocalLog>,
    local_arrived: Notify,
    pending_log: Mutex<PendingLog>,
    tx_arrived: Notify,
    pub(crate) filters: Mutex<crate::filters::Filters>,
    read_only: std::sync::atomic::AtomicBool,
}

impl Backend {
    pub fn new(engine: Engine, pool: PoolConfig) -> Arc<Self> {
        Arc::new(Self {
            engine: RwLock::new(engine),
            pool: Mutex::new(Mempool::new(pool)),
            new_blocks: broadcast::channel(256).0,
            new_pending: broadcast::channel(4096).0,
            local_log: Mutex::new(LocalLog::default()),
            local_arrived: Notify::new(),
            pending_log: Mutex::new(PendingLog::default()),
            tx_arrived: Notify::new(),
            filters: Mutex::new(Default::default()),
            read_only: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// From now on every transaction is refused (a replica serves the chain it rebuilds, read-only).
    pub fn set_read_only(&self) {
        self.read_only.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn engine(&self) -> RwLockReadGuard<'_, Engine> {
        self.engine.read()
    }

    pub fn pool(&self) -> parking_lot::MutexGuard<'_, Mempool> {
        self.pool.lock()
    }

    pub fn subscribe_blocks(&self) -> broadcast::Receiver<Arc<NewBlock>> {
        self.new_blocks.subscribe()
    }

    pub fn subscribe_pending(&self) -> broadcast::Receiver<B256> {
        self.new_pending.subscribe()
    }

    /// Pending hashes announced after sequence number `after`, and the latest sequence number.
    pub(crate) fn pending_since(&self, after: u64) -> (Vec<B256>, u64) {
        let log = self.pending_log.lock();
        let hashes = log.hashes.iter().filter(|(s, _)| *s > after).map(|(_, h)| *h).collect();
        (hashes, log.next_seq)
    }

    /// Up to `max` transactions this node's RPC admitted after `cursor` (0 = from the start of the log).
    pub fn local_txs_since(&self, cursor: u64, max: usize) -> LocalTxs {
        self.local_log.lock().since(cursor, max)
    }

    /// The sequence number of the newest local transaction (a reader starting now passes it as its cursor).
    pub fn local_txs_head(&self) -> u64 {
        self.local_log.lock().next_seq
    }

    /// Resolves when a local transaction arrives (may also resolve spuriously; re-check with a cursor).
    pub async fn local_tx_arrived(&self) {
        self.local_arrived.notified().await
    }

    /// Validates a transaction from this node's users against the head, admits it to the pool and logs it
    /// for gossip.
    pub fn submit(&self, tx: RecoveredTx) -> Result<B256, PoolError> {
        let raw = tx.encoded();
        let hash = self.submit_from_peer(tx)?;
        self.local_log.lock().push(raw, LOCAL_LOG_CAP);
        self.local_arrived.notify_waiters();
        Ok(hash)
    }

    /// Validates a transaction a peer relayed and admits it to the pool (not relayed further: peers form a
    /// full mesh).
    /// Which of `hashes` this node already has, pending or in a block: a peer's copy need not have its sender
    /// recovered (the expensive part of taking a transaction in). A store error counts as not known.
    pub fn txs_known(&self, hashes: &[B256]) -> Vec<bool> {
        let engine = self.engine.read();
        let stored = engine
            .store()
            .txs_stored(hashes)
            .unwrap_or_else(|_| vec![false; hashes.len()]);
        let pool = self.pool.lock();
        hashes.iter().zip(stored).map(|(h, s)| s || pool.contains(h)).collect()
    }

    pub fn submit_from_peer(&self, tx: RecoveredTx) -> Result<B256, PoolError> {
        if self.read_only.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PoolError::ReadOnly);
        }
        let hash = tx.hash;
        {
            // Lock order everywhere: engine, then pool.
            let engine = self.engine.read();
            let account = engine.state().account(&tx.sender);
            let base_fee = metis_execution::executor::next_base_fee(engine.head());
            self.pool.lock().add(tx, engine.spec(), account, base_fee)?;
        }
        {
            let mut log = self.pending_log.lock();
            log.next_seq += 1;
            let seq = log.next_seq;
            log.hashes.push_back((seq, hash));
            if log.hashes.len() > PENDING_LOG_CAP {
                log.hashes.pop_front();
            }
        }
        let _ = self.new_pending.send(hash);
        self.tx_arrived.notify_one();
        debug!(%hash, "transaction admitted");
        Ok(hash)
    }

    /// Resolves when a transaction has arrived since the last call (for block-on-demand production).
    pub async fn tx_arrived(&self) {
        self.tx_arrived.notified().await
    }

    /// Builds the next block from the pool, commits it and notifies subscribers. Returns its number and hash.
    pub fn produce_block(
        &self,
        timestamp: u64,
        beneficiary: Address,
        extra_data: Bytes,
    ) -> Result<(u64, B256), EngineError> {
        let block = {
            let engine = self.engine.read();
            let mut ctx = engine.next_context(timestamp, beneficiary);
            ctx.extra_data = extra_data;
            drop(engine);
            self.build_block(ctx, usize::MAX)
        };
        self.commit_block(block, &[])
    }

    /// Builds a block on the head from the best pool transactions, uncommitted (a proposal). Transactions the
    /// block refused for a reason waiting will not cure leave the pool.
    /// At most `max_tx_bytes` of encoded transactions go in (peers refuse larger blocks).
    pub fn build_block(&self, ctx: BlockContext, max_tx_bytes: usize) -> ExecutedBlock {
        let (block, rejected) = {
            let engine = self.engine.read();
            let mut candidates = self.pool.lock().best(engine.state(), ctx.base_fee);
            // A prefix of the ordered candidates keeps every sender's nonce order.
            let mut bytes = 0usize;
            let fit = candidates
                .iter()
                .position(|t| {
                    bytes = bytes.saturating_add(t.encoded_len);
                    bytes > max_tx_bytes
                })
                .unwrap_or(candidates.len());
            candidates.truncate(fit);
            engine.build(ctx, candidates)
        };
        let mut pool = self.pool.lock();
        for (h, err) in &rejected {
            // A full block is no fault of the transaction; anything else will not get better by waiting.
            if !matches!(err, metis_execution::TxError::BlockFull) {
                debug!(hash = %h, %err, "dropping transaction the block refused");
                pool.remove(h);
            }
        }
        block
    }

    /// Commits an executed block (with `meta` written in the same store transaction), updates the pool and
    /// notifies subscribers. Returns its number and hash.
    pub fn commit_block(&self, block: ExecutedBlock, meta: &[(&str, &[u8])]) -> Result<(u64, B256), EngineError> {
        let number = block.header.number;
        let hash = block.hash;
        let header: Header = block.header.clone();
        let included: Vec<B256> = block.transactions.iter().map(|t| t.hash).collect();
        let txs: Vec<_> = block
            .transactions
            .iter()
            .map(|t| (t.sender, t.envelope.clone()))
            .collect();
        let receipts = block.receipts.clone();
        {
            let mut engine = self.engine.write();
            engine.commit_with_meta(block, meta)?;
            self.pool.lock().on_block(engine.state(), &included);
        }
        let logs = block_logs(hash, &header, &txs, &receipts);
        let size = alloy_rlp::Encodable::length(&header);
        let _ = self.new_blocks.send(Arc::new(NewBlock {
            header: rpc_header(&header, hash, size),
            logs,
        }));
        info!(number, %hash, txs = included.len(), gas_used = header.gas_used, "block committed");
        Ok((number, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proposer keeps its blocks under the byte limit peers enforce: the pool's best transactions are cut at
    /// the limit, the rest stay pending for the next block.
    #[test]
    fn build_block_respects_the_byte_limit() {
        use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
        use alloy_primitives::{TxKind, U256};
        use alloy_signer::SignerSync;
        let dir = std::env::temp_dir().join(format!("metis-rpc-bytes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = alloy_signer_local::PrivateKeySigner::from_slice(&[7u8; 32]).unwrap();
        let spec = metis_execution::ChainSpec::dev(59902, &[key.address()], U256::from(10u128.pow(22)));
        let backend = Backend::new(Engine::open(&dir, spec).unwrap(), PoolConfig::default());
        let mut size = 0;
        for nonce in 0..10 {
            let tx = TxEip1559 {
                chain_id: 59902,
                nonce,
                gas_limit: 100_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1,
                to: TxKind::Call(Address::repeat_byte(1)),
                value: U256::from(1),
                input: vec![1u8; 1000].into(),
                access_list: Default::default(),
            };
            let sig = key.sign_hash_sync(&tx.signature_hash()).unwrap();
            let tx = RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).unwrap();
            size = tx.encoded_len;
            backend.submit(tx).unwrap();
        }
        let ctx = backend.engine().next_context(1, Address::ZERO);
        let block = backend.build_block(ctx, size * 4 + size / 2);
        assert_eq!(block.transactions.len(), 4);
        assert_eq!(backend.pool().len(), 10, "cut transactions stay in the pool");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
