//! The threshold key's life-cycle as the ledger records it: which round (DKG or reshare) runs, among whom and
//! when, and the key epochs that came out of them. The cryptography runs outside (`metis_mpc::session`, fed with
//! the same decided messages on every node); the ledger only opens rounds and takes their outcomes, so every
//! node agrees on who holds the key and from which height.

use crate::types::SequencerId;
use alloy_primitives::{keccak256, Bytes, B256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Blocks per phase of a round (deals, acks, logs), unless the genesis says otherwise.
pub const DEFAULT_PHASE_BLOCKS: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum KeyRoundKind {
    /// A fresh key among the players (no key yet).
    Dkg,
    /// The holders of the current key deal it to a new set; the group key stays.
    Reshare,
}

/// A round the ledger opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct KeyRound {
    /// Strictly increasing over all rounds, failed ones included (the library requires it).
    pub round: u64,
    pub kind: KeyRoundKind,
    pub dealers: Vec<SequencerId>,
    pub players: Vec<SequencerId>,
    /// First height whose decided messages count.
    pub start: u64,
    pub phase_blocks: u64,
}

impl KeyRound {
    /// Bytes the ledger's state hash covers (fixed-width, length-prefixed: cannot fail).
    fn hash_input(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.round.to_be_bytes());
        out.push(match self.kind {
            KeyRoundKind::Dkg => 0,
            KeyRoundKind::Reshare => 1,
        });
        for ids in [&self.dealers, &self.players] {
            out.extend_from_slice(&(ids.len() as u64).to_be_bytes());
            for id in ids {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.phase_blocks.to_be_bytes());
    }

    /// The last height of the round; its outcome is taken with that block.
    pub fn last_height(&self) -> u64 {
        self.start + 3 * self.phase_blocks - 1
    }
}

/// A key as a set of members holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct KeyEpoch {
    pub round: u64,
    /// The group public key (EIP-2537 G2 encoding).
    pub group_key: Bytes,
    /// Partial signatures needed (more than 2/3 of the members).
    pub quorum: u32,
    pub members: Vec<SequencerId>,
    /// Height from which this sharing signs (the previous one signs until then).
    pub since: u64,
}

/// What a round produced, as every node computed it from the decided messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum KeyOutcome {
    Completed {
        group_key: Bytes,
        quorum: u32,
        players: Vec<SequencerId>,
    },
    Failed {
        reason: String,
    },
}

/// One line of the key history: a round and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct KeyRecord {
    pub round: KeyRound,
    pub outcome: KeyOutcome,
    /// Height whose block ended the round.
    pub height: u64,
}

/// The key part of the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct KeyState {
    pub current: Option<KeyEpoch>,
    pub running: Option<KeyRound>,
    pub next_round: u64,
    pub history: Vec<KeyRecord>,
    /// keccak chain over the history, for the state hash.
    pub acc: B256,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no key round is running")]
    NoRound,
    #[error("key round {round} ends at height {end}, not {height}")]
    WrongHeight { round: u64, end: u64, height: u64 },
    #[error("cannot encode the key round's record")]
    Encode,
}

impl KeyState {
    /// Opens the round the set needs, if any: a DKG when there is no key, a reshare when the validators are not
    /// the key's members. At most one round runs at a time.
    pub(crate) fn maybe_open(&mut self, validators: &[SequencerId], next_height: u64, phase_blocks: u64) {
        if self.running.is_some() || validators.is_empty() {
            return;
        }
        let (kind, dealers) = match &self.current {
            None => (KeyRoundKind::Dkg, validators.to_vec()),
            Some(k) if k.members != validators => (KeyRoundKind::Reshare, k.members.clone()),
            Some(_) => return,
        };
        self.running = Some(KeyRound {
            round: self.next_round,
            kind,
            dealers,
            players: validators.to_vec(),
            start: next_height,
            phase_blocks: phase_blocks.max(1),
        });
        self.next_round += 1;
    }

    /// Takes the outcome of the running round with the block at `height` (its last height). A reshare that
    /// produced another group key is refused as a failure: the key on L1 must not change.
    pub(crate) fn finish(&mut self, height: u64, outcome: KeyOutcome) -> Result<(), KeyError> {
        let round = self.running.take().ok_or(KeyError::NoRound)?;
        if round.last_height() != height {
            let end = round.last_height();
            let r = round.round;
            self.running = Some(round);
            return Err(KeyError::WrongHeight { round: r, end, height });
        }
        let outcome = match (outcome, &self.current, round.kind) {
            (KeyOutcome::Completed { group_key, .. }, Some(k), KeyRoundKind::Reshare) if group_key != k.group_key => {
                KeyOutcome::Failed {
                    reason: "reshare produced another group key".into(),
                }
            }
            (o, _, _) => o,
        };
        if let KeyOutcome::Completed {
            group_key,
            quorum,
            players,
        } = &outcome
        {
            self.current = Some(KeyEpoch {
                round: round.round,
                group_key: group_key.clone(),
                quorum: *quorum,
                members: players.clone(),
                since: height + 1,
            });
        }
        let record = KeyRecord { round, outcome, height };
        let mut buf = self.acc.to_vec();
        buf.extend_from_slice(&borsh::to_vec(&record).map_err(|_| KeyError::Encode)?);
        self.acc = keccak256(buf);
        self.history.push(record);
        Ok(())
    }

    /// A round whose last height passed without an outcome (should not happen) fails, so the next one can run.
    pub(crate) fn expire(&mut self, height: u64) {
        if self.running.as_ref().is_some_and(|r| r.last_height() < height) {
            let end = self.running.as_ref().map(|r| r.last_height()).unwrap_or(height);
            let _ = self.finish(
                end,
                KeyOutcome::Failed {
                    reason: "no outcome was recorded".into(),
                },
            );
        }
    }

    /// Bytes the ledger's state hash covers.
    pub(crate) fn hash_input(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.acc.as_slice());
        out.extend_from_slice(&self.next_round.to_be_bytes());
        match &self.running {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                r.hash_input(out);
            }
        }
    }
}
