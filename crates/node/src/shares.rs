//! This node's shares of the pool's threshold key at rest: one file per key round, encrypted with the node's
//! passphrase (argon2id + XChaCha20-Poly1305, 0600), written off the consensus thread; older rounds' files are
//! deleted once the new one is written.

use crate::NodeError;
use metis_consensus::app::ShareSink;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

pub use metis_keystore::SHARE_LABEL;

/// Where the share of key round `round` is kept.
pub fn share_path(dir: &std::path::Path, round: u64) -> PathBuf {
    dir.join(format!("share-{round}.key"))
}

/// This node's share of the current key, if it has one on disk (encrypted; a wrong passphrase is an error).
pub fn load(
    dir: &std::path::Path,
    round: u64,
    pass: &metis_keystore::Passphrase,
) -> Result<Option<metis_mpc::Share>, NodeError> {
    use commonware_codec::Read;
    let path = share_path(dir, round);
    if !path.exists() {
        return Ok(None);
    }
    // The keystore's errors name the file already.
    let bytes = metis_keystore::load(&path, SHARE_LABEL, pass).map_err(|e| NodeError::Keys(e.to_string()))?;
    let mut c = commonware_codec::Copying(&bytes);
    let share =
        metis_mpc::Share::read_cfg(&mut c, &()).map_err(|e| NodeError::Keys(format!("{}: {e}", path.display())))?;
    info!(round, "threshold key share loaded");
    Ok(Some(share))
}

/// Saves each new share encrypted (argon2id + XChaCha20-Poly1305, 0600) off the consensus thread, then
/// deletes the shares of earlier rounds: the new sharing is committed by then. A failed save (a full disk, a
/// directory gone) is tried again for about a minute: the share is in memory only until it is on disk, and a
/// restart before then loses it (the older share, still on disk, no longer signs for the pool).
pub fn sink(dir: PathBuf, pass: metis_keystore::Passphrase) -> ShareSink {
    let pass = Arc::new(pass);
    Box::new(move |round, share| {
        use commonware_codec::Encode;
        let bytes = zeroize::Zeroizing::new(share.encode().to_vec());
        let (dir, pass) = (dir.clone(), pass.clone());
        std::thread::spawn(move || {
            let save = || {
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                metis_keystore::save(
                    &share_path(&dir, round),
                    SHARE_LABEL,
                    &bytes,
                    &pass,
                    metis_keystore::KdfParams::default(),
                )
                .map_err(|e| e.to_string())
            };
            match with_retries(save, &RETRY_DELAYS, round) {
                Ok(()) => {
                    info!(round, "threshold key share saved (encrypted)");
                    remove_older(&dir, round);
                }
                Err(e) => error!(
                    round,
                    error = %e,
                    "the threshold key share could NOT be saved: this node signs with it until it stops, but a \
                     restart loses it; fix the key directory and restart before the pool needs this node's share"
                ),
            }
        });
    })
}

/// Waits between attempts to save a share: about a minute in all.
const RETRY_DELAYS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];

/// Runs `op` until it succeeds, waiting `delays` between attempts; the last error if it never does.
fn with_retries(mut op: impl FnMut() -> Result<(), String>, delays: &[Duration], round: u64) -> Result<(), String> {
    let mut result = op();
    for (attempt, delay) in delays.iter().enumerate() {
        let Err(e) = &result else { break };
        error!(round, attempt = attempt + 1, error = %e, retry_in = ?delay, "could not save the threshold key share");
        std::thread::sleep(*delay);
        result = op();
    }
    result
}

/// Deletes the share files of rounds before `round`.
fn remove_older(dir: &std::path::Path, round: u64) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let older = name
            .strip_prefix("share-")
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|r| r < round);
        if older {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_save_is_tried_again_until_it_works_or_the_delays_run_out() {
        let delays = [Duration::from_millis(1); 3];
        let mut tries = 0;
        let ok = with_retries(
            || {
                tries += 1;
                if tries < 3 {
                    Err(format!("disk full ({tries})"))
                } else {
                    Ok(())
                }
            },
            &delays,
            7,
        );
        assert_eq!((ok, tries), (Ok(()), 3));
        let mut tries = 0;
        let failed = with_retries(
            || {
                tries += 1;
                Err(format!("disk full ({tries})"))
            },
            &delays,
            7,
        );
        assert_eq!(
            (failed, tries),
            (Err("disk full (4)".to_string()), 4),
            "once, then once per delay"
        );
    }

    #[test]
    fn only_older_rounds_are_removed() {
        let dir = std::env::temp_dir().join(format!("metis-shares-older-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for r in [1u64, 2, 3] {
            std::fs::write(share_path(&dir, r), b"x").unwrap();
        }
        std::fs::write(dir.join("other.key"), b"x").unwrap();
        remove_older(&dir, 2);
        assert!(!share_path(&dir, 1).exists());
        assert!(share_path(&dir, 2).exists() && share_path(&dir, 3).exists() && dir.join("other.key").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
