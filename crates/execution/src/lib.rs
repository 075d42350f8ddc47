//! The L2 execution engine: an Ethereum (Prague rules) state machine on revm.
//!
//! - [`genesis`]: the chain spec from a geth-style genesis JSON.
//! - [`state`]: the world state with incrementally maintained Merkle-Patricia tries ([`trie`]) and the per-block
//!   overlay revm executes against.

pub mod call;
pub mod engine;
pub mod executor;
pub mod genesis;
pub mod state;
pub mod trace;
pub mod trie;
pub mod tx;

/// Funded dev keys and signed transactions, for this crate's tests and (feature `test-utils`) other crates'.
#[cfg(any(test, feature = "test-utils"))]
pub mod testutil;

pub use engine::{Engine, EngineError};
pub use executor::{build_block, execute_block, BlockContext, BlockError, BlockExecutor, ExecutedBlock};
pub use genesis::{ChainSpec, GenesisError};
pub use metis_storage::StateHistory;
pub use state::{
    Account, AccountChange, BlockOverlay, Changeset, RootUpdate, SlotProof, StateProof, StateSource, WorldState,
};
pub use tx::{RecoveredTx, TxError};
