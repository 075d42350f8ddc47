//! The Malachite application: answers consensus with L2 blocks.
//!
//! - GetValue: build a block on the head from the mempool, keep it, stream it as proposal parts.
//! - ReceivedProposalPart: reassemble a stream, check the proposer's signature and the schedule, re-execute the
//!   block and check its header (state root, ledger hash, last commit, beneficiary, time); answer Valid/Invalid.
//! - Decided: apply the block to the PoS ledger (pure) and commit block, ledger and certificate in one store
//!   transaction; Finalized: start the next height with the validator set and schedule the ledger now gives.
//! - Sync: serve decided blocks with their certificates; validate synced blocks the same way as proposals.

use crate::block::{commit_digest, encode_block, extra_data, verify_commit, BlockData, MAX_BLOCK_BYTES, MAX_POS_TXS};
use crate::codec::WireCertificate;
use crate::pacing::ProposalDelay;
use crate::proposals::{ProposalStore, StoredProposal};
use crate::signing::{stream_digest, verify, ConsensusSigner};
use crate::types::{Address, BlockHash, Height, MetisContext, PartInit, ProposalPart, ValidatorSet};
use alloy_primitives::{Bytes as ABytes, B256};
use borsh::BorshDeserialize;
use bytes::Bytes;
use malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
pub use malachitebft_app_channel::app::types::core::LinearTimeouts;
use malachitebft_app_channel::app::types::core::{CommitCertificate, Round, Validity};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{LocallyProposedValue, PeerId, ProposedValue};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use malachitebft_core_types::{ExtendedCommitCertificate, VoteExtensionPolicy};
use metis_chain::schema;
use metis_chain::Chain;
use metis_execution::executor::ExecutedBlock;
use metis_pos::{BlockInfo, L1Source, Ledger, NoL1, PosTx};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, info_span, warn};

/// Bytes of the encoded block per Data part.
const CHUNK: usize = 512 * 1024;
/// Streams being reassembled at once (beyond, the oldest is dropped).
const MAX_STREAMS: usize = 64;
/// How far ahead of the wall clock a block's timestamp may be.
const MAX_FUTURE_DRIFT_SECS: u64 = 15;
/// Heights ahead of ours whose complete proposals are kept until we get there.
const FUTURE_HEIGHTS: u64 = 2;
/// Decided values served per sync request at most.
const MAX_SYNC_BATCH: u64 = 20;

/// Records of each kind the ledger keeps before handing older ones to the store (see `metis_chain::history`).
pub const DEFAULT_HISTORY_KEEP: usize = 256;

