//! The ledger's old records in the node's store: ended epochs (with production counts), set changes, applied
//! L1 events and an index of re-elections, each under its position in the full history. Written in the same
//! commit as the block whose ledger handed them over; read by the PoS API for anything older than the ledger
//! keeps.

use metis_execution::store::Store;
use metis_pos::{AppliedL1, ArchivedEpoch, History, SetChange};

const RE_ELECTIONS: &str = "pos/hist/re_elections";

pub fn epoch_key(id: u64) -> String {
    format!("pos/hist/epoch/{id:016x}")
}
pub fn set_change_key(n: u64) -> String {
    format!("pos/hist/set/{n:016x}")
}
pub fn applied_l1_key(n: u64) -> String {
    format!("pos/hist/l1/{n:016x}")
}
fn re_election_key(n: u64) -> String {
    format!("pos/hist/re_election/{n:016x}")
}

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
        out.push((epoch_key(e.epoch.id), json(e)));
        if matches!(e.epoch.reason, metis_pos::ElectionReason::ReElection { .. }) {
            out.push((re_election_key(re), e.epoch.id.to_be_bytes().to_vec()));
            re += 1;
        }
    }
    if re != re_before {
        out.push((RE_ELECTIONS.to_string(), re.to_be_bytes().to_vec()));
    }
    for (n, c) in &h.set_changes {
        out.push((set_change_key(*n), json(c)));
    }
    for (n, a) in &h.applied_l1 {
        out.push((applied_l1_key(*n), json(a)));
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
    read(store, &epoch_key(id))
}
pub fn set_change(store: &Store, n: u64) -> Option<SetChange> {
    read(store, &set_change_key(n))
}
pub fn applied_l1(store: &Store, n: u64) -> Option<AppliedL1> {
    read(store, &applied_l1_key(n))
}
/// The epoch id of the `n`th archived re-election.
pub fn re_election(store: &Store, n: u64) -> Option<u64> {
    let b = store.meta(&re_election_key(n)).ok()??;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}
