//! Followers: unstaked nodes (RPC nodes) that forward their users' transactions to the pool over the same
//! authenticated links as the sequencers, as a second class of peer. A sequencer takes only transactions from
//! a follower (no signing messages, no evidence), sends it nothing, and holds each one to its own limits: a
//! transaction and byte rate (a follower over it is read more slowly, so TCP pushes back on it), a shared rate
//! for all followers together (so followers cannot crowd out the sequencers' gossip), a budget of refused or
//! malformed transactions per minute (over it, the link is cut and the key refused for a while), and a number
//! of links at once. The budgets here take their clock as an argument, so they are tested without waiting.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Who is at the other end of an authenticated link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerClass {
    /// A sequencer the ledger knows: transactions, signing messages and evidence both ways.
    Sequencer,
    /// An unstaked follower: its transactions in, nothing out, within [`FollowerLimits`].
    Follower,
}

/// What a sequencer allows its followers.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowerLimits {
    /// Transactions one follower may send per second (the bucket holds one second's worth).
    pub txs_per_sec: u32,
    /// Bytes one follower may send per second.
    pub bytes_per_sec: u64,
    /// Transactions all followers together may send per second.
    pub total_txs_per_sec: u32,
    /// Refused or malformed transactions one follower may send per minute before its link is cut.
    pub invalid_per_min: u32,
    /// Follower links at once.
    pub max_links: usize,
    /// How long a follower whose link was cut for invalid transactions is refused.
    pub ban: Duration,
}

impl Default for FollowerLimits {
    fn default() -> Self {
        Self {
            txs_per_sec: 500,
            bytes_per_sec: 2 * 1024 * 1024,
            total_txs_per_sec: 2000,
            invalid_per_min: 100,
            max_links: 64,
            ban: Duration::from_secs(300),
        }
    }
}

/// Which keys may follow this node, and within what.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FollowerPolicy {
    /// Follower keys (ed25519 public keys) let in.
    pub keys: BTreeSet<[u8; 32]>,
    /// Any key may follow.
    pub open: bool,
    pub limits: FollowerLimits,
}

impl FollowerPolicy {
    pub fn admits(&self, key: &[u8; 32]) -> bool {
        self.open || self.keys.contains(key)
    }
}

/// A token bucket that lends: taking always succeeds and returns how long the taker must wait until the
/// bucket is out of debt, so a frame larger than a second's worth is throttled rather than refused.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_sec: f64, now: Instant) -> Self {
        let rate = per_sec.max(1.0);
        Self {
            rate,
            burst: rate,
            level: rate,
            at: now,
        }
    }

    pub fn take(&mut self, n: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.level = (self.level + elapsed * self.rate).min(self.burst) - n;
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            // The debt is at most one frame (4,096 transactions or 1 MiB) over a rate of at least 1: finite.
            Duration::try_from_secs_f64(-self.level / self.rate).unwrap_or(Duration::from_secs(3600))
        }
    }
}

/// Refused and malformed transactions of one follower in the current minute.
#[derive(Debug)]
pub struct InvalidBudget {
    per_min: u32,
    spent: u32,
    window: Instant,
}

impl InvalidBudget {
    pub fn new(per_min: u32, now: Instant) -> Self {
        Self {
            per_min,
            spent: 0,
            window: now,
        }
    }

    /// How many more invalid transactions this minute allows (a new minute starts a fresh budget).
    pub fn left(&mut self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(60) {
            self.window = now;
            self.spent = 0;
        }
        self.per_min.saturating_sub(self.spent)
    }

    /// Counts `n`; true when the budget is now overspent.
    pub fn spend(&mut self, n: u32, now: Instant) -> bool {
        let left = self.left(now);
        self.spent = self.spent.saturating_add(n);
        n > left
    }
}

/// Keys refused until a moment; at most [`MAX_BANNED`], the ones whose ban ends soonest going first.
#[derive(Debug, Default)]
pub struct Banned(HashMap<[u8; 32], Instant>);

/// Banned keys remembered at once (a flood of fresh keys must not grow the map without end).
pub const MAX_BANNED: usize = 4096;

impl Banned {
    pub fn ban(&mut self, key: [u8; 32], until: Instant, now: Instant) {
        self.0.retain(|_, t| *t > now);
        if self.0.len() >= MAX_BANNED && !self.0.contains_key(&key) {
            if let Some(first) = self.0.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                self.0.remove(&first);
            }
        }
        self.0.insert(key, until);
    }

    pub fn is_banned(&self, key: &[u8; 32], now: Instant) -> bool {
        self.0.get(key).is_some_and(|t| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lends_and_makes_the_taker_wait_off_its_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(500.0, t0);
        assert_eq!(b.take(500.0, t0), Duration::ZERO);
        // A frame of 4,096 with an empty bucket: 8.192 s of debt.
        let wait = b.take(4096.0, t0);
        assert!((wait.as_secs_f64() - 8.192).abs() < 1e-6, "{wait:?}");
        // After the wait the debt is paid, and a second later one second's worth is back (no more).
        let later = t0 + wait + Duration::from_secs(10);
        assert_eq!(b.take(500.0, later), Duration::ZERO);
        assert!(b.take(1.0, later) > Duration::ZERO);
    }

    #[test]
    fn the_invalid_budget_is_per_minute() {
        let t0 = Instant::now();
        let mut b = InvalidBudget::new(100, t0);
        assert!(!b.spend(60, t0));
        assert_eq!(b.left(t0), 40);
        assert!(!b.spend(40, t0 + Duration::from_secs(59)));
        assert!(b.spend(1, t0 + Duration::from_secs(59)));
        // A new minute: a fresh budget.
        assert_eq!(b.left(t0 + Duration::from_secs(61)), 100);
    }

    #[test]
    fn bans_end_and_their_number_is_bounded() {
        let t0 = Instant::now();
        let mut b = Banned::default();
        b.ban([1; 32], t0 + Duration::from_secs(10), t0);
        assert!(b.is_banned(&[1; 32], t0 + Duration::from_secs(9)));
        assert!(!b.is_banned(&[1; 32], t0 + Duration::from_secs(10)));
        for i in 0..(MAX_BANNED + 10) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            b.ban(k, t0 + Duration::from_secs(100 + i as u64), t0);
        }
        assert!(b.0.len() <= MAX_BANNED);
    }

    #[test]
    fn a_policy_admits_its_keys_or_anyone_when_open() {
        let mut p = FollowerPolicy::default();
        p.keys.insert([7; 32]);
        assert!(p.admits(&[7; 32]) && !p.admits(&[8; 32]));
        p.open = true;
        assert!(p.admits(&[8; 32]));
    }
}
