//! The pool's own authenticated transport beside Malachite's libp2p: sealed links between sequencers that
//! carry transactions into every mempool ([`gossip`]), threshold-signing messages ([`sighub`]) and equivocation
//! evidence ([`evidence`]), and the links on which followers (RPC nodes) forward their users' transactions
//! ([`followers`]).

pub mod evidence;
pub mod followers;
pub mod gossip;
pub mod sighub;

pub use evidence::EvidenceHub;
pub use followers::{FollowerLimits, FollowerPolicy, PeerClass};
pub use gossip::{start, Allowed, FollowerLink, GossipConfig, GossipError};
pub use sighub::{Peer, SignHub, SignMsg};

/// A peer's ed25519 key as logs show it (the full key, as the consensus layer names validators).
pub struct PeerKey(pub [u8; 32]);

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{}", alloy_primitives::hex::encode(self.0))
    }
}
