//! Accountability over real processes: equivocation caught and punished, downtime jailed (and only real
//! downtime), and no honest node ever accused, whatever kills and restores it goes through.

use crate::common::testnet::{skewed_clock, NetOptions, Testnet};
use crate::common::wait_for;
use crate::{current_epoch, exclusive, genesis_producer, hex_u64};
use serde_json::{json, Value};

/// The false-positive suite: no honest node is ever accused. One node at a time is killed -9 twenty times, each
/// time at another point of a height (proposing, prevoting, precommitting, committing), and restarted; then a node
/// is restored from a copy of its own data dir taken some heights earlier (its WAL and proposals forget what it
/// signed since; the signing guard next to its key does not). The chain stays one chain and nobody has an offence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_an_older_data_dir_never_make_an_honest_node_equivocate() {
    let _one = exclusive().await;
    let mut net = Testnet::new("net-honest", NetOptions::default());
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 2, 60).await;
    for i in 0..20u64 {
        let n = (i % 4) as usize;
        let h = net.head((n + 1) % 4).await.unwrap();
        net.wait_height(&all, h + 1, 30).await;
        // Fault timing, not synchronisation: the kill lands at another point of the height each time.
        tokio::time::sleep(std::time::Duration::from_millis(i * 47 % 1000)).await;
        net.kill(n);
        net.start(n, None);
    }
    let top = net.head(0).await.unwrap();
    net.wait_height(&all, top + 2, 60).await;

    // The epoch's producer is stopped, its data dir copied, and it runs on for some heights before it is killed
    // and the old copy put back: it is then asked to propose the very heights it already signed.
    let e = current_epoch(&net, 0).await;
    let r = Testnet::node_of(e["producer"].as_u64().expect("producer"));
    let data = net.net_dir().join(format!("node{r}/data"));
    let copy = net.net_dir().join(format!("node{r}/data-copy"));
    net.kill(r);
    copy_dir(&data, &copy);
    net.start(r, None);
    let h = net.head(0).await.unwrap();
    net.wait_height(&all, h + 8, 60).await;
    net.kill(r);
    let guard = net.net_dir().join(format!("node{r}/keys/signing-guard"));
    let signed_height = || {
        metis_consensus::guard::SigningGuard::open(&guard)
            .expect("the guard reads")
            .last()
            .expect("a slot signed")
            .height
    };
    let signed_before = signed_height();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&copy, &data).unwrap();
    net.start(r, None);
    // Its signing guard (next to its key) knows it signed 8+ heights beyond its head: it follows the chain
    // without signing until it is past them, then starts again as a validator and votes.
    let other = (r + 1) % all.len();
    let top = net.head(other).await.unwrap();
    net.wait_height(&all, top + 5, 90).await;
    net.assert_same_chain(&all, top + 5).await;
    for i in &all {
        let o = net.call(*i, "metis_evidence", json!([])).await.unwrap();
        assert_eq!(o, json!([]), "node {i} holds an offence against an honest node");
    }
    let log = wait_for(60, "the restored node back as a validator", || async {
        let log = std::fs::read_to_string(net.log_path(r)).ok()?;
        log.contains("starting again as a validator").then_some(log)
    })
    .await;
    assert!(
        log.contains("following the chain without signing"),
        "{}",
        net.log_tail(r)
    );
    assert_eq!(
        log.matches("refused to sign").count(),
        0,
        "the guard never had to refuse"
    );
    // Back as a validator: its key signs heights beyond what it had signed before the restore.
    wait_for(60, "the restored node signing again", || async {
        (signed_height() > signed_before).then_some(())
    })
    .await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A producer whose engine signs a second proposal for a different value in every round (Malachite's Byzantine
/// proxy, test builds only) is caught by the others: the next block carries the evidence, every node jails it
/// and asks for the same slash, a fallback producer takes over, and the chain goes on as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_proposer_is_jailed_by_the_next_block() {
    let _one = exclusive().await;
    let mut net = Testnet::generate("net-double-propose", NetOptions::default());
    let genesis = net.pos_genesis();
    let (producer_id, p) = genesis_producer(&genesis);
    for i in 0..4 {
        net.start(i, (i == p).then_some("double-propose@3"));
    }
    let all: Vec<usize> = (0..4).collect();
    let honest: Vec<usize> = all.iter().copied().filter(|i| *i != p).collect();
    let offence = wait_for(60, "the double proposal punished", || async {
        let o = net.call(honest[0], "metis_evidence", json!([])).await.ok()?;
        o.as_array()?.first().cloned()
    })
    .await;
    eprintln!("double proposal: {offence}");
    assert_eq!(offence["sequencer"].as_u64(), Some(producer_id), "{offence}");
    assert_eq!(offence["kind"], "DoubleProposal");
    let (at, included) = (hex_or_u64(&offence["offence_height"]), hex_or_u64(&offence["included"]));
    assert!(at >= 3, "evidence before the fault started: {offence}");
    assert!(included <= at + 2, "jailed {} blocks after the evidence", included - at);
    assert_ne!(
        offence["evidence"]["first"]["value"],
        offence["evidence"]["second"]["value"]
    );
    // Every node holds the same offence once it has the block that carried it (the first node to answer may be
    // a block ahead of the others), and the chain goes on without the offender producing.
    net.wait_height(&honest, included, 60).await;
    for i in &honest {
        let o = net.call(*i, "metis_evidence", json!([])).await.unwrap();
        assert_eq!(o[0]["evidence_hash"], offence["evidence_hash"], "node {i}");
        assert_eq!(o.as_array().unwrap().len(), 1, "one incident, punished once: {o}");
    }
    // Its next block carried the evidence against itself (its app got it over the evidence gossip), or the
    // others refused the block without it and a fallback carried it: either way within two blocks (above).
    let to = included + 5;
    net.wait_height(&honest, to, 60).await;
    net.assert_same_chain(&honest, to).await;
    let signer = genesis["sequencers"][p]["signer"].as_str().unwrap().to_lowercase();
    for n in included + 1..=to {
        let b = net.block(honest[0], n).await.unwrap();
        assert_ne!(
            b["miner"].as_str().unwrap().to_lowercase(),
            signer,
            "block {n} by the jailed producer"
        );
    }
}

