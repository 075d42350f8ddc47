//! The rules a proposed block must meet before this node votes for it. [`check`] is a pure function of the
//! block, the height's validator set, the parent, the ledger, this node's L1 view and the clock (all passed
//! in); re-execution by the engine comes after it ([`App::validate`]).

use super::evidence::{misbehaviour_of, EvidenceInvalid};
use super::{now_secs, App, Candidate};
use alloy_primitives::B256;
use malachitebft_app_channel::app::types::core::{Round, Validity};
use metis_execution::executor::ExecutedBlock;
use metis_pos::{L1Source, Ledger, Misbehaviour, PosTx};
use metis_wire::block::{commit_digest, extra_data, verify_commit, BlockData};
use metis_wire::types::{Address, BlockHash, Height, ValidatorSet};
use std::time::Instant;
use tracing::{debug, warn};

/// How far ahead of the wall clock a block's timestamp may be.
pub const MAX_FUTURE_DRIFT_SECS: u64 = 15;

/// What a block for `height` is checked against.
pub struct Rules<'a> {
    pub height: Height,
    /// The validators of `height` and their proposer schedule.
    pub set: &'a ValidatorSet,
    /// The set that decided the parent (None before the first block).
    pub parent_set: Option<&'a ValidatorSet>,
    pub parent_hash: B256,
    pub parent_timestamp: u64,
    /// The ledger after the parent.
    pub ledger: &'a Ledger,
    /// This node's own view of L1.
    pub l1: &'a dyn L1Source,
    /// The sequencer id of an evidence item's offender, if it was a validator at the evidence's height.
    pub offender: &'a dyn Fn(&metis_wire::evidence::Evidence) -> Option<u64>,
    /// The wall clock, in seconds, for a proposal this node votes on; none for a block sync brings with its
    /// commit certificate (the pool decided it: a rule of this node's clock is a vote rule, and a node whose
    /// clock is off must still follow the chain).
    pub now_secs: Option<u64>,
}

/// How a block reached this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Proposed for the height in progress: this node's vote depends on the verdict.
    Proposal,
    /// Synced from a peer, decided already (Malachite has checked its certificate).
    Synced,
}

/// Why a proposal is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("no height in progress")]
    NoHeight,
    #[error("for height {height}, deciding {deciding}")]
    OtherHeight { height: Height, deciding: Height },
    #[error("proposer {proposer} is not scheduled for round {round} ({scheduled})")]
    NotScheduled {
        proposer: Address,
        round: Round,
        scheduled: Address,
    },
    #[error("block number {number} at height {height}")]
    Number { number: u64, height: Height },
    #[error("extra data is not our ledger hash {0} and the root of the block's PoS transactions")]
    ExtraData(B256),
    #[error("PoS transaction {index} ({event} at L1 block {block} log {log}) is not in this node's L1 view")]
    UnknownPosTx {
        index: usize,
        event: &'static str,
        block: u64,
        log: u64,
    },
    #[error("PoS transactions are not the next L1 events in order")]
    PosTxOrder,
    #[error("last commit missing or unexpected")]
    LastCommitPresence,
    #[error("last commit: {0}")]
    LastCommit(String),
    #[error("mix hash {got} is not the last-commit digest {expected}")]
    MixHash { got: B256, expected: B256 },
    #[error("beneficiary {got} is not the signer of a sequencer that may have built this block ({expected:?})")]
    Beneficiary {
        got: alloy_primitives::Address,
        expected: Vec<alloy_primitives::Address>,
    },
    #[error("the scheduled proposer {0} is not a sequencer of the ledger")]
    UnknownProposer(u64),
    #[error("timestamp {0} is in the future")]
    Future(u64),
    #[error("{0}")]
    Evidence(#[from] EvidenceInvalid),
    #[error("the proposer leaves out evidence against itself ({kind:?} at height {height}) that this node holds")]
    WithheldEvidence { kind: metis_pos::OffenceKind, height: u64 },
    #[error("{0}")]
    Encoding(String),
    #[error("{0}")]
    Execution(String),
}

/// The rounds whose proposer may have built a block, and so be its beneficiary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    /// A fresh proposal (no POL round): built by the proposer of the round it is proposed in.
    ThisRound,
    /// A value proposed again in a later round (Tendermint's valid value, with its POL round) or decided (a
    /// synced block, at its certificate's round): built by the proposer of the round it was first proposed in,
    /// any round up to this one. Refusing it for its beneficiary would leave the validators locked on it
    /// voting against everyone else's proposals, and the height would never be decided.
    UpTo(Round),
}

