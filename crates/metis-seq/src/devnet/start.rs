//! `metis-seq devnet`: L1 (its own anvil, or --l1-rpc), the contracts, N sequencers with unequal stakes locked
//! on L1, their nodes, the DKG and the group key on L1, each step shown with its time; then it supervises the
//! processes until Ctrl-C, SIGTERM or `metis-seq devnet stop`, and stops them all. Started again on the same
//! directory, it resumes: the L1 state (anvil's dump), the chain and the keys are kept.

use super::manifest::{self, Account, Contracts, GroupKey, Manifest, Node, Options, RpcNode, L1, L2};
use super::netns::Netns;
use super::procs::{stop_pids, Proc, Procs};
use alloy::network::EthereumWallet;
use alloy::primitives::{keccak256, Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use metis_contracts::{deploy_all, DeployConfig, Deployment, LockingPool};
use serde_json::{json, Value};
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// anvil's first dev account: the contracts' owner on the devnet's own L1 (well known; DEVNET ONLY).
const ANVIL_KEY0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Stakes in whole tokens, cycled over the nodes: unequal, so the stake weighting of the election shows, within
/// LockingInfo's default bounds (20,000..100,000), and none near a third of the total, so the 4-node devnet
/// goes on when any one node stops (consensus needs more than 2/3 of the voting power).
const STAKES: [u64; 4] = [100_000, 90_000, 70_000, 50_000];
const L2_CHAIN_ID: u64 = 59902;
const DEV_ACCOUNTS: u32 = 10;

#[derive(Args, Clone, Debug)]
pub struct StartArgs {
    /// Sequencers (each a node process).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// RPC nodes: unstaked followers that serve users and forward their transactions to the sequencers.
    #[arg(long, default_value_t = 1)]
    pub rpc_nodes: usize,
    /// Where everything goes: keys, configs, chain data, L1 state, logs/, devnet.json. Started again on the
    /// same directory, the devnet resumes where it stopped.
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// Use this L1 instead of starting anvil (the contract owner's key in METIS_L1_PRIVATE_KEY).
    #[arg(long)]
    pub l1_rpc: Option<String>,
    /// L2 block time in milliseconds (100..=10000; the consensus timeouts follow it).
    #[arg(long, default_value_t = 1000)]
    pub block_time: u64,
    /// The L2 genesis block gas limit (at 21,000 gas a transfer and 1 s blocks, 30M is 1,428 transfers a second).
    #[arg(long, default_value_t = metis_execution::genesis::DEFAULT_GAS_LIMIT)]
    pub gas_limit: u64,
    /// L2 blocks per epoch (the elected sequencer produces them).
    #[arg(long, default_value_t = 10)]
    pub epoch_length: u64,
    /// Port of the devnet's anvil.
    #[arg(long, default_value_t = 8545)]
    pub l1_port: u16,
    /// anvil's block time in seconds.
    #[arg(long, default_value_t = 1)]
    pub l1_block_time: u64,
    /// First L2 port: node i uses base+10i (p2p), base+10i+1 (tx gossip), base+10i+2 (RPC, WS and API).
    #[arg(long, default_value_t = 28000)]
    pub base_port: u16,
    /// Stake of each node in whole tokens, comma separated (default: 100000,90000,70000,50000, cycled).
    #[arg(long, value_delimiter = ',')]
    pub stakes: Vec<u64>,
    /// A batch for L1 every N L2 blocks.
    #[arg(long, default_value_t = 10)]
    pub batch_blocks: u64,
    /// Batch payloads in EIP-4844 blobs instead of calldata.
    #[arg(long)]
    pub blobs: bool,
    /// A reward report to L1 every N epochs.
    #[arg(long, default_value_t = 2)]
    pub reward_epochs: u64,
    /// L2 blocks per phase of a threshold-key round (deals, acks, logs).
    #[arg(long, default_value_t = 3)]
    pub key_phase_blocks: u64,
    /// Start afresh: delete what DIR holds from an earlier devnet.
    #[arg(long)]
    pub fresh: bool,
    /// The anvil binary (default: $METIS_ANVIL, else .tools/bin/anvil in this or a parent directory, else PATH).
    #[arg(long)]
    pub anvil: Option<PathBuf>,
    /// Seconds the start may take before it gives up.
    #[arg(long, default_value_t = 180)]
    pub ready_timeout: u64,
    /// Each node in a Linux network namespace of its own, at its own address on a bridge (10.77.X.0/24, X from
    /// the base port; the host side at .254, anvil at .253): real addresses, and links a test can cut. Needs
    /// root and iproute2.
    #[arg(long)]
    pub netns: bool,
    /// Keep the deployer's owner key in charge of the contracts: no governor, no hand-over.
    #[arg(long)]
    pub admin: bool,
    /// Governance: L1 blocks between a proposal and the start of its vote.
    #[arg(long, default_value_t = 1)]
    pub gov_voting_delay: u64,
    /// Governance: L1 blocks a vote lasts.
    #[arg(long, default_value_t = 20)]
    pub gov_voting_period: u32,
    /// Governance: seconds between queueing a passed proposal and executing it (the timelock's delay).
    #[arg(long, default_value_t = 5)]
    pub gov_timelock_delay: u64,
    /// Governance: percent of the stake (at the proposal's snapshot) that must vote for or abstain.
    #[arg(long, default_value_t = 50)]
    pub gov_quorum: u64,
    /// Governance: whole tokens of stake an owner needs to propose.
    #[arg(long, default_value_t = 10_000)]
    pub gov_threshold: u64,
}

/// Step lines with the time since start, so a slow step shows where the time goes.
struct Progress {
    t0: Instant,
    step: Instant,
}

impl Progress {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            step: Instant::now(),
        }
    }
    fn line(&self, msg: &str) {
        println!("[devnet {:6.1}s] {msg}", self.t0.elapsed().as_secs_f64());
    }
    fn start(&mut self, msg: &str) {
        self.step = Instant::now();
        self.line(&format!("{msg} ..."));
    }
    fn done(&self, msg: &str) {
        self.line(&format!("  {msg} ({:.1} s)", self.step.elapsed().as_secs_f64()));
    }
}

