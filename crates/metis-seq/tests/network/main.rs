//! Four real `metis-seq node` processes over loopback: one chain decided by Tendermint, transactions gossiped,
//! producers elected by stake, failover when the producer dies, sync after restart, invalid proposals refused;
//! accountability (evidence, downtime, no honest node punished) in `accountability`.

mod accountability;
#[path = "../common/mod.rs"]
mod common;
mod corrupt;
mod hostile;
mod pace;
mod rpc_node;

use alloy::primitives::{B256, U256};
use common::testnet::{NetOptions, Testnet};
use common::{dev_key, transfer, wait_for};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// The networks of these tests run one at a time: sixteen node processes on two cores would measure the
/// machine, not the protocol.
static ONE_NETWORK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_NETWORK_AT_A_TIME.lock().await
}

pub(crate) fn hex_u256(v: &Value) -> U256 {
    U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// (sequencer id, election weight = stake up to the cap) from the PoS genesis, as the ledger computes them.
pub(crate) fn election_weights(genesis: &Value) -> Vec<(u64, U256)> {
    let cap = hex_u256(&genesis["params"]["stake_cap"]);
    genesis["sequencers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), hex_u256(&s["stake"]).min(cap)))
        .collect()
}

pub(crate) fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap()
}

/// Sends `count` transfers from dev account `account` to node `node`; returns their hashes.
pub(crate) async fn send_transfers(
    net: &Testnet,
    node: usize,
    account: u32,
    first_nonce: u64,
    count: u64,
) -> Vec<String> {
    let key = dev_key(account);
    let mut hashes = Vec::new();
    for n in first_nonce..first_nonce + count {
        let h = net
            .call(node, "eth_sendRawTransaction", json!([transfer(&key, n)]))
            .await
            .unwrap_or_else(|e| panic!("node {node} refused a transfer: {e}"));
        hashes.push(h.as_str().unwrap().to_string());
    }
    hashes
}

/// Waits until every node in `nodes` has a successful receipt for every hash; returns hash -> block hash.
pub(crate) async fn wait_receipts(
    net: &Testnet,
    nodes: &[usize],
    hashes: &[String],
    secs: u64,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for h in hashes {
        for &i in nodes {
            let r = wait_for(secs, &format!("receipt of {h} on node {i}"), || async {
                let r = net.call(i, "eth_getTransactionReceipt", json!([h])).await.ok()?;
                (!r.is_null()).then_some(r)
            })
            .await;
            assert_eq!(r["status"], "0x1", "{h} failed");
            let bh = r["blockHash"].as_str().unwrap().to_string();
            if let Some(prev) = out.insert(h.clone(), bh.clone()) {
                assert_eq!(prev, bh, "{h} is in different blocks on different nodes");
            }
        }
    }
    out
}

/// Epoch 0's producer as the ledger draws it from the genesis seed: (sequencer id, node index).
pub(crate) fn genesis_producer(genesis: &Value) -> (u64, usize) {
    let weights = election_weights(genesis);
    let seed: B256 = genesis["seed"].as_str().unwrap().parse().unwrap();
    let id = metis_pos::elect(&weights, seed, 0).unwrap();
    (id, Testnet::node_of(id))
}

pub(crate) async fn current_epoch(net: &Testnet, i: usize) -> Value {
    net.call(i, "metis_currentEpoch", json!([]))
        .await
        .expect("metis_currentEpoch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_one_chain_gossip_and_stake_weighted_rotation() {
    let _one = exclusive().await;
    let mut net = Testnet::generate(
        "net-rotation",
        NetOptions {
            epoch_length: 3,
            block_time_ms: 500,
            ..Default::default()
        },
    );
    // Nodes 0 and 2 hand all but 4 records of their ledger over to their store; 1 and 3 keep 256: the chain is
    // one chain all the same (the ledger's state hash is in every header), and the API serves both alike.
    net.set_ledger_history(0, 4);
    net.set_ledger_history(2, 4);
    for i in 0..4 {
        net.start(i, None);
    }
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 2, 60).await;

    // Transactions sent to each node reach the chain, whoever proposes.
    let mut hashes = Vec::new();
    for i in 0..4 {
        hashes.extend(send_transfers(&net, i, i as u32, 0, 5).await);
    }
    wait_receipts(&net, &all, &hashes, 60).await;

    net.wait_height(&all, 40, 120).await;
    net.assert_same_chain(&all, 40).await;

    // Rotation records: every epoch's producer is the stake-weighted draw from its seed, the seed is the
    // PREVRANDAO (last-commit digest) of the block that closed the previous epoch, and the blocks of an epoch
    // were made by its producer except the ones it missed.
    let genesis = net.pos_genesis();
    let weights = election_weights(&genesis);
    let signers: BTreeMap<u64, String> = genesis["sequencers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), s["signer"].as_str().unwrap().to_lowercase()))
        .collect();
    let epochs = net.call(0, "metis_epochs", json!([0, 1000])).await.unwrap();
    let epochs = epochs.as_array().unwrap();
    assert!(epochs.len() >= 12, "only {} epochs in 40 blocks of 3", epochs.len());
    let mut wins: BTreeMap<u64, u64> = BTreeMap::new();
    let mut missed_total = 0;
    for e in epochs.iter().filter(|e| e["ended"] == true) {
        let id = e["id"].as_u64().unwrap();
        let producer = e["producer"].as_u64().unwrap();
        let seed: B256 = e["seed"].as_str().unwrap().parse().unwrap();
        *wins.entry(producer).or_default() += 1;
        if id > 0 {
            assert_eq!(e["reason"], "Scheduled", "epoch {id} in a healthy network");
            assert_eq!(
                metis_pos::elect(&weights, seed, id),
                Some(producer),
                "epoch {id}: producer is not the stake-weighted draw from its seed"
            );
            let closing = net.block(0, e["first_block"].as_u64().unwrap() - 1).await.unwrap();
            assert_eq!(
                closing["mixHash"].as_str().unwrap(),
                format!("{seed:#x}"),
                "epoch {id} seed"
            );
        }
        let mut not_producer = 0;
        for n in e["first_block"].as_u64().unwrap()..=e["last_block"].as_u64().unwrap() {
            let b = net.block(0, n).await.unwrap();
            let miner = b["miner"].as_str().unwrap().to_lowercase();
            assert!(
                signers.values().any(|s| *s == miner),
                "block {n} mined by a stranger {miner}"
            );
            if miner != signers[&producer] {
                not_producer += 1;
            }
        }
        // A fallback may also re-propose the producer's own block in a later round: that is a miss too.
        assert!(
            not_producer <= e["missed"].as_u64().unwrap(),
            "epoch {id}: fallback blocks without misses"
        );
        missed_total += not_producer;
    }
    assert!(missed_total <= 4, "{missed_total} round-0 misses in a healthy network");
    eprintln!("epochs won per sequencer (stakes 100k/80k/70k/60k): {wins:?}; round-0 misses: {missed_total}");
    // The epochs node 0 serves from its store are the ones node 1 still holds in its ledger.
    let held = net.call(1, "metis_epochs", json!([0, 1000])).await.unwrap();
    let held = held.as_array().unwrap();
    assert_eq!(&epochs[..12], &held[..12], "archived epochs differ from held ones");
    let ledger0 = net.call(0, "metis_ledger", json!([])).await.unwrap();
    assert!(
        ledger0["archived"]["epochs"].as_u64().unwrap() >= 8,
        "node 0 archived nothing: {ledger0}"
    );
    assert_eq!(
        net.call(1, "metis_ledger", json!([])).await.unwrap()["archived"]["epochs"],
        0
    );
    let page = net.call(0, "metis_epochs", json!([5, 3])).await.unwrap();
    let ids: Vec<u64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![5, 6, 7]);

    // All nodes hold the same ledger at the same height; every header commits to it in 32 bytes of extra data
    // (geth's limit).
    let ledgers: Vec<Value> =
        futures_util::future::join_all(all.iter().map(|i| net.call(*i, "metis_ledger", json!([]))))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
    let mut by_height: std::collections::BTreeMap<u64, &Value> = Default::default();
    for l in &ledgers {
        let h = l["height"].as_u64().unwrap();
        if let Some(other) = by_height.insert(h, &l["state_hash"]) {
            assert_eq!(other, &l["state_hash"], "ledger at {h}");
        }
        let b = net.block(0, h).await.expect("block");
        assert_eq!(b["extraData"].as_str().map(str::len), Some(66), "{}", b["extraData"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposer_killed_fallback_reelection_restart_sync_and_full_restart() {
    let _one = exclusive().await;
    let mut net = Testnet::new("net-failover", NetOptions::default());
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 3, 60).await;

    let epoch = current_epoch(&net, 0).await;
    let producer_id = epoch["producer"].as_u64().unwrap();
    let p = Testnet::node_of(producer_id);
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != p).collect();

    // Transactions with receipts before the kill, some sent to the producer itself.
    let mut hashes = send_transfers(&net, p, 0, 0, 5).await;
    hashes.extend(send_transfers(&net, survivors[0], 1, 0, 5).await);
    wait_receipts(&net, &all, &hashes, 60).await;

    // kill -9 the producer right after a block, then time the next block.
    let h0 = net.head(survivors[0]).await.unwrap();
    net.wait_height(&survivors, h0 + 1, 30).await;
    let h_kill = net.head(survivors[0]).await.unwrap();
    net.kill(p);
    let killed_at = Instant::now();
    net.wait_height(&survivors[..1], h_kill + 1, 30).await;
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: next block {:.0} ms after kill -9 of the producer",
        failover.as_secs_f64() * 1e3
    );
    assert!(
        failover.as_secs_f64() <= 2.0,
        "next block took {failover:?} after the producer died"
    );

    // After K misses the epoch ends early and the failed producer is excluded.
    let re = wait_for(30, "re-election", || async {
        let e = current_epoch(&net, survivors[0]).await;
        (e["reason"]["ReElection"]["failed"].as_u64() == Some(producer_id)).then_some(e)
    })
    .await;
    assert_ne!(re["producer"].as_u64().unwrap(), producer_id);
    assert_eq!(re["reason"]["ReElection"]["misses"], 3);

    // Work goes on; nothing with a receipt was lost; no fork.
    let more = send_transfers(&net, survivors[1], 2, 0, 5).await;
    wait_receipts(&net, &survivors, &more, 60).await;
    let kept = wait_receipts(&net, &survivors, &hashes, 10).await;
    assert_eq!(kept.len(), hashes.len());
    let head = net.head(survivors[0]).await.unwrap();
    net.wait_height(&survivors, head, 30).await;
    net.assert_same_chain(&survivors, head).await;

    // The killed node comes back, syncs, and takes part: with another node down, the chain only moves with
    // its votes.
    net.start(p, None);
    let head = net.head(survivors[0]).await.unwrap();
    net.wait_height(&[p], head + 2, 60).await;
    net.assert_same_chain(&all, head + 2).await;
    let q = survivors[2];
    net.kill(q);
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != q).collect();
    let h = net.head(p).await.unwrap();
    net.wait_height(&rest, h + 3, 60).await;
    net.start(q, None);

    // Kill all four, restart all four: the chain resumes where it was.
    let before = net.head(0).await.unwrap();
    for i in 0..4 {
        net.kill(i);
    }
    for i in 0..4 {
        net.start(i, None);
    }
    net.wait_height(&all, before + 3, 90).await;
    net.assert_same_chain(&all, before + 3).await;
    let late = send_transfers(&net, 3, 3, 0, 3).await;
    wait_receipts(&net, &all, &late, 60).await;

    // SIGTERM is a clean shutdown.
    let status = net.stop(0);
    assert!(status.success(), "node 0 exited with {status} on SIGTERM");
}

/// kill -9 of all four at assorted points inside a height (mid-vote, mid-proposal), five times: every restart
/// resumes the same chain (the WAL replays votes; stored proposals give back the blocks behind them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_all_at_any_point_and_resume() {
    let _one = exclusive().await;
    let mut net = Testnet::new("net-crash", NetOptions::default());
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 2, 60).await;
    let mut nonce = 0;
    for (i, offset_ms) in [0u64, 150, 330, 510, 760].into_iter().enumerate() {
        let hashes = send_transfers(&net, i % 4, 5, nonce, 3).await;
        nonce += 3;
        let h = net.head(0).await.unwrap();
        net.wait_height(&all, h + 1, 30).await;
        // Fault timing, not synchronisation: the kill lands at a different point of the next height each time.
        tokio::time::sleep(std::time::Duration::from_millis(offset_ms)).await;
        for n in 0..4 {
            net.kill(n);
        }
        for n in 0..4 {
            net.start(n, None);
        }
        let before = futures_util::future::join_all(all.iter().map(|n| net.head(*n))).await;
        let top = before.iter().map(|h| h.unwrap_or(0)).max().unwrap();
        net.wait_height(&all, top + 2, 60).await;
        net.assert_same_chain(&all, top + 2).await;
        wait_receipts(&net, &all, &hashes, 30).await;
    }
}

