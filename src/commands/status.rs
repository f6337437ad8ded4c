//! `fpmctl status`: the master, workers per pool, each listen address and who holds it,
//! a stale pid file, orphans. Exit codes follow LSB: 0 running, 1 dead but a pid file or
//! orphans remain, 3 not running, 4 unknown: the config is unreadable (from loading), or a
//! master runs that cannot be proven to be this FPM (a replaced binary, or a non-root user
//! who may not inspect root's processes). What could not be seen is said, never guessed.

use super::{Ctx, Outcome};
use crate::deadline::Deadline;
use crate::discovery::{self, Looks, PidFile, Snapshot, State};
use crate::error::Result;
use crate::exit::ExitCode;
use crate::handover::interrupted::{doubled, half_retired};
use crate::identity::CANNOT_INSPECT;
use crate::lossless;
use crate::procs::{self, ProcInfo};
use crate::saturation::{self, Health, PoolState, StatusPolicy};
use serde_json::json;
use std::fmt::Write;

/// The most `status` spends on status pages.
const LOAD_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

pub(super) fn run(ctx: &Ctx) -> Result<Outcome> {
    let snap = discovery::discover_reporting(&ctx.cfg);
    let state = snap.state();
    let code = match state {
        State::Running => ExitCode::Ok,
        State::Orphans | State::StalePidFile => ExitCode::Failure,
        State::Stopped => ExitCode::NotRunning,
        State::Unverified => ExitCode::ConfigUnreadable,
    };
    // How full each pool is, from the kernel and /proc (the status page only when a worker
    // is free to answer it, or through pm.status_listen).
    let loads = if state == State::Running {
        saturation::observe(
            &ctx.cfg,
            &snap,
            StatusPolicy::WhenIdle,
            Deadline::after(LOAD_BUDGET),
        )
    } else {
        Vec::new()
    };
    let mut text = render(ctx, &snap, &loads);
    let mut json = to_json(ctx, &snap, &loads);
    // A supervisor, if one owns this FPM, adds what it knows (restarts, readiness).
    let sup = crate::supervise::control::request(
        &ctx.cfg.path,
        &crate::supervise::control::Request::new("status"),
        std::time::Duration::from_secs(3),
    )
    .ok()
    .flatten();
    if let Some(reply) = sup {
        text.push_str(&format!("  {}", reply.text));
        json["supervisor"] = reply.json;
    }
    // A broken config does not hide what runs: what could be read of it was used, and
    // each problem is named.
    for p in &ctx.problems {
        text.push_str(&format!("  config problem: {p}\n"));
    }
    json["config_problems"] = ctx.problems.iter().map(|p| p.to_string()).collect();
    Ok(Outcome {
        code,
        text,
        json,
        error: None,
    })
}

fn uptime(p: &ProcInfo) -> String {
    p.age()
        .map(|d| {
            let secs = d.as_secs();
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        })
        .unwrap_or_else(|| "?".into())
}

