//! A decision: the block goes through the PoS ledger (pure, on a copy), then block, ledger and every record
//! the block brought are committed in one store transaction through the chain, which announces the commit to
//! the signer, the poster and the RPC.

use super::{set_record, App, AppError, Candidate};
use malachitebft_app_channel::app::types::core::CommitCertificate;
use malachitebft_core_types::VoteExtensions;
use metis_keyrounds::Completed;
use metis_pos::{BlockInfo, Ledger};
use metis_storage::{encode, schema};
use metis_wire::codec::WireCertificate;
use metis_wire::types::{Height, MetisContext, ValidatorSet};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// What one decided block adds to the store beside the block: (key, value) rows.
type Rows = Vec<(String, Vec<u8>)>;

impl App {
    /// Consensus decided `cert`'s value. A block this node does not hold (it should have been stored before
    /// voting) restarts the height at finalization, and sync fetches it from the peers that committed it.
    pub(super) fn on_decided(
        &mut self,
        cert: &CommitCertificate<MetisContext>,
        extensions: &VoteExtensions<MetisContext>,
    ) -> Result<(), AppError> {
        match self.decide(cert, extensions) {
            Err(AppError::UnknownDecided(v)) => {
                warn!(
                    height = cert.height.0,
                    "decided {v} is not held here; restarting the height to sync it"
                );
                self.restart = Some(cert.height);
                Ok(())
            }
            other => other,
        }
    }

    fn decide(
        &mut self,
        cert: &CommitCertificate<MetisContext>,
        extensions: &VoteExtensions<MetisContext>,
    ) -> Result<(), AppError> {
        let decided_at = Instant::now();
        let height = cert.height;
        let Some(c) = self.candidates.remove(&cert.value_id) else {
            return Err(AppError::UnknownDecided(cert.value_id));
        };
        let Some((_, set)) = self.set.clone() else {
            return Err(AppError::Corrupt("decision without a height in progress".into()));
        };
        let round = cert.round.as_u32().unwrap_or(0);
        let (mut ledger, completed) = self.next_ledger(&c, height, round, &set)?;
        // Stored with its vote extensions: sync serves it, and Malachite refuses a certificate of a height whose
        // policy required extensions without them.
        let wire = WireCertificate::with_extensions(cert, extensions);
        let rows = self.rows(&c, height, &mut ledger, &set, &wire, completed.as_ref())?;
        let ledger = Arc::new(ledger);
        // The signer and the poster follow the chain's commits: the new key (if a round completed) and the
        // ledger, whose batch cut and reward report at this height they sign and post.
        let committed = metis_chain::Committed {
            height: height.0,
            ledger: ledger.clone(),
            decided_at,
            key: completed.as_ref().and_then(|_| self.signing_key_for(&ledger)),
            round,
            decision: self.height_started.map(|t| decided_at.saturating_duration_since(t)),
        };
        let meta: Vec<(&str, &[u8])> = rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let txs = c.executed.transactions.len();
        let (evidence, offences) = (c.evidence.clone(), c.misbehaviour.clone());
        let parameter_changes = c
            .pos_txs
            .iter()
            .filter(|t| matches!(t.event, metis_pos::L1Event::ParameterChanged { .. }))
            .count();
        // Each round before the deciding one had a proposer whose proposal did not make it.
        let missed: Vec<u64> = (0..round).map(|r| set.proposer(r).sequencer).collect();
        self.last_decision = Some(c.seen.min(Instant::now()));
        self.backend.commit_decided(c.executed, &meta, committed)?;
        let epoch_before = self.ledger.current_epoch().id;
        self.ledger = ledger;
        self.after_commit(height, set, wire, completed.as_ref());
        self.evidence_decided(height, &evidence, &offences);
        self.log_decision(cert, round, txs, epoch_before);
        self.record_metrics(height.0, round, epoch_before, &missed, parameter_changes);
        Ok(())
    }

