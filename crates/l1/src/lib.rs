//! The L1 listener: follows an Ethereum JSON-RPC endpoint, reads LockingPool events only from blocks at the
//! configured confirmation depth, in bounded ranges, and turns them into PoS transactions
//! ([`metis_pos::PosTx`]) identified by their L1 position. It also keeps the hashes of the blocks it has read, so a
//! validator can check a proposed PoS transaction against its own view ([`L1View::confirms`]), and a reorg that
//! reaches below the depth (which the depth is there to make impossible) is detected and reported, never silently
//! applied.

pub mod sender;

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use metis_contracts::{LockingInfo, LockingPool, PosParams};
use metis_pos::{L1Event, L1Position, PosTx};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub locking_pool: Address,
    /// The escrow, whose lock bounds the ledger follows (None: only LockingPool is read).
    pub locking_info: Option<Address>,
    /// PosParams, whose changes (made by governance) the ledger applies (None: a chain without governance).
    pub pos_params: Option<Address>,
    /// First L1 block to read (the contracts' deployment block).
    pub start_block: u64,
    /// Blocks on top of a block before its events count (12 on Ethereum; small on a devnet).
    pub confirmations: u64,
    /// Largest block range per eth_getLogs call.
    pub max_range: u64,
    /// The L1 chain id the genesis names (checked before anything is read).
    pub chain_id: Option<u64>,
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
    #[error("L1 log (block {block:?}, index {index:?}) without its block number, log index, block hash, transaction index or hash")]
    IncompleteLog { block: Option<u64>, index: Option<u64> },
    #[error("L1 chain id is {got}, the genesis names {expected}")]
    WrongChain { expected: u64, got: u64 },
}

/// What this node has read from L1: confirmed events in L1 order and the hashes of the blocks they came from.
#[derive(Clone, Debug, Default)]
pub struct L1View {
    events: BTreeMap<(u64, u64), PosTx>,
    /// Hash of every confirmed block that holds an event, and of the last confirmed block read.
    hashes: BTreeMap<u64, B256>,
    /// Last confirmed block read.
    pub synced_to: Option<u64>,
    /// The ledger's cursor: events at or before it are applied and forgotten here (the view stays small
    /// however long the chain runs).
    pub applied_through: Option<(u64, u64)>,
    /// The L1 head at the last poll, and when a poll last succeeded (what readiness checks).
    pub l1_head: Option<u64>,
    pub last_ok: Option<std::time::Instant>,
}

impl L1View {
    pub fn events(&self) -> impl Iterator<Item = &PosTx> {
        self.events.values()
    }

