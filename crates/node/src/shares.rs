//! This node's shares of the pool's threshold key at rest: one file per key round, encrypted with the node's
//! passphrase (argon2id + XChaCha20-Poly1305, 0600), written off the consensus thread; older rounds' files are
//! deleted once the new one is written.

use crate::NodeError;
use metis_consensus::app::ShareSink;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

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
    let bytes = metis_keystore::load(&path, SHARE_LABEL, pass)
        .map_err(|e| NodeError::Keys(format!("{}: {e}", path.display())))?;
    let mut c = commonware_codec::Copying(&bytes);
    let share =
        metis_mpc::Share::read_cfg(&mut c, &()).map_err(|e| NodeError::Keys(format!("{}: {e}", path.display())))?;
    info!(round, "threshold key share loaded");
    Ok(Some(share))
}

/// Saves each new share encrypted (argon2id + XChaCha20-Poly1305, 0600) off the consensus thread, then
/// deletes the shares of earlier rounds: the new sharing is committed by then.
pub fn sink(dir: PathBuf, pass: metis_keystore::Passphrase) -> ShareSink {
    let pass = Arc::new(pass);
    Box::new(move |round, share| {
        use commonware_codec::Encode;
        let bytes = zeroize::Zeroizing::new(share.encode().to_vec());
        let (dir, pass) = (dir.clone(), pass.clone());
        std::thread::spawn(move || {
            let saved = std::fs::create_dir_all(&dir).map_err(|e| e.to_string()).and_then(|_| {
                metis_keystore::save(
                    &share_path(&dir, round),
                    SHARE_LABEL,
                    &bytes,
                    &pass,
                    metis_keystore::KdfParams::default(),
                )
                .map_err(|e| e.to_string())
            });
            match saved {
                Ok(()) => {
                    info!(round, "threshold key share saved (encrypted)");
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
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
                Err(e) => tracing::error!(round, error = %e, "could not save the threshold key share"),
            }
        });
    })
}
