//! One round: a fault held for a while under the load, healed, the time until the chain is back at its pace,
//! then every invariant. A round never panics: what failed goes into its row, so the table shows every round.

use crate::checks::{self, Seen};
use crate::load::Load;
use crate::reorg;
use crate::NODES;
use metis_testkit::devnet::Devnet;
use metis_testkit::faultproxy::LinkFault;
use metis_testkit::links::ProxiedLinks;
use metis_testkit::testnet::skewed_clock;
use std::time::{Duration, Instant};

/// After a heal, every node is past the highest head at the heal within this, or the round fails.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// A 2-2 split halts the chain; after the heal it decides again within this (the bound).
const SPLIT_RESUME_BOUND: Duration = Duration::from_secs(10);
/// Every accepted transaction is in a block within this after the round's heal and recovery.
const INCLUSION_BOUND: Duration = Duration::from_secs(60);
/// L1's batches cover the chain up to the heal (less two batches in the making) within this after the recovery.
const BATCH_BOUND: Duration = Duration::from_secs(90);
/// The devnet's batch length (its default `--batch-blocks`).
const BATCH_BLOCKS: u64 = 10;
/// Before a round, the downtime window forgets the last one within this (100 commits at 1 s blocks).
const SETTLE_BOUND: Duration = Duration::from_secs(150);
/// Before a round, every sequencer is connected to every other and at the head within this (a persistent peer
/// is redialled within about 20 s).
const WHOLE_BOUND: Duration = Duration::from_secs(60);
/// How far the clock rounds move a node's wall clock.
const SKEW: &str = "20s";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The producer cut off from the other sequencers: they fail over; it catches up after the heal.
    IsolateProducer,
    /// A sequencer that is not producing cut off from the others.
    IsolateFollower,
    /// Two against two (the producer on one side): no side has more than 2/3, so no block is decided.
    Split,
    /// Every sequencer cut off from L1: the chain goes on; batches wait and are posted after the heal.
    L1Down,
    /// The producer restarted with its wall clock 20 s ahead (libfaketime): its blocks are from the future
    /// for the others, who decide without it; restarted with the right clock at the heal.
    ClockFast,
    /// The producer restarted with its wall clock 20 s behind.
    ClockSlow,
    /// The producer behind a slow, lossy link: 300 ms each way and 5% of its chunks lost on every link.
    SlowProducer,
    /// Every link 100 ms each way.
    AllSlow,
    /// A 2-2 split the moment a batch's last block is decided, while the pool signs it.
    SplitWhileSigning,
    /// A follower's data disk (a small tmpfs) filled up: it must stop with a clear error; restarted once space
    /// is freed, it catches up with nothing lost.
    DiskFull,
    /// An L1 reorg below the confirmation depth that moves a relock to another block (`reorg`).
    L1Reorg,
}

impl Fault {
    pub fn all() -> &'static [Fault] {
        &[
            Fault::IsolateProducer,
            Fault::IsolateFollower,
            Fault::Split,
            Fault::L1Down,
            Fault::ClockFast,
            Fault::ClockSlow,
            Fault::SlowProducer,
            Fault::AllSlow,
            Fault::SplitWhileSigning,
            Fault::DiskFull,
            Fault::L1Reorg,
        ]
    }

    /// The short name `METIS_CHAOS_FAULTS` takes.
    pub fn key(&self) -> &'static str {
        match self {
            Fault::IsolateProducer => "isolate-producer",
            Fault::IsolateFollower => "isolate-follower",
            Fault::Split => "split",
            Fault::L1Down => "l1-down",
            Fault::ClockFast => "clock-fast",
            Fault::ClockSlow => "clock-slow",
            Fault::SlowProducer => "slow-producer",
            Fault::AllSlow => "all-slow",
            Fault::SplitWhileSigning => "split-while-signing",
            Fault::DiskFull => "disk-full",
            Fault::L1Reorg => "l1-reorg",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fault::IsolateProducer => "isolate the producer",
            Fault::IsolateFollower => "isolate a follower",
            Fault::Split => "2-2 split",
            Fault::L1Down => "L1 unreachable",
            Fault::ClockFast => "producer's clock +20 s",
            Fault::ClockSlow => "producer's clock -20 s",
            Fault::SlowProducer => "producer 300 ms + 5% loss",
            Fault::AllSlow => "all links 100 ms",
            Fault::SplitWhileSigning => "2-2 split while a batch is signed",
            Fault::DiskFull => "a follower's disk full",
            Fault::L1Reorg => "L1 reorg below depth moves a relock",
        }
    }
}