fn anvil_path(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("METIS_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let p = d.join(".tools/bin/anvil");
        if p.exists() {
            return Ok(p);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("anvil"))
        .find(|p| p.exists())
        .context("anvil not found: run `make tools` (installs .tools/bin/anvil), set METIS_ANVIL, or pass --anvil")
}

fn port_free(port: u16, what: &str) -> Result<()> {
    TcpListener::bind(("127.0.0.1", port)).map(drop).with_context(|| {
        format!("port {port} ({what}) is in use: is another devnet running? Choose others with --l1-port / --base-port")
    })
}

fn node_port(base: u16, i: usize, k: u16) -> Result<u16> {
    u16::try_from(i)
        .ok()
        .and_then(|i| i.checked_mul(10))
        .and_then(|o| base.checked_add(o + k))
        .context("--base-port too high for this many nodes")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

struct Devnet {
    dir: PathBuf,
    manifest: Manifest,
    procs: Procs,
    progress: Progress,
    client: reqwest::Client,
    deadline: Instant,
}

impl Devnet {
    /// The manifest of a devnet with no process running.
    fn mark_stopped(&mut self) {
        self.manifest.state = "stopped".into();
        self.manifest.clear_pids();
    }

    /// Polls `f` until it yields, failing when a process of the devnet exits or the start takes too long.
    /// `status` says what is awaited, printed every few seconds.
    async fn wait<T, F, Fut>(&mut self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut(reqwest::Client, Vec<Node>) -> Fut,
        Fut: Future<Output = (Option<T>, String)>,
    {
        let mut last_note = Instant::now();
        loop {
            self.check_alive()?;
            let (got, status) = f(self.client.clone(), self.manifest.nodes.clone()).await;
            if let Some(v) = got {
                return Ok(v);
            }
            if Instant::now() > self.deadline {
                bail!(
                    "gave up waiting for {what} ({status}); see the logs in {}",
                    self.dir.join("logs").display()
                );
            }
            if last_note.elapsed() > Duration::from_secs(5) {
                self.progress.line(&format!("  still waiting for {what}: {status}"));
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(a) = self.procs.anvil.as_mut() {
            if let Some(s) = a.newly_exited() {
                bail!(
                    "anvil exited ({s}) during the start:\n{}",
                    tail(&self.dir.join("logs/anvil.log"), 20)
                );
            }
        }
        let logs = self.manifest.nodes.iter().map(|n| &n.log);
        let logs = logs.chain(self.manifest.rpc_nodes.iter().map(|n| &n.log));
        let procs = self.procs.nodes.iter_mut().chain(self.procs.rpc_nodes.iter_mut());
        for (p, log) in procs.zip(logs) {
            if let Some(s) = p.newly_exited() {
                bail!("{} exited ({s}) during the start:\n{}", p.name, tail(log, 20));
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        self.manifest.save(&self.dir)
    }
}

fn deployer_key(own_l1: bool) -> Result<PrivateKeySigner> {
    let raw = if own_l1 {
        ANVIL_KEY0.to_string()
    } else {
        std::env::var("METIS_L1_PRIVATE_KEY")
            .context("with --l1-rpc, put the key that deploys and owns the contracts in METIS_L1_PRIVATE_KEY")?
    };
    raw.trim()
        .parse()
        .context("METIS_L1_PRIVATE_KEY is not 32 bytes of hex")
}

fn provider(url: &str, key: &PrivateKeySigner) -> Result<DynProvider> {
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::new(key.clone()))
        .connect_client(crate::l1_cmd::l1_client(
            url.parse().with_context(|| format!("invalid L1 RPC URL {url}"))?,
            Duration::from_millis(250),
        ))
        .erased())
}

/// Nodes whose stop alone halts the chain: with a third or more of the voting power, the rest cannot reach the
/// 2/3 quorum. Voting power follows stake here (the devnet's stakes are within the cap).
fn fault_warnings(stakes: &[u64]) -> Vec<String> {
    let total: u128 = stakes.iter().map(|s| *s as u128).sum();
    if stakes.len() < 2 {
        return Vec::new();
    }
    let critical: Vec<(usize, &u64)> = stakes
        .iter()
        .enumerate()
        .filter(|(_, s)| 3 * (**s as u128) >= total)
        .collect();
    if critical.len() == stakes.len() {
        return vec![format!(
            "  warning: with {} nodes no node can stop without stopping the chain (consensus needs more than 2/3 \
             of the voting power; 4 nodes of similar stake tolerate one)",
            stakes.len()
        )];
    }
    critical
        .into_iter()
        .map(|(i, s)| {
            format!(
                "  warning: node{i} holds {:.0}% of the voting power: if it stops, the chain stops (consensus \
                 needs more than 2/3)",
                100.0 * *s as f64 / total as f64
            )
        })
        .collect()
}

fn options(args: &StartArgs) -> Result<Options> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    metis_node::config::ConsensusSection::for_block_time(args.block_time)
        .timing()
        .context("--block-time")?;
    if args.netns && args.l1_rpc.is_some() {
        bail!("--netns runs its own anvil on the namespaces' bridge: it does not combine with --l1-rpc");
    }
    let stakes = if args.stakes.is_empty() {
        (0..args.nodes).map(|i| STAKES[i % STAKES.len()]).collect()
    } else if args.stakes.len() == args.nodes {
        args.stakes.clone()
    } else {
        bail!("--stakes lists {} values for {} nodes", args.stakes.len(), args.nodes);
    };
    Ok(Options {
        nodes: args.nodes,
        rpc_nodes: args.rpc_nodes,
        block_time_ms: args.block_time,
        gas_limit: args.gas_limit,
        epoch_length: args.epoch_length,
        l1_port: args.l1_port,
        l1_block_time_secs: args.l1_block_time.max(1),
        base_port: args.base_port,
        stakes,
        batch_blocks: args.batch_blocks,
        batch_blobs: args.blobs,
        reward_epochs: args.reward_epochs,
        key_phase_blocks: args.key_phase_blocks,
        own_l1: args.l1_rpc.is_none(),
        anvil: None,
        netns: args.netns,
        governance: governance_options(args)?,
    })
}

fn governance_options(args: &StartArgs) -> Result<Option<manifest::GovOptions>> {
    if args.admin {
        return Ok(None);
    }
    if args.gov_voting_period == 0 {
        bail!("--gov-voting-period must be at least 1 L1 block");
    }
    if !(1..=100).contains(&args.gov_quorum) {
        bail!("--gov-quorum is a percent of the stake: 1..=100");
    }
    Ok(Some(manifest::GovOptions {
        voting_delay_blocks: args.gov_voting_delay,
        voting_period_blocks: args.gov_voting_period,
        timelock_delay_secs: args.gov_timelock_delay,
        quorum_percent: args.gov_quorum,
        threshold_tokens: args.gov_threshold,
    }))
}

/// Stops what an earlier run left behind (its supervisor was killed): recorded pids still running our programs.
fn stop_leftovers(m: &Manifest) -> usize {
    let mut pids = m.node_pids();
    if let Some(p) = m.l1.anvil_pid {
        pids.push((p, "anvil".into()));
    }
    let refs: Vec<(u32, &str)> = pids.iter().map(|(p, n)| (*p, n.as_str())).collect();
    stop_pids(&refs, Duration::from_secs(15))
}

pub async fn run(args: StartArgs) -> Result<()> {
    // Installed first: a Ctrl-C or SIGTERM at any point stops what was started.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let dir = std::path::absolute(&args.dir).with_context(|| format!("resolving {}", args.dir.display()))?;
    if args.fresh && dir.exists() {
        remove_devnet(&dir)?;
    }
    let earlier = Manifest::path(&dir).exists();
    let mut net = if earlier {
        resume_manifest(&dir)?
    } else {
        if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
            bail!(
                "{} is not empty and holds no devnet: choose another --dir",
                dir.display()
            );
        }
        fresh_manifest(&args)?
    };
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("l1"))?;
    net.supervisor_pid = Some(std::process::id());
    net.state = "starting".into();
    let mut d = Devnet {
        dir: dir.clone(),
        manifest: net,
        procs: Procs::default(),
        progress: Progress::new(),
        // Each poll waits at most this long on a node that does not answer.
        client: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
        deadline: Instant::now() + Duration::from_secs(args.ready_timeout),
    };
    let anvil = match (&d.manifest.options.anvil, &args.anvil) {
        (Some(kept), None) if kept.exists() => Ok(kept.clone()),
        _ => anvil_path(args.anvil.as_deref()),
    };
    if let Ok(a) = &anvil {
        d.manifest.options.anvil = std::path::absolute(a).ok();
    }
    let started = tokio::select! {
        r = start(&mut d, earlier, anvil) => r,
        _ = term.recv() => Err(anyhow::anyhow!("stopped by SIGTERM during the start")),
        _ = int.recv() => Err(anyhow::anyhow!("stopped by Ctrl-C during the start")),
    };
    if let Err(e) = started {
        d.progress.line("stopping what was started");
        d.procs.stop();
        release_netns(&d.manifest.options, &d.progress);
        d.mark_stopped();
        // A manifest of a devnet that never got its contracts is no devnet: the next start is a fresh one.
        if d.manifest.contracts.locking_pool.is_empty() {
            let _ = std::fs::remove_file(Manifest::path(&dir));
        } else {
            let _ = d.save();
        }
        return Err(e);
    }
    print_summary(&d);
    let result = supervise(&mut d, &mut term, &mut int).await;
    d.progress.line("stopping: the nodes, then L1");
    let killed = d.procs.stop();
    if !killed.is_empty() {
        d.progress
            .line(&format!("  killed after the grace period: {}", killed.join(", ")));
    }
    release_netns(&d.manifest.options, &d.progress);
    d.mark_stopped();
    d.save()?;
    if dir.join("l1/state.json").exists() || !d.manifest.options.own_l1 {
        d.progress.line(&format!(
            "stopped; `metis-seq devnet --dir {}` resumes it",
            dir.display()
        ));
    } else {
        d.progress
            .line("stopped; L1's state was lost with anvil, so only a fresh start (--fresh) is possible");
    }
    result
}

/// The namespaces and bridge of a `--netns` devnet removed (its processes are gone).
fn release_netns(o: &Options, progress: &Progress) {
    if o.netns {
        if let Err(e) = Netns::for_base_port(o.base_port).teardown() {
            progress.line(&format!("  could not remove the network namespaces: {e:#}"));
        }
    }
}

/// `--fresh`: deletes a devnet's directory (or an empty one), never anything else `--dir` names.
fn remove_devnet(dir: &Path) -> Result<()> {
    match Manifest::load(dir) {
        Ok(m) => {
            if m.supervisor_pid.is_some_and(super::procs::supervisor_alive) {
                bail!("the devnet in {} is running: stop it first", dir.display());
            }
            stop_leftovers(&m);
            if m.options.netns {
                Netns::for_base_port(m.options.base_port).teardown()?;
            }
        }
        Err(_) if std::fs::read_dir(dir)?.next().is_some() => {
            bail!(
                "{} holds no devnet (no devnet.json): --fresh will not delete it",
                dir.display()
            );
        }
        Err(_) => {}
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

fn fresh_manifest(args: &StartArgs) -> Result<Manifest> {
    let options = options(args)?;
    let deployer = deployer_key(options.own_l1)?;
    let rpc = match &args.l1_rpc {
        Some(u) => u.clone(),
        None => format!("http://{}:{}", l1_host(&options), options.l1_port),
    };
    Ok(Manifest {
        state: "starting".into(),
        supervisor_pid: None,
        warning: "DEVNET ONLY: the private keys here are well known or stored in the clear; never use them elsewhere"
            .into(),
        options,
        l1: L1 {
            rpc,
            chain_id: 0,
            anvil_pid: None,
            deployer: Account {
                address: format!("{}", deployer.address()),
                private_key: format!("0x{}", alloy::hex::encode(deployer.to_bytes())),
            },
        },
        l2: L2 {
            chain_id: L2_CHAIN_ID,
            genesis: PathBuf::new(),
            pos_genesis: PathBuf::new(),
        },
        contracts: Contracts {
            token: String::new(),
            locking_pool: String::new(),
            locking_info: String::new(),
            batch_inbox: String::new(),
            deployed_at_block: 0,
            governor: None,
            timelock: None,
            params: None,
            votes: None,
        },
        group_key: None,
        nodes: Vec::new(),
        rpc_nodes: Vec::new(),
        dashboard: String::new(),
        accounts: crate::dev::dev_keys(DEV_ACCOUNTS)?
            .iter()
            .map(|k| Account {
                address: format!("{}", k.address()),
                private_key: format!("0x{}", alloy::hex::encode(k.to_bytes())),
            })
            .collect(),
    })
}

fn resume_manifest(dir: &Path) -> Result<Manifest> {
    let m = Manifest::load(dir)?;
    if m.supervisor_pid.is_some_and(super::procs::supervisor_alive) {
        bail!(
            "the devnet in {} is already running (pid {}); `metis-seq devnet stop --dir {}` stops it",
            dir.display(),
            m.supervisor_pid.unwrap_or_default(),
            dir.display()
        );
    }
    if m.nodes.len() != m.options.nodes
        || m.rpc_nodes.len() != m.options.rpc_nodes
        || m.contracts.locking_pool.is_empty()
    {
        bail!(
            "the first start of the devnet in {} did not finish: start afresh with --fresh",
            dir.display()
        );
    }
    let left = stop_leftovers(&m);
    if left > 0 {
        println!("[devnet] stopped {left} processes an earlier run left behind");
    }
    if m.options.own_l1 && !dir.join("l1/state.json").exists() {
        bail!(
            "{} has no saved L1 state (anvil did not stop cleanly): start afresh with --fresh",
            dir.display()
        );
    }
    Ok(m)
}

async fn start(d: &mut Devnet, earlier: bool, anvil: Result<PathBuf>) -> Result<()> {
    let o = d.manifest.options.clone();
    if earlier {
        d.progress.line(&format!(
            "resuming the devnet in {} ({} nodes; the options of its first start apply)",
            d.dir.display(),
            o.nodes
        ));
    }
    check_ports(d, &o)?;
    if o.netns {
        let n = Netns::for_base_port(o.base_port);
        let count = o.nodes.saturating_add(o.rpc_nodes);
        d.progress.start(&format!(
            "creating {count} network namespaces on bridge {} ({}/24)",
            n.bridge(),
            n.gateway()
        ));
        n.setup(count)?;
        d.progress.done("up");
    }
    let deployer = deployer_key(o.own_l1)?;
    let l1 = start_l1(d, &o, &deployer, anvil).await?;
    if !earlier {
        deploy(d, &l1, &deployer).await?;
        for warning in fault_warnings(&o.stakes) {
            d.progress.line(&warning);
        }
        d.progress.start(&format!(
            "creating {} sequencers' keys and configs, locking stakes {:?} on L1",
            o.nodes, o.stakes
        ));
        generate(d, &o, &deployer).await?;
        d.save()?;
        d.progress.done(&format!("network in {}", d.dir.join("l2").display()));
    }
    start_nodes(d, &o).await?;
    let group_key = wait_for_key(d).await?;
    register_group_key(d, &deployer, &group_key).await?;
    if let Some(g) = &o.governance {
        hand_over(d, &deployer, g).await?;
    }
    d.manifest.state = "ready".into();
    d.save()?;
    Ok(())
}

fn check_ports(d: &mut Devnet, o: &Options) -> Result<()> {
    d.progress.start("checking ports");
    if o.own_l1 {
        port_free(o.l1_port, "L1 RPC")?;
    }
    // With --netns the nodes' ports are in namespaces of their own, created afresh.
    for i in (0..o.nodes + o.rpc_nodes).filter(|_| !o.netns) {
        for (k, what) in [(0, "p2p"), (1, "gossip"), (2, "RPC"), (3, "metrics")] {
            port_free(node_port(o.base_port, i, k)?, &format!("node{i} {what}"))?;
        }
    }
    d.progress.done("free");

    Ok(())
}

/// Where the devnet's anvil listens: the namespaces' bridge with `--netns` (the nodes reach it there), else
/// loopback.
fn l1_host(o: &Options) -> std::net::Ipv4Addr {
    if o.netns {
        Netns::for_base_port(o.base_port).l1_addr()
    } else {
        std::net::Ipv4Addr::LOCALHOST
    }
}

/// The host of node i (sequencers, then RPC nodes) and its namespace with `--netns`.
fn node_host(o: &Options, i: usize) -> Result<(std::net::Ipv4Addr, Option<manifest::Netns>)> {
    if !o.netns {
        return Ok((std::net::Ipv4Addr::LOCALHOST, None));
    }
    let n = Netns::for_base_port(o.base_port);
    let addr = n.addr(i)?;
    Ok((
        addr,
        Some(manifest::Netns {
            name: n.namespace(i),
            addr: addr.to_string(),
        }),
    ))
}

/// anvil started (or the given L1 reached); returns a provider signing with the deployer key.
async fn start_l1(
    d: &mut Devnet,
    o: &Options,
    deployer: &PrivateKeySigner,
    anvil: Result<PathBuf>,
) -> Result<DynProvider> {
    if o.own_l1 {
        let anvil = anvil?;
        d.progress.start(&format!(
            "starting anvil on {}:{} ({})",
            l1_host(o),
            o.l1_port,
            anvil.display()
        ));
        let mut cmd = Command::new(&anvil);
        cmd.args(["--host", &l1_host(o).to_string(), "--port", &o.l1_port.to_string()])
            .args(["--block-time", &o.l1_block_time_secs.to_string()])
            .arg("--state")
            .arg(d.dir.join("l1/state.json"))
            .arg("--preserve-historical-states");
        let p = Proc::spawn("anvil", cmd, &d.dir.join("logs/anvil.log"))?;
        d.manifest.l1.anvil_pid = Some(p.pid());
        d.procs.anvil = Some(p);
        d.save()?;
    } else {
        d.progress.start(&format!("connecting to L1 at {}", d.manifest.l1.rpc));
    }
    let l1 = provider(&d.manifest.l1.rpc, deployer)?;
    let chain_id = d
        .wait("the L1 RPC", |_, _| {
            let l1 = l1.clone();
            async move {
                match l1.get_chain_id().await {
                    Ok(id) => (Some(id), String::new()),
                    Err(e) => (None, e.to_string()),
                }
            }
        })
        .await?;
    d.manifest.l1.chain_id = chain_id;
    if o.own_l1 {
        // anvil has loaded its state: move the file aside, so that only a clean stop (anvil's dump on exit)
        // leaves one to resume from, never a stale one after anvil was killed.
        let state = d.dir.join("l1/state.json");
        if state.exists() {
            std::fs::rename(&state, d.dir.join("l1/state.loaded.json"))
                .with_context(|| format!("moving {} aside", state.display()))?;
        }
    }
    let head = l1.get_block_number().await.context("reading the L1 head")?;
    d.progress.done(&format!("chain id {chain_id}, head {head}"));

    Ok(l1)
}

/// The contracts deployed, and the deployer's stock of METIS for rewards approved to the escrow.
async fn deploy(d: &mut Devnet, l1: &DynProvider, deployer: &PrivateKeySigner) -> Result<()> {
    let o = d.manifest.options.clone();
    d.progress.start(if o.governance.is_some() {
        "deploying METIS, LockingInfo, LockingPool, BatchInbox, PosParams, the timelock and the governor"
    } else {
        "deploying METIS, LockingInfo, LockingPool and BatchInbox"
    });
    let cfg = DeployConfig {
        owner: deployer.address(),
        reward_payer: deployer.address(),
        reward_per_block: U256::from(10u64).pow(U256::from(18)),
        token: None,
        governance: o.governance.as_ref().map(|g| metis_contracts::GovConfig {
            voting_delay_blocks: g.voting_delay_blocks,
            voting_period_blocks: g.voting_period_blocks,
            proposal_threshold: U256::from(g.threshold_tokens) * U256::from(10u64).pow(U256::from(18)),
            quorum_percent: g.quorum_percent,
            timelock_delay_secs: g.timelock_delay_secs,
            // The network's own values replace these before genesis (the testnet step aligns PosParams).
            pos_params: metis_pos::GovParam::ALL
                .iter()
                .map(|p| U256::from(p.get(&metis_pos::Params::default())))
                .collect(),
        }),
    };
    let dep: Deployment = deploy_all(l1, &cfg).await.context("deploying the L1 contracts")?;
    // The deployer pays the sequencers' rewards: a stock of devnet METIS the escrow may pull from.
    let token = metis_contracts::MetisToken::new(dep.token, l1.clone());
    let stock = U256::from(100_000_000u64) * U256::from(10u64).pow(U256::from(18));
    let minted = token
        .mint(deployer.address(), stock)
        .send()
        .await
        .context("sending mint")?;
    let approved = token
        .approve(dep.locking_info, stock)
        .send()
        .await
        .context("sending approve")?;
    for (what, pending) in [("mint", minted), ("approve", approved)] {
        let r = pending
            .get_receipt()
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if !r.status() {
            bail!("{what} for the reward stock reverted (tx {})", r.transaction_hash);
        }
    }
    std::fs::write(d.dir.join("contracts.json"), serde_json::to_string_pretty(&dep)?)?;
    d.manifest.contracts = Contracts {
        token: format!("{}", dep.token),
        locking_pool: format!("{}", dep.locking_pool),
        locking_info: format!("{}", dep.locking_info),
        batch_inbox: format!("{}", dep.batch_inbox),
        deployed_at_block: dep.deployed_at_block,
        governor: dep.governor.map(|a| a.to_string()),
        timelock: dep.timelock.map(|a| a.to_string()),
        params: dep.pos_params.map(|a| a.to_string()),
        votes: dep.votes.map(|a| a.to_string()),
    };
    d.save()?;
    d.progress.done(&format!("LockingPool {}", dep.locking_pool));

    Ok(())
}

/// Runtime worker threads for each of `processes` nodes sharing this machine: its share of the cores, at least one
/// (tokio's default is one per core each: among 10 nodes on 2 cores an idle node spent a fifth of its CPU switching
/// between threads; one worker each cut its CPU per height by 17% and the decision latency by 16%). None when
/// `TOKIO_WORKER_THREADS` is set: the nodes inherit it.
fn runtime_workers(processes: usize) -> Option<String> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / processes.max(1)).max(1).to_string())
}

/// Every node started; waits for their RPCs and the first block the network decides.
async fn start_nodes(d: &mut Devnet, o: &Options) -> Result<()> {
    d.progress.start(&format!(
        "starting {} sequencers and {} RPC nodes (logs in {})",
        o.nodes,
        o.rpc_nodes,
        d.dir.join("logs").display()
    ));
    let exe = std::env::current_exe().context("locating the metis-seq binary")?;
    let pass = d.dir.join("l2/passphrase");
    let node_log = std::env::var("METIS_DEVNET_NODE_LOG").unwrap_or_else(|_| "info".into());
    let workers = runtime_workers(o.nodes.saturating_add(o.rpc_nodes));
    let spawn = |name: &str, config: &Path, log: &Path, netns: &Option<manifest::Netns>| {
        // `ip netns exec` enters the namespace and execs the node: the pid is the node's.
        let mut cmd = match netns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &n.name]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("node")
            .arg("--config")
            .arg(config)
            .arg("--passphrase-file")
            .arg(&pass)
            .env("RUST_LOG", &node_log);
        if let Some(w) = &workers {
            cmd.env("TOKIO_WORKER_THREADS", w);
        }
        Proc::spawn(name, cmd, log)
    };
    for i in 0..o.nodes {
        let n = &d.manifest.nodes[i];
        let p = spawn(&n.name, &n.config, &n.log, &n.netns)?;
        d.manifest.nodes[i].pid = Some(p.pid());
        d.procs.nodes.push(p);
    }
    for j in 0..o.rpc_nodes {
        let n = &d.manifest.rpc_nodes[j];
        let p = spawn(&n.name, &n.config, &n.log, &n.netns)?;
        d.manifest.rpc_nodes[j].pid = Some(p.pid());
        d.procs.rpc_nodes.push(p);
    }
    d.save()?;
    let heads = |client: reqwest::Client, nodes: Vec<Node>| async move {
        heads_of(&client, nodes.iter().map(|n| n.rpc.as_str())).await
    };
    let up = d
        .wait("every node's RPC", |c, n| async move {
            let hs = heads(c, n).await;
            let status = format!("heads {hs:?}");
            (
                hs.iter()
                    .all(Option::is_some)
                    .then(|| hs.iter().flatten().copied().max().unwrap_or(0)),
                status,
            )
        })
        .await?;
    d.progress.done(&format!("all RPCs up at height {up}"));

    d.progress.start("waiting for the first decided blocks");
    let first = d
        .wait("a block decided by the network", |c, n| async move {
            let hs = heads(c, n).await;
            let status = format!("heads {hs:?}");
            let min = hs.iter().map(|h| h.unwrap_or(0)).min().unwrap_or(0);
            ((min > up).then_some(min), status)
        })
        .await?;
    d.progress.done(&format!("every node at height >= {first}"));

    if o.rpc_nodes > 0 {
        d.progress.start("waiting for the RPC nodes to follow");
        let urls: Vec<String> = d.manifest.rpc_nodes.iter().map(|n| n.rpc.clone()).collect();
        let followed = d
            .wait("the RPC nodes", |c, _| {
                let urls = urls.clone();
                async move {
                    let hs = heads_of(&c, urls.iter().map(String::as_str)).await;
                    let status = format!("heads {hs:?}");
                    let min = hs.iter().map(|h| h.unwrap_or(0)).min().unwrap_or(0);
                    ((min >= first).then_some(min), status)
                }
            })
            .await?;
        d.progress.done(&format!("every RPC node at height >= {followed}"));
    }
    Ok(())
}

