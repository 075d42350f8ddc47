//! One sequencer node wired from its parts, in the order data flows: the chain (engine + mempool), the RPC
//! and PoS API on it, the L1 listener's view, the pool's signer and poster following the chain's commits, the
//! authenticated links (transactions, signing messages), and Malachite consensus, which decides the blocks.

pub mod config;
pub mod observe;
pub mod peers;
pub mod shares;
pub mod supervise;

pub use config::{NodeConfigFile, NodeSecrets};

use alloy_primitives::B256;
use malachitebft_app_channel::app::config::{
    ConsensusConfig, DiscoveryConfig, NodeConfig, P2pConfig, PubSubProtocol, ValueSyncConfig,
};
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::Keypair;
use malachitebft_app_channel::{
    ConsensusContext, EngineHandle, NetworkContext, NetworkIdentity, RequestContext, Signer, SyncContext, WalContext,
};
use metis_chain::Chain;
use metis_consensus::app::{App, Timing};
use metis_execution::{ChainSpec, Engine};
use metis_mempool::MempoolConfig;
use metis_net::gossip::{self, GossipConfig};
use metis_pos::{Ledger, Params, Sequencer};
use metis_rpc::{RpcConfig, RpcServer};
use metis_wire::codec::WireCodec;
use metis_wire::signing::{ConsensusSigner, ConsensusVerifier};
use metis_wire::types::{Address, MetisContext};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{info, warn, Instrument};

/// The PoS part of the genesis: ledger parameters, the genesis sequencers, and the seed of epoch 0's election.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PosGenesis {
    pub params: Params,
    pub sequencers: Vec<Sequencer>,
    pub seed: B256,
    /// Where the sequencer set lives on L1 (absent: a static set).
    #[serde(default)]
    pub l1: Option<L1Genesis>,
}

/// The L1 contracts the sequencer set follows, and the first L1 block after the genesis set was read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct L1Genesis {
    pub chain_id: u64,
    pub locking_pool: alloy_primitives::Address,
    pub locking_info: alloy_primitives::Address,
    /// Where batches go (absent: this chain's batches are cut but not signed).
    #[serde(default)]
    pub batch_inbox: Option<alloy_primitives::Address>,
    /// PosParams, whose changes (made by governance) the ledger applies (absent: the parameters never change).
    #[serde(default)]
    pub pos_params: Option<alloy_primitives::Address>,
    pub start_block: u64,
}

/// This node's L1 endpoint and how it reads it.
#[derive(Clone, Debug)]
pub struct L1Settings {
    pub rpc: String,
    /// Blocks on top of an event's block before it counts (12 on Ethereum).
    pub confirmations: u64,
    pub poll_interval: Duration,
    /// L1 blocks an event must sit below this node's view before it proposes it (time for the other
    /// validators' listeners to read it too).
    pub margin: u64,
    pub max_range: u64,
    /// Where the dashboard links L1 transactions (`{explorer}/tx/{hash}`).
    pub explorer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("opening the chain: {0}")]
    Engine(#[from] metis_execution::EngineError),
    #[error(transparent)]
    App(#[from] metis_consensus::AppError),
    #[error("PoS genesis: {0}")]
    Ledger(#[from] metis_pos::LedgerError),
    #[error("binding the RPC on {addr}: {source}")]
    Rpc { addr: SocketAddr, source: std::io::Error },
    #[error("transaction gossip: {0}")]
    Gossip(#[from] gossip::GossipError),
    #[error("L1: {0}")]
    L1(String),
    #[error("threshold key store: {0}")]
    Keys(String),
    #[error("p2p address {0}: {1}")]
    Multiaddr(String, String),
    #[error("consensus engine: {0}")]
    Consensus(String),
    #[error("metrics endpoint on {addr}: {reason}")]
    Metrics { addr: SocketAddr, reason: String },
}

#[derive(Clone, Debug)]
pub struct MalachiteConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for MalachiteConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }
    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }
    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }
    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }
    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

