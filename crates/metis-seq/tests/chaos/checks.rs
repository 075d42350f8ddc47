//! The invariants after every round: no fork, no accepted transaction lost, the PoS ledger's state the same on
//! every node, the batches on L1 equal to the nodes' headers, and no evidence against anyone (every node is
//! honest here). Each is a result, so a round's table row names every failure, not only the first.

use crate::load::Sent;
use alloy::primitives::B256;
use metis_contracts::BatchInbox;
use metis_testkit::devnet::Devnet;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// What the checks have seen so far, so that each round reads only what is new.
#[derive(Default)]
pub struct Seen {
    /// Heights 1..=checked have the same hash on every node; their transactions are in `included`.
    pub checked: u64,
    pub included: HashSet<B256>,
    /// L1 batches 0..batches were compared with every node.
    pub batches: u64,
    /// Accepted transactions already reported lost (a later round does not count them again).
    pub lost: HashSet<B256>,
}

/// Heights `seen.checked + 1 ..= to` compared across `nodes` (hash), their transactions collected.
async fn scan(net: &Devnet, nodes: &[usize], to: u64, seen: &mut Seen) -> Result<(), String> {
    for h in seen.checked + 1..=to {
        let first = net
            .block(nodes[0], h)
            .await
            .ok_or(format!("node {} has no block {h}", nodes[0]))?;
        for i in &nodes[1..] {
            let b = net.block(*i, h).await.ok_or(format!("node {i} has no block {h}"))?;
            if b["hash"] != first["hash"] {
                return Err(format!(
                    "fork at height {h}: node {} has {}, node {i} has {}",
                    nodes[0], first["hash"], b["hash"]
                ));
            }
        }
        for t in first["transactions"].as_array().into_iter().flatten() {
            if let Some(hash) = t.as_str().and_then(|s| s.parse().ok()) {
                seen.included.insert(hash);
            }
        }
        seen.checked = h;
    }
    Ok(())
}

async fn min_head(net: &Devnet, nodes: &[usize]) -> Option<u64> {
    let mut m = u64::MAX;
    for i in nodes {
        m = m.min(net.head(*i).await?);
    }
    Some(m)
}

/// No fork up to the lowest head, and every transaction in `sent` in a block within `within` (else lost).
/// Returns the lost ones.
pub async fn no_fork_and_nothing_lost(
    net: &Devnet,
    nodes: &[usize],
    sent: &[Sent],
    seen: &mut Seen,
    within: Duration,
) -> (Result<(), String>, Vec<Sent>) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(to) = min_head(net, nodes).await {
            if let Err(e) = scan(net, nodes, to, seen).await {
                return (Err(e), Vec::new());
            }
        }
        let lost: Vec<Sent> = sent
            .iter()
            .filter(|s| !seen.included.contains(&s.hash))
            .cloned()
            .collect();
        if lost.is_empty() || Instant::now() > deadline {
            return (Ok(()), lost);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The PoS ledger's state hash, read on every node at the same height.
pub async fn same_ledger(net: &Devnet, nodes: &[usize]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let mut got: Vec<(u64, Value)> = Vec::new();
        for i in nodes {
            match net.call(*i, "metis_ledger", json!([])).await {
                Ok(l) => got.push((l["height"].as_u64().unwrap_or(0), l["state_hash"].clone())),
                Err(e) => return Err(format!("node {i}: metis_ledger: {e}")),
            }
        }
        if got.iter().all(|g| g.0 == got[0].0) {
            return match got.iter().position(|g| g.1 != got[0].1) {
                None => Ok(()),
                Some(k) => Err(format!(
                    "ledger differs at height {}: node {} {} against node {} {}",
                    got[0].0, nodes[0], got[0].1, nodes[k], got[k].1
                )),
            };
        }
        last = got;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the nodes were never at the same ledger height in 30 s: {last:?}"
    ))
}

