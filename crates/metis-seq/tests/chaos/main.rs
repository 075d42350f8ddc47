//! Chaos on real networks: a 4-sequencer devnet with each node in a network namespace of its own (`--netns`),
//! a steady load through every node, and faults on the links between them while the nodes keep running. After
//! every round: no fork, no accepted transaction lost, the same ledger everywhere, L1's batches equal to the
//! nodes', no evidence against anyone, and the time the chain took to be back at its pace.
//!
//! `cargo test --test chaos` runs a short selection (CI). `make chaos` runs every fault, `ROUNDS=N` rounds in a
//! random order with random hold times from a printed seed (`SEED=S` repeats a run), and prints the table.

mod checks;
mod load;
mod reorg;
mod rounds;

use metis_testkit::devnet::{serial, Devnet};
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rounds::Fault;
use std::time::Duration;

const NODES: usize = 4;

struct Plan {
    seed: u64,
    rounds: Vec<(Fault, Duration)>,
}

/// From the environment: `METIS_CHAOS_ROUNDS` (0 or unset: the CI selection; "all": each fault once),
/// `METIS_CHAOS_FAULTS` (only these faults, by `Fault::key`, comma-separated), `METIS_CHAOS_SEED`,
/// `METIS_CHAOS_HOLD_SECS` (how long a fault lasts; random within ±1/3 of it in a random run).
fn plan() -> Plan {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let only: Option<Vec<Fault>> = var("METIS_CHAOS_FAULTS").map(|v| {
        v.split(',')
            .map(|k| {
                let k = k.trim();
                *Fault::all()
                    .iter()
                    .find(|f| f.key() == k)
                    .unwrap_or_else(|| panic!("METIS_CHAOS_FAULTS: no fault {k:?}; the faults: {}", keys()))
            })
            .collect()
    });
    let rounds: usize = var("METIS_CHAOS_ROUNDS").map_or(0, |v| match v.as_str() {
        "all" => only.as_ref().map_or(Fault::all().len(), Vec::len),
        n => n.parse().expect("METIS_CHAOS_ROUNDS: a number or \"all\""),
    });
    let seed = var("METIS_CHAOS_SEED").map_or_else(rand::random::<u64>, |v| v.parse().expect("METIS_CHAOS_SEED"));
    let hold = var("METIS_CHAOS_HOLD_SECS").map_or(if rounds == 0 { 15 } else { 30 }, |v| {
        v.parse().expect("METIS_CHAOS_HOLD_SECS")
    });
    let rounds = match (&only, rounds) {
        (Some(o), 0) => o.len(),
        _ => rounds,
    };
    if rounds == 0 {
        let h = Duration::from_secs(hold);
        return Plan {
            seed,
            // The rounds that leave no node behind on its votes first: each round after one that does waits
            // until the downtime window forgot it.
            rounds: vec![
                (Fault::L1Reorg, h),
                (Fault::SplitWhileSigning, h),
                (Fault::SlowProducer, h),
                (Fault::IsolateProducer, h),
                (Fault::DiskFull, h),
            ],
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let all = only.as_deref().unwrap_or(Fault::all());
    let mut order = Vec::new();
    while order.len() < rounds {
        // Every fault once per pass, each pass in its own order.
        let mut pass = all.to_vec();
        for k in (1..pass.len()).rev() {
            pass.swap(k, rng.random_range(0..=k));
        }
        order.extend(pass);
    }
    order.truncate(rounds);
    let lo = hold.saturating_mul(2) / 3;
    let hi = hold.saturating_mul(4) / 3;
    Plan {
        seed,
        rounds: order
            .into_iter()
            .map(|f| {
                let d = Duration::from_secs(rng.random_range(lo.max(1)..=hi.max(1)));
                // L1 is down for a minute at least: longer than a batch's posting turn and several L1 blocks.
                (
                    f,
                    if f == Fault::L1Down {
                        d.max(Duration::from_secs(60))
                    } else {
                        d
                    },
                )
            })
            .collect(),
    }
}

fn keys() -> String {
    Fault::all().iter().map(Fault::key).collect::<Vec<_>>().join(", ")
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_rounds_on_real_networks_lose_nothing_and_never_fork() {
    let _one = serial().await;
    // Real namespaces when this machine can make them; otherwise (or with METIS_CHAOS_LOOPBACK=1) every node on
    // loopback with the fault proxies cutting the links.
    let netns = if std::env::var("METIS_CHAOS_LOOPBACK").is_ok_and(|v| v == "1") {
        println!("[chaos] METIS_CHAOS_LOOPBACK=1: the nodes on loopback, partitions by the fault proxies");
        false
    } else {
        match metis_testkit::links::netns_available() {
            Ok(()) => true,
            Err(e) => {
                println!(
                    "[chaos] no network namespaces here ({e}): the nodes on loopback, partitions by the fault proxies"
                );
                false
            }
        }
    };
    let plan = plan();
    println!(
        "[chaos] seed {} ({} rounds); again with METIS_CHAOS_SEED={} METIS_CHAOS_ROUNDS={}",
        plan.seed,
        plan.rounds.len(),
        plan.seed,
        plan.rounds.len()
    );
    let args: &[&str] = if netns {
        &["--netns", "--epoch-length", "10"]
    } else {
        &["--epoch-length", "10"]
    };
    let mut net = Devnet::start("chaos", 10, args).await;
    // Every link through a fault proxy (delay and loss per link); partitions are routes between namespaces, or
    // the proxies' cuts on loopback.
    let links = net.proxy_links().await;
    let load = load::Load::start(&net, NODES, Duration::from_millis(250)).await;
    let mut seen = checks::Seen::default();
    let mut rows = Vec::new();
    for (k, (fault, hold)) in plan.rounds.iter().enumerate() {
        println!("[chaos] round {}: {} for {} s", k + 1, fault.name(), hold.as_secs());
        let row = rounds::run(&mut net, &links, &load, &mut seen, *fault, *hold).await;
        println!("[chaos]   {}", row.line());
        rows.push(row);
    }
    let unanswered = load.unanswered();
    load.stop().await;
    println!("\n{}", rounds::table(&rows));
    println!(
        "[chaos] seed {}; {} sends went unanswered and were sent again",
        plan.seed, unanswered
    );
    let failed: Vec<String> = rows.iter().filter(|r| !r.ok()).map(rounds::Row::line).collect();
    assert!(failed.is_empty(), "rounds failed:\n{}", failed.join("\n"));
}