impl Builder {
    /// For a proposal with POL round `pol_round`.
    pub fn of_proposal(pol_round: Round) -> Self {
        match pol_round {
            Round::Some(_) => Builder::UpTo(pol_round),
            Round::Nil => Builder::ThisRound,
        }
    }
}

/// The signers of the sequencers that may have built a block proposed in `round`.
fn builders(r: &Rules<'_>, round: u32, builder: Builder) -> Result<Vec<alloy_primitives::Address>, Invalid> {
    let rounds = match builder {
        Builder::ThisRound => round..=round,
        // The schedule repeats after one round per validator: later rounds add nobody.
        Builder::UpTo(up_to) => {
            let n = u32::try_from(r.set.validators().len()).unwrap_or(u32::MAX);
            0..=up_to.as_u32().unwrap_or(0).min(n)
        }
    };
    let mut out = Vec::new();
    for k in rounds {
        let id = r.set.proposer(k).sequencer;
        let signer = r
            .ledger
            .sequencer(id)
            .map(|s| s.signer)
            .ok_or(Invalid::UnknownProposer(id))?;
        if !out.contains(&signer) {
            out.push(signer);
        }
    }
    Ok(out)
}

/// Everything about a proposal for `r.height` by `proposer` in `round` but its execution; the offences its
/// evidence proves.
pub fn check(
    r: &Rules<'_>,
    round: Round,
    builder: Builder,
    proposer: Address,
    data: &BlockData,
) -> Result<Vec<Misbehaviour>, Invalid> {
    let scheduled = r.set.proposer(round.as_u32().unwrap_or(0));
    if scheduled.address != proposer {
        return Err(Invalid::NotScheduled {
            proposer,
            round,
            scheduled: scheduled.address,
        });
    }
    let h = &data.header;
    if h.number != r.height.0 {
        return Err(Invalid::Number {
            number: h.number,
            height: r.height,
        });
    }
    let ledger_hash = r.ledger.state_hash();
    let expected =
        extra_data(ledger_hash, &data.pos_txs, &data.evidence).map_err(|e| Invalid::Encoding(e.to_string()))?;
    if h.extra_data.as_ref() != expected.as_slice() {
        return Err(Invalid::ExtraData(ledger_hash));
    }
    check_pos_txs(r, &data.pos_txs)?;
    let misbehaviour = misbehaviour_of(&data.evidence, r.ledger, r.offender)?;
    match (&data.last_commit, r.parent_set) {
        (None, None) if r.height.0 == 1 => {}
        (Some(c), Some(set)) => {
            verify_commit(c, r.height.0 - 1, r.parent_hash, set).map_err(|e| Invalid::LastCommit(e.to_string()))?
        }
        _ => return Err(Invalid::LastCommitPresence),
    }
    let digest = commit_digest(r.height.0, r.parent_hash, data.last_commit.as_ref());
    if h.mix_hash != digest {
        return Err(Invalid::MixHash {
            got: h.mix_hash,
            expected: digest,
        });
    }
    let builders = builders(r, round.as_u32().unwrap_or(0), builder)?;
    if !builders.contains(&h.beneficiary) {
        return Err(Invalid::Beneficiary {
            got: h.beneficiary,
            expected: builders,
        });
    }
    let future = |now: u64| h.timestamp > now.saturating_add(MAX_FUTURE_DRIFT_SECS);
    // The parent's own timestamp is always acceptable (sub-second blocks share one); a later one must not be
    // ahead of this node's clock.
    if h.timestamp > r.parent_timestamp && r.now_secs.is_some_and(future) {
        return Err(Invalid::Future(h.timestamp));
    }
    Ok(misbehaviour)
}

