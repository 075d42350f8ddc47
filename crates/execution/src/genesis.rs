//! Chain parameters and the genesis state from a geth-style genesis JSON.

use alloy_genesis::Genesis;
use alloy_primitives::{Address, Bytes, B256, U256};
use std::collections::BTreeMap;

/// Base fee of the genesis block when the genesis file names none (1 gwei, as geth's dev mode).
pub const DEFAULT_BASE_FEE: u64 = 1_000_000_000;
/// Block gas limit when the genesis file names none.
pub const DEFAULT_GAS_LIMIT: u64 = 30_000_000;
/// Largest transaction the node accepts (geth's txMaxSize).
pub const MAX_TX_SIZE: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("genesis: {0}")]
    Invalid(&'static str),
}

/// One prefunded account of the genesis state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisAlloc {
    pub nonce: u64,
    pub balance: U256,
    pub code: Bytes,
    pub storage: BTreeMap<U256, U256>,
}

/// What every node of one L2 chain agrees on before block 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub chain_id: u64,
    pub gas_limit: u64,
    pub genesis_base_fee: u64,
    pub genesis_timestamp: u64,
    pub genesis_extra_data: Bytes,
    pub alloc: BTreeMap<Address, GenesisAlloc>,
}

impl ChainSpec {
    /// Parses a geth-style genesis JSON (config.chainId, gasLimit, baseFeePerGas, timestamp, alloc).
    pub fn from_genesis_json(json: &str) -> Result<Self, GenesisError> {
        let g: Genesis = serde_json::from_str(json)?;
        Self::from_genesis(&g)
    }

    pub fn from_genesis(g: &Genesis) -> Result<Self, GenesisError> {
        if g.config.chain_id == 0 {
            return Err(GenesisError::Invalid("config.chainId must be non-zero"));
        }
        let gas_limit = if g.gas_limit == 0 {
            DEFAULT_GAS_LIMIT
        } else {
            g.gas_limit
        };
        if gas_limit < 5_000_000 {
            return Err(GenesisError::Invalid(
                "gasLimit below 5,000,000 leaves no room for contract deployments",
            ));
        }
        let base_fee = match g.base_fee_per_gas {
            None => DEFAULT_BASE_FEE,
            Some(b) => u64::try_from(b).map_err(|_| GenesisError::Invalid("baseFeePerGas does not fit 64 bits"))?,
        };
        let alloc = g
            .alloc
            .iter()
            .map(|(addr, a)| {
                let storage = a
                    .storage
                    .iter()
                    .flatten()
                    .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
                    .filter(|(_, v)| !v.is_zero())
                    .collect();
                let acct = GenesisAlloc {
                    nonce: a.nonce.unwrap_or(0),
                    balance: a.balance,
                    code: a.code.clone().unwrap_or_default(),
                    storage,
                };
                (*addr, acct)
            })
            .collect();
        Ok(Self {
            chain_id: g.config.chain_id,
            gas_limit,
            genesis_base_fee: base_fee,
            genesis_timestamp: g.timestamp,
            genesis_extra_data: g.extra_data.clone(),
            alloc,
        })
    }

    /// A dev chain: `accounts` each funded with `balance`.
    pub fn dev(chain_id: u64, accounts: &[Address], balance: U256) -> Self {
        let alloc = accounts
            .iter()
            .map(|a| {
                (
                    *a,
                    GenesisAlloc {
                        nonce: 0,
                        balance,
                        code: Bytes::new(),
                        storage: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Self {
            chain_id,
            gas_limit: DEFAULT_GAS_LIMIT,
            genesis_base_fee: DEFAULT_BASE_FEE,
            genesis_timestamp: 0,
            genesis_extra_data: Bytes::new(),
            alloc,
        }
    }
}

/// keccak256 of empty code.
pub const KECCAK_EMPTY: B256 =
    alloy_primitives::b256!("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_geth_genesis() {
        let json = r#"{
            "config": {"chainId": 59902},
            "gasLimit": "0x1c9c380",
            "baseFeePerGas": "0x3b9aca00",
            "timestamp": "0x10",
            "alloc": {
                "0x1000000000000000000000000000000000000001": {"balance": "0xde0b6b3a7640000"},
                "0x1000000000000000000000000000000000000002": {
                    "balance": "0x0", "nonce": "0x1", "code": "0x6000",
                    "storage": {"0x0000000000000000000000000000000000000000000000000000000000000001": "0x0000000000000000000000000000000000000000000000000000000000000002"}
                }
            }
        }"#;
        let spec = ChainSpec::from_genesis_json(json).unwrap();
        assert_eq!(spec.chain_id, 59902);
        assert_eq!(spec.gas_limit, 30_000_000);
        assert_eq!(spec.genesis_base_fee, 1_000_000_000);
        assert_eq!(spec.genesis_timestamp, 16);
        assert_eq!(spec.alloc.len(), 2);
        let c = &spec.alloc[&"0x1000000000000000000000000000000000000002".parse::<Address>().unwrap()];
        assert_eq!(c.nonce, 1);
        assert_eq!(c.storage[&U256::from(1)], U256::from(2));
    }

    #[test]
    fn rejects_bad_genesis() {
        assert!(ChainSpec::from_genesis_json("{").is_err());
        assert!(ChainSpec::from_genesis_json(r#"{"config":{"chainId":0},"alloc":{}}"#).is_err());
        assert!(ChainSpec::from_genesis_json(r#"{"config":{"chainId":5},"gasLimit":"0x10","alloc":{}}"#).is_err());
    }
}
