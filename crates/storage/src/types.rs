//! What the store holds of the world state: accounts and the changes a block makes.

use alloy_primitives::{Address, B256, U256};
use revm::state::Bytecode;
use std::collections::BTreeMap;

/// An account's fields besides storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
}

/// What one block did to one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// The account after the block; `None` when it was deleted (self-destructed, or touched and empty).
    pub info: Option<Account>,
    /// Whether its storage was wiped before `storage` applies (creation or deletion).
    pub storage_cleared: bool,
    /// Slots written; a zero value deletes the slot.
    pub storage: BTreeMap<U256, U256>,
}

/// Everything one block changed, in a deterministic order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changeset {
    pub accounts: BTreeMap<Address, AccountChange>,
    pub new_code: BTreeMap<B256, Bytecode>,
}
