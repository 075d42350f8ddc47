//! `metis-seq init`, `metis-seq node` and `metis-seq testnet`: a sequencer node from a TOML config, and a
//! local N-node network generated in one go (keys, genesis, configs).

use crate::dev::dev_keys;
use crate::keys_cmd::{generate, PassphraseArgs, SequencerKeys};
use alloy::primitives::{keccak256, Address, B256, U256};
use anyhow::{bail, Context, Result};
use clap::Args;
use commonware_codec::Encode;
use commonware_cryptography::Signer as _;
use metis_keystore::{KdfParams, Passphrase};
use metis_node::config::{
    rel, ConsensusSection, FollowersSection, GossipSection, L1Section, MetricsSection, NodeConfigFile, NodeSecrets,
    P2pSection, PosterSection, Pubsub, Role, RpcSection, TxpoolSection,
};
use metis_node::PosGenesis;
use metis_pos::{Params, Sequencer, SequencerStatus};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tracing::info;

#[derive(Args)]
pub struct NodeArgs {
    /// The node's TOML config (`metis-seq init` or `metis-seq testnet` writes one).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    pass: PassphraseArgs,
}

#[derive(Args)]
pub struct InitArgs {
    /// Directory for the node: keys/, config.toml (refuses to overwrite).
    #[arg(long)]
    home: PathBuf,
    #[arg(long, default_value = "sequencer")]
    moniker: String,
    /// An RPC node: no stake, follows the decided chain, serves users and forwards their transactions to the
    /// sequencers (list its printed identity key in their `[followers] keys`).
    #[arg(long)]
    rpc_node: bool,
    #[command(flatten)]
    pass: PassphraseArgs,
}

#[derive(Args)]
pub struct TestnetArgs {
    /// Output directory; node i goes to OUT/node{i}.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// First port; node i uses base+10i (p2p), base+10i+1 (gossip), base+10i+2 (RPC).
    #[arg(long, default_value_t = 27000)]
    base_port: u16,
    /// Stake of each node in whole tokens, comma separated (default: 100000,90000,80000,...).
    #[arg(long, value_delimiter = ',')]
    stakes: Vec<u64>,
    #[arg(long, default_value_t = 100)]
    epoch_length: u64,
    #[arg(long, default_value_t = 3)]
    missed_limit: u32,
    #[arg(long, default_value_t = 59902)]
    chain_id: u64,
    #[arg(long, default_value_t = 1000)]
    block_time_ms: u64,
    /// Default: derived from the block time (400 ms at 1 s and above, in proportion below, at least 100 ms).
    #[arg(long)]
    propose_timeout_ms: Option<u64>,
    /// Block gas limit of the genesis.
    #[arg(long, default_value_t = metis_execution::genesis::DEFAULT_GAS_LIMIT)]
    gas_limit: u64,
    /// Prefunded dev accounts (the well-known dev mnemonic).
    #[arg(long, default_value_t = 20)]
    accounts: u32,
    /// Blocks per phase of a threshold-key round (deals, acks, logs): with N > 0 the genesis set runs a DKG
    /// from block 2 and reshares on every set change; 0 runs none.
    #[arg(long, default_value_t = 0)]
    key_phase_blocks: u64,
    /// The ledger cuts a batch for L1 every N blocks (0: no batches) ...
    #[arg(long, default_value_t = 0)]
    batch_blocks: u64,
    /// ... or once this many seconds passed since its first block, if it carries a transaction. With an L1
    /// (`--l1-rpc`), the pool signs every batch header with its threshold key.
    #[arg(long, default_value_t = 10)]
    batch_interval_secs: u64,
    /// A reward report (blocks produced per sequencer) every N ended epochs, signed by the pool (0: none).
    #[arg(long, default_value_t = 0)]
    reward_epochs: u64,
    /// Batch payloads go to L1 in EIP-4844 blobs (default: calldata).
    #[arg(long)]
    batch_blobs: bool,
    /// Commits over which each validator's signatures are counted for downtime (0: no downtime jailing).
    #[arg(long, default_value_t = 100)]
    downtime_window: u64,
    /// Share of the window's commits (basis points) a validator must be in to stay out of jail.
    #[arg(long, default_value_t = 5_000)]
    min_signed_bps: u32,
    /// The nodes do not post batches and reward reports to L1 (they still sign them).
    #[arg(long)]
    no_posting: bool,
    /// How long the producer has to land a batch before the next sequencer in the fallback order posts it.
    #[arg(long, default_value_t = 5_000)]
    post_turn_timeout_ms: u64,
    /// Extra nodes with keys and configs but not in the genesis set (they join by locking on L1 later).
    #[arg(long, default_value_t = 0)]
    standby: usize,
    /// RPC nodes after those (unstaked followers that forward transactions to the sequencers).
    #[arg(long, default_value_t = 0)]
    rpc_nodes: usize,
    /// The IPv4 address of each node (sequencers, standby nodes, then RPC nodes), comma separated: it listens
    /// there and the others reach it there (default: 127.0.0.1 for all).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<std::net::Ipv4Addr>,
    #[command(flatten)]
    l1: crate::testnet_l1::L1TestnetArgs,
}

