//! Whose turn it is and what is due: pure functions of the ledger, the inbox's position, the signatures this
//! node holds and a clock passed in, so the posting policy is tested without L1.

use crate::Item;
use alloy::primitives::Address;
use metis_pos::{Ledger, SequencerStatus};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// This node's place in the posting order of the current epoch: the ledger's schedule (producer first, then
/// the fallbacks by stake). None: the node's signer is not an active sequencer.
pub fn turn(ledger: &Ledger, signer: Address) -> Option<usize> {
    let me = ledger
        .sequencers()
        .find(|s| s.signer == signer && s.status != SequencerStatus::Inactive)?
        .id;
    ledger.schedule().iter().position(|id| *id == me)
}

/// What is due, in the order L1 takes it: the batches from the inbox's `next` index on that the pool has
/// signed (at most `max`, stopping at the first unsigned one), then the reward report after `last_reward` if
/// it is signed (`last_reward` is None when the pool's counter does not fit: no report is posted).
pub fn due(
    next: u64,
    max: usize,
    batch_signed: impl Fn(u64) -> bool,
    last_reward: Option<u64>,
    report_signed: impl Fn(u64) -> bool,
) -> Vec<Item> {
    let mut due: Vec<Item> = (next..next.saturating_add(max as u64))
        .take_while(|i| batch_signed(*i))
        .map(Item::Batch)
        .collect();
    if let Some(id) = last_reward.and_then(|r| r.checked_add(1)) {
        if report_signed(id) {
            due.push(Item::Rewards(id));
        }
    }
    due
}

/// The due items this node posts now: the producer (turn 0) at once; fallback k an item that has been due
/// for k turn timeouts (and everything before it, so L1 gets them in order).
pub fn mine(
    due: &[Item],
    due_since: &HashMap<Item, Instant>,
    now: Instant,
    turn: usize,
    turn_timeout: Duration,
) -> Vec<Item> {
    let wait = turn_timeout.saturating_mul(u32::try_from(turn).unwrap_or(u32::MAX));
    due.iter()
        .copied()
        .take_while(|d| due_since.get(d).is_some_and(|since| now.duration_since(*since) >= wait))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_stops_at_the_first_unsigned_batch_and_adds_a_signed_report() {
        let d = due(5, 4, |i| i != 7, Some(2), |id| id == 3);
        assert_eq!(d, vec![Item::Batch(5), Item::Batch(6), Item::Rewards(3)]);
        assert_eq!(
            due(5, 2, |_| true, None, |_| true),
            vec![Item::Batch(5), Item::Batch(6)]
        );
        assert_eq!(due(5, 2, |_| false, Some(u64::MAX), |_| true), vec![]);
    }

    #[test]
    fn the_producer_posts_at_once_and_fallback_k_after_k_timeouts() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(60);
        let items = [Item::Batch(1), Item::Batch(2)];
        let since: HashMap<Item, Instant> = [(items[0], t0), (items[1], t0 + Duration::from_secs(30))].into();
        assert_eq!(mine(&items, &since, t0, 0, timeout), items.to_vec());
        assert!(mine(&items, &since, t0 + Duration::from_secs(59), 1, timeout).is_empty());
        // The first item waited one timeout; the second, due later, not yet: only the first goes.
        assert_eq!(
            mine(&items, &since, t0 + Duration::from_secs(60), 1, timeout),
            vec![items[0]]
        );
        assert_eq!(
            mine(&items, &since, t0 + Duration::from_secs(90), 1, timeout),
            items.to_vec()
        );
        assert!(mine(&items, &since, t0 + Duration::from_secs(90), 2, timeout).is_empty());
        // An item never seen due is never posted.
        assert!(mine(&items, &HashMap::new(), t0, 0, timeout).is_empty());
    }
}
