//! The threshold key made by the running network: four real nodes run the DKG at genesis over their precommits'
//! vote extensions; every node records the same group key; each keeps its share encrypted on disk; and the key
//! works on L1: a BatchInbox header signed with any 3 of the 4 shares verifies in the contract on anvil.

mod common;

use alloy::primitives::{keccak256, Bytes, B256};
use common::testnet::{NetOptions, Testnet};
use common::wait_for;
use metis_contracts::bindings::BatchInbox::BatchHeader;
use serde_json::{json, Value};

/// The receipt of a sent L1 transaction (within 60 s).
async fn mined(
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
) -> alloy::rpc::types::TransactionReceipt {
    tokio::time::timeout(std::time::Duration::from_secs(60), pending.get_receipt())
        .await
        .expect("an L1 receipt within 60 s")
        .expect("receipt")
}

/// Four nodes at a time on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genesis_dkg_key_signs_batches_that_l1_verifies() {
    let _serial = SERIAL.lock().await;
    let mut net = Testnet::generate(
        "threshold-key",
        NetOptions {
            key_phase_blocks: 3,
            ..Default::default()
        },
    );
    for i in 0..4 {
        net.start(i, None);
    }
    // Blocks 2..=10: deals, acks, logs (3 blocks each); the key is in from block 11.
    let key: Value = wait_for(90, "the genesis DKG to complete on every node", || async {
        let mut first: Option<Value> = None;
        for i in 0..4 {
            let k = net.call(i, "metis_thresholdKey", json!([])).await.ok()?;
            if k["current"].is_null() {
                return None;
            }
            match &first {
                None => first = Some(k),
                Some(f) => assert_eq!(f["current"], k["current"], "node {i} has another key epoch"),
            }
        }
        first
    })
    .await;
    let current = &key["current"];
    assert_eq!(current["quorum"], 3, "{key}");
    assert_eq!(current["members"], json!([1, 2, 3, 4]));
    assert_eq!(key["history"][0]["outcome"]["Completed"]["quorum"], 3, "{key}");
    let output = net.key_output().await;
    let group_key = alloy::hex::decode(current["group_key"].as_str().expect("group key")).expect("hex");
    assert_eq!(
        group_key,
        metis_mpc::encoding::g2_to_eip2537(output.public().public()).to_vec()
    );

    // Each node's share is on disk, encrypted under the node's passphrase: the file does not hold it in clear.
    let round = current["round"].as_u64().expect("round");
    let mut shares = Vec::new();
    for i in 0..4 {
        let (share, plain) = net.share(i, round).await;
        let path = net.net_dir().join(format!("node{i}/data/keys/share-{round}.key"));
        let raw = std::fs::read(&path).expect("read");
        assert!(
            !raw.windows(plain.len()).any(|w| w == plain.as_slice()),
            "node {i}'s share file holds the share in the clear"
        );
        shares.push(share);
        let mode = std::fs::metadata(&path).expect("meta").permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600, "share file mode");
    }
    let wrong = metis_keystore::Passphrase::new("not the passphrase").expect("passphrase");
    let path = net.net_dir().join(format!("node0/data/keys/share-{round}.key"));
    assert!(metis_keystore::load(&path, common::testnet::SHARE_LABEL, &wrong).is_err());

    // The key on L1: registered once, then batches signed by any 3 of the 4 shares verify in BatchInbox.
    let l1 = metis_testkit::deployed_l1(&[]).await;
    l1.register_group_key(output.public()).await;
    let inbox = l1.inbox();
    let mut parent = B256::ZERO;
    for (index, signers) in [[0usize, 1, 2], [1, 2, 3], [0, 2, 3]].iter().enumerate() {
        let payload = Bytes::from(format!("batch {index}").into_bytes());
        let h = BatchHeader {
            index: index as u64,
            l2FirstBlock: index as u64 * 10 + 1,
            l2LastBlock: index as u64 * 10 + 10,
            parentHash: parent,
            txRoot: keccak256(format!("txs {index}")),
            stateRoot: keccak256(format!("state {index}")),
            payloadHash: keccak256(&payload),
            blobHashes: vec![],
        };
        let r = metis_testkit::append_signed(
            &inbox,
            l1.chain_id,
            &h,
            payload,
            output.public(),
            signers.iter().map(|i| &shares[*i]),
        )
        .await;
        assert!(r.status(), "batch {index} signed by {signers:?} was refused");
        parent = metis_contracts::digest::batch_hash(&h);
    }
    // Two shares are not a quorum.
    let digest = [9u8; 32];
    let partials: Vec<_> = shares[..2]
        .iter()
        .map(|s| metis_mpc::threshold::sign_partial(s, &digest))
        .collect();
    assert!(metis_mpc::threshold::aggregate(output.public(), &digest, &partials).is_err());

    // The chain kept its pace and the nodes agree.
    let h = net.head(0).await.expect("head");
    net.wait_height(&[0, 1, 2, 3], h + 2, 30).await;
    net.assert_same_chain(&[0, 1, 2, 3], h + 2).await;

    // A restart with a wrong passphrase stops with a clear error and touches nothing; the right one resumes.
    assert!(net.stop(0).success(), "node 0 stops cleanly");
    let share_before = std::fs::read(&path).expect("share file");
    let wrong_file = net.net_dir().join("wrong-passphrase");
    std::fs::write(&wrong_file, "not the passphrase\n").expect("write");
    let (status, stderr) = net.start_refused(0, &wrong_file);
    assert!(!status.success(), "node 0 started with a wrong passphrase");
    assert!(stderr.contains("wrong passphrase"), "unclear error: {stderr}");
    assert_eq!(
        std::fs::read(&path).expect("share file"),
        share_before,
        "the share file changed"
    );
    assert!(net.share_path(0, round).exists());
    net.start(0, None);
    let h = net.head(1).await.expect("head");
    net.wait_height(&[0, 1, 2, 3], h + 2, 60).await;
    net.assert_same_chain(&[0, 1, 2, 3], h + 2).await;
}

