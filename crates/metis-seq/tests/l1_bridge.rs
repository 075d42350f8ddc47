//! The sequencer set follows staking on L1: real anvil (interval mining), the real contracts, real `metis-seq
//! node` processes. A sequencer that locks joins the running network and votes and gets elected; relock and
//! withdraw change power; unlock removes it; a Locked event reorged out before depth never counts; an L1 outage
//! does not stop L2 blocks and its events are taken when L1 is back; a validator whose L1 view lacks an event
//! does not vote for the block carrying it.

mod common;

use alloy::primitives::{utils::parse_ether, Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use common::testnet::{L1Options, NetOptions, Testnet};
use common::wait_for;
use metis_contracts::{LockingPool, MetisToken};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The networks here are heavy for a 2-core machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONFIRMATIONS: u64 = 4;

/// A TCP relay in front of anvil that can be switched off (every connection cut, new ones refused) and on.
struct Proxy {
    url: String,
    down: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let down = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the endpoint is down
                }
                let up = upstream.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&up).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                if let Ok(mut v) = c.lock() {
                    v.push(h.abort_handle());
                }
            }
        });
        Self { url, down, conns, task }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            if let Ok(mut v) = self.conns.lock() {
                v.drain(..).for_each(|h| h.abort());
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut v) = self.conns.lock() {
            v.drain(..).for_each(|h| h.abort());
        }
    }
}

struct Env {
    l1: metis_testkit::L1,
    net: Testnet,
}

/// anvil mining every 250 ms with the contracts, and a network whose genesis set locked on it.
async fn setup(name: &str, stakes: Vec<u64>, standby: usize, owners: &[PrivateKeySigner]) -> Env {
    let mut l1 = metis_testkit::deployed_l1_with(owners, &["--block-time", "0.25"]).await;
    let dir = common::tempdir(&format!("{name}-l1"));
    let contracts = dir.join("contracts.json");
    std::fs::write(&contracts, serde_json::to_string(&l1.deployment).expect("json")).expect("write");
    let net = Testnet::generate(
        name,
        NetOptions {
            nodes: stakes.len(),
            stakes,
            epoch_length: 5,
            standby,
            key_phase_blocks: 3,
            batch_blocks: 5,
            l1: Some(L1Options {
                rpc: l1.anvil.endpoint(),
                contracts,
                owner_key: format!("0x{}", alloy::hex::encode(l1.owner.to_bytes())),
                confirmations: CONFIRMATIONS,
            }),
            ..Default::default()
        },
    );
    // `metis-seq testnet` sent transactions from the contract owner: a fresh provider, so no cached nonce.
    let mut wallet = alloy::network::EthereumWallet::new(l1.owner.clone());
    for o in owners {
        wallet.register_signer(o.clone());
    }
    l1.provider = alloy::providers::ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(l1.anvil.endpoint_url())
        .erased();
    Env { l1, net }
}

fn pool(env: &Env) -> LockingPool::LockingPoolInstance<DynProvider> {
    LockingPool::new(env.l1.deployment.locking_pool, env.l1.provider.clone())
}

async fn mined(call: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>) -> u64 {
    let r = tokio::time::timeout(Duration::from_secs(60), call.get_receipt())
        .await
        .expect("an L1 receipt within 60 s")
        .expect("receipt");
    assert!(r.status(), "L1 transaction {} reverted", r.transaction_hash);
    r.block_number.expect("block number")
}

/// Whitelists, funds and approves `owner` for `stake` (the owner key must be in the provider's wallet).
async fn prepare_owner(env: &Env, owner: Address, stake: U256) {
    let p = &env.l1.provider;
    env.l1.fund(owner).await;
    mined(pool(env).setWhitelist(owner, true).send().await.expect("send")).await;
    let token = MetisToken::new(env.l1.deployment.token, p.clone());
    mined(token.mint(owner, stake).send().await.expect("send")).await;
    mined(
        token
            .approve(env.l1.deployment.locking_info, stake)
            .from(owner)
            .send()
            .await
            .expect("send"),
    )
    .await;
}

