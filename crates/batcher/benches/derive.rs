//! Cost of deriving a batch header (what each node does before it signs): 10 blocks of 1,000 transfers to random
//! recipients, as `metis-seq bench transfers` sends at 1,000 tx/s with a batch every 10 blocks.

use alloy_consensus::{Header, SignableTransaction, TxEip1559, TxEnvelope};
use alloy_primitives::{keccak256, Address, Bytes, Signature, TxKind, B256, U256};
use criterion::{criterion_group, criterion_main, Criterion};
use metis_batcher::payload::{self, BatchBlock};

fn blocks(n: u64, txs: u64) -> Vec<BatchBlock> {
    (1..=n)
        .map(|number| BatchBlock {
            header: Header {
                number,
                gas_limit: 30_000_000,
                timestamp: 1000 + number,
                state_root: keccak256(number.to_be_bytes()),
                ..Default::default()
            },
            transactions: (0..txs)
                .map(|i| {
                    let seed = keccak256((number * 100_000 + i).to_be_bytes());
                    let tx = TxEip1559 {
                        chain_id: 59902,
                        nonce: number,
                        gas_limit: 21_000,
                        max_fee_per_gas: 2_000_000_000,
                        max_priority_fee_per_gas: 1_000_000_000,
                        to: TxKind::Call(Address::from_word(seed)),
                        value: U256::from(1),
                        input: Bytes::new(),
                        access_list: Default::default(),
                    };
                    // Signature-shaped random bytes: as incompressible as real ones.
                    let r = U256::from_be_bytes(keccak256(seed).0);
                    let s = U256::from_be_bytes(keccak256(keccak256(seed)).0) >> 1;
                    TxEnvelope::from(tx.into_signed(Signature::new(r, s, false)))
                })
                .collect(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let b = blocks(10, 1000);
    let d = metis_batcher::derive(0, B256::ZERO, &b, metis_batcher::DataMode::Calldata).expect("derive");
    eprintln!(
        "10 x 1000 transfers: raw {} bytes, payload {} bytes ({:.2})",
        d.raw_len,
        d.payload.len(),
        d.payload.len() as f64 / d.raw_len as f64
    );
    let mut g = c.benchmark_group("batch_10x1000");
    g.sample_size(20);
    g.bench_function("derive (header + payload)", |x| {
        x.iter(|| metis_batcher::derive(0, B256::ZERO, &b, metis_batcher::DataMode::Calldata).expect("derive"))
    });
    g.bench_function("payload only", |x| x.iter(|| payload::encode(&b).expect("encode")));
    g.finish();
    // Blob mode on a batch that fits one blob (1,000 transfers, as on the devnet): the header's versioned hashes
    // (commitments only, every node at each cut) and the poster's sidecar with EIP-7594 cell proofs (once).
    let one = blocks(1, 1000);
    let d1 = metis_batcher::derive(0, B256::ZERO, &one, metis_batcher::DataMode::Blobs).expect("derive");
    eprintln!(
        "1 x 1000 transfers: payload {} bytes in {} blob(s)",
        d1.payload.len(),
        d1.header.blobHashes.len()
    );
    let mut g = c.benchmark_group("batch_1x1000");
    g.sample_size(20);
    g.bench_function("derive calldata mode", |x| {
        x.iter(|| metis_batcher::derive(0, B256::ZERO, &one, metis_batcher::DataMode::Calldata).expect("derive"))
    });
    g.bench_function("derive blob mode (+ commitment)", |x| {
        x.iter(|| metis_batcher::derive(0, B256::ZERO, &one, metis_batcher::DataMode::Blobs).expect("derive"))
    });
    g.bench_function("sidecar with cell proofs", |x| {
        x.iter(|| payload::to_blobs(&d1.payload).expect("blobs"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