/// Each node's head by its RPC URL (None: it did not answer).
async fn heads_of(client: &reqwest::Client, urls: impl Iterator<Item = &str>) -> Vec<Option<u64>> {
    let mut hs = Vec::new();
    for url in urls {
        let h = crate::l1_cmd::rpc_call(client, url, "eth_blockNumber", json!([]))
            .await
            .ok()
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            });
        hs.push(h);
    }
    hs
}

/// The group key of the sequencers' first DKG.
async fn wait_for_key(d: &mut Devnet) -> Result<String> {
    d.progress
        .start("waiting for the sequencers' threshold key (DKG over L2 blocks)");
    let group_key = d
        .wait("the DKG", |c, n| async move {
            let Some(n0) = n.first() else {
                return (None, "no nodes".into());
            };
            match crate::l1_cmd::rpc_call(&c, &n0.rpc, "metis_thresholdKey", json!([])).await {
                Ok(v) => {
                    let key = v["current"]["group_key"].as_str().map(str::to_string);
                    let status = match &v["running"] {
                        Value::Null => "the first round has not begun".to_string(),
                        r => format!(
                            "round {} from block {}, {} blocks per phase",
                            r["round"], r["start"], r["phase_blocks"]
                        ),
                    };
                    (key, status)
                }
                Err(e) => (None, e.to_string()),
            }
        })
        .await?;
    d.progress.done("group key agreed");

    Ok(group_key)
}

