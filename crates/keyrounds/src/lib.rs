//! The threshold key inside the node: runs the ledger's key rounds (`metis_mpc::session`) over decided data.
//!
//! Transport: while a round runs, every precommit carries a vote extension ([`KeyExt`]) with the messages this
//! node still has to publish. Malachite checks the extension's signature (bound to the precommit's height,
//! round, value and validator, and to the content); the next block carries the commit certificate with the
//! extensions as its last commit, so the messages of height h are decided in block h + 1, with their
//! signatures, and every validator re-checks them (`verify_commit`). At the decision of each block every node
//! feeds the carried messages, in certificate order, into its round; at the round's last height the outcome is
//! the same on every node and goes into the ledger with that block.

use borsh::{BorshDeserialize, BorshSerialize};
use commonware_codec::Read;
use commonware_cryptography::ed25519;
use metis_mpc::dkg::{DkgOutput, IdentityKey};
use metis_mpc::seal::DkgSecret;
use metis_mpc::session::{KeyMsg, Me, Member, RoundConfig, RoundResult, RoundState};
use metis_mpc::Share;
use metis_pos::{KeyOutcome, KeyRound, KeyRoundKind, Ledger};
use metis_wire::WireCertificate;
use tracing::{info, warn};

pub mod scale;

pub use metis_wire::block::{extension_cap, MAX_EXTENSION_BYTES};
/// Messages per extension at most.
const MAX_MSGS: usize = 64;

/// A vote extension's content: encoded [`KeyMsg`]s.
#[derive(BorshSerialize, BorshDeserialize)]
struct KeyExt {
    msgs: Vec<Vec<u8>>,
}

/// Decodes an extension of one of `validators` precommits, bounded ([`extension_cap`]); any malformed message
/// refuses the whole extension.
pub fn decode_ext(bytes: &[u8], validators: usize) -> Result<Vec<KeyMsg>, String> {
    let cap = extension_cap(validators);
    if bytes.len() > cap {
        return Err(format!(
            "{} bytes, over the {cap} one of {validators} validators may send",
            bytes.len()
        ));
    }
    let ext: KeyExt = borsh::from_slice(bytes).map_err(|e| e.to_string())?;
    if ext.msgs.len() > MAX_MSGS {
        return Err(format!("{} messages", ext.msgs.len()));
    }
    ext.msgs
        .iter()
        .map(|m| KeyMsg::from_bytes(m).map_err(|e| e.to_string()))
        .collect()
}

/// Bytes a [`KeyExt`] spends besides its messages: the list's length, and each message's.
const EXT_LIST_OVERHEAD: usize = 4;
const EXT_MSG_OVERHEAD: usize = 4;

/// The messages (encoded) one extension carries at `height`: at most [`MAX_MSGS`] and `cap` bytes in all. A round among more than 64 dealers has more acks than one extension holds (each node acks every
/// dealer); a message leaves the outbox only once decided, a block after it was sent, so the window starts at a
/// different place at each height and every message goes out within a few heights of its phase. A message that
/// alone exceeds the byte cap is never sent ([`scale`] measures the sizes).
fn window(msgs: &[Vec<u8>], height: u64, cap: usize) -> Vec<Vec<u8>> {
    if msgs.is_empty() {
        return Vec::new();
    }
    let len = msgs.len();
    let start = usize::try_from(height.wrapping_mul(MAX_MSGS as u64) % len as u64).unwrap_or(0);
    let mut bytes = EXT_LIST_OVERHEAD;
    let mut out = Vec::new();
    for i in 0..len {
        let m = &msgs[(start + i) % len];
        let size = m.len().saturating_add(EXT_MSG_OVERHEAD);
        if out.len() == MAX_MSGS {
            break;
        }
        if bytes.saturating_add(size) > cap {
            continue;
        }
        bytes += size;
        out.push(m.clone());
    }
    out
}

fn identity(bytes: &[u8; 32]) -> Option<IdentityKey> {
    let mut c = commonware_codec::Copying(bytes);
    IdentityKey::read_cfg(&mut c, &()).ok()
}

/// What a completed round left this node.
pub struct Completed {
    pub output: DkgOutput,
    pub share: Option<Share>,
}

