//! Transactions as the node takes them in: decoded from raw EIP-2718 bytes, signer recovered, and checked the
//! way geth checks them, with geth's error messages so wallets show the right thing.

use crate::genesis::{ChainSpec, MAX_TX_SIZE};
use crate::state::Account;
use alloy_consensus::{transaction::SignerRecoverable, Transaction, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718, Typed2718};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use revm::context::TxEnv;
use revm::context_interface::cfg::gas::calculate_initial_tx_gas_for_tx;
use revm::context_interface::either::Either;
use revm::primitives::hardfork::SpecId;

/// The fork rules the L2 executes.
pub const SPEC: SpecId = SpecId::PRAGUE;

/// Why a transaction is refused. The messages are geth's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("rlp: {0}")]
    Decode(String),
    #[error("oversized data: transaction size {size}, limit {limit}")]
    Oversized { size: usize, limit: usize },
    #[error("transaction type not supported")]
    TypeNotSupported,
    #[error("invalid sender")]
    InvalidSender,
    #[error("invalid chain id for signer: have {have} want {want}")]
    WrongChainId { have: u64, want: u64 },
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    NotReplayProtected,
    #[error("exceeds block gas limit")]
    GasLimitExceedsBlock,
    #[error("intrinsic gas too low: gas {gas}, minimum needed {needed}")]
    IntrinsicGas { gas: u64, needed: u64 },
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    #[error(
        "max fee per gas less than block base fee: address {sender}, maxFeePerGas: {fee_cap}, baseFee: {base_fee}"
    )]
    FeeCapBelowBaseFee {
        sender: Address,
        fee_cap: u128,
        base_fee: u64,
    },
    #[error("nonce too low: address {sender}, tx: {tx} state: {state}")]
    NonceTooLow { sender: Address, tx: u64, state: u64 },
    #[error("nonce too high: address {sender}, tx: {tx} state: {state}")]
    NonceTooHigh { sender: Address, tx: u64, state: u64 },
    #[error("insufficient funds for gas * price + value: address {sender} have {balance} want {cost}")]
    InsufficientFunds { sender: Address, balance: U256, cost: U256 },
    #[error("sender not an eoa: address {0}")]
    SenderNotEoa(Address),
    #[error("max initcode size exceeded")]
    InitcodeTooLarge,
    #[error("gas limit reached")]
    BlockFull,
    #[error("invalid transaction: {0}")]
    Other(String),
}

/// A decoded transaction with its recovered sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredTx {
    pub envelope: TxEnvelope,
    pub sender: Address,
    pub hash: B256,
    pub encoded_len: usize,
}

impl RecoveredTx {
    /// Decodes EIP-2718 bytes (as eth_sendRawTransaction gets them) and recovers the sender.
    pub fn decode(raw: &[u8]) -> Result<Self, TxError> {
        Self::from_envelope(Self::decode_envelope(raw)?)
    }

    /// Decodes EIP-2718 bytes without recovering the sender (size-checked; the hash is at hand).
    pub fn decode_envelope(raw: &[u8]) -> Result<TxEnvelope, TxError> {
        if raw.len() > MAX_TX_SIZE {
            return Err(TxError::Oversized {
                size: raw.len(),
                limit: MAX_TX_SIZE,
            });
        }
        let mut buf = raw;
        let envelope = TxEnvelope::decode_2718(&mut buf).map_err(|e| TxError::Decode(e.to_string()))?;
        if !buf.is_empty() {
            return Err(TxError::Decode("input contains more than one value".into()));
        }
        Ok(envelope)
    }

    pub fn from_envelope(envelope: TxEnvelope) -> Result<Self, TxError> {
        // Blob transactions belong on L1; the L2 has no blob market.
        if envelope.is_eip4844() {
            return Err(TxError::TypeNotSupported);
        }
        let sender = envelope.recover_signer().map_err(|_| TxError::InvalidSender)?;
        let hash = *envelope.tx_hash();
        let encoded_len = envelope.encode_2718_len();
        if encoded_len > MAX_TX_SIZE {
            return Err(TxError::Oversized {
                size: encoded_len,
                limit: MAX_TX_SIZE,
            });
        }
        Ok(Self {
            envelope,
            sender,
            hash,
            encoded_len,
        })
    }

