//! Who may connect to this node's libp2p port (votes, proposals, sync): the peers in `p2p.peers` and the
//! sequencers the ledger knows (pending or active). Malachite runs with `persistent_peers_only`, and this task
//! keeps its persistent list in step with the ledger after every block: a sequencer that locks on L1 may connect
//! once that is decided (before it joins the set, so it can catch up), one that leaves is dropped. A stranger
//! is refused at its first message, before any sync request or vote of it is looked at. `p2p.open = true` turns
//! the list off (a node serving followers).

use alloy_primitives::B256;
use malachitebft_app_channel::app::net::{Multiaddr, PeerId};
use malachitebft_app_channel::NetworkRequest;
use metis_chain::Chain;
use metis_pos::{Ledger, SequencerStatus};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

/// The libp2p identity of a consensus key (the node derives its network key from the same ed25519 key).
pub fn peer_id_of(consensus_key: &B256) -> Option<PeerId> {
    let public = libp2p_identity::ed25519::PublicKey::try_from_bytes(consensus_key.as_slice()).ok()?;
    Some(PeerId::from_public_key(&libp2p_identity::PublicKey::from(public)))
}

/// The peers the ledger lets in: every sequencer not gone, except this node.
pub fn allowed(ledger: &Ledger, me: &PeerId) -> BTreeSet<PeerId> {
    ledger
        .sequencers()
        .filter(|q| q.status != SequencerStatus::Inactive)
        .filter_map(|q| peer_id_of(&q.consensus_key))
        .filter(|p| p != me)
        .collect()
}

/// A peer-only address: it lets the peer in without dialling it (its address comes from `p2p.peers` or from
/// its own dial).
fn addr(peer: &PeerId) -> Option<Multiaddr> {
    format!("/p2p/{peer}").parse().ok()
}

/// Keeps Malachite's persistent list equal to `allowed` of the newest ledger plus `followers` (the RPC nodes this
/// sequencer lets follow it), from now until the chain stops.
pub fn follow_ledger(
    chain: Arc<Chain>,
    requests: mpsc::Sender<NetworkRequest>,
    me: PeerId,
    followers: BTreeSet<PeerId>,
) {
    let mut blocks = chain.subscribe_blocks();
    tokio::spawn(async move {
        let mut current = BTreeSet::new();
        loop {
            if let Some(ledger) = chain.ledger() {
                let mut wanted = allowed(&ledger, &me);
                wanted.extend(followers.iter().copied());
                if wanted != current {
                    current = apply(&requests, &current, &wanted).await;
                }
            }
            match blocks.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Adds what `wanted` has and `current` lacks, removes the reverse; returns what the list holds afterwards.
async fn apply(
    requests: &mpsc::Sender<NetworkRequest>,
    current: &BTreeSet<PeerId>,
    wanted: &BTreeSet<PeerId>,
) -> BTreeSet<PeerId> {
    let mut now = current.clone();
    for p in wanted.difference(current) {
        let Some(a) = addr(p) else { continue };
        match NetworkRequest::add_persistent_peer(requests, a).await {
            // Already there counts as done.
            Ok(_) => {
                now.insert(*p);
            }
            Err(e) => warn!(peer = %p, error = %e, "could not allow a sequencer's peer"),
        }
    }
    for p in current.difference(wanted) {
        let Some(a) = addr(p) else { continue };
        match NetworkRequest::remove_persistent_peer(requests, a).await {
            Ok(_) => {
                now.remove(p);
            }
            Err(e) => warn!(peer = %p, error = %e, "could not drop a former sequencer's peer"),
        }
    }
    if now != *current {
        info!(allowed = now.len(), "libp2p peers allowed by the ledger");
        debug!(peers = ?now, "allowed peers");
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, U256};
    use metis_pos::{Params, Sequencer};

    fn key(seed: u8) -> (B256, PeerId) {
        let kp = malachitebft_app_channel::app::types::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
        let public = kp.public().try_into_ed25519().unwrap().to_bytes();
        (B256::from(public), kp.public().to_peer_id())
    }

    #[test]
    fn the_ledger_lets_in_pending_and_active_sequencers_but_not_former_ones_or_this_node() {
        let seq = |id: u64, status| Sequencer {
            id,
            signer: Address::with_last_byte(id as u8),
            consensus_key: key(id as u8).0,
            dkg_key: B256::with_last_byte(id as u8),
            stake: U256::from(10u64.pow(18)) * U256::from(20_000),
            status,
            jailed_until_epoch: 0,
            l1_jailed: false,
        };
        let mut set = vec![
            seq(1, SequencerStatus::Active),
            seq(2, SequencerStatus::Active),
            seq(3, SequencerStatus::Active),
            seq(4, SequencerStatus::Active),
        ];
        let ledger = Ledger::genesis(Params::default(), set.clone(), B256::ZERO).unwrap();
        let me = key(1).1;
        let allowed_now = allowed(&ledger, &me);
        assert_eq!(allowed_now, [key(2).1, key(3).1, key(4).1].into_iter().collect());
        set.push(seq(5, SequencerStatus::Pending));
        set[3].status = SequencerStatus::Inactive;
        let ledger = Ledger::genesis(Params::default(), set, B256::ZERO).unwrap();
        let allowed_later = allowed(&ledger, &me);
        assert!(
            allowed_later.contains(&key(5).1),
            "a pending sequencer may connect to catch up"
        );
        assert!(!allowed_later.contains(&key(4).1), "a former one may not");
    }

    #[test]
    fn a_consensus_key_maps_to_the_peer_id_its_node_uses() {
        let (ck, peer) = key(9);
        assert_eq!(peer_id_of(&ck), Some(peer));
        assert_eq!(addr(&peer).unwrap().to_string(), format!("/p2p/{peer}"));
    }
}
