//! The node's store: one redb file holding the chain (headers, bodies with senders, receipts, the tx lookup,
//! the flat state) and the node's records beside it (`meta`), whose keys and encodings [`schema`] owns.

pub mod history;
pub mod schema;
pub mod store;
pub mod types;

pub use history::{HistoryError, StateAt, StateHistory};
pub use store::{BlockWrite, Store, StoreError, StoredTx};
pub use types::{Account, AccountChange, Changeset};

/// A record in its one encoding (borsh). Fails only for a collection too long to encode.
pub fn encode<T: borsh::BorshSerialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    borsh::to_vec(v).map_err(|e| StoreError::Corrupt(format!("encoding a record: {e}")))
}
