//! The decided value's body as it travels (proposal parts, sync): the header, the transactions, the PoS
//! transactions (L1 staking events), evidence of equivocation, and the commit certificate of the parent block
//! ("last commit").
//!
//! The header's extra data is 64 bytes: the PoS ledger's state hash before the block, then the root of the
//! block's PoS transactions and evidence ([`pos_root`]), so the block hash (the value consensus decides)
//! commits to all of it.
//!
//! The last commit does two jobs. Its digest is the block's PREVRANDAO (`mix_hash`), which the header hash
//! commits to, and the PoS ledger seeds each election with the `mix_hash` of the block that closes the epoch.
//! That value is a function of precommit signatures by other validators over the parent block, which no single
//! sequencer can compute in advance (see docs/architecture.md, "Election seed").

use crate::codec::WireCertificate;
use crate::evidence::{Evidence, MAX_EVIDENCE_BYTES};
use crate::signing::{extension_bytes, verify};
use crate::types::{BlockHash, Height, MetisContext, ValidatorSet};
use alloy_consensus::{Header, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{keccak256, B256};
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{Context, NilOrVal, VoteExtensionScope};
use metis_execution::{RecoveredTx, TxError};
use metis_pos::PosTx;

/// Largest encoded block a node accepts (a 30M-gas block of zero-byte calldata is ~7.5 MB).
pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;
/// Largest vote extension accepted from a set of up to 32 validators.
pub const MAX_EXTENSION_BYTES: usize = 256 * 1024;
/// All the vote extensions of one certificate together at most: the next block carries them as its last commit,
/// within [`MAX_BLOCK_BYTES`].
pub const MAX_COMMIT_EXTENSION_BYTES: usize = 8 * 1024 * 1024;

/// Largest vote extension one of `validators` may send: [`MAX_EXTENSION_BYTES`], less in a set of more than 32 so
/// that a whole certificate's stay within [`MAX_COMMIT_EXTENSION_BYTES`].
pub fn extension_cap(validators: usize) -> usize {
    MAX_EXTENSION_BYTES.min(MAX_COMMIT_EXTENSION_BYTES / validators.max(1))
}

/// Bytes a block has for its L2 transactions: [`MAX_BLOCK_BYTES`] less 1 MiB for the header, PoS transactions and
/// evidence (each bounded far below), less the last commit it carries (whose extensions can be megabytes while a
/// key round runs among many).
pub fn tx_room(last_commit: Option<&WireCertificate>) -> usize {
    let commit = match last_commit.map(borsh::object_length) {
        None => 0,
        Some(Ok(n)) => n,
        // Not reachable for an in-memory value; assume the largest a certificate can be.
        Some(Err(_)) => MAX_COMMIT_EXTENSION_BYTES + 1024 * 1024,
    };
    (MAX_BLOCK_BYTES - 1024 * 1024).saturating_sub(commit)
}

/// PoS transactions per block at most (a burst of L1 events spreads over the next blocks).
pub const MAX_POS_TXS: usize = 64;
/// Largest encoded PoS transaction.
const MAX_POS_TX_BYTES: usize = 4096;
/// Evidence items per block at most (more waits for the next blocks).
pub const MAX_EVIDENCE_PER_BLOCK: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
struct WireBlock {
    header_rlp: Vec<u8>,
    txs: Vec<Vec<u8>>,
    pos_txs: Vec<Vec<u8>>,
    evidence: Vec<Vec<u8>>,
    last_commit: Option<WireCertificate>,
}

#[derive(Clone, Debug)]
pub struct BlockData {
    pub header: Header,
    pub txs: Vec<RecoveredTx>,
    pub pos_txs: Vec<PosTx>,
    pub evidence: Vec<Evidence>,
    pub last_commit: Option<WireCertificate>,
}

/// The root the header commits to: keccak over the canonical encodings of the PoS transactions, then of the
/// evidence, each list counted and each item length-prefixed.
pub fn pos_root(pos_txs: &[PosTx], evidence: &[Evidence]) -> Result<B256, BlockDataError> {
    let mut buf = b"metis-seq/pos-txs/v3".to_vec();
    buf.extend_from_slice(&(pos_txs.len() as u64).to_be_bytes());
    for t in pos_txs {
        let b = pos_tx_bytes(t)?;
        buf.extend_from_slice(&(b.len() as u64).to_be_bytes());
        buf.extend_from_slice(&b);
    }
    buf.extend_from_slice(&(evidence.len() as u64).to_be_bytes());
    for e in evidence {
        let b = e.to_bytes().map_err(|e| BlockDataError::Encoding(e.to_string()))?;
        buf.extend_from_slice(&(b.len() as u64).to_be_bytes());
        buf.extend_from_slice(&b);
    }
    Ok(keccak256(buf))
}

fn pos_tx_bytes(t: &PosTx) -> Result<Vec<u8>, BlockDataError> {
    t.to_bytes().map_err(|e| BlockDataError::Encoding(e.to_string()))
}

/// The header's extra data: keccak256 of the ledger hash before the block and the root of its PoS transactions
/// and evidence. 32 bytes, geth's limit (web3.py refuses longer extra data); every validator recomputes both
/// preimages from the block and its own ledger.
pub fn extra_data(ledger_hash: B256, pos_txs: &[PosTx], evidence: &[Evidence]) -> Result<Vec<u8>, BlockDataError> {
    let mut v = ledger_hash.to_vec();
    v.extend_from_slice(pos_root(pos_txs, evidence)?.as_slice());
    Ok(keccak256(v).to_vec())
}

#[derive(Debug, thiserror::Error)]
pub enum BlockDataError {
    #[error("block of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("block encoding: {0}")]
    Encoding(String),
    #[error("transaction {index}: {error}")]
    Tx { index: usize, error: TxError },
    #[error("last commit: {0}")]
    LastCommit(String),
}

/// Encodes a block as it travels, from borrowed parts (a built block, a stored one), with no copy of the
/// transactions and no sender recovery.
pub fn encode_block<'a>(
    header: &Header,
    txs: impl IntoIterator<Item = &'a TxEnvelope>,
    pos_txs: &[PosTx],
    evidence: &[Evidence],
    last_commit: Option<&WireCertificate>,
) -> Result<Vec<u8>, BlockDataError> {
    let wire = WireBlock {
        header_rlp: alloy_rlp::encode(header),
        txs: txs.into_iter().map(|t| t.encoded_2718()).collect(),
        pos_txs: pos_txs.iter().map(pos_tx_bytes).collect::<Result<_, _>>()?,
        evidence: evidence
            .iter()
            .map(|e| e.to_bytes().map_err(|e| BlockDataError::Encoding(e.to_string())))
            .collect::<Result<_, _>>()?,
        last_commit: last_commit.cloned(),
    };
    borsh::to_vec(&wire).map_err(|e| BlockDataError::Encoding(e.to_string()))
}

