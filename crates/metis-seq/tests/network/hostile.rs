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
