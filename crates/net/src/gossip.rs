//! Transaction gossip between the sequencers: whatever a node's RPC admits reaches every other node's mempool,
//! so whoever proposes next has it and a rotation or failover loses nothing.
//!
//! Every node dials every peer it is configured with and sends on the connections it dialled; a connection a
//! peer dialled carries this node's traffic back only while this node has no dialled link to that peer (so a
//! newcomer that only some nodes list still receives everything). Every connection is received on. A
//! connection starts with a handshake that authenticates both ends by their ed25519 consensus keys (only keys
//! the node's [`Allowed`] check accepts: the ledger's sequencers that have not left, asked at each handshake)
//! and agrees on fresh keys by ephemeral X25519; every frame after it is sealed with ChaCha20-Poly1305 under a per-direction key and counter, so a
//! frame cannot be forged, replayed, reordered or read on the way. Frames are size-limited before they are
//! read. On (re)connecting, a node sends its whole mempool, so transactions admitted while a peer was down reach
//! it too.
//!
//! Followers (RPC nodes, [`crate::followers`]) are a second class: the same handshake, but a sequencer only
//! takes their transactions, within their own limits, and sends them nothing; a node that is a follower sends
//! only its transactions.
//!
//! A frame starts with its type: transactions, threshold-signing messages ([`crate::sighub`]) or equivocation
//! evidence ([`crate::evidence`]); the last two go out as soon as they are published, ahead of queued
//! transactions. A peer whose evidence the consensus app refuses too often has its link cut and refused for a
//! while.

use crate::evidence::{decode_items, encode_items, EvidenceHub, MAX_EVIDENCE_PER_FRAME};
use crate::followers::{Banned, Bucket, FollowerLimits, InvalidBudget, PeerClass};
use crate::sighub::{decode_msgs, encode_msgs, SignHub, SignMsg, MAX_SIGN_MSGS};
use crate::PeerKey;
use alloy_eips::eip2718::Encodable2718;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use metis_chain::Chain;
use metis_execution::RecoveredTx;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tracing::{debug, info, info_span, warn, Instrument};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

const VERSION: u8 = 2;
const FRAME_TXS: u8 = 0;
const FRAME_SIGN: u8 = 1;
const FRAME_EVIDENCE: u8 = 2;
const HELLO_LEN: usize = 1 + 8 + 32 + 32;
/// Largest sealed frame (plaintext limit plus the tag).
pub const MAX_FRAME: usize = 1024 * 1024;
const MAX_TXS_PER_FRAME: usize = 4096;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Inbound connections in their handshake at once; beyond, a new one is closed at once (a stranger holding many
/// costs each one [`HANDSHAKE_TIMEOUT`] of one slot, and this node's own dials still reach its peers).
const MAX_PENDING_HANDSHAKES: usize = 64;
/// Authenticated inbound links at once (one per peer and direction in normal operation).
const MAX_INBOUND_LINKS: usize = 256;
/// How long the accept loop waits after a failed accept (out of descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(&'static str),
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    #[error("frame fails authentication")]
    BadFrame,
    #[error("no randomness")]
    Random,
    #[error("the peer sent evidence or transactions that were refused too often; its link is refused for a while")]
    Banned,
    #[error("too many inbound links")]
    TooManyLinks,
    #[error("a follower sent a frame other than transactions")]
    FollowerFrame,
    #[error(
        "the follower sent more refused or malformed transactions than its budget; its link is refused for a while"
    )]
    FollowerDropped,
    #[error("admission: {0}")]
    Admission(#[from] metis_chain::admission::AdmissionError),
}

#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub chain_id: u64,
    /// This node is a follower: it sends its transactions to the sequencers it dials and nothing else.
    pub follower: bool,
    /// What this node allows the followers that link to it.
    pub follower_limits: FollowerLimits,
}

struct Session {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    send_ctr: u64,
    recv_ctr: u64,
    peer: VerifyingKey,
    class: PeerClass,
}

fn nonce(ctr: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&ctr.to_be_bytes());
    Nonce::from(n)
}

fn direction_key(shared: &[u8; 32], transcript: &[u8; 32], sender: &VerifyingKey) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"metis-seq/gossip/key");
    h.update(shared);
    h.update(transcript);
    h.update(sender.as_bytes());
    let k: [u8; 32] = h.finalize().into();
    ChaCha20Poly1305::new(&Key::from(k))
}

