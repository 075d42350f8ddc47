//! The consensus app's decision and validity rules on an in-process pool (see `harness`): real apps on real
//! stores, driven over their channels, with no network and no timeouts.

mod harness;

use alloy_primitives::B256;
use harness::{double_vote, forged, peer_id, restreamed, Parts, Pool};
use malachitebft_app_channel::app::streaming::StreamContent;
use malachitebft_app_channel::app::types::core::{Round, Validity};
use metis_execution::RecoveredTx;
use metis_pos::{ElectionReason, Params};
use metis_wire::types::{Address, BlockHash, Height, ProposalPart};
use std::sync::Arc;

const STAKES: [u64; 4] = [100, 90, 70, 50];

fn params(epoch_length: u64) -> Params {
    Params {
        epoch_length,
        ..Params::default()
    }
}

/// A signed transfer from dev account 0, admitted to node `i`'s mempool.
fn submit_transfer(pool: &Pool, i: usize, nonce: u64) -> B256 {
    let key = metis_contracts::dev::dev_key(0).expect("dev key");
    let raw = metis_testkit::dev::transfer(&key, nonce);
    let bytes = alloy_primitives::hex::decode(raw).expect("hex");
    let tx = RecoveredTx::decode(&bytes).expect("a valid transaction");
    pool.nodes[i].chain.submit(tx).expect("admitted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_decides_one_chain_rotates_producers_and_a_restarted_node_rejoins() {
    let mut pool = Pool::start("inproc-chain", params(3), &STAKES).await;
    let mut txs = Vec::new();
    for height in 1..=7u64 {
        assert_eq!(pool.height.0, height);
        let producer = pool.ledger(0).current_epoch().producer;
        let proposer = pool.proposer(0);
        assert_eq!(
            pool.nodes[proposer].sequencer, producer,
            "round 0 of height {height} belongs to the epoch's producer"
        );
        // A user's transaction reaches the proposer (gossip's job in a node) and goes into its block.
        if height % 2 == 0 {
            txs.push(submit_transfer(&pool, proposer, height / 2 - 1));
        }
        pool.honest_height(0).await;
        pool.assert_one_chain();
    }
    let ledger = pool.ledger(0);
    assert_eq!(ledger.height(), 7);
    assert_eq!(ledger.current_epoch().id, 2, "blocks 1-3, 4-6, 7: the third epoch");
    for e in &ledger.epochs()[1..] {
        assert_eq!(e.reason, ElectionReason::Scheduled, "epoch {} ended on time", e.id);
    }
    for n in &pool.nodes {
        for tx in &txs {
            let at = n.chain.engine().store().tx_location(tx).expect("store");
            assert!(at.is_some(), "sequencer {} holds transaction {tx}", n.sequencer);
        }
    }
    // A node stopped and opened again on its data dir takes up the same height and set, and goes on with
    // the others.
    pool.restart(2).await;
    for _ in 0..2 {
        pool.honest_height(0).await;
    }
    pool.assert_one_chain();
    assert_eq!(pool.ledger(2).height(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_producer_is_replaced_by_the_fallback_then_re_elected_away() {
    let mut pool = Pool::start("inproc-failover", params(100), &STAKES).await;
    let failed = pool.nodes[pool.proposer(0)].sequencer;
    let limit = Params::default().missed_limit;
    for _ in 0..limit {
        // Round 0 passes without a proposal; round 1's fallback proposes and is decided.
        let fallback = pool.nodes[pool.proposer(1)].sequencer;
        assert_ne!(fallback, failed);
        pool.honest_height(1).await;
        pool.assert_one_chain();
    }
    let ledger = pool.ledger(0);
    let epoch = ledger.current_epoch();
    assert_eq!(
        epoch.reason,
        ElectionReason::ReElection { failed, misses: limit },
        "after {limit} missed heights the producer is replaced"
    );
    assert_ne!(epoch.producer, failed);
    // The new producer proposes in round 0 and is decided there.
    assert_eq!(pool.nodes[pool.proposer(0)].sequencer, epoch.producer);
    pool.honest_height(0).await;
    pool.assert_one_chain();
    assert_eq!(pool.ledger(0).current_epoch().missed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_off_the_rules_are_refused_and_the_height_goes_on() {
    let mut pool = Pool::start("inproc-refuse", params(100), &STAKES).await;
    // Height 1 decided honestly, so height 2's blocks carry a last commit.
    pool.honest_height(0).await;
    pool.start_round(0).await;
    let p = pool.proposer(0);
    let scheduled = pool.nodes[p].address;
    let not_valid = |v: &Option<(BlockHash, Validity)>| !matches!(v, Some((_, Validity::Valid)));

    // A validator proposing out of turn: every other node refuses its stream at the Init, before any work.
    let q = pool.proposer(1);
    let (_, parts) = pool.get_value(q, 0).await;
    for (i, v) in pool.deliver(q, &parts).await.iter().enumerate() {
        assert_eq!(*v, None, "node {i} takes an out-of-turn block");
    }

    let (honest, parts) = pool.get_value(p, 0).await;
    let key = pool.nodes[p].key.clone();
    let stranger = Address(harness::consensus_key(99).verifying_key().to_bytes());
    // What each hostile stream must get from every other node: refused after checking (Invalid), or dropped
    // unread (None). Never Valid.
    let invalid = |v: &Option<(BlockHash, Validity)>| matches!(v, Some((_, Validity::Invalid)));
    let dropped = |v: &Option<(BlockHash, Validity)>| v.is_none();
    type Expect = fn(&Option<(BlockHash, Validity)>) -> bool;
    let hostile: [(&str, harness::Parts, Expect); 3] = [
        // The scheduled proposer signs a block whose state root is not its transactions' outcome.
        (
            "a wrong state root",
            forged(&parts, scheduled, &key, |d| d.header.state_root = B256::repeat_byte(1)),
            invalid,
        ),
        // ... or one whose last commit lost signatures (below a quorum of the parent's set).
        (
            "a last commit without a quorum",
            forged(&parts, scheduled, &key, |d| {
                if let Some(c) = d.last_commit.as_mut() {
                    c.signatures.truncate(1);
                }
            }),
            invalid,
        ),
        // Someone else's key, the scheduled proposer's name.
        (
            "a stream not signed by the proposer it names",
            forged(&parts, scheduled, &harness::consensus_key(99), |_| {}),
            dropped,
        ),
    ];
    for (what, forged_parts, expect) in &hostile {
        for (i, v) in pool.deliver(p, forged_parts).await.iter().enumerate() {
            if i != p {
                assert!(expect(v), "node {i} on {what}: {v:?}");
            }
        }
    }
    // A stranger proposing under its own name, from its own peer: dropped at the Init.
    let from_stranger = forged(&parts, stranger, &harness::consensus_key(99), |_| {});
    let stranger_peer = peer_id(&harness::consensus_key(99));
    for i in (0..pool.nodes.len()).filter(|i| *i != p) {
        let v = pool.deliver_to(i, stranger_peer, &from_stranger).await;
        assert!(not_valid(&v) && dropped(&v), "node {i} on a stranger's block: {v:?}");
    }
    // The scheduled proposer's own stream still counts, and the height is decided on it.
    for (i, v) in pool.deliver(p, &parts).await.iter().enumerate() {
        if i != p {
            assert_eq!(
                *v,
                Some((honest, Validity::Valid)),
                "node {i}'s verdict on the honest block"
            );
        }
    }
    pool.decide(0, honest).await;
    pool.assert_one_chain();
    assert_eq!(pool.nodes[0].chain.engine().head_hash().0, honest.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_validator_is_jailed_by_the_next_block_and_bad_evidence_changes_nothing() {
    let mut pool = Pool::start("inproc-evidence", params(100), &STAKES).await;
    pool.honest_height(0).await;
    let producer = pool.proposer(0);
    let offender = pool.proposer(1);
    let (offender_id, offender_key) = (pool.nodes[offender].sequencer, pool.nodes[offender].key.clone());
    // Height 2: every node's Malachite caught the offender's double prevote for height 2, plus a "double vote"
    // whose signatures some stranger made for the producer: the forged pair never enters a pool.
    let h = pool.height;
    let producer_address = pool.nodes[producer].address;
    let evidence = move |_: usize| {
        let mut ev = double_vote(&offender_key, h);
        let forged_pair = double_vote(&harness::consensus_key(99), h);
        for (_, pairs) in forged_pair.votes {
            for (mut a, mut b) in pairs {
                a.message.validator = producer_address;
                b.message.validator = producer_address;
                ev.votes.add(a, b);
            }
        }
        ev
    };
    pool.honest_height_with(0, &evidence).await;
    // Height 3: the producer's block carries the evidence; every validator checks it and votes for it.
    pool.honest_height(0).await;
    pool.assert_one_chain();
    for i in 0..pool.nodes.len() {
        let ledger = pool.ledger(i);
        let jail = ledger.offences().jail(offender_id);
        assert!(jail.is_some(), "node {i} jailed the offender");
        assert!(
            ledger.offences().jail(pool.nodes[producer].sequencer).is_none(),
            "forged evidence jailed nobody"
        );
        assert_eq!(
            ledger.offences().slashes().count(),
            1,
            "node {i}: one slash asked of L1"
        );
        assert!(!ledger.schedule().contains(&offender_id), "out of the proposer order");
    }
    let offence = pool.ledger(0).offences().offences()[0].clone();
    assert_eq!((offence.misbehaviour.height, offence.included), (2, 3));
    // The PoS API shows it: the offence with both signed messages, and the validator's jail.
    let api = metis_rpc::pos::module(pool.nodes[0].chain.clone(), Default::default(), Arc::new(NoNode));
    let offences: serde_json::Value = api.call("metis_evidence", [0u64, 10]).await.expect("metis_evidence");
    assert_eq!(offences.as_array().map(Vec::len), Some(1));
    let o = &offences[0];
    assert_eq!(o["sequencer"], offender_id);
    assert_eq!(o["kind"], "DoubleVote");
    assert_eq!(o["slash_open"], true);
    assert_eq!(
        o["slash_signature"],
        serde_json::Value::Null,
        "no signer runs in this pool"
    );
    assert_eq!(o["evidence"]["height"], 2);
    assert_eq!(o["evidence"]["step"], "Prevote");
    assert_ne!(o["evidence"]["first"]["value"], o["evidence"]["second"]["value"]);
    let encoded: alloy_primitives::Bytes = serde_json::from_value(o["evidence"]["encoded"].clone()).expect("bytes");
    assert_eq!(
        serde_json::to_value(alloy_primitives::keccak256(&encoded)).expect("hash"),
        o["evidence_hash"],
        "the evidence hash is over the encoded evidence"
    );
    let validators: serde_json::Value = api.call("metis_validators", [(); 0]).await.expect("metis_validators");
    let row = validators
        .as_array()
        .and_then(|v| v.iter().find(|s| s["id"] == offender_id))
        .expect("the offender's row");
    assert_eq!(row["jail"]["since"], 3);

    // The producer replays the spent evidence in its next block (re-signed, extra data fixed up): refused.
    pool.start_round(0).await;
    let p = pool.proposer(0);
    let (honest, parts) = pool.get_value(p, 0).await;
    let key = pool.nodes[p].key.clone();
    // The honest block with `e` added, re-signed by the producer.
    // The ledger before the block: the one after the head.
    let ledger_hash = pool.ledger(p).state_hash();
    let carrying = |e: metis_wire::evidence::Evidence| {
        forged(&parts, pool.nodes[p].address, &key, |d| {
            d.evidence = vec![e];
            d.header.extra_data = metis_wire::block::extra_data(ledger_hash, &d.pos_txs, &d.evidence)
                .expect("extra data")
                .into();
        })
    };
    let replay = carrying(double_vote_evidence(&pool.nodes[offender].key, h));
    for (i, v) in pool.deliver(p, &replay).await.iter().enumerate() {
        if i != p {
            assert!(
                matches!(v, Some((_, Validity::Invalid))),
                "node {i} takes spent evidence: {v:?}"
            );
        }
    }
    // The same block with fresh evidence against another validator is valid: the refusal above was the
    // spending, not the re-signing.
    let third = (0..pool.nodes.len())
        .find(|i| *i != p && *i != offender)
        .expect("a third node");
    let with_fresh = carrying(double_vote_evidence(&pool.nodes[third].key, h));
    for (i, v) in pool.deliver(p, &with_fresh).await.iter().enumerate() {
        if i != p {
            assert!(
                matches!(v, Some((_, Validity::Valid))),
                "node {i} refuses fresh evidence: {v:?}"
            );
        }
    }
    for (i, v) in pool.deliver(p, &parts).await.iter().enumerate() {
        if i != p {
            assert_eq!(*v, Some((honest, Validity::Valid)), "node {i}");
        }
    }
    pool.decide(0, honest).await;
    pool.assert_one_chain();
    assert_eq!(pool.ledger(0).offences().offences().len(), 1, "punished once");
}

/// The double prevote (values 1 and 2, round 0) [`harness::double_vote`] hands Malachite's way, as evidence.
fn double_vote_evidence(
    key: &ed25519_dalek::SigningKey,
    height: metis_wire::types::Height,
) -> metis_wire::evidence::Evidence {
    metis_wire::evidence::Evidence::double_vote(vote_record(key, height, 1), vote_record(key, height, 2))
        .expect("a double vote")
}

/// The node's L1 view and poster, which this in-process pool has neither of.
struct NoNode;

impl metis_rpc::pos::NodeStatus for NoNode {
    fn l1(&self, _: Option<(u64, u64)>) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn poster(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

fn vote_record(
    key: &ed25519_dalek::SigningKey,
    height: metis_wire::types::Height,
    value: u8,
) -> metis_wire::evidence::SignedVoteRecord {
    let vote = metis_wire::types::Vote {
        vote_type: malachitebft_core_types::VoteType::Prevote,
        height,
        round: malachitebft_core_types::Round::new(0),
        value: malachitebft_core_types::NilOrVal::Val(BlockHash([value; 32])),
        validator: Address(key.verifying_key().to_bytes()),
        extension: None,
    };
    let signature = metis_wire::signing::ConsensusSigner::new(key.clone()).sign_bytes(&vote.signing_bytes());
    metis_wire::evidence::SignedVoteRecord { vote, signature }
}

/// A proposer restarted after it proposed (its WAL replays the round and consensus asks again) proposes the
/// same block, never a second one: a different block for the same round would be a double proposal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proposer_proposes_the_same_block_again() {
    let mut pool = Pool::start("inproc-repropose", params(100), &STAKES).await;
    pool.honest_height(0).await;
    let p = pool.proposer(0);
    // A transaction arrives between the two asks: a fresh build would differ.
    pool.start_round(0).await;
    let (first, _) = pool.get_value(p, 0).await;
    pool.restart(p).await;
    submit_transfer(&pool, p, 0);
    pool.start_round(0).await;
    let (again, parts) = pool.get_value(p, 0).await;
    assert_eq!(again, first, "the same block after the restart");
    for (i, v) in pool.deliver(p, &parts).await.iter().enumerate() {
        if i != p {
            assert_eq!(*v, Some((first, Validity::Valid)), "node {i}");
        }
    }
    pool.decide(0, first).await;
    pool.assert_one_chain();
}

/// Evidence travels over the gossip links: only one node's Malachite saw the equivocation, the node passes it on
/// through its evidence hub, and the producer (which never saw it) carries it in its block. Evidence that does
/// not hold costs the peer that sent it: three forged items and its link is refused; nobody is jailed by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_one_node_saw_reaches_the_producer_and_forged_evidence_costs_the_sender() {
    let mut pool = Pool::start("inproc-evidence-gossip", params(100), &STAKES).await;
    pool.honest_height(0).await;
    let producer = pool.proposer(0);
    let offender = pool.proposer(1);
    let witness = (0..pool.nodes.len())
        .find(|i| *i != producer && *i != offender)
        .expect("a third node");
    let (offender_id, offender_key) = (pool.nodes[offender].sequencer, pool.nodes[offender].key.clone());
    let h = pool.height;
    // Only the witness's Malachite caught the double vote of height 2.
    let only_witness = move |i: usize| {
        if i == witness {
            double_vote(&offender_key, h)
        } else {
            harness::no_evidence(i)
        }
    };
    pool.honest_height_with(0, &only_witness).await;
    let item = wait(|| pool.nodes[witness].evidence.snapshot().first().cloned()).await;
    // The gossip link carries it to the producer, as a frame from the witness's key.
    let witness_key = pool.nodes[witness].key.verifying_key().to_bytes();
    pool.nodes[producer].evidence.deliver(witness_key, vec![item.clone()]);
    wait(|| pool.nodes[producer].evidence.snapshot().contains(&item).then_some(())).await;
    pool.honest_height(0).await;
    pool.assert_one_chain();
    for i in 0..pool.nodes.len() {
        assert!(
            pool.ledger(i).offences().jail(offender_id).is_some(),
            "node {i} jailed the offender"
        );
    }
    assert!(!pool.nodes[producer]
        .evidence
        .banned(&witness_key, std::time::Instant::now()));

    // A peer sends three items that do not hold (a pair the framed validator never signed, junk, and a
    // non-canonical encoding): its link budget is spent, and nobody is jailed.
    let stranger = [0x55u8; 32];
    let framed = pool.nodes[producer].address;
    let forged_pair = double_vote(&harness::consensus_key(99), pool.height);
    let mut forged_item = None;
    for (_, pairs) in forged_pair.votes {
        for (mut a, mut b) in pairs {
            a.message.validator = framed;
            b.message.validator = framed;
            let rec = |v: &malachitebft_core_types::SignedVote<metis_wire::types::MetisContext>| {
                metis_wire::evidence::SignedVoteRecord {
                    vote: v.message.clone(),
                    signature: v.signature.clone(),
                }
            };
            let e = metis_wire::evidence::Evidence::double_vote(rec(&a), rec(&b)).expect("a conflict in shape");
            forged_item = Some(e.to_bytes().expect("encode"));
        }
    }
    let target = pool.proposer(0);
    let hub = pool.nodes[target].evidence.clone();
    let mut padded = item.clone();
    padded.push(0);
    hub.deliver(stranger, vec![forged_item.expect("forged"), vec![1, 2, 3], padded]);
    wait(|| hub.banned(&stranger, std::time::Instant::now()).then_some(())).await;
    pool.honest_height(0).await;
    for i in 0..pool.nodes.len() {
        let l = pool.ledger(i);
        assert_eq!(l.offences().offences().len(), 1, "node {i}: only the real offence");
        assert!(
            l.offences().jail(pool.nodes[producer].sequencer).is_none(),
            "node {i}: forged evidence jailed nobody"
        );
    }
}

/// Polls `f` until it gives a value (the apps work on their own tasks), for at most 10 s.
async fn wait<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The app's own double-proposal check: the scheduled proposer streams two different blocks for one round, each
/// signed (the Fin signature names the block). Every node that got both keeps the pair as evidence, the next
/// block carries it, and the proposer is jailed. The same block streamed again is no offence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposer_that_streams_two_blocks_for_one_round_is_jailed() {
    let mut pool = Pool::start("inproc-double-stream", params(100), &STAKES).await;
    pool.honest_height(0).await;
    pool.start_round(0).await;
    let p = pool.proposer(0);
    let (offender_id, key, address) = (
        pool.nodes[p].sequencer,
        pool.nodes[p].key.clone(),
        pool.nodes[p].address,
    );
    let (honest, parts) = pool.get_value(p, 0).await;
    pool.deliver(p, &parts).await;
    pool.deliver(p, &parts).await;
    for i in 0..pool.nodes.len() {
        assert!(
            pool.nodes[i].evidence.snapshot().is_empty(),
            "node {i}: a repeat is no offence"
        );
    }
    let other = forged(&parts, address, &key, |d| d.header.timestamp += 1);
    pool.deliver(p, &other).await;
    for i in (0..pool.nodes.len()).filter(|i| *i != p) {
        assert_eq!(pool.nodes[i].evidence.snapshot().len(), 1, "node {i} keeps the pair");
    }
    pool.decide(0, honest).await;
    // The offender, still the epoch's producer, leaves it out of its round-0 block: every node holding the
    // evidence refuses that block, and the round-1 proposer carries it.
    pool.start_round(0).await;
    let (_, without) = pool.get_value(p, 0).await;
    for (i, v) in pool.deliver(p, &without).await.iter().enumerate() {
        if i != p {
            assert!(
                matches!(v, Some((_, Validity::Invalid))),
                "node {i} votes for a block hiding its producer's offence: {v:?}"
            );
        }
    }
    pool.start_round(1).await;
    let q = pool.proposer(1);
    let (with, parts) = pool.get_value(q, 1).await;
    for (i, v) in pool.deliver(q, &parts).await.iter().enumerate() {
        if i != q {
            assert_eq!(*v, Some((with, Validity::Valid)), "node {i}");
        }
    }
    pool.decide(1, with).await;
    pool.assert_one_chain();
    for i in 0..pool.nodes.len() {
        let l = pool.ledger(i);
        let o = &l.offences().offences()[0];
        assert_eq!(o.misbehaviour.sequencer, offender_id, "node {i}");
        assert_eq!(o.misbehaviour.kind, metis_pos::OffenceKind::DoubleProposal);
        assert!(l.offences().jail(offender_id).is_some(), "node {i} jailed the proposer");
    }
}

/// Nobody outside the pool gets work done for it or displaces an honest proposal. Streams signed by a stranger's
/// key for this height (any round) and the next one are refused at their Init: never validated, never kept.
/// Parts without an Init under 300 stream ids from one publisher are capped to that publisher's share. The
/// honest proposer's stream, open all along, completes and is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_streams_are_refused_before_any_work_and_displace_nothing() {
    let mut pool = Pool::start("inproc-stranger", params(100), &STAKES).await;
    pool.honest_height(0).await;
    pool.start_round(0).await;
    let p = pool.proposer(0);
    let (honest, parts) = pool.get_value(p, 0).await;
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let peer = peer_id(&stranger);
    let target = (p + 1) % pool.nodes.len();
    // The honest stream's parts but its end reach the node; the end comes after the flood.
    let (head, tail) = parts.split_at(parts.len() - 1);
    let honest_peer = pool.nodes[p].peer;
    assert_eq!(pool.deliver_to(target, honest_peer, &head.to_vec()).await, None);
    for n in 0..300u64 {
        let height = Height(pool.height.0 + n % 2);
        let s = restreamed(&parts, &stranger, 1_000 + n, |i| {
            i.height = height;
            i.round = Round::new(n as u32 / 2);
        });
        assert_eq!(pool.deliver_to(target, peer, &s).await, None, "stream {n}");
    }
    for n in 0..300u64 {
        let data: Parts = restreamed(&parts, &stranger, 5_000 + n, |_| {})
            .into_iter()
            .filter(|m| matches!(m.content, StreamContent::Data(ProposalPart::Data(_))))
            .collect();
        assert_eq!(pool.deliver_to(target, peer, &data).await, None);
    }
    // A validator of the set, not scheduled for round 0, is refused the same way.
    let q = pool.proposer(1);
    let other = restreamed(&parts, &pool.nodes[q].key.clone(), 9_000, |_| {});
    assert_eq!(pool.deliver_to(target, pool.nodes[q].peer, &other).await, None);
    assert_eq!(
        pool.deliver_to(target, honest_peer, &tail.to_vec()).await,
        Some((honest, Validity::Valid))
    );
    pool.deliver(p, &parts).await;
    pool.decide(0, honest).await;
    pool.assert_one_chain();
}