/// A block's PoS transactions must be exactly the next L1 events after the ledger's cursor, as this node's
/// own L1 view has them: none altered, unknown, reordered, or skipped (a skipped event could never be
/// applied after a later one).
fn check_pos_txs(r: &Rules<'_>, pos_txs: &[PosTx]) -> Result<(), Invalid> {
    if pos_txs.is_empty() {
        return Ok(());
    }
    for (index, t) in pos_txs.iter().enumerate() {
        if !r.l1.confirms(t) {
            return Err(Invalid::UnknownPosTx {
                index,
                event: t.event.name(),
                block: t.position.block_number,
                log: t.position.log_index,
            });
        }
    }
    if r.l1.next_events(r.ledger.last_l1(), pos_txs.len()).as_slice() != pos_txs {
        return Err(Invalid::PosTxOrder);
    }
    Ok(())
}

impl App {
    /// Checks a block for the next height in `round` by `proposer` (first seen at `seen`), and keeps it if
    /// valid, so a decision on it can be committed. Returns its hash and verdict.
    pub(super) fn validate(
        &mut self,
        height: Height,
        (round, builder): (Round, Builder),
        proposer: Address,
        data: BlockData,
        encoded: Vec<u8>,
        (seen, origin): (Instant, Origin),
    ) -> (BlockHash, Validity) {
        let hash = BlockHash(data.header.hash_slow().0);
        if let Some(c) = self.candidates.get(&hash) {
            return (hash, c.validity);
        }
        let started = Instant::now();
        let txs = data.txs.len();
        let last_commit = data.last_commit.clone();
        let pos_txs = data.pos_txs.clone();
        let evidence = data.evidence.clone();
        // Withheld evidence is a vote rule too: a decided block is taken whatever this node holds.
        let checked = tokio::task::block_in_place(|| self.check(height, (round, builder), proposer, data, origin))
            .and_then(
                |(executed, misbehaviour)| match (origin, self.withheld_evidence(proposer, &misbehaviour)) {
                    (Origin::Proposal, Some(reason)) => Err(reason),
                    _ => Ok((executed, misbehaviour)),
                },
            );
        match checked {
            Ok((executed, misbehaviour)) => {
                debug!(
                    round = %round,
                    %proposer,
                    txs,
                    exec_ms = started.elapsed().as_millis() as u64,
                    "valid proposal {hash}"
                );
                // What the propose timeout must cover: from this round's start to here, proposal checked.
                if let Some((h, r, at)) = self.round_started {
                    if h == height && r == round && proposer != self.address {
                        self.proposal_delay.observe(executed.header.gas_used, at.elapsed());
                    }
                }
                let c = Candidate {
                    executed,
                    pos_txs,
                    evidence,
                    misbehaviour,
                    last_commit,
                    encoded,
                    round,
                    proposer,
                    validity: Validity::Valid,
                    seen,
                };
                if let Err(e) = self.keep(height, hash, c) {
                    warn!(error = %e, "not voting for a block this node cannot store");
                    self.failed = Some(e);
                    return (hash, Validity::Invalid);
                }
                (hash, Validity::Valid)
            }
            Err(reason) => {
                warn!(round = %round, %proposer, %reason, "invalid proposal {hash}");
                (hash, Validity::Invalid)
            }
        }
    }

    /// The rules of the height in progress, then re-execution on the head; the offences the block proves.
    fn check(
        &self,
        height: Height,
        (round, builder): (Round, Builder),
        proposer: Address,
        data: BlockData,
        origin: Origin,
    ) -> Result<(ExecutedBlock, Vec<Misbehaviour>), Invalid> {
        let Some((deciding, set)) = &self.set else {
            return Err(Invalid::NoHeight);
        };
        if *deciding != height {
            return Err(Invalid::OtherHeight {
                height,
                deciding: *deciding,
            });
        }
        // Offenders resolved before the engine is locked (older sets are read from the store).
        let offenders: Vec<Option<u64>> = data.evidence.iter().map(|e| self.offender(e)).collect();
        let offender = |e: &metis_wire::evidence::Evidence| {
            let i = data.evidence.iter().position(|x| x == e)?;
            offenders.get(i).copied().flatten()
        };
        let engine = self.backend.engine();
        let rules = Rules {
            height,
            set,
            parent_set: self.head_set.as_ref(),
            parent_hash: engine.head_hash(),
            parent_timestamp: engine.head().timestamp,
            ledger: &self.ledger,
            l1: self.l1.as_ref(),
            offender: &offender,
            now_secs: (origin == Origin::Proposal).then(now_secs),
        };
        let misbehaviour = check(&rules, round, builder, proposer, &data)?;
        let executed = engine
            .validate(&data.header, data.txs)
            .map_err(|e| Invalid::Execution(e.to_string()))?;
        Ok((executed, misbehaviour))
    }

