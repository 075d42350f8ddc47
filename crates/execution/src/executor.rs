//! Block execution on revm: build a block from candidate transactions, or re-execute a block someone else
//! proposed, producing an Ethereum-shaped header, receipts and the state changes.

use crate::genesis::ChainSpec;
use crate::state::{Changeset, RootUpdate, WorldState};
use crate::tx::{RecoveredTx, TxError, SPEC};
use alloy_consensus::{
    proofs, Eip658Value, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxType, EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::eip1559::{calc_next_block_base_fee, BaseFeeParams};
use alloy_eips::eip7685::EMPTY_REQUESTS_HASH;
use alloy_primitives::{Address, Bloom, Bytes, Log, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use revm::context::{BlockEnv, CfgEnv};
use revm::context_interface::block::BlobExcessGasAndPrice;
use revm::context_interface::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};

/// What a block is built on: its parent and the values the proposer chooses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub parent_hash: B256,
    pub number: u64,
    pub timestamp: u64,
    pub beneficiary: Address,
    pub base_fee: u64,
    pub gas_limit: u64,
    /// PREVRANDAO for the block (the L2 has no beacon chain; the proposer fixes it, validators check it).
    pub prevrandao: B256,
    /// Names the proposer.
    pub extra_data: Bytes,
}

impl BlockContext {
    /// The context a stored block ran in, from its header (calls and traces at that block); None for a header
    /// without a base fee, which no block of this chain has (a damaged record).
    pub fn of(h: &Header) -> Option<Self> {
        Some(Self {
            parent_hash: h.parent_hash,
            number: h.number,
            timestamp: h.timestamp,
            beneficiary: h.beneficiary,
            base_fee: h.base_fee_per_gas?,
            gas_limit: h.gas_limit,
            prevrandao: h.mix_hash,
            extra_data: h.extra_data.clone(),
        })
    }

    /// The context of the block after `parent`.
    pub fn child_of(
        parent: &Header,
        parent_hash: B256,
        spec: &ChainSpec,
        timestamp: u64,
        beneficiary: Address,
    ) -> Self {
        Self {
            parent_hash,
            number: parent.number + 1,
            timestamp,
            beneficiary,
            base_fee: next_base_fee(parent),
            gas_limit: spec.gas_limit,
            prevrandao: parent_hash,
            extra_data: Bytes::new(),
        }
    }
}

/// EIP-1559 base fee of the block after `parent`.
pub fn next_base_fee(parent: &Header) -> u64 {
    calc_next_block_base_fee(
        parent.gas_used,
        parent.gas_limit,
        parent.base_fee_per_gas.unwrap_or_default(),
        BaseFeeParams::ethereum(),
    )
}

/// A block with everything executing it produced.
#[derive(Clone, Debug)]
pub struct ExecutedBlock {
    pub header: Header,
    pub hash: B256,
    pub transactions: Vec<RecoveredTx>,
    pub receipts: Vec<ReceiptEnvelope>,
    pub changeset: Changeset,
    pub root_update: RootUpdate,
}

/// Why a proposed block is refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("transaction {index} ({hash}) is invalid: {error}")]
    InvalidTx {
        index: usize,
        hash: B256,
        error: Box<TxError>,
    },
    #[error("block uses {used} gas, over its limit {limit}")]
    GasLimit { used: u64, limit: u64 },
    #[error("header mismatch in {field}: block says {claimed}, execution gives {computed}")]
    HeaderMismatch {
        field: &'static str,
        claimed: String,
        computed: String,
    },
    #[error("state: {0}")]
    State(String),
}

/// Result of one transaction inside a block.
#[derive(Clone, Debug)]
pub struct TxOutcome {
    pub success: bool,
    pub gas_used: u64,
    pub logs: Vec<Log>,
    pub output: Bytes,
}