/// The contracts handed to the timelock: from here on only a vote of the stake changes them.
async fn hand_over(d: &mut Devnet, deployer: &PrivateKeySigner, g: &manifest::GovOptions) -> Result<()> {
    d.progress
        .start("handing LockingPool, LockingInfo and PosParams to the governance timelock");
    let raw = std::fs::read_to_string(d.dir.join("contracts.json")).context("reading contracts.json")?;
    let dep: Deployment = serde_json::from_str(&raw).context("contracts.json")?;
    // A fresh provider: the deployer key sent the group key just before, so a cached nonce would be stale.
    let l1 = provider(&d.manifest.l1.rpc, deployer)?;
    if metis_contracts::handed_over(&l1, &dep)
        .await
        .context("reading LockingPool's owner")?
    {
        d.progress.done("done already");
        return Ok(());
    }
    metis_contracts::hand_over(&l1, &dep, deployer.address(), None, g.timelock_delay_secs)
        .await
        .context("the hand-over to the timelock")?;
    d.progress.done(&format!(
        "owner: timelock {} (delay {} s); proposals to governor {}",
        dep.timelock.map_or_else(String::new, |a| a.to_string()),
        g.timelock_delay_secs,
        dep.governor.map_or_else(String::new, |a| a.to_string())
    ));
    Ok(())
}

