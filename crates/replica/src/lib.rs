//! The replica: rebuilds the L2 chain from L1 alone.
//!
//! It reads BatchInbox's `BatchAppended` events at a confirmation depth, and for each batch, in index order:
//! takes the header, payload and signature from the posting transaction's input (calldata mode) or the header
//! from the input and the payload from the transaction's blobs (blob mode, each blob checked against the
//! header's versioned hash); checks the header against the event's hash, the pool's threshold signature under the
//! group key L1 holds, the payload hash and the link to the previous header; derives the header again from the
//! decoded blocks (tx root, state root, blob hashes); then re-executes every block on its own engine, whose
//! validation checks each block's state root, receipts and hash. Anything that does not hold stops it with an
//! error naming the batch. Progress is stored with the last block of each batch, so a restart resumes.

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use alloy_sol_types::SolCall;
use metis_batcher::payload::{self, BatchBlock};
use metis_batcher::DataMode;
use metis_chain::Chain;
use metis_contracts::bindings::BatchInbox::{self, BatchHeader};
use metis_contracts::bindings::LockingPool;
use metis_execution::RecoveredTx;
use parking_lot::RwLock;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};

use metis_storage::schema::{
    REPLICA_L1_FROM as META_L1_FROM, REPLICA_LAST_HASH as META_LAST_HASH, REPLICA_NEXT as META_NEXT,
};

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub inbox: Address,
    pub l1_chain_id: u64,
    /// First L1 block to read (the contracts' deployment).
    pub start_block: u64,
    pub confirmations: u64,
    pub max_range: u64,
    pub poll: Duration,
    pub blobs: BlobSource,
}

/// Where blob contents come from (an execution node does not serve them).
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// The L1 RPC's `anvil_getBlobByHash` (anvil).
    L1Rpc,
    /// A beacon node: `GET /eth/v1/beacon/blobs/{block_root}?versioned_hashes=...` (Fulu), the block root being
    /// the child execution block's parentBeaconBlockRoot.
    Beacon(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("L1 RPC: {0}")]
    Rpc(String),
    #[error("L1 chain id is {got}, the genesis names {expected}")]
    WrongChain { expected: u64, got: u64 },
    #[error("batch {index}: {reason}")]
    Batch { index: u64, reason: String },
    #[error("store: {0}")]
    Store(String),
}

fn bad(index: u64, reason: impl Into<String>) -> ReplicaError {
    ReplicaError::Batch {
        index,
        reason: reason.into(),
    }
}

/// What the replica's API shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplicaStatus {
    /// The next batch index to apply.
    pub next_index: u64,
    /// L1 blocks read up to (inclusive), at the confirmation depth.
    pub l1_synced_to: Option<u64>,
    pub head: u64,
    pub state_root: B256,
    /// Set when the replica stopped on a batch that does not hold.
    pub error: Option<String>,
}

pub type SharedStatus = Arc<RwLock<ReplicaStatus>>;

pub struct Replica {
    cfg: ReplicaConfig,
    provider: DynProvider,
    backend: Arc<Chain>,
    status: SharedStatus,
    http: alloy::transports::http::reqwest::Client,
}

