//! The parameters of each height and when it starts.

use super::{now_secs, validator_set, App, AppError};
use malachitebft_app_channel::app::engine::host::{HeightParams, Next};
use malachitebft_app_channel::app::types::core::{CommitCertificate, LinearTimeouts};
use malachitebft_core_types::{VoteExtensionPolicy, VoteExtensions};
use metis_wire::codec::WireCertificate;
use metis_wire::types::{Height, MetisContext};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::debug;

/// The least gas a transaction uses (a plain transfer).
const MIN_TX_GAS: u64 = 21_000;

/// How long Malachite collects precommits after deciding a height this node starts at `start`, given when the
/// height's block is due (`due`: first broadcast by its proposer, as far as this node can tell): until three
/// quarters of a block time after that, and never longer than three quarters of a block time. Malachite counts
/// the window from each node's own height start, so a fixed window kept a node that started a height late (it
/// had caught up a moment before) just as late at every height, and when its turn to propose came the others had
/// timed it out (CI, 2026-12-07: a node 0.5 s behind for four heights cost its producer a round). Counted from
/// the shared moment, a late node finalizes at once and starts the next height in step.
fn collect_window(block_time: Duration, due: Option<Instant>, start: Instant) -> Duration {
    let window = block_time.saturating_mul(3) / 4;
    match due.and_then(|d| d.checked_add(window)) {
        Some(end) => end.saturating_duration_since(start).min(window),
        None => window,
    }
}

impl App {
    /// Parameters of `height`, which starts at `start`. Pacing is done here, not by Malachite's target time:
    /// that counts from each node's own height start, so a node that once started late (or early) stays out
    /// of phase with the others, and out-of-phase timeouts slow every failover.
    pub(super) fn params(&mut self, height: Height, start: Instant) -> Result<HeightParams<MetisContext>, AppError> {
        let set = validator_set(&self.ledger)?;
        self.set = Some((height, set.clone()));
        self.height_started = Some(start);
        // Malachite goes on collecting precommits after the decision, so the commit the next block carries holds
        // the late ones too, not just the fastest quorum: downtime counts who is missing from it, and while a key
        // round runs every precommit carries this node's key messages (possibly none). The pacing (`next_start`)
        // still decides when the next height starts; a node catching up does not wait.
        let keys = self.ledger.keys().running.is_some();
        let collect = ((keys || self.ledger.params().downtime_window > 0) && !self.behind()).then(|| {
            collect_window(
                self.timing.block_time,
                self.block_due(height),
                start.max(Instant::now()),
            )
        });
        let policy = if keys {
            VoteExtensionPolicy::Required
        } else {
            VoteExtensionPolicy::Disabled
        };
        Ok(HeightParams::new(set, self.propose_timeouts(), collect).with_vote_extension_policy(policy))
    }

    /// The configured timeouts, with the propose timeout stretched for the block this height will likely carry
    /// (see `pacing`): what the mempool holds, plus 21,000 gas (the least a transaction uses) for each
    /// transaction gossip brought that admission has not got through yet, plus as much again as arrived during
    /// the last height (the proposer builds a little later and gossip reaches it first, so at the start of a
    /// burst this node's mempool trails the block it will be asked to check), at least the last block's gas, at
    /// most the limit.
    fn propose_timeouts(&mut self) -> LinearTimeouts {
        let mut t = self.timing.timeouts;
        let (limit, last) = {
            let engine = self.backend.engine();
            let head = engine.head();
            (head.gas_limit, head.gas_used)
        };
        let waiting = self.backend.admission_backlog().saturating_mul(MIN_TX_GAS);
        let pending = self.backend.mempool().gas_up_to(limit).saturating_add(waiting);
        let arrived = pending.saturating_add(last).saturating_sub(self.pool_gas_at_start);
        self.pool_gas_at_start = pending;
        let gas = pending.saturating_add(arrived).max(last).min(limit);
        t.propose = self.proposal_delay.propose_timeout(t.propose, gas);
        if t.propose > self.timing.timeouts.propose {
            debug!(
                expected_gas = gas,
                propose_ms = t.propose.as_millis() as u64,
                "propose timeout stretched"
            );
        }
        t
    }

    /// When the next height starts: one block time after this node first had the block just decided (built it
    /// as proposer, or completed its proposal stream). Every node anchors on the same event, the proposer's
    /// broadcast, so all start the next height in step (within the propagation delay) and blocks come one block
    /// time apart however long validating and voting took. A failed round shows as a later proposal, so a
    /// failover height is longer by the timeouts, never shorter. A node catching up does not pause.
    fn next_start(&self) -> Instant {
        let now = Instant::now();
        if self.behind() {
            return now;
        }
        match self.last_decision {
            None => now,
            Some(anchor) => (anchor + self.timing.block_time).max(now),
        }
    }

