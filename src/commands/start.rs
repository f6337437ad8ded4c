//! `fpmctl start`, and the launch sequence `restart` and `reload --recover` share.

use super::{Ctx, Outcome, secs};
use crate::cli::StartArgs;
use crate::deadline::Deadline;
use crate::discovery::{self, Snapshot};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::fpm::Fpm;
use crate::interrupt::{Critical, Phase};
use crate::ready::{self, PoolReady};
use crate::stop::{self, SignalPlan};
use crate::supervise::control::Request;
use serde_json::json;
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};
use tracing::info;

/// What a launch did.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub already_running: bool,
    pub master: Option<i32>,
    pub pools: Vec<PoolReady>,
    pub elapsed: Duration,
}

pub(super) fn run(ctx: &Ctx, args: &StartArgs) -> Result<Outcome> {
    // A supervised FPM is started by its supervisor; report what it says.
    if let Some(out) = supervised(ctx, args)? {
        return Ok(out);
    }
    ctx.require_valid_config(true)?;
    let _lock = ctx.lock()?;
    let fpm = ctx.fpm()?;
    // A master that already runs (under systemd or not) is only checked for readiness.
    let snap = discovery::discover(&ctx.cfg);
    let launch = launch(
        ctx,
        &fpm,
        &snap,
        args.ready.timeout(),
        args.ready.waits(),
        true,
    )?;
    Ok(outcome(ctx, &launch, "started"))
}

/// The supervisor's view when one runs for this config: its status, asked again until it
/// says FPM is ready or `--timeout` passes (at once with `--no-ready-wait`).
fn supervised(ctx: &Ctx, args: &StartArgs) -> Result<Option<Outcome>> {
    let limit = args.ready.timeout.unwrap_or(Duration::from_secs(30));
    let deadline = Deadline::after(limit);
    loop {
        let wait = deadline.remaining_capped(Duration::from_secs(5));
        let Some(out) = super::delegate(ctx, &Request::new("status"), wait)? else {
            return Ok(None);
        };
        if out.code != ExitCode::NotReady || !args.ready.waits() || deadline.expired() {
            return Ok(Some(out));
        }
        std::thread::sleep(deadline.remaining_capped(Duration::from_millis(200)));
    }
}

/// Starts FPM unless it already runs, then proves readiness (when `wait`).
/// `test_first` runs `php-fpm -t` before anything else.
pub(crate) fn launch(
    ctx: &Ctx,
    fpm: &Fpm,
    snap: &Snapshot,
    timeout: Duration,
    wait: bool,
    test_first: bool,
) -> Result<Launch> {
    let started = Instant::now();
    let deadline = Deadline::after_from(started, timeout);
    let cfg = &ctx.cfg;
    if let Some(m) = &snap.master {
        info!(pid = m.pid(), "master already running; checking readiness");
        let pools = ready::wait_ready(cfg, deadline).map_err(|e| match e {
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
    if test_first {
        fpm.require_valid()?;
        info!("php-fpm -t: configuration is valid");
    }
    // What php-fpm -t cannot see (a socket path too long for the kernel, a missing socket
    // directory), caught before php-fpm is launched.
    let (problems, _) = super::check::static_checks(cfg);
    if !problems.is_empty() {
        return Err(Error::ConfigInvalid {
            config: cfg.path.clone(),
            detail: format!("{}; php-fpm was not started", problems.join("; ")),
        });
    }
    if snap.orphans.is_empty()
        && let Some(unit) = crate::systemd::unit_for_config(&cfg.path, ctx.global.no_systemd)
    {
        // Started behind systemd's back, FPM would later be started a second time by it.
        crate::systemd::systemctl("start", &unit)?;
        let pools = if wait {
            ready::wait_ready(cfg, deadline)?
        } else {
            Vec::new()
        };
        return Ok(Launch {
            already_running: false,
            master: discovery::discover(cfg).master.map(|m| m.pid()),
            pools,
            elapsed: started.elapsed(),
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
        stopped = stop::stop(cfg, &SignalPlan::default(), Duration::from_secs(30))?;
        stopped.after.as_ref().unwrap_or(snap)
    };
    if let Some(c) = &critical {
        c.phase(Phase::Starting);
    }
    discovery::refuse_foreign_holders(snap)?;
    remove_stale_sockets(snap)?;
    info!(
        binary = %fpm.bin.display(),
        config = %cfg.path.display(),
        "starting FPM"
    );
    fpm.start_daemon(timeout.max(Duration::from_secs(5)))?;
    if let Some(sig) = critical.and_then(Critical::leave) {
        return Err(Error::Interrupted(format!(
            "interrupted by {sig}: the orphans were stopped and FPM {} was started again, but its readiness was not checked (`fpmctl -c {} ping` checks it)",
            cfg.path.display(),
            cfg.path.display()
        )));
    }
    let master = discovery::discover(cfg).master.map(|m| m.pid());
    let pools = if wait {
        // At least a second to prove readiness, even when the launch used up the budget.
        let left = deadline.remaining().max(Duration::from_secs(1));
        ready::wait_ready(cfg, Deadline::after(left))?
    } else {
        Vec::new()
    };
    let elapsed = started.elapsed();
    let master = master.or_else(|| discovery::discover(cfg).master.map(|m| m.pid()));
    if wait {
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

pub(crate) fn outcome(ctx: &Ctx, l: &Launch, verb: &str) -> Outcome {
    let config = ctx.cfg.path.display();
    let master = l
        .master
        .map(|m| m.to_string())
        .unwrap_or_else(|| "?".into());
    let mut text = if l.already_running {
        format!("FPM {config} is already running (master {master}) and ready\n")
    } else if l.pools.is_empty() {
        format!(
            "{verb} FPM {config} (master {master}) in {}; readiness not checked\n",
            secs(l.elapsed)
        )
    } else {
        format!(
            "{verb} FPM {config} (master {master}); ready in {}\n",
            secs(l.elapsed)
        )
    };
    text.push_str(&pool_lines(&l.pools));
    Outcome::ok(text, launch_json(l))
}

/// One line per pool: workers against expected, and how it answered.
pub(crate) fn pool_lines(pools: &[PoolReady]) -> String {
    let mut text = String::new();
    for p in pools {
        let answer = match &p.answer {
            Ok(a) | Err(a) => a.as_str(),
        };
        text.push_str(&format!(
            "  pool {}: {}/{} workers, {answer}\n",
            p.pool, p.workers, p.expected_workers
        ));
    }
    text
}

pub(crate) fn launch_json(l: &Launch) -> serde_json::Value {
    json!({
        "result": if l.already_running { "already-running" } else { "started" },
        "master": l.master,
        "ready": !l.pools.is_empty() || l.already_running,
        "elapsed_ms": l.elapsed.as_millis() as u64,
        "pools": l.pools.iter().map(|p| json!({
            "name": p.pool,
            "expected_workers": p.expected_workers,
            "workers": p.workers,
            "answer": match &p.answer { Ok(a) | Err(a) => a },
        })).collect::<Vec<_>>(),
    })
}
