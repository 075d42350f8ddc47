//! Collecting partial signatures for many signing requests at once (pure: no I/O, no clock).
//!
//! A request is opened only from decided state (the node re-derives the digest it signs; nothing else opens
//! one). Partials may come from any transport and may arrive before this node opened the request: those are
//! kept, at most [`MAX_EARLY_PER_PLAYER`] per share index (its oldest go first: a player filling its room with
//! ids that never open crowds out only itself), and checked when it opens. Each partial is verified against the public sharing before it
//! counts (a bad one is refused and attributed to its index), duplicates count once, and the request completes
//! as soon as a quorum of valid partials recovers a signature that verifies under the group key.

use crate::{threshold, MinSig, PartialSignature, Sharing, G1};
use commonware_utils::Participant;
use std::collections::{BTreeMap, VecDeque};

/// Early partials kept per share index (requests not open here yet). An honest player runs at most a few
/// requests ahead of this node, and publishes its partial again while the request is open.
pub const MAX_EARLY_PER_PLAYER: usize = 64;

/// What adding a partial did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Counted; `have` of `need` valid partials so far.
    Counted { have: usize, need: usize },
    /// This partial completed the request.
    Complete,
    /// Already complete, or a duplicate of a partial already counted.
    Ignored,
    /// Kept until the request opens here (an older early partial of the same player may have made room).
    Early,
    /// Does not verify against the sharing: the sender's fault.
    Refused(&'static str),
}

struct Request {
    digest: [u8; 32],
    partials: BTreeMap<Participant, PartialSignature<MinSig>>,
    signature: Option<G1>,
}

pub struct Collector {
    sharing: Sharing<MinSig>,
    open: BTreeMap<u64, Request>,
    /// Per share index: the ids of its early partials, oldest first, and the partials.
    early: BTreeMap<Participant, VecDeque<u64>>,
    early_partials: BTreeMap<(u64, Participant), PartialSignature<MinSig>>,
    max_requests: usize,
}

impl Collector {
    /// A collector for the key `sharing` (a new key epoch gets a new collector); at most `max_requests` open
    /// requests at once.
    pub fn new(sharing: Sharing<MinSig>, max_requests: usize) -> Self {
        Self {
            sharing,
            open: BTreeMap::new(),
            early: BTreeMap::new(),
            early_partials: BTreeMap::new(),
            max_requests: max_requests.max(1),
        }
    }

    /// Early partials held, in all.
    pub fn early_len(&self) -> usize {
        self.early_partials.len()
    }

    fn keep_early(&mut self, id: u64, partial: PartialSignature<MinSig>) {
        let index = partial.index;
        let ids = self.early.entry(index).or_default();
        if self.early_partials.insert((id, index), partial).is_none() {
            ids.push_back(id);
        }
        while ids.len() > MAX_EARLY_PER_PLAYER {
            if let Some(old) = ids.pop_front() {
                self.early_partials.remove(&(old, index));
            }
        }
    }

