//! One DKG or reshare round driven by decided chain data.
//!
//! The decided chain is the broadcast channel: every message of the round ([`KeyMsg`]) reaches every node in the
//! same order at the same height, authenticated by its sender's consensus key (the transport signs it). Each
//! node runs a [`RoundState`] over that stream: the public part (which dealings, acks and logs count, and the
//! output) is the same on every node; a member also keeps its private part (its dealer polynomial, its player
//! view, its share) and produces the messages it must publish ([`RoundState::outbox`]).
//!
//! Phases, by height (all from the round's start height):
//! - `[start, deal_end)`: each dealer publishes one [`KeyMsg::Deal`]: its public commitment and, per player, the
//!   private dealing sealed to the player's registered DKG key. A player opens its own, checks it against the
//!   commitment and publishes a [`KeyMsg::Ack`].
//! - `[deal_end, ack_end)`: acks keep arriving; a dealer counts those addressed to it.
//! - at `ack_end` each dealer finalizes its signed log (acks, and reveals for players that did not ack) and
//!   publishes a [`KeyMsg::Log`] until `end`.
//! - at `end`: the logs decided so far give the output (players: with their share). Too few usable logs: the
//!   round failed, and the next one (a higher round number, as the library requires) starts over.
//!
//! A dealer's randomness is derived from its DKG secret and the round, so a restarted node that replays the
//! decided messages publishes the same dealing again rather than a second, conflicting one.

pub use crate::dkg::MAX_MEMBERS;
use crate::dkg::{dealing_aad, DkgOutput, IdentityKey, NAMESPACE};
use crate::seal::{self, DkgSecret};
use crate::{MinSig, Share};
use commonware_codec::{Copying, DecodeExt, Encode, Read};
use commonware_cryptography::bls12381::dkg::feldman_desmedt::{
    observe, Dealer, DealerPrivMsg, DealerPubMsg, FinalizeError, Info, Logs, Player, PlayerAck, Reveal, SignedDealerLog,
};
use commonware_cryptography::bls12381::primitives::sharing::Mode;
use commonware_cryptography::{ed25519, Signer as _};
use commonware_parallel::Sequential;
use commonware_utils::{ordered::Set, N3f1, TryCollect};
use rand::{rngs::StdRng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::num::NonZeroU32;

/// One sequencer in a round: its identity (consensus) key and the DKG key it registered on L1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub identity: IdentityKey,
    pub dkg_key: [u8; 32],
}

/// The public parameters of a round: the same on every node (they come from the ledger).
#[derive(Clone, Debug)]
pub struct RoundConfig {
    pub round: u64,
    pub dealers: Vec<Member>,
    pub players: Vec<Member>,
    /// The output being reshared (None: a fresh DKG).
    pub previous: Option<DkgOutput>,
    pub start: u64,
    pub deal_blocks: u64,
    pub ack_blocks: u64,
    pub log_blocks: u64,
}

impl RoundConfig {
    pub fn deal_end(&self) -> u64 {
        self.start + self.deal_blocks
    }
    pub fn ack_end(&self) -> u64 {
        self.deal_end() + self.ack_blocks
    }
    pub fn end(&self) -> u64 {
        self.ack_end() + self.log_blocks
    }
}

/// This node's secrets for a round.
pub struct Me {
    pub identity: ed25519::PrivateKey,
    pub dkg: DkgSecret,
    /// This node's share of `previous` (a reshare dealer needs it).
    pub previous_share: Option<Share>,
}

/// A message of a round, as it travels.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyMsg {
    Deal {
        round: u64,
        public: DealerPubMsg<MinSig>,
        /// Per player (by identity), the private dealing sealed to its DKG key.
        sealed: Vec<(IdentityKey, Vec<u8>)>,
    },
    Ack {
        round: u64,
        dealer: IdentityKey,
        ack: PlayerAck<IdentityKey>,
    },
    Log {
        round: u64,
        log: SignedDealerLog<MinSig, IdentityKey>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("round setup: {0}")]
    Setup(String),
    #[error("message does not decode: {0}")]
    Decode(String),
}

const TAG_DEAL: u8 = 1;
const TAG_ACK: u8 = 2;
const TAG_LOG: u8 = 3;
/// Largest sealed dealing (a scalar plus sealing overhead is far below this).
const MAX_SEALED: usize = 512;

