//! An in-process pool for the consensus app: N [`App`]s, each on its own chain (a real store in a temp dir),
//! driven over the app's own channels by a conductor that plays Malachite's engine. The conductor starts
//! heights and rounds, asks a proposer for its value, carries the proposal parts to the other apps, collects
//! their verdicts, and decides with a certificate of precommits signed by the validators' own keys. It has no
//! network and no timeouts: every step waits for the apps' replies, so what a test decides does not depend on
//! timing, and a height takes milliseconds.
//!
//! It plays an honest engine and, on request, a hostile world: a silent proposer (the round moves on), a
//! proposer out of turn, streams forged or re-signed over a changed block.

#![allow(dead_code)]

use alloy_primitives::{Address as EthAddress, U256};
use malachitebft_app_channel::app::engine::host::{HeightParams, Next};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamMessage};
use malachitebft_app_channel::app::types::core::{CommitCertificate, NilOrVal, Round, SignedVote, Validity};
use malachitebft_app_channel::app::types::{PeerId, ProposedValue};
use malachitebft_app_channel::{AppMsg, NetworkMsg};
use malachitebft_core_consensus::{MisbehaviorEvidence, Role};
use malachitebft_core_types::{SignedMessage, VoteExtensions, VoteType};
use metis_chain::Chain;
use metis_consensus::app::{App, AppError, LinearTimeouts, Timing};
use metis_execution::{ChainSpec, Engine};
use metis_mempool::MempoolConfig;
use metis_pos::{Ledger, Params, Sequencer, SequencerStatus};
use metis_wire::signing::ConsensusSigner;
use metis_wire::types::{Address, BlockHash, Height, MetisContext, ProposalPart, ValidatorSet, Vote};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const CHAIN_ID: u64 = metis_testkit::testnet::CHAIN_ID;
/// Replies the apps owe the conductor come within this, or the test fails naming the step.
const REPLY: Duration = Duration::from_secs(30);

pub type Parts = Vec<StreamMessage<ProposalPart>>;

/// One sequencer: its app (a task), its chain and its consensus key.
pub struct Node {
    pub chain: Arc<Chain>,
    pub key: ed25519_dalek::SigningKey,
    pub address: Address,
    pub sequencer: u64,
    pub peer: PeerId,
    /// The evidence hub the gossip links would use: what the app passes on, and where peers' evidence enters.
    pub evidence: Arc<metis_net::EvidenceHub>,
    consensus: mpsc::Sender<AppMsg<MetisContext>>,
    network: mpsc::Receiver<NetworkMsg<MetisContext>>,
    task: JoinHandle<Result<(), AppError>>,
}

/// What each other node answered to a proposal stream: `None` if the stream gave it no value at all.
pub type Verdicts = Vec<Option<(BlockHash, Validity)>>;

pub struct Pool {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
    genesis: Ledger,
    spec: ChainSpec,
    /// The height being decided and its validator set, as the apps announced it.
    pub height: Height,
    pub set: ValidatorSet,
}

/// The consensus key of sequencer `id` (deterministic, so a failing run can be repeated).
pub fn consensus_key(id: u64) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&alloy_primitives::keccak256(format!("harness-consensus-{id}")).0)
}

fn sequencer(id: u64, stake_eth: u64) -> Sequencer {
    Sequencer {
        id,
        signer: EthAddress::with_last_byte(id as u8),
        consensus_key: alloy_primitives::B256::from(consensus_key(id).verifying_key().to_bytes()),
        dkg_key: alloy_primitives::keccak256(format!("harness-dkg-{id}")),
        stake: U256::from(stake_eth) * U256::from(10u64).pow(U256::from(18)),
        status: SequencerStatus::Active,
        jailed_until_epoch: 0,
        l1_jailed: false,
    }
}

/// A peer id for the node with `key` (an identity multihash of its public key: code 0, length 32).
pub fn peer_id(key: &ed25519_dalek::SigningKey) -> PeerId {
    let mut bytes = vec![0u8, 32];
    bytes.extend_from_slice(&key.verifying_key().to_bytes());
    PeerId::from_bytes(&bytes).expect("an identity multihash is a peer id")
}

async fn reply<T>(rx: oneshot::Receiver<T>, what: &str) -> T {
    match tokio::time::timeout(REPLY, rx).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("the app dropped its reply to {what}"),
        Err(_) => panic!("no reply to {what} within {REPLY:?}"),
    }
}

