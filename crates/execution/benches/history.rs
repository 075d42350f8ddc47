//! What the state history costs: commit time and store bytes per block of 10,000 transfers (from 1,000
//! accounts to 10,000 new ones), with `--state-history none` and `full`, on the same blocks.
//! `cargo bench -p metis-execution --bench history` (prints its figures).

mod common;

use alloy_primitives::{Address, U256};
use alloy_signer_local::PrivateKeySigner;
use common::CHAIN;
use metis_execution::{engine::Engine, ChainSpec, RecoveredTx, StateHistory};
use std::time::{Duration, Instant};

const SENDERS: usize = 1_000;
const TXS: usize = 10_000;
const BLOCKS: usize = 6;

fn blocks(keys: &[PrivateKeySigner]) -> Vec<Vec<RecoveredTx>> {
    (0..BLOCKS)
        .map(|b| {
            (0..TXS)
                .map(|i| {
                    let to = Address::from_word(alloy_primitives::keccak256((b * TXS + i).to_be_bytes()));
                    let nonce = (b * (TXS / SENDERS) + i / SENDERS) as u64;
                    common::transfer(&keys[i % SENDERS], nonce, to, 1 + i as u64)
                })
                .collect()
        })
        .collect()
}

/// Commits the blocks on a fresh engine; returns the commit times and the store file's growth.
fn run(spec: &ChainSpec, blocks: &[Vec<RecoveredTx>], history: StateHistory) -> (Vec<Duration>, u64) {
    let dir = std::env::temp_dir().join(format!("metis-bench-history-{history:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut engine = Engine::open_with(&dir, spec.clone(), history).expect("engine");
    let file = dir.join("chain.redb");
    let start_len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let mut times = Vec::new();
    for (i, txs) in blocks.iter().enumerate() {
        let ctx = engine.next_context(1 + i as u64, Address::ZERO);
        let (block, rejected) = engine.build(ctx, txs.clone());
        assert!(rejected.is_empty(), "{rejected:?}");
        let t = Instant::now();
        engine.commit(block).expect("commit");
        times.push(t.elapsed());
    }
    let grown = std::fs::metadata(&file)
        .map(|m| m.len())
        .unwrap_or(0)
        .saturating_sub(start_len);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    (times, grown)
}

fn main() {
    let keys: Vec<PrivateKeySigner> = (0..SENDERS).map(|_| PrivateKeySigner::random()).collect();
    let addrs: Vec<Address> = keys.iter().map(|k| k.address()).collect();
    let mut spec = ChainSpec::dev(CHAIN, &addrs, U256::from(10u128.pow(22)));
    spec.gas_limit = 30_000_000 * 10;
    let blocks = blocks(&keys);
    println!(
        "state history: {BLOCKS} blocks of {TXS} transfers (each changes {} accounts)",
        TXS + SENDERS + 1
    );
    for history in [StateHistory::None, StateHistory::Full] {
        let (times, grown) = run(&spec, &blocks, history);
        let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        println!(
            "  {:<5} commit median {median:.1} ms (min {:.1}, max {:.1}); store grew {:.2} MiB, {:.0} KiB per block",
            format!("{history:?}").to_lowercase(),
            ms[0],
            ms[ms.len() - 1],
            grown as f64 / (1024.0 * 1024.0),
            grown as f64 / 1024.0 / BLOCKS as f64,
        );
    }
}