/// Reads one commonware-encoded value from the front of `b`.
fn read<T: Read>(b: &mut &[u8], cfg: &T::Cfg) -> Result<T, SessionError> {
    let mut c = Copying(b);
    let v = T::read_cfg(&mut c, cfg).map_err(|e| SessionError::Decode(e.to_string()))?;
    *b = c.0;
    Ok(v)
}

fn max_members() -> NonZeroU32 {
    NonZeroU32::new(MAX_MEMBERS).unwrap_or(NonZeroU32::MIN)
}

impl KeyMsg {
    pub fn round(&self) -> u64 {
        match self {
            Self::Deal { round, .. } | Self::Ack { round, .. } | Self::Log { round, .. } => *round,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Deal { round, public, sealed } => {
                out.push(TAG_DEAL);
                out.extend_from_slice(&round.to_be_bytes());
                out.extend_from_slice(&public.encode());
                out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
                for (pk, s) in sealed {
                    out.extend_from_slice(&pk.encode());
                    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    out.extend_from_slice(s);
                }
            }
            Self::Ack { round, dealer, ack } => {
                out.push(TAG_ACK);
                out.extend_from_slice(&round.to_be_bytes());
                out.extend_from_slice(&dealer.encode());
                out.extend_from_slice(&ack.encode());
            }
            Self::Log { round, log } => {
                out.push(TAG_LOG);
                out.extend_from_slice(&round.to_be_bytes());
                out.extend_from_slice(&log.encode());
            }
        }
        out
    }

    /// Decodes bounded input; trailing bytes are an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionError> {
        let bad = |m: &str| SessionError::Decode(m.to_string());
        let mut b = bytes;
        let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>, SessionError> {
            if b.len() < n {
                return Err(SessionError::Decode("truncated".into()));
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Ok(h.to_vec())
        };
        let tag = take(&mut b, 1)?[0];
        let round = u64::from_be_bytes(take(&mut b, 8)?.try_into().map_err(|_| bad("round"))?);
        let msg = match tag {
            TAG_DEAL => {
                let public = read::<DealerPubMsg<MinSig>>(&mut b, &max_members())?;
                let n = u32::from_be_bytes(take(&mut b, 4)?.try_into().map_err(|_| bad("count"))?);
                if n > MAX_MEMBERS {
                    return Err(bad("too many sealed dealings"));
                }
                let mut sealed = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let pk = read::<IdentityKey>(&mut b, &())?;
                    let len = u32::from_be_bytes(take(&mut b, 4)?.try_into().map_err(|_| bad("length"))?) as usize;
                    if len > MAX_SEALED {
                        return Err(bad("sealed dealing too long"));
                    }
                    sealed.push((pk, take(&mut b, len)?));
                }
                Self::Deal { round, public, sealed }
            }
            TAG_ACK => {
                let dealer = read::<IdentityKey>(&mut b, &())?;
                let ack = read::<PlayerAck<IdentityKey>>(&mut b, &())?;
                Self::Ack { round, dealer, ack }
            }
            TAG_LOG => {
                let log = read::<SignedDealerLog<MinSig, IdentityKey>>(&mut b, &max_members())?;
                Self::Log { round, log }
            }
            _ => return Err(bad("unknown message tag")),
        };
        if !b.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(msg)
    }
}

/// How a round ended.
#[derive(Clone, Debug)]
pub enum RoundResult {
    /// The output (same on every node) and, for a player, its share.
    Done { output: DkgOutput, share: Option<Share> },
    /// Too few usable dealer logs: the key (if any) is unchanged; run the next round.
    Failed(String),
}

/// One round as this node runs it.
pub struct RoundState {
    cfg: RoundConfig,
    info: Info<MinSig, IdentityKey>,
    dealers: BTreeSet<IdentityKey>,
    me: Option<ed25519::PrivateKey>,
    my_dkg: Option<DkgSecret>,
    dealer: Option<Dealer<MinSig, ed25519::PrivateKey>>,
    player: Option<Player<MinSig, ed25519::PrivateKey>>,
    logs: Logs<MinSig, IdentityKey, N3f1>,
    /// Dealers whose Deal counted (the first one each, in the deal window).
    dealt: BTreeSet<IdentityKey>,
    logged: BTreeSet<IdentityKey>,
    /// Messages this node must publish, until each is seen decided.
    outbox: Vec<KeyMsg>,
    result: Option<RoundResult>,
    /// Why this player got no share of a round that completed (its own state was bad), for its log.
    local_error: Option<String>,
}

