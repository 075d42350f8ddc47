//! The poster lands a slash the ledger asked for and the pool signed: a real LockingPool on anvil takes the
//! group signature, uses the evidence, cuts the stake and jails the sequencer; a second post is not sent.

use alloy::primitives::{keccak256, utils::parse_ether, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use metis_chain::Chain;
use metis_contracts::bindings::{LockingPool, MetisToken};
use metis_execution::{ChainSpec, Engine};
use metis_pos::{BlockInfo, Ledger, Misbehaviour, OffenceKind, Params, Sequencer, SequencerStatus};
use metis_signer::SignatureRecord;
use metis_storage::schema;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poster_lands_a_signed_slash_and_l1_jails_the_sequencer() {
    let owner = PrivateKeySigner::random();
    let signer = PrivateKeySigner::random();
    let l1 = metis_testkit::deployed_l1(std::slice::from_ref(&owner)).await;
    let d = l1.deployment.clone();
    l1.fund(owner.address()).await;
    l1.fund(signer.address()).await;
    let (sharing, shares) = metis_testkit::deal(4, 11);
    l1.register_group_key(&sharing).await;

    // One sequencer locked on L1 (id 1), whose L1 signer is this node's poster key.
    let pool = LockingPool::new(d.locking_pool, l1.provider.clone());
    let token = MetisToken::new(d.token, l1.provider.clone());
    let stake = parse_ether("30000").unwrap();
    let consensus_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32])
        .verifying_key()
        .to_bytes();
    /// Sends a call and checks that it was mined without a revert.
    macro_rules! mined {
        ($call:expr, $what:literal) => {{
            let receipt = $call.send().await.expect("sent").get_receipt().await.expect("mined");
            assert!(receipt.status(), "{} reverted", $what);
        }};
    }
    mined!(pool.setWhitelist(owner.address(), true), "setWhitelist");
    mined!(token.mint(owner.address(), stake), "mint");
    mined!(token.approve(d.locking_info, stake).from(owner.address()), "approve");
    let (consensus, dkg) = (Bytes::from(consensus_key.to_vec()), Bytes::from(vec![9u8; 32]));
    mined!(
        pool.lockFor(signer.address(), stake, consensus, dkg)
            .from(owner.address()),
        "lockFor"
    );

    // The ledger as the pool decided it: sequencer 1 double-voted at height 2, the block at height 3 proved it.
    let mut ledger = Ledger::genesis(
        Params::default(),
        vec![Sequencer {
            id: 1,
            signer: signer.address(),
            consensus_key: B256::from(consensus_key),
            dkg_key: B256::repeat_byte(9),
            stake,
            status: SequencerStatus::Active,
            jailed_until_epoch: 0,
            l1_jailed: false,
        }],
        B256::ZERO,
    )
    .unwrap();
    for h in 1..=3u64 {
        ledger
            .apply_block(&BlockInfo {
                height: h,
                round: 0,
                proposer: 1,
                seed: keccak256(h.to_be_bytes()),
                timestamp: 0,
                txs: 0,
                signers: vec![],
            })
            .unwrap();
    }
    let evidence = B256::repeat_byte(0xe1);
    let m = Misbehaviour {
        kind: OffenceKind::DoubleVote,
        sequencer: 1,
        height: 2,
        evidence,
    };
    ledger.apply_misbehaviour(&[m], B256::ZERO).unwrap();
    let request = ledger.offences().slashes().next().cloned().expect("a slash asked");
    assert_eq!(request.amount, stake * U256::from(500u64) / U256::from(10_000u64));

    // The node: its chain publishes that ledger, and its store holds the pool's signature over the slash.
    let dir = metis_testkit::tempdir("poster-slash");
    let spec = ChainSpec::dev(metis_testkit::testnet::CHAIN_ID, &[], U256::ZERO);
    let chain = Chain::new(Engine::open(&dir.join("chain"), spec).unwrap(), Default::default());
    chain.set_ledger(Arc::new(ledger));
    let digest =
        metis_contracts::digest::slash_digest(l1.chain_id, d.locking_pool, U256::from(1u64), request.amount, evidence);
    let partials: Vec<_> = shares[..3]
        .iter()
        .map(|s| metis_mpc::threshold::sign_partial(s, &digest.0))
        .collect();
    let sig = metis_mpc::threshold::aggregate(&sharing, &digest.0, &partials).unwrap();
    let record = SignatureRecord {
        signature: metis_mpc::encoding::g1_to_eip2537(&sig).to_vec(),
        latency_ms: 0,
        key_round: 0,
        signers: vec![0, 1, 2],
    };
    let store = chain.engine().store().clone();
    store
        .put_meta(&[(
            &schema::slash_signature(request.id),
            &metis_storage::encode(&record).unwrap(),
        )])
        .unwrap();

    let status = metis_poster::SharedPosterStatus::default();
    let cfg = metis_poster::PosterConfig {
        l1_rpc: l1.anvil.endpoint(),
        inbox: d.batch_inbox,
        locking_pool: d.locking_pool,
        poll: Duration::from_millis(200),
        turn_timeout: Duration::from_secs(5),
        confirmations: 0,
        sender: metis_l1::sender::SenderConfig {
            chain_id: l1.chain_id,
            bump_after_blocks: 3,
            max_fee_cap: 500_000_000_000,
            max_blob_fee_cap: 500_000_000_000,
            max_in_flight: 4,
        },
    };
    let task = metis_poster::spawn(cfg, signer.clone(), store, chain.clone(), status.clone()).unwrap();
    let used = metis_testkit::wait_for(30, "LockingPool.usedEvidence", || {
        let pool = pool.clone();
        async move { pool.usedEvidence(evidence).call().await.ok().filter(|u| *u) }
    })
    .await;
    assert!(used);
    let s = pool.sequencers(U256::from(1u64)).call().await.unwrap();
    assert_eq!(s.amount, stake - request.amount, "the stake was cut by the slash");
    assert!(s.jailed, "L1 jailed the sequencer");
    // The poster saw its transaction mined; used evidence is not posted again (the ledger keeps the request
    // open until the listener brings `Slashed` back): one transaction from the signer in all.
    let st = metis_testkit::wait_for(10, "the poster's slash transaction mined", || {
        let st = status.read().clone();
        async move { (st.mined >= 1 && st.in_flight.is_empty()).then_some(st) }
    })
    .await;
    assert!(st.refused_slashes.is_empty(), "{:?}", st.refused_slashes);
    use alloy::providers::Provider;
    let sent = l1.provider.get_transaction_count(signer.address()).await.unwrap();
    assert_eq!(sent, 1, "one slash transaction");
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
