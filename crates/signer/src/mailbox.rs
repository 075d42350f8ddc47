//! What reaches the signer task, from three sources merged into one stream of [`Input`]s: the chain's commits,
//! peers' signing messages (over the authenticated links, already tied to the sending peer), and a timer that
//! repeats this node's partials for requests still open.

use metis_chain::Committed;
use metis_net::sighub::{Peer, SignMsg};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One thing for the signer to act on.
pub enum Input {
    /// A block was committed (with the ledger after it, and a new key if a key round completed).
    Committed(Arc<Committed>),
    /// Signing messages from one peer.
    Peer(Peer, Vec<SignMsg>),
    /// Time to publish again the partials of requests still open.
    Repeat,
}

/// The signer's inbox.
pub struct Mailbox {
    committed: mpsc::UnboundedReceiver<Arc<Committed>>,
    from_peers: mpsc::Receiver<(Peer, Vec<SignMsg>)>,
    peers_open: bool,
    repeat: tokio::time::Interval,
}

impl Mailbox {
    pub fn new(
        committed: mpsc::UnboundedReceiver<Arc<Committed>>,
        from_peers: mpsc::Receiver<(Peer, Vec<SignMsg>)>,
        repeat_every: Duration,
    ) -> Self {
        Self {
            committed,
            from_peers,
            peers_open: true,
            repeat: tokio::time::interval(repeat_every),
        }
    }

    /// The next input; `None` once the chain stops announcing commits (the node is shutting down). Closed
    /// links only end the peers' source.
    pub async fn recv(&mut self) -> Option<Input> {
        loop {
            tokio::select! {
                c = self.committed.recv() => return c.map(Input::Committed),
                m = self.from_peers.recv(), if self.peers_open => match m {
                    Some((peer, msgs)) => return Some(Input::Peer(peer, msgs)),
                    None => self.peers_open = false,
                },
                _ = self.repeat.tick() => return Some(Input::Repeat),
            }
        }
    }
}
