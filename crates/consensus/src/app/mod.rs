//! The Malachite application: answers consensus with L2 blocks. One file per step of a height:
//!
//! - [`height`]: the parameters of each height (validator set, schedule, stretched propose timeout) and when
//!   it starts (pacing).
//! - [`propose`]: build a block on the head from the mempool, keep it, stream it as proposal parts.
//! - [`stream`]: reassemble a peer's stream and check its signature.
//! - [`validate`]: the rules a proposed block must meet (a pure function of the block, the ledger, the L1 view
//!   and the clock), then re-execution.
//! - [`decide`]: apply the block to the PoS ledger (pure) and commit block, ledger and certificate in one store
//!   transaction through the chain, which announces it to the signer, the poster and the RPC.
//! - [`sync`]: serve decided blocks with their certificates; validate synced blocks the same way as proposals.

mod decide;
pub mod evidence;
mod height;
mod propose;
mod stream;
mod sync;
pub mod validate;

use crate::pacing::ProposalDelay;
use crate::proposals::{ProposalStore, StoredProposal};
use alloy_primitives::B256;
use malachitebft_app_channel::app::engine::host::Next;
pub use malachitebft_app_channel::app::types::core::LinearTimeouts;
use malachitebft_app_channel::app::types::core::{Round, Validity};
use malachitebft_app_channel::app::types::LocallyProposedValue;
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use metis_chain::Chain;
use metis_execution::executor::ExecutedBlock;
use metis_pos::{L1Source, Ledger, NoL1, PosTx};
use metis_storage::schema;
use metis_wire::block::BlockData;
use metis_wire::codec::WireCertificate;
use metis_wire::evidence::Evidence;
use metis_wire::signing::ConsensusSigner;
use metis_wire::types::{Address, BlockHash, Height, MetisContext, ProposalPart, ValidatorSet};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{Receiver, Sender};
use tracing::{debug, info, info_span, warn, Instrument};

/// Bytes of the encoded block per Data part.
const CHUNK: usize = 512 * 1024;
/// Rounds of the height in progress whose first stream is kept for the double-proposal check.
const MAX_STREAM_CLAIMS: usize = 256;
/// Decided values served per sync request at most (the node asks its peers for two at a time), and their bytes:
/// a request is answered on the consensus loop, so a peer must not make it read and encode much.
const MAX_SYNC_BATCH: u64 = 2;
const MAX_SYNC_BYTES: usize = 24 * 1024 * 1024;

/// Records of each kind the ledger keeps before handing older ones to the store (see `metis_chain::archive`).
pub const DEFAULT_HISTORY_KEEP: usize = 256;