/// The keys of node `i` as `lockFor` takes them.
async fn node_keys(net: &Testnet, i: usize) -> (Address, Bytes, Bytes) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .args(["keys", "show", "--dir"])
        .arg(net.net_dir().join(format!("node{i}/keys")))
        .arg("--passphrase-file")
        .arg(net.net_dir().join("passphrase"))
        .output()
        .expect("keys show");
    let v: Value = serde_json::from_slice(&out.stdout).expect("keys json");
    let hex = |k: &str| Bytes::from(alloy::hex::decode(v[k].as_str().expect("key")).expect("hex"));
    (
        v["signer"].as_str().expect("signer").parse().expect("address"),
        hex("consensus_key"),
        hex("dkg_key"),
    )
}

async fn sequencer(net: &Testnet, node: usize, id: u64) -> Value {
    net.call(node, "metis_sequencer", json!([id]))
        .await
        .unwrap_or(Value::Null)
}

fn tokens(v: &Value) -> u64 {
    let wei = U256::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or_default();
    (wei / U256::from(10u64).pow(U256::from(18))).to::<u64>()
}

/// Waits until node 0's current threshold-key epoch (round >= `min_round`) has exactly these members.
async fn key_with_members(net: &Testnet, members: &[u64], min_round: u64) -> Value {
    wait_for(120, &format!("a threshold key held by {members:?}"), || async {
        let k = net.call(0, "metis_thresholdKey", json!([])).await.ok()?;
        let c = &k["current"];
        (c["members"] == json!(members) && c["round"].as_u64()? >= min_round).then(|| c.clone())
    })
    .await
}

