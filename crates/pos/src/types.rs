use alloy_primitives::{Address, B256, U256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

pub type SequencerId = u64;

/// Ledger parameters, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Params {
    /// Blocks per epoch.
    pub epoch_length: u64,
    /// Missed round-0 proposals in one epoch after which the producer is replaced (K).
    pub missed_limit: u32,
    /// Epochs a replaced producer is left out of elections.
    pub jail_epochs: u64,
    /// Stake above this counts no more for voting power and election (Metis's lock cap).
    pub stake_cap: U256,
    /// Stake per unit of voting power (consensus wants small integers).
    pub power_unit: U256,
    /// Blocks per phase of a threshold-key round (deals, acks, logs); 0 = the chain runs no key rounds.
    #[serde(default)]
    pub key_phase_blocks: u64,
    /// A batch is cut every this many blocks (0 = the chain cuts no batches).
    #[serde(default)]
    pub batch_blocks: u64,
    /// ... or once this many seconds of block time passed since its first block, if it carries a transaction.
    #[serde(default)]
    pub batch_interval_secs: u64,
    /// A reward report every this many ended epochs (0 = none).
    #[serde(default)]
    pub reward_epochs: u64,
    /// Batch payloads travel in EIP-4844 blobs (the header commits to their hashes) instead of calldata. Part of
    /// the ledger because the header every node signs depends on it.
    #[serde(default)]
    pub batch_blobs: bool,
    /// Share of its stake (basis points) a sequencer proven to equivocate is slashed on L1.
    #[serde(default = "default_slash_double_sign_bps")]
    pub slash_double_sign_bps: u32,
    /// Blocks between an offence and the block that carries its evidence at most.
    #[serde(default = "default_evidence_max_age")]
    pub evidence_max_age: u64,
    /// Commits over which a validator's signatures are counted for downtime (0 = no downtime jailing; a genesis
    /// without the field has none, `metis-seq testnet` writes 100).
    #[serde(default)]
    pub downtime_window: u64,
    /// Share of the window's commits (basis points) a validator must sign to stay out of jail (Cosmos' 50%).
    #[serde(default = "default_min_signed_bps")]
    pub min_signed_bps: u32,
}

fn default_slash_double_sign_bps() -> u32 {
    500
}

fn default_evidence_max_age() -> u64 {
    1000
}

fn default_min_signed_bps() -> u32 {
    5_000
}

/// The largest downtime window (slots kept per validator).
pub const MAX_DOWNTIME_WINDOW: u64 = 100_000;

impl Params {
    /// Misses of the downtime window a validator may have without being jailed.
    pub fn max_missed(&self) -> u64 {
        let window = u128::from(self.downtime_window);
        let min_signed = window.saturating_mul(u128::from(self.min_signed_bps)) / 10_000;
        u64::try_from(window.saturating_sub(min_signed)).unwrap_or(u64::MAX)
    }

    /// The downtime parameters make sense: a bounded window, a share at most 100%, and room for two misses (one
    /// proposer alone must never be able to cross the limit, see [`crate::per_proposer_cap`]).
    pub fn check_downtime(&self) -> Result<(), &'static str> {
        if self.downtime_window == 0 {
            return Ok(());
        }
        if self.downtime_window > MAX_DOWNTIME_WINDOW {
            return Err("downtime_window is above 100000");
        }
        if self.min_signed_bps > 10_000 {
            return Err("min_signed_bps is above 10000");
        }
        if self.max_missed() < 2 {
            return Err("downtime_window and min_signed_bps leave fewer than two misses");
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        let ether = U256::from(10u64).pow(U256::from(18));
        Self {
            epoch_length: 100,
            missed_limit: 3,
            jail_epochs: 2,
            stake_cap: U256::from(100_000u64) * ether,
            power_unit: ether,
            key_phase_blocks: 0,
            batch_blocks: 0,
            batch_interval_secs: 0,
            reward_epochs: 0,
            batch_blobs: false,
            slash_double_sign_bps: default_slash_double_sign_bps(),
            evidence_max_age: default_evidence_max_age(),
            downtime_window: 0,
            min_signed_bps: default_min_signed_bps(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum SequencerStatus {
    /// Locked on L1; joins the validator set at the next epoch boundary.
    Pending,
    /// In the validator set.
    Active,
    /// Left the set (unlocking or unlocked on L1).
    Inactive,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Sequencer {
    pub id: SequencerId,
    pub signer: Address,
    /// Tendermint (ed25519) public key.
    pub consensus_key: B256,
    /// Key shares are encrypted to this key in the DKG.
    pub dkg_key: B256,
    pub stake: U256,
    pub status: SequencerStatus,
    /// Not electable before this epoch (after being replaced for missed proposals).
    pub jailed_until_epoch: u64,
    /// Jailed on L1 (slashed, not yet unjailed by its owner): out of the validator set.
    #[serde(default)]
    pub l1_jailed: bool,
}

/// Why an epoch's producer was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum ElectionReason {
    Genesis,
    /// The previous epoch ran its full length.
    Scheduled,
    /// The previous producer missed `misses` round-0 proposals.
    ReElection {
        failed: SequencerId,
        misses: u32,
    },
    /// The producer was jailed (proven equivocation, or downtime) while its epoch ran.
    Jailed {
        producer: SequencerId,
    },
}

/// One epoch: its blocks and its producer. Kept for every epoch (rotation records).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Epoch {
    pub id: u64,
    pub first_block: u64,
    /// Last block: planned while running, actual once ended.
    pub last_block: u64,
    pub ended: bool,
    pub producer: SequencerId,
    pub reason: ElectionReason,
    pub seed: B256,
    /// Round-0 proposals the producer missed in this epoch.
    pub missed: u32,
}

/// What the ledger learns from one decided block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub height: u64,
    /// Round in which the block was decided (0 = proposed by the epoch's producer).
    pub round: u32,
    /// Who proposed the decided block.
    pub proposer: SequencerId,
    /// Unpredictable, unbiasable-by-one value derived by consensus from decided data; seeds the next election
    /// when this block ends an epoch.
    pub seed: B256,
    /// Block timestamp (seconds) and number of transactions: where batches are cut.
    pub timestamp: u64,
    pub txs: u64,
    /// The validators whose precommit the parent's commit, carried by this block, holds (downtime counting).
    pub signers: Vec<SequencerId>,
}

/// A change of the validator set at an epoch boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SetChange {
    /// The epoch the new set starts with.
    pub epoch: u64,
    pub joined: Vec<SequencerId>,
    pub left: Vec<SequencerId>,
    /// Sequencers whose voting power changed (and stayed).
    pub reweighted: Vec<SequencerId>,
}
