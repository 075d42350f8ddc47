//! `metis-seq l1 ...`: deploy the contract set and register the group key on any Ethereum RPC.

use alloy::{
    network::EthereumWallet,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use metis_contracts::{deploy_all, DeployConfig, LockingPool};
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

/// Waits for a sent transaction and fails on a revert, naming what was sent.
async fn confirm(
    what: &str,
    pending: Result<alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>, alloy::contract::Error>,
) -> Result<alloy::primitives::B256> {
    let r = pending
        .with_context(|| format!("sending {what}"))?
        .get_receipt()
        .await
        .with_context(|| format!("waiting for {what}"))?;
    if !r.status() {
        bail!("{what} reverted (tx {})", r.transaction_hash);
    }
    Ok(r.transaction_hash)
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
        } => {
            let (provider, owner) = conn.provider().await?;
            let cfg = DeployConfig {
                owner,
                reward_payer: reward_payer.unwrap_or(owner),
                reward_per_block,
                token,
                governance: None,
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
            let r = token
                .approve(escrow, amount)
                .send()
                .await
                .context("sending approve")?
                .get_receipt()
                .await?;
            if !r.status() {
                bail!("approve reverted (tx {})", r.transaction_hash);
            }
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
            let receipt = call.send().await.context("sending lockFor")?.get_receipt().await?;
            if !receipt.status() {
                bail!(
                    "lockFor reverted (tx {}): is {owner} whitelisted, funded, and without a sequencer?",
                    receipt.transaction_hash
                );
            }
            let id = pool.seqOwners(owner).call().await?;
            println!(
                "{}",
                serde_json::json!({ "sequencer_id": id, "tx": receipt.transaction_hash, "keys": public })
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
