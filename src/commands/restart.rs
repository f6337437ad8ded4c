//! `fpmctl restart`: through a supervisor when one runs for the config, else
//! [`crate::lifecycle::restart`] (socket hand-over, or stop then start); this file parses the
//! options and prints the outcome.

use super::start;
use super::{Ctx, Outcome, millis, secs};
use crate::cli::RestartArgs;
use crate::error::Result;
use crate::lifecycle::{self, RestartOptions, Restarted};
use crate::stop::SignalPlan;
use crate::supervise::control::Request;
use serde_json::json;
use std::time::Duration;

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
    let opts = RestartOptions {
        plan,
        stop_timeout,
        ready_timeout: args.ready.timeout(),
        wait: args.ready.waits(),
        cold: args.cold,
        no_systemd: ctx.global.no_systemd,
    };
    let restarted = lifecycle::restart(&ctx.cfg, &ctx.fpm()?, &opts, lock)?;
    Ok(outcome(ctx, &restarted))
}

/// The outcome of a restart: text and JSON.
fn outcome(ctx: &Ctx, r: &Restarted) -> Outcome {
    match r {
        Restarted::Unit { done, launch } => super::unit_restart::outcome(ctx, done, launch),
        Restarted::HandOver(h) => {
            let mut out = start::outcome(ctx, &h.launch, "restarted (sockets handed over)");
            out.text = format!(
                "found {}\n{}old master {} retired in {} ({} worker(s) finished their requests{})\ntotal {}\n",
                h.found,
                out.text,
                h.old,
                secs(h.retire_elapsed),
                h.retired.workers,
                if h.retired.killed.is_empty() {
                    String::new()
                } else {
                    format!(", {} killed at the deadline", h.retired.killed.len())
                },
                secs(h.launch.elapsed)
            );
            out.json = json!({
                "found": h.found,
                "mode": "handover",
                "old_master": h.old,
                "retired_workers": h.retired.workers,
                "killed_workers": h.retired.killed,
                "start": out.json,
                "elapsed_ms": h.launch.elapsed.as_millis() as u64,
                "process_table_scans": crate::procs::scans(),
            });
            out
        }
        Restarted::Cold(c) => {
            let mut out = start::outcome(ctx, &c.launch, "restarted");
            let total = c.elapsed;
            out.text = format!(
                "{}found {}\nstopped in {}\n{}total {}\n",
                c.reason
                    .as_ref()
                    .map(|r| format!("{r}\n"))
                    .unwrap_or_default(),
                c.found,
                secs(c.stopped.elapsed),
                out.text,
                secs(total)
            );
            out.json = json!({
                "found": c.found,
                "stop": super::stop::outcome(ctx, &c.stopped).json,
                "start": out.json,
                "elapsed_ms": total.as_millis() as u64,
                "mode": "cold",
                "cold_reason": c.reason,
                "process_table_scans": crate::procs::scans(),
            });
            out
        }
    }
}
