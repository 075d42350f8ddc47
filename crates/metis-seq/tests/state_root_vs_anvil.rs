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
    let (state2, over_anvil_state) = WorldState::genesis(&spec2);
    assert_eq!(
        over_anvil_state, block1.header.state_root,
        "state root differs from anvil's over the same state"
    );
    let _ = ours;

    // eth_getProof: our proofs over the same state are anvil's, node for node, for accounts with and without
    // storage and code, an account that does not exist, and slots set and unset; and they verify.
    use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
    use alloy_trie::{proof::verify_proof, Nibbles};
    let mut asked = 0;
    for i in [1u64, 3, 4, 8, 12, 40, 77] {
        let address = Address::from_word(B256::from(U256::from(i * 0x1111_1111)));
        let slots: Vec<U256> = (0..4u64)
            .map(|s| U256::from(s * 31 + 1))
            .chain([U256::from(999)])
            .collect();
        let theirs = provider
            .get_proof(address, slots.iter().map(|s| B256::from(*s)).collect())
            .await
            .unwrap();
        let p = state2.proof(&address, &slots);
        let nodes = |v: &[Vec<u8>]| -> Vec<Bytes> { v.iter().cloned().map(Bytes::from).collect() };
        assert_eq!(nodes(&p.account), theirs.account_proof, "account proof of {address}");
        assert_eq!(p.storage_root, theirs.storage_hash, "storage root of {address}");
        for (mine, their) in p.slots.iter().zip(&theirs.storage_proof) {
            assert_eq!(mine.value, their.value, "slot {} of {address}", mine.slot);
            assert_eq!(
                nodes(&mine.proof),
                their.proof,
                "proof of slot {} of {address}",
                mine.slot
            );
            let expected = (!mine.value.is_zero()).then(|| alloy_rlp::encode(mine.value));
            let key = Nibbles::unpack(keccak256(B256::from(mine.slot)));
            verify_proof(p.storage_root, key, expected, &nodes(&mine.proof)).unwrap();
            asked += 1;
        }
        let account = state2.account(&address);
        // What the RPC answers for an account that does not exist (its code hash: empty code's), as anvil does.
        let code_hash = account.map_or(alloy::primitives::KECCAK256_EMPTY, |a| a.code_hash);
        assert_eq!(code_hash, theirs.code_hash, "code hash of {address}");
        assert_eq!(
            account.map_or(U256::ZERO, |a| a.balance),
            theirs.balance,
            "balance of {address}"
        );
        let leaf = account.map(|a| metis_testkit::trie_account(a.nonce, a.balance, p.storage_root, a.code_hash));
        verify_proof(
            over_anvil_state,
            Nibbles::unpack(keccak256(address)),
            leaf,
            &nodes(&p.account),
        )
        .unwrap();
    }
    assert_eq!(asked, 35);
    let _ = std::fs::remove_dir_all(&dir);
}

