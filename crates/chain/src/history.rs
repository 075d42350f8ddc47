//! The ledger's old records in the node's store: ended epochs (with production counts), set changes, applied
//! L1 events and an index of re-elections, each under its position in the full history. Written in the same
//! commit as the block whose ledger handed them over; read by the PoS API for anything older than the ledger
//! keeps.

use crate::schema::{history_epoch, history_l1, history_re_election, history_set_change, RE_ELECTIONS};
use metis_execution::store::Store;
use metis_pos::{AppliedL1, ArchivedEpoch, History, SetChange};

/// Archived re-elections so far (the index's length).
pub fn re_elections_archived(store: &Store) -> u64 {
    store
        .meta(RE_ELECTIONS)
        .ok()
        .flatten()
        .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

/// The (key, value) rows that store `h`, to add to the block's commit.
pub fn rows(store: &Store, h: &History) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // Most blocks hand nothing over: no store read for them.
    if h.is_empty() {
        return out;
    }
    let mut re = re_elections_archived(store);
    let re_before = re;
    for e in &h.epochs {
        out.push((history_epoch(e.epoch.id), json(e)));
        if matches!(e.epoch.reason, metis_pos::ElectionReason::ReElection { .. }) {
            out.push((history_re_election(re), e.epoch.id.to_be_bytes().to_vec()));
            re += 1;
        }
    }
    if re != re_before {
        out.push((RE_ELECTIONS.to_string(), re.to_be_bytes().to_vec()));
    }
    for (n, c) in &h.set_changes {
        out.push((history_set_change(*n), json(c)));
    }
    for (n, a) in &h.applied_l1 {
        out.push((history_l1(*n), json(a)));
    }
    out
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn read<T: serde::de::DeserializeOwned>(store: &Store, key: &str) -> Option<T> {
    serde_json::from_slice(&store.meta(key).ok()??).ok()
}

pub fn epoch(store: &Store, id: u64) -> Option<ArchivedEpoch> {
    read(store, &history_epoch(id))
}
pub fn set_change(store: &Store, n: u64) -> Option<SetChange> {
    read(store, &history_set_change(n))
}
pub fn applied_l1(store: &Store, n: u64) -> Option<AppliedL1> {
    read(store, &history_l1(n))
}
/// The epoch id of the `n`th archived re-election.
pub fn re_election(store: &Store, n: u64) -> Option<u64> {
    let b = store.meta(&history_re_election(n)).ok()??;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}
