//! What keeps one client (or many) from taking the node down through its RPC: requests that run the EVM or scan
//! the store ("heavy" work) run on a few blocking threads only, each for a bounded time, and every client
//! address may have only so many of them in flight and so many connections open. The rest of the node
//! (consensus, gossip, commits) keeps its cores.

use crate::error::{internal, limit_exceeded, RpcResult};
use jsonrpsee::Extensions;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The address a request came from; the accept loop puts it in each HTTP request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct RemoteIp(pub IpAddr);

/// The client address of a request, if it came through the server's accept loop (in-process calls have none).
pub fn remote_ip(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<RemoteIp>().map(|r| r.0)
}

#[derive(Clone, Debug)]
pub struct HeavyLimits {
    /// Heavy requests running at once, node-wide.
    pub slots: usize,
    /// Heavy requests one address may have running or waiting.
    pub per_ip: u32,
    /// Longest a heavy request may wait for a slot, and then run (geth's `--rpc.evmtimeout`).
    pub timeout: Duration,
}

impl Default for HeavyLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            // Half the cores: the node's own work must never wait for a client's.
            slots: (cores / 2).max(1),
            per_ip: 4,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Counts per client address, each capped; an address leaves the map when its count returns to zero, so the
/// map holds at most as many entries as there are requests or connections in flight.
#[derive(Default)]
pub struct PerIp {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One unit of an address's count, given back when dropped.
pub struct IpTicket {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// Takes one unit for `ip` unless it already holds `max`.
    pub fn enter(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<IpTicket> {
        let mut counts = self.counts.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpTicket {
            owner: self.clone(),
            ip,
        })
    }

    pub fn addresses(&self) -> usize {
        self.counts.lock().len()
    }
}

impl Drop for IpTicket {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The gate heavy requests pass.
pub struct HeavyWork {
    limits: HeavyLimits,
    slots: Arc<Semaphore>,
    in_flight: Arc<PerIp>,
}

impl HeavyWork {
    pub fn new(limits: HeavyLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.slots.max(1))),
            limits,
            in_flight: Arc::default(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// Runs `work` on a blocking thread once a slot is free, passing it the instant it must stop by. Refused at
    /// once when `ip` has its share in flight, and after the timeout when no slot frees up.
    pub async fn run<T, F>(&self, ip: Option<IpAddr>, work: F) -> RpcResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Instant) -> RpcResult<T> + Send + 'static,
    {
        let ticket = match ip {
            Some(ip) => Some(self.in_flight.enter(ip, self.limits.per_ip).ok_or_else(|| {
                limit_exceeded(format!(
                    "too many heavy requests (eth_call, eth_estimateGas, eth_getLogs) in flight from {ip}: at most {}",
                    self.limits.per_ip
                ))
            })?),
            None => None,
        };
        let permit = tokio::time::timeout(self.limits.timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| limit_exceeded("server busy: no execution slot freed up in time, try again"))?
            .map_err(internal)?;
        let deadline = Instant::now() + self.limits.timeout;
        // The slot and the address's share stay taken until the work ends, even if the client goes away.
        tokio::task::spawn_blocking(move || {
            let _held = (permit, ticket);
            work(deadline)
        })
        .await
        .map_err(internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn limits(slots: usize, per_ip: u32, timeout_ms: u64) -> HeavyLimits {
        HeavyLimits {
            slots,
            per_ip,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn per_ip_counts_are_capped_and_forgotten_at_zero() {
        let p = Arc::new(PerIp::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t1 = p.enter(a, 2).unwrap();
        let t2 = p.enter(a, 2).unwrap();
        assert!(p.enter(a, 2).is_none(), "a third is refused");
        let tb = p.enter(b, 2).unwrap();
        assert_eq!(p.addresses(), 2);
        drop(t1);
        let t3 = p.enter(a, 2).unwrap();
        drop((t2, t3, tb));
        assert_eq!(p.addresses(), 0, "nothing is kept for idle addresses");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_bound_concurrency_and_a_full_address_is_refused() {
        let heavy = Arc::new(HeavyWork::new(limits(1, 3, 2_000)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (heavy, running, most) = (heavy.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                heavy
                    .run(Some(ip), move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }));
        }
        // Wait until all three hold the address's share, then a fourth from it is refused at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        while heavy.in_flight.counts.lock().get(&ip).copied() != Some(3) {
            assert!(Instant::now() < deadline, "the three never got in");
            tokio::task::yield_now().await;
        }
        let refused = heavy.run(Some(ip), |_| Ok(())).await.unwrap_err();
        assert!(refused.message().contains("too many heavy requests"), "{refused:?}");
        // Another address is not refused for it.
        heavy.run(Some([10, 0, 0, 2].into()), |_| Ok(())).await.unwrap();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one slot: never two at once");
        assert_eq!(heavy.in_flight.addresses(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_waits_too_long_for_a_slot_is_refused() {
        let heavy = Arc::new(HeavyWork::new(limits(1, 10, 100)));
        let h = heavy.clone();
        let hog = tokio::spawn(async move {
            h.run(None, |_| {
                std::thread::sleep(Duration::from_millis(600));
                Ok(())
            })
            .await
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while heavy.slots.available_permits() != 0 {
            assert!(Instant::now() < deadline, "the hog never started");
            tokio::task::yield_now().await;
        }
        let err = heavy.run(None, |_| Ok(())).await.unwrap_err();
        assert!(err.message().contains("server busy"), "{err:?}");
        hog.await.unwrap().unwrap();
    }
}
