//! Stake-weighted election and the fallback proposer order.

use crate::types::{Params, Sequencer, SequencerId};
use alloy_primitives::{keccak256, B256, U256};

/// Election weight: stake up to the cap.
pub fn weight_of(s: &Sequencer, params: &Params) -> U256 {
    s.stake.min(params.stake_cap)
}

/// Draws one of `candidates` (id, weight) with probability proportional to weight, from `seed` and the epoch
/// id. Candidates are taken in id order, so the result depends only on the inputs.
///
/// The draw is `keccak256(seed || epoch) mod total weight`; total weights are below 2^100 here, so the modulo
/// bias (< total / 2^256) is negligible.
pub fn elect(candidates: &[(SequencerId, U256)], seed: B256, epoch: u64) -> Option<SequencerId> {
    let mut sorted: Vec<_> = candidates.iter().filter(|(_, w)| !w.is_zero()).copied().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let total = sorted.iter().fold(U256::ZERO, |acc, (_, w)| acc + *w);
    if total.is_zero() {
        return None;
    }
    let mut input = [0u8; 40];
    input[..32].copy_from_slice(seed.as_slice());
    input[32..].copy_from_slice(&epoch.to_be_bytes());
    let mut r = U256::from_be_bytes(keccak256(input).0) % total;
    for (id, w) in sorted {
        if r < w {
            return Some(id);
        }
        r -= w;
    }
    None
}

/// Proposers for rounds 1, 2, ... of a height: every validator but the producer, heaviest first (ties by id).
pub fn fallback_order(validators: &[(SequencerId, U256)], producer: SequencerId) -> Vec<SequencerId> {
    let mut v: Vec<_> = validators
        .iter()
        .filter(|(id, w)| *id != producer && !w.is_zero())
        .copied()
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(i: u64) -> B256 {
        keccak256(i.to_be_bytes())
    }

    /// Over many seeds, each candidate wins in proportion to its weight, within a 4-sigma binomial bound.
    #[test]
    fn frequency_follows_weight() {
        let candidates = [
            (1, U256::from(10)),
            (2, U256::from(20)),
            (3, U256::from(30)),
            (4, U256::from(40)),
        ];
        let draws = 40_000u64;
        let mut wins = [0u64; 5];
        for i in 0..draws {
            let id = elect(&candidates, seed(i), i % 97).unwrap();
            wins[id as usize] += 1;
        }
        for (id, w) in candidates {
            let p = w.to::<u64>() as f64 / 100.0;
            let expected = draws as f64 * p;
            let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
            let got = wins[id as usize] as f64;
            assert!(
                (got - expected).abs() < 4.0 * sigma,
                "sequencer {id}: {got} wins, expected {expected:.0} +- {:.0}",
                4.0 * sigma
            );
        }
    }

    #[test]
    fn deterministic_and_order_independent() {
        let a = [(3, U256::from(5)), (1, U256::from(7)), (2, U256::from(9))];
        let b = [(1, U256::from(7)), (2, U256::from(9)), (3, U256::from(5))];
        for i in 0..100 {
            assert_eq!(elect(&a, seed(i), 4), elect(&b, seed(i), 4));
        }
    }

    #[test]
    fn zero_weight_never_wins_and_empty_gives_none() {
        let c = [(1, U256::ZERO), (2, U256::from(1))];
        for i in 0..200 {
            assert_eq!(elect(&c, seed(i), 0), Some(2));
        }
        assert_eq!(elect(&[], seed(0), 0), None);
        assert_eq!(elect(&[(1, U256::ZERO)], seed(0), 0), None);
    }

    #[test]
    fn fallback_is_by_weight_without_the_producer() {
        let v = [
            (1, U256::from(10)),
            (2, U256::from(30)),
            (3, U256::from(30)),
            (4, U256::from(5)),
        ];
        assert_eq!(fallback_order(&v, 2), vec![3, 1, 4]);
        assert_eq!(fallback_order(&v, 9), vec![2, 3, 1, 4]);
    }
}
