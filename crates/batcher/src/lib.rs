//! Batches of L2 blocks for L1 (issue 7 builds the rest of the batcher on this).
//!
//! [`merkle`]: the batch's transaction Merkle tree, in the form BatchInbox.verifyTx and OpenZeppelin's
//! MerkleProof check: leaves `keccak256(keccak256(abi.encode(uint64 block, uint32 index, bytes32 txHash)))`,
//! inner nodes the keccak256 of the sorted pair.
//! [`payload`]: the blocks of a batch, RLP-encoded and zstd-compressed, in calldata or EIP-4844 blobs.

pub mod merkle;
pub mod payload;

pub use merkle::{tx_leaf, TxTree};