pub struct NodeSettings {
    pub moniker: String,
    pub data_dir: PathBuf,
    pub spec: ChainSpec,
    pub pos: PosGenesis,
    /// The ed25519 consensus key (32-byte seed).
    pub key: ed25519_dalek::SigningKey,
    /// The signing guard of that key (see `metis_consensus::guard`): next to the key, outside the data dir, so a
    /// data dir restored from an older copy cannot make the key sign twice for one slot.
    pub signing_guard: PathBuf,
    pub p2p_listen: String,
    pub p2p_peers: Vec<String>,
    /// Any libp2p peer may connect, not only `p2p_peers` and the ledger's sequencers.
    pub p2p_open: bool,
    pub pubsub: config::Pubsub,
    /// `[p2p] connections_per_ip` (None: [`connections_per_ip`] of the peers).
    pub p2p_connections_per_ip: Option<usize>,
    /// A sequencer, or an RPC node (follows the chain without signing, forwards its users' transactions).
    pub role: config::Role,
    /// The RPC nodes this sequencer lets follow it and forward transactions.
    pub followers: metis_net::FollowerPolicy,
    pub rpc: RpcConfig,
    pub gossip_listen: SocketAddr,
    pub gossip_peers: Vec<SocketAddr>,
    pub timing: Timing,
    pub mempool: MempoolConfig,
    /// The L1 endpoint (required when the genesis names L1 contracts).
    pub l1: Option<L1Settings>,
    /// The DKG key this sequencer registered on L1 (dealings to it are sealed to it); None: observe key rounds.
    pub dkg: Option<metis_mpc::seal::DkgSecret>,
    /// Encrypts this node's key shares at rest (data/keys/share-ROUND.key); None: shares are kept in memory only.
    pub passphrase: Option<metis_keystore::Passphrase>,
    /// Ended epochs, set changes and L1 events the ledger keeps before it hands them to the store.
    pub history_keep: usize,
    /// Where Prometheus scrapes this node's metrics (none: no metrics endpoint).
    pub metrics: Option<SocketAddr>,
    /// State history kept for reads at older blocks.
    pub state_history: metis_storage::StateHistory,
    /// Post the pool's batches and reward reports to L1 in this node's turns (needs `l1` and a batch inbox).
    pub poster: Option<metis_poster::PosterSettings>,
}

pub struct RunningNode {
    pub rpc: RpcServer,
    pub gossip_addr: SocketAddr,
    pub backend: Arc<Chain>,
    pub app: JoinHandle<Result<(), metis_consensus::AppError>>,
    engine: EngineHandle,
    /// Set when the node started behind its signing guard (following without signing): resolves with the
    /// guard's height once the chain is past it; the node must then be started again to sign.
    pub caught_up: Option<tokio::sync::oneshot::Receiver<u64>>,
    /// The L1 listener, the pool's signer and the poster: `tasks.ended()` resolves if one of them ends (which
    /// none does on its own), and the node must then stop rather than run on without it.
    pub tasks: supervise::Supervisor,
}

impl RunningNode {
    /// Stops consensus and the RPC (graceful shutdown: the store is consistent after every block anyway).
    pub async fn shutdown(self) {
        self.rpc.stop();
        self.tasks.abort_all();
        self.engine.actor.stop(Some("shutdown".into()));
        self.app.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.engine.handle).await;
    }
}

fn multiaddr(s: &str) -> Result<malachitebft_app_channel::app::net::Multiaddr, NodeError> {
    s.parse::<malachitebft_app_channel::app::net::Multiaddr>()
        .map_err(|e| NodeError::Multiaddr(s.to_string(), e.to_string()))
}

/// Malachite only logs a p2p listen failure and then waits forever for a network that never comes up: check the
/// TCP address can be bound first, so a taken port is a clear error at start.
fn check_p2p_listen(addr: &str) -> Result<(), NodeError> {
    let parts: Vec<&str> = addr.split('/').collect();
    let field = |name: &str| parts.iter().position(|p| *p == name).and_then(|i| parts.get(i + 1));
    let ip = field("ip4")
        .or_else(|| field("ip6"))
        .and_then(|a| a.parse::<std::net::IpAddr>().ok());
    let port = field("tcp").and_then(|p| p.parse::<u16>().ok());
    if let (Some(ip), Some(port)) = (ip, port) {
        std::net::TcpListener::bind((ip, port))
            .map_err(|e| NodeError::Multiaddr(addr.to_string(), format!("cannot listen: {e}")))?;
    }
    Ok(())
}

