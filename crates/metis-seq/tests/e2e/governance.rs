//! The stake governs the pool (issue 18's acceptance), driven through `metis-seq gov`, L1 reads and the nodes' API
//! only: after the devnet's hand-over the deployer key can change nothing; a proposal that raises maxLock and
//! lengthens epochs passes with three of four owners, waits out the timelock and takes effect on L1 and, at one
//! epoch boundary, on every node; a proposal only one small owner supports ends Defeated and takes no late vote.

use crate::harness::{gov, gov_propose, gov_state, serial, wait_for, wait_gov_state, Devnet};
use alloy::primitives::{utils::parse_ether, Address, U256};
use metis_contracts::{LockingInfo, LockingPool, MetisGovernor};
use serde_json::{json, Value};

/// The governance entry in every sequencer's ledger once it has the change, as (epoch, from_block, L1 tx).
async fn applied_everywhere(net: &Devnet, param: &str) -> Option<Vec<(u64, u64, String)>> {
    let mut out = Vec::new();
    for i in 0..net.nodes().len() {
        let g = net.call(i, "metis_governance", json!([])).await.ok()?;
        let c = g["history"]
            .as_array()?
            .iter()
            .find(|c| c["param"] == param && c["ignored"].is_null())?
            .clone();
        out.push((
            c["epoch"].as_u64()?,
            c["from_block"].as_u64()?,
            c["l1_tx_hash"].as_str()?.to_string(),
        ));
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stake_governs_the_pool_by_vote_and_the_deployer_key_is_powerless() {
    let _one = serial().await;
    let net = Devnet::start("gov", 11, &["--epoch-length", "10", "--gov-timelock-delay", "10"]).await;
    let l1 = net.l1();
    let deployer = net.deployer();

    // 1. The hand-over: the timelock owns the contracts; the deployer's owner calls revert (simulated from its
    //    address, and refused by the CLI the operator would use).
    let timelock = net.contract("timelock");
    let pool = LockingPool::new(net.contract("locking_pool"), l1.clone());
    let info = LockingInfo::new(net.contract("locking_info"), l1.clone());
    assert_eq!(pool.owner().call().await.expect("owner"), timelock);
    assert_eq!(info.owner().call().await.expect("owner"), timelock);
    assert!(pool
        .setWhitelist(Address::repeat_byte(7), true)
        .from(deployer.address())
        .call()
        .await
        .is_err());
    assert!(info
        .setMaxLock(U256::MAX)
        .from(deployer.address())
        .call()
        .await
        .is_err());
    let refused = metis_testkit::devnet::try_cli(
        &[
            "l1",
            "whitelist",
            "--l1-rpc",
            &net.l1_rpc(),
            "--locking-pool",
            &net.contract("locking_pool").to_string(),
            "--user",
            &Address::repeat_byte(7).to_string(),
        ],
        &[
            (
                "METIS_L1_PRIVATE_KEY",
                &format!("0x{}", alloy::hex::encode(deployer.to_bytes())),
            ),
            ("RUST_LOG", "warn"),
        ],
    );
    assert!(refused.is_err(), "the deployer key still whitelists");
    assert!(!pool.whitelist(Address::repeat_byte(7)).call().await.expect("whitelist"));

    // Malformed input is refused before anything is sent.
    let e = gov(
        &net,
        0,
        &["propose", "--param", "epoch_length=1", "--description", "too short"],
    )
    .unwrap_err();
    assert!(e.contains("within 2..=100000"), "{e}");
    let e = gov(&net, 0, &["vote", "not-an-id", "for"]).unwrap_err();
    assert!(e.contains("not a proposal id"), "{e}");

    // 2. Two proposals: A raises maxLock and lengthens epochs to 20 blocks; B, which only node3 (50,000 of the
    //    310,000 staked: under the 50% quorum) supports, halves the missed limit.
    let cap_before = net.call(0, "metis_ledger", json!([])).await.expect("ledger")["params"]["stake_cap"].clone();
    let a = gov_propose(
        &net,
        0,
        &[
            "--max-lock",
            "200000",
            "--param",
            "epoch_length=20",
            "--description",
            "Longer epochs, a higher stake cap\n\nFewer elections; room for bigger operators.",
        ],
    );
    let b = gov_propose(
        &net,
        3,
        &["--param", "missed_limit=2", "--description", "A stricter missed limit"],
    );
    // The same actions and description again are the same proposal: refused before sending.
    let e = gov(
        &net,
        3,
        &[
            "propose",
            "--param",
            "missed_limit=2",
            "--description",
            "A stricter missed limit",
        ],
    )
    .unwrap_err();
    assert!(e.contains("exists already"), "{e}");
    wait_gov_state(&net, &a, "Active", 60).await;
    wait_gov_state(&net, &b, "Active", 60).await;
    for i in 0..3 {
        let out = gov(&net, i, &["vote", &a, "for", "--reason", "agreed"]).expect("vote");
        let v: Value = serde_json::from_str(&out).expect("vote json");
        assert_ne!(v["weight"], "0", "owner {i} voted with no weight");
    }
    gov(&net, 3, &["vote", &a, "against"]).expect("vote");
    gov(&net, 3, &["vote", &b, "for"]).expect("vote");
    let e = gov(&net, 3, &["vote", &b, "for"]).unwrap_err();
    assert!(e.contains("has voted"), "{e}");
    let show: Value = serde_json::from_str(&gov(&net, 0, &["show", &a]).expect("show")).expect("show json");
    let (yes, no) = (
        show["votes"]["for"].as_str().expect("for"),
        show["votes"]["against"].as_str().expect("against"),
    );
    assert_eq!(yes, parse_ether("260000").expect("amount").to_string());
    assert_eq!(no, parse_ether("50000").expect("amount").to_string());

    // 3. A passes; executing it before the timelock's delay is refused by the CLI and reverts on L1; after it, it
    //    runs. B is Defeated and a vote after its period reverts.
    wait_gov_state(&net, &a, "Succeeded", 90).await;
    wait_gov_state(&net, &b, "Defeated", 90).await;
    let e = gov(&net, 1, &["execute", &a]).unwrap_err();
    assert!(e.contains("only a Queued proposal"), "{e}");
    gov(&net, 1, &["queue", &a]).expect("queue");
    let e = gov(&net, 1, &["execute", &a]).unwrap_err();
    assert!(e.contains("executable at"), "{e}");
    let governor = MetisGovernor::new(net.contract("governor"), l1.clone());
    let show: Value = serde_json::from_str(&gov(&net, 0, &["show", &a]).expect("show")).expect("show json");
    let action = |k: usize, f: &str| show["actions"][k][f].as_str().expect("action").to_string();
    let targets: Vec<Address> = (0..2).map(|k| action(k, "target").parse().expect("target")).collect();
    let calls: Vec<alloy::primitives::Bytes> = (0..2)
        .map(|k| action(k, "calldata").parse().expect("calldata"))
        .collect();
    let description = show["description"].as_str().expect("description");
    let early = governor
        .execute(
            targets,
            vec![U256::ZERO; 2],
            calls,
            alloy::primitives::keccak256(description.as_bytes()),
        )
        .call()
        .await;
    assert!(early.is_err(), "executed before the timelock's delay");
    let e = gov(&net, 0, &["vote", &b, "against"]).unwrap_err();
    assert!(e.contains("is Defeated"), "{e}");
    let late = governor
        .castVote(b.parse().expect("id"), 0)
        .from(net.owner_key(0).address())
        .call()
        .await;
    assert!(late.is_err(), "a vote after the period counted");
    wait_for(60, "the timelock's delay", || {
        let done = gov(&net, 2, &["execute", &a]).is_ok();
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(gov_state(&net, &a), "Executed");
    assert_eq!(
        info.maxLock().call().await.expect("maxLock"),
        parse_ether("200000").expect("amount")
    );
    let list = gov(&net, 0, &["list"]).expect("list");
    assert_eq!(list.lines().count(), 2, "{list}");

    // 4. Every node applies the new epoch length at the same boundary, records it with its L1 transaction, and the
    //    epochs after it are 20 blocks; the stake cap follows maxLock.
    let applied = wait_for(120, "every node to apply epoch_length = 20", || {
        applied_everywhere(&net, "epoch_length")
    })
    .await;
    let (epoch, from_block, tx) = applied[0].clone();
    assert!(
        applied.iter().all(|x| *x == applied[0]),
        "the nodes differ: {applied:?}"
    );
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    let cap = wait_for(60, "the stake cap to follow maxLock", || {
        let net = &net;
        let before = cap_before.clone();
        async move {
            let l = net.call(0, "metis_ledger", json!([])).await.ok()?;
            let cap = l["params"]["stake_cap"].clone();
            (cap != before).then_some(cap)
        }
    })
    .await;
    assert_eq!(
        cap.as_str()
            .map(|c| U256::from_str_radix(c.trim_start_matches("0x"), 16)),
        Some(Ok(parse_ether("200000").expect("amount"))),
        "stake cap {cap}"
    );
    let ended = wait_for(120, "an epoch of the new length to end", || {
        let net = &net;
        async move {
            let e = net.call(0, "metis_epochs", json!([epoch, 1])).await.ok()?;
            let e = e.as_array()?.first()?.clone();
            e["ended"].as_bool()?.then_some(e)
        }
    })
    .await;
    assert_eq!(ended["first_block"].as_u64(), Some(from_block));
    assert_eq!(ended["last_block"].as_u64(), Some(from_block + 19), "{ended}");
    // The epoch before ran with the old length.
    let before = net
        .call(0, "metis_epochs", json!([epoch - 1, 1]))
        .await
        .expect("epochs");
    assert_eq!(before[0]["last_block"].as_u64(), Some(from_block - 1));
    assert_eq!(
        before[0]["last_block"]
            .as_u64()
            .zip(before[0]["first_block"].as_u64())
            .map(|(l, f)| l - f + 1),
        Some(10)
    );
    let g = net.call(0, "metis_governance", json!([])).await.expect("governance");
    assert_eq!(g["params"]["epoch_length"]["value"], 20);
    // B was defeated: the missed limit is the genesis one.
    assert_ne!(g["params"]["missed_limit"]["value"], 2);
    assert!(g["pending"].as_array().is_some_and(Vec::is_empty), "{g}");
}
