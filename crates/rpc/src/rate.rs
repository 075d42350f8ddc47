//! Requests per client address: a token bucket per address, one token per call (alone or in a batch). A call
//! without a token is answered at once with -32005 and does no other work; the rest of a batch goes on. The same
//! layer counts and times each call for Prometheus, by method (names this server does not serve count as
//! "other", so a client cannot grow the label set).

use crate::error::LIMIT_EXCEEDED;
use crate::limits::RemoteIp;
use jsonrpsee::server::middleware::rpc::RpcServiceT;
use jsonrpsee::server::middleware::rpc::{Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, Request};
use jsonrpsee::types::ErrorObject;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Addresses tracked before idle ones (whose bucket is full again) are forgotten.
const PRUNE_AT: usize = 10_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `per_sec` calls a second from one address on average, up to `burst` at once.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        // Present from the start, so a scrape tells "none refused" from "not counted".
        metrics::counter!("metis_rpc_rate_limited_total").increment(0);
        Self {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes up to `n` tokens for `ip` at `now`; returns how many it got.
    pub fn take(&self, ip: IpAddr, n: usize, now: Instant) -> usize {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(&ip) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        let granted = (b.tokens.floor() as usize).min(n);
        b.tokens -= granted as f64;
        granted
    }

    pub fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

fn refused<'a>() -> ErrorObject<'a> {
    ErrorObject::owned(
        LIMIT_EXCEEDED,
        "rate limit exceeded: too many requests from this address, slow down",
        None::<()>,
    )
}

/// The layer that puts [`RateLimit`] in front of every connection's RPC service.
#[derive(Clone)]
pub struct RateLimitLayer {
    pub limiter: Arc<RateLimiter>,
    /// The methods the server serves (metric labels).
    pub methods: Arc<HashSet<&'static str>>,
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
    methods: Arc<HashSet<&'static str>>,
}

impl<S> RateLimit<S> {
    /// The metric label for `method`: itself if served here, "other" if not.
    fn label(&self, method: &str) -> &'static str {
        self.methods.get(method).copied().unwrap_or("other")
    }
}

impl<S> RpcServiceT for RateLimit<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        // Calls made in process (no address) are not limited.
        let allowed = req
            .extensions()
            .get::<RemoteIp>()
            .is_none_or(|ip| self.limiter.take(ip.0, 1, Instant::now()) == 1);
        let inner = self.inner.clone();
        let method = self.label(req.method_name());
        async move {
            metrics::counter!("metis_rpc_requests_total", "method" => method).increment(1);
            if !allowed {
                metrics::counter!("metis_rpc_rate_limited_total").increment(1);
                return MethodResponse::error(req.id(), refused());
            }
            let started = Instant::now();
            let response = inner.call(req).await;
            metrics::histogram!("metis_rpc_seconds", "method" => method).record(started.elapsed().as_secs_f64());
            response
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let ip = batch.extensions().get::<RemoteIp>().map(|r| r.0);
        if let Some(ip) = ip {
            let mut granted = self.limiter.take(ip, batch.len(), Instant::now());
            for entry in batch.iter_mut() {
                if let Ok(BatchEntry::Call(req)) = entry {
                    metrics::counter!("metis_rpc_requests_total", "method" => self.label(req.method_name()))
                        .increment(1);
                }
                if granted > 0 {
                    granted -= 1;
                    continue;
                }
                if let Ok(BatchEntry::Call(req)) = entry {
                    metrics::counter!("metis_rpc_rate_limited_total").increment(1);
                    *entry = Err(BatchEntryErr::new(req.id(), refused()));
                }
            }
        }
        self.inner.batch(batch)
    }

    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let l = RateLimiter::new(10, 20);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        assert_eq!(l.take(a, 25, t0), 20, "the burst");
        assert_eq!(l.take(a, 1, t0), 0, "empty");
        assert_eq!(l.take(b, 5, t0), 5, "another address has its own bucket");
        assert_eq!(
            l.take(a, 10, t0 + Duration::from_millis(500)),
            5,
            "half a second: five tokens"
        );
        assert_eq!(
            l.take(a, 100, t0 + Duration::from_secs(60)),
            20,
            "never more than the burst"
        );
    }

    #[test]
    fn idle_addresses_are_forgotten_when_many_are_tracked() {
        let l = RateLimiter::new(1000, 10);
        let t0 = Instant::now();
        for i in 0..PRUNE_AT as u32 {
            l.take(IpAddr::from(i.to_be_bytes()), 1, t0);
        }
        assert_eq!(l.tracked(), PRUNE_AT);
        // A second later every bucket is full again; a new address prunes them.
        l.take([192, 168, 0, 1].into(), 1, t0 + Duration::from_secs(1));
        assert_eq!(l.tracked(), 1);
    }
}