    /// The ledger after the block: its L1 events, the key round's outcome at the round's last height, then the
    /// block itself. Also returns what a key round that completed with it gave this node.
    fn next_ledger(
        &mut self,
        c: &Candidate,
        height: Height,
        round: u32,
        set: &ValidatorSet,
    ) -> Result<(Ledger, Option<Completed>), AppError> {
        let mut ledger = Ledger::clone(&self.ledger);
        for t in &c.pos_txs {
            ledger.apply_l1_event(t)?;
            info!(
                event = t.event.name(),
                l1_block = t.position.block_number,
                log = t.position.log_index,
                "L1 event applied"
            );
        }
        // Key messages the block carries (the parent's precommit extensions); at a round's last height its
        // outcome goes into the ledger with this block.
        let mut completed = None;
        if let Some((outcome, done)) = self.keys.on_block(&self.ledger, height.0, c.last_commit.as_ref()) {
            ledger
                .finish_key_round(height.0, outcome)
                .map_err(|e| AppError::Corrupt(format!("key round: {e}")))?;
            completed = done;
        }
        ledger.apply_block(&BlockInfo {
            height: height.0,
            round,
            proposer: set.proposer(round).sequencer,
            seed: c.executed.header.mix_hash,
            timestamp: c.executed.header.timestamp,
            txs: c.executed.transactions.len() as u64,
            signers: self.parent_signers(c),
        })?;
        // Offences take effect from the next height (the block itself was proposed under the old schedule).
        ledger.apply_misbehaviour(&c.misbehaviour, c.executed.header.mix_hash)?;
        Ok((ledger, completed))
    }

