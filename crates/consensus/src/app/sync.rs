//! Sync: decided blocks served exactly as they travelled (with their carried last commit, PoS transactions and
//! evidence) and their stored certificates; synced blocks validated like proposals.

use super::validate::{Builder, Origin};
use super::{App, AppError, MAX_SYNC_BATCH, MAX_SYNC_BYTES};
use bytes::Bytes;
use malachitebft_app_channel::app::engine::host::SyncedValueOutcome;
use malachitebft_app_channel::app::types::core::Round;
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::ProposedValue;
use malachitebft_core_types::ExtendedCommitCertificate;
use metis_pos::PosTx;
use metis_storage::schema;
use metis_wire::block::{encode_block, BlockData};
use metis_wire::codec::WireCertificate;
use metis_wire::types::{Address, Height, MetisContext};
use std::time::Instant;
use tracing::{debug, warn};

impl App {
    /// Stored blocks `from..=to` (at most [`MAX_SYNC_BATCH`], and no more once [`MAX_SYNC_BYTES`] are
    /// reached), each with its certificate.
    pub(super) fn decided_values(&self, from: u64, to: u64) -> Result<Vec<RawDecidedValue<MetisContext>>, AppError> {
        let engine = self.backend.engine();
        let store = engine.store();
        let to = to
            .min(engine.head().number)
            .min(from.saturating_add(MAX_SYNC_BATCH - 1));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for h in from.max(1)..=to {
            let (Some(header), Some(txs), Some(cert), Some(last_commit)) = (
                store.header(h)?,
                store.transactions(h)?,
                store.get::<WireCertificate>(&schema::cert(h))?,
                store.get::<Option<WireCertificate>>(&schema::carried(h))?,
            ) else {
                break;
            };
            // Stored only for blocks that carried any: absent means none.
            let pos_txs: Vec<PosTx> = store.get(&schema::pos_txs(h))?.unwrap_or_default();
            let evidence = super::evidence::stored_evidence(store, h)?;
            let data = encode_block(
                &header,
                txs.iter().map(|(_, e)| e),
                &pos_txs,
                &evidence,
                last_commit.as_ref(),
            )?;
            bytes = bytes.saturating_add(data.len());
            out.push(RawDecidedValue::new(
                Bytes::from(data),
                ExtendedCommitCertificate::from(cert),
            ));
            if bytes >= MAX_SYNC_BYTES {
                break;
            }
        }
        Ok(out)
    }

    /// A block a peer synced to this node: checked like a proposal. A block carrying L1 events this node's
    /// view has not read yet (or never will, if its L1 is not the others') is no fault of the peer: sync asks
    /// again later.
    pub(super) fn synced_value(
        &mut self,
        height: Height,
        round: Round,
        proposer: Address,
        bytes: &Bytes,
    ) -> SyncedValueOutcome<MetisContext> {
        match BlockData::decode(bytes) {
            Err(e) => {
                warn!(height = height.0, error = %e, "synced value does not decode");
                SyncedValueOutcome::PeerFault
            }
            Ok(data) if height != self.next_height() => {
                debug!(
                    height = height.0,
                    number = data.header.number,
                    "synced value is not for the next height"
                );
                SyncedValueOutcome::LocalTransientError
            }
            Ok(data) if !self.l1_view_has(&data.pos_txs) => {
                debug!(
                    height = height.0,
                    "synced block carries L1 events this node has not read yet"
                );
                SyncedValueOutcome::LocalTransientError
            }
            Ok(data) => {
                let (hash, validity) = self.validate(
                    height,
                    (round, Builder::UpTo(round)),
                    proposer,
                    data,
                    bytes.to_vec(),
                    (Instant::now(), Origin::Synced),
                );
                SyncedValueOutcome::Verdict(ProposedValue {
                    height,
                    round,
                    valid_round: Round::Nil,
                    proposer,
                    value: hash,
                    validity,
                })
            }
        }
    }
}
