//! Accountability end to end: one of the devnet's sequencers (node3, started with the test-only fault
//! `double-vote` for heights 25-27: Malachite's Byzantine proxy signs a second, conflicting vote next to each of
//! its votes) is caught by the others, jailed on the PoS layer, slashed and jailed on L1 by the pool's key, and
//! leaves the validator set and the threshold key; the chain never stops and nobody else is touched. Unjailed
//! on L1 later by a vote of the stake, it comes back into the set and the key.

use crate::harness::{gov, key_members, pass_by_vote, serial, wait_for, Devnet};
use alloy::primitives::{utils::parse_ether, B256, U256};
use alloy::providers::Provider;
use metis_contracts::LockingPool;
use serde_json::{json, Value};

/// The first height node3 equivocates at: after the devnet is ready, so the start is clean.
const FROM: u64 = 25;
const EPOCH: u64 = 5;

async fn offences(net: &Devnet, i: usize) -> Vec<Value> {
    net.call(i, "metis_evidence", json!([]))
        .await
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_double_voter_is_jailed_slashed_on_l1_and_leaves_the_set_and_the_key() {
    let _one = serial().await;
    let fault = format!("node3:double-vote@{FROM}-{}", FROM + 2);
    let net = Devnet::start_with_env(
        "slash",
        6,
        // Governed by the stake (the default): the unjail in step 6 is a vote.
        &["--epoch-length", &EPOCH.to_string()],
        &[("METIS_SEQ_TEST_FAULT", &fault)],
    )
    .await;
    let (genesis_members, group_key) = wait_for(60, "the genesis key", || key_members(&net)).await;
    assert_eq!(genesis_members.len(), 4);
    let validators = net.call(0, "metis_validators", json!([])).await.expect("validators");
    let signer3 = net.nodes()[3]["signer"].as_str().expect("signer").to_lowercase();
    let id_of = |v: &Value| v["id"].as_u64().expect("id");
    let offender = validators
        .as_array()
        .expect("validators")
        .iter()
        .find(|v| v["signer"].as_str().is_some_and(|s| s.to_lowercase() == signer3))
        .map(id_of)
        .expect("node3's sequencer");
    let stake_before: U256 = serde_json::from_value(
        net.call(0, "metis_sequencer", json!([offender]))
            .await
            .expect("sequencer")["stake"]
            .clone(),
    )
    .expect("stake");

    // 1. The evidence: carried by a block, checked by every validator, the offender jailed at once.
    let o = wait_for(120, "an offence on the PoS layer", || async {
        offences(&net, 0).await.into_iter().next()
    })
    .await;
    eprintln!("[e2e] offence: {o}");
    assert_eq!(o["sequencer"], json!(offender), "{o}");
    assert_eq!(o["kind"], "DoubleVote");
    let at = o["offence_height"].as_u64().expect("height");
    let included = o["included"].as_u64().expect("included");
    assert!(at >= FROM, "an offence before node3 misbehaved: {o}");
    assert!(included <= at + 2, "jailed {} blocks after the evidence", included - at);
    assert_eq!(o["jail"]["since"], json!(included));
    let ev = &o["evidence"];
    assert_ne!(ev["first"]["value"], ev["second"]["value"], "{ev}");
    let evidence: B256 = serde_json::from_value(o["evidence_hash"].clone()).expect("hash");
    let slash: U256 = serde_json::from_value(o["slash"].clone()).expect("slash");
    assert_eq!(slash, stake_before * U256::from(5) / U256::from(100), "5% of the stake");
    // Every node holds the same record (the ledger is in the state hash).
    for i in 1..4 {
        let theirs = wait_for(30, "the offence on every node", || async {
            offences(&net, i).await.into_iter().next()
        })
        .await;
        assert_eq!(theirs["evidence_hash"], o["evidence_hash"]);
    }

    // 2. L1: the pool's key signs the slash, the poster lands it, and the events come back through the listener.
    let pool = LockingPool::new(net.contract("locking_pool"), net.l1());
    let seen = std::time::Instant::now();
    wait_for(120, "the slash on L1", || async {
        pool.usedEvidence(evidence).call().await.ok().filter(|used| *used)
    })
    .await;
    eprintln!(
        "[e2e] evidence of height {at} in block {included}; slashed on L1 {:.1} s after the jail was seen",
        seen.elapsed().as_secs_f64()
    );
    let on_l1 = pool
        .sequencers(U256::from(offender))
        .call()
        .await
        .expect("sequencer on L1");
    assert!(on_l1.jailed, "slashed but not jailed on L1");
    assert_eq!(on_l1.amount, stake_before - slash);
    let s = wait_for(60, "the Slashed event applied by the ledger", || async {
        let s = net.call(0, "metis_sequencer", json!([offender])).await.ok()?;
        let stake: U256 = serde_json::from_value(s["stake"].clone()).ok()?;
        (stake == stake_before - slash && s["l1_jailed"] == json!(true)).then_some(s)
    })
    .await;
    eprintln!("[e2e] after the slash: {s}");
    let closed = wait_for(30, "the slash request closed", || async {
        offences(&net, 0)
            .await
            .into_iter()
            .next()
            .filter(|o| o["slash_open"] == json!(false))
    })
    .await;
    assert!(
        closed["l1_slash"].is_object(),
        "the Slashed event is not linked: {closed}"
    );
    // The linked L1 transaction is the slash itself: sent to LockingPool, successful, in the named block.
    let tx: B256 = serde_json::from_value(closed["l1_slash"]["l1_tx_hash"].clone()).expect("l1 tx hash");
    let receipt = net
        .l1()
        .get_transaction_receipt(tx)
        .await
        .expect("L1 receipt")
        .expect("the slash transaction is on L1");
    assert!(receipt.status(), "{receipt:?}");
    assert_eq!(receipt.to, Some(net.contract("locking_pool")));
    assert_eq!(
        receipt.block_number,
        closed["l1_slash"]["l1_block"].as_u64(),
        "{closed}"
    );

    // 3. Out of the validator set at the next epoch, and the key reshared without it (same group key).
    wait_for(60, "the offender out of the set", || async {
        let s = net.call(0, "metis_sequencer", json!([offender])).await.ok()?;
        (s["voting_power"] == json!(0)).then_some(())
    })
    .await;
    let rest: Vec<u64> = genesis_members.iter().copied().filter(|i| *i != offender).collect();
    let (_, key) = wait_for(150, "the key reshared without the offender", || async {
        let (m, k) = key_members(&net).await?;
        (m == rest).then_some((m, k))
    })
    .await;
    assert_eq!(key, group_key, "resharing keeps the group key");

    // 4. Rewards stop: a report over epochs after the jail credits it nothing.
    let jail_epoch = (included - 1) / EPOCH; // epoch e holds heights 5e+1 ..= 5e+5
    let report = wait_for(120, "a reward report after the jail", || async {
        let st = net.call(0, "metis_signer", json!([])).await.ok()?;
        let last = st["rewards"]["last"].clone();
        (last["start_epoch"].as_u64()? > jail_epoch).then_some(last)
    })
    .await;
    eprintln!("[e2e] reward report after the jail: {report}");
    let credited: Vec<u64> = report["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter_map(|b| b[0].as_u64())
        .collect();
    assert!(!credited.is_empty() && !credited.contains(&offender), "{report}");

    // 5. The chain never stopped, the three agree, and nobody else was touched.
    let h = net.head(0).await.expect("head");
    assert!(h > included + EPOCH, "head {h}");
    net.wait_height(&[0, 1, 2], h, 30).await;
    net.assert_same_block(&[0, 1, 2], h).await;
    for o in offences(&net, 0).await {
        assert_eq!(o["sequencer"], json!(offender), "an honest node punished: {o}");
    }
    let validators = net.call(0, "metis_validators", json!([])).await.expect("validators");
    for v in validators.as_array().expect("validators") {
        if id_of(v) != offender {
            assert!(v["jail"].is_null() && v["voting_power"].as_u64() > Some(0), "{v}");
        }
    }
    let expected = parse_ether("2500").expect("amount");
    assert_eq!(slash, expected, "the devnet's node3 locks 50,000 METIS");

    // 6. The stake unjails it on L1 by a vote (`metis-seq gov propose --unjail`, three owners for, queued,
    //    executed): once its PoS jail has run out, it is back in the set at an epoch boundary and the key is
    //    reshared to the four again, same group key. Proposing to unjail a sequencer that is not jailed is refused
    //    before anything is sent.
    let honest = validators
        .as_array()
        .expect("validators")
        .iter()
        .map(id_of)
        .find(|id| *id != offender)
        .expect("an honest sequencer");
    let e = gov(
        &net,
        0,
        &[
            "propose",
            "--unjail",
            &honest.to_string(),
            "--description",
            "not jailed",
        ],
    )
    .expect_err("unjailing a free sequencer");
    assert!(e.contains("is not jailed"), "{e}");
    pass_by_vote(
        &net,
        &["--unjail", &offender.to_string()],
        &format!("Unjail sequencer {offender}\n\nSlashed for a double vote; let it back."),
    )
    .await;
    let pool = LockingPool::new(net.contract("locking_pool"), net.l1());
    assert!(
        !pool
            .sequencers(U256::from(offender))
            .call()
            .await
            .expect("sequencer")
            .jailed,
        "unjailed on L1"
    );
    wait_for(90, "the offender back in the set", || async {
        let s = net.call(0, "metis_sequencer", json!([offender])).await.ok()?;
        (s["l1_jailed"] == json!(false) && s["voting_power"].as_u64()? > 0 && s["jail"].is_null()).then_some(())
    })
    .await;
    let (_, key) = wait_for(150, "the key reshared to the four again", || async {
        let (m, k) = key_members(&net).await?;
        (m == genesis_members).then_some((m, k))
    })
    .await;
    assert_eq!(key, group_key, "resharing keeps the group key");
    assert_eq!(offences(&net, 0).await.len(), 1, "one incident, punished once");
}
