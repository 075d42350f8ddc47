//! The devnet at 250 ms blocks: the pace holds, block timestamps keep to the clock, transfers land on every
//! node, the producer rotates, a kill -9 of the producer fails over to the next sequencer, and the batches reach
//! L1 covering every transfer.

use crate::harness::{appended, kill_producer, serial, wait_for, Devnet, Failover};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .expect("clock")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_250_ms_devnet_keeps_its_pace_rotates_fails_over_and_posts_its_batches() {
    let _one = serial().await;
    let net = Devnet::start(
        "fast",
        9,
        &["--block-time", "250", "--epoch-length", "8", "--batch-blocks", "20"],
    )
    .await;
    assert_eq!(net.m["options"]["block_time_ms"], 250);
    let all = [0, 1, 2, 3];

    // The pace: about four blocks a second (at least two here, on a loaded 2-core machine), and block timestamps
    // stay with the clock (several blocks share a second) instead of running ahead by one per block.
    let (h0, t0) = (net.head(0).await.expect("head"), Instant::now());
    net.wait_height(&all, h0 + 40, 30).await;
    let rate = 40.0 / t0.elapsed().as_secs_f64();
    eprintln!("[e2e] 40 blocks at {rate:.1} blocks/s");
    assert!(rate >= 2.0, "{rate:.1} blocks/s at 250 ms blocks");
    let head = net.head(0).await.expect("head");
    let ts = net.block(0, head).await.expect("head block")["timestamp"]
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .expect("timestamp");
    let now = now_secs();
    assert!(
        ts <= now + 1 && ts + 5 >= now,
        "head {head} has timestamp {ts}, the clock says {now}"
    );

    // Transfers through each node: every node has each in the same block.
    let to: Address = "0x0000000000000000000000000000000000000250".parse().expect("address");
    let mut receipts = Vec::new();
    for i in 0..4 {
        receipts.push(net.transfer(i, i + 1, to, 7).await);
    }
    let top = receipts.iter().map(|(b, _)| *b).max().expect("blocks");
    net.wait_height(&all, top, 30).await;
    for (block, hash) in &receipts {
        for i in all {
            let b = net.block(i, *block).await.expect("block");
            assert_eq!(b["hash"], json!(hash), "node {i} block {block}");
        }
    }

    // Rotation: epochs of 8 blocks (2 s) elect producers by stake; over 15 epochs more than one produces.
    let from = net.head(0).await.expect("head");
    net.wait_height(&all, from + 120, 60).await;
    let mut producers = BTreeSet::new();
    for h in from..from + 120 {
        let b = net.block(0, h).await.expect("block");
        producers.insert(b["miner"].as_str().expect("miner").to_lowercase());
    }
    assert!(producers.len() >= 2, "one producer over 15 epochs: {producers:?}");

    // kill -9 of the producer: the next block comes from another sequencer, and the chain goes on.
    let Failover {
        victim,
        others,
        block: fallback,
        gap,
    } = kill_producer(&net).await;
    eprintln!("[e2e] kill -9 of node{victim} -> block {fallback} by another sequencer {gap:?} later");
    let (after, _) = net.transfer(others[0], 5, to, 7).await;
    net.wait_height(&others, after + 8, 30).await;
    net.assert_same_block(&others, after).await;
    let bal = net.l2_wallet(others[1], 0).get_balance(to).await.expect("balance");
    assert_eq!(
        bal,
        U256::from(35u64),
        "the four transfers before the kill and the one after"
    );

    // Batches reach L1, contiguous from 0, up to the transfer after the kill.
    let events = wait_for(120, "the batches covering the transfers on L1", || async {
        let ev = appended(&net).await;
        ev.last().is_some_and(|(_, _, last)| *last >= after).then_some(ev)
    })
    .await;
    for (k, (index, first, last)) in events.iter().enumerate() {
        assert_eq!(*index, k as u64, "{events:?}");
        assert!(first <= last, "{events:?}");
        if k > 0 {
            assert_eq!(*first, events[k - 1].2 + 1, "batches leave no gap: {events:?}");
        }
    }
    eprintln!(
        "[e2e] {} batches on L1 up to block {}",
        events.len(),
        events.last().map_or(0, |e| e.2)
    );
}