pub async fn run_node(args: NodeArgs) -> Result<()> {
    let cfg = NodeConfigFile::load(&args.config)?;
    let base = args.config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let pass = args.pass.load()?;
    let keys_dir = rel(&base, &cfg.keys_dir);
    let keys =
        SequencerKeys::load(&keys_dir, &pass).with_context(|| format!("loading the keys in {}", keys_dir.display()))?;
    let seed: [u8; 32] = keys
        .identity
        .encode()
        .as_ref()
        .try_into()
        .context("identity key is not a 32-byte ed25519 seed")?;
    let secrets = NodeSecrets {
        consensus: ed25519_dalek::SigningKey::from_bytes(&seed),
        dkg: metis_mpc::seal::DkgSecret::from_bytes(*keys.dkg.to_bytes()),
        l1_signer: keys.l1_signer.clone(),
        passphrase: pass,
    };
    let settings = cfg.settings(&base, secrets)?;
    let node = metis_node::start(settings)
        .await
        .with_context(|| format!("starting node {}", cfg.moniker))?;
    // Machine-readable first line: tests and scripts wait for it.
    println!("RPC listening on {}", node.rpc.local_addr);
    println!("gossip listening on {}", node.gossip_addr);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut node = node;
    let mut caught_up = node.caught_up.take();
    let mut restart = false;
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        r = &mut node.app => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the consensus app stopped")),
            Err(e) => Err(anyhow::anyhow!("the consensus app failed: {e}")),
        },
        (task, why) = node.tasks.ended() => Err(anyhow::anyhow!("the {task} stopped ({why}); stopping the node")),
        Ok(height) = async { match caught_up.as_mut() { Some(rx) => rx.await, None => std::future::pending().await } } => {
            info!(height, "past the signing guard: starting again as a validator");
            restart = true;
            Ok(())
        }
    };
    info!("shutting down");
    node.shutdown().await;
    if restart {
        return Err(exec_self());
    }
    result
}

/// Replaces this process with a fresh run of the same command (same arguments and environment): every port,
/// file lock and task of the old run is gone, and the node opens its data dir again as a validator.
fn exec_self() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return anyhow::Error::new(e).context("finding this executable to start it again"),
    };
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::new(err).context(format!("starting {} again", exe.display()))
}

fn toml_config(cfg: &NodeConfigFile) -> Result<String> {
    Ok(cfg.to_toml()?)
}

pub fn run_init(args: InitArgs) -> Result<()> {
    let config = args.home.join("config.toml");
    if config.exists() {
        bail!("{} already exists: refusing to overwrite", config.display());
    }
    std::fs::create_dir_all(&args.home).with_context(|| format!("creating {}", args.home.display()))?;
    let pass = args.pass.load()?;
    let keys = generate(&args.home.join("keys"), &pass, KdfParams::default())?;
    let role = if args.rpc_node { Role::Rpc } else { Role::Sequencer };
    let cfg = NodeConfigFile {
        moniker: args.moniker,
        role,
        data_dir: "data".into(),
        keys_dir: "keys".into(),
        signing_guard: None,
        genesis: "genesis.json".into(),
        pos_genesis: "pos_genesis.json".into(),
        rpc: RpcSection::at("127.0.0.1:8545".parse()?),
        p2p: P2pSection {
            listen: "/ip4/0.0.0.0/tcp/26656".into(),
            peers: vec![],
            open: false,
            pubsub: Pubsub::default(),
            connections_per_ip: None,
        },
        gossip: GossipSection {
            listen: "0.0.0.0:26657".parse()?,
            peers: vec![],
        },
        followers: FollowersSection::default(),
        consensus: ConsensusSection::default(),
        txpool: TxpoolSection::default(),
        l1: None,
        // Off until an operator opens it (the endpoint has no authentication).
        metrics: None,
        state_history: metis_node::config::default_state_history(),
    };
    std::fs::write(&config, toml_config(&cfg)?).with_context(|| format!("writing {}", config.display()))?;
    println!("{}", serde_json::to_string_pretty(&keys.public_json())?);
    eprintln!(
        "wrote {}; put the chain's genesis.json and pos_genesis.json beside it and list the peers",
        config.display()
    );
    if args.rpc_node {
        eprintln!(
            "an RPC node: list the sequencers in [p2p] peers and [gossip] peers, and have them add its \
             consensus_key (printed above) to their [followers] keys; its dkg key and L1 signer are not used"
        );
    }
    Ok(())
}