/// A dealer's randomness for `round`: a function of its DKG secret, so a replay deals the same polynomial.
fn dealer_rng(dkg: &DkgSecret, round: u64) -> StdRng {
    let mut h = Sha256::new();
    h.update(b"metis-seq/dkg/dealer-rng/v1");
    h.update(dkg.to_bytes().as_slice());
    h.update(round.to_be_bytes());
    StdRng::from_seed(h.finalize().into())
}

impl RoundState {
    /// Starts this node's part of a round. With `me` a dealer deals at once (its Deal is in the outbox) and a
    /// player gets ready for dealings; without it the node only observes.
    pub fn new(cfg: RoundConfig, me: Option<Me>) -> Result<Self, SessionError> {
        let set = |ms: &[Member]| -> Result<Set<IdentityKey>, SessionError> {
            ms.iter()
                .map(|m| m.identity.clone())
                .try_collect()
                .map_err(|_| SessionError::Setup("duplicate member".into()))
        };
        if cfg.dealers.len() > MAX_MEMBERS as usize || cfg.players.len() > MAX_MEMBERS as usize {
            return Err(SessionError::Setup("too many members".into()));
        }
        let info = Info::<MinSig, IdentityKey>::new::<N3f1>(
            NAMESPACE,
            cfg.round,
            cfg.previous.clone(),
            Mode::NonZeroCounter,
            Reveal::V1,
            set(&cfg.dealers)?,
            set(&cfg.players)?,
        )
        .map_err(|e| SessionError::Setup(e.to_string()))?;
        let mut s = Self {
            dealers: cfg.dealers.iter().map(|m| m.identity.clone()).collect(),
            logs: Logs::new(info.clone()),
            info,
            me: None,
            my_dkg: None,
            dealer: None,
            player: None,
            dealt: BTreeSet::new(),
            logged: BTreeSet::new(),
            outbox: Vec::new(),
            result: None,
            local_error: None,
            cfg,
        };
        let Some(me) = me else {
            return Ok(s);
        };
        let pk = me.identity.public_key();
        if s.cfg.players.iter().any(|m| m.identity == pk) {
            s.player =
                Some(Player::new(s.info.clone(), me.identity.clone()).map_err(|e| SessionError::Setup(e.to_string()))?);
        }
        if s.dealers.contains(&pk) {
            let mut rng = dealer_rng(&me.dkg, s.cfg.round);
            let (dealer, public, privs) =
                Dealer::<MinSig, _>::start::<N3f1>(&mut rng, s.info.clone(), me.identity.clone(), me.previous_share)
                    .map_err(|e| SessionError::Setup(e.to_string()))?;
            let mut sealed = Vec::with_capacity(privs.len());
            for (player, private) in privs {
                let Some(m) = s.cfg.players.iter().find(|m| m.identity == player) else {
                    continue;
                };
                let aad = dealing_aad(s.cfg.round, &pk, &player);
                let ct =
                    seal::seal(&m.dkg_key, &aad, &private.encode()).map_err(|e| SessionError::Setup(e.to_string()))?;
                sealed.push((player, ct));
            }
            s.outbox.push(KeyMsg::Deal {
                round: s.cfg.round,
                public,
                sealed,
            });
            s.dealer = Some(dealer);
        }
        s.me = Some(me.identity);
        s.my_dkg = Some(me.dkg);
        Ok(s)
    }

    pub fn config(&self) -> &RoundConfig {
        &self.cfg
    }

    pub fn result(&self) -> Option<&RoundResult> {
        self.result.as_ref()
    }

    /// Why this player has no share of a completed round (its own dealing was lost or corrupt), if so.
    pub fn local_error(&self) -> Option<&str> {
        self.local_error.as_deref()
    }

    /// What this node should publish now (each kept until seen decided).
    pub fn outbox(&self) -> Vec<KeyMsg> {
        self.outbox.clone()
    }

