//! Replacing a running FPM: through its systemd unit when it runs in one, by the socket
//! hand-over when one master runs ([`crate::handover`]), else stop, then start. One look at
//! the system ([`discovery::discover`]) decides; afterwards only the processes it found and
//! the new master (named by its own `READY=1`) are followed.
//!
//! The hand-over does not run `php-fpm -t` first: the new master's own start tests the config
//! (a rejected config ends its launcher with status 78 before it touches a socket) while the
//! old master serves, untouched. A cold restart stops FPM, so its config is tested before.

use super::launch::{Launch, LaunchOptions, launch_watched};
use super::watch::{ReadyBy, Watch};
use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery::{self, Snapshot};
use crate::error::{Error, Result};
use crate::fpm::Fpm;
use crate::handover::{self, Mode, Retired, sockets::HeldSockets};
use crate::interrupt::{Critical, Phase};
use crate::lock::ConfigLock;
use crate::procs::ProcInfo;
use crate::stop::{self, SignalPlan, StopReport};
use crate::systemd::{self, Control, UnitRestarted};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How to restart.
#[derive(Debug, Clone)]
pub struct RestartOptions {
    /// The signal plan of a cold restart's stop.
    pub plan: SignalPlan,
    /// The limit of the stop (cold), or of the old master's retirement (hand-over).
    pub stop_timeout: Duration,
    /// The readiness limit of the new FPM.
    pub ready_timeout: Duration,
    /// Prove the new FPM ready (a hand-over always does: the old master is retired only
    /// once the new one is proven).
    pub wait: bool,
    /// Stop, then start, even when the sockets could be handed over.
    pub cold: bool,
    /// Never act through systemd.
    pub no_systemd: bool,
}

/// What a restart did.
#[derive(Debug)]
pub enum Restarted {
    /// The master runs in a systemd unit, which was asked to reload or restart it.
    Unit {
        /// What was asked of the unit, and why.
        done: UnitRestarted,
        /// The FPM that runs now.
        launch: Launch,
    },
    /// The new master started on the old one's sockets; the old one was retired.
    HandOver(HandOver),
    /// Stop, then start.
    Cold(Box<Cold>),
}

/// A hand-over.
#[derive(Debug)]
pub struct HandOver {
    /// What discovery found, one line.
    pub found: String,
    /// The old master.
    pub old: i32,
    /// Its retirement.
    pub retired: Retired,
    /// How long the retirement took.
    pub retire_elapsed: Duration,
    /// The new master.
    pub launch: Launch,
}

/// A stop, then a start.
#[derive(Debug)]
pub struct Cold {
    /// What discovery found, one line.
    pub found: String,
    /// Why the sockets were not handed over, when that was not asked away (`--cold`).
    pub reason: Option<String>,
    /// The stop.
    pub stopped: StopReport,
    /// The start.
    pub launch: Launch,
    /// The whole restart, from its first look.
    pub elapsed: Duration,
}