/// The group key registered in LockingPool (its MPC address follows from it), and in the manifest.
async fn register_group_key(d: &mut Devnet, deployer: &PrivateKeySigner, group_key: &str) -> Result<()> {
    d.progress.start("registering the group key in LockingPool");
    let pool_addr: Address = d
        .manifest
        .contracts
        .locking_pool
        .parse()
        .context("locking_pool address")?;
    // A fresh provider: the deployer key also sent the stake setup, so a cached nonce would be stale.
    let pool = LockingPool::new(pool_addr, provider(&d.manifest.l1.rpc, deployer)?);
    let encoded = crate::l1_cmd::group_key_eip2537(group_key)?;
    let address = Address::from_slice(&keccak256(&encoded)[12..]);
    let registered = pool
        .mpcAddress()
        .call()
        .await
        .context("reading LockingPool.mpcAddress")?;
    if registered == address {
        d.progress.done(&format!("already registered (MPC address {address})"));
    } else {
        if registered != Address::ZERO {
            d.progress.line(&format!(
                "  LockingPool has another group key ({registered}); replacing it"
            ));
        }
        let (r, now) = crate::l1_cmd::set_group_key(&pool, encoded.clone()).await?;
        if now != address {
            bail!("LockingPool derives {now} from the group key, expected {address}");
        }
        d.progress
            .done(&format!("MPC address {address} in L1 block {:?}", r.block_number));
    }
    d.manifest.group_key = Some(GroupKey {
        public_key: format!("0x{}", alloy::hex::encode(&encoded)),
        address: format!("{address}"),
    });
    Ok(())
}

