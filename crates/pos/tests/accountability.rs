//! Accountability through the ledger's public interface: equivocation jails at once and asks L1 for a slash,
//! a jailed validator leaves the set at the next boundary, downtime jails without a slash.

use alloy_primitives::{keccak256, Address, B256, U256};
use metis_pos::{
    BlockInfo, ElectionReason, JailReason, L1Event, L1Position, Ledger, Misbehaviour, OffenceKind, Params, PosTx,
    Sequencer, SequencerId, SequencerStatus,
};

fn seq(id: u64, stake_tokens: u64) -> Sequencer {
    Sequencer {
        id,
        signer: Address::with_last_byte(id as u8),
        consensus_key: B256::from(
            ed25519_dalek::SigningKey::from_bytes(&keccak256(format!("ck{id}")).0)
                .verifying_key()
                .to_bytes(),
        ),
        dkg_key: keccak256(format!("dk{id}")),
        stake: U256::from(stake_tokens) * U256::from(10u64).pow(U256::from(18)),
        status: SequencerStatus::Active,
        jailed_until_epoch: 0,
        l1_jailed: false,
    }
}

fn four() -> Ledger {
    Ledger::genesis(
        Params {
            epoch_length: 10,
            ..Default::default()
        },
        vec![seq(1, 20_000), seq(2, 30_000), seq(3, 40_000), seq(4, 50_000)],
        B256::ZERO,
    )
    .unwrap()
}

fn seed(h: u64) -> B256 {
    keccak256(format!("cert{h}"))
}

/// Decides the next block in round 0.
fn decide(l: &mut Ledger) -> BlockInfo {
    let b = decide_info(l);
    l.apply_block(&b).unwrap();
    b
}

fn misbehaviour(sequencer: SequencerId, height: u64, tag: u8) -> Misbehaviour {
    Misbehaviour {
        kind: OffenceKind::DoubleVote,
        sequencer,
        height,
        evidence: B256::repeat_byte(tag),
    }
}

/// Proven equivocation: jailed at once (out of the schedule, the producer replaced), a slash of 5% of its
/// stake asked, out of the set at the next boundary, the L1 slash closes the request; replays are refused
/// and change nothing.
#[test]
fn equivocation_jails_at_once_and_asks_l1_for_a_slash() {
    let mut l = four();
    for _ in 0..3 {
        decide(&mut l);
    }
    let offender = l.current_epoch().producer;
    let stake = l.sequencer(offender).unwrap().stake;
    let b = decide(&mut l);
    assert_eq!(b.height, 4);
    let untouched = l.clone();
    l.apply_misbehaviour(&[misbehaviour(offender, 2, 1)], seed(4)).unwrap();
    assert_ne!(l.state_hash(), untouched.state_hash());
    let e = l.current_epoch();
    assert_eq!(e.reason, ElectionReason::Jailed { producer: offender });
    assert_eq!(
        e.first_block, 5,
        "the epoch ended with the block that carried the evidence"
    );
    assert!(
        !l.schedule().contains(&offender),
        "out of the schedule from the next height"
    );
    let slashes: Vec<_> = l.offences().slashes_at(4).cloned().collect();
    assert_eq!(slashes.len(), 1);
    assert_eq!(slashes[0].amount, stake * U256::from(500u64) / U256::from(10_000u64));
    // The ledger ended the epoch, so the set changed at once: the offender left it.
    assert!(!l.validators().iter().any(|(id, _)| *id == offender));
    assert_eq!(l.set_changes().last().map(|c| c.left.clone()), Some(vec![offender]));
    // A replay, more evidence of the same incident, an unknown sequencer: refused, nothing changes.
    let before = l.clone();
    for bad in [
        misbehaviour(offender, 2, 1),
        misbehaviour(offender, 3, 2),
        misbehaviour(99, 3, 3),
    ] {
        assert!(l.apply_misbehaviour(&[bad], seed(4)).is_err());
        assert_eq!(l, before);
    }
    // L1 slashed: the request is done.
    let slashed = PosTx {
        position: L1Position {
            block_number: 10,
            block_hash: B256::repeat_byte(10),
            tx_index: 0,
            log_index: 0,
            tx_hash: B256::repeat_byte(11),
        },
        event: L1Event::Slashed {
            id: offender,
            amount: slashes[0].amount,
            evidence: B256::repeat_byte(1),
        },
    };
    l.apply_l1_event(&slashed).unwrap();
    assert_eq!(l.offences().slashes().count(), 0);
    // Released at the boundary after jail_epochs, when L1 does not hold it jailed.
    for _ in 0..40 {
        decide(&mut l);
    }
    assert!(l.offences().jail(offender).is_none());
    assert!(l.validators().iter().any(|(id, _)| *id == offender));
}