    /// Whether this node's L1 view holds every one of `pos_txs` (same event, same position, same block).
    pub(super) fn l1_view_has(&self, pos_txs: &[PosTx]) -> bool {
        pos_txs.iter().all(|t| self.l1.confirms(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::validator_set;
    use alloy_consensus::Header;
    use alloy_primitives::{keccak256, U256};
    use metis_pos::{L1Event, L1Position, NoL1, Params, Sequencer, SequencerStatus};

    fn sequencer(id: u64) -> Sequencer {
        let key = ed25519_dalek::SigningKey::from_bytes(&keccak256(format!("validate{id}")).0);
        Sequencer {
            id,
            signer: alloy_primitives::Address::with_last_byte(id as u8),
            consensus_key: B256::from(key.verifying_key().to_bytes()),
            dkg_key: keccak256(format!("dkg{id}")),
            stake: U256::from(1000u64 + id) * U256::from(10u64).pow(U256::from(18)),
            status: SequencerStatus::Active,
            jailed_until_epoch: 0,
            l1_jailed: false,
        }
    }

    struct Fixture {
        ledger: Ledger,
        set: ValidatorSet,
        parent: B256,
    }

    fn fixture() -> Fixture {
        let ledger = Ledger::genesis(
            Params::default(),
            (1..=3).map(sequencer).collect(),
            B256::repeat_byte(7),
        )
        .expect("genesis");
        let set = validator_set(&ledger).expect("set");
        Fixture {
            ledger,
            set,
            parent: B256::repeat_byte(1),
        }
    }

    fn rules<'a>(f: &'a Fixture, l1: &'a dyn L1Source) -> Rules<'a> {
        Rules {
            height: Height(1),
            set: &f.set,
            parent_set: None,
            parent_hash: f.parent,
            parent_timestamp: 1_000,
            ledger: &f.ledger,
            l1,
            offender: &|_| None,
            now_secs: Some(1_001),
        }
    }

    /// The block the scheduled round-0 proposer would build at height 1.
    fn block(f: &Fixture) -> (Address, BlockData) {
        let proposer = f.set.proposer(0);
        let signer = f.ledger.sequencer(proposer.sequencer).expect("proposer").signer;
        let header = Header {
            number: 1,
            parent_hash: f.parent,
            timestamp: 1_001,
            beneficiary: signer,
            extra_data: extra_data(f.ledger.state_hash(), &[], &[]).expect("extra").into(),
            mix_hash: commit_digest(1, f.parent, None),
            ..Default::default()
        };
        let data = BlockData {
            header,
            txs: vec![],
            pos_txs: vec![],
            evidence: vec![],
            last_commit: None,
        };
        (proposer.address, data)
    }

    #[test]
    fn the_scheduled_proposers_block_passes() {
        let f = fixture();
        let (proposer, data) = block(&f);
        assert_eq!(
            check(&rules(&f, &NoL1), Round::new(0), Builder::ThisRound, proposer, &data),
            Ok(vec![])
        );
    }

    /// Found by the chaos suite: the round-0 block got a polka while its proposer was being cut off, two
    /// validators locked on it, and the round-2 proposer proposed it again (POL round 0). A validator that did
    /// not see round 0 refused it for its beneficiary (the round-0 proposer), prevoted nil forever against the
    /// locked two, and the height was never decided.
    #[test]
    fn a_value_proposed_again_keeps_the_beneficiary_of_the_round_that_built_it() {
        let f = fixture();
        let r = rules(&f, &NoL1);
        let (_, built_in_round_0) = block(&f);
        let again = f.set.proposer(2).address;
        assert_eq!(
            check(
                &r,
                Round::new(2),
                Builder::of_proposal(Round::new(0)),
                again,
                &built_in_round_0
            ),
            Ok(vec![])
        );
        // As a fresh proposal of round 2 it is not that proposer's block.
        assert!(matches!(
            check(
                &r,
                Round::new(2),
                Builder::of_proposal(Round::Nil),
                again,
                &built_in_round_0
            ),
            Err(Invalid::Beneficiary { .. })
        ));
        // A synced block decided in a later round, built in round 0.
        let decided_in = f.set.proposer(1).address;
        assert_eq!(
            check(
                &r,
                Round::new(1),
                Builder::UpTo(Round::new(1)),
                decided_in,
                &built_in_round_0
            ),
            Ok(vec![])
        );
        // A beneficiary no round up to the POL round scheduled is refused: here the round-2 proposer's signer on
        // a value first proposed in round 1 at the latest.
        let mut later = built_in_round_0.clone();
        let round2 = f
            .ledger
            .sequencer(f.set.proposer(2).sequencer)
            .expect("sequencer")
            .signer;
        assert!(f.set.proposer(0).sequencer != f.set.proposer(2).sequencer);
        later.header.beneficiary = round2;
        assert!(matches!(
            check(
                &r,
                Round::new(3),
                Builder::of_proposal(Round::new(1)),
                f.set.proposer(3).address,
                &later
            ),
            Err(Invalid::Beneficiary { .. })
        ));
    }

    #[test]
    fn a_block_off_the_rules_is_refused_for_its_reason() {
        let f = fixture();
        let r = rules(&f, &NoL1);
        let (proposer, good) = block(&f);
        let other = f.set.proposer(1).address;
        assert!(matches!(
            check(&r, Round::new(0), Builder::ThisRound, other, &good),
            Err(Invalid::NotScheduled { .. })
        ));
        // Round 1 belongs to the first fallback, not to the round-0 proposer.
        assert!(matches!(
            check(&r, Round::new(1), Builder::ThisRound, proposer, &good),
            Err(Invalid::NotScheduled { .. })
        ));
        let spoil = |edit: &dyn Fn(&mut BlockData)| {
            let mut d = good.clone();
            edit(&mut d);
            check(&r, Round::new(0), Builder::ThisRound, proposer, &d)
        };
        assert!(matches!(spoil(&|d| d.header.number = 2), Err(Invalid::Number { .. })));
        assert!(matches!(
            spoil(&|d| d.header.extra_data = vec![0u8; 64].into()),
            Err(Invalid::ExtraData(_))
        ));
        assert!(matches!(
            spoil(&|d| d.header.mix_hash = B256::ZERO),
            Err(Invalid::MixHash { .. })
        ));
        assert!(matches!(
            spoil(&|d| d.header.beneficiary = alloy_primitives::Address::repeat_byte(9)),
            Err(Invalid::Beneficiary { .. })
        ));
        assert!(matches!(
            spoil(&|d| d.header.timestamp = 1_001 + MAX_FUTURE_DRIFT_SECS + 1),
            Err(Invalid::Future(_))
        ));
        // The parent's own timestamp (several sub-second blocks in one second) passes.
        assert!(spoil(&|d| d.header.timestamp = 1_000).is_ok());
        // A decided block from sync is not held to this node's clock.
        let synced = Rules {
            now_secs: None,
            ..rules(&f, &NoL1)
        };
        let mut ahead = good.clone();
        ahead.header.timestamp = 1_001 + MAX_FUTURE_DRIFT_SECS + 1;
        assert!(!matches!(
            check(&synced, Round::new(0), Builder::ThisRound, proposer, &ahead),
            Err(Invalid::Future(_))
        ));
        // A first block carrying a last commit, or a later block without one.
        let later = Rules {
            height: Height(2),
            ..rules(&f, &NoL1)
        };
        let mut second = good.clone();
        second.header.number = 2;
        assert_eq!(
            check(&later, Round::new(0), Builder::ThisRound, proposer, &second),
            Err(Invalid::LastCommitPresence)
        );
    }

    #[test]
    fn pos_transactions_must_be_in_this_nodes_l1_view() {
        let f = fixture();
        let (proposer, mut data) = block(&f);
        let tx = PosTx {
            position: L1Position {
                block_number: 5,
                block_hash: B256::repeat_byte(5),
                tx_index: 0,
                log_index: 0,
                tx_hash: B256::repeat_byte(6),
            },
            event: L1Event::SetMaxLock {
                amount: U256::from(1u64),
            },
        };
        data.pos_txs = vec![tx];
        data.header.extra_data = extra_data(f.ledger.state_hash(), &data.pos_txs, &[])
            .expect("extra")
            .into();
        assert!(matches!(
            check(&rules(&f, &NoL1), Round::new(0), Builder::ThisRound, proposer, &data),
            Err(Invalid::UnknownPosTx { index: 0, .. })
        ));
    }
}
