//! A steady load on every sequencer: one dev account per node sends a transfer through that node every
//! `period`, and every transaction the node accepted (its RPC answered with the hash) is recorded. A
//! transaction a node did not answer for is sent again, the same signed bytes, until it answers: so an
//! accepted transaction is never replaced by another with its nonce, and a lost one shows as lost.

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use metis_testkit::devnet::Devnet;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Sent {
    pub hash: B256,
    pub node: usize,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    accepted: Vec<Sent>,
    /// Sends a node did not answer (it was cut off from the test, or busy): sent again.
    unanswered: u64,
}

pub struct Load {
    shared: Arc<Mutex<Shared>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Dev account `key`'s transfer with `nonce` (the harness's own), and its hash.
fn signed(key: &PrivateKeySigner, nonce: u64) -> (B256, String) {
    let raw = metis_testkit::dev::transfer(key, nonce);
    let bytes = alloy::hex::decode(&raw).expect("hex");
    (alloy::primitives::keccak256(bytes), raw)
}

impl Load {
    /// Starts sending through each of `nodes` (node i with dev account i) every `period`.
    pub async fn start(net: &Devnet, nodes: usize, period: Duration) -> Self {
        // The harness signs for the chain id every test network uses.
        assert_eq!(net.m["l2"]["chain_id"].as_u64(), Some(metis_testkit::testnet::CHAIN_ID));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for i in 0..nodes {
            let key = net.account(i);
            let url = net.rpc(i);
            let nonce = net
                .call(
                    i,
                    "eth_getTransactionCount",
                    json!([format!("{}", key.address()), "pending"]),
                )
                .await
                .ok()
                .and_then(|v| metis_testkit::rpc::quantity(&v))
                .expect("the account's nonce");
            let shared = shared.clone();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut nonce = nonce;
                let mut next = signed(&key, nonce);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => return,
                    }
                    let answer = metis_testkit::rpc::call(
                        &client,
                        &url,
                        Duration::from_secs(2),
                        "eth_sendRawTransaction",
                        json!([next.1]),
                    )
                    .await;
                    // "already known" or "nonce too low": an earlier send of these same bytes was accepted (the
                    // account is this task's alone, and its nonce moves only on an answer) but the answer was lost.
                    let accepted = match &answer {
                        Ok(v) => v.as_str() == Some(&format!("{:#x}", next.0)),
                        Err(e) => {
                            let e = e.to_lowercase();
                            e.contains("already known")
                                || e.contains("known transaction")
                                || e.contains("nonce too low")
                        }
                    };
                    let mut s = shared.lock().expect("load state");
                    if accepted {
                        s.accepted.push(Sent {
                            hash: next.0,
                            node: i,
                            at: Instant::now(),
                        });
                        nonce += 1;
                        next = signed(&key, nonce);
                    } else {
                        s.unanswered += 1;
                    }
                }
            }));
        }
        Self { shared, stop, tasks }
    }

    /// Every transaction accepted so far.
    pub fn accepted(&self) -> Vec<Sent> {
        self.shared.lock().expect("load state").accepted.clone()
    }

    pub fn unanswered(&self) -> u64 {
        self.shared.lock().expect("load state").unanswered
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
