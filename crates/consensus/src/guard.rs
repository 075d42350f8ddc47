//! The signing guard: the last (height, round, step) this node's consensus key signed, on disk, so that no
//! restart, WAL replay or restore of an older data dir ever makes it sign two different messages for one slot
//! (which the others would prove as a double vote or double proposal, and L1 would slash).
//!
//! Malachite already flushes its WAL before a signed message leaves, which covers a crash. The guard covers what
//! the WAL cannot: the WAL lives in the data dir, and a data dir restored from a copy taken some heights earlier
//! has forgotten what was signed since. So the guard lives next to the key (the keys dir), outside the data dir,
//! and is written and fsynced before the signature is returned. Like CometBFT's `priv_validator_state`, it refuses:
//! - anything for a slot older than the last one signed (the node is behind what its key already did), and
//! - different bytes for the slot last signed (the same bytes again, as in a replay, are signed again).
//!
//! A refusal is an error of Malachite's signing provider: the engine sends nothing, logs a liveness failure for
//! that input and fails its consensus actor, so the node stops at that height (safe, not live). A node behind
//! its own guard must first catch up (sync) past the guard's height.

use async_trait::async_trait;
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{Round, SignedMessage, ValidatorProof, VoteExtensionScope, VoteType};
use malachitebft_signing::{Error as SigningError, Signer};
use metis_wire::signing::{proposal_bytes, ConsensusSigner};
use metis_wire::types::{MetisContext, Proposal, Vote};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One signed slot: height, round (-1 for nil is never signed), step, and a digest of what was signed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Slot {
    pub height: u64,
    pub round: i64,
    /// 1 proposal, 2 prevote, 3 precommit (the order they are signed in within a round).
    pub step: u8,
    pub digest: [u8; 32],
}

impl Slot {
    fn key(&self) -> (u64, i64, u8) {
        (self.height, self.round, self.step)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("signing guard {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "signing guard {0} is not readable (corrupt?); it must be fixed by hand, never deleted while the key signs"
    )]
    Corrupt(PathBuf),
    #[error(
        "refused to sign {what} for height {height} round {round}: this key already signed up to height \
         {last_height} round {last_round} step {last_step} (a data dir older than the key's signing record?)"
    )]
    Behind {
        what: &'static str,
        height: u64,
        round: i64,
        last_height: u64,
        last_round: i64,
        last_step: u8,
    },
    #[error("refused to sign a different {what} for height {height} round {round}: that would be a double sign")]
    Conflict {
        what: &'static str,
        height: u64,
        round: i64,
    },
}

/// The check, without I/O: may `next` be signed after `last`? `Ok(true)`: yes, and it is a new slot to record.
pub fn admit(last: Option<&Slot>, next: &Slot, what: &'static str) -> Result<bool, GuardError> {
    let Some(last) = last else {
        return Ok(true);
    };
    match next.key().cmp(&last.key()) {
        std::cmp::Ordering::Greater => Ok(true),
        std::cmp::Ordering::Equal if next.digest == last.digest => Ok(false),
        std::cmp::Ordering::Equal => Err(GuardError::Conflict {
            what,
            height: next.height,
            round: next.round,
        }),
        std::cmp::Ordering::Less => Err(GuardError::Behind {
            what,
            height: next.height,
            round: next.round,
            last_height: last.height,
            last_round: last.round,
            last_step: last.step,
        }),
    }
}

/// Bytes of one record: magic, the borsh [`Slot`] (49 bytes), a checksum, padding.
const RECORD: usize = 64;
const MAGIC: &[u8; 4] = b"MSG2";
/// The file: two records, written in turn.
const FILE_LEN: u64 = 2 * RECORD as u64;
/// A slot's borsh encoding (8 + 8 + 1 + 32 bytes); an older guard file is exactly one.
const SLOT_LEN: usize = 49;