/// Keeps a new key share (encrypted at rest by the node); given the round it belongs to.
pub type ShareSink = Box<dyn Fn(u64, &metis_mpc::Share) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("execution: {0}")]
    Engine(#[from] metis_execution::EngineError),
    #[error("store: {0}")]
    Store(#[from] metis_storage::StoreError),
    #[error("PoS ledger: {0}")]
    Ledger(#[from] metis_pos::LedgerError),
    #[error("validator set: {0}")]
    Set(#[from] metis_wire::types::SetError),
    #[error("block: {0}")]
    Block(#[from] metis_wire::block::BlockDataError),
    #[error("decided value {0} is unknown to this node")]
    UnknownDecided(BlockHash),
    #[error("stored record {0} is corrupt")]
    Corrupt(String),
    /// The disk refused a write or a read (full, read-only, gone): not corruption.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("consensus channel closed")]
    Closed,
    #[error("asked to propose, but this node's consensus key is no sequencer's in the ledger")]
    NotASequencer,
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
    /// Equivocation evidence the block carries, and the offences it proves (checked before voting).
    evidence: Vec<Evidence>,
    misbehaviour: Vec<metis_pos::Misbehaviour>,
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
    /// Proposal streams being reassembled, complete ones for heights not reached yet, refused ones.
    inbound: stream::Inbound,
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
    /// An error met while answering consensus in a way that cannot return it (a verdict): the app stops with it
    /// after the answer.
    failed: Option<AppError>,
    history_keep: usize,
    #[cfg(feature = "test-faults")]
    fault: Option<crate::faults::FaultSpec>,
    /// The last round the stream-flood fault published for.
    #[cfg(feature = "test-faults")]
    flood_round: u32,
    proposals: Option<ProposalStore>,
    /// A height decided on a block not held here, to be restarted (and synced).
    restart: Option<Height>,
    /// What this node's L1 listener has read ([`NoL1`] without an L1 endpoint: such a node proposes no PoS
    /// transactions and votes for no block that carries any).
    l1: Arc<dyn L1Source>,
    /// L1 blocks an event must sit below this node's view before it proposes it.
    l1_margin: u64,
    /// The threshold key's rounds and this node's share.
    keys: metis_keyrounds::KeyEngine,
    share_sink: Option<ShareSink>,
    /// Verified equivocation evidence waiting for a block, by hash (bounded: `evidence::MAX_PENDING_EVIDENCE`).
    evidence: BTreeMap<B256, Evidence>,
    /// The first authentic stream of the scheduled proposer per round of the height in progress (bounded:
    /// [`MAX_STREAM_CLAIMS`]): a second one naming another block is a double proposal.
    stream_claims: BTreeMap<(Height, u32), metis_wire::evidence::SignedStreamRecord>,
    /// Evidence to the peers over the gossip links (none in a test without links), and what they send.
    evidence_hub: Option<Arc<metis_net::EvidenceHub>>,
    evidence_from_peers: Option<Receiver<metis_net::evidence::PeerItems>>,
}

/// The next item of an optional channel (never, without one).
async fn next_from<T>(rx: &mut Option<Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The gossip links' evidence hub and what peers send through it.
pub struct EvidenceGossip {
    pub hub: Arc<metis_net::EvidenceHub>,
    pub from_peers: Receiver<metis_net::evidence::PeerItems>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A stored validator set: (sequencer id, consensus key, power) and the proposer schedule.
type SetRecord = (Vec<(u64, [u8; 32], u64)>, Vec<u64>);

/// A stored validator set as the set it records.
fn set_record_to_set((v, schedule): &SetRecord) -> Result<ValidatorSet, AppError> {
    Ok(ValidatorSet::new(v, schedule)?)
}

fn set_record(set: &ValidatorSet) -> SetRecord {
    let v: Vec<(u64, [u8; 32], u64)> = set
        .validators()
        .iter()
        .map(|v| (v.sequencer, v.address.0, v.voting_power))
        .collect();
    let schedule: Vec<u64> = (0..set.validators().len() as u32)
        .map(|r| set.proposer(r).sequencer)
        .collect();
    (v, schedule)
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
        let head = backend.engine().head().number;
        let (ledger, head_set, last_commit) = if head == 0 {
            (genesis_ledger, None, None)
        } else {
            let (ledger, set, cert) = Self::load_head(&backend, head)?;
            (ledger, Some(set), Some(cert))
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
            inbound: stream::Inbound::default(),
            height_started: None,
            last_decision: None,
            proposal_delay: ProposalDelay::default(),
            round_started: None,
            pool_gas_at_start: 0,
            pending_start: None,
            failed: None,
            history_keep: DEFAULT_HISTORY_KEEP,
            #[cfg(feature = "test-faults")]
            fault: None,
            #[cfg(feature = "test-faults")]
            flood_round: 0,
            proposals: None,
            restart: None,
            l1: Arc::new(NoL1),
            l1_margin: 0,
            keys: metis_keyrounds::KeyEngine::new(None, None, None),
            share_sink: None,
            evidence: BTreeMap::new(),
            stream_claims: BTreeMap::new(),
            evidence_hub: None,
            evidence_from_peers: None,
        })
    }

    /// The ledger, validator set and certificate the store holds for head block `head`.
    fn load_head(backend: &Chain, head: u64) -> Result<(Ledger, ValidatorSet, WireCertificate), AppError> {
        let engine = backend.engine();
        let store = engine.store();
        let hash: B256 = store
            .get(schema::LEDGER_HASH)?
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
        let record: SetRecord = store
            .get(&schema::valset(head))?
            .ok_or_else(|| AppError::Corrupt(schema::valset(head)))?;
        let set = set_record_to_set(&record)?;
        let cert: WireCertificate = store
            .get(&schema::cert(head))?
            .ok_or_else(|| AppError::Corrupt(schema::cert(head)))?;
        Ok((ledger, set, cert))
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
        secrets: Option<metis_keyrounds::KeySecrets>,
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
                Some(metis_keyrounds::decode_output(&b).ok_or_else(|| AppError::Corrupt(schema::KEY_OUTPUT.into()))?)
            }
        };
        self.keys = metis_keyrounds::KeyEngine::new(secrets, output, share);
        self.share_sink = sink;
        if let Some(kr) = self.ledger.keys().running.clone() {
            let head = self.backend.engine().head().number;
            for h in kr.start..=head {
                let carried: Option<WireCertificate> = self
                    .backend
                    .engine()
                    .store()
                    .get::<Option<WireCertificate>>(&schema::carried(h))?
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
        let store = ProposalStore::open(dir).map_err(|source| AppError::Io {
            what: format!("opening the proposal store {}", dir.display()),
            source,
        })?;
        let next = self.next_height();
        store.prune(Height(next.0 - 1));
        for p in store.at(next) {
            let Ok(data) = BlockData::decode(&p.block) else {
                continue;
            };
            let offences = evidence::misbehaviour_of(&data.evidence, &self.ledger, &|e| self.offender(e));
            let Ok(misbehaviour) = offences else {
                warn!(
                    height = next.0,
                    "stored proposal's evidence is no longer admissible; dropped"
                );
                continue;
            };
            let BlockData {
                header,
                txs,
                pos_txs,
                evidence,
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
                    evidence,
                    misbehaviour,
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
    /// A block that cannot be stored (a full disk, say) is an error: this node neither votes for it nor
    /// proposes it, and stops.
    fn keep(&mut self, height: Height, hash: BlockHash, c: Candidate) -> Result<(), AppError> {
        if let Some(store) = &self.proposals {
            let p = StoredProposal {
                height,
                round: c.round,
                proposer: c.proposer,
                hash,
                block: c.encoded.clone(),
            };
            store.put(&p).map_err(|source| AppError::Io {
                what: format!("storing proposal {hash} of height {}", height.0),
                source,
            })?;
        }
        self.candidates.insert(hash, c);
        Ok(())
    }

    /// The ledger as of the last decided block.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// Makes this node misbehave as a proposer (tests only).
    #[cfg(feature = "test-faults")]
    pub fn inject_fault(&mut self, fault: crate::faults::FaultSpec) {
        warn!(?fault, "FAULT INJECTION: this node will misbehave");
        self.fault = Some(fault);
    }

    fn next_height(&self) -> Height {
        Height(self.backend.engine().head().number + 1)
    }

    /// Runs until consensus stops.
    pub async fn run(self, channels: Channels<MetisContext>) -> Result<(), AppError> {
        self.serve(channels.consensus, channels.network).await
    }

    /// Answers what consensus sends on `consensus` and publishes proposal parts on `network`, until `consensus`
    /// closes. Malachite's engine holds the other ends in a node; a test can hold them itself.
    pub async fn serve(
        mut self,
        mut consensus: Receiver<AppMsg<MetisContext>>,
        network: Sender<NetworkMsg<MetisContext>>,
    ) -> Result<(), AppError> {
        let mut from_peers = self.evidence_from_peers.take();
        let mut flood = self.flood_interval();
        loop {
            let start_at = self.pending_start.as_ref().map(|(h, at, _)| self.start_time(*h, *at));
            let msg = tokio::select! {
                m = consensus.recv() => m,
                _ = tokio::time::sleep_until(start_at.unwrap_or_else(Instant::now).into()), if start_at.is_some() => {
                    self.start_pending()?;
                    continue;
                }
                Some((peer, items)) = next_from(&mut from_peers) => {
                    let span = info_span!("evidence", peer = %metis_net::PeerKey(peer));
                    span.in_scope(|| self.on_peer_evidence(peer, items));
                    continue;
                }
                _ = next_tick(&mut flood) => {
                    self.flood_streams(&network).await?;
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            let height = self.next_height();
            let span = info_span!("consensus", height = height.0, epoch = self.ledger.current_epoch().id);
            self.handle(msg, &network).instrument(span).await?;
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
        }
        Err(AppError::Closed)
    }

    /// Evidence travels between the sequencers over the gossip links through `hub` (see `evidence.rs`).
    pub fn with_evidence_gossip(mut self, gossip: EvidenceGossip) -> Self {
        self.evidence_hub = Some(gossip.hub);
        self.evidence_from_peers = Some(gossip.from_peers);
        self
    }

    /// One message from consensus, answered by the step it belongs to; proposal parts go out to the network.
    async fn handle(
        &mut self,
        msg: AppMsg<MetisContext>,
        network: &Sender<NetworkMsg<MetisContext>>,
    ) -> Result<(), AppError> {
        let parts = match msg {
            AppMsg::GetValue {
                height, round, reply, ..
            } => {
                let (hash, parts) = self.propose(height, round)?;
                let _ = reply.send(LocallyProposedValue::new(height, round, hash));
                parts
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                address,
                value_id,
            } => self.restream(height, round, valid_round, address, value_id),
            other => return self.answer(other),
        };
        publish(network, parts).await
    }

    /// The messages answered without the network.
    fn answer(&mut self, msg: AppMsg<MetisContext>) -> Result<(), AppError> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let h = self.next_height();
                info!(height = h.0, "consensus ready, starting");
                let _ = reply.send((h, self.params(h, Instant::now())?));
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
            AppMsg::ExtendVote {
                height,
                vote_extension_policy: p,
                reply,
                ..
            } => drop(reply.send(p.is_required().then(|| self.extension(height)).flatten())),
            AppMsg::VerifyVoteExtensions { extensions, reply, .. } => {
                drop(reply.send(verify_extensions(extensions, self.ledger.validators().len())))
            }
            AppMsg::GetHistoryMinHeight { reply } => drop(reply.send(Height(1))),
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => drop(reply.send(self.on_part(published_by.unwrap_or(from), part))),
            AppMsg::Decided {
                certificate,
                extensions,
                reply,
            } => {
                self.on_decided(&certificate, &extensions)?;
                let _ = reply.send(());
            }
            AppMsg::Finalized {
                certificate,
                extensions,
                evidence,
                reply,
            } => {
                self.take_evidence(&evidence);
                self.on_finalized(&certificate, &extensions, reply)?
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
            } => drop(reply.send(self.synced_value(height, round, proposer, &value_bytes))),
            // Handled in `handle`: they publish proposal parts.
            AppMsg::GetValue { .. } | AppMsg::RestreamProposal { .. } => {}
        }
        Ok(())
    }
}

impl App {
    /// This node's key messages for its next precommit; none if they cannot be encoded (the round then goes
    /// on without them, and the log says why).
    fn extension(&self, height: Height) -> Option<Vec<u8>> {
        match self.keys.extension(height.0, self.ledger.validators().len()) {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(error = %e, "cannot encode this node's key messages; this precommit carries none");
                None
            }
        }
    }
}

/// The next tick of `interval`, or never without one.
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl App {
    /// A timer for the stream-flood fault (test builds asked to misbehave so); none otherwise.
    fn flood_interval(&self) -> Option<tokio::time::Interval> {
        #[cfg(feature = "test-faults")]
        if self.fault.is_some_and(|f| f.fault == crate::faults::Fault::StreamFlood) {
            return Some(tokio::time::interval(std::time::Duration::from_millis(10)));
        }
        None
    }

    /// One stream of the flood: a signed Init, a 64 KiB junk block and a Fin for the next height, at the next
    /// round of 0..10,000.
    #[cfg(feature = "test-faults")]
    async fn flood_streams(&mut self, network: &Sender<NetworkMsg<MetisContext>>) -> Result<(), AppError> {
        let next = self.next_height();
        if !self.fault.is_some_and(|f| f.at(next.0)) {
            return Ok(());
        }
        self.flood_round = (self.flood_round + 1) % 10_000;
        let junk = vec![0xab; 64 * 1024];
        let init = metis_wire::types::PartInit {
            height: Height(next.0 + 1),
            round: Round::new(self.flood_round),
            pol_round: Round::Nil,
            proposer: self.address,
            value: BlockHash(alloy_primitives::keccak256(self.flood_round.to_be_bytes()).0),
            total_len: 0,
        };
        let parts = self.stream_parts(init, &junk);
        publish(network, parts).await
    }

    #[cfg(not(feature = "test-faults"))]
    async fn flood_streams(&mut self, _network: &Sender<NetworkMsg<MetisContext>>) -> Result<(), AppError> {
        Ok(())
    }
}

/// Sends proposal parts to the network.
async fn publish(
    network: &Sender<NetworkMsg<MetisContext>>,
    parts: Vec<malachitebft_app_channel::app::streaming::StreamMessage<ProposalPart>>,
) -> Result<(), AppError> {
    for p in parts {
        if network.send(NetworkMsg::PublishProposalPart(p)).await.is_err() {
            return Err(AppError::Closed);
        }
    }
    Ok(())
}

type ExtensionVerdicts = Vec<(
    Address,
    Result<(), malachitebft_app_channel::app::consensus::VoteExtensionError>,
)>;

/// Only well-formed key messages within the cap for a set of `validators` pass; whether each counts is the key
/// round's business.
fn verify_extensions(extensions: Vec<(Address, Vec<u8>)>, validators: usize) -> ExtensionVerdicts {
    extensions
        .into_iter()
        .map(|(a, ext)| match metis_keyrounds::decode_ext(&ext, validators) {
            Ok(_) => (a, Ok(())),
            Err(e) => {
                warn!(validator = %a, error = %e, "malformed vote extension");
                (
                    a,
                    Err(malachitebft_app_channel::app::consensus::VoteExtensionError::InvalidVoteExtension),
                )
            }
        })
        .collect()
}
