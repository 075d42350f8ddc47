//! A devnet started by `metis-seq devnet` for one test, driven only through what a user has: the manifest, the
//! RPC/API of the nodes, L1, and the CLI. Every process is gone when the handle drops, also when the test fails:
//! the supervisor gets SIGTERM (it stops its nodes and anvil), and any recorded pid still alive is killed.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One devnet at a time: each is 5 processes on a 2-core machine, and timing checks (failover) need the CPU.
/// (An async mutex: each test has its own runtime, and a test that fails must not poison it for the others.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

use crate::{alive, anvil_path as anvil, kill, metis_seq_bin, tempdir, wait_for};

pub struct Devnet {
    pub dir: PathBuf,
    pub l1_port: u16,
    pub base_port: u16,
    args: Vec<String>,
    /// Environment the supervisor (and so every node) starts with.
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The manifest as last read.
    pub m: Value,
    client: reqwest::Client,
    /// Every pid the manifest ever named, for the cleanup.
    seen_pids: Vec<u32>,
    /// Sequencers the test stopped and started again itself ([`Devnet::respawn`]): stopped when this drops.
    respawned: Vec<(usize, ChildGuard)>,
    /// The address the other sequencers reach each one at, when the links go through fault proxies
    /// ([`Devnet::proxy_links`]); a cut blocks it too.
    pub(crate) reached_at: Vec<String>,
    /// tmpfs mounts made by [`Devnet::data_on_tmpfs`], unmounted when this drops.
    mounts: Vec<PathBuf>,
}

impl Devnet {
    /// Starts `metis-seq devnet` with its own directory and ports (`slot` picks them) and waits until it is
    /// ready. Ports stay below the ephemeral range so no outgoing connection takes them.
    pub async fn start(name: &str, slot: u16, extra: &[&str]) -> Self {
        Self::start_with_env(name, slot, extra, &[]).await
    }