/// A geth-style genesis JSON for a dev chain with `accounts` prefunded.
fn dev_genesis_json(chain_id: u64, gas_limit: u64, accounts: &[Address]) -> serde_json::Value {
    let balance = U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18));
    let alloc: serde_json::Map<String, serde_json::Value> = accounts
        .iter()
        .map(|a| {
            (
                format!("{a:?}"),
                serde_json::json!({ "balance": format!("{balance:#x}") }),
            )
        })
        .collect();
    serde_json::json!({
        "config": { "chainId": chain_id },
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": "0x",
        "gasLimit": format!("{gas_limit:#x}"),
        "difficulty": "0x0",
        "baseFeePerGas": format!("{:#x}", metis_execution::genesis::DEFAULT_BASE_FEE),
        "alloc": alloc,
    })
}

pub async fn run_testnet(args: TestnetArgs) -> Result<()> {
    let pass_file = generate_testnet(&args).await?;
    println!("{}", args.out.display());
    eprintln!(
        "testnet of {} nodes in {}; start each with: metis-seq node --config {}/nodeI/config.toml --passphrase-file {}",
        args.nodes,
        args.out.display(),
        args.out.display(),
        pass_file.display()
    );
    Ok(())
}

impl TestnetArgs {
    /// The L1 contract owner's key, for callers that hold it (the devnet) rather than an environment variable.
    pub fn set_l1_admin(&mut self, key: alloy::signers::local::PrivateKeySigner) {
        self.l1.admin = Some(Box::new(key));
    }
}

