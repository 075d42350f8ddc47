//! A key round among `n` sequencers in one process, carried the way the chain carries it: every height each node
//! puts the window of its outbox that fits one vote extension ([`window`], the same code the node runs) into its
//! precommit, the next block carries every extension, and every node decodes them ([`decode_ext`]) and feeds
//! them into its round. What it measures is what decides whether a size works: each message's size, each
//! extension's against the caps, the extensions one block carries, and each node's compute.
//!
//! All `n` nodes sign every certificate here (the best case); a round that needs more heights than its phases
//! give fails the same way it would on the chain.

use crate::{decode_ext, extension_cap, window, KeyExt, MAX_MSGS};
use commonware_cryptography::{ed25519, Signer as _};
use commonware_math::algebra::Random as _;
use metis_mpc::dkg::DkgOutput;
use metis_mpc::seal::DkgSecret;
use metis_mpc::session::{KeyMsg, Me, Member, RoundConfig, RoundResult, RoundState};
use metis_mpc::Share;
use rand::{rngs::StdRng, RngExt as _, SeedableRng};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("round setup: {0}")]
    Setup(String),
    #[error("height {height}: {what}")]
    Cap { height: u64, what: String },
    #[error("encoding an extension: {0}")]
    Encode(#[from] borsh::io::Error),
    #[error("the {0} round failed: {1}")]
    Failed(&'static str, String),
    #[error("the nodes disagree on the {0} round's output")]
    Disagree(&'static str),
}

/// What one round among `dealers` -> `players` cost.
#[derive(Clone, Debug, Default)]
pub struct RoundFigures {
    pub dealers: usize,
    pub players: usize,
    pub quorum: u32,
    /// Heights from the round's start to its last (3 phases of `phase_blocks`).
    pub heights: u64,
    pub deal_bytes: usize,
    pub ack_bytes: usize,
    pub log_bytes: usize,
    /// The largest extension (encoded) and the most messages in one.
    pub ext_bytes: usize,
    pub ext_msgs: usize,
    /// The largest sum of all nodes' extensions at one height (what the next block's last commit carries).
    pub block_ext_bytes: usize,
    /// Heights at which some node had more in its outbox than one extension carries.
    pub spilled_heights: u64,
    /// The slowest dealer's dealing (polynomial, commitment, sealing to every player).
    pub deal_compute: Duration,
    /// One node's whole compute over the round (dealing, encoding its extensions, decoding and feeding every
    /// block's messages, the output): the slowest node's, and the median.
    pub node_compute_max: Duration,
    pub node_compute_p50: Duration,
    /// The most one node spent on one block's messages (the node does it when it commits the block).
    pub height_compute_max: Duration,
}

struct Node {
    identity: ed25519::PrivateKey,
    dkg: DkgSecret,
}

impl Node {
    fn member(&self) -> Member {
        Member {
            identity: self.identity.public_key(),
            dkg_key: self.dkg.public(),
        }
    }
}

fn nodes(n: usize, seed: u64) -> Vec<Node> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| Node {
            identity: ed25519::PrivateKey::random(&mut rng),
            dkg: DkgSecret::from_bytes(rng.random()),
        })
        .collect()
}

/// A DKG among `n`, then a reshare to the `n - 1` left after one leaves (the same group key), with `phase_blocks`
/// heights per phase.
pub fn dkg_then_reshare(n: usize, phase_blocks: u64, seed: u64) -> Result<[RoundFigures; 2], ScaleError> {
    let ns = nodes(n, seed);
    let all: Vec<usize> = (0..n).collect();
    let cfg = |round: u64, dealers: &[usize], players: &[usize], previous: Option<DkgOutput>| RoundConfig {
        round,
        dealers: dealers.iter().map(|i| ns[*i].member()).collect(),
        players: players.iter().map(|i| ns[*i].member()).collect(),
        previous,
        start: 10,
        deal_blocks: phase_blocks,
        ack_blocks: phase_blocks,
        log_blocks: phase_blocks,
    };
    let (dkg, output, shares) = run(&ns, cfg(0, &all, &all, None), &[], "DKG")?;
    // The last sequencer leaves: every old one deals from its share, the rest are players.
    let stay: Vec<usize> = (0..n.saturating_sub(1)).collect();
    let (reshare, out2, _) = run(&ns, cfg(1, &all, &stay, Some(output.clone())), &shares, "reshare")?;
    if out2.public().public() != output.public().public() {
        return Err(ScaleError::Disagree("reshare (group key changed)"));
    }
    Ok([dkg, reshare])
}

type Outcome = (RoundFigures, DkgOutput, Vec<Option<Share>>);

