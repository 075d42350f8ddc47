//! Batches on L1, posted by the nodes themselves, and a replica that rebuilds the chain from L1 alone: four real
//! nodes following anvil, transfers running, the pool's batches landing in BatchInbox (calldata and blob modes),
//! the posting sequencer killed, a stuck transaction bumped, an L1 reorg, reward reports credited on L1.

mod common;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use common::testnet::{NetOptions, Testnet};
use common::wait_for;
use metis_contracts::bindings::BatchInbox;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Four nodes at a time on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `metis-seq replica` process, killed when dropped.
struct ReplicaProc {
    child: Child,
    url: String,
}

impl ReplicaProc {
    fn start(net: &Testnet, l1_rpc: &str, data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metis-seq"))
            .arg("replica")
            .args(["--l1-rpc", l1_rpc])
            .arg("--genesis")
            .arg(net.net_dir().join("genesis.json"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--rpc-addr", "127.0.0.1:0", "--confirmations", "1", "--poll-ms", "200"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(data_dir.with_extension("log")).expect("replica log"),
            ))
            .spawn()
            .expect("spawning metis-seq replica");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("RPC listening on ") {
                    let _ = tx.send(a.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("the replica did not start");
            }
        };
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let r: Value = reqwest::Client::new()
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match r.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(r["result"].clone()),
        }
    }
}