    fn take_early(&mut self, id: u64) -> Vec<PartialSignature<MinSig>> {
        let keys: Vec<(u64, Participant)> = self
            .early_partials
            .range((id, Participant::new(0))..)
            .take_while(|((i, _), _)| *i == id)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(p) = self.early_partials.remove(&k) {
                out.push(p);
            }
            if let Some(ids) = self.early.get_mut(&k.1) {
                ids.retain(|i| *i != id);
            }
        }
        out
    }

    pub fn sharing(&self) -> &Sharing<MinSig> {
        &self.sharing
    }

    /// Opens request `id` for `digest` (from decided state). Partials that came early are checked now. Returns
    /// false if the id is open for another digest or too many requests are open.
    pub fn open(&mut self, id: u64, digest: [u8; 32]) -> bool {
        if let Some(r) = self.open.get(&id) {
            return r.digest == digest;
        }
        if self.open.len() >= self.max_requests {
            return false;
        }
        self.open.insert(
            id,
            Request {
                digest,
                partials: BTreeMap::new(),
                signature: None,
            },
        );
        for p in self.take_early(id) {
            let _ = self.add(id, p);
        }
        true
    }

    /// Adds a partial for request `id`.
    pub fn add(&mut self, id: u64, partial: PartialSignature<MinSig>) -> Added {
        let need = self.sharing.required() as usize;
        let Some(r) = self.open.get_mut(&id) else {
            self.keep_early(id, partial);
            return Added::Early;
        };
        if r.signature.is_some() || r.partials.contains_key(&partial.index) {
            return Added::Ignored;
        }
        if threshold::verify_partial(&self.sharing, &r.digest, &partial).is_err() {
            return Added::Refused("partial signature does not verify");
        }
        r.partials.insert(partial.index, partial);
        if r.partials.len() < need {
            return Added::Counted {
                have: r.partials.len(),
                need,
            };
        }
        match threshold::aggregate(&self.sharing, &r.digest, r.partials.values()) {
            Ok(sig) => {
                r.signature = Some(sig);
                Added::Complete
            }
            // Valid partials always recover a valid signature; keep collecting if not.
            Err(_) => Added::Counted {
                have: r.partials.len(),
                need,
            },
        }
    }

    /// The aggregated signature of request `id`, once complete.
    pub fn signature(&self, id: u64) -> Option<&G1> {
        self.open.get(&id)?.signature.as_ref()
    }

    /// Share indices whose valid partials request `id` holds.
    pub fn signers(&self, id: u64) -> Vec<u32> {
        self.open
            .get(&id)
            .map(|r| r.partials.keys().map(|p| p.get()).collect())
            .unwrap_or_default()
    }

    /// Valid partials request `id` holds, and how many it needs.
    pub fn progress(&self, id: u64) -> (usize, usize) {
        let need = self.sharing.required() as usize;
        (self.open.get(&id).map_or(0, |r| r.partials.len()), need)
    }

    /// Forgets request `id` (posted, or superseded).
    pub fn close(&mut self, id: u64) {
        self.open.remove(&id);
        drop(self.take_early(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Share;
    use commonware_cryptography::bls12381::{dkg::feldman_desmedt::deal_anonymous, primitives::sharing::Mode};
    use commonware_utils::N3f1;
    use rand::{rngs::StdRng, SeedableRng};
    use std::num::NonZeroU32;

    fn deal(n: u32) -> (Sharing<MinSig>, Vec<Share>) {
        deal_anonymous::<MinSig, N3f1>(
            StdRng::seed_from_u64(7),
            Mode::NonZeroCounter,
            NonZeroU32::new(n).unwrap(),
        )
    }

    #[test]
    fn many_requests_complete_at_quorum_with_bad_and_duplicate_partials_refused() {
        let (sharing, shares) = deal(4);
        let mut c = Collector::new(sharing.clone(), 8);
        let (d1, d2) = ([1u8; 32], [2u8; 32]);
        assert!(c.open(1, d1));
        assert!(c.open(2, d2));
        assert!(!c.open(1, d2), "one digest per id");
        // A partial over another digest is refused and does not count.
        let wrong = threshold::sign_partial(&shares[0], &d2);
        assert_eq!(c.add(1, wrong), Added::Refused("partial signature does not verify"));
        assert_eq!(
            c.add(1, threshold::sign_partial(&shares[0], &d1)),
            Added::Counted { have: 1, need: 3 }
        );
        assert_eq!(c.add(1, threshold::sign_partial(&shares[0], &d1)), Added::Ignored);
        assert_eq!(
            c.add(1, threshold::sign_partial(&shares[2], &d1)),
            Added::Counted { have: 2, need: 3 }
        );
        // Request 2 fills independently.
        for s in &shares[1..3] {
            c.add(2, threshold::sign_partial(s, &d2));
        }
        assert_eq!(c.add(1, threshold::sign_partial(&shares[3], &d1)), Added::Complete);
        let sig = *c.signature(1).unwrap();
        threshold::verify(sharing.public(), &d1, &sig).unwrap();
        assert!(c.signature(2).is_none());
        assert_eq!(c.add(2, threshold::sign_partial(&shares[3], &d2)), Added::Complete);
        assert_eq!(c.add(1, threshold::sign_partial(&shares[1], &d1)), Added::Ignored);
        c.close(1);
        assert!(c.signature(1).is_none());
    }

    #[test]
    fn early_partials_count_once_the_request_opens() {
        let (sharing, shares) = deal(4);
        let mut c = Collector::new(sharing.clone(), 2);
        let d = [9u8; 32];
        for s in &shares[..3] {
            assert_eq!(c.add(5, threshold::sign_partial(s, &d)), Added::Early);
        }
        // A forged early partial is dropped when the request opens; the three good ones complete it.
        let forged = threshold::sign_partial(&shares[3], &[0u8; 32]);
        assert_eq!(c.add(5, forged), Added::Early);
        assert!(c.open(5, d));
        threshold::verify(sharing.public(), &d, c.signature(5).unwrap()).unwrap();
        // Bounded: no more than max_requests ids open.
        assert!(c.open(6, d));
        assert!(!c.open(7, d));
    }

    #[test]
    fn a_player_flooding_early_ids_crowds_out_only_itself() {
        let (sharing, shares) = deal(4);
        let mut c = Collector::new(sharing.clone(), 16);
        let d = [9u8; 32];
        // Player 1's partial for request 100, before the request opens here.
        assert_eq!(c.add(100, threshold::sign_partial(&shares[1], &d)), Added::Early);
        // Player 0 sends early partials for 10,000 ids that never open: kept at most 64, never refused.
        for id in 1_000..11_000 {
            assert_eq!(c.add(id, threshold::sign_partial(&shares[0], &d)), Added::Early);
        }
        assert_eq!(c.early_len(), MAX_EARLY_PER_PLAYER + 1);
        // Player 1's early partial is still there when 100 opens, and counts.
        assert!(c.open(100, d));
        assert_eq!(c.progress(100), (1, 3));
        assert_eq!(
            c.add(100, threshold::sign_partial(&shares[2], &d)),
            Added::Counted { have: 2, need: 3 }
        );
        assert_eq!(c.add(100, threshold::sign_partial(&shares[3], &d)), Added::Complete);
        // Closing forgets early partials of the id too.
        c.close(100);
        assert_eq!(c.early_len(), MAX_EARLY_PER_PLAYER);
    }
}
