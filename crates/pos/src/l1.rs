//! Staking events from L1, as the ledger takes them: only inside decided blocks (PoS transactions), each
//! identified by its L1 position and applied once, in L1 order. Set changes (joins, exits, stake changes) wait
//! for the next epoch boundary, so the validator set is constant within an epoch.

use crate::types::SequencerId;
use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

/// Where an event sits on L1: block, transaction and log index (its order), and the block hash (to tell a
/// reorged copy from the canonical one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct L1Position {
    pub block_number: u64,
    pub block_hash: B256,
    pub tx_index: u64,
    pub log_index: u64,
}

impl L1Position {
    /// The ordering key: L1 order is (block, log index); the tx index is implied.
    pub fn order(&self) -> (u64, u64) {
        (self.block_number, self.log_index)
    }
}

/// The LockingPool events the ledger acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum L1Event {
    Locked {
        id: SequencerId,
        signer: Address,
        consensus_key: B256,
        dkg_key: B256,
        amount: U256,
    },
    /// Any stake change (relock, withdraw, slash) carries the new amount.
    LockUpdate {
        id: SequencerId,
        new_amount: U256,
    },
    SignerChange {
        id: SequencerId,
        new_signer: Address,
    },
    /// The sequencer starts its exit: it leaves the set at the next boundary.
    UnlockInit {
        id: SequencerId,
    },
    Unlocked {
        id: SequencerId,
    },
}

/// A PoS transaction carrying one L1 event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosTx {
    pub position: L1Position,
    pub event: L1Event,
}
