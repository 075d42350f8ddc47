//! The threshold key life-cycle the pool will run (issue 6), checked against the real L1 verifier: a
//! Feldman/Desmedt DKG among 4 sequencers (commonware-cryptography, MinSig: key in G2, signature in G1), the group
//! key registered in LockingPool, then a reshare to 5 sequencers that keeps the group key, so batches signed by the
//! new sharing still verify on chain with nothing changed on L1.
//!
//! The round runs in process (metis_mpc::dkg::run_local_round), each private dealing sealed to the player's DKG
//! key as it will travel in a PoS transaction.

use alloy::primitives::{keccak256, Bytes, B256};
use commonware_cryptography::ed25519;
use commonware_math::algebra::Random;
use metis_contracts::{bindings::BatchInbox::BatchHeader, digest};
use metis_mpc::dkg::{run_local_round, Participant};
use metis_mpc::{seal::DkgSecret, threshold};
use metis_testkit::{append_signed, deployed_l1};
use rand::{rngs::StdRng, SeedableRng};

fn header(index: u64, first: u64, last: u64, parent: B256) -> (BatchHeader, Bytes) {
    let payload = Bytes::from(format!("batch {index}").into_bytes());
    let h = BatchHeader {
        index,
        l2FirstBlock: first,
        l2LastBlock: last,
        parentHash: parent,
        txRoot: keccak256(format!("txs {index}")),
        stateRoot: keccak256(format!("state {index}")),
        payloadHash: keccak256(&payload),
        blobHashes: vec![],
    };
    (h, payload)
}

#[tokio::test]
async fn dkg_then_reshare_keeps_the_key_that_l1_verifies() {
    let mut rng = StdRng::seed_from_u64(2026);
    let ps: Vec<Participant> = (0..5)
        .map(|_| Participant {
            identity: ed25519::PrivateKey::random(&mut rng),
            dkg: DkgSecret::generate().unwrap(),
        })
        .collect();
    let first_four: Vec<&Participant> = ps[..4].iter().collect();
    let all_five: Vec<&Participant> = ps.iter().collect();

    // Genesis DKG among 4, and its group key registered on L1.
    let (out0, shares0) = run_local_round(&mut rng, 0, None, &first_four, &first_four).unwrap();
    let sharing0 = out0.public().clone();
    assert_eq!(sharing0.required(), 3, "more than 2/3 of 4");
    let l1 = deployed_l1(&[]).await;
    l1.register_group_key(&sharing0).await;
    let inbox = l1.inbox();

    // Batch 0 signed by 3 of the genesis shares.
    let (h0, p0) = header(0, 1, 10, B256::ZERO);
    let r = append_signed(
        &inbox,
        l1.chain_id,
        &h0,
        p0,
        &sharing0,
        shares0[1..].iter().map(|(_, s)| s),
    )
    .await;
    assert!(r.status());

    // A fifth sequencer joins: the 4 old holders reshare to all 5. The group key does not change.
    let (out1, shares1) = run_local_round(&mut rng, 1, Some((&out0, &shares0)), &first_four, &all_five).unwrap();
    let sharing1 = out1.public().clone();
    assert_eq!(
        sharing1.public(),
        sharing0.public(),
        "resharing keeps the group public key"
    );
    assert_eq!(shares1.len(), 5);
    assert_eq!(sharing1.required(), 4, "more than 2/3 of 5");

    // Batch 1 signed by 4 of the new shares, including the newcomer's: accepted by the same L1 key.
    let (h1, p1) = header(1, 11, 20, digest::batch_hash(&h0));
    let r = append_signed(
        &inbox,
        l1.chain_id,
        &h1,
        p1,
        &sharing1,
        shares1[1..].iter().map(|(_, s)| s),
    )
    .await;
    assert!(
        r.status(),
        "a signature of the reshared key verifies with the key registered at genesis"
    );

    // Old shares are not shares of the new polynomial: an old partial does not verify against the new sharing.
    let d1 = digest::batch_signing_digest(l1.chain_id, l1.deployment.batch_inbox, &h1).0;
    let old_partial = threshold::sign_partial(&shares0[0].1, &d1);
    assert!(threshold::verify_partial(&sharing1, &d1, &old_partial).is_err());
}
