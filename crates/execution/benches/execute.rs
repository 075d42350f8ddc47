//! Block execution with the state root: 10,000 signed transfers from 1,000 accounts in one block.
//! `cargo bench -p metis-execution --bench execute`

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use metis_execution::{build_block, engine::genesis_header, BlockContext, ChainSpec, RecoveredTx, WorldState};

const CHAIN: u64 = 59902;
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
    let mut txs = Vec::with_capacity(TXS);
    for i in 0..TXS {
        let k = &keys[i % SENDERS];
        let to = Address::from_word(alloy_primitives::keccak256(i.to_be_bytes()));
        let tx = TxEip1559 {
            chain_id: CHAIN,
            nonce: (i / SENDERS) as u64,
            gas_limit: 21_000,
            max_fee_per_gas: 10_000_000_000,
            max_priority_fee_per_gas: 1_000_000,
            to: TxKind::Call(to),
            value: U256::from(1 + i),
            input: Bytes::new(),
            access_list: Default::default(),
        };
        let sig = k.sign_hash_sync(&tx.signature_hash()).expect("sign");
        txs.push(RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("valid"));
    }
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
