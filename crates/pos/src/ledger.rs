//! The ledger state and its transition on each decided block.

use crate::batch_cuts::BatchState;
use crate::election::{elect, fallback_order, weight_of};
use crate::governance::GovState;
use crate::history::{Archived, ArchivedEpoch, History};
use crate::key_state::{KeyError, KeyOutcome, KeyState};
use crate::l1_events::{AppliedL1, L1Event, PosTx};
use crate::offences::{CountedCommit, Inadmissible, Misbehaviour, OffenceState};
use crate::rewards::RewardState;
use crate::types::{BlockInfo, ElectionReason, Epoch, Params, Sequencer, SequencerId, SequencerStatus, SetChange};
use alloy_primitives::{keccak256, B256, U256};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("genesis: {0}")]
    Genesis(&'static str),
    #[error("stored ledger: {0}")]
    Stored(&'static str),
    #[error("cannot encode the {0}")]
    Encode(&'static str),
    #[error("block {got} does not follow the ledger height {height}")]
    OutOfOrder { height: u64, got: u64 },
    #[error("block {height} round {round} was proposed by {got}, but the schedule says {expected}")]
    WrongProposer {
        height: u64,
        round: u32,
        expected: SequencerId,
        got: SequencerId,
    },
    #[error("no electable sequencer")]
    NoCandidates,
    #[error("misbehaviour of sequencer {sequencer} at height {height}: {reason}")]
    Inadmissible {
        sequencer: SequencerId,
        height: u64,
        reason: Inadmissible,
    },
    #[error(
        "L1 event at block {block} log {log} is not after the last applied one (block {last_block} log {last_log})"
    )]
    L1OutOfOrder {
        block: u64,
        log: u64,
        last_block: u64,
        last_log: u64,
    },
}

#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct Ledger {
    params: Params,
    sequencers: BTreeMap<SequencerId, Sequencer>,
    /// Every epoch so far; the last one is running.
    epochs: Vec<Epoch>,
    /// keccak chain over ended epochs, so the state hash does not rehash the whole history.
    epochs_acc: B256,
    /// Last applied block.
    height: u64,
    /// Blocks produced per (epoch, sequencer).
    #[serde(with = "pair_keyed")]
    produced: BTreeMap<(u64, SequencerId), u64>,
    /// Order key of the last applied L1 event.
    last_l1: Option<(u64, u64)>,
    /// Stake changes and exits waiting for the next boundary.
    pending_stake: BTreeMap<SequencerId, U256>,
    pending_exit: std::collections::BTreeSet<SequencerId>,
    /// Every validator set change, oldest first.
    set_changes: Vec<SetChange>,
    /// L1 jail changes and a new stake cap waiting for the next boundary.
    #[serde(default)]
    pending_jail: BTreeMap<SequencerId, bool>,
    #[serde(default)]
    pending_cap: Option<U256>,
    /// Every L1 event taken, oldest first, and a keccak chain over them for the state hash.
    #[serde(default)]
    applied_l1: Vec<AppliedL1>,
    #[serde(default)]
    l1_acc: B256,
    /// The threshold key: current epoch, running round, history.
    #[serde(default)]
    keys: KeyState,
    /// Batches cut for L1.
    #[serde(default)]
    batches: BatchState,
    /// Reward reports for L1.
    #[serde(default)]
    rewards: RewardState,
    /// Records handed over to the node's store ([`Ledger::take_history`]).
    #[serde(default)]
    archived: Archived,
    /// Jails, punished offences, slashes asked of L1, downtime windows.
    #[serde(default)]
    offences: OffenceState,
    /// Governed parameter changes: waiting for the boundary, and applied.
    #[serde(default)]
    gov: GovState,
}

/// Whether 32 bytes fail to be an ed25519 public key. The contract checks shape only; a validator whose key
/// does not decode could never sign a vote, and would break the validator set of every node.
fn ed25519_key_invalid(k: &B256) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(&k.0).is_err()
}

/// JSON maps need string keys; a pair-keyed map is stored as a list of entries.
mod pair_keyed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<(u64, u64), u64>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().map(|(k, v)| (k.0, k.1, *v)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<(u64, u64), u64>, D::Error> {
        Ok(Vec::<(u64, u64, u64)>::deserialize(d)?
            .into_iter()
            .map(|(a, b, v)| ((a, b), v))
            .collect())
    }
}

fn encode_sequencer(s: &Sequencer, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.id.to_be_bytes());
    out.extend_from_slice(s.signer.as_slice());
    out.extend_from_slice(s.consensus_key.as_slice());
    out.extend_from_slice(s.dkg_key.as_slice());
    out.extend_from_slice(&s.stake.to_be_bytes::<32>());
    out.push(match s.status {
        SequencerStatus::Pending => 2,
        SequencerStatus::Active => 1,
        SequencerStatus::Inactive => 0,
    });
    out.extend_from_slice(&s.jailed_until_epoch.to_be_bytes());
    out.push(s.l1_jailed as u8);
}

fn encode_epoch(e: &Epoch, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.id.to_be_bytes());
    out.extend_from_slice(&e.first_block.to_be_bytes());
    out.extend_from_slice(&e.last_block.to_be_bytes());
    out.push(e.ended as u8);
    out.extend_from_slice(&e.producer.to_be_bytes());
    match &e.reason {
        ElectionReason::Genesis => out.push(0),
        ElectionReason::Scheduled => out.push(1),
        ElectionReason::ReElection { failed, misses } => {
            out.push(2);
            out.extend_from_slice(&failed.to_be_bytes());
            out.extend_from_slice(&misses.to_be_bytes());
        }
        ElectionReason::Jailed { producer } => {
            out.push(3);
            out.extend_from_slice(&producer.to_be_bytes());
        }
    }
    out.extend_from_slice(e.seed.as_slice());
    out.extend_from_slice(&e.missed.to_be_bytes());
}

