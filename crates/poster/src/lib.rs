//! The batch poster: lands the pool's signed batches (BatchInbox.appendBatch), reward reports
//! (LockingPool.batchSubmitRewards) and slashes (LockingPool.slash) on L1.
//!
//! Whose turn it is comes from the ledger: the current epoch's sequencer posts at once, the next in the fallback
//! order once an item has waited one `turn_timeout` without landing, the one after that after two, and so on.
//! What to post comes from L1 itself: the inbox's next index, the pool's last reward id and whether a slash's
//! evidence is used, read each step at the head, so an item someone else landed is dropped, one an L1 reorg un-mined is posted again, and a restart
//! loses nothing (the contracts' index checks make a double post a harmless revert). The nonces, fees, bumps and
//! replacements are [`metis_l1::sender`]'s.

use alloy::eips::eip7594::BlobTransactionSidecarEip7594;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolEvent};
use metis_chain::Chain;
use metis_contracts::bindings::BatchInbox::{self, BatchHeader};
use metis_contracts::bindings::LockingPool;
use metis_l1::sender::{Outgoing, Sender, SenderConfig, Slot};
use metis_signer::batches;
use metis_signer::SignatureRecord;
use metis_storage::schema;
use metis_storage::Store;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

pub mod turns;

#[derive(Clone, Debug)]
pub struct PosterConfig {
    pub l1_rpc: String,
    pub inbox: Address,
    pub locking_pool: Address,
    pub poll: Duration,
    /// How long an item waits for the producer (then each fallback in turn) before the next one posts too.
    pub turn_timeout: Duration,
    /// L1 blocks over a landed item before it counts as confirmed.
    pub confirmations: u64,
    pub sender: SenderConfig,
}

/// A node's own posting settings (the rest comes from the genesis and the L1 endpoint).
#[derive(Clone, Debug)]
pub struct PosterSettings {
    /// The sequencer's L1 signer key: the ledger knows it by its address, which decides this node's turn.
    pub key: PrivateKeySigner,
    pub turn_timeout: Duration,
    pub bump_after_blocks: u64,
    pub max_fee_cap: u128,
    pub max_blob_fee_cap: u128,
    pub max_in_flight: usize,
}

/// What a poster transaction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Item {
    Batch(u64),
    Rewards(u64),
    /// The ledger's slash request with this id.
    Slash(u64),
}

/// What the API shows of the poster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PosterStatus {
    pub address: Option<Address>,
    /// This node's place in the posting order (0: the producer posts at once); None: not a poster now.
    pub turn: Option<usize>,
    /// BatchInbox.nextIndex at the L1 head, and at the confirmation depth.
    pub l1_next_index: Option<u64>,
    pub l1_confirmed_index: Option<u64>,
    /// LockingPool.lastRewardBatchId at the L1 head.
    pub l1_last_reward: Option<u64>,
    pub in_flight: Vec<(u64, Slot<Item>)>,
    /// Slashes L1 refused (stake gone, sequencer inactive, ...): recorded with the reason, not tried again.
    pub refused_slashes: BTreeMap<u64, String>,
    /// Items this node's transactions carried that were mined (whatever their outcome).
    pub mined: u64,
    /// The poster account's balance at the L1 head (wei).
    pub balance: Option<U256>,
    /// The last batches L1 confirmed, whoever posted them: where to find each on L1 (newest last).
    pub landed: std::collections::VecDeque<Landed>,
    pub last_error: Option<String>,
}

/// A batch at the confirmation depth on L1, from its `BatchAppended` event.
#[derive(Clone, Debug, Serialize)]
pub struct Landed {
    pub index: u64,
    pub l1_block: u64,
    pub l1_tx: Option<alloy::primitives::B256>,
    pub submitter: Address,
}

/// Landed batches the status keeps.
const MAX_LANDED: usize = 32;
/// L1 blocks read per `BatchAppended` scan, and how far back the first scan starts.
const LANDED_SCAN: u64 = 1000;

pub type SharedPosterStatus = Arc<RwLock<PosterStatus>>;

#[derive(Debug, thiserror::Error)]
pub enum PosterError {
    #[error("L1 RPC URL {0}: {1}")]
    Url(String, String),
}

/// Gas for appendBatch with `calldata_len` bytes of input: the EIP-7623 floor for the data (40 per byte at most),
/// the BLS check and storage (~ 300k), and copying and hashing the payload (memory grows quadratically), with a
/// fifth on top. Unused gas is not paid for.
pub fn append_gas(calldata_len: usize) -> u64 {
    let len = calldata_len as u64;
    let words = len.div_ceil(32);
    let g = 21_000 + 40 * len + 300_000 + 12 * words + words * words / 512;
    g + g / 5
}

