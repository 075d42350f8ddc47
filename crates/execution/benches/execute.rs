//! Block execution with the state root: 10,000 signed transfers from 1,000 accounts in one block; and one
//! sender recovery (the floor of what every node spends per transaction). `cargo bench -p metis-execution --bench
//! execute`

mod common;

use alloy_primitives::{Address, U256};
use alloy_signer_local::PrivateKeySigner;
use common::CHAIN;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use metis_execution::{build_block, engine::genesis_header, BlockContext, ChainSpec, RecoveredTx, WorldState};

const SENDERS: usize = 1_000;
const TXS: usize = 10_000;

fn setup() -> (ChainSpec, WorldState, BlockContext, Vec<RecoveredTx>) {
    let keys: Vec<PrivateKeySigner> = (0..SENDERS).map(|_| PrivateKeySigner::random()).collect();
    let addrs: Vec<Address> = keys.iter().map(|k| k.address()).collect();
    let mut spec = ChainSpec::dev(CHAIN, &addrs, U256::from(10u128.pow(22)));
    spec.gas_limit = 30_000_000 * 10; // room for 10k transfers in one block
    let (state, root) = WorldState::genesis(&spec);
    let genesis = genesis_header(&spec, root);
    let ctx = BlockContext::child_of(&genesis, genesis.hash_slow(), &spec, 1, Address::ZERO);
    let txs = (0..TXS)
        .map(|i| {
            let to = Address::from_word(alloy_primitives::keccak256(i.to_be_bytes()));
            common::transfer(&keys[i % SENDERS], (i / SENDERS) as u64, to, 1 + i as u64)
        })
        .collect();
    (spec, state, ctx, txs)
}

fn bench(c: &mut Criterion) {
    let (spec, state, ctx, txs) = setup();
    let mut g = c.benchmark_group("block");
    g.sample_size(10);
    g.throughput(Throughput::Elements(TXS as u64));
    g.bench_function("execute_10k_transfers_with_state_root", |b| {
        b.iter_batched(
            || txs.clone(),
            |txs| {
                let (block, rejected) = build_block(&state, &spec, ctx.clone(), txs);
                assert!(rejected.is_empty());
                assert_eq!(block.transactions.len(), TXS);
                block.header.state_root
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    let envelope = txs[0].envelope.clone();
    let mut r = c.benchmark_group("transaction");
    r.throughput(Throughput::Elements(1));
    r.bench_function("recover_sender", |b| {
        b.iter_batched(
            || envelope.clone(),
            |e| RecoveredTx::from_envelope(e).map(|t| t.sender),
            BatchSize::SmallInput,
        )
    });
    r.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
