//! The 32-byte digests the pool's threshold key signs, computed exactly as the contracts compute them
//! (`BatchInbox.batchHash/signingDigest`, `LockingPool.rewardsDigest/slashDigest`). The BLS layer frames each
//! digest with the namespace (see `metis_mpc::threshold`).

use crate::bindings::BatchInbox::BatchHeader;
use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::sol_types::SolValue;

fn tag(s: &str) -> B256 {
    keccak256(s.as_bytes())
}

/// Domain tag of BatchInbox.appendBatch signatures.
pub fn batch_tag() -> B256 {
    tag("metis-seq/BatchInbox.appendBatch/v1")
}

/// Domain tag of LockingPool.batchSubmitRewards signatures.
pub fn rewards_tag() -> B256 {
    tag("metis-seq/LockingPool.batchSubmitRewards/v1")
}

/// Domain tag of LockingPool.slash signatures.
pub fn slash_tag() -> B256 {
    tag("metis-seq/LockingPool.slash/v1")
}

fn packed_b256(items: &[B256]) -> B256 {
    let mut buf = Vec::with_capacity(items.len() * 32);
    for i in items {
        buf.extend_from_slice(i.as_slice());
    }
    keccak256(buf)
}

fn packed_u256(items: &[U256]) -> B256 {
    let mut buf = Vec::with_capacity(items.len() * 32);
    for i in items {
        buf.extend_from_slice(&i.to_be_bytes::<32>());
    }
    keccak256(buf)
}

/// Chain-independent hash of a batch header: what the next header's parentHash links to.
pub fn batch_hash(h: &BatchHeader) -> B256 {
    keccak256(
        (
            h.index,
            h.l2FirstBlock,
            h.l2LastBlock,
            h.parentHash,
            h.txRoot,
            h.stateRoot,
            h.payloadHash,
            packed_b256(&h.blobHashes),
        )
            .abi_encode(),
    )
}

/// What the group key signs for a header appended to the BatchInbox at `inbox` on chain `chain_id`.
pub fn batch_signing_digest(chain_id: u64, inbox: Address, h: &BatchHeader) -> B256 {
    keccak256((batch_tag(), U256::from(chain_id), inbox, batch_hash(h)).abi_encode())
}

/// What the group key signs for a reward report to the LockingPool at `pool`.
pub fn rewards_digest(
    chain_id: u64,
    pool: Address,
    batch_id: U256,
    start_epoch: U256,
    end_epoch: U256,
    sequencer_ids: &[U256],
    blocks: &[U256],
) -> B256 {
    keccak256(
        (
            rewards_tag(),
            U256::from(chain_id),
            pool,
            batch_id,
            start_epoch,
            end_epoch,
            packed_u256(sequencer_ids),
            packed_u256(blocks),
        )
            .abi_encode(),
    )
}

/// What the group key signs to slash `amount` of sequencer `seq_id` for `evidence_hash`.
pub fn slash_digest(chain_id: u64, pool: Address, seq_id: U256, amount: U256, evidence_hash: B256) -> B256 {
    keccak256((slash_tag(), U256::from(chain_id), pool, seq_id, amount, evidence_hash).abi_encode())
}
