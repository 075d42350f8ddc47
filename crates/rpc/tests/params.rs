//! Every JSON-RPC method with arbitrary parameters, in process over a real chain: an answer always comes (a
//! result or one of the error codes clients know), nothing panics, and nothing changes the chain.

use alloy_primitives::{Address, U256};
use metis_chain::Chain;
use metis_execution::{ChainSpec, Engine};
use metis_mempool::MempoolConfig;
use metis_rpc::pos::NodeStatus;
use metis_rpc::RpcLimits;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;

const METHODS: &[&str] = &[
    "web3_clientVersion",
    "web3_sha3",
    "net_version",
    "net_listening",
    "net_peerCount",
    "eth_chainId",
    "eth_syncing",
    "eth_mining",
    "eth_accounts",
    "eth_blockNumber",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_call",
    "eth_estimateGas",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_feeHistory",
    "eth_sendRawTransaction",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getBlockReceipts",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getLogs",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "metis_getBatchByIndex",
    "metis_getBatchForBlock",
    "metis_getTxBatchProof",
    "metis_getRewardReport",
    "metis_signer",
    "metis_poster",
    "metis_sequencer",
    "metis_l1Events",
    "metis_thresholdKey",
    "metis_reElections",
    "metis_setChanges",
    "metis_l1Status",
    "metis_commit",
    "metis_epochs",
    "metis_currentEpoch",
    "metis_validators",
    "metis_evidence",
    "metis_ledger",
    "metis_governance",
    "eth_noSuchMethod",
];

/// The codes an answer may carry: geth's, JSON-RPC's own, and jsonrpsee's for a method that does not exist. An
/// internal error (-32603) is a bug: no input may cause one.
const KNOWN_CODES: &[i64] = &[3, -32000, -32001, -32005, -32601, -32602];

struct NoStatus;
impl NodeStatus for NoStatus {
    fn l1(&self, _: Option<(u64, u64)>) -> Value {
        Value::Null
    }
    fn poster(&self) -> Value {
        Value::Null
    }
}

/// Strings that look like what the methods take (hex of any length, tags, numbers) and some that do not.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..70).prop_map(|b| format!("0x{}", alloy_primitives::hex::encode(b))),
        "0x[0-9a-fA-F]{0,80}",
        Just("latest".to_string()),
        Just("pending".to_string()),
        Just("earliest".to_string()),
        Just("0x".to_string()),
        "[ -~]{0,24}",
        any::<u64>().prop_map(|n| format!("{n:#x}")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop_oneof![
            Just("to".to_string()),
            Just("from".to_string()),
            Just("data".to_string()),
            Just("input".to_string()),
            Just("gas".to_string()),
            Just("value".to_string()),
            Just("address".to_string()),
            Just("topics".to_string()),
            Just("fromBlock".to_string()),
            Just("toBlock".to_string()),
            Just("blockHash".to_string()),
            Just("code".to_string()),
            Just("balance".to_string()),
            Just("state".to_string()),
            Just("stateDiff".to_string()),
            "[a-zA-Z]{1,10}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(json_value(), 0..5).prop_map(Value::Array),
        json_value(),
    ]
}

fn hex_bytes(max: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|b| json!(format!("0x{}", alloy_primitives::hex::encode(b))))
}

fn address() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(Address::repeat_byte(1))),
        Just(json!(Address::ZERO)),
        any::<[u8; 20]>().prop_map(|a| json!(Address::from(a))),
    ]
}

fn hash() -> impl Strategy<Value = Value> {
    any::<[u8; 32]>().prop_map(|h| json!(alloy_primitives::B256::from(h)))
}

fn quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..8).prop_map(|n| json!(format!("{n:#x}"))),
        any::<u64>().prop_map(|n| json!(format!("{n:#x}")))
    ]
}

fn block_tag() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("latest")),
        Just(json!("earliest")),
        Just(json!("pending")),
        Just(json!("safe")),
        Just(json!("finalized")),
        quantity(),
    ]
}

/// A call object and an override set with random code: what eth_call and eth_estimateGas run.
fn call_params() -> impl Strategy<Value = Value> {
    (
        address(),
        prop::option::of(address()),
        hex_bytes(64),
        0u64..1_000_000,
        prop::option::of(quantity()),
        block_tag(),
        prop::option::of((address(), hex_bytes(96), prop::option::of(quantity()))),
    )
        .prop_map(|(from, to, data, gas, value, tag, code)| {
            let mut call = json!({"from": from, "data": data, "gas": format!("{gas:#x}")});
            if let Some(to) = to {
                call["to"] = to;
            }
            if let Some(v) = value {
                call["value"] = v;
            }
            match code {
                Some((at, code, balance)) => {
                    let mut o = json!({"code": code});
                    if let Some(b) = balance {
                        o["balance"] = b;
                    }
                    let mut set = serde_json::Map::new();
                    set.insert(at.as_str().unwrap_or_default().to_string(), o);
                    json!([call, tag, Value::Object(set)])
                }
                None => json!([call, tag]),
            }
        })
}

fn log_filter() -> impl Strategy<Value = Value> {
    (
        block_tag(),
        block_tag(),
        prop::option::of(address()),
        prop::collection::vec(prop::option::of(hash()), 0..5),
    )
        .prop_map(|(from, to, address, topics)| {
            let mut f = json!({"fromBlock": from, "toBlock": to, "topics": topics});
            if let Some(a) = address {
                f["address"] = a;
            }
            f
        })
}

