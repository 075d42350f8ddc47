//! Distributed key generation and resharing of the pool's threshold key: commonware-cryptography's
//! Feldman/Desmedt protocol in the MinSig variant (what the contracts verify), with every private dealing sealed
//! to the player's registered DKG key ([`crate::seal`]).
//!
//! [`run_local_round`] runs one whole round in one process (every dealer, every player). Tests and benchmarks use
//! it; the node runs the same steps with the messages carried by decided PoS transactions.

use crate::seal::{self, DkgSecret, SealError};
use crate::{MinSig, Share};
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::bls12381::dkg::feldman_desmedt::{
    Dealer, DealerPrivMsg, Info, Logs, Output, Player, Reveal,
};
use commonware_cryptography::bls12381::primitives::sharing::Mode;
use commonware_cryptography::{ed25519, Signer as _};
use commonware_parallel::Sequential;
use commonware_utils::{ordered::Set, N3f1, TryCollect};
use rand_core::CryptoRng;

/// Namespace of every DKG transcript of this project.
pub const NAMESPACE: &[u8] = b"metis-seq/dkg";

/// Largest number of members a round accepts (bounds every decoded message).
pub const MAX_MEMBERS: u32 = 256;

/// A participant's identity (its consensus key signs acks and dealer logs).
pub type IdentityKey = ed25519::PublicKey;
/// The public result of a round: the public polynomial (group key) and who took part.
pub type DkgOutput = Output<MinSig, IdentityKey>;

/// A round's public output in the library's own encoding (what the node stores and the PoS API serves).
pub fn encode_output(o: &DkgOutput) -> Vec<u8> {
    o.encode().to_vec()
}

/// Reads [`encode_output`]'s bytes, for at most [`MAX_MEMBERS`] members.
pub fn decode_output(b: &[u8]) -> Option<DkgOutput> {
    use commonware_codec::Read;
    let mut c = commonware_codec::Copying(b);
    let cfg = (
        std::num::NonZeroU32::new(MAX_MEMBERS).unwrap_or(std::num::NonZeroU32::MIN),
        // The rounds use Mode::NonZeroCounter, which version 0 covers.
        commonware_cryptography::bls12381::primitives::sharing::ModeVersion::v0(),
    );
    DkgOutput::read_cfg(&mut c, &cfg).ok()
}
/// Each player's share after a round, by identity.
pub type Shares = Vec<(IdentityKey, Share)>;

/// One sequencer in a DKG: its identity key and its DKG (sealing) key.
pub struct Participant {
    pub identity: ed25519::PrivateKey,
    pub dkg: DkgSecret,
}

#[derive(Debug, thiserror::Error)]
pub enum DkgError {
    #[error("round setup: {0}")]
    Setup(String),
    #[error("dealer: {0}")]
    Dealer(String),
    #[error("dealing from {dealer:?} to {player:?}: {reason}")]
    Dealing {
        dealer: String,
        player: String,
        reason: String,
    },
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
    #[error("finalize: {0}")]
    Finalize(String),
    #[error("players computed different outputs")]
    Diverged,
}

/// Associated data binding a sealed dealing to its round, dealer and player.
pub fn dealing_aad(round: u64, dealer: &IdentityKey, player: &IdentityKey) -> Vec<u8> {
    [
        round.to_be_bytes().as_slice(),
        dealer.encode().as_ref(),
        player.encode().as_ref(),
    ]
    .concat()
}

