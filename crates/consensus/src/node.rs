//! One sequencer node: execution engine and RPC, the PoS ledger, Malachite consensus over libp2p, and
//! transaction gossip, wired together.

use crate::app::{App, Timing};
use crate::codec::WireCodec;
use crate::gossip::{self, GossipConfig};
use crate::signing::{ConsensusSigner, ConsensusVerifier};
use crate::types::{Address, MetisContext};
use alloy_primitives::B256;
use malachitebft_app_channel::app::config::{ConsensusConfig, DiscoveryConfig, NodeConfig, P2pConfig, ValueSyncConfig};
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::Keypair;
use malachitebft_app_channel::{
    ConsensusContext, EngineHandle, NetworkContext, NetworkIdentity, RequestContext, Signer, SyncContext, WalContext,
};
use metis_execution::{ChainSpec, Engine, PoolConfig};
use metis_pos::{Ledger, Params, Sequencer};
use metis_rpc::{Backend, RpcConfig, RpcServer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::info;

/// The PoS part of the genesis: ledger parameters, the genesis sequencers, and the seed of epoch 0's election.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PosGenesis {
    pub params: Params,
    pub sequencers: Vec<Sequencer>,
    pub seed: B256,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("opening the chain: {0}")]
    Engine(#[from] metis_execution::EngineError),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("PoS genesis: {0}")]
    Ledger(#[from] metis_pos::LedgerError),
    #[error("binding the RPC on {addr}: {source}")]
    Rpc { addr: SocketAddr, source: std::io::Error },
    #[error("transaction gossip: {0}")]
    Gossip(#[from] gossip::GossipError),
    #[error("this node's consensus key {0:?} is not a genesis sequencer")]
    NotASequencer(Address),
    #[error("p2p address {0}: {1}")]
    Multiaddr(String, String),
    #[error("consensus engine: {0}")]
    Consensus(String),
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
    pub p2p_listen: String,
    pub p2p_peers: Vec<String>,
    pub rpc: RpcConfig,
    pub gossip_listen: SocketAddr,
    pub gossip_peers: Vec<SocketAddr>,
    pub timing: Timing,
    pub pool: PoolConfig,
    /// Deliberate misbehaviour (tests only).
    pub fault: Option<crate::app::Fault>,
}

pub struct RunningNode {
    pub rpc: RpcServer,
    pub gossip_addr: SocketAddr,
    pub backend: Arc<Backend>,
    pub app: JoinHandle<Result<(), crate::app::AppError>>,
    engine: EngineHandle,
}

impl RunningNode {
    /// Stops consensus and the RPC (graceful shutdown: the store is consistent after every block anyway).
    pub async fn shutdown(self) {
        self.rpc.stop();
        self.engine.actor.stop(Some("shutdown".into()));
        self.app.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.engine.handle).await;
    }
}

fn multiaddr(s: &str) -> Result<malachitebft_app_channel::app::net::Multiaddr, NodeError> {
    s.parse::<malachitebft_app_channel::app::net::Multiaddr>()
        .map_err(|e| NodeError::Multiaddr(s.to_string(), e.to_string()))
}

pub async fn start(s: NodeSettings) -> Result<RunningNode, NodeError> {
    let address = Address(s.key.verifying_key().to_bytes());
    if !s.pos.sequencers.iter().any(|q| q.consensus_key.0 == address.0) {
        return Err(NodeError::NotASequencer(address));
    }
    let chain_id = s.spec.chain_id;
    let engine = Engine::open(&s.data_dir.join("chain"), s.spec)?;
    let backend = Backend::new(engine, s.pool);
    let genesis_ledger = Ledger::genesis(s.pos.params.clone(), s.pos.sequencers.clone(), s.pos.seed)?;
    let signer = Arc::new(ConsensusSigner::new(s.key.clone()));
    let mut app = App::open(backend.clone(), genesis_ledger, signer.clone(), s.timing)?
        .with_proposal_store(&s.data_dir.join("proposals"))?;
    if let Some(f) = s.fault {
        app.inject_fault(f);
    }

    let rpc_addr = s.rpc.addr;
    let rpc = metis_rpc::start_with(backend.clone(), s.rpc, vec![crate::posapi::module(app.shared_ledger())])
        .await
        .map_err(|source| NodeError::Rpc { addr: rpc_addr, source })?;
    let allowed: BTreeSet<[u8; 32]> = s.pos.sequencers.iter().map(|q| q.consensus_key.0).collect();
    let gossip_addr = gossip::start(
        GossipConfig {
            listen: s.gossip_listen,
            peers: s.gossip_peers,
            chain_id,
        },
        s.key.clone(),
        allowed,
        backend.clone(),
    )
    .await?;

    let mut p2p = P2pConfig {
        listen_addr: multiaddr(&s.p2p_listen)?,
        persistent_peers: s.p2p_peers.iter().map(|p| multiaddr(p)).collect::<Result<_, _>>()?,
        discovery: DiscoveryConfig::default(),
        ..Default::default()
    };
    // A proposal part is at most 512 KiB; a sync response carries at most two blocks of at most 16 MiB each.
    p2p.pubsub_max_size = bytesize::ByteSize::mib(1);
    p2p.rpc_max_size = bytesize::ByteSize::mib(32);
    let value_sync = ValueSyncConfig {
        enabled: true,
        status_update_interval: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        max_response_size: bytesize::ByteSize::mib(32),
        inactive_threshold: Duration::from_secs(10),
        batch_size: 2,
        ..Default::default()
    };
    let config = MalachiteConfig {
        moniker: s.moniker.clone(),
        consensus: ConsensusConfig {
            p2p,
            ..Default::default()
        },
        value_sync,
    };

    let keypair =
        Keypair::ed25519_from_bytes(s.key.to_bytes()).map_err(|e| NodeError::Consensus(format!("network key: {e}")))?;
    let peer_id = keypair.public().to_peer_id();
    let proof = signer
        .sign_validator_proof(address.0.to_vec(), peer_id.to_bytes())
        .await
        .map_err(|e| NodeError::Consensus(format!("validator proof: {e}")))?;
    let proof_bytes = WireCodec
        .encode(&proof)
        .map_err(|e| NodeError::Consensus(format!("validator proof: {e}")))?;
    let identity = NetworkIdentity::new_validator(s.moniker.clone(), keypair, address.to_string(), proof_bytes);
    let (channels, engine) = malachitebft_app_channel::start_engine(
        MetisContext,
        config,
        WalContext::new(s.data_dir.join("wal").join("consensus.wal"), WireCodec),
        NetworkContext::new(identity, WireCodec),
        ConsensusContext::new_validator(
            address,
            Box::new(ConsensusVerifier),
            Box::new(ConsensusSigner::new(s.key)),
        ),
        SyncContext::new(WireCodec),
        RequestContext::new(100),
    )
    .await
    .map_err(|e| NodeError::Consensus(format!("{e:#}")))?;
    info!(%peer_id, address = ?address, rpc = %rpc.local_addr, gossip = %gossip_addr, "node started");
    let app = tokio::spawn(app.run(channels));
    Ok(RunningNode {
        rpc,
        gossip_addr,
        backend,
        app,
        engine,
    })
}