/// Starts a node: each step wires one part, in the order data flows through them.
pub async fn start(mut s: NodeSettings) -> Result<RunningNode, NodeError> {
    let address = Address(s.key.verifying_key().to_bytes());
    check_p2p_listen(&s.p2p_listen)?;
    // The recorder comes first: what the parts record while they start counts.
    let recorder = match s.metrics {
        Some(addr) => Some((
            addr,
            observe::install_recorder().map_err(|reason| NodeError::Metrics { addr, reason })?,
        )),
        None => None,
    };
    if !s.pos.sequencers.iter().any(|q| q.consensus_key.0 == address.0) {
        // A sequencer that locks after genesis: it follows the chain (sync) until the ledger makes it a
        // validator, and votes from then on.
        info!(address = ?address, "not a genesis sequencer: following the chain until the ledger adds this key");
    }
    let chain_id = s.spec.chain_id;
    let chain = Chain::new(
        Engine::open_with(&s.data_dir.join("chain"), s.spec.clone(), s.state_history)?,
        s.mempool.clone(),
    );
    let consensus_signer = Arc::new(ConsensusSigner::new(s.key.clone()));
    let (dkg, passphrase) = (s.dkg.take(), s.passphrase.take());
    let mut app = open_app(&s, &chain, consensus_signer.clone(), dkg, passphrase)?;
    let view = metis_l1::SharedView::default();
    let l1 = start_listener(&s, &chain, &view)?;
    if let Some(l) = &s.l1 {
        app = app.with_l1_view(Arc::new(view.clone()), l.margin);
    }
    // Test builds only: the test that starts this node's process asks it to misbehave.
    #[cfg(feature = "test-faults")]
    let fault = metis_consensus::faults::from_env(&s.moniker).map_err(NodeError::Consensus)?;
    #[cfg(feature = "test-faults")]
    if let Some(f) = fault.filter(|f| !f.fault.in_engine()) {
        app.inject_fault(f);
    }
    let (hub, from_peers) = metis_net::SignHub::new();
    let (evidence_hub, evidence_from_peers) = metis_net::EvidenceHub::new();
    app = app.with_evidence_gossip(metis_consensus::app::EvidenceGossip {
        hub: evidence_hub.clone(),
        from_peers: evidence_from_peers,
    });
    let signer_status = metis_signer::SharedSignerStatus::default();
    let rpc_node = s.role == config::Role::Rpc;
    let pool_signer = if rpc_node {
        None
    } else {
        start_signer(&s, &chain, &app, hub.clone(), from_peers, signer_status.clone())
    };
    let poster_status = metis_poster::SharedPosterStatus::default();
    let poster = start_poster(&s, &chain, poster_status.clone())?;
    let readiness: Arc<dyn metis_rpc::http::Probe> = Arc::new(observe::Readiness {
        chain: chain.clone(),
        l1: s.l1.as_ref().map(|_| view.clone()),
        block_time: s.timing.block_time,
    });
    let metrics = match recorder {
        Some((addr, handle)) => {
            observe::serve(addr, handle.clone(), readiness.clone())?;
            Some(handle)
        }
        None => None,
    };
    let rpc_addr = s.rpc.addr;
    let rpc = metis_rpc::start_with(
        chain.clone(),
        s.rpc.clone(),
        vec![metis_rpc::pos::module(
            chain.clone(),
            signer_status,
            Arc::new(Status {
                view,
                poster: poster_status,
                explorer: s.l1.as_ref().and_then(|l| l.explorer.clone()),
            }),
        )
        .into()],
        metis_rpc::http::Routes {
            probe: readiness,
            dashboard: true,
        },
    )
    .await
    .map_err(|source| NodeError::Rpc { addr: rpc_addr, source })?;
    let gossip_addr = start_gossip(&s, chain_id, &chain, hub, evidence_hub).await?;
    let (signer, behind) = if rpc_node {
        info!("RPC node: following the chain without signing, forwarding transactions to the sequencers");
        (None, None)
    } else {
        let guard = metis_consensus::guard::SigningGuard::open(&s.signing_guard)
            .map_err(|e| NodeError::Consensus(e.to_string()))?;
        let behind = behind_guard(&guard, chain.engine().head().number);
        (signing(&s, &chain, guard, behind), behind)
    };
    let caught_up = behind.map(|g| watch_guard(&chain, g));
    #[cfg(feature = "test-faults")]
    let (channels, engine) = match (fault.filter(|f| f.fault.in_engine()), signer) {
        (Some(f), Some(signer)) => start_byzantine_consensus(&s, address, &consensus_signer, signer, f).await?,
        (_, signer) => start_consensus(&s, address, &consensus_signer, signer).await?,
    };
    #[cfg(not(feature = "test-faults"))]
    let (channels, engine) = start_consensus(&s, address, &consensus_signer, signer).await?;
    info!(address = ?address, rpc = %rpc.local_addr, gossip = %gossip_addr, "node started");
    if !libp2p_open(&s) {
        let me = peers::peer_id_of(&B256::from(s.key.verifying_key().to_bytes()))
            .ok_or_else(|| NodeError::Consensus("this node's consensus key is not an ed25519 point".into()))?;
        let followers = if rpc_node {
            Default::default()
        } else {
            s.followers
                .keys
                .iter()
                .filter_map(|k| peers::peer_id_of(&B256::from(*k)))
                .collect()
        };
        peers::follow_ledger(chain.clone(), channels.net_requests.clone(), me, followers);
    }
    if let Some(handle) = metrics {
        observe::sample(chain.clone(), channels.net_requests.clone(), handle);
    }
    let app = tokio::spawn(app.run(channels));
    let mut tasks = supervise::Supervisor::default();
    for (name, task) in [("L1 listener", l1), ("pool signer", pool_signer), ("poster", poster)] {
        if let Some(t) = task {
            tasks.add(name, t);
        }
    }
    Ok(RunningNode {
        rpc,
        gossip_addr,
        backend: chain,
        app,
        engine,
        caught_up,
        tasks,
    })
}

