//! The node's chain: the execution engine, the mempool, and the commit path. Whoever decides blocks (the dev
//! producer, consensus, the replica) commits them here; each committed block is announced to subscribers
//! (the RPC's subscriptions and filters; the pool's signer and poster through [`Committed`]), so the deciding
//! side never calls them. Readers that may take long (the RPC's calls and log scans) work on a [`HeadView`], a
//! snapshot of the head taken at each commit in O(1), and never hold the lock the commit needs.

pub mod admission;
pub mod archive;

use alloy_consensus::{Header, ReceiptEnvelope, TxEnvelope};
use alloy_primitives::{Address, Bytes, B256};
use metis_execution::executor::{BlockContext, ExecutedBlock};
use metis_execution::{ChainSpec, Engine, EngineError, RecoveredTx, WorldState};
use metis_mempool::{LocalLog, LocalTxs, Mempool, MempoolConfig, MempoolError, LOCAL_LOG_CAP, LOCAL_LOG_MAX_BYTES};
use metis_storage::Store;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, Notify};
use tracing::{debug, info};

/// A committed block as the RPC's subscriptions see it.
#[derive(Clone, Debug)]
pub struct NewBlock {
    pub header: Header,
    pub hash: B256,
    pub txs: Vec<(Address, TxEnvelope)>,
    pub receipts: Vec<ReceiptEnvelope>,
}

/// What a decided block changed beyond the EVM state, for the pool's signer and poster: the ledger after it
/// (batch cuts and reward reports are read from it), and the key this node signs with if a key round
/// completed with it.
#[derive(Clone, Debug)]
pub struct Committed {
    pub height: u64,
    pub ledger: Arc<metis_pos::Ledger>,
    /// When the block was decided here (signing latency counts from it).
    pub decided_at: Instant,
    /// The new signing key, when a key round completed with this block.
    pub key: Option<metis_mpc::SigningKey>,
    /// The round that decided it, and how long the height took here (from its start to the decision).
    pub round: u32,
    pub decision: Option<std::time::Duration>,
}

/// How one recent block was decided, for the dashboard's charts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pace {
    pub height: u64,
    pub round: u32,
    /// The height's start to its decision here (ms).
    pub decision_ms: Option<u64>,
    /// Since the previous commit here (ms).
    pub interval_ms: Option<u64>,
    /// The block's timestamp (s).
    pub timestamp: u64,
}

/// Recent blocks [`Chain::pace`] keeps.
pub const MAX_PACE: usize = 600;

/// Recent pending transaction hashes, numbered, for polling filters.
#[derive(Default)]
struct PendingLog {
    next_seq: u64,
    hashes: VecDeque<(u64, B256)>,
}

const PENDING_LOG_CAP: usize = 10_000;

/// The head block and the state after it, as of one commit. Cloning the state is O(1) (persistent maps and
/// tries); the store handle reads through its own snapshots, so blocks and receipts up to `header` are there.
pub struct HeadView {
    header: Header,
    hash: B256,
    state: WorldState,
    spec: Arc<ChainSpec>,
    store: Store,
}

impl HeadView {
    fn of(engine: &Engine, spec: Arc<ChainSpec>) -> Self {
        Self {
            header: engine.head().clone(),
            hash: engine.head_hash(),
            state: engine.state().clone(),
            spec,
            store: engine.store().clone(),
        }
    }

    pub fn head(&self) -> &Header {
        &self.header
    }

    pub fn head_hash(&self) -> B256 {
        self.hash
    }