/// Keys, genesis and configs for every node, the stakes locked on L1, and the nodes' entries in the manifest.
async fn generate(d: &mut Devnet, o: &Options, deployer: &PrivateKeySigner) -> Result<()> {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        t: crate::node_cmd::TestnetArgs,
    }
    let out = d.dir.join("l2");
    let contracts = d.dir.join("contracts.json");
    let stakes: Vec<String> = o.stakes.iter().map(u64::to_string).collect();
    let mut argv: Vec<String> = vec![
        "testnet".into(),
        "--out".into(),
        out.display().to_string(),
        "--nodes".into(),
        o.nodes.to_string(),
        "--rpc-nodes".into(),
        o.rpc_nodes.to_string(),
        "--base-port".into(),
        o.base_port.to_string(),
        "--stakes".into(),
        stakes.join(","),
        "--epoch-length".into(),
        o.epoch_length.to_string(),
        "--block-time-ms".into(),
        o.block_time_ms.to_string(),
        "--gas-limit".into(),
        o.gas_limit.to_string(),
        "--chain-id".into(),
        L2_CHAIN_ID.to_string(),
        "--accounts".into(),
        DEV_ACCOUNTS.to_string(),
        "--key-phase-blocks".into(),
        o.key_phase_blocks.to_string(),
        "--batch-blocks".into(),
        o.batch_blocks.to_string(),
        "--reward-epochs".into(),
        o.reward_epochs.to_string(),
        "--l1-rpc".into(),
        d.manifest.l1.rpc.clone(),
        "--l1-contracts".into(),
        contracts.display().to_string(),
        "--l1-confirmations".into(),
        "2".into(),
    ];
    if o.batch_blobs {
        argv.push("--batch-blobs".into());
    }
    if o.netns {
        let hosts = (0..o.nodes + o.rpc_nodes)
            .map(|i| Ok(node_host(o, i)?.0.to_string()))
            .collect::<Result<Vec<_>>>()?;
        argv.extend(["--hosts".into(), hosts.join(",")]);
    }
    let mut cli = Cli::try_parse_from(&argv).context("building the network's options")?;
    cli.t.set_l1_admin(deployer.clone());
    let pass_file = crate::node_cmd::generate_testnet(&cli.t).await?;
    let pass = metis_keystore::Passphrase::from_file(&pass_file)?;
    d.manifest.l2.genesis = out.join("genesis.json");
    d.manifest.l2.pos_genesis = out.join("pos_genesis.json");
    d.manifest.nodes.clear();
    for i in 0..o.nodes {
        let home = out.join(format!("node{i}"));
        let keys = crate::keys_cmd::SequencerKeys::load(&home.join("keys"), &pass)
            .with_context(|| format!("loading node{i}'s keys"))?;
        let owner_key_file = home.join("owner.key");
        let owner: PrivateKeySigner = std::fs::read_to_string(&owner_key_file)?
            .trim()
            .parse()
            .context("owner key")?;
        let port = |k| node_port(o.base_port, i, k);
        let (h, netns) = node_host(o, i)?;
        d.manifest.nodes.push(Node {
            name: format!("node{i}"),
            rpc: format!("http://{h}:{}", port(2)?),
            ws: format!("ws://{h}:{}", port(2)?),
            api: format!("http://{h}:{}", port(2)?),
            p2p: format!("/ip4/{h}/tcp/{}", port(0)?),
            gossip: format!("{h}:{}", port(1)?),
            metrics: format!("http://{h}:{}/metrics", port(3)?),
            dashboard: format!("http://{h}:{}/dashboard", port(2)?),
            data_dir: home.join("data"),
            config: home.join("config.toml"),
            log: d.dir.join(format!("logs/node{i}.log")),
            pid: None,
            signer: format!("{}", keys.l1_signer.address()),
            stake: o.stakes[i],
            owner: format!("{}", owner.address()),
            owner_key_file,
            netns,
        });
    }
    d.manifest.rpc_nodes.clear();
    for j in 0..o.rpc_nodes {
        // testnet puts the RPC nodes after the sequencers.
        let i = o.nodes + j;
        let home = out.join(format!("node{i}"));
        let port = |k| node_port(o.base_port, i, k);
        let (h, netns) = node_host(o, i)?;
        d.manifest.rpc_nodes.push(RpcNode {
            name: format!("rpc{j}"),
            rpc: format!("http://{h}:{}", port(2)?),
            ws: format!("ws://{h}:{}", port(2)?),
            p2p: format!("/ip4/{h}/tcp/{}", port(0)?),
            metrics: format!("http://{h}:{}/metrics", port(3)?),
            dashboard: format!("http://{h}:{}/dashboard", port(2)?),
            data_dir: home.join("data"),
            config: home.join("config.toml"),
            log: d.dir.join(format!("logs/rpc{j}.log")),
            pid: None,
            netns,
        });
    }
    if let Some(n) = d.manifest.nodes.first() {
        d.manifest.dashboard = n.dashboard.clone();
    }
    Ok(())
}

