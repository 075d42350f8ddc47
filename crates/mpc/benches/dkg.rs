//! DKG among 4 and reshare 4 -> 5 (the whole round in one process: every dealer and player, sealing included).
//! `cargo bench -p metis-mpc --bench dkg`

use commonware_cryptography::ed25519;
use commonware_math::algebra::Random;
use criterion::{criterion_group, criterion_main, Criterion};
use metis_mpc::dkg::{run_local_round, Participant};
use metis_mpc::seal::DkgSecret;
use rand::{rngs::StdRng, SeedableRng};

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let ps: Vec<Participant> = (0..5)
        .map(|_| Participant {
            identity: ed25519::PrivateKey::random(&mut rng),
            dkg: DkgSecret::generate().unwrap(),
        })
        .collect();
    let four: Vec<&Participant> = ps[..4].iter().collect();
    let five: Vec<&Participant> = ps.iter().collect();
    let (out0, shares0) = run_local_round(&mut rng, 0, None, &four, &four).unwrap();
    let mut g = c.benchmark_group("dkg");
    g.sample_size(10);
    let mut round = 1;
    g.bench_function("dkg_4", |b| {
        b.iter(|| {
            round += 1;
            run_local_round(&mut rng, round, None, &four, &four).unwrap()
        })
    });
    g.bench_function("reshare_4_to_5", |b| {
        b.iter(|| {
            round += 1;
            run_local_round(&mut rng, round, Some((&out0, &shares0)), &four, &five).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
