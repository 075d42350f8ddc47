//! A node's TOML config (`metis-seq init` and `metis-seq testnet` write it) and how it becomes the node's
//! settings: paths relative to the config file, the genesis files read and parsed, timings checked.

use crate::{L1Settings, NodeSettings, PosGenesis};
use metis_consensus::app::Timing;
use metis_execution::ChainSpec;
use metis_mempool::MempoolConfig;
use metis_rpc::limits::HeavyLimits;
use metis_rpc::RpcConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(&'static str),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    pub moniker: String,
    /// "sequencer" (default) or "rpc": an unstaked node that follows the decided chain, serves the RPC and
    /// forwards its users' transactions to the sequencers (it needs their `[followers]` to let its key in).
    #[serde(default)]
    pub role: Role,
    /// Paths are relative to the config file's directory.
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    /// Where the consensus key's signing guard lives (default: `<keys_dir>/signing-guard`). Keep it off the data
    /// dir: a data dir restored from an older copy must not take the guard back in time with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_guard: Option<PathBuf>,
    /// geth-style L2 genesis.
    pub genesis: PathBuf,
    /// PoS genesis: ledger parameters and the genesis sequencers.
    pub pos_genesis: PathBuf,
    pub rpc: RpcSection,
    pub p2p: P2pSection,
    pub gossip: GossipSection,
    /// Which RPC nodes may follow this sequencer and forward transactions to it, and within what limits.
    #[serde(default)]
    pub followers: FollowersSection,
    #[serde(default)]
    pub consensus: ConsensusSection,
    #[serde(default)]
    pub txpool: TxpoolSection,
    /// The L1 endpoint the sequencer set is read from (required when the PoS genesis names L1 contracts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<L1Section>,
    /// Prometheus metrics (no section: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
    /// State history kept for reads at older blocks: "full" (default), "none", or a number of recent blocks.
    #[serde(default = "default_state_history")]
    pub state_history: String,
}

/// See [`NodeConfigFile::role`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Sequencer,
    Rpc,
}

/// A sequencer's followers: RPC nodes, let in on the libp2p port (to follow the chain) and on the gossip port
/// (to forward transactions), each within its own limits (`metis_net::followers`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowersSection {
    /// The followers' identity keys (0x-prefixed ed25519 public keys, as `metis-seq init --rpc-node` prints).
    pub keys: Vec<String>,
    /// Any key may follow (a public sequencer; the limits still hold per follower).
    pub open: bool,
    pub txs_per_sec: u32,
    pub bytes_per_sec: u64,
    /// Transactions of all followers together per second.
    pub total_txs_per_sec: u32,
    /// Refused or malformed transactions per minute before a follower's link is cut.
    pub invalid_per_min: u32,
    pub max_links: usize,
    /// How long a follower cut for invalid transactions is refused (at most 30 days).
    pub ban_secs: u64,
}

impl Default for FollowersSection {
    fn default() -> Self {
        let l = metis_net::FollowerLimits::default();
        Self {
            keys: Vec::new(),
            open: false,
            txs_per_sec: l.txs_per_sec,
            bytes_per_sec: l.bytes_per_sec,
            total_txs_per_sec: l.total_txs_per_sec,
            invalid_per_min: l.invalid_per_min,
            max_links: l.max_links,
            ban_secs: l.ban.as_secs(),
        }
    }
}

impl FollowersSection {
    pub fn policy(&self) -> Result<metis_net::FollowerPolicy, ConfigError> {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                k.parse::<alloy_primitives::B256>()
                    .map(|b| b.0)
                    .map_err(|_| ConfigError::Invalid("[followers] keys must be 0x-prefixed 32-byte hex keys"))
            })
            .collect::<Result<_, _>>()?;
        if self.txs_per_sec == 0 || self.bytes_per_sec == 0 || self.total_txs_per_sec == 0 || self.max_links == 0 {
            return Err(ConfigError::Invalid(
                "[followers] txs_per_sec, bytes_per_sec, total_txs_per_sec and max_links must be positive",
            ));
        }
        Ok(metis_net::FollowerPolicy {
            keys,
            open: self.open,
            limits: metis_net::FollowerLimits {
                txs_per_sec: self.txs_per_sec,
                bytes_per_sec: self.bytes_per_sec,
                total_txs_per_sec: self.total_txs_per_sec,
                invalid_per_min: self.invalid_per_min,
                max_links: self.max_links,
                ban: Duration::from_secs(self.ban_secs),
            },
        })
    }
}

