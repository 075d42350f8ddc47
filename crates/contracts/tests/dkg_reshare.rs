//! The threshold key life-cycle the pool will run (issue 6), checked against the real L1 verifier: a
//! Feldman/Desmedt DKG among 4 sequencers (commonware-cryptography, MinSig: key in G2, signature in G1), the group
//! key registered in LockingPool, then a reshare to 5 sequencers that keeps the group key, so batches signed by the
//! new sharing still verify on chain with nothing changed on L1.
//!
//! Messages pass in process here, but each private dealing goes the way it will in the node: encoded, sealed to
//! the player's DKG key (metis_mpc::seal, bound to round, dealer and player), opened and decoded by the player;
//! in the node the sealed bytes ride in a public PoS transaction.

use alloy::{
    network::EthereumWallet,
    node_bindings::Anvil,
    primitives::{utils::parse_ether, Bytes, B256},
    providers::{Provider, ProviderBuilder},
};
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::bls12381::dkg::feldman_desmedt::{
    Dealer, DealerPrivMsg, Info, Logs, Output, Player, Reveal,
};
use commonware_cryptography::bls12381::primitives::{group::Share, sharing::Mode, variant::MinSig};
use commonware_cryptography::{ed25519, Signer as _};
use commonware_math::algebra::Random;
use commonware_parallel::Sequential;
use commonware_utils::{ordered::Set, N3f1, TryCollect};
use metis_contracts::{bindings::BatchInbox::BatchHeader, deploy_all, digest, BatchInbox, DeployConfig, LockingPool};
use metis_mpc::{encoding, seal, seal::DkgSecret, threshold};
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

const NAMESPACE: &[u8] = b"metis-seq/dkg";

type Pk = ed25519::PublicKey;
/// A round's public output and every player's share.
type RoundResult = (Output<MinSig, Pk>, Vec<(Pk, Share)>);

/// Runs one round: every dealer deals to every player, every player acks every dealer, logs are published and
/// each player finalizes. Returns the public output and each player's share (by player key).
fn run_round(
    rng: &mut StdRng,
    round: u64,
    previous: Option<RoundResult>,
    dealers: &[ed25519::PrivateKey],
    players: &[ed25519::PrivateKey],
    dkg_keys: &[DkgSecret],
) -> RoundResult {
    let dealer_set: Set<Pk> = dealers.iter().map(|d| d.public_key()).try_collect().unwrap();
    let player_set: Set<Pk> = players.iter().map(|p| p.public_key()).try_collect().unwrap();
    let (prev_output, prev_shares) = match previous {
        Some((o, s)) => (Some(o), s),
        None => (None, vec![]),
    };
    let info = Info::<MinSig, Pk>::new::<N3f1>(
        NAMESPACE,
        round,
        prev_output,
        Mode::NonZeroCounter,
        Reveal::V1,
        dealer_set,
        player_set,
    )
    .expect("round info");

    let mut player_states: Vec<_> = players
        .iter()
        .map(|p| Player::<MinSig, _>::new(info.clone(), p.clone()).expect("player in round"))
        .collect();
    let mut logs = Logs::<MinSig, Pk, N3f1>::new(info.clone());
    for d in dealers {
        let share = prev_shares
            .iter()
            .find(|(pk, _)| *pk == d.public_key())
            .map(|(_, s)| s.clone());
        let (mut dealer, public_msg, private_msgs) =
            Dealer::<MinSig, _>::start::<N3f1>(&mut *rng, info.clone(), d.clone(), share).expect("dealer starts");
        for (player_pk, private_msg) in private_msgs {
            let i = players
                .iter()
                .position(|p| p.public_key() == player_pk)
                .expect("known player");
            // Sealed to the player's DKG key, bound to the round and the pair, as it will travel on chain.
            let aad = [
                round.to_be_bytes().as_slice(),
                d.public_key().encode().as_ref(),
                player_pk.encode().as_ref(),
            ]
            .concat();
            let sealed = seal::seal(&dkg_keys[i].public(), &aad, &private_msg.encode()).expect("seal");
            let opened = seal::open(&dkg_keys[i], &aad, &sealed).expect("the player opens its own dealing");
            let private_msg = DealerPrivMsg::decode(opened.to_vec()).expect("decodes");
            if i > 0 {
                assert!(
                    seal::open(&dkg_keys[i - 1], &aad, &sealed).is_err(),
                    "nobody else can open it"
                );
            }
            let ack = player_states[i]
                .dealer_message::<N3f1>(d.public_key(), public_msg.clone(), private_msg)
                .expect("valid dealing")
                .expect("first message from this dealer");
            dealer.receive_player_ack(player_pk, ack).expect("ack verifies");
        }
        let signed = dealer.finalize::<N3f1>();
        let (pk, log) = signed.check(&info).expect("signed log verifies");
        assert!(!logs.record(pk, log), "one log per dealer");
    }
    let mut out = None;
    let mut shares = Vec::new();
    for (p, state) in players.iter().zip(player_states) {
        let (output, share) = state
            .finalize::<N3f1>(&mut *rng, logs.clone(), &Sequential)
            .expect("player finalizes");
        if let Some(o) = &out {
            assert_eq!(o, &output, "every player computes the same output");
        }
        out = Some(output);
        shares.push((p.public_key(), share));
    }
    (out.expect("at least one player"), shares)
}