    /// When the pending start of `height`, scheduled for `at`, comes: at once if the height's first proposal
    /// (round 0, from its scheduled proposer) is already here. The others are then under way with that height
    /// while this node still waits on its own anchor (it had the last block late, from sync or after a late
    /// start), and waiting would only make it later.
    pub(super) fn start_time(&self, height: Height, at: Instant) -> Instant {
        if self.first_proposal_received(height).is_some() {
            at.min(Instant::now())
        } else {
            at
        }
    }

    /// When the round-0 proposal of `height` (the height about to start) came, if it is already here.
    fn first_proposal_received(&self, height: Height) -> Option<Instant> {
        let (h, set) = self.set.as_ref()?;
        (*h == height)
            .then(|| self.inbound.future_received(height, 0, set.proposer(0).address))
            .flatten()
    }

    /// When the block of `height` (about to start) is first broadcast, as far as this node can tell: when its
    /// proposal came, if it is already here (this node is late); else one block time after this node first had
    /// the block before it, when every node in step starts the height.
    fn block_due(&self, height: Height) -> Option<Instant> {
        self.first_proposal_received(height)
            .or_else(|| self.last_decision?.checked_add(self.timing.block_time))
    }

    /// The head is more than two block times (at least two seconds) old: this node is catching up.
    fn behind(&self) -> bool {
        let head_ts = self.backend.engine().head().timestamp;
        now_secs().saturating_sub(head_ts) > 2 * self.timing.block_time.as_secs().max(1)
    }

    /// Starts the height consensus is waiting for, now that its time has come.
    pub(super) fn start_pending(&mut self) -> Result<(), AppError> {
        if let Some((next, at, reply)) = self.pending_start.take() {
            // Before `at` if the height's proposal came early (`start_time`).
            let params = self.params(next, at.min(Instant::now()))?;
            let _ = reply.send(Next::Start(next, params));
        }
        Ok(())
    }

    /// The height is finalized: keep the fuller certificate for the next block, and schedule the next height
    /// (or restart this one, if it was decided on a block not held here: sync fetches it from peers).
    pub(super) fn on_finalized(
        &mut self,
        certificate: &CommitCertificate<MetisContext>,
        extensions: &VoteExtensions<MetisContext>,
        reply: oneshot::Sender<Next<MetisContext>>,
    ) -> Result<(), AppError> {
        if let Some(h) = self.restart.take() {
            let params = self.params(h, Instant::now())?;
            let _ = reply.send(Next::Restart(h, params));
            return Ok(());
        }
        // Late precommits may have joined; the fuller certificate goes into the next block.
        if certificate.height.0 == self.backend.engine().head().number {
            debug!(
                signatures = certificate.commit_signatures.len(),
                extensions = extensions.extensions.len(),
                "finalized"
            );
            self.last_commit = Some(WireCertificate::with_extensions(certificate, extensions));
        }
        // The reply waits for the block time (the loop goes on serving parts and sync meanwhile); the height's
        // parameters are taken then, so its propose timeout sees the mempool of that moment. The validator set
        // is known now: a proposal for the next height that arrives before it starts is checked at once.
        let next = Height(certificate.height.0 + 1);
        self.set = Some((next, validator_set(&self.ledger)?));
        self.pending_start = Some((next, self.next_start(), reply));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::collect_window;
    use std::time::{Duration, Instant};

    const BLOCK: Duration = Duration::from_millis(1000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A node in step (its height starts when the height's block is due) collects for three quarters of a
    /// block time, as before; so does one that does not know when the block is due (it just started).
    #[test]
    fn a_node_in_step_collects_three_quarters_of_a_block_time() {
        let due = Instant::now();
        assert_eq!(collect_window(BLOCK, Some(due), due), ms(750));
        assert_eq!(collect_window(BLOCK, Some(due), due + ms(10)), ms(740));
        assert_eq!(collect_window(BLOCK, None, due), ms(750));
    }

    /// A node that starts a height late collects only until the window of the nodes in step ends, and not at
    /// all once it has passed: its next height then starts with theirs.
    #[test]
    fn a_late_node_collects_only_until_the_shared_window_ends() {
        let due = Instant::now();
        assert_eq!(collect_window(BLOCK, Some(due), due + ms(500)), ms(250));
        assert_eq!(collect_window(BLOCK, Some(due), due + ms(750)), Duration::ZERO);
        assert_eq!(collect_window(BLOCK, Some(due), due + ms(1730)), Duration::ZERO);
    }

    /// Never longer than three quarters of a block time, whatever the due time says (a height started before
    /// its block was due: a restart, a height started at once while catching up).
    #[test]
    fn the_window_is_never_longer_than_three_quarters_of_a_block_time() {
        let start = Instant::now();
        assert_eq!(collect_window(BLOCK, Some(start + ms(900)), start), ms(750));
        assert_eq!(
            collect_window(ms(250), Some(start + ms(100)), start),
            Duration::from_micros(187_500)
        );
    }
}
