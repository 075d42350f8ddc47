//! The load generators behind `metis-seq bench`, and the raw JSON-RPC call they and the CLI use for methods a
//! typed provider does not have (the PoS API, anvil's).
//!
//! `metis-seq bench transfers`: a load generator for any Ethereum JSON-RPC node. It pre-signs transfers from
//! many funded accounts, sends them with eth_sendRawTransaction in JSON-RPC batches over concurrent
//! connections, watches blocks for their inclusion, and prints throughput and send-to-inclusion latency.
//!
//! `metis-seq bench keyrounds`: the pool key's rounds among n sequencers in one process ([`keyrounds`]).
//!
//! `metis-seq bench signing`: watches running nodes sign batches with the pool's threshold key and prints the
//! time from the decision of the block that cut each batch to the aggregated signature on each node, with the
//! L2 block pace over the same time.

pub mod keyrounds;
pub mod posting;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::signers::{local::PrivateKeySigner, SignerSync};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Value transfers from many accounts.
    Transfers(TransferArgs),
    /// Threshold signatures of batches on running nodes.
    Signing(SigningArgs),
    /// Batches landing on L1: gas, compression, decision-to-L1 time.
    Posting(posting::PostingArgs),
    /// The pool key's DKG and reshare among n sequencers, in one process: sizes against the caps, compute.
    Keyrounds(keyrounds::KeyRoundArgs),
}

#[derive(Args, Debug)]
pub struct SigningArgs {
    /// The nodes' JSON-RPC URLs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:28002")]
    rpc: Vec<String>,
    /// Batches to watch (from the next one cut).
    #[arg(long, default_value_t = 20)]
    batches: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The node's JSON-RPC URL.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    rpc: String,
    /// Transfers to send.
    #[arg(long, default_value_t = 10_000)]
    txs: usize,
    /// Sending accounts (funded from the funder first).
    #[arg(long, default_value_t = 200)]
    accounts: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Transactions per JSON-RPC batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Environment variable with the funder's key (default: dev account 0 of the well-known mnemonic).
    #[arg(long, default_value = "METIS_BENCH_KEY")]
    key_env: String,
    /// Give up waiting for inclusion after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Label printed with the results.
    #[arg(long, default_value = "node")]
    label: String,
    /// Offered load in transactions per second (0 = as fast as the node takes them). A rate below the chain's
    /// capacity measures sustained throughput rather than how fast a burst drains.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

struct Rpc {
    client: reqwest::Client,
    url: String,
}

impl Rpc {
    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp: Value = self.client.post(&self.url).json(&body).send().await?.json().await?;
        if let Some(e) = resp.get("error") {
            bail!("{method}: {e}");
        }
        Ok(resp["result"].clone())
    }

    /// One JSON-RPC batch; returns each item's result or error, by position.
    async fn batch(&self, calls: &[(String, Value)]) -> Result<Vec<std::result::Result<Value, Value>>> {
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
            .collect();
        let resp: Vec<Value> = self.client.post(&self.url).json(&body).send().await?.json().await?;
        let mut out = vec![Err(json!("missing response")); calls.len()];
        for r in resp {
            let Some(i) = r["id"].as_u64().map(|i| i as usize) else {
                continue;
            };
            if i < out.len() {
                out[i] = match r.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(r["result"].clone()),
                };
            }
        }
        Ok(out)
    }
}

