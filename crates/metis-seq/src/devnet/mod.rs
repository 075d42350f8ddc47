//! `metis-seq devnet`: a local L1 and N sequencers in one command (see `start`), and `devnet stop`.

mod manifest;
mod netns;
mod procs;
mod start;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use manifest::Manifest;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevnetArgs {
    #[command(subcommand)]
    command: Option<DevnetCommand>,
    #[command(flatten)]
    start: start::StartArgs,
}

#[derive(Subcommand)]
enum DevnetCommand {
    /// Stop the devnet running in DIR (its nodes, then its anvil) and wait until every process is gone.
    Stop {
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
    },
}

pub async fn run(args: DevnetArgs) -> Result<()> {
    match args.command {
        None => start::run(args.start).await,
        Some(DevnetCommand::Stop { dir }) => stop(&dir),
    }
}

fn stop(dir: &std::path::Path) -> Result<()> {
    let t0 = Instant::now();
    let m = Manifest::load(dir).with_context(|| format!("no devnet in {}", dir.display()))?;
    if let Some(pid) = m.supervisor_pid.filter(|p| procs::supervisor_alive(*p)) {
        procs::signal_pid(pid, libc::SIGTERM);
        // The supervisor stops nodes (15 s grace) and then anvil (15 s grace).
        let deadline = Instant::now() + Duration::from_secs(40);
        while procs::supervisor_alive(pid) {
            if Instant::now() > deadline {
                procs::signal_pid(pid, libc::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Whatever is left (a supervisor killed before it could stop them): the recorded pids.
    let m = Manifest::load(dir)?;
    let mut pids = m.node_pids();
    pids.extend(m.l1.anvil_pid.map(|p| (p, "anvil".to_string())));
    let refs: Vec<(u32, &str)> = pids.iter().map(|(p, n)| (*p, n.as_str())).collect();
    let left = procs::stop_pids(&refs, Duration::from_secs(15));
    if m.options.netns {
        netns::Netns::for_base_port(m.options.base_port)
            .teardown()
            .context("removing the devnet's network namespaces")?;
    }
    if left > 0 || m.state != "stopped" {
        let mut m = m;
        m.state = "stopped".into();
        m.clear_pids();
        m.save(dir)?;
    }
    println!(
        "devnet in {} stopped in {:.1} s{}",
        dir.display(),
        t0.elapsed().as_secs_f64(),
        if left > 0 {
            format!(" ({left} leftover processes stopped)")
        } else {
            String::new()
        }
    );
    Ok(())
}
