//! Reassembly of a peer's proposal stream: bounded, authenticated by the proposer's signature over the whole
//! stream, then handed to validation (or kept for a height this node has not reached).

use super::validate::Origin;
use super::{App, Future, PartialStream, CHUNK, FUTURE_HEIGHTS, MAX_STREAMS, MAX_STREAM_CLAIMS};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamMessage};
use malachitebft_app_channel::app::types::{PeerId, ProposedValue};
use metis_wire::block::{BlockData, MAX_BLOCK_BYTES};
use metis_wire::evidence::{Evidence, SignedStreamRecord};
use metis_wire::signing::{content_digest, stream_fin_bytes, verify};
use metis_wire::types::{MetisContext, ProposalPart};
use std::time::Instant;
use tracing::warn;

impl App {
    /// Adds one streamed part; when the stream is complete and authentic, validates the block.
    pub(super) fn on_part(
        &mut self,
        peer: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Option<ProposedValue<MetisContext>> {
        let key = (peer, msg.stream_id.clone());
        if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAMS {
            let oldest = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.streams.remove(&k);
            }
        }
        let s = self.streams.entry(key.clone()).or_default();
        s.started.get_or_insert_with(Instant::now);
        if msg.sequence > (MAX_BLOCK_BYTES / CHUNK) as u64 + 4 {
            warn!(%peer, seq = msg.sequence, "proposal stream too long, dropped");
            self.streams.remove(&key);
            return None;
        }
        match msg.content {
            StreamContent::Fin => s.fin_seq = Some(msg.sequence),
            StreamContent::Data(part) => {
                if let ProposalPart::Data(d) = &part {
                    s.bytes += d.len();
                }
                if let ProposalPart::Init(i) = &part {
                    s.init = Some(i.clone());
                }
                s.parts.insert(msg.sequence, part);
            }
        }
        if s.bytes > MAX_BLOCK_BYTES {
            warn!(%peer, "proposal stream exceeds the block size limit, dropped");
            self.streams.remove(&key);
            return None;
        }
        let fin = s.fin_seq?;
        if s.parts.len() as u64 != fin || s.init.is_none() {
            return None;
        }
        let s = self.streams.remove(&key)?;
        self.complete_stream(s)
    }

    fn complete_stream(&mut self, s: PartialStream) -> Option<ProposedValue<MetisContext>> {
        let init = s.init?;
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
            if init.height.0 <= next.0 + FUTURE_HEIGHTS {
                let r = init.round.as_u32().unwrap_or(0);
                self.future.insert(
                    (init.height, r),
                    Future {
                        init,
                        data,
                        encoded: bytes,
                        received: Instant::now(),
                    },
                );
            }
            return None;
        }
        if init.height < next {
            return None;
        }
        let (hash, validity) = self.validate(
            init.height,
            init.round,
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
