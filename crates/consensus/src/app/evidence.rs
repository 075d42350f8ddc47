//! Accountability in the app: equivocation evidence from Malachite (double votes and double proposals it saw,
//! handed over with each finalized height) is verified and kept in a bounded pool; a proposer puts what the
//! ledger would still take into its block; validators check every item before voting ([`misbehaviour_of`]);
//! the decision hands the offences to the ledger, which jails and asks L1 for a slash.

use super::validate::Invalid;
use super::{set_record_to_set, App, AppError};
use malachitebft_core_consensus::MisbehaviorEvidence;
use metis_pos::{Ledger, Misbehaviour};
use metis_storage::schema;
use metis_wire::block::MAX_EVIDENCE_PER_BLOCK;
use metis_wire::evidence::{Evidence, SignedProposalRecord, SignedVoteRecord};
use metis_wire::types::{Address, Height, MetisContext, ValidatorSet};
use std::collections::BTreeSet;
use tracing::{debug, info, warn};

/// Evidence items waiting for a block at most (beyond, new items are dropped until some are included or expire).
pub(super) const MAX_PENDING_EVIDENCE: usize = 64;

/// Why a block's evidence is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceInvalid {
    #[error("evidence {index}: {reason}")]
    Proof { index: usize, reason: String },
    #[error("evidence {index}: the offender was not a validator at height {height}")]
    NotAValidator { index: usize, height: u64 },
    #[error("evidence {index}: {reason}")]
    Inadmissible {
        index: usize,
        reason: metis_pos::Inadmissible,
    },
    #[error("evidence {index}: a second item against sequencer {sequencer} in one block")]
    SameOffender { index: usize, sequencer: u64 },
    #[error("more than {MAX_EVIDENCE_PER_BLOCK} evidence items")]
    TooMany,
}

/// What the ledger takes from a block's evidence: every item proven (both signatures under the offender's
/// key), its offender a validator of that height (`offender` resolves it to its sequencer id through that
/// height's set), admissible to `ledger`, at most one per offender.
pub fn misbehaviour_of(
    evidence: &[Evidence],
    ledger: &Ledger,
    offender: &dyn Fn(&Evidence) -> Option<u64>,
) -> Result<Vec<Misbehaviour>, EvidenceInvalid> {
    if evidence.len() > MAX_EVIDENCE_PER_BLOCK {
        return Err(EvidenceInvalid::TooMany);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(evidence.len());
    for (index, e) in evidence.iter().enumerate() {
        e.verify().map_err(|err| EvidenceInvalid::Proof {
            index,
            reason: err.to_string(),
        })?;
        let sequencer = offender(e).ok_or(EvidenceInvalid::NotAValidator {
            index,
            height: e.height().0,
        })?;
        if !seen.insert(sequencer) {
            return Err(EvidenceInvalid::SameOffender { index, sequencer });
        }
        let m = e.misbehaviour(sequencer).map_err(|err| EvidenceInvalid::Proof {
            index,
            reason: err.to_string(),
        })?;
        ledger
            .admissible(&m)
            .map_err(|reason| EvidenceInvalid::Inadmissible { index, reason })?;
        out.push(m);
    }
    Ok(out)
}

/// Malachite's evidence as ours: each conflicting pair it recorded, whatever its form (a pair that is not a
/// conflict after all is dropped with a warning).
fn from_malachite(ev: &MisbehaviorEvidence<MetisContext>) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (_, pairs) in &ev.votes {
        for (a, b) in pairs {
            let rec = |v: &malachitebft_core_types::SignedVote<MetisContext>| SignedVoteRecord {
                vote: v.message.clone(),
                signature: v.signature.clone(),
            };
            match Evidence::double_vote(rec(a), rec(b)) {
                Ok(e) => out.push(e),
                Err(err) => warn!(error = %err, "Malachite's double vote is not one"),
            }
        }
    }
    for (_, pairs) in &ev.proposals {
        for (a, b) in pairs {
            let rec = |p: &malachitebft_core_types::SignedProposal<MetisContext>| SignedProposalRecord {
                proposal: p.message.clone(),
                signature: p.signature.clone(),
            };
            match Evidence::double_proposal(rec(a), rec(b)) {
                Ok(e) => out.push(e),
                Err(err) => warn!(error = %err, "Malachite's double proposal is not one"),
            }
        }
    }
    out
}

