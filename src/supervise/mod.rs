//! `fpmctl supervise`: own one FPM in the foreground, restart it on crash, restart it on
//! request without dropping a request.
//!
//! Two halves: [`machine`] decides (a pure state machine: events in, actions out, tested as
//! data), [`driver`] does the I/O (one thread polling a signalfd, the notify socket, the
//! control socket and pidfds; a second thread runs FastCGI checks so the loop never
//! blocks). The crash-loop and health counters live in [`policy`].
//!
//! How a restart keeps every request:
//! - the supervisor holds every listening socket ([`sockets`]) and hands them to each FPM it
//!   starts through `FPM_SOCKETS`, so the sockets never close;
//! - a requested restart starts the new FPM *beside* the old one (both accept on the same
//!   sockets), waits until the new one says `READY=1`, then retires the old one without
//!   letting its exit cleanup run: SIGSTOP its master, SIGQUIT its workers (each finishes its
//!   request), and SIGKILL the stopped master once they are gone. FPM therefore never unlinks
//!   the unix socket path nor the pid file the new master wrote;
//! - after a crash, the path FPM may have unlinked is restored from a hard link, the dead
//!   master's orphaned workers (re-parented to us: we are a child subreaper) get SIGQUIT, and
//!   a new FPM starts at once on the same sockets, with backoff when crashes repeat.
//!
//! Processes that PHP requests leave behind (`exec('cmd &')`) are re-parented to the
//! supervisor too: they are reaped as they exit (named in the log), and on stop they get the
//! same signal plan as FPM's own processes, as systemd's `KillMode=control-group` would. The
//! exit code says how FPM itself stopped; a leftover that survives the plan is logged.

pub mod adopted;
mod checks;
pub mod control;
pub mod driver;
pub mod machine;
pub use crate::notify;
pub mod observe;
pub mod policy;
mod request;
pub mod resident;
pub use crate::handover::sockets;

use crate::config::FpmConfig;
use crate::discovery;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::fpm::Fpm;
use crate::stop::SignalPlan;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use policy::RestartPolicy;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How the supervisor behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Crash restarts and the crash-loop limit.
    pub policy: RestartPolicy,
    /// How often each pool is pinged.
    pub health_interval: Duration,
    /// Limit of one ping.
    pub health_timeout: Duration,
    /// Consecutive failed checks that trigger a restart.
    pub unhealthy_after: u32,
    /// How long a new FPM may take to become ready.
    pub ready_timeout: Duration,
    /// How long a retired FPM's workers may take to finish their requests.
    pub drain_timeout: Duration,
    /// How FPM is stopped when the supervisor exits.
    pub stop_plan: SignalPlan,
    /// Where `/metrics`, `/livez` and `/readyz` are served (`--metrics-listen`,
    /// `--health-listen`; one endpoint when equal).
    pub listen: Vec<std::net::SocketAddr>,
    /// Whether the pages of fpmctl's binary that waiting does not use are released when
    /// the supervisor settles ([`resident`]). On by default; `FPMCTL_RELEASE_PAGES=0` keeps
    /// them (the next crash maps the code it runs again: benches/crash.rs).
    pub release_pages: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: RestartPolicy::default(),
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(3),
            unhealthy_after: 3,
            ready_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            stop_plan: SignalPlan::default(),
            listen: Vec::new(),
            release_pages: true,
        }
    }
}

/// How long FPM may stay silent after exec before readiness is probed over FastCGI (an FPM
/// built with systemd support says `READY=1` within tens of milliseconds).
const NOTIFY_GRACE: Duration = Duration::from_secs(1);

