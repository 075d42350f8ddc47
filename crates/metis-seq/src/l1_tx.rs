//! Transactions the CLI sends to L1: waited for, and on a refusal named by the contract's own error.

use alloy::{network::Ethereum, primitives::B256, providers::PendingTransactionBuilder};
use anyhow::{bail, Context, Result};
use metis_contracts::{LockingInfo, LockingPool, MetisGovernor, PosParams, TimelockController};

/// A call's revert named by the error of the project's contract that raised it, else the node's message.
pub fn revert_reason(e: &alloy::contract::Error) -> String {
    if let Some(err) = e.as_decoded_interface_error::<MetisGovernor::MetisGovernorErrors>() {
        return format!("{err:?}");
    }
    if let Some(err) = e.as_decoded_interface_error::<LockingPool::LockingPoolErrors>() {
        return format!("{err:?}");
    }
    if let Some(err) = e.as_decoded_interface_error::<LockingInfo::LockingInfoErrors>() {
        return format!("{err:?}");
    }
    if let Some(err) = e.as_decoded_interface_error::<PosParams::PosParamsErrors>() {
        return format!("{err:?}");
    }
    if let Some(err) = e.as_decoded_interface_error::<TimelockController::TimelockControllerErrors>() {
        return format!("{err:?}");
    }
    e.to_string()
}

/// Waits for a sent transaction; fails on a refusal or a revert, naming what was sent.
pub async fn confirm(
    what: &str,
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
) -> Result<B256> {
    let sent = match sent {
        Ok(s) => s,
        Err(e) => bail!("{what} refused: {}", revert_reason(&e)),
    };
    let r = sent
        .get_receipt()
        .await
        .with_context(|| format!("waiting for {what}"))?;
    if !r.status() {
        bail!("{what} reverted (tx {})", r.transaction_hash);
    }
    Ok(r.transaction_hash)
}
