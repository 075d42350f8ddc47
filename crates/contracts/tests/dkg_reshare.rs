//! The threshold key life-cycle the pool will run (issue 6), checked against the real L1 verifier: a
//! Feldman/Desmedt DKG among 4 sequencers (commonware-cryptography, MinSig: key in G2, signature in G1), the group
//! key registered in LockingPool, then a reshare to 5 sequencers that keeps the group key, so batches signed by the
//! new sharing still verify on chain with nothing changed on L1.
//!
//! The round runs in process (metis_mpc::dkg::run_local_round), each private dealing sealed to the player's DKG
//! key as it will travel in a PoS transaction.

use alloy::{
    network::EthereumWallet,
    node_bindings::Anvil,
    primitives::{utils::parse_ether, Bytes, B256},
    providers::{Provider, ProviderBuilder},
};
use commonware_cryptography::ed25519;
use commonware_math::algebra::Random;
use metis_contracts::{bindings::BatchInbox::BatchHeader, deploy_all, digest, BatchInbox, DeployConfig, LockingPool};
use metis_mpc::dkg::{run_local_round, Participant};
use metis_mpc::{encoding, seal::DkgSecret, threshold};
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

fn anvil_path() -> PathBuf {
    std::env::var("METIS_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/anvil"))
}

fn header(index: u64, first: u64, last: u64, parent: B256) -> BatchHeader {
    let payload = format!("batch {index}");
    BatchHeader {
        index,
        l2FirstBlock: first,
        l2LastBlock: last,
        parentHash: parent,
        txRoot: alloy::primitives::keccak256(format!("txs {index}")),
        stateRoot: alloy::primitives::keccak256(format!("state {index}")),
        payloadHash: alloy::primitives::keccak256(payload.as_bytes()),
        blobHashes: vec![],
    }
}

/// Signs `h` with `shares` (a quorum of `sharing`), appends it with its calldata payload, and says whether it landed.
async fn append_signed(
    inbox: &BatchInbox::BatchInboxInstance<alloy::providers::DynProvider>,
    chain_id: u64,
    h: &BatchHeader,
    sharing: &metis_mpc::Sharing<metis_mpc::MinSig>,
    shares: &[(metis_mpc::dkg::IdentityKey, metis_mpc::Share)],
) -> bool {
    let digest = digest::batch_signing_digest(chain_id, *inbox.address(), h).0;
    let partials: Vec<_> = shares
        .iter()
        .map(|(_, s)| threshold::sign_partial(s, &digest))
        .collect();
    let sig = threshold::aggregate(sharing, &digest, &partials).expect("quorum of valid partials");
    let payload = Bytes::from(format!("batch {}", h.index).into_bytes());
    let sig = Bytes::from(encoding::g1_to_eip2537(&sig).to_vec());
    let pending = inbox.appendBatch(h.clone(), payload, sig).send().await.expect("sent");
    pending.get_receipt().await.expect("mined").status()
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

    // Genesis DKG among 4.
    let (out0, shares0) = run_local_round(&mut rng, 0, None, &first_four, &first_four).unwrap();
    let sharing0 = out0.public().clone();
    assert_eq!(sharing0.required(), 3, "more than 2/3 of 4");

    // Register the group key on L1.
    let anvil = Anvil::new().path(anvil_path()).port(0u16).timeout(30_000).spawn();
    let owner: alloy::signers::local::PrivateKeySigner = anvil.keys()[0].clone().into();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::new(owner.clone()))
        .connect_http(anvil.endpoint_url())
        .erased();
    let cfg = DeployConfig {
        owner: owner.address(),
        reward_payer: owner.address(),
        reward_per_block: parse_ether("1").unwrap(),
        token: None,
    };
    let d = deploy_all(&provider, &cfg).await.unwrap();
    let pool = LockingPool::new(d.locking_pool, provider.clone());
    let pk = Bytes::from(encoding::g2_to_eip2537(sharing0.public()).to_vec());
    assert!(pool
        .setGroupKey(pk)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .status());
    let chain_id = provider.get_chain_id().await.unwrap();
    let inbox = BatchInbox::new(d.batch_inbox, provider.clone());

    // Batch 0 signed by 3 of the genesis shares.
    let h0 = header(0, 1, 10, B256::ZERO);
    assert!(append_signed(&inbox, chain_id, &h0, &sharing0, &shares0[1..]).await);

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
    let h1 = header(1, 11, 20, digest::batch_hash(&h0));
    assert!(
        append_signed(&inbox, chain_id, &h1, &sharing1, &shares1[1..]).await,
        "a signature of the reshared key verifies with the key registered at genesis"
    );
    let d1 = digest::batch_signing_digest(chain_id, d.batch_inbox, &h1).0;

    // Old shares are not shares of the new polynomial: an old partial does not verify against the new sharing.
    let old_partial = threshold::sign_partial(&shares0[0].1, &d1);
    assert!(threshold::verify_partial(&sharing1, &d1, &old_partial).is_err());
}
