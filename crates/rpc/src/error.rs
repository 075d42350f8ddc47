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
    let standard =
        output.len() >= 4 && (output[..4] == [0x08, 0xc3, 0x79, 0xa0] || output[..4] == [0x4e, 0x48, 0x7b, 0x71]);
    let reason = if standard {
        alloy_sol_types::decode_revert_reason(output)
    } else {
        None
    };
    let msg = match reason {
        Some(reason) => format!("execution reverted: {reason}"),
        None => "execution reverted".to_string(),
    };
    ErrorObjectOwned::owned(EXECUTION_REVERTED, msg, Some(hex::encode_prefixed(output)))
}