fn sig_msg(transcript: &[u8; 32], signer: &VerifyingKey) -> Vec<u8> {
    let mut m = b"metis-seq/gossip/auth".to_vec();
    m.extend_from_slice(transcript);
    m.extend_from_slice(signer.as_bytes());
    m
}

async fn handshake(
    stream: &mut TcpStream,
    key: &SigningKey,
    chain_id: u64,
    allowed: &Allowed,
) -> Result<Session, GossipError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| GossipError::Random)?;
    let eph = StaticSecret::from(seed);
    let me = key.verifying_key();
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.push(VERSION);
    hello.extend_from_slice(&chain_id.to_be_bytes());
    hello.extend_from_slice(me.as_bytes());
    hello.extend_from_slice(XPublic::from(&eph).as_bytes());
    stream.write_all(&hello).await?;
    let mut theirs = [0u8; HELLO_LEN];
    stream.read_exact(&mut theirs).await?;
    if theirs[0] != VERSION {
        return Err(GossipError::Handshake("protocol version"));
    }
    if theirs[1..9] != chain_id.to_be_bytes() {
        return Err(GossipError::Handshake("another chain"));
    }
    let peer_bytes: [u8; 32] = theirs[9..41].try_into().map_err(|_| GossipError::Handshake("key"))?;
    let class = match allowed(&peer_bytes) {
        Some(c) if peer_bytes != *me.as_bytes() => c,
        _ => {
            return Err(GossipError::Handshake(
                "peer is neither a sequencer nor an allowed follower",
            ))
        }
    };
    let peer = VerifyingKey::from_bytes(&peer_bytes).map_err(|_| GossipError::Handshake("peer key"))?;
    let peer_eph: [u8; 32] = theirs[41..73].try_into().map_err(|_| GossipError::Handshake("key"))?;
    let shared = eph.diffie_hellman(&XPublic::from(peer_eph));
    if !shared.was_contributory() {
        return Err(GossipError::Handshake("degenerate key exchange"));
    }
    let (a, b) = if hello.as_slice() < theirs.as_slice() {
        (hello.as_slice(), theirs.as_slice())
    } else {
        (theirs.as_slice(), hello.as_slice())
    };
    let transcript: [u8; 32] = Sha256::new()
        .chain_update(b"metis-seq/gossip/v1")
        .chain_update(a)
        .chain_update(b)
        .finalize()
        .into();
    let sig = key.sign(&sig_msg(&transcript, &me));
    stream.write_all(&sig.to_bytes()).await?;
    let mut their_sig = [0u8; 64];
    stream.read_exact(&mut their_sig).await?;
    peer.verify_strict(
        &sig_msg(&transcript, &peer),
        &ed25519_dalek::Signature::from_bytes(&their_sig),
    )
    .map_err(|_| GossipError::Handshake("bad signature"))?;
    Ok(Session {
        send: direction_key(shared.as_bytes(), &transcript, &me),
        recv: direction_key(shared.as_bytes(), &transcript, &peer),
        send_ctr: 0,
        recv_ctr: 0,
        peer,
        class,
    })
}

impl Session {
    /// The two directions, for a connection read and written at once.
    fn split(self) -> (SendHalf, RecvHalf, VerifyingKey) {
        (
            SendHalf {
                cipher: self.send,
                ctr: self.send_ctr,
            },
            RecvHalf {
                cipher: self.recv,
                ctr: self.recv_ctr,
            },
            self.peer,
        )
    }
}

struct SendHalf {
    cipher: ChaCha20Poly1305,
    ctr: u64,
}

struct RecvHalf {
    cipher: ChaCha20Poly1305,
    ctr: u64,
}

impl SendHalf {
    async fn write<W: AsyncWrite + Unpin>(&mut self, stream: &mut W, plain: &[u8]) -> Result<(), GossipError> {
        let ct = self
            .cipher
            .encrypt(&nonce(self.ctr), plain)
            .map_err(|_| GossipError::BadFrame)?;
        self.ctr += 1;
        if ct.len() > MAX_FRAME {
            return Err(GossipError::FrameTooLarge(ct.len()));
        }
        stream.write_all(&(ct.len() as u32).to_be_bytes()).await?;
        stream.write_all(&ct).await?;
        Ok(())
    }
}