pub fn default_state_history() -> String {
    "full".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where Prometheus scrapes `/metrics`, e.g. 127.0.0.1:9100.
    pub addr: SocketAddr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L1Section {
    pub rpc: String,
    /// Blocks on top of an event's block before it counts (12 on Ethereum; small on a devnet).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// L1 blocks an event waits below this node's view before it proposes it.
    #[serde(default = "default_margin")]
    pub margin: u64,
    /// Largest block range per eth_getLogs call.
    #[serde(default = "default_max_range")]
    pub max_range: u64,
    /// Posting of the pool's batches and reward reports, with the sequencer's L1 signer key.
    #[serde(default)]
    pub poster: PosterSection,
    /// A block explorer for this L1 (e.g. `https://etherscan.io`): the dashboard links L1 transactions to
    /// `{explorer}/tx/{hash}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explorer: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PosterSection {
    pub enabled: bool,
    /// An item the producer has not landed after this long is posted by the next in the fallback order.
    pub turn_timeout_ms: u64,
    /// L1 blocks a transaction waits before it is sent again with higher fees.
    pub bump_after_blocks: u64,
    pub max_fee_gwei: u64,
    pub max_blob_fee_gwei: u64,
    /// Transactions in flight at once.
    pub max_in_flight: usize,
}

impl Default for PosterSection {
    fn default() -> Self {
        Self {
            enabled: true,
            turn_timeout_ms: 60_000,
            bump_after_blocks: 3,
            max_fee_gwei: 500,
            max_blob_fee_gwei: 500,
            max_in_flight: 4,
        }
    }
}

fn default_confirmations() -> u64 {
    12
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_margin() -> u64 {
    1
}
pub fn default_max_range() -> u64 {
    1000
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcSection {
    pub addr: SocketAddr,
    /// Gas one eth_call or eth_estimateGas run may use at most (geth's `rpc.gascap`).
    #[serde(default = "default_gas_cap")]
    pub gas_cap: u64,
    /// Longest an eth_call, eth_estimateGas or log scan may wait for a thread and then run (geth's
    /// `rpc.evmtimeout`), in milliseconds.
    #[serde(default = "default_evm_timeout_ms")]
    pub evm_timeout_ms: u64,
    /// Threads for those requests (unset: half the cores of the machine the node runs on, at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_threads: Option<usize>,
    /// Those requests one client address may have running or waiting.
    #[serde(default = "default_calls_per_ip")]
    pub calls_per_ip: u32,
    /// Open connections from one client address (behind a proxy, raise it or let the proxy limit).
    #[serde(default = "default_connections_per_ip")]
    pub connections_per_ip: u32,
    /// Calls per second from one client address (each call of a batch counts), and the burst above it.
    #[serde(default = "default_requests_per_ip_per_sec")]
    pub requests_per_ip_per_sec: u32,
    #[serde(default = "default_requests_per_ip_burst")]
    pub requests_per_ip_burst: u32,
}

impl RpcSection {
    /// Listens on `addr` with every limit at its default.
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            addr,
            gas_cap: default_gas_cap(),
            evm_timeout_ms: default_evm_timeout_ms(),
            call_threads: None,
            calls_per_ip: default_calls_per_ip(),
            connections_per_ip: default_connections_per_ip(),
            requests_per_ip_per_sec: default_requests_per_ip_per_sec(),
            requests_per_ip_burst: default_requests_per_ip_burst(),
        }
    }

    fn config(&self) -> Result<RpcConfig, ConfigError> {
        if self.evm_timeout_ms == 0
            || self.call_threads == Some(0)
            || self.calls_per_ip == 0
            || self.connections_per_ip == 0
            || self.requests_per_ip_per_sec == 0
            || self.requests_per_ip_burst == 0
        {
            return Err(ConfigError::Invalid(
                "[rpc] evm_timeout_ms, call_threads, calls_per_ip, connections_per_ip, requests_per_ip_per_sec and \
                 requests_per_ip_burst must be above 0",
            ));
        }
        Ok(RpcConfig {
            addr: self.addr,
            max_connections_per_ip: self.connections_per_ip,
            requests_per_ip_per_sec: self.requests_per_ip_per_sec,
            requests_per_ip_burst: self.requests_per_ip_burst,
            limits: metis_rpc::RpcLimits {
                gas_cap: self.gas_cap,
                heavy: HeavyLimits {
                    slots: self.call_threads.unwrap_or_else(|| HeavyLimits::default().slots),
                    per_ip: self.calls_per_ip,
                    timeout: Duration::from_millis(self.evm_timeout_ms),
                },
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

fn default_gas_cap() -> u64 {
    metis_rpc::RpcLimits::default().gas_cap
}

fn default_evm_timeout_ms() -> u64 {
    HeavyLimits::default()
        .timeout
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

fn default_calls_per_ip() -> u32 {
    HeavyLimits::default().per_ip
}

fn default_connections_per_ip() -> u32 {
    RpcConfig::default().max_connections_per_ip
}

fn default_requests_per_ip_per_sec() -> u32 {
    RpcConfig::default().requests_per_ip_per_sec
}

fn default_requests_per_ip_burst() -> u32 {
    RpcConfig::default().requests_per_ip_burst
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// libp2p multiaddr, e.g. /ip4/0.0.0.0/tcp/26656
    pub listen: String,
    pub peers: Vec<String>,
    /// Accept any libp2p peer, not only `peers` and the ledger's sequencers (for a node that serves followers).
    #[serde(default)]
    pub open: bool,
    /// How consensus messages travel: `broadcast` (default) sends each one straight to every connected peer and
    /// never relays; `gossipsub` relays through a mesh (less upload for a proposer in a large pool, but every
    /// peer forwards what it gets, so a flooding validator costs all of them several times over).
    #[serde(default)]
    pub pubsub: Pubsub,
    /// Inbound libp2p connections from one IP address at most. Default: enough for every configured peer to
    /// share one address (a pool on one machine, or behind one NAT), and never below Malachite's 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_ip: Option<usize>,
}

/// See [`P2pSection::pubsub`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pubsub {
    #[default]
    Broadcast,
    Gossipsub,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipSection {
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    pub block_time_ms: u64,
    pub propose_timeout_ms: u64,
    pub prevote_timeout_ms: u64,
    pub precommit_timeout_ms: u64,
    /// Added to each timeout per round.
    pub timeout_delta_ms: u64,
    /// Ended epochs, set changes and L1 events the PoS ledger keeps in memory; older ones go to the store
    /// (the PoS API still serves them), so what is written with every block stays bounded.
    #[serde(default = "default_ledger_history")]
    pub ledger_history: usize,
}

fn default_ledger_history() -> usize {
    metis_consensus::app::DEFAULT_HISTORY_KEEP
}

impl Default for ConsensusSection {
    fn default() -> Self {
        Self {
            block_time_ms: 1000,
            // A dead producer costs propose + precommit timeout: with 1 s blocks the next block comes
            // within about 1.6 s.
            propose_timeout_ms: 400,
            prevote_timeout_ms: 300,
            precommit_timeout_ms: 200,
            timeout_delta_ms: 200,
            ledger_history: default_ledger_history(),
        }
    }
}

/// Block times the project tests (e2e at 250 ms and 1 s, benchmarks at 100 ms); outside this range a node
/// refuses to start.
pub const BLOCK_TIME_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=10_000;

impl ConsensusSection {
    /// The timeouts for `block_time_ms`: the defaults at 1 s and above (a dead producer costs about 0.6 s), in
    /// proportion below, down to floors a vote round trip on a loaded machine stays under (tens of ms); the
    /// propose timeout still stretches for big blocks (`pacing`).
    pub fn for_block_time(block_time_ms: u64) -> Self {
        let d = Self::default();
        let scaled = |at_1s: u64, floor: u64| (at_1s.saturating_mul(block_time_ms) / 1000).clamp(floor, at_1s);
        Self {
            block_time_ms,
            propose_timeout_ms: scaled(d.propose_timeout_ms, 100),
            prevote_timeout_ms: scaled(d.prevote_timeout_ms, 75),
            precommit_timeout_ms: scaled(d.precommit_timeout_ms, 50),
            timeout_delta_ms: scaled(d.timeout_delta_ms, 50),
            ledger_history: d.ledger_history,
        }
    }

    pub fn timing(&self) -> Result<Timing, ConfigError> {
        if !BLOCK_TIME_RANGE_MS.contains(&self.block_time_ms) {
            return Err(ConfigError::Invalid(
                "consensus.block_time_ms must be within 100..=10000 (the range the project tests)",
            ));
        }
        if self.block_time_ms == 0 || self.propose_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "consensus.block_time_ms and consensus.propose_timeout_ms must be positive",
            ));
        }
        let ms = Duration::from_millis;
        let mut t = metis_consensus::app::LinearTimeouts::default();
        t.propose = ms(self.propose_timeout_ms);
        t.prevote = ms(self.prevote_timeout_ms);
        t.precommit = ms(self.precommit_timeout_ms);
        t.propose_delta = ms(self.timeout_delta_ms);
        t.prevote_delta = ms(self.timeout_delta_ms);
        t.precommit_delta = ms(self.timeout_delta_ms);
        // Votes go out again only when a round is stuck past a whole block time: a healthy height lasts one block
        // time, and with the sum of the step timeouts (0.9 s at 1 s blocks) every node sent its prevote and
        // precommit to every peer a second time at every height, from the commit step.
        t.rebroadcast = ms(self.block_time_ms) + t.propose + t.prevote + t.precommit;
        Ok(Timing {
            timeouts: t,
            block_time: ms(self.block_time_ms),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxpoolSection {
    pub max_txs: usize,
    /// Encoded bytes of all pooled transactions at most, in MiB.
    #[serde(default = "default_max_mib")]
    pub max_mib: usize,
}

fn default_max_mib() -> usize {
    128
}

impl Default for TxpoolSection {
    fn default() -> Self {
        Self {
            max_txs: 100_000,
            max_mib: default_max_mib(),
        }
    }
}

/// The secrets a node runs with, loaded (and decrypted) by the caller.
pub struct NodeSecrets {
    pub consensus: ed25519_dalek::SigningKey,
    pub dkg: metis_mpc::seal::DkgSecret,
    pub l1_signer: alloy::signers::local::PrivateKeySigner,
    pub passphrase: metis_keystore::Passphrase,
}

/// `p` relative to the config file's directory `base`, unless absolute.
pub fn rel(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl NodeConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(&read(path)?).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("config"),
            reason: e.to_string(),
        })
    }

    /// The node's settings: the genesis files under `base` read, the sections turned into the parts' settings.
    pub fn settings(&self, base: &Path, secrets: NodeSecrets) -> Result<NodeSettings, ConfigError> {
        let genesis_path = rel(base, &self.genesis);
        let spec = ChainSpec::from_genesis_json(&read(&genesis_path)?).map_err(|e| ConfigError::Parse {
            path: genesis_path.clone(),
            reason: e.to_string(),
        })?;
        let pos_path = rel(base, &self.pos_genesis);
        let pos: PosGenesis = serde_json::from_str(&read(&pos_path)?).map_err(|e| ConfigError::Parse {
            path: pos_path.clone(),
            reason: e.to_string(),
        })?;
        let rpc_node = self.role == Role::Rpc;
        if self.p2p.connections_per_ip == Some(0) {
            return Err(ConfigError::Invalid("[p2p] connections_per_ip must be positive"));
        }
        Ok(NodeSettings {
            moniker: self.moniker.clone(),
            role: self.role,
            followers: self.followers.policy()?,
            data_dir: rel(base, &self.data_dir),
            spec,
            pos,
            key: secrets.consensus,
            signing_guard: match &self.signing_guard {
                Some(p) => rel(base, p),
                None => rel(base, &self.keys_dir).join("signing-guard"),
            },
            p2p_listen: self.p2p.listen.clone(),
            p2p_peers: self.p2p.peers.clone(),
            p2p_open: self.p2p.open,
            pubsub: self.p2p.pubsub,
            p2p_connections_per_ip: self.p2p.connections_per_ip,
            rpc: self.rpc.config()?,
            gossip_listen: self.gossip.listen,
            gossip_peers: self.gossip.peers.clone(),
            timing: self.consensus.timing()?,
            mempool: MempoolConfig {
                max_txs: self.txpool.max_txs,
                max_bytes: self.txpool.max_mib.saturating_mul(1024 * 1024),
                ..Default::default()
            },
            // An RPC node takes no part in the pool's threshold key and posts nothing.
            dkg: (!rpc_node).then_some(secrets.dkg),
            passphrase: Some(secrets.passphrase),
            l1: self.l1.as_ref().map(L1Section::settings),
            poster: self
                .l1
                .as_ref()
                .filter(|l| l.poster.enabled && !rpc_node)
                .map(|l| l.poster.settings(secrets.l1_signer)),
            history_keep: self.consensus.ledger_history,
            metrics: self.metrics.as_ref().map(|m| m.addr),
            state_history: self.state_history.parse().map_err(|reason| ConfigError::Parse {
                path: base.join("config.toml"),
                reason,
            })?,
        })
    }
}

impl L1Section {
    fn settings(&self) -> L1Settings {
        L1Settings {
            rpc: self.rpc.clone(),
            confirmations: self.confirmations,
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            margin: self.margin,
            max_range: self.max_range,
            explorer: self.explorer.clone(),
        }
    }
}

impl PosterSection {
    fn settings(&self, key: alloy::signers::local::PrivateKeySigner) -> metis_poster::PosterSettings {
        metis_poster::PosterSettings {
            key,
            turn_timeout: Duration::from_millis(self.turn_timeout_ms.max(100)),
            bump_after_blocks: self.bump_after_blocks.max(1),
            max_fee_cap: u128::from(self.max_fee_gwei) * 1_000_000_000,
            max_blob_fee_cap: u128::from(self.max_blob_fee_gwei) * 1_000_000_000,
            max_in_flight: self.max_in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpc_gas_cap_defaults_to_geths_and_can_be_set() {
        let s: RpcSection = toml::from_str(r#"addr = "127.0.0.1:8545""#).unwrap();
        assert_eq!(s.gas_cap, 50_000_000);
        let s: RpcSection = toml::from_str("addr = \"127.0.0.1:8545\"\ngas_cap = 1000").unwrap();
        assert_eq!(s.gas_cap, 1000);
        assert!(toml::from_str::<RpcSection>("addr = \"127.0.0.1:8545\"\ngas_cap = -1").is_err());
    }

    #[test]
    fn follower_keys_and_limits_are_checked() {
        let ok = FollowersSection {
            keys: vec![format!("0x{}", "ab".repeat(32))],
            ..Default::default()
        };
        let p = ok.policy().unwrap();
        assert!(p.admits(&[0xab; 32]) && !p.admits(&[0xcd; 32]));
        for bad in [
            FollowersSection {
                keys: vec!["0x1234".into()],
                ..Default::default()
            },
            FollowersSection {
                txs_per_sec: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(bad.policy(), Err(ConfigError::Invalid(_))));
        }
        let role: NodeConfigFileRole = toml::from_str("role = \"rpc\"").unwrap();
        assert_eq!(role.role, Role::Rpc);
        assert!(toml::from_str::<NodeConfigFileRole>("role = \"validator\"").is_err());
    }

    #[test]
    fn timeouts_follow_the_block_time_with_floors_and_the_range_is_enforced() {
        let d = ConsensusSection::default();
        let at_1s = ConsensusSection::for_block_time(1000);
        assert_eq!(
            (
                at_1s.propose_timeout_ms,
                at_1s.prevote_timeout_ms,
                at_1s.precommit_timeout_ms
            ),
            (d.propose_timeout_ms, d.prevote_timeout_ms, d.precommit_timeout_ms)
        );
        let slow = ConsensusSection::for_block_time(5000);
        assert_eq!(slow.propose_timeout_ms, d.propose_timeout_ms);
        let fast = ConsensusSection::for_block_time(250);
        assert_eq!(
            (
                fast.propose_timeout_ms,
                fast.prevote_timeout_ms,
                fast.precommit_timeout_ms,
                fast.timeout_delta_ms
            ),
            (100, 75, 50, 50)
        );
        let fastest = ConsensusSection::for_block_time(100);
        assert_eq!(fastest.propose_timeout_ms, 100);
        assert!(fast.timing().is_ok() && fastest.timing().is_ok());
        // A healthy height (one block time) never reaches the rebroadcast.
        for c in [&at_1s, &slow, &fast, &fastest] {
            let t = c.timing().unwrap();
            assert!(t.timeouts.rebroadcast > t.block_time, "{:?}", t.timeouts);
        }
        assert_eq!(
            crate::status_interval(Duration::from_millis(250)),
            Duration::from_secs(1)
        );
        assert_eq!(crate::status_interval(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(crate::status_interval(Duration::from_secs(10)), Duration::from_secs(10));
        for bad in [0, 50, 99, 10_001] {
            assert!(ConsensusSection::for_block_time(bad).timing().is_err(), "{bad}");
        }
    }

    #[derive(Deserialize)]
    struct NodeConfigFileRole {
        role: Role,
    }

    #[test]
    fn consensus_messages_go_by_broadcast_unless_gossipsub_is_asked_for() {
        let base = "listen = \"/ip4/127.0.0.1/tcp/1\"\npeers = []\n";
        let s: P2pSection = toml::from_str(base).unwrap();
        assert_eq!(s.pubsub, Pubsub::Broadcast);
        let s: P2pSection = toml::from_str(&format!("{base}pubsub = \"gossipsub\"")).unwrap();
        assert_eq!(s.pubsub, Pubsub::Gossipsub);
        assert!(toml::from_str::<P2pSection>(&format!("{base}pubsub = \"flood\"")).is_err());
        assert_eq!(s.connections_per_ip, None);
        let s: P2pSection = toml::from_str(&format!("{base}connections_per_ip = 40")).unwrap();
        assert_eq!(s.connections_per_ip, Some(40));
        // The default lets every configured peer of a one-machine pool connect, never below Malachite's 5.
        assert_eq!(crate::connections_per_ip(0), 5);
        assert_eq!(crate::connections_per_ip(3), 10);
        assert_eq!(crate::connections_per_ip(31), 66);
    }
}