/// Keeps a new key share (encrypted at rest by the node); given the round it belongs to.
pub type ShareSink = Box<dyn Fn(u64, &metis_mpc::Share) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("execution: {0}")]
    Engine(#[from] metis_execution::EngineError),
    #[error("store: {0}")]
    Store(#[from] metis_execution::store::StoreError),
    #[error("PoS ledger: {0}")]
    Ledger(#[from] metis_pos::LedgerError),
    #[error("validator set: {0}")]
    Set(#[from] crate::types::SetError),
    #[error("decided value {0} is unknown to this node")]
    UnknownDecided(BlockHash),
    #[error("stored record {0} is corrupt")]
    Corrupt(String),
    #[error("consensus channel closed")]
    Closed,
}

/// Consensus timing.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub timeouts: LinearTimeouts,
    /// Target time per height: a height is not finalized earlier, so blocks (empty if need be) come at this
    /// pace.
    pub block_time: Duration,
}

struct Candidate {
    /// Header and transactions, executed on the head.
    executed: ExecutedBlock,
    /// L1 events the block carries, checked against this node's L1 view.
    pos_txs: Vec<PosTx>,
    /// The parent's commit certificate the block carries.
    last_commit: Option<WireCertificate>,
    /// The block as it travels (stored before voting, re-streamed on request).
    encoded: Vec<u8>,
    /// Where it was proposed (for re-streaming), and by whom.
    round: Round,
    proposer: Address,
    validity: Validity,
    /// When this node first had it (built it, or completed its stream): the pacing anchor.
    seen: Instant,
}

#[derive(Default)]
struct PartialStream {
    init: Option<PartInit>,
    parts: BTreeMap<u64, ProposalPart>,
    fin_seq: Option<u64>,
    bytes: usize,
    started: Option<Instant>,
}

/// A complete, signature-checked proposal for a height we have not reached.
struct Future {
    init: PartInit,
    data: BlockData,
    encoded: Vec<u8>,
    received: Instant,
}

pub struct App {
    backend: Arc<Chain>,
    /// The ledger after the head block; the PoS API reads the same snapshot (shared, not copied).
    ledger: Arc<Ledger>,
    signer: Arc<ConsensusSigner>,
    address: Address,
    timing: Timing,
    /// Validator set of the height being decided.
    set: Option<(Height, ValidatorSet)>,
    /// Validator set that decided the head block (to check the last commit of the next block).
    head_set: Option<ValidatorSet>,
    /// Commit certificate of the head block.
    last_commit: Option<WireCertificate>,
    candidates: HashMap<BlockHash, Candidate>,
    streams: HashMap<(PeerId, StreamId), PartialStream>,
    future: BTreeMap<(Height, u32), Future>,
    height_started: Option<Instant>,
    /// When this node first had the last decided block (the pacing anchor).
    last_decision: Option<Instant>,
    /// Round start -> another proposer's block here and checked, as measured: the propose timeout's basis.
    proposal_delay: ProposalDelay,
    /// The round in progress and when it started here.
    round_started: Option<(Height, Round, Instant)>,
    /// The mempool's gas when the last height started (for the arrival trend).
    pool_gas_at_start: u64,
    /// The next height, its start time, and consensus's reply waiting for it.
    pending_start: Option<(Height, Instant, tokio::sync::oneshot::Sender<Next<MetisContext>>)>,
    history_keep: usize,
    #[cfg(feature = "test-faults")]
    fault: Option<crate::faults::Fault>,
    proposals: Option<ProposalStore>,
    /// A height decided on a block not held here, to be restarted (and synced).
    restart: Option<Height>,
    /// What this node's L1 listener has read ([`NoL1`] without an L1 endpoint: such a node proposes no PoS
    /// transactions and votes for no block that carries any).
    l1: Arc<dyn L1Source>,
    /// L1 blocks an event must sit below this node's view before it proposes it.
    l1_margin: u64,
    /// The threshold key's rounds and this node's share.
    keys: crate::keys::KeyEngine,
    share_sink: Option<ShareSink>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A stored validator set: (sequencer id, consensus key, power) and the proposer schedule.
type SetRecord = (Vec<(u64, [u8; 32], u64)>, Vec<u64>);

fn set_record(set: &ValidatorSet) -> Vec<u8> {
    let v: Vec<(u64, [u8; 32], u64)> = set
        .validators()
        .iter()
        .map(|v| (v.sequencer, v.address.0, v.voting_power))
        .collect();
    let schedule: Vec<u64> = (0..set.validators().len() as u32)
        .map(|r| set.proposer(r).sequencer)
        .collect();
    borsh::to_vec(&(v, schedule)).unwrap_or_default()
}

fn set_from_record(b: &[u8]) -> Option<ValidatorSet> {
    let (v, schedule): SetRecord = borsh::from_slice(b).ok()?;
    ValidatorSet::new(&v, &schedule).ok()
}

/// The validator set and proposer schedule of the next height, as the ledger has them.
pub fn validator_set(ledger: &Ledger) -> Result<ValidatorSet, AppError> {
    let vals: Vec<_> = ledger
        .validators()
        .into_iter()
        .filter_map(|(id, power)| ledger.sequencer(id).map(|s| (id, s.consensus_key.0, power)))
        .collect();
    Ok(ValidatorSet::new(&vals, &ledger.schedule())?)
}

impl App {
    /// Opens the app on the chain in `backend`: the ledger comes from the store (or `genesis_ledger` on a new
    /// chain) and must match the state hash the head block carries.
    pub fn open(
        backend: Arc<Chain>,
        genesis_ledger: Ledger,
        signer: Arc<ConsensusSigner>,
        timing: Timing,
    ) -> Result<Self, AppError> {
        let (head, ledger, head_set, last_commit) = {
            let engine = backend.engine();
            let store = engine.store();
            let head = engine.head().number;
            if head == 0 {
                (head, genesis_ledger, None, None)
            } else {
                let hash = store
                    .meta(schema::LEDGER_HASH)?
                    .filter(|h| h.len() == 32)
                    .map(|h| B256::from_slice(&h))
                    .ok_or_else(|| AppError::Corrupt(schema::LEDGER_HASH.into()))?;
                let bytes = store
                    .meta(schema::LEDGER)?
                    .ok_or_else(|| AppError::Corrupt(schema::LEDGER.into()))?;
                let ledger = Ledger::from_bytes(&bytes, hash)?;
                if ledger.height() != head {
                    return Err(AppError::Corrupt(format!(
                        "ledger at height {} but chain head {head}",
                        ledger.height()
                    )));
                }
                let set = store
                    .meta(&schema::valset(head))?
                    .and_then(|b| set_from_record(&b))
                    .ok_or_else(|| AppError::Corrupt(schema::valset(head)))?;
                let cert = store
                    .meta(&schema::cert(head))?
                    .and_then(|b| WireCertificate::try_from_slice(&b).ok())
                    .ok_or_else(|| AppError::Corrupt(schema::cert(head)))?;
                (head, ledger, Some(set), Some(cert))
            }
        };
        let address = Address(signer.public_key().to_bytes());
        let ledger = Arc::new(ledger);
        backend.set_ledger(ledger.clone());
        info!(
            head,
            epoch = ledger.current_epoch().id,
            producer = ledger.current_epoch().producer,
            "consensus app opened"
        );
        Ok(Self {
            backend,
            ledger,
            signer,
            address,
            timing,
            set: None,
            head_set,
            last_commit,
            candidates: HashMap::new(),
            streams: HashMap::new(),
            future: BTreeMap::new(),
            height_started: None,
            last_decision: None,
            proposal_delay: ProposalDelay::default(),
            round_started: None,
            pool_gas_at_start: 0,
            pending_start: None,
            history_keep: DEFAULT_HISTORY_KEEP,
            #[cfg(feature = "test-faults")]
            fault: None,
            proposals: None,
            restart: None,
            l1: Arc::new(NoL1),
            l1_margin: 0,
            keys: crate::keys::KeyEngine::new(None, None, None),
            share_sink: None,
        })
    }

    /// Takes PoS transactions from (and checks them against) this L1 view; proposes only events at least
    /// `margin` blocks below what the view has read.
    pub fn with_l1_view(mut self, view: Arc<dyn L1Source>, margin: u64) -> Self {
        self.l1 = view;
        self.l1_margin = margin;
        self
    }

    /// Runs key rounds with these secrets (None: observe only) and `share` (this node's share of the stored
    /// output, if it has one); new shares go to `sink`. A round that was running before a restart is rebuilt by
    /// replaying the messages the stored blocks carried.
    pub fn with_keys(
        mut self,
        secrets: Option<crate::keys::KeySecrets>,
        share: Option<metis_mpc::Share>,
        sink: Option<ShareSink>,
    ) -> Result<Self, AppError> {
        let output = {
            let engine = self.backend.engine();
            engine.store().meta(schema::KEY_OUTPUT)?
        };
        let output = match output {
            None => None,
            Some(b) => {
                Some(crate::keys::decode_output(&b).ok_or_else(|| AppError::Corrupt(schema::KEY_OUTPUT.into()))?)
            }
        };
        self.keys = crate::keys::KeyEngine::new(secrets, output, share);
        self.share_sink = sink;
        if let Some(kr) = self.ledger.keys().running.clone() {
            let head = self.backend.engine().head().number;
            for h in kr.start..=head {
                let carried = {
                    let engine = self.backend.engine();
                    engine.store().meta(&schema::carried(h))?
                };
                let carried = carried
                    .and_then(|b| Option::<WireCertificate>::try_from_slice(&b).ok())
                    .flatten();
                let ledger = self.ledger.clone();
                let _ = self.keys.on_block(&ledger, h, carried.as_ref());
            }
        }
        self.keys.ensure_round(&self.ledger);
        Ok(self)
    }

    /// The key this node signs with now: the current key round's sharing and this node's share of it.
    pub fn signing_key(&self) -> Option<metis_mpc::SigningKey> {
        self.signing_key_for(&self.ledger)
    }

    /// The signing key as of `ledger` (the current key round it names) and this node's key rounds.
    fn signing_key_for(&self, ledger: &Ledger) -> Option<metis_mpc::SigningKey> {
        let round = ledger.keys().current.as_ref()?.round;
        let (output, share) = match self.keys.share() {
            Some((o, s)) => (o, Some(s.clone())),
            None => (self.keys.output()?, None),
        };
        // Share index -> the player's consensus key, by the output's own index of each player.
        let set = output.players();
        let mut players = vec![[0u8; 32]; set.len()];
        for p in set.iter() {
            let key = <[u8; 32]>::try_from(commonware_codec::Encode::encode(p).as_ref()).ok();
            if let (Some(i), Some(key)) = (commonware_utils::ordered::Quorum::index(set, p), key) {
                if let Some(slot) = players.get_mut(i.get() as usize) {
                    *slot = key;
                }
            }
        }
        Some(metis_mpc::SigningKey {
            round,
            sharing: output.public().clone(),
            share,
            players,
        })
    }

    /// How many records of each kind the ledger keeps before handing the older ones to the store.
    pub fn with_history_keep(mut self, keep: usize) -> Self {
        self.history_keep = keep.max(1);
        self
    }

    /// Keeps proposals on disk in `dir` until decided (see `proposals.rs`), and takes back the ones stored for
    /// the next height before a crash, re-executed on the head.
    pub fn with_proposal_store(mut self, dir: &std::path::Path) -> Result<Self, AppError> {
        let store = ProposalStore::open(dir).map_err(|e| AppError::Corrupt(format!("{}: {e}", dir.display())))?;
        let next = self.next_height();
        store.prune(Height(next.0 - 1));
        for p in store.at(next) {
            let Ok(data) = BlockData::decode(&p.block) else {
                continue;
            };
            let BlockData {
                header,
                txs,
                pos_txs,
                last_commit,
            } = data;
            let executed = match self.backend.engine().validate(&header, txs) {
                Ok(e) => e,
                Err(e) => {
                    warn!(height = next.0, error = %e, "stored proposal no longer executes; dropped");
                    continue;
                }
            };
            info!(height = next.0, round = %p.round, "took back stored proposal {}", p.hash);
            self.candidates.insert(
                p.hash,
                Candidate {
                    executed,
                    pos_txs,
                    last_commit,
                    encoded: p.block,
                    round: p.round,
                    proposer: p.proposer,
                    validity: Validity::Valid,
                    seen: Instant::now(),
                },
            );
        }
        self.proposals = Some(store);
        Ok(self)
    }

    /// Keeps a valid proposal: on disk first (this node is about to vote for it, and a crash must not leave a
    /// decided hash without its block), then in memory.
    fn keep(&mut self, height: Height, hash: BlockHash, c: Candidate) {
        if let Some(store) = &self.proposals {
            let p = StoredProposal {
                height,
                round: c.round,
                proposer: c.proposer,
                hash,
                block: c.encoded.clone(),
            };
            if let Err(e) = store.put(&p) {
                warn!(height = height.0, error = %e, "could not store proposal {hash}");
            }
        }
        self.candidates.insert(hash, c);
    }

    /// The ledger as of the last decided block.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// Makes this node misbehave as a proposer (tests only).
    #[cfg(feature = "test-faults")]
    pub fn inject_fault(&mut self, fault: crate::faults::Fault) {
        warn!(?fault, "FAULT INJECTION: this node will propose invalid blocks");
        self.fault = Some(fault);
    }

    /// Parameters of `height`, which starts at `start`. Pacing is done here, not by Malachite's target time:
    /// that counts from each node's own height start, so a node that once started late (or early) stays out
    /// of phase with the others, and out-of-phase timeouts slow every failover.
    fn params(&mut self, height: Height, start: Instant) -> Result<HeightParams<MetisContext>, AppError> {
        let set = validator_set(&self.ledger)?;
        self.set = Some((height, set.clone()));
        self.height_started = Some(start);
        // While a key round runs, every precommit carries this node's key messages (possibly none), and
        // Malachite waits a quarter block time from the height's start before finalizing, so the certificate the
        // next block carries holds the late precommits (and their messages) too, not just the fastest quorum;
        // the pacing above still decides when the next height starts.
        let (policy, collect) = if self.ledger.keys().running.is_some() {
            (VoteExtensionPolicy::Required, Some(self.timing.block_time / 4))
        } else {
            (VoteExtensionPolicy::Disabled, None)
        };
        Ok(HeightParams::new(set, self.propose_timeouts(), collect).with_vote_extension_policy(policy))
    }

    /// The configured timeouts, with the propose timeout stretched for the block this height will likely carry
    /// (see `pacing`): what the mempool holds plus as much again as arrived during the last height (the
    /// proposer builds a little later and gossip reaches it first, so at the start of a burst this node's pool
    /// trails the block it will be asked to check), at least the last block's gas, at most the limit.
    fn propose_timeouts(&mut self) -> LinearTimeouts {
        let mut t = self.timing.timeouts;
        let (limit, last) = {
            let engine = self.backend.engine();
            let head = engine.head();
            (head.gas_limit, head.gas_used)
        };
        let pending = self.backend.pool().gas_up_to(limit);
        let arrived = (pending + last).saturating_sub(self.pool_gas_at_start);
        self.pool_gas_at_start = pending;
        let gas = pending.saturating_add(arrived).max(last).min(limit);
        t.propose = self.proposal_delay.propose_timeout(t.propose, gas);
        if t.propose > self.timing.timeouts.propose {
            debug!(
                expected_gas = gas,
                propose_ms = t.propose.as_millis() as u64,
                "propose timeout stretched"
            );
        }
        t
    }

    /// When the next height starts: one block time after this node first had the block just decided (built it
    /// as proposer, or completed its proposal stream). Every node anchors on the same event, the proposer's
    /// broadcast, so all start the next height in step (within the propagation delay) and blocks come one block
    /// time apart however long validating and voting took. A failed round shows as a later proposal, so a
    /// failover height is longer by the timeouts, never shorter. A node catching up does not pause.
    fn next_start(&self) -> Instant {
        let now = Instant::now();
        let head_ts = self.backend.engine().head().timestamp;
        let behind = now_secs().saturating_sub(head_ts);
        if behind > 2 * self.timing.block_time.as_secs().max(1) {
            return now;
        }
        match self.last_decision {
            None => now,
            Some(anchor) => (anchor + self.timing.block_time).max(now),
        }
    }

    /// Starts the height consensus is waiting for, now that its time has come.
    fn start_pending(&mut self) -> Result<(), AppError> {
        if let Some((next, at, reply)) = self.pending_start.take() {
            let params = self.params(next, at)?;
            let _ = reply.send(Next::Start(next, params));
        }
        Ok(())
    }

    fn next_height(&self) -> Height {
        Height(self.backend.engine().head().number + 1)
    }

    /// Runs until consensus stops.
    pub async fn run(mut self, mut channels: Channels<MetisContext>) -> Result<(), AppError> {
        loop {
            let msg = match self.pending_start.as_ref().map(|(_, at, _)| *at) {
                Some(at) => tokio::select! {
                    m = channels.consensus.recv() => m,
                    _ = tokio::time::sleep_until(at.into()) => {
                        self.start_pending()?;
                        continue;
                    }
                },
                None => channels.consensus.recv().await,
            };
            let Some(msg) = msg else { break };
            let height = self.next_height();
            let span = info_span!("consensus", height = height.0, epoch = self.ledger.current_epoch().id);
            let _g = span.enter();
            self.handle(msg, &channels.network).await?;
        }
        Err(AppError::Closed)
    }

    async fn handle(
        &mut self,
        msg: AppMsg<MetisContext>,
        network: &tokio::sync::mpsc::Sender<NetworkMsg<MetisContext>>,
    ) -> Result<(), AppError> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let h = self.next_height();
                info!(height = h.0, "consensus ready, starting");
                let params = self.params(h, Instant::now())?;
                let _ = reply.send((h, params));
            }
            AppMsg::StartedRound {
                height,
                round,
                proposer,
                role,
                reply_value,
            } => {
                debug!(round = %round, %proposer, ?role, "round started");
                self.round_started = Some((height, round, Instant::now()));
                let _ = reply_value.send(self.values_for_round(height, round));
            }
            AppMsg::GetValue {
                height,
                round,
                timeout: _,
                reply,
            } => {
                let (hash, parts) = self.propose(height, round)?;
                let _ = reply.send(LocallyProposedValue::new(height, round, hash));
                for p in parts {
                    if network.send(NetworkMsg::PublishProposalPart(p)).await.is_err() {
                        return Err(AppError::Closed);
                    }
                }
            }
            AppMsg::ExtendVote {
                vote_extension_policy,
                reply,
                ..
            } => {
                let ext = vote_extension_policy.is_required().then(|| self.keys.extension());
                let _ = reply.send(ext);
            }
            AppMsg::VerifyVoteExtensions { extensions, reply, .. } => {
                // Only well-formed, bounded key messages; whether each counts is the round's business.
                let verdicts = extensions
                    .into_iter()
                    .map(|(a, ext)| match crate::keys::decode_ext(&ext) {
                        Ok(_) => (a, Ok(())),
                        Err(e) => {
                            warn!(validator = %a, error = %e, "malformed vote extension");
                            (
                                a,
                                Err(malachitebft_app_channel::app::consensus::VoteExtensionError::InvalidVoteExtension),
                            )
                        }
                    })
                    .collect();
                let _ = reply.send(verdicts);
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                address,
                value_id,
            } => {
                if address == self.address {
                    if let Some(c) = self.candidates.get(&value_id) {
                        let init = PartInit {
                            height,
                            round,
                            pol_round: valid_round,
                            proposer: self.address,
                            total_len: 0,
                        };
                        let parts = self.stream_parts(init, &c.encoded);
                        for p in parts {
                            if network.send(NetworkMsg::PublishProposalPart(p)).await.is_err() {
                                return Err(AppError::Closed);
                            }
                        }
                    }
                }
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let value = self.on_part(published_by.unwrap_or(from), part);
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate,
                extensions,
                reply,
            } => {
                match self.decide(&certificate, &extensions) {
                    Ok(()) => {}
                    // Decided on a block this node does not hold (it should have been stored before voting):
                    // restart the height, and sync fetches the block from peers, who have committed it.
                    Err(AppError::UnknownDecided(v)) => {
                        warn!(
                            height = certificate.height.0,
                            "decided {v} is not held here; restarting the height to sync it"
                        );
                        self.restart = Some(certificate.height);
                    }
                    Err(e) => return Err(e),
                }
                let _ = reply.send(());
            }
            AppMsg::Finalized { reply, .. } if self.restart.is_some() => {
                let h = self.restart.take().unwrap_or_else(|| self.next_height());
                let params = self.params(h, Instant::now())?;
                let _ = reply.send(Next::Restart(h, params));
            }
            AppMsg::Finalized {
                certificate,
                extensions,
                reply,
                ..
            } => {
                // Late precommits may have joined; the fuller certificate goes into the next block.
                if certificate.height.0 == self.backend.engine().head().number {
                    debug!(
                        signatures = certificate.commit_signatures.len(),
                        extensions = extensions.extensions.len(),
                        "finalized"
                    );
                    self.last_commit = Some(WireCertificate::with_extensions(&certificate, &extensions));
                }
                // The reply waits for the block time (the loop goes on serving parts and sync meanwhile); the
                // height's parameters are taken then, so its propose timeout sees the mempool of that moment.
                // The validator set is known now: a proposal for the next height that arrives before it starts
                // is checked at once.
                let next = Height(certificate.height.0 + 1);
                self.set = Some((next, validator_set(&self.ledger)?));
                self.pending_start = Some((next, self.next_start(), reply));
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let _ = reply.send(self.decided_values(range.start().0, range.end().0)?);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = match BlockData::decode(&value_bytes) {
                    Err(e) => {
                        warn!(height = height.0, error = %e, "synced value does not decode");
                        SyncedValueOutcome::PeerFault
                    }
                    Ok(data) if height != self.next_height() => {
                        debug!(
                            height = height.0,
                            number = data.header.number,
                            "synced value is not for the next height"
                        );
                        SyncedValueOutcome::LocalTransientError
                    }
                    Ok(data) if !self.l1_view_has(&data.pos_txs) => {
                        // This node's L1 view has not read these events yet (or never will, if its L1 is not
                        // the others'): not a fault of the peer; sync asks again later.
                        debug!(
                            height = height.0,
                            "synced block carries L1 events this node has not read yet"
                        );
                        SyncedValueOutcome::LocalTransientError
                    }
                    Ok(data) => {
                        let encoded = value_bytes.to_vec();
                        let (hash, validity) = self.validate(height, round, proposer, data, encoded, Instant::now());
                        SyncedValueOutcome::Verdict(ProposedValue {
                            height,
                            round,
                            valid_round: Round::Nil,
                            proposer,
                            value: hash,
                            validity,
                        })
                    }
                };
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }

    fn values_for_round(&mut self, height: Height, round: Round) -> Vec<ProposedValue<MetisContext>> {
        let mut out: Vec<_> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.round == round && c.executed.header.number == height.0)
            .map(|(h, c)| ProposedValue {
                height,
                round,
                valid_round: Round::Nil,
                proposer: c.proposer,
                value: *h,
                validity: c.validity,
            })
            .collect();
        // Proposals that arrived before we reached this height are checked now.
        let r = round.as_u32().unwrap_or(0);
        if let Some(f) = self.future.remove(&(height, r)) {
            let (hash, validity) = self.validate(height, round, f.init.proposer, f.data, f.encoded, f.received);
            out.push(ProposedValue {
                height,
                round,
                valid_round: f.init.pol_round,
                proposer: f.init.proposer,
                value: hash,
                validity,
            });
        }
        self.future.retain(|(h, _), _| *h >= height);
        out
    }

    /// Builds this node's proposal for (height, round) and the parts that carry it.
    fn propose(
        &mut self,
        height: Height,
        round: Round,
    ) -> Result<(BlockHash, Vec<StreamMessage<ProposalPart>>), AppError> {
        let started = Instant::now();
        let beneficiary = self
            .ledger
            .sequencers()
            .find(|s| s.consensus_key.0 == self.address.0)
            .map(|s| s.signer)
            .unwrap_or_default();
        let pos_txs = self.l1.includable(self.ledger.last_l1(), self.l1_margin, MAX_POS_TXS);
        let ctx = {
            let engine = self.backend.engine();
            let mut ctx = engine.next_context(now_secs(), beneficiary);
            ctx.extra_data = ABytes::from(extra_data(self.ledger.state_hash(), &pos_txs));
            ctx.prevrandao = commit_digest(height.0, engine.head_hash(), self.last_commit.as_ref());
            ctx
        };
        // Building and re-executing blocks is CPU work: block_in_place lets the runtime move the network and
        // RPC tasks to other workers meanwhile.
        // Room for the header and the last commit: validators refuse encoded blocks above MAX_BLOCK_BYTES.
        let max_tx_bytes = MAX_BLOCK_BYTES - 1024 * 1024;
        #[allow(unused_mut)]
        let mut executed = tokio::task::block_in_place(|| self.backend.build_block(ctx, max_tx_bytes));
        #[cfg(feature = "test-faults")]
        let foreign = crate::faults::apply(self.fault, &mut executed, self.backend.engine().spec().chain_id);
        #[cfg(not(feature = "test-faults"))]
        let foreign: Option<metis_execution::RecoveredTx> = None;
        let hash = BlockHash(executed.hash.0);
        let txs = executed.transactions.iter().chain(&foreign).map(|t| &t.envelope);
        let bytes = encode_block(&executed.header, txs, &pos_txs, self.last_commit.as_ref());
        info!(
            round = %round,
            txs = executed.transactions.len(),
            pos_txs = pos_txs.len(),
            gas_used = executed.header.gas_used,
            bytes = bytes.len(),
            build_ms = started.elapsed().as_millis() as u64,
            "proposing block {hash}"
        );
        let init = PartInit {
            height,
            round,
            pol_round: Round::Nil,
            proposer: self.address,
            total_len: 0,
        };
        let parts = self.stream_parts(init, &bytes);
        let c = Candidate {
            executed,
            pos_txs,
            last_commit: self.last_commit.clone(),
            encoded: bytes,
            round,
            proposer: self.address,
            validity: Validity::Valid,
            seen: started,
        };
        self.keep(height, hash, c);
        Ok((hash, parts))
    }

    fn stream_parts(&self, mut init: PartInit, bytes: &[u8]) -> Vec<StreamMessage<ProposalPart>> {
        init.total_len = bytes.len() as u32;
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(|c| c.to_vec()).collect();
        let sig = self.signer.sign_bytes(&stream_digest(&init, &chunks));
        let mut id = Vec::with_capacity(44);
        id.extend_from_slice(&init.height.0.to_be_bytes());
        id.extend_from_slice(&init.round.as_i64().to_be_bytes());
        id.extend_from_slice(&self.address.0[..8]);
        let stream_id = StreamId::new(Bytes::from(id));
        let mut out = Vec::with_capacity(chunks.len() + 3);
        let mut seq = 0u64;
        let mut push = |content| {
            out.push(StreamMessage::new(stream_id.clone(), seq, content));
            seq += 1;
        };
        push(StreamContent::Data(ProposalPart::Init(init)));
        for c in chunks {
            push(StreamContent::Data(ProposalPart::Data(c)));
        }
        push(StreamContent::Data(ProposalPart::Fin(sig)));
        push(StreamContent::Fin);
        out
    }

    /// Adds one streamed part; when the stream is complete and authentic, validates the block.
    fn on_part(&mut self, peer: PeerId, msg: StreamMessage<ProposalPart>) -> Option<ProposedValue<MetisContext>> {
        let key = (peer, msg.stream_id.clone());
        if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAMS {
            let oldest = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.streams.remove(&k);
            }
        }
        let s = self.streams.entry(key.clone()).or_default();
        s.started.get_or_insert_with(Instant::now);
        if msg.sequence > (MAX_BLOCK_BYTES / CHUNK) as u64 + 4 {
            warn!(%peer, seq = msg.sequence, "proposal stream too long, dropped");
            self.streams.remove(&key);
            return None;
        }
        match msg.content {
            StreamContent::Fin => s.fin_seq = Some(msg.sequence),
            StreamContent::Data(part) => {
                if let ProposalPart::Data(d) = &part {
                    s.bytes += d.len();
                }
                if let ProposalPart::Init(i) = &part {
                    s.init = Some(i.clone());
                }
                s.parts.insert(msg.sequence, part);
            }
        }
        if s.bytes > MAX_BLOCK_BYTES {
            warn!(%peer, "proposal stream exceeds the block size limit, dropped");
            self.streams.remove(&key);
            return None;
        }
        let fin = s.fin_seq?;
        if s.parts.len() as u64 != fin || s.init.is_none() {
            return None;
        }
        let s = self.streams.remove(&key)?;
        self.complete_stream(s)
    }

    fn complete_stream(&mut self, s: PartialStream) -> Option<ProposedValue<MetisContext>> {
        let init = s.init?;
        let mut chunks = Vec::new();
        let mut sig = None;
        for (i, (_, p)) in s.parts.into_iter().enumerate() {
            match p {
                ProposalPart::Init(_) if i == 0 => {}
                ProposalPart::Data(d) if sig.is_none() && i > 0 => chunks.push(d),
                ProposalPart::Fin(f) if sig.is_none() && i > 0 => sig = Some(f),
                _ => {
                    warn!(height = init.height.0, "malformed proposal stream, dropped");
                    return None;
                }
            }
        }
        let sig = sig?;
        // Authentic: signed by the key the Init names (whether that proposer is scheduled is checked next).
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&init.proposer.0) else {
            return None;
        };
        if !verify(&key, &stream_digest(&init, &chunks), &sig) {
            warn!(height = init.height.0, proposer = %init.proposer, "proposal stream with a bad signature, dropped");
            return None;
        }
        let bytes: Vec<u8> = chunks.concat();
        if bytes.len() != init.total_len as usize {
            return None;
        }
        // Senders gossip has not delivered yet are recovered here: CPU work, off the async workers.
        let backend = &self.backend;
        let decoded = tokio::task::block_in_place(|| {
            BlockData::decode_with(&bytes, |hashes| {
                let pool = backend.pool();
                hashes.iter().map(|h| pool.get(h).cloned()).collect()
            })
        });
        let data = match decoded {
            Ok(d) => d,
            Err(e) => {
                warn!(height = init.height.0, proposer = %init.proposer, error = %e, "proposal does not decode");
                return None;
            }
        };
        // The height consensus is on: between Decided and Finalized that is still the decided one, and a
        // proposal for the next height (from a node that moved on first) waits until we start it.
        let next = self.set.as_ref().map(|(h, _)| *h).unwrap_or_else(|| self.next_height());
        if init.height > next {
            if init.height.0 <= next.0 + FUTURE_HEIGHTS {
                let r = init.round.as_u32().unwrap_or(0);
                self.future.insert(
                    (init.height, r),
                    Future {
                        init,
                        data,
                        encoded: bytes,
                        received: Instant::now(),
                    },
                );
            }
            return None;
        }
        if init.height < next {
            return None;
        }
        let (hash, validity) = self.validate(init.height, init.round, init.proposer, data, bytes, Instant::now());
        Some(ProposedValue {
            height: init.height,
            round: init.round,
            valid_round: init.pol_round,
            proposer: init.proposer,
            value: hash,
            validity,
        })
    }

    /// Checks a block proposed for the next height in `round` by `proposer`, and keeps it (valid or not) so a
    /// decision on it can be committed. Returns its hash and verdict.
    fn validate(
        &mut self,
        height: Height,
        round: Round,
        proposer: Address,
        data: BlockData,
        encoded: Vec<u8>,
        seen: Instant,
    ) -> (BlockHash, Validity) {
        let hash = BlockHash(data.header.hash_slow().0);
        if let Some(c) = self.candidates.get(&hash) {
            return (hash, c.validity);
        }
        let started = Instant::now();
        let txs = data.txs.len();
        let last_commit = data.last_commit.clone();
        let pos_txs = data.pos_txs.clone();
        match tokio::task::block_in_place(|| self.check(height, round, proposer, data)) {
            Ok(executed) => {
                debug!(
                    round = %round,
                    %proposer,
                    txs,
                    exec_ms = started.elapsed().as_millis() as u64,
                    "valid proposal {hash}"
                );
                // What the propose timeout must cover: from this round's start to here, proposal checked.
                if let Some((h, r, at)) = self.round_started {
                    if h == height && r == round && proposer != self.address {
                        self.proposal_delay.observe(executed.header.gas_used, at.elapsed());
                    }
                }
                let c = Candidate {
                    executed,
                    pos_txs,
                    last_commit,
                    encoded,
                    round,
                    proposer,
                    validity: Validity::Valid,
                    seen,
                };
                self.keep(height, hash, c);
                (hash, Validity::Valid)
            }
            Err(reason) => {
                warn!(round = %round, %proposer, %reason, "invalid proposal {hash}");
                (hash, Validity::Invalid)
            }
        }
    }

    fn check(&self, height: Height, round: Round, proposer: Address, data: BlockData) -> Result<ExecutedBlock, String> {
        let Some((set_height, set)) = &self.set else {
            return Err("no height in progress".into());
        };
        if *set_height != height {
            return Err(format!("for height {height}, deciding {set_height}"));
        }
        let scheduled = set.proposer(round.as_u32().unwrap_or(0));
        if scheduled.address != proposer {
            return Err(format!(
                "proposer {proposer} is not scheduled for round {round} ({})",
                scheduled.address
            ));
        }
        let h = &data.header;
        if h.number != height.0 {
            return Err(format!("block number {} at height {height}", h.number));
        }
        let engine = self.backend.engine();
        let ledger_hash = self.ledger.state_hash();
        if h.extra_data.as_ref() != extra_data(ledger_hash, &data.pos_txs).as_slice() {
            return Err(format!(
                "extra data {} is not our ledger hash {ledger_hash} and the root of the block's PoS transactions",
                h.extra_data
            ));
        }
        self.check_pos_txs(&data.pos_txs)?;
        match (&data.last_commit, &self.head_set) {
            (None, None) if height.0 == 1 => {}
            (Some(c), Some(set)) => {
                verify_commit(c, height.0 - 1, engine.head_hash(), set).map_err(|e| e.to_string())?
            }
            _ => return Err("last commit missing or unexpected".into()),
        }
        let digest = commit_digest(height.0, engine.head_hash(), data.last_commit.as_ref());
        if h.mix_hash != digest {
            return Err(format!(
                "mix hash {} is not the last-commit digest {digest}",
                h.mix_hash
            ));
        }
        let expected_beneficiary = self
            .ledger
            .sequencer(scheduled.sequencer)
            .map(|s| s.signer)
            .unwrap_or_default();
        if h.beneficiary != expected_beneficiary {
            return Err(format!(
                "beneficiary {} is not the proposer's signer {expected_beneficiary}",
                h.beneficiary
            ));
        }
        let parent_ts = engine.head().timestamp;
        if h.timestamp > parent_ts + 1 && h.timestamp > now_secs() + MAX_FUTURE_DRIFT_SECS {
            return Err(format!("timestamp {} is in the future", h.timestamp));
        }
        engine.validate(h, data.txs).map_err(|e| e.to_string())
    }

    /// Whether this node's L1 view holds every one of `pos_txs` (same event, same position, same block).
    fn l1_view_has(&self, pos_txs: &[PosTx]) -> bool {
        pos_txs.iter().all(|t| self.l1.confirms(t))
    }

    /// A block's PoS transactions must be exactly the next L1 events after the ledger's cursor, as this node's
    /// own L1 view has them: none altered, unknown, reordered, or skipped (a skipped event could never be
    /// applied after a later one).
    fn check_pos_txs(&self, pos_txs: &[PosTx]) -> Result<(), String> {
        if pos_txs.is_empty() {
            return Ok(());
        }
        for (i, t) in pos_txs.iter().enumerate() {
            if !self.l1.confirms(t) {
                return Err(format!(
                    "PoS transaction {i} ({} at L1 block {} log {}) is not in this node's L1 view",
                    t.event.name(),
                    t.position.block_number,
                    t.position.log_index
                ));
            }
        }
        let expected = self.l1.next_events(self.ledger.last_l1(), pos_txs.len());
        if expected.as_slice() != pos_txs {
            return Err("PoS transactions are not the next L1 events in order".into());
        }
        Ok(())
    }

    fn decide(
        &mut self,
        cert: &CommitCertificate<MetisContext>,
        extensions: &malachitebft_core_types::VoteExtensions<MetisContext>,
    ) -> Result<(), AppError> {
        let decided_at = Instant::now();
        let height = cert.height;
        let Some(c) = self.candidates.remove(&cert.value_id) else {
            return Err(AppError::UnknownDecided(cert.value_id));
        };
        let Some((_, set)) = self.set.clone() else {
            return Err(AppError::Corrupt("decision without a height in progress".into()));
        };
        let round = cert.round.as_u32().unwrap_or(0);
        let proposer = set.proposer(round).sequencer;
        let mut ledger = Ledger::clone(&self.ledger);
        for t in &c.pos_txs {
            ledger.apply_l1_event(t)?;
            info!(
                event = t.event.name(),
                l1_block = t.position.block_number,
                log = t.position.log_index,
                "L1 event applied"
            );
        }
        // Key messages the block carries (the parent's precommit extensions); at a round's last height its
        // outcome goes into the ledger with this block.
        let key_result = self.keys.on_block(&self.ledger, height.0, c.last_commit.as_ref());
        let mut completed = None;
        if let Some((outcome, done)) = key_result {
            ledger
                .finish_key_round(height.0, outcome)
                .map_err(|e| AppError::Corrupt(format!("key round: {e}")))?;
            completed = done;
        }
        ledger.apply_block(&BlockInfo {
            height: height.0,
            round,
            proposer,
            seed: c.executed.header.mix_hash,
            timestamp: c.executed.header.timestamp,
            txs: c.executed.transactions.len() as u64,
        })?;
        // Stored with its vote extensions: sync serves it, and Malachite refuses a certificate of a height whose
        // policy required extensions without them.
        let wire = WireCertificate::with_extensions(cert, extensions);
        let cert_bytes = borsh::to_vec(&wire).unwrap_or_default();
        // Old records leave the ledger for the store, in this same commit: the ledger written with every block
        // stays bounded however long the chain runs.
        let history = ledger.take_history(self.history_keep);
        let history_rows = metis_chain::history::rows(self.backend.engine().store(), &history);
        let ledger_bytes = ledger.to_bytes();
        let ledger_hash = ledger.state_hash();
        let set_bytes = set_record(&set);
        let (ck, vk, lk) = (
            schema::cert(height.0),
            schema::valset(height.0),
            schema::carried(height.0),
        );
        let carried = borsh::to_vec(&c.last_commit).unwrap_or_default();
        let txs = c.executed.transactions.len();
        let pk = schema::pos_txs(height.0);
        let pos_bytes = borsh::to_vec(&c.pos_txs.iter().map(PosTx::to_bytes).collect::<Vec<_>>()).unwrap_or_default();
        let mut meta: Vec<(&str, &[u8])> = vec![
            (schema::LEDGER, &ledger_bytes),
            (schema::LEDGER_HASH, ledger_hash.as_slice()),
            (&ck, &cert_bytes),
            (&vk, &set_bytes),
            (&lk, &carried),
        ];
        if !c.pos_txs.is_empty() {
            meta.push((&pk, &pos_bytes));
        }
        let output_bytes = completed.as_ref().map(|d| crate::keys::encode_output(&d.output));
        if let Some(b) = &output_bytes {
            meta.push((schema::KEY_OUTPUT, b));
        }
        // A batch this block cut: stored with it, so the signer (now, or after a restart) derives its header.
        let cut = ledger.batches().cut_at(height.0);
        let cut_key = cut.map(|c| schema::batch_cut(c.index));
        let cut_bytes = cut.map(|c| schema::encode_cut(c.first, c.last));
        if let (Some(k), Some(b)) = (&cut_key, &cut_bytes) {
            meta.push((k, b));
        }
        // A reward report this block made: stored with it, for the API and the signer.
        let report = ledger.rewards().report_at(height.0);
        let report_key = report.as_ref().map(|r| schema::reward(r.batch_id));
        let report_bytes = report.as_ref().map(|r| serde_json::to_vec(r).unwrap_or_default());
        if let (Some(k), Some(b)) = (&report_key, &report_bytes) {
            meta.push((k, b));
        }
        for (k, v) in &history_rows {
            meta.push((k, v));
        }
        let ledger = Arc::new(ledger);
        // The signer and the poster follow the chain's commits: the new key (if a round completed) and the
        // ledger, whose batch cut and reward report at this height they sign and post.
        let committed = metis_chain::Committed {
            height: height.0,
            ledger: ledger.clone(),
            decided_at,
            key: completed.as_ref().and_then(|_| self.signing_key_for(&ledger)),
        };
        self.backend.commit_decided(c.executed, &meta, committed)?;
        let epoch_before = self.ledger.current_epoch().id;
        self.last_decision = Some(c.seen.min(Instant::now()));
        self.ledger = ledger;
        if let (Some(d), Some(sink)) = (&completed, &self.share_sink) {
            if let (Some(share), Some(k)) = (&d.share, &self.ledger.keys().current) {
                sink(k.round, share);
            }
        }
        // A round the block opened starts here, so this node's first messages ride on its next precommit.
        self.keys.ensure_round(&self.ledger);
        self.head_set = Some(set);
        self.last_commit = Some(wire);
        self.candidates.clear();
        if let Some(store) = &self.proposals {
            store.prune(height);
        }
        self.streams
            .retain(|_, s| s.init.as_ref().is_none_or(|i| i.height > height));
        let e = self.ledger.current_epoch();
        if e.id != epoch_before {
            if let Some(change) = self.ledger.set_changes().last().filter(|c| c.epoch == e.id) {
                info!(
                    epoch = e.id,
                    joined = ?change.joined,
                    left = ?change.left,
                    reweighted = ?change.reweighted,
                    validators = ?self.ledger.validators(),
                    "validator set changed"
                );
            }
            info!(
                epoch = e.id,
                producer = e.producer,
                reason = ?e.reason,
                first_block = e.first_block,
                "new epoch"
            );
        }
        info!(
            round,
            proposer,
            txs,
            signatures = cert.commit_signatures.len(),
            elapsed_ms = self
                .height_started
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or_default(),
            "decided {}",
            cert.value_id
        );
        Ok(())
    }

    fn decided_values(&self, from: u64, to: u64) -> Result<Vec<RawDecidedValue<MetisContext>>, AppError> {
        let engine = self.backend.engine();
        let store = engine.store();
        let to = to
            .min(engine.head().number)
            .min(from.saturating_add(MAX_SYNC_BATCH - 1));
        let mut out = Vec::new();
        for h in from.max(1)..=to {
            let (Some(header), Some(txs), Some(cert), Some(carried)) = (
                store.header(h)?,
                store.transactions(h)?,
                store.meta(&schema::cert(h))?,
                store.meta(&schema::carried(h))?,
            ) else {
                break;
            };
            let pos_txs: Vec<PosTx> = match store.meta(&schema::pos_txs(h))? {
                None => Vec::new(),
                Some(b) => Vec::<Vec<u8>>::try_from_slice(&b)
                    .ok()
                    .and_then(|v| v.iter().map(|t| PosTx::from_bytes(t)).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| AppError::Corrupt(schema::pos_txs(h)))?,
            };
            let cert = WireCertificate::try_from_slice(&cert).map_err(|_| AppError::Corrupt(schema::cert(h)))?;
            let last_commit = Option::<WireCertificate>::try_from_slice(&carried)
                .map_err(|_| AppError::Corrupt(schema::carried(h)))?;
            let data = encode_block(&header, txs.iter().map(|(_, e)| e), &pos_txs, last_commit.as_ref());
            out.push(RawDecidedValue::new(
                Bytes::from(data),
                ExtendedCommitCertificate::from(cert),
            ));
        }
        Ok(out)
    }
}
