//! The replica against batches that do not hold. A pool key (dealt here) signs batches built from real blocks of
//! the test chain; one batch lies. `metis-seq replica` replays the good batches and then stops with an error
//! naming the bad one: a block that does not re-execute to its header, or a header whose claim differs from its
//! blocks.

mod common;

use alloy::primitives::{Bytes, B256};
use alloy::providers::Provider;
use metis_batcher::payload::BatchBlock;
use metis_batcher::DataMode;
use metis_execution::{ChainSpec, Engine, RecoveredTx};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Six blocks of the test chain with one transfer each, built on an engine of its own.
fn blocks(dir: &std::path::Path, spec: ChainSpec) -> Vec<BatchBlock> {
    let mut engine = Engine::open(&dir.join("builder"), spec).expect("engine");
    let key = common::dev_key(0);
    (0..6u64)
        .map(|nonce| {
            let ctx = engine.next_context(engine.head().timestamp + 1, Default::default());
            let raw = alloy::hex::decode(common::transfer(&key, nonce)).expect("hex");
            let tx = RecoveredTx::decode(&raw).expect("transfer");
            let (b, rejected) = engine.build(ctx, [tx]);
            assert!(rejected.is_empty(), "{rejected:?}");
            let out = BatchBlock {
                header: b.header.clone(),
                transactions: b.transactions.iter().map(|t| t.envelope.clone()).collect(),
            };
            engine.commit(b).expect("commit");
            out
        })
        .collect()
}

/// Runs a replica from scratch until it exits (it must, within 60 s); returns its stderr.
fn replica_exit(net: &std::path::Path, l1_rpc: &str, data: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .arg("replica")
        .args(["--l1-rpc", l1_rpc])
        .arg("--genesis")
        .arg(net.join("genesis.json"))
        .arg("--data-dir")
        .arg(data)
        .args(["--rpc-addr", "127.0.0.1:0", "--confirmations", "0", "--poll-ms", "100"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning metis-seq replica");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the replica kept running on a batch that does not hold");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_stops_on_a_batch_that_does_not_hold() {
    let mut l1 = metis_testkit::deployed_l1(&[]).await;
    let (sharing, shares) = metis_testkit::deal(4, 11);
    l1.register_group_key(&sharing).await;
    let dir = common::tempdir("replica-mismatch");
    let net = dir.join("net");
    let out = Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .args(["testnet", "--nodes", "1", "--base-port", "21000"])
        .arg("--out")
        .arg(&net)
        .output()
        .expect("metis-seq testnet");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The chain's genesis, with the L1 contracts the replica reads.
    let pos_path = net.join("pos_genesis.json");
    let mut pos: Value = serde_json::from_str(&std::fs::read_to_string(&pos_path).expect("pos genesis")).expect("json");
    pos["l1"] = json!({
        "chain_id": l1.chain_id,
        "locking_pool": l1.deployment.locking_pool,
        "locking_info": l1.deployment.locking_info,
        "batch_inbox": l1.deployment.batch_inbox,
        "start_block": 0,
    });
    std::fs::write(&pos_path, pos.to_string()).expect("write");
    let spec = ChainSpec::from_genesis_json(&std::fs::read_to_string(net.join("genesis.json")).expect("genesis"))
        .expect("spec");
    let blocks = blocks(&dir, spec);

    let post = |inbox: metis_contracts::bindings::BatchInbox::BatchInboxInstance<alloy::providers::DynProvider>,
                h: metis_contracts::bindings::BatchInbox::BatchHeader,
                payload: Vec<u8>| {
        let (sharing, shares, chain_id) = (sharing.clone(), shares.clone(), l1.chain_id);
        async move {
            let r =
                metis_testkit::append_signed(&inbox, chain_id, &h, Bytes::from(payload), &sharing, &shares[..3]).await;
            assert!(r.status(), "batch {} refused", h.index);
        }
    };
    let good = metis_batcher::derive(0, B256::ZERO, &blocks[..3], DataMode::Calldata).expect("derive");
    post(l1.inbox(), good.header.clone(), good.payload.clone()).await;
    let parent = metis_contracts::digest::batch_hash(&good.header);
    let snapshot: alloy::primitives::U256 = l1
        .provider
        .raw_request("evm_snapshot".into(), ())
        .await
        .expect("snapshot");

    // A block whose header claims a state root its transactions do not give (the batch header agrees with it).
    let mut forged = blocks[3..].to_vec();
    forged[1].header.state_root = B256::repeat_byte(9);
    let bad = metis_batcher::derive(1, parent, &forged, DataMode::Calldata).expect("derive");
    post(l1.inbox(), bad.header, bad.payload).await;
    let err = replica_exit(&net, &l1.anvil.endpoint(), &dir.join("replica-a"));
    assert!(
        err.contains("batch replayed batch=0"),
        "batch 0 was replayed first: {err}"
    );
    assert!(
        err.contains("batch 1: block 5 does not re-execute to its header"),
        "the error names the batch and block: {err}"
    );

    // The same L1 without that batch; instead a header whose state root is not its blocks' last one.
    let reverted: bool = l1
        .provider
        .raw_request("evm_revert".into(), (snapshot,))
        .await
        .expect("revert");
    assert!(reverted);
    // The wallet's cached nonce is past the reverted transaction: a fresh provider.
    l1.provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::new(l1.owner.clone()))
        .connect_http(l1.anvil.endpoint_url())
        .erased();
    let mut lie = metis_batcher::derive(1, parent, &blocks[3..], DataMode::Calldata).expect("derive");
    lie.header.stateRoot = B256::repeat_byte(7);
    post(l1.inbox(), lie.header, lie.payload).await;
    let err = replica_exit(&net, &l1.anvil.endpoint(), &dir.join("replica-b"));
    assert!(
        err.contains("batch 1: the stateRoot the header claims is not the blocks'"),
        "the error names the batch and the field: {err}"
    );
}
