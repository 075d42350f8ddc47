//! A node whose files are damaged on disk (a bad sector, a half-copied backup, a hand edit) stops at start with an
//! error that names the file, leaves the file as it was for the operator, and the rest of the pool goes on; with
//! the file restored it rejoins.

use crate::common::testnet::{NetOptions, Testnet};
use crate::{exclusive, send_transfers, wait_receipts};
use std::path::{Path, PathBuf};

/// Overwrites `len` bytes at `offset` of `path` with a pattern (the file keeps its size).
fn scribble(path: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for damage");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&vec![0x5a; len]).expect("damage");
}

struct Case {
    name: &'static str,
    file: PathBuf,
    damage: fn(&Path),
    /// What the error must say (besides naming the file).
    says: &'static str,
    /// What the operator does about it: put the backup back, or (as the error advises) move the file aside.
    move_aside: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_stop_a_node_with_a_clear_error_and_the_pool_goes_on() {
    let _one = exclusive().await;
    let mut net = Testnet::new(
        "net-corrupt",
        NetOptions {
            // The pool makes its threshold key, so node 3 has a share file to damage.
            key_phase_blocks: 3,
            ..NetOptions::default()
        },
    );
    let all: Vec<usize> = (0..4).collect();
    net.wait_height(&all, 3, 60).await;
    net.share(3, 0).await;
    let head3 = net.head(3).await.expect("node 3's head");
    let status = net.stop(3);
    assert!(status.success(), "node 3 did not stop cleanly: {status}");
    let node = net.net_dir().join("node3");
    let cases = [
        Case {
            name: "chain store",
            file: node.join("data/chain/chain.redb"),
            damage: |p| scribble(p, 0, 64 * 1024),
            says: "database",
            move_aside: false,
        },
        Case {
            name: "signing guard",
            file: node.join("keys/signing-guard"),
            damage: |p| std::fs::write(p, b"not a guard record").expect("damage"),
            says: "guard",
            move_aside: false,
        },
        Case {
            name: "consensus WAL",
            file: node.join("data/wal/consensus.wal"),
            damage: |p| scribble(p, 0, 64),
            says: "move it aside",
            move_aside: true,
        },
        Case {
            name: "key file with absurd KDF parameters",
            file: node.join("keys/dkg.key"),
            damage: |p| {
                let text = std::fs::read_to_string(p).expect("key file");
                let edited = text.replace("\"m_cost\": 8192", "\"m_cost\": 4000000000");
                assert_ne!(text, edited, "no m_cost to edit in {text}");
                std::fs::write(p, edited).expect("damage");
            },
            says: "KDF parameters above the maximum",
            move_aside: false,
        },
        Case {
            name: "truncated chain store",
            file: node.join("data/chain/chain.redb"),
            damage: |p| {
                let len = std::fs::metadata(p).expect("store").len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .and_then(|f| f.set_len(len / 3))
                    .expect("truncate");
            },
            says: "database",
            move_aside: false,
        },
        Case {
            name: "threshold key share",
            file: node.join("data/keys/share-0.key"),
            damage: |p| scribble(p, 200, 32),
            says: "share-0.key",
            move_aside: false,
        },
        Case {
            name: "consensus key",
            file: node.join("keys/identity.key"),
            damage: |p| scribble(p, 40, 16),
            says: "",
            move_aside: false,
        },
    ];
    for case in &cases {
        assert!(case.file.exists(), "{}: no {}", case.name, case.file.display());
        let backup = std::fs::read(&case.file).expect("backup");
        (case.damage)(&case.file);
        let damaged = std::fs::read(&case.file).expect("damaged");
        let (status, stderr) = net.start_refused(3, &net.net_dir().join("passphrase"));
        eprintln!("{}: {status}: {}", case.name, stderr.lines().last().unwrap_or_default());
        assert!(!status.success(), "{}: the node started on a damaged file", case.name);
        assert!(
            !stderr.contains("panicked"),
            "{}: a panic, not an error:\n{stderr}",
            case.name
        );
        let name = case.file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            stderr.contains(name) || stderr.contains(&*case.file.to_string_lossy()),
            "{}: the error does not name the file:\n{stderr}",
            case.name
        );
        assert!(stderr.contains(case.says), "{}: unclear error:\n{stderr}", case.name);
        assert_eq!(
            std::fs::read(&case.file).expect("after"),
            damaged,
            "{}: the node changed the damaged file",
            case.name
        );
        if case.move_aside {
            std::fs::rename(&case.file, case.file.with_extension("damaged")).expect("move aside");
        } else {
            std::fs::write(&case.file, backup).expect("restore");
        }
    }
    // A damaged proposal file for the height node 3 resumes at is skipped with a warning that names it.
    let junk = node.join(format!("data/proposals/{:020}-{}.bin", head3 + 1, "ab".repeat(32)));
    std::fs::write(&junk, vec![0xff; 4096]).expect("junk proposal");
    // Meanwhile the other three went on; restored (its WAL moved aside), node 3 catches up and takes part again.
    let hashes = send_transfers(&net, 0, 0, 0, 1).await;
    wait_receipts(&net, &[0, 1, 2], &hashes, 60).await;
    net.start(3, None);
    wait_receipts(&net, &all, &hashes, 60).await;
    let h = net.head(0).await.unwrap();
    net.wait_height(&all, h + 2, 60).await;
    net.assert_same_chain(&all, h + 2).await;
    let log = std::fs::read_to_string(net.log_path(3)).unwrap_or_default();
    assert!(
        log.contains("stored proposal is unreadable") && log.contains(&*junk.to_string_lossy()),
        "node 3 did not name the damaged proposal file"
    );
}