struct Poster {
    cfg: PosterConfig,
    store: Store,
    chain: Arc<Chain>,
    provider: DynProvider,
    sender: Sender<Item>,
    status: SharedPosterStatus,
    /// When each item was first seen due (signed here, not on L1): the fallback clock.
    due_since: HashMap<Item, Instant>,
    sidecars: BTreeMap<u64, Arc<BlobTransactionSidecarEip7594>>,
    /// The last L1 block scanned for `BatchAppended`.
    scanned_to: Option<u64>,
}

/// Starts the poster task.
pub fn spawn(
    cfg: PosterConfig,
    key: PrivateKeySigner,
    store: Store,
    chain: Arc<Chain>,
    status: SharedPosterStatus,
) -> Result<tokio::task::JoinHandle<()>, PosterError> {
    let url: alloy::transports::http::reqwest::Url = cfg
        .l1_rpc
        .parse()
        .map_err(|e| PosterError::Url(cfg.l1_rpc.clone(), format!("{e}")))?;
    let from = key.address();
    let wallet = EthereumWallet::from(key);
    let signing = ProviderBuilder::new()
        .disable_recommended_fillers()
        .wallet(wallet)
        .connect_http(url.clone())
        .erased();
    let provider = ProviderBuilder::new().connect_http(url).erased();
    status.write().address = Some(from);
    // Present from the start, so a scrape tells "none posted" from "no poster".
    metrics::counter!("metis_batches_posted_total").increment(0);
    let mut p = Poster {
        sender: Sender::new(signing, from, cfg.sender.clone()),
        cfg,
        store,
        chain,
        provider,
        status,
        due_since: HashMap::new(),
        sidecars: BTreeMap::new(),
        scanned_to: None,
    };
    Ok(tokio::spawn(
        async move {
            info!(address = %from, "batch poster started");
            let mut tick = tokio::time::interval(p.cfg.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = p.step().await {
                    debug!(error = %e, "poster step failed; retrying");
                    p.status.write().last_error = Some(e);
                }
            }
        }
        .instrument(info_span!("poster")),
    ))
}

impl Poster {
    async fn step(&mut self) -> Result<(), String> {
        let inbox = BatchInbox::new(self.cfg.inbox, self.provider.clone());
        let pool = LockingPool::new(self.cfg.locking_pool, self.provider.clone());
        let head = self.provider.get_block_number().await.map_err(|e| e.to_string())?;
        let next = inbox
            .nextIndex()
            .block(head.into())
            .call()
            .await
            .map_err(|e| format!("BatchInbox.nextIndex: {e}"))?;
        let confirmed = inbox
            .nextIndex()
            .block(head.saturating_sub(self.cfg.confirmations).into())
            .call()
            .await
            .ok();
        let last_reward: Option<u64> = pool
            .lastRewardBatchId()
            .block(head.into())
            .call()
            .await
            .map_err(|e| format!("LockingPool.lastRewardBatchId: {e}"))?
            .try_into()
            .ok();
        let turn = self.chain.ledger().and_then(|l| turns::turn(&l, self.sender.address()));
        let balance = self
            .provider
            .get_balance(self.sender.address())
            .block_id(head.into())
            .await
            .ok();
        metrics::gauge!("metis_l1_inbox_next_index").set(next as f64);
        if let Some(b) = balance {
            metrics::gauge!("metis_poster_balance_wei").set(f64::from(b));
        }
        {
            let mut s = self.status.write();
            s.turn = turn;
            s.l1_next_index = Some(next);
            s.l1_confirmed_index = confirmed;
            s.l1_last_reward = last_reward;
            s.balance = balance;
        }
        if let Err(e) = self.scan_landed(head.saturating_sub(self.cfg.confirmations)).await {
            debug!(error = %e, "BatchAppended scan failed; retrying next step");
        }
        self.sidecars = self.sidecars.split_off(&next);

        // Due: signed here and not on L1, in the order L1 takes them.
        let mut due = turns::due(
            next,
            self.cfg.sender.max_in_flight,
            |i| self.has(&schema::batch_signature(i)),
            last_reward,
            |id| self.has(&schema::reward_signature(id)),
        );
        due.extend(self.due_slashes(&pool, head).await?);
        let now = Instant::now();
        self.due_since.retain(|k, _| due.contains(k));
        for d in &due {
            self.due_since.entry(*d).or_insert(now);
        }
        let Some(turn) = turn else {
            self.status.write().in_flight.clear();
            return Ok(());
        };
        let mine = turns::mine(&due, &self.due_since, now, turn, self.cfg.turn_timeout);
        let mut wanted = Vec::with_capacity(mine.len());
        for item in mine {
            match self.outgoing(item) {
                Ok(o) => wanted.push(o),
                Err(e) => {
                    warn!(?item, error = %e, "cannot build the L1 transaction");
                    break;
                }
            }
        }
        // The first item of each kind not in flight yet is tried with eth_call first: one L1 would refuse (a
        // LockingPool without the funds to pay rewards, say) is not sent to burn gas step after step.
        let in_flight: Vec<Item> = self.sender.in_flight().values().map(|s| s.key).collect();
        let mut checked = Vec::with_capacity(wanted.len());
        let (mut seen_batch, mut batches_ok) = (false, true);
        for o in wanted {
            let is_batch = matches!(o.key, Item::Batch(_));
            if is_batch && !batches_ok {
                continue;
            }
            let first = !is_batch || !std::mem::replace(&mut seen_batch, true);
            if first && !in_flight.contains(&o.key) {
                if let Err(e) = self.simulate(&o).await {
                    warn!(item = ?o.key, error = %e, "L1 would refuse this item now; not sent");
                    if let Item::Slash(id) = o.key {
                        // A slash L1 refuses now it will refuse later too: recorded, not retried.
                        self.status.write().refused_slashes.insert(id, e);
                    }
                    // Later batches build on this one.
                    batches_ok &= !is_batch;
                    continue;
                }
            }
            checked.push(o);
        }
        let step = self.sender.step(&checked).await.map_err(|e| e.to_string())?;
        for (nonce, item, tx) in &step.mined {
            info!(nonce, ?item, %tx, "poster transaction mined");
            if matches!(item, Item::Batch(_)) {
                metrics::counter!("metis_batches_posted_total").increment(1);
            }
        }
        let mut s = self.status.write();
        s.mined += step.mined.len() as u64;
        s.in_flight = self.sender.in_flight().iter().map(|(n, x)| (*n, x.clone())).collect();
        s.last_error = None;
        Ok(())
    }

