//! `fpmctl stop`.

use super::{Ctx, Outcome, millis, secs};
use crate::cli::StopArgs;
use crate::discovery;
use crate::error::Result;
use crate::stop::{self, SignalPlan, StopReport};
use crate::supervise::control::Request;
use crate::systemd::{self, Control};
use serde_json::json;
use std::time::Duration;

pub(super) fn run(ctx: &Ctx, args: &StopArgs) -> Result<Outcome> {
    let plan = args
        .signal_plan
        .clone()
        .unwrap_or_else(|| SignalPlan::for_config(&ctx.cfg));
    let timeout = args.timeout.unwrap_or_else(|| plan.default_timeout());
    // The supervisor honours both options: its stop uses the plan, and the timeout.
    let req = Request {
        timeout_ms: args.timeout.map(millis),
        signal_plan: args.signal_plan.as_ref().map(ToString::to_string),
        ..Request::new("stop")
    };
    let wait = timeout.saturating_add(Duration::from_secs(30));
    if let Some(out) = super::delegate(ctx, &req, wait)? {
        return Ok(out);
    }
    ctx.warn_problems("stopping");
    let _lock = ctx.lock()?;
    let snap = discovery::discover(&ctx.cfg);
    crate::supervised::refuse_unreached_supervisor(&snap)?;
    if let Control::Unit(unit) = systemd::decide(&snap, ctx.global.no_systemd)? {
        systemd::systemctl("stop", &unit)?;
    }
    let report = stop::stop(&ctx.cfg, &plan, timeout)?;
    Ok(outcome(ctx, &report))
}

pub(super) fn outcome(ctx: &Ctx, r: &StopReport) -> Outcome {
    let text = if r.already_stopped {
        format!("FPM {} was not running\n", ctx.cfg.path.display())
    } else {
        let mut t = match r.master {
            Some(m) => format!(
                "stopped master {m} and {} other process(es)",
                r.stopped.len().saturating_sub(1)
            ),
            None => format!("stopped {} orphaned worker(s)", r.stopped.len()),
        };
        t.push_str(&format!(" in {}\n", secs(r.elapsed)));
        t
    };
    let mut text = text;
    for f in &r.foreign_holders {
        text.push_str(&format!("warning: {f}\n"));
    }
    Outcome::ok(
        text,
        json!({
            "result": if r.already_stopped { "already-stopped" } else { "stopped" },
            "master": r.master,
            "stopped": r.stopped,
            "signals": r.signals.iter().map(|(s, p)| json!({"signal": s, "pids": p})).collect::<Vec<_>>(),
            "elapsed_ms": r.elapsed.as_millis() as u64,
            "foreign_holders": r.foreign_holders,
            "removed_pid_file": r.removed_pid_file,
        }),
    )
}