    /// The validators whose precommit the block's last commit (of its parent, checked against the parent's set
    /// before voting) holds.
    fn parent_signers(&self, c: &Candidate) -> Vec<u64> {
        match (&c.last_commit, &self.head_set) {
            (Some(commit), Some(set)) => commit
                .signatures
                .iter()
                .filter_map(|(a, _, _)| set.by_address(a).map(|v| v.sequencer))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The rows the block's commit writes: the ledger (after handing its old records to the store, so the
    /// ledger written with every block stays bounded), its hash, the certificate, the validator set, the
    /// carried last commit, the PoS transactions, a new key output, a batch cut and a reward report.
    fn rows(
        &self,
        c: &Candidate,
        height: Height,
        ledger: &mut Ledger,
        set: &ValidatorSet,
        wire: &WireCertificate,
        completed: Option<&Completed>,
    ) -> Result<Rows, AppError> {
        let h = height.0;
        let history = ledger.take_history(self.history_keep);
        let mut rows = metis_chain::archive::rows(self.backend.engine().store(), &history)?;
        rows.extend([
            (schema::LEDGER.to_string(), ledger.to_bytes()?),
            (schema::LEDGER_HASH.to_string(), encode(&ledger.state_hash())?),
            (schema::cert(h), encode(wire)?),
            (schema::valset(h), encode(&set_record(set))?),
            (schema::carried(h), encode(&c.last_commit)?),
        ]);
        if !c.pos_txs.is_empty() {
            rows.push((schema::pos_txs(h), encode(&c.pos_txs)?));
        }
        rows.extend(super::evidence::evidence_rows(h, &c.evidence)?);
        if let Some(d) = completed {
            rows.push((
                schema::KEY_OUTPUT.to_string(),
                metis_keyrounds::encode_output(&d.output),
            ));
        }
        // A batch this block cut: stored with it, so the signer (now, or after a restart) derives its header.
        if let Some(cut) = ledger.batches().cut_at(h) {
            rows.push((schema::batch_cut(cut.index), encode(&(cut.first, cut.last))?));
        }
        // A reward report this block made: stored with it, for the API and the signer.
        if let Some(report) = ledger.rewards().report_at(h) {
            rows.push((schema::reward(report.batch_id), encode(report)?));
        }
        Ok(rows)
    }

    /// The new head's state: its set and certificate for the next block, the new share saved, the next key
    /// round opened, proposals and streams of this height dropped.
    fn after_commit(
        &mut self,
        height: Height,
        set: ValidatorSet,
        wire: WireCertificate,
        completed: Option<&Completed>,
    ) {
        if let (Some(d), Some(sink)) = (completed, &self.share_sink) {
            if let (Some(share), Some(k)) = (&d.share, &self.ledger.keys().current) {
                sink(k.round, share);
            }
        }
        // Applied L1 events are of no use to this node's view any more.
        self.l1.applied(self.ledger.last_l1());
        // A round the block opened starts here, so this node's first messages ride on its next precommit.
        self.keys.ensure_round(&self.ledger);
        self.head_set = Some(set);
        self.last_commit = Some(wire);
        self.candidates.clear();
        if let Some(store) = &self.proposals {
            store.prune(height);
        }
        self.inbound.after_commit(height);
        self.stream_claims.retain(|(h, _), _| *h > height);
    }

    /// The decision and the pool after it, for Prometheus (labels are sequencer ids: as many as the ledger has).
    fn record_metrics(&self, height: u64, round: u32, epoch_before: u64, missed: &[u64], parameter_changes: usize) {
        metrics::gauge!("metis_consensus_height").set(height as f64);
        metrics::gauge!("metis_consensus_round").set(f64::from(round));
        // Counters are touched even when they stay, so a scrape shows them from the first block.
        metrics::counter!("metis_rounds_above_zero_total").increment(u64::from(round > 0));
        for s in self.ledger.sequencers() {
            let n = missed.iter().filter(|id| **id == s.id).count() as u64;
            metrics::counter!("metis_missed_proposals_total", "sequencer" => s.id.to_string()).increment(n);
        }
        // Totals the ledger keeps: right after a restart too.
        let l = &self.ledger;
        metrics::counter!("metis_batches_cut_total").absolute(l.batches().next_index);
        metrics::counter!("metis_l1_events_applied_total")
            .absolute(l.archived().applied_l1.saturating_add(l.applied_l1().len() as u64));
        metrics::counter!("metis_evidence_total").absolute(l.offences().offences().len() as u64);
        metrics::counter!("metis_governance_changes_total").increment(parameter_changes as u64);
        let keys = l.keys();
        if let Some(k) = &keys.current {
            metrics::gauge!("metis_key_epoch").set(k.round as f64);
        }
        // The last key round started (running or finished).
        if let Some(r) = keys.next_round.checked_sub(1) {
            metrics::gauge!("metis_key_round").set(r as f64);
        }
        if let Some(t) = self.height_started {
            metrics::histogram!("metis_decision_seconds").record(t.elapsed().as_secs_f64());
        }
        let e = self.ledger.current_epoch();
        metrics::gauge!("metis_epoch").set(e.id as f64);
        metrics::gauge!("metis_producer_id").set(e.producer as f64);
        let reelected = e.id != epoch_before && matches!(e.reason, metis_pos::ElectionReason::ReElection { .. });
        metrics::counter!("metis_reelections_total").increment(u64::from(reelected));
        let validators = self.ledger.validators();
        metrics::gauge!("metis_validators").set(validators.len() as f64);
        for (id, power) in validators {
            metrics::gauge!("metis_voting_power", "sequencer" => id.to_string()).set(power as f64);
        }
        for s in self.ledger.sequencers() {
            let jailed = s.l1_jailed || s.jailed_until_epoch > e.id;
            metrics::gauge!("metis_jailed", "sequencer" => s.id.to_string()).set(if jailed { 1.0 } else { 0.0 });
        }
    }

    fn log_decision(&self, cert: &CommitCertificate<MetisContext>, round: u32, txs: usize, epoch_before: u64) {
        let e = self.ledger.current_epoch();
        if e.id != epoch_before {
            if let Some(change) = self.ledger.set_changes().last().filter(|c| c.epoch == e.id) {
                info!(
                    epoch = e.id,
                    joined = ?change.joined,
                    left = ?change.left,
                    reweighted = ?change.reweighted,
                    validators = ?self.ledger.validators(),
                    "validator set changed"
                );
            }
            info!(
                epoch = e.id,
                producer = e.producer,
                reason = ?e.reason,
                first_block = e.first_block,
                "new epoch"
            );
        }
        let proposer = self.head_set.as_ref().map(|s| s.proposer(round).sequencer);
        info!(
            round,
            proposer,
            txs,
            signatures = cert.commit_signatures.len(),
            elapsed_ms = self
                .height_started
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or_default(),
            "decided {}",
            cert.value_id
        );
    }
}
