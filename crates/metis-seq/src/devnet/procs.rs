//! The devnet's child processes: each in its own process group (a terminal's Ctrl-C reaches only the
//! supervisor, which stops nodes before anvil so anvil's state dump comes last), each told by the kernel to stop
//! if the supervisor dies, and each stopped with SIGTERM first and SIGKILL after a deadline.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err: File = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(|| {
                // The signal goes when the thread that forked exits: the devnet forks from its main thread.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl took hold: do not outlive it.
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status the first time the process is seen gone, then None.
    pub fn newly_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                Some(status)
            }
            _ => None,
        }
    }

    pub fn running(&mut self) -> bool {
        self.newly_exited();
        self.exited.is_none()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.exited.is_none() {
            signal_pid(self.child.id(), sig);
        }
    }
}

pub fn signal_pid(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a positive pid touches only that process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Whether `pid` is a running devnet supervisor other than this process. Told by its `devnet` subcommand, not by
/// the program's name: a copied or renamed binary still supervises, and `devnet stop` must still reach it.
pub fn supervisor_alive(pid: u32) -> bool {
    pid != std::process::id() && alive_as(pid, "\0devnet\0")
}

/// Whether `pid` is alive and runs a program whose command line contains `needle` (so a recycled pid of some
/// other program is never signalled).
pub fn alive_as(pid: u32, needle: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            !zombie && String::from_utf8_lossy(&raw).contains(needle)
        }
        Err(_) => false,
    }
}

/// SIGTERM to all, then waits up to `grace` for them to exit, then SIGKILL to those left. Returns the names of
/// those that had to be killed.
pub fn stop_all(procs: &mut [&mut Proc], grace: Duration) -> Vec<String> {
    for p in procs.iter_mut() {
        if p.running() {
            p.signal(libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter_mut().any(|p| p.running()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut killed = Vec::new();
    for p in procs.iter_mut() {
        if p.running() {
            p.signal(libc::SIGKILL);
            let _ = p.child.wait();
            p.exited = p.child.try_wait().ok().flatten();
            killed.push(p.name.clone());
        }
    }
    killed
}

/// Signals recorded pids (when they still run the expected program) as [`stop_all`] does, for a devnet whose
/// supervisor is gone.
pub fn stop_pids(pids: &[(u32, &str)], grace: Duration) -> usize {
    let live: Vec<(u32, &str)> = pids.iter().copied().filter(|(p, n)| alive_as(*p, n)).collect();
    for (p, _) in &live {
        signal_pid(*p, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && live.iter().any(|(p, n)| alive_as(*p, n)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (p, n) in &live {
        if alive_as(*p, n) {
            signal_pid(*p, libc::SIGKILL);
        }
    }
    live.len()
}

/// Every process of the devnet; whatever is still running when this drops (an error or a panic on the way)
/// is stopped.
#[derive(Default)]
pub struct Procs {
    pub anvil: Option<Proc>,
    pub nodes: Vec<Proc>,
    pub rpc_nodes: Vec<Proc>,
}

impl Procs {
    /// Nodes first (they shut down cleanly while L1 is still there), then anvil (which dumps its state).
    pub fn stop(&mut self) -> Vec<String> {
        let mut all: Vec<&mut Proc> = self.rpc_nodes.iter_mut().chain(self.nodes.iter_mut()).collect();
        let mut killed = stop_all(&mut all, Duration::from_secs(15));
        if let Some(a) = self.anvil.as_mut() {
            killed.extend(stop_all(&mut [a], Duration::from_secs(15)));
        }
        killed
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `sh -c SCRIPT ARG`: a process with `arg` as an argument of its own, as a renamed metis-seq has `devnet`.
    /// The script is a builtin waiting on stdin, so killing sh leaves no child behind. Returns once sh runs
    /// (until a child has exec'd, /proc shows this test's command line).
    fn sh_with_arg(arg: &str) -> Kill {
        let child = Kill(
            std::process::Command::new("sh")
                .args(["-c", "read line", arg])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawning sh"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !alive_as(child.0.id(), "sh\0-c\0") {
            assert!(Instant::now() < deadline, "sh never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    #[test]
    fn a_supervisor_is_told_by_its_subcommand_not_by_its_program_name() {
        let like = sh_with_arg("devnet");
        let other = sh_with_arg("devnets");
        assert!(supervisor_alive(like.0.id()));
        assert!(!supervisor_alive(other.0.id()));
        assert!(!supervisor_alive(std::process::id()));
        let pid = like.0.id();
        drop(like);
        assert!(!supervisor_alive(pid));
    }
}
