//! `metis-seq`: the one binary of the sequencer pool. Subcommands are added as the parts land.

mod dev;
mod devnet;
mod gov_cmd;
mod keys_cmd;
mod l1_cmd;
mod l1_tx;
mod node_cmd;
mod replica;
mod status;
mod testnet_l1;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "metis-seq", version, about = "Decentralized sequencer pool for an EVM L2")]
struct Cli {
    /// Log lines as text, or as one JSON object per line (for log shippers; spans such as height, epoch and
    /// peer come as fields).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "METIS_SEQ_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Operator commands against the L1 contracts (deploy, register the group key).
    #[command(subcommand)]
    L1(l1_cmd::L1Command),
    /// The pool's governance on L1: propose, vote, queue, execute, list, show, delegate.
    #[command(subcommand)]
    Gov(gov_cmd::GovCommand),
    /// A single-node dev chain (blocks on a timer or on demand, prefunded accounts), like anvil.
    Dev(dev::DevArgs),
    /// A sequencer's long-term keys (identity, DKG, L1 signer), encrypted at rest.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Create a sequencer node's home: keys (encrypted) and config.toml.
    Init(node_cmd::InitArgs),
    /// Run a sequencer node (consensus, execution, RPC, gossip) from its config.
    Node(node_cmd::NodeArgs),
    /// A local devnet in one command: anvil (or --l1-rpc), contracts, N sequencers locked on L1, their nodes,
    /// the DKG and the group key on L1; `devnet stop --dir DIR` stops it. Writes DIR/devnet.json.
    Devnet(devnet::DevnetArgs),
    /// Generate a local N-node network (keys, genesis, configs) for development and tests.
    Testnet(node_cmd::TestnetArgs),
    /// Rebuild the L2 chain from L1 alone (batches, signatures, re-execution) and serve it read-only.
    Replica(replica::ReplicaArgs),
    /// Load generators (throughput and latency of any Ethereum JSON-RPC node).
    #[command(subcommand)]
    Bench(metis_bench::BenchCommand),
    /// The pool at a glance from one node's API: head, epoch, producer, validators, batches on L1, the key.
    Status(status::StatusArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The devnet shows its own progress; its libraries' info lines would drown it.
    let default_filter = if matches!(cli.command, Command::Devnet(_)) {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole context chain on one line; no backtrace for operator errors.
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. A cause the text so far already says is left out: many errors print
/// their source in their own message, and the chain would repeat it.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::L1(cmd) => l1_cmd::run(cmd).await,
        Command::Gov(cmd) => gov_cmd::run(cmd).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Bench(cmd) => metis_bench::run(cmd).await,
        Command::Keys(cmd) => keys_cmd::run(cmd),
        Command::Init(args) => node_cmd::run_init(args),
        Command::Node(args) => node_cmd::run_node(args).await,
        Command::Testnet(args) => node_cmd::run_testnet(args).await,
        Command::Devnet(args) => devnet::run(args).await,
        Command::Replica(args) => replica::run(args).await,
        Command::Status(args) => status::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the chain: {0}")]
    struct Outer(#[from] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("database /d/chain.redb: not a redb file")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("bad config")]
    struct Plain(#[source] Inner);

    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::from(Outer(Inner)).context("starting node node3");
        assert_eq!(
            report(&e),
            "starting node node3: opening the chain: database /d/chain.redb: not a redb file"
        );
        // A cause its parent does not print is still shown.
        let e = anyhow::Error::from(Plain(Inner));
        assert_eq!(report(&e), "bad config: database /d/chain.redb: not a redb file");
    }
}
