//! An L1 reorg below the confirmation depth with a staking event in it: an owner's relock is mined, L1 grows one
//! more block (the relock is not yet at the devnet's depth of 2), and a reorg replaces both blocks with the
//! relock moved into the second one. Every node must apply it once, from the block that survived.

use alloy::network::Ethereum;
use alloy::primitives::{utils::parse_ether, B256, U256};
use alloy::providers::{PendingTransactionBuilder, Provider};
use metis_contracts::{LockingPool, MetisToken};
use metis_testkit::devnet::Devnet;
use serde_json::{json, Value};
use std::time::Duration;

/// The relock a round moved.
pub struct Moved {
    node: usize,
    sequencer: u64,
    tx: B256,
    stake_before: U256,
    extra: U256,
    /// The L1 block it was first mined in (reorged away).
    first_block: u64,
}

async fn raw(net: &Devnet, method: &str, params: Value) -> Result<Value, String> {
    net.l1()
        .raw_request::<_, Value>(method.to_string().into(), params)
        .await
        .map_err(|e| format!("L1 {method}: {e}"))
}

/// The transaction sent, mined and successful.
async fn confirm(
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
    what: &str,
) -> Result<(), String> {
    let r = sent
        .map_err(|e| format!("{what}: {e}"))?
        .with_timeout(Some(Duration::from_secs(30)))
        .get_receipt()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if r.status() {
        Ok(())
    } else {
        Err(format!("{what} reverted"))
    }
}

async fn stake(net: &Devnet, node: usize, sequencer: u64) -> Result<U256, String> {
    let s = net.call(node, "metis_sequencer", json!([sequencer])).await?;
    s["stake"]
        .as_str()
        .and_then(|v| U256::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| format!("node {node}: no stake in {s}"))
}

/// Node `node`'s sequencer id.
async fn sequencer_of(net: &Devnet, node: usize) -> Result<u64, String> {
    let signer = net.nodes()[node]["signer"].as_str().unwrap_or_default().to_lowercase();
    let validators = net.call(0, "metis_validators", json!([])).await?;
    validators
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find(|v| v["signer"].as_str().is_some_and(|s| s.to_lowercase() == signer))
        })
        .and_then(|v| v["id"].as_u64())
        .ok_or_else(|| format!("node {node}'s sequencer is not among the validators"))
}

/// Relocks 1,000 METIS for node `node`'s sequencer in an L1 block, mines one more, lets every listener see them,
/// and reorgs both away with the relock moved into the second new block. Interval mining is paused meanwhile so
/// the depth is exact; it runs again on return.
pub async fn relock_then_reorg(net: &Devnet, node: usize) -> Result<Moved, String> {
    let sequencer = sequencer_of(net, node).await?;
    let stake_before = stake(net, 0, sequencer).await?;
    let extra = parse_ether("1000").map_err(|e| e.to_string())?;
    let owner = net.owner_key(node);
    let deployer = net.l1_with(net.deployer());
    let owners = net.l1_with(owner.clone());
    let token = MetisToken::new(net.contract("token"), &deployer);
    confirm(token.mint(owner.address(), extra).send().await, "mint").await?;
    let owners_token = MetisToken::new(net.contract("token"), &owners);
    confirm(
        owners_token.approve(net.contract("locking_info"), extra).send().await,
        "approve",
    )
    .await?;
    let block_time: u64 = net.m["options"]["l1_block_time_secs"].as_u64().unwrap_or(1).max(1);
    raw(net, "evm_setIntervalMining", json!([0])).await?;
    let moved = async {
        let pool = LockingPool::new(net.contract("locking_pool"), &owners);
        let pending = pool
            .relock(U256::from(sequencer), extra, false)
            .send()
            .await
            .map_err(|e| format!("relock: {e}"))?;
        let tx = *pending.tx_hash();
        raw(net, "anvil_mine", json!([1])).await?;
        let receipt = raw(net, "eth_getTransactionReceipt", json!([tx])).await?;
        let first_block = receipt["blockNumber"]
            .as_str()
            .and_then(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| format!("the relock was not mined: {receipt}"))?;
        let bytes = raw(net, "eth_getRawTransactionByHash", json!([tx])).await?;
        if !bytes.is_string() {
            return Err(format!("L1 has no raw relock: {bytes}"));
        }
        raw(net, "anvil_mine", json!([1])).await?;
        // Every listener polls the shallow chain a few times (they poll every 250 ms).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        raw(net, "anvil_reorg", json!([2, [[bytes, 1]]])).await?;
        Ok::<_, String>(Moved {
            node,
            sequencer,
            tx,
            stake_before,
            extra,
            first_block,
        })
    }
    .await;
    let resumed = raw(net, "evm_setIntervalMining", json!([block_time])).await;
    let moved = moved?;
    resumed?;
    Ok(moved)
}

/// Every L1 event node `i`'s ledger applied, page by page.
async fn l1_events(net: &Devnet, i: usize) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    loop {
        let page = net.call(i, "metis_l1Events", json!([all.len(), 1000])).await?;
        match page.as_array() {
            Some(p) if !p.is_empty() => all.extend(p.iter().cloned()),
            Some(_) => return Ok(all),
            None => return Err(format!("node {i}: metis_l1Events answered {page}")),
        }
    }
}

/// Every node applied the relock once, from the block it is in now, and counts its stake once.
pub async fn applied_once(net: &Devnet, nodes: &[usize], m: &Moved) -> Result<String, String> {
    let receipt = raw(net, "eth_getTransactionReceipt", json!([m.tx])).await?;
    let block = receipt["blockNumber"].as_str().unwrap_or_default().to_string();
    let hash = receipt["blockHash"].as_str().unwrap_or_default().to_lowercase();
    let number = u64::from_str_radix(block.trim_start_matches("0x"), 16)
        .map_err(|_| format!("the relock is not on L1 after the reorg: {receipt}"))?;
    if number == m.first_block {
        return Err(format!(
            "the reorg left the relock in block {number}: nothing was moved"
        ));
    }
    let want = m.stake_before + m.extra;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for &i in nodes {
        loop {
            let events = l1_events(net, i).await?;
            let ours: Vec<&Value> = events
                .iter()
                .filter(|e| {
                    e["event"] == "Relocked"
                        && e["l1_tx_hash"]
                            .as_str()
                            .is_some_and(|h| h.eq_ignore_ascii_case(&m.tx.to_string()))
                })
                .collect();
            match ours.as_slice() {
                [] if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                [] => return Err(format!("node {i} never applied the relock (now in L1 block {number})")),
                [e] => {
                    let at = e["l1_block_hash"].as_str().unwrap_or_default().to_lowercase();
                    if e["l1_block"].as_u64() != Some(number) || at != hash {
                        return Err(format!(
                            "node {i} applied the relock from block {} {at}, not from {number} {hash}",
                            e["l1_block"]
                        ));
                    }
                }
                more => return Err(format!("node {i} applied the relock {} times", more.len())),
            }
            let s = stake(net, i, m.sequencer).await?;
            if s != want {
                return Err(format!(
                    "node {i}: sequencer {} has stake {s}, not {want} (before {} + {})",
                    m.sequencer, m.stake_before, m.extra
                ));
            }
            break;
        }
    }
    Ok(format!(
        "node {}'s relock moved from L1 block {} to {number}, applied once from it",
        m.node, m.first_block
    ))
}
