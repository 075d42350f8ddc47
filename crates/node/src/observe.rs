//! What an operator watches: the Prometheus endpoint (`GET /metrics`: this node's metrics, Malachite's registry
//! and the process collector; `GET /health` and `GET /ready` too) and the readiness probe, which the RPC port
//! answers as well. A sampler reads what no event announces (peers, the mempool, the process) every
//! [`SAMPLE_EVERY`].

use crate::NodeError;
use http_body_util::Full;
use hyper::body::Bytes;
use malachitebft_app_channel::NetworkRequest;
use metis_chain::Chain;
use metis_rpc::http::Probe;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

/// How often the sampler reads peers, the mempool and the process.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Blocks a ready node's head may be behind the pool's pace at most, and the least lag always allowed (a
/// re-election stalls the chain for a few seconds without any node being unfit).
pub const READY_MAX_BEHIND_BLOCKS: u64 = 20;
const READY_MIN_LAG: Duration = Duration::from_secs(15);
/// A poll of L1 older than this: L1 counts as unreachable.
pub const L1_STALE: Duration = Duration::from_secs(60);
/// Scrapes served at once; more wait for the accept loop.
const MAX_SCRAPES: usize = 16;

/// Bucket bounds of the `_seconds` histograms: RPC calls (ms) up to decisions and intervals (s).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0,
];

/// Installs the process-wide metrics recorder; its handle renders what the node recorded.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    Ok(handle)
}

/// Whether the node is fit to serve: its head keeps up with the pool's pace, consensus commits, L1 answers.
pub struct Readiness {
    pub chain: Arc<Chain>,
    pub l1: Option<metis_l1::SharedView>,
    pub block_time: Duration,
}

impl Probe for Readiness {
    fn ready(&self) -> (bool, Value) {
        let head = self.chain.view().head().clone();
        let l1 = self.l1.as_ref().map(|v| {
            let v = v.read();
            L1Seen {
                since_poll: v.last_ok.map(|t| t.elapsed()),
                head: v.l1_head,
                confirmed: v.synced_to,
            }
        });
        let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return (false, json!({ "clock": "the system clock is before 1970" }));
        };
        assess(&Inputs {
            head: head.number,
            head_timestamp: head.timestamp,
            now,
            block_time: self.block_time,
            since_commit: self.chain.last_commit().map(|t| t.elapsed()),
            l1,
        })
    }
}

/// What this node last saw of L1.
struct L1Seen {
    since_poll: Option<Duration>,
    head: Option<u64>,
    confirmed: Option<u64>,
}

/// What readiness is judged on; the clock is an input, so the rule is tested without waiting.
struct Inputs {
    head: u64,
    /// The head block's timestamp (s) and the wall clock (since the Unix epoch).
    head_timestamp: u64,
    now: Duration,
    block_time: Duration,
    since_commit: Option<Duration>,
    /// None: the node follows no L1.
    l1: Option<L1Seen>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Ready: the head is at most [`READY_MAX_BEHIND_BLOCKS`] blocks of the pool's pace old (at least
/// `READY_MIN_LAG`), this node committed within that time, and L1 answered within [`L1_STALE`].
fn assess(i: &Inputs) -> (bool, Value) {
    let lag = i.now.saturating_sub(Duration::from_secs(i.head_timestamp));
    let behind = u64::try_from(lag.as_millis() / i.block_time.as_millis().max(1)).unwrap_or(u64::MAX);
    let allowed = i
        .block_time
        .saturating_mul(u32::try_from(READY_MAX_BEHIND_BLOCKS).unwrap_or(u32::MAX))
        .max(READY_MIN_LAG);
    let synced = lag <= allowed;
    let consensus = i.since_commit.is_some_and(|d| d <= allowed);
    let l1_ok =
        i.l1.as_ref()
            .is_none_or(|l| l.since_poll.is_some_and(|d| d <= L1_STALE));
    let ready = synced && consensus && l1_ok;
    let checks = json!({
        "head": i.head,
        "head_age_ms": ms(lag),
        "blocks_behind_estimate": behind,
        "synced": synced,
        "consensus": consensus,
        "last_commit_ms_ago": i.since_commit.map(ms),
        "l1": i.l1.as_ref().map(|l| json!({
            "reachable": l1_ok,
            "last_poll_ms_ago": l.since_poll.map(ms),
            "head": l.head,
            "confirmed": l.confirmed,
        })),
    });
    (ready, checks)
}

/// Serves `/metrics`, `/health` and `/ready` on `addr`. The port is bound before this returns, so a taken port
/// is a start-up error.
pub fn serve(addr: SocketAddr, handle: PrometheusHandle, probe: Arc<dyn Probe>) -> Result<(), NodeError> {
    let err = |reason: String| NodeError::Metrics { addr, reason };
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
    std_listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| err(e.to_string()))?;
    let scrapes = Arc::new(Semaphore::new(MAX_SCRAPES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = scrapes.clone().acquire_owned().await else {
                return;
            };
            let (stream, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(%addr, error = %e, "metrics accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (handle, probe) = (handle.clone(), probe.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let r = answer(req.method(), req.uri().path(), &handle, probe.as_ref());
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A scraper that stalls gets dropped.
                match tokio::time::timeout(Duration::from_secs(30), conn).await {
                    Ok(Err(e)) => debug!(%remote, error = %e, "metrics connection ended"),
                    Err(_) => debug!(%remote, "metrics connection timed out"),
                    Ok(Ok(())) => {}
                }
            });
        }
    });
    info!(%addr, "metrics on http://{addr}/metrics (health: /health, readiness: /ready)");
    Ok(())
}

