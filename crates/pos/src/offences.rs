//! Accountability: what the ledger does with proven misbehaviour and with downtime.
//!
//! - **Equivocation** (a double vote or a double proposal, proven by two signed messages that consensus checks
//!   before voting for the block that carries them) jails the offender at once: it is out of the proposer
//!   schedule from the next height and out of the validator set from the next epoch. The ledger records the
//!   offence and asks L1 for a slash of `slash_double_sign_bps` of its stake (the pool's key signs the request,
//!   the poster lands it; the `Slashed` event closes it). One incident is punished once: evidence of a height at
//!   or below the last punished one, or against a sequencer still jailed for equivocation, is inadmissible.
//! - **Downtime**: a signed-blocks window like Cosmos x/slashing. Every block carries the commit of its parent;
//!   a validator missing from more than `downtime_window - min_signed` of the last `downtime_window` commits is
//!   jailed (no slash). A jail ends at an epoch boundary once `jail_epochs` have passed (for equivocation, and
//!   only when L1 does not hold the sequencer jailed: its owner unjails it there).

use crate::downtime::{per_proposer_cap, DowntimeWindow};
use crate::types::SequencerId;
use alloy_primitives::{keccak256, B256, U256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a sequencer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum OffenceKind {
    /// Two votes of one type for one height and round, with different values.
    DoubleVote,
    /// Two proposals (or proposal streams) for one height and round, with different values.
    DoubleProposal,
}

/// Misbehaviour as a block reports it: consensus has checked the two signed messages behind `evidence` (their
/// hash) against the offender's consensus key before voting for the block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Misbehaviour {
    pub kind: OffenceKind,
    pub sequencer: SequencerId,
    /// The height both messages were signed for.
    pub height: u64,
    /// Hash of the evidence (both signed messages); also what L1's slash records.
    pub evidence: B256,
}

/// An offence the ledger punished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Offence {
    pub misbehaviour: Misbehaviour,
    /// The block that carried the evidence.
    pub included: u64,
    /// Stake asked to be slashed on L1.
    pub slash: U256,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum JailReason {
    Equivocation {
        evidence: B256,
    },
    /// Missed `missed` of the window's commits.
    Downtime {
        missed: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Jail {
    pub reason: JailReason,
    /// The height it was jailed at (out of the schedule from the next one).
    pub since: u64,
    /// The first epoch whose start may release it.
    pub until_epoch: u64,
    /// Still in the validator set (until the next epoch boundary).
    pub in_set: bool,
}

/// A slash the pool asks of L1, open until L1's `Slashed` event for its evidence is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SlashRequest {
    /// The ordinal of the offence that asked for it (the signer's request index).
    pub id: u64,
    pub sequencer: SequencerId,
    pub amount: U256,
    pub evidence: B256,
    /// The block that made the request.
    pub height: u64,
}

/// One commit for the downtime count: the block `height` by `proposer` carried it.
pub(crate) struct CountedCommit<'a> {
    pub height: u64,
    pub proposer: SequencerId,
    pub set: &'a [SequencerId],
    pub signers: Option<&'a [SequencerId]>,
}

/// Why evidence is inadmissible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inadmissible {
    #[error("the offence is not before the including block")]
    NotPast,
    #[error("the offence is older than the evidence age limit")]
    TooOld,
    #[error("the offender is already jailed for equivocation")]
    AlreadyJailed,
    #[error("an offence at or below this height was punished already")]
    AlreadyPunished,
    #[error("the block carries this evidence twice")]
    Duplicate,
    #[error("unknown sequencer")]
    UnknownSequencer,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct OffenceState {
    jails: BTreeMap<SequencerId, Jail>,
    /// Per sequencer: the height of its last punished incident (evidence at or below it is spent).
    punished_through: BTreeMap<SequencerId, u64>,
    /// Every punished offence, oldest first, and a keccak chain over them for the state hash.
    offences: Vec<Offence>,
    acc: B256,
    /// Slashes not yet seen on L1, by evidence hash.
    slashes: BTreeMap<B256, SlashRequest>,
    downtime: DowntimeWindow,
}

