//! A userspace fault proxy for one directed link (the kernel here has no netem): a TCP relay that holds every
//! chunk for the link's delay before passing it on, and holds a lost chunk longer, as TCP's retransmission
//! would (a TCP stream never loses bytes; a lost segment costs a retransmission timeout). Order is kept: a chunk
//! never overtakes the one before it. The fault can change while connections are open.
//!
//! A proxy can also be cut, as a blackhole route cuts a link: while cut, nothing crosses it (open connections
//! stall, new ones are accepted and wait) and nothing is lost; at the heal every connection goes on.

use rand::RngExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a link does to the bytes that cross it (each direction).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFault {
    /// Added to every chunk, one way.
    pub delay: Duration,
    /// The share of chunks lost (0.0-1.0): each lost one arrives a retransmission timeout late.
    pub loss: f64,
}

impl LinkFault {
    /// Linux's minimum TCP retransmission timeout, or twice the delay (a round trip) when that is longer.
    fn retransmission(&self) -> Duration {
        Duration::from_millis(200).max(self.delay.saturating_mul(2))
    }
}

/// Chunks a direction holds before it stops reading (back-pressure on the sender, as a full link would).
const IN_FLIGHT: usize = 1024;

pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: Arc<Mutex<LinkFault>>,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0: any) and relays every connection to `upstream`, from `source` when given
    /// (the upstream then sees each peer at an address of its own, as it would without the proxy: a node limits
    /// and throttles inbound connections per address).
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, source: Option<IpAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(Mutex::new(LinkFault::default()));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (cut, cut_rx) = watch::channel(false);
        let (f, c) = (fault.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let f = f.clone();
                let mut held = cut_rx.clone();
                let (cut_a, cut_b) = (cut_rx.clone(), cut_rx.clone());
                let h = tokio::spawn(async move {
                    // Accepted while cut: it waits for the heal, as a SYN into a blackhole is retried.
                    open(&mut held).await;
                    let Ok(outbound) = connect(upstream, source).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    // Either direction ending ends the connection.
                    tokio::select! {
                        _ = relay(ri, wo, f.clone(), cut_a) => {}
                        _ = relay(ro, wi, f, cut_b) => {}
                    }
                });
                if let Ok(mut v) = c.lock() {
                    v.retain(|h| !h.is_finished());
                    v.push(h.abort_handle());
                }
            }
        });
        Ok(Self {
            addr,
            fault,
            cut,
            task,
            conns,
        })
    }

    pub fn set(&self, fault: LinkFault) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }

    /// Cuts the link (true) or heals it (false).
    pub fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut v) = self.conns.lock() {
            v.drain(..).for_each(|h| h.abort());
        }
    }
}

async fn connect(upstream: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(upstream).await;
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(upstream).await
}

/// Returns once the link is not cut.
async fn open(cut: &mut watch::Receiver<bool>) {
    // An error is the proxy dropped: the task is aborted anyway.
    let _ = cut.wait_for(|c| !*c).await;
}

/// Reads `from`, holds each chunk as the fault says, writes it to `to` in order; nothing moves while the link
/// is cut.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    fault: Arc<Mutex<LinkFault>>,
    cut: watch::Receiver<bool>,
) {
    let mut cut_w = cut.clone();
    let mut cut_r = cut;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        loop {
            open(&mut cut_r).await;
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let f = fault.lock().map(|f| *f).unwrap_or_default();
            let mut hold = f.delay;
            if f.loss > 0.0 && rand::rng().random_bool(f.loss.clamp(0.0, 1.0)) {
                hold += f.retransmission();
            }
            // Never before the chunk ahead of it.
            let at = (Instant::now() + hold).max(last);
            last = at;
            if tx.send((at, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            open(&mut cut_w).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The sender closed its side: so does this one.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
