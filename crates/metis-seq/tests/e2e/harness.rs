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

/// Every BatchAppended event on L1 so far: (index, first L2 block, last L2 block).
pub async fn appended(net: &Devnet) -> Vec<(u64, u64, u64)> {
    use alloy::providers::Provider;
    use alloy::sol_types::SolEvent;
    use metis_contracts::BatchInbox;
    let filter = alloy::rpc::types::Filter::new()
        .address(net.contract("batch_inbox"))
        .event_signature(BatchInbox::BatchAppended::SIGNATURE_HASH)
        .from_block(0);
    net.l1()
        .get_logs(&filter)
        .await
        .expect("logs")
        .iter()
        .map(|l| {
            let e = BatchInbox::BatchAppended::decode_log(&l.inner).expect("decode").data;
            (e.index.to::<u64>(), e.header.l2FirstBlock, e.header.l2LastBlock)
        })
        .collect()
}
