//! This node's proposals: building a block on the head, and the signed stream that carries it.

use super::validate::{Builder, Origin};
use super::{now_secs, App, AppError, Candidate, CHUNK};
use alloy_primitives::Bytes as ABytes;
use bytes::Bytes;
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::{Round, Validity};
use malachitebft_app_channel::app::types::ProposedValue;
use metis_wire::block::{commit_digest, encode_block, extra_data, tx_room, MAX_POS_TXS};
use metis_wire::signing::stream_digest;
use metis_wire::types::{Address, BlockHash, Height, MetisContext, PartInit, ProposalPart};
use std::time::Instant;
use tracing::info;

impl App {
    pub(super) fn values_for_round(&mut self, height: Height, round: Round) -> Vec<ProposedValue<MetisContext>> {
        let mut out: Vec<_> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.round == round && c.executed.header.number == height.0)
            .map(|(h, c)| ProposedValue {
                height,
                round,
                valid_round: Round::Nil,
                proposer: c.proposer,
                value: *h,
                validity: c.validity,
            })
            .collect();
        // Proposals that arrived before we reached this height are checked now.
        let r = round.as_u32().unwrap_or(0);
        let scheduled = self.set.as_ref().map(|(_, set)| set.proposer(r).address);
        if let Some(f) = scheduled.and_then(|p| self.inbound.take_future(height, r, p)) {
            let (hash, validity) = self.validate(
                height,
                (round, Builder::of_proposal(f.init.pol_round)),
                f.init.proposer,
                f.data,
                f.encoded,
                (f.received, Origin::Proposal),
            );
            out.push(ProposedValue {
                height,
                round,
                valid_round: f.init.pol_round,
                proposer: f.init.proposer,
                value: hash,
                validity,
            });
        }
        out
    }

    /// Builds this node's proposal for (height, round) and the parts that carry it. A block this node already
    /// proposed for the same height and round (asked again after a restart, its WAL replayed) is proposed
    /// again as it was: a second, different block would be a double proposal, and this node would be slashed.
    pub(super) fn propose(
        &mut self,
        height: Height,
        round: Round,
    ) -> Result<(BlockHash, Vec<StreamMessage<ProposalPart>>), AppError> {
        if let Some(again) = self.own_proposal(height, round) {
            return Ok(again);
        }
        let started = Instant::now();
        let beneficiary = self
            .ledger
            .sequencers()
            .find(|s| s.consensus_key.0 == self.address.0)
            .map(|s| s.signer)
            .ok_or(AppError::NotASequencer)?;
        let pos_txs = self.l1.includable(self.ledger.last_l1(), self.l1_margin, MAX_POS_TXS);
        let (evidence, misbehaviour) = self.includable_evidence();
        #[cfg(feature = "test-faults")]
        let last_commit = crate::faults::censor(
            self.fault,
            height.0,
            self.last_commit.as_ref(),
            self.head_set.as_ref(),
            self.address,
        );
        #[cfg(not(feature = "test-faults"))]
        let last_commit = self.last_commit.clone();
        let ctx = {
            let engine = self.backend.engine();
            let extra = extra_data(self.ledger.state_hash(), &pos_txs, &evidence)?;
            let mut ctx = engine.next_context(now_secs(), beneficiary);
            ctx.extra_data = ABytes::from(extra);
            ctx.prevrandao = commit_digest(height.0, engine.head_hash(), last_commit.as_ref());
            ctx
        };
        // Building and re-executing blocks is CPU work: block_in_place lets the runtime move the network and
        // RPC tasks to other workers meanwhile.
        // Validators refuse encoded blocks above MAX_BLOCK_BYTES: the transactions get what the rest leaves.
        let max_tx_bytes = tx_room(last_commit.as_ref());
        #[allow(unused_mut)]
        let mut executed = tokio::task::block_in_place(|| self.backend.build_block(ctx, max_tx_bytes));
        #[cfg(feature = "test-faults")]
        let foreign = crate::faults::apply(self.fault, &mut executed, self.backend.engine().spec().chain_id);
        #[cfg(not(feature = "test-faults"))]
        let foreign: Option<metis_execution::RecoveredTx> = None;
        let hash = BlockHash(executed.hash.0);
        let txs = executed.transactions.iter().chain(&foreign).map(|t| &t.envelope);
        let bytes = encode_block(&executed.header, txs, &pos_txs, &evidence, last_commit.as_ref())?;
        info!(
            round = %round,
            txs = executed.transactions.len(),
            pos_txs = pos_txs.len(),
            evidence = evidence.len(),
            gas_used = executed.header.gas_used,
            bytes = bytes.len(),
            build_ms = started.elapsed().as_millis() as u64,
            "proposing block {hash}"
        );
        let parts = self.stream_parts(self.own_init(height, round, Round::Nil, hash), &bytes);
        let c = Candidate {
            executed,
            pos_txs,
            evidence,
            misbehaviour,
            last_commit,
            encoded: bytes,
            round,
            proposer: self.address,
            validity: Validity::Valid,
            seen: started,
        };
        self.keep(height, hash, c)?;
        Ok((hash, parts))
    }

    /// This node's own kept proposal for (height, round), streamed again.
    fn own_proposal(&self, height: Height, round: Round) -> Option<(BlockHash, Vec<StreamMessage<ProposalPart>>)> {
        let (hash, c) = self
            .candidates
            .iter()
            .find(|(_, c)| c.proposer == self.address && c.round == round && c.executed.header.number == height.0)?;
        info!(round = %round, "proposing again the block this node already proposed for this round: {hash}");
        Some((
            *hash,
            self.stream_parts(self.own_init(height, round, Round::Nil, *hash), &c.encoded),
        ))
    }

    /// The Init part of a stream of this node's (its length is filled in by [`App::stream_parts`]).
    fn own_init(&self, height: Height, round: Round, pol_round: Round, value: BlockHash) -> PartInit {
        PartInit {
            height,
            round,
            pol_round,
            proposer: self.address,
            value,
            total_len: 0,
        }
    }

    pub(super) fn stream_parts(&self, mut init: PartInit, bytes: &[u8]) -> Vec<StreamMessage<ProposalPart>> {
        init.total_len = bytes.len() as u32;
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(|c| c.to_vec()).collect();
        let sig = self.signer.sign_bytes(&stream_digest(&init, &chunks));
        let mut id = Vec::with_capacity(44);
        id.extend_from_slice(&init.height.0.to_be_bytes());
        id.extend_from_slice(&init.round.as_i64().to_be_bytes());
        id.extend_from_slice(&self.address.0[..8]);
        let stream_id = StreamId::new(Bytes::from(id));
        let mut out = Vec::with_capacity(chunks.len() + 3);
        let mut seq = 0u64;
        let mut push = |content| {
            out.push(StreamMessage::new(stream_id.clone(), seq, content));
            seq += 1;
        };
        push(StreamContent::Data(ProposalPart::Init(init)));
        for c in chunks {
            push(StreamContent::Data(ProposalPart::Data(c)));
        }
        push(StreamContent::Data(ProposalPart::Fin(sig)));
        push(StreamContent::Fin);
        out
    }

    /// The parts of this node's own proposal `value_id`, streamed again for a later round.
    pub(super) fn restream(
        &self,
        height: Height,
        round: Round,
        valid_round: Round,
        address: Address,
        value_id: BlockHash,
    ) -> Vec<StreamMessage<ProposalPart>> {
        if address != self.address {
            return Vec::new();
        }
        let Some(c) = self.candidates.get(&value_id) else {
            return Vec::new();
        };
        self.stream_parts(self.own_init(height, round, valid_round, value_id), &c.encoded)
    }
}
