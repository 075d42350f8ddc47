//! Reassembly of a peer's proposal stream: gated by who may propose before any work is done for it, bounded per
//! publisher and in all, authenticated by the proposer's signature over the whole stream, then handed to
//! validation (or kept for a height this node has not reached).

use super::validate::{Builder, Origin};
use super::{validator_set, App, CHUNK, MAX_STREAM_CLAIMS};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::{PeerId, ProposedValue};
use metis_wire::block::{BlockData, MAX_BLOCK_BYTES};
use metis_wire::evidence::{Evidence, SignedStreamRecord};
use metis_wire::signing::{content_digest, stream_fin_bytes, verify};
use metis_wire::types::{Address, Height, MetisContext, PartInit, ProposalPart};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use tracing::{debug, warn};

/// Streams being reassembled at once, from all publishers.
const MAX_STREAMS: usize = 64;
/// Streams one publisher may have open (an honest proposer streams one block per round).
const MAX_STREAMS_PER_PUBLISHER: usize = 4;
/// Bytes of open streams in all (four full blocks).
const MAX_STREAM_BYTES: usize = 4 * MAX_BLOCK_BYTES;
/// Bytes a stream may gather before its Init arrived (parts of one publisher normally arrive in order).
const MAX_HEADLESS_BYTES: usize = 2 * CHUNK;
/// Heights ahead of ours whose complete proposals are kept until we get there.
const FUTURE_HEIGHTS: u64 = 2;
/// Rounds ahead of the one in progress (or of round 0, for a height not started) a stream may be for.
const MAX_ROUNDS_AHEAD: u32 = 16;
/// Complete proposals kept for heights not reached yet.
const MAX_FUTURE: usize = 32;

#[derive(Default)]
pub(super) struct PartialStream {
    init: Option<PartInit>,
    parts: BTreeMap<u64, ProposalPart>,
    fin_seq: Option<u64>,
    bytes: usize,
    started: Option<Instant>,
}

/// A complete, signature-checked proposal for a height we have not reached.
pub(super) struct Future {
    pub init: PartInit,
    pub data: BlockData,
    pub encoded: Vec<u8>,
    pub received: Instant,
}

type StreamKey = (PeerId, StreamId);

#[derive(Default)]
pub(super) struct Inbound {
    streams: HashMap<StreamKey, PartialStream>,
    /// By (height, round, proposer): proposals for a height not reached, from validators of the current set.
    future: BTreeMap<(Height, u32, Address), Future>,
}

impl Inbound {
    /// Room for one more stream of `peer`: its own oldest goes if it is at its cap; if all are taken, the oldest
    /// stream of the publisher holding the most goes (a flooder's, never an honest proposer's first).
    fn make_room(&mut self, peer: PeerId) {
        let mut per: HashMap<PeerId, usize> = HashMap::new();
        for (p, _) in self.streams.keys() {
            *per.entry(*p).or_default() += 1;
        }
        let bytes: usize = self.streams.values().map(|s| s.bytes).sum();
        let victim = if per.get(&peer).copied().unwrap_or(0) >= MAX_STREAMS_PER_PUBLISHER {
            Some(peer)
        } else if self.streams.len() >= MAX_STREAMS || bytes > MAX_STREAM_BYTES {
            per.into_iter().max_by_key(|(_, n)| *n).map(|(p, _)| p)
        } else {
            None
        };
        if let Some(victim) = victim {
            self.drop_oldest_of(victim);
        }
    }

