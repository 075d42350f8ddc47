//! End-to-end tests of `metis-seq dev` with alloy as the client, as a dapp developer would use it.

mod common;

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    network::{EthereumWallet, TransactionBuilder},
    primitives::{address, Address, Bytes, TxKind, B256, U256},
    providers::{Provider, ProviderBuilder, WsConnect},
    rpc::types::{Filter, TransactionRequest},
    signers::{local::PrivateKeySigner, SignerSync},
    sol_types::SolEvent,
};
use common::{tempdir, wait_for, DevNode};
use futures_util::StreamExt;
use metis_contracts::MetisToken;

const CHAIN_ID: u64 = 59902;
/// Dev account 0 of the well-known mnemonic (DEVNET ONLY).
const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEV_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn signer(key: &str) -> PrivateKeySigner {
    key.parse().expect("dev key")
}

/// Signs an EIP-1559 transaction by hand (so tests control nonce and fees exactly).
fn raw_tx(
    key: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    max_fee: u128,
    tip: u128,
    input: Bytes,
) -> Bytes {
    raw_tx_with_value(key, chain_id, nonce, to, max_fee, tip, input, U256::from(1))
}

#[allow(clippy::too_many_arguments)]
fn raw_tx_with_value(
    key: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    max_fee: u128,
    tip: u128,
    input: Bytes,
    value: U256,
) -> Bytes {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000 + 16 * input.len() as u64,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value,
        input,
        access_list: Default::default(),
    };
    let sig = key.sign_hash_sync(&tx.signature_hash()).expect("sign");
    TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into()
}

async fn rpc_error(provider: &impl Provider, method: &'static str, params: serde_json::Value) -> (i64, String) {
    let err = provider
        .raw_request::<_, serde_json::Value>(method.into(), params)
        .await
        .expect_err("the node must refuse this");
    let resp = err
        .as_error_resp()
        .unwrap_or_else(|| panic!("{method}: not a JSON-RPC error: {err}"));
    (resp.code, resp.message.to_string())
}

