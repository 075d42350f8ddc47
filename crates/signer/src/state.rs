//! The signer's state: the requests decided state opened, the collector of partials, what was signed. It acts
//! on one [`Input`] at a time; the task ([`crate::task`]) feeds it from its mailbox.
//!
//! Requests open only from decided data: the chain announces each committed block with the ledger after it
//! (`metis_chain::Committed`); for each batch the ledger cut, the signer derives the header from its own chain
//! ([`crate::batches`]), computes the digest BatchInbox will check, signs it with
//! this node's share and publishes the partial over the authenticated links (`metis_net::sighub`). Peers'
//! partials are verified against the current sharing before they count ([`metis_mpc::collect::Collector`]);
//! with a quorum the signature is recovered, checked under the group key, stored (`batchsig/{index}`) and
//! published, so a node that has not aggregated yet takes it after checking it the same way. A key round that
//! completes gives a new sharing of the same group key: requests still open are signed again with the new share.

use crate::batches;
use crate::mailbox::Input;
use borsh::{BorshDeserialize, BorshSerialize};
use commonware_codec::{Encode, Read};
use metis_batcher::BatchBuilder;
use metis_chain::Committed;
use metis_mpc::collect::{Added, Collector};
use metis_mpc::{threshold, MinSig, PartialSignature, G1};
use metis_net::sighub::{Peer, SignHub, SignMsg};
use metis_net::PeerKey;
use metis_storage::Store;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Request ids: the kind in the top byte, the item's index below.
const KIND_BATCH: u64 = 1 << 56;
/// Requests open at once at most (more is a pool that cannot sign: the oldest stay unsigned, and the log says so).
const MAX_OPEN: usize = 1024;
/// Batches older than this many below the newest cut are not signed when this node derives them late (sync).
const SIGN_BACKLOG: u64 = 64;
/// An open request's own partial is published again this often (a peer that was down or behind gets it).
pub(crate) const REPEAT: Duration = Duration::from_secs(1);
/// Signatures kept for requests not open here yet, in all and per peer (a peer's lowest ids go first, so junk from
/// one peer crowds out only its own).
const MAX_EARLY_SIGS: usize = 256;
const MAX_EARLY_SIGS_PER_PEER: usize = 32;
/// Completed ids remembered (later partials for them are answered with the signature, not collected).
const MAX_DONE: usize = 4096;
/// Bad messages (undecodable, not the sender's share, not verifying) after which a peer is ignored for `MUTE`.
const MAX_BAD: u32 = 16;
const MUTE: Duration = Duration::from_secs(10);
/// Recent signing latencies kept for the API.
const MAX_LATENCIES: usize = 256;

const KIND_REWARDS: u64 = 2 << 56;
const KIND_SLASH: u64 = 3 << 56;
const INDEX_MASK: u64 = (1 << 56) - 1;

pub fn batch_request(index: u64) -> u64 {
    KIND_BATCH | index
}

pub fn rewards_request(batch_id: u64) -> u64 {
    KIND_REWARDS | batch_id
}

pub fn slash_request(id: u64) -> u64 {
    KIND_SLASH | id
}

/// Where the signature of request `id` is stored, and what to call it in logs.
fn signature_key(id: u64) -> Option<(String, &'static str)> {
    let index = id & INDEX_MASK;
    match id & !INDEX_MASK {
        KIND_BATCH => Some((metis_storage::schema::batch_signature(index), "batch")),
        KIND_REWARDS => Some((metis_storage::schema::reward_signature(index), "reward report")),
        KIND_SLASH => Some((metis_storage::schema::slash_signature(index), "slash")),
        _ => None,
    }
}

pub use metis_mpc::SigningKey;

/// Where BatchInbox lives: part of every batch digest.
#[derive(Clone, Copy, Debug)]
pub struct SignerConfig {
    pub l1_chain_id: u64,
    pub inbox: alloy_primitives::Address,
    /// LockingPool: part of every reward report digest.
    pub locking_pool: alloy_primitives::Address,
    /// Where payloads travel (a ledger parameter): blob mode puts the blobs' hashes in the header.
    pub mode: metis_batcher::DataMode,
}

