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