fn encode_record(slot: &Slot) -> std::io::Result<[u8; RECORD]> {
    let mut r = [0u8; RECORD];
    r[..4].copy_from_slice(MAGIC);
    // The slot's one encoding (borsh, as the older file held it), written into its fixed place.
    slot.serialize(&mut &mut r[4..4 + SLOT_LEN])?;
    let sum = digest(b"guard-record", &r[..4 + SLOT_LEN]);
    r[4 + SLOT_LEN..4 + SLOT_LEN + 8].copy_from_slice(&sum[..8]);
    Ok(r)
}

/// The slot in a record, or `None` if the record is not whole (never written, or torn by a crash mid-write).
fn decode_record(r: &[u8]) -> Option<Slot> {
    if r.len() != RECORD || &r[..4] != MAGIC {
        return None;
    }
    let sum = digest(b"guard-record", &r[..4 + SLOT_LEN]);
    if r[4 + SLOT_LEN..4 + SLOT_LEN + 8] != sum[..8] {
        return None;
    }
    Slot::try_from_slice(&r[4..4 + SLOT_LEN]).ok()
}

/// The last slot of a guard file's bytes: the newer of the two whole records; an older version's file (one bare
/// slot) is read too. `Err` if nothing in it is a whole record.
fn decode_file(bytes: &[u8]) -> Result<(Slot, usize), ()> {
    if bytes.len() == SLOT_LEN {
        return Slot::try_from_slice(bytes).map(|s| (s, 0)).map_err(|_| ());
    }
    if bytes.len() as u64 != FILE_LEN {
        return Err(());
    }
    let a = decode_record(&bytes[..RECORD]);
    let b = decode_record(&bytes[RECORD..]);
    match (a, b) {
        (Some(a), Some(b)) if b.key() > a.key() => Ok((b, 1)),
        (Some(a), _) => Ok((a, 0)),
        (None, Some(b)) => Ok((b, 1)),
        (None, None) => Err(()),
    }
}

/// The guard file: two fixed-size records, each new slot written over the older one in place and synced (one
/// `fdatasync`, no new file, rename or directory sync on the path to every vote). A crash mid-write tears at most
/// the record being written; the other still holds the slot before it, and the torn one's signature was never
/// returned.
pub struct SigningGuard {
    path: PathBuf,
    state: Mutex<GuardState>,
}

struct GuardState {
    /// Open for writing in place once the file has its two records (after the first slot of a new guard).
    file: Option<std::fs::File>,
    last: Option<Slot>,
    /// The record holding `last`; the next write goes to the other.
    at: usize,
}

impl SigningGuard {
    pub fn open(path: &Path) -> Result<Self, GuardError> {
        let io = |source| GuardError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.to_path_buf(),
                    state: Mutex::new(GuardState {
                        file: None,
                        last: None,
                        at: 0,
                    }),
                })
            }
            Err(e) => return Err(io(e)),
        };
        let (last, mut at) = decode_file(&bytes).map_err(|()| GuardError::Corrupt(path.to_path_buf()))?;
        if bytes.len() as u64 != FILE_LEN {
            // An older version's file (one bare slot): laid out as two records once, replaced atomically.
            replace(path, &layout(&last).map_err(io)?).map_err(io)?;
            at = 0;
        }
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(GuardState {
                file: Some(file),
                last: Some(last),
                at,
            }),
        })
    }

    /// The last slot signed, if any.
    pub fn last(&self) -> Option<Slot> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last
    }

    /// Records `slot` durably if it may be signed; errors if it may not.
    pub fn check_and_record(&self, slot: Slot, what: &'static str) -> Result<(), GuardError> {
        // A panic while holding the lock leaves at most a torn record, which reads as the slot before it.
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !admit(st.last.as_ref(), &slot, what)? {
            return Ok(());
        }
        let io = |source| GuardError::Io {
            path: self.path.clone(),
            source,
        };
        match &st.file {
            Some(file) => {
                use std::os::unix::fs::FileExt;
                let next = if st.at == 0 { 1 } else { 0 };
                file.write_all_at(&encode_record(&slot).map_err(io)?, (next * RECORD) as u64)
                    .map_err(io)?;
                file.sync_data().map_err(io)?;
                st.at = next;
            }
            None => {
                replace(&self.path, &layout(&slot).map_err(io)?).map_err(io)?;
                let file = std::fs::OpenOptions::new().write(true).open(&self.path).map_err(io)?;
                st.file = Some(file);
                st.at = 0;
            }
        }
        st.last = Some(slot);
        Ok(())
    }
}

