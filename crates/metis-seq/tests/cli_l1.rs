//! `metis-seq l1 deploy` and `l1 set-group-key` as an operator runs them, against a real anvil.

use alloy::{
    primitives::Address,
    providers::{Provider, ProviderBuilder},
};
use commonware_codec::Encode;
use commonware_cryptography::bls12381::primitives::{ops, variant::MinSig};
use metis_contracts::LockingPool;
use rand::{rngs::StdRng, SeedableRng};
use std::process::Command;

fn metis_seq(rpc: &str, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .args(args)
        .args(["--l1-rpc", rpc])
        .env("METIS_L1_PRIVATE_KEY", key)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running metis-seq")
}

fn set_group_key(rpc: &str, key: &str, pool: Address, public_key: &str) -> std::process::Output {
    metis_seq(
        rpc,
        key,
        &[
            "l1",
            "set-group-key",
            "--locking-pool",
            &pool.to_string(),
            "--public-key",
            public_key,
        ],
    )
}

#[tokio::test]
async fn deploy_and_register_group_key() {
    let anvil = metis_testkit::spawn_anvil();
    let rpc = anvil.endpoint();
    let key = format!("0x{}", alloy::hex::encode(anvil.keys()[0].to_bytes()));

    let out = metis_seq(&rpc, &key, &["l1", "deploy"]);
    assert!(
        out.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployment: serde_json::Value = serde_json::from_slice(&out.stdout).expect("deploy prints JSON");
    let pool_addr: Address = deployment["locking_pool"].as_str().unwrap().parse().unwrap();
    for k in ["token", "locking_info", "batch_inbox"] {
        assert!(
            deployment[k].as_str().unwrap().parse::<Address>().is_ok(),
            "{k} address"
        );
    }

    // A group key in commonware's compressed form, as the DKG will output it.
    let (_, pk) = ops::keypair::<_, MinSig>(&mut StdRng::seed_from_u64(3));
    let pk_hex = alloy::hex::encode(pk.encode());
    let out = set_group_key(&rpc, &key, pool_addr, &pk_hex);
    assert!(
        out.status.success(),
        "set-group-key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = metis_mpc::encoding::mpc_address(&pk);
    assert_eq!(
        answer["mpc_address"].as_str().unwrap().parse::<Address>().unwrap(),
        expected
    );

    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let pool = LockingPool::new(pool_addr, provider);
    assert_eq!(pool.mpcAddress().call().await.unwrap(), expected);

    // Bad input: a clear error, non-zero exit, nothing changed on L1.
    let mut bad = pk.encode().to_vec();
    bad[10] ^= 0xff;
    let out = set_group_key(&rpc, &key, pool_addr, &alloy::hex::encode(&bad));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:") && err.contains("G2"), "unclear error: {err}");
    let out = metis_seq(&rpc, "0x1234", &["l1", "deploy"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));
    assert_eq!(
        pool.groupKeyVersion().call().await.unwrap(),
        alloy::primitives::U256::from(1)
    );
}

#[tokio::test]
async fn a_sequencer_locks_with_its_own_keys() {
    let anvil = metis_testkit::spawn_anvil();
    let rpc = anvil.endpoint();
    let deployer_key = format!("0x{}", alloy::hex::encode(anvil.keys()[0].to_bytes()));
    let owner_key = format!("0x{}", alloy::hex::encode(anvil.keys()[1].to_bytes()));
    let owner = anvil.addresses()[1];

    let out = metis_seq(&rpc, &deployer_key, &["l1", "deploy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool_addr: Address = d["locking_pool"].as_str().unwrap().parse().unwrap();
    let token_addr: Address = d["token"].as_str().unwrap().parse().unwrap();

    // The pool owner whitelists the sequencer's owner and (devnet token) funds it.
    let deployer: alloy::signers::local::PrivateKeySigner = anvil.keys()[0].clone().into();
    let admin = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::new(deployer))
        .connect_http(anvil.endpoint_url());
    let pool = LockingPool::new(pool_addr, admin.clone());
    pool.setWhitelist(owner, true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let token = metis_contracts::MetisToken::new(token_addr, admin.clone());
    let stake = alloy::primitives::U256::from(25_000u64)
        * alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18));
    token
        .mint(owner, stake)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    // The operator makes its keys, then locks with them.
    let dir = std::env::temp_dir().join(format!("metis-lock-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .args(["keys", "init", "--insecure-fast-kdf", "--dir"])
        .arg(&dir)
        .env("METIS_KEYSTORE_PASSPHRASE", "pw")
        .output()
        .unwrap();
    assert!(keys.status.success(), "{}", String::from_utf8_lossy(&keys.stderr));
    let public: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .args([
            "l1",
            "lock",
            "--l1-rpc",
            &rpc,
            "--locking-pool",
            &pool_addr.to_string(),
            "--amount",
            "25000",
            "--keys",
        ])
        .arg(&dir)
        .env("METIS_L1_PRIVATE_KEY", &owner_key)
        .env("METIS_KEYSTORE_PASSPHRASE", "pw")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seq = pool.sequencers(alloy::primitives::U256::from(1)).call().await.unwrap();
    assert_eq!(seq.owner, owner);
    assert_eq!(seq.amount, stake);
    assert_eq!(
        format!("{}", seq.consensusKey),
        public["consensus_key"].as_str().unwrap()
    );
    assert_eq!(format!("{}", seq.dkgKey), public["dkg_key"].as_str().unwrap());
    assert_eq!(
        seq.signer.to_string().to_lowercase(),
        public["signer"].as_str().unwrap().to_lowercase()
    );

    // Locking twice for the same owner is refused by the pool, with a clear error.
    let again = Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .args([
            "l1",
            "lock",
            "--l1-rpc",
            &rpc,
            "--locking-pool",
            &pool_addr.to_string(),
            "--amount",
            "25000",
            "--keys",
        ])
        .arg(&dir)
        .env("METIS_L1_PRIVATE_KEY", &owner_key)
        .env("METIS_KEYSTORE_PASSPHRASE", "pw")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("error:"));

    // The rest of the staking life-cycle as the operator runs it: relock, withdraw, look, unlock.
    let pool_s = pool_addr.to_string();
    let run = |key: &str, args: &[&str]| {
        let mut all = vec!["l1"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--locking-pool", &pool_s]);
        metis_seq(&rpc, key, &all)
    };
    let tokens = |n: u64| {
        alloy::primitives::U256::from(n) * alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18))
    };
    token
        .mint(owner, tokens(5_000))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let out = run(&owner_key, &["relock", "--amount", "5000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&owner_key, &["withdraw", "--amount", "8000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&owner_key, &["sequencer"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["amount"], serde_json::json!(tokens(22_000)), "{v}");
    assert_eq!(
        v["withdrawing"],
        serde_json::json!(tokens(8_000)),
        "set aside, still slashable: {v}"
    );
    let out = run(&owner_key, &["withdraw-claim"]);
    assert!(!out.status.success(), "claimed before the exit delay");
    assert!(String::from_utf8_lossy(&out.stderr).contains("withdrawClaim"));
    // Only a jailed sequencer can be unjailed; the CLI says so before sending anything.
    let out = run(&deployer_key, &["unjail", "--sequencer-id", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not jailed"), "{out:?}");
    // Below the minimum lock (20,000) is refused by the pool, with the error reported.
    let out = run(&owner_key, &["withdraw", "--amount", "5000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("withdraw"));
    let out = run(&owner_key, &["unlock"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seq = pool.sequencers(alloy::primitives::U256::from(1)).call().await.unwrap();
    assert_eq!(seq.amount, tokens(22_000));
    assert_ne!(seq.status, 1, "no longer Active after unlock");
    let out = run(&owner_key, &["unlock-claim"]);
    assert!(!out.status.success(), "claimed before the exit delay");
    // Three weeks later (anvil's clock) the stake and the withdrawal are paid.
    let provider = alloy::providers::ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    let _: serde_json::Value = provider
        .raw_request("evm_increaseTime".into(), (22u64 * 24 * 3600,))
        .await
        .unwrap();
    let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    let before = token.balanceOf(owner).call().await.unwrap();
    let out = run(&owner_key, &["withdraw-claim"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&owner_key, &["unlock-claim"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(token.balanceOf(owner).call().await.unwrap() - before, tokens(30_000));
    // Someone without a sequencer is told so; the owner can remove a whitelisting.
    let stranger = format!("0x{}", alloy::hex::encode(anvil.keys()[2].to_bytes()));
    let out = run(&stranger, &["unlock"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("owns no sequencer"));
    let out = run(&deployer_key, &["whitelist", "--user", &owner.to_string(), "--remove"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!pool.whitelist(owner).call().await.unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn deploy_with_governance_then_hand_over_leaves_the_deployer_powerless() {
    let anvil = metis_testkit::spawn_anvil();
    let rpc = anvil.endpoint();
    let deployer_key = format!("0x{}", alloy::hex::encode(anvil.keys()[0].to_bytes()));
    let other_key = format!("0x{}", alloy::hex::encode(anvil.keys()[1].to_bytes()));
    let (deployer, guardian) = (anvil.addresses()[0], anvil.addresses()[2]);
    let dir = std::env::temp_dir().join(format!("metis-hand-over-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("contracts.json");
    let file_s = file.to_str().unwrap();

    // Settings out of range are refused before anything is deployed.
    let out = metis_seq(
        &rpc,
        &deployer_key,
        &["l1", "deploy", "--governance", "--gov-quorum", "0"],
    );
    assert!(!out.status.success());
    let out = metis_seq(&rpc, &deployer_key, &["l1", "deploy", "--gov-quorum", "40"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--governance"),
        "a governance setting without --governance: {out:?}"
    );

    let out = metis_seq(
        &rpc,
        &deployer_key,
        &[
            "l1",
            "deploy",
            "--governance",
            "--gov-voting-period",
            "100",
            "--out",
            file_s,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let addr = |k: &str| -> Address { d[k].as_str().unwrap_or_else(|| panic!("{k} in {d}")).parse().unwrap() };
    let (pool_addr, info_addr, params, timelock, governor) = (
        addr("locking_pool"),
        addr("locking_info"),
        addr("pos_params"),
        addr("timelock"),
        addr("governor"),
    );
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let gov = metis_contracts::MetisGovernor::new(governor, provider.clone());
    assert_eq!(
        gov.votingPeriod().call().await.unwrap(),
        alloy::primitives::U256::from(100)
    );
    assert_eq!(
        gov.votingDelay().call().await.unwrap(),
        alloy::primitives::U256::from(7_200)
    );

    let hand_over = |key: &str, extra: &[&str]| {
        let mut args = vec!["l1", "hand-over", "--contracts", file_s];
        args.extend_from_slice(extra);
        metis_seq(&rpc, key, &args)
    };
    // Before the group key: refused (after the hand-over only a vote could register it).
    let out = hand_over(&deployer_key, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group key"), "{out:?}");
    let (_, pk) = ops::keypair::<_, MinSig>(&mut StdRng::seed_from_u64(5));
    let out = set_group_key(&rpc, &deployer_key, pool_addr, &alloy::hex::encode(pk.encode()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // By a key that does not own the contracts: refused, naming the owner.
    let out = hand_over(&other_key, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the sender"),
        "{out:?}"
    );

    let out = hand_over(
        &deployer_key,
        &["--timelock-delay", "3600", "--guardian", &guardian.to_string()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["owner"].as_str().unwrap().parse::<Address>().unwrap(), timelock);
    let pool = LockingPool::new(pool_addr, provider.clone());
    assert_eq!(pool.owner().call().await.unwrap(), timelock);
    assert_eq!(pool.guardian().call().await.unwrap(), guardian);
    let info = metis_contracts::LockingInfo::new(info_addr, provider.clone());
    assert_eq!(info.owner().call().await.unwrap(), timelock);
    let pos = metis_contracts::PosParams::new(params, provider.clone());
    assert_eq!(pos.owner().call().await.unwrap(), timelock);
    let t = metis_contracts::TimelockController::new(timelock, provider.clone());
    assert_eq!(
        t.getMinDelay().call().await.unwrap(),
        alloy::primitives::U256::from(3600)
    );
    for role in [
        t.PROPOSER_ROLE().call().await.unwrap(),
        t.CANCELLER_ROLE().call().await.unwrap(),
        t.DEFAULT_ADMIN_ROLE().call().await.unwrap(),
    ] {
        assert!(
            !t.hasRole(role, deployer).call().await.unwrap(),
            "the deployer keeps a timelock role"
        );
    }
    assert!(t
        .hasRole(t.PROPOSER_ROLE().call().await.unwrap(), governor)
        .call()
        .await
        .unwrap());

    // The deployer's key is powerless now: its owner call is refused with the contract's error; a second
    // hand-over is refused as done.
    let out = metis_seq(
        &rpc,
        &deployer_key,
        &[
            "l1",
            "whitelist",
            "--locking-pool",
            &pool_addr.to_string(),
            "--user",
            &guardian.to_string(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OwnableUnauthorizedAccount"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pool.whitelist(guardian).call().await.unwrap());
    let out = hand_over(&deployer_key, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hand-over is done"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