/// A completed signature as stored.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct SignatureRecord {
    /// EIP-2537 G1 (what BatchInbox.appendBatch takes).
    pub signature: Vec<u8>,
    /// Decision of the block that cut the batch -> signature here.
    pub latency_ms: u64,
    /// Key round whose sharing signed (0 if taken from a peer).
    pub key_round: u64,
    /// Share indices whose partials recovered it here (empty if taken from a peer).
    pub signers: Vec<u32>,
}

/// What the API shows of the signer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SignerStatus {
    pub key_round: Option<u64>,
    pub has_share: bool,
    /// Requests waiting for a signature: (what, index, partials here, needed).
    pub open: Vec<(&'static str, u64, usize, usize)>,
    pub signed: u64,
    /// Recent batches: (index, ms from the cutting block's decision to the signature here).
    pub latencies_ms: VecDeque<(u64, u64)>,
    pub last_error: Option<String>,
}

pub type SharedSignerStatus = Arc<RwLock<SignerStatus>>;

struct Request {
    index: u64,
    digest: [u8; 32],
    decided_at: Instant,
    published: Instant,
}

pub(crate) struct Signer {
    cfg: SignerConfig,
    store: Store,
    hub: Arc<SignHub>,
    status: SharedSignerStatus,
    key: Option<SigningKey>,
    collector: Option<Collector>,
    requests: BTreeMap<u64, Request>,
    done: BTreeSet<u64>,
    early_sigs: BTreeMap<u64, (Vec<u8>, Peer)>,
    answered: BTreeMap<u64, Instant>,
    /// The batch being filled, block by block.
    builder: Option<BatchBuilder>,
    /// Per peer: bad messages counted, and until when it is ignored.
    peers: std::collections::HashMap<Peer, (u32, Instant)>,
}

impl Signer {
    pub(crate) fn new(cfg: SignerConfig, store: Store, hub: Arc<SignHub>, status: SharedSignerStatus) -> Self {
        Self {
            cfg,
            store,
            hub,
            status,
            key: None,
            collector: None,
            requests: BTreeMap::new(),
            done: BTreeSet::new(),
            early_sigs: BTreeMap::new(),
            answered: BTreeMap::new(),
            builder: None,
            peers: Default::default(),
        }
    }

    /// Starts with `key` (the key the node starts with): batches derived before a restart whose signature had
    /// not come yet, the ledger's last reward report, then cuts decided before it (or while syncing) that have
    /// no header yet.
    pub(crate) fn start(
        &mut self,
        key: Option<SigningKey>,
        last_report: Option<metis_pos::RewardReport>,
        open_slashes: &[metis_pos::SlashRequest],
    ) {
        if let Some(k) = key {
            self.set_key(k);
        }
        self.reopen_unsigned();
        if let Some(r) = last_report {
            self.rewards(&r, Instant::now());
        }
        for r in open_slashes {
            self.slash(r, Instant::now());
        }
        self.derive(None);
    }

    pub(crate) fn handle(&mut self, input: Input) {
        match input {
            Input::Committed(c) => self.on_committed(&c),
            Input::Peer(peer, msgs) => {
                for m in msgs {
                    self.on_peer(peer, m);
                }
            }
            Input::Repeat => self.repeat(),
        }
    }

    /// A committed block: a new key first, then the block into the open batch, then what the ledger asks to
    /// sign with it (a reward report, a batch cut).
    fn on_committed(&mut self, c: &Committed) {
        if let Some(k) = &c.key {
            self.set_key(k.clone());
        }
        let cut = c.ledger.batches().cut_at(c.height);
        let batch_first = cut.map(|b| b.first).unwrap_or(c.ledger.batches().open_first);
        if batch_first > 0 {
            self.on_block(c.height, batch_first);
        }
        if let Some(report) = c.ledger.rewards().report_at(c.height) {
            self.rewards(report, c.decided_at);
        }
        for r in c.ledger.offences().slashes_at(c.height) {
            self.slash(r, c.decided_at);
        }
        if let Some(b) = cut {
            self.derive(Some((b.index, c.decided_at)));
        }
    }