fn answer(
    method: &hyper::Method,
    path: &str,
    handle: &PrometheusHandle,
    probe: &dyn Probe,
) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&hyper::Method::GET, "/metrics") => {
            let mut text = handle.render();
            malachitebft_metrics::export(&mut text);
            (200, "text/plain; version=0.0.4", text)
        }
        (&hyper::Method::GET, "/health") => (200, "application/json", json!({ "status": "ok" }).to_string()),
        (&hyper::Method::GET, "/ready") => {
            let (ready, checks) = probe.ready();
            let status = if ready { 200 } else { 503 };
            (
                status,
                "application/json",
                json!({ "ready": ready, "checks": checks }).to_string(),
            )
        }
        (&hyper::Method::GET, _) => (404, "text/plain", "not found: /metrics, /health, /ready\n".into()),
        _ => (405, "text/plain", "GET only\n".into()),
    };
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Every [`SAMPLE_EVERY`]: libp2p peers (Malachite's network state), the mempool, the process; and the
/// recorder's upkeep (histograms drain into their buckets).
pub fn sample(chain: Arc<Chain>, net: mpsc::Sender<NetworkRequest>, handle: PrometheusHandle) {
    let process = metrics_process::Collector::default();
    process.describe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            process.collect();
            handle.run_upkeep();
            let (pending, queued, bytes) = {
                let view = chain.view();
                let m = chain.mempool();
                let (p, q) = m.status(view.state());
                (p, q, m.bytes())
            };
            metrics::gauge!("metis_mempool_txs", "state" => "pending").set(pending as f64);
            metrics::gauge!("metis_mempool_txs", "state" => "queued").set(queued as f64);
            metrics::gauge!("metis_mempool_bytes").set(bytes as f64);
            match NetworkRequest::dump_state(&net).await {
                Ok(Some(dump)) => {
                    let connected = dump.peers.values().filter(|p| p.connection_direction.is_some()).count();
                    metrics::gauge!("metis_peers", "transport" => "libp2p").set(connected as f64);
                    chain.set_peers(connected as u64);
                }
                Ok(None) => {}
                // The network actor is gone: the node is stopping.
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            head: 100,
            head_timestamp: 1_000,
            now: Duration::from_secs(1_001),
            block_time: Duration::from_secs(1),
            since_commit: Some(Duration::from_millis(500)),
            l1: Some(L1Seen {
                since_poll: Some(Duration::from_secs(1)),
                head: Some(50),
                confirmed: Some(48),
            }),
        }
    }

    #[test]
    fn ready_when_in_step_with_the_pool_and_l1() {
        let (ready, checks) = assess(&inputs());
        assert!(ready, "{checks}");
        assert_eq!(checks["blocks_behind_estimate"], 1);
        assert_eq!(checks["l1"]["confirmed"], 48);
    }

    #[test]
    fn not_ready_behind_stalled_or_without_l1() {
        // 21 blocks of 1 s behind: over both 20 blocks and the 15 s floor.
        let behind = Inputs {
            now: Duration::from_secs(1_021),
            ..inputs()
        };
        let (ready, checks) = assess(&behind);
        assert!(!ready);
        assert_eq!(checks["synced"], false);
        // A stall shorter than the floor is not unfit (a re-election takes seconds).
        let short_stall = Inputs {
            block_time: Duration::from_millis(200),
            now: Duration::from_secs(1_010),
            since_commit: Some(Duration::from_secs(9)),
            ..inputs()
        };
        assert!(assess(&short_stall).0);
        let never_committed = Inputs {
            since_commit: None,
            ..inputs()
        };
        assert_eq!(assess(&never_committed).1["consensus"], false);
        let l1_gone = Inputs {
            l1: Some(L1Seen {
                since_poll: Some(L1_STALE + Duration::from_secs(1)),
                head: None,
                confirmed: None,
            }),
            ..inputs()
        };
        let (ready, checks) = assess(&l1_gone);
        assert!(!ready);
        assert_eq!(checks["l1"]["reachable"], false);
        // A node without L1 is judged on the chain alone; a clock behind the head is no lag.
        let no_l1 = Inputs {
            l1: None,
            now: Duration::from_secs(999),
            ..inputs()
        };
        assert!(assess(&no_l1).0);
    }
}