    /// Events held (read and not applied yet).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Forgets the events at or before `through` (applied by the ledger); a later call never goes back.
    pub fn forget_applied(&mut self, through: Option<(u64, u64)>) {
        let Some(t) = through.max(self.applied_through) else {
            return;
        };
        self.applied_through = Some(t);
        self.events = self.events.split_off(&(t.0, t.1.saturating_add(1)));
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether `tx` is exactly an event this node saw at depth, at the same position in the same block.
    pub fn confirms(&self, tx: &PosTx) -> bool {
        self.hashes.get(&tx.position.block_number) == Some(&tx.position.block_hash)
            && self.events.get(&tx.position.order()) == Some(tx)
    }

    /// Confirmed events after `after` (an L1 order key), in L1 order.
    pub fn after(&self, after: Option<(u64, u64)>) -> impl Iterator<Item = &PosTx> {
        let from = match after {
            None => std::ops::Bound::Unbounded,
            Some(a) => std::ops::Bound::Excluded(a),
        };
        self.events.range((from, std::ops::Bound::Unbounded)).map(|(_, t)| t)
    }

    /// What a proposer puts in its block: at most `max` events after `after`, from blocks at least `margin`
    /// blocks below what this view has read. The margin gives the other validators' listeners time to read the
    /// same blocks (each polls on its own clock), so a fresh event does not cost a round.
    pub fn includable(&self, after: Option<(u64, u64)>, margin: u64, max: usize) -> Vec<PosTx> {
        let Some(synced) = self.synced_to else {
            return Vec::new();
        };
        self.after(after)
            .take_while(|t| t.position.block_number + margin <= synced)
            .take(max)
            .cloned()
            .collect()
    }
}

/// The newest L1 block at `confirmations` depth (None while the chain is shorter than the depth). The listener
/// and the replica read only up to it.
pub async fn confirmed_head<P: Provider>(
    provider: &P,
    confirmations: u64,
) -> Result<Option<u64>, alloy::transports::TransportError> {
    Ok(provider.get_block_number().await?.checked_sub(confirmations))
}

/// `from..=to` in consecutive ranges of at most `max_range` blocks (at least one), for bounded log queries.
pub fn ranges(from: u64, to: u64, max_range: u64) -> impl Iterator<Item = (u64, u64)> {
    let step = max_range.max(1);
    let mut next = Some(from).filter(|f| *f <= to);
    std::iter::from_fn(move || {
        let start = next?;
        let end = start.saturating_add(step - 1).min(to);
        next = end.checked_add(1).filter(|n| *n <= to);
        Some((start, end))
    })
}

/// Longest wait between two polls of a failing endpoint.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// An L1 view shared between the listener task (writer) and consensus and the PoS API (readers).
#[derive(Clone, Debug, Default)]
pub struct SharedView(Arc<parking_lot::RwLock<L1View>>);

impl SharedView {
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, L1View> {
        self.0.read()
    }

    pub fn write(&self) -> parking_lot::RwLockWriteGuard<'_, L1View> {
        self.0.write()
    }

    /// The ledger applied every event up to `through`: they are forgotten here and, at its next poll, by the
    /// listener.
    pub fn applied(&self, through: Option<(u64, u64)>) {
        self.write().forget_applied(through);
    }
}

impl metis_pos::L1Source for SharedView {
    fn includable(&self, after: Option<(u64, u64)>, margin: u64, max: usize) -> Vec<PosTx> {
        self.read().includable(after, margin, max)
    }

    fn confirms(&self, tx: &PosTx) -> bool {
        self.read().confirms(tx)
    }

    fn next_events(&self, after: Option<(u64, u64)>, n: usize) -> Vec<PosTx> {
        self.read().after(after).take(n).cloned().collect()
    }

    fn applied(&self, through: Option<(u64, u64)>) {
        SharedView::applied(self, through);
    }
}

/// The PoS transaction a log stands for, if the ledger acts on it: LockingPool's staking events, the escrow's
/// lock bounds and PosParams' parameter changes, each only from its configured address (the filter asks for
/// all of them).
fn decode(log: &Log, c: &ListenerConfig) -> Result<Option<PosTx>, L1Error> {
    let (Some(block), Some(index), Some(block_hash), Some(tx_index), Some(tx_hash)) = (
        log.block_number,
        log.log_index,
        log.block_hash,
        log.transaction_index,
        log.transaction_hash,
    ) else {
        return Err(L1Error::IncompleteLog {
            block: log.block_number,
            index: log.log_index,
        });
    };
    let topic0 = log.topic0().copied().unwrap_or_default();
    let address = log.address();
    let event = if address == c.locking_pool {
        pool_event(log, topic0)
    } else if Some(address) == c.locking_info {
        info_event(log, topic0)
    } else if Some(address) == c.pos_params {
        params_event(log, topic0)
    } else {
        Ok(None)
    };
    let Some(event) = event.map_err(|reason| L1Error::BadLog { block, index, reason })? else {
        return Ok(None);
    };
    Ok(Some(PosTx {
        position: L1Position {
            block_number: block,
            block_hash,
            tx_index,
            log_index: index,
            tx_hash,
        },
        event,
    }))
}