fn print_summary(d: &Devnet) {
    let m = &d.manifest;
    let p = &d.progress;
    p.line(&format!("ready in {:.1} s", p.t0.elapsed().as_secs_f64()));
    println!();
    // What users and wallets should talk to comes first: an RPC node, not a sequencer.
    for n in &m.rpc_nodes {
        println!(
            "  L2 RPC     {}  ws {}  ({}: an RPC node, it forwards transactions to the sequencers)",
            n.rpc, n.ws, n.name
        );
    }
    println!("  manifest   {}", Manifest::path(&d.dir).display());
    let l1_kind = if m.options.own_l1 {
        format!("anvil, state kept in {}", d.dir.join("l1").display())
    } else {
        "external".into()
    };
    println!("  L1         {}  chain id {}  ({l1_kind})", m.l1.rpc, m.l1.chain_id);
    println!(
        "  contracts  token {}  locking_pool {}  locking_info {}  batch_inbox {}",
        m.contracts.token, m.contracts.locking_pool, m.contracts.locking_info, m.contracts.batch_inbox
    );
    let c = &m.contracts;
    match (&m.options.governance, &c.governor, &c.timelock, &c.params, &c.votes) {
        (Some(g), Some(governor), Some(timelock), Some(params), Some(votes)) => println!(
            "  governance governor {governor}  timelock {timelock} (owns the contracts, delay {} s)  params {params}  \
             votes {votes}  (`metis-seq gov --contracts {}`)",
            g.timelock_delay_secs,
            d.dir.join("contracts.json").display()
        ),
        (Some(_), ..) => println!("  governance not deployed yet"),
        (None, ..) => println!("  governance none: the deployer's key owns the contracts (--admin)"),
    }
    if let Some(g) = &m.group_key {
        println!("  group key  MPC address {}  (public key in the manifest)", g.address);
    }
    println!(
        "  L2         chain id {}  {} ms blocks  gas limit {}  epochs of {} blocks  a batch every {} blocks ({})",
        m.l2.chain_id,
        m.options.block_time_ms,
        m.options.gas_limit,
        m.options.epoch_length,
        m.options.batch_blocks,
        if m.options.batch_blobs { "blobs" } else { "calldata" }
    );
    println!("  dashboard  {}  (every node serves one at /dashboard)", m.dashboard);
    for n in &m.rpc_nodes {
        println!(
            "    {:<6} rpc {}  ws {}  metrics {}  log {}",
            n.name,
            n.rpc,
            n.ws,
            n.metrics,
            n.log.display()
        );
    }
    for n in &m.nodes {
        println!(
            "    {:<6} rpc {}  ws {}  api {}  metrics {}  stake {}  signer {}  log {}",
            n.name,
            n.rpc,
            n.ws,
            n.api,
            n.metrics,
            n.stake,
            n.signer,
            n.log.display()
        );
    }
    println!(
        "  dev accounts (funded on L2{}; DEVNET ONLY, never use these keys elsewhere):",
        if m.options.own_l1 { " and on anvil" } else { "" }
    );
    for a in &m.accounts {
        println!("    {}  {}", a.address, a.private_key);
    }
    println!();
    println!(
        "  Ctrl-C here, or `metis-seq devnet stop --dir {}`, stops it.",
        d.dir.display()
    );
}

