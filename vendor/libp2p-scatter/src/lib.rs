//! Malachite's Broadcast transport: the API of libp2p-scatter 0.3.0, which `arc-malachitebft-network` 0.8.2 is
//! written against, over libp2p-scatter 0.5.0, with one fix.
//!
//! - 0.5 keeps one long-lived substream per connection where 0.3 opened a new one, with its own protocol
//!   negotiation, for every message and peer: among 10 sequencers on two cores that was most of an idle node's
//!   CPU (docs/benchmarks.md, "Scale"). It also speaks 0.3's protocol to a peer that only has that (a pool
//!   upgrading one node at a time).
//! - The fix: a node tells a peer its subscriptions when the *first* connection to it opens and forgets the
//!   peer's when the *last* one closes (both versions). After a partition one end times out the link and
//!   forgets; the other still holds the dead connection when the redial arrives, takes it for a second
//!   connection and says nothing, so the first never sends it a message again. Here every further connection to
//!   a peer, and every close that leaves one open, announces our subscriptions to it again.

use bytes::Bytes;
use libp2p::core::{transport::PortUse, Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::task::{Context, Poll};

pub use scatter::{Event, Topic};

/// 0.3's settings: the largest message, in bytes.
#[derive(Clone, Debug)]
pub struct Config {
    pub max_buf_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_buf_size: 4 * 1024 * 1024,
        }
    }
}

impl Config {
    fn v05(&self) -> scatter::Config {
        scatter::Config::default()
            .max_message_size(self.max_buf_size)
            // Peers still on a build with 0.3 keep receiving from and sending to this one.
            .legacy_protocol(true)
    }
}

pub struct Behaviour {
    inner: scatter::Behaviour,
    /// Our topics (Malachite's four channels at most), kept here as 0.3's `subscribed` lends them out.
    subscriptions: HashSet<Topic>,
}

impl Behaviour {
    pub fn new(config: Config) -> Self {
        Self {
            inner: scatter::Behaviour::new(config.v05()),
            subscriptions: HashSet::new(),
        }
    }

    pub fn new_with_metrics(config: Config, registry: &mut Registry) -> Self {
        Self {
            inner: scatter::Behaviour::new_with_metrics(config.v05(), registry),
            subscriptions: HashSet::new(),
        }
    }

    pub fn subscribed(&self) -> impl Iterator<Item = &Topic> + '_ {
        self.subscriptions.iter()
    }

    pub fn subscribe(&mut self, topic: Topic) {
        self.subscriptions.insert(topic);
        self.inner.subscribe(topic);
    }

    pub fn unsubscribe(&mut self, topic: &Topic) {
        self.subscriptions.remove(topic);
        self.inner.unsubscribe(*topic);
    }

    /// To every connected peer subscribed to `topic`. A payload over the size limit is not sent (0.3 sent it and
    /// the peers dropped it); Malachite checks the size before it gets here.
    pub fn broadcast(&mut self, topic: &Topic, msg: Bytes) {
        if let Err(e) = self.inner.broadcast(*topic, msg) {
            tracing::warn!(%topic, "not broadcast: {e}");
        }
    }

    fn announce(&mut self, peer: &PeerId) {
        for topic in &self.subscriptions {
            self.inner.announce(peer, *topic);
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = <scatter::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(connection_id, maybe_peer, addresses, effective_role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(connection_id, peer, addr, role_override, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        let again = match &event {
            FromSwarm::ConnectionEstablished(c) if c.other_established > 0 => Some(c.peer_id),
            FromSwarm::ConnectionClosed(c) if c.remaining_established > 0 => Some(c.peer_id),
            _ => None,
        };
        self.inner.on_swarm_event(event);
        if let Some(peer) = again {
            self.announce(&peer);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer_id, connection_id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::ConnectedPoint;
    use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
    use libp2p::swarm::NotifyHandler;

    fn drain(b: &mut Behaviour) -> Vec<ToSwarm<Event, THandlerInEvent<Behaviour>>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        while let Poll::Ready(ev) = b.poll(&mut cx) {
            out.push(ev);
        }
        out
    }

    /// How many messages to `peer` the behaviour asks the swarm to hand to a connection.
    fn to_peer(events: &[ToSwarm<Event, THandlerInEvent<Behaviour>>], peer: PeerId) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, ToSwarm::NotifyHandler { peer_id, handler: NotifyHandler::Any, .. } if *peer_id == peer))
            .count()
    }

    /// A second connection to a peer, and the close of one of two, carry our subscriptions again: a peer that
    /// dropped its last connection to us (and our topics with it) while we kept a half-open one learns them
    /// again. Unpatched, only the first connection does.
    #[test]
    fn every_new_connection_and_every_close_that_leaves_one_announce_the_subscriptions() {
        let topic = Topic::new(b"/consensus");
        let peer = PeerId::random();
        let mut b = Behaviour::new(Config::default());
        b.subscribe(topic);
        assert_eq!(b.subscribed().collect::<Vec<_>>(), vec![&topic]);
        let endpoint = ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        let established = |id: usize, other_established: usize| {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: ConnectionId::new_unchecked(id),
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established,
            })
        };
        b.on_swarm_event(established(1, 0));
        assert_eq!(to_peer(&drain(&mut b), peer), 1, "the first connection");
        b.on_swarm_event(established(2, 1));
        assert_eq!(to_peer(&drain(&mut b), peer), 1, "a second connection");
        b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(1),
            endpoint: &endpoint,
            cause: None,
            remaining_established: 1,
        }));
        assert_eq!(to_peer(&drain(&mut b), peer), 1, "a close that leaves one open");
    }

    #[test]
    fn a_payload_over_the_limit_is_not_sent() {
        let topic = Topic::new(b"/consensus");
        let mut b = Behaviour::new(Config { max_buf_size: 8 });
        b.subscribe(topic);
        b.broadcast(&topic, Bytes::from_static(b"0123456789"));
        assert!(drain(&mut b).is_empty());
    }
}