/// An HTTP provider that signs with dev account 0.
fn dev_provider(node: &DevNode) -> impl Provider + Clone {
    ProviderBuilder::new()
        .wallet(EthereumWallet::new(signer(DEV_KEY)))
        .connect_http(node.url.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_erc20_logs_calls_and_reverts() {
    let dir = tempdir("erc20");
    let node = DevNode::start(&dir, 200);
    let provider = dev_provider(&node);
    assert_eq!(provider.get_chain_id().await.unwrap(), CHAIN_ID);
    let me = signer(DEV_KEY).address();

    // A plain transfer.
    let to = address!("00000000000000000000000000000000000000aa");
    let tx = TransactionRequest::default().with_to(to).with_value(U256::from(12345));
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.gas_used, 21_000);
    assert_eq!(provider.get_balance(to).await.unwrap(), U256::from(12345));

    // An ERC20 compiled by forge: deploy, mint, transfer.
    let token = MetisToken::deploy(provider.clone(), me).await.unwrap();
    let ws = ProviderBuilder::new()
        .connect_ws(WsConnect::new(node.ws.clone()))
        .await
        .unwrap();
    let sub = ws
        .subscribe_logs(&Filter::new().address(*token.address()))
        .await
        .unwrap();
    let mut stream = sub.into_stream();
    token
        .mint(me, U256::from(1_000_000))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let r = token
        .transfer(to, U256::from(400))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    assert_eq!(token.balanceOf(to).call().await.unwrap(), U256::from(400));

    // eth_getProof at the head: the token's account and `to`'s balance slot (OpenZeppelin's `_balances` is slot 0)
    // verify against the block's state root, as a light client checks them.
    let mut word = [0u8; 64];
    word[12..32].copy_from_slice(to.as_slice());
    let slot = alloy::primitives::keccak256(word);
    let (n, proof) = wait_for(10, "a proof at the head", || async {
        let n = provider.get_block_number().await.ok()?;
        let p = provider
            .get_proof(*token.address(), vec![slot])
            .block_id(n.into())
            .await
            .ok()?;
        Some((n, p))
    })
    .await;
    let root = provider
        .get_block_by_number(n.into())
        .await
        .unwrap()
        .expect("the proof's block")
        .header
        .state_root;
    let held = &proof.storage_proof[0];
    assert_eq!(held.value, U256::from(400));
    alloy_trie::proof::verify_proof(
        proof.storage_hash,
        alloy_trie::Nibbles::unpack(alloy::primitives::keccak256(slot)),
        Some(alloy_rlp::encode(held.value)),
        &held.proof,
    )
    .expect("the slot's proof verifies against the storage root");
    let leaf = metis_testkit::trie_account(proof.nonce, proof.balance, proof.storage_hash, proof.code_hash);
    alloy_trie::proof::verify_proof(
        root,
        alloy_trie::Nibbles::unpack(alloy::primitives::keccak256(token.address())),
        Some(leaf),
        &proof.account_proof,
    )
    .expect("the account's proof verifies against the block's state root");
    // Older blocks and too many keys: clear errors.
    let (_, msg) = rpc_error(
        &provider,
        "eth_getProof",
        serde_json::json!([token.address(), [], "0x1"]),
    )
    .await;
    assert!(msg.contains("latest block only"), "{msg}");
    let keys: Vec<B256> = (0..1025u64).map(|k| B256::from(U256::from(k))).collect();
    let (_, msg) = rpc_error(
        &provider,
        "eth_getProof",
        serde_json::json!([token.address(), keys, "latest"]),
    )
    .await;
    assert!(msg.contains("at most 1024"), "{msg}");

    // Transfer logs, by filter...
    let filter = Filter::new()
        .address(*token.address())
        .event_signature(MetisToken::Transfer::SIGNATURE_HASH)
        .from_block(0);
    let logs = provider.get_logs(&filter).await.unwrap();
    assert_eq!(logs.len(), 2, "mint and transfer");
    let decoded = MetisToken::Transfer::decode_log(&logs[1].inner).unwrap();
    assert_eq!((decoded.from, decoded.to, decoded.value), (me, to, U256::from(400)));
    assert_eq!(logs[1].transaction_hash, Some(r.transaction_hash));
    // ...and by subscription (OwnershipTransferred came before we subscribed; mint and transfer after).
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let log = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("log subscription delivered in time")
            .expect("stream open");
        if log.topic0() == Some(&MetisToken::Transfer::SIGNATURE_HASH) {
            seen.push(log);
        }
    }
    assert_eq!(seen[1].transaction_hash, Some(r.transaction_hash));
    // New heads and pending transactions by subscription; an unknown kind and a bad logs filter are refused.
    let mut heads = ws.subscribe_blocks().await.unwrap().into_stream();
    let mut pending = ws.subscribe_pending_transactions().await.unwrap().into_stream();
    let sent = *provider
        .send_transaction(TransactionRequest::default().with_to(to).with_value(U256::from(1)))
        .await
        .unwrap()
        .tx_hash();
    let in_time = std::time::Duration::from_secs(10);
    let hash = tokio::time::timeout(in_time, pending.next())
        .await
        .expect("pending subscription delivered in time")
        .expect("stream open");
    assert_eq!(hash, sent);
    let head = tokio::time::timeout(in_time, heads.next())
        .await
        .expect("newHeads delivered in time")
        .expect("stream open");
    assert!(
        head.number > r.block_number.unwrap(),
        "a head after the transfer's block"
    );
    let (code, msg) = rpc_error(&ws, "eth_subscribe", serde_json::json!(["nosuch"])).await;
    assert_eq!((code, msg.as_str()), (-32602, "unsupported subscription: nosuch"));
    let (code, _) = rpc_error(&ws, "eth_subscribe", serde_json::json!(["logs", {"address": 7}])).await;
    assert_eq!(code, -32602, "a logs filter that is not one");

    // Polling filters: a log filter and a block filter see what happens after they are installed.
    let log_filter: U256 = provider
        .raw_request(
            "eth_newFilter".into(),
            (serde_json::json!({"address": token.address()}),),
        )
        .await
        .unwrap();
    let block_filter: U256 = provider.raw_request("eth_newBlockFilter".into(), ()).await.unwrap();
    let r3 = token
        .transfer(to, U256::from(1))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let changes: Vec<alloy::rpc::types::Log> = provider
        .raw_request("eth_getFilterChanges".into(), (log_filter,))
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].transaction_hash, Some(r3.transaction_hash));
    let again: Vec<alloy::rpc::types::Log> = provider
        .raw_request("eth_getFilterChanges".into(), (log_filter,))
        .await
        .unwrap();
    assert!(again.is_empty(), "a poll returns only what is new");
    let blocks: Vec<B256> = provider
        .raw_request("eth_getFilterChanges".into(), (block_filter,))
        .await
        .unwrap();
    assert!(blocks.contains(&r3.block_hash.unwrap()));
    assert!(provider
        .raw_request::<_, bool>("eth_uninstallFilter".into(), (log_filter,))
        .await
        .unwrap());
    let (code, _) = rpc_error(&provider, "eth_getFilterChanges", serde_json::json!([log_filter])).await;
    assert_eq!(code, -32001, "uninstalled filter is gone");

    // A nonce gap filled later: nonce 1 waits until nonce 0 arrives, then both are mined in order.
    let k1 = signer(DEV_KEY_1);
    let second = raw_tx(&k1, CHAIN_ID, 1, to, 10_000_000_000, 1_000_000_000, Bytes::new());
    let first = raw_tx(&k1, CHAIN_ID, 0, to, 10_000_000_000, 1_000_000_000, Bytes::new());
    let h1: B256 = provider
        .raw_request("eth_sendRawTransaction".into(), (second,))
        .await
        .unwrap();
    let h0: B256 = provider
        .raw_request("eth_sendRawTransaction".into(), (first,))
        .await
        .unwrap();
    let r1 = wait_for(20, "the gap-filled transaction to be mined", || {
        let p = provider.clone();
        async move { p.get_transaction_receipt(h1).await.ok().flatten() }
    })
    .await;
    let r0 = provider
        .get_transaction_receipt(h0)
        .await
        .unwrap()
        .expect("nonce 0 mined too");
    assert!((r0.block_number, r0.transaction_index) < (r1.block_number, r1.transaction_index));

    // eth_call and eth_estimateGas.
    let call = token.balanceOf(me);
    assert_eq!(call.call().await.unwrap(), U256::from(1_000_000 - 401));
    let gas = token.transfer(to, U256::from(1)).estimate_gas().await.unwrap();
    assert!(gas > 21_000 && gas < 100_000, "estimate {gas}");

    // A revert with a reason string: geth's code 3, "execution reverted: <reason>", and the data.
    let reverting_init: Vec<u8> = {
        let mut v = vec![0x60, 0x64, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 0x64, 0x60, 0x00, 0xfd];
        v.extend_from_slice(&alloy::sol_types::SolError::abi_encode(
            &alloy::sol_types::Revert::from("nope"),
        ));
        v
    };
    let (code, msg) = rpc_error(
        &provider,
        "eth_call",
        serde_json::json!([{"from": me, "data": Bytes::from(reverting_init.clone())}, "latest"]),
    )
    .await;
    assert_eq!((code, msg.as_str()), (3, "execution reverted: nope"));
    let (code, _) = rpc_error(
        &provider,
        "eth_estimateGas",
        serde_json::json!([{"from": me, "data": Bytes::from(reverting_init)}]),
    )
    .await;
    assert_eq!(code, 3);
    // A custom-error revert (OpenZeppelin 5): code 3 with the raw data.
    let err = token
        .transfer(to, U256::from(10).pow(U256::from(30)))
        .call()
        .await
        .unwrap_err();
    let alloy::contract::Error::TransportError(err) = err else {
        panic!("expected an RPC error, got {err}")
    };
    let resp = err.as_error_resp().expect("json-rpc error");
    assert_eq!(resp.code, 3);
    assert!(
        resp.data.as_ref().is_some_and(|d| d.get().contains("e450d38c")),
        "ERC20InsufficientBalance data"
    );

    // Blocks: by number and hash, full and hashes-only; nonce too low now that nonce 0 is used.
    let block = provider
        .get_block_by_number(r.block_number.unwrap().into())
        .full()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(block.header.hash, r.block_hash.unwrap());
    assert!(block
        .transactions
        .as_transactions()
        .unwrap()
        .iter()
        .any(|t| *t.inner.tx_hash() == r.transaction_hash));
    let receipts: Vec<alloy::rpc::types::TransactionReceipt> = provider
        .raw_request("eth_getBlockReceipts".into(), (block.header.hash,))
        .await
        .unwrap();
    assert!(receipts
        .iter()
        .any(|x| x.transaction_hash == r.transaction_hash && x.gas_used == r.gas_used));
    let again = provider.get_block_by_hash(block.header.hash).await.unwrap().unwrap();
    assert_eq!(again.header.number, block.header.number);
    let stale = raw_tx(&signer(DEV_KEY), CHAIN_ID, 0, to, 10_000_000_000, 1, Bytes::new());
    let (code, msg) = rpc_error(&provider, "eth_sendRawTransaction", serde_json::json!([stale])).await;
    assert_eq!(code, -32000);
    assert!(msg.starts_with("nonce too low"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mempool_replacement_gaps_and_bad_input() {
    let dir = tempdir("mempool");
    // No block for an hour: everything sent stays pending.
    let node = DevNode::start(&dir, 3_600_000);
    let provider = ProviderBuilder::new().connect_http(node.url.parse().unwrap());
    let k = signer(DEV_KEY_1);
    let to = address!("00000000000000000000000000000000000000bb");
    let send = |raw: Bytes| {
        let p = provider.clone();
        async move { p.raw_request::<_, B256>("eth_sendRawTransaction".into(), (raw,)).await }
    };

    let first = raw_tx(&k, CHAIN_ID, 0, to, 10_000_000_000, 1_000_000_000, Bytes::new());
    let h0 = send(first.clone()).await.unwrap();
    let pending = provider
        .get_transaction_by_hash(h0)
        .await
        .unwrap()
        .expect("pending tx is visible");
    assert!(pending.block_number.is_none());
    let (code, msg) = rpc_error(&provider, "eth_sendRawTransaction", serde_json::json!([first])).await;
    assert_eq!((code, msg.as_str()), (-32000, "already known"));

    // Replacement: +5% is refused, +10% replaces.
    let cheap = raw_tx(&k, CHAIN_ID, 0, to, 10_500_000_000, 1_050_000_000, Bytes::new());
    let (_, msg) = rpc_error(&provider, "eth_sendRawTransaction", serde_json::json!([cheap])).await;
    assert_eq!(msg, "replacement transaction underpriced");
    let h0b = send(raw_tx(&k, CHAIN_ID, 0, to, 11_000_000_000, 1_100_000_000, Bytes::new()))
        .await
        .unwrap();
    assert!(
        provider.get_transaction_by_hash(h0).await.unwrap().is_none(),
        "replaced tx is gone"
    );
    assert!(provider.get_transaction_by_hash(h0b).await.unwrap().is_some());

    // Nonce gap: nonce 2 waits; the pending count only moves when nonce 1 fills the gap.
    send(raw_tx(&k, CHAIN_ID, 2, to, 10_000_000_000, 1, Bytes::new()))
        .await
        .unwrap();
    assert_eq!(provider.get_transaction_count(k.address()).pending().await.unwrap(), 1);
    send(raw_tx(&k, CHAIN_ID, 1, to, 10_000_000_000, 1, Bytes::new()))
        .await
        .unwrap();
    assert_eq!(provider.get_transaction_count(k.address()).pending().await.unwrap(), 3);
    assert_eq!(
        provider.get_transaction_count(k.address()).await.unwrap(),
        0,
        "latest is unchanged"
    );

    // Bad input, each with geth's error, none changing anything.
    let bad: Vec<(serde_json::Value, &str)> = vec![
        (serde_json::json!(["0xdeadbeef"]), "rlp:"),
        (
            serde_json::json!([raw_tx(&k, 1, 3, to, 10_000_000_000, 1, Bytes::new())]),
            "invalid chain id for signer",
        ),
        (
            serde_json::json!([raw_tx(
                &PrivateKeySigner::random(),
                CHAIN_ID,
                0,
                to,
                10_000_000_000,
                1,
                Bytes::new()
            )]),
            "insufficient funds for gas * price + value",
        ),
        // gas * fee + value beyond 2^256 - 1: wrapped, it would be a cost this funded account can pay.
        (
            serde_json::json!([raw_tx_with_value(
                &k,
                CHAIN_ID,
                3,
                to,
                10_000_000_000,
                1,
                Bytes::new(),
                U256::MAX
            )]),
            "insufficient funds for gas * price + value",
        ),
        (
            serde_json::json!([raw_tx(
                &k,
                CHAIN_ID,
                3,
                to,
                10_000_000_000,
                1,
                Bytes::from(vec![1u8; 130 * 1024])
            )]),
            "oversized data",
        ),
        (
            serde_json::json!([raw_tx(&k, CHAIN_ID, 3, to, 1, 1, Bytes::new())]),
            "max fee per gas less than block base fee",
        ),
    ];
    for (params, want) in bad {
        let (code, msg) = rpc_error(&provider, "eth_sendRawTransaction", params).await;
        assert_eq!(code, -32000, "{msg}");
        assert!(msg.starts_with(want), "expected {want:?}, got {msg:?}");
    }
    // A tampered signature recovers another (unfunded) sender or none at all.
    let mut tampered = raw_tx(&k, CHAIN_ID, 3, to, 10_000_000_000, 1, Bytes::new()).to_vec();
    let n = tampered.len();
    tampered[n - 5] ^= 0x01;
    let (code, _) = rpc_error(
        &provider,
        "eth_sendRawTransaction",
        serde_json::json!([Bytes::from(tampered)]),
    )
    .await;
    assert_eq!(code, -32000);
    let (code, _) = rpc_error(
        &provider,
        "eth_getBalance",
        serde_json::json!(["0xnot-an-address", "latest"]),
    )
    .await;
    assert_eq!(code, -32602, "invalid params");
    let (code, _) = rpc_error(&provider, "eth_noSuchMethod", serde_json::json!([])).await;
    assert_eq!(code, -32601, "method not found");
    assert_eq!(
        provider.get_transaction_count(k.address()).pending().await.unwrap(),
        3,
        "nothing changed"
    );

    // An oversized request body is refused at the HTTP layer (413, or the connection closed mid-upload), and the
    // node goes on serving.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x{}"]}}"#,
        "00".repeat(6 * 1024 * 1024)
    );
    match reqwest::Client::new()
        .post(&node.url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
    {
        Ok(resp) => assert_eq!(resp.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "unexpected error {e}"),
    }
    assert_eq!(provider.get_transaction_count(k.address()).pending().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_keeps_head_state_receipts_and_logs() {
    let dir = tempdir("restart");
    let node = DevNode::start(&dir, 100);
    let provider = dev_provider(&node);
    let me = signer(DEV_KEY).address();
    let token = MetisToken::deploy(provider.clone(), me).await.unwrap();
    let r = token
        .mint(me, U256::from(777))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let tx_hash = r.transaction_hash;
    let n = r.block_number.unwrap();
    let block = provider.get_block_by_number(n.into()).await.unwrap().unwrap();
    let balance = provider.get_balance(me).await.unwrap();
    let logs = provider
        .get_logs(&Filter::new().address(*token.address()).from_block(0))
        .await
        .unwrap();
    node.kill();

    let node = DevNode::start(&dir, 100);
    let provider = ProviderBuilder::new().connect_http(node.url.parse().unwrap());
    let head = provider.get_block_number().await.unwrap();
    assert!(head >= n, "head {head} went back below {n}");
    let again = provider.get_block_by_number(n.into()).await.unwrap().unwrap();
    assert_eq!(again.header.hash, block.header.hash);
    assert_eq!(again.header.state_root, block.header.state_root);
    assert_eq!(provider.get_balance(me).await.unwrap(), balance);
    let r2 = provider
        .get_transaction_receipt(tx_hash)
        .await
        .unwrap()
        .expect("receipt survives");
    assert_eq!(r2.block_hash, r.block_hash);
    assert_eq!(r2.inner.logs().len(), r.inner.logs().len());
    let logs2 = provider
        .get_logs(&Filter::new().address(*token.address()).from_block(0))
        .await
        .unwrap();
    assert_eq!(logs2, logs);
    let token = MetisToken::new(*token.address(), provider.clone());
    assert_eq!(token.balanceOf(me).call().await.unwrap(), U256::from(777));
    // And the chain goes on.
    wait_for(20, "a new block after restart", || {
        let p = provider.clone();
        async move { (p.get_block_number().await.ok()? > head).then_some(()) }
    })
    .await;
}

/// On a chain with a 300M gas limit, an endless loop in eth_estimateGas or eth_call runs into the RPC gas cap
/// (50M, geth's), not the block limit; and filter ids are random, not sequential.
#[tokio::test(flavor = "multi_thread")]
async fn calls_are_capped_below_a_big_block_limit_and_filter_ids_are_random() {
    let dir = tempdir("gascap");
    let node = DevNode::start_with(&dir, 3_600_000, &["--gas-limit", "300000000"]);
    let provider = ProviderBuilder::new().connect_http(node.url.parse().unwrap());
    // JUMPDEST PUSH1 0 JUMP: for ever, as creation code.
    let endless = Bytes::from(vec![0x5b, 0x60, 0x00, 0x56]);
    let from = signer(DEV_KEY_1).address();
    let (code, msg) = rpc_error(
        &provider,
        "eth_estimateGas",
        serde_json::json!([{"from": from, "data": endless.clone()}]),
    )
    .await;
    assert!(msg.contains("(50000000)"), "{code} {msg}");
    let (_, msg) = rpc_error(
        &provider,
        "eth_call",
        serde_json::json!([{"from": from, "data": endless, "gas": "0x11e1a300"}, "latest"]),
    )
    .await;
    assert!(msg.contains("OutOfGas"), "{msg}");
    let ids: Vec<U256> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                provider
                    .raw_request::<_, U256>("eth_newBlockFilter".into(), ())
                    .await
                    .unwrap(),
            );
        }
        v
    };
    assert!(
        ids.windows(2).all(|w| w[0].abs_diff(w[1]) > U256::from(1_000_000u64)),
        "filter ids look sequential: {ids:?}"
    );
}

/// Subscriptions are bounded: 64 per WebSocket connection, and 1,000 `logs` subscriptions node-wide (each is
/// matched against every block); past either, eth_subscribe is refused and the node serves the rest.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_bounded_per_connection_and_logs_node_wide() {
    let dir = tempdir("subs");
    let node = DevNode::start(&dir, 3_600_000);
    let connect = || async {
        ProviderBuilder::new()
            .connect_ws(WsConnect::new(node.ws.clone()))
            .await
            .unwrap()
    };
    let mut conns = Vec::new();
    let mut accepted = 0;
    let mut refused_logs = None;
    'open: for _ in 0..17 {
        let ws = connect().await;
        for _ in 0..63 {
            let r = ws
                .raw_request::<_, serde_json::Value>("eth_subscribe".into(), ("logs", serde_json::json!({})))
                .await;
            match r {
                Ok(_) => accepted += 1,
                Err(e) => {
                    refused_logs = Some(e.to_string());
                    break 'open;
                }
            }
        }
        conns.push(ws);
    }
    assert_eq!(accepted, 1000, "the node-wide cap on logs subscriptions");
    let msg = refused_logs.expect("the 1001st logs subscription is refused");
    assert!(msg.contains("too many logs subscriptions"), "{msg}");
    // Heads still subscribe, up to 64 on a connection.
    let ws = connect().await;
    for i in 0..64 {
        ws.raw_request::<_, serde_json::Value>("eth_subscribe".into(), ("newHeads",))
            .await
            .unwrap_or_else(|e| panic!("subscription {i}: {e}"));
    }
    let (_, msg) = rpc_error(&ws, "eth_subscribe", serde_json::json!(["newHeads"])).await;
    assert!(msg.to_lowercase().contains("subscription"), "{msg}");
    // Closing connections gives their logs subscriptions back.
    drop(conns);
    let fresh = connect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = fresh
            .raw_request::<_, serde_json::Value>("eth_subscribe".into(), ("logs", serde_json::json!({})))
            .await;
        if r.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed connections' subscriptions were not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A flood of large transactions that can never run (each sender's line starts one nonce ahead of its account,