/// Until a signal: a node that exits is reported and left down (a failover to watch); anvil exiting ends it.
async fn supervise(
    d: &mut Devnet,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Result<()> {
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if let Some(a) = d.procs.anvil.as_mut() {
            if let Some(s) = a.newly_exited() {
                d.progress.line(&format!("anvil exited ({s}): stopping the devnet"));
                bail!("anvil exited ({s}); see {}", d.dir.join("logs/anvil.log").display());
            }
        }
        let mut changed = false;
        for (i, p) in d.procs.nodes.iter_mut().enumerate() {
            if let Some(s) = p.newly_exited() {
                d.progress.line(&format!(
                    "{} exited ({s}); the others go on (`metis-seq devnet stop` and a new start bring it back)",
                    p.name
                ));
                d.manifest.nodes[i].pid = None;
                changed = true;
            }
        }
        for (i, p) in d.procs.rpc_nodes.iter_mut().enumerate() {
            if let Some(s) = p.newly_exited() {
                d.progress.line(&format!(
                    "{} exited ({s}); the sequencers go on (`metis-seq devnet stop` and a new start bring it back)",
                    p.name
                ));
                d.manifest.rpc_nodes[i].pid = None;
                changed = true;
            }
        }
        if changed {
            d.save()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_stakes_survive_any_one_node_stopping() {
        assert!(fault_warnings(&STAKES).is_empty());
        // 100k of 230k is 43%: the other three hold 57%, short of the 2/3 quorum.
        let w = fault_warnings(&[100_000, 70_000, 40_000, 20_000]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("node0 holds 43%"), "{w:?}");
        // Exactly a third is already too much: the rest hold exactly 2/3, not more.
        assert_eq!(fault_warnings(&[50, 40, 30, 30]).len(), 1);
        assert!(fault_warnings(&[49, 41, 30, 30]).is_empty());
        assert_eq!(fault_warnings(&[1, 1, 1]).len(), 1);
        assert!(fault_warnings(&[1]).is_empty());
    }
}
