//! `fpmctl ensure`: the cron job. A running, ready FPM is left alone and nothing is printed
//! (so cron mails nothing); an FPM that does not run is started as `start` does (orphans of a
//! dead master stopped first) and the output says what was wrong and what was done; a running
//! FPM that is not ready is reported (exit 10) and only restarted with `--restart-unready`.
//! It never waits for another fpmctl: a cron job must not pile up behind a long restart.

use super::start;
use super::{Ctx, Outcome};
use crate::cli::{EnsureArgs, RestartArgs};
use crate::deadline::Deadline;
use crate::discovery::{self, Snapshot};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::handover::{self, interrupted::Finished};
use crate::lifecycle::{self, Launch};
use crate::ready;
use serde_json::json;
use std::time::Duration;
use tracing::{info, warn};

/// How long the first, silent look at a running FPM may take before ensure waits in earnest.
const QUICK_LOOK: Duration = Duration::from_secs(3);

pub(super) fn run(ctx: &Ctx, args: &EnsureArgs) -> Result<Outcome> {
    if let Some(out) = supervised(ctx)? {
        return Ok(out);
    }
    // A healthy FPM is judged without the lock: nothing is changed, and a cron job that
    // finds everything fine must stay cheap and silent.
    let snap = discovery::discover(&ctx.cfg);
    // A master left stopped, or left running beside the serving one on its sockets, by an
    // interrupted restart: repaired under the lock even when FPM answers (the next restart
    // would otherwise find two masters).
    let left_behind = !handover::interrupted::half_retired(&snap).is_empty()
        || !handover::interrupted::doubled(&snap).is_empty();
    if !left_behind && snap.master.is_some() && quick_ready(ctx, &snap) {
        return Ok(quiet_ok(&snap));
    }
    // Something may need doing: never wait for another fpmctl, whatever --lock-timeout says.
    let lock = match crate::lock::acquire(&ctx.cfg.path, Duration::ZERO, true) {
        Ok(lock) => lock,
        // The stopped master is most likely being retired by whoever holds the lock.
        Err(Error::Locked(_))
            if left_behind && snap.master.is_some() && quick_ready(ctx, &snap) =>
        {
            return Ok(quiet_ok(&snap));
        }
        Err(e) => return Err(e),
    };
    // Look again: whoever held the lock a moment ago may have repaired it.
    let mut snap = discovery::discover(&ctx.cfg);
    // A supervisor's replacement still being proven ready looks like a master left beside
    // the serving one: only its supervisor may decide about it.
    crate::supervised::refuse_unreached_supervisor(&snap)?;
    // A master an interrupted restart left stopped beside the serving one: its retirement
    // is finished (the serving master is left alone), and said.
    let plan = crate::stop::SignalPlan::for_config(&ctx.cfg);
    let finished =
        handover::interrupted::finish(&ctx.cfg, &snap, Deadline::after(plan.default_timeout()));
    if !finished.is_empty() {
        snap = discovery::discover(&ctx.cfg);
    }
    let Some(master) = snap.master.as_ref().map(|m| m.pid()) else {
        return not_running(ctx, args, &snap);
    };
    let why = match unready(ctx, args, &snap) {
        None if finished.is_empty() => return Ok(quiet_ok(&snap)),
        None => return Ok(repaired(&snap, &finished)),
        Some(Err(e)) => return Err(e),
        Some(Ok(why)) => why,
    };
    if !args.restart_unready {
        return Err(Error::NotReady(format!(
            "master {master} runs but is not ready: {why}; not restarted \
             (`fpmctl restart`, or ensure --restart-unready)"
        )));
    }
    // restart takes the lock itself: an flock is per open file, so holding ours would make
    // it wait for us. Released here, it is taken again at once and without waiting.
    drop(lock);
    restart_unready(ctx, args, master, &why)
}

/// A supervisor owns this FPM: it restarts it itself, so ensure only reports.
fn supervised(ctx: &Ctx) -> Result<Option<Outcome>> {
    let Some(reply) = crate::supervise::control::request(
        &ctx.cfg.path,
        &crate::supervise::control::Request::new("status"),
        QUICK_LOOK,
    )?
    else {
        return Ok(None);
    };
    if reply.code == ExitCode::Ok.code() {
        return Ok(Some(Outcome {
            code: ExitCode::Ok,
            text: String::new(),
            json: json!({ "result": "ok", "supervisor": reply.json }),
            error: None,
        }));
    }
    Err(Error::NotReady(format!(
        "{}; the supervisor owns FPM {} and restarts it itself, so ensure did nothing",
        reply.text.trim(),
        ctx.cfg.path.display()
    )))
}

