//! The world state: flat maps of accounts, storage and code, plus the account trie and one storage trie per
//! account, kept in step so the state root after a block costs only the changed paths. Blocks execute against a
//! [`BlockOverlay`] that records their changes as a [`Changeset`]; applying it moves the state to the next block.

use crate::genesis::{ChainSpec, KECCAK_EMPTY};
use crate::trie::Trie;
use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_rlp::{Encodable, RlpEncodable};
use alloy_trie::EMPTY_ROOT_HASH;
use imbl::HashMap;
use revm::database_interface::{DBErrorMarker, Database, DatabaseCommit, DatabaseRef};
use revm::primitives::AddressMap;
use revm::state::{Account as EvmAccount, AccountInfo, Bytecode};
use std::collections::BTreeMap;

/// Number of recent block hashes BLOCKHASH can see.
pub const BLOCK_HASH_HISTORY: u64 = 256;

#[derive(Debug, thiserror::Error)]
#[error("state: {0}")]
pub struct StateError(pub String);
impl DBErrorMarker for StateError {}

pub use metis_storage::{Account, AccountChange, Changeset};

fn account_from_info(info: &AccountInfo) -> Account {
    Account {
        nonce: info.nonce,
        balance: info.balance,
        code_hash: info.code_hash,
    }
}

fn account_to_info(a: &Account) -> AccountInfo {
    AccountInfo::default()
        .with_balance(a.balance)
        .with_nonce(a.nonce)
        .with_code_hash(a.code_hash)
}

#[derive(RlpEncodable)]
struct TrieAccountRlp {
    nonce: u64,
    balance: U256,
    storage_root: B256,
    code_hash: B256,
}

/// Merkle proofs of one account and some of its storage slots ([`WorldState::proof`]): the encodings of the
/// trie nodes on each key's path, root first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateProof {
    pub account: Vec<Vec<u8>>,
    /// The account's storage root (the empty root for an account without storage, or none).
    pub storage_root: B256,
    pub slots: Vec<SlotProof>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotProof {
    pub slot: U256,
    pub value: U256,
    pub proof: Vec<Vec<u8>>,
}

/// The tries after a changeset, ready to be installed by [`WorldState::commit`].
#[derive(Clone, Debug)]
pub struct RootUpdate {
    account_trie: Trie,
    storage_tries: BTreeMap<Address, Option<Trie>>,
    pub root: B256,
}

/// Every map is persistent (structure-shared), so a clone costs O(1) and the clone stays valid while the
/// original moves on: RPC reads run on a clone of the head without holding anything the commit needs.
#[derive(Clone, Debug, Default)]
pub struct WorldState {
    accounts: HashMap<Address, Account>,
    storage: HashMap<Address, HashMap<U256, U256>>,
    code: HashMap<B256, Bytecode>,
    account_trie: Trie,
    storage_tries: HashMap<Address, Trie>,
    block_hashes: BTreeMap<u64, B256>,
}

fn slot_key(slot: &U256) -> B256 {
    keccak256(slot.to_be_bytes::<32>())
}

impl WorldState {
    /// The genesis state of `spec` and its state root.
    pub fn genesis(spec: &ChainSpec) -> (Self, B256) {
        let cs = Self::genesis_changeset(spec);
        let mut state = Self::default();
        let root = state.apply(&cs);
        (state, root)
    }