impl BlockData {
    pub fn encode(&self) -> Result<Vec<u8>, BlockDataError> {
        encode_block(
            &self.header,
            self.txs.iter().map(|t| &t.envelope),
            &self.pos_txs,
            &self.evidence,
            self.last_commit.as_ref(),
        )
    }

    /// Decodes and recovers every sender (the expensive part of accepting a block).
    pub fn decode(bytes: &[u8]) -> Result<Self, BlockDataError> {
        Self::decode_with(bytes, |h| vec![None; h.len()])
    }

    /// Decodes, taking transactions this node already holds (by hash: same hash, same signed transaction,
    /// same sender) from `known` (one lookup for all the block's hashes, so a caller's lock is held only for
    /// that) instead of recovering their senders again. Gossip has usually delivered a proposal's transactions
    /// before the proposal, so this skips most signature recoveries; the rest are recovered on all cores.
    pub fn decode_with(
        bytes: &[u8],
        known: impl FnOnce(&[B256]) -> Vec<Option<RecoveredTx>>,
    ) -> Result<Self, BlockDataError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(BlockDataError::TooLarge(bytes.len()));
        }
        let wire: WireBlock = borsh::from_slice(bytes).map_err(|e| BlockDataError::Encoding(e.to_string()))?;
        let mut h = wire.header_rlp.as_slice();
        let header: Header =
            alloy_rlp::Decodable::decode(&mut h).map_err(|e| BlockDataError::Encoding(e.to_string()))?;
        if !h.is_empty() {
            return Err(BlockDataError::Encoding("trailing bytes after the header".into()));
        }
        if wire.pos_txs.len() > MAX_POS_TXS {
            return Err(BlockDataError::Encoding(format!(
                "{} PoS transactions, at most {MAX_POS_TXS}",
                wire.pos_txs.len()
            )));
        }
        let pos_txs = wire
            .pos_txs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (b.len() <= MAX_POS_TX_BYTES)
                    .then(|| PosTx::from_bytes(b))
                    .flatten()
                    .ok_or_else(|| BlockDataError::Encoding(format!("PoS transaction {i} does not decode")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if wire.evidence.len() > MAX_EVIDENCE_PER_BLOCK {
            return Err(BlockDataError::Encoding(format!(
                "{} evidence items, at most {MAX_EVIDENCE_PER_BLOCK}",
                wire.evidence.len()
            )));
        }
        let evidence = wire
            .evidence
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (b.len() <= MAX_EVIDENCE_BYTES)
                    .then(|| Evidence::from_bytes(b).ok())
                    .flatten()
                    .ok_or_else(|| BlockDataError::Encoding(format!("evidence {i} does not decode")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut envelopes = Vec::with_capacity(wire.txs.len());
        for (index, raw) in wire.txs.iter().enumerate() {
            let mut b = raw.as_slice();
            let env = TxEnvelope::decode_2718(&mut b).map_err(|e| BlockDataError::Tx {
                index,
                error: TxError::Decode(e.to_string()),
            })?;
            if !b.is_empty() {
                return Err(BlockDataError::Tx {
                    index,
                    error: TxError::Decode("trailing bytes".into()),
                });
            }
            envelopes.push(env);
        }
        let hashes: Vec<B256> = envelopes.iter().map(|e| *e.tx_hash()).collect();
        let held = known(&hashes);
        let txs = recover_all(envelopes, held)?;
        Ok(Self {
            header,
            txs,
            pos_txs,
            evidence,
            last_commit: wire.last_commit,
        })
    }
}

/// Below this many unknown transactions a block's senders are recovered on the calling thread.
const PARALLEL_RECOVERY_MIN: usize = 256;

/// The block's transactions with their senders: `held[i]` where the node had transaction i, recovered
/// otherwise; a big remainder is split over the machine's cores (it is on the path to this node's vote).
fn recover_all(envelopes: Vec<TxEnvelope>, held: Vec<Option<RecoveredTx>>) -> Result<Vec<RecoveredTx>, BlockDataError> {
    let mut held = held;
    held.resize(envelopes.len(), None);
    let missing = held.iter().filter(|h| h.is_none()).count();
    let recover = |index: usize, env: TxEnvelope| {
        RecoveredTx::from_envelope(env).map_err(|error| BlockDataError::Tx { index, error })
    };
    // Asked only for a big remainder: the answer reads cgroup files, at every height otherwise.
    let threads = if missing < PARALLEL_RECOVERY_MIN {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    if threads < 2 {
        return envelopes
            .into_iter()
            .zip(held)
            .enumerate()
            .map(|(i, (env, h))| match h {
                Some(t) => Ok(t),
                None => recover(i, env),
            })
            .collect();
    }
    let todo: Vec<(usize, TxEnvelope)> = envelopes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| held[*i].is_none())
        .collect();
    let per = todo.len().div_ceil(threads);
    let results: Vec<Result<Vec<(usize, RecoveredTx)>, BlockDataError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = todo
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(i, env)| recover(*i, env.clone()).map(|t| (*i, t)))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(BlockDataError::Encoding("sender recovery panicked".into())))
            })
            .collect()
    });
    for r in results {
        for (i, t) in r? {
            held[i] = Some(t);
        }
    }
    held.into_iter()
        .enumerate()
        .map(|(i, h)| h.ok_or(BlockDataError::Encoding(format!("transaction {i} has no sender"))))
        .collect()
}