    fn set_key(&mut self, k: SigningKey) {
        info!(
            key_round = k.round,
            quorum = k.sharing.required(),
            has_share = k.share.is_some(),
            "threshold signer uses this key round"
        );
        self.collector = Some(Collector::new(k.sharing.clone(), MAX_OPEN));
        self.key = Some(k);
        // Same group key, new sharing: what is still open is signed again with the new share.
        let open: Vec<(u64, [u8; 32])> = self.requests.iter().map(|(id, r)| (*id, r.digest)).collect();
        for (id, digest) in open {
            self.open(id, digest);
        }
    }

    /// Adds decided block `height` to the batch being filled (from its first block on; after a restart the
    /// first cut is derived from the store instead).
    fn on_block(&mut self, height: u64, batch_first: u64) {
        let mut b = match self.builder.take() {
            Some(b) if b.first() == batch_first && b.next() == height => b,
            _ if height == batch_first => BatchBuilder::new(batch_first),
            _ => return,
        };
        let pushed = tokio::task::block_in_place(|| {
            batches::block(&self.store, height).and_then(|blk| b.push(&blk).map_err(Into::into))
        });
        match pushed {
            Ok(()) => self.builder = Some(b),
            Err(e) => debug!(height, error = %e, "batch builder reset; the cut reads its blocks again"),
        }
    }

    fn stored(&self, key: &str) -> bool {
        self.store.meta(key).ok().flatten().is_some()
    }

    /// Opens the signing request of a reward report (LockingPool.rewardsDigest over it).
    fn rewards(&mut self, r: &metis_pos::RewardReport, decided_at: Instant) {
        use alloy_primitives::U256;
        let ids: Vec<U256> = r.blocks.iter().map(|(id, _)| U256::from(*id)).collect();
        let blocks: Vec<U256> = r.blocks.iter().map(|(_, n)| U256::from(*n)).collect();
        let digest = metis_contracts::digest::rewards_digest(
            self.cfg.l1_chain_id,
            self.cfg.locking_pool,
            U256::from(r.batch_id),
            U256::from(r.start_epoch),
            U256::from(r.end_epoch),
            &ids,
            &blocks,
        );
        let id = rewards_request(r.batch_id);
        if self.stored(&metis_storage::schema::reward_signature(r.batch_id)) {
            return;
        }
        info!(report = r.batch_id, epochs = ?(r.start_epoch, r.end_epoch), blocks = ?r.blocks, "reward report to sign");
        self.track(
            id,
            Request {
                index: r.batch_id,
                digest: digest.0,
                decided_at,
                published: Instant::now(),
            },
        );
    }

    /// Opens the signing request of a slash the ledger asked for (LockingPool.slashDigest over it).
    fn slash(&mut self, r: &metis_pos::SlashRequest, decided_at: Instant) {
        use alloy_primitives::U256;
        if self.stored(&metis_storage::schema::slash_signature(r.id)) {
            return;
        }
        let digest = metis_contracts::digest::slash_digest(
            self.cfg.l1_chain_id,
            self.cfg.locking_pool,
            U256::from(r.sequencer),
            r.amount,
            r.evidence,
        );
        let id = slash_request(r.id);
        info!(slash = r.id, sequencer = r.sequencer, amount = %r.amount, evidence = %r.evidence, "slash to sign");
        self.track(
            id,
            Request {
                index: r.id,
                digest: digest.0,
                decided_at,
                published: Instant::now(),
            },
        );
    }

