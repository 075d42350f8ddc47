//! The PoS parameters governance may change (PosParams on L1, owned by the governor's timelock). A change
//! arrives as an L1 event in a decided block, waits for the next epoch boundary, and applies there on every
//! node, recorded with the value it replaced. A value outside the ledger's own bounds (the contract's, checked
//! again here) or one that would leave an invalid parameter set is recorded as ignored, with the reason.

use crate::l1_events::L1Position;
use crate::types::Params;
use alloy_primitives::{keccak256, B256, U256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Changes waiting for one boundary at most; more in one epoch are ignored (governance runs for many L1 blocks
/// per proposal, so a real pool never comes near).
pub const MAX_PENDING: usize = 64;
/// Changes the ledger keeps in memory (the accumulator covers all of them).
pub const MAX_HISTORY: usize = 1024;

/// A governed parameter; the number is PosParams' and never changes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum GovParam {
    EpochLength = 0,
    MissedLimit = 1,
    JailEpochs = 2,
    BatchBlocks = 3,
    BatchIntervalSecs = 4,
    RewardEpochs = 5,
    SlashDoubleSignBps = 6,
    EvidenceMaxAge = 7,
    DowntimeWindow = 8,
    MinSignedBps = 9,
}

impl GovParam {
    pub const ALL: [GovParam; 10] = [
        GovParam::EpochLength,
        GovParam::MissedLimit,
        GovParam::JailEpochs,
        GovParam::BatchBlocks,
        GovParam::BatchIntervalSecs,
        GovParam::RewardEpochs,
        GovParam::SlashDoubleSignBps,
        GovParam::EvidenceMaxAge,
        GovParam::DowntimeWindow,
        GovParam::MinSignedBps,
    ];

    pub fn from_index(i: u8) -> Option<Self> {
        Self::ALL.get(usize::from(i)).copied()
    }

    pub fn index(self) -> u8 {
        self as u8
    }

    /// The name the genesis file, the RPC and `metis-seq gov propose --param` use.
    pub fn name(self) -> &'static str {
        match self {
            GovParam::EpochLength => "epoch_length",
            GovParam::MissedLimit => "missed_limit",
            GovParam::JailEpochs => "jail_epochs",
            GovParam::BatchBlocks => "batch_blocks",
            GovParam::BatchIntervalSecs => "batch_interval_secs",
            GovParam::RewardEpochs => "reward_epochs",
            GovParam::SlashDoubleSignBps => "slash_double_sign_bps",
            GovParam::EvidenceMaxAge => "evidence_max_age",
            GovParam::DowntimeWindow => "downtime_window",
            GovParam::MinSignedBps => "min_signed_bps",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The values it may take, inclusive (PosParams has the same). Batch blocks and reward epochs take 0 only to
    /// match a genesis without batches or reward reports: a change neither starts nor stops either.
    pub fn bounds(self) -> (u64, u64) {
        match self {
            GovParam::EpochLength => (2, 100_000),
            GovParam::MissedLimit => (1, 1_000),
            GovParam::JailEpochs => (0, 1_000),
            GovParam::BatchBlocks => (0, 10_000),
            GovParam::BatchIntervalSecs => (0, 86_400),
            GovParam::RewardEpochs => (0, 10_000),
            GovParam::SlashDoubleSignBps => (0, 10_000),
            GovParam::EvidenceMaxAge => (10, 1_000_000),
            GovParam::DowntimeWindow => (0, 100_000),
            GovParam::MinSignedBps => (0, 10_000),
        }
    }

    pub fn get(self, p: &Params) -> u64 {
        match self {
            GovParam::EpochLength => p.epoch_length,
            GovParam::MissedLimit => u64::from(p.missed_limit),
            GovParam::JailEpochs => p.jail_epochs,
            GovParam::BatchBlocks => p.batch_blocks,
            GovParam::BatchIntervalSecs => p.batch_interval_secs,
            GovParam::RewardEpochs => p.reward_epochs,
            GovParam::SlashDoubleSignBps => u64::from(p.slash_double_sign_bps),
            GovParam::EvidenceMaxAge => p.evidence_max_age,
            GovParam::DowntimeWindow => p.downtime_window,
            GovParam::MinSignedBps => u64::from(p.min_signed_bps),
        }
    }

    /// `p` with this parameter at `value`, if the value is within bounds and the whole set stays valid.
    pub fn with(self, p: &Params, value: U256) -> Result<Params, &'static str> {
        let (lo, hi) = self.bounds();
        let v = u64::try_from(value).map_err(|_| "the value is outside the parameter's bounds")?;
        if v < lo || v > hi {
            return Err("the value is outside the parameter's bounds");
        }
        let small = |v: u64| u32::try_from(v).map_err(|_| "the value is outside the parameter's bounds");
        let mut n = p.clone();
        match self {
            GovParam::EpochLength => n.epoch_length = v,
            GovParam::MissedLimit => n.missed_limit = small(v)?,
            GovParam::JailEpochs => n.jail_epochs = v,
            GovParam::BatchBlocks => {
                // A chain that cuts no batches has no batcher to start, and one that does keeps cutting them.
                if p.batch_blocks == 0 || v == 0 {
                    return Err("a change neither starts nor stops batches");
                }
                n.batch_blocks = v;
            }
            GovParam::BatchIntervalSecs => n.batch_interval_secs = v,
            GovParam::RewardEpochs => {
                if p.reward_epochs == 0 || v == 0 {
                    return Err("a change neither starts nor stops reward reports");
                }
                n.reward_epochs = v;
            }
            GovParam::SlashDoubleSignBps => n.slash_double_sign_bps = small(v)?,
            GovParam::EvidenceMaxAge => n.evidence_max_age = v,
            GovParam::DowntimeWindow => n.downtime_window = v,
            GovParam::MinSignedBps => n.min_signed_bps = small(v)?,
        }
        n.check_downtime()?;
        Ok(n)
    }
}

/// A change taken from L1, waiting for the next boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct PendingChange {
    pub param: GovParam,
    pub value: U256,
    pub position: L1Position,
    /// The L2 block that carried it.
    pub height: u64,
}