fn hex_or_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| hex_u64(v))
}

/// `metis_validators`' entry for sequencer `id` on node `i`.
async fn validator(net: &Testnet, i: usize, id: u64) -> Option<Value> {
    let v = net.call(i, "metis_validators", json!([])).await.ok()?;
    v.as_array()?.iter().find(|s| s["id"].as_u64() == Some(id)).cloned()
}

/// No sequencer but `except` is jailed on node `i`, and nobody has an offence there.
async fn nobody_else_punished(net: &Testnet, i: usize, except: Option<u64>) {
    let v = net.call(i, "metis_validators", json!([])).await.unwrap();
    for s in v.as_array().unwrap() {
        if s["id"].as_u64() != except {
            assert!(s["jail"].is_null(), "node {i}: {s}");
        }
    }
    let o = net.call(i, "metis_evidence", json!([])).await.unwrap();
    assert_eq!(o, json!([]), "node {i}: downtime is no offence");
}

/// Downtime: a sequencer that is down is left out of the commits; once the blocks of two proposers have left it
/// out of more than half the window it is jailed (no slash, no evidence), leaves the set at the next epoch, and
/// after its jail epochs comes back into the set and signs again. Nobody else is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_that_is_down_is_jailed_for_downtime_and_comes_back() {
    let _one = exclusive().await;
    // A window of 20 commits (jailed past 10 misses, at most 6 from one proposer), short epochs so producers
    // change often.
    let opts = NetOptions {
        epoch_length: 8,
        downtime_window: 20,
        min_signed_bps: 5_000,
        ..NetOptions::default()
    };
    let mut net = Testnet::new("net-downtime", opts);
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 3, 60).await;
    // The victim: a node that is not producing right now (its death then costs no failover).
    let producer = current_epoch(&net, 0).await["producer"].as_u64().unwrap();
    let id = (1..=4u64).rev().find(|id| *id != producer).unwrap();
    let d = Testnet::node_of(id);
    let up: Vec<usize> = all.iter().copied().filter(|i| *i != d).collect();
    net.kill(d);
    let killed_at = net.head(up[0]).await.unwrap();

    let jailed = wait_for(150, "the downed sequencer jailed for downtime", || async {
        let v = validator(&net, up[0], id).await?;
        (!v["jail"].is_null()).then_some(v)
    })
    .await;
    eprintln!("downtime jail (killed at height {killed_at}): {jailed}");
    let missed = jailed["jail"]["reason"]["Downtime"]["missed"]
        .as_u64()
        .expect("a downtime jail");
    assert!(missed > 10, "jailed with {missed} misses, the limit is 10: {jailed}");
    let since = jailed["jail"]["since"].as_u64().unwrap();
    for i in &up {
        let v = validator(&net, *i, id).await.unwrap();
        assert_eq!(v["jail"], jailed["jail"], "node {i}");
        nobody_else_punished(&net, *i, Some(id)).await;
    }
    // Out of the validator set from the next epoch.
    wait_for(60, "the jailed sequencer out of the set", || async {
        let v = validator(&net, up[0], id).await?;
        (v["voting_power"].as_u64() == Some(0)).then_some(())
    })
    .await;

    // Back up: it follows the chain, its jail runs out, and it is in the set and the commits again.
    net.start(d, None);
    let back = wait_for(150, "the sequencer released and back in the set", || async {
        let v = validator(&net, up[0], id).await?;
        (v["jail"].is_null() && v["voting_power"].as_u64()? > 0).then_some(v)
    })
    .await;
    eprintln!("released: {back}");
    let from = net.head(up[0]).await.unwrap() + 2;
    let key = back["consensus_key"].as_str().unwrap().to_lowercase();
    let signed = wait_for(60, "the released sequencer's precommit in a commit", || async {
        let head = net.head(up[0]).await?;
        for h in from..head {
            let c = net.call(up[0], "metis_commit", json!([h])).await.ok()?;
            if c["signers"].to_string().to_lowercase().contains(&key) {
                return Some(h);
            }
        }
        None
    })
    .await;
    eprintln!("jailed at {since}, released, signing again at {signed}");
    let to = net.head(up[0]).await.unwrap();
    net.wait_height(&all, to, 60).await;
    net.assert_same_chain(&all, to).await;
    for i in &up {
        nobody_else_punished(&net, *i, Some(id)).await;
    }
}

