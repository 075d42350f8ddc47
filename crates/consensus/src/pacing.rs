//! How long a validator waits for the round's proposal before it prevotes nil.
//!
//! A fixed propose timeout is either too short under load or too slow on failover: a full block (300M gas) takes
//! hundreds of milliseconds to build, stream and re-execute on a loaded machine, an empty one a few. The wait is
//! therefore predicted from what this node can see before the round, the gas the next block will likely carry
//! (its own mempool, which gossip keeps close to the proposer's, or the last block's), and what it measured on
//! earlier proposals (round start -> proposal here and re-executed, for blocks of other proposers). An idle
//! chain keeps the configured timeout and its fast failover; a loaded one does not time out a working producer,
//! which would cost a whole round and count a miss against it.

use std::time::Duration;

/// Blocks below this are "idle": their delay is the fixed cost (network, voting), not execution.
const IDLE_GAS: u64 = 5_000_000;
/// Before any measurement of a big block: 2 ms per million gas (a 300M-gas block: 600 ms), on the slow side of
/// what a loaded 2-core machine shows (1.2-1.7 ms), so the first full block of a burst is not timed out.
const PRIOR_MS_PER_MGAS: f64 = 2.0;
/// The timeout is this many times the expected delay (room for the variance of a shared machine).
const MARGIN: f64 = 2.0;
/// At most this many times the configured timeout, so a dead proposer under load still costs a bounded wait.
const MAX_STRETCH: u32 = 4;

#[derive(Clone, Debug)]
pub struct ProposalDelay {
    idle_ms: f64,
    ms_per_mgas: f64,
}

impl Default for ProposalDelay {
    fn default() -> Self {
        Self {
            idle_ms: 0.0,
            ms_per_mgas: PRIOR_MS_PER_MGAS,
        }
    }
}

impl ProposalDelay {
    /// One proposal of `gas` that was here and checked `delay` after its round started.
    pub fn observe(&mut self, gas: u64, delay: Duration) {
        let ms = delay.as_secs_f64() * 1e3;
        if gas < IDLE_GAS {
            self.idle_ms = 0.75 * self.idle_ms + 0.25 * ms;
            return;
        }
        let per = ((ms - self.idle_ms).max(0.0)) / (gas as f64 / 1e6);
        // Up quickly (the next block times out otherwise), down slowly (one quick block is not a trend).
        let w = if per > self.ms_per_mgas { 0.5 } else { 0.2 };
        self.ms_per_mgas = (1.0 - w) * self.ms_per_mgas + w * per;
    }

    /// Expected round start -> proposal checked, for a block of `gas`.
    pub fn expected(&self, gas: u64) -> Duration {
        Duration::from_secs_f64((self.idle_ms + self.ms_per_mgas * gas as f64 / 1e6) / 1e3)
    }

    /// The propose timeout for a round whose block is expected to carry `gas`.
    pub fn propose_timeout(&self, configured: Duration, gas: u64) -> Duration {
        let wanted = self.expected(gas).mul_f64(MARGIN);
        wanted.clamp(configured, configured * MAX_STRETCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: Duration = Duration::from_millis(400);

    #[test]
    fn an_idle_chain_keeps_the_configured_timeout() {
        let mut d = ProposalDelay::default();
        for _ in 0..20 {
            d.observe(21_000, Duration::from_millis(8));
        }
        assert_eq!(d.propose_timeout(CONF, 0), CONF);
        assert_eq!(d.propose_timeout(CONF, 1_000_000), CONF);
    }

    #[test]
    fn a_full_block_is_waited_for_before_any_measurement() {
        let d = ProposalDelay::default();
        // 300M gas at the prior: 600 ms expected, 1.2 s timeout.
        assert_eq!(d.propose_timeout(CONF, 300_000_000), Duration::from_millis(1200));
    }

    #[test]
    fn measurements_move_the_timeout_within_bounds() {
        let mut d = ProposalDelay::default();
        // A fast machine: 300M gas checked 150 ms after the round started.
        for _ in 0..30 {
            d.observe(300_000_000, Duration::from_millis(150));
        }
        // 0.5 ms per Mgas: 150 ms expected, twice that is below the configured 400 ms.
        assert_eq!(d.propose_timeout(CONF, 300_000_000), CONF);
        // One slow block raises it at once.
        d.observe(300_000_000, Duration::from_millis(900));
        assert!(d.propose_timeout(CONF, 300_000_000) > Duration::from_millis(900));
        // Never beyond 4x the configured timeout.
        for _ in 0..10 {
            d.observe(300_000_000, Duration::from_secs(5));
        }
        assert_eq!(d.propose_timeout(CONF, 300_000_000), CONF * 4);
        assert_eq!(d.propose_timeout(CONF, 0), CONF);
    }
}
