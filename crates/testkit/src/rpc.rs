//! JSON-RPC calls the test handles make to nodes: one call, the head, a block.

use serde_json::{json, Value};
use std::time::Duration;

/// One call to `url`, waiting at most `timeout`; an error object in the answer is an error.
pub async fn call(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: Value = client
        .post(url)
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    match v.get("error") {
        Some(e) => Err(e.to_string()),
        None => Ok(v["result"].clone()),
    }
}

/// The block number a `eth_blockNumber` answer names.
pub fn quantity(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// The `eth_getBlockByNumber` params for block `n` without transactions.
pub fn block_params(n: u64) -> Value {
    json!([format!("{n:#x}"), false])
}
