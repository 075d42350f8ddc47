//! Deploys and wires the whole L1 contract set on any Ethereum RPC.

use crate::bindings::{BatchInbox, LockingInfo, LockingPool, MetisToken};
use crate::governance::{deploy_governance, GovConfig};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde::{Deserialize, Serialize};
use tracing::info;

/// Parameters of a deployment.
#[derive(Clone, Debug)]
pub struct DeployConfig {
    /// Owner of every contract (whitelist, parameters, group key registration).
    pub owner: Address,
    /// Account the sequencer rewards are pulled from; it must approve the LockingInfo escrow.
    pub reward_payer: Address,
    /// Reward per produced L2 block, in token wei.
    pub reward_per_block: U256,
    /// Use this token instead of deploying the devnet METIS.
    pub token: Option<Address>,
    /// Deploy PosParams, the timelock and the governor too (`governance::hand_over` later gives them the pool).
    pub governance: Option<GovConfig>,
}

/// Addresses of a deployed contract set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub token: Address,
    pub locking_info: Address,
    pub locking_pool: Address,
    pub batch_inbox: Address,
    /// L1 block of the first deployment transaction's receipt, where listeners start reading events.
    pub deployed_at_block: u64,
    /// Governance (absent: the owner key governs).
    #[serde(default)]
    pub pos_params: Option<Address>,
    #[serde(default)]
    pub timelock: Option<Address>,
    #[serde(default)]
    pub governor: Option<Address>,
    /// StakeVotes, the owners' votes (LockingPool deploys it).
    #[serde(default)]
    pub votes: Option<Address>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("deploying {contract}: {source}")]
    Deploy {
        contract: &'static str,
        #[source]
        source: alloy::contract::Error,
    },
    #[error("{call}: {source}")]
    Call {
        call: &'static str,
        #[source]
        source: alloy::contract::Error,
    },
    #[error("{call}: waiting for the receipt: {source}")]
    Receipt {
        call: &'static str,
        #[source]
        source: alloy::providers::PendingTransactionError,
    },
    #[error("{call}: transaction reverted (tx {tx})")]
    Reverted {
        call: &'static str,
        tx: alloy::primitives::TxHash,
    },
    #[error("reading the L1 block number: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    #[error("this deployment has no governance contracts")]
    NoGovernance,
    #[error("the timelock did not take the contracts over (operation not ready, or ownership not moved)")]
    NotReady,
}

/// Deploys the token (unless given), LockingInfo, LockingPool and BatchInbox, wires the escrow to the pool, and
/// deploys the governance contracts if asked. The provider's default sender must be `cfg.owner`'s wallet (it
/// sends the wiring calls).
pub async fn deploy_all<P: Provider + Clone>(provider: &P, cfg: &DeployConfig) -> Result<Deployment, DeployError> {
    let deployed_at_block = provider.get_block_number().await?;
    let token = match cfg.token {
        Some(t) => t,
        None => *MetisToken::deploy(provider.clone(), cfg.owner)
            .await
            .map_err(|source| DeployError::Deploy {
                contract: "MetisToken",
                source,
            })?
            .address(),
    };
    info!(%token, "token");
    let locking_info = *LockingInfo::deploy(provider.clone(), cfg.owner, token, cfg.reward_payer)
        .await
        .map_err(|source| DeployError::Deploy {
            contract: "LockingInfo",
            source,
        })?
        .address();
    info!(%locking_info, "LockingInfo deployed");
    let locking_pool = *LockingPool::deploy(provider.clone(), cfg.owner, locking_info, cfg.reward_per_block)
        .await
        .map_err(|source| DeployError::Deploy {
            contract: "LockingPool",
            source,
        })?
        .address();
    info!(%locking_pool, "LockingPool deployed");
    let batch_inbox = *BatchInbox::deploy(provider.clone(), locking_pool)
        .await
        .map_err(|source| DeployError::Deploy {
            contract: "BatchInbox",
            source,
        })?
        .address();
    info!(%batch_inbox, "BatchInbox deployed");

    let escrow = LockingInfo::new(locking_info, provider.clone());
    let pending = escrow
        .setPool(locking_pool)
        .send()
        .await
        .map_err(|source| DeployError::Call {
            call: "LockingInfo.setPool",
            source,
        })?;
    let receipt = pending.get_receipt().await.map_err(|source| DeployError::Receipt {
        call: "LockingInfo.setPool",
        source,
    })?;
    if !receipt.status() {
        return Err(DeployError::Reverted {
            call: "LockingInfo.setPool",
            tx: receipt.transaction_hash,
        });
    }
    let gov = match &cfg.governance {
        Some(g) => Some(deploy_governance(provider, cfg.owner, locking_pool, g).await?),
        None => None,
    };
    Ok(Deployment {
        token,
        locking_info,
        locking_pool,
        batch_inbox,
        deployed_at_block: deployed_at_block + 1,
        pos_params: gov.map(|g| g.pos_params),
        timelock: gov.map(|g| g.timelock),
        governor: gov.map(|g| g.governor),
        votes: gov.map(|g| g.votes),
    })
}