impl App {
    /// Keeps the equivocation Malachite saw in a finalized height (verified first; a forged pair changes
    /// nothing).
    pub(super) fn take_evidence(&mut self, ev: &MisbehaviorEvidence<MetisContext>) {
        for e in from_malachite(ev) {
            self.add_evidence(e);
        }
    }

    /// Keeps verified evidence for the next block and passes it on to the peers; false if it was not new (or did
    /// not fit).
    pub(super) fn add_evidence(&mut self, e: Evidence) -> bool {
        if let Err(err) = e.verify() {
            warn!(error = %err, offender = %e.offender(), "evidence does not verify; dropped");
            return false;
        }
        let (Ok(hash), Ok(bytes)) = (e.hash(), e.to_bytes()) else {
            return false;
        };
        if self.evidence.contains_key(&hash) {
            return false;
        }
        if self.evidence.len() >= MAX_PENDING_EVIDENCE {
            warn!(offender = %e.offender(), "evidence pool full; dropped");
            return false;
        }
        if let Some(hub) = &self.evidence_hub {
            hub.publish(bytes);
        }
        warn!(
            offender = %e.offender(),
            evidence_height = e.height().0,
            round = %e.round(),
            kind = ?e.kind(),
            "equivocation seen: evidence kept for the next block"
        );
        self.evidence.insert(hash, e);
        true
    }

    /// Evidence a peer sent over the gossip links: kept (and passed on) when it proves an equivocation by a
    /// validator of its height that the ledger still takes. A forged or malformed item costs the peer its link
    /// budget ([`metis_net::EvidenceHub::penalize`]); an item that is only no longer admissible (spent, too old,
    /// its offender already jailed) or of a height this node has not reached is dropped without blame, as an
    /// honest peer may send it a moment early or late.
    pub(super) fn on_peer_evidence(&mut self, peer: metis_net::Peer, items: Vec<Vec<u8>>) {
        let next = self.set.as_ref().map(|(h, _)| *h).unwrap_or_else(|| self.next_height());
        for bytes in items {
            let refused = match Evidence::from_bytes(&bytes) {
                Err(err) => Some(err.to_string()),
                // The canonical bytes only: another encoding of the same pair would have another hash.
                Ok(e) if e.to_bytes().ok().as_deref() != Some(bytes.as_slice()) => {
                    Some("not in its canonical encoding".into())
                }
                Ok(e) => match misbehaviour_of(std::slice::from_ref(&e), &self.ledger, &|e| self.offender(e)) {
                    Ok(_) => {
                        self.add_evidence(e);
                        None
                    }
                    Err(err @ EvidenceInvalid::Proof { .. }) => Some(err.to_string()),
                    Err(err @ EvidenceInvalid::NotAValidator { .. }) if e.height() <= next => Some(err.to_string()),
                    Err(err) => {
                        debug!(reason = %err, "peer's evidence not taken (no fault of the peer)");
                        None
                    }
                },
            };
            if let Some(reason) = refused {
                warn!(%reason, "peer sent evidence that does not hold; its link budget is charged");
                if let Some(hub) = &self.evidence_hub {
                    hub.penalize(peer, std::time::Instant::now());
                }
            }
        }
    }