fn pids(list: &[&ProcInfo]) -> String {
    list.iter()
        .map(|p| p.pid().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One pool's load on one line: `saturated: workers 2 busy, 0 idle of 2 (max_children 2);
/// queue 3/511; max_children reached 1 time since start`.
fn load_line(l: &PoolState) -> String {
    let mut s = format!(
        "{}: workers {} busy, {} idle of {} (max_children {})",
        l.health.as_str(),
        l.workers.busy,
        l.workers.idle,
        l.workers.total,
        l.max_children
    );
    if l.workers.unknown > 0 {
        let _ = write!(s, ", {} unreadable", l.workers.unknown);
    }
    match l.queue {
        Some(q) => {
            let _ = write!(s, "; queue {}/{}", q.waiting, q.limit);
        }
        None if l.queue_unknown => {
            s.push_str("; queue unknown (the kernel's queues are unreadable)")
        }
        None => s.push_str("; nothing listens"),
    }
    match (&l.status_page, &l.status_page_note) {
        (Some(p), _) => {
            let _ = write!(
                s,
                "; max_children reached {} since start",
                p.max_children_reached
            );
        }
        (None, Some(why)) => {
            let _ = write!(s, "; max_children reached: unknown ({why})");
        }
        (None, None) => {}
    }
    if l.health == Health::Saturated {
        s.push_str(" (saturated, not down)");
    }
    s
}

fn render(ctx: &Ctx, snap: &Snapshot, loads: &[PoolState]) -> String {
    let cfg = &ctx.cfg;
    let mut s = String::new();
    let state = snap.state();
    let summary = match state {
        State::Running => {
            let full: Vec<&str> = loads
                .iter()
                .filter(|l| l.health == Health::Saturated)
                .map(|l| l.pool.as_str())
                .collect();
            if full.is_empty() {
                "running".to_string()
            } else {
                format!("running, saturated: pool {}", full.join(", pool "))
            }
        }
        State::Stopped => "stopped".to_string(),
        State::StalePidFile => "stopped, with a stale pid file".to_string(),
        State::Orphans => format!(
            "master is gone but {} orphaned worker(s) remain",
            snap.orphans.len()
        ),
        State::Unverified => {
            "UNKNOWN: a master runs that fpmctl cannot prove to be this FPM".to_string()
        }
    };
    let _ = writeln!(s, "FPM {}: {summary}", cfg.path.display());
    let half = half_retired(snap);
    let stopped_line = |m: &ProcInfo| {
        half.iter().find(|h| h.master == m.id).map(|h| {
            format!(
                "  master    {} STOPPED (state T) beside master {}, which serves: being retired, or left half retired by an interrupted fpmctl (`fpmctl -c {conf} restart`, `ensure` or `stop` finishes it)",
                m.pid(),
                h.serving.pid,
                conf = cfg.path.display()
            )
        })
    };
    if let Some(line) = snap.master.as_ref().and_then(stopped_line) {
        let _ = writeln!(s, "{line}");
    } else if let Some(m) = &snap.master {
        let unit = procs::systemd_unit(m.pid())
            .map(|u| format!(", systemd unit {u}"))
            .unwrap_or_default();
        let bin = m
            .exe
            .as_ref()
            .map(|e| e.display().to_string())
            .unwrap_or_else(|| m.comm.clone());
        let _ = writeln!(s, "  master    {} (up {}, {bin}{unit})", m.pid(), uptime(m));
    }
    for m in &snap.other_masters {
        match stopped_line(m) {
            Some(line) => {
                let _ = writeln!(s, "{line}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "  master    {} (another master of the same config!)",
                    m.pid()
                );
            }
        }
    }
    for d in doubled(snap) {
        let _ = writeln!(
            s,
            "  master    {} runs beside master {} on its sockets: left by a restart interrupted before it retired one of them (`fpmctl -c {conf} restart` retires {})",
            d.master.pid,
            d.serving.pid,
            d.master.pid,
            conf = cfg.path.display()
        );
    }
    for l in &snap.lookalikes {
        let what = match &l.looks {
            Looks::Master => "this config's master".to_string(),
            Looks::Pool(pool) => format!("a process of pool {pool}"),
        };
        let kind = if l.doubt.is_foreign() {
            "foreign "
        } else {
            "unproven"
        };
        let _ = writeln!(
            s,
            "  {kind}  {} ({}) looks like {what}, but {}; never signalled",
            l.proc.pid(),
            l.proc.program(),
            l.doubt
        );
    }
    match &snap.pid_file {
        PidFile::NotConfigured => {
            let _ = writeln!(s, "  pid file  (no pid directive)");
        }
        PidFile::Missing(p) => {
            let _ = writeln!(s, "  pid file  {} (missing)", p.display());
        }
        PidFile::Live(p, _) => {
            let _ = writeln!(s, "  pid file  {}", p.display());
        }
        PidFile::Unverified(p, pid) => {
            let _ = writeln!(
                s,
                "  pid file  {} names PID {pid}, which cannot be proven to be this FPM",
                p.display()
            );
        }
        PidFile::Stale { path, reason, .. } => {
            let _ = writeln!(s, "  pid file  {} is stale: {reason}", path.display());
        }
    }
    for pool in &cfg.pools {
        let w = snap.pool_workers(&pool.name);
        let mark = if state == State::Running && w.len() < pool.expected_workers() as usize {
            "  (short!)"
        } else if state == State::Unverified {
            "  (workers of an unproven master are not counted)"
        } else {
            ""
        };
        let list = pids(&w);
        let sep = if list.is_empty() { "" } else { "  " };
        let _ = writeln!(
            s,
            "  pool {}  {}  workers {}/{}{mark}{sep}{list}",
            pool.name,
            pool.pm.as_str(),
            w.len(),
            pool.expected_workers(),
        );
        if let Some(l) = loads.iter().find(|l| l.pool == pool.name) {
            let _ = writeln!(s, "    load  {}", load_line(l));
        }
    }
    if !snap.orphans.is_empty() {
        for o in &snap.orphans {
            let _ = writeln!(
                s,
                "  orphan    {} (pool {}, process group {}, up {})",
                o.proc.pid(),
                o.pool,
                o.proc.pgrp,
                uptime(&o.proc)
            );
        }
    }
    for a in &snap.addresses {
        let holders = if a.holders.is_empty() && !a.holders_known {
            format!("a socket listens, held by whom is unknown ({CANNOT_INSPECT})")
        } else if a.holders.is_empty() {
            "free".to_string()
        } else {
            let list: Vec<String> = a
                .holders
                .iter()
                .map(|h| {
                    if h.role == discovery::Role::Foreign {
                        format!("{} ({}, NOT this FPM)", h.proc.pid(), h.proc.program())
                    } else if h.role == discovery::Role::Unverified {
                        format!(
                            "{} ({}, not proven to be this FPM)",
                            h.proc.pid(),
                            h.proc.program()
                        )
                    } else {
                        format!("{} ({})", h.proc.pid(), h.role.as_str())
                    }
                })
                .collect();
            let more = if a.holders_known {
                String::new()
            } else {
                format!(" and maybe others ({CANNOT_INSPECT})")
            };
            format!("held by {}{more}", list.join(", "))
        };
        let _ = writeln!(s, "  listen    {} (pool {}): {holders}", a.addr, a.pool);
    }
    if snap.limited_view() {
        let _ = writeln!(
            s,
            "  note: {CANNOT_INSPECT} (uid {})",
            nix::unistd::geteuid()
        );
    }
    if state == State::Orphans {
        let _ = writeln!(
            s,
            "  hint: `fpmctl restart` stops the orphans and starts FPM again"
        );
    }
    s
}

fn to_json(ctx: &Ctx, snap: &Snapshot, loads: &[PoolState]) -> serde_json::Value {
    let cfg = &ctx.cfg;
    let master = snap.master.as_ref().map(|m| {
        json!({
            "pid": m.pid(),
            "uptime_s": m.age().map(|d| d.as_secs()),
            "binary": lossless::json_opt_path(m.exe.as_deref()),
            "systemd_unit": procs::systemd_unit(m.pid()),
        })
    });
    let (pid_file_path, pid_file_pid, stale, stale_reason) = match &snap.pid_file {
        PidFile::NotConfigured => (None, None, false, None),
        PidFile::Missing(p) => (Some(p.clone()), None, false, None),
        PidFile::Live(p, pid) => (Some(p.clone()), Some(*pid), false, None),
        PidFile::Unverified(p, pid) => (
            Some(p.clone()),
            Some(*pid),
            false,
            Some("names a process that cannot be proven to be this FPM".to_string()),
        ),
        PidFile::Stale { path, pid, reason } => {
            (Some(path.clone()), *pid, true, Some(reason.clone()))
        }
    };
    let mut doc = json!({
        "state": snap.state().as_str(),
        "config": lossless::json_path(&cfg.path),
        "master": master,
        "other_masters": snap.other_masters.iter().map(|m| m.pid()).collect::<Vec<_>>(),
        "half_retired": half_retired(snap).iter().map(|h| json!({
            "pid": h.master.pid,
            "serving": h.serving.pid,
        })).collect::<Vec<_>>(),
        "doubled": doubled(snap).iter().map(|h| json!({
            "pid": h.master.pid,
            "serving": h.serving.pid,
        })).collect::<Vec<_>>(),
        "pid_file": {
            "path": lossless::json_opt_path(pid_file_path.as_deref()),
            "pid": pid_file_pid,
            "stale": stale,
            "reason": stale_reason,
        },
        "pools": cfg.pools.iter().map(|p| json!({
            "name": p.name,
            "pm": p.pm.as_str(),
            "listen": p.listen.to_string(),
            "expected_workers": p.expected_workers(),
            "workers": snap.pool_workers(&p.name).iter().map(|w| w.pid()).collect::<Vec<_>>(),
            "load": loads.iter().find(|l| l.pool == p.name),
        })).collect::<Vec<_>>(),
        "orphans": snap.orphans.iter().map(|o| o.proc.pid()).collect::<Vec<_>>(),
        "lookalikes": snap.lookalikes.iter().map(|l| json!({
            "pid": l.proc.pid(),
            "program": l.proc.program(),
            "looks_like": match &l.looks { Looks::Master => "master", Looks::Pool(_) => "pool-process" },
            "pool": match &l.looks { Looks::Pool(p) => Some(p), Looks::Master => None },
            "foreign": l.doubt.is_foreign(),
            "doubt": l.doubt.as_str(),
            "reason": l.doubt.to_string(),
        })).collect::<Vec<_>>(),
        "limited_view": snap.limited_view(),
        "orphan_details": snap.orphans.iter().map(|o| json!({
            "pid": o.proc.pid(),
            "pool": o.pool,
            "process_group": o.proc.pgrp,
        })).collect::<Vec<_>>(),
        "listen": snap.addresses.iter().map(|a| json!({
            "address": a.addr.to_string(),
            "pool": a.pool,
            "holders": a.holders.iter().map(|h| h.proc.pid()).collect::<Vec<_>>(),
            "holders_known": a.holders_known,
            "holder_details": a.holders.iter().map(|h| json!({
                "pid": h.proc.pid(),
                "program": h.proc.program(),
                "role": h.role.as_str(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let exe = snap.master.as_ref().and_then(|m| m.exe.as_deref());
    lossless::lossy_note(
        &mut doc,
        [cfg.path.as_path()]
            .into_iter()
            .chain(exe)
            .chain(pid_file_path.as_deref()),
    );
    doc
}
