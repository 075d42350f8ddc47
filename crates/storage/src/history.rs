//! State history (archive): for every account and storage slot a block changes, the value it had before that
//! block, keyed by (account[, slot], block). The state after block `q` is then, per key, the value recorded at
//! the first change after `q`, or the current value if nothing changed it since. One range read per key, no
//! replay; written in the block's own write transaction, so history and state never disagree.
//!
//! `HISTORY_BLOCKS` lists the keys each block recorded, so the oldest blocks' entries can be removed when the
//! node keeps only the last N blocks' history (`StateHistory::Recent`).

use crate::store::{corrupt, decode_account, storage_key, StoreError, ACCOUNTS, CODE, HEADERS, STORAGE};
use crate::types::{Account, Changeset};
use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rlp::Decodable;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use revm::state::Bytecode;

/// account (20) ++ block (8, big-endian) -> the account before the block (its 72-byte record; empty: absent).
pub(crate) const ACCOUNT_HISTORY: TableDefinition<&[u8; 28], &[u8]> = TableDefinition::new("account_history");
/// account (20) ++ slot (32) ++ block (8) -> the slot's value before the block (zero: absent).
pub(crate) const STORAGE_HISTORY: TableDefinition<&[u8; 60], &[u8; 32]> = TableDefinition::new("storage_history");
/// block -> the account and (account, slot) keys it recorded: u32 count, 20-byte accounts, u32 count, 52-byte
/// slots.
pub(crate) const HISTORY_BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("history_blocks");
/// The first block whose changes are recorded (history answers for the state after `since - 1` onwards).
pub(crate) const HISTORY_SINCE: TableDefinition<&str, u64> = TableDefinition::new("history_since");
const SINCE: &str = "since";
/// Blocks whose history one commit removes at most (`StateHistory::Recent`).
const FORGET_PER_BLOCK: u64 = 64;

/// How much state history a node keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StateHistory {
    /// None: state reads are at the head only.
    #[default]
    None,
    /// Every block's, from the block history was first enabled at.
    Full,
    /// The last N blocks' (state reads at the head and up to N blocks back).
    Recent(u64),
}

impl std::str::FromStr for StateHistory {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            n => n
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Self::Recent)
                .ok_or_else(|| format!("state history {s:?}: expected \"full\", \"none\" or a number of blocks > 0")),
        }
    }
}

fn account_key(addr: &Address, block: u64) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..20].copy_from_slice(addr.as_slice());
    k[20..].copy_from_slice(&block.to_be_bytes());
    k
}

fn slot_key(addr: &Address, slot: &U256, block: u64) -> [u8; 60] {
    let mut k = [0u8; 60];
    k[..52].copy_from_slice(&storage_key(addr, slot));
    k[52..].copy_from_slice(&block.to_be_bytes());
    k
}

