//! A devnet started by `metis-seq devnet` for one test (the handle is `metis_testkit::devnet`).

#![allow(dead_code, unused_imports)]

pub use metis_testkit::devnet::*;
pub use metis_testkit::{alive, kill, port_free, tempdir, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_metis-seq");

pub fn anvil() -> std::path::PathBuf {
    metis_testkit::anvil_path()
}

/// The pool's current threshold key as node 0 reports it: its members (sequencer ids) and the group key.
pub async fn key_members(net: &Devnet) -> Option<(Vec<u64>, String)> {
    let k = net.call(0, "metis_thresholdKey", serde_json::json!([])).await.ok()?;
    let members = k["current"]["members"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    Some((members, k["current"]["group_key"].as_str()?.to_string()))
}