/// Parameters of the right shape with random values, so that the methods' own logic runs.
fn typed_request() -> impl Strategy<Value = (&'static str, Value)> {
    prop_oneof![
        (address(), block_tag()).prop_map(|(a, t)| ("eth_getBalance", json!([a, t]))),
        (address(), block_tag()).prop_map(|(a, t)| ("eth_getTransactionCount", json!([a, t]))),
        (address(), block_tag()).prop_map(|(a, t)| ("eth_getCode", json!([a, t]))),
        (address(), quantity(), block_tag()).prop_map(|(a, q, t)| ("eth_getStorageAt", json!([a, q, t]))),
        call_params().prop_map(|p| ("eth_call", p)),
        call_params().prop_map(|p| ("eth_estimateGas", p)),
        (quantity(), block_tag(), prop::collection::vec(0.0f64..100.0, 0..4))
            .prop_map(|(c, t, p)| ("eth_feeHistory", json!([c, t, p]))),
        hex_bytes(300).prop_map(|b| ("eth_sendRawTransaction", json!([b]))),
        hash().prop_map(|h| ("eth_getTransactionByHash", json!([h]))),
        hash().prop_map(|h| ("eth_getTransactionReceipt", json!([h]))),
        block_tag().prop_map(|t| ("eth_getBlockReceipts", json!([t]))),
        (block_tag(), any::<bool>()).prop_map(|(t, f)| ("eth_getBlockByNumber", json!([t, f]))),
        (hash(), any::<bool>()).prop_map(|(h, f)| ("eth_getBlockByHash", json!([h, f]))),
        (block_tag(), quantity()).prop_map(|(t, i)| ("eth_getTransactionByBlockNumberAndIndex", json!([t, i]))),
        log_filter().prop_map(|f| ("eth_getLogs", json!([f]))),
        log_filter().prop_map(|f| ("eth_newFilter", json!([f]))),
        quantity().prop_map(|q| ("eth_getFilterChanges", json!([q]))),
        quantity().prop_map(|q| ("eth_getFilterLogs", json!([q]))),
        (any::<u64>(), any::<bool>()).prop_map(|(i, p)| ("metis_getBatchByIndex", json!([i, p]))),
        any::<u64>().prop_map(|n| ("metis_getBatchForBlock", json!([n]))),
        hash().prop_map(|h| ("metis_getTxBatchProof", json!([h]))),
        any::<u64>().prop_map(|n| ("metis_getRewardReport", json!([n]))),
        any::<u64>().prop_map(|n| ("metis_sequencer", json!([n]))),
        any::<u64>().prop_map(|n| ("metis_commit", json!([n]))),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ("metis_epochs", json!([a, b]))),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ("metis_evidence", json!([a, b]))),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ("metis_l1Events", json!([a, b]))),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ("metis_reElections", json!([a, b]))),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ("metis_setChanges", json!([a, b]))),
    ]
}

/// Sends one request; checks the answer's shape and that the chain did not change.
fn ask(method: &str, params: &Value) -> Result<Value, TestCaseError> {
    CHAIN.with(|(rt, module, chain)| {
        let head = chain.view().head_hash();
        let pending = chain.mempool().len();
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let (answer, _) = rt
            .block_on(module.raw_json_request(&request, 1))
            .expect("a well-formed request");
        let answer: Value = serde_json::from_str(answer.get()).expect("the answer is JSON");
        if let Some(err) = answer.get("error") {
            let code = err["code"].as_i64().unwrap_or_default();
            prop_assert!(
                KNOWN_CODES.contains(&code) && code != -32603,
                "{method} {params}: {answer}"
            );
        } else {
            prop_assert!(answer.get("result").is_some(), "{answer}");
        }
        prop_assert_eq!(chain.view().head_hash(), head);
        // Only a valid signed transaction could enter the mempool; random bytes never are one.
        prop_assert_eq!(chain.mempool().len(), pending);
        Ok(answer)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn typed_params_with_random_values_get_an_answer_and_change_nothing((method, params) in typed_request()) {
        ask(method, &params)?;
    }

    #[test]
    fn any_params_get_an_answer_and_change_nothing(method in 0..METHODS.len(), params in params()) {
        ask(METHODS[method], &params)?;
    }
}

type Fixture = (tokio::runtime::Runtime, jsonrpsee::RpcModule<()>, Arc<Chain>);

thread_local! {
    static CHAIN: Fixture = fixture();
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "metis-rpc-params-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = ChainSpec::dev(59902, &[Address::repeat_byte(1)], U256::from(10u64.pow(18)));
    let chain = Chain::new(Engine::open(&dir, spec).expect("engine"), MempoolConfig::default());
    // The open database lives on without its name; nothing is left behind when the test process ends.
    let _ = std::fs::remove_dir_all(&dir);
    let sequencers = (1..=4u64)
        .map(|id| metis_pos::Sequencer {
            id,
            signer: Address::with_last_byte(id as u8),
            consensus_key: alloy_primitives::keccak256(format!("ck{id}")),
            dkg_key: alloy_primitives::keccak256(format!("dk{id}")),
            stake: U256::from(10u64.pow(18)) * U256::from(20_000 + id),
            status: metis_pos::SequencerStatus::Active,
            jailed_until_epoch: 0,
            l1_jailed: false,
        })
        .collect();
    let ledger =
        metis_pos::Ledger::genesis(metis_pos::Params::default(), sequencers, Default::default()).expect("ledger");
    chain.set_ledger(Arc::new(ledger));
    // A few empty blocks, so that block numbers and hashes resolve.
    for t in 1..4 {
        chain
            .produce_block(t, Address::ZERO, Default::default())
            .expect("block");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut module = metis_rpc::server::module(chain.clone(), RpcLimits::default()).expect("module");
    let signer = Arc::new(parking_lot::RwLock::new(metis_signer::SignerStatus::default()));
    module
        .merge(metis_rpc::pos::module(chain.clone(), signer, Arc::new(NoStatus)))
        .expect("merge");
    (rt, module, chain)
}
