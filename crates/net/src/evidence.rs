//! Equivocation evidence between the sequencers, over the authenticated gossip links: a node that holds evidence
//! (it saw both signed messages) sends it to every peer, so a validator that missed one of the two messages still
//! checks and carries it. The consensus app verifies what arrives; a peer that sends evidence the app refuses
//! spends its link's budget, and a link out of budget is cut and refused for a while.

use crate::sighub::Peer;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// Evidence items per frame at most (a block carries at most 8).
pub const MAX_EVIDENCE_PER_FRAME: usize = 16;
/// Bytes of one encoded item at most (`metis_wire::evidence::MAX_EVIDENCE_BYTES`).
pub const MAX_ITEM_BYTES: usize = 1024;
/// Items a node keeps to send again on every new link.
const MAX_RESEND: usize = 32;
/// Refused items a peer may send before its link is cut.
pub const BAD_EVIDENCE_BUDGET: u32 = 3;
/// How long a peer whose budget ran out is refused.
pub const BAN: Duration = Duration::from_secs(60);
/// Peers whose budget is tracked at most (the set of sequencers is far smaller).
const MAX_TRACKED: usize = 256;

/// Decodes a frame body (after the frame type), bounded.
pub fn decode_items(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let items: Vec<Vec<u8>> = borsh::from_slice(body).ok()?;
    (items.len() <= MAX_EVIDENCE_PER_FRAME && items.iter().all(|i| i.len() <= MAX_ITEM_BYTES)).then_some(items)
}

pub fn encode_items(items: &[Vec<u8>]) -> std::io::Result<Vec<u8>> {
    borsh::to_vec(items)
}

/// Encoded evidence items one peer sent in one frame.
pub type PeerItems = (Peer, Vec<Vec<u8>>);

#[derive(Default)]
struct Budget {
    bad: u32,
    banned_until: Option<Instant>,
}

/// Between the gossip links and the consensus app.
pub struct EvidenceHub {
    out: broadcast::Sender<Arc<Vec<u8>>>,
    inbox: mpsc::Sender<PeerItems>,
    resend: Mutex<VecDeque<Vec<u8>>>,
    budgets: Mutex<HashMap<Peer, Budget>>,
}

impl EvidenceHub {
    /// A hub and the receiver of what peers send.
    pub fn new() -> (Arc<Self>, mpsc::Receiver<PeerItems>) {
        let (out, _) = broadcast::channel(256);
        let (inbox, rx) = mpsc::channel(64);
        (
            Arc::new(Self {
                out,
                inbox,
                resend: Mutex::new(VecDeque::new()),
                budgets: Mutex::new(HashMap::new()),
            }),
            rx,
        )
    }

    /// Sends an encoded evidence item to every connected peer now and to every peer that connects later.
    pub fn publish(&self, item: Vec<u8>) {
        {
            let mut r = self.resend.lock();
            if r.contains(&item) {
                return;
            }
            r.push_back(item.clone());
            while r.len() > MAX_RESEND {
                r.pop_front();
            }
        }
        let _ = self.out.send(Arc::new(item));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<u8>>> {
        self.out.subscribe()
    }

    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.resend.lock().iter().cloned().collect()
    }

    /// Hands a peer's items (with its authenticated key) to the app; dropped if the app is that far behind.
    pub fn deliver(&self, peer: Peer, items: Vec<Vec<u8>>) {
        let _ = self.inbox.try_send((peer, items));
    }

    /// The app refused an item `peer` sent: one less in its budget; the last one bans it for [`BAN`].
    pub fn penalize(&self, peer: Peer, now: Instant) {
        let mut b = self.budgets.lock();
        if !b.contains_key(&peer) && b.len() >= MAX_TRACKED {
            // Forget budgets that are not bans first; a flood of keys cannot grow the map.
            b.retain(|_, v| v.banned_until.is_some_and(|t| t > now));
            if b.len() >= MAX_TRACKED {
                return;
            }
        }
        let e = b.entry(peer).or_default();
        e.bad = e.bad.saturating_add(1);
        if e.bad >= BAD_EVIDENCE_BUDGET {
            e.bad = 0;
            e.banned_until = Some(now + BAN);
        }
    }

    /// Whether `peer`'s link must be cut (and a new one refused) now.
    pub fn banned(&self, peer: &Peer, now: Instant) -> bool {
        self.budgets
            .lock()
            .get(peer)
            .and_then(|b| b.banned_until)
            .is_some_and(|t| t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any evidence frame body from a peer is refused or decodes to bounded items that encode back to it.
        #[test]
        fn any_body_is_refused_or_canonical(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            if let Some(items) = decode_items(&body) {
                proptest::prop_assert!(items.len() <= MAX_EVIDENCE_PER_FRAME);
                proptest::prop_assert_eq!(encode_items(&items).unwrap(), body);
            }
        }
    }

    #[test]
    fn frames_are_bounded() {
        let items = vec![vec![1u8; 100], vec![2u8; 10]];
        assert_eq!(decode_items(&encode_items(&items).unwrap()), Some(items));
        assert_eq!(
            decode_items(&encode_items(&[vec![0; MAX_ITEM_BYTES + 1]]).unwrap()),
            None
        );
        let many = vec![vec![0u8; 1]; MAX_EVIDENCE_PER_FRAME + 1];
        assert_eq!(decode_items(&encode_items(&many).unwrap()), None);
        assert_eq!(decode_items(&[9, 9]), None);
    }

    #[test]
    fn three_bad_items_ban_a_peer_for_a_while() {
        let (hub, _rx) = EvidenceHub::new();
        let (p, q) = ([1u8; 32], [2u8; 32]);
        let t = Instant::now();
        hub.penalize(p, t);
        hub.penalize(p, t);
        assert!(!hub.banned(&p, t));
        hub.penalize(p, t);
        assert!(hub.banned(&p, t));
        assert!(!hub.banned(&q, t), "only the sender pays");
        assert!(!hub.banned(&p, t + BAN), "the ban ends");
    }

    #[test]
    fn an_item_is_sent_once_and_kept_for_new_links() {
        let (hub, _rx) = EvidenceHub::new();
        let mut sub = hub.subscribe();
        hub.publish(vec![7]);
        hub.publish(vec![7]);
        assert_eq!(*sub.try_recv().unwrap(), vec![7]);
        assert!(sub.try_recv().is_err(), "a repeat is not sent again");
        for i in 0..MAX_RESEND + 5 {
            hub.publish(vec![i as u8, 1]);
        }
        assert_eq!(hub.snapshot().len(), MAX_RESEND);
    }
}