impl RecvHalf {
    async fn read<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> Result<Vec<u8>, GossipError> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(GossipError::FrameTooLarge(len));
        }
        let mut ct = vec![0u8; len];
        stream.read_exact(&mut ct).await?;
        let plain = self
            .cipher
            .decrypt(&nonce(self.ctr), ct.as_slice())
            .map_err(|_| GossipError::BadFrame)?;
        self.ctr += 1;
        Ok(plain)
    }
}

/// Which keys may connect, and as what: asked at every handshake, so the answer follows the sequencer set.
pub type Allowed = Arc<dyn Fn(&[u8; 32]) -> Option<PeerClass> + Send + Sync>;

/// Peers this node has a dialled link to (by consensus key, with a count): a link a peer dialled carries this
/// node's traffic to it only while there is none, so a peer that does not list this node (a newcomer) still
/// gets everything, and two nodes that list each other do not send everything twice.
#[derive(Clone, Default)]
struct Dialled(Arc<parking_lot::Mutex<std::collections::HashMap<[u8; 32], usize>>>);

impl Dialled {
    fn has(&self, peer: &[u8; 32]) -> bool {
        self.0.lock().get(peer).is_some_and(|n| *n > 0)
    }

    fn peers(&self) -> usize {
        self.0.lock().len()
    }

    fn up(&self, peer: [u8; 32]) -> DialledGuard {
        *self.0.lock().entry(peer).or_default() += 1;
        DialledGuard(self.clone(), peer)
    }
}

struct DialledGuard(Dialled, [u8; 32]);

impl Drop for DialledGuard {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock();
        if let Some(n) = m.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Counts the distinct peers with a link of either direction up, for `metis_peers{transport="gossip"}`.
fn linked(ctx: &Ctx, peer: [u8; 32]) -> LinkedGuard {
    let guard = ctx.linked.up(peer);
    metrics::gauge!("metis_peers", "transport" => "gossip").set(ctx.linked.peers() as f64);
    LinkedGuard(guard)
}

struct LinkedGuard(DialledGuard);

impl Drop for LinkedGuard {
    fn drop(&mut self) {
        // The inner guard drops after this body: the count it leaves is one lower.
        let m = (self.0).0 .0.lock();
        let after = m
            .len()
            .saturating_sub(usize::from(m.get(&self.0 .1).is_some_and(|n| *n == 1)));
        drop(m);
        metrics::gauge!("metis_peers", "transport" => "gossip").set(after as f64);
    }
}

/// What every link needs.
#[derive(Clone)]
struct Ctx {
    key: Arc<SigningKey>,
    chain_id: u64,
    allowed: Allowed,
    backend: Arc<Chain>,
    hub: Arc<SignHub>,
    evidence: Arc<EvidenceHub>,
    dialled: Dialled,
    /// Every link up, by peer (inbound and dialled).
    linked: Dialled,
    follower: bool,
    followers: Arc<FollowerState>,
}

/// What the followers linked to this node share: their links, their common rate and the keys refused.
struct FollowerState {
    limits: FollowerLimits,
    links: Arc<tokio::sync::Semaphore>,
    total: parking_lot::Mutex<Bucket>,
    banned: parking_lot::Mutex<Banned>,
}

/// Starts gossip: the listener, one dialled link per configured peer, and the feed from this node's RPC (and its
/// signing hub). Returns the bound listen address.
pub async fn start(
    cfg: GossipConfig,
    key: SigningKey,
    allowed: Allowed,
    backend: Arc<Chain>,
    hub: Arc<SignHub>,
    evidence: Arc<EvidenceHub>,
) -> Result<SocketAddr, GossipError> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let local = listener.local_addr()?;
    let ctx = Ctx {
        key: Arc::new(key),
        chain_id: cfg.chain_id,
        allowed,
        backend,
        hub,
        evidence,
        dialled: Dialled::default(),
        linked: Dialled::default(),
        follower: cfg.follower,
        followers: Arc::new(FollowerState {
            links: Arc::new(tokio::sync::Semaphore::new(cfg.follower_limits.max_links)),
            total: parking_lot::Mutex::new(Bucket::new(
                f64::from(cfg.follower_limits.total_txs_per_sec),
                std::time::Instant::now(),
            )),
            banned: parking_lot::Mutex::new(Banned::default()),
            limits: cfg.follower_limits,
        }),
    };
    tokio::spawn(accept_loop(listener, ctx.clone()));
    for peer in cfg.peers {
        let ctx = ctx.clone();
        tokio::spawn(dial_loop(peer, ctx).instrument(info_span!("gossip-out", peer = %peer)));
    }
    info!(%local, "transaction gossip listening");
    Ok(local)
}

