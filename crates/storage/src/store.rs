//! Durable chain data in redb: headers, bodies (with senders), receipts, the tx lookup, and the flat state.
//! Everything one block writes goes in one write transaction, so a crash leaves the store at a block boundary.

use crate::history::{HistoryError, StateAt, StateHistory};
use crate::types::{Account, AccountChange, Changeset};
use alloy_consensus::{Header, ReceiptEnvelope, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use revm::state::Bytecode;
use std::path::Path;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const HASHES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_hashes");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const TX_LOOKUP: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("tx_lookup");
pub(crate) const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
pub(crate) const STORAGE: TableDefinition<&[u8; 52], &[u8; 32]> = TableDefinition::new("storage");
pub(crate) const CODE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("code");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("database {path}: {source}")]
    Open { path: String, source: Box<redb::Error> },
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error(
        "this data dir was written by another version of metis-seq (store layout {found}, this build reads \
         {expected}); start from an empty data dir"
    )]
    Version { found: String, expected: u32 },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A transaction as a block stores it: its hash (for the lookup), its sender (so loading is not a signature
/// recovery) and its envelope.
pub struct StoredTx<'a> {
    pub hash: B256,
    pub sender: Address,
    pub envelope: &'a TxEnvelope,
}

/// What a block adds to the store.
pub struct BlockWrite<'a> {
    pub header: &'a Header,
    pub hash: B256,
    pub transactions: &'a [StoredTx<'a>],
    pub receipts: &'a [ReceiptEnvelope],
    pub changeset: &'a Changeset,
}

/// The chain database. Cloning shares it (readers and the meta writer off the consensus thread use a clone).
#[derive(Clone)]
pub struct Store {
    db: std::sync::Arc<Database>,
    history: StateHistory,
}

fn encode_account(a: &Account) -> [u8; 72] {
    let mut out = [0u8; 72];
    out[..8].copy_from_slice(&a.nonce.to_be_bytes());
    out[8..40].copy_from_slice(&a.balance.to_be_bytes::<32>());
    out[40..].copy_from_slice(a.code_hash.as_slice());
    out
}

pub(crate) fn decode_account(b: &[u8]) -> Result<Account, StoreError> {
    if b.len() != 72 {
        return Err(corrupt("account record is not 72 bytes"));
    }
    let nonce = u64::from_be_bytes(b[..8].try_into().map_err(corrupt)?);
    Ok(Account {
        nonce,
        balance: U256::from_be_slice(&b[8..40]),
        code_hash: B256::from_slice(&b[40..]),
    })
}

pub(crate) fn storage_key(addr: &Address, slot: &U256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(addr.as_slice());
    k[20..].copy_from_slice(&slot.to_be_bytes::<32>());
    k
}

/// Body: for each tx, 20-byte sender + 4-byte length + EIP-2718 bytes (senders stored so loading is not a
/// signature recovery per transaction).
fn encode_body(txs: &[StoredTx<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for tx in txs {
        out.extend_from_slice(tx.sender.as_slice());
        let enc = tx.envelope.encoded_2718();
        out.extend_from_slice(&(enc.len() as u32).to_be_bytes());
        out.extend_from_slice(&enc);
    }
    out
}

fn decode_body(mut b: &[u8]) -> Result<Vec<(Address, TxEnvelope)>, StoreError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 24 {
            return Err(corrupt("truncated body"));
        }
        let sender = Address::from_slice(&b[..20]);
        let len = u32::from_be_bytes(b[20..24].try_into().map_err(corrupt)?) as usize;
        let rest = &b[24..];
        if rest.len() < len {
            return Err(corrupt("truncated transaction in body"));
        }
        let mut enc = &rest[..len];
        let tx = TxEnvelope::decode_2718(&mut enc).map_err(corrupt)?;
        if !enc.is_empty() {
            return Err(corrupt("bytes after a transaction in body"));
        }
        out.push((sender, tx));
        b = &rest[len..];
    }
    Ok(out)
}

fn encode_receipts(receipts: &[ReceiptEnvelope]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in receipts {
        let enc = r.encoded_2718();
        out.extend_from_slice(&(enc.len() as u32).to_be_bytes());
        out.extend_from_slice(&enc);
    }
    out
}