/// A producer that leaves one validator out of the commit of every block it makes (test fault `censor-commit`)
/// cannot get it jailed: its blocks are valid and decided, the victim's misses pass the limit, but one
/// proposer's blocks count at most a little over half of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_leaving_a_validator_out_of_its_commits_cannot_get_it_jailed() {
    let _one = exclusive().await;
    let opts = NetOptions {
        epoch_length: 1000,
        downtime_window: 20,
        min_signed_bps: 5_000,
        ..NetOptions::default()
    };
    let mut net = Testnet::generate("net-censor", opts);
    let genesis = net.pos_genesis();
    let (_, p) = genesis_producer(&genesis);
    for i in 0..4 {
        net.start(i, (i == p).then_some("censor-commit"));
    }
    let all: Vec<usize> = (0..4).collect();
    let victim = wait_for(90, "a validator left out of more than the limit", || async {
        let v = net.call(0, "metis_validators", json!([])).await.ok()?;
        v.as_array()?
            .iter()
            .find(|s| s["missed_in_window"].as_u64().is_some_and(|m| m > 12))
            .cloned()
    })
    .await;
    eprintln!("censored: {victim}");
    assert!(victim["jail"].is_null(), "{victim}");
    assert_eq!(victim["downtime_limit"].as_u64(), Some(10));
    assert!(victim["downtime_counted"].as_u64().unwrap() <= 6, "{victim}");
    // The producer's blocks were decided all along, and the victim stays unjailed for a whole window more.
    let h = net.head(0).await.unwrap();
    net.wait_height(&all, h + 20, 60).await;
    net.assert_same_chain(&all, h + 20).await;
    let producer_signer = genesis["sequencers"][p]["signer"].as_str().unwrap().to_lowercase();
    for n in h..h + 20 {
        let b = net.block(0, n).await.unwrap();
        assert_eq!(
            b["miner"].as_str().unwrap().to_lowercase(),
            producer_signer,
            "block {n}"
        );
    }
    for i in &all {
        nobody_else_punished(&net, *i, None).await;
    }
}

