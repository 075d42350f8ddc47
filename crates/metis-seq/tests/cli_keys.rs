//! `metis-seq keys init/show`: keys generated once, encrypted at rest, refused with a wrong passphrase.

use std::process::Command;

fn keys(args: &[&str], pass: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_metis-seq"))
        .arg("keys")
        .args(args)
        .env("METIS_KEYSTORE_PASSPHRASE", pass)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running metis-seq")
}

#[test]
fn init_show_and_refusals() {
    let dir = std::env::temp_dir().join(format!("metis-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();

    let out = keys(&["init", "--dir", d, "--insecure-fast-kdf"], "pw-1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["consensus_key", "dkg_key"] {
        let v = public[k].as_str().unwrap();
        assert!(v.starts_with("0x") && v.len() == 66, "{k} = {v}");
    }
    assert!(public["signer"]
        .as_str()
        .unwrap()
        .parse::<alloy::primitives::Address>()
        .is_ok());

    #[cfg(unix)]
    for f in ["identity.key", "dkg.key", "l1-signer.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }

    // Show gives the same public keys with the right passphrase...
    let out = keys(&["show", "--dir", d], "pw-1");
    assert!(out.status.success());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        public
    );
    // ...and a clear error with a wrong one.
    let out = keys(&["show", "--dir", d], "pw-2");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    // Existing keys are never overwritten.
    let out = keys(&["init", "--dir", d, "--insecure-fast-kdf"], "pw-1");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    let again = keys(&["show", "--dir", d], "pw-1");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(),
        public
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `metis-seq init --rpc-node`: an RPC node's home, whose config says so and which a sequencer's `[followers]`
/// can name by the printed key; a second init refuses to overwrite it.
#[test]
fn init_writes_an_rpc_nodes_config() {
    let dir = std::env::temp_dir().join(format!("metis-init-rpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let init = || {
        Command::new(env!("CARGO_BIN_EXE_metis-seq"))
            .args(["init", "--rpc-node", "--moniker", "rpc0", "--home"])
            .arg(&dir)
            .env("METIS_KEYSTORE_PASSPHRASE", "pw-rpc")
            .env("RUST_LOG", "warn")
            .output()
            .expect("running metis-seq")
    };
    let out = init();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = public["consensus_key"].as_str().unwrap().to_string();
    assert!(String::from_utf8_lossy(&out.stderr).contains("[followers] keys"));
    let cfg = metis_node::config::NodeConfigFile::load(&dir.join("config.toml")).unwrap();
    assert_eq!(cfg.role, metis_node::config::Role::Rpc);
    // The key it printed is one a sequencer's [followers] takes.
    let followers = metis_node::config::FollowersSection {
        keys: vec![key],
        ..Default::default()
    };
    assert_eq!(followers.policy().unwrap().keys.len(), 1);
    let again = init();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    std::fs::remove_dir_all(&dir).unwrap();
}