/// so all are queued): 160 of 127 KiB (19.8 MiB) against a mempool of 16 MiB. The pool holds no more than its
/// budget and refuses the rest with "txpool is full"; the node keeps making blocks, and an honest transfer that
/// pays a better tip lands within 3 blocks.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_queued_transactions_stays_inside_the_byte_budget() {
    let dir = tempdir("flood");
    let node = DevNode::start_with(&dir, 500, &["--txpool-max-mib", "16"]);
    let provider = ProviderBuilder::new().connect_http(node.url.parse().unwrap());
    let to = Address::repeat_byte(0x42);
    let big = Bytes::from(vec![0u8; 127 * 1024]);
    let (mut admitted, mut refused) = (0usize, 0usize);
    let mut size = 0usize;
    for sender in 1..=4u32 {
        let key = common::dev_key(sender);
        for nonce in 1..=40u64 {
            let raw = raw_tx(&key, CHAIN_ID, nonce, to, 2_000_000_000, 1, big.clone());
            size = raw.len();
            match provider
                .raw_request::<_, B256>("eth_sendRawTransaction".into(), (raw,))
                .await
            {
                Ok(_) => admitted += 1,
                Err(e) => {
                    assert!(e.to_string().contains("txpool is full"), "{e}");
                    refused += 1;
                }
            }
        }
    }
    let status: serde_json::Value = provider.raw_request("txpool_status".into(), ()).await.unwrap();
    let queued = usize::from_str_radix(status["queued"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    eprintln!("flood: {admitted} admitted, {refused} refused, {queued} queued of {size} bytes each");
    assert!(refused > 0, "nothing was refused");
    assert!(
        queued * size <= 16 * 1024 * 1024,
        "{queued} x {size} bytes is over the budget"
    );
    assert_eq!(status["pending"], "0x0");
    // An honest transfer with a better tip makes room and lands within 3 blocks.
    let honest = signer(DEV_KEY);
    let at = provider.get_block_number().await.unwrap();
    let hash: B256 = provider
        .raw_request(
            "eth_sendRawTransaction".into(),
            (raw_tx(
                &honest,
                CHAIN_ID,
                0,
                to,
                10_000_000_000,
                1_000_000_000,
                Bytes::new(),
            ),),
        )
        .await
        .unwrap();
    let receipt = wait_for(30, "the honest transfer's receipt", || async {
        provider.get_transaction_receipt(hash).await.ok().flatten()
    })
    .await;
    let landed = receipt.block_number.unwrap();
    assert!(landed <= at + 3, "sent at block {at}, landed in {landed}");
}

/// `--log-format json`: every log line is one JSON object with level, target and fields, for log shippers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_as_json_lines_when_asked() {
    let dir = metis_testkit::tempdir("json-logs");
    let log = dir.join("dev.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_metis-seq"));
    cmd.args([
        "--log-format",
        "json",
        "dev",
        "--http-addr",
        "127.0.0.1:0",
        "--block-time",
        "200",
    ])
    .arg("--datadir")
    .arg(dir.join("data"))
    .env("RUST_LOG", "info");
    let _node = metis_testkit::devnet::ChildGuard::spawn(cmd, &log);
    let line = metis_testkit::wait_for(30, "a block committed in the log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text.lines().find(|l| l.contains("block committed")).map(str::to_string);
        async move { line }
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["fields"]["message"], "block committed", "{v}");
    assert!(v["fields"]["number"].is_u64(), "{v}");
    assert!(v["timestamp"].is_string() && v["target"].is_string(), "{v}");
    // Every line is JSON, the RPC banner on stdout aside.
    let text = std::fs::read_to_string(&log).expect("log");
    for l in text
        .lines()
        .filter(|l| !l.starts_with("RPC listening") && !l.trim().is_empty())
    {
        if serde_json::from_str::<serde_json::Value>(l).is_err() {
            // stdout lines of the dev node (its accounts banner) are not logs.
            assert!(
                !l.contains("INFO") && !l.contains("WARN"),
                "a log line that is not JSON: {l}"
            );
        }
    }
}