/// A jailed sequencer that is not the producer stays a validator until the epoch ends, out of the
/// fallback order at once.
#[test]
fn a_jailed_validator_leaves_the_set_at_the_next_boundary() {
    let mut l = four();
    decide(&mut l);
    decide(&mut l);
    let producer = l.current_epoch().producer;
    let offender = *l.schedule().iter().find(|id| **id != producer).unwrap();
    l.apply_misbehaviour(&[misbehaviour(offender, 1, 7)], seed(2)).unwrap();
    assert_eq!(l.current_epoch().producer, producer);
    assert!(!l.schedule().contains(&offender));
    assert!(
        l.validators().iter().any(|(id, _)| *id == offender),
        "still a validator this epoch"
    );
    while l.current_epoch().id == 0 {
        decide(&mut l);
    }
    assert!(!l.validators().iter().any(|(id, _)| *id == offender));
}

/// Downtime: a validator missing from the commits past the window's limit is jailed without a slash, once the
/// blocks of two proposers report it (short epochs here, so producers change; an epoch's first block counts
/// nothing).
#[test]
fn downtime_jails_without_a_slash() {
    let mut l = Ledger::genesis(
        Params {
            epoch_length: 4,
            downtime_window: 10,
            min_signed_bps: 5_000,
            ..Default::default()
        },
        vec![seq(1, 20_000), seq(2, 30_000), seq(3, 40_000), seq(4, 50_000)],
        B256::ZERO,
    )
    .unwrap();
    let absent = 1;
    let mut reporters = std::collections::BTreeSet::new();
    for h in 1..=40u64 {
        let mut b = decide_info(&l);
        b.signers = [1, 2, 3, 4].into_iter().filter(|id| *id != absent || h < 4).collect();
        if h >= 4 {
            reporters.insert(b.proposer);
        }
        l.apply_block(&b).unwrap();
        if l.offences().jailed(absent) {
            break;
        }
    }
    let jail = l.offences().jail(absent).expect("jailed");
    let JailReason::Downtime { missed } = jail.reason else {
        panic!("{jail:?}");
    };
    assert!(missed > 5, "jailed with {missed} misses of 10");
    assert!(reporters.len() >= 2, "{reporters:?}");
    assert_eq!(l.offences().slashes().count(), 0);
    assert!(!l.schedule().contains(&absent));
}

/// Parameters that would let one proposer alone jail anyone for downtime are refused at genesis.
#[test]
fn a_downtime_limit_below_two_misses_is_refused() {
    let p = Params {
        downtime_window: 10,
        min_signed_bps: 9_500,
        ..Default::default()
    };
    assert!(Ledger::genesis(p, vec![seq(1, 20_000)], B256::ZERO).is_err());
}

fn decide_info(l: &Ledger) -> BlockInfo {
    BlockInfo {
        height: l.height() + 1,
        round: 0,
        proposer: l.proposer(0),
        seed: seed(l.height() + 1),
        timestamp: 0,
        txs: 0,
        signers: vec![],
    }
}
