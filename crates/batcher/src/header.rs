//! A batch's header, derived from its blocks: what the threshold key signs and BatchInbox.appendBatch takes.
//! Every node derives it from its own copy of the chain, so the digest each one signs is its own finding.

use crate::merkle::{tx_leaf, TxTree};
use crate::payload::{self, BatchBlock, PayloadError};
use alloy_primitives::B256;
use metis_contracts::bindings::BatchInbox::BatchHeader;

/// A derived batch: its header and the calldata payload the header commits to.
#[derive(Clone, Debug)]
pub struct DerivedBatch {
    pub header: BatchHeader,
    pub payload: Vec<u8>,
    /// Raw (encoded, uncompressed) size of the blocks, for the compression ratio.
    pub raw_len: usize,
}

/// Where a batch's payload travels on L1. The mode is a chain parameter, so every node derives the same header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataMode {
    /// The payload is appendBatch's calldata; the header carries no blob hashes.
    #[default]
    Calldata,
    /// The payload travels in the transaction's EIP-4844 blobs, whose versioned hashes the header carries. A
    /// payload that needs more blobs than one transaction may carry goes in calldata (decided by its size, so
    /// still the same on every node).
    Blobs,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("a batch needs at least one block")]
    Empty,
    #[error("blocks are not consecutive at {0}")]
    Gap(u64),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// A batch being filled, block by block as they are decided, so that when the batch is cut only the compression
/// and the tree root are left to do.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    first: u64,
    next: u64,
    raw: Vec<u8>,
    leaves: Vec<B256>,
    state_root: B256,
}

impl BatchBuilder {
    /// An empty batch starting at block `first`.
    pub fn new(first: u64) -> Self {
        Self {
            first,
            next: first,
            raw: Vec::new(),
            leaves: Vec::new(),
            state_root: B256::ZERO,
        }
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    /// The block the builder takes next.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Adds the next block.
    pub fn push(&mut self, b: &BatchBlock) -> Result<(), HeaderError> {
        if b.header.number != self.next {
            return Err(HeaderError::Gap(b.header.number));
        }
        let n = b.header.number;
        self.leaves.extend(
            b.transactions
                .iter()
                .enumerate()
                .map(|(i, t)| tx_leaf(n, i as u32, *t.tx_hash())),
        );
        payload::encode_block(b, &mut self.raw);
        self.state_root = b.header.state_root;
        self.next += 1;
        Ok(())
    }

    /// Batch `index` over the blocks pushed, linked to the previous header's hash `parent` (zero for the first
    /// batch). The payload hash is keccak256 of the payload in both modes; blob mode adds the blobs' hashes.
    pub fn finish(self, index: u64, parent: B256, mode: DataMode) -> Result<DerivedBatch, HeaderError> {
        if self.next == self.first {
            return Err(HeaderError::Empty);
        }
        let payload = payload::compress(&self.raw)?;
        let blob_hashes = match mode {
            DataMode::Blobs if payload::blobs_of(&payload).len() <= payload::MAX_BLOBS_PER_TX => {
                payload::blob_hashes(&payload)?
            }
            _ => Vec::new(),
        };
        let header = BatchHeader {
            index,
            l2FirstBlock: self.first,
            l2LastBlock: self.next - 1,
            parentHash: parent,
            txRoot: TxTree::new(self.leaves).root(),
            stateRoot: self.state_root,
            payloadHash: payload::payload_hash(&payload),
            blobHashes: blob_hashes,
        };
        Ok(DerivedBatch {
            header,
            payload,
            raw_len: self.raw.len(),
        })
    }
}

/// Derives batch `index` over `blocks` (consecutive, in order) linked to the previous header's hash `parent`.
pub fn derive(index: u64, parent: B256, blocks: &[BatchBlock], mode: DataMode) -> Result<DerivedBatch, HeaderError> {
    let first = blocks.first().ok_or(HeaderError::Empty)?.header.number;
    let mut b = BatchBuilder::new(first);
    for block in blocks {
        b.push(block)?;
    }
    b.finish(index, parent, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::Header;

    fn block(n: u64) -> BatchBlock {
        BatchBlock {
            header: Header {
                number: n,
                state_root: B256::with_last_byte(n as u8),
                ..Default::default()
            },
            transactions: Vec::new(),
        }
    }

    #[test]
    fn derives_from_consecutive_blocks_only() {
        let blocks: Vec<_> = (5..=8).map(block).collect();
        let d = derive(2, B256::repeat_byte(1), &blocks, DataMode::Calldata).unwrap();
        assert_eq!((d.header.l2FirstBlock, d.header.l2LastBlock), (5, 8));
        assert_eq!(d.header.stateRoot, B256::with_last_byte(8));
        assert_eq!(d.header.txRoot, B256::ZERO, "no transactions: the zero root");
        assert_eq!(d.header.payloadHash, payload::payload_hash(&d.payload));
        assert_eq!(payload::decode(&d.payload).unwrap(), blocks);
        // The same blocks give the same header (every node derives it alike).
        let again = derive(2, B256::repeat_byte(1), &blocks, DataMode::Calldata).unwrap();
        assert_eq!(
            metis_contracts::digest::batch_hash(&again.header),
            metis_contracts::digest::batch_hash(&d.header)
        );
        assert!(matches!(
            derive(0, B256::ZERO, &[], DataMode::Calldata),
            Err(HeaderError::Empty)
        ));
        assert!(matches!(
            derive(0, B256::ZERO, &[block(1), block(3)], DataMode::Calldata),
            Err(HeaderError::Gap(3))
        ));
        assert!(d.header.blobHashes.is_empty());
        // Blob mode: the same header fields plus the blobs' versioned hashes.
        let b = derive(2, B256::repeat_byte(1), &blocks, DataMode::Blobs).unwrap();
        assert_eq!(b.header.blobHashes, payload::blob_hashes(&b.payload).unwrap());
        assert_eq!(b.header.blobHashes.len(), 1);
        assert_eq!(b.header.payloadHash, d.header.payloadHash);
    }
}