impl OffenceState {
    pub fn jails(&self) -> &BTreeMap<SequencerId, Jail> {
        &self.jails
    }

    pub fn jail(&self, id: SequencerId) -> Option<&Jail> {
        self.jails.get(&id)
    }

    pub fn offences(&self) -> &[Offence] {
        &self.offences
    }

    /// Slashes asked of L1 and not yet seen there.
    pub fn slashes(&self) -> impl Iterator<Item = &SlashRequest> {
        self.slashes.values()
    }

    /// The slashes block `height` asked for.
    pub fn slashes_at(&self, height: u64) -> impl Iterator<Item = &SlashRequest> {
        self.slashes.values().filter(move |r| r.height == height)
    }

    /// Who the last commits left out, and which proposers' blocks said so.
    pub fn downtime(&self) -> &DowntimeWindow {
        &self.downtime
    }

    /// Out of the proposer schedule and of elections.
    pub fn jailed(&self, id: SequencerId) -> bool {
        self.jails.contains_key(&id)
    }

    /// Out of the validator set (jailed before the running epoch began).
    pub fn out_of_set(&self, id: SequencerId) -> bool {
        self.jails.get(&id).is_some_and(|j| !j.in_set)
    }

    /// Whether block `height` may carry `m` (`max_age` blocks at most between the offence and the block).
    pub fn admissible(&self, m: &Misbehaviour, height: u64, max_age: u64) -> Result<(), Inadmissible> {
        if m.height >= height {
            return Err(Inadmissible::NotPast);
        }
        if m.height.saturating_add(max_age) < height {
            return Err(Inadmissible::TooOld);
        }
        if matches!(
            self.jails.get(&m.sequencer),
            Some(Jail {
                reason: JailReason::Equivocation { .. },
                ..
            })
        ) {
            return Err(Inadmissible::AlreadyJailed);
        }
        if self.punished_through.get(&m.sequencer).is_some_and(|h| m.height <= *h) {
            return Err(Inadmissible::AlreadyPunished);
        }
        Ok(())
    }

    /// Punishes `m`, carried by block `height`: jail until `until_epoch`, the offence recorded, a slash of
    /// `slash` requested (none if zero).
    pub(crate) fn punish(&mut self, m: &Misbehaviour, height: u64, slash: U256, until_epoch: u64) {
        self.jails.insert(
            m.sequencer,
            Jail {
                reason: JailReason::Equivocation { evidence: m.evidence },
                since: height,
                until_epoch,
                in_set: true,
            },
        );
        self.punished_through.insert(m.sequencer, height);
        let offence = Offence {
            misbehaviour: m.clone(),
            included: height,
            slash,
        };
        let mut buf = self.acc.to_vec();
        encode_offence(&offence, &mut buf);
        self.acc = keccak256(buf);
        self.offences.push(offence);
        if !slash.is_zero() {
            self.slashes.insert(
                m.evidence,
                SlashRequest {
                    id: self.offences.len() as u64 - 1,
                    sequencer: m.sequencer,
                    amount: slash,
                    evidence: m.evidence,
                    height,
                },
            );
        }
    }

    /// Counts the commit block `height` (proposed by `proposer`) carried: `set` are the validators of its parent,
    /// `signers` those whose precommit it holds (`None`: not counted at this height). Returns the validators
    /// whose counted misses crossed `max_missed` (jailed now, until `until_epoch`).
    pub(crate) fn record_commit(
        &mut self,
        c: CountedCommit<'_>,
        window: u64,
        max_missed: u64,
        until_epoch: u64,
    ) -> Vec<(SequencerId, u32)> {
        if window == 0 {
            return Vec::new();
        }
        self.downtime.record(window, c.height, c.proposer, c.set, c.signers);
        let cap = per_proposer_cap(max_missed);
        let mut jailed = Vec::new();
        for id in c.set {
            if self.jails.contains_key(id) || self.downtime.counted(*id, cap) <= max_missed {
                continue;
            }
            let missed = self.downtime.missed(*id);
            self.jails.insert(
                *id,
                Jail {
                    reason: JailReason::Downtime { missed },
                    since: c.height,
                    until_epoch,
                    in_set: true,
                },
            );
            // A released validator starts with a clean window.
            self.downtime.clear(*id);
            jailed.push((*id, missed));
        }
        jailed
    }