/// A ready FPM beside which ensure finished an interrupted retirement: said, so cron mails it.
fn repaired(snap: &Snapshot, finished: &[Finished]) -> Outcome {
    let lines: Vec<String> = finished.iter().map(Finished::line).collect();
    let code = if finished.iter().all(|f| f.result.is_ok()) {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    };
    Outcome {
        code,
        text: format!("{}\n", lines.join("\n")),
        json: json!({
            "result": "repaired",
            "master": snap.master.as_ref().map(|m| m.pid()),
            "retired": finished.iter().map(|f| f.found.master.pid).collect::<Vec<_>>(),
            "notes": lines,
        }),
        error: (code != ExitCode::Ok).then(|| lines.join("; ")),
    }
}

/// One look at readiness that logs nothing unless it fails.
fn quick_ready(ctx: &Ctx, snap: &Snapshot) -> bool {
    ready::assess(&ctx.cfg, snap, Deadline::after(QUICK_LOOK)).is_ok()
}

fn quiet_ok(snap: &Snapshot) -> Outcome {
    Outcome {
        code: ExitCode::Ok,
        text: String::new(),
        json: json!({
            "result": "ok",
            "master": snap.master.as_ref().map(|m| m.pid()),
        }),
        error: None,
    }
}

/// Why a running master is not ready after the timeout; `None` when it is ready.
fn unready(ctx: &Ctx, args: &EnsureArgs, snap: &Snapshot) -> Option<Result<String>> {
    if quick_ready(ctx, snap) {
        return None;
    }
    match ready::wait_ready(&ctx.cfg, Deadline::after(args.timeout)) {
        Ok(_) => None,
        Err(Error::NotReady(why)) => Some(Ok(why)),
        Err(e) => Some(Err(e)),
    }
}

/// `--restart-unready`: `restart` as its own command does it, with `--no-wait`.
fn restart_unready(ctx: &Ctx, args: &EnsureArgs, master: i32, why: &str) -> Result<Outcome> {
    warn!(
        pid = master,
        "FPM runs but is not ready; restarting it (--restart-unready)"
    );
    let restart = RestartArgs {
        ready: crate::cli::ReadyWaitArgs {
            wait: true,
            no_ready_wait: false,
            timeout: Some(args.timeout),
        },
        stop_timeout: None,
        signal_plan: None,
        // An unready FPM is replaced outright: its stuck workers are not waited for.
        cold: true,
        json: args.json,
    };
    let mut global = ctx.global.clone();
    global.no_wait = true;
    let inner = Ctx {
        cfg: ctx.cfg.clone(),
        problems: ctx.problems.clone(),
        global,
        found_fpm: ctx.found_fpm.clone(),
        early_test: Default::default(),
    };
    let mut out = super::restart::run(&inner, &restart)?;
    out.text = format!(
        "FPM {} was running (master {master}) but not ready: {why}\n{}",
        ctx.cfg.path.display(),
        out.text
    );
    out.json = json!({
        "result": "restarted",
        "found": format!("master {master} not ready: {why}"),
        "restart": out.json,
    });
    Ok(out)
}

/// No master: start FPM, saying what was found.
fn not_running(ctx: &Ctx, args: &EnsureArgs, snap: &Snapshot) -> Result<Outcome> {
    // A broken config never starts FPM (exit 6 when php-fpm -t rejects it too).
    ctx.require_valid_config(true)?;
    let found = snap.describe();
    info!(found = %found, "FPM is not running; starting it");
    let fpm = ctx.fpm()?;
    let launch: Launch = lifecycle::launch(
        &ctx.cfg,
        &fpm,
        snap,
        ctx.launch_options(args.timeout, true, true),
    )?;
    let mut out = start::outcome(ctx, &launch, "started");
    out.text = format!(
        "FPM {} was not running ({found})\n{}",
        ctx.cfg.path.display(),
        out.text
    );
    out.json = json!({
        "result": "started",
        "found": found,
        "start": out.json,
    });
    Ok(out)
}