    /// [`Devnet::start`] with environment variables for the supervisor and its nodes (e.g. a test fault).
    pub async fn start_with_env(name: &str, slot: u16, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let l1_port = 18600 + slot;
        let base_port = 29100 + 100 * slot;
        let dir = tempdir(name);
        let mut args: Vec<String> = vec![
            "devnet".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--l1-port".into(),
            l1_port.to_string(),
            "--base-port".into(),
            base_port.to_string(),
            "--anvil".into(),
            anvil().display().to_string(),
        ];
        // Only the tests about RPC nodes run one: the others keep the machine for the sequencers.
        if !extra.contains(&"--rpc-nodes") {
            args.extend(["--rpc-nodes".to_string(), "0".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Self {
            dir,
            l1_port,
            base_port,
            args,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            m: Value::Null,
            client: reqwest::Client::new(),
            seen_pids: Vec::new(),
            respawned: Vec::new(),
            reached_at: Vec::new(),
            mounts: Vec::new(),
        };
        d.launch().await;
        d
    }

    fn out_path(&self) -> PathBuf {
        self.dir.with_extension("out")
    }

    /// Starts (or starts again) the supervisor on the same directory and waits for "ready".
    pub async fn launch(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out_path())
            .expect("devnet output file");
        let child = Command::new(metis_seq_bin())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("spawning metis-seq devnet");
        let pid = child.id();
        self.child = Some(child);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(240);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "metis-seq devnet exited ({status}) before it was ready:\n{}",
                        self.output_tail(40)
                    );
                }
            }
            if let Ok(text) = std::fs::read_to_string(self.dir.join("devnet.json")) {
                if let Ok(m) = serde_json::from_str::<Value>(&text) {
                    self.note_pids(&m);
                    if m["state"] == "ready" && m["supervisor_pid"] == json!(pid) {
                        self.m = m;
                        break;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "devnet not ready after 240 s:\n{}",
                self.output_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "[e2e] devnet {} ready in {:.1} s",
            self.dir.display(),
            t0.elapsed().as_secs_f64()
        );
    }

    fn note_pids(&mut self, m: &Value) {
        let mut pids = node_pids(m);
        pids.extend(m["l1"]["anvil_pid"].as_u64().map(|p| p as u32));
        for p in pids {
            if !self.seen_pids.contains(&p) {
                self.seen_pids.push(p);
            }
        }
    }

    /// Stops sequencer `i` (started by the devnet or by an earlier respawn) and starts it again from the test, with
    /// `env` added (a skewed clock, say), in its network namespace on a `--netns` devnet; its output goes on in
    /// its log. It is stopped when this handle drops.
    pub fn respawn(&mut self, i: usize, env: &[(&'static str, String)]) {
        self.stop_node(i);
        self.start_node(i, env);
    }

    /// Sequencer `i` stopped (SIGTERM), whoever started it; the devnet does not start it again.
    pub fn stop_node(&mut self, i: usize) {
        self.signal_node(i, libc::SIGTERM);
    }

    /// Sequencer `i` killed with SIGKILL (nothing of its shutdown runs), whoever started it; the devnet does not
    /// start it again.
    pub fn kill_node(&mut self, i: usize) {
        self.signal_node(i, libc::SIGKILL);
    }

    fn signal_node(&mut self, i: usize, sig: libc::c_int) {
        if let Some(k) = self.respawned.iter().position(|(n, _)| *n == i) {
            let (_, mut g) = self.respawned.remove(k);
            kill(g.0.id(), sig);
            let _ = g.0.wait();
        } else if let Some(pid) = self.reload()["nodes"][i]["pid"].as_u64() {
            let pid = pid as u32;
            kill(pid, sig);
            let deadline = Instant::now() + Duration::from_secs(30);
            while alive(pid) {
                assert!(Instant::now() < deadline, "node {i} did not stop in 30 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Sequencer `i`'s log.
    pub fn log_path(&self, i: usize) -> PathBuf {
        PathBuf::from(self.m["nodes"][i]["log"].as_str().expect("log"))
    }

    /// The exit status of sequencer `i` when the test started it and it has exited.
    pub fn node_exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let (_, g) = self.respawned.iter_mut().find(|(n, _)| *n == i)?;
        g.0.try_wait().ok().flatten()
    }

    /// Moves sequencer `i`'s data directory onto a tmpfs with `headroom_mib` MiB free above what it holds (a small
    /// disk a test can fill), and starts the node again from the test. Unmounted when this handle drops.
    /// A node already moved keeps its tmpfs (and runs on).
    pub fn data_on_tmpfs(&mut self, i: usize, headroom_mib: u64) -> PathBuf {
        let data = PathBuf::from(self.m["nodes"][i]["data_dir"].as_str().expect("data_dir"));
        if self.mounts.contains(&data) {
            return data;
        }
        self.stop_node(i);
        let aside = data.with_extension("disk");
        std::fs::rename(&data, &aside).expect("moving the data aside");
        std::fs::create_dir(&data).expect("a mount point");
        let used = Command::new("du")
            .args(["-sm"])
            .arg(&aside)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .expect("du");
        let size = format!("size={}m", used + headroom_mib);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs on {} (root is needed)", data.display());
        self.mounts.push(data.clone());
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", aside.display()))
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "copying the data onto the tmpfs");
        std::fs::remove_dir_all(&aside).expect("removing the old data");
        self.start_node(i, &[]);
        data
    }

    /// Starts sequencer `i` from the test, with `env` added; see [`Devnet::respawn`].
    pub fn start_node(&mut self, i: usize, env: &[(&'static str, String)]) {
        let node = &self.m["nodes"][i];
        let config = node["config"].as_str().expect("config").to_string();
        let log = PathBuf::from(node["log"].as_str().expect("log"));
        let mut cmd = match node["netns"]["name"].as_str() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(metis_seq_bin());
                c
            }
            None => Command::new(metis_seq_bin()),
        };
        cmd.args(["node", "--config", &config, "--passphrase-file"])
            .arg(self.dir.join("l2/passphrase"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = std::fs::OpenOptions::new().append(true).open(&log).expect("node log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawning the node");
        self.respawned.push((i, ChildGuard(child, log)));
    }

    /// The pids of the nodes and anvil the manifest names now (re-read).
    pub fn pids(&mut self) -> Vec<u32> {
        let m = self.reload();
        let mut p = node_pids(m);
        p.extend(m["l1"]["anvil_pid"].as_u64().map(|p| p as u32));
        p
    }

    pub fn reload(&mut self) -> &Value {
        let text = std::fs::read_to_string(self.dir.join("devnet.json")).expect("manifest");
        let m: Value = serde_json::from_str(&text).expect("manifest json");
        self.note_pids(&m);
        self.m = m;
        &self.m
    }

    pub fn output_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.out_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn supervisor_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `metis-seq devnet stop --dir DIR`, then the supervisor's exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let out = Command::new(metis_seq_bin())
            .args(["devnet", "stop", "--dir"])
            .arg(&self.dir)
            .output()
            .expect("metis-seq devnet stop");
        assert!(
            out.status.success(),
            "devnet stop failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut child = self.child.take().expect("running devnet");
        // `stop` returns once the supervisor is gone; reap it.
        child.wait().expect("supervisor status")
    }

    pub fn nodes(&self) -> Vec<Value> {
        self.m["nodes"].as_array().cloned().unwrap_or_default()
    }

    pub fn rpc(&self, i: usize) -> String {
        self.m["nodes"][i]["rpc"].as_str().expect("rpc").to_string()
    }

    /// RPC node `j`'s RPC URL.
    pub fn rpc_node(&self, j: usize) -> String {
        self.m["rpc_nodes"][j]["rpc"].as_str().expect("rpc node").to_string()
    }

    /// A provider on `url` signing with dev account `account`.
    pub fn wallet_at(&self, url: &str, account: usize) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::new(self.account(account)))
            .connect_client(local_client(url))
            .erased()
    }

    pub fn l1_rpc(&self) -> String {
        self.m["l1"]["rpc"].as_str().expect("l1 rpc").to_string()
    }

    pub fn contract(&self, name: &str) -> Address {
        self.m["contracts"][name]
            .as_str()
            .expect("contract")
            .parse()
            .expect("address")
    }

    pub fn account(&self, i: usize) -> PrivateKeySigner {
        self.m["accounts"][i]["private_key"]
            .as_str()
            .expect("key")
            .parse()
            .expect("key")
    }

    pub fn deployer(&self) -> PrivateKeySigner {
        self.m["l1"]["deployer"]["private_key"]
            .as_str()
            .expect("key")
            .parse()
            .expect("key")
    }

    /// The L1 key of sequencer `i`'s owner (it locks, relocks and unlocks its stake).
    pub fn owner_key(&self, i: usize) -> PrivateKeySigner {
        let path = self.m["nodes"][i]["owner_key_file"].as_str().expect("owner_key_file");
        std::fs::read_to_string(path)
            .expect("the owner's key file")
            .trim()
            .parse()
            .expect("the owner's key")
    }

    /// L1 through a wallet holding `key` (receipts polled every 250 ms).
    pub fn l1_with(&self, key: PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::new(key))
            .connect_client(local_client(&self.l1_rpc()))
            .erased()
    }

    /// The node whose sequencer signs as `signer`.
    pub fn node_of_signer(&self, signer: &str) -> Option<usize> {
        self.nodes()
            .iter()
            .position(|n| n["signer"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(signer)))
    }

    /// The current epoch's producer, as node 0's PoS API names it: (node index, its signer, its pid).
    pub async fn producer(&self) -> (usize, String, u32) {
        let (node, signer) = self.producer_node().await;
        let pid = self.m["nodes"][node]["pid"].as_u64().expect("pid") as u32;
        (node, signer, pid)
    }

    /// The current epoch's producer, as node 0's PoS API names it: (node index, its signer).
    pub async fn producer_node(&self) -> (usize, String) {
        let epoch = self
            .call(0, "metis_currentEpoch", json!([]))
            .await
            .expect("current epoch");
        let signer = epoch["producer_signer"].as_str().expect("producer signer").to_string();
        let node = self.node_of_signer(&signer).expect("the producer is a devnet node");
        (node, signer)
    }

    pub async fn call_url(&self, url: &str, method: &str, params: Value) -> Result<Value, String> {
        crate::rpc::call(&self.client, url, Duration::from_secs(10), method, params).await
    }

    pub async fn call(&self, i: usize, method: &str, params: Value) -> Result<Value, String> {
        self.call_url(&self.rpc(i), method, params).await
    }

    pub async fn head(&self, i: usize) -> Option<u64> {
        crate::rpc::quantity(&self.call(i, "eth_blockNumber", json!([])).await.ok()?)
    }

    pub async fn block(&self, i: usize, n: u64) -> Option<Value> {
        let v = self
            .call(i, "eth_getBlockByNumber", crate::rpc::block_params(n))
            .await
            .ok()?;
        (!v.is_null()).then_some(v)
    }

    /// Waits until every node in `nodes` is at `height` or above.
    pub async fn wait_height(&self, nodes: &[usize], height: u64, secs: u64) {
        wait_for(secs, &format!("nodes {nodes:?} at height {height}"), || async {
            for i in nodes {
                if self.head(*i).await? < height {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Every node in `nodes` has the same hash and state root at `height`.
    pub async fn assert_same_block(&self, nodes: &[usize], height: u64) {
        let first = self.block(nodes[0], height).await.expect("block");
        for i in &nodes[1..] {
            let b = self.block(*i, height).await.expect("block");
            assert_eq!(b["hash"], first["hash"], "node {i} differs at height {height}");
            assert_eq!(
                b["stateRoot"], first["stateRoot"],
                "node {i} differs at height {height}"
            );
        }
    }

    /// A provider on node `i`'s RPC signing with dev account `account`.
    pub fn l2_wallet(&self, i: usize, account: usize) -> DynProvider {
        self.wallet_at(&self.rpc(i), account)
    }

    /// A provider on L1 signing with `key`.
    pub fn l1_wallet(&self, key: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::new(key.clone()))
            .connect_client(local_client(&self.l1_rpc()))
            .erased()
    }

    pub fn l1(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_client(local_client(&self.l1_rpc()))
            .erased()
    }

    /// A transfer of `wei` from dev account `from` through node `i`; returns its receipt's block number and hash.
    pub async fn transfer(&self, i: usize, from: usize, to: Address, wei: u64) -> (u64, String) {
        let p = self.l2_wallet(i, from);
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(to)
            .value(U256::from(wei));
        let r = p
            .send_transaction(tx)
            .await
            .expect("send transfer")
            .with_timeout(Some(Duration::from_secs(30)))
            .get_receipt()
            .await
            .expect("transfer receipt");
        assert!(r.status(), "transfer reverted");
        (
            r.block_number.expect("block"),
            format!("{:?}", r.block_hash.expect("hash")),
        )
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // The test's own node processes first: the supervisor then removes their network namespaces.
        self.respawned.clear();
        if let Some(mut c) = self.child.take() {
            kill(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(text) = std::fs::read_to_string(self.dir.join("devnet.json")) {
            if let Ok(m) = serde_json::from_str::<Value>(&text) {
                self.note_pids(&m);
            }
        }
        for p in &self.seen_pids {
            if alive(*p) {
                kill(*p, libc::SIGKILL);
            }
        }
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_file(self.out_path());
        } else {
            eprintln!(
                "[e2e] kept {} for inspection; devnet output:\n{}",
                self.dir.display(),
                self.output_tail(30)
            );
        }
    }
}

/// A client for a devnet's endpoint that polls for receipts every 250 ms (alloy's guess for any host but
/// localhost is 7 s, and a `--netns` devnet is reached at 10.77.x.y).
fn local_client(url: &str) -> alloy::rpc::client::RpcClient {
    alloy::rpc::client::RpcClient::new_http(url.parse().expect("url")).with_poll_interval(Duration::from_millis(250))
}

/// A process the test started itself (a joining node, a replica): killed when dropped.
pub struct ChildGuard(pub Child, pub PathBuf);

impl ChildGuard {
    pub fn spawn(mut cmd: Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn");
        Self(child, log.to_path_buf())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.1).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already reaped: its pid may belong to another process by now.
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        kill(self.0.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `metis-seq ARGS` to completion: its stdout, or (when it fails) its stdout and stderr.
pub fn try_cli(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new(metis_seq_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run metis-seq");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `metis-seq ARGS` to completion; panics with its output when it fails. Returns stdout.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(metis_seq_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run metis-seq");
    assert!(
        out.status.success(),
        "metis-seq {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The pids of the sequencers and RPC nodes a manifest names.
fn node_pids(m: &Value) -> Vec<u32> {
    ["nodes", "rpc_nodes"]
        .iter()
        .flat_map(|k| m[*k].as_array().into_iter().flatten())
        .filter_map(|n| n["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}