/// This node's secrets for key rounds (None: it only observes).
pub struct KeySecrets {
    pub identity: ed25519::PrivateKey,
    pub dkg: DkgSecret,
}

pub struct KeyEngine {
    secrets: Option<KeySecrets>,
    round: Option<RoundState>,
    /// The last completed output (the next reshare deals from it) and this node's share of it.
    output: Option<DkgOutput>,
    share: Option<Share>,
}

/// Encoding of a stored output.
pub use metis_mpc::dkg::{decode_output, encode_output};

impl KeyEngine {
    pub fn new(secrets: Option<KeySecrets>, output: Option<DkgOutput>, share: Option<Share>) -> Self {
        Self {
            secrets,
            round: None,
            output,
            share,
        }
    }

    /// The current share (for signing) and the output it belongs to.
    pub fn share(&self) -> Option<(&DkgOutput, &Share)> {
        Some((self.output.as_ref()?, self.share.as_ref()?))
    }

    /// The last completed output (public), with or without a share here.
    pub fn output(&self) -> Option<&DkgOutput> {
        self.output.as_ref()
    }

    /// The vote extension for this node's precommit at `height`, among `validators`: what of the outbox fits one
    /// extension.
    pub fn extension(&self, height: u64, validators: usize) -> Result<Vec<u8>, borsh::io::Error> {
        let outbox = match &self.round {
            Some(r) => r.outbox(),
            None => Vec::new(),
        };
        let encoded: Vec<Vec<u8>> = outbox.iter().map(KeyMsg::to_bytes).collect();
        let chosen = window(&encoded, height, extension_cap(validators));
        if chosen.len() < encoded.len() {
            info!(
                height,
                sent = chosen.len(),
                waiting = encoded.len(),
                "key messages over one extension: the rest go in the next precommits"
            );
        }
        borsh::to_vec(&KeyExt { msgs: chosen })
    }

    fn members(ledger: &Ledger, ids: &[u64]) -> Vec<Member> {
        ids.iter()
            .filter_map(|id| {
                let s = ledger.sequencer(*id)?;
                Some(Member {
                    identity: identity(&s.consensus_key.0)?,
                    dkg_key: s.dkg_key.0,
                })
            })
            .collect()
    }

    /// Makes sure the round the ledger runs is the one this node runs (after the block that opened it, on
    /// restart, while syncing).
    pub fn ensure_round(&mut self, ledger: &Ledger) {
        let Some(kr) = ledger.keys().running.clone() else {
            self.round = None;
            return;
        };
        if self.round.as_ref().is_some_and(|r| r.config().round == kr.round) {
            return;
        }
        self.round = self.start_round(ledger, &kr);
    }

    fn start_round(&self, ledger: &Ledger, kr: &KeyRound) -> Option<RoundState> {
        let previous = match kr.kind {
            KeyRoundKind::Dkg => None,
            KeyRoundKind::Reshare => self.output.clone(),
        };
        let cfg = RoundConfig {
            round: kr.round,
            dealers: Self::members(ledger, &kr.dealers),
            players: Self::members(ledger, &kr.players),
            previous,
            start: kr.start,
            deal_blocks: kr.phase_blocks,
            ack_blocks: kr.phase_blocks,
            log_blocks: kr.phase_blocks,
        };
        let me = self.secrets.as_ref().map(|s| Me {
            identity: s.identity.clone(),
            dkg: DkgSecret::from_bytes(*s.dkg.to_bytes()),
            previous_share: self.share.clone(),
        });
        let member = me.is_some();
        match RoundState::new(cfg.clone(), me) {
            Ok(r) => {
                info!(round = kr.round, kind = ?kr.kind, start = kr.start, "key round started");
                Some(r)
            }
            // This node cannot take part (e.g. its share is gone): it still follows the round's public part,
            // so its ledger records the same outcome as everyone else's.
            Err(e) if member => {
                warn!(round = kr.round, error = %e, "cannot take part in this key round; observing it");
                RoundState::new(cfg, None).ok()
            }
            Err(e) => {
                warn!(round = kr.round, error = %e, "cannot follow this key round; it will count as failed here");
                None
            }
        }
    }

