//! Batch headers from this node's own chain. The ledger cuts a batch with the block that ends it (and the app
//! stores the cut with that block); here each cut becomes a header, derived from its blocks (encoded one by one
//! as they are decided, so little is left at the cut), linked to the previous header, and stored with its
//! payload, in index order. Restart and sync take the same path: the
//! cursor `batch/next` says which cut comes next.

use alloy_primitives::B256;
use alloy_sol_types::SolValue;
use metis_batcher::payload::BatchBlock;
use metis_batcher::{BatchBuilder, DataMode, DerivedBatch};
use metis_contracts::bindings::BatchInbox::BatchHeader;
use metis_storage::{encode, schema, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored batch record {0} is corrupt")]
    Corrupt(String),
    #[error("block {0} of a cut batch is not in the store")]
    MissingBlock(u64),
    #[error(transparent)]
    Header(#[from] metis_batcher::HeaderError),
}

/// A stored header.
pub fn header(store: &Store, index: u64) -> Result<Option<BatchHeader>, BatchError> {
    let Some(b) = store.meta(&schema::batch_header(index))? else {
        return Ok(None);
    };
    BatchHeader::abi_decode(&b)
        .map(Some)
        .map_err(|_| BatchError::Corrupt(schema::batch_header(index)))
}

/// Index of the first cut without a header.
pub fn next_index(store: &Store) -> Result<u64, BatchError> {
    Ok(store.get::<u64>(schema::BATCH_NEXT)?.unwrap_or(0))
}

/// The next cut without a header, if any.
fn next_cut(store: &Store) -> Result<Option<(u64, u64, u64)>, BatchError> {
    let next = next_index(store)?;
    match store.get::<(u64, u64)>(&schema::batch_cut(next))? {
        None => Ok(None),
        Some((first, last)) if first <= last => Ok(Some((next, first, last))),
        Some(_) => Err(BatchError::Corrupt(schema::batch_cut(next))),
    }
}

/// Stored block `n` as a batch carries it.
pub fn block(store: &Store, n: u64) -> Result<BatchBlock, BatchError> {
    let header = store.header(n)?.ok_or(BatchError::MissingBlock(n))?;
    let transactions = store
        .transactions(n)?
        .ok_or(BatchError::MissingBlock(n))?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    Ok(BatchBlock { header, transactions })
}

/// Derives and stores the header of the next cut batch, if there is one. `built` is the batch filled block by
/// block as they were decided: taken if it holds exactly the cut's blocks, else the blocks are read again.
pub fn derive_next(
    store: &Store,
    built: &mut Option<BatchBuilder>,
    mode: DataMode,
) -> Result<Option<DerivedBatch>, BatchError> {
    let Some((index, first, last)) = next_cut(store)? else {
        return Ok(None);
    };
    let parent = match index {
        0 => B256::ZERO,
        i => metis_contracts::digest::batch_hash(
            &header(store, i - 1)?.ok_or_else(|| BatchError::Corrupt(schema::batch_header(i - 1)))?,
        ),
    };
    let matches = built
        .as_ref()
        .is_some_and(|b| b.first() == first && b.next() == last + 1);
    let builder = match if matches { built.take() } else { None } {
        Some(b) => b,
        None => {
            let mut b = BatchBuilder::new(first);
            for n in first..=last {
                b.push(&block(store, n)?)?;
            }
            b
        }
    };
    let d = builder.finish(index, parent, mode)?;
    let encoded = d.header.abi_encode();
    store.put_meta(&[
        (&schema::batch_header(index), &encoded),
        (&schema::batch_payload(index), &d.payload),
        (schema::BATCH_NEXT, &encode(&(index + 1))?),
    ])?;
    Ok(Some(d))
}

/// The batch holding block `n` among the derived ones (binary search over the stored headers' ranges).
pub fn batch_for_block(store: &Store, n: u64) -> Result<Option<BatchHeader>, BatchError> {
    let (mut lo, mut hi) = (0u64, next_index(store)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let h = header(store, mid)?.ok_or_else(|| BatchError::Corrupt(schema::batch_header(mid)))?;
        if n < h.l2FirstBlock {
            hi = mid;
        } else if n > h.l2LastBlock {
            lo = mid + 1;
        } else {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

/// Proof that the transaction at `index` in block `block` is under its batch's txRoot (BatchInbox.verifyTx).
pub struct TxProof {
    pub header: BatchHeader,
    pub leaf: B256,
    pub proof: Vec<B256>,
}

pub fn tx_proof(store: &Store, block: u64, index: u32) -> Result<Option<TxProof>, BatchError> {
    let Some(header) = batch_for_block(store, block)? else {
        return Ok(None);
    };
    let (mut leaves, mut position) = (Vec::new(), None);
    for n in header.l2FirstBlock..=header.l2LastBlock {
        let txs = store.transactions(n)?.ok_or(BatchError::MissingBlock(n))?;
        for (i, (_, t)) in txs.iter().enumerate() {
            if n == block && i as u32 == index {
                position = Some(leaves.len());
            }
            leaves.push(metis_batcher::tx_leaf(n, i as u32, *t.tx_hash()));
        }
    }
    let Some(position) = position else { return Ok(None) };
    let leaf = leaves[position];
    let tree = metis_batcher::TxTree::new(leaves);
    if tree.root() != header.txRoot {
        return Err(BatchError::Corrupt(schema::batch_header(header.index)));
    }
    let proof = tree.proof(position).unwrap_or_default();
    Ok(Some(TxProof { header, leaf, proof }))
}
