//! kill -9 of the sequencer producing right now: the others decide the next block by a fallback proposer at
//! once, re-elect after the missed-proposal limit, and lose no transaction that had a receipt.

use crate::harness::{alive, kill_producer, serial, wait_for, Devnet, Failover};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_producer_fails_over_and_re_elects_without_losing_transactions() {
    let _one = serial().await;
    // Long epochs: the re-election comes from the misses, not from the schedule.
    let mut net = Devnet::start("failover", 2, &["--epoch-length", "1000"]).await;
    let to: Address = "0x000000000000000000000000000000000000F00D".parse().expect("address");
    let mut receipts = Vec::new();
    for k in 0..3 {
        receipts.push(net.transfer(k, k + 1, to, 10).await);
    }

    // The producer of the current epoch, from the PoS API, and its process, from the manifest.
    let epoch = net
        .call(0, "metis_currentEpoch", json!([]))
        .await
        .expect("current epoch");
    let Failover {
        victim,
        others,
        block: fallback_block,
        gap,
    } = kill_producer(&net).await;
    eprintln!("[e2e] kill -9 of node{victim} (the producer) -> block {fallback_block} by a fallback proposer, seen {gap:?} later");

    // The re-election: the epoch ends early, the failed producer named and not re-elected.
    let re = wait_for(60, "a re-election after the missed limit", || async {
        let v = net.call(others[0], "metis_epochs", json!([0, 1000])).await.ok()?;
        v.as_array()?
            .iter()
            .find(|e| !e["reason"]["ReElection"].is_null())
            .cloned()
    })
    .await;
    let failed = re["reason"]["ReElection"]["failed"].clone();
    assert_eq!(failed, epoch["producer"], "{re}");
    assert_ne!(
        re["producer"], epoch["producer"],
        "the failed producer re-elected: {re}"
    );
    eprintln!("[e2e] re-election: {re}");
    // The new producer proposes the new epoch's blocks.
    let first = re["first_block"].as_u64().expect("first block");
    net.wait_height(&others, first + 2, 30).await;
    let new_signer = re["producer_signer"].as_str().expect("signer").to_lowercase();
    let b = net.block(others[0], first + 1).await.expect("block");
    assert_eq!(b["miner"].as_str().expect("miner").to_lowercase(), new_signer);

    // Nothing with a receipt was lost, a new transaction lands, and the three agree.
    for (block, hash) in &receipts {
        for i in &others {
            let b = net.block(*i, *block).await.expect("block");
            assert_eq!(b["hash"], json!(hash), "node {i} block {block}");
        }
    }
    let (after, _) = net.transfer(others[1], 4, to, 10).await;
    net.wait_height(&others, after, 30).await;
    net.assert_same_block(&others, after).await;
    let bal = net.l2_wallet(others[2], 0).get_balance(to).await.expect("balance");
    assert_eq!(bal, U256::from(40u64));

    // The devnet noticed and carried on: its supervisor runs, the manifest shows the node down.
    let sup = net.supervisor_pid().expect("supervisor");
    assert!(alive(sup));
    wait_for(10, "the manifest to show the node down", || {
        let down = net.reload()["nodes"][victim]["pid"].is_null();
        async move { down.then_some(()) }
    })
    .await;
}