    pub fn encoded(&self) -> Bytes {
        self.envelope.encoded_2718().into()
    }

    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }

    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }

    pub fn max_fee_per_gas(&self) -> u128 {
        self.envelope.max_fee_per_gas()
    }

    /// The tip this transaction pays per gas at `base_fee` (what miners are paid, what the pool orders by).
    pub fn effective_tip(&self, base_fee: u64) -> u128 {
        self.envelope.effective_tip_per_gas(base_fee).unwrap_or(0)
    }

    /// Upper bound of what the sender pays: gas_limit * max fee + value; none if that is beyond 2^256 - 1 (a
    /// value near the top would otherwise wrap to a cost anyone can pay).
    pub fn max_cost(&self) -> Option<U256> {
        U256::from(self.gas_limit())
            .checked_mul(U256::from(self.max_fee_per_gas()))?
            .checked_add(self.envelope.value())
    }

    /// The transaction as revm executes it.
    pub fn tx_env(&self) -> TxEnv {
        let tx = &self.envelope;
        let mut env = TxEnv {
            tx_type: tx.ty(),
            caller: self.sender,
            gas_limit: tx.gas_limit(),
            gas_price: tx.max_fee_per_gas(),
            kind: tx.kind(),
            value: tx.value(),
            data: tx.input().clone(),
            nonce: tx.nonce(),
            chain_id: tx.chain_id(),
            access_list: tx.access_list().cloned().unwrap_or_default(),
            gas_priority_fee: tx.max_priority_fee_per_gas(),
            ..Default::default()
        };
        if let Some(auths) = tx.authorization_list() {
            env.authorization_list = auths.iter().cloned().map(Either::Left).collect();
        }
        if let TxEnvelope::Legacy(_) = tx {
            env.gas_priority_fee = None;
        }
        env
    }

    /// Checks that need no state: chain id, gas limit against the block, intrinsic gas, fee fields.
    pub fn check_static(&self, spec: &ChainSpec) -> Result<(), TxError> {
        let tx = &self.envelope;
        match tx.chain_id() {
            Some(id) if id != spec.chain_id => {
                return Err(TxError::WrongChainId {
                    have: id,
                    want: spec.chain_id,
                })
            }
            None => return Err(TxError::NotReplayProtected),
            _ => {}
        }
        if tx.gas_limit() > spec.gas_limit {
            return Err(TxError::GasLimitExceedsBlock);
        }
        if let Some(tip) = tx.max_priority_fee_per_gas() {
            if tip > tx.max_fee_per_gas() {
                return Err(TxError::TipAboveFeeCap);
            }
        }
        if tx.kind() == TxKind::Create && tx.input().len() > 2 * 24_576 {
            return Err(TxError::InitcodeTooLarge);
        }
        let gas = calculate_initial_tx_gas_for_tx(self.tx_env(), SPEC, None);
        let needed = (gas.initial_regular_gas + gas.initial_state_gas).max(gas.floor_gas);
        if tx.gas_limit() < needed {
            return Err(TxError::IntrinsicGas {
                gas: tx.gas_limit(),
                needed,
            });
        }
        Ok(())
    }

    /// Checks against the sender's account and the base fee. `expected_nonce` is the next nonce the pool
    /// can take (a higher one is queued, not refused).
    pub fn check_against(&self, account: Option<&Account>, base_fee: u64) -> Result<(), TxError> {
        let state_nonce = account.map_or(0, |a| a.nonce);
        if self.nonce() < state_nonce {
            return Err(TxError::NonceTooLow {
                sender: self.sender,
                tx: self.nonce(),
                state: state_nonce,
            });
        }
        if self.max_fee_per_gas() < u128::from(base_fee) {
            return Err(TxError::FeeCapBelowBaseFee {
                sender: self.sender,
                fee_cap: self.max_fee_per_gas(),
                base_fee,
            });
        }
        let balance = account.map_or(U256::ZERO, |a| a.balance);
        // A cost beyond 2^256 - 1 is more than any balance.
        let cost = self.max_cost().unwrap_or(U256::MAX);
        if self.max_cost().is_none_or(|c| balance < c) {
            return Err(TxError::InsufficientFunds {
                sender: self.sender,
                balance,
                cost,
            });
        }
        Ok(())
    }
}
