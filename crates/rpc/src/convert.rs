//! Chain data as the JSON-RPC types (alloy-rpc-types-eth) geth-compatible clients expect.

use alloy_consensus::{transaction::Recovered, Header, ReceiptEnvelope, Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_eth::{
    Block, BlockTransactions, Header as RpcHeader, Log as RpcLog, Transaction as RpcTransaction, TransactionReceipt,
};

pub fn rpc_header(header: &Header, hash: B256, size: usize) -> RpcHeader {
    RpcHeader {
        hash,
        inner: header.clone(),
        total_difficulty: Some(U256::ZERO),
        size: Some(U256::from(size)),
    }
}

pub fn rpc_tx(tx: &TxEnvelope, sender: Address, block: Option<(B256, &Header, u64)>) -> RpcTransaction {
    let (block_hash, block_number, transaction_index, effective_gas_price, block_timestamp) = match block {
        Some((hash, h, index)) => (
            Some(hash),
            Some(h.number),
            Some(index),
            Some(tx.effective_gas_price(h.base_fee_per_gas)),
            Some(h.timestamp),
        ),
        None => (None, None, None, None, None),
    };
    RpcTransaction {
        inner: Recovered::new_unchecked(tx.clone(), sender),
        block_hash,
        block_number,
        transaction_index,
        effective_gas_price,
        block_timestamp,
    }
}

/// The logs of a block that `wanted` picks, numbered as in the whole block; only those are built.
pub fn block_logs_matching(
    hash: B256,
    header: &Header,
    txs: &[(Address, TxEnvelope)],
    receipts: &[ReceiptEnvelope],
    wanted: impl Fn(&alloy_primitives::Log) -> bool,
) -> Vec<RpcLog> {
    let mut out = Vec::new();
    let mut log_index = 0u64;
    for (i, (r, (_, tx))) in receipts.iter().zip(txs).enumerate() {
        for l in r.logs() {
            if !wanted(l) {
                log_index += 1;
                continue;
            }
            out.push(RpcLog {
                inner: l.clone(),
                block_hash: Some(hash),
                block_number: Some(header.number),
                block_timestamp: Some(header.timestamp),
                transaction_hash: Some(*tx.tx_hash()),
                transaction_index: Some(i as u64),
                log_index: Some(log_index),
                removed: false,
            });
            log_index += 1;
        }
    }
    out
}

/// The receipt of transaction `index` of a block.
pub fn rpc_receipt(
    hash: B256,
    header: &Header,
    txs: &[(Address, TxEnvelope)],
    receipts: &[ReceiptEnvelope],
    index: usize,
) -> Option<TransactionReceipt> {
    let (sender, tx) = txs.get(index)?;
    let receipt = receipts.get(index)?;
    let prev_cumulative = if index == 0 {
        0
    } else {
        receipts[index - 1].cumulative_gas_used()
    };
    let first_log: usize = receipts[..index].iter().map(|r| r.logs().len()).sum();
    let mut log_index = first_log as u64;
    let inner = receipt.clone().map_logs(|l| {
        let log = RpcLog {
            inner: l,
            block_hash: Some(hash),
            block_number: Some(header.number),
            block_timestamp: Some(header.timestamp),
            transaction_hash: Some(*tx.tx_hash()),
            transaction_index: Some(index as u64),
            log_index: Some(log_index),
            removed: false,
        };
        log_index += 1;
        log
    });
    let contract_address = if tx.kind().is_create() {
        Some(sender.create(tx.nonce()))
    } else {
        None
    };
    Some(TransactionReceipt {
        inner,
        transaction_hash: *tx.tx_hash(),
        transaction_index: Some(index as u64),
        block_hash: Some(hash),
        block_number: Some(header.number),
        gas_used: receipt.cumulative_gas_used() - prev_cumulative,
        effective_gas_price: tx.effective_gas_price(header.base_fee_per_gas),
        blob_gas_used: None,
        blob_gas_price: None,
        from: *sender,
        to: tx.to(),
        contract_address,
    })
}

pub fn rpc_block(hash: B256, header: &Header, txs: &[(Address, TxEnvelope)], full: bool) -> Block {
    let size = {
        // RLP size of the block: header + transactions + empty ommers + empty withdrawals.
        let mut n = alloy_rlp::Encodable::length(header);
        n += txs.iter().map(|(_, t)| t.encode_2718_len()).sum::<usize>();
        n + 3
    };
    let transactions = if full {
        BlockTransactions::Full(
            txs.iter()
                .enumerate()
                .map(|(i, (s, t))| rpc_tx(t, *s, Some((hash, header, i as u64))))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(txs.iter().map(|(_, t)| *t.tx_hash()).collect())
    };
    Block {
        header: rpc_header(header, hash, size),
        uncles: vec![],
        transactions,
        withdrawals: Some(Default::default()),
    }
}