/// Records what block `n` is about to overwrite (called before the block's state changes are applied, in the
/// same write transaction), then drops the history `mode` no longer keeps.
pub(crate) fn record(w: &WriteTransaction, n: u64, cs: &Changeset, mode: StateHistory) -> Result<(), StoreError> {
    let mut since_t = w.open_table(HISTORY_SINCE)?;
    if mode == StateHistory::None {
        // Entries written before would go stale as blocks pass unrecorded: history starts over when enabled.
        if since_t.remove(SINCE)?.is_some() {
            drop(since_t);
            clear(w)?;
        }
        return Ok(());
    }
    if since_t.get(SINCE)?.is_none() {
        since_t.insert(SINCE, n)?;
    }
    let accounts = w.open_table(ACCOUNTS)?;
    let storage = w.open_table(STORAGE)?;
    let mut acc_h = w.open_table(ACCOUNT_HISTORY)?;
    let mut slot_h = w.open_table(STORAGE_HISTORY)?;
    let mut recorded_accounts: Vec<u8> = Vec::with_capacity(cs.accounts.len() * 20);
    let mut recorded_slots: Vec<u8> = Vec::new();
    let mut slots = 0u32;
    for (addr, ch) in &cs.accounts {
        let before = accounts
            .get(&addr.0 .0)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        acc_h.insert(&account_key(addr, n), before.as_slice())?;
        recorded_accounts.extend_from_slice(addr.as_slice());
        let mut note = |slot: &U256, value: [u8; 32]| -> Result<(), StoreError> {
            slot_h.insert(&slot_key(addr, slot, n), &value)?;
            recorded_slots.extend_from_slice(&storage_key(addr, slot));
            slots = slots
                .checked_add(1)
                .ok_or_else(|| corrupt("more than 2^32 slots in one block"))?;
            Ok(())
        };
        let mut written = std::collections::BTreeSet::new();
        for slot in ch.storage.keys() {
            let before = storage.get(&storage_key(addr, slot))?.map_or([0u8; 32], |v| *v.value());
            note(slot, before)?;
            written.insert(*slot);
        }
        if ch.storage_cleared || ch.info.is_none() {
            // A wipe changes every slot the account had.
            let lo = storage_key(addr, &U256::ZERO);
            let hi = storage_key(addr, &U256::MAX);
            for entry in storage.range::<&[u8; 52]>(&lo..=&hi)? {
                let (k, v) = entry?;
                let slot = U256::from_be_slice(&k.value()[20..]);
                if !written.contains(&slot) {
                    note(&slot, *v.value())?;
                }
            }
        }
    }
    let mut list = Vec::with_capacity(8 + recorded_accounts.len() + recorded_slots.len());
    let account_count =
        u32::try_from(cs.accounts.len()).map_err(|_| corrupt("more than 2^32 accounts in one block"))?;
    list.extend_from_slice(&account_count.to_be_bytes());
    list.extend_from_slice(&recorded_accounts);
    list.extend_from_slice(&slots.to_be_bytes());
    list.extend_from_slice(&recorded_slots);
    w.open_table(HISTORY_BLOCKS)?.insert(n, list.as_slice())?;
    drop((acc_h, slot_h));
    if let StateHistory::Recent(keep) = mode {
        let since = since_t.get(SINCE)?.map_or(n, |v| v.value());
        // Blocks n-keep+1 ..= n keep their entries: the state after n-keep is answerable.
        let first_kept = n.saturating_add(1).saturating_sub(keep);
        // At most FORGET_PER_BLOCK blocks go per commit, so shrinking a long history spreads over the next
        // commits instead of stalling one.
        let upto = first_kept.min(since.saturating_add(FORGET_PER_BLOCK));
        for b in since..upto {
            forget_block(w, b)?;
        }
        if upto > since {
            since_t.insert(SINCE, upto)?;
        }
    }
    Ok(())
}

/// Removes the entries block `b` recorded.
fn forget_block(w: &WriteTransaction, b: u64) -> Result<(), StoreError> {
    let Some(list) = w.open_table(HISTORY_BLOCKS)?.remove(b)?.map(|v| v.value().to_vec()) else {
        return Ok(());
    };
    let bad = || corrupt(format!("history list of block {b}"));
    let count = |at: usize| -> Result<usize, StoreError> {
        let bytes: [u8; 4] = list.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(bad)?;
        usize::try_from(u32::from_be_bytes(bytes)).map_err(|_| bad())
    };
    let accounts = count(0)?;
    let slots_at = 4 + accounts * 20;
    let slots = count(slots_at)?;
    if list.len() != slots_at + 4 + slots * 52 {
        return Err(bad());
    }
    let mut acc_h = w.open_table(ACCOUNT_HISTORY)?;
    for a in list[4..slots_at].chunks_exact(20) {
        acc_h.remove(&account_key(&Address::from_slice(a), b))?;
    }
    let mut slot_h = w.open_table(STORAGE_HISTORY)?;
    for s in list[slots_at + 4..].chunks_exact(52) {
        let mut k = [0u8; 60];
        k[..52].copy_from_slice(s);
        k[52..].copy_from_slice(&b.to_be_bytes());
        slot_h.remove(&k)?;
    }
    Ok(())
}

fn clear(w: &WriteTransaction) -> Result<(), StoreError> {
    w.open_table(ACCOUNT_HISTORY)?.retain(|_, _| false)?;
    w.open_table(STORAGE_HISTORY)?.retain(|_, _| false)?;
    w.open_table(HISTORY_BLOCKS)?.retain(|_, _| false)?;
    Ok(())
}

/// The state after block `block`, read from one snapshot of the store.
pub struct StateAt {
    r: ReadTransaction,
    block: u64,
    head: u64,
}

