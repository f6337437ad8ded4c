//! `fpmctl restart`: test the config (an invalid one aborts with the running FPM untouched),
//! refuse if the start could not succeed (a foreign process holds an address, a socket
//! directory is missing), then stop as `stop` does and start as `start` does.

use super::start::{self, Launch};
use super::{Ctx, Outcome, millis, secs};
use crate::cli::RestartArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::fpm::Fpm;
use crate::handover::{self, Mode, sockets::HeldSockets};
use crate::interrupt::{Critical, Phase};
use crate::procs::ProcInfo;
use crate::stop::{self, SignalPlan};
use crate::supervise::control::Request;
use crate::systemd::{self, Control};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub(super) fn run(ctx: &Ctx, args: &RestartArgs) -> Result<Outcome> {
    let plan = args
        .signal_plan
        .clone()
        .unwrap_or_else(|| SignalPlan::for_config(&ctx.cfg));
    let stop_timeout = args.stop_timeout.unwrap_or_else(|| plan.default_timeout());
    // Every option goes to the supervisor, which honours it or refuses it (exit 2).
    let req = Request {
        timeout_ms: args.ready.timeout.map(millis),
        signal_plan: args.signal_plan.as_ref().map(ToString::to_string),
        stop_timeout_ms: args.stop_timeout.map(millis),
        no_ready_wait: args.ready.no_ready_wait,
        cold: args.cold,
        ..Request::new("restart")
    };
    let wait = args
        .ready
        .timeout()
        .saturating_add(stop_timeout)
        .saturating_add(Duration::from_secs(60));
    if let Some(out) = super::delegate(ctx, &req, wait)? {
        return Ok(out);
    }
    // A broken config never touches the running FPM (exit 6).
    ctx.require_valid_config(true)?;
    let lock = ctx.lock()?;
    let started = Instant::now();
    let fpm = ctx.fpm()?;
    fpm.require_valid()?;
    info!("php-fpm -t: configuration is valid");
    let (problems, _) = super::check::static_checks(&ctx.cfg);
    if !problems.is_empty() {
        return Err(Error::ConfigInvalid {
            config: ctx.cfg.path.clone(),
            detail: format!("{}; the running FPM was left alone", problems.join("; ")),
        });
    }
    let snap = discovery::discover(&ctx.cfg);
    discovery::refuse_foreign_holders(&snap)?;
    let wait = args.ready.waits();
    let ready_timeout = args.ready.timeout();
    if let Control::Unit(unit) = systemd::decide(&snap, ctx.global.no_systemd)? {
        // The unit restarts its own master: a reload when it re-executes FPM, else a restart.
        let done =
            systemd::restart_unit(&ctx.cfg, &unit, &snap, args.cold, wait, ready_timeout, lock)?;
        return Ok(super::unit_restart::outcome(ctx, &done, started.elapsed()));
    }
    let mut cold_reason = None;
    let mode = handover::choose(
        args.cold,
        snap.master.is_some(),
        !snap.other_masters.is_empty(),
        !snap.orphans.is_empty(),
    );
    if let (Mode::Cold(Some(why)), Some(master)) = (&mode, &snap.master) {
        cold_reason = Some(format!(
            "cold restart (stop, then start): {why} (master {})",
            master.pid()
        ));
    } else if let (Mode::HandOver, Some(master)) = (&mode, &snap.master) {
        let mut held = HeldSockets::default();
        match held.adopt(&ctx.cfg, master.pid()) {
            Ok(_) => {
                return hand_over(
                    ctx,
                    &fpm,
                    &snap,
                    master,
                    held,
                    started,
                    ready_timeout,
                    stop_timeout,
                );
            }
            Err(e) => {
                warn!(pid = master.pid(), error = %e, "socket hand-over impossible; restarting cold");
                cold_reason = Some(format!(
                    "cold restart (stop, then start): the sockets of master {} could not be taken: {e}",
                    master.pid()
                ));
            }
        }
    }
    let found = describe(&snap);
    let down = || {
        format!(
            "the old FPM was stopped, but the new one did not come up, so FPM {} is DOWN",
            ctx.cfg.path.display()
        )
    };
    // From the first stop signal until the new FPM is launched, SIGINT and SIGTERM are
    // deferred: fpmctl must not leave FPM down half way.
    let critical = Critical::enter(Phase::Stopping);
    let stopped = stop::stop(&ctx.cfg, &plan, stop_timeout)?;
    // Stop's last look, taken when everything was gone: no need to look again.
    let after = match &stopped.after {
        Some(snap) => snap.clone(),
        None => discovery::discover(&ctx.cfg),
    };
    critical.phase(Phase::Starting);
    let mut launch =
        start::launch(ctx, &fpm, &after, ready_timeout, false, false).map_err(|e| match e {
            // Exit 6 means "nothing was changed", which is no longer true here.
            Error::ConfigInvalid { detail, .. } => Error::FpmDied(format!("{}: {detail}", down())),
            Error::AddressInUse { .. } => Error::Other(format!("{}: {e}", down())),
            Error::FpmDied(m) => Error::FpmDied(format!("{}: {m}", down())),
            other => Error::Other(format!("{}: {other}", down())),
        })?;
    if let Some(sig) = critical.leave() {
        let master = launch
            .master
            .map(|m| format!("master {m}"))
            .unwrap_or_else(|| "no master seen yet".into());
        return Err(Error::Interrupted(format!(
            "interrupted by {sig}: the restart was finished first; FPM {conf} was started again ({master}) but its readiness was not checked (`fpmctl -c {conf} ping` checks it)",
            conf = ctx.cfg.path.display()
        )));
    }
    if wait {
        launch.pools = crate::ready::wait_ready(&ctx.cfg, Deadline::after(ready_timeout)).map_err(
            |e| match e {
                Error::NotReady(m) => {
                    Error::NotReady(format!("FPM was restarted but is not ready: {m}"))
                }
                other => other,
            },
        )?;
        launch.elapsed = started.elapsed();
        if launch.master.is_none() {
            launch.master = discovery::discover(&ctx.cfg).master.map(|m| m.pid());
        }
        info!(
            pid = launch.master,
            duration_ms = launch.elapsed.as_millis() as u64,
            "ready"
        );
    }
    let mut out = start::outcome(ctx, &launch, "restarted");
    out.text = format!(
        "{}found {found}\nstopped in {}\n{}total {}\n",
        cold_reason
            .as_ref()
            .map(|r| format!("{r}\n"))
            .unwrap_or_default(),
        secs(stopped.elapsed),
        out.text,
        secs(started.elapsed())
    );
    out.json = json!({
        "found": found,
        "stop": super::stop::outcome(ctx, &stopped).json,
        "start": out.json,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "mode": "cold",
        "cold_reason": cold_reason,
        "process_table_scans": crate::procs::scans(),
    });
    Ok(out)
}