/// A change as it was applied (or refused) at a boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ParamChange {
    pub param: GovParam,
    pub old: u64,
    /// What L1 set (as L1 has it: a refused value may not fit 64 bits).
    pub new: U256,
    pub position: L1Position,
    /// The L2 block that carried the event.
    pub carried_at: u64,
    /// The epoch it applies from, and that epoch's first block.
    pub epoch: u64,
    pub from_block: u64,
    /// Why it changed nothing, if it did not.
    pub ignored: Option<String>,
}

/// Governance's part of the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct GovState {
    pending: Vec<PendingChange>,
    history: Vec<ParamChange>,
    /// Changes dropped from `history` (the oldest), so numbering stays global.
    dropped: u64,
    acc: B256,
}

impl GovState {
    /// Takes a change of parameter `index` from L1: checked now (unknown parameter, out of bounds) so a refusal
    /// is recorded with the event, applied at the next boundary.
    pub fn take(
        &mut self,
        params: &Params,
        index: u8,
        value: U256,
        position: &L1Position,
        height: u64,
    ) -> Result<(), &'static str> {
        let param = GovParam::from_index(index).ok_or("no such governed parameter")?;
        param.with(params, value)?;
        if self.pending.len() >= MAX_PENDING {
            return Err("too many parameter changes waiting for this boundary");
        }
        self.pending.push(PendingChange {
            param,
            value,
            position: *position,
            height,
        });
        Ok(())
    }

    /// Changes waiting for the next boundary, in L1 order.
    pub fn pending(&self) -> &[PendingChange] {
        &self.pending
    }

    /// Applied and refused changes the ledger still holds, oldest first.
    pub fn history(&self) -> &[ParamChange] {
        &self.history
    }

    /// Changes recorded before `history()` starts.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// At the boundary into `epoch` (first block `from_block`): every waiting change in L1 order, each against
    /// the parameters as the ones before it left them. A later change of a parameter wins over an earlier one.
    pub fn on_boundary(&mut self, params: &mut Params, epoch: u64, from_block: u64) -> Result<(), crate::LedgerError> {
        for c in std::mem::take(&mut self.pending) {
            let old = c.param.get(params);
            let ignored = match c.param.with(params, c.value) {
                Ok(n) => {
                    *params = n;
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            let record = ParamChange {
                param: c.param,
                old,
                new: c.value,
                position: c.position,
                carried_at: c.height,
                epoch,
                from_block,
                ignored,
            };
            let mut buf = self.acc.to_vec();
            buf.extend_from_slice(&borsh::to_vec(&record).map_err(|_| crate::LedgerError::Encode("parameter change"))?);
            self.acc = keccak256(buf);
            self.history.push(record);
        }
        let excess = self.history.len().saturating_sub(MAX_HISTORY);
        if excess > 0 {
            self.history.drain(..excess);
            self.dropped = self.dropped.saturating_add(excess as u64);
        }
        Ok(())
    }

    /// What the ledger's state hash covers of it.
    pub fn hash_input(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.pending.len() as u64).to_be_bytes());
        for c in &self.pending {
            out.push(c.param.index());
            out.extend_from_slice(&c.value.to_be_bytes::<32>());
            out.extend_from_slice(&c.position.block_number.to_be_bytes());
            out.extend_from_slice(&c.position.log_index.to_be_bytes());
        }
        out.extend_from_slice(self.acc.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u64, log: u64) -> L1Position {
        L1Position {
            block_number: block,
            block_hash: B256::repeat_byte(1),
            tx_index: 0,
            log_index: log,
            tx_hash: B256::repeat_byte(2),
        }
    }

    fn params() -> Params {
        Params {
            epoch_length: 10,
            batch_blocks: 10,
            reward_epochs: 2,
            downtime_window: 100,
            ..Params::default()
        }
    }

    #[test]
    fn a_change_waits_for_the_boundary_and_is_recorded_with_what_it_replaced() {
        let mut p = params();
        let mut g = GovState::default();
        g.take(&p, 0, U256::from(20), &at(5, 1), 7).unwrap();
        assert_eq!(p.epoch_length, 10, "nothing before the boundary");
        assert_eq!(g.pending().len(), 1);
        g.on_boundary(&mut p, 3, 31).unwrap();
        assert_eq!(p.epoch_length, 20);
        let c = &g.history()[0];
        assert_eq!(
            (c.param, c.old, c.new, c.epoch, c.from_block),
            (GovParam::EpochLength, 10, U256::from(20), 3, 31)
        );
        assert!(c.ignored.is_none());
        assert!(g.pending().is_empty());
    }

    #[test]
    fn unknown_parameters_and_values_out_of_bounds_are_refused_when_taken() {
        let p = params();
        let mut g = GovState::default();
        assert_eq!(
            g.take(&p, 10, U256::from(1), &at(1, 0), 1),
            Err("no such governed parameter")
        );
        assert!(
            g.take(&p, 0, U256::from(1), &at(1, 1), 1).is_err(),
            "epoch_length below 2"
        );
        assert!(
            g.take(&p, 3, U256::ZERO, &at(1, 4), 1).is_err(),
            "batches cannot be stopped"
        );
        assert!(
            g.take(&p, 0, U256::MAX, &at(1, 2), 1).is_err(),
            "a value beyond 64 bits"
        );
        assert!(g.take(&p, 9, U256::from(10_001), &at(1, 3), 1).is_err(), "over 100%");
        assert!(g.pending().is_empty(), "a refusal changes nothing");
    }

    #[test]
    fn changes_apply_in_l1_order_each_against_the_ones_before_it() {
        let mut p = params();
        let mut g = GovState::default();
        // Window 100 at 50% allows 50 misses; 2 of 4 leaves 2 misses (valid), then 10% of 4 leaves none.
        g.take(&p, 8, U256::from(4), &at(1, 0), 1).unwrap();
        g.take(&p, 9, U256::from(9_000), &at(1, 1), 1).unwrap();
        g.take(&p, 0, U256::from(30), &at(2, 0), 2).unwrap();
        g.take(&p, 0, U256::from(40), &at(3, 0), 3).unwrap();
        g.on_boundary(&mut p, 1, 11).unwrap();
        assert_eq!(p.downtime_window, 4);
        assert_eq!(p.min_signed_bps, 5_000, "refused: it would leave fewer than two misses");
        assert!(g.history()[1].ignored.is_some());
        assert_eq!(p.epoch_length, 40, "the later change wins");
        assert_eq!(g.history().len(), 4);
    }

    #[test]
    fn the_state_hash_input_moves_with_pending_and_applied_changes() {
        let mut p = params();
        let mut g = GovState::default();
        let input = |g: &GovState| {
            let mut v = Vec::new();
            g.hash_input(&mut v);
            v
        };
        let empty = input(&g);
        g.take(&p, 1, U256::from(5), &at(1, 0), 1).unwrap();
        let waiting = input(&g);
        assert_ne!(empty, waiting);
        g.on_boundary(&mut p, 1, 11).unwrap();
        assert_ne!(input(&g), waiting);
        assert_ne!(input(&g), empty);
    }

    #[test]
    fn the_numbers_match_pos_params() {
        for (i, p) in GovParam::ALL.iter().enumerate() {
            assert_eq!(usize::from(p.index()), i);
            assert_eq!(GovParam::from_name(p.name()), Some(*p));
        }
        assert_eq!(GovParam::from_index(10), None);
    }
}
