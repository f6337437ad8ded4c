//! Starting FPM when it does not run (`start`, `ensure`, `reload --recover`, the start half of
//! a cold restart): orphans of a dead master are stopped first, a leftover socket file nobody
//! listens on is removed, then `php-fpm -D` is launched with this launch's notify socket and
//! proven ready by its own `READY=1`. A launcher cut off at its limit is followed by a look for
//! the master it may have left ([`super::cut_off`]).

use super::watch::{ReadyBy, Watch};
use crate::config::{FpmConfig, static_checks};
use crate::deadline::Deadline;
use crate::discovery::{self, Snapshot};
use crate::error::{Error, Result};
use crate::fpm::Fpm;
use crate::interrupt::{Critical, Phase};
use crate::ready::{self, PoolReady};
use crate::stop::{self, SignalPlan};
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};
use tracing::info;

/// The least time php-fpm's launcher (and the config test before it) is given, whatever the
/// readiness limit: both take a moment even when all is well.
const LAUNCHER_FLOOR: Duration = Duration::from_secs(5);

/// What a launch did.
#[derive(Debug, Clone)]
pub struct Launch {
    /// A master already ran: nothing was started.
    pub already_running: bool,
    /// The master that runs now.
    pub master: Option<i32>,
    /// Each pool's readiness (empty when readiness was not checked).
    pub pools: Vec<PoolReady>,
    /// How long the launch took, readiness included.
    pub elapsed: Duration,
    /// How readiness was proven, when FPM was started here and waited for.
    pub ready_by: Option<ReadyBy>,
}

/// How to launch.
#[derive(Debug, Clone, Copy)]
pub struct LaunchOptions {
    /// The readiness limit (at least 5 s are given to the config test and to php-fpm's own
    /// launcher).
    pub timeout: Duration,
    /// Prove readiness.
    pub wait: bool,
    /// Run `php-fpm -t` first.
    pub test_first: bool,
    /// Never act through systemd (`--no-systemd`).
    pub no_systemd: bool,
}

/// Starts FPM unless it already runs (as `snap` saw it), then proves readiness (when
/// `opts.wait`).
pub fn launch(cfg: &FpmConfig, fpm: &Fpm, snap: &Snapshot, opts: LaunchOptions) -> Result<Launch> {
    launch_watched(cfg, fpm, snap, opts, &Watch::new())
}