/// A node killed in the middle of the DKG and restarted rebuilds its part of the round from the blocks it
/// stored and synced: it ends with the same key epoch as the others and its own share on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_round_recovers_its_part() {
    let _serial = SERIAL.lock().await;
    let mut net = Testnet::generate(
        "threshold-key-restart",
        NetOptions {
            key_phase_blocks: 3,
            ..Default::default()
        },
    );
    for i in 0..4 {
        net.start(i, None);
    }
    // Blocks 2..=4 are the deal phase, 5..=7 acks: kill node 3 in the ack phase, bring it back in the log phase.
    net.wait_height(&[0, 1, 2, 3], 5, 60).await;
    net.kill(3);
    net.wait_height(&[0, 1, 2], 8, 30).await;
    net.start(3, None);
    let epochs: Vec<Value> = wait_for(90, "the same key epoch on all four", || async {
        let mut v = Vec::new();
        for i in 0..4 {
            let k = net.call(i, "metis_thresholdKey", json!([])).await.ok()?;
            if k["current"].is_null() {
                return None;
            }
            v.push(k["current"].clone());
        }
        v.iter().all(|c| *c == v[0]).then_some(v)
    })
    .await;
    let round = epochs[0]["round"].as_u64().expect("round");
    // The recovered share works with the others' public polynomial: its partial aggregates with theirs.
    let output = net.key_output().await;
    let digest = [5u8; 32];
    let mut partials = Vec::new();
    for i in [0, 1, 3] {
        let (share, _) = net.share(i, round).await;
        partials.push(metis_mpc::threshold::sign_partial(&share, &digest));
    }
    assert!(metis_mpc::threshold::aggregate(output.public(), &digest, &partials).is_ok());
    let h = net.head(0).await.expect("head");
    net.wait_height(&[0, 1, 2, 3], h + 2, 30).await;
    net.assert_same_chain(&[0, 1, 2, 3], h + 2).await;
}