/// revm's refusal in geth's words, with the block's base fee and the chain's id where the message names them.
fn map_invalid(e: InvalidTransaction, tx: &RecoveredTx, base_fee: u64, chain_id: u64) -> TxError {
    match e {
        InvalidTransaction::NonceTooLow { tx: t, state } => TxError::NonceTooLow {
            sender: tx.sender,
            tx: t,
            state,
        },
        InvalidTransaction::NonceTooHigh { tx: t, state } => TxError::NonceTooHigh {
            sender: tx.sender,
            tx: t,
            state,
        },
        InvalidTransaction::LackOfFundForMaxFee { fee, balance } => TxError::InsufficientFunds {
            sender: tx.sender,
            balance: *balance,
            cost: *fee,
        },
        InvalidTransaction::GasPriceLessThanBasefee => TxError::FeeCapBelowBaseFee {
            sender: tx.sender,
            fee_cap: tx.max_fee_per_gas(),
            base_fee,
        },
        InvalidTransaction::PriorityFeeGreaterThanMaxFee => TxError::TipAboveFeeCap,
        InvalidTransaction::CallerGasLimitMoreThanBlock => TxError::GasLimitExceedsBlock,
        InvalidTransaction::RejectCallerWithCode => TxError::SenderNotEoa(tx.sender),
        InvalidTransaction::InvalidChainId | InvalidTransaction::MissingChainId => TxError::WrongChainId {
            have: alloy_consensus::Transaction::chain_id(&tx.envelope).unwrap_or_default(),
            want: chain_id,
        },
        other => TxError::Other(other.to_string()),
    }
}

/// Executes transactions one by one on top of `state` for one block.
pub struct BlockExecutor<'a> {
    spec: &'a ChainSpec,
    ctx: BlockContext,
    evm: revm::handler::MainnetEvm<revm::handler::MainnetContext<crate::state::BlockOverlay<'a>>>,
    state: &'a WorldState,
    gas_used: u64,
    transactions: Vec<RecoveredTx>,
    receipts: Vec<ReceiptEnvelope>,
}

/// The revm environment of a block.
pub fn evm_block_env(ctx: &BlockContext) -> BlockEnv {
    BlockEnv {
        number: U256::from(ctx.number),
        beneficiary: ctx.beneficiary,
        timestamp: U256::from(ctx.timestamp),
        gas_limit: ctx.gas_limit,
        basefee: ctx.base_fee,
        difficulty: U256::ZERO,
        prevrandao: Some(ctx.prevrandao),
        // No blob market on the L2: excess blob gas stays 0 (blob transactions are refused anyway).
        blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(0, 5_007_716)),
        ..Default::default()
    }
}

pub fn evm_cfg(spec: &ChainSpec) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(SPEC);
    cfg.chain_id = spec.chain_id;
    cfg
}

impl<'a> BlockExecutor<'a> {
    pub fn new(state: &'a WorldState, spec: &'a ChainSpec, ctx: BlockContext) -> Self {
        let evm = Context::mainnet()
            .with_db(state.overlay())
            .with_cfg(evm_cfg(spec))
            .with_block(evm_block_env(&ctx))
            .build_mainnet();
        Self {
            spec,
            ctx,
            evm,
            state,
            gas_used: 0,
            transactions: Vec::new(),
            receipts: Vec::new(),
        }
    }

    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    pub fn gas_left(&self) -> u64 {
        self.ctx.gas_limit.saturating_sub(self.gas_used)
    }

    /// Executes `tx` and includes it; an invalid transaction changes nothing and is returned as the error.
    pub fn execute(&mut self, tx: RecoveredTx) -> Result<TxOutcome, TxError> {
        tx.check_static(self.spec)?;
        if tx.gas_limit() > self.gas_left() {
            return Err(TxError::BlockFull);
        }
        let out = match self.evm.transact(tx.tx_env()) {
            Ok(out) => out,
            Err(EVMError::Transaction(e)) => return Err(map_invalid(e, &tx, self.ctx.base_fee, self.spec.chain_id)),
            Err(e) => return Err(TxError::Other(e.to_string())),
        };
        self.evm.commit(out.state);
        let result = out.result;
        let gas_used = result.tx_gas_used();
        self.gas_used += gas_used;
        let success = result.is_success();
        let output = match &result {
            ExecutionResult::Success { output, .. } => output.data().clone(),
            ExecutionResult::Revert { output, .. } => output.clone(),
            ExecutionResult::Halt { .. } => Bytes::new(),
        };
        let logs = result.into_logs();
        let receipt = Receipt {
            status: Eip658Value::Eip658(success),
            cumulative_gas_used: self.gas_used,
            logs: logs.clone(),
        };
        let with_bloom = ReceiptWithBloom::from(receipt);
        let envelope = match tx.envelope.tx_type() {
            TxType::Legacy => ReceiptEnvelope::Legacy(with_bloom),
            TxType::Eip2930 => ReceiptEnvelope::Eip2930(with_bloom),
            TxType::Eip1559 => ReceiptEnvelope::Eip1559(with_bloom),
            TxType::Eip4844 => ReceiptEnvelope::Eip4844(with_bloom),
            TxType::Eip7702 => ReceiptEnvelope::Eip7702(with_bloom),
        };
        self.receipts.push(envelope);
        self.transactions.push(tx);
        Ok(TxOutcome {
            success,
            gas_used,
            logs,
            output,
        })
    }

