//! Network faults between the sequencers of a `--netns` devnet: each node runs in a namespace of its own, and a
//! blackhole route to a peer's address in a node's namespace cuts that link (packets to it are dropped at
//! once, in both directions once both ends have the route). The host side (anvil, the test's RPC calls) stays
//! reachable, so a cut-off node keeps running, reading L1 and answering the test.

use crate::devnet::Devnet;
use std::process::Command;

/// Network namespaces can be made here (root, iproute2): probed by making and removing one.
pub fn netns_available() -> Result<(), String> {
    let name = format!("msqprobe{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .map_err(|e| format!("no `ip` (iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot make a network namespace (root and iproute2 are needed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    ip(&["netns", "del", &name])
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Devnet {
    /// Sequencer `i`'s network namespace (a `--netns` devnet).
    pub fn netns(&self, i: usize) -> String {
        self.m["nodes"][i]["netns"]["name"]
            .as_str()
            .expect("a --netns devnet names each node's namespace")
            .to_string()
    }

    /// Sequencer `i`'s address in its namespace.
    pub fn node_addr(&self, i: usize) -> String {
        self.m["nodes"][i]["netns"]["addr"]
            .as_str()
            .expect("a --netns devnet names each node's address")
            .to_string()
    }

    /// Cuts every link between a sequencer in `a` and one in `b`, both ways.
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        for (from, to) in a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y))) {
            for (ns, addr) in [
                (self.netns(from), self.node_addr(to)),
                (self.netns(to), self.node_addr(from)),
            ] {
                ip(&["-n", &ns, "route", "replace", "blackhole", &format!("{addr}/32")]).expect("cut a link");
            }
        }
    }

    /// Sequencer `i` cut off from every other sequencer (not from L1 or the test).
    pub fn isolate(&self, i: usize) {
        let others: Vec<usize> = (0..self.nodes().len()).filter(|j| *j != i).collect();
        self.cut(&[i], &others);
    }

    /// The address anvil listens on (the host side of the bridge, not the one the test reaches nodes from).
    pub fn l1_addr(&self) -> String {
        let url = self.l1_rpc();
        let rest = url.trim_start_matches("http://");
        rest.split(':').next().expect("host").to_string()
    }

    /// Sequencers `nodes` cut off from L1 (they still reach each other and answer the test).
    pub fn cut_l1(&self, nodes: &[usize]) {
        let l1 = self.l1_addr();
        for i in nodes {
            ip(&[
                "-n",
                &self.netns(*i),
                "route",
                "replace",
                "blackhole",
                &format!("{l1}/32"),
            ])
            .expect("cut L1");
        }
    }

    /// Every cut (between the sequencers, and to L1) healed.
    pub fn heal(&self) {
        for i in 0..self.nodes().len() {
            ip(&["-n", &self.netns(i), "route", "flush", "type", "blackhole"]).expect("heal the links");
        }
    }
}