/// Runs the supervisor until it is told to stop or FPM crash-loops; returns the exit code.
pub fn run(cfg: FpmConfig, fpm: Fpm, opts: Options) -> Result<ExitCode> {
    // Before any thread exists: the handled signals are blocked (every later thread inherits
    // the mask) and read from a signalfd; FPM gets an empty mask back before exec.
    let mask = driver::handled_signals();
    mask.thread_block()
        .map_err(|e| Error::io("blocking signals", e.into()))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::io("creating a signalfd", e.into()))?;
    // Orphaned workers of any FPM we start come back to us, and we reap them.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "could not become a child subreaper");
    }
    let sd = notify::SdNotify::from_env();
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_micros);

    let lock_dir = crate::lock::secure_dir()?;
    let mut snap = discovery::discover(&cfg);
    // A live supervisor of this config with another lock directory: two would fight over
    // the master (and retire each other's replacements).
    crate::supervised::refuse_unreached_supervisor(&snap)?;
    // A supervisor killed while retiring a master left it stopped beside the new one: the
    // retirement is finished before anything else (the serving master is taken over below).
    if !crate::handover::interrupted::finish(
        &cfg,
        &snap,
        crate::deadline::Deadline::after(opts.drain_timeout),
    )
    .is_empty()
    {
        snap = discovery::discover(&cfg);
    }
    // A master started by a supervisor of this config that died (SIGKILL, OOM) is taken over
    // and replaced without dropping a request; any other running FPM is refused.
    let mut adopt = None;
    if let Some(m) = &snap.master {
        match supervisor_died(&cfg.path) {
            true => adopt = Some(m.id),
            false => {
                return Err(Error::Other(format!(
                    "FPM {} already runs outside the supervisor (master {}); stop it first (`fpmctl stop`)",
                    cfg.path.display(),
                    m.pid()
                )));
            }
        }
    } else if !snap.orphans.is_empty() {
        info!(
            orphans = snap.orphans.len(),
            "stopping orphaned workers left by a dead master"
        );
        crate::stop::stop(&cfg, &SignalPlan::default(), Duration::from_secs(30))?;
    }
    if adopt.is_none() {
        discovery::refuse_foreign_holders(&discovery::discover(&cfg))?;
    }
    fpm.require_valid()?;
    // Bound first: an address in use fails the start before anything else is created.
    let counters = observe::Counters::new()
        .map_err(|e| Error::Other(format!("building the supervisor's metrics: {e}")))?;
    let endpoints = observe::Endpoints::start(
        &opts.listen,
        crate::endpoint::FpmHealth {
            cfg: cfg.clone(),
            max_queue: None,
            budget: observe::STATUS_BUDGET,
            extra: counters.registry.clone(),
        },
        &counters,
    )?;

    let control = control::bind(&cfg.path)?;
    let notify = notify::Listener::new(&lock_dir).map_err(|e| {
        Error::io(
            format!("creating a notify socket under {}", lock_dir.display()),
            e,
        )
    })?;
    let mut held = sockets::HeldSockets::default();
    remove_dead_notify_dirs(&lock_dir);
    if let Some(id) = &adopt {
        warn!(
            pid = id.pid,
            "FPM runs without its supervisor (it died): taking over its sockets and replacing it"
        );
        if held.adopt(&cfg, id.pid)? == 0 {
            return Err(Error::Other(format!(
                "FPM master {} of {} holds none of the config's listening sockets; stop it first (`fpmctl stop`)",
                id.pid,
                cfg.path.display()
            )));
        }
    }
    held.reconcile(&cfg)?;

    let settings = machine::Settings {
        policy: opts.policy,
        health_interval: opts.health_interval,
        unhealthy_after: opts.unhealthy_after,
        ready_timeout: opts.ready_timeout,
        notify_grace: NOTIFY_GRACE,
        drain_timeout: opts.drain_timeout,
        stop_plan: opts.stop_plan.clone(),
        watchdog,
    };
    let cfg_for_adopted = cfg.clone();
    let mut driver = driver::Driver::new(
        cfg,
        fpm,
        held,
        notify,
        control,
        sd,
        opts.health_timeout,
        sigfd,
        counters,
    )?;
    driver.release_pages = opts.release_pages;
    let (machine, first) = match adopt {
        Some(id) => {
            let (m, first) = machine::Machine::adopt(settings, id, Instant::now());
            driver.adopt_master(1, cfg_for_adopted, id);
            (m, first)
        }
        None => machine::Machine::start(settings, Instant::now()),
    };
    let code = driver.run(machine, first);
    endpoints.stop();
    driver.finish(code);
    Ok(code)
}

/// True when a supervisor of this config died: its control socket file is still there but
/// nobody answers on it. (FPM's master overwrites its own environment with its title, so
/// what it inherited cannot be read back.)
fn supervisor_died(config: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let ctl = control::socket_path(config);
    std::fs::symlink_metadata(&ctl).is_ok_and(|m| m.file_type().is_socket())
        && matches!(
            std::os::unix::net::UnixStream::connect(&ctl),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
}

/// Removes the notify directories in `lock_dir` whose socket nobody reads any more (left by
/// supervisors that died; a live one, of any config, answers and is kept).
fn remove_dead_notify_dirs(lock_dir: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = std::fs::read_dir(lock_dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().as_bytes().starts_with(b"notify-") {
            continue;
        }
        let sock = e.path().join("notify.sock");
        let Ok(probe) = std::os::unix::net::UnixDatagram::unbound() else {
            return;
        };
        let dead = match probe.send_to(b"", &sock) {
            Ok(_) => false,
            Err(err) => matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ),
        };
        if dead {
            let _ = std::fs::remove_file(&sock);
            if std::fs::remove_dir(e.path()).is_ok() {
                info!(dir = %e.path().display(), "removed a dead supervisor's notify directory");
            }
        }
    }
}
