//! Our Merkle-Patricia state root against anvil's for the same genesis (accounts with balances, nonces, code
//! and storage): the trie and account encodings must match Ethereum's exactly.

use alloy::node_bindings::Anvil;
use alloy::providers::{Provider, ProviderBuilder};
use metis_execution::{state::WorldState, ChainSpec};

#[tokio::test]
async fn genesis_state_root_matches_anvil() {
    let mut alloc = serde_json::Map::new();
    for i in 1..=40u64 {
        let addr = format!("0x{:040x}", i * 0x1111_1111);
        let mut acct = serde_json::json!({ "balance": format!("0x{:x}", i * 1_000_000_007) });
        if i % 3 == 0 {
            acct["nonce"] = serde_json::json!(format!("0x{:x}", i));
        }
        if i % 4 == 0 {
            acct["code"] = serde_json::json!(format!("0x6000{:02x}", i));
            let mut storage = serde_json::Map::new();
            for s in 0..(i % 7 + 1) {
                storage.insert(
                    format!("0x{:064x}", s * 31 + 1),
                    serde_json::json!(format!("0x{:064x}", s + i)),
                );
            }
            acct["storage"] = serde_json::Value::Object(storage);
        }
        alloc.insert(addr, acct);
    }
    let genesis = serde_json::json!({
        "config": { "chainId": 4242, "homesteadBlock": 0, "eip150Block": 0, "eip155Block": 0, "eip158Block": 0,
                    "byzantiumBlock": 0, "constantinopleBlock": 0, "petersburgBlock": 0, "istanbulBlock": 0,
                    "berlinBlock": 0, "londonBlock": 0, "shanghaiTime": 0, "cancunTime": 0, "pragueTime": 0 },
        "gasLimit": "0x1c9c380",
        "baseFeePerGas": "0x3b9aca00",
        "difficulty": "0x0",
        "timestamp": "0x0",
        "alloc": alloc,
    });
    let dir = std::env::temp_dir().join(format!("metis-genesis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(&genesis).unwrap()).unwrap();

    let spec = ChainSpec::from_genesis_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (_, ours) = WorldState::genesis(&spec);

    let anvil = Anvil::new()
        .path(metis_testkit::anvil_path())
        .port(metis_testkit::free_port())
        .arg("--init")
        .arg(&path)
        .timeout(30_000)
        .spawn();
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    // anvil reports the empty root for block 0; an empty block 1 (no rewards after the merge) carries the
    // genesis state's real root.
    provider.raw_request::<_, String>("evm_mine".into(), ()).await.unwrap();
    let block1 = provider
        .get_block_by_number(1.into())
        .await
        .unwrap()
        .expect("anvil block 1");
    // anvil adds its own accounts (dev keys, system contracts) to the genesis: take its whole state from a
    // dump, compute our root over exactly that, and compare.
    let dump: alloy::primitives::Bytes = provider.raw_request("anvil_dumpState".into(), ()).await.unwrap();
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(dump.as_ref()), &mut json).unwrap();
    let state: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut full_alloc = serde_json::Map::new();
    for (addr, a) in state["accounts"].as_object().expect("accounts in the dump") {
        full_alloc.insert(
            addr.clone(),
            serde_json::json!({"balance": a["balance"], "nonce": a["nonce"], "code": a["code"], "storage": a["storage"]}),
        );
    }
    let mut g2 = genesis.clone();
    g2["alloc"] = serde_json::Value::Object(full_alloc);
    let spec2 = ChainSpec::from_genesis_json(&g2.to_string()).unwrap();
    assert!(spec2.alloc.len() >= spec.alloc.len());
    for (addr, a) in &spec.alloc {
        assert_eq!(
            spec2.alloc.get(addr),
            Some(a),
            "anvil kept genesis account {addr} as given"
        );
    }
    let (_, over_anvil_state) = WorldState::genesis(&spec2);
    assert_eq!(
        over_anvil_state, block1.header.state_root,
        "state root differs from anvil's over the same state"
    );
    let _ = ours;
    let _ = std::fs::remove_dir_all(&dir);
}
