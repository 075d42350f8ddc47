//! RPC nodes: an unstaked `metis-seq node` with `role = "rpc"` beside four sequencers. It follows the decided
//! chain over libp2p without voting, re-executes every block (same hashes, so same state roots), forwards what
//! its users send over its follower links, and keeps within a block of the sequencers.

use super::{exclusive, send_transfers, wait_receipts};
use crate::common::testnet::{NetOptions, Testnet};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_node_follows_forwards_and_keeps_within_a_block() {
    let _one = exclusive().await;
    let opts = NetOptions {
        rpc_nodes: 1,
        ..NetOptions::default()
    };
    let net = Testnet::new("net-rpc-node", opts);
    let rpc = 4usize;
    let all = [0usize, 1, 2, 3, 4];
    net.wait_height(&all, 3, 60).await;

    // Sent only to the RPC node: it answers the hash at once and knows its own pending transactions.
    let hashes = send_transfers(&net, rpc, 0, 0, 5).await;
    let pending = net
        .call(rpc, "eth_getTransactionByHash", json!([hashes[4]]))
        .await
        .expect("eth_getTransactionByHash");
    assert_eq!(
        pending["hash"], hashes[4],
        "the RPC node does not know what it just took: {pending}"
    );
    wait_receipts(&net, &all, &hashes, 30).await;

    // Within a block: the sequencers' head, then the RPC node's, every 50 ms for 10 s.
    let t0 = Instant::now();
    let mut worst = 0u64;
    let mut samples = 0u32;
    while t0.elapsed() < Duration::from_secs(10) {
        let ahead = net.head(0).await.expect("node 0 answers");
        let follower = net.head(rpc).await.expect("the RPC node answers");
        worst = worst.max(ahead.saturating_sub(follower));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("RPC node: at most {worst} block(s) behind node 0 over {samples} samples");
    assert!(worst <= 1, "the RPC node fell {worst} blocks behind");

    // It never signs: no commit carries a fifth signer.
    let head = net.head(0).await.expect("head");
    for h in 1..=head {
        let c = net.call(1, "metis_commit", json!([h])).await.expect("metis_commit");
        assert!(c["signers"].as_array().is_some_and(|s| s.len() <= 4), "{c}");
    }
    net.assert_same_chain(&all, head).await;
}

/// A follower (any key: the sequencers' `[followers] open = true`) sends node 0 10,000 signed transactions from
/// an account with nothing in it. Node 0 reads it at its rate (500 a second: throttled), takes the first 100
/// refusals of its minute, then cuts the link and refuses the key; the pool keeps its pace meanwhile, the
/// mempool holds none of them, and the same key is refused on its next link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sending_invalid_transactions_is_throttled_then_dropped() {
    let _one = exclusive().await;
    let opts = NetOptions::default();
    let block_time_ms = opts.block_time_ms as f64;
    let net = Testnet::generate("net-bad-follower", opts);
    for i in 0..4 {
        net.set_config(i, "open", "true");
    }
    let mut net = net;
    for i in 0..4 {
        net.start(i, None);
    }
    let all = [0usize, 1, 2, 3];
    net.wait_height(&all, 3, 60).await;

    let broke = alloy::signers::local::PrivateKeySigner::random();
    let txs: Vec<Vec<u8>> = (0..10_000)
        .map(|n| alloy::hex::decode(crate::common::transfer(&broke, n)).expect("hex"))
        .collect();
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let addr: std::net::SocketAddr = net.gossip_addr(0).parse().expect("address");
    let chain_id = metis_testkit::testnet::CHAIN_ID;
    let mut link = metis_net::FollowerLink::connect(addr, &key, chain_id)
        .await
        .expect("a follower may link to an open sequencer");
    let sent = Instant::now();
    let attack = tokio::spawn(async move {
        // The writes block while node 0 throttles the link, and fail once it is cut.
        let _ = link.send_txs(&txs).await;
        tokio::time::timeout(Duration::from_secs(60), link.closed())
            .await
            .ok()
            .map(|_| sent.elapsed())
    });

    let mut seen: Vec<(u64, Instant)> = Vec::new();
    while sent.elapsed() < Duration::from_secs(15) {
        let head = net.head(1).await.expect("node 1 answers");
        if seen.last().is_none_or(|(h, _)| head > *h) {
            seen.push((head, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let closed = tokio::time::timeout(Duration::from_secs(60), attack)
        .await
        .expect("the attack ends")
        .expect("the attack task");
    let dropped_after = closed.expect("node 0 never cut the follower's link");
    let log = std::fs::read_to_string(net.log_path(0)).expect("node 0 log");
    assert!(
        log.contains("throttling a follower"),
        "node 0 never throttled the follower"
    );
    assert!(log.contains("dropping a follower"), "node 0 never dropped the follower");
    let (p50, p99) = super::hostile::interval_percentiles(&seen);
    eprintln!(
        "bad follower: dropped within {dropped_after:.1?}; {} heights in 15 s, interval p50 {p50:.0} ms, p99 {p99:.0} ms",
        seen.len()
    );
    assert!(p50 < 1.25 * block_time_ms, "the pool lost its pace: p50 {p50:.0} ms");
    assert!(seen.len() >= 11, "only {} heights in 15 s", seen.len());

    // None of them is pending anywhere, and the key is refused on its next link.
    let first = alloy::primitives::keccak256(alloy::hex::decode(crate::common::transfer(&broke, 0)).expect("hex"));
    for i in all {
        let t = net
            .call(i, "eth_getTransactionByHash", json!([first]))
            .await
            .expect("eth_getTransactionByHash");
        assert!(t.is_null(), "node {i} holds a refused transaction: {t}");
    }
    let mut again = metis_net::FollowerLink::connect(addr, &key, chain_id)
        .await
        .expect("the handshake itself completes");
    tokio::time::timeout(Duration::from_secs(5), again.closed())
        .await
        .expect("a dropped follower's next link is closed at once");
    // Honest traffic is unaffected.
    let hashes = send_transfers(&net, 0, 0, 0, 2).await;
    wait_receipts(&net, &all, &hashes, 30).await;
}