/// A node whose wall clock is 20 s off never signs two conflicting messages, and never gets anyone punished.
/// Fast (+20 s, libfaketime), it is the genesis producer: the others refuse its blocks (timestamps in their
/// future), decide each height by a fallback and re-elect; restarted slow (-20 s), it refuses the others' blocks
/// the same way (it prevotes nil), yet follows the chain, since a decided block from sync is not held to its
/// clock. One chain throughout, no evidence, no jail, its signing guard never had to refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_skewed_clock_never_equivocates_and_still_follows() {
    let _one = exclusive().await;
    // Two-second blocks: every block's timestamp is then more than its parent's + 1, the slack the future rule
    // grants, so the slow node refuses every proposal, not only those after a gap.
    let opts = NetOptions {
        block_time_ms: 2_000,
        ..NetOptions::default()
    };
    let mut net = Testnet::generate("net-skew", opts);
    let genesis = net.pos_genesis();
    let (producer_id, s) = genesis_producer(&genesis);
    let start_skewed = |net: &mut Testnet, offset: &str| {
        let env = skewed_clock(offset);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        net.start_with_env(s, None, &env);
    };
    for i in 0..4 {
        if i == s {
            start_skewed(&mut net, "+20s");
        } else {
            net.start(i, None);
        }
    }
    let all: Vec<usize> = (0..4).collect();
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != s).collect();
    let re = wait_for(60, "the fast producer re-elected", || async {
        let e = current_epoch(&net, others[0]).await;
        (e["reason"]["ReElection"]["failed"].as_u64() == Some(producer_id)).then_some(e)
    })
    .await;
    eprintln!("fast clock: re-election {re}");
    let log = std::fs::read_to_string(net.log_path(others[0])).unwrap();
    assert!(log.contains("is in the future"), "the skew did not show");
    let h = net.head(others[0]).await.unwrap();
    net.wait_height(&all, h + 5, 60).await;

    net.kill(s);
    let fast_log = std::fs::read_to_string(net.log_path(s)).unwrap().len();
    start_skewed(&mut net, "-20s");
    let h = net.head(others[0]).await.unwrap();
    net.wait_height(&all, h + 10, 90).await;
    let top = net.head(others[0]).await.unwrap();
    net.wait_height(&all, top, 60).await;
    net.assert_same_chain(&all, top).await;
    let log = std::fs::read_to_string(net.log_path(s)).unwrap();
    assert!(
        log[fast_log..].contains("is in the future"),
        "the slow node refused nothing"
    );
    assert_eq!(log.matches("refused to sign").count(), 0, "the guard had to refuse");
    for i in &all {
        let o = net.call(*i, "metis_evidence", json!([])).await.unwrap();
        assert_eq!(o, json!([]), "node {i} holds an offence");
        let v = net.call(*i, "metis_validators", json!([])).await.unwrap();
        assert!(
            v.as_array().unwrap().iter().all(|x| x["jail"].is_null()),
            "node {i}: {v}"
        );
    }
}
