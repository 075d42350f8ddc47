//! Governance on L1: PosParams, a TimelockController and the MetisGovernor over the owners' locked stake
//! (StakeVotes, which LockingPool deploys), and the hand-over that leaves LockingPool, LockingInfo and PosParams
//! to the timelock with the deployer holding no role at all.

use crate::bindings::{LockingInfo, LockingPool, MetisGovernor, PosParams, TimelockController};
use crate::deploy::{DeployError, Deployment};
use alloy::network::Ethereum;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{PendingTransactionBuilder, Provider};
use alloy::sol_types::SolCall;
use tracing::info;

/// How the pool governs itself.
#[derive(Clone, Debug)]
pub struct GovConfig {
    /// L1 blocks between a proposal and its vote.
    pub voting_delay_blocks: u64,
    /// L1 blocks the vote lasts.
    pub voting_period_blocks: u32,
    /// Stake (token wei) an owner needs to propose.
    pub proposal_threshold: U256,
    /// Share of the stake that votes (at the snapshot) a proposal needs for and abstaining, in percent.
    pub quorum_percent: u64,
    /// Seconds between a passed proposal's queueing and its execution (set by the hand-over: until then the
    /// timelock has no delay and only the deployer proposes).
    pub timelock_delay_secs: u64,
    /// Each governed PoS parameter's genesis value, in PosParams' order.
    pub pos_params: Vec<U256>,
}

/// The governance contracts of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GovContracts {
    pub pos_params: Address,
    pub timelock: Address,
    pub governor: Address,
    pub votes: Address,
}

/// The transaction sent, mined and successful.
async fn confirm(
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
    call: &'static str,
) -> Result<(), DeployError> {
    let receipt = sent
        .map_err(|source| DeployError::Call { call, source })?
        .get_receipt()
        .await
        .map_err(|source| DeployError::Receipt { call, source })?;
    if receipt.status() {
        Ok(())
    } else {
        Err(DeployError::Reverted {
            call,
            tx: receipt.transaction_hash,
        })
    }
}

fn read(call: &'static str) -> impl FnOnce(alloy::contract::Error) -> DeployError {
    move |source| DeployError::Call { call, source }
}

/// The timelock's role ids.
struct Roles {
    proposer: B256,
    canceller: B256,
    admin: B256,
}

async fn roles<P: Provider<Ethereum> + Clone>(
    t: &TimelockController::TimelockControllerInstance<P>,
) -> Result<Roles, DeployError> {
    Ok(Roles {
        proposer: t
            .PROPOSER_ROLE()
            .call()
            .await
            .map_err(read("TimelockController.PROPOSER_ROLE"))?,
        canceller: t
            .CANCELLER_ROLE()
            .call()
            .await
            .map_err(read("TimelockController.CANCELLER_ROLE"))?,
        admin: t
            .DEFAULT_ADMIN_ROLE()
            .call()
            .await
            .map_err(read("TimelockController.DEFAULT_ADMIN_ROLE"))?,
    })
}

/// Deploys PosParams (owned by `owner` until the hand-over), the timelock (with `owner` as its temporary
/// proposer and admin) and the governor over `pool`'s votes; the governor proposes and cancels on the timelock,
/// and anyone executes what passed.
pub async fn deploy_governance<P: Provider<Ethereum> + Clone>(
    provider: &P,
    owner: Address,
    pool: Address,
    cfg: &GovConfig,
) -> Result<GovContracts, DeployError> {
    let deploy = |contract: &'static str| move |source| DeployError::Deploy { contract, source };
    let votes = LockingPool::new(pool, provider.clone())
        .votes()
        .call()
        .await
        .map_err(read("LockingPool.votes"))?;
    let pos_params = *PosParams::deploy(provider.clone(), owner, cfg.pos_params.clone())
        .await
        .map_err(deploy("PosParams"))?
        .address();
    let timelock = *TimelockController::deploy(provider.clone(), U256::ZERO, vec![owner], vec![Address::ZERO], owner)
        .await
        .map_err(deploy("TimelockController"))?
        .address();
    let governor = *MetisGovernor::deploy(
        provider.clone(),
        votes,
        timelock,
        alloy::primitives::Uint::<48, 1>::from(cfg.voting_delay_blocks),
        cfg.voting_period_blocks,
        cfg.proposal_threshold,
        U256::from(cfg.quorum_percent),
    )
    .await
    .map_err(deploy("MetisGovernor"))?
    .address();
    let t = TimelockController::new(timelock, provider.clone());
    let r = roles(&t).await?;
    let sent = [
        (
            t.grantRole(r.proposer, governor).send().await,
            "TimelockController.grantRole(proposer)",
        ),
        (
            t.grantRole(r.canceller, governor).send().await,
            "TimelockController.grantRole(canceller)",
        ),
    ];
    for (tx, call) in sent {
        confirm(tx, call).await?;
    }
    info!(%pos_params, %timelock, %governor, %votes, "governance deployed");
    Ok(GovContracts {
        pos_params,
        timelock,
        governor,
        votes,
    })
}