    /// Reads the `BatchAppended` events up to the confirmed L1 block `to` into the status (at most
    /// [`LANDED_SCAN`] blocks per step, starting that far back).
    async fn scan_landed(&mut self, to: u64) -> Result<(), String> {
        let from = match self.scanned_to {
            Some(s) if s >= to => return Ok(()),
            Some(s) => s.saturating_add(1),
            None => to.saturating_sub(LANDED_SCAN),
        };
        let to = to.min(from.saturating_add(LANDED_SCAN));
        let filter = alloy::rpc::types::Filter::new()
            .address(self.cfg.inbox)
            .event_signature(BatchInbox::BatchAppended::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(|e| e.to_string())?;
        let mut landed = Vec::with_capacity(logs.len());
        for log in &logs {
            if log.removed {
                continue;
            }
            // A log that does not decode is not the inbox's event: skipped, it changes nothing.
            let Ok(e) = BatchInbox::BatchAppended::decode_log(&log.inner) else {
                continue;
            };
            let (Ok(index), Some(l1_block)) = (u64::try_from(e.index), log.block_number) else {
                continue;
            };
            landed.push(Landed {
                index,
                l1_block,
                l1_tx: log.transaction_hash,
                submitter: e.submitter,
            });
        }
        self.scanned_to = Some(to);
        let mut s = self.status.write();
        s.landed.extend(landed);
        while s.landed.len() > MAX_LANDED {
            s.landed.pop_front();
        }
        Ok(())
    }

    /// The slashes the ledger asked for that are signed here, not refused before, and whose evidence L1 has
    /// not used yet (once it has, the listener brings the `Slashed` event back and the ledger closes them).
    async fn due_slashes(
        &self,
        pool: &LockingPool::LockingPoolInstance<DynProvider>,
        head: u64,
    ) -> Result<Vec<Item>, String> {
        let Some(ledger) = self.chain.ledger() else {
            return Ok(Vec::new());
        };
        let refused: Vec<u64> = self.status.read().refused_slashes.keys().copied().collect();
        let mut out = Vec::new();
        for r in ledger.offences().slashes() {
            if refused.contains(&r.id) || !self.has(&schema::slash_signature(r.id)) {
                continue;
            }
            let used = pool
                .usedEvidence(r.evidence)
                .block(head.into())
                .call()
                .await
                .map_err(|e| format!("LockingPool.usedEvidence: {e}"))?;
            if !used {
                out.push(Item::Slash(r.id));
            }
        }
        Ok(out)
    }

    async fn simulate(&self, o: &Outgoing<Item>) -> Result<(), String> {
        use alloy::network::TransactionBuilder;
        let mut req = alloy::rpc::types::TransactionRequest::default()
            .with_from(self.sender.address())
            .with_to(o.to)
            .with_input(o.input.clone())
            .with_gas_limit(o.gas_limit);
        if let Some(sc) = &o.sidecar {
            req.blob_versioned_hashes = Some(sc.versioned_hashes().collect());
        }
        self.provider.call(req).await.map(|_| ()).map_err(|e| e.to_string())
    }

    fn has(&self, key: &str) -> bool {
        self.store.meta(key).ok().flatten().is_some()
    }

    fn signature(&self, key: &str) -> Result<Bytes, String> {
        let rec: SignatureRecord = self
            .store
            .get(key)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{key} missing"))?;
        Ok(Bytes::from(rec.signature))
    }

    fn outgoing(&mut self, item: Item) -> Result<Outgoing<Item>, String> {
        match item {
            Item::Batch(index) => {
                let header = batches::header(&self.store, index)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("batch {index} has no header here"))?;
                let sig = self.signature(&schema::batch_signature(index))?;
                let payload = self
                    .store
                    .meta(&schema::batch_payload(index))
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("batch {index} has no payload here"))?;
                let blobs = !header.blobHashes.is_empty();
                let sidecar = if blobs {
                    Some(self.sidecar(index, &header, &payload)?)
                } else {
                    None
                };
                let input: Bytes = BatchInbox::appendBatchCall {
                    header,
                    payload: if blobs { Bytes::new() } else { Bytes::from(payload) },
                    signature: sig,
                }
                .abi_encode()
                .into();
                Ok(Outgoing {
                    key: item,
                    to: self.cfg.inbox,
                    gas_limit: append_gas(input.len()),
                    input,
                    sidecar,
                })
            }
            Item::Rewards(id) => {
                let r: metis_pos::RewardReport = self
                    .store
                    .get(&schema::reward(id))
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("reward report {id} missing"))?;
                let sig = self.signature(&schema::reward_signature(id))?;
                let input: Bytes = LockingPool::batchSubmitRewardsCall {
                    batchId: U256::from(r.batch_id),
                    startEpoch: U256::from(r.start_epoch),
                    endEpoch: U256::from(r.end_epoch),
                    sequencerIds: r.blocks.iter().map(|(id, _)| U256::from(*id)).collect(),
                    blocks: r.blocks.iter().map(|(_, n)| U256::from(*n)).collect(),
                    signature: sig,
                }
                .abi_encode()
                .into();
                Ok(Outgoing {
                    key: item,
                    to: self.cfg.locking_pool,
                    gas_limit: 200_000 + 40_000 * r.blocks.len() as u64 + 40 * input.len() as u64,
                    input,
                    sidecar: None,
                })
            }
            Item::Slash(id) => {
                let ledger = self.chain.ledger().ok_or("no ledger")?;
                let r = ledger
                    .offences()
                    .slashes()
                    .find(|r| r.id == id)
                    .cloned()
                    .ok_or_else(|| format!("slash {id} is no longer open"))?;
                let sig = self.signature(&schema::slash_signature(id))?;
                let input: Bytes = LockingPool::slashCall {
                    seqId: U256::from(r.sequencer),
                    amount: r.amount,
                    evidenceHash: r.evidence,
                    signature: sig,
                }
                .abi_encode()
                .into();
                Ok(Outgoing {
                    key: item,
                    to: self.cfg.locking_pool,
                    // The BLS check and the stake, escrow and event writes (~240k measured), with room.
                    gas_limit: 350_000 + 40 * input.len() as u64,
                    input,
                    sidecar: None,
                })
            }
        }
    }

    /// The blobs of batch `index` with their cell proofs (built once per batch: they are costly), checked
    /// against the signed header.
    fn sidecar(
        &mut self,
        index: u64,
        header: &BatchHeader,
        payload: &[u8],
    ) -> Result<Arc<BlobTransactionSidecarEip7594>, String> {
        if let Some(s) = self.sidecars.get(&index) {
            return Ok(s.clone());
        }
        let started = Instant::now();
        let sc =
            tokio::task::block_in_place(|| metis_batcher::payload::to_blobs(payload)).map_err(|e| e.to_string())?;
        if sc.versioned_hashes().collect::<Vec<_>>() != header.blobHashes {
            return Err(format!("batch {index}: the blobs do not match the signed header"));
        }
        debug!(
            batch = index,
            blobs = sc.blobs.len(),
            ms = started.elapsed().as_millis() as u64,
            "blob sidecar built"
        );
        let sc = Arc::new(sc);
        self.sidecars.insert(index, sc.clone());
        Ok(sc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_covers_the_calldata_floor() {
        // The EIP-7623 floor alone for all-non-zero bytes is 21,000 + 40 per byte.
        for len in [600usize, 100_000, 700_000] {
            assert!(append_gas(len) > 21_000 + 40 * len as u64 + 300_000);
        }
    }
}