pub struct Row {
    fault: Fault,
    hold: Duration,
    accepted: usize,
    lost: usize,
    from: u64,
    to: u64,
    /// From the heal until every node was past the highest head at the heal.
    recovery: Option<Duration>,
    /// What the fault did while it held (blocks decided on each side).
    during: String,
    failures: Vec<String>,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    fn recovery_text(&self) -> String {
        self.recovery
            .map_or("never".to_string(), |r| format!("{:.1} s", r.as_secs_f64()))
    }

    pub fn line(&self) -> String {
        format!(
            "{}: held {} s, {} accepted, {} lost, heights {}..{}, back in {}; {}; {}",
            self.fault.name(),
            self.hold.as_secs(),
            self.accepted,
            self.lost,
            self.from,
            self.to,
            self.recovery_text(),
            self.during,
            if self.ok() {
                "all invariants hold".to_string()
            } else {
                format!("FAILED: {}", self.failures.join("; "))
            }
        )
    }
}

/// The rounds as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| # | fault | held | txs accepted | lost | heights | back at pace after heal | while held | invariants |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (k, r) in rows.iter().enumerate() {
        t.push_str(&format!(
            "| {} | {} | {} s | {} | {} | {}..{} | {} | {} | {} |\n",
            k + 1,
            r.fault.name(),
            r.hold.as_secs(),
            r.accepted,
            r.lost,
            r.from,
            r.to,
            r.recovery_text(),
            r.during.replace('|', "\\|"),
            if r.ok() {
                "hold".to_string()
            } else {
                r.failures.join("; ").replace('|', "\\|")
            }
        ));
    }
    t
}

async fn heads(net: &Devnet) -> Vec<u64> {
    let mut hs = Vec::new();
    for i in 0..NODES {
        hs.push(net.head(i).await.unwrap_or(0));
    }
    hs
}

fn span(hs: &[u64], side: &[usize]) -> (u64, u64) {
    let v: Vec<u64> = side.iter().map(|i| hs[*i]).collect();
    (
        v.iter().copied().min().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    )
}

