//! What lands on L1: the pool's batches (every user transaction in one), reward reports, and a replica that
//! rebuilds the chain from L1 alone. And the whole devnet stopped and started again, its state kept.

use crate::harness::{alive, appended, port_free, serial, tempdir, wait_for, ChildGuard, Devnet, BIN};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use metis_contracts::{BatchInbox, LockingPool};
use serde_json::{json, Value};
use std::process::Command;

fn header_from(v: &Value) -> BatchInbox::BatchHeader {
    let b256 = |k: &str| -> B256 {
        v[k].as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {v}"))
    };
    let u64_of = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    BatchInbox::BatchHeader {
        index: u64_of("index"),
        l2FirstBlock: u64_of("l2FirstBlock"),
        l2LastBlock: u64_of("l2LastBlock"),
        parentHash: b256("parentHash"),
        txRoot: b256("txRoot"),
        stateRoot: b256("stateRoot"),
        payloadHash: b256("payloadHash"),
        blobHashes: v["blobHashes"]
            .as_array()
            .map(|a| a.iter().filter_map(|h| h.as_str()?.parse().ok()).collect())
            .unwrap_or_default(),
    }
}

async fn next_index(net: &Devnet) -> u64 {
    let inbox = BatchInbox::new(net.contract("batch_inbox"), net.l1());
    inbox.nextIndex().call().await.expect("nextIndex")
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_and_rewards_land_on_l1_and_a_replica_rebuilds_the_chain() {
    let _one = serial().await;
    let net = Devnet::start(
        "anchor",
        4,
        &["--batch-blocks", "5", "--epoch-length", "5", "--reward-epochs", "2"],
    )
    .await;
    let to: Address = "0x000000000000000000000000000000000000A11C".parse().expect("address");
    let mut txs = Vec::new();
    for k in 0..4 {
        txs.push(net.transfer(k, k + 1, to, 5).await);
    }
    let last_tx_block = txs.iter().map(|(b, _)| *b).max().expect("blocks");

    // Batches up to the transfers on L1, contiguous from 0, each covering the blocks after the previous one.
    let events = wait_for(120, "the batches covering the transfers on L1", || async {
        let ev = appended(&net).await;
        ev.last()
            .is_some_and(|(_, _, last)| *last >= last_tx_block)
            .then_some(ev)
    })
    .await;
    for (k, (index, first, last)) in events.iter().enumerate() {
        assert_eq!(*index, k as u64, "{events:?}");
        assert!(first <= last);
        if k > 0 {
            assert_eq!(*first, events[k - 1].2 + 1, "batches leave no gap: {events:?}");
        }
    }
    // Every transfer is provably in its batch: the pool's inclusion proof checks in BatchInbox on L1.
    let inbox = BatchInbox::new(net.contract("batch_inbox"), net.l1());
    for (block, _) in &txs {
        let b = net
            .call(0, "eth_getBlockByNumber", json!([format!("{block:#x}"), false]))
            .await
            .expect("block");
        let hash = b["transactions"][0].as_str().expect("tx").to_string();
        let p = net
            .call(0, "metis_getTxBatchProof", json!([hash]))
            .await
            .expect("proof");
        let ok = inbox
            .verifyTx(
                header_from(&p["batch"]),
                p["blockNumber"].as_u64().expect("block number"),
                p["txIndex"].as_u64().expect("tx index") as u32,
                hash.parse().expect("hash"),
                p["proof"]
                    .as_array()
                    .expect("proof")
                    .iter()
                    .map(|n| n.as_str().expect("node").parse().expect("node"))
                    .collect(),
            )
            .call()
            .await
            .expect("verifyTx");
        assert!(ok, "BatchInbox does not verify the transfer in block {block}: {p}");
    }

    // A reward report lands too: LockingPool credits rewards to the sequencers that produced.
    let pool = LockingPool::new(net.contract("locking_pool"), net.l1());
    wait_for(120, "a reward report on L1", || async {
        (pool.lastRewardBatchId().call().await.ok()? >= U256::from(1)).then_some(())
    })
    .await;

    // A replica from L1 alone reaches the nodes' state at the last batch it replays.
    let work = tempdir("anchor-replica");
    let rport = net.base_port + 90;
    let mut cmd = Command::new(BIN);
    cmd.args(["replica", "--l1-rpc", &net.l1_rpc(), "--genesis"])
        .arg(net.m["l2"]["genesis"].as_str().expect("genesis"))
        .arg("--data-dir")
        .arg(work.join("data"))
        .args([
            "--rpc-addr",
            &format!("127.0.0.1:{rport}"),
            "--confirmations",
            "1",
            "--poll-ms",
            "200",
        ])
        .env("RUST_LOG", "info");
    let replica = ChildGuard::spawn(cmd, &work.join("replica.log"));
    let url = format!("http://127.0.0.1:{rport}");
    let posted = next_index(&net).await;
    let st: Value = wait_for(120, "the replica to replay the posted batches", || async {
        let s = net.call_url(&url, "metis_replica", json!([])).await.ok()?;
        assert!(s["error"].is_null(), "replica stopped: {s}\n{}", replica.log_tail(20));
        (s["next_index"].as_u64()? >= posted).then_some(s)
    })
    .await;
    let head = st["head"].as_u64().expect("head");
    assert!(head >= last_tx_block);
    let ours = net.block(1, head).await.expect("block");
    let theirs = net
        .call_url(&url, "eth_getBlockByNumber", json!([format!("{head:#x}"), false]))
        .await
        .expect("replica block");
    assert_eq!(theirs["stateRoot"], ours["stateRoot"], "replica state root at {head}");
    assert_eq!(theirs["hash"], ours["hash"], "replica block hash at {head}");
    let bal = net
        .call_url(&url, "eth_getBalance", json!([to, "latest"]))
        .await
        .expect("balance");
    assert_eq!(bal, json!("0x14"), "the replica has the transfers");
    drop(replica);
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_devnet_stops_and_restarts_with_its_state() {
    let _one = serial().await;
    let mut net = Devnet::start("restart", 5, &["--batch-blocks", "5"]).await;
    let to: Address = "0x0000000000000000000000000000000000005AFE".parse().expect("address");
    let (b1, h1) = net.transfer(0, 1, to, 123).await;
    net.wait_height(&[0, 1, 2, 3], b1, 30).await;
    let group_key = net.m["group_key"].clone();
    let batches = wait_for(60, "a batch on L1", || async {
        let n = next_index(&net).await;
        (n >= 1).then_some(n)
    })
    .await;

    // Stop: every process gone, every port free, the manifest says so.
    let pids = net.pids();
    assert_eq!(pids.len(), 5);
    let sup = net.supervisor_pid().expect("supervisor");
    let stopped_head = net.head(0).await.expect("head");
    let status = net.stop();
    assert!(status.success(), "supervisor exit: {status}");
    assert!(!alive(sup));
    for p in &pids {
        assert!(!alive(*p), "process {p} outlived `devnet stop`");
    }
    assert!(port_free(net.l1_port));
    for i in 0..4u16 {
        for k in 0..3 {
            assert!(
                port_free(net.base_port + 10 * i + k),
                "port {} still taken",
                net.base_port + 10 * i + k
            );
        }
    }
    assert_eq!(net.reload()["state"], "stopped");

    // Start again on the same directory: same chain, same L1, same key, and it goes on.
    net.launch().await;
    assert_eq!(net.m["group_key"], group_key, "the group key is kept");
    let b = net.block(2, b1).await.expect("block kept");
    assert_eq!(b["hash"], json!(h1), "the block with the transfer is kept");
    net.wait_height(&[0, 1, 2, 3], stopped_head + 2, 30).await;
    let bal = net.l2_wallet(3, 0).get_balance(to).await.expect("balance");
    assert_eq!(bal, U256::from(123u64), "the state is kept");
    assert!(next_index(&net).await >= batches, "L1 kept its batches");
    // New transactions and new batches after the restart (the nonce of account 1 continues).
    let (b2, _) = net.transfer(1, 1, to, 1).await;
    assert!(b2 > stopped_head);
    wait_for(90, "a batch after the restart covering the new transfer", || async {
        let ev = appended(&net).await;
        ev.last().is_some_and(|(_, _, last)| *last >= b2).then_some(())
    })
    .await;
    let bal = net.l2_wallet(0, 0).get_balance(to).await.expect("balance");
    assert_eq!(bal, U256::from(124u64));
}