    /// Opens again the requests of recent batches that have a header but no signature here.
    fn reopen_unsigned(&mut self) {
        let next = match batches::next_index(&self.store) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "cannot read the batch cursor");
                return;
            }
        };
        for index in next.saturating_sub(SIGN_BACKLOG)..next {
            let signed = self.stored(&metis_storage::schema::batch_signature(index));
            let Ok(Some(h)) = batches::header(&self.store, index) else {
                continue;
            };
            if !signed {
                self.request(&h, Instant::now());
            }
        }
    }

    fn request(&mut self, h: &metis_contracts::bindings::BatchInbox::BatchHeader, decided_at: Instant) {
        let digest = metis_contracts::digest::batch_signing_digest(self.cfg.l1_chain_id, self.cfg.inbox, h);
        let id = batch_request(h.index);
        self.track(
            id,
            Request {
                index: h.index,
                digest: digest.0,
                decided_at,
                published: Instant::now(),
            },
        );
    }

    /// Derives the headers of every cut batch not derived yet, and opens their signing requests.
    fn derive(&mut self, cut: Option<(u64, Instant)>) {
        loop {
            let started = Instant::now();
            let (store, builder, mode) = (&self.store, &mut self.builder, self.cfg.mode);
            let derived = tokio::task::block_in_place(|| batches::derive_next(store, builder, mode));
            let d = match derived {
                Ok(Some(d)) => d,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "cannot derive the next batch header");
                    self.status.write().last_error = Some(e.to_string());
                    return;
                }
            };
            let index = d.header.index;
            let decided_at = match cut {
                Some((i, at)) if i == index => at,
                _ => Instant::now(),
            };
            info!(
                batch = index,
                first = d.header.l2FirstBlock,
                last = d.header.l2LastBlock,
                payload_bytes = d.payload.len(),
                raw_bytes = d.raw_len,
                derive_ms = started.elapsed().as_millis() as u64,
                "batch header derived"
            );
            let newest = cut.map(|(i, _)| i).unwrap_or(index);
            let signed = self.stored(&metis_storage::schema::batch_signature(index));
            if signed || index + SIGN_BACKLOG < newest {
                continue;
            }
            self.request(&d.header, decided_at);
        }
    }

    /// Keeps `r` as request `id` and opens it, unless `MAX_OPEN` requests are waiting already (a pool that
    /// cannot sign): then it is dropped with a warning, so the map stays bounded. A batch dropped here is opened
    /// again from the store when the key changes (`reopen_unsigned`, the last `SIGN_BACKLOG` batches).
    fn track(&mut self, id: u64, r: Request) {
        if !self.requests.contains_key(&id) && self.requests.len() >= MAX_OPEN {
            warn!(
                id,
                open = self.requests.len(),
                "too many signing requests waiting; not tracking this one"
            );
            return;
        }
        let digest = r.digest;
        self.requests.insert(id, r);
        self.open(id, digest);
    }

    /// Opens `id` in the collector, adds this node's partial and publishes it.
    fn open(&mut self, id: u64, digest: [u8; 32]) {
        let Some(c) = self.collector.as_mut() else { return };
        if !c.open(id, digest) {
            warn!(id, "too many signing requests open; this one waits");
            return;
        }
        if let Some((sig, _)) = self.early_sigs.remove(&id) {
            if self.take_signature(id, &sig) {
                return;
            }
        }
        let (Some(c), Some(k)) = (self.collector.as_mut(), self.key.as_ref()) else {
            return;
        };
        let Some(share) = &k.share else { return };
        let partial = threshold::sign_partial(share, &digest);
        let msg = SignMsg::Partial {
            round: k.round,
            id,
            partial: partial.encode().to_vec(),
        };
        let added = c.add(id, partial);
        if let Some(r) = self.requests.get_mut(&id) {
            r.published = Instant::now();
        }
        self.hub.publish(msg);
        if added == Added::Complete {
            self.complete(id);
        }
    }

    /// Counts a bad message from `peer`; after `MAX_BAD` its messages are ignored for `MUTE`.
    fn bad(&mut self, peer: Peer, why: &'static str) {
        let now = Instant::now();
        let e = self.peers.entry(peer).or_insert((0, now));
        e.0 += 1;
        debug!(peer = %PeerKey(peer), why, "bad signing message");
        if e.0 >= MAX_BAD {
            *e = (0, now + MUTE);
            warn!(peer = %PeerKey(peer), why, "peer sends bad signing messages; ignored for a while");
        }
    }

    fn on_peer(&mut self, peer: Peer, m: SignMsg) {
        if self.peers.get(&peer).is_some_and(|(_, until)| *until > Instant::now()) {
            return;
        }
        match m {
            SignMsg::Partial { round, id, partial } => {
                if self.done.contains(&id) {
                    self.answer(id);
                    return;
                }
                let (Some(c), Some(k)) = (self.collector.as_mut(), self.key.as_ref()) else {
                    return;
                };
                if round != k.round {
                    // Another sharing: its sender signs again once it has ours, or takes the signature.
                    return;
                }
                let mut buf = commonware_codec::Copying(partial.as_slice());
                let Ok(p) = PartialSignature::<MinSig>::read_cfg(&mut buf, &()) else {
                    return self.bad(peer, "undecodable partial signature");
                };
                // Partials are not relayed: each comes from the holder of its share, over its own link.
                if k.players.get(p.index.get() as usize) != Some(&peer) {
                    return self.bad(peer, "partial of another player's share");
                }
                match c.add(id, p) {
                    Added::Complete => self.complete(id),
                    Added::Refused(why) => self.bad(peer, why),
                    _ => {}
                }
            }
            SignMsg::Signature { id, signature } => {
                if self.done.contains(&id) {
                    return;
                }
                if self.requests.contains_key(&id) && self.collector.is_some() {
                    if !self.take_signature(id, &signature) {
                        self.bad(peer, "signature does not verify");
                    }
                } else {
                    self.keep_early_sig(peer, id, signature);
                }
            }
        }
    }

    /// A signature for a request not open here: kept (checked when it opens), within the bounds.
    fn keep_early_sig(&mut self, peer: Peer, id: u64, signature: Vec<u8>) {
        let own: Vec<u64> = self
            .early_sigs
            .iter()
            .filter(|(_, (_, p))| *p == peer)
            .map(|(id, _)| *id)
            .collect();
        if own.len() >= MAX_EARLY_SIGS_PER_PEER {
            if let Some(oldest) = own.first() {
                self.early_sigs.remove(oldest);
            }
        }
        if self.early_sigs.len() < MAX_EARLY_SIGS || self.early_sigs.contains_key(&id) {
            self.early_sigs.insert(id, (signature, peer));
        }
    }

    /// A peer still sends partials for `id`: it has not got the signature; send it again (at most once a second).
    fn answer(&mut self, id: u64) {
        let now = Instant::now();
        if self.answered.get(&id).is_some_and(|t| now.duration_since(*t) < REPEAT) {
            return;
        }
        let Some((key, _)) = signature_key(id) else {
            return;
        };
        if let Ok(Some(r)) = self.store.get::<SignatureRecord>(&key) {
            self.answered.insert(id, now);
            if self.answered.len() > MAX_DONE {
                self.answered.pop_first();
            }
            self.hub.repeat(SignMsg::Signature {
                id,
                signature: r.signature,
            });
        }
    }

    /// Takes a signature from a peer once it verifies under the group key over this node's own digest.
    fn take_signature(&mut self, id: u64, bytes: &[u8]) -> bool {
        let (Some(r), Some(k)) = (self.requests.get(&id), self.key.as_ref()) else {
            return false;
        };
        let Ok(sig) = metis_mpc::encoding::g1_from_eip2537(bytes) else {
            return false;
        };
        if threshold::verify(k.sharing.public(), &r.digest, &sig).is_err() {
            debug!(id, "a peer's signature does not verify; ignored");
            return false;
        }
        self.finish(id, &sig, 0, Vec::new());
        true
    }

    fn complete(&mut self, id: u64) {
        let Some(c) = self.collector.as_ref() else { return };
        let Some(sig) = c.signature(id).cloned() else { return };
        let round = self.key.as_ref().map(|k| k.round).unwrap_or_default();
        let signers = c.signers(id);
        self.finish(id, &sig, round, signers);
    }

    fn finish(&mut self, id: u64, sig: &G1, key_round: u64, signers: Vec<u32>) {
        let Some(r) = self.requests.remove(&id) else { return };
        let latency_ms = r.decided_at.elapsed().as_millis() as u64;
        let signature = metis_mpc::encoding::g1_to_eip2537(sig).to_vec();
        let record = SignatureRecord {
            signature: signature.clone(),
            latency_ms,
            key_round,
            signers: signers.clone(),
        };
        let Some((key, what)) = signature_key(id) else { return };
        let stored = metis_storage::encode(&record).and_then(|bytes| self.store.put_meta(&[(&key, &bytes)]));
        if let Err(e) = stored {
            warn!(what, index = r.index, error = %e, "cannot store the signature");
        }
        if let Some(c) = self.collector.as_mut() {
            c.close(id);
        }
        self.done.insert(id);
        if self.done.len() > MAX_DONE {
            self.done.pop_first();
        }
        self.hub.publish(SignMsg::Signature { id, signature });
        let mut st = self.status.write();
        st.signed += 1;
        if id & !INDEX_MASK == KIND_BATCH {
            metrics::counter!("metis_batches_signed_total").increment(1);
            metrics::histogram!("metis_batch_sign_seconds").record(r.decided_at.elapsed().as_secs_f64());
            st.latencies_ms.push_back((r.index, latency_ms));
            if st.latencies_ms.len() > MAX_LATENCIES {
                st.latencies_ms.pop_front();
            }
        }
        drop(st);
        info!(
            what,
            index = r.index,
            latency_ms,
            key_round,
            ?signers,
            "signed by the pool"
        );
    }

    /// Publishes the own partial of requests still open after a while again.
    fn repeat(&mut self) {
        let now = Instant::now();
        let stale: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| now.duration_since(r.published) >= REPEAT)
            .map(|(id, _)| *id)
            .collect();
        let (Some(k), false) = (self.key.as_ref(), stale.is_empty()) else {
            return;
        };
        let Some(share) = &k.share else { return };
        for id in stale {
            let Some(r) = self.requests.get_mut(&id) else { continue };
            r.published = now;
            let partial = threshold::sign_partial(share, &r.digest);
            self.hub.repeat(SignMsg::Partial {
                round: k.round,
                id,
                partial: partial.encode().to_vec(),
            });
        }
    }

    pub(crate) fn publish_status(&self) {
        let mut st = self.status.write();
        st.key_round = self.key.as_ref().map(|k| k.round);
        st.has_share = self.key.as_ref().is_some_and(|k| k.share.is_some());
        st.open = self
            .requests
            .iter()
            .map(|(id, r)| {
                let (have, need) = self.collector.as_ref().map(|c| c.progress(*id)).unwrap_or_default();
                let what = signature_key(*id).map_or("?", |(_, w)| w);
                (what, r.index, have, need)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(dir: &std::path::Path, key: SigningKey) -> Signer {
        let store = Store::open(&dir.join("chain.redb")).unwrap();
        let (hub, _rx) = SignHub::new();
        let cfg = SignerConfig {
            l1_chain_id: 1,
            inbox: Default::default(),
            locking_pool: Default::default(),
            mode: Default::default(),
        };
        let mut s = Signer::new(cfg, store, hub, Default::default());
        s.set_key(key);
        s
    }

    /// Share i's holder, as a peer.
    fn holder(i: u32) -> Peer {
        [i as u8 + 1; 32]
    }

    /// The signer of player 0 of a 4-player key (3 needed), in a fresh directory; the four shares.
    fn player_zero(name: &str) -> (std::path::PathBuf, Signer, Vec<metis_mpc::Share>) {
        let dir = std::env::temp_dir().join(format!("metis-signer-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sharing, shares) = metis_testkit::deal(4, 7);
        let s = signer(
            &dir,
            SigningKey {
                round: 0,
                sharing,
                share: Some(shares[0].clone()),
                players: (0..4).map(holder).collect(),
            },
        );
        (dir, s, shares)
    }

    /// Opens batch request `id` for `digest`, as decided state would.
    fn open_batch(s: &mut Signer, id: u64, digest: [u8; 32]) {
        s.track(
            id,
            Request {
                index: id & INDEX_MASK,
                digest,
                decided_at: Instant::now(),
                published: Instant::now(),
            },
        );
    }

    /// While the pool cannot sign (here nobody else sends a partial), requests pile up only to `MAX_OPEN`; one
    /// already tracked is still taken again (a key change reopens them).
    #[test]
    fn requests_stay_bounded_while_the_pool_cannot_sign() {
        let (dir, mut s, _) = player_zero("bounded");
        for i in 0..(MAX_OPEN as u64 + 500) {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&i.to_be_bytes());
            open_batch(&mut s, batch_request(i), digest);
        }
        assert_eq!(s.requests.len(), MAX_OPEN);
        assert!(
            s.requests.contains_key(&batch_request(0)) && !s.requests.contains_key(&batch_request(MAX_OPEN as u64))
        );
        open_batch(&mut s, batch_request(0), [0u8; 32]);
        assert_eq!(s.requests.len(), MAX_OPEN);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn partial(share: &metis_mpc::Share, digest: &[u8; 32]) -> SignMsg {
        SignMsg::Partial {
            round: 0,
            id: batch_request(0),
            partial: threshold::sign_partial(share, digest).encode().to_vec(),
        }
    }

    #[test]
    fn partials_count_only_from_their_holders_and_bad_peers_are_muted() {
        let (dir, mut s, shares) = player_zero("test");
        let (id, digest) = (batch_request(0), [5u8; 32]);
        open_batch(&mut s, id, digest);
        let progress = |s: &Signer| s.collector.as_ref().unwrap().progress(id);
        assert_eq!(progress(&s), (1, 3), "own partial");
        // Share 1's partial relayed by a stranger: not counted.
        s.on_peer([9; 32], partial(&shares[1], &digest));
        assert_eq!(progress(&s), (1, 3));
        // From its holder: counted.
        s.on_peer(holder(1), partial(&shares[1], &digest));
        assert_eq!(progress(&s), (2, 3));
        // Holder 2 sends garbage until muted; its valid partial is then ignored.
        for _ in 0..MAX_BAD {
            s.on_peer(
                holder(2),
                SignMsg::Partial {
                    round: 0,
                    id,
                    partial: vec![1, 2, 3],
                },
            );
        }
        s.on_peer(holder(2), partial(&shares[2], &digest));
        assert_eq!(progress(&s), (2, 3), "a muted peer's partial counted");
        // Holder 3 completes it: the signature is stored.
        s.on_peer(holder(3), partial(&shares[3], &digest));
        assert!(s.stored(&metis_storage::schema::batch_signature(0)));
        assert!(s.requests.is_empty() && s.done.contains(&id));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A player sending early partials and signatures for thousands of ids that never open fills only its own
    /// room: an honest early partial still counts when its request opens, and nobody is muted for it.
    #[test]
    fn junk_for_requests_that_never_open_crowds_out_only_its_sender() {
        let (dir, mut s, shares) = player_zero("junk");
        let (id, digest) = (batch_request(0), [5u8; 32]);
        // Holder 1's partial comes before this node opens the request.
        s.on_peer(holder(1), partial(&shares[1], &digest));
        for junk in 1..10_000u64 {
            let m = SignMsg::Partial {
                round: 0,
                id: batch_request(junk),
                partial: threshold::sign_partial(&shares[2], &digest).encode().to_vec(),
            };
            s.on_peer(holder(2), m);
            s.on_peer(
                [9; 32],
                SignMsg::Signature {
                    id: batch_request(junk),
                    signature: vec![0; 96],
                },
            );
        }
        let c = s.collector.as_ref().unwrap();
        assert_eq!(c.early_len(), metis_mpc::collect::MAX_EARLY_PER_PLAYER + 1);
        assert_eq!(s.early_sigs.len(), MAX_EARLY_SIGS_PER_PEER);
        assert!(
            s.peers.values().all(|(bad, _)| *bad == 0),
            "an honest sender was counted bad"
        );
        open_batch(&mut s, id, digest);
        assert_eq!(
            s.collector.as_ref().unwrap().progress(id),
            (2, 3),
            "own and holder 1's early one"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A ledger whose block 4 carried evidence against sequencer 2: a slash is open at height 4.
    fn ledger_with_a_slash() -> metis_pos::Ledger {
        use alloy_primitives::{keccak256, B256, U256};
        let seq = |id: u64| metis_pos::Sequencer {
            id,
            signer: alloy_primitives::Address::with_last_byte(id as u8),
            consensus_key: B256::from(
                ed25519_dalek::SigningKey::from_bytes(&keccak256(format!("signer-test-{id}")).0)
                    .verifying_key()
                    .to_bytes(),
            ),
            dkg_key: keccak256(format!("dkg{id}")),
            stake: U256::from(1000u64),
            status: metis_pos::SequencerStatus::Active,
            jailed_until_epoch: 0,
            l1_jailed: false,
        };
        let mut l = metis_pos::Ledger::genesis(
            metis_pos::Params {
                power_unit: U256::from(1u64),
                ..Default::default()
            },
            (1..=4).map(seq).collect(),
            B256::ZERO,
        )
        .unwrap();
        for h in 1..=4u64 {
            let proposer = l.proposer(0);
            l.apply_block(&metis_pos::BlockInfo {
                height: h,
                round: 0,
                proposer,
                seed: keccak256(h.to_be_bytes()),
                timestamp: 0,
                txs: 0,
                signers: vec![],
            })
            .unwrap();
        }
        let m = metis_pos::Misbehaviour {
            kind: metis_pos::OffenceKind::DoubleVote,
            sequencer: 2,
            height: 3,
            evidence: B256::repeat_byte(3),
        };
        l.apply_misbehaviour(&[m], B256::ZERO).unwrap();
        l
    }

    #[test]
    fn a_slash_the_ledger_asks_for_is_signed_by_the_pool() {
        let dir = std::env::temp_dir().join(format!("metis-signer-slash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sharing, shares) = metis_testkit::deal(4, 9);
        let holder = |i: u32| [i as u8 + 1; 32];
        let mut s = signer(
            &dir,
            SigningKey {
                round: 0,
                sharing: sharing.clone(),
                share: Some(shares[0].clone()),
                players: (0..4).map(holder).collect(),
            },
        );
        let ledger = std::sync::Arc::new(ledger_with_a_slash());
        let request = ledger
            .offences()
            .slashes_at(4)
            .next()
            .cloned()
            .expect("a slash at height 4");
        s.handle(Input::Committed(std::sync::Arc::new(Committed {
            height: 4,
            ledger,
            decided_at: Instant::now(),
            key: None,
            round: 0,
            decision: None,
        })));
        let id = slash_request(request.id);
        let digest = s.requests.get(&id).expect("the slash is open").digest;
        let expected = metis_contracts::digest::slash_digest(
            1,
            Default::default(),
            alloy_primitives::U256::from(request.sequencer),
            request.amount,
            request.evidence,
        );
        assert_eq!(digest, expected.0, "the digest LockingPool.slash checks");
        for i in 1..3u32 {
            let p = threshold::sign_partial(&shares[i as usize], &digest);
            s.handle(Input::Peer(
                holder(i),
                vec![SignMsg::Partial {
                    round: 0,
                    id,
                    partial: p.encode().to_vec(),
                }],
            ));
        }
        let rec: SignatureRecord = s
            .store
            .get(&metis_storage::schema::slash_signature(request.id))
            .unwrap()
            .expect("stored");
        let sig = metis_mpc::encoding::g1_from_eip2537(&rec.signature).unwrap();
        assert!(threshold::verify(sharing.public(), &digest, &sig).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