impl Replica {
    pub fn new(cfg: ReplicaConfig, provider: DynProvider, backend: Arc<Chain>) -> Self {
        backend.set_read_only();
        Self {
            cfg,
            provider,
            backend,
            status: SharedStatus::default(),
            http: Default::default(),
        }
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, ReplicaError> {
        self.backend
            .engine()
            .store()
            .get::<u64>(key)
            .map_err(|e| ReplicaError::Store(e.to_string()))
    }

    fn last_hash(&self) -> Result<B256, ReplicaError> {
        // No batch replayed yet: the first one's parent is zero.
        let v = self
            .backend
            .engine()
            .store()
            .get::<B256>(META_LAST_HASH)
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        Ok(v.unwrap_or(B256::ZERO))
    }

    /// Follows L1 until a batch does not hold (the error names it) or the task is dropped.
    pub async fn run(self) -> ReplicaError {
        async move {
            let chain = match self.provider.get_chain_id().await {
                Ok(c) => c,
                Err(e) => return ReplicaError::Rpc(e.to_string()),
            };
            if chain != self.cfg.l1_chain_id {
                return ReplicaError::WrongChain {
                    expected: self.cfg.l1_chain_id,
                    got: chain,
                };
            }
            loop {
                match self.step().await {
                    Ok(true) => continue,
                    Ok(false) => tokio::time::sleep(self.cfg.poll).await,
                    Err(ReplicaError::Rpc(e)) => {
                        warn!(error = %e, "L1 read failed; retrying");
                        tokio::time::sleep(self.cfg.poll).await;
                    }
                    Err(e) => {
                        self.status.write().error = Some(e.to_string());
                        return e;
                    }
                }
            }
        }
        .instrument(info_span!("replica"))
        .await
    }

    /// Reads the next range of confirmed L1 blocks and applies the batches in it; true if more is left to read.
    pub async fn step(&self) -> Result<bool, ReplicaError> {
        let rpc = |e: alloy::transports::TransportError| ReplicaError::Rpc(e.to_string());
        let Some(safe) = metis_l1::confirmed_head(&self.provider, self.cfg.confirmations)
            .await
            .map_err(rpc)?
        else {
            return Ok(false);
        };
        let from = self.meta_u64(META_L1_FROM)?.unwrap_or(self.cfg.start_block);
        let Some((from, to)) = metis_l1::ranges(from, safe, self.cfg.max_range).next() else {
            return Ok(false);
        };
        let logs = self
            .provider
            .get_logs(
                &Filter::new()
                    .address(self.cfg.inbox)
                    .event_signature(BatchInbox::BatchAppended::SIGNATURE_HASH)
                    .from_block(from)
                    .to_block(to),
            )
            .await
            .map_err(rpc)?;
        for log in logs {
            let ev = BatchInbox::BatchAppended::decode_log(&log.inner)
                .map_err(|e| ReplicaError::Rpc(format!("undecodable BatchAppended log: {e}")))?;
            let index: u64 = ev.index.try_into().unwrap_or(u64::MAX);
            let next = self.meta_u64(META_NEXT)?.unwrap_or(0);
            if index < next {
                continue;
            }
            if index > next {
                return Err(bad(index, format!("BatchInbox skipped from {next} to {index}")));
            }
            let tx = log
                .transaction_hash
                .ok_or_else(|| ReplicaError::Rpc("a log without its transaction hash".into()))?;
            let block = log
                .block_number
                .ok_or_else(|| ReplicaError::Rpc("a log without its block number".into()))?;
            self.apply(index, ev.batchHash, tx, block).await?;
        }
        self.put_u64(META_L1_FROM, to + 1)?;
        self.status.write().l1_synced_to = Some(to);
        Ok(to < safe)
    }

    fn put_u64(&self, key: &str, v: u64) -> Result<(), ReplicaError> {
        let bytes = metis_storage::encode(&v).map_err(|e| ReplicaError::Store(e.to_string()))?;
        self.backend
            .engine()
            .store()
            .put_meta(&[(key, &bytes)])
            .map_err(|e| ReplicaError::Store(e.to_string()))
    }

    async fn apply(&self, index: u64, batch_hash: B256, tx: B256, l1_block: u64) -> Result<(), ReplicaError> {
        let rpc = |e: alloy::transports::TransportError| ReplicaError::Rpc(e.to_string());
        let t = self
            .provider
            .get_transaction_by_hash(tx)
            .await
            .map_err(rpc)?
            .ok_or_else(|| ReplicaError::Rpc(format!("transaction {tx} not found")))?;
        let input = alloy::consensus::Transaction::input(&t);
        let call = BatchInbox::appendBatchCall::abi_decode(input)
            .map_err(|_| bad(index, format!("transaction {tx} is not a direct appendBatch call")))?;
        let h = call.header;
        if metis_contracts::digest::batch_hash(&h) != batch_hash || h.index != index {
            return Err(bad(
                index,
                "the header in the transaction is not the one BatchInbox logged",
            ));
        }
        let parent = self.last_hash()?;
        if h.parentHash != parent {
            return Err(bad(index, format!("parent hash {} is not {parent}", h.parentHash)));
        }
        self.check_signature(&h, &call.signature, l1_block).await?;
        let payload = if h.blobHashes.is_empty() {
            call.payload.to_vec()
        } else {
            let blobs = self.blobs(&h.blobHashes, l1_block).await?;
            payload::check_blobs(&blobs, &h.blobHashes).map_err(|e| bad(index, format!("blobs: {e}")))?;
            payload::from_raw_blobs(&blobs).map_err(|e| bad(index, format!("blobs: {e}")))?
        };
        if payload::payload_hash(&payload) != h.payloadHash {
            return Err(bad(index, "the payload does not hash to the header's payloadHash"));
        }
        let blocks = payload::decode(&payload).map_err(|e| bad(index, format!("payload: {e}")))?;
        let mode = if h.blobHashes.is_empty() {
            DataMode::Calldata
        } else {
            DataMode::Blobs
        };
        let derived = metis_batcher::derive(index, parent, &blocks, mode).map_err(|e| bad(index, e.to_string()))?;
        for (what, ok) in [
            (
                "block range",
                derived.header.l2FirstBlock == h.l2FirstBlock && derived.header.l2LastBlock == h.l2LastBlock,
            ),
            ("txRoot", derived.header.txRoot == h.txRoot),
            ("stateRoot", derived.header.stateRoot == h.stateRoot),
            ("blob hashes", derived.header.blobHashes == h.blobHashes),
        ] {
            if !ok {
                return Err(bad(index, format!("the {what} the header claims is not the blocks'")));
            }
        }
        self.execute(index, batch_hash, blocks)?;
        let (head, root) = {
            let e = self.backend.engine();
            (e.head().number, e.head().state_root)
        };
        info!(batch = index, l1_block, last = h.l2LastBlock, state_root = %root, "batch replayed");
        let mut s = self.status.write();
        s.next_index = index + 1;
        s.head = head;
        s.state_root = root;
        Ok(())
    }

    async fn check_signature(&self, h: &BatchHeader, sig: &[u8], l1_block: u64) -> Result<(), ReplicaError> {
        let inbox = BatchInbox::new(self.cfg.inbox, self.provider.clone());
        let registry = inbox
            .registry()
            .call()
            .await
            .map_err(|e| ReplicaError::Rpc(e.to_string()))?;
        let pk = LockingPool::new(registry, self.provider.clone())
            .groupPublicKey()
            .block(l1_block.into())
            .call()
            .await
            .map_err(|e| ReplicaError::Rpc(e.to_string()))?;
        let index = h.index;
        let pk = metis_mpc::encoding::g2_from_eip2537(&pk).map_err(|e| bad(index, format!("group key on L1: {e}")))?;
        let sig = metis_mpc::encoding::g1_from_eip2537(sig).map_err(|e| bad(index, format!("signature: {e}")))?;
        let digest = metis_contracts::digest::batch_signing_digest(self.cfg.l1_chain_id, self.cfg.inbox, h);
        metis_mpc::threshold::verify(&pk, &digest.0, &sig)
            .map_err(|_| bad(index, "the signature does not verify under the pool's group key"))
    }

    async fn blobs(&self, hashes: &[B256], l1_block: u64) -> Result<Vec<alloy::eips::eip4844::Blob>, ReplicaError> {
        let rpc = |e: String| ReplicaError::Rpc(e);
        match &self.cfg.blobs {
            BlobSource::L1Rpc => {
                let mut out = Vec::with_capacity(hashes.len());
                for h in hashes {
                    let b: alloy::eips::eip4844::Blob = self
                        .provider
                        .raw_request("anvil_getBlobByHash".into(), (h,))
                        .await
                        .map_err(|e| rpc(format!("anvil_getBlobByHash {h}: {e}")))?;
                    out.push(b);
                }
                Ok(out)
            }
            BlobSource::Beacon(url) => {
                let child = self
                    .provider
                    .get_block_by_number((l1_block + 1).into())
                    .await
                    .map_err(|e| rpc(e.to_string()))?
                    .ok_or_else(|| rpc(format!("L1 block {} missing", l1_block + 1)))?;
                let root = child
                    .header
                    .parent_beacon_block_root
                    .ok_or_else(|| rpc("L1 block has no parent beacon block root".into()))?;
                let list: Vec<String> = hashes.iter().map(|h| h.to_string()).collect();
                let u = format!(
                    "{}/eth/v1/beacon/blobs/{root}?versioned_hashes={}",
                    url.trim_end_matches('/'),
                    list.join(",")
                );
                #[derive(serde::Deserialize)]
                struct Resp {
                    data: Vec<alloy::eips::eip4844::Blob>,
                }
                let r: Resp = self
                    .http
                    .get(&u)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| rpc(format!("beacon {u}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| rpc(format!("beacon {u}: {e}")))?;
                Ok(r.data)
            }
        }
    }

    /// Re-executes the batch's blocks on the head; the last one is committed with the replica's progress.
    fn execute(&self, index: u64, batch_hash: B256, blocks: Vec<BatchBlock>) -> Result<(), ReplicaError> {
        let n = blocks.len();
        for (i, b) in blocks.into_iter().enumerate() {
            let number = b.header.number;
            // Committed by an earlier attempt that stopped inside this batch (each was checked then).
            if number <= self.backend.engine().head().number {
                continue;
            }
            let txs = b
                .transactions
                .into_iter()
                .map(RecoveredTx::from_envelope)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(index, format!("block {number}: a transaction does not recover: {e}")))?;
            let executed = tokio::task::block_in_place(|| self.backend.engine().validate(&b.header, txs))
                .map_err(|e| bad(index, format!("block {number} does not re-execute to its header: {e}")))?;
            let next = metis_storage::encode(&(index + 1)).map_err(|e| ReplicaError::Store(e.to_string()))?;
            let meta: Vec<(&str, &[u8])> = if i + 1 == n {
                vec![(META_NEXT, &next), (META_LAST_HASH, batch_hash.as_slice())]
            } else {
                Vec::new()
            };
            self.backend
                .commit_block(executed, &meta)
                .map_err(|e| bad(index, format!("committing block {number}: {e}")))?;
        }
        Ok(())
    }
}

/// The replica's query API: `metis_replica` (progress and, if it stopped, why).
#[jsonrpsee::proc_macros::rpc(server, namespace = "metis")]
pub trait ReplicaApi {
    #[method(name = "replica")]
    fn replica(&self) -> jsonrpsee::core::RpcResult<ReplicaStatus>;
}

struct ReplicaRpc(SharedStatus);

impl ReplicaApiServer for ReplicaRpc {
    fn replica(&self) -> jsonrpsee::core::RpcResult<ReplicaStatus> {
        Ok(self.0.read().clone())
    }
}

/// `metis_replica` over `status`.
pub fn module(status: SharedStatus) -> jsonrpsee::Methods {
    ReplicaRpc(status).into_rpc().into()
}
