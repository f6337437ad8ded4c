//! `fpmctl restart`: test the config (an invalid one aborts with the running FPM untouched),
//! refuse if the start could not succeed (a foreign process holds an address, a socket
//! directory is missing), then stop as `stop` does and start as `start` does.

use super::start::{self, Launch};
use super::{Ctx, Outcome, millis, secs};
use crate::cli::RestartArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::interrupt::{Critical, Phase};
use crate::stop::{self, SignalPlan};
use crate::supervise::control::Request;
use crate::systemd::{self, Control};
use serde_json::json;
use std::time::{Duration, Instant};
use tracing::info;

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
    let _lock = ctx.lock()?;
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
        systemd::systemctl("restart", &unit)?;
        let pools = if wait {
            crate::ready::wait_ready(&ctx.cfg, Deadline::after(ready_timeout))?
        } else {
            Vec::new()
        };
        let launch = Launch {
            already_running: false,
            master: discovery::discover(&ctx.cfg).master.map(|m| m.pid()),
            pools,
            elapsed: started.elapsed(),
        };
        return Ok(start::outcome(ctx, &launch, "restarted (through systemd)"));
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
        "found {found}\nstopped in {}\n{}total {}\n",
        secs(stopped.elapsed),
        out.text,
        secs(started.elapsed())
    );
    out.json = json!({
        "found": found,
        "stop": super::stop::outcome(ctx, &stopped).json,
        "start": out.json,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    Ok(out)
}

fn describe(snap: &discovery::Snapshot) -> String {
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