/// The height the key last signed at, when it is beyond the next height of this data dir: votes for the heights
/// in between could differ from what the key signed there, so this node must not vote until it is past them.
/// (The height in progress itself is fine: Malachite's WAL replays what was signed in it.)
fn behind_guard(guard: &metis_consensus::guard::SigningGuard, head: u64) -> Option<u64> {
    guard.last().map(|l| l.height).filter(|g| *g > head.saturating_add(1))
}

/// Resolves once the chain is past the height the signing guard names (the node then restarts as a validator).
fn watch_guard(chain: &Arc<Chain>, until: u64) -> tokio::sync::oneshot::Receiver<u64> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut blocks = chain.subscribe_blocks();
    let chain = chain.clone();
    tokio::spawn(async move {
        loop {
            if chain.engine().head().number >= until {
                info!(
                    height = until,
                    "past the signing guard's height: restarting to sign again"
                );
                let _ = tx.send(until);
                return;
            }
            // Any new block (or a lagged receiver) is a reason to look at the head again.
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = blocks.recv().await {
                return;
            }
        }
    });
    rx
}

/// What the PoS API shows of the L1 listener's view and the poster.
struct Status {
    view: metis_l1::SharedView,
    poster: metis_poster::SharedPosterStatus,
    explorer: Option<String>,
}

impl metis_rpc::pos::NodeStatus for Status {
    fn l1(&self, last_applied: Option<(u64, u64)>) -> serde_json::Value {
        let v = self.view.read();
        serde_json::json!({
            "synced_to": v.synced_to,
            // Read and not applied yet (applied ones are forgotten).
            "events_held": v.len(),
            "not_yet_applied": v.after(last_applied).count(),
            "head": v.l1_head,
            "explorer": self.explorer,
        })
    }

    fn poster(&self) -> serde_json::Value {
        serde_json::to_value(&*self.poster.read()).unwrap_or(serde_json::Value::Null)
    }
}

/// The consensus app on the chain, with its stored proposals, history setting and threshold-key rounds
/// (this node's share of the current key is read from its encrypted file).
fn open_app(
    s: &NodeSettings,
    chain: &Arc<Chain>,
    signer: Arc<ConsensusSigner>,
    dkg: Option<metis_mpc::seal::DkgSecret>,
    passphrase: Option<metis_keystore::Passphrase>,
) -> Result<App, NodeError> {
    let genesis_ledger = Ledger::genesis(s.pos.params.clone(), s.pos.sequencers.clone(), s.pos.seed)?;
    let app = App::open(chain.clone(), genesis_ledger, signer, s.timing)?
        .with_proposal_store(&s.data_dir.join("proposals"))?
        .with_history_keep(s.history_keep);
    let shares_dir = s.data_dir.join("keys");
    let current_round = app.ledger().keys().current.as_ref().map(|k| k.round);
    let share = match (&passphrase, current_round) {
        (Some(pass), Some(round)) => shares::load(&shares_dir, round, pass)?,
        _ => None,
    };
    let secrets = dkg.map(|dkg| metis_keyrounds::KeySecrets {
        identity: commonware_identity(&s.key),
        dkg,
    });
    let sink = passphrase.map(|pass| shares::sink(shares_dir, pass));
    Ok(app.with_keys(secrets, share, sink)?)
}

