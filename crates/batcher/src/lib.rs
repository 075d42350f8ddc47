//! Batches of L2 blocks for L1 (issue 7 builds the rest of the batcher on this).
//!
//! [`merkle`]: the batch's transaction Merkle tree, in the form BatchInbox.verifyTx and OpenZeppelin's
//! MerkleProof check: leaves `keccak256(keccak256(abi.encode(uint64 block, uint32 index, bytes32 txHash)))`,
//! inner nodes the keccak256 of the sorted pair.
//! [`header`]: a batch's header derived from its blocks (what the threshold key signs).
//! [`payload`]: the blocks of a batch, RLP-encoded and zstd-compressed, in calldata or EIP-4844 blobs.

pub mod header;
pub mod merkle;
pub mod payload;

pub use header::{derive, BatchBuilder, DataMode, DerivedBatch, HeaderError};
pub use merkle::{tx_leaf, TxTree};
