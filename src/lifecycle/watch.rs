//! Readiness of an FPM this process launches, by event: FPM built with systemd support sends
//! `READY=1` to `$NOTIFY_SOCKET` once its workers are forked, also when daemonized and outside
//! systemd. A launch passes its own notify socket ([`Watch::prepare`]); the datagram's sender,
//! which the kernel tells (`SCM_CREDENTIALS`), is the new master, so neither the master nor
//! the moment it is ready is found by reading the process table or polling. What remains is
//! one look at that master ([`crate::ready::wait_ready_of`]). An FPM that never speaks (built
//! without systemd support) is waited for the old way, by looking again with backoff
//! ([`crate::ready::wait_ready`]).

use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::Result;
use crate::notify::Listener;
use crate::procs::{self, ProcInfo};
use crate::ready::{self, PoolReady};
use std::process::Command;
use std::time::{Duration, Instant};
use tracing::debug;

/// How long a launched FPM may stay silent before it is taken for one built without systemd
/// support: it speaks about 26 ms after exec; a loaded host may take a few times that.
const SILENCE: Duration = Duration::from_secs(2);

/// A notify socket for one launch.
#[derive(Debug)]
pub struct Watch {
    listener: Option<Listener>,
}

impl Watch {
    /// A fresh socket in a private directory under the lock directory (only its owner can
    /// reach it); without one, readiness is proven the old way.
    pub fn new() -> Watch {
        let listener = crate::lock::secure_dir()
            .ok()
            .and_then(|dir| Listener::new(&dir).ok());
        if listener.is_none() {
            debug!("no notify socket for this launch: readiness is polled");
        }
        Watch { listener }
    }

    /// Points the FPM that `cmd` starts at this socket. Without a socket, a `NOTIFY_SOCKET`
    /// fpmctl itself was given (by systemd, as an `ExecReload`) is removed: an FPM started
    /// here must not report to the unit's manager as if it were the unit's.
    pub fn prepare(&self, cmd: &mut Command) {
        match &self.listener {
            Some(l) => cmd.env("NOTIFY_SOCKET", l.path()),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
    }

    /// The master that said `READY=1`, proven to be `cfg`'s, or `None` when FPM stayed silent
    /// (or `deadline` passed).
    pub fn ready_master(&self, cfg: &FpmConfig, deadline: Deadline) -> Option<ProcInfo> {
        let listener = self.listener.as_ref()?;
        let silence = Deadline::after(SILENCE).min(deadline);
        let started = Instant::now();
        loop {
            let until = if started.elapsed() < SILENCE {
                silence
            } else {
                deadline
            };
            let messages = listener.wait(until);
            if messages.is_empty() {
                debug!("FPM sent no READY=1: readiness is polled");
                return None;
            }
            for m in messages.into_iter().filter(|m| m.ready) {
                // The kernel's word for the sender; the text's MAINPID is only a claim.
                let Some(pid) = m.sender else { continue };
                match procs::read(pid) {
                    Some(p) if discovery::is_master_of(&p, cfg) => return Some(p),
                    _ => debug!(
                        pid,
                        "READY=1 from a process that is not this config's master"
                    ),
                }
            }
        }
    }

    /// Proves the FPM this watch was passed to ready: by its `READY=1`, else the old way.
    pub fn wait_ready(&self, cfg: &FpmConfig, deadline: Deadline) -> Result<Ready> {
        match self.ready_master(cfg, deadline) {
            Some(master) => Ok(Ready {
                pools: ready::wait_ready_of(cfg, master.id, deadline)?,
                master: Some(master.pid()),
                by: ReadyBy::Notify,
            }),
            None => Ok(Ready {
                pools: ready::wait_ready(cfg, deadline)?,
                master: discovery::master_by_pid_file(cfg).map(|m| m.pid()),
                by: ReadyBy::Polling,
            }),
        }
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

/// How readiness was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    /// FPM's own `READY=1`, then one look at that master.
    Notify,
    /// Looking again with backoff (FPM without systemd support).
    Polling,
}

impl ReadyBy {
    /// The name in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyBy::Notify => "notify",
            ReadyBy::Polling => "polling",
        }
    }
}

/// A launched FPM proven ready.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Each pool's readiness.
    pub pools: Vec<PoolReady>,
    /// The master that is ready.
    pub master: Option<i32>,
    /// How it was proven.
    pub by: ReadyBy,
}