/// The pool's threshold signer, when the genesis names a batch inbox: it follows the chain's commits.
fn start_signer(
    s: &NodeSettings,
    chain: &Arc<Chain>,
    app: &App,
    hub: Arc<metis_net::SignHub>,
    from_peers: tokio::sync::mpsc::Receiver<(metis_net::Peer, Vec<metis_net::SignMsg>)>,
    status: metis_signer::SharedSignerStatus,
) -> Option<JoinHandle<()>> {
    let g = s.pos.l1.as_ref()?;
    let inbox = g.batch_inbox?;
    let mode = if s.pos.params.batch_blobs {
        metis_batcher::DataMode::Blobs
    } else {
        metis_batcher::DataMode::Calldata
    };
    let config = metis_signer::SignerConfig {
        l1_chain_id: g.chain_id,
        inbox,
        locking_pool: g.locking_pool,
        mode,
    };
    let last_report = app.ledger().rewards().last.clone();
    let open_slashes = app.ledger().offences().slashes().cloned().collect();
    Some(metis_signer::spawn(
        config,
        chain,
        hub,
        from_peers,
        metis_signer::Resume {
            key: app.signing_key(),
            last_report,
            open_slashes,
        },
        status,
    ))
}

/// The batch poster, when this node posts (`[l1.poster]`) and the genesis names a batch inbox.
fn start_poster(
    s: &NodeSettings,
    chain: &Arc<Chain>,
    status: metis_poster::SharedPosterStatus,
) -> Result<Option<JoinHandle<()>>, NodeError> {
    let (Some(g), Some(l), Some(p)) = (&s.pos.l1, &s.l1, &s.poster) else {
        return Ok(None);
    };
    let Some(inbox) = g.batch_inbox else {
        return Ok(None);
    };
    let config = metis_poster::PosterConfig {
        l1_rpc: l.rpc.clone(),
        inbox,
        locking_pool: g.locking_pool,
        poll: l.poll_interval,
        turn_timeout: p.turn_timeout,
        confirmations: l.confirmations,
        sender: metis_l1::sender::SenderConfig {
            chain_id: g.chain_id,
            bump_after_blocks: p.bump_after_blocks,
            max_fee_cap: p.max_fee_cap,
            max_blob_fee_cap: p.max_blob_fee_cap,
            max_in_flight: p.max_in_flight.max(1),
        },
    };
    let store = chain.engine().store().clone();
    metis_poster::spawn(config, p.key.clone(), store, chain.clone(), status)
        .map(Some)
        .map_err(|e| NodeError::L1(e.to_string()))
}

/// The transaction and signing links. Peers: any sequencer the ledger knows that has not left (a newcomer is
/// accepted from the block that carried its Locked event, so its mempool is full when it first proposes).
async fn start_gossip(
    s: &NodeSettings,
    chain_id: u64,
    chain: &Arc<Chain>,
    hub: Arc<metis_net::SignHub>,
    evidence: Arc<metis_net::EvidenceHub>,
) -> Result<SocketAddr, NodeError> {
    let c = chain.clone();
    // An RPC node links only to sequencers; a sequencer also takes the followers its config lets in.
    let followers = (s.role == config::Role::Sequencer).then(|| s.followers.clone());
    let allowed: gossip::Allowed = Arc::new(move |key: &[u8; 32]| {
        let sequencer = c.ledger().is_some_and(|l| {
            l.sequencers()
                .any(|q| q.consensus_key.0 == *key && q.status != metis_pos::SequencerStatus::Inactive)
        });
        if sequencer {
            Some(metis_net::PeerClass::Sequencer)
        } else {
            followers
                .as_ref()
                .filter(|f| f.admits(key))
                .map(|_| metis_net::PeerClass::Follower)
        }
    });
    let config = GossipConfig {
        listen: s.gossip_listen,
        peers: s.gossip_peers.clone(),
        chain_id,
        follower: s.role == config::Role::Rpc,
        follower_limits: s.followers.limits.clone(),
    };
    Ok(gossip::start(config, s.key.clone(), allowed, chain.clone(), hub, evidence).await?)
}

