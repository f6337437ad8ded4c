//! `fpmctl reload`: test the config, send SIGUSR2 to the verified master, and prove the
//! master re-executed (same process, every old worker gone, new workers up) and is ready.
//! A broken config never reaches FPM. If FPM dies during the reload, say so; `--recover`
//! starts it again.

use super::start;
use super::{Ctx, Outcome, secs};
use crate::cli::ReloadArgs;
use crate::discovery;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::procs::{self, ProcId};
use crate::ready;
use crate::signals::{self, Sent};
use crate::systemd::{self, Control};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub(super) fn run(ctx: &Ctx, args: &ReloadArgs) -> Result<Outcome> {
    let _lock = ctx.lock()?;
    let started = Instant::now();
    let cfg = &ctx.cfg;
    let fpm = ctx.fpm()?;
    fpm.require_valid()?;
    info!("php-fpm -t: configuration is valid");
    let snap = discovery::discover(cfg);
    let Some(master) = snap.master.clone() else {
        if args.recover {
            warn!("FPM is not running; --recover starts it");
            let l = start::launch(ctx, &fpm, &snap, args.timeout, true, false)?;
            return Ok(start::outcome(ctx, &l, "started (was not running)"));
        }
        return Err(Error::NotRunning(format!(
            "FPM {} is not running; nothing to reload (use `fpmctl start`, or `reload --recover`)",
            cfg.path.display()
        )));
    };
    if let Control::Unit(unit) = systemd::decide(&snap, ctx.global.no_systemd)? {
        systemd::systemctl("reload", &unit)?;
    } else {
        match signals::send_verified(master.id, Signal::SIGUSR2, |p| {
            discovery::is_master_of(p, &cfg.path)
        }) {
            Ok(Sent::Delivered) => info!("reloading master {} (SIGUSR2)", master.pid()),
            Ok(_) => return died(ctx, args, &fpm, "the master exited before SIGUSR2 reached it"),
            Err(e) => {
                return Err(Error::Other(format!(
                    "could not signal master {}: {e}",
                    master.pid()
                )));
            }
        }
    }
    let old: HashSet<ProcId> = snap.workers.iter().map(|w| w.proc.id).collect();
    match wait_reexec(ctx, master.id, &old, args.timeout) {
        Ok(pools) => {
            let elapsed = started.elapsed();
            let new = discovery::discover(cfg);
            let mut text = format!(
                "reloaded FPM {} (master {} re-executed) in {}\n",
                cfg.path.display(),
                master.pid(),
                secs(elapsed)
            );
            for p in &pools {
                let answer = match &p.answer {
                    Ok(a) | Err(a) => a.as_str(),
                };
                text.push_str(&format!(
                    "  pool {}: {}/{} workers, {answer}\n",
                    p.pool, p.workers, p.expected_workers
                ));
            }
            Ok(Outcome {
                code: ExitCode::Ok,
                text,
                json: json!({
                    "result": "reloaded",
                    "master": master.pid(),
                    "old_workers": old.iter().map(|i| i.pid).collect::<Vec<_>>(),
                    "new_workers": new.workers.iter().map(|w| w.proc.pid()).collect::<Vec<_>>(),
                    "elapsed_ms": elapsed.as_millis() as u64,
                }),
            })
        }
        Err(Error::FpmDied(why)) => died(ctx, args, &fpm, &why),
        Err(e) => Err(e),
    }
}

/// Waits until the master (same identity) is alive with none of the old workers left and is
/// ready; `FpmDied` when the master is gone.
fn wait_reexec(
    ctx: &Ctx,
    master: ProcId,
    old: &HashSet<ProcId>,
    timeout: Duration,
) -> Result<Vec<ready::PoolReady>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if procs::read_same(master).is_none() {
            // Give the config's state one look: another master may have taken over.
            return Err(Error::FpmDied(format!(
                "master {} exited during the reload",
                master.pid
            )));
        }
        let snap = discovery::discover(&ctx.cfg);
        let old_left = snap.workers.iter().filter(|w| old.contains(&w.proc.id)).count()
            + snap.orphans.iter().filter(|w| old.contains(&w.proc.id)).count();
        let why = if old_left > 0 {
            format!("{old_left} old worker(s) still finishing")
        } else {
            match ready::assess(&ctx.cfg, &snap, deadline) {
                Ok(pools) => return Ok(pools),
                Err(why) => why,
            }
        };
        if Instant::now() >= deadline {
            return Err(Error::NotReady(format!(
                "reload of {} not finished after {}: {why}",
                ctx.cfg.path.display(),
                secs(timeout)
            )));
        }
        debug!("reload: {why}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn died(ctx: &Ctx, args: &ReloadArgs, fpm: &crate::fpm::Fpm, why: &str) -> Result<Outcome> {
    if !args.recover {
        return Err(Error::FpmDied(format!(
            "FPM {} died during the reload: {why}; run `fpmctl start` (or reload --recover)",
            ctx.cfg.path.display()
        )));
    }
    warn!("FPM died during the reload ({why}); --recover starts it again");
    let snap = discovery::discover(&ctx.cfg);
    let l = start::launch(ctx, fpm, &snap, args.timeout, true, false)?;
    let mut out = start::outcome(ctx, &l, "recovered");
    out.text = format!("FPM died during the reload: {why}\n{}", out.text);
    Ok(out)
}
