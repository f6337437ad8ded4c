//! `fpmctl restart`: test the config (an invalid one aborts with the running FPM untouched),
//! refuse if the start could not succeed (a foreign process holds an address, a socket
//! directory is missing), then stop as `stop` does and start as `start` does.

use super::start::{self, Launch};
use super::{Ctx, Outcome, secs};
use crate::cli::RestartArgs;
use crate::discovery;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::stop::{self, SignalPlan};
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
    let wait = args.ready.timeout + stop_timeout + Duration::from_secs(60);
    if let Some(out) = super::delegate(ctx, "restart", wait)? {
        return Ok(out);
    }
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
    start::refuse_foreign_holders(&snap)?;
    let wait = args.ready.waits();
    if let Control::Unit(unit) = systemd::decide(&snap, ctx.global.no_systemd)? {
        systemd::systemctl("restart", &unit)?;
        let pools = if wait {
            crate::ready::wait_ready(&ctx.cfg, args.ready.timeout)?
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
    let stopped = stop::stop(&ctx.cfg, &plan, stop_timeout)?;
    // Stop's last look, taken when everything was gone: no need to look again.
    let after = match &stopped.after {
        Some(snap) => snap.clone(),
        None => discovery::discover(&ctx.cfg),
    };
    let launch =
        start::launch(ctx, &fpm, &after, args.ready.timeout, wait, false).map_err(|e| {
            let down = format!(
                "the old FPM was stopped, but the new one did not come up, so FPM {} is DOWN",
                ctx.cfg.path.display()
            );
            match e {
                // Exit 6 means "nothing was changed", which is no longer true here.
                Error::ConfigInvalid { detail, .. } => Error::FpmDied(format!("{down}: {detail}")),
                Error::AddressInUse { .. } => Error::Other(format!("{down}: {e}")),
                Error::FpmDied(m) => Error::FpmDied(format!("{down}: {m}")),
                Error::NotReady(m) => Error::NotReady(format!("{down} (not ready): {m}")),
                other => Error::Other(format!("{down}: {other}")),
            }
        })?;
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
    out.code = ExitCode::Ok;
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