/// Any peer may connect on libp2p: `p2p.open`, or a sequencer open to any follower.
fn libp2p_open(s: &NodeSettings) -> bool {
    s.p2p_open || (s.role == config::Role::Sequencer && s.followers.open)
}

/// Malachite admits at most 5 inbound connections from one IP address. Sequencers that share an address (a
/// pool on one machine, or behind one NAT) would then not all connect, and with Broadcast (no relay) a pair that
/// is not connected never sees each other's votes: with 16 nodes on one machine no height was decided. The
/// default admits two connections per configured peer (a redial may overlap the old link) and a few spare.
pub fn connections_per_ip(peers: usize) -> usize {
    peers.saturating_mul(2).saturating_add(4).max(5)
}

/// Malachite's settings: persistent peers, message size limits, value sync every 500 ms.
/// How often a node tells its peers its tip, for value sync: two block times, 1 to 10 s. Every status goes to every
/// peer on a substream of its own (Broadcast); at 500 ms it was a third of an idle node's messages, and a status
/// that arrives just before this node decides the same height only starts a needless sync request.
pub fn status_interval(block_time: Duration) -> Duration {
    block_time
        .saturating_mul(2)
        .clamp(Duration::from_secs(1), Duration::from_secs(10))
}

fn malachite_config(s: &NodeSettings) -> Result<MalachiteConfig, NodeError> {
    let mut p2p = P2pConfig {
        listen_addr: multiaddr(&s.p2p_listen)?,
        persistent_peers: s.p2p_peers.iter().map(|p| multiaddr(p)).collect::<Result<_, _>>()?,
        discovery: DiscoveryConfig {
            max_connections_per_ip: s
                .p2p_connections_per_ip
                .unwrap_or_else(|| connections_per_ip(s.p2p_peers.len())),
            ..DiscoveryConfig::default()
        },
        ..Default::default()
    };
    // A proposal part is at most 512 KiB; a sync response carries at most two blocks of at most 16 MiB each.
    p2p.persistent_peers_only = !libp2p_open(s);
    p2p.protocol = match s.pubsub {
        config::Pubsub::Broadcast => PubSubProtocol::Broadcast,
        config::Pubsub::Gossipsub => PubSubProtocol::default(),
    };
    p2p.pubsub_max_size = bytesize::ByteSize::mib(1);
    p2p.rpc_max_size = bytesize::ByteSize::mib(32);
    let value_sync = ValueSyncConfig {
        enabled: true,
        status_update_interval: status_interval(s.timing.block_time),
        request_timeout: Duration::from_secs(5),
        max_response_size: bytesize::ByteSize::mib(32),
        inactive_threshold: Duration::from_secs(10),
        batch_size: 2,
        ..Default::default()
    };
    Ok(MalachiteConfig {
        moniker: s.moniker.clone(),
        consensus: ConsensusConfig {
            p2p,
            ..Default::default()
        },
        value_sync,
    })
}

/// This node's identity on Malachite's network: its libp2p key and the proof binding it to the consensus key.
async fn network_identity(
    s: &NodeSettings,
    address: Address,
    signer: &ConsensusSigner,
) -> Result<NetworkIdentity, NodeError> {
    let keypair =
        Keypair::ed25519_from_bytes(s.key.to_bytes()).map_err(|e| NodeError::Consensus(format!("network key: {e}")))?;
    let peer_id = keypair.public().to_peer_id();
    if s.role == config::Role::Rpc {
        info!(%peer_id, "starting consensus as a follower");
        return Ok(NetworkIdentity::new(s.moniker.clone(), keypair, None));
    }
    let proof = signer
        .sign_validator_proof(address.0.to_vec(), peer_id.to_bytes())
        .await
        .map_err(|e| NodeError::Consensus(format!("validator proof: {e}")))?;
    let proof_bytes = WireCodec
        .encode(&proof)
        .map_err(|e| NodeError::Consensus(format!("validator proof: {e}")))?;
    info!(%peer_id, "starting consensus");
    Ok(NetworkIdentity::new_validator(
        s.moniker.clone(),
        keypair,
        address.to_string(),
        proof_bytes,
    ))
}

