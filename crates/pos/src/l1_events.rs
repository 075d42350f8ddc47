//! Staking events from L1, as the ledger takes them: only inside decided blocks (PoS transactions), each
//! identified by its L1 position and applied once, in L1 order. Set changes (joins, exits, stake changes) wait
//! for the next epoch boundary, so the validator set is constant within an epoch.

use crate::types::SequencerId;
use alloy_primitives::{Address, B256, U256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Where an event sits on L1: block, transaction and log index (its order), the block hash (to tell a reorged
/// copy from the canonical one) and the transaction's hash (what an operator looks the event up by).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct L1Position {
    pub block_number: u64,
    pub block_hash: B256,
    pub tx_index: u64,
    pub log_index: u64,
    pub tx_hash: B256,
}

impl L1Position {
    /// The ordering key: L1 order is (block, log index); the tx index is implied.
    pub fn order(&self) -> (u64, u64) {
        (self.block_number, self.log_index)
    }
}

/// The LockingPool events the ledger acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
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
    /// Stake added (the new amount comes in the LockUpdate emitted with it; this one is a record).
    Relocked {
        id: SequencerId,
        amount: U256,
    },
    /// Stake taken out (likewise recorded; the LockUpdate carries the new amount).
    Withdraw {
        id: SequencerId,
        amount: U256,
    },
    /// A LockingPool parameter the owner changed (reward per block, exit delay, signer update throttle):
    /// recorded for the reward and exit accounting that reads them.
    ParameterChanged {
        name: String,
        value: U256,
    },
    /// Slashing moved `amount` of stake away; the new stake comes in the LockUpdate and the jailing in the
    /// Jailed event the contract emits with it, so this one is a record.
    Slashed {
        id: SequencerId,
        amount: U256,
        evidence: B256,
    },
    /// Jailed (by slashing) or unjailed (by the owner): a jailed sequencer leaves the set at the next boundary.
    Jailed {
        id: SequencerId,
        jailed: bool,
    },
    /// The owner whitelisted (or removed) an address that may lock (enforced on L1; recorded here).
    WhitelistChanged {
        user: Address,
        allowed: bool,
    },
    /// LockingInfo's lock bounds. The maximum is the stake cap for voting power (from the next boundary); the
    /// minimum is enforced on L1 and recorded here.
    SetMinLock {
        amount: U256,
    },
    SetMaxLock {
        amount: U256,
    },
    /// PosParams (owned by the governor's timelock) changed PoS parameter number `param` to `value`; the ledger
    /// applies it at the next epoch boundary ([`crate::GovParam`]).
    PosParamChanged {
        param: u8,
        value: U256,
        nonce: u64,
    },
}

impl L1Event {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Locked { .. } => "Locked",
            Self::LockUpdate { .. } => "LockUpdate",
            Self::SignerChange { .. } => "SignerChange",
            Self::UnlockInit { .. } => "UnlockInit",
            Self::Unlocked { .. } => "Unlocked",
            Self::Relocked { .. } => "Relocked",
            Self::Withdraw { .. } => "Withdraw",
            Self::ParameterChanged { .. } => "ParameterChanged",
            Self::Slashed { .. } => "Slashed",
            Self::Jailed { .. } => "Jailed",
            Self::WhitelistChanged { .. } => "WhitelistChanged",
            Self::SetMinLock { .. } => "SetMinLock",
            Self::SetMaxLock { .. } => "SetMaxLock",
            Self::PosParamChanged { .. } => "PosParamChanged",
        }
    }
}

/// A PoS transaction carrying one L1 event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct PosTx {
    pub position: L1Position,
    pub event: L1Event,
}

impl PosTx {
    /// Canonical bytes (borsh: what block headers commit to and what travels in blocks). Fails only for a
    /// field too long to encode, which no L1 log can produce.
    pub fn to_bytes(&self) -> Result<Vec<u8>, crate::LedgerError> {
        borsh::to_vec(self).map_err(|_| crate::LedgerError::Encode("PoS transaction"))
    }

    /// Reads canonical bytes; trailing bytes are refused.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let tx: Self = borsh::from_slice(b).ok()?;
        // One encoding per transaction: anything else would let two byte strings name the same event.
        (tx.to_bytes().ok()?.as_slice() == b).then_some(tx)
    }
}

/// An L1 event the ledger has taken, at the height of the block that carried it. `ignored` says why an event
/// changed nothing (e.g. a stake update for a sequencer this chain never had); it still counts as applied, so a
/// bad event can never block the ones after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct AppliedL1 {
    pub tx: PosTx,
    pub height: u64,
    pub ignored: Option<String>,
}

/// A node's own view of L1, as consensus asks it: the L1 listener (`metis-l1`) fills it, and a proposer takes
/// the next events from it while every validator checks a proposed block's events against its own. This is
/// the only way L1 reaches the ledger: through events a decided block carried.
pub trait L1Source: Send + Sync {
    /// At most `max` events after `after` (an L1 order key), from L1 blocks at least `margin` below what the
    /// view has read (time for the other validators' listeners to read them too).
    fn includable(&self, after: Option<(u64, u64)>, margin: u64, max: usize) -> Vec<PosTx>;
    /// Whether `tx` is exactly an event this view holds, at the same position in the same block.
    fn confirms(&self, tx: &PosTx) -> bool;
    /// The first `n` events after `after`, in L1 order.
    fn next_events(&self, after: Option<(u64, u64)>, n: usize) -> Vec<PosTx>;
    /// The ledger has applied every event up to `through`: the view may forget them.
    fn applied(&self, _through: Option<(u64, u64)>) {}
}

/// The view of a node without an L1 endpoint: it proposes no PoS transactions and votes for no block that
/// carries any.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoL1;

impl L1Source for NoL1 {
    fn includable(&self, _: Option<(u64, u64)>, _: u64, _: usize) -> Vec<PosTx> {
        Vec::new()
    }
    fn confirms(&self, _: &PosTx) -> bool {
        false
    }
    fn next_events(&self, _: Option<(u64, u64)>, _: usize) -> Vec<PosTx> {
        Vec::new()
    }
}