impl Drop for ReplicaProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends transfers from dev account 1 round-robin to the running nodes until stopped; counts the accepted ones.
fn load(net_rpc: Vec<String>, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let key = common::dev_key(1);
        let client = reqwest::Client::new();
        let mut nonce = sent.load(Ordering::Relaxed);
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let url = &net_rpc[i % net_rpc.len()];
            i += 1;
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                "params": [common::transfer(&key, nonce)]});
            let ok = match client.post(url).json(&body).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .map(|v| v.get("result").is_some())
                    .unwrap_or(false),
                Err(_) => false,
            };
            if ok {
                nonce += 1;
                sent.store(nonce, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Every BatchAppended event on L1 so far: (index, submitter, header, L1 transaction).
async fn appended(p: &DynProvider, inbox: Address) -> Vec<(u64, Address, BatchInbox::BatchHeader, B256)> {
    let logs = p
        .get_logs(
            &Filter::new()
                .address(inbox)
                .event_signature(BatchInbox::BatchAppended::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .expect("logs");
    logs.iter()
        .map(|l| {
            let e = BatchInbox::BatchAppended::decode_log(&l.inner).expect("event");
            (
                e.index.to::<u64>(),
                e.submitter,
                e.header.clone(),
                l.transaction_hash.expect("tx"),
            )
        })
        .collect()
}

async fn next_index(p: &DynProvider, inbox: Address) -> u64 {
    BatchInbox::new(inbox, p.clone())
        .nextIndex()
        .call()
        .await
        .expect("nextIndex")
}

/// Starts the network on a fresh anvil with the group key registered on L1 once the DKG made it, and the
/// LockingPool funded to pay rewards.
async fn network(name: &str, opts: NetOptions, anvil_args: &[&str]) -> (metis_testkit::L1, Testnet) {
    let mut l1 = metis_testkit::deployed_l1_with(&[], anvil_args).await;
    let dir = common::tempdir(&format!("{name}-l1"));
    let contracts = dir.join("contracts.json");
    std::fs::write(&contracts, serde_json::to_string(&l1.deployment).expect("json")).expect("write");
    let mut net = Testnet::generate(
        name,
        NetOptions {
            l1: Some(common::testnet::L1Options {
                rpc: l1.anvil.endpoint(),
                contracts,
                owner_key: format!("0x{}", alloy::hex::encode(l1.owner.to_bytes())),
                confirmations: 2,
            }),
            ..opts
        },
    );
    // `metis-seq testnet` sent transactions from the owner: a fresh provider, so no cached nonce.
    l1.provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::new(l1.owner.clone()))
        .connect_http(l1.anvil.endpoint_url())
        .erased();
    // Rewards are paid from the escrow the owner funds.
    let token = metis_contracts::MetisToken::new(l1.deployment.token, l1.provider.clone());
    let enough = U256::from(10u64).pow(U256::from(30));
    let r = token.mint(l1.owner.address(), enough).send().await.expect("mint");
    r.get_receipt().await.expect("receipt");
    let r = token
        .approve(l1.deployment.locking_info, enough)
        .send()
        .await
        .expect("approve");
    r.get_receipt().await.expect("receipt");
    for i in 0..net.len() {
        net.start(i, None);
    }
    let key: Value = wait_for(90, "the genesis DKG", || async {
        let k = net.call(0, "metis_thresholdKey", json!([])).await.ok()?;
        (!k["current"].is_null()).then_some(k)
    })
    .await;
    let group_key: alloy::primitives::Bytes = alloy::hex::decode(key["current"]["group_key"].as_str().expect("key"))
        .expect("hex")
        .into();
    let pool = metis_contracts::LockingPool::new(l1.deployment.locking_pool, l1.provider.clone());
    let r = pool.setGroupKey(group_key).send().await.expect("setGroupKey");
    assert!(r.get_receipt().await.expect("receipt").status());
    (l1, net)
}

/// The block holding dev account 1's transfer with `nonce`, seen by node `node`.
async fn receipt_block(
    net: &Testnet,
    node: usize,
    key: &alloy::signers::local::PrivateKeySigner,
    nonce: u64,
) -> Option<u64> {
    let raw = alloy::hex::decode(common::transfer(key, nonce)).ok()?;
    let r = net
        .call(
            node,
            "eth_getTransactionReceipt",
            json!([alloy::primitives::keccak256(&raw)]),
        )
        .await
        .ok()?;
    r["blockNumber"]
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
}

/// Which node posts now (turn 0 in its poster status).
async fn producer_node(net: &Testnet, nodes: &[usize]) -> Option<usize> {
    for &i in nodes {
        if let Ok(p) = net.call(i, "metis_poster", json!([])).await {
            if p["turn"] == json!(0) {
                return Some(i);
            }
        }
    }
    None
}

/// Calldata mode under load: batches land continuously, contiguous, each the pool's header; the posting
/// sequencer killed mid-stream, another posts and nothing is lost or doubled; reward reports land and credit
/// blocks x rewardPerBlock; a replica started from scratch reaches the sequencers' state root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_post_batches_and_a_replica_rebuilds_the_chain() {
    let _serial = SERIAL.lock().await;
    let (l1, mut net) = network(
        "post-calldata",
        NetOptions {
            key_phase_blocks: 3,
            batch_blocks: 4,
            epoch_length: 5,
            reward_epochs: 2,
            posting: true,
            post_turn_timeout_ms: 3_000,
            ..Default::default()
        },
        &["--block-time", "0.5"],
    )
    .await;
    let inbox = l1.deployment.batch_inbox;
    let p = l1.provider.clone();
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let loader = load(net.rpc.clone(), stop.clone(), sent.clone());

    wait_for(120, "6 batches posted by the nodes", || async {
        (next_index(&p, inbox).await >= 6).then_some(())
    })
    .await;
    // Kill -9 whoever posts now; the others take over (after the turn timeout, and by re-election).
    let victim = wait_for(30, "a producer with a poster turn", || {
        producer_node(&net, &[0, 1, 2, 3])
    })
    .await;
    let alive: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    // The load pauses over the kill, so no transfer is left only in the victim's pool (a nonce gap).
    stop.store(true, Ordering::Relaxed);
    loader.await.expect("loader");
    let key = common::dev_key(1);
    let n = sent.load(Ordering::Relaxed);
    wait_for(30, "the receipt of the last transfer before the kill", || {
        receipt_block(&net, alive[0], &key, n - 1)
    })
    .await;
    let before = next_index(&p, inbox).await;
    net.kill(victim);
    stop.store(false, Ordering::Relaxed);
    let loader_alive = load(
        alive.iter().map(|i| net.rpc[*i].clone()).collect(),
        stop.clone(),
        sent.clone(),
    );
    wait_for(120, "4 more batches after the kill", || async {
        (next_index(&p, inbox).await >= before + 4).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    loader_alive.await.expect("loader");
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 50, "the load ran ({sent} transfers)");

    // Every transfer is in the chain; the chain is covered by the batches on L1 once they catch up.
    let last_tx_block = wait_for(60, "the last transfer's receipt", || {
        receipt_block(&net, alive[0], &key, sent - 1)
    })
    .await;
    let ib = BatchInbox::new(inbox, p.clone());
    wait_for(90, "the last transfer's block in a batch on L1", || async {
        (ib.nextL2Block().call().await.ok()? > last_tx_block).then_some(())
    })
    .await;
    let events = appended(&p, inbox).await;
    let indexes: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        indexes,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "contiguous, no gaps or duplicates"
    );
    let mut txs = 0usize;
    let mut submitters = std::collections::BTreeSet::new();
    for (index, submitter, header, _) in &events {
        submitters.insert(*submitter);
        let b = net.signed_batch(&alive, *index).await;
        assert_eq!(
            &common::testnet::header_from(&b),
            header,
            "batch {index} is the pool's header"
        );
        let payload: alloy::primitives::Bytes = b["payload"].as_str().expect("payload").parse().expect("hex");
        txs += metis_batcher::payload::decode(&payload)
            .expect("payload")
            .iter()
            .map(|b| b.transactions.len())
            .sum::<usize>();
    }
    assert!(
        txs as u64 >= sent,
        "every transfer is in a batch on L1 ({txs} of {sent})"
    );
    assert!(
        submitters.len() >= 2,
        "another sequencer posted after the kill: {submitters:?}"
    );
    let status = net.call(alive[0], "metis_poster", json!([])).await.expect("poster");
    println!("poster status of node {}: {status}", alive[0]);

    // Reward reports are posted by the nodes too, and credit blocks x rewardPerBlock.
    let pool = metis_contracts::LockingPool::new(l1.deployment.locking_pool, p.clone());
    wait_for(120, "two reward reports on L1", || async {
        (pool.lastRewardBatchId().call().await.ok()? >= U256::from(2)).then_some(())
    })
    .await;
    let per_block = pool.rewardPerBlock().call().await.expect("rewardPerBlock");
    let last = pool.lastRewardBatchId().call().await.expect("last").to::<u64>();
    let mut produced: std::collections::BTreeMap<u64, u64> = Default::default();
    for id in 1..=last {
        let r = net
            .call(alive[0], "metis_getRewardReport", json!([id]))
            .await
            .expect("report");
        for pair in r["blocks"].as_array().expect("blocks") {
            *produced.entry(pair[0].as_u64().expect("id")).or_default() += pair[1].as_u64().expect("count");
        }
    }
    for (sid, n) in &produced {
        let s = pool.sequencers(U256::from(*sid)).call().await.expect("sequencer");
        assert_eq!(s.reward, per_block * U256::from(*n), "sequencer {sid}");
    }

    // A replica from scratch, from L1 alone, reaches the sequencers' state root at the last posted block.
    let dir = common::tempdir("replica-calldata");
    let replica = ReplicaProc::start(&net, &l1.anvil.endpoint(), &dir.join("data"));
    let posted = next_index(&p, inbox).await;
    let st: Value = wait_for(120, "the replica replays every posted batch", || async {
        let s = replica.call("metis_replica", json!([])).await.ok()?;
        assert!(s["error"].is_null(), "replica stopped: {s}");
        (s["next_index"].as_u64()? >= posted).then_some(s)
    })
    .await;
    let head = st["head"].as_u64().expect("head");
    let ours = net.block(alive[0], head).await.expect("block");
    let theirs = replica
        .call("eth_getBlockByNumber", json!([format!("0x{head:x}"), false]))
        .await
        .expect("replica block");
    assert_eq!(theirs["stateRoot"], ours["stateRoot"], "replica state root at {head}");
    assert_eq!(theirs["hash"], ours["hash"], "replica block hash at {head}");
    // The killed node back: it syncs and posts in its turns again from L1's view, without doubling anything.
    net.start(victim, None);
    let again = next_index(&p, inbox).await + 3;
    wait_for(90, "3 more batches with the node back", || async {
        (next_index(&p, inbox).await >= again).then_some(())
    })
    .await;
    let events = appended(&p, inbox).await;
    let indexes: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        indexes,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "still contiguous after the restart"
    );
    let back = net
        .call(victim, "metis_poster", json!([]))
        .await
        .expect("poster status");
    assert!(
        back["l1_next_index"].as_u64().is_some(),
        "the restarted node's poster reads L1: {back}"
    );
    // Read-only.
    let refused = replica
        .call("eth_sendRawTransaction", json!([common::transfer(&key, sent)]))
        .await
        .expect_err("a replica takes no transactions");
    assert!(refused.contains("read-only"), "{refused}");
}

async fn anvil(p: &DynProvider, method: &'static str, params: Value) -> Value {
    p.raw_request(method.into(), params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Blob mode: batches land in type-3 transactions whose blobs are the header's; a transaction stuck under a
/// raised base fee is replaced with higher fees and lands; an L1 reorg that un-mines a batch gets it posted again;
/// a replica reading the blobs reaches the sequencers' state root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_batches_survive_stuck_transactions_and_reorgs() {
    use alloy::consensus::Transaction as _;
    let _serial = SERIAL.lock().await;
    let (l1, net) = network(
        "post-blobs",
        NetOptions {
            key_phase_blocks: 3,
            batch_blocks: 4,
            // One producer, and no fallback, for the whole test: the stuck transaction can only land by its bump.
            epoch_length: 1_000,
            posting: true,
            batch_blobs: true,
            post_turn_timeout_ms: 600_000,
            ..Default::default()
        },
        &["--block-time", "1"],
    )
    .await;
    let inbox = l1.deployment.batch_inbox;
    let p = l1.provider.clone();
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let loader = load(net.rpc.clone(), stop.clone(), sent.clone());
    wait_for(120, "3 blob batches posted", || async {
        (next_index(&p, inbox).await >= 3).then_some(())
    })
    .await;
    for (index, _, header, tx) in appended(&p, inbox).await {
        assert!(!header.blobHashes.is_empty(), "batch {index} is in blobs");
        let t = p.get_transaction_by_hash(tx).await.expect("tx").expect("tx");
        assert_eq!(
            t.blob_versioned_hashes().map(|h| h.to_vec()),
            Some(header.blobHashes.clone())
        );
        assert!(
            t.input().len() < 2_000,
            "no payload in calldata: {} bytes",
            t.input().len()
        );
    }

    // Stuck: mining paused until a poster transaction waits, then a block whose base fee is far above what it
    // offers; mining resumes and the poster must outbid the base fee to land the batch.
    anvil(&p, "evm_setIntervalMining", json!([0])).await;
    let waiting: (usize, u128) = wait_for(60, "a poster transaction pending", || async {
        for i in 0..4 {
            let s = net.call(i, "metis_poster", json!([])).await.ok()?;
            for slot in s["in_flight"].as_array()? {
                // Really waiting: known to anvil and not mined (the status may be a step old).
                let hash: B256 = slot[1]["hash"].as_str()?.parse().ok()?;
                let known = p.get_transaction_by_hash(hash).await.ok()?.is_some();
                if known && p.get_transaction_receipt(hash).await.ok()?.is_none() {
                    return Some((i, slot[1]["fees"]["max_fee"].as_u64()? as u128));
                }
            }
        }
        None
    })
    .await;
    let stuck_index = next_index(&p, inbox).await;
    let high: u128 = 100_000_000_000;
    assert!(waiting.1 < high, "the pending transaction offers {} already", waiting.1);
    anvil(&p, "anvil_setNextBlockBaseFeePerGas", json!([format!("0x{high:x}")])).await;
    anvil(&p, "evm_mine", json!([])).await;
    assert_eq!(
        next_index(&p, inbox).await,
        stuck_index,
        "nothing landed under the raised base fee"
    );
    anvil(&p, "evm_setIntervalMining", json!([1])).await;
    // Waits for the batch's own event: the inbox's index can be read a moment before anvil serves the log.
    let tx = wait_for(90, "the stuck batch lands after a bump", || async {
        appended(&p, inbox).await.into_iter().find(|e| e.0 == stuck_index)
    })
    .await
    .3;
    let t = p.get_transaction_by_hash(tx).await.expect("tx").expect("tx");
    assert!(
        t.max_fee_per_gas() > waiting.1 * 10,
        "the landing transaction was bumped: {} vs {}",
        t.max_fee_per_gas(),
        waiting.1
    );
    assert!(
        std::fs::read_to_string(net.log_path(waiting.0))
            .unwrap_or_default()
            .contains("replaced with higher fees"),
        "the poster logged its replacement"
    );

    // Reorg: right after a batch lands, the last two L1 blocks are replaced by empty ones; the batch is posted
    // again.
    let n = next_index(&p, inbox).await;
    wait_for(60, "the next batch lands", || async {
        (next_index(&p, inbox).await > n).then_some(())
    })
    .await;
    let landed_at = next_index(&p, inbox).await;
    anvil(&p, "anvil_reorg", json!([2, []])).await;
    let after_reorg = next_index(&p, inbox).await;
    assert!(
        after_reorg < landed_at,
        "the reorg un-mined a batch ({after_reorg} vs {landed_at})"
    );
    wait_for(90, "the un-mined batch posted again", || async {
        (next_index(&p, inbox).await >= landed_at).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    loader.await.expect("loader");
    let events = appended(&p, inbox).await;
    let indexes: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        indexes,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "contiguous, no gaps or duplicates"
    );

    // A replica reads the blobs and reaches the sequencers' state root.
    let dir = common::tempdir("replica-blobs");
    let replica = ReplicaProc::start(&net, &l1.anvil.endpoint(), &dir.join("data"));
    let posted = next_index(&p, inbox).await;
    let st: Value = wait_for(120, "the replica replays every posted batch", || async {
        let s = replica.call("metis_replica", json!([])).await.ok()?;
        assert!(s["error"].is_null(), "replica stopped: {s}");
        (s["next_index"].as_u64()? >= posted).then_some(s)
    })
    .await;
    let head = st["head"].as_u64().expect("head");
    let ours = net.block(0, head).await.expect("block");
    assert_eq!(st["state_root"], ours["stateRoot"], "replica state root at {head}");
}