    /// Drops `publisher`'s oldest open stream; false if it has none.
    fn drop_oldest_of(&mut self, publisher: PeerId) -> bool {
        let oldest = self
            .streams
            .iter()
            .filter(|((p, _), _)| *p == publisher)
            .min_by_key(|(_, s)| s.started)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.streams.remove(&k).is_some())
    }

    fn bytes(&self) -> usize {
        self.streams.values().map(|s| s.bytes).sum()
    }

    /// While the open streams hold more than [`MAX_STREAM_BYTES`], drops the oldest stream of the publisher
    /// holding the most bytes.
    fn shed_bytes(&mut self) {
        while self.bytes() > MAX_STREAM_BYTES {
            let mut per: HashMap<PeerId, usize> = HashMap::new();
            for ((p, _), s) in &self.streams {
                *per.entry(*p).or_default() += s.bytes;
            }
            let Some(victim) = per.into_iter().max_by_key(|(_, b)| *b).map(|(p, _)| p) else {
                return;
            };
            if !self.drop_oldest_of(victim) {
                return;
            }
        }
    }

    /// Streams and kept proposals of `height` (decided) and below are of no use any more.
    pub(super) fn after_commit(&mut self, height: Height) {
        self.streams
            .retain(|_, s| s.init.as_ref().is_none_or(|i| i.height > height));
        self.future.retain(|(h, _, _), _| *h > height);
    }

    /// The kept proposal of `proposer` for (height, round).
    pub(super) fn take_future(&mut self, height: Height, round: u32, proposer: Address) -> Option<Future> {
        self.future.remove(&(height, round, proposer))
    }

    /// When the kept proposal of `proposer` for (height, round) came, if one is kept.
    pub(super) fn future_received(&self, height: Height, round: u32, proposer: Address) -> Option<Instant> {
        self.future.get(&(height, round, proposer)).map(|f| f.received)
    }

    fn keep_future(&mut self, f: Future) {
        let key = (f.init.height, f.init.round.as_u32().unwrap_or(0), f.init.proposer);
        if self.future.len() < MAX_FUTURE || self.future.contains_key(&key) {
            self.future.insert(key, f);
        }
    }
}

impl App {
    /// Adds one streamed part; when the stream is complete and authentic, validates the block. A stream whose
    /// Init names a proposer that may not propose for its height and round is dropped before anything else is
    /// done for it; its later parts (no Init) can hold at most [`MAX_HEADLESS_BYTES`] in one of the publisher's
    /// few stream slots. (Refusals are not remembered: most depend on the moment, such as a height too far
    /// ahead, and the same stream may rightly come again later.)
    pub(super) fn on_part(
        &mut self,
        peer: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Option<ProposedValue<MetisContext>> {
        let key = (peer, msg.stream_id.clone());
        if let StreamContent::Data(ProposalPart::Init(init)) = &msg.content {
            if let Err(reason) = self.may_propose(init) {
                debug!(
                    %peer,
                    height = init.height.0,
                    round = %init.round,
                    proposer = %init.proposer,
                    reason,
                    "proposal stream refused"
                );
                self.inbound.streams.remove(&key);
                return None;
            }
        }
        if msg.sequence > (MAX_BLOCK_BYTES / CHUNK) as u64 + 4 {
            warn!(%peer, seq = msg.sequence, "proposal stream too long, dropped");
            self.inbound.streams.remove(&key);
            return None;
        }
        if !self.inbound.streams.contains_key(&key) {
            self.inbound.make_room(peer);
        }
        let s = self.inbound.streams.entry(key.clone()).or_default();
        s.started.get_or_insert_with(Instant::now);
        match msg.content {
            StreamContent::Fin => s.fin_seq = Some(msg.sequence),
            StreamContent::Data(part) => {
                if let ProposalPart::Init(i) = &part {
                    s.init = Some(i.clone());
                }
                let len = |p: &ProposalPart| match p {
                    ProposalPart::Data(d) => d.len(),
                    _ => 0,
                };
                s.bytes = s.bytes.saturating_add(len(&part));
                // A part sent again replaces the first copy.
                if let Some(old) = s.parts.insert(msg.sequence, part) {
                    s.bytes = s.bytes.saturating_sub(len(&old));
                }
            }
        }
        let limit = if s.init.is_some() {
            MAX_BLOCK_BYTES
        } else {
            MAX_HEADLESS_BYTES
        };
        if s.bytes > limit {
            warn!(%peer, bytes = s.bytes, "proposal stream beyond its size limit, dropped");
            self.inbound.streams.remove(&key);
            return None;
        }
        let (fin_seq, parts, has_init) = (s.fin_seq, s.parts.len() as u64, s.init.is_some());
        // Streams grow after they open: the total is held on every part, not only when one opens.
        self.inbound.shed_bytes();
        if !self.inbound.streams.contains_key(&key) {
            debug!(%peer, "proposal stream dropped: open streams over their byte budget");
            return None;
        }
        let fin = fin_seq?;
        if parts != fin || !has_init {
            return None;
        }
        let s = self.inbound.streams.remove(&key)?;
        self.complete_stream(s)
    }

    /// Whether `init`'s proposer may propose for its height and round, as far as this node knows now: the
    /// scheduled proposer of that round for the height in progress; a validator of the current set for one of
    /// the next [`FUTURE_HEIGHTS`] heights (their schedule is not known yet); in a round at most
    /// [`MAX_ROUNDS_AHEAD`] past the one in progress.
    fn may_propose(&self, init: &PartInit) -> Result<(), &'static str> {
        // Before the first height starts (just after a start), the next height's set from the ledger.
        let owned;
        let (deciding, set) = match &self.set {
            Some((h, set)) => (h, set),
            None => {
                owned = (
                    self.next_height(),
                    validator_set(&self.ledger).map_err(|_| "no validator set")?,
                );
                (&owned.0, &owned.1)
            }
        };
        let round = init.round.as_u32().ok_or("no round")?;
        let current = match self.round_started {
            Some((h, r, _)) if h == *deciding => r.as_u32().unwrap_or(0),
            _ => 0,
        };
        if init.height < *deciding {
            return Err("a decided height");
        }
        if init.height.0 > deciding.0.saturating_add(FUTURE_HEIGHTS) {
            return Err("a height too far ahead");
        }
        if init.height == *deciding {
            if round > current.saturating_add(MAX_ROUNDS_AHEAD) {
                return Err("a round too far ahead");
            }
            if set.proposer(round).address != init.proposer {
                return Err("not the scheduled proposer");
            }
            return Ok(());
        }
        if round > MAX_ROUNDS_AHEAD {
            return Err("a round too far ahead");
        }
        if set.by_address(&init.proposer).is_none() {
            return Err("not a validator");
        }
        Ok(())
    }