    /// An epoch boundary at block `height`: jailed validators leave the set; jails whose time is over end
    /// (equivocation only if L1 does not hold the sequencer jailed). Equivocation a sequencer committed while
    /// jailed for equivocation belongs to that incident: its release spends every offence up to `height`, as
    /// Cosmos ignores evidence against a tombstoned validator.
    pub(crate) fn on_boundary(&mut self, epoch: u64, height: u64, l1_jailed: impl Fn(SequencerId) -> bool) {
        let mut released = Vec::new();
        self.jails.retain(|id, j| {
            let over = j.until_epoch <= epoch
                && match j.reason {
                    JailReason::Equivocation { .. } => !l1_jailed(*id),
                    JailReason::Downtime { .. } => true,
                };
            // Released only after at least one epoch out of the set.
            let release = over && !j.in_set;
            if release && matches!(j.reason, JailReason::Equivocation { .. }) {
                released.push(*id);
            }
            !release
        });
        for id in released {
            let through = self.punished_through.entry(id).or_default();
            *through = (*through).max(height);
        }
        for j in self.jails.values_mut() {
            j.in_set = false;
        }
    }

    /// Keeps every jailed validator in the set for one more epoch (when nobody else is left).
    pub(crate) fn keep_in_set(&mut self) {
        for j in self.jails.values_mut() {
            j.in_set = true;
        }
    }

    /// L1 carried out the slash for `evidence`.
    pub(crate) fn on_slashed(&mut self, evidence: &B256) -> bool {
        self.slashes.remove(evidence).is_some()
    }

    pub(crate) fn hash_input(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&(self.jails.len() as u64).to_be_bytes());
        for (id, j) in &self.jails {
            buf.extend_from_slice(&id.to_be_bytes());
            match &j.reason {
                JailReason::Equivocation { evidence } => {
                    buf.push(0);
                    buf.extend_from_slice(evidence.as_slice());
                }
                JailReason::Downtime { missed } => {
                    buf.push(1);
                    buf.extend_from_slice(&missed.to_be_bytes());
                }
            }
            buf.extend_from_slice(&j.since.to_be_bytes());
            buf.extend_from_slice(&j.until_epoch.to_be_bytes());
            buf.push(j.in_set as u8);
        }
        for (id, h) in &self.punished_through {
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&h.to_be_bytes());
        }
        buf.extend_from_slice(&(self.offences.len() as u64).to_be_bytes());
        buf.extend_from_slice(self.acc.as_slice());
        for r in self.slashes.values() {
            buf.extend_from_slice(&r.id.to_be_bytes());
            buf.extend_from_slice(r.evidence.as_slice());
            buf.extend_from_slice(&r.sequencer.to_be_bytes());
            buf.extend_from_slice(&r.amount.to_be_bytes::<32>());
            buf.extend_from_slice(&r.height.to_be_bytes());
        }
        self.downtime.hash_input(buf);
    }
}

