//! Waiting on conditions with deadlines, temp dirs, processes: what every integration and end-to-end test uses.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it yields, or panics after `secs` naming `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh, empty directory for one test under the system temp dir (removed first if an earlier run left it).
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("metis-seq-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Whether process `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Sends signal `sig` to process `pid`.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on one positive pid.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Whether nothing listens on loopback `port`.
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A loopback port free right now, below the testnet slots (20,000..) and Linux's ephemeral range (32,768..),
/// so no outgoing connection can take it before its process binds it, and never one this test process
/// handed out already.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..1000 {
        let mut seed = [0u8; 2];
        getrandom::fill(&mut seed).expect("randomness");
        let port = 12_000 + u16::from_be_bytes(seed) % 8_000;
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken.contains(&port) && port_free(port) {
            taken.push(port);
            return port;
        }
    }
    panic!("no free port below 20,000");
}