/// What real clients tripped on: a subscription id is a hex string, as geth writes it (web3.py fails on a number),
/// and a gas price with an access list makes an EIP-2930 call whose list counts (ethers estimated too little).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_ids_are_hex_strings_and_access_lists_count_with_a_gas_price() {
    let dir = tempdir("compat");
    let node = DevNode::start(&dir, 3_600_000);
    // On the wire: a provider would hand back its own local id instead.
    let (mut ws, _) = tokio_tungstenite::connect_async(node.ws.as_str()).await.unwrap();
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
    ))
    .await
    .unwrap();
    let answer = loop {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = ws.next().await.expect("an answer").unwrap() {
            break t.to_string();
        }
    };
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let id = answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("a subscription id that is not a string: {answer}"));
    assert!(id.starts_with("0x") && id.len() == 34, "{id}");
    assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");

    let provider = dev_provider(&node);
    let from = signer(DEV_KEY_1).address();
    let to = "0x000000000000000000000000000000000000bEEF";
    let estimate = |extra: serde_json::Value| {
        let provider = provider.clone();
        async move {
            let mut call = serde_json::json!({"from": from, "to": to, "value": "0x1", "gasPrice": "0x3b9aca00"});
            if let (Some(c), Some(e)) = (call.as_object_mut(), extra.as_object()) {
                c.extend(e.clone());
            }
            provider
                .raw_request::<_, U256>("eth_estimateGas".into(), (call,))
                .await
                .unwrap()
        }
    };
    assert_eq!(estimate(serde_json::json!({})).await, U256::from(21_000u64));
    let list = serde_json::json!({"accessList": [{
        "address": to,
        "storageKeys": ["0x0000000000000000000000000000000000000000000000000000000000000001"],
    }]});
    // 2,400 per address and 1,900 per storage key (EIP-2930).
    assert_eq!(estimate(list).await, U256::from(21_000u64 + 2_400 + 1_900));
}

