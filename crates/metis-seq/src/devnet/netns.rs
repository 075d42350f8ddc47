//! `devnet --netns`: every node in a Linux network namespace of its own, with its own address on a bridge in
//! the host's namespace (veth pairs), so that nodes talk over real addresses and a test can cut the links
//! between them (a route in a node's namespace) while the node keeps running. The host side holds the bridge's
//! address, where anvil listens and from where tools reach every node.
//!
//! Layout for a devnet whose base port is B (X = B/100 mod 250, so devnets on other ports do not collide):
//! the bridge `msqXbr` with 10.77.X.254/24, node i in namespace `msqXn<i>` at 10.77.X.(i+1) on its `eth0`,
//! whose other end `msqXh<i>` is on the bridge. anvil listens on a second address of the bridge, 10.77.X.253,
//! so a test can cut the nodes off from L1 alone (a route to .253) and still reach them from .254.

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::process::Command;

/// Nodes one subnet holds (.1 to .250; .253 and .254 are the host side).
pub const MAX_NODES: usize = 250;

#[derive(Clone, Copy, Debug)]
pub struct Netns {
    octet: u8,
}

impl Netns {
    pub fn for_base_port(base_port: u16) -> Self {
        // 250 < 256, so the cast cannot truncate.
        Self {
            octet: ((base_port / 100) % 250) as u8,
        }
    }

    fn prefix(&self) -> String {
        format!("msq{}", self.octet)
    }

    pub fn bridge(&self) -> String {
        format!("{}br", self.prefix())
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix())
    }

    fn host_veth(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix())
    }

    fn node_veth(&self, i: usize) -> String {
        format!("{}p{i}", self.prefix())
    }

    /// The host side: the bridge's address (tools reach the nodes from here).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.octet, 254)
    }

    /// The bridge's second address, where anvil listens.
    pub fn l1_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.octet, 253)
    }

    pub fn addr(&self, i: usize) -> Result<Ipv4Addr> {
        if i >= MAX_NODES {
            bail!("--netns holds at most {MAX_NODES} nodes");
        }
        // i < 250, so i + 1 fits a byte.
        Ok(Ipv4Addr::new(10, 77, self.octet, (i + 1) as u8))
    }

    /// Creates the bridge and `count` namespaces (removing any left by an earlier run first).
    pub fn setup(&self, count: usize) -> Result<()> {
        if count > MAX_NODES {
            bail!("--netns holds at most {MAX_NODES} nodes, not {count}");
        }
        self.teardown()
            .context("--netns needs root (CAP_NET_ADMIN) and iproute2's `ip` (Debian: apt-get install iproute2)")?;
        let br = self.bridge();
        ip(&["link", "add", &br, "type", "bridge"])
            .context("--netns needs root (CAP_NET_ADMIN) and iproute2's `ip` (Debian: apt-get install iproute2)")?;
        ip(&["addr", "add", &format!("{}/24", self.gateway()), "dev", &br])?;
        ip(&["addr", "add", &format!("{}/24", self.l1_addr()), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..count {
            let (ns, host, node) = (self.namespace(i), self.host_veth(i), self.node_veth(i));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &node])?;
            ip(&["link", "set", &node, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &br])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&["-n", &ns, "link", "set", &node, "name", "eth0"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addr(i)?),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Removes this devnet's namespaces (their veth pairs go with them) and its bridge; nothing else.
    pub fn teardown(&self) -> Result<()> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .context("running `ip netns list`")?;
        if !out.status.success() {
            bail!("`ip netns list`: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let mine = format!("{}n", self.prefix());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "msq30n2" or "msq30n2 (id: 4)".
            let name = line.split_whitespace().next().unwrap_or("");
            if name.strip_prefix(&mine).is_some_and(|n| n.parse::<usize>().is_ok()) {
                ip(&["netns", "del", name])?;
            }
        }
        let br = self.bridge();
        if Command::new("ip")
            .args(["link", "show", &br])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            ip(&["link", "del", &br])?;
        }
        Ok(())
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running `ip {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits_and_devnets_on_other_ports_do_not_collide() {
        let a = Netns::for_base_port(28000);
        let b = Netns::for_base_port(29100);
        assert_ne!(a.bridge(), b.bridge());
        assert_eq!(a.gateway(), Ipv4Addr::new(10, 77, 30, 254));
        assert_eq!(a.addr(0).unwrap(), Ipv4Addr::new(10, 77, 30, 1));
        assert!(a.addr(MAX_NODES).is_err());
        // Linux interface names are at most 15 bytes.
        let worst = Netns { octet: 249 };
        assert!(worst.host_veth(MAX_NODES - 1).len() <= 15);
        assert!(worst.node_veth(MAX_NODES - 1).len() <= 15);
        assert!(worst.bridge().len() <= 15);
    }
}