fn hex_u64(v: &Value) -> Result<u64> {
    let s = v.as_str().context("expected a hex quantity")?;
    Ok(u64::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

fn hex_u128(v: &Value) -> Result<u128> {
    let s = v.as_str().context("expected a hex quantity")?;
    Ok(u128::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

fn sign(
    key: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: U256,
    max_fee: u128,
    tip: u128,
) -> Result<(B256, Bytes)> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value,
        input: Bytes::new(),
        access_list: Default::default(),
    };
    let sig = key.sign_hash_sync(&tx.signature_hash())?;
    let env = TxEnvelope::from(tx.into_signed(sig));
    Ok((*env.tx_hash(), env.encoded_2718().into()))
}

/// Sends raw transactions in batches over `concurrency` connections, at most `rate` per second when non-zero;
/// returns (hash, send instant) and errors.
async fn send_all(
    rpc: &Arc<Rpc>,
    txs: Vec<(B256, Bytes)>,
    batch: usize,
    concurrency: usize,
    rate: u64,
) -> Result<(Vec<(B256, Instant)>, Vec<String>)> {
    let batch = batch.max(1);
    let chunks: Vec<Vec<(B256, Bytes)>> = txs.chunks(batch).map(|c| c.to_vec()).collect();
    let queue = Arc::new(Mutex::new(chunks.into_iter().enumerate()));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        let rpc = rpc.clone();
        workers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut errors = Vec::new();
            loop {
                let Some((index, chunk)) = queue.lock().await.next() else {
                    break;
                };
                if rate > 0 {
                    let due = t0 + Duration::from_secs_f64((index * batch) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let calls: Vec<(String, Value)> = chunk
                    .iter()
                    .map(|(_, raw)| ("eth_sendRawTransaction".to_string(), json!([raw])))
                    .collect();
                let at = Instant::now();
                match rpc.batch(&calls).await {
                    Ok(results) => {
                        for ((hash, _), r) in chunk.iter().zip(results) {
                            match r {
                                Ok(_) => sent.push((*hash, at)),
                                Err(e) => errors.push(e.to_string()),
                            }
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (sent, errors)
        }));
    }
    let mut sent = Vec::new();
    let mut errors = Vec::new();
    for w in workers {
        let (s, e) = w.await?;
        sent.extend(s);
        errors.extend(e);
    }
    Ok((sent, errors))
}

/// Watches new blocks until every hash in `pending` is included; returns inclusion instants.
async fn watch_inclusion(
    rpc: &Rpc,
    mut pending: HashMap<B256, ()>,
    from_block: u64,
    timeout: Duration,
) -> Result<HashMap<B256, Instant>> {
    let deadline = Instant::now() + timeout;
    let mut next = from_block + 1;
    let mut included = HashMap::new();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            eprintln!("timed out with {} transactions not included", pending.len());
            break;
        }
        let head = hex_u64(&rpc.call("eth_blockNumber", json!([])).await?)?;
        while next <= head {
            let block = rpc
                .call("eth_getBlockByNumber", json!([format!("0x{next:x}"), false]))
                .await?;
            let seen = Instant::now();
            for h in block["transactions"].as_array().into_iter().flatten() {
                if let Some(hash) = h.as_str().and_then(|s| s.parse::<B256>().ok()) {
                    if pending.remove(&hash).is_some() {
                        included.insert(hash, seen);
                    }
                }
            }
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(included)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    let a = match cmd {
        BenchCommand::Transfers(a) => a,
        BenchCommand::Signing(a) => return signing(a).await,
        BenchCommand::Posting(a) => return posting::run(a).await,
        BenchCommand::Keyrounds(a) => return tokio::task::spawn_blocking(move || keyrounds::run(a)).await?,
    };
    let rpc = Arc::new(Rpc {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(a.concurrency)
            .build()?,
        url: a.rpc.clone(),
    });
    let funder: PrivateKeySigner = match std::env::var(&a.key_env) {
        Ok(k) => k.trim().parse().context("funder key")?,
        Err(_) => metis_contracts::dev::dev_key(0).context("deriving dev key 0")?,
    };
    let chain_id = hex_u64(&rpc.call("eth_chainId", json!([])).await?)?;
    let gas_price = hex_u128(&rpc.call("eth_gasPrice", json!([])).await?)?;
    let max_fee = (gas_price * 4).max(2_000_000_000);
    let tip = 1_000_000_000u128.min(max_fee);
    let funder_nonce = hex_u64(
        &rpc.call("eth_getTransactionCount", json!([funder.address(), "pending"]))
            .await?,
    )?;
    eprintln!("[{}] chain {chain_id}, funding {} accounts", a.label, a.accounts);

    // Fund the senders.
    let senders: Vec<PrivateKeySigner> = (0..a.accounts).map(|_| PrivateKeySigner::random()).collect();
    let per_sender = a.txs.div_ceil(a.accounts) as u128;
    let fund = U256::from(per_sender * 21_000 * max_fee + 10u128.pow(16));
    let funding: Vec<(B256, Bytes)> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            sign(
                &funder,
                chain_id,
                funder_nonce + i as u64,
                s.address(),
                fund,
                max_fee,
                tip,
            )
        })
        .collect::<Result<_>>()?;
    let start_block = hex_u64(&rpc.call("eth_blockNumber", json!([])).await?)?;
    let (sent, errors) = send_all(&rpc, funding, a.batch, a.concurrency, 0).await?;
    if !errors.is_empty() {
        bail!("funding failed: {}", errors[0]);
    }
    let included = watch_inclusion(
        &rpc,
        sent.iter().map(|(h, _)| (*h, ())).collect(),
        start_block,
        Duration::from_secs(a.timeout),
    )
    .await?;
    if included.len() != sent.len() {
        bail!(
            "only {} of {} funding transactions were included",
            included.len(),
            sent.len()
        );
    }

    // Pre-sign the load.
    eprintln!("[{}] signing {} transfers", a.label, a.txs);
    let txs: Vec<(B256, Bytes)> = (0..a.txs)
        .map(|i| {
            let to = Address::from_word(alloy::primitives::keccak256((i as u64).to_be_bytes()));
            sign(
                &senders[i % a.accounts],
                chain_id,
                (i / a.accounts) as u64,
                to,
                U256::from(1),
                max_fee,
                tip,
            )
        })
        .collect::<Result<_>>()?;

    eprintln!("[{}] sending", a.label);
    let start_block = hex_u64(&rpc.call("eth_blockNumber", json!([])).await?)?;
    let t0 = Instant::now();
    let watcher = {
        let rpc = rpc.clone();
        let pending: HashMap<B256, ()> = txs.iter().map(|(h, _)| (*h, ())).collect();
        let timeout = Duration::from_secs(a.timeout);
        tokio::spawn(async move { watch_inclusion(&rpc, pending, start_block, timeout).await })
    };
    let (sent, errors) = send_all(&rpc, txs, a.batch, a.concurrency, a.rate).await?;
    let send_time = t0.elapsed();
    let included = watcher.await??;
    let last = included.values().max().copied().unwrap_or(t0);
    let total = last.duration_since(t0);
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(h, at)| included.get(h).map(|inc| inc.saturating_duration_since(*at)))
        .collect();
    lat.sort();
    let tps = included.len() as f64 / total.as_secs_f64().max(1e-9);
    println!(
        "{}: {} sent ({} refused) in {:.2} s, {} included in {:.2} s: {:.0} tx/s; send-to-inclusion latency p50 {} ms, p99 {} ms",
        a.label,
        sent.len(),
        errors.len(),
        send_time.as_secs_f64(),
        included.len(),
        total.as_secs_f64(),
        tps,
        percentile(&lat, 50.0).as_millis(),
        percentile(&lat, 99.0).as_millis()
    );
    if let Some(e) = errors.first() {
        eprintln!("first refusal: {e}");
    }
    println!(
        "RESULT label={} tps={tps:.1} p50_ms={} p99_ms={}",
        a.label,
        percentile(&lat, 50.0).as_millis(),
        percentile(&lat, 99.0).as_millis()
    );
    Ok(())
}

async fn head_number(n: &Rpc) -> Result<u64> {
    hex_u64(&n.call("eth_blockNumber", json!([])).await?)
}

/// Waits for `a.batches` new batches to be signed on every node; prints the decision-to-signature latency.
async fn signing(a: SigningArgs) -> Result<()> {
    let client = reqwest::Client::new();
    let nodes: Vec<Rpc> = a
        .rpc
        .iter()
        .map(|url| Rpc {
            client: client.clone(),
            url: url.clone(),
        })
        .collect();
    let first_node = nodes.first().context("no --rpc given")?;
    let status = first_node.call("metis_signer", json!([])).await?;
    let from = status["batches"]["next_index"]
        .as_u64()
        .context("metis_signer: no batches")?;
    let to = from + a.batches;
    let (h0, t0) = (head_number(first_node).await?, Instant::now());
    eprintln!(
        "watching batches {from}..{} on {} nodes (L2 head {h0})",
        to - 1,
        nodes.len()
    );
    let deadline = t0 + Duration::from_secs(a.timeout);
    let mut lat = Vec::new();
    let mut unsigned = Vec::new();
    for index in from..to {
        for (i, n) in nodes.iter().enumerate() {
            loop {
                let b = n.call("metis_getBatchByIndex", json!([index])).await?;
                if let Some(ms) = b["signatureLatencyMs"].as_u64() {
                    lat.push(Duration::from_millis(ms));
                    break;
                }
                if Instant::now() > deadline {
                    unsigned.push((index, i));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if !unsigned.is_empty() {
            bail!(
                "batch {index} not signed on node(s) {unsigned:?} within {} s",
                a.timeout
            );
        }
    }
    let (h1, elapsed) = (head_number(first_node).await?, t0.elapsed());
    lat.sort();
    let pace = elapsed.as_millis() as u64 / (h1 - h0).max(1);
    println!(
        "signing: {} batches x {} nodes: decision-to-signature p50 {} ms, p99 {} ms, max {} ms; L2 blocks meanwhile: {} in {:.1} s (one per {pace} ms)",
        a.batches,
        nodes.len(),
        percentile(&lat, 50.0).as_millis(),
        percentile(&lat, 99.0).as_millis(),
        lat.last().copied().unwrap_or_default().as_millis(),
        h1 - h0,
        elapsed.as_secs_f64(),
    );
    println!(
        "RESULT signing_p50_ms={} signing_p99_ms={} block_interval_ms={pace}",
        percentile(&lat, 50.0).as_millis(),
        percentile(&lat, 99.0).as_millis()
    );
    Ok(())
}

/// One JSON-RPC call; an error object in the answer is an error naming the method.
pub async fn rpc_call(client: &reqwest::Client, url: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: Value = client.post(url).json(&body).send().await?.json().await?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {e}");
    }
    Ok(v["result"].clone())
}