/// Accepts inbound connections, each in its own task, within the pending-handshake and link limits.
async fn accept_loop(listener: TcpListener, ctx: Ctx) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    let links = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_LINKS));
    let mut closed = 0u64;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: retrying at once would spin.
                warn!(error = %e, "gossip accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(handshake) = pending.clone().try_acquire_owned() else {
            closed += 1;
            if closed.is_power_of_two() {
                warn!(
                    closed,
                    "gossip: too many connections in their handshake; closing new ones"
                );
            }
            continue;
        };
        let (ctx, links) = (ctx.clone(), links.clone());
        tokio::spawn(
            async move {
                if let Err(e) = accept(stream, &ctx, handshake, &links).await {
                    debug!(error = %e, "gossip connection closed");
                }
            }
            .instrument(info_span!("gossip-in", peer = %addr)),
        );
    }
}

/// The authenticated handshake on a fresh connection, within its deadline.
async fn secure(stream: &mut TcpStream, ctx: &Ctx) -> Result<Session, GossipError> {
    stream.set_nodelay(true)?;
    let s = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(stream, &ctx.key, ctx.chain_id, &ctx.allowed),
    )
    .await
    .map_err(|_| GossipError::Handshake("timed out"))??;
    if ctx.evidence.banned(&s.peer.to_bytes(), std::time::Instant::now()) {
        return Err(GossipError::Banned);
    }
    Ok(s)
}

async fn accept(
    mut stream: TcpStream,
    ctx: &Ctx,
    handshake: tokio::sync::OwnedSemaphorePermit,
    links: &Arc<tokio::sync::Semaphore>,
) -> Result<(), GossipError> {
    let s = secure(&mut stream, ctx).await?;
    drop(handshake);
    let _link = links
        .clone()
        .try_acquire_owned()
        .map_err(|_| GossipError::TooManyLinks)?;
    let peer = s.peer.to_bytes();
    if s.class == PeerClass::Follower {
        return follower_link(stream, s, ctx).await;
    }
    debug!(peer = %PeerKey(peer), "gossip peer connected (inbound)");
    let dialled = ctx.dialled.clone();
    run_link(stream, s, ctx, move || !dialled.has(&peer)).await
}

/// The longest a follower is refused, whatever the config says (an `Instant` far ahead would overflow).
const MAX_BAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// A follower's link to one sequencer without a node behind it: for tools that forward transactions, and for
/// tests that play a hostile follower. The sequencer sends a follower nothing, so a read ends only when it
/// closes the link.
pub struct FollowerLink {
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
    send: SendHalf,
}

