//! `metis-seq dev`: one node that produces blocks from its mempool on a timer (or as soon as transactions
//! arrive), with prefunded dev accounts, like anvil. The same engine and RPC the sequencer pool runs.

use alloy::primitives::{utils::format_ether, Address, U256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result};
use clap::Args;
use metis_chain::Chain;
use metis_execution::{ChainSpec, Engine};
use metis_mempool::MempoolConfig;
use metis_rpc::RpcConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{error, info};

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Data directory (created if missing); restarting on the same directory resumes the chain.
    #[arg(long, default_value = "metis-dev-data")]
    datadir: PathBuf,
    /// Block time in milliseconds; 0 makes a block as soon as transactions arrive.
    #[arg(long, default_value_t = 1000)]
    block_time: u64,
    /// JSON-RPC (HTTP and WebSocket) listen address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8545")]
    http_addr: SocketAddr,
    /// A geth-style genesis file instead of the dev genesis.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Chain id of the dev genesis.
    #[arg(long, default_value_t = 59902)]
    chain_id: u64,
    /// Number of prefunded dev accounts.
    #[arg(long, default_value_t = 10)]
    accounts: u32,
    /// Balance of each dev account, in ether.
    #[arg(long, default_value_t = 10_000)]
    balance: u64,
    /// Transactions the mempool holds at most (the cheapest are evicted beyond).
    #[arg(long, default_value_t = 100_000)]
    txpool_max_txs: usize,
    /// Encoded bytes the mempool holds at most, in MiB.
    #[arg(long, default_value_t = 128)]
    txpool_max_mib: usize,
    /// Block gas limit of the dev genesis.
    #[arg(long, default_value_t = metis_execution::genesis::DEFAULT_GAS_LIMIT)]
    gas_limit: u64,
    /// State history kept for reads at older blocks: full, none, or a number of recent blocks.
    #[arg(long, default_value = "full")]
    state_history: String,
}

/// The well-known dev accounts (anvil's and hardhat's mnemonic), so tools' default dev keys work here too.
pub fn dev_keys(n: u32) -> Result<Vec<PrivateKeySigner>> {
    metis_contracts::dev::dev_keys(n).context("deriving the dev keys")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub async fn run(args: DevArgs) -> Result<()> {
    let keys = dev_keys(args.accounts)?;
    let spec = match &args.genesis {
        Some(path) => {
            let json = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            ChainSpec::from_genesis_json(&json).with_context(|| format!("parsing {}", path.display()))?
        }
        None => {
            let addrs: Vec<Address> = keys.iter().map(|k| k.address()).collect();
            let mut spec = ChainSpec::dev(
                args.chain_id,
                &addrs,
                U256::from(args.balance) * U256::from(10u64).pow(U256::from(18)),
            );
            spec.genesis_timestamp = 0;
            spec.gas_limit = args.gas_limit;
            spec
        }
    };
    let history: metis_execution::StateHistory = args.state_history.parse().map_err(anyhow::Error::msg)?;
    let engine = Engine::open_with(&args.datadir, spec, history)
        .with_context(|| format!("opening {}", args.datadir.display()))?;
    let chain_id = engine.spec().chain_id;
    let backend = Chain::new(
        engine,
        MempoolConfig {
            max_txs: args.txpool_max_txs,
            max_bytes: args.txpool_max_mib.saturating_mul(1024 * 1024),
            ..Default::default()
        },
    );
    let server = metis_rpc::start(
        backend.clone(),
        RpcConfig {
            addr: args.http_addr,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("binding the RPC on {}", args.http_addr))?;

    // Machine-readable first line: tests and scripts wait for it.
    println!("RPC listening on {}", server.local_addr);
    println!(
        "chain id {chain_id}, head {}, data dir {}",
        backend.engine().head().number,
        args.datadir.display()
    );
    if args.genesis.is_none() {
        println!("dev accounts (DEVNET ONLY, well-known keys):");
        for k in &keys {
            let bal = backend
                .engine()
                .state()
                .account(&k.address())
                .map(|a| a.balance)
                .unwrap_or_default();
            println!(
                "  {} 0x{} ({} ETH)",
                k.address(),
                alloy::hex::encode(k.to_bytes()),
                format_ether(bal)
            );
        }
    }

    let producer = {
        let backend = backend.clone();
        let block_time = args.block_time;
        tokio::spawn(async move {
            // The first block comes one block time after start, not at once.
            let period = Duration::from_millis(block_time.max(1));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if block_time == 0 {
                    if backend.mempool().is_empty() {
                        backend.tx_arrived().await;
                    }
                } else {
                    ticker.tick().await;
                }
                let b = backend.clone();
                let res = tokio::task::spawn_blocking(move || {
                    b.produce_block(
                        now_secs(),
                        Address::ZERO,
                        alloy::primitives::Bytes::from_static(b"metis-seq dev"),
                    )
                })
                .await;
                match res {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => error!(%e, "block production failed"),
                    Err(e) => error!(%e, "block producer task failed"),
                }
            }
        })
    };

    shutdown_signal().await;
    info!("shutting down");
    producer.abort();
    server.stop();
    server.stopped().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