/// The zero-downtime restart: the new master starts on the sockets taken from `master`,
/// proves itself ready, then the old master is retired. Until the new master is ready the
/// old one is untouched (apart from the duplicated descriptors, closed on failure).
#[allow(clippy::too_many_arguments)]
fn hand_over(
    ctx: &Ctx,
    fpm: &Fpm,
    snap: &discovery::Snapshot,
    master: &ProcInfo,
    mut held: HeldSockets,
    started: Instant,
    ready_timeout: Duration,
    stop_timeout: Duration,
) -> Result<Outcome> {
    let cfg = &ctx.cfg;
    let found = describe(snap);
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
    let pid_before = pid_path.as_ref().and_then(|p| std::fs::read(p).ok());
    // The old master keeps serving whatever happens to the new one: its sockets, their paths
    // and its pid file are put back as they were.
    let undo = |held: &mut HeldSockets| {
        held.restore_paths();
        held.release_keepers();
        if let (Some(path), Some(before)) = (&pid_path, &pid_before)
            && std::fs::read(path).ok().as_ref() != Some(before)
        {
            let _ = std::fs::write(path, before);
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
    let deadline = Deadline::after(ready_timeout);
    if let Err(e) = handover::start_on(fpm, cfg, &held, ready_timeout) {
        undo(&mut held);
        let _ = critical.leave();
        let e = match e {
            Error::ConfigInvalid { detail, .. } | Error::FpmDied(detail) => detail,
            other => other.to_string(),
        };
        return Err(Error::FpmDied(format!(
            "the new master did not start: {e}; master {} keeps serving, untouched",
            old.pid
        )));
    }
    // The new master wrote its pid file before its launcher returned: read it instead of
    // the whole process table (which readiness reads anyway).
    let from_pid_file = pid_path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.trim().parse::<i32>().ok())
        .and_then(crate::procs::read)
        .filter(|p| discovery::is_master_of(p, cfg));
    let new_master = match from_pid_file {
        Some(p) => Some(p),
        None => discovery::discover(cfg).master,
    }
    .filter(|m| m.id != old)
    .map(|m| m.id);
    let scans_before_ready = crate::procs::scans();
    let ready = crate::ready::wait_ready(cfg, deadline);
    let readiness_scans = crate::procs::scans() - scans_before_ready;
    let pools = match (new_master, ready) {
        (Some(_), Ok(pools)) => pools,
        (new, result) => {
            // Not proven ready: the new master goes the way an old one goes, the old stays.
            if let Some(new) = new {
                let _ = handover::retire(new, cfg, Deadline::after(stop_timeout));
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
    let retired = handover::retire(old, cfg, Deadline::after(stop_timeout));
    held.release_keepers();
    drop(held);
    for path in &dropped {
        if handover::remove_dead_socket(path) {
            info!(path = %path.display(), "removed the socket of a listen address no longer configured");
        }
    }
    let retired = retired?;
    info!(
        pid = old.pid,
        workers = retired.workers,
        killed = retired.killed.len(),
        duration_ms = retire_started.elapsed().as_millis() as u64,
        "old master retired"
    );
    let interrupted = critical.leave();
    let launch = Launch {
        already_running: false,
        master: new_master.map(|m| m.pid),
        pools,
        elapsed: started.elapsed(),
    };
    let mut out = start::outcome(ctx, &launch, "restarted (sockets handed over)");
    out.text = format!(
        "found {found}\n{}old master {} retired in {} ({} worker(s) finished their requests{})\ntotal {}\n",
        out.text,
        old.pid,
        secs(retire_started.elapsed()),
        retired.workers,
        if retired.killed.is_empty() {
            String::new()
        } else {
            format!(", {} killed at the deadline", retired.killed.len())
        },
        secs(started.elapsed())
    );
    out.json = json!({
        "found": found,
        "mode": "handover",
        "old_master": old.pid,
        "retired_workers": retired.workers,
        "killed_workers": retired.killed,
        "start": out.json,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "process_table_scans": crate::procs::scans(),
        "readiness_scans": readiness_scans,
    });
    if let Some(sig) = interrupted {
        return Err(Error::Interrupted(format!(
            "interrupted by {sig}: the restart was finished first; FPM {} now runs as master {}, proven ready",
            cfg.path.display(),
            new_master
                .map(|m| m.pid.to_string())
                .unwrap_or_else(|| "?".into())
        )));
    }
    Ok(out)
}

/// What discovery found, one line: the master and its workers (or "no master"), orphaned
/// workers and a stale pid file. `ensure` says the same when it finds FPM not running.
pub(super) fn describe(snap: &discovery::Snapshot) -> String {
    let mut parts = Vec::new();
    match &snap.master {
        Some(m) => parts.push(format!(
            "master {} with {} worker(s)",
            m.pid(),
            snap.workers.len()
        )),
        None => parts.push("no master".to_string()),
    }
    if !snap.orphans.is_empty() {
        let pids: Vec<String> = snap
            .orphans
            .iter()
            .map(|o| o.proc.pid().to_string())
            .collect();
        parts.push(format!(
            "{} orphaned worker(s) of a dead master ({})",
            snap.orphans.len(),
            pids.join(" ")
        ));
    }
    if let discovery::PidFile::Stale { reason, .. } = &snap.pid_file {
        parts.push(format!("a stale pid file ({reason})"));
    }
    parts.join(", ")
}
