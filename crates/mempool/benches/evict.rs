//! Admission into a full mempool: 20,000 transactions from 20,000 senders, then 2,000 better-paying ones from new
//! senders, each evicting the cheapest. Prints the time per admission (signatures are made beforehand).
//! `cargo bench -p metis-mempool --bench evict`

use alloy_primitives::U256;
use alloy_signer_local::PrivateKeySigner;
use metis_execution::testutil::eip1559_priced;
use metis_execution::{ChainSpec, WorldState};
use metis_mempool::{Mempool, MempoolConfig};
use std::time::Instant;

const CHAIN: u64 = 9;
const FULL: usize = 20_000;
const NEWCOMERS: usize = 2_000;

fn main() {
    let keys: Vec<PrivateKeySigner> = (0..FULL + NEWCOMERS).map(|_| PrivateKeySigner::random()).collect();
    let addrs: Vec<_> = keys.iter().map(|k| k.address()).collect();
    let spec = ChainSpec::dev(CHAIN, &addrs, U256::from(10u128.pow(21)));
    let (state, _) = WorldState::genesis(&spec);
    let fee = 100_000_000_000u128;
    let resident: Vec<_> = keys[..FULL]
        .iter()
        .enumerate()
        .map(|(i, k)| eip1559_priced(k, CHAIN, 0, fee, 1_000 + i as u128))
        .collect();
    let newcomers: Vec<_> = keys[FULL..]
        .iter()
        .enumerate()
        .map(|(i, k)| eip1559_priced(k, CHAIN, 0, fee, 1_000_000 + i as u128))
        .collect();
    let mut pool = Mempool::new(MempoolConfig {
        max_txs: FULL,
        ..Default::default()
    });
    let started = Instant::now();
    for tx in resident {
        let sender = tx.sender;
        pool.add(tx, &spec, state.account(&sender), 1).expect("fills");
    }
    let fill = started.elapsed();
    let started = Instant::now();
    for tx in newcomers {
        let sender = tx.sender;
        pool.add(tx, &spec, state.account(&sender), 1)
            .expect("evicts the cheapest");
    }
    let evicting = started.elapsed();
    assert_eq!(pool.len(), FULL);
    println!(
        "fill {FULL}: {:.2} us per admission; full pool, {NEWCOMERS} admissions each evicting one: {:.2} us per admission",
        fill.as_secs_f64() * 1e6 / FULL as f64,
        evicting.as_secs_f64() * 1e6 / NEWCOMERS as f64
    );
}
