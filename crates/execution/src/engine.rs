//! The interface the consensus layer (and the dev node) drives: build a block from candidates on the head,
//! validate-and-execute a block someone else proposed, commit a decided block. The head state lives in memory;
//! every committed block is written to the store first, atomically, so a restart resumes at the same head with
//! the same state root.

use crate::executor::{build_block, execute_block, BlockContext, BlockError, ExecutedBlock};
use crate::genesis::ChainSpec;
use crate::state::WorldState;
use crate::tx::{RecoveredTx, TxError};
use alloy_consensus::Header;
use alloy_primitives::{Address, B256};
use alloy_trie::EMPTY_ROOT_HASH;
use metis_storage::{BlockWrite, Store, StoreError, StoredTx};
use std::path::Path;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the data directory belongs to another chain: its genesis is {stored}, this chain's is {expected}")]
    GenesisMismatch { stored: B256, expected: B256 },
    #[error(
        "state in the data directory does not match its head block {number}: root {computed}, header says {expected}"
    )]
    StateRootMismatch {
        number: u64,
        computed: B256,
        expected: B256,
    },
    #[error("block {number} does not extend the head {head}")]
    NotOnHead { number: u64, head: u64 },
    #[error(transparent)]
    Block(#[from] BlockError),
}

pub struct Engine {
    spec: ChainSpec,
    store: Store,
    state: WorldState,
    head: Header,
    head_hash: B256,
}

/// Block 0 of `spec`.
pub fn genesis_header(spec: &ChainSpec, state_root: B256) -> Header {
    Header {
        state_root,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        gas_limit: spec.gas_limit,
        timestamp: spec.genesis_timestamp,
        extra_data: spec.genesis_extra_data.clone(),
        base_fee_per_gas: Some(spec.genesis_base_fee),
        ..crate::executor::prague_header()
    }
}

impl Engine {
    /// Opens the chain in `dir` (creating it from `spec`'s genesis when empty).
    pub fn open(dir: &Path, spec: ChainSpec) -> Result<Self, EngineError> {
        Self::open_with(dir, spec, metis_storage::StateHistory::Full)
    }

