//! Network faults between the sequencers of a `--netns` devnet: each node runs in a namespace of its own, and a
//! blackhole route to a peer's address in a node's namespace cuts that link (packets to it are dropped at
//! once, in both directions once both ends have the route). The host side (anvil, the test's RPC calls) stays
//! reachable, so a cut-off node keeps running, reading L1 and answering the test.

use crate::devnet::Devnet;
use crate::faultproxy::{FaultProxy, LinkFault};
use std::net::SocketAddr;
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

    /// The addresses sequencer `i` is reached at by the others: its own, and its proxies' when links are
    /// proxied.
    fn reached_at(&self, i: usize) -> Vec<String> {
        let mut v = vec![self.node_addr(i)];
        v.extend(self.reached_at.get(i).cloned());
        v
    }

    /// Cuts every link between a sequencer in `a` and one in `b`, both ways.
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        for (from, to) in a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y))) {
            for (ns, peer) in [(from, to), (to, from)] {
                for addr in self.reached_at(peer) {
                    ip(&[
                        "-n",
                        &self.netns(ns),
                        "route",
                        "replace",
                        "blackhole",
                        &format!("{addr}/32"),
                    ])
                    .expect("cut a link");
                }
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

/// Every link between the sequencers through a [`FaultProxy`] of its own (one for the consensus connections,
/// one for the transaction gossip, per direction), so delay and loss can be set per link. Partitions are
/// blackhole routes on a `--netns` devnet; on loopback (no namespaces here) the proxies cut the links, and each
/// node reaches L1 through a proxy of its own too.
pub struct ProxiedLinks {
    /// ((from, to), its proxies): node `from` reaches node `to` through them.
    links: Vec<((usize, usize), [FaultProxy; 2])>,
    /// Node i's way to L1 (loopback only).
    l1: Vec<FaultProxy>,
    /// Partitions are routes in the nodes' namespaces.
    routes: bool,
}

impl ProxiedLinks {
    /// Partitions cut real routes between network namespaces (false: the proxies on loopback cut them).
    pub fn real_routes(&self) -> bool {
        self.routes
    }

    /// Cuts every link between a sequencer in `a` and one in `b`, both ways.
    pub fn cut(&self, net: &Devnet, a: &[usize], b: &[usize]) {
        if self.routes {
            return net.cut(a, b);
        }
        for ((from, to), ps) in &self.links {
            if (a.contains(from) && b.contains(to)) || (b.contains(from) && a.contains(to)) {
                ps.iter().for_each(|p| p.cut(true));
            }
        }
    }

    /// Sequencer `i` cut off from every other sequencer (not from L1 or the test).
    pub fn isolate(&self, net: &Devnet, i: usize) {
        let others: Vec<usize> = (0..net.nodes().len()).filter(|j| *j != i).collect();
        self.cut(net, &[i], &others);
    }

    /// Sequencers `nodes` cut off from L1 (they still reach each other and answer the test).
    pub fn cut_l1(&self, net: &Devnet, nodes: &[usize]) {
        if self.routes {
            return net.cut_l1(nodes);
        }
        nodes.iter().filter_map(|i| self.l1.get(*i)).for_each(|p| p.cut(true));
    }

    /// Every cut healed.
    pub fn heal(&self, net: &Devnet) {
        if self.routes {
            net.heal();
        }
        self.links
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .chain(&self.l1)
            .for_each(|p| p.cut(false));
    }

    /// The fault on the links between `a` and `b`, both ways.
    pub fn set(&self, a: usize, b: usize, fault: LinkFault) {
        for ((from, to), ps) in &self.links {
            if (*from, *to) == (a, b) || (*from, *to) == (b, a) {
                ps.iter().for_each(|p| p.set(fault));
            }
        }
    }

    /// The fault on every link of node `k`.
    pub fn set_node(&self, k: usize, fault: LinkFault) {
        for ((from, to), ps) in &self.links {
            if *from == k || *to == k {
                ps.iter().for_each(|p| p.set(fault));
            }
        }
    }

    /// The fault on every link.
    pub fn set_all(&self, fault: LinkFault) {
        self.links
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .for_each(|p| p.set(fault));
    }
}

fn socket(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s}: {e}"))
}

impl Devnet {
    /// Routes every link between the sequencers through fault proxies. On a `--netns` devnet they are on the host
    /// side of the bridge: node j is reached through proxies listening on an address of its own there
    /// (10.77.X.(100+j)), so a route in a namespace still cuts a link. On loopback they listen on 127.0.0.1, and
    /// each node's L1 goes through a proxy as well. Each node's config names the proxies as its peers, and each
    /// node is restarted by the test in turn (the others go on deciding), caught up before the next.
    pub async fn proxy_links(&mut self) -> ProxiedLinks {
        let n = self.nodes().len();
        assert!(n < 100, "proxied links are for fewer than 100 sequencers");
        let routes = self.nodes()[0]["netns"].is_object();
        let loopback: std::net::IpAddr = [127, 0, 0, 1].into();
        let base = if routes {
            self.node_addr(0)
        } else {
            loopback.to_string()
        };
        let via = |j: usize| -> std::net::IpAddr {
            if !routes {
                return loopback;
            }
            let mut octets: Vec<String> = base.split('.').map(str::to_string).collect();
            octets[3] = (100 + j).to_string();
            octets.join(".").parse().expect("proxy address")
        };
        if routes {
            let ns0 = self.netns(0);
            let bridge = format!("{}br", ns0.rsplit_once('n').expect("namespace name").0);
            for j in 0..n {
                ip(&["addr", "replace", &format!("{}/32", via(j)), "dev", &bridge])
                    .expect("a proxy address on the bridge");
            }
            self.reached_at = (0..n).map(|j| via(j).to_string()).collect();
        }
        // On loopback every connection comes from 127.0.0.1, a persistent peer's address: no source needed.
        let source = |i: usize| routes.then(|| via(i));
        let l1_url = self.l1_rpc();
        let mut l1 = Vec::new();
        let p2p = |i: usize| -> (String, SocketAddr) {
            let m = self.nodes()[i]["p2p"].as_str().expect("p2p").to_string();
            // "/ip4/A/tcp/P"
            let parts: Vec<&str> = m.split('/').collect();
            (m.clone(), socket(&format!("{}:{}", parts[2], parts[4])))
        };
        let mut links = Vec::new();
        for i in 0..n {
            let config = std::path::PathBuf::from(self.nodes()[i]["config"].as_str().expect("config"));
            let mut text = std::fs::read_to_string(&config).expect("node config");
            for j in (0..n).filter(|j| *j != i) {
                let (p2p_addr, p2p_sock) = p2p(j);
                let gossip = self.nodes()[j]["gossip"].as_str().expect("gossip").to_string();
                // Node j sees node i at via(i), the address it lists node i at: a persistent peer's.
                let a = FaultProxy::start(SocketAddr::new(via(j), 0), p2p_sock, source(i))
                    .await
                    .expect("p2p proxy");
                let b = FaultProxy::start(SocketAddr::new(via(j), 0), socket(&gossip), source(i))
                    .await
                    .expect("gossip proxy");
                let via_p2p = format!("/ip4/{}/tcp/{}", via(j), a.addr.port());
                assert!(
                    text.contains(&format!("\"{p2p_addr}\"")),
                    "node {i} does not list {p2p_addr}"
                );
                text = text.replace(&format!("\"{p2p_addr}\""), &format!("\"{via_p2p}\""));
                text = text.replace(&format!("\"{gossip}\""), &format!("\"{}\"", b.addr));
                links.push(((i, j), [a, b]));
            }
            if !routes {
                let anvil = socket(l1_url.trim_start_matches("http://").trim_end_matches('/'));
                let p = FaultProxy::start(SocketAddr::new(loopback, 0), anvil, None)
                    .await
                    .expect("L1 proxy");
                let quoted = format!("\"{l1_url}\"");
                assert!(text.contains(&quoted), "node {i} does not name L1 at {l1_url}");
                text = text.replace(&quoted, &format!("\"http://{}\"", p.addr));
                l1.push(p);
            }
            std::fs::write(&config, text).expect("writing the node config");
        }
        for i in 0..n {
            self.respawn(i, &[]);
            let others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
            let top = crate::wait_for(60, "a head", || async { self.head(others[0]).await }).await;
            crate::wait_for(120, &format!("node {i} back through the proxies"), || async {
                (self.head(i).await? >= top).then_some(())
            })
            .await;
        }
        // Settle: a block decided with every node through the proxies.
        let top = crate::wait_for(60, "a head", || async { self.head(0).await }).await;
        self.wait_height(&(0..n).collect::<Vec<_>>(), top + 2, 60).await;
        ProxiedLinks { links, l1, routes }
    }
}