fn encode_offence(o: &Offence, buf: &mut Vec<u8>) {
    let m = &o.misbehaviour;
    buf.push(match m.kind {
        OffenceKind::DoubleVote => 0,
        OffenceKind::DoubleProposal => 1,
    });
    buf.extend_from_slice(&m.sequencer.to_be_bytes());
    buf.extend_from_slice(&m.height.to_be_bytes());
    buf.extend_from_slice(m.evidence.as_slice());
    buf.extend_from_slice(&o.included.to_be_bytes());
    buf.extend_from_slice(&o.slash.to_be_bytes::<32>());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sequencer: SequencerId, height: u64, tag: u8) -> Misbehaviour {
        Misbehaviour {
            kind: OffenceKind::DoubleVote,
            sequencer,
            height,
            evidence: B256::repeat_byte(tag),
        }
    }

    #[test]
    fn one_incident_is_punished_once() {
        let mut s = OffenceState::default();
        assert_eq!(s.admissible(&m(1, 10, 1), 10, 100), Err(Inadmissible::NotPast));
        assert_eq!(s.admissible(&m(1, 10, 1), 111, 100), Err(Inadmissible::TooOld));
        assert_eq!(s.admissible(&m(1, 10, 1), 12, 100), Ok(()));
        s.punish(&m(1, 10, 1), 12, U256::from(5u64), 3);
        assert!(s.jailed(1) && !s.out_of_set(1));
        assert_eq!(s.slashes_at(12).count(), 1);
        // More evidence while it is jailed, or of a height already covered, is spent.
        assert_eq!(s.admissible(&m(1, 11, 2), 13, 100), Err(Inadmissible::AlreadyJailed));
        s.on_boundary(1, 20, |_| false);
        assert!(s.out_of_set(1));
        s.on_boundary(3, 40, |_| true);
        assert!(s.jailed(1), "L1 still holds it jailed");
        s.on_boundary(4, 50, |_| false);
        assert!(!s.jailed(1), "released once its time is over and L1 unjailed it");
        assert_eq!(s.admissible(&m(1, 11, 2), 55, 100), Err(Inadmissible::AlreadyPunished));
        // Equivocation while jailed (evidence that came late) is the same incident; after the release it is new.
        assert_eq!(s.admissible(&m(1, 13, 3), 55, 100), Err(Inadmissible::AlreadyPunished));
        assert_eq!(s.admissible(&m(1, 50, 3), 55, 100), Err(Inadmissible::AlreadyPunished));
        assert_eq!(s.admissible(&m(1, 51, 3), 55, 100), Ok(()));
        assert!(s.on_slashed(&B256::repeat_byte(1)));
        assert_eq!(s.slashes().count(), 0);
    }

    #[test]
    fn downtime_jails_past_the_limit_and_is_released_after_its_epochs() {
        let mut s = OffenceState::default();
        let set = [1, 2, 3, 4];
        let mut jailed_at = None;
        for h in 2..=9 {
            // 4 signs nothing; 3 signs the first two commits only (6 of 8 missed: at the limit, not past it).
            // The blocks come from two proposers in turn (one alone could never jail anyone).
            let signers: Vec<SequencerId> = if h <= 3 { vec![1, 2, 3] } else { vec![1, 2] };
            let c = CountedCommit {
                height: h,
                proposer: 1 + h % 2,
                set: &set,
                signers: Some(&signers),
            };
            let jailed = s.record_commit(c, 8, 6, 2);
            if !jailed.is_empty() {
                assert_eq!(jailed, vec![(4, 7)], "height {h}");
                jailed_at = Some(h);
            }
        }
        assert_eq!(jailed_at, Some(8), "the 7th miss of 8 crosses the limit of 6");
        assert!(s.jailed(4) && !s.out_of_set(4) && !s.jailed(3));
        assert_eq!(s.downtime().missed(3), 6);
        s.on_boundary(1, 10, |_| true);
        assert!(s.out_of_set(4), "out of the set from the next epoch");
        // Downtime does not wait for L1.
        s.on_boundary(2, 20, |_| true);
        assert!(!s.jailed(4));
    }

    #[test]
    fn a_producer_leaving_a_validator_out_of_every_commit_cannot_jail_it() {
        let mut s = OffenceState::default();
        let set = [1, 2, 3, 4];
        for h in 2..=40 {
            let c = CountedCommit {
                height: h,
                proposer: 1,
                set: &set,
                signers: Some(&[1, 2, 3]),
            };
            assert!(s.record_commit(c, 8, 6, 2).is_empty(), "height {h}");
        }
        assert_eq!(s.downtime().missed(4), 8);
        assert!(!s.jailed(4));
    }
}