    /// The genesis allocation as a changeset from the empty state.
    pub fn genesis_changeset(spec: &ChainSpec) -> Changeset {
        let mut cs = Changeset::default();
        for (addr, a) in &spec.alloc {
            let code_hash = if a.code.is_empty() {
                KECCAK_EMPTY
            } else {
                keccak256(&a.code)
            };
            if !a.code.is_empty() {
                cs.new_code.insert(code_hash, Bytecode::new_raw(a.code.clone()));
            }
            cs.accounts.insert(
                *addr,
                AccountChange {
                    info: Some(Account {
                        nonce: a.nonce,
                        balance: a.balance,
                        code_hash,
                    }),
                    storage_cleared: true,
                    storage: a.storage.iter().map(|(k, v)| (*k, *v)).collect(),
                },
            );
        }
        cs
    }

    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.accounts.get(address)
    }

    pub fn storage_at(&self, address: &Address, slot: &U256) -> U256 {
        self.storage
            .get(address)
            .and_then(|s| s.get(slot))
            .copied()
            .unwrap_or_default()
    }

    /// The Merkle proofs of `address`'s account and of its storage `slots` (present or not), against this
    /// state's root, as `eth_getProof` gives them.
    pub fn proof(&self, address: &Address, slots: &[U256]) -> StateProof {
        let storage = self.storage_tries.get(address);
        StateProof {
            account: self.account_trie.proof(&keccak256(address)),
            storage_root: storage.map_or(EMPTY_ROOT_HASH, |t| t.clone().root()),
            slots: slots
                .iter()
                .map(|slot| SlotProof {
                    slot: *slot,
                    value: self.storage_at(address, slot),
                    proof: storage.map_or_else(|| Trie::new().proof(&slot_key(slot)), |t| t.proof(&slot_key(slot))),
                })
                .collect(),
        }
    }

    pub fn code(&self, code_hash: &B256) -> Option<&Bytecode> {
        self.code.get(code_hash)
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Remembers a block hash for BLOCKHASH, keeping the last 256.
    pub fn record_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.insert(number, hash);
        while self.block_hashes.len() as u64 > BLOCK_HASH_HISTORY {
            self.block_hashes.pop_first();
        }
    }

    pub fn block_hash(&self, number: u64) -> B256 {
        self.block_hashes.get(&number).copied().unwrap_or_default()
    }

    /// The state root after `cs`, computed on O(1) clones of the tries: `self` does not change, so a proposed
    /// block can be checked and dropped. Only changed accounts and slots are re-hashed.
    pub fn compute_root(&self, cs: &Changeset) -> RootUpdate {
        let mut account_trie = self.account_trie.clone();
        let mut storage_tries = BTreeMap::new();
        for (addr, ch) in &cs.accounts {
            let hashed = keccak256(addr);
            let Some(info) = &ch.info else {
                account_trie.remove(&hashed);
                storage_tries.insert(*addr, None);
                continue;
            };
            let mut trie = if ch.storage_cleared {
                Trie::new()
            } else {
                self.storage_tries.get(addr).cloned().unwrap_or_default()
            };
            for (slot, value) in &ch.storage {
                if value.is_zero() {
                    trie.remove(&slot_key(slot));
                } else {
                    trie.insert(&slot_key(slot), alloy_rlp::encode(value));
                }
            }
            let storage_root = trie.root();
            let leaf = TrieAccountRlp {
                nonce: info.nonce,
                balance: info.balance,
                storage_root,
                code_hash: info.code_hash,
            };
            let mut buf = Vec::with_capacity(leaf.length());
            leaf.encode(&mut buf);
            account_trie.insert(&hashed, buf);
            storage_tries.insert(*addr, if trie.is_empty() { None } else { Some(trie) });
        }
        let root = account_trie.root();
        RootUpdate {
            account_trie,
            storage_tries,
            root,
        }
    }

    /// Moves the state to after `cs`, installing the tries `update` (from [`Self::compute_root`] on this same
    /// state and changeset) computed.
    pub fn commit(&mut self, cs: &Changeset, update: RootUpdate) {
        for (hash, code) in &cs.new_code {
            self.code.entry(*hash).or_insert_with(|| code.clone());
        }
        for (addr, ch) in &cs.accounts {
            if ch.storage_cleared || ch.info.is_none() {
                self.storage.remove(addr);
            }
            let Some(info) = &ch.info else {
                self.accounts.remove(addr);
                continue;
            };
            if !ch.storage.is_empty() {
                let slots = self.storage.entry(*addr).or_default();
                for (slot, value) in &ch.storage {
                    if value.is_zero() {
                        slots.remove(slot);
                    } else {
                        slots.insert(*slot, *value);
                    }
                }
                if slots.is_empty() {
                    self.storage.remove(addr);
                }
            }
            self.accounts.insert(*addr, info.clone());
        }
        for (addr, trie) in update.storage_tries {
            match trie {
                Some(t) => self.storage_tries.insert(addr, t),
                None => self.storage_tries.remove(&addr),
            };
        }
        self.account_trie = update.account_trie;
    }

    /// [`Self::compute_root`] then [`Self::commit`]; returns the new root.
    pub fn apply(&mut self, cs: &Changeset) -> B256 {
        let update = self.compute_root(cs);
        let root = update.root;
        self.commit(cs, update);
        root
    }

    /// The root without changes.
    pub fn root(&mut self) -> B256 {
        self.account_trie.root()
    }

    /// A fresh overlay to execute a block (or a call) against this state.
    pub fn overlay(&self) -> BlockOverlay<'_> {
        BlockOverlay::over(self)
    }
}

