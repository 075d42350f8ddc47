//! Inclusion proofs made in Rust verify on L1: BatchInbox.verifyTx (OpenZeppelin MerkleProof) against a batch
//! appended with a real threshold signature, on anvil.

use alloy::{
    network::EthereumWallet,
    node_bindings::Anvil,
    primitives::{keccak256, utils::parse_ether, Bytes, B256},
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use commonware_cryptography::bls12381::{dkg::feldman_desmedt::deal_anonymous, primitives::sharing::Mode};
use commonware_utils::N3f1;
use metis_batcher::{tx_leaf, TxTree};
use metis_contracts::{bindings::BatchInbox::BatchHeader, deploy_all, digest, BatchInbox, DeployConfig, LockingPool};
use metis_mpc::{encoding, threshold, MinSig};
use rand::{rngs::StdRng, SeedableRng};
use std::{num::NonZeroU32, path::PathBuf};

#[tokio::test]
async fn rust_proofs_verify_against_the_batch_on_l1() {
    let anvil_bin = std::env::var("METIS_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/anvil"));
    let anvil = Anvil::new().path(anvil_bin).port(0u16).timeout(30_000).spawn();
    let owner: PrivateKeySigner = anvil.keys()[0].clone().into();
    let p = ProviderBuilder::new()
        .wallet(EthereumWallet::new(owner.clone()))
        .connect_http(anvil.endpoint_url())
        .erased();
    let cfg = DeployConfig {
        owner: owner.address(),
        reward_payer: owner.address(),
        reward_per_block: parse_ether("1").unwrap(),
        token: None,
    };
    let d = deploy_all(&p, &cfg).await.unwrap();
    let (sharing, shares) = deal_anonymous::<MinSig, N3f1>(
        StdRng::seed_from_u64(5),
        Mode::NonZeroCounter,
        NonZeroU32::new(4).unwrap(),
    );
    let pool = LockingPool::new(d.locking_pool, p.clone());
    let pk = Bytes::from(encoding::g2_to_eip2537(sharing.public()).to_vec());
    assert!(pool
        .setGroupKey(pk)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .status());
    let inbox = BatchInbox::new(d.batch_inbox, p.clone());

    // Seven transactions over blocks 1..=3.
    let txs: Vec<(u64, u32, B256)> = (0..7u64)
        .map(|i| (1 + i / 3, (i % 3) as u32, keccak256(format!("tx {i}"))))
        .collect();
    for (b, i, h) in &txs {
        assert_eq!(
            inbox.txLeaf(*b, *i, *h).call().await.unwrap(),
            tx_leaf(*b, *i, *h),
            "leaf encoding matches L1"
        );
    }
    let tree = TxTree::new(txs.iter().map(|(b, i, h)| tx_leaf(*b, *i, *h)).collect());
    let payload = Bytes::from_static(b"blocks 1..=3");
    let h = BatchHeader {
        index: 0,
        l2FirstBlock: 1,
        l2LastBlock: 3,
        parentHash: B256::ZERO,
        txRoot: tree.root(),
        stateRoot: keccak256("state"),
        payloadHash: keccak256(&payload),
        blobHashes: vec![],
    };
    let chain_id = p.get_chain_id().await.unwrap();
    let dg = digest::batch_signing_digest(chain_id, d.batch_inbox, &h).0;
    let partials: Vec<_> = shares[..3].iter().map(|s| threshold::sign_partial(s, &dg)).collect();
    let sig = threshold::aggregate(&sharing, &dg, &partials).unwrap();
    let sig = Bytes::from(encoding::g1_to_eip2537(&sig).to_vec());
    assert!(inbox
        .appendBatch(h.clone(), payload, sig)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .status());

    for (k, (b, i, hash)) in txs.iter().enumerate() {
        let proof = tree.proof(k).unwrap();
        assert!(
            inbox
                .verifyTx(h.clone(), *b, *i, *hash, proof.clone())
                .call()
                .await
                .unwrap(),
            "tx {k} verifies on L1"
        );
        // The same proof for a different transaction does not.
        let other = keccak256(format!("not tx {k}"));
        assert!(!inbox.verifyTx(h.clone(), *b, *i, other, proof).call().await.unwrap());
    }
}