    /// Takes one decided message from `sender` at `height`. Out-of-window, duplicate or foreign messages are
    /// ignored (the same way on every node); the return says whether it counted.
    pub fn on_decided(&mut self, height: u64, sender: &IdentityKey, msg: &KeyMsg) -> bool {
        if self.result.is_some() || msg.round() != self.cfg.round || height < self.cfg.start {
            return false;
        }
        let mine = self.me.as_ref().is_some_and(|k| k.public_key() == *sender);
        match msg {
            KeyMsg::Deal { public, sealed, .. } => {
                if height >= self.cfg.deal_end() || !self.dealers.contains(sender) || !self.dealt.insert(sender.clone())
                {
                    return false;
                }
                if mine {
                    self.outbox.retain(|m| !matches!(m, KeyMsg::Deal { .. }));
                }
                self.open_dealing(sender, public, sealed);
                true
            }
            KeyMsg::Ack { dealer, ack, .. } => {
                if height >= self.cfg.ack_end() {
                    return false;
                }
                if mine {
                    self.outbox
                        .retain(|m| !matches!(m, KeyMsg::Ack { dealer: d, .. } if d == dealer));
                }
                let to_me = self.me.as_ref().is_some_and(|k| k.public_key() == *dealer);
                match (&mut self.dealer, to_me) {
                    (Some(d), true) => d.receive_player_ack(sender.clone(), ack.clone()).is_ok(),
                    _ => false,
                }
            }
            KeyMsg::Log { log, .. } => {
                if height < self.cfg.ack_end() || height >= self.cfg.end() || self.logged.contains(sender) {
                    return false;
                }
                if mine {
                    self.outbox.retain(|m| !matches!(m, KeyMsg::Log { .. }));
                }
                match log.clone().check(&self.info) {
                    Some((dealer, l)) if dealer == *sender => {
                        self.logged.insert(dealer.clone());
                        self.logs.record(dealer, l)
                    }
                    _ => false,
                }
            }
        }
    }

    fn open_dealing(&mut self, dealer: &IdentityKey, public: &DealerPubMsg<MinSig>, sealed: &[(IdentityKey, Vec<u8>)]) {
        let (Some(me), Some(dkg), Some(player)) = (&self.me, &self.my_dkg, &mut self.player) else {
            return;
        };
        let pk = me.public_key();
        let Some((_, ct)) = sealed.iter().find(|(p, _)| *p == pk) else {
            return;
        };
        let aad = dealing_aad(self.cfg.round, dealer, &pk);
        let Ok(opened) = seal::open(dkg, &aad, ct) else {
            return; // no ack: the dealer must reveal this share in its log
        };
        let Ok(private) = DealerPrivMsg::decode(opened.to_vec()) else {
            return;
        };
        if let Ok(Some(ack)) = player.dealer_message::<N3f1>(dealer.clone(), public.clone(), private) {
            self.outbox.push(KeyMsg::Ack {
                round: self.cfg.round,
                dealer: dealer.clone(),
                ack,
            });
        }
    }

