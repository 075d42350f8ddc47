//! The ledger's old records in the node's store: ended epochs (with production counts), set changes, applied
//! L1 events and an index of re-elections, each under its position in the full history. Written in the same
//! commit as the block whose ledger handed them over; read by the PoS API for anything older than the ledger
//! keeps.

use metis_pos::{AppliedL1, ArchivedEpoch, History, SetChange};
use metis_storage::schema::{history_epoch, history_l1, history_re_election, history_set_change, RE_ELECTIONS};
use metis_storage::{encode, Store, StoreError};

/// Archived re-elections so far (the index's length).
pub fn re_elections_archived(store: &Store) -> Result<u64, StoreError> {
    Ok(store.get::<u64>(RE_ELECTIONS)?.unwrap_or(0))
}

/// The (key, value) rows that store `h`, to add to the block's commit.
pub fn rows(store: &Store, h: &History) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    // Most blocks hand nothing over: no store read for them.
    if h.is_empty() {
        return Ok(out);
    }
    let mut re = re_elections_archived(store)?;
    let re_before = re;
    for e in &h.epochs {
        out.push((history_epoch(e.epoch.id), encode(e)?));
        if matches!(e.epoch.reason, metis_pos::ElectionReason::ReElection { .. }) {
            out.push((history_re_election(re), encode(&e.epoch.id)?));
            re += 1;
        }
    }
    if re != re_before {
        out.push((RE_ELECTIONS.to_string(), encode(&re)?));
    }
    for (n, c) in &h.set_changes {
        out.push((history_set_change(*n), encode(c)?));
    }
    for (n, a) in &h.applied_l1 {
        out.push((history_l1(*n), encode(a)?));
    }
    Ok(out)
}

pub fn epoch(store: &Store, id: u64) -> Result<Option<ArchivedEpoch>, StoreError> {
    store.get(&history_epoch(id))
}

pub fn set_change(store: &Store, n: u64) -> Result<Option<SetChange>, StoreError> {
    store.get(&history_set_change(n))
}

pub fn applied_l1(store: &Store, n: u64) -> Result<Option<AppliedL1>, StoreError> {
    store.get(&history_l1(n))
}

/// The epoch id of the `n`th archived re-election.
pub fn re_election(store: &Store, n: u64) -> Result<Option<u64>, StoreError> {
    store.get(&history_re_election(n))
}
