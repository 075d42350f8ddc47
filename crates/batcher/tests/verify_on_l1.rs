//! Inclusion proofs made in Rust verify on L1: BatchInbox.verifyTx (OpenZeppelin MerkleProof) against a batch
//! appended with a real threshold signature, on anvil.

use alloy::primitives::{keccak256, Bytes, B256};
use metis_batcher::{tx_leaf, TxTree};
use metis_contracts::bindings::BatchInbox::BatchHeader;
use metis_testkit::{append_signed, deal, deployed_l1};

#[tokio::test]
async fn rust_proofs_verify_against_the_batch_on_l1() {
    let l1 = deployed_l1(&[]).await;
    let (sharing, shares) = deal(4, 5);
    l1.register_group_key(&sharing).await;
    let inbox = l1.inbox();

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
    assert!(append_signed(&inbox, l1.chain_id, &h, payload, &sharing, &shares[..3])
        .await
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
