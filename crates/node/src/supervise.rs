//! The node's long-lived tasks (the L1 listener, the pool's signer, the poster): none of them ends on its own, so
//! one that ends (a panic, say) is a failure the node must not run on without. The supervisor tells which ended
//! and why; the node then stops with that error.

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

pub struct Supervisor {
    aborts: Vec<AbortHandle>,
    tx: mpsc::UnboundedSender<(&'static str, String)>,
    ended: mpsc::UnboundedReceiver<(&'static str, String)>,
}

impl Default for Supervisor {
    fn default() -> Self {
        let (tx, ended) = mpsc::unbounded_channel();
        Self {
            aborts: Vec::new(),
            tx,
            ended,
        }
    }
}

impl Supervisor {
    /// Watches task `name`.
    pub fn add(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.aborts.push(task.abort_handle());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let why = match task.await {
                Ok(()) => "it returned".to_string(),
                // Stopped on purpose (shutdown).
                Err(e) if e.is_cancelled() => return,
                Err(e) => e.to_string(),
            };
            let _ = tx.send((name, why));
        });
    }

    /// The first watched task that ended, and why; pending while all run.
    pub async fn ended(&mut self) -> (&'static str, String) {
        match self.ended.recv().await {
            Some(e) => e,
            // Unreachable while `self.tx` lives; never resolve rather than report a failure nobody had.
            None => std::future::pending().await,
        }
    }

    pub fn abort_all(&self) {
        for a in &self.aborts {
            a.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_task_that_panics_is_named_and_an_aborted_one_is_not() {
        let mut s = Supervisor::default();
        s.add("steady", tokio::spawn(std::future::pending()));
        s.add("poster", tokio::spawn(async { panic!("boom") }));
        let (name, why) = tokio::time::timeout(Duration::from_secs(5), s.ended()).await.unwrap();
        assert_eq!(name, "poster");
        assert!(why.contains("panic"), "{why}");
        s.abort_all();
        assert!(tokio::time::timeout(Duration::from_millis(200), s.ended())
            .await
            .is_err());
    }
}