/// Every batch L1 holds (they are contiguous: the inbox takes only the next index and block) has the hash each
/// node computed for it.
pub async fn batches_match(net: &Devnet, nodes: &[usize], seen: &mut Seen) -> Result<(), String> {
    let inbox = BatchInbox::new(net.contract("batch_inbox"), net.l1());
    let next = inbox.nextIndex().call().await.map_err(|e| format!("nextIndex: {e}"))?;
    for index in seen.batches..next {
        let on_l1 = inbox
            .batchHashes(alloy::primitives::U256::from(index))
            .call()
            .await
            .map_err(|e| format!("batchHashes({index}): {e}"))?;
        for i in nodes {
            let b = net
                .call(*i, "metis_getBatchByIndex", json!([index]))
                .await
                .map_err(|e| format!("node {i}: batch {index}: {e}"))?;
            if b["hash"].as_str().and_then(|h| h.parse::<B256>().ok()) != Some(on_l1) {
                return Err(format!("batch {index}: L1 has {on_l1}, node {i} has {}", b["hash"]));
            }
        }
        seen.batches = index + 1;
    }
    Ok(())
}

/// No node holds an offence: every node here is honest.
pub async fn no_evidence(net: &Devnet, nodes: &[usize]) -> Result<(), String> {
    for i in nodes {
        let o = net
            .call(*i, "metis_evidence", json!([]))
            .await
            .map_err(|e| format!("node {i}: {e}"))?;
        if o != json!([]) {
            return Err(format!("node {i} holds an offence against an honest node: {o}"));
        }
        let v = net
            .call(*i, "metis_validators", json!([]))
            .await
            .map_err(|e| format!("node {i}: {e}"))?;
        if let Some(j) = v.as_array().into_iter().flatten().find(|s| !s["jail"].is_null()) {
            return Err(format!(
                "node {i}: sequencer {} is jailed: {}",
                j["id"], j["jail"]["reason"]
            ));
        }
    }
    Ok(())
}