    /// Advances to `height` (call once per decided height, after its messages): a dealer finalizes its log at
    /// `ack_end`; at `end` the round's output is computed.
    pub fn on_height(&mut self, height: u64) -> Option<&RoundResult> {
        if self.result.is_some() {
            return self.result.as_ref();
        }
        if height + 1 >= self.cfg.ack_end() {
            // Acks count only until ack_end; from then on the dealers' logs are what matters.
            self.outbox.retain(|m| !matches!(m, KeyMsg::Ack { .. }));
            if let Some(d) = self.dealer.take() {
                self.outbox.push(KeyMsg::Log {
                    round: self.cfg.round,
                    log: d.finalize::<N3f1>(),
                });
            }
        }
        if height + 1 < self.cfg.end() {
            return None;
        }
        self.outbox.clear();
        // Batch verification inside uses randomness; the outcome does not depend on it.
        let mut rng = StdRng::from_seed([0u8; 32]);
        let logs = std::mem::replace(&mut self.logs, Logs::new(self.info.clone()));
        // The outcome goes into every node's ledger, so it is what the decided logs give, the same for a player
        // and an observer, with a reason in the library's own words (its Display, which names no node).
        let observed = |rng: &mut StdRng, logs| match observe::<MinSig, IdentityKey, N3f1>(rng, logs, &Sequential) {
            Ok(output) => RoundResult::Done { output, share: None },
            Err(f) => RoundResult::Failed(f.to_string()),
        };
        let result = match self.player.take() {
            Some(p) => match p.finalize::<N3f1>(&mut rng, logs.clone(), &Sequential) {
                Ok((output, share)) => RoundResult::Done {
                    output,
                    share: Some(share),
                },
                Err(FinalizeError::Failure(f)) => RoundResult::Failed(f.to_string()),
                // This player's own state is bad (its dealing lost or corrupt): the round still has the outcome
                // an observer computes, and this node has no share of it.
                Err(FinalizeError::Error(e)) => {
                    self.local_error = Some(e.to_string());
                    observed(&mut rng, logs)
                }
            },
            None => observed(&mut rng, logs),
        };
        self.result = Some(result);
        self.result.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold;
    use commonware_math::algebra::Random;
    use std::collections::BTreeMap;

    struct Node {
        identity: ed25519::PrivateKey,
        dkg: DkgSecret,
    }

    fn nodes(n: usize, seed: u64) -> Vec<Node> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| Node {
                identity: ed25519::PrivateKey::random(&mut rng),
                dkg: DkgSecret::generate().unwrap(),
            })
            .collect()
    }

    fn me(n: &Node, previous_share: Option<Share>) -> Me {
        Me {
            identity: n.identity.clone(),
            dkg: DkgSecret::from_bytes(*n.dkg.to_bytes()),
            previous_share,
        }
    }

    fn member(n: &Node) -> Member {
        Member {
            identity: n.identity.public_key(),
            dkg_key: n.dkg.public(),
        }
    }

    /// Runs a round over a simulated chain: every height, each node's outbox goes into the "block" (through the
    /// wire encoding) unless the node is `offline`; every node then takes the block's messages in order.
    fn run(ns: &[Node], cfg: RoundConfig, shares: &BTreeMap<usize, Share>, offline: &[usize]) -> Vec<RoundResult> {
        run_observed(ns, cfg, shares, offline, false)
    }

    /// [`run`], with an observer (a node in neither set, as a jailed or departed sequencer is) whose result comes
    /// last when `observer`.
    fn run_observed(
        ns: &[Node],
        cfg: RoundConfig,
        shares: &BTreeMap<usize, Share>,
        offline: &[usize],
        observer: bool,
    ) -> Vec<RoundResult> {
        let mut states: Vec<RoundState> = ns
            .iter()
            .enumerate()
            .map(|(i, n)| RoundState::new(cfg.clone(), Some(me(n, shares.get(&i).cloned()))).unwrap())
            .collect();
        if observer {
            states.push(RoundState::new(cfg.clone(), None).unwrap());
        }
        for h in cfg.start..cfg.end() {
            let mut block = Vec::new();
            for (i, s) in states.iter().enumerate().take(ns.len()) {
                if offline.contains(&i) {
                    continue;
                }
                for m in s.outbox() {
                    block.push((ns[i].identity.public_key(), m.to_bytes()));
                }
            }
            for s in states.iter_mut() {
                for (sender, bytes) in &block {
                    let m = KeyMsg::from_bytes(bytes).unwrap();
                    s.on_decided(h, sender, &m);
                }
                s.on_height(h);
            }
        }
        states.iter().map(|s| s.result().cloned().unwrap()).collect()
    }

    fn cfg(round: u64, dealers: &[&Node], players: &[&Node], previous: Option<DkgOutput>, start: u64) -> RoundConfig {
        RoundConfig {
            round,
            dealers: dealers.iter().map(|n| member(n)).collect(),
            players: players.iter().map(|n| member(n)).collect(),
            previous,
            start,
            deal_blocks: 2,
            ack_blocks: 2,
            log_blocks: 2,
        }
    }

    #[test]
    fn dkg_then_reshare_over_the_chain() {
        let ns = nodes(5, 1);
        let four: Vec<&Node> = ns[..4].iter().collect();
        // DKG among four, with node 3 offline the whole round: the other three still succeed.
        let r = run(&ns[..4], cfg(0, &four, &four, None, 10), &BTreeMap::new(), &[3]);
        let (output, mut shares) = (None::<DkgOutput>, BTreeMap::new());
        let mut output = output;
        for (i, res) in r.iter().enumerate() {
            match res {
                RoundResult::Done { output: o, share } => {
                    assert!(output.as_ref().is_none_or(|p| p == o), "outputs agree");
                    output = Some(o.clone());
                    if let Some(s) = share {
                        shares.insert(i, s.clone());
                    }
                }
                RoundResult::Failed(e) => panic!("node {i}: {e}"),
            }
        }
        let output = output.unwrap();
        assert_eq!(output.public().required(), 3);
        let digest = [7u8; 32];
        let partials: Vec<_> = [0, 1, 2]
            .iter()
            .map(|i| threshold::sign_partial(&shares[i], &digest))
            .collect();
        let sig = threshold::aggregate(output.public(), &digest, &partials).unwrap();

        // Reshare 4 -> 5: same group key, threshold 4 of 5; the signature is the same (unique).
        let five: Vec<&Node> = ns.iter().collect();
        let r2 = run(&ns, cfg(1, &four, &five, Some(output.clone()), 20), &shares, &[]);
        let mut shares2 = BTreeMap::new();
        let mut out2 = None;
        for (i, res) in r2.iter().enumerate() {
            let RoundResult::Done { output: o, share } = res else {
                panic!("node {i} failed the reshare: {res:?}");
            };
            out2 = Some(o.clone());
            shares2.insert(i, share.clone().unwrap());
        }
        let out2 = out2.unwrap();
        assert_eq!(out2.public().public(), output.public().public(), "group key kept");
        assert_eq!(out2.public().required(), 4);
        let partials2: Vec<_> = [0, 2, 3, 4]
            .iter()
            .map(|i| threshold::sign_partial(&shares2[i], &digest))
            .collect();
        assert_eq!(threshold::aggregate(out2.public(), &digest, &partials2).unwrap(), sig);
        // An old share's partial is no use with the new sharing.
        let mixed = vec![
            partials2[0].clone(),
            partials2[1].clone(),
            partials2[2].clone(),
            threshold::sign_partial(&shares[&1], &digest),
        ];
        assert!(threshold::aggregate(out2.public(), &digest, &mixed).is_err());
    }

    #[test]
    fn too_few_dealers_fail_the_round_the_same_way_everywhere() {
        let ns = nodes(4, 2);
        let four: Vec<&Node> = ns.iter().collect();
        // The last result is an observer's: the failure goes into every node's ledger, so a player and an
        // observer must record the very same reason (the chaos suite saw a jailed sequencer's ledger diverge
        // when the player's reason was worded by a different error type).
        let r = run_observed(&ns, cfg(0, &four, &four, None, 1), &BTreeMap::new(), &[1, 2], true);
        let Some(RoundResult::Failed(reason)) = r.last() else {
            panic!("the observer: {:?}", r.last());
        };
        for (i, res) in r.iter().enumerate() {
            match res {
                RoundResult::Failed(other) => assert_eq!(other, reason, "node {i}"),
                RoundResult::Done { .. } => panic!("node {i}: {res:?}"),
            }
        }
    }

    #[test]
    fn messages_roundtrip_and_garbage_is_refused() {
        let ns = nodes(4, 3);
        let four: Vec<&Node> = ns.iter().collect();
        let s = RoundState::new(cfg(5, &four, &four, None, 1), Some(me(&ns[0], None))).unwrap();
        let deal = s.outbox().remove(0);
        let bytes = deal.to_bytes();
        assert_eq!(KeyMsg::from_bytes(&bytes).unwrap(), deal);
        let mut long = bytes.clone();
        long.push(0);
        assert!(KeyMsg::from_bytes(&long).is_err());
        assert!(KeyMsg::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(KeyMsg::from_bytes(&[9, 0, 0]).is_err());
        // The same secret deals the same polynomial again (a restarted node does not equivocate).
        let again = RoundState::new(cfg(5, &four, &four, None, 1), Some(me(&ns[0], None))).unwrap();
        let KeyMsg::Deal { public: a, .. } = &deal else {
            panic!()
        };
        let KeyMsg::Deal { public: b, .. } = &again.outbox()[0] else {
            panic!()
        };
        assert_eq!(a, b);
    }
}