fn anvil_path() -> PathBuf {
    std::env::var("METIS_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/anvil"))
}

fn header(index: u64, first: u64, last: u64, parent: B256) -> BatchHeader {
    let payload = format!("batch {index}");
    BatchHeader {
        index,
        l2FirstBlock: first,
        l2LastBlock: last,
        parentHash: parent,
        txRoot: alloy::primitives::keccak256(format!("txs {index}")),
        stateRoot: alloy::primitives::keccak256(format!("state {index}")),
        payloadHash: alloy::primitives::keccak256(payload.as_bytes()),
        blobHashes: vec![],
    }
}

#[tokio::test]
async fn dkg_then_reshare_keeps_the_key_that_l1_verifies() {
    let mut rng = StdRng::seed_from_u64(2026);
    let keys: Vec<ed25519::PrivateKey> = (0..5).map(|_| ed25519::PrivateKey::random(&mut rng)).collect();
    let first_four = &keys[..4];
    let dkg_keys: Vec<DkgSecret> = (0..5).map(|_| DkgSecret::generate().unwrap()).collect();

    // Genesis DKG among 4.
    let (out0, shares0) = run_round(&mut rng, 0, None, first_four, first_four, &dkg_keys[..4]);
    let sharing0 = out0.public().clone();
    assert_eq!(sharing0.required(), 3, "more than 2/3 of 4");

    // Register the group key on L1.
    let anvil = Anvil::new().path(anvil_path()).port(0u16).timeout(30_000).spawn();
    let owner: alloy::signers::local::PrivateKeySigner = anvil.keys()[0].clone().into();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::new(owner.clone()))
        .connect_http(anvil.endpoint_url())
        .erased();
    let cfg = DeployConfig {
        owner: owner.address(),
        reward_payer: owner.address(),
        reward_per_block: parse_ether("1").unwrap(),
        token: None,
    };
    let d = deploy_all(&provider, &cfg).await.unwrap();
    let pool = LockingPool::new(d.locking_pool, provider.clone());
    let pk = Bytes::from(encoding::g2_to_eip2537(sharing0.public()).to_vec());
    assert!(pool
        .setGroupKey(pk)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .status());
    let chain_id = provider.get_chain_id().await.unwrap();
    let inbox = BatchInbox::new(d.batch_inbox, provider.clone());

    // Batch 0 signed by 3 of the genesis shares.
    let h0 = header(0, 1, 10, B256::ZERO);
    let d0 = digest::batch_signing_digest(chain_id, d.batch_inbox, &h0).0;
    let partials: Vec<_> = shares0[1..]
        .iter()
        .map(|(_, s)| threshold::sign_partial(s, &d0))
        .collect();
    let sig0 = threshold::aggregate(&sharing0, &d0, &partials).unwrap();
    let r = inbox
        .appendBatch(
            h0.clone(),
            Bytes::from("batch 0"),
            Bytes::from(encoding::g1_to_eip2537(&sig0).to_vec()),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());

    // A fifth sequencer joins: the 4 old holders reshare to all 5. The group key does not change.
    let (out1, shares1) = run_round(&mut rng, 1, Some((out0, shares0.clone())), first_four, &keys, &dkg_keys);
    let sharing1 = out1.public().clone();
    assert_eq!(
        sharing1.public(),
        sharing0.public(),
        "resharing keeps the group public key"
    );
    assert_eq!(shares1.len(), 5);
    assert_eq!(sharing1.required(), 4, "more than 2/3 of 5");

    // Batch 1 signed by 4 of the new shares, including the newcomer's: accepted by the same L1 key.
    let h1 = header(1, 11, 20, digest::batch_hash(&h0));
    let d1 = digest::batch_signing_digest(chain_id, d.batch_inbox, &h1).0;
    let partials: Vec<_> = shares1[1..]
        .iter()
        .map(|(_, s)| threshold::sign_partial(s, &d1))
        .collect();
    let sig1 = threshold::aggregate(&sharing1, &d1, &partials).unwrap();
    let r = inbox
        .appendBatch(
            h1.clone(),
            Bytes::from("batch 1"),
            Bytes::from(encoding::g1_to_eip2537(&sig1).to_vec()),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        r.status(),
        "a signature of the reshared key verifies with the key registered at genesis"
    );

    // Old shares are not shares of the new polynomial: an old partial does not verify against the new sharing.
    let old_partial = threshold::sign_partial(&shares0[0].1, &d1);
    assert!(threshold::verify_partial(&sharing1, &d1, &old_partial).is_err());
}