impl FollowerLink {
    pub async fn connect(addr: SocketAddr, key: &SigningKey, chain_id: u64) -> Result<Self, GossipError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        // The sequencer's own check decides; this end takes whoever answers for `addr`.
        let anyone: Allowed = Arc::new(|_| Some(PeerClass::Sequencer));
        let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, key, chain_id, &anyone))
            .await
            .map_err(|_| GossipError::Handshake("timed out"))??;
        let (send, _, _) = s.split();
        let (read, write) = stream.into_split();
        Ok(Self { read, write, send })
    }

    /// Sends raw (EIP-2718) transactions, in as many frames as the limits need.
    pub async fn send_txs<T: AsRef<[u8]>>(&mut self, txs: &[T]) -> Result<(), GossipError> {
        for frame in batches(txs) {
            self.send.write(&mut self.write, &frame).await?;
        }
        Ok(())
    }

    /// Resolves when the sequencer closes the link.
    pub async fn closed(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.read.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

/// A follower's link: its transactions are read within its limits and admitted like a sequencer's; nothing is
/// sent back.
async fn follower_link(stream: TcpStream, s: Session, ctx: &Ctx) -> Result<(), GossipError> {
    let f = &ctx.followers;
    let peer = s.peer.to_bytes();
    if f.banned.lock().is_banned(&peer, std::time::Instant::now()) {
        return Err(GossipError::Banned);
    }
    let _slot = f
        .links
        .clone()
        .try_acquire_owned()
        .map_err(|_| GossipError::TooManyLinks)?;
    info!(peer = %PeerKey(peer), "follower linked");
    let (mut r, _w) = stream.into_split();
    let (_, mut rx, _) = s.split();
    let now = std::time::Instant::now();
    let mut txs_rate = Bucket::new(f64::from(f.limits.txs_per_sec), now);
    let mut bytes_rate = Bucket::new(f.limits.bytes_per_sec as f64, now);
    let mut invalid = InvalidBudget::new(f.limits.invalid_per_min, now);
    let mut throttled = 0u64;
    loop {
        let frame = rx.read(&mut r).await?;
        let (kind, body) = frame.split_first().ok_or(GossipError::BadFrame)?;
        if *kind != FRAME_TXS {
            warn!(peer = %PeerKey(peer), kind, "cutting a follower's link: it may send only transactions");
            return Err(GossipError::FollowerFrame);
        }
        let txs = decode_txs(body)?;
        // Over its rate, the follower is read more slowly: TCP pushes back on it.
        let now = std::time::Instant::now();
        let n = txs.len() as f64;
        let wait = txs_rate
            .take(n, now)
            .max(bytes_rate.take(frame.len() as f64, now))
            .max(f.total.lock().take(n, now));
        if !wait.is_zero() {
            throttled = throttled.saturating_add(1);
            if throttled.is_power_of_two() {
                info!(peer = %PeerKey(peer), wait_ms = wait.as_millis() as u64, throttled, "throttling a follower");
            }
            tokio::time::sleep(wait).await;
        }
        let left = invalid.left(std::time::Instant::now());
        let a = admit(&ctx.backend, txs, Some(left)).await?;
        let bad = u32::try_from(a.refused.saturating_add(a.malformed)).unwrap_or(u32::MAX);
        debug!(
            added = a.added,
            refused = a.refused,
            malformed = a.malformed,
            dup = a.dup,
            "follower frame"
        );
        if invalid.spend(bad, std::time::Instant::now()) {
            let now = std::time::Instant::now();
            f.banned.lock().ban(peer, now + f.limits.ban.min(MAX_BAN), now);
            warn!(
                peer = %PeerKey(peer),
                refused = a.refused,
                malformed = a.malformed,
                ban_secs = f.limits.ban.as_secs(),
                "dropping a follower: more refused or malformed transactions than its budget"
            );
            return Err(GossipError::FollowerDropped);
        }
    }
}

async fn dial_loop(peer: SocketAddr, ctx: Ctx) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Err(e) = dial(peer, &ctx).await {
            debug!(error = %e, "gossip link down, reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn dial(peer: SocketAddr, ctx: &Ctx) -> Result<(), GossipError> {
    let mut stream = TcpStream::connect(peer).await?;
    let s = secure(&mut stream, ctx).await?;
    info!(peer = %PeerKey(s.peer.to_bytes()), "gossip link up");
    let _up = ctx.dialled.up(s.peer.to_bytes());
    run_link(stream, s, ctx, || true).await
}

/// One authenticated connection: receives on it all along, and sends on it while `sending` says so. Ends with
/// the first error of either direction.
async fn run_link(stream: TcpStream, s: Session, ctx: &Ctx, sending: impl Fn() -> bool) -> Result<(), GossipError> {
    let (mut r, mut w) = stream.into_split();
    let (mut tx, mut rx, peer) = s.split();
    let peer = peer.to_bytes();
    let _linked = linked(ctx, peer);
    let send = async {
        loop {
            if sending() {
                send_while(&mut tx, &mut w, ctx, &sending).await?;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        r = receive(&mut rx, &mut r, ctx, peer) => r,
        r = send => r,
    }
}

async fn receive<R: AsyncRead + Unpin>(
    rx: &mut RecvHalf,
    stream: &mut R,
    ctx: &Ctx,
    peer: [u8; 32],
) -> Result<(), GossipError> {
    loop {
        let frame = rx.read(stream).await?;
        // The app's verdicts on this peer's evidence arrive after its frames: looked at before each next one.
        if ctx.evidence.banned(&peer, std::time::Instant::now()) {
            warn!(peer = %PeerKey(peer), "cutting the link: the peer's evidence was refused too often");
            return Err(GossipError::Banned);
        }
        let (kind, body) = frame.split_first().ok_or(GossipError::BadFrame)?;
        if *kind == FRAME_SIGN {
            ctx.hub.deliver(peer, decode_msgs(body).ok_or(GossipError::BadFrame)?);
            continue;
        }
        if *kind == FRAME_EVIDENCE {
            ctx.evidence
                .deliver(peer, decode_items(body).ok_or(GossipError::BadFrame)?);
            continue;
        }
        if *kind != FRAME_TXS {
            return Err(GossipError::BadFrame);
        }
        let txs = decode_txs(body)?;
        let Admitted {
            added,
            refused,
            malformed,
            dup,
            recover,
            admit: admit_time,
        } = admit(&ctx.backend, txs, None).await?;
        // A peer only relays what it admitted, and admission decodes and recovers: an undecodable transaction or
        // a bad signature is never an honest peer's (a refused one may be: stale by a block, underpriced since).
        if malformed > 0 {
            warn!(peer = %PeerKey(peer), malformed, "gossip frame with malformed transactions");
            ctx.evidence.penalize(peer, std::time::Instant::now());
        }
        debug!(
            added,
            refused,
            malformed,
            dup,
            recover_us = recover.as_micros() as u64,
            admit_us = admit_time.as_micros() as u64,
            "gossip frame"
        );
    }
}

fn decode_txs(body: &[u8]) -> Result<Vec<Vec<u8>>, GossipError> {
    let txs: Vec<Vec<u8>> = borsh::from_slice(body).map_err(|_| GossipError::BadFrame)?;
    if txs.len() > MAX_TXS_PER_FRAME {
        return Err(GossipError::BadFrame);
    }
    Ok(txs)
}

/// What became of one frame's transactions.
#[derive(Default)]
struct Admitted {
    added: usize,
    refused: usize,
    malformed: usize,
    dup: usize,
    recover: Duration,
    admit: Duration,
}

/// Admits a frame's transactions to the mempool. A sequencer's are not relayed further (the sequencers form a
/// full mesh); a follower's (`max_invalid` set) are, like this node's own users', so they reach the sequencers
/// the follower has no link to. With `max_invalid`, stops once more were refused or malformed (the rest of the
/// frame is not looked at).
async fn admit(backend: &Arc<Chain>, txs: Vec<Vec<u8>>, max_invalid: Option<u32>) -> Result<Admitted, GossipError> {
    // Recovering thousands of senders is CPU work: on the low-priority admission threads, so consensus keeps
    // the CPU while a big frame is checked.
    let _waiting = backend.enter_admission(txs.len());
    backend
        .in_admission(move |backend| admit_now(backend, &txs, max_invalid))
        .await
        .map_err(GossipError::from)
}

fn admit_now(backend: &Chain, txs: &[Vec<u8>], max_invalid: Option<u32>) -> Admitted {
    let mut a = Admitted::default();
    let over = |a: &Admitted| max_invalid.is_some_and(|m| a.refused.saturating_add(a.malformed) > m as usize);
    // Copies of what this node has (its RPC took it too, or a block carried it before gossip did) are
    // dropped by hash before the sender recovery.
    let mut fresh = Vec::with_capacity(txs.len());
    for raw in txs {
        match RecoveredTx::decode_envelope(raw) {
            Ok(env) => fresh.push(env),
            Err(_) => a.malformed += 1,
        }
        if over(&a) {
            return a;
        }
    }
    let hashes: Vec<_> = fresh.iter().map(|e| *e.tx_hash()).collect();
    let known = backend.txs_known(&hashes);
    for (env, known) in fresh.into_iter().zip(known) {
        if over(&a) {
            break;
        }
        if known {
            a.dup += 1;
            continue;
        }
        let t = std::time::Instant::now();
        let decoded = RecoveredTx::from_envelope(env);
        a.recover += t.elapsed();
        match decoded {
            Ok(tx) => {
                let t = std::time::Instant::now();
                let r = if max_invalid.is_some() {
                    backend.submit(tx)
                } else {
                    backend.submit_from_peer(tx)
                };
                a.admit += t.elapsed();
                match r {
                    Ok(_) => a.added += 1,
                    Err(_) => a.refused += 1,
                }
            }
            Err(_) => a.malformed += 1,
        }
    }
    a
}

async fn send_pool<W: AsyncWrite + Unpin>(
    s: &mut SendHalf,
    stream: &mut W,
    backend: &metis_chain::Chain,
) -> Result<usize, GossipError> {
    let mempool: Vec<Vec<u8>> = backend.mempool().all().map(|t| t.envelope.encoded_2718()).collect();
    let n = mempool.len();
    for batch in batches(&mempool) {
        s.write(stream, &batch).await?;
    }
    Ok(n)
}

/// Sends this node's signing messages and transactions until `sending` turns false (or the link fails).
async fn send_while<W: AsyncWrite + Unpin>(
    s: &mut SendHalf,
    stream: &mut W,
    ctx: &Ctx,
    sending: &impl Fn() -> bool,
) -> Result<(), GossipError> {
    let (backend, hub) = (&ctx.backend, &ctx.hub);
    // Everything pending so far, so nothing admitted while the link was down is missed; then the local log
    // from here on (a transaction admitted in between may go twice; the peer refuses the copy).
    let mut cursor = backend.local_txs_head();
    if ctx.follower {
        return send_txs_only(s, stream, backend, cursor, sending).await;
    }
    let mut signing = hub.subscribe();
    let mut evidence = ctx.evidence.subscribe();
    send_sign(s, stream, &hub.snapshot()).await?;
    send_evidence(s, stream, &ctx.evidence.snapshot()).await?;
    send_pool(s, stream, backend).await?;
    while sending() {
        // Signing messages and evidence first: their latency is the signature's, and the jail's.
        let mut out = Vec::new();
        loop {
            match signing.try_recv() {
                Ok(m) => out.push(SignMsg::clone(&m)),
                Err(broadcast::error::TryRecvError::Lagged(_)) => out.extend(hub.snapshot()),
                Err(_) => break,
            }
        }
        send_sign(s, stream, &out).await?;
        let mut items = Vec::new();
        loop {
            match evidence.try_recv() {
                Ok(e) => items.push(Vec::clone(&e)),
                Err(broadcast::error::TryRecvError::Lagged(_)) => items.extend(ctx.evidence.snapshot()),
                Err(_) => break,
            }
        }
        send_evidence(s, stream, &items).await?;
        let next = backend.local_txs_since(cursor, MAX_TXS_PER_FRAME);
        cursor = next.cursor;
        if next.gap {
            let n = send_pool(s, stream, backend).await?;
            warn!(
                sent = n,
                "gossip fell behind this node's RPC; sent the whole mempool instead"
            );
            continue;
        }
        if next.txs.is_empty() {
            tokio::select! {
                _ = backend.local_tx_arrived() => {}
                m = signing.recv() => match m {
                    Ok(m) => send_sign(s, stream, std::slice::from_ref(&*m)).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => send_sign(s, stream, &hub.snapshot()).await?,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                e = evidence.recv() => match e {
                    Ok(e) => send_evidence(s, stream, std::slice::from_ref(&*e)).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        send_evidence(s, stream, &ctx.evidence.snapshot()).await?
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        for batch in batches(&next.txs) {
            s.write(stream, &batch).await?;
        }
    }
    Ok(())
}

/// A follower's side of a link: its whole mempool, then what its RPC admits from here on.
async fn send_txs_only<W: AsyncWrite + Unpin>(
    s: &mut SendHalf,
    stream: &mut W,
    backend: &Chain,
    mut cursor: u64,
    sending: &impl Fn() -> bool,
) -> Result<(), GossipError> {
    send_pool(s, stream, backend).await?;
    while sending() {
        let next = backend.local_txs_since(cursor, MAX_TXS_PER_FRAME);
        cursor = next.cursor;
        if next.gap {
            send_pool(s, stream, backend).await?;
            continue;
        }
        if next.txs.is_empty() {
            tokio::select! {
                _ = backend.local_tx_arrived() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        for batch in batches(&next.txs) {
            s.write(stream, &batch).await?;
        }
    }
    Ok(())
}

async fn send_sign<W: AsyncWrite + Unpin>(
    s: &mut SendHalf,
    stream: &mut W,
    msgs: &[SignMsg],
) -> Result<(), GossipError> {
    for chunk in msgs.chunks(MAX_SIGN_MSGS) {
        let mut frame = vec![FRAME_SIGN];
        frame.extend(encode_msgs(chunk)?);
        s.write(stream, &frame).await?;
    }
    Ok(())
}

async fn send_evidence<W: AsyncWrite + Unpin>(
    s: &mut SendHalf,
    stream: &mut W,
    items: &[Vec<u8>],
) -> Result<(), GossipError> {
    for chunk in items.chunks(MAX_EVIDENCE_PER_FRAME) {
        let mut frame = vec![FRAME_EVIDENCE];
        frame.extend(encode_items(chunk)?);
        s.write(stream, &frame).await?;
    }
    Ok(())
}

/// Splits raw transactions into frames within the size and count limits. A frame is its type, then the borsh
/// encoding of a `Vec<Vec<u8>>` (u32 count, then u32 length and bytes of each), written straight from the
/// borrowed bytes.
fn batches<T: AsRef<[u8]>>(txs: &[T]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in txs.chunks(MAX_TXS_PER_FRAME) {
        let mut start = 0;
        while start < chunk.len() {
            let mut frame = vec![FRAME_TXS, 0, 0, 0, 0];
            let mut n = 0u32;
            for t in &chunk[start..] {
                let t = t.as_ref();
                if n > 0 && frame.len() + 4 + t.len() > MAX_FRAME - 1024 {
                    break;
                }
                frame.extend_from_slice(&(t.len() as u32).to_le_bytes());
                frame.extend_from_slice(t);
                n += 1;
            }
            frame[1..5].copy_from_slice(&n.to_le_bytes());
            start += n as usize;
            out.push(frame);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Runs both ends of a handshake; the refusing side drops its stream, which ends the other's too.
    async fn pair(
        ka: SigningKey,
        kb: SigningKey,
        allowed: BTreeSet<[u8; 32]>,
        chain_b: u64,
    ) -> (
        Result<Session, GossipError>,
        Result<Session, GossipError>,
        TcpStream,
        Option<TcpStream>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let allowed: Allowed = Arc::new(move |k| allowed.contains(k).then_some(PeerClass::Sequencer));
        let allowed2 = allowed.clone();
        let server = async move {
            let (mut s, _) = l.accept().await.unwrap();
            let r = handshake(&mut s, &kb, chain_b, &allowed2).await;
            let s = r.is_ok().then_some(s);
            (r, s)
        };
        let client = async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(5), handshake(&mut c, &ka, 7, &allowed)).await;
            (r.unwrap_or(Err(GossipError::Handshake("timed out"))), c)
        };
        let ((rb, s), (ra, c)) = tokio::join!(server, client);
        (ra, rb, c, s)
    }

    #[tokio::test]
    async fn authenticated_sealed_frames() {
        let (ka, kb) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
        let allowed: BTreeSet<_> = [ka.verifying_key().to_bytes(), kb.verifying_key().to_bytes()].into();
        let (ra, rb, mut c, s) = pair(ka.clone(), kb.clone(), allowed, 7).await;
        let mut s = s.unwrap();
        let (a, b) = (ra.unwrap(), rb.unwrap());
        assert_eq!(a.peer, kb.verifying_key());
        let ((mut a, _, _), (_, mut b, _)) = (a.split(), b.split());
        a.write(&mut c, b"hello").await.unwrap();
        a.write(&mut c, b"again").await.unwrap();
        assert_eq!(b.read(&mut s).await.unwrap(), b"hello");
        assert_eq!(b.read(&mut s).await.unwrap(), b"again");
        // A tampered frame fails.
        let ct = a.cipher.encrypt(&nonce(a.ctr), &b"x"[..]).unwrap();
        let mut bad = ct.clone();
        bad[0] ^= 1;
        c.write_all(&(bad.len() as u32).to_be_bytes()).await.unwrap();
        c.write_all(&bad).await.unwrap();
        assert!(matches!(b.read(&mut s).await, Err(GossipError::BadFrame)));
    }

    #[tokio::test]
    async fn strangers_and_other_chains_are_refused() {
        let (ka, kb) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
        let only_b: BTreeSet<_> = [kb.verifying_key().to_bytes()].into();
        let (_, rb, _, _) = pair(ka.clone(), kb.clone(), only_b, 7).await;
        assert!(matches!(
            rb,
            Err(GossipError::Handshake(
                "peer is neither a sequencer nor an allowed follower"
            ))
        ));
        let both: BTreeSet<_> = [ka.verifying_key().to_bytes(), kb.verifying_key().to_bytes()].into();
        let (ra, _, _, _) = pair(ka, kb, both, 8).await;
        assert!(ra.is_err());
    }

    #[test]
    fn batches_respect_limits() {
        let txs: Vec<Vec<u8>> = (0..10_000).map(|i| vec![i as u8; 300]).collect();
        let frames = batches(&txs);
        let mut n = 0;
        for f in &frames {
            assert!(f.len() + 16 <= MAX_FRAME);
            assert_eq!(f[0], FRAME_TXS);
            let v: Vec<Vec<u8>> = borsh::from_slice(&f[1..]).unwrap();
            assert!(v.len() <= MAX_TXS_PER_FRAME);
            n += v.len();
        }
        assert_eq!(n, 10_000);
    }
}
