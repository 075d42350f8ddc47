//! A devnet started by `metis-seq devnet` for one test (the handle is `metis_testkit::devnet`).

#![allow(dead_code, unused_imports)]

pub use metis_testkit::devnet::*;
pub use metis_testkit::{alive, kill, port_free, tempdir, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_metis-seq");

pub fn anvil() -> std::path::PathBuf {
    metis_testkit::anvil_path()
}

/// The pool's current threshold key as node 0 reports it: its members (sequencer ids) and the group key.
pub async fn key_members(net: &Devnet) -> Option<(Vec<u64>, String)> {
    let k = net.call(0, "metis_thresholdKey", serde_json::json!([])).await.ok()?;
    let members = k["current"]["members"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    Some((members, k["current"]["group_key"].as_str()?.to_string()))
}

/// Every BatchAppended event on L1 so far: (index, first L2 block, last L2 block).
pub async fn appended(net: &Devnet) -> Vec<(u64, u64, u64)> {
    use alloy::providers::Provider;
    use alloy::sol_types::SolEvent;
    use metis_contracts::BatchInbox;
    let filter = alloy::rpc::types::Filter::new()
        .address(net.contract("batch_inbox"))
        .event_signature(BatchInbox::BatchAppended::SIGNATURE_HASH)
        .from_block(0);
    net.l1()
        .get_logs(&filter)
        .await
        .expect("logs")
        .iter()
        .map(|l| {
            let e = BatchInbox::BatchAppended::decode_log(&l.inner).expect("decode").data;
            (e.index.to::<u64>(), e.header.l2FirstBlock, e.header.l2LastBlock)
        })
        .collect()
}

/// What [`kill_producer`] saw: the killed node, the others, and the first block after the kill by another
/// sequencer with the time from the kill to seeing it.
pub struct Failover {
    pub victim: usize,
    pub others: Vec<usize>,
    pub block: u64,
    pub gap: std::time::Duration,
}

/// kill -9 of the current producer (of a 4-node devnet), then waits for a block proposed by another sequencer
/// (one or two in flight at the kill may still carry the producer's name).
pub async fn kill_producer(net: &Devnet) -> Failover {
    let (victim, signer, pid) = net.producer().await;
    let others: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    let before = net.head(others[0]).await.expect("head");
    kill(pid, libc::SIGKILL);
    let killed_at = std::time::Instant::now();
    wait_for(10, "the producer to be gone", || async { (!alive(pid)).then_some(()) }).await;
    let victim_signer = signer.to_lowercase();
    let (block, gap) = wait_for(10, "a block proposed by another sequencer after the kill", || async {
        let head = net.head(others[0]).await?;
        for h in before + 1..=head {
            let b = net.block(others[0], h).await?;
            if b["miner"].as_str()?.to_lowercase() != victim_signer {
                return Some((h, killed_at.elapsed()));
            }
        }
        None
    })
    .await;
    Failover {
        victim,
        others,
        block,
        gap,
    }
}

/// `metis-seq gov CMD ARGS` on the devnet as sequencer owner `i` (any owner for the reads).
pub fn gov(net: &Devnet, i: usize, args: &[&str]) -> Result<String, String> {
    let key = format!("0x{}", alloy::hex::encode(net.owner_key(i).to_bytes()));
    let rpc = net.l1_rpc();
    let contracts = net.dir.join("contracts.json").display().to_string();
    let (cmd, rest) = args.split_first().expect("a gov command");
    let mut argv = vec!["gov", cmd, "--l1-rpc", &rpc, "--contracts", &contracts];
    argv.extend_from_slice(rest);
    metis_testkit::devnet::try_cli(&argv, &[("METIS_L1_PRIVATE_KEY", &key), ("RUST_LOG", "warn")])
}

/// A proposal's state as `metis-seq gov show` says it.
pub fn gov_state(net: &Devnet, id: &str) -> String {
    let out = gov(net, 0, &["show", id]).expect("gov show");
    let v: serde_json::Value = serde_json::from_str(&out).expect("gov show json");
    v["state"].as_str().expect("state").to_string()
}

/// Waits (at most `secs`) for a proposal to reach `state`.
pub async fn wait_gov_state(net: &Devnet, id: &str, state: &str, secs: u64) {
    wait_for(secs, &format!("proposal {id} to be {state}"), || {
        let now = gov_state(net, id);
        async move { (now == state).then_some(()) }
    })
    .await;
}

/// A proposal of `actions` passed through the CLI only: owners 0, 1 and 2 vote for it (well over half the stake),
/// it is queued and, after the timelock's delay, executed. Its id.
pub async fn pass_by_vote(net: &Devnet, actions: &[&str], title: &str) -> String {
    let mut args = actions.to_vec();
    args.extend_from_slice(&["--description", title]);
    let id = gov_propose(net, 0, &args);
    wait_gov_state(net, &id, "Active", 60).await;
    for i in 0..3 {
        gov(net, i, &["vote", &id, "for", "--reason", "agreed"]).expect("vote");
    }
    wait_gov_state(net, &id, "Succeeded", 90).await;
    gov(net, 3, &["queue", &id]).expect("queue");
    // Anyone executes once the timelock's delay (5 s on the devnet) has passed; the CLI refuses before.
    wait_for(60, "the timelock's delay", || {
        let done = gov(net, 3, &["execute", &id]).is_ok();
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(gov_state(net, &id), "Executed");
    id
}

/// `gov propose` as owner `i`; the proposal's id.
pub fn gov_propose(net: &Devnet, i: usize, args: &[&str]) -> String {
    let mut argv = vec!["propose"];
    argv.extend_from_slice(args);
    let out = gov(net, i, &argv).expect("gov propose");
    let v: serde_json::Value = serde_json::from_str(&out).expect("gov propose json");
    v["proposal_id"].as_str().expect("proposal id").to_string()
}