/// A committed state an overlay reads through: the head's in memory ([`WorldState`]) or an older one from the
/// store's state history (`metis_storage::StateAt`).
pub trait StateSource {
    fn read_account(&self, address: &Address) -> Result<Option<Account>, StateError>;
    fn read_storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError>;
    fn read_code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError>;
    /// Whether the code is there already (a block's new code is recorded only when it is not).
    fn has_code(&self, code_hash: &B256) -> bool;
    fn read_block_hash(&self, number: u64) -> Result<B256, StateError>;
}

impl StateSource for WorldState {
    fn read_account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        Ok(self.account(address).cloned())
    }

    fn read_storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        Ok(self.storage_at(address, slot))
    }

    fn read_code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        Ok(self.code(code_hash).cloned())
    }

    fn has_code(&self, code_hash: &B256) -> bool {
        self.code.contains_key(code_hash)
    }

    fn read_block_hash(&self, number: u64) -> Result<B256, StateError> {
        Ok(self.block_hash(number))
    }
}

impl StateSource for metis_storage::StateAt {
    fn read_account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        self.account(address).map_err(|e| StateError(e.to_string()))
    }

    fn read_storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        self.storage(address, slot).map_err(|e| StateError(e.to_string()))
    }

    fn read_code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        self.code(code_hash).map_err(|e| StateError(e.to_string()))
    }

    fn has_code(&self, code_hash: &B256) -> bool {
        self.code(code_hash).is_ok_and(|c| c.is_some())
    }

    fn read_block_hash(&self, number: u64) -> Result<B256, StateError> {
        self.block_hash(number).map_err(|e| StateError(e.to_string()))
    }
}

/// The state as a block in progress (or a call) sees it: its own changes over a committed state.
pub struct BlockOverlay<'a, S: StateSource + ?Sized = WorldState> {
    base: &'a S,
    changes: Changeset,
}

impl<'a, S: StateSource + ?Sized> BlockOverlay<'a, S> {
    pub fn over(base: &'a S) -> Self {
        BlockOverlay {
            base,
            changes: Changeset::default(),
        }
    }
}

impl<S: StateSource + ?Sized> BlockOverlay<'_, S> {
    pub fn changes(&self) -> &Changeset {
        &self.changes
    }

    pub(crate) fn changes_mut(&mut self) -> &mut Changeset {
        &mut self.changes
    }

    pub fn into_changes(self) -> Changeset {
        self.changes
    }

    /// The account as seen by the block in progress.
    pub fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        match self.changes.accounts.get(address) {
            Some(ch) => Ok(ch.info.clone()),
            None => self.base.read_account(address),
        }
    }
}

/// Reads never change the overlay, so it reads by reference too (what tracers that look at the state before a
/// transaction take).
impl<S: StateSource + ?Sized> DatabaseRef for BlockOverlay<'_, S> {
    type Error = StateError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address)?.as_ref().map(account_to_info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        if let Some(c) = self.changes.new_code.get(&code_hash) {
            return Ok(c.clone());
        }
        self.base
            .read_code(&code_hash)?
            .ok_or_else(|| StateError(format!("missing code {code_hash}")))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if let Some(ch) = self.changes.accounts.get(&address) {
            if let Some(v) = ch.storage.get(&index) {
                return Ok(*v);
            }
            if ch.storage_cleared || ch.info.is_none() {
                return Ok(U256::ZERO);
            }
        }
        self.base.read_storage(&address, &index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.base.read_block_hash(number)
    }
}

impl<S: StateSource + ?Sized> Database for BlockOverlay<'_, S> {
    type Error = StateError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.basic_ref(address)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.code_by_hash_ref(code_hash)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage_ref(address, index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.block_hash_ref(number)
    }
}

