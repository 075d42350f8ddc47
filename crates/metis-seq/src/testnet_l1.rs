//! `metis-seq testnet --l1-rpc`: the genesis sequencers lock their stake on L1 first, and the PoS genesis is read
//! back from the LockingPool events, so the L2 sequencer set starts as L1 has it and follows L1 from the next
//! block on. Development only: each sequencer's L1 owner is a fresh key written to its node directory.

use alloy::{
    network::EthereumWallet,
    primitives::{utils::parse_ether, Address, Bytes, B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, Context, Result};
use clap::Args;
use metis_contracts::{Deployment, LockingInfo, LockingPool, MetisToken};
use metis_node::L1Genesis;
use metis_pos::{L1Event, Sequencer, SequencerStatus};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Clone, Debug)]
pub struct L1TestnetArgs {
    /// L1 JSON-RPC endpoint: the genesis sequencers lock on it, and the nodes follow it.
    #[arg(long)]
    pub l1_rpc: Option<String>,
    /// The deployment (JSON written by `metis-seq l1 deploy --out`).
    #[arg(long)]
    pub l1_contracts: Option<PathBuf>,
    /// Environment variable with the contract owner's private key (whitelists, mints, funds the owners).
    #[arg(long, default_value = "METIS_L1_PRIVATE_KEY")]
    pub l1_key_env: String,
    /// Blocks on top of an L1 event before the nodes take it.
    #[arg(long, default_value_t = 2)]
    pub l1_confirmations: u64,
    #[arg(long, default_value_t = 500)]
    pub l1_poll_ms: u64,
    /// A block explorer for the L1 (e.g. https://sepolia.etherscan.io): the dashboard links L1 transactions.
    #[arg(long)]
    pub l1_explorer: Option<String>,
    /// The contract owner's key when the caller has it already (the devnet), instead of --l1-key-env.
    #[arg(skip)]
    pub admin: Option<Box<PrivateKeySigner>>,
}

/// One sequencer to register: its keys' public parts and its stake.
pub struct Member {
    pub signer: Address,
    pub consensus_key: B256,
    pub dkg_key: B256,
    pub stake: U256,
}

pub struct L1Setup {
    pub sequencers: Vec<Sequencer>,
    pub genesis: L1Genesis,
    pub stake_cap: U256,
    /// Hash of the last L1 block read: entropy for epoch 0's seed nobody chose.
    pub entropy: B256,
}

async fn confirm(pending: Vec<alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>>) -> Result<()> {
    for p in pending {
        let r = p.get_receipt().await.context("waiting for an L1 receipt")?;
        if !r.status() {
            bail!("L1 transaction {} reverted", r.transaction_hash);
        }
    }
    Ok(())
}

