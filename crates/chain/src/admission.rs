//! Taking transactions in (decoding and recovering the senders of what gossip and the RPC bring) runs on threads
//! of its own, at a lower OS priority than everything else in the node. Under a flood of transactions the work
//! that decides blocks (building, checking a proposal, committing, voting) then gets the CPU first and admission
//! takes what is left: a sender of many valid transactions can slow their own admission, not the chain's pace.
//! The lower priority costs nothing on an idle machine (a niced thread runs at full speed when nothing else
//! wants the core).

use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::warn;

/// How much nicer than the rest of the node the admission threads are (Linux `nice`, 0..19). At +10 a thread
/// gets about a tenth of the CPU share of a nice-0 thread it competes with.
pub const ADMISSION_NICE: i32 = 10;
/// Jobs waiting for an admission thread; a caller past it waits (gossip links and RPC requests push back).
const QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// Why admission work did not run.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the admission threads have stopped")]
    Stopped,
}

/// A pool of low-priority threads for admission work.
pub struct Admission {
    jobs: mpsc::Sender<Job>,
}

impl Admission {
    /// Starts `threads` (at least one) admission threads at [`ADMISSION_NICE`]. A thread whose priority cannot be
    /// lowered runs at the node's priority and says so.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("admission-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = rx.blocking_lock().blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on an admission thread and waits for its result.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AdmissionError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).await.map_err(|_| AdmissionError::Stopped)?;
        rx.await.map_err(|_| AdmissionError::Stopped)
    }
}

/// Lowers the calling thread's priority (on Linux `setpriority` with who = 0 applies to the calling thread only).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority reads no memory of ours; PRIO_PROCESS with who = 0 names the calling thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ADMISSION_NICE) };
        if rc != 0 {
            warn!(
                error = %std::io::Error::last_os_error(),
                "admission thread keeps the node's priority"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_niced_threads_and_return_their_result() {
        let pool = Admission::start(2).expect("start");
        let (name, nice) = pool
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                // SAFETY: getpriority reads no memory of ours.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
                (name, nice)
            })
            .await
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("admission-")));
        // SAFETY: as above.
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(nice, (ours + ADMISSION_NICE).min(19));
        let sums = futures_sum(&pool).await;
        assert_eq!(sums, (0..64u64).map(|i| i * i).sum::<u64>());
    }

    async fn futures_sum(pool: &Admission) -> u64 {
        let mut total = 0;
        for i in 0..64u64 {
            total += pool.run(move || i * i).await.expect("ran");
        }
        total
    }
}