fn decode_receipts(mut b: &[u8]) -> Result<Vec<ReceiptEnvelope>, StoreError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(corrupt("truncated receipts"));
        }
        let len = u32::from_be_bytes(b[..4].try_into().map_err(corrupt)?) as usize;
        let rest = &b[4..];
        if rest.len() < len {
            return Err(corrupt("truncated receipt"));
        }
        let mut enc = &rest[..len];
        out.push(ReceiptEnvelope::decode_2718(&mut enc).map_err(corrupt)?);
        if !enc.is_empty() {
            return Err(corrupt("bytes after a receipt"));
        }
        b = &rest[len..];
    }
    Ok(out)
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e.into()),
        })?;
        let w = db.begin_write()?;
        {
            // Create every table so readers never meet a missing one.
            w.open_table(META)?;
            w.open_table(HEADERS)?;
            w.open_table(HASHES)?;
            w.open_table(BODIES)?;
            w.open_table(RECEIPTS)?;
            w.open_table(TX_LOOKUP)?;
            w.open_table(ACCOUNTS)?;
            w.open_table(STORAGE)?;
            w.open_table(CODE)?;
            w.open_table(crate::history::ACCOUNT_HISTORY)?;
            w.open_table(crate::history::STORAGE_HISTORY)?;
            w.open_table(crate::history::HISTORY_BLOCKS)?;
            w.open_table(crate::history::HISTORY_SINCE)?;
        }
        w.commit()?;
        let store = Self {
            db: std::sync::Arc::new(db),
            history: StateHistory::None,
        };
        store.check_version()?;
        Ok(store)
    }

    /// Keeps state history from the next block on (`StateHistory::None`: drops what there was).
    pub fn with_history(mut self, history: StateHistory) -> Self {
        self.history = history;
        self
    }

    /// The state after block `block`: the head's, or an older one the state history still holds. Reads come
    /// from one snapshot, whatever the chain commits meanwhile.
    pub fn state_at(&self, block: u64) -> Result<StateAt, HistoryError> {
        let r = self.db.begin_read().map_err(StoreError::from)?;
        let head = {
            let t = r.open_table(META).map_err(StoreError::from)?;
            let v = t.get(crate::schema::HEAD).map_err(StoreError::from)?;
            match v.map(|v| v.value().to_vec()) {
                Some(v) if v.len() == 40 => u64::from_be_bytes(v[..8].try_into().map_err(corrupt)?),
                _ => return Err(corrupt("head record").into()),
            }
        };
        StateAt::open(r, block, head)
    }

    /// A new store is stamped with this build's layout version; an existing one must carry it.
    fn check_version(&self) -> Result<(), StoreError> {
        let expected = crate::schema::VERSION;
        match (self.meta(crate::schema::STORE_VERSION)?, self.head()?) {
            (None, None) => self.put_meta(&[(crate::schema::STORE_VERSION, &crate::encode(&expected)?)]),
            (Some(v), _) if borsh::from_slice::<u32>(&v).ok() == Some(expected) => Ok(()),
            (Some(v), _) => Err(StoreError::Version {
                found: borsh::from_slice::<u32>(&v).map_or_else(|_| "unreadable".into(), |n| n.to_string()),
                expected,
            }),
            (None, Some(_)) => Err(StoreError::Version {
                found: "1 (unversioned)".into(),
                expected,
            }),
        }
    }

    /// The borsh record under `key`; one that does not decode is an error naming the key.
    pub fn get<T: borsh::BorshDeserialize>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.meta(key)? {
            None => Ok(None),
            Some(b) => borsh::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("record {key}: {e}"))),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes meta records that belong to no block (e.g. signatures that complete later), atomically.
    pub fn put_meta(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            for (k, v) in entries {
                meta.insert(*k, *v)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// The head block number and hash, `None` for an empty store.
    pub fn head(&self) -> Result<Option<(u64, B256)>, StoreError> {
        match self.meta(crate::schema::HEAD)? {
            None => Ok(None),
            Some(v) if v.len() == 40 => Ok(Some((
                u64::from_be_bytes(v[..8].try_into().map_err(corrupt)?),
                B256::from_slice(&v[8..]),
            ))),
            Some(_) => Err(corrupt("head record")),
        }
    }

    /// Writes one block and its state changes atomically, and moves the head to it.
    pub fn write_block(&self, b: &BlockWrite<'_>, extra_meta: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        {
            let n = b.header.number;
            // What the block overwrites, read before it does.
            crate::history::record(&w, n, b.changeset, self.history)?;
            let mut hdr = Vec::with_capacity(600);
            b.header.encode(&mut hdr);
            w.open_table(HEADERS)?.insert(n, hdr.as_slice())?;
            w.open_table(HASHES)?.insert(&b.hash.0, n)?;
            w.open_table(BODIES)?
                .insert(n, encode_body(b.transactions).as_slice())?;
            w.open_table(RECEIPTS)?
                .insert(n, encode_receipts(b.receipts).as_slice())?;
            let mut lookup = w.open_table(TX_LOOKUP)?;
            for (i, tx) in b.transactions.iter().enumerate() {
                lookup.insert(&tx.hash.0, (n, i as u32))?;
            }
            let mut code = w.open_table(CODE)?;
            for (hash, c) in &b.changeset.new_code {
                code.insert(&hash.0, c.original_byte_slice())?;
            }
            let mut accounts = w.open_table(ACCOUNTS)?;
            let mut storage = w.open_table(STORAGE)?;
            for (addr, ch) in &b.changeset.accounts {
                if ch.storage_cleared || ch.info.is_none() {
                    let lo = storage_key(addr, &U256::ZERO);
                    let hi = storage_key(addr, &U256::MAX);
                    storage.retain_in::<&[u8; 52], _>(&lo..=&hi, |_, _| false)?;
                }
                match &ch.info {
                    None => {
                        accounts.remove(&addr.0 .0)?;
                    }
                    Some(a) => {
                        accounts.insert(&addr.0 .0, encode_account(a).as_slice())?;
                    }
                }
                for (slot, value) in &ch.storage {
                    let k = storage_key(addr, slot);
                    if value.is_zero() {
                        storage.remove(&k)?;
                    } else {
                        storage.insert(&k, &value.to_be_bytes::<32>())?;
                    }
                }
            }
            let mut meta = w.open_table(META)?;
            let mut head = [0u8; 40];
            head[..8].copy_from_slice(&n.to_be_bytes());
            head[8..].copy_from_slice(b.hash.as_slice());
            meta.insert(crate::schema::HEAD, head.as_slice())?;
            for (k, v) in extra_meta {
                meta.insert(*k, *v)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    pub fn header(&self, number: u64) -> Result<Option<Header>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HEADERS)?;
        let Some(v) = t.get(number)? else { return Ok(None) };
        let mut b = v.value();
        Header::decode(&mut b).map(Some).map_err(corrupt)
    }

    pub fn block_number(&self, hash: &B256) -> Result<Option<u64>, StoreError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(HASHES)?.get(&hash.0)?.map(|v| v.value()))
    }

    /// The transactions of block `number` with their senders.
    pub fn transactions(&self, number: u64) -> Result<Option<Vec<(Address, TxEnvelope)>>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BODIES)?;
        let Some(v) = t.get(number)? else { return Ok(None) };
        decode_body(v.value()).map(Some)
    }

    pub fn receipts(&self, number: u64) -> Result<Option<Vec<ReceiptEnvelope>>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(RECEIPTS)?;
        let Some(v) = t.get(number)? else { return Ok(None) };
        decode_receipts(v.value()).map(Some)
    }

    /// (block number, index) of a transaction.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<(u64, u32)>, StoreError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(TX_LOOKUP)?.get(&hash.0)?.map(|v| v.value()))
    }

    /// Which of `hashes` are in a stored block (one read for all).
    pub fn txs_stored(&self, hashes: &[B256]) -> Result<Vec<bool>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TX_LOOKUP)?;
        hashes.iter().map(|h| Ok(t.get(&h.0)?.is_some())).collect()
    }

    /// The whole flat state as one changeset from empty (to rebuild the in-memory state and its tries).
    pub fn load_state(&self) -> Result<Changeset, StoreError> {
        let r = self.db.begin_read()?;
        let mut cs = Changeset::default();
        for entry in r.open_table(ACCOUNTS)?.iter()? {
            let (k, v) = entry?;
            let addr = Address::from(*k.value());
            let info = decode_account(v.value())?;
            cs.accounts.insert(
                addr,
                AccountChange {
                    info: Some(info),
                    storage_cleared: true,
                    storage: Default::default(),
                },
            );
        }
        for entry in r.open_table(STORAGE)?.iter()? {
            let (k, v) = entry?;
            let k = k.value();
            let addr = Address::from_slice(&k[..20]);
            let slot = U256::from_be_slice(&k[20..]);
            let ch = cs
                .accounts
                .get_mut(&addr)
                .ok_or_else(|| corrupt(format!("storage of missing account {addr}")))?;
            ch.storage.insert(slot, U256::from_be_bytes(*v.value()));
        }
        for entry in r.open_table(CODE)?.iter()? {
            let (k, v) = entry?;
            cs.new_code.insert(
                B256::from(*k.value()),
                Bytecode::new_raw(Bytes::copy_from_slice(v.value())),
            );
        }
        Ok(cs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("metis-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_data_dir_of_another_layout_is_refused_with_a_clear_error() {
        let d = dir("version");
        // A new store is stamped and opens again.
        let path = d.join("new.redb");
        drop(Store::open(&path).expect("new store"));
        assert!(Store::open(&path).is_ok());
        // Another layout version.
        let s = Store::open(&path).expect("store");
        s.put_meta(&[(crate::schema::STORE_VERSION, &crate::encode(&1u32).expect("encode"))])
            .expect("write");
        drop(s);
        let e = Store::open(&path).err().expect("refused");
        assert!(matches!(e, StoreError::Version { .. }), "{e}");
        assert!(e.to_string().contains("start from an empty data dir"), "{e}");
        // A store written before versions existed: a head, no version.
        let old = d.join("old.redb");
        {
            let db = Database::create(&old).expect("db");
            let w = db.begin_write().expect("write");
            w.open_table(META)
                .expect("meta")
                .insert(crate::schema::HEAD, [0u8; 40].as_slice())
                .expect("insert");
            w.commit().expect("commit");
        }
        let e = Store::open(&old).err().expect("refused");
        assert!(e.to_string().contains("unversioned"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_record_that_does_not_decode_is_an_error_naming_its_key() {
        let d = dir("record");
        let s = Store::open(&d.join("s.redb")).expect("store");
        let key = crate::schema::cert(7);
        s.put_meta(&[(&key, &crate::encode(&(1u64, 2u64)).expect("encode"))])
            .expect("write");
        assert_eq!(s.get::<(u64, u64)>(&key).expect("read"), Some((1, 2)));
        // Trailing bytes (a record of another shape) are refused, not half-read.
        let e = s.get::<u64>(&key).expect_err("refused");
        assert!(e.to_string().contains(&key), "{e}");
        assert_eq!(s.get::<u64>(&crate::schema::cert(8)).expect("absent"), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    mod records {
        use super::super::*;
        use alloy_consensus::{Receipt, ReceiptWithBloom, Signed, TxLegacy};
        use alloy_primitives::{Log, Signature};
        use proptest::prelude::*;

        fn receipts(n: usize, seed: u8) -> Vec<ReceiptEnvelope> {
            (0..n)
                .map(|i| {
                    let logs = vec![Log::new_unchecked(
                        Address::repeat_byte(seed),
                        vec![B256::repeat_byte(i as u8)],
                        vec![seed; i].into(),
                    )];
                    ReceiptEnvelope::Eip1559(ReceiptWithBloom::from(Receipt {
                        status: (i % 2 == 0).into(),
                        cumulative_gas_used: 21_000 * (i as u64 + 1),
                        logs,
                    }))
                })
                .collect()
        }

        fn body(n: usize, seed: u8) -> Vec<u8> {
            let txs: Vec<TxEnvelope> = (0..n)
                .map(|i| {
                    let tx = TxLegacy {
                        chain_id: Some(1),
                        nonce: i as u64,
                        gas_price: 1,
                        gas_limit: 21_000,
                        input: vec![seed; i].into(),
                        ..Default::default()
                    };
                    TxEnvelope::Legacy(Signed::new_unhashed(tx, Signature::test_signature()))
                })
                .collect();
            let stored: Vec<StoredTx<'_>> = txs
                .iter()
                .map(|t| StoredTx {
                    hash: *t.tx_hash(),
                    sender: Address::repeat_byte(seed),
                    envelope: t,
                })
                .collect();
            encode_body(&stored)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Whatever bytes a damaged store hands back, each record decoder answers (a value or an error), never
            /// panics.
            #[test]
            fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
                let _ = decode_account(&bytes);
                let _ = decode_body(&bytes);
                let _ = decode_receipts(&bytes);
                let _ = Header::decode(&mut bytes.as_slice());
            }

            /// Valid records round-trip; one with a byte changed or cut short decodes to something else or fails.
            #[test]
            fn records_round_trip_and_damage_is_noticed(
                nonce in any::<u64>(),
                balance in any::<[u8; 32]>(),
                n in 0usize..6,
                seed in any::<u8>(),
                at in any::<prop::sample::Index>(),
                flip in 1u8..,
            ) {
                let a = Account { nonce, balance: U256::from_be_bytes(balance), code_hash: B256::repeat_byte(seed) };
                let enc = encode_account(&a);
                prop_assert_eq!(decode_account(&enc).unwrap(), a);
                prop_assert!(decode_account(&enc[..71]).is_err());

                let rs = receipts(n, seed);
                let enc = encode_receipts(&rs);
                prop_assert_eq!(decode_receipts(&enc).unwrap(), rs.clone());
                if !enc.is_empty() {
                    prop_assert!(decode_receipts(&enc[..enc.len() - 1]).is_err(), "a cut receipt list decoded");
                    let mut bad = enc.clone();
                    bad[at.index(enc.len())] ^= flip;
                    if let Ok(back) = decode_receipts(&bad) {
                        prop_assert_ne!(back, rs);
                    }
                }

                let b = body(n, seed);
                let back = decode_body(&b).unwrap();
                prop_assert_eq!(back.len(), n);
                if !b.is_empty() {
                    prop_assert!(decode_body(&b[..b.len() - 1]).is_err(), "a cut body decoded");
                }
            }
        }
    }
}