/// L1's batches cover every L2 block up to `block` within `within` (the poster caught up after the fault).
pub async fn batches_cover(net: &Devnet, block: u64, within: Duration) -> Result<(), String> {
    let inbox = BatchInbox::new(net.contract("batch_inbox"), net.l1());
    let deadline = Instant::now() + within;
    loop {
        let next = inbox
            .nextL2Block()
            .call()
            .await
            .map_err(|e| format!("nextL2Block: {e}"))?;
        if next > block {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "L1's batches end before block {next}, {} s after the heal; block {block} was due",
                within.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The libp2p peers sequencer `i` is connected to, from its metrics (None: it does not answer).
async fn linked(net: &Devnet, i: usize) -> Option<u64> {
    let url = net.nodes()[i]["metrics"].as_str()?.to_string();
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    let m = metis_testkit::scrape::parse(&text);
    m.get("metis_peers{transport=\"libp2p\"}").map(|v| *v as u64)
}

/// Each sequencer's head and libp2p peers, as "node i: head h, p peers" (what a stalled round reports).
pub async fn network_view(net: &Devnet, nodes: usize) -> String {
    let mut parts = Vec::new();
    for i in 0..nodes {
        let head = net.head(i).await.map_or("-".to_string(), |h| h.to_string());
        let peers = linked(net, i).await.map_or("-".to_string(), |p| p.to_string());
        parts.push(format!("node {i}: head {head}, {peers} peers"));
    }
    parts.join("; ")
}

/// How long a window of node logs the hearing check reads: a few heights, each with a prevote and a precommit
/// from every validator.
const HEAR_WINDOW: Duration = Duration::from_secs(4);

/// The validators whose votes a node's log shows from byte `from` on (Malachite logs each vote it takes:
/// "Received vote ... from: 0x..."), and where the log ends now.
fn voters_since(log: &str, from: u64) -> (HashSet<String>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let mut voters = HashSet::new();
    let Ok(mut f) = std::fs::File::open(log) else {
        return (voters, from);
    };
    let end = f.metadata().map_or(from, |m| m.len());
    // A restarted node appends to its log; a shorter log is a new one.
    let start = if end < from { 0 } else { from };
    let mut text = String::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_string(&mut text).is_err() {
        return (voters, end);
    }
    for line in text.lines().filter(|l| l.contains("Received vote")) {
        if let Some(at) = line.find("from: 0x") {
            let id: String = line[at + 6..].chars().take_while(char::is_ascii_hexdigit).collect();
            voters.insert(id);
        }
    }
    (voters, end)
}

fn log_ends(net: &Devnet, nodes: usize) -> Vec<u64> {
    (0..nodes)
        .map(|i| {
            net.nodes()[i]["log"]
                .as_str()
                .and_then(|l| std::fs::metadata(l).ok())
                .map_or(0, |m| m.len())
        })
        .collect()
}

/// Who does not hear whom in the logs since `from`: "node i hears no vote from 0x..". A pair linked in one
/// direction only (a peer that forgot our subscription after a partition) shows here and nowhere else.
fn deafness(net: &Devnet, nodes: usize, from: &[u64]) -> Vec<String> {
    let heard: Vec<HashSet<String>> = (0..nodes)
        .map(|i| {
            let log = net.nodes()[i]["log"].as_str().unwrap_or_default().to_string();
            voters_since(&log, from.get(i).copied().unwrap_or(0)).0
        })
        .collect();
    let everyone: HashSet<&String> = heard.iter().flatten().collect();
    let mut out = Vec::new();
    for (i, h) in heard.iter().enumerate() {
        let mut missing: Vec<String> = everyone
            .iter()
            .filter(|v| !h.contains(**v))
            .map(|v| v.chars().take(10).collect())
            .collect();
        missing.sort();
        if !missing.is_empty() {
            out.push(format!("node {i} hears no vote from {}", missing.join(", ")));
        }
    }
    out
}

/// Waits (up to `within`) until every sequencer is connected to every other, hears every other's votes, and is
/// within a block of the highest head: a round's fault must be the only one (with four sequencers of unequal
/// stake, one node down and one link missing, or one node behind, already halt the chain). Err says what was
/// not.
pub async fn whole(net: &Devnet, nodes: usize, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut window = (Instant::now(), log_ends(net, nodes));
    let mut deaf = vec!["not read yet".to_string()];
    loop {
        let mut short = false;
        let mut heads = Vec::new();
        for i in 0..nodes {
            let n = linked(net, i).await;
            short |= n.is_none_or(|n| n + 1 < nodes as u64);
            heads.push(net.head(i).await.unwrap_or(0));
        }
        let top = heads.iter().copied().max().unwrap_or(0);
        let behind = heads.iter().any(|h| h + 1 < top);
        if window.0.elapsed() >= HEAR_WINDOW {
            deaf = deafness(net, nodes, &window.1);
            window = (Instant::now(), log_ends(net, nodes));
        }
        if !short && !behind && deaf.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let mut view = network_view(net, nodes).await;
            if !deaf.is_empty() {
                view = format!("{view}; {}", deaf.join("; "));
            }
            return Err(format!(
                "the network was not whole {} s before the round (every node linked to every other and hearing \
                 its votes, within a block of the head): {view}",
                within.as_secs(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (up to `within`) until no sequencer has missed more than a quarter of what jails for downtime in the
/// current window, as node 0 counts: each round starts from a pool that has forgotten the last one, so two
/// faults on one node in a row are not taken for downtime. Returns the highest count left.
pub async fn settled(net: &Devnet, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let worst = net
            .call(0, "metis_validators", json!([]))
            .await
            .ok()
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .map(|s| {
                        let missed = s["missed_in_window"].as_u64()?;
                        let limit = s["downtime_limit"].as_u64()?;
                        Some((missed, limit))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .unwrap_or_default();
        let high = worst.iter().map(|(m, _)| *m).max().unwrap_or(0);
        if worst.iter().all(|(m, l)| m.saturating_mul(4) <= *l) || Instant::now() > deadline {
            return high;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