impl Ledger {
    /// The ledger before block 1: the genesis sequencers and epoch 0 (blocks 1..=epoch_length) with a producer
    /// drawn from `seed`.
    pub fn genesis(params: Params, sequencers: Vec<Sequencer>, seed: B256) -> Result<Self, LedgerError> {
        if params.epoch_length == 0 {
            return Err(LedgerError::Genesis("epoch_length must be positive"));
        }
        if params.missed_limit == 0 {
            return Err(LedgerError::Genesis("missed_limit must be positive"));
        }
        if params.power_unit.is_zero() {
            return Err(LedgerError::Genesis("power_unit must be positive"));
        }
        params.check_downtime().map_err(LedgerError::Genesis)?;
        let mut map = BTreeMap::new();
        let mut keys = std::collections::BTreeSet::new();
        for s in sequencers {
            if !keys.insert(s.consensus_key) || map.insert(s.id, s).is_some() {
                return Err(LedgerError::Genesis("duplicate sequencer id or consensus key"));
            }
        }
        let mut ledger = Self {
            params,
            sequencers: map,
            epochs: Vec::new(),
            epochs_acc: B256::ZERO,
            height: 0,
            produced: BTreeMap::new(),
            last_l1: None,
            pending_stake: BTreeMap::new(),
            pending_exit: Default::default(),
            set_changes: Vec::new(),
            pending_jail: BTreeMap::new(),
            pending_cap: None,
            applied_l1: Vec::new(),
            l1_acc: B256::ZERO,
            keys: KeyState::default(),
            batches: BatchState::default(),
            rewards: RewardState::default(),
            archived: Archived::default(),
            offences: OffenceState::default(),
            gov: GovState::default(),
        };
        if ledger.validators().is_empty() {
            return Err(LedgerError::Genesis("no active sequencer with voting power"));
        }
        let producer = ledger.draw(seed, 0, None)?;
        ledger.epochs.push(Epoch {
            id: 0,
            first_block: 1,
            last_block: ledger.params.epoch_length,
            ended: false,
            producer,
            reason: ElectionReason::Genesis,
            seed,
            missed: 0,
        });
        Ok(ledger)
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Last applied block height.
    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn sequencer(&self, id: SequencerId) -> Option<&Sequencer> {
        self.sequencers.get(&id)
    }

    pub fn sequencers(&self) -> impl Iterator<Item = &Sequencer> {
        self.sequencers.values()
    }

    pub fn current_epoch(&self) -> &Epoch {
        // genesis() always creates epoch 0 and epochs are only ever appended.
        &self.epochs[self.epochs.len() - 1]
    }

    /// The epochs the ledger still holds (rotation records), oldest first: all of them but the
    /// [`Ledger::archived`] ones, which the node's store has.
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// Epoch `id`, if the ledger still holds it.
    pub fn epoch(&self, id: u64) -> Option<&Epoch> {
        self.epochs
            .get(usize::try_from(id.checked_sub(self.archived.epochs)?).ok()?)
    }

    /// How many records of each kind were handed over to the store.
    pub fn archived(&self) -> Archived {
        self.archived
    }

    /// Hands over the records beyond the newest `keep` of each kind: ended epochs (never one a reward report
    /// still has to count), set changes and applied L1 events. The state hash does not change.
    pub fn take_history(&mut self, keep: usize) -> History {
        let keep = keep.max(1);
        let mut out = History::default();
        // Epochs from `reported` on are still to be counted by a reward report.
        let reported = if self.params.reward_epochs == 0 {
            u64::MAX
        } else {
            self.rewards.next_epoch
        };
        let running = self.current_epoch().id;
        let movable = self
            .epochs
            .iter()
            .take_while(|e| e.ended && e.id < reported && e.id < running)
            .count();
        let n = movable.min(self.epochs.len().saturating_sub(keep));
        for e in self.epochs.drain(..n) {
            let later = self.produced.split_off(&(e.id + 1, 0));
            let produced = std::mem::replace(&mut self.produced, later)
                .into_iter()
                .filter(|((epoch, _), _)| *epoch == e.id)
                .map(|((_, id), blocks)| (id, blocks))
                .collect();
            out.epochs.push(ArchivedEpoch { epoch: e, produced });
        }
        self.archived.epochs += n as u64;
        let n = self.set_changes.len().saturating_sub(keep);
        let base = self.archived.set_changes;
        out.set_changes = self
            .set_changes
            .drain(..n)
            .enumerate()
            .map(|(i, c)| (base + i as u64, c))
            .collect();
        self.archived.set_changes += n as u64;
        let n = self.applied_l1.len().saturating_sub(keep);
        let base = self.archived.applied_l1;
        out.applied_l1 = self
            .applied_l1
            .drain(..n)
            .enumerate()
            .map(|(i, a)| (base + i as u64, a))
            .collect();
        self.archived.applied_l1 += n as u64;
        out
    }

    /// The epoch block `height` belongs to (the running one for future heights).
    pub fn epoch_for_block(&self, height: u64) -> Option<&Epoch> {
        if height == 0 {
            return None;
        }
        let i = self.epochs.partition_point(|e| e.first_block <= height);
        self.epochs.get(i.checked_sub(1)?)
    }

    /// Re-elections (epochs that started because a producer failed), oldest first.
    pub fn re_elections(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs
            .iter()
            .filter(|e| matches!(e.reason, ElectionReason::ReElection { .. }))
    }

    /// The validator set: active sequencers with voting power (stake up to the cap, in power units), but those
    /// jailed before the running epoch.
    pub fn validators(&self) -> Vec<(SequencerId, u64)> {
        self.sequencers
            .values()
            .filter(|s| s.status == SequencerStatus::Active && !s.l1_jailed && !self.offences.out_of_set(s.id))
            .filter_map(|s| {
                let power = weight_of(s, &self.params) / self.params.power_unit;
                let power = u64::try_from(power).unwrap_or(u64::MAX);
                (power > 0).then_some((s.id, power))
            })
            .collect()
    }

    /// Who may propose and be elected, by weight: validators not jailed (all validators if every one is:
    /// liveness first).
    fn weights(&self) -> Vec<(SequencerId, U256)> {
        let active = || {
            self.sequencers
                .values()
                .filter(|s| s.status == SequencerStatus::Active && !s.l1_jailed && !self.offences.out_of_set(s.id))
        };
        let free: Vec<_> = active()
            .filter(|s| !self.offences.jailed(s.id))
            .map(|s| (s.id, weight_of(s, &self.params)))
            .collect();
        if !free.is_empty() {
            return free;
        }
        active().map(|s| (s.id, weight_of(s, &self.params))).collect()
    }

    /// Who proposes the next block in `round`: the epoch's producer in round 0, then the fallback order.
    pub fn proposer(&self, round: u32) -> SequencerId {
        let producer = self.current_epoch().producer;
        if round == 0 {
            return producer;
        }
        let order = fallback_order(&self.weights(), producer);
        if order.is_empty() {
            return producer;
        }
        order[(round as usize - 1) % order.len()]
    }

    /// The proposer schedule of the next block: the epoch's producer (round 0), then the fallback order.
    pub fn schedule(&self) -> Vec<SequencerId> {
        let producer = self.current_epoch().producer;
        let mut s = vec![producer];
        s.extend(fallback_order(&self.weights(), producer));
        s
    }

    /// Blocks produced per sequencer in epoch `id`.
    pub fn produced_in(&self, epoch: u64) -> BTreeMap<SequencerId, u64> {
        self.produced
            .range((epoch, 0)..=(epoch, u64::MAX))
            .map(|((_, id), n)| (*id, *n))
            .collect()
    }

    /// Draws a producer for `epoch`: active, not jailed, not `exclude`; if nobody is left, liveness wins and the
    /// restrictions are relaxed in that order.
    fn draw(&self, seed: B256, epoch: u64, exclude: Option<SequencerId>) -> Result<SequencerId, LedgerError> {
        let active = self.weights();
        let strict: Vec<_> = active
            .iter()
            .filter(|(id, _)| Some(*id) != exclude)
            .filter(|(id, _)| self.sequencers.get(id).is_some_and(|s| s.jailed_until_epoch <= epoch))
            .copied()
            .collect();
        if let Some(id) = elect(&strict, seed, epoch) {
            return Ok(id);
        }
        let not_failed: Vec<_> = active.iter().filter(|(id, _)| Some(*id) != exclude).copied().collect();
        elect(&not_failed, seed, epoch)
            .or_else(|| elect(&active, seed, epoch))
            .ok_or(LedgerError::NoCandidates)
    }

    fn start_epoch(
        &mut self,
        seed: B256,
        reason: ElectionReason,
        exclude: Option<SequencerId>,
    ) -> Result<(), LedgerError> {
        let id = self.current_epoch().id + 1;
        let producer = self.draw(seed, id, exclude)?;
        let first_block = self.height + 1;
        self.epochs.push(Epoch {
            id,
            first_block,
            last_block: first_block + self.params.epoch_length - 1,
            ended: false,
            producer,
            reason,
            seed,
            missed: 0,
        });
        Ok(())
    }

    fn end_current_epoch(&mut self) {
        let height = self.height;
        let len = self.epochs.len();
        let e = &mut self.epochs[len - 1];
        e.ended = true;
        e.last_block = height;
        let ended = e.id;
        let mut buf = self.epochs_acc.to_vec();
        encode_epoch(e, &mut buf);
        self.epochs_acc = keccak256(buf);
        let mut rewards = std::mem::take(&mut self.rewards);
        rewards.on_epoch_end(
            ended,
            height,
            self.params.reward_epochs,
            |epoch| self.produced_in(epoch),
            |id| {
                self.sequencers
                    .get(&id)
                    .is_some_and(|s| s.status != SequencerStatus::Inactive)
            },
        );
        self.rewards = rewards;
    }

    /// Applies one decided block. The block must follow the ledger height and come from the scheduled proposer
    /// of its round (consensus guarantees both; the ledger checks so a bug cannot fork it silently).
    pub fn apply_block(&mut self, b: &BlockInfo) -> Result<(), LedgerError> {
        if b.height != self.height + 1 {
            return Err(LedgerError::OutOfOrder {
                height: self.height,
                got: b.height,
            });
        }
        let expected = self.proposer(b.round);
        if b.proposer != expected {
            return Err(LedgerError::WrongProposer {
                height: b.height,
                round: b.round,
                expected,
                got: b.proposer,
            });
        }
        self.count_commit(b);
        let epoch_id = self.current_epoch().id;
        *self.produced.entry((epoch_id, b.proposer)).or_default() += 1;
        if b.round > 0 {
            let len = self.epochs.len();
            self.epochs[len - 1].missed += 1;
        }
        self.height = b.height;
        let e = self.current_epoch().clone();
        if e.missed >= self.params.missed_limit {
            // Out of the re-election itself and of the `jail_epochs` elections after it.
            if let Some(s) = self.sequencers.get_mut(&e.producer) {
                s.jailed_until_epoch = e.id + 2 + self.params.jail_epochs;
            }
            self.end_current_epoch();
            self.apply_pending_set_changes(e.id + 1)?;
            self.start_epoch(
                b.seed,
                ElectionReason::ReElection {
                    failed: e.producer,
                    misses: e.missed,
                },
                Some(e.producer),
            )?;
        } else if b.height >= e.last_block {
            self.end_current_epoch();
            self.apply_pending_set_changes(e.id + 1)?;
            self.start_epoch(b.seed, ElectionReason::Scheduled, None)?;
        }
        self.batches.on_block(
            b.height,
            b.timestamp,
            b.txs,
            self.params.batch_blocks,
            self.params.batch_interval_secs,
        );
        self.replace_jailed_producer(b.seed)?;
        if self.params.key_phase_blocks > 0 {
            self.keys.expire(b.height);
            let ids: Vec<SequencerId> = self.validators().into_iter().map(|(id, _)| id).collect();
            self.keys.maybe_open(&ids, b.height + 1, self.params.key_phase_blocks);
        }
        Ok(())
    }

    /// Downtime: counts the parent's commit the block carries. Not at the first block of an epoch, whose
    /// parent another set may have signed (a miss there would not be provable against this set).
    fn count_commit(&mut self, b: &BlockInfo) {
        let window = self.params.downtime_window;
        if window == 0 {
            return;
        }
        let set: Vec<SequencerId> = self.validators().into_iter().map(|(id, _)| id).collect();
        let counted = b.height >= 2 && b.height != self.current_epoch().first_block;
        let until = self.current_epoch().id + 1 + self.params.jail_epochs;
        self.offences.record_commit(
            CountedCommit {
                height: b.height,
                proposer: b.proposer,
                set: &set,
                signers: counted.then_some(b.signers.as_slice()),
            },
            window,
            self.params.max_missed(),
            until,
        );
    }

    /// A producer jailed while its epoch runs is replaced from the next height: the epoch ends here and a new
    /// one is drawn without it (or, if the epoch has no block yet, its producer is drawn again).
    fn replace_jailed_producer(&mut self, seed: B256) -> Result<(), LedgerError> {
        // Every block asks: answered without a copy when the producer is free.
        if !self.offences.jailed(self.current_epoch().producer) {
            return Ok(());
        }
        let e = self.current_epoch().clone();
        if self.weights().iter().all(|(id, _)| *id == e.producer) {
            return Ok(());
        }
        let reason = ElectionReason::Jailed { producer: e.producer };
        if e.first_block > self.height {
            let producer = self.draw(seed, e.id, Some(e.producer))?;
            let last = self.epochs.len() - 1;
            self.epochs[last].producer = producer;
            self.epochs[last].reason = reason;
            return Ok(());
        }
        self.end_current_epoch();
        self.apply_pending_set_changes(e.id + 1)?;
        self.start_epoch(seed, reason, Some(e.producer))
    }

    /// Takes the misbehaviour the block just applied carried (checked by consensus before voting), after
    /// [`Ledger::apply_block`] with its `seed`: each offender is jailed, its offence recorded and a slash asked.
    /// Inadmissible evidence is refused and changes nothing.
    pub fn apply_misbehaviour(&mut self, reports: &[Misbehaviour], seed: B256) -> Result<(), LedgerError> {
        let mut next = self.offences.clone();
        for m in reports {
            let refuse = |reason| LedgerError::Inadmissible {
                sequencer: m.sequencer,
                height: m.height,
                reason,
            };
            let stake = self
                .sequencers
                .get(&m.sequencer)
                .map(|s| s.stake)
                .ok_or(refuse(Inadmissible::UnknownSequencer))?;
            next.admissible(m, self.height, self.params.evidence_max_age)
                .map_err(refuse)?;
            let slash = stake.saturating_mul(U256::from(self.params.slash_double_sign_bps)) / U256::from(10_000u64);
            let until = self.current_epoch().id + 1 + self.params.jail_epochs;
            next.punish(m, self.height, slash, until);
        }
        self.offences = next;
        self.replace_jailed_producer(seed)
    }

    /// Whether the next block may carry `m`.
    pub fn admissible(&self, m: &Misbehaviour) -> Result<(), Inadmissible> {
        if !self.sequencers.contains_key(&m.sequencer) {
            return Err(Inadmissible::UnknownSequencer);
        }
        self.offences
            .admissible(m, self.height + 1, self.params.evidence_max_age)
    }

    /// Jails, punished offences, open slashes and downtime windows.
    pub fn offences(&self) -> &OffenceState {
        &self.offences
    }

    /// Reward reports so far (the last one, and where the next starts).
    pub fn rewards(&self) -> &RewardState {
        &self.rewards
    }

    /// Batches cut so far (the last one, and the one being filled).
    pub fn batches(&self) -> &BatchState {
        &self.batches
    }

    /// The threshold key: the current key epoch, the running round (if any) and every round so far.
    pub fn keys(&self) -> &KeyState {
        &self.keys
    }

    /// Takes the outcome of the running key round, with the block at its last height (before
    /// [`Ledger::apply_block`] of that block). Every node computed it from the same decided messages.
    pub fn finish_key_round(&mut self, height: u64, outcome: KeyOutcome) -> Result<(), KeyError> {
        self.keys.finish(height, outcome)
    }

    /// The validator set changes the ledger still holds (the older ones are in the store), oldest first.
    pub fn set_changes(&self) -> &[SetChange] {
        &self.set_changes
    }

    /// Order key (L1 block, log index) of the last L1 event taken: the next block carries the events after it.
    pub fn last_l1(&self) -> Option<(u64, u64)> {
        self.last_l1
    }

    /// Governed parameter changes: waiting for the next boundary, and applied (or refused) at one.
    pub fn governance(&self) -> &GovState {
        &self.gov
    }

    /// The L1 events taken that the ledger still holds (the older ones are in the store), oldest first.
    pub fn applied_l1(&self) -> &[AppliedL1] {
        &self.applied_l1
    }

    /// Takes one L1 event (from a PoS transaction in the decided block that follows the ledger height). Events
    /// must come in L1 order, each once: anything else is refused and changes nothing. An event that makes no
    /// sense for this ledger (unknown sequencer, a key already used) is recorded as ignored, with the reason,
    /// and still advances the L1 cursor, so it cannot hold up the events after it.
    pub fn apply_l1_event(&mut self, tx: &PosTx) -> Result<(), LedgerError> {
        let order = tx.position.order();
        if let Some(last) = self.last_l1 {
            if order <= last {
                return Err(LedgerError::L1OutOfOrder {
                    block: order.0,
                    log: order.1,
                    last_block: last.0,
                    last_log: last.1,
                });
            }
        }
        let ignored = self.take_l1_event(tx).err().map(str::to_string);
        let record = AppliedL1 {
            tx: tx.clone(),
            height: self.height + 1,
            ignored,
        };
        let mut buf = self.l1_acc.to_vec();
        buf.extend_from_slice(&borsh::to_vec(&record).map_err(|_| LedgerError::Encode("applied L1 event"))?);
        self.l1_acc = keccak256(buf);
        self.applied_l1.push(record);
        self.last_l1 = Some(order);
        Ok(())
    }

    fn take_l1_event(&mut self, tx: &PosTx) -> Result<(), &'static str> {
        match &tx.event {
            L1Event::Locked {
                id,
                signer,
                consensus_key,
                dkg_key,
                amount,
            } => {
                if self.sequencers.contains_key(id) {
                    return Err("Locked for an existing sequencer id");
                }
                if self.sequencers.values().any(|s| s.consensus_key == *consensus_key) {
                    return Err("consensus key already registered");
                }
                if ed25519_key_invalid(consensus_key) {
                    return Err("consensus key is not an ed25519 public key");
                }
                self.sequencers.insert(
                    *id,
                    Sequencer {
                        id: *id,
                        signer: *signer,
                        consensus_key: *consensus_key,
                        dkg_key: *dkg_key,
                        stake: *amount,
                        status: SequencerStatus::Pending,
                        jailed_until_epoch: 0,
                        l1_jailed: false,
                    },
                );
            }
            L1Event::LockUpdate { id, new_amount } => {
                self.known(*id)?;
                self.pending_stake.insert(*id, *new_amount);
            }
            L1Event::SignerChange { id, new_signer } => {
                self.known(*id)?;
                if let Some(s) = self.sequencers.get_mut(id) {
                    s.signer = *new_signer;
                }
            }
            L1Event::UnlockInit { id } | L1Event::Unlocked { id } => {
                self.known(*id)?;
                self.pending_exit.insert(*id);
            }
            L1Event::Jailed { id, jailed } => {
                self.known(*id)?;
                self.pending_jail.insert(*id, *jailed);
            }
            L1Event::SetMaxLock { amount } => {
                if amount.is_zero() {
                    return Err("a zero stake cap would leave no voting power");
                }
                self.pending_cap = Some(*amount);
            }
            L1Event::Slashed { id, evidence, .. } => {
                self.known(*id)?;
                // The slash asked for this evidence is done (a slash L1 made on its own is only recorded).
                self.offences.on_slashed(evidence);
            }
            L1Event::Relocked { id, .. } | L1Event::Withdraw { id, .. } => self.known(*id)?,
            L1Event::PosParamChanged { param, value, .. } => {
                let height = self.height + 1;
                self.gov.take(&self.params, *param, *value, &tx.position, height)?
            }
            L1Event::WhitelistChanged { .. } | L1Event::SetMinLock { .. } | L1Event::ParameterChanged { .. } => {}
        }
        Ok(())
    }