    /// Takes block `height`'s carried messages (the last commit's extensions) into the running round. When
    /// `height` is the round's last, returns the outcome the ledger records with this block (the same on every
    /// node) and what this node keeps from it.
    pub fn on_block(
        &mut self,
        ledger: &Ledger,
        height: u64,
        carried: Option<&WireCertificate>,
    ) -> Option<(KeyOutcome, Option<Completed>)> {
        self.ensure_round(ledger);
        let kr = ledger.keys().running.clone()?;
        if let (Some(round), Some(cert)) = (self.round.as_mut(), carried) {
            for (addr, _, ext) in &cert.signatures {
                let (Some(ext), Some(sender)) = (ext, identity(&addr.0)) else {
                    continue;
                };
                // Checked when the block was validated (`verify_commit`); a malformed one is skipped the same
                // way on every node.
                // Its size was checked against the set's cap then; here only the loosest bound applies.
                let Ok(msgs) = decode_ext(&ext.message, 1) else {
                    continue;
                };
                for msg in msgs {
                    round.on_decided(height, &sender, &msg);
                }
            }
            round.on_height(height);
        }
        if height != kr.last_height() {
            return None;
        }
        let round = self.round.take();
        if let Some(e) = round.as_ref().and_then(|r| r.local_error()) {
            warn!(round = kr.round, error = %e, "this node has no share of the key round: its own state was bad");
        }
        let result = round.and_then(|r| r.result().cloned());
        let outcome = match result {
            Some(RoundResult::Done { output, share }) => {
                let group_key = metis_mpc::encoding::g2_to_eip2537(output.public().public());
                let o = KeyOutcome::Completed {
                    group_key: alloy_primitives::Bytes::from(group_key.to_vec()),
                    quorum: output.public().required(),
                    players: kr.players.clone(),
                };
                info!(
                    round = kr.round,
                    quorum = output.public().required(),
                    "key round completed"
                );
                self.output = Some(output.clone());
                self.share = share.clone();
                (o, Some(Completed { output, share }))
            }
            Some(RoundResult::Failed(reason)) => {
                warn!(round = kr.round, %reason, "key round failed");
                (KeyOutcome::Failed { reason }, None)
            }
            None => (
                KeyOutcome::Failed {
                    reason: "the round could not run".into(),
                },
                None,
            ),
        };
        Some(outcome)
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    /// More messages than one extension holds (acks of a round among 100): each extension stays within both caps
    /// and decodes, and two consecutive heights together send every message.
    #[test]
    fn a_big_outbox_is_sent_over_consecutive_extensions_within_the_caps() {
        let msgs: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 150]).collect();
        let mut seen = std::collections::BTreeSet::new();
        for height in 40..42u64 {
            let chosen = window(&msgs, height, MAX_EXTENSION_BYTES);
            assert!(chosen.len() <= MAX_MSGS);
            let ext = borsh::to_vec(&KeyExt { msgs: chosen.clone() }).unwrap();
            assert!(ext.len() <= MAX_EXTENSION_BYTES);
            seen.extend(chosen.iter().map(|m| m[0]));
        }
        assert_eq!(seen.len(), 100, "two heights cover all 100");
        // Big messages: the byte cap binds before the count; one too big for any extension is left out.
        let mut big: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 30 * 1024]).collect();
        big.push(vec![99; MAX_EXTENSION_BYTES]);
        let chosen = window(&big, 0, MAX_EXTENSION_BYTES);
        let ext = borsh::to_vec(&KeyExt { msgs: chosen.clone() }).unwrap();
        assert!(
            ext.len() <= MAX_EXTENSION_BYTES && chosen.len() == 8,
            "{} messages",
            chosen.len()
        );
        assert!(chosen.iter().all(|m| m[0] != 99));
        assert!(window(&[], 7, MAX_EXTENSION_BYTES).is_empty());
    }

    proptest::proptest! {
        /// A vote extension from a peer (arbitrary bytes) is refused or decodes; no panic, whatever it claims.
        #[test]
        fn any_extension_is_refused_or_decodes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8192)) {
            let _ = decode_ext(&bytes, 4);
        }
    }
}