    /// The evidence this node's next block carries (pooled items the ledger still takes, one per offender) and
    /// the offences it proves. Items the ledger will never take (spent, too old, not a validator) leave the
    /// pool.
    pub(super) fn includable_evidence(&mut self) -> (Vec<Evidence>, Vec<Misbehaviour>) {
        let mut out = Vec::new();
        let mut offences = Vec::new();
        let mut offenders = BTreeSet::new();
        let mut spent = Vec::new();
        for (hash, e) in &self.evidence {
            match misbehaviour_of(std::slice::from_ref(e), &self.ledger, &|e| self.offender(e)) {
                Ok(mut m) if out.len() < MAX_EVIDENCE_PER_BLOCK && offenders.insert(m[0].sequencer) => {
                    out.push(e.clone());
                    offences.append(&mut m);
                }
                Ok(_) => {}
                Err(err) => {
                    info!(offender = %e.offender(), reason = %err, "evidence no longer includable; dropped");
                    spent.push(*hash);
                }
            }
        }
        for h in spent {
            self.evidence.remove(&h);
        }
        (out, offences)
    }

    /// Why this node will not vote for a block by `proposer` that proves `misbehaviour`: it holds includable
    /// evidence against the proposer itself, and the block leaves it out. A scheduled producer could otherwise
    /// keep its own jail out of the chain for a whole epoch; refused here, the round goes to a fallback proposer,
    /// which includes it. (Evidence against others may be left out: a block has room for 8 offences.)
    pub(super) fn withheld_evidence(&self, proposer: Address, misbehaviour: &[Misbehaviour]) -> Option<Invalid> {
        // Evidence of the height being decided cannot be in that height's block: only earlier heights count.
        let deciding = self.set.as_ref().map(|(h, _)| *h)?;
        let e = self
            .evidence
            .values()
            .find(|e| e.offender() == proposer && e.height() < deciding)?;
        let m = misbehaviour_of(std::slice::from_ref(e), &self.ledger, &|e| self.offender(e)).ok()?;
        let id = m.first()?.sequencer;
        if misbehaviour.iter().any(|m| m.sequencer == id) {
            return None;
        }
        Some(Invalid::WithheldEvidence {
            kind: e.kind(),
            height: e.height().0,
        })
    }

    /// The sequencer id of `e`'s offender, if it was a validator at the evidence's height.
    pub(super) fn offender(&self, e: &Evidence) -> Option<u64> {
        let h = e.height();
        let set = self.set_at(h)?;
        set.by_address(&e.offender()).map(|v| v.sequencer)
    }

    /// The validator set of height `h`: the one being decided, or the stored one of a decided height.
    fn set_at(&self, h: Height) -> Option<ValidatorSet> {
        if let Some((deciding, set)) = &self.set {
            if *deciding == h {
                return Some(set.clone());
            }
        }
        let engine = self.backend.engine();
        let record = engine.store().get(&schema::valset(h.0)).ok()??;
        set_record_to_set(&record).ok()
    }

    /// The block's evidence is in: out of the pool, and the offences logged.
    pub(super) fn evidence_decided(&mut self, height: Height, evidence: &[Evidence], offences: &[Misbehaviour]) {
        for e in evidence {
            if let Ok(h) = e.hash() {
                self.evidence.remove(&h);
            }
        }
        for m in offences {
            warn!(
                sequencer = m.sequencer,
                offence_height = m.height,
                kind = ?m.kind,
                evidence = %m.evidence,
                included = height.0,
                "offence punished: sequencer jailed, slash requested"
            );
        }
    }
}

/// The stored rows of a block's evidence (none if it carried none).
pub(super) fn evidence_rows(h: u64, evidence: &[Evidence]) -> Result<Option<(String, Vec<u8>)>, AppError> {
    if evidence.is_empty() {
        return Ok(None);
    }
    let bytes: Vec<Vec<u8>> = evidence
        .iter()
        .map(|e| {
            e.to_bytes()
                .map_err(|err| AppError::Corrupt(format!("evidence: {err}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some((schema::evidence_at(h), metis_storage::encode(&bytes)?)))
}

/// A block's stored evidence.
pub(super) fn stored_evidence(store: &metis_storage::Store, h: u64) -> Result<Vec<Evidence>, AppError> {
    let Some(bytes) = store.get::<Vec<Vec<u8>>>(&schema::evidence_at(h))? else {
        return Ok(Vec::new());
    };
    bytes
        .iter()
        .map(|b| Evidence::from_bytes(b).map_err(|_| AppError::Corrupt(schema::evidence_at(h))))
        .collect()
}
