//! Proposals this node built or found valid, kept on disk until their height is decided.
//!
//! Malachite's WAL records the proposed values (by hash) a node voted on; after a crash it replays them and may
//! decide one of them without streaming it again. The block behind the hash should then still be here, so every
//! proposal's bytes are written and synced before this node votes for it, and removed once its height is
//! decided. The rename that publishes the file is not followed by a directory sync (it would be one more sync
//! on the path to every vote): a crash can lose it, and a decided block not held here is then fetched from
//! peers by sync (`decide`: "not held here; restarting the height").

use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::Round;
use metis_wire::types::{Address, BlockHash, Height};
use std::io::Read;
use std::path::{Path, PathBuf};
use tracing::warn;

/// No stored proposal is larger: a 16 MiB block and its header, commit and evidence.
const MAX_FILE: u64 = 20 * 1024 * 1024;

/// Reads `path` whole unless it is larger than any proposal could be.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    Ok(out)
}

#[derive(BorshSerialize, BorshDeserialize)]
pub struct StoredProposal {
    pub height: Height,
    pub round: Round,
    pub proposer: Address,
    pub hash: BlockHash,
    /// The encoded block (`BlockData::encode`).
    pub block: Vec<u8>,
}

pub struct ProposalStore {
    dir: PathBuf,
}

impl ProposalStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn path(&self, height: Height, hash: &BlockHash) -> PathBuf {
        self.dir
            .join(format!("{:020}-{}.bin", height.0, metis_wire::types::hex_str(&hash.0)))
    }

    /// Writes one proposal (temp file, data synced, rename; see the module doc on the rename).
    pub fn put(&self, p: &StoredProposal) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.path(p.height, &p.hash);
        if path.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&borsh::to_vec(p)?)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)
    }

    /// Every stored proposal for `height`. A file that cannot be read (damaged, or larger than any proposal) is
    /// skipped with a warning that names it: the block is fetched again by sync.
    pub fn at(&self, height: Height) -> Vec<StoredProposal> {
        let prefix = format!("{:020}-", height.0);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
            .filter_map(|e| {
                let path = e.path();
                let read = read_bounded(&path).and_then(|b| {
                    StoredProposal::try_from_slice(&b)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
                });
                match read {
                    Ok(p) if p.height == height => Some(p),
                    Ok(p) => {
                        warn!(file = %path.display(), height = p.height.0, "stored proposal is for another height; skipped");
                        None
                    }
                    Err(e) => {
                        warn!(file = %path.display(), error = %e, "stored proposal is unreadable; skipped (sync fetches the block again)");
                        None
                    }
                }
            })
            .collect()
    }

    /// Removes every proposal at or below `height`.
    pub fn prune(&self, height: Height) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let h = name.split('-').next().and_then(|h| h.parse::<u64>().ok());
            if h.is_some_and(|h| h <= height.0) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_at_prune() {
        let dir = std::env::temp_dir().join(format!("metis-proposals-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = ProposalStore::open(&dir).unwrap();
        for (h, b) in [(5u64, 1u8), (5, 2), (6, 3)] {
            s.put(&StoredProposal {
                height: Height(h),
                round: Round::new(0),
                proposer: Address([b; 32]),
                hash: BlockHash([b; 32]),
                block: vec![b; 10],
            })
            .unwrap();
        }
        assert_eq!(s.at(Height(5)).len(), 2);
        assert_eq!(s.at(Height(6)).len(), 1);
        s.prune(Height(5));
        assert!(s.at(Height(5)).is_empty());
        assert_eq!(s.at(Height(6))[0].block, vec![3u8; 10]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