    /// [`Engine::open`] keeping `history` of the state (what state reads at older blocks can see).
    pub fn open_with(dir: &Path, spec: ChainSpec, history: metis_storage::StateHistory) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt(format!("creating {}: {e}", dir.display())))?;
        let store = Store::open(&dir.join("chain.redb"))?.with_history(history);
        let changeset = WorldState::genesis_changeset(&spec);
        let mut genesis_state = WorldState::default();
        let genesis_root = genesis_state.apply(&changeset);
        let genesis = genesis_header(&spec, genesis_root);
        let genesis_hash = genesis.hash_slow();
        match store.head()? {
            None => {
                store.write_block(
                    &BlockWrite {
                        header: &genesis,
                        hash: genesis_hash,
                        transactions: &[],
                        receipts: &[],
                        changeset: &changeset,
                    },
                    &[(metis_storage::schema::GENESIS, genesis_hash.as_slice())],
                )?;
                let mut state = genesis_state;
                state.record_block_hash(0, genesis_hash);
                info!(%genesis_hash, chain_id = spec.chain_id, "initialized chain from genesis");
                Ok(Self {
                    spec,
                    store,
                    state,
                    head: genesis,
                    head_hash: genesis_hash,
                })
            }
            Some((number, hash)) => {
                let stored = store
                    .meta(metis_storage::schema::GENESIS)?
                    .filter(|v| v.len() == 32)
                    .map(|v| B256::from_slice(&v))
                    .ok_or_else(|| StoreError::Corrupt("missing genesis record".into()))?;
                if stored != genesis_hash {
                    return Err(EngineError::GenesisMismatch {
                        stored,
                        expected: genesis_hash,
                    });
                }
                let head = store
                    .header(number)?
                    .ok_or_else(|| StoreError::Corrupt(format!("missing head header {number}")))?;
                let mut state = WorldState::default();
                let computed = state.apply(&store.load_state()?);
                if computed != head.state_root {
                    return Err(EngineError::StateRootMismatch {
                        number,
                        computed,
                        expected: head.state_root,
                    });
                }
                for n in number.saturating_sub(crate::state::BLOCK_HASH_HISTORY - 1)..=number {
                    if let Some(h) = store.header(n)? {
                        state.record_block_hash(n, h.hash_slow());
                    }
                }
                info!(number, %hash, accounts = state.account_count(), "resumed chain");
                Ok(Self {
                    spec,
                    store,
                    state,
                    head,
                    head_hash: hash,
                })
            }
        }
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn head(&self) -> &Header {
        &self.head
    }

    pub fn head_hash(&self) -> B256 {
        self.head_hash
    }

    pub fn state(&self) -> &WorldState {
        &self.state
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The context of the next block at `timestamp` (never before the head's: timestamps are whole seconds and
    /// several sub-second blocks share one, as on Arbitrum and Metis; strictly increasing ones would run ahead of
    /// the clock by 3 s every second at 250 ms blocks).
    pub fn next_context(&self, timestamp: u64, beneficiary: Address) -> BlockContext {
        let ts = timestamp.max(self.head.timestamp);
        BlockContext::child_of(&self.head, self.head_hash, &self.spec, ts, beneficiary)
    }

    /// Builds the next block from `candidates` (in order); returns it uncommitted, with the refused transactions.
    pub fn build(
        &self,
        ctx: BlockContext,
        candidates: impl IntoIterator<Item = RecoveredTx>,
    ) -> (ExecutedBlock, Vec<(B256, TxError)>) {
        build_block(&self.state, &self.spec, ctx, candidates)
    }

    /// Re-executes a block proposed on the head and checks its header.
    pub fn validate(&self, header: &Header, transactions: Vec<RecoveredTx>) -> Result<ExecutedBlock, EngineError> {
        if header.parent_hash != self.head_hash || header.number != self.head.number + 1 {
            return Err(EngineError::NotOnHead {
                number: header.number,
                head: self.head.number,
            });
        }
        let expected_base_fee = crate::executor::next_base_fee(&self.head);
        if header.base_fee_per_gas != Some(expected_base_fee) {
            return Err(BlockError::HeaderMismatch {
                field: "base_fee_per_gas",
                claimed: format!("{:?}", header.base_fee_per_gas),
                computed: expected_base_fee.to_string(),
            }
            .into());
        }
        if header.timestamp < self.head.timestamp {
            return Err(BlockError::HeaderMismatch {
                field: "timestamp",
                claimed: header.timestamp.to_string(),
                computed: format!(">= {}", self.head.timestamp),
            }
            .into());
        }
        Ok(execute_block(&self.state, &self.spec, header, transactions)?)
    }

    /// Commits a decided block: durable first, then the in-memory head.
    pub fn commit(&mut self, block: ExecutedBlock) -> Result<(), EngineError> {
        self.commit_with_meta(block, &[])
    }

    /// Commits a decided block with `meta` (key, value) entries written in the same store transaction, so what
    /// the caller keeps beside the chain (the PoS ledger, the commit certificate) never disagrees with it.
    pub fn commit_with_meta(&mut self, block: ExecutedBlock, meta: &[(&str, &[u8])]) -> Result<(), EngineError> {
        if block.header.parent_hash != self.head_hash || block.header.number != self.head.number + 1 {
            return Err(EngineError::NotOnHead {
                number: block.header.number,
                head: self.head.number,
            });
        }
        let txs: Vec<StoredTx<'_>> = block
            .transactions
            .iter()
            .map(|t| StoredTx {
                hash: t.hash,
                sender: t.sender,
                envelope: &t.envelope,
            })
            .collect();
        self.store.write_block(
            &BlockWrite {
                header: &block.header,
                hash: block.hash,
                transactions: &txs,
                receipts: &block.receipts,
                changeset: &block.changeset,
            },
            meta,
        )?;
        self.state.commit(&block.changeset, block.root_update);
        self.state.record_block_hash(block.header.number, block.hash);
        self.head = block.header;
        self.head_hash = block.hash;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{eip1559, keys};
    use alloy_primitives::{address, Bytes, TxKind, U256};

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("metis-exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn restart_resumes_at_the_same_head_and_root() {
        let dir = tmpdir("restart");
        let ks = keys(2);
        let spec = ChainSpec::dev(59902, &[ks[0].address(), ks[1].address()], U256::from(10u128.pow(21)));
        let to = address!("00000000000000000000000000000000000000aa");
        let (head, root, tx_hash) = {
            let mut engine = Engine::open(&dir, spec.clone()).unwrap();
            let mut last_tx = B256::ZERO;
            for n in 0..5u64 {
                let tx = eip1559(
                    &ks[(n % 2) as usize],
                    59902,
                    n / 2,
                    TxKind::Call(to),
                    U256::from(n + 1),
                    Bytes::new(),
                    21_000,
                );
                last_tx = tx.hash;
                let ctx = engine.next_context(100 + n, Address::ZERO);
                let (block, rejected) = engine.build(ctx, vec![tx]);
                assert!(rejected.is_empty(), "{rejected:?}");
                engine.commit(block).unwrap();
            }
            (engine.head_hash(), engine.head().state_root, last_tx)
        };
        let engine = Engine::open(&dir, spec.clone()).unwrap();
        assert_eq!(engine.head_hash(), head);
        assert_eq!(engine.head().number, 5);
        assert_eq!(engine.head().state_root, root);
        assert_eq!(engine.state().account(&to).unwrap().balance, U256::from(15));
        let (n, i) = engine.store().tx_location(&tx_hash).unwrap().unwrap();
        assert_eq!((n, i), (5, 0));
        let receipts = engine.store().receipts(5).unwrap().unwrap();
        assert!(receipts[0].status());
        let txs = engine.store().transactions(5).unwrap().unwrap();
        assert_eq!(txs[0].0, ks[0].address());

        // The data dir is locked while open; once closed, another chain's genesis is refused, clearly.
        assert!(Engine::open(&dir, spec.clone()).is_err());
        drop(engine);
        let other = ChainSpec::dev(1, &[], U256::ZERO);
        assert!(matches!(
            Engine::open(&dir, other),
            Err(EngineError::GenesisMismatch { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_data_dir_is_a_clear_error_and_is_left_alone() {
        let dir = tmpdir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = vec![0x5au8; 64 * 1024];
        std::fs::write(dir.join("chain.redb"), &garbage).unwrap();
        let spec = ChainSpec::dev(7, &[], U256::ZERO);
        let err = Engine::open(&dir, spec).err().expect("garbage must not open");
        assert!(err.to_string().contains("database"), "unclear error: {err}");
        assert_eq!(
            std::fs::read(dir.join("chain.redb")).unwrap(),
            garbage,
            "the file is not touched"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validate_accepts_built_blocks_and_refuses_foreign_ones() {
        let dir = tmpdir("validate");
        let ks = keys(1);
        let spec = ChainSpec::dev(7, &[ks[0].address()], U256::from(10u128.pow(21)));
        let proposer = Engine::open(&dir.join("a"), spec.clone()).unwrap();
        let mut validator = Engine::open(&dir.join("b"), spec.clone()).unwrap();
        let tx = eip1559(
            &ks[0],
            7,
            0,
            TxKind::Call(Address::ZERO),
            U256::from(1),
            Bytes::new(),
            21_000,
        );
        let (block, _) = proposer.build(proposer.next_context(10, Address::ZERO), vec![tx.clone()]);
        let checked = validator.validate(&block.header, vec![tx.clone()]).unwrap();
        assert_eq!(checked.hash, block.hash);
        // Same block, one transaction missing: the header no longer matches.
        assert!(validator.validate(&block.header, vec![]).is_err());
        // A wrong base fee is refused before execution.
        let mut h = block.header.clone();
        h.base_fee_per_gas = Some(1);
        assert!(validator.validate(&h, vec![tx]).is_err());
        validator.commit(checked).unwrap();
        assert_eq!(validator.head_hash(), block.hash);
        // A second block within the same second keeps the head's timestamp (sub-second blocks); one before it
        // is refused.
        let ctx = validator.next_context(9, Address::ZERO);
        assert_eq!(ctx.timestamp, 10);
        let (same, _) = validator.build(ctx, vec![]);
        assert!(validator.validate(&same.header, vec![]).is_ok());
        let mut earlier = same.header.clone();
        earlier.timestamp = 9;
        assert!(validator.validate(&earlier, vec![]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
