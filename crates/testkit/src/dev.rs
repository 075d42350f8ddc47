//! A `metis-seq dev` process for tests: its own data dir and a free port, killed when dropped (also when the
//! test fails); signed test transfers.

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, TxKind, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct DevNode {
    child: Child,
    pub url: String,
    pub ws: String,
    pub datadir: PathBuf,
}

impl DevNode {
    /// Starts a node on `datadir` (kept when the node stops, so it can be restarted) and waits until its RPC is up.
    pub fn start(datadir: &Path, block_time_ms: u64) -> Self {
        Self::start_with(datadir, block_time_ms, &[])
    }

    /// [`DevNode::start`] with more `metis-seq dev` arguments.
    pub fn start_with(datadir: &Path, block_time_ms: u64, extra: &[&str]) -> Self {
        let mut child = Command::new(crate::metis_seq_bin())
            .args([
                "dev",
                "--http-addr",
                "127.0.0.1:0",
                "--block-time",
                &block_time_ms.to_string(),
            ])
            .args(extra)
            .arg("--datadir")
            .arg(datadir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning metis-seq dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("RPC listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => break a,
                Err(_) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("metis-seq dev exited early: {status}");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("metis-seq dev did not report its RPC address within 30 s");
                }
            }
        };
        Self {
            child,
            url: format!("http://{addr}"),
            ws: format!("ws://{addr}"),
            datadir: datadir.to_path_buf(),
        }
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed transfer of `1000 + nonce` wei from `key` on the test L2 chain.
pub fn transfer(key: &PrivateKeySigner, nonce: u64) -> String {
    let tx = TxEip1559 {
        chain_id: crate::testnet::CHAIN_ID,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::repeat_byte(0x42)),
        value: U256::from(1000 + nonce),
        input: Default::default(),
        access_list: Default::default(),
    };
    let sig = key.sign_hash_sync(&tx.signature_hash()).unwrap();
    format!(
        "0x{}",
        alloy::hex::encode(TxEnvelope::from(tx.into_signed(sig)).encoded_2718())
    )
}