    /// Seals the block: roots, bloom, header.
    pub fn finish(self) -> ExecutedBlock {
        let changeset = self.evm.ctx.journaled_state.database.into_changes();
        let root_update = self.state.compute_root(&changeset);
        let envelopes: Vec<_> = self.transactions.iter().map(|t| t.envelope.clone()).collect();
        let mut logs_bloom = Bloom::ZERO;
        for r in &self.receipts {
            logs_bloom.accrue_bloom(r.logs_bloom());
        }
        let header = Header {
            parent_hash: self.ctx.parent_hash,
            beneficiary: self.ctx.beneficiary,
            state_root: root_update.root,
            transactions_root: proofs::calculate_transaction_root(&envelopes),
            receipts_root: proofs::calculate_receipt_root(&self.receipts),
            logs_bloom,
            difficulty: U256::ZERO,
            number: self.ctx.number,
            gas_limit: self.ctx.gas_limit,
            gas_used: self.gas_used,
            timestamp: self.ctx.timestamp,
            extra_data: self.ctx.extra_data.clone(),
            mix_hash: self.ctx.prevrandao,
            nonce: Default::default(),
            base_fee_per_gas: Some(self.ctx.base_fee),
            ..prague_header()
        };
        let hash = header.hash_slow();
        ExecutedBlock {
            header,
            hash,
            transactions: self.transactions,
            receipts: self.receipts,
            changeset,
            root_update,
        }
    }
}

