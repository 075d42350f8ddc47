//! The L1 listener against a real anvil with the real contracts: events appear only at depth, a Locked event
//! removed by a reorg before it reached depth never appears, every validator can check a PoS transaction against
//! its own view, and the events drive the PoS ledger.

use alloy::{
    primitives::{utils::parse_ether, Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use metis_contracts::{LockingPool, MetisToken};
use metis_l1::{L1Error, Listener, ListenerConfig};
use metis_pos::{L1Event, Ledger, Params, Sequencer, SequencerStatus};
use metis_testkit::deployed_l1;

async fn mine(p: &DynProvider, n: u64) {
    p.raw_request::<_, ()>("anvil_mine".into(), (U256::from(n),))
        .await
        .unwrap();
}

/// Whitelists and funds `owner` (registered in the provider's wallet) and approves the escrow.
async fn prepare(p: &DynProvider, d: &metis_contracts::Deployment, owner: Address, stake: U256) {
    let pool = LockingPool::new(d.locking_pool, p.clone());
    let token = MetisToken::new(d.token, p.clone());
    assert!(pool
        .setWhitelist(owner, true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .status());
    assert!(token
        .mint(owner, stake)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .status());
    let approve = token.approve(d.locking_info, stake).from(owner);
    assert!(approve.send().await.unwrap().get_receipt().await.unwrap().status());
}

/// Locks `stake` for a new sequencer owned by a prepared `owner` (one L1 block).
async fn lock(p: &DynProvider, d: &metis_contracts::Deployment, owner: Address, stake: U256, tag: u8) -> Address {
    let pool = LockingPool::new(d.locking_pool, p.clone());
    let signer = Address::repeat_byte(tag);
    // A real ed25519 public key: the ledger ignores a Locked whose consensus key is not one.
    let ck = Bytes::from(
        ed25519_dalek::SigningKey::from_bytes(&[tag; 32])
            .verifying_key()
            .to_bytes()
            .to_vec(),
    );
    let dk = Bytes::from(vec![tag.wrapping_add(100); 32]);
    let call = pool.lockFor(signer, stake, ck, dk).from(owner);
    assert!(call.send().await.unwrap().get_receipt().await.unwrap().status());
    signer
}

#[tokio::test]
async fn events_at_depth_reorgs_and_checks() {
    let owners: Vec<PrivateKeySigner> = (0..3).map(|_| PrivateKeySigner::random()).collect();
    let l1 = deployed_l1(&owners).await;
    for o in &owners {
        l1.fund(o.address()).await;
    }
    let (p, d) = (l1.provider.clone(), l1.deployment.clone());
    let config = ListenerConfig {
        locking_pool: d.locking_pool,
        locking_info: Some(d.locking_info),
        pos_params: d.pos_params,
        start_block: d.deployed_at_block,
        confirmations: 3,
        max_range: 2,
        chain_id: Some(l1.chain_id),
    };
    let mut listener = Listener::new(p.clone(), config);

    // A sequencer locks: nothing until 3 blocks sit on top of the event's block.
    let stake = parse_ether("30000").unwrap();
    prepare(&p, &d, owners[0].address(), stake).await;
    prepare(&p, &d, owners[1].address(), stake).await;
    mine(&p, 3).await;
    listener.poll().await.unwrap();
    let signer_a = lock(&p, &d, owners[0].address(), stake, 0xa1).await;
    assert!(listener.poll().await.unwrap().is_empty(), "not at depth yet");
    mine(&p, 3).await;
    let got = listener.poll().await.unwrap();
    assert_eq!(got.len(), 1);
    match &got[0].event {
        L1Event::Locked {
            id,
            signer,
            consensus_key,
            amount,
            ..
        } => {
            assert_eq!((*id, *signer, *amount), (1, signer_a, stake));
            assert_eq!(
                consensus_key.0,
                ed25519_dalek::SigningKey::from_bytes(&[0xa1; 32])
                    .verifying_key()
                    .to_bytes()
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(listener.view().confirms(&got[0]));
    // An altered event, or the same one claimed in another block, is not confirmed by this view.
    let mut altered = got[0].clone();
    if let L1Event::Locked { amount, .. } = &mut altered.event {
        *amount += U256::from(1);
    }
    assert!(!listener.view().confirms(&altered));
    let mut moved = got[0].clone();
    moved.position.block_hash = alloy::primitives::B256::repeat_byte(7);
    assert!(!listener.view().confirms(&moved));

    // A second lock that a reorg removes before it reaches depth is never reported (the listener polls while
    // the lock is 2 blocks deep, then the chain is rolled back and grows past it).
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await.unwrap();
    lock(&p, &d, owners[1].address(), stake, 0xb2).await;
    mine(&p, 1).await;
    assert!(listener.poll().await.unwrap().is_empty());
    assert!(p
        .raw_request::<_, bool>("evm_revert".into(), (snapshot,))
        .await
        .unwrap());
    mine(&p, 6).await;
    assert!(
        listener.poll().await.unwrap().is_empty(),
        "the reorged-out Locked never shows up"
    );
    let locked = |v: &metis_l1::L1View| v.events().filter(|t| matches!(t.event, L1Event::Locked { .. })).count();
    assert_eq!(locked(listener.view()), 1);
    // Whitelisting and the escrow's lock bounds (set at deployment) are read too.
    let kinds: Vec<&str> = listener.view().events().map(|t| t.event.name()).collect();
    assert!(
        kinds.contains(&"WhitelistChanged") && kinds.contains(&"Locked"),
        "{kinds:?}"
    );

    // Exit and a stake change come through too, in L1 order.
    let pool = LockingPool::new(d.locking_pool, p.clone());
    let token = MetisToken::new(d.token, p.clone());
    let extra = parse_ether("5000").unwrap();
    token
        .mint(owners[0].address(), extra)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    token
        .approve(d.locking_info, extra)
        .from(owners[0].address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    pool.relock(U256::from(1), extra, false)
        .from(owners[0].address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    pool.unlock(U256::from(1))
        .from(owners[0].address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    mine(&p, 3).await;
    let got = listener.poll().await.unwrap();
    let kinds: Vec<_> = got.iter().map(|t| t.event.name()).collect();
    // Relocked and the LockUpdate carrying the new amount, then the exit (mint/approve are not pool events).
    assert_eq!(kinds, vec!["Relocked", "LockUpdate", "UnlockInit"]);
    assert!(got.windows(2).all(|w| w[0].position.order() < w[1].position.order()));

    // The events drive the ledger: the L1 sequencer joins at the next boundary, then leaves.
    let genesis = Sequencer {
        id: 100,
        signer: Address::repeat_byte(9),
        consensus_key: alloy::primitives::B256::repeat_byte(9),
        dkg_key: alloy::primitives::B256::repeat_byte(10),
        stake,
        status: SequencerStatus::Active,
        jailed_until_epoch: 0,
        l1_jailed: false,
    };
    let mut ledger = Ledger::genesis(
        Params {
            epoch_length: 2,
            ..Default::default()
        },
        vec![genesis],
        Default::default(),
    )
    .unwrap();
    let all = listener.view().events().cloned().collect::<Vec<_>>();
    let lock_tx = all.iter().find(|t| matches!(t.event, L1Event::Locked { .. })).unwrap();
    ledger.apply_l1_event(lock_tx).unwrap();
    assert_eq!(ledger.sequencer(1).unwrap().status, SequencerStatus::Pending);
    for tx in &all {
        assert!(listener.view().confirms(tx));
    }
    assert!(ledger.apply_l1_event(lock_tx).is_err(), "an event applies once");

    // A reorg deeper than the confirmation depth (impossible on Ethereum at depth; forced here) is detected and
    // reported, never applied.
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await.unwrap();
    let head_before_reorg = p.get_block_number().await.unwrap();
    mine(&p, 10).await;
    listener.poll().await.unwrap();
    assert!(p
        .raw_request::<_, bool>("evm_revert".into(), (snapshot,))
        .await
        .unwrap());
    p.raw_request::<_, ()>("evm_setNextBlockTimestamp".into(), (U256::from(4_000_000_000u64),))
        .await
        .unwrap();
    mine(&p, 12).await;
    let before: Vec<_> = listener.view().events().cloned().collect();
    assert!(matches!(listener.poll().await, Err(L1Error::DeepReorg { .. })));
    // The view went back to the last block still canonical; the next poll re-reads the rest of the new chain.
    let fork = listener
        .view()
        .synced_to
        .expect("a block before the snapshot is still canonical");
    assert!(fork < head_before_reorg, "fork {fork} is below the reorged blocks");
    listener.poll().await.unwrap();
    assert!(listener.view().synced_to.unwrap() > fork);
    let after: Vec<_> = listener.view().events().cloned().collect();
    assert_eq!(
        after, before,
        "the events before the fork are the same on the new chain"
    );
}

#[tokio::test]
async fn a_dead_endpoint_is_an_error_and_changes_nothing() {
    let p = ProviderBuilder::new()
        .connect_http("http://127.0.0.1:1".parse().unwrap())
        .erased();
    let config = ListenerConfig {
        locking_pool: Address::ZERO,
        locking_info: None,
        pos_params: None,
        start_block: 0,
        confirmations: 1,
        max_range: 100,
        chain_id: None,
    };
    let mut listener = Listener::new(p, config);
    assert!(matches!(listener.poll().await, Err(L1Error::Rpc(_))));
    assert!(listener.view().synced_to.is_none());
}

/// Governance end to end on L1, driven from Rust: the contracts handed to the timelock (the owner key can do
/// nothing after), a PoS parameter changed by a vote of the owners' stake, and the change read by the listener as
/// the PoS transaction every node applies at the next epoch boundary.
#[tokio::test]
async fn a_parameter_changed_by_vote_reaches_the_listener_and_the_owner_key_is_powerless() {
    use alloy::primitives::keccak256;
    use alloy::sol_types::SolCall;
    use metis_contracts::{hand_over, GovConfig, MetisGovernor, PosParams};
    use metis_pos::GovParam;
    use std::time::{Duration, Instant};

    let owners: Vec<PrivateKeySigner> = (0..3).map(|_| PrivateKeySigner::random()).collect();
    let gov = GovConfig {
        voting_delay_blocks: 1,
        voting_period_blocks: 4,
        proposal_threshold: parse_ether("20000").unwrap(),
        quorum_percent: 50,
        timelock_delay_secs: 2,
        pos_params: GovParam::ALL
            .iter()
            .map(|g| U256::from(g.get(&Params::default())))
            .collect(),
    };
    // Blocks every second: the timelock's delay is in L1 time.
    let l1 = metis_testkit::deployed_l1_governed(&owners, &["--block-time", "1"], gov).await;
    for o in &owners {
        l1.fund(o.address()).await;
    }
    let (p, d) = (l1.provider.clone(), l1.deployment.clone());
    let stake = parse_ether("30000").unwrap();
    for (i, o) in owners.iter().enumerate() {
        prepare(&p, &d, o.address(), stake).await;
        lock(&p, &d, o.address(), stake, 0xc0 + i as u8).await;
    }
    hand_over(&p, &d, l1.owner.address(), None, 2)
        .await
        .expect("the hand-over");
    let pool = LockingPool::new(d.locking_pool, p.clone());
    assert_eq!(pool.owner().call().await.unwrap(), d.timelock.unwrap());
    let timelock = metis_contracts::TimelockController::new(d.timelock.unwrap(), p.clone());
    assert_eq!(timelock.getMinDelay().call().await.unwrap(), U256::from(2));
    let admin = timelock.DEFAULT_ADMIN_ROLE().call().await.unwrap();
    assert!(!timelock.hasRole(admin, l1.owner.address()).call().await.unwrap());
    // Simulated, not sent: a refused send would still use up a nonce of the provider's cache.
    assert!(
        pool.setWhitelist(Address::repeat_byte(9), true)
            .from(l1.owner.address())
            .call()
            .await
            .is_err(),
        "the old owner key still whitelists"
    );

    // epoch_length = 40, by the owners' vote.
    let governor = MetisGovernor::new(d.governor.unwrap(), p.clone());
    let params = d.pos_params.unwrap();
    let call = Bytes::from(
        PosParams::setCall {
            param: 0,
            value: U256::from(40),
        }
        .abi_encode(),
    );
    let description = "epoch_length = 40".to_string();
    let (targets, values, calls) = (vec![params], vec![U256::ZERO], vec![call]);
    let id = governor
        .hashProposal(
            targets.clone(),
            values.clone(),
            calls.clone(),
            keccak256(description.as_bytes()),
        )
        .call()
        .await
        .unwrap();
    let mined = |r: alloy::rpc::types::TransactionReceipt, what: &str| assert!(r.status(), "{what} reverted");
    mined(
        governor
            .propose(targets.clone(), values.clone(), calls.clone(), description.clone())
            .from(owners[0].address())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap(),
        "propose",
    );
    let state = |want: u8| {
        let g = governor.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = g.state(id).call().await.unwrap();
                if s == want {
                    return;
                }
                assert!(Instant::now() < deadline, "proposal state {s}, waiting for {want}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    state(1).await; // Active
    for o in &owners[..2] {
        mined(
            governor
                .castVote(id, 1)
                .from(o.address())
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap(),
            "castVote",
        );
    }
    state(4).await; // Succeeded
    let dh = keccak256(description.as_bytes());
    mined(
        governor
            .queue(targets.clone(), values.clone(), calls.clone(), dh)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap(),
        "queue",
    );
    // Executable once the timelock's delay passed: simulated until it would succeed (a refused send would still
    // use up a nonce of the provider's cache).
    let execute = governor.execute(targets.clone(), values.clone(), calls.clone(), dh);
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = execute.call().await {
        assert!(Instant::now() < deadline, "execute: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    mined(execute.send().await.unwrap().get_receipt().await.unwrap(), "execute");
    let pp = PosParams::new(params, p.clone());
    assert_eq!(pp.get(0).call().await.unwrap(), U256::from(40));

    // The listener reads the change as the PoS transaction the ledger takes.
    let mut listener = Listener::new(
        p.clone(),
        ListenerConfig {
            locking_pool: d.locking_pool,
            locking_info: Some(d.locking_info),
            pos_params: d.pos_params,
            start_block: d.deployed_at_block,
            confirmations: 0,
            max_range: 1000,
            chain_id: Some(l1.chain_id),
        },
    );
    listener.poll().await.unwrap();
    let changes: Vec<_> = listener
        .view()
        .events()
        .filter_map(|t| match &t.event {
            L1Event::PosParamChanged { param, value, nonce } => Some((*param, *value, *nonce)),
            _ => None,
        })
        .collect();
    assert_eq!(changes, vec![(0, U256::from(40), 1)]);
}