    fn known(&self, id: SequencerId) -> Result<(), &'static str> {
        if self.sequencers.contains_key(&id) {
            Ok(())
        } else {
            Err("unknown sequencer")
        }
    }

    /// At a boundary: governed parameter changes apply (before the next epoch is laid out, so a new epoch length
    /// is its length), pending sequencers join, exits leave, stake changes apply; records the change if the
    /// validator set moved. An exit of the last validator is deferred (the chain must keep a validator).
    fn apply_pending_set_changes(&mut self, new_epoch: u64) -> Result<(), LedgerError> {
        self.gov.on_boundary(&mut self.params, new_epoch, self.height + 1)?;
        let before: BTreeMap<SequencerId, u64> = self.validators().into_iter().collect();
        for (id, stake) in std::mem::take(&mut self.pending_stake) {
            if let Some(s) = self.sequencers.get_mut(&id) {
                s.stake = stake;
            }
        }
        for (id, jailed) in std::mem::take(&mut self.pending_jail) {
            if let Some(s) = self.sequencers.get_mut(&id) {
                s.l1_jailed = jailed;
            }
        }
        let sequencers = &self.sequencers;
        self.offences.on_boundary(new_epoch, self.height, |id| {
            sequencers.get(&id).is_some_and(|s| s.l1_jailed)
        });
        if let Some(cap) = self.pending_cap.take() {
            self.params.stake_cap = cap;
        }
        for s in self.sequencers.values_mut() {
            if s.status == SequencerStatus::Pending {
                s.status = SequencerStatus::Active;
            }
        }
        let exits = std::mem::take(&mut self.pending_exit);
        for id in &exits {
            if let Some(s) = self.sequencers.get_mut(id) {
                s.status = SequencerStatus::Inactive;
            }
        }
        if self.validators().is_empty() {
            // Keep the chain alive: jailed validators stay in the set (out of the schedule) ...
            self.offences.keep_in_set();
        }
        if self.validators().is_empty() {
            // ... and exits are undone, to be retried at the next boundary.
            for id in &exits {
                if let Some(s) = self.sequencers.get_mut(id) {
                    s.status = SequencerStatus::Active;
                }
            }
            self.pending_exit = exits;
        }
        let after: BTreeMap<SequencerId, u64> = self.validators().into_iter().collect();
        if before != after {
            self.set_changes.push(SetChange {
                epoch: new_epoch,
                joined: after.keys().filter(|id| !before.contains_key(id)).copied().collect(),
                left: before.keys().filter(|id| !after.contains_key(id)).copied().collect(),
                reweighted: after
                    .iter()
                    .filter(|(id, p)| before.get(id).is_some_and(|b| b != *p))
                    .map(|(id, _)| *id)
                    .collect(),
            });
        }
        Ok(())
    }

    /// The ledger in its one canonical encoding (borsh), to persist beside the block that produced it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LedgerError> {
        borsh::to_vec(self).map_err(|_| LedgerError::Encode("ledger"))
    }

    /// Reads bytes written by [`Ledger::to_bytes`] (trailing bytes refused); the result is checked against
    /// `expected_hash` so a corrupt or foreign record is refused.
    pub fn from_bytes(bytes: &[u8], expected_hash: B256) -> Result<Self, LedgerError> {
        let l: Self = borsh::from_slice(bytes).map_err(|_| LedgerError::Stored("does not decode"))?;
        // Every ledger has its running epoch (genesis creates epoch 0; epochs are only appended).
        if l.epochs.is_empty() {
            return Err(LedgerError::Stored("has no epoch"));
        }
        // The state hash covers each sequencer by its record; the map's key must be the record's id.
        if l.sequencers.iter().any(|(k, s)| *k != s.id) {
            return Err(LedgerError::Stored("a sequencer under another id"));
        }
        if l.state_hash() != expected_hash {
            return Err(LedgerError::Stored("does not match its state hash"));
        }
        Ok(l)
    }

    /// Commits to the whole ledger state: parameters, sequencers, the running epoch, the history of ended
    /// epochs, the height and the running epoch's production counts.
    pub fn state_hash(&self) -> B256 {
        let mut buf = Vec::with_capacity(256 + 128 * self.sequencers.len());
        buf.extend_from_slice(&self.params.epoch_length.to_be_bytes());
        buf.extend_from_slice(&self.params.missed_limit.to_be_bytes());
        buf.extend_from_slice(&self.params.jail_epochs.to_be_bytes());
        buf.extend_from_slice(&self.params.stake_cap.to_be_bytes::<32>());
        buf.extend_from_slice(&self.params.power_unit.to_be_bytes::<32>());
        buf.extend_from_slice(&self.height.to_be_bytes());
        buf.extend_from_slice(&(self.sequencers.len() as u64).to_be_bytes());
        for s in self.sequencers.values() {
            encode_sequencer(s, &mut buf);
        }
        encode_epoch(self.current_epoch(), &mut buf);
        buf.extend_from_slice(self.epochs_acc.as_slice());
        for (id, n) in self.produced_in(self.current_epoch().id) {
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&n.to_be_bytes());
        }
        let (b, l) = self.last_l1.unwrap_or((u64::MAX, u64::MAX));
        buf.extend_from_slice(&b.to_be_bytes());
        buf.extend_from_slice(&l.to_be_bytes());
        for (id, stake) in &self.pending_stake {
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&stake.to_be_bytes::<32>());
        }
        for id in &self.pending_exit {
            buf.extend_from_slice(&id.to_be_bytes());
        }
        for (id, jailed) in &self.pending_jail {
            buf.extend_from_slice(&id.to_be_bytes());
            buf.push(*jailed as u8);
        }
        if let Some(cap) = self.pending_cap {
            buf.extend_from_slice(&cap.to_be_bytes::<32>());
        }
        buf.extend_from_slice(self.l1_acc.as_slice());
        buf.extend_from_slice(&self.params.key_phase_blocks.to_be_bytes());
        self.keys.hash_input(&mut buf);
        buf.extend_from_slice(&(self.archived.set_changes + self.set_changes.len() as u64).to_be_bytes());
        buf.extend_from_slice(&self.params.batch_blocks.to_be_bytes());
        buf.extend_from_slice(&self.params.batch_interval_secs.to_be_bytes());
        self.batches.hash_input(&mut buf);
        buf.extend_from_slice(&self.params.reward_epochs.to_be_bytes());
        self.rewards.hash_input(&mut buf);
        buf.extend_from_slice(&self.params.slash_double_sign_bps.to_be_bytes());
        buf.extend_from_slice(&self.params.evidence_max_age.to_be_bytes());
        buf.extend_from_slice(&self.params.downtime_window.to_be_bytes());
        buf.extend_from_slice(&self.params.min_signed_bps.to_be_bytes());
        buf.push(self.params.batch_blobs as u8);
        self.offences.hash_input(&mut buf);
        self.gov.hash_input(&mut buf);
        keccak256(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    #[test]
    fn bytes_roundtrip_and_checked_against_the_hash() {
        let mut l = four();
        for h in 1..=25 {
            let proposer = l.proposer(0);
            l.apply_block(&BlockInfo {
                height: h,
                round: 0,
                proposer,
                seed: keccak256(h.to_be_bytes()),
                timestamp: 0,
                txs: 0,
                signers: vec![],
            })
            .unwrap();
        }
        let bytes = l.to_bytes().unwrap();
        assert_eq!(Ledger::from_bytes(&bytes, l.state_hash()).unwrap(), l);
        assert!(Ledger::from_bytes(&bytes, B256::ZERO).is_err());
        assert!(Ledger::from_bytes(b"{}", l.state_hash()).is_err());
        // Corrupt records are errors, never panics: a ledger without its running epoch, a sequencer filed under
        // another id, truncations. A flipped bit decodes to an error or to a ledger whose hash differs, except in
        // records only the accumulators cover (ended epochs kept for the API): those must at least not panic.
        let mut empty = l.clone();
        empty.epochs.clear();
        assert!(Ledger::from_bytes(&empty.to_bytes().unwrap(), l.state_hash()).is_err());
        let mut moved = l.clone();
        let s4 = moved.sequencers.remove(&4).unwrap();
        moved.sequencers.insert(40, s4);
        assert!(Ledger::from_bytes(&moved.to_bytes().unwrap(), moved.state_hash()).is_err());
        for cut in (0..bytes.len()).step_by(7) {
            assert!(Ledger::from_bytes(&bytes[..cut], l.state_hash()).is_err());
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            let _ = Ledger::from_bytes(&flipped, l.state_hash());
        }
    }

    fn seq(id: u64, stake_tokens: u64) -> Sequencer {
        Sequencer {
            id,
            signer: Address::with_last_byte(id as u8),
            consensus_key: B256::from(
                ed25519_dalek::SigningKey::from_bytes(&keccak256(format!("ck{id}")).0)
                    .verifying_key()
                    .to_bytes(),
            ),
            dkg_key: keccak256(format!("dk{id}")),
            stake: U256::from(stake_tokens) * U256::from(10u64).pow(U256::from(18)),
            status: SequencerStatus::Active,
            jailed_until_epoch: 0,
            l1_jailed: false,
        }
    }

    fn params(epoch_length: u64) -> Params {
        Params {
            epoch_length,
            ..Default::default()
        }
    }

    fn four() -> Ledger {
        Ledger::genesis(
            params(10),
            vec![seq(1, 20_000), seq(2, 30_000), seq(3, 40_000), seq(4, 50_000)],
            B256::ZERO,
        )
        .unwrap()
    }

    fn seed(h: u64) -> B256 {
        keccak256(format!("cert{h}"))
    }

    /// Decides the next block: round 0 unless the producer is in `dead`, then the first live fallback.
    fn decide(l: &mut Ledger, dead: &[SequencerId]) -> BlockInfo {
        let mut round = 0;
        while dead.contains(&l.proposer(round)) {
            round += 1;
        }
        let b = BlockInfo {
            height: l.height() + 1,
            round,
            proposer: l.proposer(round),
            seed: seed(l.height() + 1),
            timestamp: 0,
            txs: 0,
            signers: vec![],
        };
        l.apply_block(&b).unwrap();
        b
    }

    /// A ledger that hands its old records over every block stays bounded and agrees with one that keeps
    /// everything: same state hash at every height, same reward reports, the records intact in the hand-over.
    #[test]
    fn history_handed_over_keeps_the_hash_and_the_rewards() {
        let p = Params {
            epoch_length: 3,
            reward_epochs: 4,
            ..Default::default()
        };
        let set = || vec![seq(1, 20_000), seq(2, 30_000), seq(3, 40_000), seq(4, 50_000)];
        let mut full = Ledger::genesis(p.clone(), set(), B256::ZERO).unwrap();
        let mut pruned = full.clone();
        let mut archive: Vec<ArchivedEpoch> = Vec::new();
        for h in 1..=300u64 {
            // Sequencer 2 is dead for a while: re-elections and misses land in the history too.
            let dead: &[SequencerId] = if (100..140).contains(&h) { &[2] } else { &[] };
            let b = decide(&mut full, dead);
            pruned.apply_block(&b).unwrap();
            let handed = pruned.take_history(5);
            archive.extend(handed.epochs);
            assert_eq!(pruned.state_hash(), full.state_hash(), "height {h}");
            assert_eq!(pruned.rewards(), full.rewards(), "height {h}");
            assert!(pruned.epochs().len() <= 5 + 4, "height {h}: {}", pruned.epochs().len());
        }
        assert!(archive.len() > 80);
        assert_eq!(pruned.archived().epochs, archive.len() as u64);
        for (i, a) in archive.iter().enumerate() {
            assert_eq!(a.epoch.id, i as u64);
            assert_eq!(&a.epoch, full.epoch(i as u64).unwrap());
            assert_eq!(a.produced, full.produced_in(i as u64));
            assert!(pruned.epoch(i as u64).is_none());
        }
        let current = full.current_epoch().id;
        assert_eq!(pruned.epoch(current), full.epoch(current));
        assert_eq!(pruned.epochs(), &full.epochs()[archive.len()..]);
        // The record every block writes no longer grows with the chain.
        eprintln!(
            "ledger bytes after 300 blocks (100 epochs): {} keeping everything, {} keeping 5",
            full.to_bytes().unwrap().len(),
            pruned.to_bytes().unwrap().len()
        );
        assert!(pruned.to_bytes().unwrap().len() * 5 < full.to_bytes().unwrap().len());
        let back = Ledger::from_bytes(&pruned.to_bytes().unwrap(), pruned.state_hash()).unwrap();
        assert_eq!(back, pruned);
    }

    /// Many random runs (random seeds, random dead sequencers coming and going): a re-election never picks
    /// the sequencer that failed, and no sequencer is elected while jailed (at least one other is electable).
    #[test]
    fn re_election_and_jail_hold_over_random_runs() {
        for run in 0..200u64 {
            let mut l = Ledger::genesis(
                Params {
                    epoch_length: 5,
                    missed_limit: 2,
                    ..Default::default()
                },
                vec![
                    seq(1, 20_000),
                    seq(2, 30_000),
                    seq(3, 40_000),
                    seq(4, 50_000),
                    seq(5, 60_000),
                ],
                keccak256(run.to_be_bytes()),
            )
            .unwrap();
            let mut dead: Vec<SequencerId> = Vec::new();
            for h in 1..=120u64 {
                let mut input = run.to_be_bytes().to_vec();
                input.extend_from_slice(&h.to_be_bytes());
                let r = keccak256(input);
                // Now and then one sequencer dies or comes back (never more than one dead at a time).
                if r[0] < 20 {
                    dead = vec![1 + (r[1] as u64 % 5)];
                } else if r[0] < 40 {
                    dead.clear();
                }
                let before = l.current_epoch().id;
                decide(&mut l, &dead);
                let e = l.current_epoch();
                if e.id != before {
                    if let ElectionReason::ReElection { failed, .. } = e.reason {
                        assert_ne!(
                            e.producer, failed,
                            "run {run} height {h}: re-elected the failed producer"
                        );
                    }
                    let jailed: Vec<_> = l
                        .sequencers()
                        .filter(|s| s.jailed_until_epoch > e.id)
                        .map(|s| s.id)
                        .collect();
                    if jailed.len() < 4 {
                        assert!(
                            !jailed.contains(&e.producer),
                            "run {run} height {h}: elected a jailed sequencer"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn epochs_rotate_on_schedule() {
        let mut l = four();
        for _ in 0..35 {
            decide(&mut l, &[]);
        }
        assert_eq!(l.epochs().len(), 4);
        for (i, e) in l.epochs()[..3].iter().enumerate() {
            assert!(e.ended);
            assert_eq!((e.first_block, e.last_block), (1 + 10 * i as u64, 10 * (i as u64 + 1)));
            assert_eq!(
                l.produced_in(e.id).get(&e.producer),
                Some(&10),
                "an idle chain still produces"
            );
        }
        assert_eq!(l.epochs()[1].reason, ElectionReason::Scheduled);
        assert_eq!(l.epoch_for_block(15).unwrap().id, 1);
        assert_eq!(l.epoch_for_block(35).unwrap().id, 3);
    }

    #[test]
    fn misses_trigger_re_election_excluding_and_jailing_the_failed() {
        let mut l = four();
        let failed = l.current_epoch().producer;
        for _ in 0..3 {
            decide(&mut l, &[failed]);
        }
        let e0 = &l.epochs()[0];
        assert!(e0.ended && e0.last_block == 3 && e0.missed == 3);
        let e1 = l.current_epoch().clone();
        assert_eq!(e1.reason, ElectionReason::ReElection { failed, misses: 3 });
        assert_ne!(e1.producer, failed);
        assert_eq!(e1.first_block, 4);
        assert_eq!(l.re_elections().count(), 1);
        // Jailed: not elected again for jail_epochs epochs, whatever the seed.
        assert_eq!(l.sequencer(failed).unwrap().jailed_until_epoch, 4);
        for _ in 0..20 {
            decide(&mut l, &[failed]);
        }
        for e in &l.epochs()[1..4] {
            assert_ne!(e.producer, failed, "epoch {} elected the jailed sequencer", e.id);
        }
    }

    #[test]
    fn wrong_proposer_or_height_is_refused() {
        let mut l = four();
        let p = l.proposer(0);
        let other = (1..=4).find(|i| *i != p).unwrap();
        let bad = BlockInfo {
            height: 1,
            round: 0,
            proposer: other,
            seed: B256::ZERO,
            timestamp: 0,
            txs: 0,
            signers: vec![],
        };
        assert!(matches!(l.apply_block(&bad), Err(LedgerError::WrongProposer { .. })));
        let gap = BlockInfo {
            height: 2,
            round: 0,
            proposer: p,
            seed: B256::ZERO,
            timestamp: 0,
            txs: 0,
            signers: vec![],
        };
        assert!(matches!(l.apply_block(&gap), Err(LedgerError::OutOfOrder { .. })));
        assert_eq!(l, four(), "refused blocks change nothing");
    }

    #[test]
    fn same_blocks_same_state_byte_for_byte() {
        let mut a = four();
        let mut b = four();
        let mut hashes = Vec::new();
        for h in 0..200u64 {
            let dead: Vec<u64> = if h % 37 < 5 {
                vec![a.current_epoch().producer]
            } else {
                vec![]
            };
            let blk = decide(&mut a, &dead);
            b.apply_block(&blk).unwrap();
            assert_eq!(a.state_hash(), b.state_hash());
            hashes.push(a.state_hash());
        }
        assert_eq!(a, b);
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 200, "the state hash moves with every block");
    }

    #[test]
    fn inactive_never_elected_and_power_is_capped() {
        let mut s = vec![seq(1, 20_000), seq(2, 500_000), seq(3, 30_000)];
        s[0].status = SequencerStatus::Inactive;
        let mut l = Ledger::genesis(params(1), s, B256::ZERO).unwrap();
        assert_eq!(
            l.validators(),
            vec![(2, 100_000), (3, 30_000)],
            "stake above the cap adds no power"
        );
        for _ in 0..300 {
            decide(&mut l, &[]);
        }
        assert!(l.epochs().iter().all(|e| e.producer != 1));
    }

    #[test]
    fn genesis_is_checked() {
        assert!(Ledger::genesis(params(0), vec![seq(1, 1)], B256::ZERO).is_err());
        assert!(Ledger::genesis(params(5), vec![], B256::ZERO).is_err());
        assert!(Ledger::genesis(params(5), vec![seq(1, 1), seq(1, 2)], B256::ZERO).is_err());
        let mut s = seq(1, 100);
        s.status = SequencerStatus::Inactive;
        assert!(Ledger::genesis(params(5), vec![s], B256::ZERO).is_err());
    }

    fn pos(block: u64, log: u64) -> crate::l1_events::L1Position {
        crate::l1_events::L1Position {
            block_number: block,
            block_hash: keccak256(block.to_be_bytes()),
            tx_index: 0,
            log_index: log,
            tx_hash: keccak256(log.to_be_bytes()),
        }
    }

    fn locked(id: u64, tokens: u64) -> L1Event {
        let s = seq(id, tokens);
        L1Event::Locked {
            id,
            signer: s.signer,
            consensus_key: s.consensus_key,
            dkg_key: s.dkg_key,
            amount: s.stake,
        }
    }

    #[test]
    fn l1_joins_exits_and_stake_changes_apply_at_the_boundary() {
        let mut l = four();
        l.apply_l1_event(&PosTx {
            position: pos(100, 0),
            event: locked(5, 60_000),
        })
        .unwrap();
        l.apply_l1_event(&PosTx {
            position: pos(100, 1),
            event: L1Event::UnlockInit { id: 1 },
        })
        .unwrap();
        let tokens = U256::from(10u64).pow(U256::from(18));
        let update = L1Event::LockUpdate {
            id: 2,
            new_amount: U256::from(90_000u64) * tokens,
        };
        l.apply_l1_event(&PosTx {
            position: pos(101, 0),
            event: update,
        })
        .unwrap();
        // Nothing moves mid-epoch.
        assert_eq!(l.validators().len(), 4);
        assert_eq!(l.sequencer(5).unwrap().status, SequencerStatus::Pending);
        for _ in 0..10 {
            decide(&mut l, &[]);
        }
        // At the boundary: 5 joined, 1 left, 2 reweighted.
        let v: BTreeMap<_, _> = l.validators().into_iter().collect();
        assert_eq!(v.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(v[&2], 90_000);
        let change = l.set_changes().last().unwrap();
        assert_eq!(
            (
                change.epoch,
                change.joined.clone(),
                change.left.clone(),
                change.reweighted.clone()
            ),
            (1, vec![5], vec![1], vec![2])
        );
        assert_ne!(l.current_epoch().producer, 1, "the leaver is not elected");
        // The newcomer can be elected: over many epochs it is.
        for _ in 0..400 {
            decide(&mut l, &[]);
        }
        assert!(l.epochs().iter().any(|e| e.producer == 5));
        assert!(l.epochs()[1..].iter().all(|e| e.producer != 1));
    }

    #[test]
    fn l1_events_apply_once_in_order() {
        let mut l = four();
        l.apply_l1_event(&PosTx {
            position: pos(10, 3),
            event: locked(5, 30_000),
        })
        .unwrap();
        let before = l.clone();
        let again = PosTx {
            position: pos(10, 3),
            event: locked(6, 30_000),
        };
        assert!(matches!(
            l.apply_l1_event(&again),
            Err(LedgerError::L1OutOfOrder { .. })
        ));
        let older = PosTx {
            position: pos(9, 8),
            event: locked(6, 30_000),
        };
        assert!(matches!(
            l.apply_l1_event(&older),
            Err(LedgerError::L1OutOfOrder { .. })
        ));
        assert_eq!(l, before, "refused events change nothing");
        // Events that make no sense here are recorded as ignored and advance the cursor.
        let unknown = PosTx {
            position: pos(11, 0),
            event: L1Event::UnlockInit { id: 42 },
        };
        l.apply_l1_event(&unknown).unwrap();
        let mut dup_key = PosTx {
            position: pos(11, 1),
            event: locked(7, 30_000),
        };
        if let L1Event::Locked { consensus_key, .. } = &mut dup_key.event {
            *consensus_key = l.sequencer(1).unwrap().consensus_key;
        }
        l.apply_l1_event(&dup_key).unwrap();
        let mut bad_key = PosTx {
            position: pos(11, 2),
            event: locked(8, 30_000),
        };
        if let L1Event::Locked { consensus_key, .. } = &mut bad_key.event {
            // Not a point on the curve (y = 2 has no x).
            let mut k = [0u8; 32];
            k[0] = 2;
            *consensus_key = B256::from(k);
        }
        l.apply_l1_event(&bad_key).unwrap();
        let ignored: Vec<_> = l.applied_l1().iter().map(|a| a.ignored.clone()).collect();
        assert_eq!(ignored[0], None);
        assert_eq!(ignored[1].as_deref(), Some("unknown sequencer"));
        assert_eq!(ignored[2].as_deref(), Some("consensus key already registered"));
        assert_eq!(
            ignored[3].as_deref(),
            Some("consensus key is not an ed25519 public key")
        );
        assert!(l.sequencer(7).is_none() && l.sequencer(8).is_none());
        assert_eq!(l.last_l1(), Some((11, 2)));
        assert_ne!(l.state_hash(), before.state_hash());
    }

    #[test]
    fn l1_jail_and_stake_cap_apply_at_the_boundary() {
        let mut l = four();
        let tokens = U256::from(10u64).pow(U256::from(18));
        for (i, event) in [
            L1Event::Slashed {
                id: 3,
                amount: U256::from(1_000u64) * tokens,
                evidence: B256::repeat_byte(7),
            },
            L1Event::LockUpdate {
                id: 3,
                new_amount: U256::from(39_000u64) * tokens,
            },
            L1Event::Jailed { id: 3, jailed: true },
            L1Event::SetMaxLock {
                amount: U256::from(35_000u64) * tokens,
            },
            L1Event::WhitelistChanged {
                user: Address::repeat_byte(9),
                allowed: true,
            },
        ]
        .into_iter()
        .enumerate()
        {
            l.apply_l1_event(&PosTx {
                position: pos(50, i as u64),
                event,
            })
            .unwrap();
        }
        assert_eq!(l.validators().len(), 4, "nothing moves mid-epoch");
        for _ in 0..10 {
            decide(&mut l, &[]);
        }
        let v: BTreeMap<_, _> = l.validators().into_iter().collect();
        assert_eq!(v, BTreeMap::from([(1, 20_000), (2, 30_000), (4, 35_000)]));
        assert!(l.sequencer(3).unwrap().l1_jailed);
        assert!(l.applied_l1().iter().all(|a| a.ignored.is_none()));
        l.apply_l1_event(&PosTx {
            position: pos(60, 0),
            event: L1Event::Jailed { id: 3, jailed: false },
        })
        .unwrap();
        for _ in 0..10 {
            decide(&mut l, &[]);
        }
        assert_eq!(l.validators().len(), 4, "unjailed: back at the next boundary");
    }

    #[test]
    fn a_governed_epoch_length_applies_at_the_next_boundary_on_the_epoch_after() {
        let mut l = four();
        let len = l.params().epoch_length;
        let first = l.current_epoch().clone();
        for (i, (param, value)) in [(0u8, 2 * len), (9, 20_000), (42, 1)].into_iter().enumerate() {
            l.apply_l1_event(&PosTx {
                position: pos(50, i as u64),
                event: L1Event::PosParamChanged {
                    param,
                    value: U256::from(value),
                    nonce: i as u64 + 1,
                },
            })
            .unwrap();
        }
        let ignored: Vec<_> = l.applied_l1().iter().map(|a| a.ignored.clone()).collect();
        assert_eq!(ignored[0], None);
        assert!(ignored[1].is_some(), "min_signed_bps over 100% is refused when carried");
        assert!(ignored[2].is_some(), "an unknown parameter is refused");
        assert_eq!(l.governance().pending().len(), 1);
        let before = l.state_hash();
        while l.current_epoch().id == first.id {
            decide(&mut l, &[]);
        }
        assert_ne!(l.state_hash(), before);
        let e = l.current_epoch().clone();
        assert_eq!(e.first_block, first.last_block + 1);
        assert_eq!(
            e.last_block - e.first_block + 1,
            2 * len,
            "the new epoch has the new length"
        );
        assert_eq!(l.params().epoch_length, 2 * len);
        let c = &l.governance().history()[0];
        assert_eq!(
            (c.old, c.new, c.epoch, c.from_block),
            (len, U256::from(2 * len), e.id, e.first_block)
        );
        assert_eq!(c.position.block_number, 50);
    }

    #[test]
    fn key_rounds_follow_the_set() {
        use crate::key_state::{KeyOutcome, KeyRoundKind};
        let mut l = Ledger::genesis(
            Params {
                epoch_length: 10,
                key_phase_blocks: 2,
                ..Default::default()
            },
            vec![seq(1, 20_000), seq(2, 30_000), seq(3, 40_000), seq(4, 50_000)],
            B256::ZERO,
        )
        .unwrap();
        decide(&mut l, &[]);
        let dkg = l.keys().running.clone().expect("a DKG opens with no key");
        assert_eq!(
            (dkg.round, dkg.kind, dkg.start, dkg.last_height()),
            (0, KeyRoundKind::Dkg, 2, 7)
        );
        assert_eq!(dkg.players, vec![1, 2, 3, 4]);
        let key = alloy_primitives::Bytes::from(vec![7u8; 256]);
        let done = |players: Vec<u64>, key: &alloy_primitives::Bytes, quorum| KeyOutcome::Completed {
            group_key: key.clone(),
            quorum,
            players,
        };
        while l.height() < 6 {
            decide(&mut l, &[]);
        }
        // Only at the round's last height, and nothing changes otherwise.
        let before = l.clone();
        assert!(l.finish_key_round(6, done(vec![1, 2, 3, 4], &key, 3)).is_err());
        assert_eq!(l, before);
        l.finish_key_round(7, done(vec![1, 2, 3, 4], &key, 3)).unwrap();
        decide(&mut l, &[]);
        let k = l.keys().current.clone().unwrap();
        assert_eq!((k.round, k.quorum, k.since, k.members.len()), (0, 3, 8, 4));
        assert!(l.keys().running.is_none(), "the set is the key's members: no round");

        // Sequencer 5 joins at the boundary (block 10): a reshare from the four to the five opens.
        l.apply_l1_event(&PosTx {
            position: pos(1, 0),
            event: locked(5, 20_000),
        })
        .unwrap();
        while l.height() < 10 {
            decide(&mut l, &[]);
        }
        let r = l.keys().running.clone().expect("reshare");
        assert_eq!((r.round, r.kind, r.start), (1, KeyRoundKind::Reshare, 11));
        assert_eq!((r.dealers.len(), r.players.len()), (4, 5));
        // A reshare that changed the group key is a failure; the old key stays, and the next round opens.
        while l.height() < r.last_height() - 1 {
            decide(&mut l, &[]);
        }
        let other = alloy_primitives::Bytes::from(vec![8u8; 256]);
        l.finish_key_round(r.last_height(), done(vec![1, 2, 3, 4, 5], &other, 4))
            .unwrap();
        decide(&mut l, &[]);
        assert_eq!(l.keys().current.as_ref().unwrap().group_key, key);
        assert!(matches!(l.keys().history[1].outcome, KeyOutcome::Failed { .. }));
        let r2 = l.keys().running.clone().expect("retried");
        assert_eq!(r2.round, 2);
        // A round without an outcome expires as failed; the one after succeeds.
        while l.height() <= r2.last_height() {
            decide(&mut l, &[]);
        }
        assert!(matches!(l.keys().history[2].outcome, KeyOutcome::Failed { .. }));
        let r3 = l.keys().running.clone().expect("retried again");
        assert_eq!(r3.round, 3);
        while l.height() < r3.last_height() - 1 {
            decide(&mut l, &[]);
        }
        l.finish_key_round(r3.last_height(), done(vec![1, 2, 3, 4, 5], &key, 4))
            .unwrap();
        decide(&mut l, &[]);
        let k = l.keys().current.clone().unwrap();
        assert_eq!((k.round, k.quorum, k.members.len()), (3, 4, 5));
        assert_eq!(k.group_key, key);
        // The key state is in the state hash and survives the bytes round trip.
        assert_eq!(Ledger::from_bytes(&l.to_bytes().unwrap(), l.state_hash()).unwrap(), l);
    }

    #[test]
    fn the_last_validator_cannot_leave() {
        let mut l = Ledger::genesis(params(2), vec![seq(1, 20_000)], B256::ZERO).unwrap();
        l.apply_l1_event(&PosTx {
            position: pos(1, 0),
            event: L1Event::UnlockInit { id: 1 },
        })
        .unwrap();
        for _ in 0..6 {
            decide(&mut l, &[]);
        }
        assert_eq!(l.validators(), vec![(1, 20_000)]);
        l.apply_l1_event(&PosTx {
            position: pos(2, 0),
            event: locked(2, 20_000),
        })
        .unwrap();
        for _ in 0..2 {
            decide(&mut l, &[]);
        }
        assert_eq!(
            l.validators(),
            vec![(2, 20_000)],
            "the exit happens once someone else is there"
        );
    }

    /// Over many epochs, producers follow stake.
    #[test]
    fn producers_follow_stake_over_many_epochs() {
        let mut l = Ledger::genesis(params(1), vec![seq(1, 20_000), seq(2, 80_000)], B256::ZERO).unwrap();
        for _ in 0..4_000 {
            decide(&mut l, &[]);
        }
        let by_2 = l.epochs().iter().filter(|e| e.producer == 2).count() as f64;
        let share = by_2 / l.epochs().len() as f64;
        // Expected 0.8; 4-sigma over ~4000 draws is about 0.025.
        assert!((share - 0.8).abs() < 0.025, "share of the 80% staker: {share}");
    }
}