fn info_event(log: &Log, topic0: B256) -> Result<Option<L1Event>, String> {
    Ok(Some(if topic0 == LockingInfo::SetMinLock::SIGNATURE_HASH {
        let e = LockingInfo::SetMinLock::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::SetMinLock { amount: e.newMinLock }
    } else if topic0 == LockingInfo::SetMaxLock::SIGNATURE_HASH {
        let e = LockingInfo::SetMaxLock::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::SetMaxLock { amount: e.newMaxLock }
    } else {
        return Ok(None);
    }))
}

fn params_event(log: &Log, topic0: B256) -> Result<Option<L1Event>, String> {
    if topic0 != PosParams::ParamChanged::SIGNATURE_HASH {
        return Ok(None);
    }
    let e = PosParams::ParamChanged::decode_log(&log.inner).map_err(|e| e.to_string())?;
    Ok(Some(L1Event::PosParamChanged {
        param: e.param,
        value: e.newValue,
        nonce: u64::try_from(e.nonce).map_err(|_| "change number over 64 bits".to_string())?,
    }))
}

fn pool_event(log: &Log, topic0: B256) -> Result<Option<L1Event>, String> {
    let id_of = |id: alloy::primitives::U256| u64::try_from(id).map_err(|_| "sequencer id over 64 bits".to_string());
    Ok(Some(if topic0 == LockingPool::Slashed::SIGNATURE_HASH {
        let e = LockingPool::Slashed::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::Slashed {
            id: id_of(e.sequencerId)?,
            amount: e.amount,
            evidence: e.evidenceHash,
        }
    } else if topic0 == LockingPool::Jailed::SIGNATURE_HASH {
        let e = LockingPool::Jailed::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::Jailed {
            id: id_of(e.sequencerId)?,
            jailed: e.jailed,
        }
    } else if topic0 == LockingPool::Relocked::SIGNATURE_HASH {
        let e = LockingPool::Relocked::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::Relocked {
            id: id_of(e.sequencerId)?,
            amount: e.amount,
        }
    } else if topic0 == LockingPool::Withdraw::SIGNATURE_HASH {
        let e = LockingPool::Withdraw::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::Withdraw {
            id: id_of(e.sequencerId)?,
            amount: e.amount,
        }
    } else if topic0 == LockingPool::RewardPerBlockChanged::SIGNATURE_HASH {
        let e = LockingPool::RewardPerBlockChanged::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::ParameterChanged {
            name: "rewardPerBlock".into(),
            value: e.newReward,
        }
    } else if topic0 == LockingPool::ExitDelayChanged::SIGNATURE_HASH {
        let e = LockingPool::ExitDelayChanged::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::ParameterChanged {
            name: "exitDelay".into(),
            value: e.newDelay,
        }
    } else if topic0 == LockingPool::SignerUpdateThrottleChanged::SIGNATURE_HASH {
        let e = LockingPool::SignerUpdateThrottleChanged::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::ParameterChanged {
            name: "signerUpdateThrottle".into(),
            value: e.newThrottle,
        }
    } else if topic0 == LockingPool::WhitelistChanged::SIGNATURE_HASH {
        let e = LockingPool::WhitelistChanged::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::WhitelistChanged {
            user: e.user,
            allowed: e.allowed,
        }
    } else if topic0 == LockingPool::Locked::SIGNATURE_HASH {
        let e = LockingPool::Locked::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::Locked {
            id: id_of(e.sequencerId)?,
            signer: e.signer,
            consensus_key: e.consensusKey,
            dkg_key: e.dkgKey,
            amount: e.amount,
        }
    } else if topic0 == LockingPool::LockUpdate::SIGNATURE_HASH {
        let e = LockingPool::LockUpdate::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::LockUpdate {
            id: id_of(e.sequencerId)?,
            new_amount: e.newAmount,
        }
    } else if topic0 == LockingPool::SignerChange::SIGNATURE_HASH {
        let e = LockingPool::SignerChange::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::SignerChange {
            id: id_of(e.sequencerId)?,
            new_signer: e.newSigner,
        }
    } else if topic0 == LockingPool::UnlockInit::SIGNATURE_HASH {
        let e = LockingPool::UnlockInit::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::UnlockInit {
            id: id_of(e.sequencerId)?,
        }
    } else if topic0 == LockingPool::Unlocked::SIGNATURE_HASH {
        let e = LockingPool::Unlocked::decode_log(&log.inner).map_err(|e| e.to_string())?;
        L1Event::Unlocked {
            id: id_of(e.sequencerId)?,
        }
    } else {
        return Ok(None);
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

    /// The highest block this view read whose hash is still canonical (None: none is; re-read from the start).
    async fn fork_point(&self, below: u64) -> Result<Option<u64>, L1Error> {
        for (n, h) in self.view.hashes.range(..below).rev() {
            if self.block_hash(*n).await? == *h {
                return Ok(Some(*n));
            }
        }
        Ok(None)
    }

    /// Keeps the hashes of blocks holding events and of the last few blocks read (the checkpoints a deep reorg
    /// is traced back through); one entry per poll would otherwise pile up for ever.
    fn prune_checkpoints(&mut self) {
        const KEEP: usize = 64;
        let with_events: std::collections::BTreeSet<u64> = self.view.events.keys().map(|k| k.0).collect();
        let checkpoints: Vec<u64> = self
            .view
            .hashes
            .keys()
            .filter(|n| !with_events.contains(n))
            .copied()
            .collect();
        for n in checkpoints.iter().take(checkpoints.len().saturating_sub(KEEP)) {
            self.view.hashes.remove(n);
        }
    }

    /// Reads every newly confirmed block (in ranges of at most `max_range`) and returns the events found, in L1
    /// order. An RPC failure leaves the view as it was (the next poll retries the same range).
    pub async fn poll(&mut self) -> Result<Vec<PosTx>, L1Error> {
        if let Some(expected) = self.config.chain_id {
            let got = self.provider.get_chain_id().await?;
            if got != expected {
                return Err(L1Error::WrongChain { expected, got });
            }
            self.config.chain_id = None;
        }
        let head = self.provider.get_block_number().await?;
        self.view.l1_head = Some(head);
        metrics::gauge!("metis_l1_head").set(head as f64);
        let Some(safe) = head.checked_sub(self.config.confirmations) else {
            return Ok(vec![]);
        };
        // Blocks we read must not have changed under us: by construction they are at depth. If they did (the
        // depth was too small for this chain), the view goes back to the last block it read that is still
        // canonical and the next poll re-reads from there; events the ledger already took stay taken.
        if let Some(last) = self.view.synced_to {
            let had = self.view.hashes.get(&last).copied().unwrap_or_default();
            let now = self.block_hash(last).await?;
            if now != had {
                let fork = self.fork_point(last).await?;
                error!(block = last, %had, %now, ?fork, "reorg below the confirmation depth; re-reading from the fork");
                self.view.events.retain(|k, _| fork.is_some_and(|f| k.0 <= f));
                self.view.hashes.retain(|n, _| fork.is_some_and(|f| *n <= f));
                self.view.synced_to = fork;
                return Err(L1Error::DeepReorg { number: last, had, now });
            }
        }
        let start = self.view.synced_to.map_or(self.config.start_block, |b| b + 1);
        let mut found = Vec::new();
        let mut hashes = BTreeMap::new();
        let mut read_to = None;
        for (from, to) in ranges(start, safe, self.config.max_range) {
            let mut addresses = vec![self.config.locking_pool];
            addresses.extend(self.config.locking_info);
            addresses.extend(self.config.pos_params);
            let filter = Filter::new().address(addresses).from_block(from).to_block(to);
            let logs = self.provider.get_logs(&filter).await?;
            for log in &logs {
                if log.removed {
                    continue;
                }
                match decode(log, &self.config) {
                    Ok(Some(tx)) => {
                        hashes.insert(tx.position.block_number, tx.position.block_hash);
                        found.push(tx);
                    }
                    Ok(None) => {}
                    // Every node reads the same log the same way, so skipping it keeps them in agreement; a
                    // bad log must not stop the events after it.
                    Err(e) => warn!(error = %e, "skipping L1 log"),
                }
            }
            debug!(from, to, events = logs.len(), "read L1 range");
            read_to = Some(to);
        }
        if let Some(last) = read_to {
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
            self.prune_checkpoints();
            self.view
                .events
                .extend(found.iter().map(|t| (t.position.order(), t.clone())));
            self.view.synced_to = Some(last);
            metrics::gauge!("metis_l1_confirmed").set(last as f64);
            if !found.is_empty() {
                info!(events = found.len(), synced_to = last, "L1 staking events confirmed");
            }
        }
        Ok(found)
    }
}

impl<P: Provider + 'static> Listener<P> {
    /// Follows L1 for ever: polls every `interval`, publishes the view to `shared` after every poll that read
    /// something, and backs off (doubling, at most [`MAX_BACKOFF`]) while the endpoint fails. It never blocks consensus:
    /// proposers include only what the shared view holds.
    pub async fn follow(mut self, shared: SharedView, interval: Duration) {
        let mut failures = 0u32;
        loop {
            let wait = match self.poll().await {
                Ok(found) => {
                    if failures > 0 {
                        info!(failures, synced_to = ?self.view.synced_to, "L1 endpoint back");
                    }
                    failures = 0;
                    self.view.last_ok = Some(std::time::Instant::now());
                    if shared.read().synced_to != self.view.synced_to || !found.is_empty() {
                        // Applied events are forgotten before the copy, so it stays small.
                        let through = shared.read().applied_through;
                        self.view.forget_applied(through);
                        *shared.write() = self.view.clone();
                    } else {
                        let mut v = shared.write();
                        v.last_ok = self.view.last_ok;
                        v.l1_head = self.view.l1_head;
                    }
                    interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Capped low: an Ethereum block is 12 s, and a long sleep would only delay the catch-up.
                    let cap = MAX_BACKOFF.max(interval);
                    let backoff = (interval * 2u32.saturating_pow(failures.min(8))).min(cap);
                    if matches!(e, L1Error::DeepReorg { .. } | L1Error::WrongChain { .. }) {
                        error!(error = %e, "L1 view stopped; no new staking events are taken");
                    } else {
                        warn!(error = %e, failures, retry_in_ms = backoff.as_millis() as u64, "L1 poll failed");
                    }
                    backoff
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(block: u64, log: u64) -> PosTx {
        PosTx {
            position: L1Position {
                block_number: block,
                block_hash: B256::repeat_byte(block as u8),
                tx_index: 0,
                log_index: log,
                tx_hash: B256::repeat_byte(log as u8),
            },
            event: L1Event::Unlocked { id: 1 },
        }
    }

    #[test]
    fn applied_events_are_forgotten_and_never_come_back() {
        let mut v = L1View::default();
        for (b, l) in [(1, 0), (1, 1), (2, 0), (3, 5)] {
            v.events.insert((b, l), event(b, l));
            v.hashes.insert(b, B256::repeat_byte(b as u8));
        }
        v.forget_applied(Some((1, 1)));
        assert_eq!(v.len(), 2);
        assert!(v.confirms(&event(2, 0)) && !v.confirms(&event(1, 1)));
        // An older cursor (another task's stale read) does not bring anything back or move it back.
        v.forget_applied(Some((1, 0)));
        assert_eq!((v.len(), v.applied_through), (2, Some((1, 1))));
        v.forget_applied(Some((3, 5)));
        assert!(v.is_empty());
        assert_eq!(v.after(None).count(), 0);
    }

    #[test]
    fn ranges_cover_the_span_in_bounded_steps() {
        assert_eq!(ranges(5, 14, 4).collect::<Vec<_>>(), vec![(5, 8), (9, 12), (13, 14)]);
        assert_eq!(ranges(5, 5, 0).collect::<Vec<_>>(), vec![(5, 5)]);
        assert!(ranges(6, 5, 4).next().is_none());
        assert_eq!(
            ranges(u64::MAX - 1, u64::MAX, 10).collect::<Vec<_>>(),
            vec![(u64::MAX - 1, u64::MAX)]
        );
    }
}