/// Runs `tests/clients/ethers_v6.js` (ethers 6.17.0 from `.tools`, as a wallet uses it) against `http`/`ws`.
fn ethers_sees(http: &str, ws: &str) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("node")
        .arg(root.join("tests/clients/ethers_v6.js"))
        .args([http, ws, DEV_KEY])
        .env("NODE_PATH", root.join("../../.tools/node_modules"))
        .output()
        .expect("running node (installed by scripts/bootstrap.sh)");
    assert!(
        out.status.success(),
        "ethers against {http}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script's JSON")
}

/// ethers v6 against anvil and against this node, step by step: an EIP-2930 transaction with a gas price and an
/// access list is estimated and costs the same (the access list counts), a subscription id is a hex string, a
/// new block is announced over the WebSocket, and blocks parse (extraData within geth's 32 bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethers_v6_sees_this_node_as_it_sees_anvil() {
    let anvil = metis_testkit::spawn_anvil();
    let theirs = tokio::task::spawn_blocking({
        let (http, ws) = (anvil.endpoint(), anvil.ws_endpoint());
        move || ethers_sees(&http, &ws)
    })
    .await
    .expect("ethers on anvil");
    let dir = tempdir("ethers");
    let node = DevNode::start(&dir, 200);
    let ours = tokio::task::spawn_blocking({
        let (http, ws) = (node.url.clone(), node.ws.clone());
        move || ethers_sees(&http, &ws)
    })
    .await
    .expect("ethers on metis-seq");
    eprintln!("ethers v6 on anvil: {theirs}\nethers v6 on metis-seq: {ours}");
    for key in [
        "estimate",
        "gasUsed",
        "txType",
        "status",
        "subscriptionIdType",
        "subscriptionIdHex",
        "blockAnnounced",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}: ours {ours}, anvil's {theirs}");
    }
    assert_eq!(ours["subscriptionIdHex"], true);
    assert!(ours["extraDataBytes"].as_u64().is_some_and(|n| n <= 32), "{ours}");
}
