//! `metis-seq bench posting`: watches the pool's batches land on L1 and prints, per batch and overall, the L1
//! gas (execution and blob), gas per L2 transaction, the payload's compression against the raw encoded blocks,
//! and the time from the decision of a batch's last block to the batch on L1 (both seen by this process's own
//! polling, every 20 ms, so the figure includes no clock skew).

use alloy::consensus::Transaction as _;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use anyhow::{bail, Context, Result};
use clap::Args;
use metis_contracts::bindings::BatchInbox;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Args, Debug)]
pub struct PostingArgs {
    /// An L2 node's JSON-RPC URL (payloads and the decided head).
    #[arg(long, default_value = "http://127.0.0.1:28002")]
    rpc: String,
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    l1_rpc: String,
    /// BatchInbox's address (as in the deployment JSON).
    #[arg(long)]
    inbox: Address,
    /// Batches to watch land (from the next one).
    #[arg(long, default_value_t = 10)]
    batches: u64,
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

const POLL: Duration = Duration::from_millis(20);

struct Landed {
    index: u64,
    blobs: usize,
    gas: u64,
    blob_gas: u64,
    calldata: usize,
    payload: usize,
    raw: usize,
    txs: usize,
    latency: Option<Duration>,
}

pub async fn run(a: PostingArgs) -> Result<()> {
    let l1: DynProvider = ProviderBuilder::new()
        .connect_http(a.l1_rpc.parse().context("--l1-rpc")?)
        .erased();
    let inbox = BatchInbox::new(a.inbox, l1.clone());
    let client = reqwest::Client::new();
    let from = inbox.nextIndex().call().await.context("BatchInbox.nextIndex")?;
    let to = from + a.batches;
    eprintln!("watching batches {from}..{} land on L1", to - 1);

    // First sight of each L2 block (decided) and of each L1 index.
    let seen_l2: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    let seen_l1: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    let l2_poller = {
        let (seen, client, url) = (seen_l2.clone(), client.clone(), a.rpc.clone());
        tokio::spawn(async move {
            let mut last = None::<u64>;
            loop {
                if let Ok(v) = crate::rpc_call(&client, &url, "eth_blockNumber", json!([])).await {
                    if let Some(n) = v
                        .as_str()
                        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    {
                        let now = Instant::now();
                        let mut m = seen.lock().await;
                        for b in last.map_or(n, |l| l + 1)..=n {
                            m.entry(b).or_insert(now);
                        }
                        last = Some(n);
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut last = from;
    while last < to {
        if Instant::now() > deadline {
            l2_poller.abort();
            bail!(
                "only {} of {} batches landed within {} s",
                last - from,
                a.batches,
                a.timeout
            );
        }
        if let Ok(n) = inbox.nextIndex().call().await {
            let now = Instant::now();
            let mut m = seen_l1.lock().await;
            for i in last..n {
                m.entry(i).or_insert(now);
            }
            last = last.max(n);
        }
        tokio::time::sleep(POLL).await;
    }
    l2_poller.abort();

    let logs = l1
        .get_logs(
            &Filter::new()
                .address(a.inbox)
                .event_signature(BatchInbox::BatchAppended::SIGNATURE_HASH)
                .from_block(0),
        )
        .await?;
    let (seen_l2, seen_l1) = (seen_l2.lock().await, seen_l1.lock().await);
    let mut out = Vec::new();
    for log in logs {
        let e = BatchInbox::BatchAppended::decode_log(&log.inner)?;
        let index: u64 = e.index.try_into()?;
        if index < from || index >= to {
            continue;
        }
        let hash = log.transaction_hash.context("log without tx")?;
        let receipt = l1.get_transaction_receipt(hash).await?.context("receipt")?;
        let tx = l1.get_transaction_by_hash(hash).await?.context("tx")?;
        let b = crate::rpc_call(&client, &a.rpc, "metis_getBatchByIndex", json!([index, true])).await?;
        let payload = alloy::hex::decode(b["payload"].as_str().context("payload")?)?;
        let blocks = metis_batcher::payload::decode(&payload)?;
        let mut raw = Vec::new();
        for blk in &blocks {
            metis_batcher::payload::encode_block(blk, &mut raw);
        }
        let latency = match (seen_l1.get(&index), seen_l2.get(&e.header.l2LastBlock)) {
            (Some(l1_at), Some(l2_at)) => Some(l1_at.saturating_duration_since(*l2_at)),
            _ => None,
        };
        out.push(Landed {
            index,
            blobs: e.header.blobHashes.len(),
            gas: receipt.gas_used,
            blob_gas: receipt.blob_gas_used.unwrap_or(0),
            calldata: tx.input().len(),
            payload: payload.len(),
            raw: raw.len(),
            txs: blocks.iter().map(|b| b.transactions.len()).sum(),
            latency,
        });
    }
    if out.is_empty() {
        bail!("no BatchAppended events found for {from}..{to}");
    }
    println!("index blobs l1_gas blob_gas calldata_B payload_B raw_B l2_txs decision_to_l1_ms");
    for l in &out {
        println!(
            "{:5} {:5} {:6} {:8} {:10} {:9} {:5} {:6} {}",
            l.index,
            l.blobs,
            l.gas,
            l.blob_gas,
            l.calldata,
            l.payload,
            l.raw,
            l.txs,
            l.latency.map_or("-".into(), |d| d.as_millis().to_string())
        );
    }
    let n = out.len() as u64;
    let txs: u64 = out.iter().map(|l| l.txs as u64).sum();
    let gas: u64 = out.iter().map(|l| l.gas).sum();
    let blob_gas: u64 = out.iter().map(|l| l.blob_gas).sum();
    let (payload, raw): (usize, usize) = out.iter().fold((0, 0), |(p, r), l| (p + l.payload, r + l.raw));
    let mut lat: Vec<Duration> = out.iter().filter_map(|l| l.latency).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p / 100.0).ceil() as usize).saturating_sub(1))
            .map_or(0, |d| d.as_millis())
    };
    let mode = if out.iter().all(|l| l.blobs > 0) {
        "blobs"
    } else {
        "calldata"
    };
    println!(
        "posting ({mode}): {n} batches, {txs} L2 txs; L1 gas per batch {} (blob gas {}), per L2 tx {:.0} (blob gas {:.0}); \
         payload/raw {:.3} ({payload} of {raw} bytes); decision-to-L1 p50 {} ms, p99 {} ms",
        gas / n,
        blob_gas / n,
        gas as f64 / txs.max(1) as f64,
        blob_gas as f64 / txs.max(1) as f64,
        payload as f64 / raw.max(1) as f64,
        pct(50.0),
        pct(99.0),
    );
    println!(
        "RESULT posting_mode={mode} gas_per_batch={} blob_gas_per_batch={} gas_per_tx={:.0} compression={:.3} decision_to_l1_p50_ms={} decision_to_l1_p99_ms={}",
        gas / n,
        blob_gas / n,
        gas as f64 / txs.max(1) as f64,
        payload as f64 / raw.max(1) as f64,
        pct(50.0),
        pct(99.0)
    );
    Ok(())
}