fn wal_path(s: &NodeSettings) -> PathBuf {
    s.data_dir.join("wal").join("consensus.wal")
}

/// Malachite reports a damaged WAL ("Invalid WAL version") without naming the file: open it here first, as the
/// engine is about to, so that the error does.
fn check_wal(path: &std::path::Path) -> Result<(), NodeError> {
    if !path.exists() {
        return Ok(());
    }
    malachitebft_app_channel::app::wal::Log::open(path)
        .map(drop)
        .map_err(|e| {
            NodeError::Consensus(format!(
                "consensus WAL {}: {e}. If it is damaged, move it aside: the node then starts without it, and the \
                 signing guard still refuses any vote this key cast differently",
                path.display()
            ))
        })
}

/// Malachite's engine (libp2p, WAL, sync) under this node's validator identity.
/// With no signer (a node behind its signing guard), it follows the chain as a full node.
async fn start_consensus(
    s: &NodeSettings,
    address: Address,
    signer: &ConsensusSigner,
    guarded: Option<Box<metis_consensus::guard::GuardedSigner>>,
) -> Result<(malachitebft_app_channel::Channels<MetisContext>, EngineHandle), NodeError> {
    let config = malachite_config(s)?;
    check_wal(&wal_path(s))?;
    let identity = network_identity(s, address, signer).await?;
    let consensus = match guarded {
        Some(g) => ConsensusContext::new_validator(address, Box::new(ConsensusVerifier), g),
        // Malachite asks a node to sign whenever its address is in the height's validator set, full node or
        // not: following without signing, it goes by an address no sequencer can have (L1 refuses a zero key).
        None => ConsensusContext::new_full_node(Address([0; 32]), Box::new(ConsensusVerifier)),
    };
    malachitebft_app_channel::start_engine(
        MetisContext,
        config,
        WalContext::new(wal_path(s), WireCodec),
        NetworkContext::new(identity, WireCodec),
        consensus,
        SyncContext::new(WireCodec),
        RequestContext::new(100),
    )
    .await
    .map_err(|e| NodeError::Consensus(format!("{e:#}")))
}

/// The signer a sequencer votes with; none while its key signed beyond this data dir's head (`behind`).
fn signing(
    s: &NodeSettings,
    chain: &Chain,
    guard: metis_consensus::guard::SigningGuard,
    behind: Option<u64>,
) -> Option<Box<metis_consensus::guard::GuardedSigner>> {
    match behind {
        Some(g) => {
            warn!(
                signed_up_to = g,
                head = chain.engine().head().number,
                "this key signed beyond this data dir's head (restored from an older copy?): following the \
                 chain without signing until it is past height {g}, then restarting to sign"
            );
            None
        }
        None => Some(guarded_signer(s, guard)),
    }
}

/// The consensus key as Malachite's signing provider, every vote and proposal past the signing guard first.
fn guarded_signer(
    s: &NodeSettings,
    guard: metis_consensus::guard::SigningGuard,
) -> Box<metis_consensus::guard::GuardedSigner> {
    if let Some(last) = guard.last() {
        info!(
            height = last.height,
            round = last.round,
            step = last.step,
            path = %s.signing_guard.display(),
            "signing guard: the key last signed here"
        );
    }
    Box::new(metis_consensus::guard::GuardedSigner::new(
        ConsensusSigner::new(s.key.clone()),
        guard,
    ))
}

