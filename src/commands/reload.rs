//! `fpmctl reload`: test the config, send SIGUSR2 to the verified master, and prove the
//! master re-executed (same process, every old worker gone, new workers up) and is ready.
//! A broken config never reaches FPM. If FPM dies during the reload, say so; `--recover`
//! starts it again.

use super::start;
use super::{Ctx, Outcome, millis, secs};
use crate::cli::ReloadArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::procs::{self, ProcId};
use crate::ready;
use crate::signals::{self, Sent};
use crate::supervise::control::Request;
use crate::systemd::{self, Control};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub(super) fn run(ctx: &Ctx, args: &ReloadArgs) -> Result<Outcome> {
    // The supervisor honours --timeout (the new FPM's readiness); it always recovers.
    let req = Request {
        timeout_ms: args.timeout.map(millis),
        ..Request::new("reload")
    };
    let wait = args.timeout().saturating_add(Duration::from_secs(60));
    if let Some(out) = super::delegate(ctx, &req, wait)? {
        return Ok(out);
    }
    // A broken config never reaches FPM (exit 6).
    ctx.require_valid_config(true)?;
    let mut lock = Some(ctx.lock()?);
    let started = Instant::now();
    let cfg = &ctx.cfg;
    let fpm = ctx.fpm()?;
    fpm.require_valid()?;
    info!("php-fpm -t: configuration is valid");
    let snap = discovery::discover(cfg);
    let Some(master) = snap.master.clone() else {
        if args.recover {
            warn!("FPM is not running; --recover starts it");
            let l = crate::lifecycle::launch(
                &ctx.cfg,
                &fpm,
                &snap,
                ctx.launch_options(args.timeout(), true, false),
            )?;
            return Ok(start::outcome(ctx, &l, "started (was not running)"));
        }
        return Err(Error::NotRunning(format!(
            "FPM {} is not running; nothing to reload (use `fpmctl start`, or `reload --recover`)",
            cfg.path.display()
        )));
    };
    // A new address held by a foreign process would make the re-executed master die
    // binding it: refused exactly as `restart` refuses it, with FPM untouched.
    discovery::refuse_foreign_holders(&snap)?;
    // FPM's default grace period is none: SIGUSR2 then kills the requests in flight at once
    // (measured under load with Debian's config: a few of every few hundred failed; with
    // `10s`, none). The reload goes ahead, as the distribution's own ExecReload would.
    if cfg.global.process_control_timeout.is_zero() {
        warn!(
            config = %cfg.path.display(),
            "process_control_timeout = 0: this reload kills the requests in flight; set it in [global] (e.g. 10s) for a reload that drops none"
        );
    }
    let limit = ready::reload_limit(&cfg.global, args.timeout());
    if let Control::Unit(unit) = systemd::decide(&snap, ctx.global.no_systemd)? {
        // systemd serializes jobs on the unit itself, and the unit's ExecReload may be fpmctl
        // (packaging/systemd's drop-in), which needs this lock: holding it here would make
        // both wait until the lock timeout.
        drop(lock.take());
        systemd::systemctl("reload", &unit)?;
    } else {
        match signals::send_verified(master.id, Signal::SIGUSR2, |p| {
            discovery::is_master_of(p, cfg)
        }) {
            Ok(Sent::Delivered) => {
                info!(pid = master.pid(), signal = "SIGUSR2", "reloading master")
            }
            Ok(_) => {
                return died(
                    ctx,
                    args,
                    &fpm,
                    "the master exited before SIGUSR2 reached it",
                );
            }
            Err(e) => {
                return Err(Error::Other(format!(
                    "could not signal master {}: {e}",
                    master.pid()
                )));
            }
        }
    }
    let old: HashSet<ProcId> = snap.workers.iter().map(|w| w.proc.id).collect();
    match wait_reexec(ctx, master.id, &old, limit) {
        Ok((new_master, pools)) => {
            let elapsed = started.elapsed();
            let new = discovery::discover(cfg);
            let how = if new_master == master.pid() {
                format!("master {new_master} re-executed")
            } else {
                format!("master {} re-executed as {new_master}", master.pid())
            };
            let mut text = format!(
                "reloaded FPM {} ({how}) in {}\n",
                cfg.path.display(),
                secs(elapsed)
            );
            text.push_str(&start::pool_lines(&pools));
            Ok(Outcome::ok(
                text,
                json!({
                    "result": "reloaded",
                    "master": new_master,
                    "previous_master": master.pid(),
                    "old_workers": old.iter().map(|i| i.pid).collect::<Vec<_>>(),
                    "new_workers": new.workers.iter().map(|w| w.proc.pid()).collect::<Vec<_>>(),
                    "elapsed_ms": elapsed.as_millis() as u64,
                }),
            ))
        }
        Err(Error::FpmDied(why)) => died(ctx, args, &fpm, &why),
        Err(e) => Err(e),
    }
}

/// Waits until a master of this config runs (the same process when FPM runs in the
/// foreground; a new PID when FPM re-daemonizes after its re-exec), none of the old workers is
/// left, and it is ready. `FpmDied` when no master is seen for a few seconds.
fn wait_reexec(
    ctx: &Ctx,
    old_master: ProcId,
    old: &HashSet<ProcId>,
    timeout: Duration,
) -> Result<(i32, Vec<ready::PoolReady>)> {
    const NO_MASTER_GRACE: Duration = Duration::from_secs(3);
    let deadline = Deadline::after(timeout);
    let mut pause = Duration::from_millis(10);
    let mut masterless_since: Option<Instant> = None;
    loop {
        let snap = discovery::discover(&ctx.cfg);
        let why = match &snap.master {
            None => {
                let since = *masterless_since.get_or_insert_with(Instant::now);
                if Deadline::after_from(since, NO_MASTER_GRACE).expired()
                    && procs::is_gone(old_master)
                {
                    return Err(Error::FpmDied(format!(
                        "master {} exited during the reload and no new master appeared",
                        old_master.pid
                    )));
                }
                "no master yet (re-executing)".to_string()
            }
            Some(m) => {
                masterless_since = None;
                let old_left = snap
                    .all_processes()
                    .iter()
                    .filter(|p| old.contains(&p.id))
                    .count();
                if old_left > 0 {
                    format!("{old_left} old worker(s) still finishing")
                } else {
                    match ready::assess(&ctx.cfg, &snap, deadline) {
                        Ok(pools) => return Ok((m.pid(), pools)),
                        Err(why) => why,
                    }
                }
            }
        };
        if deadline.expired() {
            return Err(Error::NotReady(format!(
                "reload of {} not finished after {} (process_control_timeout + 2s + --timeout): {why}",
                ctx.cfg.path.display(),
                secs(timeout)
            )));
        }
        debug!(reason = %why, "reload not confirmed yet");
        std::thread::sleep(deadline.remaining_capped(pause));
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
    warn!(reason = %why, "FPM died during the reload; --recover starts it again");
    let snap = discovery::discover(&ctx.cfg);
    let l = crate::lifecycle::launch(
        &ctx.cfg,
        fpm,
        &snap,
        ctx.launch_options(args.timeout(), true, false),
    )?;
    let mut out = start::outcome(ctx, &l, "recovered");
    out.text = format!("FPM died during the reload: {why}\n{}", out.text);
    Ok(out)
}
