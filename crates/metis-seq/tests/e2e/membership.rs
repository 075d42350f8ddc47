//! A new operator joins the running devnet through L1 (keys, whitelisted by a vote of the stake through `metis-seq
//! gov`, lock, a node of its own), and one of the devnet's sequencers leaves through L1 (unlock): both times the
//! pool reshares its threshold key, keeping the group key L1 knows, and batches keep landing on L1 under it. A dealer killed (SIGKILL) in the middle of the
//! first reshare and restarted gets its share of the new key all the same.

use crate::harness::{cli, key_members, pass_by_vote, serial, tempdir, wait_for, ChildGuard, Devnet, BIN};
use alloy::primitives::{utils::parse_ether, Address};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use metis_contracts::{BatchInbox, LockingPool, MetisToken};
use serde_json::{json, Value};
use std::process::Command;

const PASS: &str = "joiner passphrase, devnet only";

/// A proposal to whitelist `who`, passed by the owners' votes through the CLI.
async fn whitelist_by_vote(net: &Devnet, who: Address) {
    let title = format!("Whitelist {who}\n\nA new operator for the pool.");
    pass_by_vote(net, &["--whitelist", &who.to_string()], &title).await;
}

async fn next_index(net: &Devnet) -> u64 {
    let inbox = BatchInbox::new(net.contract("batch_inbox"), net.l1());
    inbox.nextIndex().call().await.expect("nextIndex")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequencer_joins_and_one_leaves_through_l1_and_the_key_is_reshared() {
    let _one = serial().await;
    let mut net = Devnet::start("members", 3, &["--epoch-length", "5"]).await;
    let l1_rpc = net.l1_rpc();
    let pool_addr = net.contract("locking_pool").to_string();
    let (genesis_members, group_key) = wait_for(30, "the genesis key", || key_members(&net)).await;
    assert_eq!(genesis_members.len(), 4);

    // 1. The newcomer's keys and config (node0's config as the template: same chain, peers = the devnet).
    let work = tempdir("joiner");
    let home = work.join("node");
    let keys = home.join("keys");
    let public: Value = serde_json::from_str(&cli(
        &[
            "keys",
            "init",
            "--dir",
            keys.to_str().expect("path"),
            "--insecure-fast-kdf",
        ],
        &[("METIS_KEYSTORE_PASSPHRASE", PASS), ("RUST_LOG", "warn")],
    ))
    .expect("keys json");
    let signer: Address = public["signer"].as_str().expect("signer").parse().expect("address");
    let template = std::fs::read_to_string(net.m["nodes"][0]["config"].as_str().expect("config")).expect("config");
    let mut cfg: toml::Table = toml::from_str(&template).expect("toml");
    let port = |k: u16| net.base_port + 40 + k;
    cfg.insert("moniker".into(), "joiner".into());
    cfg.insert("data_dir".into(), home.join("data").display().to_string().into());
    cfg.insert("keys_dir".into(), keys.display().to_string().into());
    cfg.insert(
        "genesis".into(),
        net.m["l2"]["genesis"].as_str().expect("genesis").into(),
    );
    cfg.insert(
        "pos_genesis".into(),
        net.m["l2"]["pos_genesis"].as_str().expect("pos genesis").into(),
    );
    let peers = |field: &str| -> toml::Value {
        toml::Value::Array(
            net.nodes()
                .iter()
                .map(|n| toml::Value::String(n[field].as_str().expect("peer").to_string()))
                .collect(),
        )
    };
    let mut rpc = toml::Table::new();
    rpc.insert("addr".into(), format!("127.0.0.1:{}", port(2)).into());
    cfg.insert("rpc".into(), rpc.into());
    let mut p2p = toml::Table::new();
    p2p.insert("listen".into(), format!("/ip4/127.0.0.1/tcp/{}", port(0)).into());
    p2p.insert("peers".into(), peers("p2p"));
    cfg.insert("p2p".into(), p2p.into());
    let mut gossip = toml::Table::new();
    gossip.insert("listen".into(), format!("127.0.0.1:{}", port(1)).into());
    gossip.insert("peers".into(), peers("gossip"));
    cfg.insert("gossip".into(), gossip.into());
    let mut metrics = toml::Table::new();
    metrics.insert("addr".into(), format!("127.0.0.1:{}", port(3)).into());
    cfg.insert("metrics".into(), metrics.into());
    let config = home.join("config.toml");
    std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write config");

    // 2. On L1: the stake whitelists the new owner by a vote (the timelock owns the contracts; the deployer key
    //    cannot), the devnet token is minted to it, and it locks 60,000 METIS for the new sequencer's keys with
    //    `metis-seq l1 lock`.
    let owner = PrivateKeySigner::random();
    let owner_file = work.join("owner.key");
    std::fs::write(&owner_file, format!("0x{}", alloy::hex::encode(owner.to_bytes()))).expect("owner key");
    let deployer = net.deployer();
    let pool = LockingPool::new(net.contract("locking_pool"), net.l1());
    whitelist_by_vote(&net, owner.address()).await;
    assert!(pool.whitelist(owner.address()).call().await.expect("whitelist"));
    let l1 = net.l1_wallet(&deployer);
    for to in [owner.address(), signer] {
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(to)
            .value(parse_ether("10").expect("ether"));
        assert!(l1
            .send_transaction(tx)
            .await
            .expect("fund")
            .get_receipt()
            .await
            .expect("receipt")
            .status());
    }
    let token = MetisToken::new(net.contract("token"), l1.clone());
    let r = token
        .mint(owner.address(), parse_ether("60000").expect("amount"))
        .send()
        .await
        .expect("mint")
        .get_receipt()
        .await
        .expect("receipt");
    assert!(r.status());
    let locked: Value = serde_json::from_str(&cli(
        &[
            "l1",
            "lock",
            "--l1-rpc",
            &l1_rpc,
            "--key-file",
            owner_file.to_str().expect("path"),
            "--locking-pool",
            &pool_addr,
            "--keys",
            keys.to_str().expect("path"),
            "--amount",
            "60000",
        ],
        &[("METIS_KEYSTORE_PASSPHRASE", PASS), ("RUST_LOG", "warn")],
    ))
    .expect("lock json");
    let new_id = u64::from_str_radix(
        locked["sequencer_id"].as_str().expect("id").trim_start_matches("0x"),
        16,
    )
    .expect("id");

    // 3. The newcomer's node: it syncs the chain, becomes a validator at an epoch boundary, and the key is
    //    reshared to the five with the same group key.
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config"])
        .arg(&config)
        .env("METIS_KEYSTORE_PASSPHRASE", PASS)
        .env("RUST_LOG", "info");
    let joiner = ChildGuard::spawn(cmd, &work.join("joiner.log"));
    let joiner_rpc = format!("http://127.0.0.1:{}", port(2));
    let s = wait_for(90, "the newcomer in the validator set", || async {
        let s = net.call(0, "metis_sequencer", json!([new_id])).await.ok()?;
        (s["status"] == "Active" && s["voting_power"].as_u64()? > 0).then_some(s)
    })
    .await;
    assert_eq!(s["signer"], json!(signer));
    let mut five = genesis_members.clone();
    five.push(new_id);
    five.sort();
    // kill -9 of a dealer in the middle of the reshare (its acks phase): the others go on; restarted in the
    // last phase, it takes its part back from what was decided and ends with a share of the new key.
    let (round, start, phase) = wait_for(90, "the reshare to the five running", || async {
        let k = net.call(0, "metis_thresholdKey", json!([])).await.ok()?;
        let r = &k["running"];
        (r["kind"] == "Reshare" && r["players"].as_array()?.len() == 5).then_some((
            r["round"].as_u64()?,
            r["start"].as_u64()?,
            r["phase_blocks"].as_u64()?,
        ))
    })
    .await;
    net.wait_height(&[0, 2, 3], start + phase, 60).await;
    net.kill_node(1);
    let k = net.call(0, "metis_thresholdKey", json!([])).await.expect("key");
    assert_eq!(
        k["running"]["round"], round,
        "the reshare ended before node 1 was killed: the kill tests nothing"
    );
    net.wait_height(&[0, 2, 3], start + 2 * phase, 60).await;
    net.start_node(1, &[]);
    let (members, key) = wait_for(150, "the key reshared to the five", || async {
        let (m, k) = key_members(&net).await?;
        (m == five).then_some((m, k))
    })
    .await;
    assert_eq!(key, group_key, "resharing keeps the group key");
    let share = std::path::Path::new(net.m["nodes"][1]["data_dir"].as_str().expect("data_dir"))
        .join(format!("keys/share-{round}.key"));
    wait_for(60, "node 1's share of the reshared key", || async {
        share.exists().then_some(())
    })
    .await;
    eprintln!("[e2e] joined: sequencer {new_id}; key members {members:?}; node 1, killed mid-reshare, has its share");
    // The newcomer follows the same chain.
    let h = net.head(0).await.expect("head");
    let theirs = wait_for(60, "the newcomer at the network's height", || async {
        let v = net
            .call_url(&joiner_rpc, "eth_getBlockByNumber", json!([format!("{h:#x}"), false]))
            .await
            .ok()?;
        (!v.is_null()).then_some(v)
    })
    .await;
    assert_eq!(
        theirs["hash"],
        net.block(0, h).await.expect("block")["hash"],
        "{}",
        joiner.log_tail(20)
    );

    // 4. node3's owner leaves with `metis-seq l1 unlock`: the key is reshared to the rest, same group key.
    let leaver = &net.nodes()[3];
    let leaver_signer = leaver["signer"].as_str().expect("signer").to_lowercase();
    let validators = net.call(0, "metis_validators", json!([])).await.expect("validators");
    let leaver_id = validators
        .as_array()
        .expect("array")
        .iter()
        .find(|v| v["signer"].as_str().is_some_and(|s| s.to_lowercase() == leaver_signer))
        .and_then(|v| v["id"].as_u64())
        .expect("node3's sequencer");
    cli(
        &[
            "l1",
            "unlock",
            "--l1-rpc",
            &l1_rpc,
            "--key-file",
            leaver["owner_key_file"].as_str().expect("owner key file"),
            "--locking-pool",
            &pool_addr,
        ],
        &[("RUST_LOG", "warn")],
    );
    let rest: Vec<u64> = five.iter().copied().filter(|i| *i != leaver_id).collect();
    let (_, key) = wait_for(150, "the key reshared without the leaver", || async {
        let (m, k) = key_members(&net).await?;
        (m == rest).then_some((m, k))
    })
    .await;
    assert_eq!(key, group_key, "resharing keeps the group key");
    let s = net
        .call(0, "metis_sequencer", json!([leaver_id]))
        .await
        .expect("sequencer");
    assert_eq!(s["voting_power"], 0, "the leaver still votes: {s}");
    eprintln!("[e2e] left: sequencer {leaver_id}; key members {rest:?}");

    // 5. L1 still takes the pool's batches: signed under the reshared key (same group key on L1).
    let before = next_index(&net).await;
    wait_for(90, "two more batches on L1", || async {
        (next_index(&net).await >= before + 2).then_some(())
    })
    .await;
    drop(joiner);
    let _ = std::fs::remove_dir_all(&work);
}