/// A whole guard file holding `slot` in its first record (the second is not a record yet).
fn layout(slot: &Slot) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; FILE_LEN as usize];
    bytes[..RECORD].copy_from_slice(&encode_record(slot)?);
    Ok(bytes)
}

/// Writes `path` whole and durably: temp file, fsync, rename, fsync of the directory.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

fn digest(domain: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(bytes);
    h.finalize().into()
}

fn round_of(r: Round) -> i64 {
    r.as_i64()
}

/// Malachite's signing provider behind the guard: votes and proposals pass the guard first.
pub struct GuardedSigner {
    inner: ConsensusSigner,
    guard: SigningGuard,
}

impl GuardedSigner {
    pub fn new(inner: ConsensusSigner, guard: SigningGuard) -> Self {
        Self { inner, guard }
    }

    fn refuse(e: GuardError) -> SigningError {
        tracing::error!(error = %e, "signing guard");
        SigningError::from_source(e)
    }
}

#[async_trait]
impl Signer<MetisContext> for GuardedSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<MetisContext, Vote>, SigningError> {
        let (step, what) = match vote.vote_type {
            VoteType::Prevote => (2, "prevote"),
            VoteType::Precommit => (3, "precommit"),
        };
        let slot = Slot {
            height: vote.height.0,
            round: round_of(vote.round),
            step,
            digest: digest(b"vote", &vote.signing_bytes()),
        };
        self.guard.check_and_record(slot, what).map_err(Self::refuse)?;
        self.inner.sign_vote(vote).await
    }

    async fn sign_proposal(&self, proposal: Proposal) -> Result<SignedMessage<MetisContext, Proposal>, SigningError> {
        let slot = Slot {
            height: proposal.height.0,
            round: round_of(proposal.round),
            step: 1,
            digest: digest(b"proposal", &proposal_bytes(&proposal)),
        };
        self.guard.check_and_record(slot, "proposal").map_err(Self::refuse)?;
        self.inner.sign_proposal(proposal).await
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<MetisContext>,
        extension: Vec<u8>,
    ) -> Result<SignedMessage<MetisContext, Vec<u8>>, SigningError> {
        self.inner.sign_vote_extension(scope, extension).await
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<MetisContext>, SigningError> {
        self.inner.sign_validator_proof(public_key, peer_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(height: u64, round: i64, step: u8, d: u8) -> Slot {
        Slot {
            height,
            round,
            step,
            digest: [d; 32],
        }
    }

    #[test]
    fn forward_only_and_the_same_bytes_again() {
        assert!(admit(None, &slot(5, 0, 2, 1), "prevote").unwrap());
        let last = slot(5, 0, 2, 1);
        assert!(admit(Some(&last), &slot(5, 0, 3, 9), "precommit").unwrap());
        assert!(admit(Some(&last), &slot(5, 1, 1, 9), "proposal").unwrap());
        assert!(admit(Some(&last), &slot(6, 0, 1, 9), "proposal").unwrap());
        assert!(!admit(Some(&last), &slot(5, 0, 2, 1), "prevote").unwrap(), "a replay");
        assert!(matches!(
            admit(Some(&last), &slot(5, 0, 2, 2), "prevote"),
            Err(GuardError::Conflict { .. })
        ));
        assert!(matches!(
            admit(Some(&last), &slot(5, 0, 1, 1), "proposal"),
            Err(GuardError::Behind { .. })
        ));
        assert!(matches!(
            admit(Some(&last), &slot(4, 7, 3, 1), "precommit"),
            Err(GuardError::Behind { .. })
        ));
    }

    #[test]
    fn records_are_written_in_turn_and_a_torn_one_reads_as_the_slot_before() {
        let dir = std::env::temp_dir().join(format!("metis-guard-turn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("signing-guard");
        let g = SigningGuard::open(&path).unwrap();
        g.check_and_record(slot(3, 0, 1, 1), "proposal").unwrap();
        g.check_and_record(slot(3, 0, 2, 1), "prevote").unwrap();
        g.check_and_record(slot(3, 0, 3, 1), "precommit").unwrap();
        drop(g);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, FILE_LEN);
        assert_eq!(decode_record(&bytes[..RECORD]), Some(slot(3, 0, 3, 1)));
        assert_eq!(decode_record(&bytes[RECORD..]), Some(slot(3, 0, 2, 1)));
        // A crash while the newest record was written: the one before it holds.
        let mut torn = bytes.clone();
        torn[10] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        let g = SigningGuard::open(&path).unwrap();
        assert_eq!(g.last(), Some(slot(3, 0, 2, 1)));
        // The next write goes over the torn record, never over the whole one.
        g.check_and_record(slot(3, 1, 2, 4), "prevote").unwrap();
        drop(g);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode_record(&bytes[..RECORD]), Some(slot(3, 1, 2, 4)));
        assert_eq!(decode_record(&bytes[RECORD..]), Some(slot(3, 0, 2, 1)));
        // Both records torn: refused, not read as "never signed".
        let mut both = bytes.clone();
        both[10] ^= 0xff;
        both[RECORD + 10] ^= 0xff;
        std::fs::write(&path, &both).unwrap();
        assert!(matches!(SigningGuard::open(&path), Err(GuardError::Corrupt(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_versions_file_is_read_and_laid_out_again() {
        let dir = std::env::temp_dir().join(format!("metis-guard-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing-guard");
        let old = slot(7, 2, 3, 5);
        assert_eq!(
            borsh::to_vec(&old).unwrap(),
            encode_record(&old).unwrap()[4..4 + SLOT_LEN].to_vec(),
            "one encoding of a slot"
        );
        std::fs::write(&path, borsh::to_vec(&old).unwrap()).unwrap();
        let g = SigningGuard::open(&path).unwrap();
        assert_eq!(g.last(), Some(old));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_LEN);
        assert!(g.check_and_record(slot(7, 2, 2, 5), "prevote").is_err());
        g.check_and_record(slot(8, 0, 2, 5), "prevote").unwrap();
        drop(g);
        assert_eq!(SigningGuard::open(&path).unwrap().last(), Some(slot(8, 0, 2, 5)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_record_survives_a_reopen_and_a_corrupt_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("metis-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("signing-guard");
        let g = SigningGuard::open(&path).unwrap();
        assert_eq!(g.last(), None);
        g.check_and_record(slot(9, 0, 2, 1), "prevote").unwrap();
        g.check_and_record(slot(9, 0, 3, 1), "precommit").unwrap();
        drop(g);
        let g = SigningGuard::open(&path).unwrap();
        assert_eq!(g.last(), Some(slot(9, 0, 3, 1)));
        assert!(g.check_and_record(slot(9, 0, 2, 1), "prevote").is_err());
        assert!(g.check_and_record(slot(9, 0, 3, 2), "precommit").is_err());
        assert_eq!(g.last(), Some(slot(9, 0, 3, 1)), "a refusal changes nothing");
        std::fs::write(&path, b"junk").unwrap();
        assert!(matches!(SigningGuard::open(&path), Err(GuardError::Corrupt(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