/// State at older blocks (the archive): the same workload on anvil and on `metis-seq dev`, then every state read
/// (`eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`, `eth_call`) at the block
/// after each step, on both, agrees. Block numbers differ between the two chains (ours makes a block on a timer),
/// so each step's block is taken from its receipt on each side; the sender's balance is left out (fees follow
/// each chain's base fee).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_at_every_older_block_matches_anvil() {
    use alloy::network::{EthereumWallet, TransactionBuilder};
    use alloy::primitives::{Address, Bytes, U256};
    use alloy::rpc::types::TransactionRequest;
    use alloy::signers::local::PrivateKeySigner;

    let key: PrivateKeySigner = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        .parse()
        .unwrap();
    let me = key.address();
    let anvil = metis_testkit::spawn_anvil();
    let dir = metis_testkit::tempdir("archive");
    let node = metis_testkit::dev::DevNode::start(&dir, 200);
    let wallet = EthereumWallet::new(key);
    let chains = [
        ProviderBuilder::new()
            .wallet(wallet.clone())
            .connect_http(anvil.endpoint_url())
            .erased(),
        ProviderBuilder::new()
            .wallet(wallet)
            .connect_http(node.url.parse().unwrap())
            .erased(),
    ];
    let (r1, r2) = (Address::repeat_byte(0x11), Address::repeat_byte(0x22));
    // Runtime: calldata word != 0 -> SSTORE(0, word); empty -> return SLOAD(0). Init code copies it out.
    let runtime = "600035801560 0c57600055005b60005460005260206000f3".replace(' ', "");
    let init = Bytes::from(alloy::hex::decode(format!("601880600b6000396000f3{runtime}")).unwrap());
    let word = |v: u64| Bytes::from(U256::from(v).to_be_bytes::<32>().to_vec());
    // Deployed by the second step, with the sender's nonce 1.
    let contract = me.create(1);
    // A forwarder: CALLs `contract` with its own calldata and returns 32 bytes of the answer (a contract calling
    // a contract, for the call tracer's nested frames). Deployed by the seventh step, with nonce 6.
    let forward = format!(
        "3660006000376020600036600060007 3{}5af15060206000f3",
        alloy::hex::encode(contract.as_slice())
    )
    .replace(' ', "");
    let forwarder_init = Bytes::from(alloy::hex::decode(format!("602c80600b6000396000f3{forward}")).unwrap());
    let forwarder = me.create(6);
    let steps: Vec<TransactionRequest> = vec![
        TransactionRequest::default().with_to(r1).with_value(U256::from(1000)),
        TransactionRequest::default().with_deploy_code(init),
        TransactionRequest::default().with_to(contract).with_input(word(7)),
        TransactionRequest::default().with_to(r2).with_value(U256::from(2000)),
        TransactionRequest::default().with_to(r1).with_value(U256::from(5)),
        TransactionRequest::default().with_to(contract).with_input(word(9)),
        TransactionRequest::default().with_deploy_code(forwarder_init),
        // A fixed gas limit: the forwarder ignores its call's result, so an estimate would find the least gas at
        // which the outer call succeeds, with the inner one out of gas.
        TransactionRequest::default()
            .with_to(forwarder)
            .with_input(word(11))
            .with_gas_limit(200_000),
    ];
    // blocks[c][k]: chain c's block after step k (k = 0: genesis).
    let mut blocks = [vec![0u64], vec![0u64]];
    for (k, tx) in steps.iter().enumerate() {
        for (c, p) in chains.iter().enumerate() {
            let receipt = p
                .send_transaction(tx.clone().with_from(me))
                .await
                .unwrap_or_else(|e| panic!("step {k} on chain {c}: {e}"))
                .get_receipt()
                .await
                .unwrap_or_else(|e| panic!("step {k} receipt on chain {c}: {e}"));
            assert!(receipt.status(), "step {k} on chain {c}");
            if k == 1 {
                assert_eq!(receipt.contract_address, Some(contract));
            }
            blocks[c].push(receipt.block_number.expect("block number"));
        }
    }
    // Let ours move on, so every read below is of an older block.
    let last = blocks[1][steps.len()];
    metis_testkit::wait_for(20, "the dev chain past the workload", || async {
        (chains[1].get_block_number().await.ok()? > last + 2).then_some(())
    })
    .await;
    let call = TransactionRequest::default().with_to(contract);
    for (k, pair) in blocks[0].iter().zip(&blocks[1]).enumerate() {
        let mut seen = Vec::new();
        for (p, n) in chains.iter().zip([*pair.0, *pair.1]) {
            let b = n.into();
            let code = p.get_code_at(contract).block_id(b).await.unwrap();
            seen.push((
                p.get_balance(r1).block_id(b).await.unwrap(),
                p.get_balance(r2).block_id(b).await.unwrap(),
                p.get_transaction_count(me).block_id(b).await.unwrap(),
                code.clone(),
                p.get_storage_at(contract, U256::ZERO).block_id(b).await.unwrap(),
                if code.is_empty() {
                    Bytes::new()
                } else {
                    p.call(call.clone()).block(b).await.unwrap()
                },
            ));
        }
        assert_eq!(
            seen[0], seen[1],
            "after step {k}: anvil block {} vs ours {}",
            blocks[0][k], blocks[1][k]
        );
    }
    // The last step's values, as a check that the reads are not all empty.
    let after = &blocks[1];
    let stored = chains[1]
        .get_storage_at(contract, U256::ZERO)
        .block_id(after[3].into())
        .await
        .unwrap();
    assert_eq!(stored, U256::from(7));
    assert_eq!(
        chains[1].get_balance(r1).block_id(after[4].into()).await.unwrap(),
        U256::from(1000)
    );
    // Traces of the same transactions (revm-inspectors' geth frames) equal anvil's: the deploy, both calls and
    // the forwarder's call into the contract (a nested frame) with callTracer, the contract's last direct call
    // with prestateTracer (the contract's entry: its slot before the write).
    let receipts_of = |c: usize, k: usize| blocks[c][k];
    for k in [2usize, 3, 6, 8] {
        let mut frames = Vec::new();
        for (c, p) in chains.iter().enumerate() {
            let block = p
                .raw_request::<_, serde_json::Value>(
                    "eth_getBlockByNumber".into(),
                    (format!("0x{:x}", receipts_of(c, k)), false),
                )
                .await
                .unwrap();
            let hash = block["transactions"]
                .as_array()
                .and_then(|t| t.first())
                .cloned()
                .expect("the step's transaction");
            let call: serde_json::Value = p
                .raw_request(
                    "debug_traceTransaction".into(),
                    (hash.clone(), serde_json::json!({"tracer": "callTracer"})),
                )
                .await
                .unwrap_or_else(|e| panic!("callTracer on chain {c}: {e}"));
            let pre: serde_json::Value = p
                .raw_request(
                    "debug_traceTransaction".into(),
                    (hash, serde_json::json!({"tracer": "prestateTracer"})),
                )
                .await
                .unwrap_or_else(|e| panic!("prestateTracer on chain {c}: {e}"));
            let key = format!("{contract:#x}");
            frames.push((call, pre[key.as_str()].clone()));
        }
        assert_eq!(frames[0].0, frames[1].0, "callTracer of step {k}");
        if k == 8 {
            // The forwarder's frame holds the nested call into the contract.
            let inner = &frames[1].0["calls"][0];
            assert_eq!(
                inner["to"],
                serde_json::json!(format!("{contract:#x}")),
                "{}",
                frames[1].0
            );
            assert_eq!(inner["type"], "CALL");
            assert!(inner.get("error").is_none(), "the inner call failed: {inner}");
        }
        if k == 6 {
            assert_eq!(frames[0].1, frames[1].1, "prestateTracer of step {k}");
            assert_eq!(
                frames[1].1["storage"][format!("0x{:064x}", 0)],
                serde_json::json!(format!("0x{:064x}", 7))
            );
        }
    }
    let whole: serde_json::Value = chains[1]
        .raw_request(
            "debug_traceBlockByNumber".into(),
            (
                format!("0x{:x}", blocks[1][3]),
                serde_json::json!({"tracer": "callTracer"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(whole.as_array().map(Vec::len), Some(1), "{whole}");
    // geth's default struct logger is not served, and says what is.
    let hash = whole[0]["txHash"].clone();
    let refused = chains[1]
        .raw_request::<_, serde_json::Value>("debug_traceTransaction".into(), (hash.clone(),))
        .await
        .expect_err("the struct logger is not served");
    assert!(
        refused.to_string().contains("callTracer and prestateTracer"),
        "{refused}"
    );
    assert!(
        whole[0]["txHash"].is_string() && whole[0]["result"]["to"].is_string(),
        "{whole}"
    );
    // geth's `timeout` option: a trace that may not take any time stops with a timeout, and a timeout that is
    // not a Go duration is refused by name.
    for (timeout, says) in [("0s", "execution timeout"), ("soon", "not a duration")] {
        let e = chains[1]
            .raw_request::<_, serde_json::Value>(
                "debug_traceTransaction".into(),
                (
                    hash.clone(),
                    serde_json::json!({"tracer": "callTracer", "timeout": timeout}),
                ),
            )
            .await
            .expect_err("no trace");
        assert!(e.to_string().contains(says), "timeout {timeout}: {e}");
    }

    // A block beyond the head is not found; the head itself reads as before.
    let far = chains[1].get_balance(r1).block_id(1_000_000u64.into()).await;
    assert!(far.is_err(), "{far:?}");
}
