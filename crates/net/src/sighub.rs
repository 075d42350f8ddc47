//! Threshold-signing messages between the sequencers, over the authenticated gossip links: partial signatures
//! of open requests and completed signatures. The gossip carries them as their own frame type; the threshold
//! signer (`metis-signer`) produces and consumes them through this hub.

use borsh::{BorshDeserialize, BorshSerialize};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Messages per frame at most.
pub const MAX_SIGN_MSGS: usize = 1024;
/// A partial signature's encoding (index + G1) and an EIP-2537 G1 point are well below this.
const MAX_SIG_BYTES: usize = 256;
/// A peer's consensus key, as the gossip handshake authenticated it.
pub type Peer = [u8; 32];

/// Messages a node keeps to send again to a peer whose link (re)connects.
const MAX_RESEND: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SignMsg {
    /// A share's partial signature of request `id`, under the sharing of key round `round`.
    Partial { round: u64, id: u64, partial: Vec<u8> },
    /// The group signature of request `id` (EIP-2537 G1), for nodes that have not aggregated it yet.
    Signature { id: u64, signature: Vec<u8> },
}

impl SignMsg {
    pub fn id(&self) -> u64 {
        match self {
            SignMsg::Partial { id, .. } | SignMsg::Signature { id, .. } => *id,
        }
    }

    fn bounded(&self) -> bool {
        match self {
            SignMsg::Partial { partial, .. } => partial.len() <= MAX_SIG_BYTES,
            SignMsg::Signature { signature, .. } => signature.len() <= MAX_SIG_BYTES,
        }
    }
}

/// Decodes a frame body (after the frame type), bounded.
pub fn decode_msgs(body: &[u8]) -> Option<Vec<SignMsg>> {
    let msgs: Vec<SignMsg> = borsh::from_slice(body).ok()?;
    (msgs.len() <= MAX_SIGN_MSGS && msgs.iter().all(SignMsg::bounded)).then_some(msgs)
}

pub fn encode_msgs(msgs: &[SignMsg]) -> std::io::Result<Vec<u8>> {
    borsh::to_vec(msgs)
}

/// Between the gossip links and the threshold signer.
pub struct SignHub {
    out: broadcast::Sender<Arc<SignMsg>>,
    inbox: mpsc::Sender<(Peer, Vec<SignMsg>)>,
    /// This node's latest message per request (its partial, then the signature), sent on every new link.
    resend: Mutex<BTreeMap<u64, SignMsg>>,
}

impl SignHub {
    /// A hub and the receiver of what peers send.
    pub fn new() -> (Arc<Self>, mpsc::Receiver<(Peer, Vec<SignMsg>)>) {
        let (out, _) = broadcast::channel(4096);
        let (inbox, rx) = mpsc::channel(1024);
        (
            Arc::new(Self {
                out,
                inbox,
                resend: Mutex::new(BTreeMap::new()),
            }),
            rx,
        )
    }

    /// Sends `msg` to every connected peer now, and to every peer that connects later.
    pub fn publish(&self, msg: SignMsg) {
        {
            let mut r = self.resend.lock();
            r.insert(msg.id(), msg.clone());
            while r.len() > MAX_RESEND {
                r.pop_first();
            }
        }
        let _ = self.out.send(Arc::new(msg));
    }

    /// Sends `msg` to the peers connected now only (a repeat).
    pub fn repeat(&self, msg: SignMsg) {
        let _ = self.out.send(Arc::new(msg));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SignMsg>> {
        self.out.subscribe()
    }

    pub fn snapshot(&self) -> Vec<SignMsg> {
        self.resend.lock().values().cloned().collect()
    }

    /// Hands a peer's messages (with its authenticated consensus key) to the signer; dropped if it is that far
    /// behind (senders repeat).
    pub fn deliver(&self, peer: Peer, msgs: Vec<SignMsg>) {
        let _ = self.inbox.try_send((peer, msgs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any frame body from a peer is refused or decodes to messages that encode back to it; no panic.
        #[test]
        fn any_body_is_refused_or_canonical(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            if let Some(msgs) = decode_msgs(&body) {
                proptest::prop_assert_eq!(encode_msgs(&msgs).unwrap(), body);
            }
        }
    }

    #[test]
    fn frames_are_bounded() {
        let m = SignMsg::Partial {
            round: 1,
            id: 2,
            partial: vec![1; 100],
        };
        assert_eq!(
            decode_msgs(&encode_msgs(std::slice::from_ref(&m)).unwrap()),
            Some(vec![m])
        );
        let big = SignMsg::Signature {
            id: 1,
            signature: vec![0; 1000],
        };
        assert_eq!(decode_msgs(&encode_msgs(&[big]).unwrap()), None);
        let many: Vec<_> = (0..MAX_SIGN_MSGS as u64 + 1)
            .map(|id| SignMsg::Signature { id, signature: vec![] })
            .collect();
        assert_eq!(decode_msgs(&encode_msgs(&many).unwrap()), None);
        assert_eq!(decode_msgs(&[1, 2, 3]), None);
    }

    #[test]
    fn the_hub_keeps_the_latest_message_per_request() {
        let (hub, _rx) = SignHub::new();
        let mut sub = hub.subscribe();
        hub.publish(SignMsg::Partial {
            round: 0,
            id: 7,
            partial: vec![1],
        });
        hub.publish(SignMsg::Signature {
            id: 7,
            signature: vec![2],
        });
        hub.repeat(SignMsg::Partial {
            round: 0,
            id: 8,
            partial: vec![3],
        });
        assert_eq!(
            hub.snapshot(),
            vec![SignMsg::Signature {
                id: 7,
                signature: vec![2]
            }]
        );
        assert_eq!(sub.try_recv().unwrap().id(), 7);
    }
}
