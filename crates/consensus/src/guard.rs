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

/// The guard file: one [`Slot`], replaced atomically (temp file, fsync, rename, fsync of the directory).
pub struct SigningGuard {
    path: PathBuf,
    last: Mutex<Option<Slot>>,
}

impl SigningGuard {
    pub fn open(path: &Path) -> Result<Self, GuardError> {
        let io = |source| GuardError::Io {
            path: path.to_path_buf(),
            source,
        };
        let last = match std::fs::read(path) {
            Ok(bytes) => Some(Slot::try_from_slice(&bytes).map_err(|_| GuardError::Corrupt(path.to_path_buf()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            last: Mutex::new(last),
        })
    }

    /// The last slot signed, if any.
    pub fn last(&self) -> Option<Slot> {
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `slot` durably if it may be signed; errors if it may not.
    pub fn check_and_record(&self, slot: Slot, what: &'static str) -> Result<(), GuardError> {
        // A panic while holding the lock cannot leave a half-written record: the file is replaced atomically.
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if admit(last.as_ref(), &slot, what)? {
            self.write(&slot)?;
            *last = Some(slot);
        }
        Ok(())
    }

    fn write(&self, slot: &Slot) -> Result<(), GuardError> {
        use std::io::Write;
        let io = |source| GuardError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&borsh::to_vec(slot).map_err(io)?).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
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
