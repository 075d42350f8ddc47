//! Every key the node writes to the store's `meta` table, in one place, in one format: a table name, then
//! `/` and the record's index as 16 hex digits (`cert/000000000000002a`); singletons are the bare name. Every
//! record is borsh ([`crate::encode`], [`crate::Store::get`]), except three kept in the form others define:
//! a batch header is ABI-encoded (what BatchInbox hashes), a batch payload is its own bytes, and the key
//! output is the threshold library's encoding. Nothing outside this module names a key.

/// The store's layout version: a data dir written with another one is refused at open.
pub const VERSION: u32 = 3;
pub const STORE_VERSION: &str = "store/version";

/// The head block (number and hash, fixed-width) and the genesis hash the chain was created with.
pub const HEAD: &str = "head";
pub const GENESIS: &str = "genesis";

fn indexed(table: &str, index: u64) -> String {
    format!("{table}/{index:016x}")
}

/// The PoS ledger after the head block (its own borsh form, checked against the hash) and its state hash.
pub const LEDGER: &str = "pos/ledger";
pub const LEDGER_HASH: &str = "pos/ledger_hash";
/// The last completed threshold-key output (public: the group's polynomial and members).
pub const KEY_OUTPUT: &str = "key/output";

/// The commit certificate of block `h` (with its vote extensions).
pub fn cert(h: u64) -> String {
    indexed("cert", h)
}

/// The validator set and proposer schedule that decided block `h`.
pub fn valset(h: u64) -> String {
    indexed("valset", h)
}

/// The last commit block `h` carried (its mix hash commits to it, so sync must serve exactly this one).
pub fn carried(h: u64) -> String {
    indexed("lastcommit", h)
}

/// The PoS transactions block `h` carried (absent: none).
pub fn pos_txs(h: u64) -> String {
    indexed("postxs", h)
}

/// The evidence block `h` carried (its encoded items), stored only for blocks that carried any.
pub fn evidence_at(h: u64) -> String {
    indexed("evidence", h)
}

/// The next batch index whose header is to be derived.
pub const BATCH_NEXT: &str = "batch/next";

/// Batch `index` as the ledger cut it: (first block, last block).
pub fn batch_cut(index: u64) -> String {
    indexed("batchcut", index)
}

/// The derived header of batch `index` (ABI), its payload (raw), and the pool's signature over it.
pub fn batch_header(index: u64) -> String {
    indexed("batch", index)
}

pub fn batch_payload(index: u64) -> String {
    indexed("batchdata", index)
}

pub fn batch_signature(index: u64) -> String {
    indexed("batchsig", index)
}

/// Reward report `id` as the ledger made it, and the pool's signature over it.
pub fn reward(id: u64) -> String {
    indexed("reward", id)
}

pub fn reward_signature(id: u64) -> String {
    indexed("rewardsig", id)
}

/// The pool's signature over slash request `id` (the offence's ordinal), as LockingPool.slash takes it.
pub fn slash_signature(id: u64) -> String {
    indexed("slashsig", id)
}

/// The ledger's archived history, each record under its position in the full history, and the count of
/// archived re-elections (the length of their index).
pub const RE_ELECTIONS: &str = "pos/hist/re_elections";

pub fn history_epoch(id: u64) -> String {
    indexed("pos/hist/epoch", id)
}

pub fn history_set_change(n: u64) -> String {
    indexed("pos/hist/set", n)
}

pub fn history_l1(n: u64) -> String {
    indexed("pos/hist/l1", n)
}

pub fn history_re_election(n: u64) -> String {
    indexed("pos/hist/re_election", n)
}

/// The replica's progress: the next batch to replay, the hash of the last one, the L1 block to read from.
pub const REPLICA_NEXT: &str = "replica/next";
pub const REPLICA_LAST_HASH: &str = "replica/lasthash";
pub const REPLICA_L1_FROM: &str = "replica/l1from";

#[cfg(test)]
mod tests {
    #[test]
    fn one_key_format() {
        assert_eq!(super::cert(42), "cert/000000000000002a");
        assert_eq!(super::history_epoch(u64::MAX), "pos/hist/epoch/ffffffffffffffff");
    }
}
