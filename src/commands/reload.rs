//! `fpmctl reload`: test the config, send SIGUSR2 to the verified master, and prove the
//! master re-executed (every old worker gone, the pid file rewritten, new workers up) and is
//! ready, by events ([`crate::reexec`]), never by polling.
//! A broken config never reaches FPM. If FPM dies during the reload, say so; `--recover`
//! starts it again.

use super::start;
use super::{Ctx, Outcome, millis, secs};
use crate::cli::ReloadArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::procs::ProcId;
use crate::ready;
use crate::reexec::{self, Failure};
use crate::signals::{self, Sent};
use crate::supervise::control::Request;
use crate::systemd::{self, Control};
use nix::sys::signal::Signal;
use serde_json::json;
use std::time::{Duration, Instant};
use tracing::{info, warn};

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
    // The config test, the look at the processes and the watch on them are independent and
    // all must come before SIGUSR2: php-fpm -t runs while fpmctl looks and arms, so the reload
    // costs the slower of the two, not the sum. The test's verdict still comes first (a
    // broken config is exit 6 whatever was found).
    // Started before the lock: stale when another fpmctl held it meanwhile.
    let test = ctx.config_test(lock.as_ref().is_some_and(|l| l.waited))?;
    let snap = discovery::discover(cfg);
    let old: Vec<ProcId> = snap
        .master
        .as_ref()
        .map_or_else(Vec::new, |m| reexec::old_workers(&snap, m));
    // Armed before the signal, so no event of the re-exec can be missed.
    let watch = snap
        .master
        .as_ref()
        .map(|master| reexec::Watch::arm(cfg, master, &old));
    // A test that hangs (a config on a dead network mount) does not hang the reload.
    test.require_valid_within(args.timeout())?;
    info!("php-fpm -t: configuration is valid");
    let (Some(master), Some(mut watch)) = (snap.master.clone(), watch) else {
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
    crate::supervised::refuse_unreached_supervisor(&snap)?;
    reexec::warn_if_requests_die(cfg);
    let limit = ready::reload_limit(&cfg.global, args.timeout());
    let unit = match systemd::decide(&snap, ctx.global.no_systemd)? {
        Control::Unit(u) => Some(u),
        _ => None,
    };
    if let Some(unit) = &unit {
        // systemd serializes jobs on the unit itself, and the unit's ExecReload may be fpmctl
        // (packaging/systemd's drop-in), which needs this lock: holding it here would make
        // both wait until the lock timeout.
        drop(lock.take());
        watch.pin_late_workers(cfg);
        if let Err(e) = systemd::systemctl("reload", unit) {
            // An ExecReload that is fpmctl's own reload fails when FPM dies in it: that is
            // FPM dying in the reload (exit 12, or --recover), which the watch proves. With
            // the master still there, the reload changed nothing.
            if !watch.master_exited() {
                return Err(e);
            }
            warn!(unit, error = %e, "systemctl reload failed and the master is gone");
        }
    } else {
        // Workers replaced while php-fpm -t ran are old workers too.
        watch.pin_late_workers(cfg);
        match signals::send_verified(master.id, Signal::SIGUSR2, |p| {
            discovery::is_master_of(p, cfg)
        }) {
            Ok(Sent::Delivered) => {
                info!(pid = master.pid(), signal = "SIGUSR2", "reloading master")
            }
            Ok(Sent::Gone) => {
                return died(
                    ctx,
                    args,
                    &fpm,
                    None,
                    "the master exited before SIGUSR2 reached it",
                );
            }
            // Alive, maybe, but no longer provably this config's master (its /proc entry
            // unreadable, its title changed): not signalled, and not "died" either, which
            // would let --recover start a second FPM beside it.
            Ok(Sent::Refused) => {
                return Err(Error::Other(format!(
                    "master {} could no longer be proven to be FPM {}'s; not signalled, nothing was changed (`fpmctl -c {} status` says what runs)",
                    master.pid(),
                    cfg.path.display(),
                    cfg.path.display()
                )));
            }
            Err(e) => {
                return Err(Error::Other(format!(
                    "could not signal master {}: {e}",
                    master.pid()
                )));
            }
        }
    }
    match watch.wait(cfg, Deadline::after(limit)) {
        Ok(done) => {
            let elapsed = started.elapsed();
            let how = if done.master == master.pid() {
                format!("master {} re-executed", done.master)
            } else {
                format!("master {} re-executed as {}", master.pid(), done.master)
            };
            info!(
                pid = done.master,
                ready_by = done.ready_by.as_str(),
                duration_ms = elapsed.as_millis() as u64,
                "reloaded"
            );
            let mut text = format!(
                "reloaded FPM {} ({how}) in {}\n",
                cfg.path.display(),
                secs(elapsed)
            );
            text.push_str(&start::pool_lines(&done.pools));
            Ok(Outcome::ok(
                text,
                json!({
                    "result": "reloaded",
                    "master": done.master,
                    "previous_master": master.pid(),
                    "old_workers": old.iter().map(|i| i.pid).collect::<Vec<_>>(),
                    "new_workers": done.workers,
                    "ready_by": done.ready_by.as_str(),
                    "elapsed_ms": elapsed.as_millis() as u64,
                }),
            ))
        }
        Err(Failure::Died(why)) => died(ctx, args, &fpm, unit.as_deref(), &why),
        Err(Failure::NotReady(why)) => Err(Error::NotReady(format!(
            "reload of {} not finished after {} (process_control_timeout + 2s + --timeout): {why}",
            cfg.path.display(),
            secs(limit)
        ))),
    }
}

/// FPM died during the reload: said (exit 12), or with `--recover` started again: by its
/// systemd unit when it ran in one (started beside the failed unit, it would be outside
/// systemd's watch, and a later `systemctl start` would start a second one).
fn died(
    ctx: &Ctx,
    args: &ReloadArgs,
    fpm: &crate::fpm::Fpm,
    unit: Option<&str>,
    why: &str,
) -> Result<Outcome> {
    if !args.recover {
        return Err(Error::FpmDied(format!(
            "FPM {} died during the reload: {why}; run `fpmctl start` (or reload --recover)",
            ctx.cfg.path.display()
        )));
    }
    warn!(reason = %why, "FPM died during the reload; --recover starts it again");
    let l = match unit {
        Some(unit) => {
            let started = Instant::now();
            systemd::systemctl("restart", unit)?;
            let pools = ready::wait_ready(&ctx.cfg, Deadline::after(args.timeout()))?;
            crate::lifecycle::Launch {
                already_running: false,
                master: discovery::discover(&ctx.cfg).master.map(|m| m.pid()),
                pools,
                elapsed: started.elapsed(),
                ready_by: None,
            }
        }
        None => {
            let snap = discovery::discover(&ctx.cfg);
            crate::lifecycle::launch(
                &ctx.cfg,
                fpm,
                &snap,
                ctx.launch_options(args.timeout(), true, false),
            )?
        }
    };
    let mut out = start::outcome(ctx, &l, "recovered");
    out.text = format!("FPM died during the reload: {why}\n{}", out.text);
    Ok(out)
}