    fn complete_stream(&mut self, s: PartialStream) -> Option<ProposedValue<MetisContext>> {
        let init = s.init?;
        #[cfg(feature = "test-faults")]
        if self
            .fault
            .is_some_and(|f| f.fault == crate::faults::Fault::MissProposals && f.at(init.height.0))
        {
            debug!(height = init.height.0, "FAULT: proposal stream dropped as if lost");
            return None;
        }
        let mut chunks = Vec::new();
        let mut sig = None;
        for (i, (_, p)) in s.parts.into_iter().enumerate() {
            match p {
                ProposalPart::Init(_) if i == 0 => {}
                ProposalPart::Data(d) if sig.is_none() && i > 0 => chunks.push(d),
                ProposalPart::Fin(f) if sig.is_none() && i > 0 => sig = Some(f),
                _ => {
                    warn!(height = init.height.0, "malformed proposal stream, dropped");
                    return None;
                }
            }
        }
        let sig = sig?;
        // Authentic: signed by the key the Init names (whether that proposer is scheduled is checked next).
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&init.proposer.0) else {
            return None;
        };
        let content = content_digest(&chunks);
        if !verify(&key, &stream_fin_bytes(&init, &content), &sig) {
            warn!(height = init.height.0, proposer = %init.proposer, "proposal stream with a bad signature, dropped");
            return None;
        }
        self.note_stream(SignedStreamRecord {
            init: init.clone(),
            content,
            signature: sig,
        });
        let bytes: Vec<u8> = chunks.concat();
        if bytes.len() != init.total_len as usize {
            return None;
        }
        // Senders gossip has not delivered yet are recovered here: CPU work, off the async workers.
        let backend = &self.backend;
        let decoded = tokio::task::block_in_place(|| {
            BlockData::decode_with(&bytes, |hashes| {
                let mempool = backend.mempool();
                hashes.iter().map(|h| mempool.get(h).cloned()).collect()
            })
        });
        let data = match decoded {
            Ok(d) => d,
            Err(e) => {
                warn!(height = init.height.0, proposer = %init.proposer, error = %e, "proposal does not decode");
                return None;
            }
        };
        if data.header.hash_slow().0 != init.value.0 {
            warn!(height = init.height.0, proposer = %init.proposer, "proposal stream names another block, dropped");
            return None;
        }
        // The height consensus is on: between Decided and Finalized that is still the decided one, and a
        // proposal for the next height (from a node that moved on first) waits until we start it.
        let next = self.set.as_ref().map(|(h, _)| *h).unwrap_or_else(|| self.next_height());
        if init.height > next {
            if init.height.0 <= next.0.saturating_add(FUTURE_HEIGHTS) {
                self.inbound.keep_future(Future {
                    init,
                    data,
                    encoded: bytes,
                    received: Instant::now(),
                });
            }
            return None;
        }
        if init.height < next {
            return None;
        }
        let (hash, validity) = self.validate(
            init.height,
            (init.round, Builder::of_proposal(init.pol_round)),
            init.proposer,
            data,
            bytes,
            (Instant::now(), Origin::Proposal),
        );
        Some(ProposedValue {
            height: init.height,
            round: init.round,
            valid_round: init.pol_round,
            proposer: init.proposer,
            value: hash,
            validity,
        })
    }

    /// Keeps the first authentic stream of the scheduled proposer for each round of the height in progress; a
    /// second one naming another block is a double proposal, and its evidence goes to the pool.
    fn note_stream(&mut self, record: SignedStreamRecord) {
        let Some((deciding, set)) = &self.set else { return };
        let init = &record.init;
        let round = init.round.as_u32().unwrap_or(0);
        if init.height != *deciding || set.proposer(round).address != init.proposer {
            return;
        }
        let key = (init.height, round);
        match self.stream_claims.get(&key) {
            None => {
                if self.stream_claims.len() < MAX_STREAM_CLAIMS {
                    self.stream_claims.insert(key, record);
                }
            }
            Some(first) if first.init.value == record.init.value => {}
            Some(first) => match Evidence::double_stream(first.clone(), record) {
                Ok(e) => {
                    self.add_evidence(e);
                }
                Err(err) => warn!(error = %err, "two streams of one slot that are no double proposal"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stream(bytes: usize, age_ms: u64) -> PartialStream {
        PartialStream {
            bytes,
            started: Instant::now().checked_sub(std::time::Duration::from_millis(age_ms)),
            ..Default::default()
        }
    }

    /// Streams that grow after opening are held to the byte budget too: the publisher holding the most loses its
    /// oldest stream first, and a small honest stream stays.
    #[test]
    fn the_byte_budget_holds_as_streams_grow() {
        // Identity multihashes: code 0, length, bytes.
        let peer = |n: u8| PeerId::from_bytes(&[0, 4, n, n, n, n]).unwrap();
        let (flooder, honest) = (peer(1), peer(2));
        let mut inbound = Inbound::default();
        let id = |n: u8| StreamId::new(Bytes::from(vec![n]));
        inbound.streams.insert((honest, id(0)), stream(1 << 20, 500));
        for n in 1..=4u8 {
            inbound
                .streams
                .insert((flooder, id(n)), stream(MAX_BLOCK_BYTES, 400 - u64::from(n)));
        }
        assert!(inbound.bytes() > MAX_STREAM_BYTES);
        inbound.shed_bytes();
        assert!(inbound.bytes() <= MAX_STREAM_BYTES);
        assert!(
            inbound.streams.contains_key(&(honest, id(0))),
            "the honest stream stays"
        );
        assert!(
            !inbound.streams.contains_key(&(flooder, id(1))),
            "the flooder's oldest goes"
        );
        assert_eq!(inbound.streams.len(), 4);
    }
}