impl<S: StateSource + ?Sized> DatabaseCommit for BlockOverlay<'_, S> {
    fn commit(&mut self, changes: AddressMap<EvmAccount>) {
        for (address, account) in changes {
            if !account.is_touched() {
                continue;
            }
            let entry = self.changes.accounts.entry(address).or_default();
            // Self-destructed, or touched and empty (EIP-161): the account is gone with its storage.
            if account.is_selfdestructed() || account.is_empty() {
                *entry = AccountChange {
                    info: None,
                    storage_cleared: true,
                    storage: BTreeMap::new(),
                };
                continue;
            }
            if account.is_created() {
                entry.storage_cleared = true;
                entry.storage.clear();
            }
            if let Some(code) = &account.info.code {
                if account.info.code_hash != KECCAK_EMPTY && !self.base.has_code(&account.info.code_hash) {
                    self.changes
                        .new_code
                        .entry(account.info.code_hash)
                        .or_insert_with(|| code.clone());
                }
            }
            let entry = self.changes.accounts.entry(address).or_default();
            entry.info = Some(account_from_info(&account.info));
            for (slot, value) in account.changed_storage_slots() {
                entry.storage.insert(*slot, value.present_value());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, Bytes};
    use alloy_trie::{HashBuilder, Nibbles, EMPTY_ROOT_HASH};

    /// The state root from scratch with alloy-trie's HashBuilder, to check the incremental one.
    fn full_root(s: &WorldState) -> B256 {
        let mut accounts: Vec<_> = s
            .accounts
            .iter()
            .map(|(a, acc)| (keccak256(a), *a, acc.clone()))
            .collect();
        accounts.sort_by_key(|(h, _, _)| *h);
        let mut hb = HashBuilder::default();
        for (h, addr, acc) in accounts {
            let storage_root = match s.storage.get(&addr) {
                None => EMPTY_ROOT_HASH,
                Some(slots) => {
                    let mut kv: Vec<_> = slots.iter().map(|(k, v)| (slot_key(k), alloy_rlp::encode(v))).collect();
                    kv.sort();
                    let mut shb = HashBuilder::default();
                    for (k, v) in kv {
                        shb.add_leaf(Nibbles::unpack(k), &v);
                    }
                    shb.root()
                }
            };
            let leaf = TrieAccountRlp {
                nonce: acc.nonce,
                balance: acc.balance,
                storage_root,
                code_hash: acc.code_hash,
            };
            hb.add_leaf(Nibbles::unpack(h), &alloy_rlp::encode(&leaf));
        }
        hb.root()
    }

    #[test]
    fn empty_genesis_has_the_empty_root() {
        let (_, root) = WorldState::genesis(&ChainSpec::dev(1, &[], U256::ZERO));
        assert_eq!(root, EMPTY_ROOT_HASH);
    }

    /// The incremental root against a from-scratch HashBuilder build, block after block; and a computed but
    /// uncommitted root leaves the state as it was.
    #[test]
    fn incremental_root_matches_full_rebuild() {
        let a = address!("1000000000000000000000000000000000000001");
        let b = address!("1000000000000000000000000000000000000002");
        let mut spec = ChainSpec::dev(7, &[a, b], U256::from(10).pow(U256::from(18)));
        spec.alloc.get_mut(&b).unwrap().code = Bytes::from_static(&[0x60, 0x00]);
        spec.alloc
            .get_mut(&b)
            .unwrap()
            .storage
            .insert(U256::from(1), U256::from(5));
        let (mut s, root) = WorldState::genesis(&spec);
        assert_eq!(root, full_root(&s));

        for block in 0..50u64 {
            let mut cs = Changeset::default();
            for i in 0..(block % 7 + 1) {
                let who = Address::from_word(keccak256((block * 31 + i).to_be_bytes()));
                let ch = cs.accounts.entry(who).or_default();
                ch.info = Some(Account {
                    nonce: block,
                    balance: U256::from(block * 1000 + i),
                    code_hash: KECCAK_EMPTY,
                });
            }
            let ch = cs.accounts.entry(b).or_default();
            ch.info = s.account(&b).cloned();
            ch.storage.insert(U256::from(block % 5), U256::from(block % 3)); // zero deletes
            if block % 10 == 9 {
                cs.accounts.insert(
                    a,
                    AccountChange {
                        info: None,
                        storage_cleared: true,
                        storage: BTreeMap::new(),
                    },
                );
            }
            let before = s.root();
            let speculative = s.compute_root(&cs);
            assert_eq!(s.root(), before, "compute_root must not change the state");
            let root = s.apply(&cs);
            assert_eq!(root, speculative.root);
            assert_eq!(root, full_root(&s), "block {block}");
        }
    }
}
