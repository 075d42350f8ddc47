//! Users' transactions on every node, an ERC20 deployed and used, the producer rotating by stake; and a second
//! devnet (one node) running beside the first and stopped by `devnet stop`.

use crate::harness::{alive, port_free, serial, wait_for, Devnet};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use metis_contracts::MetisToken;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread")]
async fn transfers_and_an_erc20_reach_every_node_and_the_producer_rotates_by_stake() {
    let _one = serial().await;
    // Epochs of 2 blocks: many elections in a minute.
    let net = Devnet::start(
        "chain",
        0,
        // Stakes 5:1 apart, so the weighting shows in 40 elections (no node is stopped here); twice the default
        // gas limit.
        &[
            "--epoch-length",
            "2",
            "--stakes",
            "100000,70000,40000,20000",
            "--gas-limit",
            "60000000",
        ],
    )
    .await;
    let n = net.nodes().len();
    assert_eq!(n, 4);
    let m = &net.m;
    for key in ["rpc", "chain_id"] {
        assert!(!m["l1"][key].is_null(), "manifest l1.{key}");
    }
    assert_eq!(m["l2"]["chain_id"], 59902);
    assert_eq!(m["options"]["gas_limit"], 60_000_000);
    let head = net
        .block(0, net.head(0).await.expect("head"))
        .await
        .expect("head block");
    assert_eq!(head["gasLimit"], "0x3938700", "the devnet's --gas-limit is the chain's");
    for key in ["token", "locking_pool", "locking_info", "batch_inbox"] {
        assert!(m["contracts"][key].as_str().is_some_and(|a| a.len() == 42), "{key}");
    }
    for key in ["public_key", "address"] {
        assert!(m["group_key"][key].is_string(), "group_key.{key}");
    }
    for node in net.nodes() {
        for key in ["name", "rpc", "ws", "api", "p2p", "data_dir", "pid", "signer"] {
            assert!(!node[key].is_null(), "node field {key}: {node}");
        }
    }
    // The group key the manifest names is the one LockingPool has.
    let pool = metis_contracts::LockingPool::new(net.contract("locking_pool"), net.l1());
    let mpc = pool.mpcAddress().call().await.expect("mpcAddress");
    assert_eq!(json!(mpc.to_string()), m["group_key"]["address"]);

    // 1. Transfers through each node, from four accounts: every node has each in the same block.
    let to: Address = "0x000000000000000000000000000000000000bEEF".parse().expect("address");
    let mut landed = Vec::new();
    for i in 0..n {
        landed.push(net.transfer(i, i + 1, to, 1_000 + i as u64).await);
    }
    let top = landed.iter().map(|(b, _)| *b).max().expect("blocks");
    net.wait_height(&[0, 1, 2, 3], top, 30).await;
    for (block, hash) in &landed {
        for i in 0..n {
            let b = net.block(i, *block).await.expect("block");
            assert_eq!(b["hash"], json!(hash), "node {i} block {block}");
        }
    }
    for i in 0..n {
        let bal = net.l2_wallet(i, 0).get_balance(to).await.expect("balance");
        assert_eq!(
            bal,
            U256::from(1_000 + 1_001 + 1_002 + 1_003),
            "balance seen by node {i}"
        );
    }

    // 2. An ERC20 (the METIS token contract, deployed on L2 by a user): mint, transfer, balances and the
    //    Transfer log read through other nodes.
    let owner = net.account(5).address();
    let erc20 = MetisToken::deploy(net.l2_wallet(1, 5), owner)
        .await
        .expect("deploy ERC20 on L2");
    let token = *erc20.address();
    let holder: Address = "0x00000000000000000000000000000000000C0FFE".parse().expect("address");
    let r = erc20
        .mint(owner, U256::from(1_000_000u64))
        .send()
        .await
        .expect("mint")
        .get_receipt()
        .await
        .expect("mint receipt");
    assert!(r.status());
    let on2 = MetisToken::new(token, net.l2_wallet(2, 5));
    let r = on2
        .transfer(holder, U256::from(250_000u64))
        .send()
        .await
        .expect("transfer")
        .get_receipt()
        .await
        .expect("transfer receipt");
    assert!(r.status());
    let at = r.block_number.expect("block");
    net.wait_height(&[0, 1, 2, 3], at, 30).await;
    for i in 0..n {
        let t = MetisToken::new(token, net.l2_wallet(i, 0));
        assert_eq!(
            t.balanceOf(holder).call().await.expect("balanceOf"),
            U256::from(250_000u64)
        );
        assert_eq!(
            t.balanceOf(owner).call().await.expect("balanceOf"),
            U256::from(750_000u64)
        );
        assert_eq!(
            t.totalSupply().call().await.expect("totalSupply"),
            U256::from(1_000_000u64)
        );
    }
    let logs = net
        .call(
            3,
            "eth_getLogs",
            json!([{"fromBlock": format!("{at:#x}"), "toBlock": format!("{at:#x}"), "address": token}]),
        )
        .await
        .expect("logs");
    let logs = logs.as_array().expect("array");
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(
        logs[0]["topics"][0],
        json!(MetisToken::Transfer::SIGNATURE_HASH),
        "a Transfer event"
    );

    // 3. A second devnet of one node beside the first: its own directory, ports, L1 and chain.
    let small = Devnet::start("single", 1, &["--nodes", "1"]).await;
    assert_eq!(small.nodes().len(), 1);
    assert_ne!(small.l1_rpc(), net.l1_rpc());
    let (b, _) = small.transfer(0, 1, to, 7).await;
    assert!(b >= 1);
    let bal = small.l2_wallet(0, 0).get_balance(to).await.expect("balance");
    assert_eq!(bal, U256::from(7u64), "the second devnet has its own state");
    let h0 = small.head(0).await.expect("head");
    small.wait_height(&[0], h0 + 2, 20).await;
    // Its sequencer signs alone (quorum 1 of 1): the group key is on its L1.
    assert!(small.m["group_key"]["address"].is_string());
    let mut small = small;
    let pids = small.pids();
    assert_eq!(pids.len(), 2);
    let status = small.stop();
    assert!(status.success(), "the supervisor exits cleanly: {status}");
    for p in &pids {
        assert!(!alive(*p), "process {p} outlived `devnet stop`");
    }
    assert!(port_free(small.l1_port), "L1 port still taken");
    for k in 0..3 {
        assert!(port_free(small.base_port + k), "L2 port still taken");
    }
    assert_eq!(small.reload()["state"], "stopped");
    drop(small);

    // 4. Rotation: over 40 ended epochs, each epoch's blocks are proposed by its elected producer (no faults
    //    here), and the elections follow stake (100k, 70k, 40k, 20k).
    let epochs: Vec<Value> = wait_for(150, "40 ended epochs", || async {
        let v = net.call(0, "metis_epochs", json!([0, 1000])).await.ok()?;
        let ended: Vec<Value> = v.as_array()?.iter().filter(|e| e["ended"] == true).cloned().collect();
        (ended.len() > 40).then_some(ended)
    })
    .await;
    let stakes: BTreeMap<String, u64> = net
        .nodes()
        .iter()
        .map(|n| {
            (
                n["signer"].as_str().expect("signer").to_lowercase(),
                n["stake"].as_u64().expect("stake"),
            )
        })
        .collect();
    let mut count: BTreeMap<u64, u64> = BTreeMap::new();
    // Epoch 0 is the genesis election: from it on, count the seeded elections.
    for e in epochs.iter().skip(1).take(40) {
        assert_eq!(e["reason"], "Scheduled", "{e}");
        let signer = e["producer_signer"].as_str().expect("signer").to_lowercase();
        let stake = stakes[&signer];
        *count.entry(stake).or_default() += 1;
        let (first, last) = (
            e["first_block"].as_u64().expect("first"),
            e["last_block"].as_u64().expect("last"),
        );
        for h in first..=last {
            let b = net.block(0, h).await.expect("block");
            assert_eq!(
                b["miner"].as_str().expect("miner").to_lowercase(),
                signer,
                "block {h} of epoch {} was not proposed by its producer",
                e["id"]
            );
        }
    }
    let total: u64 = stakes.values().sum();
    let chi2: f64 = stakes
        .values()
        .map(|s| {
            let expected = 40.0 * *s as f64 / total as f64;
            let seen = *count.get(s).unwrap_or(&0) as f64;
            (seen - expected).powi(2) / expected
        })
        .sum();
    eprintln!("[e2e] elections per stake over 40 epochs: {count:?}, chi-square {chi2:.2}");
    // df = 3: 25.9 is p = 1e-5, so an honest sampler fails this once in 100,000 runs.
    assert!(
        chi2 < 25.9,
        "elections do not follow stake: {count:?} (chi-square {chi2:.1})"
    );
    assert!(
        count.get(&100_000).unwrap_or(&0) > count.get(&20_000).unwrap_or(&0),
        "the largest stake was elected less often than the smallest: {count:?}"
    );
    // The chain is one chain: the four nodes agree at the last counted epoch's end.
    let last = epochs[40]["last_block"].as_u64().expect("last");
    net.assert_same_block(&[0, 1, 2, 3], last).await;
}