/// PREVRANDAO of block `number`: a digest of the parent's commit certificate (block 1 has none).
pub fn commit_digest(number: u64, parent_hash: B256, last_commit: Option<&WireCertificate>) -> B256 {
    let mut buf = b"metis-seq/last-commit/v1".to_vec();
    buf.extend_from_slice(&number.to_be_bytes());
    buf.extend_from_slice(parent_hash.as_slice());
    if let Some(c) = last_commit {
        let mut sigs: Vec<_> = c.signatures.iter().map(|(a, s, _)| (a.0, s.0)).collect();
        sigs.sort();
        for (a, s) in sigs {
            buf.extend_from_slice(&a);
            buf.extend_from_slice(&s);
        }
    }
    keccak256(buf)
}

/// Checks that `c` is a commit certificate for block `parent` (number `parent_number`, hash `parent_hash`) by
/// more than 2/3 of the voting power of `set`, every signature valid and no validator counted twice.
pub fn verify_commit(
    c: &WireCertificate,
    parent_number: u64,
    parent_hash: B256,
    set: &ValidatorSet,
) -> Result<(), BlockDataError> {
    let bad = |m: String| Err(BlockDataError::LastCommit(m));
    if c.height != Height(parent_number) || c.value_id != BlockHash(parent_hash.0) {
        return bad(format!(
            "certifies height {} value {}, not the parent",
            c.height, c.value_id
        ));
    }
    let ctx = MetisContext;
    let mut seen = std::collections::BTreeSet::new();
    let mut power: u128 = 0;
    for (addr, sig, ext) in &c.signatures {
        let Some(v) = set.by_address(addr) else {
            return bad(format!("signer {addr} is not a validator of height {parent_number}"));
        };
        if !seen.insert(*addr) {
            return bad(format!("signer {addr} counted twice"));
        }
        let vote = ctx.new_precommit(c.height, c.round, NilOrVal::Val(c.value_id), *addr);
        if !verify(&v.public_key, &vote.signing_bytes(), sig) {
            return bad(format!("bad precommit signature by {addr}"));
        }
        // A carried vote extension is decided data (threshold-key messages): it must be the signer's own.
        if let Some(ext) = ext {
            let scope = VoteExtensionScope::new(c.height, c.round, c.value_id, *addr);
            if !verify(&v.public_key, &extension_bytes(&scope, &ext.message), &ext.signature) {
                return bad(format!("bad vote extension signature by {addr}"));
            }
            if ext.message.len() > extension_cap(set.validators().len()) {
                return bad(format!("vote extension of {} bytes by {addr}", ext.message.len()));
            }
        }
        power += v.voting_power as u128;
    }
    let total: u128 = set.validators().iter().map(|v| v.voting_power as u128).sum();
    if power * 3 <= total * 2 {
        return bad(format!(
            "signers hold {power} of {total} voting power, not more than 2/3"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::ConsensusSigner;
    use crate::types::Address;
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::{TxKind, U256};
    use alloy_signer::SignerSync;
    use malachitebft_core_types::Round;

    fn transfers(n: usize) -> Vec<RecoveredTx> {
        let key = alloy_signer_local::PrivateKeySigner::from_slice(&[9u8; 32]).expect("key");
        (0..n as u64)
            .map(|nonce| {
                let tx = TxEip1559 {
                    chain_id: 59902,
                    nonce,
                    gas_limit: 21_000,
                    max_fee_per_gas: 2_000_000_000,
                    max_priority_fee_per_gas: 1,
                    to: TxKind::Call(alloy_primitives::Address::repeat_byte(0xf0)),
                    value: U256::from(nonce),
                    ..Default::default()
                };
                let sig = key.sign_hash_sync(&tx.signature_hash()).expect("sign");
                RecoveredTx::from_envelope(TxEnvelope::from(tx.into_signed(sig))).expect("tx")
            })
            .collect()
    }

    #[test]
    fn decode_takes_known_senders_and_recovers_the_rest_in_parallel() {
        let txs = transfers(700);
        let header = Header {
            number: 3,
            ..Default::default()
        };
        let bytes = encode_block(&header, txs.iter().map(|t| &t.envelope), &[], &[], None).unwrap();
        // Every third transaction is held (with its sender); the other 466 are recovered on several threads.
        let held: std::collections::HashMap<B256, RecoveredTx> =
            txs.iter().step_by(3).map(|t| (t.hash, t.clone())).collect();
        let mut asked = 0;
        let d = BlockData::decode_with(&bytes, |hashes| {
            asked += hashes.len();
            hashes.iter().map(|h| held.get(h).cloned()).collect()
        })
        .expect("decodes");
        assert_eq!(asked, 700, "one lookup for all the block's hashes");
        assert_eq!(d.txs, txs, "same transactions, same senders, same order");
        assert_eq!(BlockData::decode(&bytes).expect("decodes").txs, txs);

        // A held entry is taken only by hash, which covers the signature: altered signature bytes are not
        // matched to the held sender (recovery then fails or yields another address).
        let mut raw = txs[3].envelope.encoded_2718();
        let n = raw.len();
        raw[n - 5] ^= 0xff;
        let mut tampered: Vec<Vec<u8>> = txs.iter().map(|t| t.envelope.encoded_2718()).collect();
        tampered[3] = raw;
        let mut header_rlp = Vec::new();
        alloy_rlp::Encodable::encode(&header, &mut header_rlp);
        let wire = WireBlock {
            header_rlp,
            txs: tampered,
            pos_txs: vec![],
            evidence: vec![],
            last_commit: None,
        };
        let bad = borsh::to_vec(&wire).expect("encode");
        match BlockData::decode_with(&bad, |h| h.iter().map(|h| held.get(h).cloned()).collect()) {
            Err(_) => {}
            Ok(d) => assert_ne!(d.txs[3].sender, txs[3].sender),
        }
    }

    #[test]
    fn commit_verification() {
        let keys: Vec<_> = (1..=4u8)
            .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]))
            .collect();
        let vals: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i as u64 + 1, k.verifying_key().to_bytes(), 10))
            .collect();
        let set = ValidatorSet::new(&vals, &[1, 2, 3, 4]).unwrap();
        let parent = B256::repeat_byte(7);
        let sign = |k: &ed25519_dalek::SigningKey| {
            let a = Address(k.verifying_key().to_bytes());
            let vote = MetisContext.new_precommit(Height(9), Round::new(0), NilOrVal::Val(BlockHash(parent.0)), a);
            (
                a,
                ConsensusSigner::new(k.clone()).sign_bytes(&vote.signing_bytes()),
                None,
            )
        };
        let mut c = WireCertificate {
            height: Height(9),
            round: Round::new(0),
            value_id: BlockHash(parent.0),
            signatures: keys[..3].iter().map(sign).collect(),
        };
        verify_commit(&c, 9, parent, &set).unwrap();
        assert!(verify_commit(&c, 9, B256::ZERO, &set).is_err());
        // 2 of 4 is not enough; a duplicate does not count twice.
        c.signatures.truncate(2);
        assert!(verify_commit(&c, 9, parent, &set).is_err());
        c.signatures.push(c.signatures[0].clone());
        assert!(verify_commit(&c, 9, parent, &set).is_err());
        // A forged signature is refused.
        c.signatures[2] = sign(&keys[3]);
        c.signatures[2].1 .0[0] ^= 1;
        assert!(verify_commit(&c, 9, parent, &set).is_err());
        // The digest does not depend on signature order.
        let mut a = c.clone();
        a.signatures.reverse();
        assert_eq!(commit_digest(10, parent, Some(&a)), commit_digest(10, parent, Some(&c)));
    }

    /// The extension cap shrinks above 32 validators so that a certificate's extensions stay within their budget,
    /// and a block leaves its transactions the room its last commit does not take.
    #[test]
    fn extension_caps_and_the_room_a_last_commit_leaves() {
        assert_eq!(extension_cap(4), MAX_EXTENSION_BYTES);
        assert_eq!(extension_cap(32), MAX_EXTENSION_BYTES);
        assert_eq!(extension_cap(0), MAX_EXTENSION_BYTES);
        for n in [33, 64, 100, 256] {
            assert!(extension_cap(n) < MAX_EXTENSION_BYTES && extension_cap(n) * n <= MAX_COMMIT_EXTENSION_BYTES);
        }
        assert_eq!(tx_room(None), MAX_BLOCK_BYTES - 1024 * 1024);
        let ext = |i: u8| {
            let sig = ConsensusSigner::new(ed25519_dalek::SigningKey::from_bytes(&[i; 32])).sign_bytes(b"x");
            Some(malachitebft_core_types::SignedMessage::new(
                vec![i; MAX_EXTENSION_BYTES],
                sig.clone(),
            ))
        };
        let c = WireCertificate {
            height: Height(9),
            round: Round::new(0),
            value_id: BlockHash([1; 32]),
            signatures: (1..=32u8)
                .map(|i| {
                    let sig = ConsensusSigner::new(ed25519_dalek::SigningKey::from_bytes(&[i; 32])).sign_bytes(b"v");
                    (Address([i; 32]), sig, ext(i))
                })
                .collect(),
        };
        let room = tx_room(Some(&c));
        assert!(
            room < MAX_BLOCK_BYTES - 1024 * 1024 - MAX_COMMIT_EXTENSION_BYTES,
            "{room}"
        );
        assert!(
            room >= MAX_BLOCK_BYTES - 2 * 1024 * 1024 - MAX_COMMIT_EXTENSION_BYTES,
            "{room}"
        );
    }
}
