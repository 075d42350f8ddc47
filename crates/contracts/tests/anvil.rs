//! Integration tests of the L1 contracts on a real anvil, with real threshold signatures made in Rust
//! (commonware-cryptography shares, aggregated by metis-mpc) verified on chain by the EIP-2537 BLS code.
//!
//! Each test starts its own anvil on a free port; the instance is killed when the test ends, also on failure.

use alloy::{
    eips::eip4844::builder::{SidecarBuilder, SimpleCoder},
    network::TransactionBuilder,
    node_bindings::AnvilInstance,
    primitives::{utils::parse_ether, Address, Bytes, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, Context, Result};
use metis_contracts::{
    bindings::BatchInbox::{BatchHeader, BatchInboxErrors},
    bindings::LockingPool::LockingPoolErrors,
    digest, BatchInbox, Deployment, LockingInfo, LockingPool, MetisToken,
};
use metis_mpc::{encoding, threshold, MinSig, Share, Sharing};

struct L1 {
    // Dropping the instance kills anvil.
    _anvil: AnvilInstance,
    provider: DynProvider,
    owner: Address,
    chain_id: u64,
    deployment: Deployment,
    users: Vec<PrivateKeySigner>,
}

/// anvil + the contract set (metis-testkit) with `n_users` fresh funded wallets registered in the provider.
async fn setup(n_users: usize) -> Result<L1> {
    let users: Vec<PrivateKeySigner> = (0..n_users).map(|_| PrivateKeySigner::random()).collect();
    let t = metis_testkit::deployed_l1(&users).await;
    for u in &users {
        t.fund(u.address()).await;
    }
    Ok(L1 {
        _anvil: t.anvil,
        provider: t.provider,
        owner: t.owner.address(),
        chain_id: t.chain_id,
        deployment: t.deployment,
        users,
    })
}

/// Sends a contract call, waits for the receipt, fails on revert, and gives the gas used.
macro_rules! mined {
    ($call:expr) => {
        send_ok(async { Ok($call.send().await?.get_receipt().await?) }).await?
    };
}

async fn send_ok(
    call: impl std::future::Future<Output = Result<alloy::rpc::types::TransactionReceipt>>,
) -> Result<u64> {
    let r = call.await?;
    if !r.status() {
        bail!("transaction {} reverted", r.transaction_hash);
    }
    Ok(r.gas_used)
}

/// n shares of a fresh group key (quorum = more than 2/3, as commonware's N3f1 model gives).
fn deal(n: u32, seed: u64) -> (Sharing<MinSig>, Vec<Share>) {
    metis_testkit::deal(n, seed)
}

/// Threshold signature over `digest` from the shares at `signers`, EIP-2537 encoded.
fn threshold_sign(sharing: &Sharing<MinSig>, shares: &[Share], signers: &[usize], digest: B256) -> Result<Bytes> {
    let d: [u8; 32] = digest.0;
    let partials: Vec<_> = signers
        .iter()
        .map(|i| threshold::sign_partial(&shares[*i], &d))
        .collect();
    let sig = threshold::aggregate(sharing, &d, &partials)?;
    Ok(Bytes::from(encoding::g1_to_eip2537(&sig).to_vec()))
}

/// Whitelists, funds, approves and locks for `users` (stakes 20k, 30k, ... METIS) through the real contracts.
async fn lock_sequencers(l1: &L1) -> Result<Vec<U256>> {
    let d = &l1.deployment;
    let token = MetisToken::new(d.token, l1.provider.clone());
    let pool = LockingPool::new(d.locking_pool, l1.provider.clone());
    let mut ids = Vec::new();
    for (i, u) in l1.users.iter().enumerate() {
        let who = u.address();
        let stake = parse_ether(&format!("{}", 20_000 + 10_000 * i))?;
        mined!(pool.setWhitelist(who, true));
        mined!(token.mint(who, stake));
        mined!(token.approve(d.locking_info, stake).from(who));
        let signer = PrivateKeySigner::random().address();
        // Distinct, non-zero 32-byte keys of the right shape.
        let ck = Bytes::from(alloy::primitives::keccak256(format!("consensus {who}")).to_vec());
        let dk = Bytes::from(alloy::primitives::keccak256(format!("dkg {who}")).to_vec());
        mined!(pool.lockFor(signer, stake, ck.clone(), dk.clone()).from(who));
        let id = pool.seqOwners(who).call().await?;
        let seq = pool.sequencers(id).call().await?;
        assert_eq!(seq.amount, stake, "stake recorded");
        assert_eq!(seq.signer, signer, "signer recorded");
        assert_eq!(seq.consensusKey.as_slice(), ck.as_ref(), "consensus key recorded");
        ids.push(id);
    }
    Ok(ids)
}

async fn register_group_key(l1: &L1, sharing: &Sharing<MinSig>) -> Result<()> {
    let pool = LockingPool::new(l1.deployment.locking_pool, l1.provider.clone());
    let pk = Bytes::from(encoding::g2_to_eip2537(sharing.public()).to_vec());
    mined!(pool.setGroupKey(pk.clone()));
    assert_eq!(pool.groupPublicKey().call().await?, pk, "stored group key");
    assert_eq!(
        pool.mpcAddress().call().await?,
        encoding::mpc_address(sharing.public()),
        "MPC address derivation"
    );
    Ok(())
}

fn header(index: u64, first: u64, last: u64, parent: B256, payload: &[u8]) -> BatchHeader {
    BatchHeader {
        index,
        l2FirstBlock: first,
        l2LastBlock: last,
        parentHash: parent,
        txRoot: alloy::primitives::keccak256(format!("txs {index}")),
        stateRoot: alloy::primitives::keccak256(format!("state {index}")),
        payloadHash: alloy::primitives::keccak256(payload),
        blobHashes: vec![],
    }
}

fn inbox_error(e: alloy::contract::Error) -> Result<BatchInboxErrors> {
    e.as_decoded_interface_error::<BatchInboxErrors>()
        .context("expected a BatchInbox custom error")
}

#[tokio::test]
async fn threshold_signed_batches_and_rewards_on_anvil() -> Result<()> {
    let l1 = setup(4).await?;
    let d = l1.deployment.clone();
    let ids = lock_sequencers(&l1).await?;
    assert_eq!(ids, (1..=4).map(U256::from).collect::<Vec<_>>());

    // A 4-party sharing: any 3 shares sign for the group (more than 2/3).
    let (sharing, shares) = deal(4, 42);
    assert_eq!(sharing.required(), 3);
    register_group_key(&l1, &sharing).await?;

    let inbox = BatchInbox::new(d.batch_inbox, l1.provider.clone());
    let payload = Bytes::from_static(b"zstd(blocks 1..=10)");
    let h0 = header(0, 1, 10, B256::ZERO, &payload);

    // The Rust digests are the contract's digests.
    let digest0 = digest::batch_signing_digest(l1.chain_id, d.batch_inbox, &h0);
    assert_eq!(inbox.signingDigest(h0.clone()).call().await?, digest0);
    assert_eq!(inbox.batchHash(h0.clone()).call().await?, digest::batch_hash(&h0));

    // Signed by shares 0, 2, 3: accepted.
    let sig0 = threshold_sign(&sharing, &shares, &[0, 2, 3], digest0)?;
    let gas_calldata = mined!(inbox.appendBatch(h0.clone(), payload.clone(), sig0.clone()));
    assert_eq!(inbox.nextIndex().call().await?, 1);
    assert_eq!(inbox.batchHashes(U256::ZERO).call().await?, digest::batch_hash(&h0));

    // Replayed: the index check rejects it.
    let err = inbox
        .appendBatch(h0.clone(), payload.clone(), sig0.clone())
        .call()
        .await
        .unwrap_err();
    assert!(
        matches!(inbox_error(err)?, BatchInboxErrors::InvalidIndex(_)),
        "replay must revert on the index"
    );

    // The next header, but with the previous signature (a signature over a different header).
    let h1 = header(1, 11, 20, digest::batch_hash(&h0), &payload);
    let err = inbox
        .appendBatch(h1.clone(), payload.clone(), sig0.clone())
        .call()
        .await
        .unwrap_err();
    assert!(matches!(inbox_error(err)?, BatchInboxErrors::InvalidSignature(_)));

    // Signed by a different group (a key that is not registered).
    let digest1 = digest::batch_signing_digest(l1.chain_id, d.batch_inbox, &h1);
    let (other_sharing, other_shares) = deal(4, 7);
    let wrong = threshold_sign(&other_sharing, &other_shares, &[0, 1, 2], digest1)?;
    let err = inbox
        .appendBatch(h1.clone(), payload.clone(), wrong)
        .call()
        .await
        .unwrap_err();
    assert!(matches!(inbox_error(err)?, BatchInboxErrors::InvalidSignature(_)));

    // A single share's partial is not the group signature.
    let lone = threshold::sign_partial(&shares[1], &digest1.0);
    let lone = Bytes::from(encoding::g1_to_eip2537(&lone.value).to_vec());
    let err = inbox
        .appendBatch(h1.clone(), payload.clone(), lone)
        .call()
        .await
        .unwrap_err();
    assert!(matches!(inbox_error(err)?, BatchInboxErrors::InvalidSignature(_)));

    // Sent for real (fixed gas, so no estimate stops it first): mined, reverted, nothing appended.
    let r = inbox
        .appendBatch(h1.clone(), payload.clone(), sig0.clone())
        .gas(400_000)
        .send()
        .await?
        .get_receipt()
        .await?;
    assert!(!r.status(), "a transaction with a wrong signature must revert on chain");
    assert_eq!(inbox.nextIndex().call().await?, 1);

    // Garbage bytes.
    let err = inbox
        .appendBatch(h1.clone(), payload.clone(), Bytes::from(vec![0xab; 128]))
        .call()
        .await
        .unwrap_err();
    assert!(matches!(inbox_error(err)?, BatchInboxErrors::InvalidSignature(_)));

    // Another quorum (shares 1, 2, 3) signs the next batch: accepted.
    let sig1 = threshold_sign(&sharing, &shares, &[1, 2, 3], digest1)?;
    let gas_calldata_next = mined!(inbox.appendBatch(h1.clone(), payload.clone(), sig1));
    assert_eq!(inbox.nextL2Block().call().await?, 21);

    // Rewards: threshold-signed report crediting blocks to the four sequencers.
    let pool = LockingPool::new(d.locking_pool, l1.provider.clone());
    let token = MetisToken::new(d.token, l1.provider.clone());
    let reward_total = parse_ether("1000000")?;
    mined!(token.mint(l1.owner, reward_total));
    mined!(token.approve(d.locking_info, reward_total));
    let blocks: Vec<U256> = [5u64, 10, 15, 20].into_iter().map(U256::from).collect();
    let (one, zero, four) = (U256::from(1), U256::ZERO, U256::from(4));
    let rd = digest::rewards_digest(l1.chain_id, d.locking_pool, one, zero, four, &ids, &blocks);
    assert_eq!(
        pool.rewardsDigest(one, zero, four, ids.clone(), blocks.clone())
            .call()
            .await?,
        rd
    );
    let rsig = threshold_sign(&sharing, &shares, &[0, 1, 3], rd)?;
    let gas_rewards = mined!(pool.batchSubmitRewards(one, zero, four, ids.clone(), blocks.clone(), rsig.clone()));
    for (id, b) in ids.iter().zip(&blocks) {
        assert_eq!(
            pool.sequencers(*id).call().await?.reward,
            *b * parse_ether("1")?,
            "reward of {id}"
        );
    }
    let err = pool
        .batchSubmitRewards(one, zero, four, ids.clone(), blocks.clone(), rsig)
        .call()
        .await
        .unwrap_err();
    let e = err
        .as_decoded_interface_error::<LockingPoolErrors>()
        .context("pool error")?;
    assert!(
        matches!(e, LockingPoolErrors::InvalidBatchId(_)),
        "reward replay must revert"
    );

    // A sequencer withdraws its rewards on L1.
    let who = l1.users[3].address();
    let before = token.balanceOf(who).call().await?;
    mined!(pool.withdrawRewards(ids[3]).from(who));
    assert_eq!(token.balanceOf(who).call().await? - before, parse_ether("20")?);

    // Slashing with the group key.
    let ev = B256::repeat_byte(0x42);
    let amount = parse_ether("1000")?;
    let sd = digest::slash_digest(l1.chain_id, d.locking_pool, ids[0], amount, ev);
    assert_eq!(pool.slashDigest(ids[0], amount, ev).call().await?, sd);
    let ssig = threshold_sign(&sharing, &shares, &[0, 1, 2], sd)?;
    let gas_slash = mined!(pool.slash(ids[0], amount, ev, ssig));
    assert!(pool.sequencers(ids[0]).call().await?.jailed);

    // The escrow is wired to the pool and holds stakes + unclaimed rewards.
    let info = LockingInfo::new(d.locking_info, l1.provider.clone());
    assert_eq!(info.pool().call().await?, d.locking_pool);

    println!("GAS appendBatch calldata (first batch, 19-byte payload): {gas_calldata}");
    println!("GAS appendBatch calldata (next batch): {gas_calldata_next}");
    println!("GAS batchSubmitRewards (4 sequencers): {gas_rewards}");
    println!("GAS slash: {gas_slash}");
    Ok(())
}

#[tokio::test]
async fn blob_carrying_batch_on_anvil() -> Result<()> {
    let l1 = setup(0).await?;
    let d = l1.deployment.clone();
    let (sharing, shares) = deal(4, 9);
    register_group_key(&l1, &sharing).await?;
    let inbox = BatchInbox::new(d.batch_inbox, l1.provider.clone());

    // ~200 KiB of batch data: two blobs.
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let sidecar = SidecarBuilder::<SimpleCoder>::from_slice(&data)
        .build_7594()
        .context("building blobs")?;
    let blob_hashes: Vec<B256> = sidecar.versioned_hashes().collect();
    assert_eq!(blob_hashes.len(), 2);
    let mut h = header(0, 1, 50, B256::ZERO, &data);
    h.blobHashes = blob_hashes.clone();
    let sig = threshold_sign(
        &sharing,
        &shares,
        &[0, 1, 2],
        digest::batch_signing_digest(l1.chain_id, d.batch_inbox, &h),
    )?;

    let blob_fee = l1.provider.get_blob_base_fee().await?;
    let receipt = inbox
        .appendBatch(h.clone(), Bytes::new(), sig.clone())
        .sidecar_7594(sidecar)
        .max_fee_per_blob_gas(blob_fee.max(1) * 2)
        .send()
        .await?
        .get_receipt()
        .await?;
    assert!(receipt.status(), "blob batch reverted");
    assert_eq!(inbox.nextIndex().call().await?, 1);
    let tx = l1
        .provider
        .get_transaction_by_hash(receipt.transaction_hash)
        .await?
        .context("tx")?;
    assert_eq!(
        alloy::consensus::Transaction::blob_versioned_hashes(&tx).map(|h| h.to_vec()),
        Some(blob_hashes)
    );

    // The same header without its blobs in the transaction is rejected.
    let h1 = {
        let mut h1 = header(1, 51, 60, digest::batch_hash(&h), &data);
        h1.blobHashes = h.blobHashes.clone();
        h1
    };
    let sig1 = threshold_sign(
        &sharing,
        &shares,
        &[1, 2, 3],
        digest::batch_signing_digest(l1.chain_id, d.batch_inbox, &h1),
    )?;
    let err = inbox.appendBatch(h1, Bytes::new(), sig1).call().await.unwrap_err();
    assert!(matches!(inbox_error(err)?, BatchInboxErrors::BlobHashMismatch(_)));

    println!("GAS appendBatch blobs (2 blobs, execution gas): {}", receipt.gas_used);
    println!("BLOB gas used: {:?}", receipt.blob_gas_used);
    let _ = TransactionRequest::default().with_chain_id(l1.chain_id);
    Ok(())
}