/// Restarts `cfg`'s FPM. Nothing is stopped before the new FPM can be expected to come up:
/// the config passed the static checks, no foreign process holds an address, and either the
/// sockets are handed over (the old master untouched until the new one is ready) or the
/// config passed `php-fpm -t`. `lock`, the config's, is held until the restart is done, or
/// let go before a unit's `systemctl reload` (its `ExecReload` may be fpmctl, which takes it).
pub fn restart(
    cfg: &FpmConfig,
    fpm: &Fpm,
    opts: &RestartOptions,
    lock: ConfigLock,
) -> Result<Restarted> {
    let started = Instant::now();
    let (problems, _) = crate::config::static_checks(cfg);
    if !problems.is_empty() {
        return Err(Error::ConfigInvalid {
            config: cfg.path.clone(),
            detail: format!("{}; the running FPM was left alone", problems.join("; ")),
        });
    }
    // `--cold` tests the config before it stops FPM whatever the look finds: the test runs
    // while fpmctl looks. (A hand-over needs no test: its new master's start is the test, so
    // none is run beside it to compete for the CPU.)
    let mut early_test = if opts.cold {
        Some(fpm.spawn_test()?)
    } else {
        None
    };
    let mut snap = discovery::discover(cfg);
    // Before anything is retired: a supervisor's replacement still being proven ready is a
    // second master too.
    crate::supervised::refuse_unreached_supervisor(&snap)?;
    // A master an interrupted restart left stopped is retired first (never the one serving).
    if !handover::interrupted::finish(cfg, &snap, Deadline::after(opts.stop_timeout)).is_empty() {
        snap = discovery::discover(cfg);
    }
    let mode = handover::choose(
        opts.cold,
        snap.master.is_some(),
        !snap.other_masters.is_empty(),
        !snap.orphans.is_empty(),
    );
    let unit = systemd::decide(&snap, opts.no_systemd)?;
    if mode != Mode::HandOver || matches!(unit, Control::Unit(_)) {
        // A config that fails here would leave FPM down after the stop: test it first.
        match early_test.take() {
            Some(test) => test.require_valid()?,
            None => fpm.require_valid()?,
        }
        info!("php-fpm -t: configuration is valid");
    }
    discovery::refuse_foreign_holders(&snap)?;
    if let Control::Unit(unit) = unit {
        // The unit restarts its own master: a reload when it re-executes FPM, else a restart.
        let done = systemd::restart_unit(
            cfg,
            &unit,
            &snap,
            opts.cold,
            opts.wait,
            opts.ready_timeout,
            lock,
        )?;
        let launch = Launch {
            already_running: false,
            master: done.master,
            pools: done.pools.clone(),
            elapsed: started.elapsed(),
            ready_by: opts.wait.then_some(ReadyBy::Polling),
        };
        return Ok(Restarted::Unit { done, launch });
    }
    let mut reason = None;
    if let (Mode::Cold(Some(why)), Some(master)) = (&mode, &snap.master) {
        reason = Some(format!(
            "cold restart (stop, then start): {why} (master {})",
            master.pid()
        ));
    } else if let (Mode::HandOver, Some(master)) = (&mode, &snap.master) {
        let mut held = HeldSockets::default();
        match held.adopt(cfg, master.pid()) {
            Ok(_) => return hand_over(cfg, fpm, &snap, master, held, started, opts),
            Err(e) => {
                warn!(pid = master.pid(), error = %e, "socket hand-over impossible; restarting cold");
                // The hand-over was to test the config by starting on it; now the stop comes
                // first, so the test does.
                fpm.require_valid()?;
                reason = Some(format!(
                    "cold restart (stop, then start): the sockets of master {} could not be taken: {e}",
                    master.pid()
                ));
            }
        }
    }
    cold(cfg, fpm, snap, reason, started, opts)
}

/// Stop, then start, with SIGINT, SIGQUIT and SIGTERM held back in between.
fn cold(
    cfg: &FpmConfig,
    fpm: &Fpm,
    snap: Snapshot,
    reason: Option<String>,
    started: Instant,
    opts: &RestartOptions,
) -> Result<Restarted> {
    let found = snap.describe();
    let down = || {
        format!(
            "the old FPM was stopped, but the new one did not come up, so FPM {} is DOWN",
            cfg.path.display()
        )
    };
    // From the first stop signal until the new FPM is launched, SIGINT, SIGQUIT and SIGTERM are
    // deferred: fpmctl must not leave FPM down half way.
    let critical = Critical::enter(Phase::Stopping);
    let stopped = stop::stop_from(cfg, snap, &opts.plan, opts.stop_timeout)?;
    // Stop's last look, taken when everything was gone: no need to look again.
    let after = match &stopped.after {
        Some(snap) => snap.clone(),
        None => discovery::discover(cfg),
    };
    critical.phase(Phase::Starting);
    let launch_opts = LaunchOptions {
        timeout: opts.ready_timeout,
        wait: false,
        test_first: false,
        no_systemd: opts.no_systemd,
    };
    // Readiness is proven after the critical section, so that an interrupted restart
    // still ends with FPM started.
    let watch = Watch::new();
    let mut launched =
        launch_watched(cfg, fpm, &after, launch_opts, &watch).map_err(|e| match e {
            // Exit 6 means "nothing was changed", which is no longer true here.
            Error::ConfigInvalid { detail, .. } => Error::FpmDied(format!("{}: {detail}", down())),
            Error::AddressInUse { .. } => Error::Other(format!("{}: {e}", down())),
            Error::FpmDied(m) => Error::FpmDied(format!("{}: {m}", down())),
            other => Error::Other(format!("{}: {other}", down())),
        })?;
    if let Some(sig) = critical.leave() {
        let master = launched
            .master
            .map(|m| format!("master {m}"))
            .unwrap_or_else(|| "no master seen yet".into());
        return Err(Error::Interrupted(format!(
            "interrupted by {sig}: the restart was finished first; FPM {conf} was started again ({master}) but its readiness was not checked (`fpmctl -c {conf} ping` checks it)",
            conf = cfg.path.display()
        )));
    }
    if opts.wait {
        let ready = watch
            .wait_ready(cfg, Deadline::after(opts.ready_timeout))
            .map_err(|e| match e {
                Error::NotReady(m) => {
                    Error::NotReady(format!("FPM was restarted but is not ready: {m}"))
                }
                other => other,
            })?;
        launched.pools = ready.pools;
        launched.master = ready.master.or(launched.master);
        launched.ready_by = Some(ready.by);
        launched.elapsed = started.elapsed();
        info!(
            pid = launched.master,
            duration_ms = launched.elapsed.as_millis() as u64,
            "ready"
        );
    }
    Ok(Restarted::Cold(Box::new(Cold {
        found,
        reason,
        stopped,
        launch: launched,
        elapsed: started.elapsed(),
    })))
}

