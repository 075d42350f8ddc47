//! Every key the node writes to the store's `meta` table, in one place: the chain's own records (ledger,
//! certificates, validator sets, carried commits, PoS transactions, key output), the batches and signatures,
//! the reward reports, the ledger's archived history and the replica's progress. Nothing else names a key.

/// The PoS ledger after the head block, and its state hash.
pub const LEDGER: &str = "pos/ledger";
pub const LEDGER_HASH: &str = "pos/ledger_hash";
/// The last completed threshold-key output (public: the group's polynomial and members).
pub const KEY_OUTPUT: &str = "key/output";

/// The commit certificate of block `h` (with its vote extensions).
pub fn cert(h: u64) -> String {
    format!("cert/{h}")
}

/// The validator set and proposer schedule that decided block `h`.
pub fn valset(h: u64) -> String {
    format!("valset/{h}")
}

/// The last commit block `h` carried (its mix hash commits to it, so sync must serve exactly this one).
pub fn carried(h: u64) -> String {
    format!("lastcommit/{h}")
}

/// The PoS transactions block `h` carried (absent: none).
pub fn pos_txs(h: u64) -> String {
    format!("postxs/{h}")
}

/// The next batch index whose header is to be derived.
pub const BATCH_NEXT: &str = "batch/next";

/// Batch `index` as the ledger cut it: its first and last block ([`encode_cut`]).
pub fn batch_cut(index: u64) -> String {
    format!("batchcut/{index}")
}

pub fn encode_cut(first: u64, last: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&first.to_be_bytes());
    b[8..].copy_from_slice(&last.to_be_bytes());
    b
}

/// The derived header of batch `index`, its payload, and the pool's signature over it.
pub fn batch_header(index: u64) -> String {
    format!("batch/{index}")
}

pub fn batch_payload(index: u64) -> String {
    format!("batchdata/{index}")
}

pub fn batch_signature(index: u64) -> String {
    format!("batchsig/{index}")
}

/// Reward report `id` as the ledger made it, and the pool's signature over it.
pub fn reward(id: u64) -> String {
    format!("reward/{id}")
}

pub fn reward_signature(id: u64) -> String {
    format!("rewardsig/{id}")
}

/// The ledger's archived history, each record under its position in the full history.
pub const RE_ELECTIONS: &str = "pos/hist/re_elections";

pub fn history_epoch(id: u64) -> String {
    format!("pos/hist/epoch/{id:016x}")
}

pub fn history_set_change(n: u64) -> String {
    format!("pos/hist/set/{n:016x}")
}

pub fn history_l1(n: u64) -> String {
    format!("pos/hist/l1/{n:016x}")
}

pub fn history_re_election(n: u64) -> String {
    format!("pos/hist/re_election/{n:016x}")
}

/// The replica's progress: the next batch to replay, the hash of the last one, the L1 block to read from.
pub const REPLICA_NEXT: &str = "replica/next";
pub const REPLICA_LAST_HASH: &str = "replica/lasthash";
pub const REPLICA_L1_FROM: &str = "replica/l1from";