/// [`launch`] reporting to `watch`, which the caller may use to prove readiness later (a
/// cold restart proves it once SIGINT, SIGQUIT and SIGTERM are no longer held back).
pub fn launch_watched(
    cfg: &FpmConfig,
    fpm: &Fpm,
    snap: &Snapshot,
    opts: LaunchOptions,
    watch: &Watch,
) -> Result<Launch> {
    let started = Instant::now();
    let deadline = Deadline::after_from(started, opts.timeout);
    if let Some(m) = &snap.master {
        info!(pid = m.pid(), "master already running; checking readiness");
        // The master is known: only it and its children are looked at again.
        let pools = ready::wait_ready_of(cfg, m.id, deadline).map_err(|e| match e {
            Error::NotReady(msg) => Error::NotReady(format!(
                "{msg}; FPM is running but not ready: `fpmctl restart` replaces it"
            )),
            other => other,
        })?;
        return Ok(Launch {
            already_running: true,
            master: Some(m.pid()),
            pools,
            elapsed: started.elapsed(),
            ready_by: None,
        });
    }
    if let Some(l) = snap.unverified_masters().next() {
        return Err(Error::Other(format!(
            "PID {} looks like the master of {}, but {}; not starting a second FPM beside it",
            l.proc.pid(),
            cfg.path.display(),
            l.doubt
        )));
    }
    // A supervisor in its crash backoff holds the sockets with no master running: starting
    // FPM beside it is its job.
    crate::supervised::refuse_unreached_supervisor(snap)?;
    if opts.test_first {
        // Bounded like the launch: a test that hangs (a config or php.ini on a hung mount, an
        // error log nobody reads) ends the start at its limit, nothing started.
        fpm.spawn_test()?
            .require_valid_within(opts.timeout.max(LAUNCHER_FLOOR))?;
        info!("php-fpm -t: configuration is valid");
    }
    // What php-fpm -t cannot see (a socket path too long for the kernel, a missing socket
    // directory), caught before php-fpm is launched.
    let (problems, _) = static_checks(cfg);
    if !problems.is_empty() {
        return Err(Error::ConfigInvalid {
            config: cfg.path.clone(),
            detail: format!("{}; php-fpm was not started", problems.join("; ")),
        });
    }
    if snap.orphans.is_empty()
        && let Some(unit) = crate::systemd::unit_for_config(&cfg.path, opts.no_systemd)
    {
        // Started behind systemd's back, FPM would later be started a second time by it.
        crate::systemd::systemctl("start", &unit)?;
        let pools = if opts.wait {
            ready::wait_ready(cfg, deadline)?
        } else {
            Vec::new()
        };
        return Ok(Launch {
            already_running: false,
            master: discovery::discover(cfg).master.map(|m| m.pid()),
            pools,
            elapsed: started.elapsed(),
            ready_by: opts.wait.then_some(ReadyBy::Polling),
        });
    }
    let stopped;
    // Orphans still serve: once they get their signal, FPM must be started again before a
    // SIGINT or SIGTERM may end fpmctl.
    let critical = (!snap.orphans.is_empty()).then(|| Critical::enter(Phase::Stopping));
    let snap = if snap.orphans.is_empty() {
        snap
    } else {
        info!(
            orphans = snap.orphans.len(),
            "orphaned workers of a dead master still hold this config's addresses; stopping them first"
        );
        stopped = stop::stop_from(
            cfg,
            snap.clone(),
            &SignalPlan::default(),
            Duration::from_secs(30),
        )?;
        stopped.after.as_ref().unwrap_or(snap)
    };
    if let Some(c) = &critical {
        c.phase(Phase::Starting);
    }
    // A look taken while the last process of a stop exited can see its socket still
    // listening with its holder already gone: a refusal is checked against a fresh look
    // before it stands (a foreign holder is refused by both).
    let fresh;
    let snap = if discovery::refuse_foreign_holders(snap).is_ok() {
        snap
    } else {
        fresh = discovery::discover(cfg);
        discovery::refuse_foreign_holders(&fresh)?;
        &fresh
    };
    remove_stale_sockets(snap)?;
    info!(
        binary = %fpm.bin.display(),
        config = %cfg.path.display(),
        "starting FPM"
    );
    // A launcher cut off at its limit may leave a master behind, still starting or hung: it
    // is looked for, named, and left running (see `cut_off`).
    fpm.start_daemon_with(opts.timeout.max(LAUNCHER_FLOOR), |cmd| watch.prepare(cmd))
        .map_err(|e| match e {
            Error::LauncherCutOff { detail, daemon } => {
                super::cut_off::after_start(cfg, &detail, daemon)
            }
            other => other,
        })?;
    if let Some(sig) = critical.and_then(Critical::leave) {
        return Err(Error::Interrupted(format!(
            "interrupted by {sig}: the orphans were stopped and FPM {} was started again, but its readiness was not checked (`fpmctl -c {} ping` checks it)",
            cfg.path.display(),
            cfg.path.display()
        )));
    }
    let (master, pools, ready_by) = if opts.wait {
        // At least a second to prove readiness, even when the launch used up the budget.
        let left = deadline.remaining().max(Duration::from_secs(1));
        let ready = watch.wait_ready(cfg, Deadline::after(left))?;
        (ready.master, ready.pools, Some(ready.by))
    } else {
        (
            discovery::master_by_pid_file(cfg).map(|m| m.pid()),
            Vec::new(),
            None,
        )
    };
    let elapsed = started.elapsed();
    let master = master.or_else(|| discovery::discover(cfg).master.map(|m| m.pid()));
    if opts.wait {
        info!(
            pid = master,
            duration_ms = elapsed.as_millis() as u64,
            "ready"
        );
    }
    Ok(Launch {
        already_running: false,
        master,
        pools,
        elapsed,
        ready_by,
    })
}

/// Removes a leftover unix socket file only when nothing listens on it (by `snap`); refuses
/// to touch a path that is not a socket.
fn remove_stale_sockets(snap: &Snapshot) -> Result<()> {
    for a in &snap.addresses {
        let Some(path) = a.addr.unix_path() else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if !meta.file_type().is_socket() {
            return Err(Error::Other(format!(
                "pool {}: {} exists and is not a socket; not removing it",
                a.pool,
                path.display()
            )));
        }
        if a.inodes.is_empty() {
            // The kernel's table names a socket by the path text it was bound with: one bound
            // through another spelling of this path (a symlinked directory) is not seen there,
            // and its file must not be taken for a leftover.
            if crate::listen::unix_path_listened(path) != Some(false) {
                return Err(Error::Other(format!(
                    "pool {}: something answers on {} though no listening socket is known by that name (bound through another path to it?); not removing it",
                    a.pool,
                    path.display()
                )));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("removing stale socket {}", path.display()), e))?;
            info!(
                pool = a.pool.as_str(),
                path = %path.display(),
                "removed stale socket file (nothing listened on it)"
            );
        }
    }
    Ok(())
}
