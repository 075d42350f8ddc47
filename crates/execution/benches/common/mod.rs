//! What the execution benchmarks share: a signed 21,000-gas transfer.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use metis_execution::RecoveredTx;

pub const CHAIN: u64 = 59902;

/// `value` wei from `key` to `to` at `nonce`, signed and recovered (as the mempool holds it).
pub fn transfer(key: &PrivateKeySigner, nonce: u64, to: Address, value: u64) -> RecoveredTx {
    let tx = TxEip1559 {
        chain_id: CHAIN,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to: TxKind::Call(to),
        value: U256::from(value),
        input: Bytes::new(),
        access_list: Default::default(),
    };
    let sig = key.sign_hash_sync(&tx.signature_hash()).expect("sign");
    RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("valid")
}