/// Whether the timelock already owns the pool (the hand-over is done).
pub async fn handed_over<P: Provider<Ethereum> + Clone>(provider: &P, dep: &Deployment) -> Result<bool, DeployError> {
    let Some(timelock) = dep.timelock else {
        return Ok(false);
    };
    let owner = LockingPool::new(dep.locking_pool, provider.clone())
        .owner()
        .call()
        .await
        .map_err(read("LockingPool.owner"))?;
    Ok(owner == timelock)
}

/// Hands LockingPool, LockingInfo and PosParams to the timelock: `owner` (the provider's sender, their owner
/// now) offers them, and the timelock, in one operation of its own, accepts them, takes `delay_secs` as its
/// delay from then on (it had none, so the operation runs at once) and revokes every role `owner` held.
/// `guardian`, if given, is named first (it may pause the pool, nothing else).
pub async fn hand_over<P: Provider<Ethereum> + Clone>(
    provider: &P,
    dep: &Deployment,
    owner: Address,
    guardian: Option<Address>,
    delay_secs: u64,
) -> Result<(), DeployError> {
    let (Some(timelock), Some(params)) = (dep.timelock, dep.pos_params) else {
        return Err(DeployError::NoGovernance);
    };
    if handed_over(provider, dep).await? {
        return Ok(());
    }
    let pool = LockingPool::new(dep.locking_pool, provider.clone());
    let escrow = LockingInfo::new(dep.locking_info, provider.clone());
    let pos = PosParams::new(params, provider.clone());
    // Sent together and awaited after: one L1 block, not four.
    let mut sent = Vec::new();
    if let Some(g) = guardian {
        sent.push((pool.setGuardian(g).send().await, "LockingPool.setGuardian"));
    }
    sent.push((
        pool.transferOwnership(timelock).send().await,
        "LockingPool.transferOwnership",
    ));
    sent.push((
        escrow.transferOwnership(timelock).send().await,
        "LockingInfo.transferOwnership",
    ));
    sent.push((
        pos.transferOwnership(timelock).send().await,
        "PosParams.transferOwnership",
    ));
    for (tx, call) in sent {
        confirm(tx, call).await?;
    }
    let t = TimelockController::new(timelock, provider.clone());
    let r = roles(&t).await?;
    // One operation of the timelock's own: it accepts the three, takes its delay, and (as its own admin) strips
    // the deployer of every role, all at once or not at all.
    let accept = Bytes::from(LockingPool::acceptOwnershipCall {}.abi_encode());
    let delay = Bytes::from(
        TimelockController::updateDelayCall {
            newDelay: U256::from(delay_secs),
        }
        .abi_encode(),
    );
    let revoke = |role: B256| Bytes::from(TimelockController::revokeRoleCall { role, account: owner }.abi_encode());
    let targets = vec![
        dep.locking_pool,
        dep.locking_info,
        params,
        timelock,
        timelock,
        timelock,
        timelock,
    ];
    let calls = vec![
        accept.clone(),
        accept.clone(),
        accept,
        delay,
        revoke(r.proposer),
        revoke(r.canceller),
        revoke(r.admin),
    ];
    let values = vec![U256::ZERO; targets.len()];
    let id = t
        .hashOperationBatch(targets.clone(), values.clone(), calls.clone(), B256::ZERO, B256::ZERO)
        .call()
        .await
        .map_err(read("TimelockController.hashOperationBatch"))?;
    confirm(
        t.scheduleBatch(
            targets.clone(),
            values.clone(),
            calls.clone(),
            B256::ZERO,
            B256::ZERO,
            U256::ZERO,
        )
        .send()
        .await,
        "TimelockController.scheduleBatch",
    )
    .await?;
    // Ready at the timestamp it was scheduled at: the next block's.
    if !t
        .isOperationReady(id)
        .call()
        .await
        .map_err(read("TimelockController.isOperationReady"))?
    {
        return Err(DeployError::NotReady);
    }
    confirm(
        t.executeBatch(targets, values, calls, B256::ZERO, B256::ZERO)
            .send()
            .await,
        "TimelockController.executeBatch",
    )
    .await?;
    if !handed_over(provider, dep).await? {
        return Err(DeployError::NotReady);
    }
    info!(%timelock, "LockingPool, LockingInfo and PosParams handed over to the timelock");
    Ok(())
}
