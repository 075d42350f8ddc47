//! `metis-seq l1 deploy` and `l1 set-group-key` as an operator runs them, against a real anvil.

use alloy::{node_bindings::Anvil, primitives::Address, providers::ProviderBuilder};
use commonware_codec::Encode;
use commonware_cryptography::bls12381::primitives::{ops, variant::MinSig};
use metis_contracts::LockingPool;
use rand::{rngs::StdRng, SeedableRng};
use std::{path::PathBuf, process::Command};

fn anvil_path() -> PathBuf {
    std::env::var("METIS_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/anvil"))
}

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
    let anvil = Anvil::new().path(anvil_path()).port(0u16).timeout(30_000).spawn();
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
