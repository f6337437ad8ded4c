//! `fpmctl start` ([`crate::lifecycle::launch`]), and how a launch is printed (`restart`,
//! `ensure` and `reload --recover` print theirs the same way).

use super::{Ctx, Outcome, secs};
use crate::cli::StartArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::Result;
use crate::exit::ExitCode;
use crate::lifecycle::{self, Launch, LaunchOptions};
use crate::ready::PoolReady;
use crate::supervise::control::Request;
use serde_json::json;
use std::time::Duration;

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
    let launch = lifecycle::launch(
        &ctx.cfg,
        &fpm,
        &snap,
        LaunchOptions {
            timeout: args.ready.timeout(),
            wait: args.ready.waits(),
            test_first: true,
            no_systemd: ctx.global.no_systemd,
        },
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
        "ready_by": l.ready_by.map(|b| b.as_str()),
        "pools": l.pools.iter().map(|p| json!({
            "name": p.pool,
            "expected_workers": p.expected_workers,
            "workers": p.workers,
            "answer": match &p.answer { Ok(a) | Err(a) => a },
        })).collect::<Vec<_>>(),
    })
}
