//! The L1 listener: follows an Ethereum JSON-RPC endpoint, reads LockingPool events only from blocks at the
//! configured confirmation depth, in bounded ranges, and turns them into PoS transactions
//! ([`metis_pos::PosTx`]) identified by their L1 position. It also keeps the hashes of the blocks it has read, so a
//! validator can check a proposed PoS transaction against its own view ([`L1View::confirms`]), and a reorg that
//! reaches below the depth (which the depth is there to make impossible) is detected and reported, never silently
//! applied.

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use metis_contracts::LockingPool;
use metis_pos::{L1Event, L1Position, PosTx};
use std::collections::BTreeMap;
use tracing::{debug, info, warn};

#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub locking_pool: Address,
    /// First L1 block to read (the contracts' deployment block).
    pub start_block: u64,
    /// Blocks on top of a block before its events count (12 on Ethereum; small on a devnet).
    pub confirmations: u64,
    /// Largest block range per eth_getLogs call.
    pub max_range: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    #[error("L1 RPC: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    #[error("L1 block {0} is missing")]
    MissingBlock(u64),
    #[error("L1 reorg below the confirmation depth at block {number}: had {had}, now {now}")]
    DeepReorg { number: u64, had: B256, now: B256 },
    #[error("malformed LockingPool log at block {block} index {index}: {reason}")]
    BadLog { block: u64, index: u64, reason: String },
}

/// What this node has read from L1: confirmed events in L1 order and the hashes of the blocks they came from.
#[derive(Clone, Debug, Default)]
pub struct L1View {
    events: Vec<PosTx>,
    /// Hash of every confirmed block that holds an event, and of the last confirmed block read.
    hashes: BTreeMap<u64, B256>,
    /// Last confirmed block read.
    pub synced_to: Option<u64>,
}

impl L1View {
    pub fn events(&self) -> &[PosTx] {
        &self.events
    }

    /// Whether `tx` is exactly an event this node saw at depth, at the same position in the same block.
    pub fn confirms(&self, tx: &PosTx) -> bool {
        self.hashes.get(&tx.position.block_number) == Some(&tx.position.block_hash)
            && self.events.iter().any(|e| e == tx)
    }

    /// Confirmed events after `after` (an L1 order key), to include in the next block.
    pub fn after(&self, after: Option<(u64, u64)>) -> impl Iterator<Item = &PosTx> {
        self.events
            .iter()
            .filter(move |e| after.is_none_or(|a| e.position.order() > a))
    }
}

fn decode(log: &Log) -> Result<Option<PosTx>, L1Error> {
    let block = log.block_number.unwrap_or_default();
    let index = log.log_index.unwrap_or_default();
    let bad = |reason: String| L1Error::BadLog { block, index, reason };
    let (Some(block_hash), Some(tx_index)) = (log.block_hash, log.transaction_index) else {
        return Err(bad("log without block hash or transaction index".into()));
    };
    let topic0 = log.topic0().copied().unwrap_or_default();
    let event = if topic0 == LockingPool::Locked::SIGNATURE_HASH {
        let e = LockingPool::Locked::decode_log(&log.inner).map_err(|e| bad(e.to_string()))?;
        L1Event::Locked {
            id: u64::try_from(e.sequencerId).map_err(|_| bad("sequencer id over 64 bits".into()))?,
            signer: e.signer,
            consensus_key: e.consensusKey,
            dkg_key: e.dkgKey,
            amount: e.amount,
        }
    } else if topic0 == LockingPool::LockUpdate::SIGNATURE_HASH {
        let e = LockingPool::LockUpdate::decode_log(&log.inner).map_err(|e| bad(e.to_string()))?;
        L1Event::LockUpdate {
            id: u64::try_from(e.sequencerId).map_err(|_| bad("sequencer id over 64 bits".into()))?,
            new_amount: e.newAmount,
        }
    } else if topic0 == LockingPool::SignerChange::SIGNATURE_HASH {
        let e = LockingPool::SignerChange::decode_log(&log.inner).map_err(|e| bad(e.to_string()))?;
        L1Event::SignerChange {
            id: u64::try_from(e.sequencerId).map_err(|_| bad("sequencer id over 64 bits".into()))?,
            new_signer: e.newSigner,
        }
    } else if topic0 == LockingPool::UnlockInit::SIGNATURE_HASH {
        let e = LockingPool::UnlockInit::decode_log(&log.inner).map_err(|e| bad(e.to_string()))?;
        L1Event::UnlockInit {
            id: u64::try_from(e.sequencerId).map_err(|_| bad("sequencer id over 64 bits".into()))?,
        }
    } else if topic0 == LockingPool::Unlocked::SIGNATURE_HASH {
        let e = LockingPool::Unlocked::decode_log(&log.inner).map_err(|e| bad(e.to_string()))?;
        L1Event::Unlocked {
            id: u64::try_from(e.sequencerId).map_err(|_| bad("sequencer id over 64 bits".into()))?,
        }
    } else {
        return Ok(None);
    };
    Ok(Some(PosTx {
        position: L1Position {
            block_number: block,
            block_hash,
            tx_index,
            log_index: index,
        },
        event,
    }))
}