/// Runs one round among `dealers` and `players`: a fresh DKG when `previous` is `None`, otherwise a reshare of
/// the previous output (dealers must hold previous shares; the group key is kept). Round numbers must strictly
/// increase across rounds of one group, failed ones included.
pub fn run_local_round(
    rng: &mut impl CryptoRng,
    round: u64,
    previous: Option<(&DkgOutput, &Shares)>,
    dealers: &[&Participant],
    players: &[&Participant],
) -> Result<(DkgOutput, Shares), DkgError> {
    let dealer_set: Set<IdentityKey> = dealers
        .iter()
        .map(|d| d.identity.public_key())
        .try_collect()
        .map_err(|_| DkgError::Setup("duplicate dealer".into()))?;
    let player_set: Set<IdentityKey> = players
        .iter()
        .map(|p| p.identity.public_key())
        .try_collect()
        .map_err(|_| DkgError::Setup("duplicate player".into()))?;
    let info = Info::<MinSig, IdentityKey>::new::<N3f1>(
        NAMESPACE,
        round,
        previous.map(|(o, _)| o.clone()),
        Mode::NonZeroCounter,
        Reveal::V1,
        dealer_set,
        player_set,
    )
    .map_err(|e| DkgError::Setup(e.to_string()))?;

    let mut states = players
        .iter()
        .map(|p| Player::<MinSig, _>::new(info.clone(), p.identity.clone()).map_err(|e| DkgError::Setup(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut logs = Logs::<MinSig, IdentityKey, N3f1>::new(info.clone());
    for d in dealers {
        let me = d.identity.public_key();
        let share = previous.and_then(|(_, shares)| shares.iter().find(|(pk, _)| *pk == me).map(|(_, s)| s.clone()));
        let (mut dealer, public_msg, private_msgs) =
            Dealer::<MinSig, _>::start::<N3f1>(&mut *rng, info.clone(), d.identity.clone(), share)
                .map_err(|e| DkgError::Dealer(e.to_string()))?;
        for (player_pk, private_msg) in private_msgs {
            let fail = |reason: String| DkgError::Dealing {
                dealer: format!("{me:?}"),
                player: format!("{player_pk:?}"),
                reason,
            };
            let i = players
                .iter()
                .position(|p| p.identity.public_key() == player_pk)
                .ok_or_else(|| fail("unknown player".into()))?;
            let aad = dealing_aad(round, &me, &player_pk);
            let sealed = seal::seal(&players[i].dkg.public(), &aad, &private_msg.encode())?;
            let opened = seal::open(&players[i].dkg, &aad, &sealed)?;
            let private_msg = DealerPrivMsg::decode(opened.to_vec()).map_err(|e| fail(e.to_string()))?;
            let ack = states[i]
                .dealer_message::<N3f1>(me.clone(), public_msg.clone(), private_msg)
                .map_err(|e| fail(format!("{e:?}")))?
                .ok_or_else(|| fail("duplicate dealing".into()))?;
            dealer
                .receive_player_ack(player_pk.clone(), ack)
                .map_err(|e| fail(format!("{e:?}")))?;
        }
        let signed = dealer.finalize::<N3f1>();
        let (pk, log) = signed
            .check(&info)
            .ok_or_else(|| DkgError::Dealer("own log does not verify".into()))?;
        logs.record(pk, log);
    }
    let mut output: Option<DkgOutput> = None;
    let mut shares = Vec::with_capacity(players.len());
    for (p, state) in players.iter().zip(states) {
        let (o, share) = state
            .finalize::<N3f1>(&mut *rng, logs.clone(), &Sequential)
            .map_err(|e| DkgError::Finalize(format!("{e:?}")))?;
        if output.as_ref().is_some_and(|prev| *prev != o) {
            return Err(DkgError::Diverged);
        }
        output = Some(o);
        shares.push((p.identity.public_key(), share));
    }
    output
        .map(|o| (o, shares))
        .ok_or_else(|| DkgError::Setup("no players".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold;
    use commonware_math::algebra::Random;
    use rand::{rngs::StdRng, SeedableRng};

    fn participants(n: usize, rng: &mut StdRng) -> Vec<Participant> {
        (0..n)
            .map(|_| Participant {
                identity: ed25519::PrivateKey::random(&mut *rng),
                dkg: DkgSecret::generate().unwrap(),
            })
            .collect()
    }

    #[test]
    fn dkg_reshare_keeps_key_and_old_shares_stop_counting() {
        let mut rng = StdRng::seed_from_u64(9);
        let ps = participants(6, &mut rng);
        let four: Vec<&Participant> = ps[..4].iter().collect();
        let (out0, shares0) = run_local_round(&mut rng, 0, None, &four, &four).unwrap();
        assert_eq!(out0.public().required(), 3);
        let digest = [3u8; 32];
        let partials: Vec<_> = shares0
            .iter()
            .map(|(_, s)| threshold::sign_partial(s, &digest))
            .collect();
        let sig = threshold::aggregate(out0.public(), &digest, &partials[1..]).unwrap();

        // Reshare to six: same key; the new quorum is 5.
        let six: Vec<&Participant> = ps.iter().collect();
        let (out1, shares1) = run_local_round(&mut rng, 1, Some((&out0, &shares0)), &four, &six).unwrap();
        assert_eq!(out1.public().public(), out0.public().public());
        assert_eq!(out1.public().required(), 5);
        let partials1: Vec<_> = shares1
            .iter()
            .map(|(_, s)| threshold::sign_partial(s, &digest))
            .collect();
        let sig1 = threshold::aggregate(out1.public(), &digest, &partials1[..5]).unwrap();
        assert_eq!(sig, sig1, "a BLS threshold signature is unique for the key and message");
        assert!(
            threshold::aggregate(out1.public(), &digest, &partials1[..4]).is_err(),
            "4 of 6 is not enough"
        );

        // Shrink back to four, dealt by three of the six (a quorum of the previous output is five: refused).
        let three: Vec<&Participant> = ps[..3].iter().collect();
        assert!(run_local_round(&mut rng, 2, Some((&out1, &shares1)), &three, &four).is_err());
        let five: Vec<&Participant> = ps[1..].iter().collect();
        let (out2, _) = run_local_round(&mut rng, 3, Some((&out1, &shares1)), &five, &four).unwrap();
        assert_eq!(out2.public().public(), out0.public().public());
    }
}