    pub fn state(&self) -> &WorldState {
        &self.state
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

pub struct Chain {
    engine: RwLock<Engine>,
    /// Replaced (under the engine's write lock) at every commit.
    view: RwLock<Arc<HeadView>>,
    spec: Arc<ChainSpec>,
    mempool: Mutex<Mempool>,
    new_blocks: broadcast::Sender<Arc<NewBlock>>,
    new_pending: broadcast::Sender<B256>,
    /// Transactions admitted from this node's RPC (not from peers), numbered, for gossip.
    local_log: Mutex<LocalLog>,
    local_arrived: Notify,
    pending_log: Mutex<PendingLog>,
    tx_arrived: Notify,
    read_only: std::sync::atomic::AtomicBool,
    /// Consensus peers connected to this node, as the network last reported (`net_peerCount`).
    peers: std::sync::atomic::AtomicU64,
    /// The PoS ledger after the head block (None: a chain without one, the dev node and the replica).
    ledger: RwLock<Option<Arc<metis_pos::Ledger>>>,
    committed: Mutex<Vec<mpsc::UnboundedSender<Arc<Committed>>>>,
    /// When the last block was committed here (the block interval metric).
    last_commit: Mutex<Option<Instant>>,
    pace: Mutex<VecDeque<Pace>>,
    /// Started at first use (None: its threads could not be started; admission then runs on tokio's blocking
    /// threads).
    admission: std::sync::OnceLock<Option<admission::Admission>>,
    /// Transactions from peers handed to admission and not yet through it (see [`Chain::admission_backlog`]).
    backlog: Arc<std::sync::atomic::AtomicU64>,
}

/// Counts a batch of transactions as waiting for admission until dropped.
pub struct BacklogGuard {
    count: Arc<std::sync::atomic::AtomicU64>,
    n: u64,
}

impl Drop for BacklogGuard {
    fn drop(&mut self) {
        self.count.fetch_sub(self.n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Chain {
    pub fn new(engine: Engine, mempool: MempoolConfig) -> Arc<Self> {
        let spec = Arc::new(engine.spec().clone());
        let view = RwLock::new(Arc::new(HeadView::of(&engine, spec.clone())));
        Arc::new(Self {
            engine: RwLock::new(engine),
            view,
            spec,
            mempool: Mutex::new(Mempool::new(mempool)),
            new_blocks: broadcast::channel(256).0,
            new_pending: broadcast::channel(4096).0,
            local_log: Mutex::new(LocalLog::default()),
            local_arrived: Notify::new(),
            pending_log: Mutex::new(PendingLog::default()),
            tx_arrived: Notify::new(),
            read_only: std::sync::atomic::AtomicBool::new(false),
            peers: std::sync::atomic::AtomicU64::new(0),
            ledger: RwLock::new(None),
            committed: Mutex::new(Vec::new()),
            last_commit: Mutex::new(None),
            pace: Mutex::new(VecDeque::new()),
            admission: std::sync::OnceLock::new(),
            backlog: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// Runs admission work (`f`: decoding, sender recovery, [`Chain::submit`]) on the low-priority admission
    /// threads ([`admission`]), so that consensus keeps the CPU under a flood of transactions.
    pub async fn in_admission<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Chain) -> T + Send + 'static,
    ) -> Result<T, admission::AdmissionError> {
        let pool = self.admission.get_or_init(|| {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            admission::Admission::start(threads)
                .map_err(|e| tracing::warn!(error = %e, "no admission threads; admitting on tokio's blocking threads"))
                .ok()
        });
        let chain = self.clone();
        match pool {
            Some(pool) => pool.run(move || f(&chain)).await,
            None => tokio::task::spawn_blocking(move || f(&chain))
                .await
                .map_err(|_| admission::AdmissionError::Stopped),
        }
    }

    /// Counts `n` transactions from peers as received but not yet admitted, until the guard is dropped.
    pub fn enter_admission(&self, n: usize) -> BacklogGuard {
        let n = n as u64;
        self.backlog.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        BacklogGuard {
            count: self.backlog.clone(),
            n,
        }
    }

    /// Transactions this node has received from peers that admission has not got through yet. Under a burst,
    /// gossip delivers faster than the low-priority admission threads admit, so the mempool alone understates
    /// what the next block will carry; consensus adds these when it predicts how long a proposal takes to check.
    pub fn admission_backlog(&self) -> u64 {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The PoS ledger after the head block (replaced, not mutated, per block: readers keep the `Arc`).
    pub fn ledger(&self) -> Option<Arc<metis_pos::Ledger>> {
        self.ledger.read().clone()
    }

    /// Sets the ledger the head block left (at start, before any block is committed with one).
    pub fn set_ledger(&self, ledger: Arc<metis_pos::Ledger>) {
        *self.ledger.write() = Some(ledger);
    }

    /// Every [`Committed`] from now on, in commit order. Unbounded so that a slow subscriber never holds up
    /// the commit path; each holds at most what one block brings (a key, a cut, a report).
    pub fn subscribe_committed(&self) -> mpsc::UnboundedReceiver<Arc<Committed>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.committed.lock().push(tx);
        rx
    }

    /// From now on every transaction is refused (a replica serves the chain it rebuilds, read-only).
    pub fn set_read_only(&self) {
        self.read_only.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records how many consensus peers this node is connected to (the network's sampler does, every few
    /// seconds).
    pub fn set_peers(&self, n: u64) {
        self.peers.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Consensus peers connected, as last recorded (0 on a node without a network: the dev node, a replica).
    pub fn peers(&self) -> u64 {
        self.peers.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn engine(&self) -> RwLockReadGuard<'_, Engine> {
        self.engine.read()
    }

    /// The head as of the last commit, for reads that may take long: holding it holds no lock.
    pub fn view(&self) -> Arc<HeadView> {
        self.view.read().clone()
    }

    pub fn mempool(&self) -> parking_lot::MutexGuard<'_, Mempool> {
        self.mempool.lock()
    }

    pub fn subscribe_blocks(&self) -> broadcast::Receiver<Arc<NewBlock>> {
        self.new_blocks.subscribe()
    }

    pub fn subscribe_pending(&self) -> broadcast::Receiver<B256> {
        self.new_pending.subscribe()
    }

    /// Pending hashes announced after sequence number `after`, and the latest sequence number.
    pub fn pending_since(&self, after: u64) -> (Vec<B256>, u64) {
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
        self.local_log.lock().head()
    }

    /// Resolves when a local transaction arrives (may also resolve spuriously; re-check with a cursor).
    pub async fn local_tx_arrived(&self) {
        self.local_arrived.notified().await
    }

    /// Validates a transaction from this node's users against the head, admits it to the mempool and logs it
    /// for gossip.
    pub fn submit(&self, tx: RecoveredTx) -> Result<B256, MempoolError> {
        let raw = tx.encoded();
        let hash = self.submit_from_peer(tx)?;
        self.local_log.lock().push(raw, LOCAL_LOG_CAP, LOCAL_LOG_MAX_BYTES);
        self.local_arrived.notify_waiters();
        Ok(hash)
    }

    /// Which of `hashes` this node already has, pending or in a block: a peer's copy need not have its sender
    /// recovered (the expensive part of taking a transaction in). A store error counts as not known.
    pub fn txs_known(&self, hashes: &[B256]) -> Vec<bool> {
        let engine = self.engine.read();
        let stored = engine
            .store()
            .txs_stored(hashes)
            .unwrap_or_else(|_| vec![false; hashes.len()]);
        let mempool = self.mempool.lock();
        hashes
            .iter()
            .zip(stored)
            .map(|(h, s)| s || mempool.contains(h))
            .collect()
    }

    /// Validates a transaction a sequencer relayed and admits it to the pool (not relayed further: the
    /// sequencers form a full mesh).
    pub fn submit_from_peer(&self, tx: RecoveredTx) -> Result<B256, MempoolError> {
        if self.read_only.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(MempoolError::ReadOnly);
        }
        let hash = tx.hash;
        {
            // Lock order everywhere: engine, then mempool.
            let engine = self.engine.read();
            let account = engine.state().account(&tx.sender);
            let base_fee = metis_execution::executor::next_base_fee(engine.head());
            self.mempool.lock().add(tx, engine.spec(), account, base_fee)?;
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

    /// Builds the next block from the mempool, commits it and notifies subscribers. Returns its number and hash.
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

    /// Builds a block on the head from the best mempool transactions, uncommitted (a proposal). Transactions the
    /// block refused for a reason waiting will not cure leave the mempool.
    /// At most `max_tx_bytes` of encoded transactions go in (peers refuse larger blocks).
    pub fn build_block(&self, ctx: BlockContext, max_tx_bytes: usize) -> ExecutedBlock {
        let (block, rejected) = {
            let engine = self.engine.read();
            let candidates = self.mempool.lock().best(engine.state(), ctx.base_fee, max_tx_bytes);
            engine.build(ctx, candidates)
        };
        let mut mempool = self.mempool.lock();
        for (h, err) in &rejected {
            // A full block is no fault of the transaction; anything else will not get better by waiting.
            if !matches!(err, metis_execution::TxError::BlockFull) {
                debug!(hash = %h, %err, "dropping transaction the block refused");
                mempool.remove(h);
            }
        }
        block
    }

    /// Commits an executed block (with `meta` written in the same store transaction), updates the mempool and
    /// notifies subscribers. Returns its number and hash.
    pub fn commit_block(&self, block: ExecutedBlock, meta: &[(&str, &[u8])]) -> Result<(u64, B256), EngineError> {
        self.commit(block, meta, None)
    }

    /// Commits a decided block with what it changed beyond the EVM state: the ledger is published with the
    /// block (readers never see one without the other), and `Committed` goes to every subscriber.
    pub fn commit_decided(
        &self,
        block: ExecutedBlock,
        meta: &[(&str, &[u8])],
        committed: Committed,
    ) -> Result<(u64, B256), EngineError> {
        self.commit(block, meta, Some(committed))
    }

    fn commit(
        &self,
        block: ExecutedBlock,
        meta: &[(&str, &[u8])],
        committed: Option<Committed>,
    ) -> Result<(u64, B256), EngineError> {
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
            *self.view.write() = Arc::new(HeadView::of(&engine, self.spec.clone()));
            self.mempool.lock().on_block(engine.state(), &included);
            if let Some(c) = &committed {
                *self.ledger.write() = Some(c.ledger.clone());
            }
        }
        let gas_used = header.gas_used;
        let interval = self.record_metrics(number);
        self.record_pace(number, header.timestamp, interval, committed.as_ref());
        let _ = self.new_blocks.send(Arc::new(NewBlock {
            header,
            hash,
            txs,
            receipts,
        }));
        if let Some(c) = committed {
            let c = Arc::new(c);
            self.committed.lock().retain(|tx| tx.send(c.clone()).is_ok());
        }
        info!(number, %hash, txs = included.len(), gas_used, "block committed");
        Ok((number, hash))
    }
}

impl Chain {
    /// The head and the time since the last commit, for Prometheus; returns that time.
    fn record_metrics(&self, number: u64) -> Option<std::time::Duration> {
        metrics::gauge!("metis_l2_head").set(number as f64);
        // A decided block is final: the finalized head is the head.
        metrics::gauge!("metis_l2_finalized").set(number as f64);
        let now = Instant::now();
        let interval = self
            .last_commit
            .lock()
            .replace(now)
            .map(|last| now.duration_since(last));
        if let Some(i) = interval {
            metrics::histogram!("metis_block_interval_seconds").record(i.as_secs_f64());
        }
        interval
    }

    fn record_pace(&self, height: u64, timestamp: u64, interval: Option<std::time::Duration>, c: Option<&Committed>) {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut pace = self.pace.lock();
        pace.push_back(Pace {
            height,
            round: c.map_or(0, |c| c.round),
            decision_ms: c.and_then(|c| c.decision).map(ms),
            interval_ms: interval.map(ms),
            timestamp,
        });
        while pace.len() > MAX_PACE {
            pace.pop_front();
        }
    }

    /// How the last blocks (at most [`MAX_PACE`]) were decided here, oldest first.
    pub fn pace(&self) -> Vec<Pace> {
        self.pace.lock().iter().cloned().collect()
    }

    /// When this node last committed a block.
    pub fn last_commit(&self) -> Option<Instant> {
        *self.last_commit.lock()
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
        let backend = Chain::new(Engine::open(&dir, spec).unwrap(), MempoolConfig::default());
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
        assert_eq!(backend.mempool().len(), 10, "cut transactions stay in the mempool");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Transactions handed to admission count as waiting until their job is done, also when it fails.
    #[tokio::test]
    async fn the_admission_backlog_counts_what_is_in_admission() {
        let dir = std::env::temp_dir().join(format!("metis-chain-backlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = metis_execution::ChainSpec::dev(59902, &[], alloy_primitives::U256::ZERO);
        let backend = Arc::new(Chain::new(Engine::open(&dir, spec).unwrap(), MempoolConfig::default()));
        assert_eq!(backend.admission_backlog(), 0);
        let a = backend.enter_admission(300);
        let b = backend.enter_admission(20);
        assert_eq!(backend.admission_backlog(), 320);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let job = {
            let backend = backend.clone();
            tokio::spawn(async move {
                let _in = backend.enter_admission(5);
                backend.in_admission(move |_| wait.recv().is_ok()).await
            })
        };
        let counted = async {
            while backend.admission_backlog() != 325 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), counted)
            .await
            .expect("the job's transactions counted");
        drop(a);
        assert_eq!(backend.admission_backlog(), 25);
        go.send(()).unwrap();
        assert!(job.await.unwrap().unwrap());
        drop(b);
        assert_eq!(backend.admission_backlog(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