/// The zero-downtime restart: the new master starts on the sockets taken from `master`,
/// proves itself ready, then the old master is retired. Until the new master is ready the
/// old one is untouched (apart from the duplicated descriptors, closed on failure).
fn hand_over(
    cfg: &FpmConfig,
    fpm: &Fpm,
    snap: &Snapshot,
    master: &ProcInfo,
    mut held: HeldSockets,
    started: Instant,
    opts: &RestartOptions,
) -> Result<Restarted> {
    let found = snap.describe();
    let old = master.id;
    // Unix paths the old master serves that the new config drops: removed once it is gone.
    let wanted: Vec<_> = discovery::config_addresses(cfg)
        .into_iter()
        .filter_map(|(_, a)| a.unix_path().map(Path::to_path_buf))
        .collect();
    let dropped: Vec<_> = handover::unix_listeners_of(old.pid)
        .into_iter()
        .filter(|p| !wanted.contains(p))
        .collect();
    let pid_path = snap.pid_file.path().map(Path::to_path_buf);
    // Bounded and non-blocking: a FIFO or a device in its place must not hang the restart.
    let pid_before = pid_path.as_deref().and_then(handover::read_small);
    // The new config's socket permissions are applied before the new master starts; a
    // failure puts the old ones back.
    let saved = held.save_permissions();
    // The old master keeps serving whatever happens to the new one: its sockets, their paths,
    // their permissions and its pid file are put back as they were.
    let undo = |held: &mut HeldSockets| {
        held.restore_paths();
        handover::sockets::restore_permissions(&saved);
        held.release_keepers();
        if let (Some(path), Some(before)) = (&pid_path, &pid_before)
            && handover::read_small(path).as_ref() != Some(before)
        {
            let _ = handover::write_pid_file(path, before);
        }
    };
    if let Err(e) = held.apply_settings(cfg) {
        undo(&mut held);
        return Err(e);
    }
    info!(
        pid = old.pid,
        sockets = held.list.len(),
        "took the running master's listening sockets"
    );
    let critical = Critical::enter(Phase::HandingOver);
    let deadline = Deadline::after(opts.ready_timeout);
    let watch = Watch::new();
    if let Err(e) = handover::start_on(fpm, cfg, &held, opts.ready_timeout, |cmd| {
        watch.prepare(cmd)
    }) {
        // A launcher cut off at its timeout may have forked the new master already: half
        // started beside the serving old one, on the same sockets, it is retired (unlike a
        // start's, which is left running: there nothing else serves) and named.
        let daemon = match &e {
            Error::LauncherCutOff { daemon, .. } => *daemon,
            _ => None,
        };
        let left = match handover::new_master(cfg, old) {
            Some(new) => Some((
                new.pid,
                handover::retire(new, cfg, Deadline::after(opts.stop_timeout))
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            )),
            // Never signalled unless proven a master of this config.
            None => super::cut_off::still_running(daemon).map(|pid| {
                (
                    pid,
                    Err("it is not proven to be a master of this config; it was left alone".into()),
                )
            }),
        };
        if let Some((pid, done)) = &left {
            warn!(
                pid = *pid,
                stopped = done.is_ok(),
                "the cut-off launcher left a new master behind"
            );
        }
        undo(&mut held);
        let _ = critical.leave();
        let e = match e {
            Error::LauncherCutOff { detail, .. } => Error::Timeout(format!(
                "{detail}; {}",
                super::cut_off::handover_clause(left)
            )),
            other => other,
        };
        return Err(match e {
            // The new master's start was the config test: nothing was changed (exit 6).
            Error::ConfigInvalid { config, detail } => Error::ConfigInvalid {
                config,
                detail: format!("{detail}; master {} keeps serving, untouched", old.pid),
            },
            Error::FpmDied(detail) => Error::FpmDied(format!(
                "the new master did not start: {detail}; master {} keeps serving, untouched",
                old.pid
            )),
            other => Error::FpmDied(format!(
                "the new master did not start: {other}; master {} keeps serving, untouched",
                old.pid
            )),
        });
    }
    // The new master names itself in its READY=1; an FPM without systemd support is told
    // from the old master by its pid file, or else by its start time.
    let (new_master, ready) = match watch.ready_master(cfg, deadline) {
        Some(m) => (
            Some(m.id),
            crate::ready::wait_ready_of(cfg, m.id, deadline).map(|pools| (pools, ReadyBy::Notify)),
        ),
        None => match handover::new_master(cfg, old) {
            Some(new) => (
                Some(new),
                crate::ready::wait_ready_of(cfg, new, deadline)
                    .map(|pools| (pools, ReadyBy::Polling)),
            ),
            None => (None, Err(Error::NotReady("no new master was found".into()))),
        },
    };
    let new_master = new_master.filter(|m| *m != old);
    let (pools, ready_by) = match (new_master, ready) {
        (Some(_), Ok(ready)) => ready,
        (new, result) => {
            // Not proven ready: the new master goes the way an old one goes, the old stays.
            if let Some(new) = new {
                let _ = handover::retire(new, cfg, Deadline::after(opts.stop_timeout));
            }
            undo(&mut held);
            let _ = critical.leave();
            let why = match result {
                Err(e) => e.to_string(),
                Ok(_) => "no new master was found".to_string(),
            };
            return Err(Error::NotReady(format!(
                "the new master was not ready ({why}); it was retired and master {} keeps serving",
                old.pid
            )));
        }
    };
    info!(
        pid = new_master.map(|m| m.pid),
        duration_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    let retire_started = Instant::now();
    let retired = handover::retire(old, cfg, Deadline::after(opts.stop_timeout));
    held.release_keepers();
    drop(held);
    for path in &dropped {
        if handover::remove_dead_socket(path) {
            info!(path = %path.display(), "removed the socket of a listen address no longer configured");
        }
    }
    let retired = retired?;
    let retire_elapsed = retire_started.elapsed();
    info!(
        pid = old.pid,
        workers = retired.workers,
        killed = retired.killed.len(),
        duration_ms = retire_elapsed.as_millis() as u64,
        "old master retired"
    );
    let interrupted = critical.leave();
    if let Some(sig) = interrupted {
        return Err(Error::Interrupted(format!(
            "interrupted by {sig}: the restart was finished first; FPM {} now runs as master {}, proven ready",
            cfg.path.display(),
            new_master
                .map(|m| m.pid.to_string())
                .unwrap_or_else(|| "?".into())
        )));
    }
    Ok(Restarted::HandOver(HandOver {
        found,
        old: old.pid,
        retired,
        retire_elapsed,
        launch: Launch {
            already_running: false,
            master: new_master.map(|m| m.pid),
            pools,
            elapsed: started.elapsed(),
            ready_by: Some(ready_by),
        },
    }))
}
