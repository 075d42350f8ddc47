//! The devnet's RPC node, used as users use it: transfers and an ERC20 sent only to it, the producer killed
//! while it forwards, and the RPC node itself killed and started again from an empty data dir.

use crate::harness::{alive, kill, serial, wait_for, ChildGuard, Devnet, BIN};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use metis_contracts::MetisToken;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The block number and hash `url` has at `n`.
async fn hash_at(net: &Devnet, url: &str, n: u64) -> Option<String> {
    let b = net
        .call_url(url, "eth_getBlockByNumber", json!([format!("{n:#x}"), false]))
        .await
        .ok()?;
    b["hash"].as_str().map(str::to_string)
}

async fn head_of(net: &Devnet, url: &str) -> Option<u64> {
    let v = net.call_url(url, "eth_blockNumber", json!([])).await.ok()?;
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// Waits until `url` has block `n` and it is the one every sequencer but `down` has.
async fn assert_same_as_sequencers(net: &Devnet, url: &str, n: u64, down: Option<usize>) {
    let mine = wait_for(30, &format!("block {n} on {url}"), || hash_at(net, url, n)).await;
    for i in (0..net.nodes().len()).filter(|i| Some(*i) != down) {
        let theirs_url = net.rpc(i);
        let theirs = wait_for(30, &format!("block {n} on node {i}"), || hash_at(net, &theirs_url, n)).await;
        assert_eq!(mine, theirs, "block {n}: the RPC node and node {i} differ");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rpc_node_serves_users_loses_nothing_to_kills_and_catches_up_from_scratch() {
    let _one = serial().await;
    // Long epochs: the producer stays the same until it is killed.
    let net = Devnet::start("rpc-node", 8, &["--rpc-nodes", "1", "--epoch-length", "1000"]).await;
    let url = net.rpc_node(0);
    let entry = net.m["rpc_nodes"][0].clone();
    for key in [
        "name",
        "rpc",
        "ws",
        "p2p",
        "metrics",
        "dashboard",
        "data_dir",
        "config",
        "log",
        "pid",
    ] {
        assert!(!entry[key].is_null(), "rpc_nodes[0].{key}: {entry}");
    }
    let out = net.output_tail(200);
    let first_url = out
        .find(&format!("L2 RPC     {url}"))
        .expect("the summary names the RPC node");
    assert!(
        out.find("manifest   ").is_some_and(|m| first_url < m),
        "the RPC node's URL comes first in the summary:\n{out}"
    );

    // 1. A transfer and an ERC20, through the RPC node only.
    let to: Address = "0x000000000000000000000000000000000000bEEF".parse().expect("address");
    let w = net.wallet_at(&url, 1);
    let r = w
        .send_transaction(
            alloy::rpc::types::TransactionRequest::default()
                .to(to)
                .value(U256::from(1234u64)),
        )
        .await
        .expect("send through the RPC node")
        .with_timeout(Some(Duration::from_secs(30)))
        .get_receipt()
        .await
        .expect("receipt from the RPC node");
    assert!(r.status());
    assert_same_as_sequencers(&net, &url, r.block_number.expect("block"), None).await;
    let owner = net.account(5).address();
    let erc20 = MetisToken::deploy(net.wallet_at(&url, 5), owner)
        .await
        .expect("deploy the ERC20 through the RPC node");
    let holder: Address = "0x00000000000000000000000000000000000C0FFE".parse().expect("address");
    let mint = erc20
        .mint(owner, U256::from(1_000_000u64))
        .send()
        .await
        .expect("mint")
        .get_receipt()
        .await
        .expect("mint receipt");
    assert!(mint.status());
    let sent = erc20
        .transfer(holder, U256::from(400_000u64))
        .send()
        .await
        .expect("token transfer")
        .get_receipt()
        .await
        .expect("token transfer receipt");
    assert!(sent.status());
    let at = sent.block_number.expect("block");
    assert_same_as_sequencers(&net, &url, at, None).await;
    let on_seq = MetisToken::new(*erc20.address(), net.l2_wallet(2, 0));
    assert_eq!(
        on_seq.balanceOf(holder).call().await.expect("balanceOf on node 2"),
        U256::from(400_000u64)
    );

    // 2. Within a block of the sequencers, sampled for 5 s.
    let t0 = Instant::now();
    let mut worst = 0u64;
    while t0.elapsed() < Duration::from_secs(5) {
        let seq = net.head(0).await.expect("node 0 head");
        let rpc = head_of(&net, &url).await.expect("RPC node head");
        worst = worst.max(seq.saturating_sub(rpc));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("[e2e] the RPC node was at most {worst} block(s) behind node 0");
    assert!(worst <= 1, "the RPC node fell {worst} blocks behind");

    // 3. kill -9 of the producer while the RPC node forwards: every transaction it accepted lands.
    let (victim, _, pid) = net.producer().await;
    let key = net.account(2);
    let mut hashes = Vec::new();
    for nonce in 0..10u64 {
        if nonce == 5 {
            kill(pid, libc::SIGKILL);
            wait_for(10, "the producer to be gone", || async { (!alive(pid)).then_some(()) }).await;
        }
        let raw = metis_testkit::dev::transfer(&key, nonce);
        let h = net
            .call_url(&url, "eth_sendRawTransaction", json!([raw]))
            .await
            .expect("the RPC node takes the transfer");
        hashes.push(h.as_str().expect("hash").to_string());
    }
    let mut last = 0;
    for h in &hashes {
        let r: Value = wait_for(60, &format!("receipt of {h} on the RPC node"), || async {
            let r = net.call_url(&url, "eth_getTransactionReceipt", json!([h])).await.ok()?;
            (!r.is_null()).then_some(r)
        })
        .await;
        assert_eq!(r["status"], "0x1");
        last = last
            .max(u64::from_str_radix(r["blockNumber"].as_str().expect("n").trim_start_matches("0x"), 16).expect("n"));
    }
    assert_same_as_sequencers(&net, &url, last, Some(victim)).await;

    // 4. The RPC node killed, its data dir removed, started again: it catches up from the sequencers, with the
    //    state of every block (the balance at the first transfer's block answers as before).
    let before = net
        .call_url(
            &url,
            "eth_getBalance",
            json!([format!("{to:?}"), format!("{:#x}", r.block_number.expect("n"))]),
        )
        .await
        .expect("balance at an old block");
    let rpc_pid = net.m["rpc_nodes"][0]["pid"].as_u64().expect("rpc node pid") as u32;
    kill(rpc_pid, libc::SIGKILL);
    wait_for(10, "the RPC node to be gone", || async {
        (!alive(rpc_pid)).then_some(())
    })
    .await;
    let data_dir = entry["data_dir"].as_str().expect("data_dir");
    std::fs::remove_dir_all(data_dir).expect("removing the RPC node's data dir");
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("node")
        .arg("--config")
        .arg(entry["config"].as_str().expect("config"))
        .arg("--passphrase-file")
        .arg(net.dir.join("l2/passphrase"));
    let log = net.dir.join("logs/rpc0-again.log");
    let _again = ChildGuard::spawn(cmd, &log);
    let t0 = Instant::now();
    let live = (0..net.nodes().len()).find(|i| *i != victim).expect("a live sequencer");
    let target = net.head(live).await.expect("a live sequencer's head");
    wait_for(120, "the restarted RPC node to catch up", || async {
        (head_of(&net, &url).await? >= target).then_some(())
    })
    .await;
    eprintln!(
        "[e2e] the RPC node caught up {target} blocks from scratch in {:.1?}",
        t0.elapsed()
    );
    assert_same_as_sequencers(&net, &url, target, Some(victim)).await;
    let after = net
        .call_url(
            &url,
            "eth_getBalance",
            json!([format!("{to:?}"), format!("{:#x}", r.block_number.expect("n"))]),
        )
        .await
        .expect("balance at an old block after the rebuild");
    assert_eq!(before, after);
}
