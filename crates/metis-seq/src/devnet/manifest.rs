//! DIR/devnet.json: what a running devnet is, for the tools and tests that drive it. The field names the devnet
//! issue lists are kept as they are; the rest is added beside them.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE: &str = "devnet.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// "starting", "ready" or "stopped".
    pub state: String,
    /// The `metis-seq devnet` process that owns the nodes and anvil (`devnet stop` signals it).
    pub supervisor_pid: Option<u32>,
    pub warning: String,
    pub options: Options,
    pub l1: L1,
    pub l2: L2,
    pub contracts: Contracts,
    pub group_key: Option<GroupKey>,
    pub nodes: Vec<Node>,
    /// Unstaked RPC nodes: what users and wallets should talk to (they forward transactions to the pool).
    #[serde(default)]
    pub rpc_nodes: Vec<RpcNode>,
    pub accounts: Vec<Account>,
    /// The pool dashboard (node0's; every node serves one at `/dashboard` on its RPC port).
    #[serde(default)]
    pub dashboard: String,
}

/// How the devnet was first started; a restart of the same directory keeps them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Options {
    pub nodes: usize,
    #[serde(default)]
    pub rpc_nodes: usize,
    pub block_time_ms: u64,
    /// The L2 genesis gas limit (a devnet from before this option has the default).
    #[serde(default = "default_gas_limit")]
    pub gas_limit: u64,
    pub epoch_length: u64,
    pub l1_port: u16,
    pub l1_block_time_secs: u64,
    pub base_port: u16,
    pub stakes: Vec<u64>,
    pub batch_blocks: u64,
    pub batch_blobs: bool,
    pub reward_epochs: u64,
    pub key_phase_blocks: u64,
    /// false when the devnet runs on an L1 it was given (--l1-rpc) rather than its own anvil.
    pub own_l1: bool,
    /// The anvil binary it was started with (a restart from another directory finds it again).
    #[serde(default)]
    pub anvil: Option<PathBuf>,
    /// Each node in a network namespace of its own (`--netns`).
    #[serde(default)]
    pub netns: bool,
    /// How the pool governs itself on L1; None: the deployer's owner key does (`--admin`, and every devnet
    /// from before governance).
    #[serde(default)]
    pub governance: Option<GovOptions>,
}

/// The governor's settings (`--gov-*`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GovOptions {
    pub voting_delay_blocks: u64,
    pub voting_period_blocks: u32,
    pub timelock_delay_secs: u64,
    pub quorum_percent: u64,
    /// Whole tokens of stake an owner needs to propose.
    pub threshold_tokens: u64,
}

fn default_gas_limit() -> u64 {
    metis_execution::genesis::DEFAULT_GAS_LIMIT
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct L1 {
    pub rpc: String,
    pub chain_id: u64,
    pub anvil_pid: Option<u32>,
    /// The contracts' owner (deployer): whitelists, mints, registers the group key. DEVNET ONLY.
    pub deployer: Account,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct L2 {
    pub chain_id: u64,
    pub genesis: PathBuf,
    pub pos_genesis: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Contracts {
    pub token: String,
    pub locking_pool: String,
    pub locking_info: String,
    pub batch_inbox: String,
    pub deployed_at_block: u64,
    /// Governance (absent with `--admin`): the OZ Governor, its TimelockController (the contracts' owner after
    /// the hand-over), PosParams and StakeVotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timelock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupKey {
    /// EIP-2537 G2 encoding, hex.
    pub public_key: String,
    /// The "MPC address" LockingPool derives from it.
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub rpc: String,
    pub ws: String,
    /// The PoS and pool API (metis_*): served on the RPC port.
    pub api: String,
    pub p2p: String,
    pub gossip: String,
    /// Prometheus metrics (`/metrics`; `/health` and `/ready` on the same port).
    #[serde(default)]
    pub metrics: String,
    /// The pool dashboard this node serves.
    #[serde(default)]
    pub dashboard: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// None while the node is not running.
    pub pid: Option<u32>,
    /// The sequencer's L1 signer (posts batches; names the block producer).
    pub signer: String,
    pub stake: u64,
    /// The sequencer's L1 owner and its key file (unlock, relock). DEVNET ONLY.
    pub owner: String,
    pub owner_key_file: PathBuf,
    /// The network namespace it runs in (`--netns`) and its address there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Netns {
    pub name: String,
    pub addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RpcNode {
    pub name: String,
    pub rpc: String,
    pub ws: String,
    pub p2p: String,
    pub metrics: String,
    pub dashboard: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// None while the node is not running.
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub address: String,
    pub private_key: String,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Every node process recorded as running (sequencers and RPC nodes), with its config path.
    pub fn node_pids(&self) -> Vec<(u32, String)> {
        let seqs = self.nodes.iter().map(|n| (n.pid, &n.config));
        let rpcs = self.rpc_nodes.iter().map(|n| (n.pid, &n.config));
        seqs.chain(rpcs)
            .filter_map(|(pid, config)| pid.map(|p| (p, config.display().to_string())))
            .collect()
    }

    /// Nothing recorded as running.
    pub fn clear_pids(&mut self) {
        self.supervisor_pid = None;
        self.l1.anvil_pid = None;
        self.nodes.iter_mut().for_each(|n| n.pid = None);
        self.rpc_nodes.iter_mut().for_each(|n| n.pid = None);
    }

    /// Written whole and renamed into place, so a reader never sees half a file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }
}