/// The Prague-era header fields an L2 without withdrawals, blobs or beacon chain fills with empty values.
pub fn prague_header() -> Header {
    Header {
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: Some(EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}

/// Builds a block from `candidates` in the given order, skipping (and returning) the ones that cannot go in.
pub fn build_block(
    state: &WorldState,
    spec: &ChainSpec,
    ctx: BlockContext,
    candidates: impl IntoIterator<Item = RecoveredTx>,
) -> (ExecutedBlock, Vec<(B256, TxError)>) {
    let mut exec = BlockExecutor::new(state, spec, ctx);
    let mut rejected = Vec::new();
    for tx in candidates {
        if exec.gas_left() < 21_000 {
            break;
        }
        let hash = tx.hash;
        if let Err(e) = exec.execute(tx) {
            rejected.push((hash, e));
        }
    }
    (exec.finish(), rejected)
}

/// Re-executes a block someone proposed: every transaction must be valid and the header must match.
pub fn execute_block(
    state: &WorldState,
    spec: &ChainSpec,
    header: &Header,
    transactions: Vec<RecoveredTx>,
) -> Result<ExecutedBlock, BlockError> {
    let ctx = BlockContext {
        parent_hash: header.parent_hash,
        number: header.number,
        timestamp: header.timestamp,
        beneficiary: header.beneficiary,
        base_fee: header.base_fee_per_gas.unwrap_or_default(),
        gas_limit: header.gas_limit,
        prevrandao: header.mix_hash,
        extra_data: header.extra_data.clone(),
    };
    if header.gas_limit != spec.gas_limit {
        return Err(mismatch("gas_limit", header.gas_limit, spec.gas_limit));
    }
    let mut exec = BlockExecutor::new(state, spec, ctx);
    for (index, tx) in transactions.into_iter().enumerate() {
        let hash = tx.hash;
        exec.execute(tx).map_err(|error| BlockError::InvalidTx {
            index,
            hash,
            error: Box::new(error),
        })?;
    }
    let executed = exec.finish();
    let h = &executed.header;
    if h.gas_used != header.gas_used {
        return Err(mismatch("gas_used", header.gas_used, h.gas_used));
    }
    if h.state_root != header.state_root {
        return Err(mismatch("state_root", header.state_root, h.state_root));
    }
    if h.receipts_root != header.receipts_root {
        return Err(mismatch("receipts_root", header.receipts_root, h.receipts_root));
    }
    if h.transactions_root != header.transactions_root {
        return Err(mismatch(
            "transactions_root",
            header.transactions_root,
            h.transactions_root,
        ));
    }
    if h.logs_bloom != header.logs_bloom {
        return Err(mismatch("logs_bloom", header.logs_bloom, h.logs_bloom));
    }
    if executed.hash != header.hash_slow() {
        return Err(mismatch("hash", header.hash_slow(), executed.hash));
    }
    Ok(executed)
}

fn mismatch(field: &'static str, claimed: impl std::fmt::Display, computed: impl std::fmt::Display) -> BlockError {
    BlockError::HeaderMismatch {
        field,
        claimed: claimed.to_string(),
        computed: computed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{eip1559, eip2930, initcode_for, keys, legacy};
    use alloy_primitives::{address, b256, keccak256, TxKind};

    const CHAIN: u64 = 59902;
    const ETH: u128 = 1_000_000_000_000_000_000;

    fn chain(
        n: usize,
    ) -> (
        ChainSpec,
        WorldState,
        Header,
        B256,
        Vec<alloy_signer_local::PrivateKeySigner>,
    ) {
        let ks = keys(n);
        let addrs: Vec<_> = ks.iter().map(|k| k.address()).collect();
        let spec = ChainSpec::dev(CHAIN, &addrs, U256::from(100 * ETH));
        let (state, root) = WorldState::genesis(&spec);
        let genesis = Header {
            state_root: root,
            gas_limit: spec.gas_limit,
            base_fee_per_gas: Some(spec.genesis_base_fee),
            ..Default::default()
        };
        let hash = genesis.hash_slow();
        (spec, state, genesis, hash, ks)
    }

    #[test]
    fn transfers_of_every_type_move_value_and_pay_fees() {
        let (spec, mut state, genesis, gh, ks) = chain(3);
        let to = address!("00000000000000000000000000000000000000aa");
        let coinbase = address!("00000000000000000000000000000000000000cc");
        let ctx = BlockContext::child_of(&genesis, gh, &spec, 1, coinbase);
        let base_fee = ctx.base_fee;
        let txs = vec![
            legacy(&ks[0], CHAIN, 0, to, U256::from(1)),
            eip2930(&ks[1], CHAIN, 0, to, U256::from(2)),
            eip1559(&ks[2], CHAIN, 0, TxKind::Call(to), U256::from(3), Bytes::new(), 21_000),
            eip1559(&ks[2], CHAIN, 1, TxKind::Call(to), U256::from(4), Bytes::new(), 21_000),
        ];
        let (block, rejected) = build_block(&state, &spec, ctx, txs);
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(block.transactions.len(), 4);
        assert_eq!(block.header.gas_used, 4 * 21_000);
        assert!(block.receipts.iter().all(|r| r.status()));
        state.commit(&block.changeset, block.root_update.clone());
        assert_eq!(state.root(), block.header.state_root);
        assert_eq!(state.account(&to).unwrap().balance, U256::from(10));
        let s2 = state.account(&ks[2].address()).unwrap();
        assert_eq!(s2.nonce, 2);
        // Sender paid value + gas at (base fee + tip); the coinbase got only the tips (base fee burnt).
        let tip = 1_000_000u128;
        let paid = 7 + 2 * 21_000 * (u128::from(base_fee) + tip);
        assert_eq!(s2.balance, U256::from(100 * ETH - paid));
        assert!(state.account(&coinbase).unwrap().balance > U256::ZERO);
    }

    #[test]
    fn invalid_transactions_are_skipped_with_geth_errors() {
        let (spec, state, genesis, gh, ks) = chain(2);
        let to = address!("00000000000000000000000000000000000000aa");
        let ctx = BlockContext::child_of(&genesis, gh, &spec, 1, Address::ZERO);
        let txs = vec![
            eip1559(&ks[0], CHAIN, 1, TxKind::Call(to), U256::ZERO, Bytes::new(), 21_000), // nonce gap
            eip1559(&ks[0], 1, 0, TxKind::Call(to), U256::ZERO, Bytes::new(), 21_000),     // wrong chain
            eip1559(
                &ks[1],
                CHAIN,
                0,
                TxKind::Call(to),
                U256::from(1000 * ETH),
                Bytes::new(),
                21_000,
            ), // funds
            eip1559(&ks[1], CHAIN, 0, TxKind::Call(to), U256::ZERO, Bytes::new(), 20_000), // intrinsic gas
            crate::testutil::eip1559_priced(&ks[1], CHAIN, 0, 5, 1),                       // fee cap below base fee
        ];
        let base_fee = ctx.base_fee;
        let (block, rejected) = build_block(&state, &spec, ctx, txs);
        assert!(block.transactions.is_empty());
        let msgs: Vec<String> = rejected.iter().map(|(_, e)| e.to_string()).collect();
        assert!(msgs[0].starts_with("nonce too high"), "{msgs:?}");
        assert!(msgs[1].starts_with("invalid chain id for signer"), "{msgs:?}");
        assert!(
            msgs[2].starts_with("insufficient funds for gas * price + value"),
            "{msgs:?}"
        );
        assert!(msgs[3].starts_with("intrinsic gas too low"), "{msgs:?}");
        assert!(
            msgs[4].starts_with("max fee per gas less than block base fee"),
            "{msgs:?}"
        );
        assert!(
            msgs[4].ends_with(&format!("baseFee: {base_fee}")),
            "the block's base fee is named: {msgs:?}"
        );
    }

    /// A contract that stores its calldata word in slot 0 and logs it.
    fn storing_contract_initcode() -> Bytes {
        let topic = b256!("1111111111111111111111111111111111111111111111111111111111111111");
        let mut runtime = vec![0x60, 0x00, 0x35, 0x80, 0x60, 0x00, 0x55, 0x60, 0x00, 0x52, 0x7f];
        runtime.extend_from_slice(topic.as_slice());
        runtime.extend_from_slice(&[0x60, 0x20, 0x60, 0x00, 0xa1, 0x00]);
        initcode_for(&runtime)
    }

    #[test]
    fn contract_storage_logs_and_revalidation() {
        let (spec, mut state, genesis, gh, ks) = chain(1);
        let deployer = ks[0].address();
        let contract = deployer.create(0);
        let ctx = BlockContext::child_of(&genesis, gh, &spec, 1, Address::ZERO);
        let word = B256::repeat_byte(0x42);
        let txs = vec![
            eip1559(
                &ks[0],
                CHAIN,
                0,
                TxKind::Create,
                U256::ZERO,
                storing_contract_initcode(),
                200_000,
            ),
            eip1559(
                &ks[0],
                CHAIN,
                1,
                TxKind::Call(contract),
                U256::ZERO,
                Bytes::from(word.to_vec()),
                100_000,
            ),
        ];
        let (block, rejected) = build_block(&state, &spec, ctx, txs.clone());
        assert!(rejected.is_empty(), "{rejected:?}");
        let logs = block.receipts[1].logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].address, contract);
        assert_eq!(logs[0].data.data.as_ref(), word.as_slice());
        assert!(block
            .header
            .logs_bloom
            .contains_input(alloy_primitives::BloomInput::Raw(contract.as_slice())));

        // Another node re-executes the proposed block and gets the same header.
        let again = execute_block(&state, &spec, &block.header, txs.clone()).expect("valid block");
        assert_eq!(again.hash, block.hash);
        // A header claiming another state root is refused.
        let mut forged = block.header.clone();
        forged.state_root = keccak256("forged");
        match execute_block(&state, &spec, &forged, txs) {
            Err(BlockError::HeaderMismatch {
                field: "state_root", ..
            }) => {}
            other => panic!("expected a state root mismatch, got {other:?}"),
        }

        state.commit(&block.changeset, block.root_update);
        assert_eq!(state.storage_at(&contract, &U256::ZERO), U256::from_be_bytes(word.0));
        let code_hash = state.account(&contract).unwrap().code_hash;
        assert!(state.code(&code_hash).is_some());
    }

    #[test]
    fn block_gas_limit_is_respected() {
        let (mut spec, state, genesis, gh, ks) = chain(1);
        spec.gas_limit = 5_000_000;
        let ctx = BlockContext {
            gas_limit: spec.gas_limit,
            ..BlockContext::child_of(&genesis, gh, &spec, 1, Address::ZERO)
        };
        let to = address!("00000000000000000000000000000000000000aa");
        let txs: Vec<_> = (0..300)
            .map(|n| eip1559(&ks[0], CHAIN, n, TxKind::Call(to), U256::ZERO, Bytes::new(), 21_000))
            .collect();
        let (block, _) = build_block(&state, &spec, ctx, txs);
        assert_eq!(block.transactions.len(), 5_000_000 / 21_000);
        assert!(block.header.gas_used <= 5_000_000);
    }
}