pub async fn run(
    net: &mut Devnet,
    links: &ProxiedLinks,
    load: &Load,
    seen: &mut Seen,
    fault: Fault,
    hold: Duration,
) -> Row {
    let all: Vec<usize> = (0..NODES).collect();
    let mut failures = Vec::new();
    checks::settled(net, SETTLE_BOUND).await;
    if let Err(e) = checks::whole(net, NODES, WHOLE_BOUND).await {
        failures.push(e);
    }
    let accepted_before = load.accepted().len();
    let from = heads(net).await.into_iter().max().unwrap_or(0);
    let (producer, _) = net.producer_node().await;
    // a: the side the fault is about (the isolated node, or the producer's half); b: the rest.
    let a: Vec<usize> = match fault {
        Fault::IsolateProducer | Fault::ClockFast | Fault::ClockSlow | Fault::SlowProducer => vec![producer],
        Fault::IsolateFollower | Fault::DiskFull => vec![(producer + 1) % NODES],
        Fault::Split | Fault::SplitWhileSigning => vec![producer, (producer + 1) % NODES],
        Fault::L1Down | Fault::AllSlow | Fault::L1Reorg => all.clone(),
    };
    let b: Vec<usize> = all.iter().copied().filter(|i| !a.contains(i)).collect();
    // The disk: a tmpfs with room for a minute of blocks, set up (the node restarted on it) before the fault.
    let disk = if fault == Fault::DiskFull {
        let data = net.data_on_tmpfs(a[0], 32);
        let top = net.head(b[0]).await.unwrap_or(0);
        let caught_up = async {
            while net.head(a[0]).await.unwrap_or(0) < top {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(60), caught_up).await.is_err() {
            failures.push(format!("node {} did not catch up on its tmpfs", a[0]));
        }
        Some(data)
    } else {
        None
    };
    let log_before = std::fs::metadata(net.log_path(a[0])).map(|m| m.len()).unwrap_or(0);
    if fault == Fault::SplitWhileSigning {
        // A batch is cut at its last block and signed over the next ones: split right after that block.
        let mut last = net.head(producer).await.unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let h = net.head(producer).await.unwrap_or(0);
            if h != last && h % BATCH_BLOCKS == 0 {
                break;
            }
            last = h;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut moved = None;
    match fault {
        Fault::IsolateProducer | Fault::IsolateFollower | Fault::Split | Fault::SplitWhileSigning => {
            links.cut(net, &a, &b)
        }
        Fault::L1Down => links.cut_l1(net, &all),
        Fault::ClockFast => net.respawn(producer, &skewed_clock(&format!("+{SKEW}"))),
        Fault::ClockSlow => net.respawn(producer, &skewed_clock(&format!("-{SKEW}"))),
        Fault::SlowProducer => links.set_node(
            producer,
            LinkFault {
                delay: Duration::from_millis(300),
                loss: 0.05,
            },
        ),
        Fault::AllSlow => links.set_all(LinkFault {
            delay: Duration::from_millis(100),
            loss: 0.0,
        }),
        Fault::DiskFull => {
            if let Some(d) = &disk {
                fill(&d.join("chaos-fill"));
            }
        }
        Fault::L1Reorg => match reorg::relock_then_reorg(net, NODES - 1).await {
            Ok(m) => moved = Some(m),
            Err(e) => failures.push(format!("the reorg could not be staged: {e}")),
        },
    }
    let cut_at = Instant::now();
    let at_cut = heads(net).await;
    // Held for `hold`, the heads read as it goes (a halt must hold all along, not only at the end).
    let mut highest = at_cut.clone();
    while cut_at.elapsed() < hold {
        tokio::time::sleep(Duration::from_millis(500).min(hold.saturating_sub(cut_at.elapsed()))).await;
        for (h, now) in highest.iter_mut().zip(heads(net).await) {
            *h = (*h).max(now);
        }
    }
    let at_heal = heads(net).await;
    // Heads and links as the fault ends: what a stalled round is explained by.
    let view_at_heal = checks::network_view(net, NODES).await;
    // What the node said when its disk was full.
    let mut said: Option<String> = None;
    match fault {
        Fault::DiskFull => {
            match net.node_exited(a[0]) {
                Some(status) => {
                    let log = std::fs::read(net.log_path(a[0])).unwrap_or_default();
                    let from = usize::try_from(log_before).unwrap_or(0).min(log.len());
                    let text = String::from_utf8_lossy(&log[from..]).to_string();
                    match text.lines().rev().find(|l| l.contains("No space left")) {
                        Some(line) => said = Some(tail_chars(line, 160)),
                        None => failures.push(format!(
                            "node {} stopped ({status}) without saying the disk is full",
                            a[0]
                        )),
                    }
                }
                None => failures.push(format!("node {} kept running on a full disk", a[0])),
            }
            if let Some(d) = &disk {
                let _ = std::fs::remove_file(d.join("chaos-fill"));
            }
            net.respawn(a[0], &[]);
        }
        Fault::ClockFast | Fault::ClockSlow => net.respawn(producer, &[]),
        Fault::SlowProducer | Fault::AllSlow => links.set_all(LinkFault::default()),
        _ => links.heal(net),
    }
    let healed = Instant::now();
    let (a_lo, a_hi) = (span(&at_cut, &a), span(&at_heal, &a));
    let (b_lo, b_hi) = (span(&at_cut, &b), span(&at_heal, &b));
    let mut during = format!("side {a:?} {}->{}, side {b:?} {}->{}", a_lo.1, a_hi.1, b_lo.1, b_hi.1);
    if let Some(s) = said {
        during.push_str(&format!("; node {} stopped: \"...{s}\"", a[0]));
    }
    match fault {
        Fault::IsolateProducer
        | Fault::IsolateFollower
        | Fault::L1Reorg
        | Fault::DiskFull
        | Fault::ClockFast
        | Fault::ClockSlow
        | Fault::SlowProducer
        | Fault::L1Down
        | Fault::AllSlow => {
            // The side with more than 2/3 of the stake (three of four here, or all) goes on deciding, a block a second.
            let (lo, hi, who) = match fault {
                Fault::L1Down | Fault::AllSlow | Fault::L1Reorg => (a_lo.1, a_hi.0, "the chain"),
                _ => (b_lo.1, b_hi.0, "the other three"),
            };
            let need = hold.as_secs() / 3;
            if hi < lo + need {
                failures.push(format!(
                    "{who} decided too little while it held ({lo} -> {hi}, at least {need} expected; at the heal: \
                     {view_at_heal})"
                ));
            }
        }
        Fault::Split | Fault::SplitWhileSigning => {
            // One block may have been in flight at the cut; after it, nothing.
            let top = highest.iter().copied().max().unwrap_or(0);
            let before = at_cut.iter().copied().max().unwrap_or(0);
            if top > before + 1 {
                failures.push(format!("blocks were decided during the split: {before} -> {top}"));
            }
        }
    }
    // Back at its pace: every node past the highest head at the heal by two blocks.
    let target = at_heal.iter().copied().max().unwrap_or(0) + 2;
    let mut recovery = None;
    while healed.elapsed() < RECOVERY_BOUND + Duration::from_secs(30) {
        if heads(net).await.iter().all(|h| *h >= target) {
            recovery = Some(healed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bound = match fault {
        Fault::Split | Fault::SplitWhileSigning => SPLIT_RESUME_BOUND,
        _ => RECOVERY_BOUND,
    };
    match recovery {
        None => failures.push(format!(
            "not every node at height {target} {} s after the heal",
            healed.elapsed().as_secs()
        )),
        Some(r) if r > bound => failures.push(format!(
            "back after {:.1} s, above the {} s bound",
            r.as_secs_f64(),
            bound.as_secs()
        )),
        Some(_) => {}
    }
    let sent = load.accepted();
    let (fork, lost) = checks::no_fork_and_nothing_lost(net, &all, &sent, seen, INCLUSION_BOUND).await;
    if let Err(e) = fork {
        failures.push(e);
    }
    let new_lost: Vec<_> = lost.iter().filter(|s| seen.lost.insert(s.hash)).collect();
    if !new_lost.is_empty() {
        let first = new_lost[0];
        failures.push(format!(
            "{} accepted transactions in no block {} s later (first {} through node {}, {:.0} s ago)",
            new_lost.len(),
            INCLUSION_BOUND.as_secs(),
            first.hash,
            first.node,
            first.at.elapsed().as_secs_f64()
        ));
    }
    if let Some(m) = &moved {
        match reorg::applied_once(net, &all, m).await {
            Ok(s) => during.push_str(&format!("; {s}")),
            Err(e) => failures.push(e),
        }
    }
    let due = target.saturating_sub(2 + 2 * BATCH_BLOCKS);
    for r in [
        checks::batches_cover(net, due, BATCH_BOUND).await,
        checks::same_ledger(net, &all).await,
        checks::batches_match(net, &all, seen).await,
        checks::no_evidence(net, &all).await,
    ] {
        if let Err(e) = r {
            failures.push(e);
        }
    }
    Row {
        fault,
        hold,
        accepted: sent.len().saturating_sub(accepted_before),
        lost: new_lost.len(),
        from,
        to: seen.checked,
        recovery,
        during,
        failures,
    }
}

/// Writes zeros to `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(path) else {
        return;
    };
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// The last `n` characters of `s`.
fn tail_chars(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}