impl Pool {
    /// `stakes.len()` sequencers (ids 1..) with these stakes in ETH, on a chain where the dev accounts hold
    /// funds; every app started and at its first height.
    pub async fn start(name: &str, params: Params, stakes: &[u64]) -> Pool {
        let dir = metis_testkit::tempdir(name);
        let sequencers: Vec<Sequencer> = (1..).zip(stakes).map(|(id, s)| sequencer(id, *s)).collect();
        let genesis = Ledger::genesis(params, sequencers.clone(), alloy_primitives::B256::repeat_byte(7))
            .expect("genesis ledger");
        let accounts: Vec<EthAddress> = metis_contracts::dev::dev_keys(4)
            .expect("dev keys")
            .iter()
            .map(|k| k.address())
            .collect();
        let spec = ChainSpec::dev(CHAIN_ID, &accounts, U256::from(10u64).pow(U256::from(24)));
        let mut nodes = Vec::new();
        for s in &sequencers {
            nodes.push(Self::open_node(&dir, &genesis, &spec, s.id));
        }
        let mut pool = Pool {
            nodes,
            dir,
            set: metis_consensus::validator_set(&genesis).expect("genesis validator set"),
            genesis,
            spec,
            height: Height(0),
        };
        let mut starts = Vec::new();
        for i in 0..pool.nodes.len() {
            starts.push(pool.ready(i).await);
        }
        pool.agree_on(starts);
        pool
    }

    fn open_node(dir: &std::path::Path, genesis: &Ledger, spec: &ChainSpec, id: u64) -> Node {
        let data = dir.join(format!("node{id}"));
        let engine = Engine::open(&data.join("chain"), spec.clone()).expect("engine");
        let chain = Chain::new(engine, MempoolConfig::default());
        let key = consensus_key(id);
        let timing = Timing {
            timeouts: LinearTimeouts::default(),
            // Small but not zero: the app paces heights itself; the conductor waits for its Next.
            block_time: Duration::from_millis(20),
        };
        let app = App::open(
            chain.clone(),
            genesis.clone(),
            Arc::new(ConsensusSigner::new(key.clone())),
            timing,
        )
        .expect("app opens")
        .with_proposal_store(&data.join("proposals"))
        .expect("proposal store");
        let (evidence, from_peers) = metis_net::EvidenceHub::new();
        let app = app.with_evidence_gossip(metis_consensus::app::EvidenceGossip {
            hub: evidence.clone(),
            from_peers,
        });
        let (consensus, from_conductor) = mpsc::channel(64);
        let (to_network, network) = mpsc::channel(1024);
        let task = tokio::spawn(app.serve(from_conductor, to_network));
        Node {
            chain,
            address: Address(key.verifying_key().to_bytes()),
            peer: peer_id(&key),
            evidence,
            key,
            sequencer: id,
            consensus,
            network,
            task,
        }
    }

    async fn send(&self, i: usize, msg: AppMsg<MetisContext>) {
        if self.nodes[i].consensus.send(msg).await.is_err() {
            panic!("node {i}'s app stopped: {:?}", self.nodes[i].task.is_finished());
        }
    }

    /// ConsensusReady to node `i`: the height it starts at and its parameters.
    async fn ready(&self, i: usize) -> (Height, HeightParams<MetisContext>) {
        let (tx, rx) = oneshot::channel();
        self.send(i, AppMsg::ConsensusReady { reply: tx }).await;
        reply(rx, "ConsensusReady").await
    }

    /// Every node must start the same height with the same validator set and proposer schedule.
    fn agree_on(&mut self, starts: Vec<(Height, HeightParams<MetisContext>)>) {
        let (h, p) = &starts[0];
        for (i, (hi, pi)) in starts.iter().enumerate() {
            assert_eq!(hi, h, "node {i} starts another height");
            assert_eq!(
                pi.validator_set, p.validator_set,
                "node {i} has another validator set at {h:?}"
            );
        }
        self.height = *h;
        self.set = p.validator_set.clone();
    }

    /// The node whose consensus key is `a`.
    pub fn index_of(&self, a: &Address) -> usize {
        self.nodes
            .iter()
            .position(|n| n.address == *a)
            .unwrap_or_else(|| panic!("no node holds validator {a}"))
    }

