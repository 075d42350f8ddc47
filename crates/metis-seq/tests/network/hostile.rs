//! Hostile outsiders against real node processes: what reaching a node's ports must not let anyone do.

use crate::common::testnet::{NetOptions, Testnet};
use crate::{exclusive, send_transfers, wait_receipts};
use std::time::Instant;

/// CPU seconds (user + system) process `pid` has used so far, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Lets this test process hold a thousand sockets.
fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a struct this function owns.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max.min(65_536);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
}

/// 1,000 TCP connections to a node's gossip port that never handshake: at most 64 wait for their handshake at
/// once and the rest are closed at once, so the node goes on deciding blocks with the others, a transaction sent
/// to it is gossiped and lands everywhere, and its CPU stays low.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_to_the_gossip_port_change_nothing() {
    let _one = exclusive().await;
    raise_fd_limit();
    let net = Testnet::new("net-silent", NetOptions::default());
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 2, 60).await;
    let pid = net.pid(0).expect("node 0 runs");
    let (cpu0, t0) = (cpu_secs(pid), Instant::now());
    let mut silent = Vec::new();
    for _ in 0..1000 {
        if let Ok(s) = std::net::TcpStream::connect(net.gossip_addr(0)) {
            silent.push(s);
        }
    }
    assert!(silent.len() >= 900, "only {} connections opened", silent.len());
    // Work goes on: a transfer sent to node 0 reaches the others by gossip and lands; five more blocks.
    let hashes = send_transfers(&net, 0, 0, 0, 1).await;
    wait_receipts(&net, &all, &hashes, 60).await;
    let h = net.head(1).await.unwrap();
    net.wait_height(&all, h + 5, 60).await;
    let cpu = (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64();
    eprintln!(
        "node 0 under {} silent connections: {:.1}% of a core over {:.1} s",
        silent.len(),
        cpu * 100.0,
        t0.elapsed().as_secs_f64()
    );
    assert!(cpu < 0.5, "node 0 used {:.0}% of a core", cpu * 100.0);
    let log = std::fs::read_to_string(net.log_path(0)).unwrap();
    assert!(
        log.contains("closing new ones"),
        "the pending-handshake limit never acted"
    );
    net.assert_same_chain(&all, h + 5).await;
}

/// The block interval (ms per height) at the 50th and 99th percentiles, from when each height appeared.
pub(crate) fn interval_percentiles(seen: &[(u64, Instant)]) -> (f64, f64) {
    let mut intervals: Vec<f64> = seen
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).as_secs_f64() * 1000.0 / (w[1].0 - w[0].0) as f64)
        .collect();
    intervals.sort_by(f64::total_cmp);
    let at = |q: usize| intervals[(intervals.len() * q / 100).min(intervals.len() - 1)];
    (at(50), at(99))
}

/// Asserts that every height seen was decided in round 0 (no producer was replaced); returns the last one.
async fn assert_round_zero(net: &Testnet, seen: &[(u64, Instant)]) -> u64 {
    let (first, last) = (seen[0].0, seen[seen.len() - 1].0);
    for height in first.max(1)..=last {
        let commit = net
            .call(1, "metis_commit", serde_json::json!([height]))
            .await
            .expect("metis_commit");
        assert_eq!(commit["round"], 0, "height {height} needed a later round: {commit}");
    }
    last
}

/// What one attacking client saw (a batch counts once, by the first kind of answer it holds).
#[derive(Default)]
struct Answers {
    sent: u64,
    timed_out: u64,
    refused_per_address: u64,
    rate_limited: u64,
    busy: u64,
    other: Vec<String>,
}