/// Malachite's engine behind its Byzantine network proxy, which signs and sends a conflicting vote or proposal
/// next to this node's own (test builds only: accountability tests need a real equivocator).
#[cfg(feature = "test-faults")]
async fn start_byzantine_consensus(
    s: &NodeSettings,
    address: Address,
    signer: &ConsensusSigner,
    guarded: Box<metis_consensus::guard::GuardedSigner>,
    fault: metis_consensus::faults::FaultSpec,
) -> Result<(malachitebft_app_channel::Channels<MetisContext>, EngineHandle), NodeError> {
    use malachitebft_engine_byzantine::{ByzantineConfig, Trigger};
    use metis_consensus::faults::Fault;
    use metis_wire::types::BlockHash;
    let from = Trigger::HeightRange {
        from: fault.from_height,
        to: fault.to_height.unwrap_or(u64::MAX),
    };
    let config = match fault.fault {
        Fault::DoubleVote => ByzantineConfig::default().with_equivocate_votes(from),
        _ => ByzantineConfig::default().with_equivocate_proposals(from),
    };
    tracing::warn!(?fault, "FAULT INJECTION: this node's engine will equivocate");
    // The conflicting value: the block hash with its last byte flipped (nil votes conflict with a fixed hash).
    let flip = |h: &BlockHash| {
        let mut b = h.0;
        b[31] ^= 0xff;
        BlockHash(b)
    };
    let byzantine = malachitebft_app_channel::ByzantineContext {
        identity: network_identity(s, address, signer).await?,
        codec: WireCodec,
        config,
        signer: Box::new(ConsensusSigner::new(s.key.clone())),
        address,
        conflicting_value_fn: Some(Box::new(flip)),
        conflicting_vote_value_fn: Some(Box::new(move |v: Option<&BlockHash>| match v {
            Some(h) => flip(h),
            None => BlockHash([0xee; 32]),
        })),
    };
    let e = |e: eyre::Report| NodeError::Consensus(format!("{e:#}"));
    malachitebft_app_channel::EngineBuilder::new(MetisContext, malachite_config(s)?)
        .with_default_wal(WalContext::new(wal_path(s), WireCodec))
        .with_byzantine_network(byzantine)
        .await
        .map_err(e)?
        .with_default_sync(SyncContext::new(WireCodec))
        .with_default_consensus(ConsensusContext::new_validator(
            address,
            Box::new(ConsensusVerifier),
            guarded,
        ))
        .with_default_request(RequestContext::new(100))
        .build()
        .await
        .map_err(e)
}

fn commonware_identity(key: &ed25519_dalek::SigningKey) -> commonware_cryptography::ed25519::PrivateKey {
    use commonware_codec::Read;
    let seed = key.to_bytes();
    let mut c = commonware_codec::Copying(&seed);
    // Any 32 bytes are an ed25519 seed.
    commonware_cryptography::ed25519::PrivateKey::read_cfg(&mut c, &())
        .unwrap_or_else(|_| unreachable!("a 32-byte seed always decodes"))
}

/// Starts the L1 listener task when the genesis names L1 contracts. It resumes at the L1 block of the last
/// event the ledger took (events after it in that block are still needed), or at the genesis start block.
fn start_listener(
    s: &NodeSettings,
    chain: &Chain,
    view: &metis_l1::SharedView,
) -> Result<Option<JoinHandle<()>>, NodeError> {
    use alloy::providers::{Provider, ProviderBuilder};
    let (g, l) = match (&s.pos.l1, &s.l1) {
        (None, _) => return Ok(None),
        (Some(_), None) => {
            return Err(NodeError::L1(
                "the genesis names L1 contracts but no L1 endpoint is configured".into(),
            ))
        }
        (Some(g), Some(l)) => (g, l),
    };
    let url = l
        .rpc
        .parse()
        .map_err(|e| NodeError::L1(format!("L1 RPC URL {}: {e}", l.rpc)))?;
    let provider = ProviderBuilder::new().connect_http(url).erased();
    let resume = chain.ledger().and_then(|l| l.last_l1()).map(|(block, _)| block);
    let config = metis_l1::ListenerConfig {
        locking_pool: g.locking_pool,
        locking_info: Some(g.locking_info),
        pos_params: g.pos_params,
        start_block: resume.unwrap_or(g.start_block).max(g.start_block),
        confirmations: l.confirmations,
        max_range: l.max_range.max(1),
        chain_id: Some(g.chain_id),
    };
    info!(
        rpc = %l.rpc,
        from_block = config.start_block,
        confirmations = l.confirmations,
        "following L1 staking"
    );
    let listener = metis_l1::Listener::new(provider, config);
    Ok(Some(tokio::spawn(
        listener
            .follow(view.clone(), l.poll_interval)
            .instrument(tracing::info_span!("l1")),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_p2p_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = check_p2p_listen(&format!("/ip4/127.0.0.1/tcp/{port}")).unwrap_err();
        assert!(e.to_string().contains("cannot listen"), "{e}");
        drop(taken);
        check_p2p_listen(&format!("/ip4/127.0.0.1/tcp/{port}")).unwrap();
    }
}