    /// The node scheduled to propose in `round` of the current height.
    pub fn proposer(&self, round: u32) -> usize {
        self.index_of(&self.set.proposer(round).address)
    }

    /// StartedRound to every node; each answers the values it already has for the round.
    pub async fn start_round(&self, round: u32) -> Vec<Vec<ProposedValue<MetisContext>>> {
        let proposer = self.set.proposer(round).address;
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            let role = if n.address == proposer {
                Role::Proposer
            } else {
                Role::Validator
            };
            self.send(
                i,
                AppMsg::StartedRound {
                    height: self.height,
                    round: Round::new(round),
                    proposer,
                    role,
                    reply_value: tx,
                },
            )
            .await;
            out.push(reply(rx, "StartedRound").await);
        }
        out
    }

    /// GetValue to node `i` (scheduled or not): the value it proposes and the parts it published for it.
    pub async fn get_value(&mut self, i: usize, round: u32) -> (BlockHash, Parts) {
        let (tx, rx) = oneshot::channel();
        self.send(
            i,
            AppMsg::GetValue {
                height: self.height,
                round: Round::new(round),
                timeout: Duration::from_secs(1),
                reply: tx,
            },
        )
        .await;
        let value = reply(rx, "GetValue").await;
        let mut parts = Vec::new();
        loop {
            let msg = tokio::time::timeout(REPLY, self.nodes[i].network.recv())
                .await
                .unwrap_or_else(|_| panic!("node {i} published no complete stream"))
                .unwrap_or_else(|| panic!("node {i}'s network channel closed"));
            let NetworkMsg::PublishProposalPart(p) = msg;
            let fin = matches!(p.content, StreamContent::Fin);
            parts.push(p);
            if fin {
                break;
            }
        }
        (value.value, parts)
    }

    /// Carries `parts` (as if from node `from`'s peer) to every node but `from`.
    pub async fn deliver(&self, from: usize, parts: &Parts) -> Verdicts {
        let mut out = Vec::new();
        for (i, _) in self.nodes.iter().enumerate() {
            if i == from {
                out.push(None);
                continue;
            }
            out.push(self.deliver_to(i, self.nodes[from].peer, parts).await);
        }
        out
    }

    /// Carries `parts` from `peer` to node `i`; what it made of them.
    pub async fn deliver_to(&self, i: usize, peer: PeerId, parts: &Parts) -> Option<(BlockHash, Validity)> {
        let mut verdict = None;
        for p in parts {
            let (tx, rx) = oneshot::channel();
            self.send(
                i,
                AppMsg::ReceivedProposalPart {
                    from: peer,
                    published_by: None,
                    part: p.clone(),
                    reply: tx,
                },
            )
            .await;
            if let Some(v) = reply(rx, "ReceivedProposalPart").await {
                verdict = Some((v.value, v.validity));
            }
        }
        verdict
    }

    /// Decides `value` in `round`, with precommits of every validator, and waits for every node to start the
    /// next height (all on the same validator set).
    pub async fn decide(&mut self, round: u32, value: BlockHash) {
        let signers: Vec<usize> = (0..self.nodes.len()).collect();
        self.decide_signed_by(round, value, &signers).await;
    }

    pub async fn decide_signed_by(&mut self, round: u32, value: BlockHash, signers: &[usize]) {
        self.decide_with(round, value, signers, &no_evidence).await;
    }

    /// Decides as [`Pool::decide_signed_by`], handing node `i` the equivocation `evidence(i)` with the
    /// finalized height, as Malachite does with what its vote and proposal keepers caught.
    pub async fn decide_with(
        &mut self,
        round: u32,
        value: BlockHash,
        signers: &[usize],
        evidence: &dyn Fn(usize) -> MisbehaviorEvidence<MetisContext>,
    ) {
        let votes: Vec<SignedVote<MetisContext>> = signers
            .iter()
            .map(|&i| {
                let n = &self.nodes[i];
                let vote = Vote {
                    vote_type: VoteType::Precommit,
                    height: self.height,
                    round: Round::new(round),
                    value: NilOrVal::Val(value),
                    validator: n.address,
                    extension: None,
                };
                let sig = ConsensusSigner::new(n.key.clone()).sign_bytes(&vote.signing_bytes());
                SignedMessage::new(vote, sig)
            })
            .collect();
        let cert = CommitCertificate::new(self.height, Round::new(round), value, votes);
        for i in 0..self.nodes.len() {
            let (tx, rx) = oneshot::channel();
            self.send(
                i,
                AppMsg::Decided {
                    certificate: cert.clone(),
                    extensions: VoteExtensions::default(),
                    reply: tx,
                },
            )
            .await;
            reply(rx, "Decided").await;
        }
        let mut starts = Vec::new();
        for i in 0..self.nodes.len() {
            let (tx, rx) = oneshot::channel();
            self.send(
                i,
                AppMsg::Finalized {
                    certificate: cert.clone(),
                    extensions: VoteExtensions::default(),
                    evidence: evidence(i),
                    reply: tx,
                },
            )
            .await;
            match reply(rx, "Finalized").await {
                Next::Start(h, p) => starts.push((h, p)),
                Next::Restart(h, _) => panic!("node {i} restarts height {h:?}: it did not hold the decided block"),
            }
        }
        self.agree_on(starts);
    }

    /// One honest height: the scheduled proposer of `round` proposes (rounds before it pass with no proposal,
    /// as when their proposers are down), every node finds it valid, and it is decided. Returns its hash.
    pub async fn honest_height(&mut self, round: u32) -> BlockHash {
        self.honest_height_with(round, &no_evidence).await
    }

    /// An honest height whose finalization hands node `i` the evidence `evidence(i)`.
    pub async fn honest_height_with(
        &mut self,
        round: u32,
        evidence: &dyn Fn(usize) -> MisbehaviorEvidence<MetisContext>,
    ) -> BlockHash {
        for r in 0..=round {
            self.start_round(r).await;
        }
        let p = self.proposer(round);
        let (value, parts) = self.get_value(p, round).await;
        for (i, v) in self.deliver(p, &parts).await.into_iter().enumerate() {
            if i != p {
                assert_eq!(v, Some((value, Validity::Valid)), "node {i}'s verdict on {value}");
            }
        }
        let signers: Vec<usize> = (0..self.nodes.len()).collect();
        self.decide_with(round, value, &signers, evidence).await;
        value
    }

    /// Stops node `i`'s app and opens it again on its data dir (the chain, the ledger, the proposals it kept),
    /// then hands it the current height as consensus would after a restart.
    pub async fn restart(&mut self, i: usize) {
        let id = self.nodes[i].sequencer;
        let old = self.nodes.remove(i);
        let Node {
            chain, consensus, task, ..
        } = old;
        drop(consensus);
        let ended = tokio::time::timeout(REPLY, task)
            .await
            .expect("the app stops when consensus goes");
        assert!(matches!(ended, Ok(Err(AppError::Closed))), "the app ends with Closed");
        drop(chain);
        let node = Self::open_node(&self.dir, &self.genesis, &self.spec, id);
        self.nodes.insert(i, node);
        let (h, p) = self.ready(i).await;
        assert_eq!(h, self.height, "the restarted node resumes at the pool's height");
        assert_eq!(
            p.validator_set, self.set,
            "the restarted node has the pool's validator set"
        );
    }

    /// The head hash and the ledger's state hash on every node must be the same.
    pub fn assert_one_chain(&self) {
        let first = &self.nodes[0];
        let (head, ledger) = (
            first.chain.engine().head_hash(),
            first.chain.ledger().expect("ledger").state_hash(),
        );
        for (i, n) in self.nodes.iter().enumerate() {
            assert_eq!(n.chain.engine().head_hash(), head, "node {i}'s head");
            assert_eq!(
                n.chain.ledger().expect("ledger").state_hash(),
                ledger,
                "node {i}'s ledger"
            );
        }
    }

    /// The ledger as node `i` has it after the head block.
    pub fn ledger(&self, i: usize) -> Arc<Ledger> {
        self.nodes[i].chain.ledger().expect("ledger")
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for n in self.nodes.drain(..) {
            n.task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn no_evidence(_: usize) -> MisbehaviorEvidence<MetisContext> {
    MisbehaviorEvidence {
        proposals: Default::default(),
        votes: Default::default(),
    }
}

/// Two prevotes by the holder of `key` for `height`, round 0, with different values: a double vote as
/// Malachite's vote keeper records it.
pub fn double_vote(key: &ed25519_dalek::SigningKey, height: Height) -> MisbehaviorEvidence<MetisContext> {
    let signer = ConsensusSigner::new(key.clone());
    let vote = |value: u8| {
        let v = Vote {
            vote_type: VoteType::Prevote,
            height,
            round: Round::new(0),
            value: NilOrVal::Val(BlockHash([value; 32])),
            validator: Address(key.verifying_key().to_bytes()),
            extension: None,
        };
        let sig = signer.sign_bytes(&v.signing_bytes());
        SignedMessage::new(v, sig)
    };
    let mut votes = malachitebft_core_votekeeper::EvidenceMap::new();
    votes.add(vote(1), vote(2));
    MisbehaviorEvidence {
        proposals: Default::default(),
        votes,
    }
}

/// The parts of a proposal for the same (height, round) with the block changed by `edit`, naming `proposer`
/// and signed by `key`: what a Byzantine proposer (its own key and name) or a forger (another key) streams.
pub fn forged(
    parts: &Parts,
    proposer: Address,
    key: &ed25519_dalek::SigningKey,
    edit: impl FnOnce(&mut metis_wire::block::BlockData),
) -> Parts {
    let mut init = None;
    let mut bytes = Vec::new();
    for p in parts {
        match &p.content {
            StreamContent::Data(ProposalPart::Init(i)) => init = Some(i.clone()),
            StreamContent::Data(ProposalPart::Data(d)) => bytes.extend_from_slice(d),
            _ => {}
        }
    }
    let mut init = init.expect("a stream with an Init part");
    let mut data = metis_wire::block::BlockData::decode(&bytes).expect("the honest block decodes");
    edit(&mut data);
    let envelopes: Vec<_> = data.txs.iter().map(|t| t.envelope.clone()).collect();
    let bytes = metis_wire::block::encode_block(
        &data.header,
        envelopes.iter(),
        &data.pos_txs,
        &data.evidence,
        data.last_commit.as_ref(),
    )
    .expect("encode");
    init.proposer = proposer;
    init.value = BlockHash(data.header.hash_slow().0);
    init.total_len = bytes.len() as u32;
    let chunks = vec![bytes];
    let sig = ConsensusSigner::new(key.clone()).sign_bytes(&metis_wire::signing::stream_digest(&init, &chunks));
    let id = parts[0].stream_id.clone();
    let mut out = vec![StreamMessage::new(
        id.clone(),
        0,
        StreamContent::Data(ProposalPart::Init(init)),
    )];
    out.push(StreamMessage::new(
        id.clone(),
        1,
        StreamContent::Data(ProposalPart::Data(chunks.into_iter().next().unwrap_or_default())),
    ));
    out.push(StreamMessage::new(
        id.clone(),
        2,
        StreamContent::Data(ProposalPart::Fin(sig)),
    ));
    out.push(StreamMessage::new(id, 3, StreamContent::Fin));
    out
}

/// `parts` streamed again under stream id `id` by `key` (its own name), with the Init edited (height, round):
/// what a stranger or a flooding validator publishes.
pub fn restreamed(
    parts: &Parts,
    key: &ed25519_dalek::SigningKey,
    id: u64,
    edit: impl FnOnce(&mut metis_wire::types::PartInit),
) -> Parts {
    let proposer = Address(key.verifying_key().to_bytes());
    let mut out = forged(parts, proposer, key, |_| {});
    let StreamContent::Data(ProposalPart::Init(mut init)) = out[0].content.clone() else {
        panic!("a stream starts with its Init");
    };
    edit(&mut init);
    let chunks: Vec<Vec<u8>> = out
        .iter()
        .filter_map(|p| match &p.content {
            StreamContent::Data(ProposalPart::Data(d)) => Some(d.to_vec()),
            _ => None,
        })
        .collect();
    let sig = ConsensusSigner::new(key.clone()).sign_bytes(&metis_wire::signing::stream_digest(&init, &chunks));
    let stream = malachitebft_app_channel::app::streaming::StreamId::new(bytes::Bytes::from(id.to_be_bytes().to_vec()));
    out[0].content = StreamContent::Data(ProposalPart::Init(init));
    if let Some(fin) = out
        .iter_mut()
        .find(|p| matches!(p.content, StreamContent::Data(ProposalPart::Fin(_))))
    {
        fin.content = StreamContent::Data(ProposalPart::Fin(sig));
    }
    for p in &mut out {
        p.stream_id = stream.clone();
    }
    out
}