/// A node that proposes invalid blocks gets no votes: its blocks never enter the chain, the fallback decides
/// each height, and after K misses it is replaced.
async fn faulty_producer_is_refused(name: &str, fault: &str) {
    let _one = exclusive().await;
    let mut net = Testnet::generate(name, NetOptions::default());
    // Epoch 0's producer follows from the genesis seed: make exactly that node misbehave from the start.
    let genesis = net.pos_genesis();
    let (producer_id, p) = genesis_producer(&genesis);
    for i in 0..4 {
        net.start(i, (i == p).then_some(fault));
    }
    let all: Vec<usize> = (0..4).collect();
    let honest: Vec<usize> = all.iter().copied().filter(|i| *i != p).collect();
    let signer = genesis["sequencers"][p]["signer"].as_str().unwrap().to_lowercase();

    let re = wait_for(60, "re-election of the faulty producer", || async {
        let e = current_epoch(&net, honest[0]).await;
        (e["reason"]["ReElection"]["failed"].as_u64() == Some(producer_id)).then_some(e)
    })
    .await;
    assert_ne!(re["producer"].as_u64().unwrap(), producer_id);
    // Some work gets done around the faulty node.
    let hashes = send_transfers(&net, p, 0, 0, 3).await;
    wait_receipts(&net, &all, &hashes, 60).await;
    let to = net.head(honest[0]).await.unwrap() + 2;
    net.wait_height(&all, to, 60).await;
    net.assert_same_chain(&all, to).await;
    for n in 1..=to {
        let b = net.block(honest[0], n).await.unwrap();
        assert_ne!(
            b["miner"].as_str().unwrap().to_lowercase(),
            signer,
            "block {n} by the faulty node entered the chain"
        );
    }
    let log = std::fs::read_to_string(net.log_path(honest[0])).unwrap();
    assert!(log.contains("invalid proposal"), "honest node did not log the refusal");
    eprintln!(
        "{fault}: re-election at block {} after {} misses",
        re["first_block"], re["reason"]["ReElection"]["misses"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_with_wrong_state_root_gets_no_votes() {
    faulty_producer_is_refused("net-badroot", "bad-state-root").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_with_tx_from_nowhere_gets_no_votes() {
    faulty_producer_is_refused("net-foreign", "foreign-tx").await;
}

#[test]
fn hex_helper() {
    assert_eq!(hex_u64(&json!("0x10")), 16);
}

/// Every node serves Prometheus metrics (`[metrics] addr`, written by `metis-seq testnet`): the exposition parses,
/// the chain, consensus, pool and RPC metrics are there, and they move as the chain does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_exports_metrics_that_move_with_the_chain() {
    let _one = exclusive().await;
    let net = Testnet::new("net-metrics", NetOptions::default());
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 3, 60).await;
    // One RPC call so the RPC metrics have a sample.
    net.head(0).await.expect("head");
    use metis_testkit::scrape::{has, scrape};
    for i in 0..4 {
        let m = scrape(&net.metrics_url(i)).await;
        for name in metis_testkit::scrape::CHAIN_METRICS {
            assert!(has(&m, name), "node {i} does not export {name}");
        }
        assert_eq!(m["metis_validators"], 4.0, "node {i}");
        assert!(
            m.keys().any(|k| k.starts_with("metis_voting_power{sequencer=")),
            "node {i}: no per-sequencer power"
        );
    }
    let m0 = scrape(&net.metrics_url(0)).await;
    assert!(
        m0.keys()
            .any(|k| k.starts_with("metis_rpc_requests_total{method=\"eth_blockNumber\"}")),
        "no RPC request count by method"
    );
    let h0 = m0["metis_l2_head"];
    net.wait_height(&all, h0 as u64 + 3, 60).await;
    let m1 = scrape(&net.metrics_url(0)).await;
    assert!(
        m1["metis_l2_head"] >= h0 + 3.0,
        "the head metric did not move: {h0} -> {}",
        m1["metis_l2_head"]
    );
    assert!(m1["metis_consensus_height"] >= h0 + 3.0);
    // Malachite's registry and the process collector are on the same endpoint; peers are counted per transport.
    assert!(has(&m1, "malachitebft_core_consensus_height"), "no Malachite metrics");
    assert!(m1["process_resident_memory_bytes"] > 0.0, "no process metrics");
    metis_testkit::wait_for(20, "every peer counted on both transports", || async {
        let m = scrape(&net.metrics_url(0)).await;
        let peers = |t: &str| m.get(&format!("metis_peers{{transport=\"{t}\"}}")).copied();
        (peers("libp2p") == Some(3.0) && peers("gossip") == Some(3.0)).then_some(())
    })
    .await;
    // What wallets and explorers ask: the consensus peers.
    let count = net
        .call(0, "net_peerCount", serde_json::json!([]))
        .await
        .expect("net_peerCount");
    assert_eq!(count, serde_json::json!("0x3"), "net_peerCount");

    // Health and readiness, on the metrics port and on the RPC port (what a load balancer probes).
    let metrics_base = net.metrics_url(0).trim_end_matches("/metrics").to_string();
    for base in [metrics_base, net.rpc_url(0).to_string()] {
        let health = reqwest::get(format!("{base}/health")).await.expect("health");
        assert_eq!(health.status().as_u16(), 200, "{base}/health");
        let ready = reqwest::get(format!("{base}/ready")).await.expect("ready");
        assert_eq!(ready.status().as_u16(), 200, "{base}/ready");
        let body: serde_json::Value = ready.json().await.expect("ready body");
        assert_eq!(body["ready"], true, "{body}");
        assert_eq!(body["checks"]["consensus"], true, "{body}");
    }
}