pub struct Listener<P> {
    provider: P,
    config: ListenerConfig,
    view: L1View,
}

impl<P: Provider> Listener<P> {
    pub fn new(provider: P, config: ListenerConfig) -> Self {
        Self {
            provider,
            config,
            view: L1View::default(),
        }
    }

    pub fn view(&self) -> &L1View {
        &self.view
    }

    async fn block_hash(&self, number: u64) -> Result<B256, L1Error> {
        let b = self
            .provider
            .get_block_by_number(number.into())
            .await?
            .ok_or(L1Error::MissingBlock(number))?;
        Ok(b.header.hash)
    }

    /// Reads every newly confirmed block (in ranges of at most `max_range`) and returns the events found, in L1
    /// order. An RPC failure leaves the view as it was (the next poll retries the same range).
    pub async fn poll(&mut self) -> Result<Vec<PosTx>, L1Error> {
        let head = self.provider.get_block_number().await?;
        let Some(safe) = head.checked_sub(self.config.confirmations) else {
            return Ok(vec![]);
        };
        // Blocks we read must not have changed under us: by construction they are at depth.
        if let Some(last) = self.view.synced_to {
            let had = self.view.hashes[&last];
            let now = self.block_hash(last).await?;
            if now != had {
                warn!(block = last, %had, %now, "reorg below the confirmation depth");
                return Err(L1Error::DeepReorg { number: last, had, now });
            }
        }
        let mut from = self.view.synced_to.map_or(self.config.start_block, |b| b + 1);
        let mut found = Vec::new();
        let mut hashes = BTreeMap::new();
        while from <= safe {
            let to = safe.min(from + self.config.max_range.max(1) - 1);
            let filter = Filter::new()
                .address(self.config.locking_pool)
                .from_block(from)
                .to_block(to);
            let logs = self.provider.get_logs(&filter).await?;
            for log in &logs {
                if log.removed {
                    continue;
                }
                if let Some(tx) = decode(log)? {
                    hashes.insert(tx.position.block_number, tx.position.block_hash);
                    found.push(tx);
                }
            }
            debug!(from, to, events = logs.len(), "read L1 range");
            from = to + 1;
        }
        if from > self.view.synced_to.map_or(self.config.start_block, |b| b + 1) {
            let last = from - 1;
            let last_hash = self.block_hash(last).await?;
            // A log's block hash must be the canonical one of its block at depth (checked once per block).
            for (number, hash) in &hashes {
                let canonical = if *number == last {
                    last_hash
                } else {
                    self.block_hash(*number).await?
                };
                if canonical != *hash {
                    return Err(L1Error::DeepReorg {
                        number: *number,
                        had: *hash,
                        now: canonical,
                    });
                }
            }
            hashes.insert(last, last_hash);
            found.sort_by_key(|t| t.position.order());
            self.view.hashes.extend(hashes);
            self.view.events.extend(found.iter().cloned());
            self.view.synced_to = Some(last);
            if !found.is_empty() {
                info!(events = found.len(), synced_to = last, "L1 staking events confirmed");
            }
        }
        Ok(found)
    }
}
