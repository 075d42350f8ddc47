//! JSON-RPC errors shaped like geth's, so wallets and libraries show the right thing.

use alloy_primitives::{hex, Bytes};
use jsonrpsee::types::ErrorObjectOwned;

pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL: i32 = -32603;
/// geth's code for transaction and state errors.
pub const SERVER_ERROR: i32 = -32000;
/// geth's code for execution reverted, with the revert data.
pub const EXECUTION_REVERTED: i32 = 3;
pub const RESOURCE_NOT_FOUND: i32 = -32001;
pub const LIMIT_EXCEEDED: i32 = -32005;

pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

pub fn invalid_params(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS, msg.into(), None::<()>)
}

pub fn server_error(msg: impl ToString) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(SERVER_ERROR, msg.to_string(), None::<()>)
}

pub fn internal(msg: impl ToString) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INTERNAL, msg.to_string(), None::<()>)
}

pub fn not_found(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(RESOURCE_NOT_FOUND, msg.into(), None::<()>)
}

pub fn limit_exceeded(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(LIMIT_EXCEEDED, msg.into(), None::<()>)
}

/// "execution reverted[: reason]" with the raw revert data, as geth answers eth_call and eth_estimateGas.
pub fn reverted(output: &Bytes) -> ErrorObjectOwned {
    // Only Error(string) and Panic(uint256) carry a reason; custom errors stay raw data.
    use alloy_sol_types::SolError;
    let reason = alloy_sol_types::Revert::abi_decode(output)
        .map(|r| r.reason)
        .ok()
        .or_else(|| alloy_sol_types::Panic::abi_decode(output).ok().map(|p| p.to_string()));
    let msg = match reason {
        Some(reason) => format!("execution reverted: {reason}"),
        None => "execution reverted".to_string(),
    };
    ErrorObjectOwned::owned(EXECUTION_REVERTED, msg, Some(hex::encode_prefixed(output)))
}