/// Why the state at a block cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("block {block} is beyond the head {head}")]
    Future { block: u64, head: u64 },
    #[error(
        "historical state not available: this node keeps state history from block {oldest} (asked for {block}; \
         see --state-history)"
    )]
    Pruned { block: u64, oldest: u64 },
    #[error(
        "historical state not available: this node keeps the head's state only (asked for {block}, head \
             {head}; run with --state-history full)"
    )]
    Off { block: u64, head: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StateAt {
    pub(crate) fn open(r: ReadTransaction, block: u64, head: u64) -> Result<Self, HistoryError> {
        if block > head {
            return Err(HistoryError::Future { block, head });
        }
        if block < head {
            let since = r.open_table(HISTORY_SINCE).map_err(StoreError::from)?;
            match since.get(SINCE).map_err(StoreError::from)?.map(|v| v.value()) {
                None => return Err(HistoryError::Off { block, head }),
                // Answerable from the state after since - 1.
                Some(s) if block.saturating_add(1) < s => {
                    return Err(HistoryError::Pruned {
                        block,
                        oldest: s.saturating_sub(1),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(Self { r, block, head })
    }

    pub fn block(&self) -> u64 {
        self.block
    }

    pub fn account(&self, addr: &Address) -> Result<Option<Account>, StoreError> {
        if self.block < self.head {
            let t = self.r.open_table(ACCOUNT_HISTORY)?;
            let lo = account_key(addr, self.block + 1);
            let hi = account_key(addr, u64::MAX);
            if let Some(entry) = t.range::<&[u8; 28]>(&lo..=&hi)?.next() {
                let (_, v) = entry?;
                let v = v.value();
                return if v.is_empty() {
                    Ok(None)
                } else {
                    decode_account(v).map(Some)
                };
            }
        }
        let t = self.r.open_table(ACCOUNTS)?;
        t.get(&addr.0 .0)?.map(|v| decode_account(v.value())).transpose()
    }

    pub fn storage(&self, addr: &Address, slot: &U256) -> Result<U256, StoreError> {
        if self.block < self.head {
            let t = self.r.open_table(STORAGE_HISTORY)?;
            let lo = slot_key(addr, slot, self.block + 1);
            let hi = slot_key(addr, slot, u64::MAX);
            if let Some(entry) = t.range::<&[u8; 60]>(&lo..=&hi)?.next() {
                let (_, v) = entry?;
                return Ok(U256::from_be_bytes(*v.value()));
            }
        }
        let t = self.r.open_table(STORAGE)?;
        Ok(t.get(&storage_key(addr, slot))?
            .map_or(U256::ZERO, |v| U256::from_be_bytes(*v.value())))
    }

    /// Code by hash (code is never removed from the store).
    pub fn code(&self, hash: &B256) -> Result<Option<Bytecode>, StoreError> {
        let t = self.r.open_table(CODE)?;
        Ok(t.get(&hash.0)?
            .map(|v| Bytecode::new_raw(Bytes::copy_from_slice(v.value()))))
    }

    /// The hash of block `n` as BLOCKHASH sees it from the block after `self.block`: the last 256 only.
    pub fn block_hash(&self, n: u64) -> Result<B256, StoreError> {
        let next = self.block.saturating_add(1);
        if n >= next || next - n > 256 {
            return Ok(B256::ZERO);
        }
        self.header(n).map(|h| h.map_or(B256::ZERO, |h| h.hash_slow()))
    }

    pub fn header(&self, n: u64) -> Result<Option<Header>, StoreError> {
        let t = self.r.open_table(HEADERS)?;
        let Some(v) = t.get(n)? else { return Ok(None) };
        let mut b = v.value();
        Header::decode(&mut b).map(Some).map_err(corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlockWrite, Store};
    use crate::types::AccountChange;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn store(name: &str, history: StateHistory) -> Store {
        let d = std::env::temp_dir().join(format!("metis-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Store::open(&d.join("chain.redb")).expect("open").with_history(history)
    }

    fn account(balance: u64) -> Account {
        Account {
            nonce: balance % 7,
            balance: U256::from(balance),
            code_hash: alloy_primitives::KECCAK256_EMPTY,
        }
    }

    fn write(s: &Store, n: u64, cs: &Changeset) {
        let header = Header {
            number: n,
            ..Default::default()
        };
        s.write_block(
            &BlockWrite {
                header: &header,
                hash: header.hash_slow(),
                transactions: &[],
                receipts: &[],
                changeset: cs,
            },
            &[],
        )
        .expect("write");
    }

    /// The state a reference model holds after each block: accounts and their slots.
    type Model = BTreeMap<Address, (Account, BTreeMap<U256, U256>)>;

    fn apply(model: &mut Model, cs: &Changeset) {
        for (addr, ch) in &cs.accounts {
            let mut slots = match (ch.storage_cleared || ch.info.is_none(), model.remove(addr)) {
                (false, Some((_, slots))) => slots,
                _ => BTreeMap::new(),
            };
            for (k, v) in &ch.storage {
                if v.is_zero() {
                    slots.remove(k);
                } else {
                    slots.insert(*k, *v);
                }
            }
            if let Some(a) = &ch.info {
                model.insert(*addr, (a.clone(), slots));
            }
        }
    }

    /// A change to one of 4 accounts: (account, balance or deleted, wipe first, slot writes).
    type Change = (u8, Option<u64>, bool, Vec<(u8, u8)>);

    /// A change to one of 4 accounts: set (with slots, maybe after a wipe) or delete.
    fn change() -> impl Strategy<Value = Change> {
        (
            0u8..4,
            prop::option::weighted(0.85, 1u64..1000),
            any::<bool>(),
            prop::collection::vec((0u8..5, 0u8..3), 0..4),
        )
    }

    fn changeset(changes: &[Change]) -> Changeset {
        let mut cs = Changeset::default();
        for (a, balance, wipe, slots) in changes {
            let addr = Address::repeat_byte(*a + 1);
            cs.accounts.insert(
                addr,
                AccountChange {
                    info: balance.map(account),
                    storage_cleared: *wipe,
                    // A deleted account carries no slot writes (as the executor's changesets).
                    storage: if balance.is_some() {
                        slots.iter().map(|(k, v)| (U256::from(*k), U256::from(*v))).collect()
                    } else {
                        BTreeMap::new()
                    },
                },
            );
        }
        cs
    }

    fn check(s: &Store, block: u64, model: &Model) {
        let at = s.state_at(block).expect("state at");
        for a in 0u8..4 {
            let addr = Address::repeat_byte(a + 1);
            let want = model.get(&addr);
            assert_eq!(
                at.account(&addr).expect("account").as_ref(),
                want.map(|(a, _)| a),
                "{addr} after {block}"
            );
            for k in 0u8..5 {
                let slot = U256::from(k);
                let expected = want.and_then(|(_, s)| s.get(&slot)).copied().unwrap_or_default();
                assert_eq!(
                    at.storage(&addr, &slot).expect("slot"),
                    expected,
                    "{addr}[{k}] after {block}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random blocks of changes (sets, deletes, wipes, slot writes and zeroings): the state after every
        /// block reads back as a model that applied the same changes says, from the head back to genesis.
        #[test]
        fn every_older_state_reads_back_as_it_was(blocks in prop::collection::vec(prop::collection::vec(change(), 1..4), 1..12)) {
            let s = store("model", StateHistory::Full);
            let mut model = Model::new();
            let mut after = vec![];
            for (i, b) in blocks.iter().enumerate() {
                let cs = changeset(b);
                write(&s, i as u64, &cs);
                apply(&mut model, &cs);
                after.push(model.clone());
            }
            for (i, m) in after.iter().enumerate() {
                check(&s, i as u64, m);
            }
        }
    }

    #[test]
    fn recent_history_drops_the_oldest_blocks_and_none_keeps_only_the_head() {
        let s = store("recent", StateHistory::Recent(3));
        let mut model = Model::new();
        let mut after = vec![];
        for n in 0..10u64 {
            let cs = changeset(&[(0, Some(n + 1), false, vec![(0, n as u8 % 3)])]);
            write(&s, n, &cs);
            apply(&mut model, &cs);
            after.push(model.clone());
        }
        // Head 9: the states after 6, 7, 8 and 9 are kept.
        for n in 6..10 {
            check(&s, n, &after[n as usize]);
        }
        match s.state_at(5) {
            Err(HistoryError::Pruned { block: 5, oldest: 6 }) => {}
            other => panic!("expected pruned: {:?}", other.err()),
        }
        assert!(matches!(s.state_at(10), Err(HistoryError::Future { .. })));

        let off = store("off", StateHistory::None);
        write(&off, 0, &changeset(&[(0, Some(1), false, vec![])]));
        write(&off, 1, &changeset(&[(0, Some(2), false, vec![])]));
        assert!(off.state_at(1).is_ok(), "the head is always readable");
        let err = off.state_at(0).err().expect("no history");
        assert!(err.to_string().contains("--state-history full"), "{err}");
    }
}
