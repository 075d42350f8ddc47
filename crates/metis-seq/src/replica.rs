//! `metis-seq replica`: rebuilds the L2 chain from L1 alone and serves it read-only.

use anyhow::{bail, Context, Result};
use clap::Args;
use metis_chain::Chain;
use metis_execution::{ChainSpec, Engine};
use metis_mempool::MempoolConfig;
use metis_node::PosGenesis;
use metis_replica::{BlobSource, Replica, ReplicaConfig};
use metis_rpc::RpcConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ReplicaArgs {
    /// The L1 JSON-RPC endpoint BatchInbox lives on.
    #[arg(long)]
    l1_rpc: String,
    /// The L2 genesis (genesis.json).
    #[arg(long)]
    genesis: PathBuf,
    /// The PoS genesis naming the L1 contracts (default: pos_genesis.json beside --genesis).
    #[arg(long)]
    pos_genesis: Option<PathBuf>,
    /// Data directory (created if missing); a restart resumes from the last replayed batch.
    #[arg(long)]
    data_dir: PathBuf,
    /// Read-only Ethereum JSON-RPC (HTTP and WebSocket) on this address.
    #[arg(long, default_value = "127.0.0.1:8645")]
    rpc_addr: SocketAddr,
    /// L1 blocks over a batch before it is replayed.
    #[arg(long, default_value_t = 12)]
    confirmations: u64,
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// A beacon node serving blobs (GET /eth/v1/beacon/blobs); without it blobs are read with the L1 RPC's
    /// anvil_getBlobByHash (anvil only).
    #[arg(long)]
    beacon_url: Option<String>,
}

pub async fn run(args: ReplicaArgs) -> Result<()> {
    let json = std::fs::read_to_string(&args.genesis).with_context(|| format!("reading {}", args.genesis.display()))?;
    let spec = ChainSpec::from_genesis_json(&json).with_context(|| format!("parsing {}", args.genesis.display()))?;
    let pos_path = args.pos_genesis.clone().unwrap_or_else(|| {
        args.genesis
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("pos_genesis.json")
    });
    let pos: PosGenesis = serde_json::from_str(
        &std::fs::read_to_string(&pos_path).with_context(|| format!("reading {}", pos_path.display()))?,
    )
    .with_context(|| format!("parsing {}", pos_path.display()))?;
    let Some(l1) = pos.l1 else {
        bail!("{} names no L1 contracts: nothing to replay", pos_path.display());
    };
    let Some(inbox) = l1.batch_inbox else {
        bail!("{} names no BatchInbox: nothing to replay", pos_path.display());
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let engine = Engine::open(&args.data_dir.join("chain"), spec).context("opening the replica's chain")?;
    let backend = Chain::new(engine, MempoolConfig::default());
    let url = args
        .l1_rpc
        .parse()
        .with_context(|| format!("L1 RPC URL {}", args.l1_rpc))?;
    let provider = alloy::providers::Provider::erased(alloy::providers::ProviderBuilder::new().connect_http(url));
    let replica = Replica::new(
        ReplicaConfig {
            inbox,
            l1_chain_id: l1.chain_id,
            start_block: l1.start_block,
            confirmations: args.confirmations,
            max_range: 1000,
            poll: Duration::from_millis(args.poll_ms.max(10)),
            blobs: match args.beacon_url {
                Some(u) => BlobSource::Beacon(u),
                None => BlobSource::L1Rpc,
            },
        },
        provider,
        backend.clone(),
    );
    let rpc = metis_rpc::start_with(
        backend,
        RpcConfig {
            addr: args.rpc_addr,
            ..Default::default()
        },
        vec![metis_replica::module(replica.status())],
        metis_rpc::http::Routes::default(),
    )
    .await
    .with_context(|| format!("binding the RPC on {}", args.rpc_addr))?;
    println!("RPC listening on {}", rpc.local_addr);
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        e = replica.run() => Err(anyhow::Error::new(e).context("the replica stopped")),
    };
    rpc.stop();
    result
}