/// Sends `body` to `url` again and again until `stop`, from a client bound to `from`; sorts the answers.
async fn hammer(
    url: String,
    from: std::net::IpAddr,
    body: serde_json::Value,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Answers {
    let client = reqwest::Client::builder().local_address(from).build().expect("client");
    let mut a = Answers::default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        a.sent += 1;
        let text = match client
            .post(&url)
            .json(&body)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        if text.contains("execution aborted (timeout = 250ms)") {
            a.timed_out += 1;
        } else if text.contains("rate limit exceeded") {
            a.rate_limited += 1;
        } else if text.contains("too many heavy requests") {
            a.refused_per_address += 1;
        } else if text.contains("server busy") {
            a.busy += 1;
        } else if !text.contains("\"result\"") && a.other.len() < 4 {
            a.other.push(text.chars().take(200).collect());
        }
        // A refusal comes back at once; the pause keeps the attackers from measuring their own loop on two cores.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a
}

/// On a network with a 300M gas limit, 64 endless eth_calls (a JUMP loop given by a state override, at the 50M
/// gas cap) from 8 client addresses, and batches of 1,000 eth_getLogs over the whole chain from 4 more, sent to
/// node 0 again as soon as they are answered for 20 s: the calls run on the node's few call threads, each stops
/// at its time limit, an address past its share is refused at once; batches of 1,000 eth_blockNumber from two
/// more addresses are cut to each address's rate; and the node keeps the chain's pace (block interval p99 under
/// twice the block time, every height decided in round 0), its cheap methods answer fast, and a transfer sent to
/// it lands everywhere. Node 0's time
/// limit is 250 ms so that it, not the gas cap, stops the loop (50M gas of it take about a second in a debug
/// build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_calls_and_log_scans_do_not_slow_the_chain() {
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _one = exclusive().await;
    let opts = NetOptions {
        gas_limit: 300_000_000,
        ..NetOptions::default()
    };
    let block_time = std::time::Duration::from_millis(opts.block_time_ms);
    let mut net = Testnet::generate("net-calls", opts);
    net.set_config(0, "evm_timeout_ms", "250");
    for i in 0..4 {
        net.start(i, None);
    }
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 3, 60).await;

    let stop = Arc::new(AtomicBool::new(false));
    let looper = "0x00000000000000000000000000000000000c0de5";
    let endless = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [
        {"to": looper}, "latest", {looper: {"code": "0x5b600056"}}
    ]});
    let scans: Vec<_> = (0..1000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_getLogs", "params": [{"fromBlock": "0x0", "toBlock": "latest"}]}))
        .collect();
    let mut attackers = Vec::new();
    for k in 0..64u8 {
        let from = std::net::IpAddr::from([127, 0, 0, 10 + k % 8]);
        attackers.push(tokio::spawn(hammer(
            net.rpc_url(0).to_string(),
            from,
            endless.clone(),
            stop.clone(),
        )));
    }
    for k in 0..4u8 {
        let from = std::net::IpAddr::from([127, 0, 0, 40 + k]);
        attackers.push(tokio::spawn(hammer(
            net.rpc_url(0).to_string(),
            from,
            json!(scans),
            stop.clone(),
        )));
    }
    // And a flood of cheap calls: batches of 1,000 eth_blockNumber from two more addresses.
    let cheap: Vec<_> = (0..1000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []}))
        .collect();
    for k in 0..2u8 {
        let from = std::net::IpAddr::from([127, 0, 0, 50 + k]);
        attackers.push(tokio::spawn(hammer(
            net.rpc_url(0).to_string(),
            from,
            json!(cheap),
            stop.clone(),
        )));
    }

    // Node 0's head, polled every 25 ms: when each height appeared there, and how long the cheap call took.
    let start = Instant::now();
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let mut slowest_poll = std::time::Duration::ZERO;
    let mut transfer = None;
    while start.elapsed() < std::time::Duration::from_secs(20) {
        let t = Instant::now();
        let head = net.head(0).await.expect("node 0 answers eth_blockNumber under attack");
        slowest_poll = slowest_poll.max(t.elapsed());
        if seen.last().is_none_or(|(h, _)| head > *h) {
            seen.push((head, Instant::now()));
        }
        if transfer.is_none() && start.elapsed() > std::time::Duration::from_secs(5) {
            transfer = Some(send_transfers(&net, 0, 0, 0, 1).await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let hashes = transfer.expect("a transfer was sent");
    wait_receipts(&net, &all, &hashes, 30).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Answers::default();
    for a in attackers {
        let a = a.await.expect("attacker");
        total.timed_out += a.timed_out;
        total.refused_per_address += a.refused_per_address;
        total.rate_limited += a.rate_limited;
        total.busy += a.busy;
        total.other.extend(a.other);
    }

    let (p50, p99) = interval_percentiles(&seen);
    eprintln!(
        "under attack: {} heights in 20 s, interval p50 {p50:.0} ms p99 {p99:.0} ms; slowest eth_blockNumber {slowest_poll:?}; \
         calls stopped at the time limit {}, refused per address {}, rate-limited {}, busy {}; other answers {:?}",
        seen.len(),
        total.timed_out,
        total.refused_per_address,
        total.rate_limited,
        total.busy,
        total.other
    );
    assert!(seen.len() >= 11, "only {} heights in 20 s", seen.len());
    assert!(
        p99 < 2.0 * block_time.as_millis() as f64,
        "the chain lost its pace: interval p99 {p99:.0} ms at a block time of {block_time:?}"
    );
    assert!(
        slowest_poll < std::time::Duration::from_secs(1),
        "eth_blockNumber took {slowest_poll:?}"
    );
    assert!(total.timed_out >= 2, "no endless call was stopped at its time limit");
    assert!(total.refused_per_address > 0, "no address was held to its share");
    assert!(total.rate_limited > 0, "no address was held to its rate");
    assert!(total.other.is_empty(), "unexpected answers: {:?}", total.other);
    let h = net.head(0).await.unwrap();
    net.assert_same_chain(&all, h.min(net.head(3).await.unwrap())).await;
    assert_round_zero(&net, &seen).await;
}

/// A libp2p peer that is neither in a node's `p2p.peers` nor a sequencer in the ledger (a real `metis-seq node`
/// with its own key, listing the four as its peers) is refused by all four at its first message: it never gets
/// a block, and the four go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_libp2p_port_gets_nothing() {
    let _one = exclusive().await;
    let mut net = Testnet::generate(
        "net-stranger",
        NetOptions {
            standby: 1,
            ..NetOptions::default()
        },
    );
    for i in 0..4 {
        net.drop_p2p_peer(i, 4);
        net.drop_gossip_peer(i, 4);
    }
    for i in 0..5 {
        net.start(i, None);
    }
    let all: Vec<usize> = (0..4).collect();
    let hashes = send_transfers(&net, 0, 0, 0, 1).await;
    wait_receipts(&net, &all, &hashes, 60).await;
    net.wait_height(&all, 8, 60).await;
    assert_eq!(net.head(4).await, Some(0), "the stranger got blocks");
    // Refused, not merely never reached: the four saw it and turned it away.
    crate::common::wait_for(30, "the four to log the stranger's refusal", || async {
        (0..4)
            .all(|i| {
                std::fs::read_to_string(net.log_path(i))
                    .unwrap_or_default()
                    .contains("Rejecting connection from non-persistent peer")
            })
            .then_some(())
    })
    .await;
    net.assert_same_chain(&all, 8).await;
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// Resident memory each honest node may reach under the flood (a debug build that uses about 60-100 MiB).
const FLOOD_RSS_CEILING_MIB: f64 = 400.0;

/// A validator (node 3) publishes 100 signed proposal streams a second for the next height, at rounds 0, 1, 2
/// ... 9,999, each with a 64 KiB junk block; a stranger with a fresh key (node 4, in nobody's peers nor in the
/// ledger) does the same. For 20 s: blocks keep their pace (median interval within 25% of the block time, at
/// least 15 heights, no interval of three block times), every
/// height is decided in round 0 (no producer is replaced), and the honest nodes' memory stays under a fixed
/// ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_from_a_validator_and_a_stranger_changes_nothing() {
    let _one = exclusive().await;
    let opts = NetOptions {
        standby: 1,
        ..NetOptions::default()
    };
    let block_time_ms = opts.block_time_ms as f64;
    let mut net = Testnet::generate("net-flood", opts);
    for i in 0..4 {
        net.drop_p2p_peer(i, 4);
        net.drop_gossip_peer(i, 4);
    }
    for i in 0..3 {
        net.start(i, None);
    }
    net.start(3, Some("stream-flood@3"));
    net.start(4, Some("stream-flood"));
    let honest = [0usize, 1, 2];
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 4, 60).await;
    let pids: Vec<u32> = honest.iter().map(|&i| net.pid(i).expect("running")).collect();
    let before: Vec<f64> = pids.iter().map(|&p| rss_mib(p)).collect();

    let start = Instant::now();
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let mut most = before.clone();
    while start.elapsed() < std::time::Duration::from_secs(20) {
        let head = net.head(0).await.expect("node 0 answers");
        if seen.last().is_none_or(|(h, _)| head > *h) {
            seen.push((head, Instant::now()));
        }
        for (m, &p) in most.iter_mut().zip(&pids) {
            *m = m.max(rss_mib(p));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let hashes = send_transfers(&net, 0, 0, 0, 1).await;
    wait_receipts(&net, &all, &hashes, 30).await;

    let (p50, p99) = interval_percentiles(&seen);
    let log3 = std::fs::read_to_string(net.log_path(3)).unwrap_or_default();
    eprintln!(
        "stream flood: {} heights in 20 s, interval p50 {p50:.0} ms, p99 {p99:.0} ms; honest nodes' memory \
         {before:.0?} MiB before, at most {most:.0?} MiB during",
        seen.len()
    );
    assert!(log3.contains("FAULT INJECTION"), "node 3 did not run the flood");
    // The pace over the window, and no gap a lost round would leave. With ~20 intervals p99 is the single
    // slowest one (2.25 s in round 0 once in CI, when consensus went by gossipsub and every honest node relayed
    // the flood); a replaced producer shows in the round-0 check below, whatever the time.
    assert!(seen.len() >= 15, "only {} heights in 20 s", seen.len());
    assert!(
        p50 < 1.25 * block_time_ms,
        "the chain lost its pace: interval p50 {p50:.0} ms"
    );
    assert!(
        p99 < 3.0 * block_time_ms,
        "a gap in the chain: interval p99 {p99:.0} ms"
    );
    for (i, m) in most.iter().enumerate() {
        assert!(*m < FLOOD_RSS_CEILING_MIB, "node {i} reached {m:.0} MiB");
    }
    let last = assert_round_zero(&net, &seen).await;
    assert_eq!(net.head(4).await, Some(0), "the stranger got blocks");
    net.assert_same_chain(&all, last).await;
}
