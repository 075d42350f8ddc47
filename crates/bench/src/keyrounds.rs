//! `metis-seq bench keyrounds`: the pool key's DKG and a one-leaves reshare among n sequencers, in one process,
//! carried in vote extensions as the chain carries them ([`metis_keyrounds::scale`]); prints message sizes against
//! the extension caps and each node's compute.

use anyhow::{Context, Result};
use clap::Args;
use metis_keyrounds::scale::{dkg_then_reshare, RoundFigures};
use metis_keyrounds::{extension_cap, MAX_EXTENSION_BYTES};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct KeyRoundArgs {
    /// Numbers of sequencers (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "4,10,32,64,100")]
    sizes: Vec<usize>,
    /// Heights per phase (deals, acks, logs), as the ledger's `key_phase_blocks`.
    #[arg(long, default_value_t = 3)]
    phase_blocks: u64,
    /// Also write one JSON object per round to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn kib(b: usize) -> String {
    format!("{:.1}", b as f64 / 1024.0)
}

pub fn run(a: KeyRoundArgs) -> Result<()> {
    println!(
        "extension cap: {} KiB for up to 32 validators, less above (all of one certificate's within 8 MiB)",
        MAX_EXTENSION_BYTES / 1024
    );
    println!(
        "{:>4} {:>8} {:>7} {:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>11} {:>8} {:>10} {:>11} {:>11} {:>9}",
        "n",
        "round",
        "players",
        "quorum",
        "deal KiB",
        "ack B",
        "log KiB",
        "ext KiB",
        "cap KiB",
        "ext msgs",
        "block KiB",
        "spilled",
        "deal ms",
        "node ms",
        "height ms",
        "wall s"
    );
    let mut json = match &a.json {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => None,
    };
    for &n in &a.sizes {
        let started = Instant::now();
        let rounds = dkg_then_reshare(n, a.phase_blocks, n as u64).with_context(|| format!("{n} sequencers"))?;
        let wall = started.elapsed().as_secs_f64();
        for (name, f) in ["dkg", "reshare"].iter().zip(rounds.iter()) {
            print_row(n, name, f, wall);
            if let Some(out) = json.as_mut() {
                use std::io::Write as _;
                let v = serde_json::json!({
                    "n": n, "round": name, "players": f.players, "quorum": f.quorum,
                    "deal_bytes": f.deal_bytes, "ack_bytes": f.ack_bytes, "log_bytes": f.log_bytes,
                    "ext_bytes": f.ext_bytes, "ext_cap": extension_cap(n), "ext_msgs": f.ext_msgs,
                    "block_ext_bytes": f.block_ext_bytes, "spilled_heights": f.spilled_heights,
                    "deal_ms": f.deal_compute.as_secs_f64() * 1e3,
                    "node_ms_max": f.node_compute_max.as_secs_f64() * 1e3,
                    "node_ms_p50": f.node_compute_p50.as_secs_f64() * 1e3,
                    "height_ms_max": f.height_compute_max.as_secs_f64() * 1e3,
                    "wall_s": wall,
                });
                writeln!(out, "{v}")?;
            }
        }
    }
    println!(
        "deal ms: the slowest dealer's dealing; node ms: one node's whole compute over the round (p50 / max); \
         height ms: the most one node spent on one block's messages; wall: both rounds, all n nodes, this machine"
    );
    Ok(())
}

fn print_row(n: usize, name: &str, f: &RoundFigures, wall: f64) {
    println!(
        "{:>4} {:>8} {:>7} {:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>11} {:>8} {:>10.1} {:>11} {:>11.1} {:>9.1}",
        n,
        name,
        f.players,
        f.quorum,
        kib(f.deal_bytes),
        f.ack_bytes,
        kib(f.log_bytes),
        kib(f.ext_bytes),
        kib(extension_cap(n)),
        f.ext_msgs,
        kib(f.block_ext_bytes),
        f.spilled_heights,
        f.deal_compute.as_secs_f64() * 1e3,
        format!(
            "{:.0}/{:.0}",
            f.node_compute_p50.as_secs_f64() * 1e3,
            f.node_compute_max.as_secs_f64() * 1e3
        ),
        f.height_compute_max.as_secs_f64() * 1e3,
        wall
    );
}