fn run(ns: &[Node], cfg: RoundConfig, shares: &[Option<Share>], name: &'static str) -> Result<Outcome, ScaleError> {
    let n = ns.len();
    let validators = n;
    let cap = extension_cap(validators);
    let mut f = RoundFigures {
        dealers: cfg.dealers.len(),
        players: cfg.players.len(),
        heights: cfg.end() - cfg.start,
        ..Default::default()
    };
    let mut compute = vec![Duration::ZERO; n];
    let mut states = Vec::with_capacity(n);
    for (i, node) in ns.iter().enumerate() {
        let t = Instant::now();
        let me = Me {
            identity: node.identity.clone(),
            dkg: DkgSecret::from_bytes(*node.dkg.to_bytes()),
            previous_share: shares.get(i).cloned().flatten(),
        };
        let s = RoundState::new(cfg.clone(), Some(me)).map_err(|e| ScaleError::Setup(e.to_string()))?;
        let took = t.elapsed();
        f.deal_compute = f.deal_compute.max(took);
        compute[i] += took;
        states.push(s);
    }
    // The extensions of the last height's precommits, carried by this height's block.
    let mut carried: Vec<Vec<u8>> = Vec::new();
    for h in cfg.start..cfg.end() {
        let mut exts = Vec::with_capacity(n);
        let mut spilled = false;
        for (i, s) in states.iter().enumerate() {
            let t = Instant::now();
            let outbox = s.outbox();
            let encoded: Vec<Vec<u8>> = outbox.iter().map(KeyMsg::to_bytes).collect();
            let chosen = window(&encoded, h, cap);
            spilled |= chosen.len() < encoded.len();
            let ext = borsh::to_vec(&KeyExt { msgs: chosen })?;
            compute[i] += t.elapsed();
            for (m, bytes) in outbox.iter().zip(&encoded) {
                let len = bytes.len();
                match m {
                    KeyMsg::Deal { .. } => f.deal_bytes = f.deal_bytes.max(len),
                    KeyMsg::Ack { .. } => f.ack_bytes = f.ack_bytes.max(len),
                    KeyMsg::Log { .. } => f.log_bytes = f.log_bytes.max(len),
                }
            }
            exts.push(ext);
        }
        f.spilled_heights += u64::from(spilled);
        f.block_ext_bytes = f.block_ext_bytes.max(carried.iter().map(Vec::len).sum());
        for ext in &carried {
            // What every validator checks (`VerifyVoteExtensions`, `verify_commit`) before feeding it.
            let msgs = decode_ext(ext, validators).map_err(|what| ScaleError::Cap { height: h, what })?;
            f.ext_msgs = f.ext_msgs.max(msgs.len());
            f.ext_bytes = f.ext_bytes.max(ext.len());
        }
        let senders: Vec<_> = ns.iter().map(|n| n.identity.public_key()).collect();
        let took = feed_all(&mut states, &senders, &carried, h, validators);
        for (i, t) in took.into_iter().enumerate() {
            compute[i] += t;
            f.height_compute_max = f.height_compute_max.max(t);
        }
        carried = exts;
    }
    if f.ext_msgs > MAX_MSGS {
        return Err(ScaleError::Cap {
            height: cfg.end(),
            what: format!("{} messages in one extension", f.ext_msgs),
        });
    }
    let mut output: Option<DkgOutput> = None;
    let mut shares = Vec::with_capacity(n);
    for s in &states {
        match s.result() {
            Some(RoundResult::Done { output: o, share }) => {
                if output.as_ref().is_some_and(|p| p != o) {
                    return Err(ScaleError::Disagree(name));
                }
                output = Some(o.clone());
                shares.push(share.clone());
            }
            Some(RoundResult::Failed(e)) => return Err(ScaleError::Failed(name, e.clone())),
            None => return Err(ScaleError::Failed(name, "no result at the round's end".into())),
        }
    }
    let output = output.ok_or(ScaleError::Failed(name, "no nodes".into()))?;
    f.quorum = output.public().required();
    compute.sort();
    if let (Some(max), Some(p50)) = (compute.last(), compute.get(n / 2)) {
        (f.node_compute_max, f.node_compute_p50) = (*max, *p50);
    }
    Ok((f, output, shares))
}

/// Every node takes one block's extensions (decoded as a validator does) and the height; returns each node's
/// time. The nodes are split over the machine's cores: each one's time is still its own.
fn feed_all(
    states: &mut [RoundState],
    senders: &[commonware_cryptography::ed25519::PublicKey],
    carried: &[Vec<u8>],
    h: u64,
    validators: usize,
) -> Vec<Duration> {
    let feed = |s: &mut RoundState| {
        let t = Instant::now();
        for (sender, ext) in senders.iter().zip(carried) {
            // Checked above: an extension that does not decode stopped the run.
            if let Ok(msgs) = decode_ext(ext, validators) {
                for m in msgs {
                    s.on_decided(h, sender, &m);
                }
            }
        }
        s.on_height(h);
        t.elapsed()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = states.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .chunks_mut(chunk)
            .map(|part| scope.spawn(move || part.iter_mut().map(feed).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Among 10 the whole round fits one extension per node per height, the group key survives a reshare, and
    /// everything stays within the caps.
    #[test]
    fn ten_sequencers_fit_the_caps() {
        let [dkg, reshare] = dkg_then_reshare(10, 3, 7).unwrap();
        for f in [&dkg, &reshare] {
            assert!(f.ext_bytes <= extension_cap(10) && f.ext_msgs <= MAX_MSGS, "{f:?}");
            assert!(f.deal_bytes > 0 && f.ack_bytes > 0 && f.log_bytes > 0, "{f:?}");
            assert_eq!(f.spilled_heights, 0, "{f:?}");
        }
        assert_eq!((dkg.players, dkg.quorum), (10, 7));
        assert_eq!((reshare.dealers, reshare.players, reshare.quorum), (10, 9, 7));
    }
}
