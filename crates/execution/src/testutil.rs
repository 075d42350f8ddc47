//! Helpers for tests: funded dev keys and signed transactions.

use crate::tx::RecoveredTx;
use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

pub fn keys(n: usize) -> Vec<PrivateKeySigner> {
    (1..=n)
        .map(|i| {
            let mut sk = [0u8; 32];
            sk[24..].copy_from_slice(&(i as u64 + 0x1000).to_be_bytes());
            PrivateKeySigner::from_slice(&sk).expect("valid key")
        })
        .collect()
}

pub fn eip1559(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas: u64,
) -> RecoveredTx {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to,
        value,
        input,
        access_list: Default::default(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("valid")
}

pub fn legacy(signer: &PrivateKeySigner, chain_id: u64, nonce: u64, to: Address, value: U256) -> RecoveredTx {
    let tx = TxLegacy {
        chain_id: Some(chain_id),
        nonce,
        gas_price: 2_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value,
        input: Bytes::new(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("valid")
}

pub fn eip2930(signer: &PrivateKeySigner, chain_id: u64, nonce: u64, to: Address, value: U256) -> RecoveredTx {
    let tx = TxEip2930 {
        chain_id,
        nonce,
        gas_price: 2_000_000_000,
        gas_limit: 30_000,
        to: TxKind::Call(to),
        value,
        input: Bytes::new(),
        access_list: Default::default(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("valid")
}

/// A zero-value EIP-1559 transfer to the zero address with the given fee cap and tip.
pub fn eip1559_priced(signer: &PrivateKeySigner, chain_id: u64, nonce: u64, max_fee: u128, tip: u128) -> RecoveredTx {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(Address::ZERO),
        value: U256::ZERO,
        input: Bytes::new(),
        access_list: Default::default(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("valid")
}

/// Init code that deploys `runtime` as the contract's code.
pub fn initcode_for(runtime: &[u8]) -> Bytes {
    // PUSH1 len, DUP1, PUSH1 11 (this prefix's length), PUSH1 0, CODECOPY, PUSH1 0, RETURN
    let mut init = vec![
        0x60,
        runtime.len() as u8,
        0x80,
        0x60,
        0x0b,
        0x60,
        0x00,
        0x39,
        0x60,
        0x00,
        0xf3,
    ];
    init.extend_from_slice(runtime);
    init.into()
}