/// Registers `members` on L1 (owner key `i` for member `i`) and reads the genesis set back from the events.
pub async fn lock_genesis(
    args: &L1TestnetArgs,
    members: &[Member],
    owners: &[PrivateKeySigner],
    params: &metis_pos::Params,
) -> Result<L1Setup> {
    let (Some(rpc), Some(contracts)) = (&args.l1_rpc, &args.l1_contracts) else {
        bail!("--l1-rpc and --l1-contracts go together");
    };
    let d: Deployment = serde_json::from_str(
        &std::fs::read_to_string(contracts).with_context(|| format!("reading {}", contracts.display()))?,
    )
    .with_context(|| format!("parsing {}", contracts.display()))?;
    let admin: PrivateKeySigner = match &args.admin {
        Some(k) => (**k).clone(),
        None => std::env::var(&args.l1_key_env)
            .with_context(|| format!("no contract owner key: set {}", args.l1_key_env))?
            .trim()
            .parse()
            .context("the contract owner key is not 32 bytes of hex")?,
    };
    let mut wallet = EthereumWallet::new(admin.clone());
    for o in owners {
        wallet.register_signer(o.clone());
    }
    let url = rpc.parse().with_context(|| format!("invalid L1 RPC URL {rpc}"))?;
    // The networks this builds are local: poll for receipts as alloy does for localhost.
    let p: DynProvider = ProviderBuilder::new()
        .wallet(wallet)
        .connect_client(crate::l1_cmd::l1_client(url, std::time::Duration::from_millis(250)))
        .erased();
    let chain_id = p
        .get_chain_id()
        .await
        .with_context(|| format!("cannot reach the L1 RPC at {rpc}"))?;
    let pool = LockingPool::new(d.locking_pool, p.clone());
    let token = MetisToken::new(d.token, p.clone());
    let info = LockingInfo::new(d.locking_info, p.clone());

    // Three rounds (each waits for its receipts): the owner whitelists, funds and mints; the sequencer owners
    // approve the escrow; then they lock.
    let mut pending = Vec::new();
    for (m, o) in members.iter().zip(owners) {
        pending.push(
            pool.setWhitelist(o.address(), true)
                .send()
                .await
                .context("setWhitelist")?,
        );
        let fund = alloy::rpc::types::TransactionRequest::default()
            .to(o.address())
            .value(parse_ether("10")?)
            .from(admin.address());
        pending.push(p.send_transaction(fund).await.context("funding an owner")?);
        // The sequencer's signer posts batches and reward reports.
        let fund = alloy::rpc::types::TransactionRequest::default()
            .to(m.signer)
            .value(parse_ether("10")?)
            .from(admin.address());
        pending.push(p.send_transaction(fund).await.context("funding a signer")?);
        pending.push(token.mint(o.address(), m.stake).send().await.context("mint")?);
    }
    confirm(pending).await?;
    let mut pending = Vec::new();
    for (m, o) in members.iter().zip(owners) {
        let approve = token.approve(d.locking_info, m.stake).from(o.address());
        pending.push(approve.send().await.context("approve")?);
    }
    confirm(pending).await?;
    let mut pending = Vec::new();
    for (m, o) in members.iter().zip(owners) {
        let call = pool
            .lockFor(
                m.signer,
                m.stake,
                Bytes::copy_from_slice(m.consensus_key.as_slice()),
                Bytes::copy_from_slice(m.dkg_key.as_slice()),
            )
            .from(o.address());
        pending.push(call.send().await.context("lockFor")?);
    }
    confirm(pending).await?;
    let stake_cap = info.maxLock().call().await.context("reading LockingInfo.maxLock")?;
    align_pos_params(&p, &d, params).await?;

    // Read the set back as every node's listener will: the same decoder, from the deployment block.
    let head = p.get_block_number().await?;
    let mut listener = metis_l1::Listener::new(
        p.clone(),
        metis_l1::ListenerConfig {
            locking_pool: d.locking_pool,
            locking_info: Some(d.locking_info),
            pos_params: d.pos_params,
            start_block: d.deployed_at_block,
            confirmations: 0,
            max_range: 1000,
            chain_id: Some(chain_id),
        },
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while listener.view().synced_to.is_none_or(|s| s < head) {
        if Instant::now() > deadline {
            bail!("could not read the L1 events up to block {head}");
        }
        listener.poll().await.context("reading the genesis set from L1")?;
    }
    let synced = listener.view().synced_to.unwrap_or(head);
    let mut sequencers = Vec::new();
    for t in listener.view().events() {
        match &t.event {
            L1Event::Locked {
                id,
                signer,
                consensus_key,
                dkg_key,
                amount,
            } => sequencers.push(Sequencer {
                id: *id,
                signer: *signer,
                consensus_key: *consensus_key,
                dkg_key: *dkg_key,
                stake: *amount,
                status: SequencerStatus::Active,
                jailed_until_epoch: 0,
                l1_jailed: false,
            }),
            L1Event::LockUpdate { id, new_amount } => {
                if let Some(s) = sequencers.iter_mut().find(|s| s.id == *id) {
                    s.stake = *new_amount;
                }
            }
            L1Event::UnlockInit { id } | L1Event::Unlocked { id } => {
                sequencers.retain(|s| s.id != *id);
            }
            _ => {}
        }
    }
    for m in members {
        if !sequencers.iter().any(|s| s.consensus_key == m.consensus_key) {
            bail!("the Locked event of signer {} was not found on L1", m.signer);
        }
    }
    let entropy = p
        .get_block_by_number(synced.into())
        .await?
        .map(|b| b.header.hash)
        .context("L1 block missing")?;
    Ok(L1Setup {
        sequencers,
        genesis: L1Genesis {
            chain_id,
            locking_pool: d.locking_pool,
            locking_info: d.locking_info,
            batch_inbox: Some(d.batch_inbox),
            pos_params: d.pos_params,
            start_block: synced + 1,
        },
        stake_cap,
        entropy,
    })
}

/// PosParams starts from the genesis values (the ledger records each change with the value it replaced, and
/// `gov` shows PosParams' values as the ones in force): the owner sets those that differ, before the genesis set
/// is read back, so their events come before the genesis's first L1 block.
async fn align_pos_params(p: &DynProvider, d: &Deployment, params: &metis_pos::Params) -> Result<()> {
    let Some(addr) = d.pos_params else {
        return Ok(());
    };
    let c = metis_contracts::PosParams::new(addr, p.clone());
    let mut pending = Vec::new();
    for g in metis_pos::GovParam::ALL {
        let now = c
            .get(g.index())
            .call()
            .await
            .with_context(|| format!("reading PosParams {}", g.name()))?;
        let want = alloy::primitives::U256::from(g.get(params));
        if now != want {
            let (lo, hi) = g.bounds();
            let sent = c.set(g.index(), want).send().await.with_context(|| {
                format!(
                    "setting PosParams {} to the genesis value {want} (bounds {lo}..={hi}; the contract owner key must \
                     still own PosParams)",
                    g.name()
                )
            })?;
            pending.push(sent);
        }
    }
    confirm(pending).await
}

/// A fresh L1 owner key for a node, written beside it (0600; development only).
pub fn owner_key(dir: &Path) -> Result<PrivateKeySigner> {
    let k = PrivateKeySigner::random();
    metis_keystore::write_private(
        &dir.join("owner.key"),
        format!("0x{}\n", alloy::hex::encode(k.to_bytes())).as_bytes(),
    )?;
    Ok(k)
}