/// Writes the network (keys, genesis, configs) into `args.out`; returns the passphrase file.
pub async fn generate_testnet(args: &TestnetArgs) -> Result<PathBuf> {
    if args.nodes == 0 {
        bail!("--nodes must be positive");
    }
    ConsensusSection::for_block_time(args.block_time_ms)
        .timing()
        .context("--block-time-ms")?;
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!("{} is not empty", args.out.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let stakes: Vec<u64> = if args.stakes.is_empty() {
        (0..args.nodes as u64).map(|i| 100_000 - 10_000 * (i % 5)).collect()
    } else if args.stakes.len() == args.nodes {
        args.stakes.clone()
    } else {
        bail!("--stakes lists {} values for {} nodes", args.stakes.len(), args.nodes);
    };
    // Devnet only: a random passphrase in a 0600 file and a cheap KDF, so nodes start unattended.
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let pass_text = alloy::hex::encode(secret);
    let pass_file = args.out.join("passphrase");
    metis_keystore::write_private(&pass_file, format!("{pass_text}\n").as_bytes())?;
    let pass = Passphrase::new(pass_text)?;
    let ether = U256::from(10u64).pow(U256::from(18));
    let mut sequencers = Vec::new();
    let mut members = Vec::new();
    let mut owners = Vec::new();
    let mut seed_input = b"metis-seq testnet".to_vec();
    seed_input.extend_from_slice(&args.chain_id.to_be_bytes());
    let with_l1 = args.l1.l1_rpc.is_some();
    let mut follower_keys = Vec::new();
    for i in 0..args.nodes + args.standby + args.rpc_nodes {
        let dir = args.out.join(format!("node{i}"));
        let keys = generate(&dir.join("keys"), &pass, KdfParams::insecure_fast())?;
        let ck: [u8; 32] = keys.identity.public_key().encode().as_ref().try_into()?;
        if i >= args.nodes + args.standby {
            follower_keys.push(B256::from(ck).to_string());
            continue;
        }
        let owner = if with_l1 {
            Some(crate::testnet_l1::owner_key(&dir)?)
        } else {
            None
        };
        let Some(stake) = stakes.get(i) else {
            continue; // standby: keys and config only
        };
        seed_input.extend_from_slice(&ck);
        let seq = Sequencer {
            id: i as u64 + 1,
            signer: keys.l1_signer.address(),
            consensus_key: B256::from(ck),
            dkg_key: B256::from(keys.dkg.public()),
            stake: U256::from(*stake) * ether,
            status: SequencerStatus::Active,
            jailed_until_epoch: 0,
            l1_jailed: false,
        };
        members.push(crate::testnet_l1::Member {
            signer: seq.signer,
            consensus_key: seq.consensus_key,
            dkg_key: seq.dkg_key,
            stake: seq.stake,
        });
        owners.extend(owner);
        sequencers.push(seq);
    }
    let mut params = Params {
        epoch_length: args.epoch_length,
        missed_limit: args.missed_limit,
        key_phase_blocks: args.key_phase_blocks,
        batch_blocks: args.batch_blocks,
        batch_interval_secs: args.batch_interval_secs,
        reward_epochs: args.reward_epochs,
        batch_blobs: args.batch_blobs,
        downtime_window: args.downtime_window,
        min_signed_bps: args.min_signed_bps,
        ..Params::default()
    };
    params
        .check_downtime()
        .map_err(|e| anyhow::anyhow!("--downtime-window/--min-signed-bps: {e}"))?;
    let mut l1_genesis = None;
    if with_l1 {
        let setup = crate::testnet_l1::lock_genesis(&args.l1, &members, &owners, &params).await?;
        sequencers = setup.sequencers;
        params.stake_cap = setup.stake_cap;
        seed_input.extend_from_slice(setup.entropy.as_slice());
        l1_genesis = Some(setup.genesis);
    }
    let pos = PosGenesis {
        params,
        sequencers,
        seed: keccak256(&seed_input),
        l1: l1_genesis,
    };
    let accounts: Vec<Address> = dev_keys(args.accounts)?.iter().map(|k| k.address()).collect();
    std::fs::write(
        args.out.join("genesis.json"),
        serde_json::to_string_pretty(&dev_genesis_json(args.chain_id, args.gas_limit, &accounts))?,
    )?;
    std::fs::write(args.out.join("pos_genesis.json"), serde_json::to_string_pretty(&pos)?)?;
    let port = |i: usize, k: u16| -> Result<u16> {
        args.base_port
            .checked_add(10 * i as u16 + k)
            .context("--base-port too high for this many nodes")
    };
    let total = args.nodes + args.standby;
    let count = total + args.rpc_nodes;
    if !args.hosts.is_empty() && args.hosts.len() != count {
        bail!(
            "--hosts names {} addresses for {count} nodes (sequencers, standby and RPC nodes)",
            args.hosts.len()
        );
    }
    let host = |i: usize| args.hosts.get(i).copied().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    for i in 0..count {
        // Everyone lists everyone, standby nodes included: a link to a node that is not (yet) a sequencer is
        // refused at the handshake and retried. An RPC node lists the sequencers; nobody lists it.
        let rpc_node = i >= total;
        let others: Vec<usize> = (0..total).filter(|j| *j != i).collect();
        let cfg = NodeConfigFile {
            moniker: format!("node{i}"),
            role: if rpc_node { Role::Rpc } else { Role::Sequencer },
            data_dir: "data".into(),
            keys_dir: "keys".into(),
            signing_guard: None,
            genesis: "../genesis.json".into(),
            pos_genesis: "../pos_genesis.json".into(),
            rpc: RpcSection::at(SocketAddr::from((host(i), port(i, 2)?))),
            p2p: P2pSection {
                listen: format!("/ip4/{}/tcp/{}", host(i), port(i, 0)?),
                peers: others
                    .iter()
                    .map(|j| Ok(format!("/ip4/{}/tcp/{}", host(*j), port(*j, 0)?)))
                    .collect::<Result<_>>()?,
                open: false,
                pubsub: Pubsub::default(),
                connections_per_ip: None,
            },
            gossip: GossipSection {
                listen: SocketAddr::from((host(i), port(i, 1)?)),
                peers: others
                    .iter()
                    .map(|j| Ok(SocketAddr::from((host(*j), port(*j, 1)?))))
                    .collect::<Result<_>>()?,
            },
            followers: FollowersSection {
                keys: if rpc_node { Vec::new() } else { follower_keys.clone() },
                ..Default::default()
            },
            consensus: {
                let mut c = ConsensusSection::for_block_time(args.block_time_ms);
                if let Some(p) = args.propose_timeout_ms {
                    c.propose_timeout_ms = p;
                }
                c
            },
            txpool: TxpoolSection::default(),
            l1: args.l1.l1_rpc.as_ref().map(|rpc| L1Section {
                rpc: rpc.clone(),
                confirmations: args.l1.l1_confirmations,
                poll_interval_ms: args.l1.l1_poll_ms,
                margin: 1,
                max_range: metis_node::config::default_max_range(),
                explorer: args.l1.l1_explorer.clone(),
                poster: PosterSection {
                    enabled: !args.no_posting && !rpc_node,
                    turn_timeout_ms: args.post_turn_timeout_ms,
                    ..Default::default()
                },
            }),
            metrics: Some(MetricsSection {
                addr: SocketAddr::from((host(i), port(i, 3)?)),
            }),
            state_history: metis_node::config::default_state_history(),
        };
        std::fs::write(
            args.out.join(format!("node{i}")).join("config.toml"),
            toml_config(&cfg)?,
        )?;
    }
    Ok(pass_file)
}