/// Waits until every node in `nodes` signs with key round `round` (and holds a share of it), then until the
/// next batch cut is signed on all of them; checks the signature under the group key over the header's BatchInbox
/// digest.
async fn batch_signed_under(env: &Env, nodes: &[usize], round: u64) -> Value {
    wait_for(
        60,
        &format!("the signers of nodes {nodes:?} on key round {round}"),
        || async {
            for &i in nodes {
                let s = env.net.call(i, "metis_signer", json!([])).await.ok()?;
                if s["key_round"] != json!(round) || s["has_share"] != json!(true) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let s = env.net.call(nodes[0], "metis_signer", json!([])).await.expect("signer");
    let next = s["batches"]["next_index"].as_u64().expect("next batch index");
    let b = env.net.signed_batch(nodes, next).await;
    let h = common::testnet::header_from(&b);
    let digest = metis_contracts::digest::batch_signing_digest(env.l1.chain_id, env.l1.deployment.batch_inbox, &h);
    let sig: Bytes = b["signature"].as_str().expect("signature").parse().expect("hex");
    let sig = metis_mpc::encoding::g1_from_eip2537(&sig).expect("a G1 point");
    let output = env.net.key_output().await;
    metis_mpc::threshold::verify(output.public().public(), &digest.0, &sig)
        .expect("the pool's signature verifies under the group key");
    b
}

async fn set_changes(net: &Testnet, node: usize) -> Vec<Value> {
    net.call(node, "metis_setChanges", json!([]))
        .await
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

async fn l1_events(net: &Testnet, node: usize) -> Vec<Value> {
    net.call(node, "metis_l1Events", json!([]))
        .await
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Waits until node `node`'s L1 view has read past L1 block `block`.
async fn view_past(net: &Testnet, node: usize, block: u64) {
    wait_for(60, &format!("node {node}'s L1 view past block {block}"), || async {
        let s = net.call(node, "metis_l1Status", json!([])).await.ok()?;
        (s["synced_to"].as_u64()? > block).then_some(())
    })
    .await
}

async fn l1_head(env: &Env) -> u64 {
    env.l1.provider.get_block_number().await.expect("L1 head")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequencer_set_follows_l1() {
    let _serial = SERIAL.lock().await;
    let newcomer = PrivateKeySigner::random();
    let mut env = setup("l1-follow", vec![30_000; 4], 1, std::slice::from_ref(&newcomer)).await;
    // Every node reads L1 through one relay, so the test can take "the L1 endpoint" down.
    let proxy = Proxy::start(env.l1.anvil.endpoint().trim_start_matches("http://").to_string()).await;
    for i in 0..5 {
        env.net.set_l1_rpc(i, &proxy.url);
        env.net.start(i, None);
    }
    env.net.wait_height(&[0, 1, 2, 3, 4], 2, 60).await;
    // The genesis set makes the threshold key (blocks 2..=10).
    let genesis_key = key_with_members(&env.net, &[1, 2, 3, 4], 0).await;
    assert_eq!(genesis_key["quorum"], 3);
    let genesis_round = genesis_key["round"].as_u64().expect("round");
    let (old_share, _) = env.net.share(0, genesis_round).await;
    let p = env.l1.provider.clone();
    let (signer, ck, dk) = node_keys(&env.net, 4).await;
    let stake = parse_ether("100000").expect("constant");
    prepare_owner(&env, newcomer.address(), stake).await;

    // 1. A lock that a reorg removes before it is CONFIRMATIONS deep never counts. Interval mining is paused so
    //    the depth is exact: mined at depth 1, two more blocks (depth 3 < 4), then rolled back.
    p.raw_request::<_, ()>("evm_setIntervalMining".into(), (0u64,))
        .await
        .expect("pause mining");
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await.expect("snapshot");
    let pool_now = pool(&env);
    let lock_call = pool_now
        .lockFor(signer, stake, ck.clone(), dk.clone())
        .from(newcomer.address());
    let pending = lock_call.send().await.expect("send");
    p.raw_request::<_, ()>("anvil_mine".into(), (U256::from(1),))
        .await
        .expect("mine");
    let reorged_block = mined(pending).await;
    p.raw_request::<_, ()>("anvil_mine".into(), (U256::from(2),))
        .await
        .expect("mine");
    // Let every listener poll the shallow chain a few times.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(p
        .raw_request::<_, bool>("evm_revert".into(), (snapshot,))
        .await
        .expect("revert"));
    p.raw_request::<_, ()>("evm_setIntervalMining".into(), (1u64,))
        .await
        .expect("resume mining");
    // The provider cached the newcomer's nonce of the reverted lock: a fresh one reads it from the chain.
    let mut wallet = alloy::network::EthereumWallet::new(env.l1.owner.clone());
    wallet.register_signer(newcomer.clone());
    env.l1.provider = alloy::providers::ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(env.l1.anvil.endpoint_url())
        .erased();
    let p = env.l1.provider.clone();
    let past = reorged_block + CONFIRMATIONS + 4;
    wait_for(60, "L1 to grow past the reorged lock", || async {
        (l1_head(&env).await > past + CONFIRMATIONS).then_some(())
    })
    .await;
    for i in 0..4 {
        view_past(&env.net, i, past).await;
    }
    let head = env.net.head(0).await.expect("head");
    env.net.wait_height(&[0, 1, 2, 3], head + 2, 30).await;
    for i in 0..4 {
        assert!(
            sequencer(&env.net, i, 5).await.is_null(),
            "node {i} took a reorged-out Locked"
        );
        assert!(
            !l1_events(&env.net, i).await.iter().any(|e| e["event"] == "Locked"),
            "node {i} applied a reorged-out Locked"
        );
    }

    // 2. The real lock: after the confirmations it is carried in a block, and the newcomer joins the validator
    //    set at the next epoch boundary, votes, and gets elected and produces blocks.
    let lock_block = mined(
        pool(&env)
            .lockFor(signer, stake, ck.clone(), dk.clone())
            .from(newcomer.address())
            .send()
            .await
            .expect("send"),
    )
    .await;
    let lock_hash = p
        .get_block_by_number(lock_block.into())
        .await
        .expect("block")
        .expect("block")
        .header
        .hash;
    let t0 = Instant::now();
    let joined = wait_for(60, "sequencer 5 to become a validator", || async {
        let s = sequencer(&env.net, 0, 5).await;
        (s["status"] == "Active" && s["voting_power"] == 100_000).then_some(s)
    })
    .await;
    eprintln!("lock at L1 block {lock_block} -> validator after {:?}", t0.elapsed());
    assert_eq!(joined["signer"], json!(signer));
    let locked: Vec<Value> = l1_events(&env.net, 0)
        .await
        .into_iter()
        .filter(|e| e["event"] == "Locked")
        .collect();
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["l1_block"], lock_block);
    assert_eq!(locked[0]["l1_block_hash"], json!(lock_hash));
    // Same node as the wait above: another may be a block behind.
    let changes = set_changes(&env.net, 0).await;
    assert!(changes.iter().any(|c| c["joined"] == json!([5])), "{changes:?}");
    let key5 = env.net.consensus_key(4).await;
    let from = env.net.head(0).await.expect("head");
    wait_for(30, "sequencer 5's precommit in a commit certificate", || async {
        let h = env.net.head(0).await?;
        for n in from..=h {
            for i in 0..5 {
                let c = env.net.call(i, "metis_commit", json!([n])).await.ok()?;
                if c["signers"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|k| *k == json!(key5)))
                {
                    return Some(());
                }
            }
        }
        None
    })
    .await;
    // 100k of 220k stake: elected in an epoch (5 blocks) with probability 0.45 each; 90 s is ~18 epochs.
    let epoch = wait_for(90, "sequencer 5 to be elected", || async {
        let epochs = env.net.call(0, "metis_epochs", json!([0, 1000])).await.ok()?;
        epochs
            .as_array()?
            .iter()
            .find(|e| e["producer"] == 5 && e["ended"] == true)
            .cloned()
    })
    .await;
    let first = epoch["first_block"].as_u64().expect("first block");
    let b = env.net.block(3, first).await.expect("block");
    assert_eq!(b["miner"], json!(signer), "epoch {epoch} was produced by the newcomer");

    // The threshold key follows: the four holders reshare to the five; same group key, quorum 4 of 5.
    let five_key = key_with_members(&env.net, &[1, 2, 3, 4, 5], 1).await;
    assert_eq!(five_key["group_key"], genesis_key["group_key"]);
    assert_eq!(five_key["quorum"], 4);
    // The new sharing signs with any 4 of the 5 (the newcomer included); an old share no longer counts, and
    // the old share files are gone once the new ones are written.
    let five_round = five_key["round"].as_u64().expect("round");
    let output = env.net.key_output().await;
    let digest = [0x42u8; 32];
    let mut partials = Vec::new();
    for i in [1, 2, 3, 4] {
        partials.push(metis_mpc::threshold::sign_partial(
            &env.net.share(i, five_round).await.0,
            &digest,
        ));
    }
    assert!(metis_mpc::threshold::aggregate(output.public(), &digest, &partials).is_ok());
    partials[0] = metis_mpc::threshold::sign_partial(&old_share, &digest);
    assert!(
        metis_mpc::threshold::aggregate(output.public(), &digest, &partials).is_err(),
        "a share of the old sharing contributed to the new one"
    );
    wait_for(30, "the old shares to be deleted", || async {
        (0..4)
            .all(|i| !env.net.share_path(i, genesis_round).exists())
            .then_some(())
    })
    .await;
    // Inside the nodes, the pool now signs its batches with the new sharing, the newcomer taking part.
    batch_signed_under(&env, &[0, 1, 2, 3, 4], five_round).await;

    // 3. Relock and withdraw change voting power at the next boundary.
    let (o1, o2) = (env.net.owner_key(0), env.net.owner_key(1));
    let (o1, o2): (PrivateKeySigner, PrivateKeySigner) = (o1.parse().expect("key"), o2.parse().expect("key"));
    let mut wallet = alloy::network::EthereumWallet::new(o1.clone());
    wallet.register_signer(o2.clone());
    let owners_p = alloy::providers::ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(env.l1.anvil.endpoint_url())
        .erased();
    let owners_pool = LockingPool::new(env.l1.deployment.locking_pool, owners_p.clone());
    let token = MetisToken::new(env.l1.deployment.token, p.clone());
    let extra = parse_ether("10000").expect("constant");
    mined(token.mint(o1.address(), extra).send().await.expect("send")).await;
    let owner_token = MetisToken::new(env.l1.deployment.token, owners_p.clone());
    mined(
        owner_token
            .approve(env.l1.deployment.locking_info, extra)
            .from(o1.address())
            .send()
            .await
            .expect("send"),
    )
    .await;
    mined(
        owners_pool
            .relock(U256::from(1), extra, false)
            .from(o1.address())
            .send()
            .await
            .expect("send"),
    )
    .await;
    mined(
        owners_pool
            .withdraw(U256::from(2), parse_ether("5000").expect("constant"))
            .from(o2.address())
            .send()
            .await
            .expect("send"),
    )
    .await;
    let (s1, s2) = wait_for(60, "relock and withdraw to change voting power", || async {
        let (s1, s2) = (sequencer(&env.net, 3, 1).await, sequencer(&env.net, 3, 2).await);
        (s1["voting_power"] == 40_000 && s2["voting_power"] == 25_000).then_some((s1, s2))
    })
    .await;
    assert_eq!(tokens(&s1["stake"]), 40_000);
    assert_eq!(tokens(&s2["stake"]), 25_000);
    let names: Vec<Value> = l1_events(&env.net, 3)
        .await
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    for n in ["Relocked", "Withdraw", "LockUpdate"] {
        assert!(names.contains(&json!(n)), "{n} not recorded: {names:?}");
    }

    // 4. The L1 endpoint goes away for 30 s: L2 blocks keep coming; a relock made meanwhile is taken when it is
    //    back.
    proxy.set_down(true);
    let down_at = env.net.head(0).await.expect("head");
    let o3: PrivateKeySigner = env.net.owner_key(2).parse().expect("key");
    let o3_p = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::new(o3.clone()))
        .connect_http(env.l1.anvil.endpoint_url())
        .erased();
    mined(token.mint(o3.address(), extra).send().await.expect("send")).await;
    mined(
        MetisToken::new(env.l1.deployment.token, o3_p.clone())
            .approve(env.l1.deployment.locking_info, extra)
            .send()
            .await
            .expect("send"),
    )
    .await;
    let relock3 = mined(
        LockingPool::new(env.l1.deployment.locking_pool, o3_p)
            .relock(U256::from(3), extra, false)
            .send()
            .await
            .expect("send"),
    )
    .await;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            tokens(&sequencer(&env.net, 0, 3).await["stake"]),
            30_000,
            "nothing from L1 while it is down"
        );
    }
    let during = env.net.head(0).await.expect("head") - down_at;
    eprintln!("L1 down 30 s: {during} L2 blocks decided meanwhile");
    assert!(during >= 20, "only {during} L2 blocks in 30 s without L1");
    proxy.set_down(false);
    let back = Instant::now();
    wait_for(60, "the relock made during the outage to be applied", || async {
        let events = l1_events(&env.net, 0).await;
        events
            .iter()
            .any(|e| e["event"] == "LockUpdate" && e["l1_block"] == relock3)
            .then_some(())
    })
    .await;
    eprintln!("L1 back: relock applied after {:?}", back.elapsed());
    wait_for(30, "the relock's power", || async {
        (sequencer(&env.net, 1, 3).await["voting_power"] == 40_000).then_some(())
    })
    .await;

    // 5. The newcomer unlocks: it leaves the set at the next boundary; the chain goes on with the four.
    mined(
        pool(&env)
            .unlock(U256::from(5))
            .from(newcomer.address())
            .send()
            .await
            .expect("send"),
    )
    .await;
    wait_for(60, "sequencer 5 to leave the set", || async {
        let s = sequencer(&env.net, 2, 5).await;
        (s["status"] == "Inactive" && s["voting_power"] == 0).then_some(())
    })
    .await;
    let changes = set_changes(&env.net, 2).await;
    assert!(changes.iter().any(|c| c["left"] == json!([5])), "{changes:?}");
    // ... and the key is reshared back to the four, still the same group key.
    let four_key = key_with_members(&env.net, &[1, 2, 3, 4], five_key["round"].as_u64().expect("round") + 1).await;
    assert_eq!(four_key["group_key"], genesis_key["group_key"]);
    assert_eq!(four_key["quorum"], 3);
    batch_signed_under(&env, &[0, 1, 2, 3], four_key["round"].as_u64().expect("round")).await;
    let h = env.net.head(0).await.expect("head");
    env.net.wait_height(&[0, 1, 2, 3, 4], h + 3, 30).await;
    env.net.assert_same_chain(&[0, 1, 2, 3, 4], h + 3).await;
    // Same blocks, so the same ledger (the header's extra data carries its hash): the standby follower too.
    let ledger = env.net.call(4, "metis_ledger", json!([])).await.expect("ledger");
    assert!(!ledger["last_l1_event"].is_null(), "{ledger}");
    eprintln!("ledger: {ledger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_without_the_event_does_not_vote_for_it() {
    let _serial = SERIAL.lock().await;
    let newcomer = PrivateKeySigner::random();
    let mut env = setup("l1-views", vec![30_000; 4], 0, std::slice::from_ref(&newcomer)).await;
    // Node 3 reads another L1: an anvil of its own, without these contracts, so its view has no events.
    let other = metis_testkit::spawn_anvil_with(&["--block-time", "0.25"]);
    env.net.set_l1_rpc(3, &other.endpoint());
    for i in 0..4 {
        env.net.start(i, None);
    }
    env.net.wait_height(&[0, 1, 2, 3], 2, 60).await;
    // An L1 event that leaves the set as it is (the three others must stay > 2/3): a whitelisting.
    mined(
        pool(&env)
            .setWhitelist(newcomer.address(), true)
            .send()
            .await
            .expect("send"),
    )
    .await;
    let carried = wait_for(60, "the WhitelistChanged event in a decided block", || async {
        let events = l1_events(&env.net, 0).await;
        events
            .iter()
            .find(|e| {
                e["event"] == "WhitelistChanged" && e["data"]["WhitelistChanged"]["user"] == json!(newcomer.address())
            })
            .and_then(|e| e["l2_block"].as_u64())
    })
    .await;
    // The other three decide it and go on; node 3 refused the block, so its head stays below it.
    env.net.wait_height(&[0, 1, 2], carried + 3, 30).await;
    assert!(env.net.head(3).await.expect("head") < carried);
    let key3 = env.net.consensus_key(3).await;
    for i in 0..3 {
        let c = env.net.call(i, "metis_commit", json!([carried])).await.expect("commit");
        let signers = c["signers"].as_array().expect("signers");
        assert!(!signers.contains(&json!(key3)), "node 3 voted for block {carried}: {c}");
        assert_eq!(signers.len(), 3, "{c}");
    }
    let log = std::fs::read_to_string(env.net.log_path(3)).unwrap_or_default();
    assert!(
        log.contains("is not in this node's L1 view"),
        "node 3 did not refuse the block for its L1 view"
    );
    drop(other);
}
