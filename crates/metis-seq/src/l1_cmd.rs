//! `metis-seq l1 ...`: deploy the contract set and register the group key on any Ethereum RPC.

use crate::l1_tx::confirm;
use alloy::{
    network::EthereumWallet,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use metis_contracts::{deploy_all, DeployConfig, Deployment, GovConfig, LockingPool};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum L1Command {
    /// Deploy METIS (devnet token, unless --token), LockingInfo, LockingPool and BatchInbox, wire them, and
    /// print their addresses as JSON.
    Deploy {
        #[command(flatten)]
        conn: Connection,
        /// Reward per produced L2 block, in token wei.
        #[arg(long, default_value = "1000000000000000000")]
        reward_per_block: U256,
        /// Account rewards are pulled from (defaults to the deployer).
        #[arg(long)]
        reward_payer: Option<Address>,
        /// An existing METIS token to use instead of deploying the devnet one.
        #[arg(long)]
        token: Option<Address>,
        /// Also write the addresses to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        gov: GovDeployArgs,
    },
    /// As the deployer, once the genesis set has locked and the group key is registered: hand LockingPool,
    /// LockingInfo and PosParams to the governance timelock (deployed by `deploy --governance`). From then on only
    /// a vote of the stake changes them, and the deployer key can do nothing.
    HandOver {
        #[command(flatten)]
        conn: Connection,
        /// The deployment (JSON written by `deploy --governance --out`).
        #[arg(long)]
        contracts: PathBuf,
        /// Seconds between queueing a passed proposal and executing it, from the hand-over on.
        #[arg(long, default_value_t = 2 * 24 * 3600)]
        timelock_delay: u64,
        /// An address that may pause LockingPool (and nothing else); none by default.
        #[arg(long)]
        guardian: Option<Address>,
    },
    /// Lock stake for a new sequencer whose keys are in --keys (made by `metis-seq keys init`); the sender is
    /// the whitelisted owner. Approves the escrow for the amount first.
    Lock {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        locking_pool: Address,
        /// Directory with the sequencer's keys.
        #[arg(long)]
        keys: PathBuf,
        #[command(flatten)]
        pass: crate::keys_cmd::PassphraseArgs,
        /// Stake in whole tokens (18 decimals).
        #[arg(long)]
        amount: u64,
    },
    /// As the contracts' owner: allow (or with --remove, disallow) an address to lock stake for a sequencer.
    Whitelist {
        #[command(flatten)]
        pool: PoolConnection,
        #[arg(long)]
        user: Address,
        #[arg(long)]
        remove: bool,
    },
    /// As a sequencer's owner: add stake (approves the escrow first).
    Relock {
        #[command(flatten)]
        pool: PoolConnection,
        /// Whole tokens (18 decimals).
        #[arg(long)]
        amount: u64,
    },
    /// As a sequencer's owner: take stake out (the rest must stay at or above the minimum lock). It leaves the
    /// voting power at once, stays slashable, and is paid by `withdraw-claim` after the exit delay.
    Withdraw {
        #[command(flatten)]
        pool: PoolConnection,
        /// Whole tokens (18 decimals).
        #[arg(long)]
        amount: u64,
    },
    /// As a sequencer's owner: collect what `withdraw` set aside, once the exit delay has passed.
    WithdrawClaim {
        #[command(flatten)]
        pool: PoolConnection,
    },
    /// As a sequencer's owner: leave the set (the stake is claimable after the exit delay).
    Unlock {
        #[command(flatten)]
        pool: PoolConnection,
    },
    /// As a sequencer's owner: collect the stake (and any pending withdrawal) after the exit delay.
    UnlockClaim {
        #[command(flatten)]
        pool: PoolConnection,
    },
    /// As the contracts' owner: release a sequencer LockingPool holds jailed (after a slash); the PoS ledger
    /// follows the `Jailed` event and lets it back at an epoch boundary once its PoS jail has run out.
    Unjail {
        #[command(flatten)]
        pool: PoolConnection,
        #[arg(long)]
        sequencer_id: u64,
    },
    /// The sender's sequencer as LockingPool has it (JSON).
    Sequencer {
        #[command(flatten)]
        pool: PoolConnection,
    },
    /// Register (or, as the owner, replace) the pool's threshold group public key in LockingPool.
    SetGroupKey {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        locking_pool: Address,
        /// The group public key: 256-byte EIP-2537 G2 encoding or 96-byte compressed, hex.
        #[arg(long)]
        public_key: String,
    },
}

/// Governance deployed with the contracts: a governor over the locked stake, a timelock, PosParams.
#[derive(Args)]
pub struct GovDeployArgs {
    /// Deploy PosParams, a TimelockController and the governor too; `hand-over` then gives them the contracts.
    #[arg(long)]
    governance: bool,
    /// L1 blocks between a proposal and the start of its vote (7,200: a day at 12 s).
    #[arg(long, default_value_t = 7_200, requires = "governance")]
    gov_voting_delay: u64,
    /// L1 blocks a vote lasts (50,400: a week at 12 s).
    #[arg(long, default_value_t = 50_400, requires = "governance")]
    gov_voting_period: u32,
    /// Percent of the stake (at the proposal's snapshot) that must vote for or abstain.
    #[arg(long, default_value_t = 50, requires = "governance", value_parser = clap::value_parser!(u64).range(1..=100))]
    gov_quorum: u64,
    /// Whole tokens of stake an owner needs to propose.
    #[arg(long, default_value_t = 10_000, requires = "governance")]
    gov_threshold: u64,
}

impl GovDeployArgs {
    fn config(&self) -> Result<Option<GovConfig>> {
        if !self.governance {
            return Ok(None);
        }
        if self.gov_voting_period == 0 {
            bail!("--gov-voting-period must be at least 1 L1 block");
        }
        Ok(Some(GovConfig {
            voting_delay_blocks: self.gov_voting_delay,
            voting_period_blocks: self.gov_voting_period,
            proposal_threshold: tokens(self.gov_threshold),
            quorum_percent: self.gov_quorum,
            // Set by the hand-over; until then the timelock has no delay and only the deployer proposes.
            timelock_delay_secs: 0,
            // The PoS ledger's defaults; `metis-seq testnet --l1-rpc` sets those its genesis changes.
            pos_params: metis_pos::GovParam::ALL
                .iter()
                .map(|p| U256::from(p.get(&metis_pos::Params::default())))
                .collect(),
        }))
    }
}

/// An L1 connection and the LockingPool it acts on.
#[derive(Args)]
pub struct PoolConnection {
    #[command(flatten)]
    conn: Connection,
    #[arg(long)]
    locking_pool: Address,
}

impl PoolConnection {
    async fn pool(&self) -> Result<(LockingPool::LockingPoolInstance<DynProvider>, Address)> {
        let (provider, sender) = self.conn.provider().await?;
        Ok((LockingPool::new(self.locking_pool, provider), sender))
    }

    /// The pool and the id of the sequencer the sender owns.
    async fn owned(&self) -> Result<(LockingPool::LockingPoolInstance<DynProvider>, U256)> {
        let (pool, owner) = self.pool().await?;
        let id = pool
            .seqOwners(owner)
            .call()
            .await
            .context("reading LockingPool.seqOwners")?;
        if id.is_zero() {
            bail!("{owner} owns no sequencer");
        }
        Ok((pool, id))
    }
}

#[derive(Args)]
pub struct Connection {
    /// L1 JSON-RPC endpoint.
    #[arg(long, env = "METIS_L1_RPC", default_value = "http://127.0.0.1:8545")]
    l1_rpc: String,
    /// Environment variable holding the sender's private key (hex); keys never go on the command line.
    #[arg(long, default_value = "METIS_L1_PRIVATE_KEY")]
    key_env: String,
    /// File holding the sender's private key (hex), instead of --key-env.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

impl Connection {
    fn signer(&self) -> Result<PrivateKeySigner> {
        let raw = match &self.key_file {
            Some(path) => {
                std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?
            }
            None => std::env::var(&self.key_env)
                .with_context(|| format!("no private key: set {} or pass --key-file", self.key_env))?,
        };
        raw.trim()
            .parse::<PrivateKeySigner>()
            .context("the private key is not 32 bytes of hex")
    }

    /// A provider that reads only (no key needed).
    pub(crate) async fn reader(&self) -> Result<DynProvider> {
        let url = self
            .l1_rpc
            .parse()
            .with_context(|| format!("invalid L1 RPC URL {}", self.l1_rpc))?;
        let provider = ProviderBuilder::new().connect_client(l1_client(url, CLI_POLL)).erased();
        provider
            .get_chain_id()
            .await
            .with_context(|| format!("cannot reach the L1 RPC at {}", self.l1_rpc))?;
        Ok(provider)
    }

    pub(crate) async fn provider(&self) -> Result<(DynProvider, Address)> {
        let signer = self.signer()?;
        let from = signer.address();
        let url = self
            .l1_rpc
            .parse()
            .with_context(|| format!("invalid L1 RPC URL {}", self.l1_rpc))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::new(signer))
            .connect_client(l1_client(url, CLI_POLL))
            .erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .with_context(|| format!("cannot reach the L1 RPC at {}", self.l1_rpc))?;
        tracing::info!(chain_id, sender = %from, rpc = %self.l1_rpc, "connected to L1");
        Ok((provider, from))
    }
}

fn tokens(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

/// A group public key given as hex (256-byte EIP-2537 or 96-byte compressed G2), checked on the curve and
/// re-encoded as LockingPool takes it.
pub fn group_key_eip2537(hex_key: &str) -> Result<Bytes> {
    let raw = hex::decode(hex_key.trim().trim_start_matches("0x")).context("public key is not hex")?;
    let pk = match raw.len() {
        256 => metis_mpc::encoding::g2_from_eip2537(&raw)?,
        96 => metis_mpc::encoding::g2_from_compressed(&raw)?,
        n => bail!("public key must be 256 (EIP-2537) or 96 (compressed) bytes, got {n}"),
    };
    Ok(Bytes::from(metis_mpc::encoding::g2_to_eip2537(&pk).to_vec()))
}

/// Registers (or replaces) the group key in LockingPool as its owner; returns the receipt and the MPC address
/// LockingPool derives from the key.
pub async fn set_group_key(
    pool: &LockingPool::LockingPoolInstance<DynProvider>,
    encoded: Bytes,
) -> Result<(alloy::rpc::types::TransactionReceipt, Address)> {
    let receipt = pool
        .setGroupKey(encoded)
        .send()
        .await
        .context("sending LockingPool.setGroupKey")?
        .get_receipt()
        .await
        .context("waiting for LockingPool.setGroupKey")?;
    if !receipt.status() {
        bail!("LockingPool.setGroupKey reverted (tx {})", receipt.transaction_hash);
    }
    let mpc = pool
        .mpcAddress()
        .call()
        .await
        .context("reading LockingPool.mpcAddress")?;
    Ok((receipt, mpc))
}

pub use metis_bench::rpc_call;

pub async fn run(cmd: L1Command) -> Result<()> {
    match cmd {
        L1Command::Whitelist { pool, user, remove } => {
            let (pool, _) = pool.pool().await?;
            let tx = confirm("setWhitelist", pool.setWhitelist(user, !remove).send().await).await?;
            println!("{}", serde_json::json!({ "tx": tx, "user": user, "allowed": !remove }));
            Ok(())
        }
        L1Command::Relock { pool, amount } => {
            let (pool, id) = pool.owned().await?;
            let provider = pool.provider().clone();
            let escrow = pool.escrow().call().await.context("reading LockingPool.escrow")?;
            let info = metis_contracts::LockingInfo::new(escrow, provider.clone());
            let token = info.token().call().await.context("reading LockingInfo.token")?;
            let token = metis_contracts::MetisToken::new(token, provider);
            confirm("approve", token.approve(escrow, tokens(amount)).send().await).await?;
            let tx = confirm("relock", pool.relock(id, tokens(amount), false).send().await).await?;
            println!("{}", serde_json::json!({ "tx": tx, "sequencer_id": id }));
            Ok(())
        }
        L1Command::Withdraw { pool, amount } => {
            let (pool, id) = pool.owned().await?;
            let tx = confirm("withdraw", pool.withdraw(id, tokens(amount)).send().await).await?;
            println!("{}", serde_json::json!({ "tx": tx, "sequencer_id": id }));
            Ok(())
        }
        L1Command::WithdrawClaim { pool } => {
            let (pool, id) = pool.owned().await?;
            let tx = confirm("withdrawClaim", pool.withdrawClaim(id).send().await).await?;
            println!("{}", serde_json::json!({ "tx": tx, "sequencer_id": id }));
            Ok(())
        }
        L1Command::Unlock { pool } => {
            let (pool, id) = pool.owned().await?;
            let tx = confirm("unlock", pool.unlock(id).send().await).await?;
            println!("{}", serde_json::json!({ "tx": tx, "sequencer_id": id }));
            Ok(())
        }
        L1Command::UnlockClaim { pool } => {
            let (pool, id) = pool.owned().await?;
            let tx = confirm("unlockClaim", pool.unlockClaim(id).send().await).await?;
            println!("{}", serde_json::json!({ "tx": tx, "sequencer_id": id }));
            Ok(())
        }
        L1Command::Unjail { pool, sequencer_id } => {
            let (pool, _) = pool.pool().await?;
            let id = U256::from(sequencer_id);
            let s = pool
                .sequencers(id)
                .call()
                .await
                .context("reading LockingPool.sequencers")?;
            if !s.jailed {
                bail!("sequencer {sequencer_id} is not jailed on L1");
            }
            let tx = confirm("unjail", pool.unjail(id).send().await).await?;
            println!(
                "{}",
                serde_json::json!({ "tx": tx, "sequencer_id": id, "jailed": false })
            );
            Ok(())
        }
        L1Command::Sequencer { pool } => {
            let (pool, id) = pool.owned().await?;
            let s = pool
                .sequencers(id)
                .call()
                .await
                .context("reading LockingPool.sequencers")?;
            println!(
                "{}",
                serde_json::json!({
                    "sequencer_id": id,
                    "amount": s.amount,
                    "withdrawing": s.withdrawing,
                    "withdraw_claim_time": s.withdrawClaimTime,
                    "unlock_claim_time": s.unlockClaimTime,
                    "signer": s.signer,
                    "owner": s.owner,
                    "status": s.status,
                    "jailed": s.jailed,
                    "consensus_key": s.consensusKey,
                    "dkg_key": s.dkgKey,
                    "nonce": s.nonce,
                })
            );
            Ok(())
        }
        L1Command::Deploy {
            conn,
            reward_per_block,
            reward_payer,
            token,
            out,
            gov,
        } => {
            let governance = gov.config()?;
            let (provider, owner) = conn.provider().await?;
            let cfg = DeployConfig {
                owner,
                reward_payer: reward_payer.unwrap_or(owner),
                reward_per_block,
                token,
                governance,
            };
            let deployment = deploy_all(&provider, &cfg)
                .await
                .context("deploying the L1 contracts")?;
            let json = serde_json::to_string_pretty(&deployment)?;
            if let Some(path) = out {
                std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{json}");
            Ok(())
        }
        L1Command::HandOver {
            conn,
            contracts,
            timelock_delay,
            guardian,
        } => {
            let raw =
                std::fs::read_to_string(&contracts).with_context(|| format!("reading {}", contracts.display()))?;
            let dep: Deployment =
                serde_json::from_str(&raw).with_context(|| format!("{} is not a deployment", contracts.display()))?;
            let (Some(timelock), Some(governor)) = (dep.timelock, dep.governor) else {
                bail!(
                    "{} has no governance contracts: deploy with `metis-seq l1 deploy --governance`",
                    contracts.display()
                );
            };
            let (provider, sender) = conn.provider().await?;
            if metis_contracts::handed_over(&provider, &dep)
                .await
                .context("reading LockingPool's owner")?
            {
                bail!("the timelock {timelock} owns LockingPool already: the hand-over is done");
            }
            let owner = LockingPool::new(dep.locking_pool, provider.clone())
                .owner()
                .call()
                .await
                .context("reading LockingPool.owner")?;
            if owner != sender {
                bail!("LockingPool's owner is {owner}, not the sender {sender}");
            }
            let pool = LockingPool::new(dep.locking_pool, provider.clone());
            let version = pool
                .groupKeyVersion()
                .call()
                .await
                .context("reading LockingPool.groupKeyVersion")?;
            if version.is_zero() {
                bail!(
                    "LockingPool has no group key yet: register it (`metis-seq l1 set-group-key`) before the \
                     hand-over, or only a vote could"
                );
            }
            metis_contracts::hand_over(&provider, &dep, sender, guardian, timelock_delay)
                .await
                .context("the hand-over to the timelock")?;
            println!(
                "{}",
                serde_json::json!({
                    "owner": timelock,
                    "governor": governor,
                    "timelock_delay_secs": timelock_delay,
                    "guardian": guardian,
                })
            );
            Ok(())
        }
        L1Command::Lock {
            conn,
            locking_pool,
            keys,
            pass,
            amount,
        } => {
            let keys = crate::keys_cmd::SequencerKeys::load(&keys, &pass.load()?)?;
            let public = keys.public_json();
            let (provider, owner) = conn.provider().await?;
            let pool = LockingPool::new(locking_pool, provider.clone());
            let escrow = pool.escrow().call().await.context("reading LockingPool.escrow")?;
            let info = metis_contracts::LockingInfo::new(escrow, provider.clone());
            let token = info.token().call().await.context("reading LockingInfo.token")?;
            let amount = U256::from(amount) * U256::from(10u64).pow(U256::from(18));
            let token = metis_contracts::MetisToken::new(token, provider.clone());
            confirm("approve", token.approve(escrow, amount).send().await).await?;
            let hex32 = |k: &str| -> Result<Bytes> {
                let s = public[k].as_str().context("key missing")?;
                Ok(Bytes::from(hex::decode(s.trim_start_matches("0x"))?))
            };
            let call = pool.lockFor(
                keys.l1_signer.address(),
                amount,
                hex32("consensus_key")?,
                hex32("dkg_key")?,
            );
            let tx = confirm("lockFor", call.send().await)
                .await
                .with_context(|| format!("is {owner} whitelisted, funded, and without a sequencer?"))?;
            let id = pool.seqOwners(owner).call().await?;
            println!(
                "{}",
                serde_json::json!({ "sequencer_id": id, "tx": tx, "keys": public })
            );
            Ok(())
        }
        L1Command::SetGroupKey {
            conn,
            locking_pool,
            public_key,
        } => {
            let encoded = group_key_eip2537(&public_key)?;
            let (provider, _) = conn.provider().await?;
            let pool = LockingPool::new(locking_pool, provider);
            let (receipt, mpc) = set_group_key(&pool, encoded).await?;
            println!(
                "{}",
                serde_json::json!({ "tx": receipt.transaction_hash, "mpc_address": mpc })
            );
            Ok(())
        }
    }
}

/// How often the `l1` commands poll for their receipts (about 12 a block on Ethereum).
const CLI_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// An HTTP client for L1 that polls for receipts every `poll`. alloy guesses 250 ms for localhost and 7 s for
/// any other host, so on an L1 reached over a real address (a `--netns` devnet: 1 s blocks) every wait took 7 s.
pub fn l1_client(
    url: alloy::transports::http::reqwest::Url,
    poll: std::time::Duration,
) -> alloy::rpc::client::RpcClient {
    alloy::rpc::client::RpcClient::new_http(url).with_poll_interval(poll)
}