/// The pool signs inside the nodes: the ledger cuts a batch every 4 blocks, every node derives the header from
/// its own chain, signs it with its share and sends the partial over the authenticated gossip; a quorum
/// recovers the signature, which BatchInbox on anvil accepts. With one node down, the other three still sign.
/// One node is dialled by nobody and still takes part fully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_signs_every_batch_and_l1_takes_it() {
    use alloy::providers::Provider;
    let _serial = SERIAL.lock().await;
    let mut l1 = metis_testkit::deployed_l1_with(&[], &["--block-time", "0.25"]).await;
    let dir = common::tempdir("pool-signing-l1");
    let contracts = dir.join("contracts.json");
    std::fs::write(&contracts, serde_json::to_string(&l1.deployment).expect("json")).expect("write");
    let mut net = Testnet::generate(
        "pool-signing",
        NetOptions {
            key_phase_blocks: 3,
            batch_blocks: 4,
            epoch_length: 5,
            reward_epochs: 2,
            l1: Some(common::testnet::L1Options {
                rpc: l1.anvil.endpoint(),
                contracts,
                owner_key: format!("0x{}", alloy::hex::encode(l1.owner.to_bytes())),
                confirmations: 2,
            }),
            ..Default::default()
        },
    );
    // `metis-seq testnet` sent transactions from the owner: a fresh provider, so no cached nonce.
    l1.provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::new(l1.owner.clone()))
        .connect_http(l1.anvil.endpoint_url())
        .erased();
    // Nobody dials node 3 (as with a newcomer the others do not list): it gets the others' partials,
    // signatures and transactions over the links it dialled.
    for i in 0..3 {
        net.drop_gossip_peer(i, 3);
    }
    for i in 0..4 {
        net.start(i, None);
    }
    let key: Value = wait_for(90, "the genesis DKG", || async {
        let k = net.call(0, "metis_thresholdKey", json!([])).await.ok()?;
        (!k["current"].is_null()).then_some(k)
    })
    .await;
    let group_key = Bytes::from(alloy::hex::decode(key["current"]["group_key"].as_str().expect("key")).expect("hex"));
    let pool = metis_contracts::LockingPool::new(l1.deployment.locking_pool, l1.provider.clone());
    let r = pool.setGroupKey(group_key).send().await.map(mined).expect("send").await;
    assert!(r.status());

    // Some transactions, so batches carry some; sent to node 3, whose links are all its own.
    let sender = common::dev_key(0);
    for nonce in 0..12 {
        net.call(3, "eth_sendRawTransaction", json!([common::transfer(&sender, nonce)]))
            .await
            .expect("transaction accepted");
    }
    let inbox = l1.inbox();
    let mut posted = 0u64;
    let mut txs_in_batches = 0usize;
    let post = |b: Value| {
        let inbox = inbox.clone();
        async move {
            let h = common::testnet::header_from(&b);
            let payload: Bytes = b["payload"].as_str().expect("payload").parse().expect("hex");
            let blocks = metis_batcher::payload::decode(&payload).expect("the payload decodes");
            assert_eq!(blocks.len() as u64, h.l2LastBlock - h.l2FirstBlock + 1);
            let sig: Bytes = b["signature"].as_str().expect("signature").parse().expect("hex");
            let r = inbox
                .appendBatch(h.clone(), payload, sig)
                .send()
                .await
                .map(mined)
                .expect("send")
                .await;
            assert!(r.status(), "BatchInbox refused batch {} signed by the pool", h.index);
            blocks.iter().map(|b| b.transactions.len()).sum::<usize>()
        }
    };
    // Batches 0.. (the first ones were cut before the key existed: signed once it did), all posted in order.
    while posted < 6 {
        let b = net.signed_batch(&[0, 1, 2, 3], posted).await;
        txs_in_batches += post(b).await;
        posted += 1;
    }
    // One node down: any three shares are a quorum.
    let round = key["current"]["round"].as_u64().expect("round");
    let dead_index = net.share(3, round).await.0.index.get();
    net.kill(3);
    let resume = posted + 2;
    while posted < resume + 3 {
        let b = net.signed_batch(&[0, 1, 2], posted).await;
        if posted >= resume {
            let shares = b["signedByShares"].as_array().expect("signers").clone();
            assert!(
                !shares.iter().any(|s| s == dead_index),
                "the dead node's share counted: {b}"
            );
        }
        txs_in_batches += post(b).await;
        posted += 1;
    }
    assert_eq!(inbox.nextIndex().call().await.expect("nextIndex"), posted);
    // Node 3 back: it syncs the blocks it missed, derives the batches cut meanwhile, and ends with the same
    // signatures (its late partials are answered with them), then signs new batches with the others.
    net.start(3, None);
    for index in [resume, posted - 1, posted + 1] {
        net.signed_batch(&[0, 1, 2, 3], index).await;
    }
    assert_eq!(txs_in_batches, 12, "every transaction is in a posted batch");
    // Inclusion proofs: each transaction's proof from the API verifies in Rust and in BatchInbox.verifyTx
    // against the posted batch; the batch for its block is the proof's batch; a wrong position fails on L1.
    for nonce in [0u64, 11] {
        let raw = alloy::hex::decode(common::transfer(&sender, nonce)).expect("hex");
        let hash = keccak256(&raw);
        let p = net
            .call(2, "metis_getTxBatchProof", json!([hash]))
            .await
            .expect("proof");
        let h = common::testnet::header_from(&p["batch"]);
        let proof: Vec<B256> = serde_json::from_value(p["proof"].clone()).expect("proof list");
        let leaf: B256 = serde_json::from_value(p["leaf"].clone()).expect("leaf");
        let (block, index) = (
            p["blockNumber"].as_u64().expect("block"),
            p["txIndex"].as_u64().expect("index") as u32,
        );
        assert_eq!(leaf, metis_batcher::tx_leaf(block, index, hash));
        assert!(metis_batcher::merkle::verify(h.txRoot, leaf, &proof), "{p}");
        let by_block = net
            .call(2, "metis_getBatchForBlock", json!([block]))
            .await
            .expect("batch");
        assert_eq!(by_block["index"], p["batch"]["index"]);
        let on_l1 = inbox
            .verifyTx(h.clone(), block, index, hash, proof.clone())
            .call()
            .await
            .expect("verifyTx");
        assert!(on_l1, "BatchInbox does not verify the proof of {hash}");
        let wrong = inbox
            .verifyTx(h, block, index + 1, hash, proof)
            .call()
            .await
            .expect("verifyTx");
        assert!(!wrong);
    }
    assert!(net
        .call(2, "metis_getTxBatchProof", json!([B256::repeat_byte(7)]))
        .await
        .expect("null")
        .is_null());

    // Reward reports (every 2 epochs of 5 blocks) are signed by the pool too, and LockingPool credits them:
    // each sequencer's reward on L1 is the blocks it produced x rewardPerBlock.
    let token = metis_contracts::MetisToken::new(l1.deployment.token, l1.provider.clone());
    let owner = l1.owner.address();
    let enough = alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(30));
    assert!(token
        .mint(owner, enough)
        .send()
        .await
        .map(mined)
        .expect("send")
        .await
        .status());
    let r = token
        .approve(l1.deployment.locking_info, enough)
        .send()
        .await
        .expect("send");
    assert!(mined(r).await.status());
    let per_block = pool.rewardPerBlock().call().await.expect("rewardPerBlock");
    let mut produced: std::collections::BTreeMap<u64, u64> = Default::default();
    for id in 1..=2u64 {
        let report: Value = wait_for(60, &format!("reward report {id} signed"), || async {
            let r = net.call(0, "metis_getRewardReport", json!([id])).await.ok()?;
            (!r["signature"].is_null()).then_some(r)
        })
        .await;
        assert_eq!(report["start_epoch"], json!(2 * (id - 1)), "{report}");
        assert_eq!(report["end_epoch"], json!(2 * id - 1), "{report}");
        let pairs = report["blocks"].as_array().expect("blocks").clone();
        let total: u64 = pairs.iter().map(|p| p[1].as_u64().expect("count")).sum();
        let epochs = net
            .call(0, "metis_epochs", json!([2 * (id - 1), 2]))
            .await
            .expect("epochs");
        let blocks_in_range: u64 = epochs
            .as_array()
            .expect("epochs")
            .iter()
            .map(|e| e["last_block"].as_u64().expect("last") - e["first_block"].as_u64().expect("first") + 1)
            .sum();
        assert_eq!(
            total, blocks_in_range,
            "every block of the two epochs counted once: {report} {epochs}"
        );
        let (mut ids, mut counts) = (Vec::new(), Vec::new());
        for p in &pairs {
            let (sid, n) = (p[0].as_u64().expect("id"), p[1].as_u64().expect("count"));
            *produced.entry(sid).or_default() += n;
            ids.push(alloy::primitives::U256::from(sid));
            counts.push(alloy::primitives::U256::from(n));
        }
        let sig: Bytes = report["signature"].as_str().expect("signature").parse().expect("hex");
        let r = pool
            .batchSubmitRewards(
                alloy::primitives::U256::from(id),
                alloy::primitives::U256::from(2 * (id - 1)),
                alloy::primitives::U256::from(2 * id - 1),
                ids,
                counts,
                sig,
            )
            .send()
            .await
            .map(mined)
            .expect("send")
            .await;
        assert!(r.status(), "LockingPool refused reward report {id} signed by the pool");
    }
    for (sid, n) in &produced {
        let s = pool
            .sequencers(alloy::primitives::U256::from(*sid))
            .call()
            .await
            .expect("sequencer");
        assert_eq!(
            s.reward,
            per_block * alloy::primitives::U256::from(*n),
            "sequencer {sid}"
        );
    }

    // Without the payload flag: the header and signature only; a bad index is refused; an unknown one is null.
    let b = net.call(0, "metis_getBatchByIndex", json!([1])).await.expect("batch 1");
    assert!(b.get("payload").is_none() && !b["signature"].is_null(), "{b}");
    assert!(net.call(0, "metis_getBatchByIndex", json!(["one"])).await.is_err());
    assert!(net
        .call(0, "metis_getBatchByIndex", json!([1_000_000]))
        .await
        .expect("null")
        .is_null());
    let status = net.call(0, "metis_signer", json!([])).await.expect("signer status");
    println!("signer status of node 0: {status}");
}
