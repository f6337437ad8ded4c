//! `fpmctl config`: the effective configuration, like `nginx -T` for FPM.

use super::{Ctx, Outcome};
use crate::config::{FpmConfig, Pool};
use crate::error::Result;
use crate::exit::ExitCode;
use crate::lossless;
use serde_json::json;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn run(ctx: &Ctx) -> Result<Outcome> {
    Ok(Outcome {
        code: ExitCode::Ok,
        text: render(&ctx.cfg),
        json: to_json(&ctx.cfg),
        error: None,
    })
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(unset)")
}

/// The effective config as INI text with comments saying where things came from.
pub fn render(cfg: &FpmConfig) -> String {
    let g = &cfg.global;
    let mut s = String::new();
    let _ = writeln!(s, "; effective configuration of {}", cfg.path.display());
    for f in &cfg.files {
        let _ = writeln!(s, "; read {}", f.display());
    }
    match &cfg.prefix {
        Some(p) => {
            let _ = writeln!(
                s,
                "; relative paths resolved under --prefix {}",
                p.display()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "; relative paths resolved under php-fpm's compiled-in prefix {} (pid and \
                 error_log under {})",
                cfg.build.prefix.display(),
                cfg.build.localstatedir.display()
            );
        }
    }
    let _ = writeln!(s, "[global]");
    let pid = g
        .pid_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unset)".into());
    let _ = writeln!(s, "pid = {pid}");
    let _ = writeln!(s, "error_log = {}", lossless::display(&g.error_log));
    let _ = writeln!(s, "log_level = {}", g.log_level);
    let _ = writeln!(s, "daemonize = {}", if g.daemonize { "yes" } else { "no" });
    let _ = writeln!(
        s,
        "process_control_timeout = {}",
        dur(g.process_control_timeout)
    );
    let _ = writeln!(
        s,
        "emergency_restart_threshold = {}",
        g.emergency_restart_threshold
    );
    let _ = writeln!(
        s,
        "emergency_restart_interval = {}",
        dur(g.emergency_restart_interval)
    );
    let _ = writeln!(s, "systemd_interval = {}", dur(g.systemd_interval));
    for p in &cfg.pools {
        render_pool(&mut s, p);
    }
    s
}

fn render_pool(s: &mut String, p: &Pool) {
    let _ = writeln!(s, "\n[{}] ; {}", p.name, p.defined_at);
    let _ = writeln!(s, "listen = {}", lossless::display(&p.listen_raw));
    let _ = writeln!(s, "listen.backlog = {}", p.listen_backlog);
    let _ = writeln!(s, "listen.owner = {}", opt(&p.listen_owner));
    let _ = writeln!(s, "listen.group = {}", opt(&p.listen_group));
    let _ = writeln!(s, "listen.mode = {}", opt(&p.listen_mode));
    let _ = writeln!(s, "user = {}", opt(&p.user));
    let _ = writeln!(s, "group = {}", opt(&p.group));
    let _ = writeln!(s, "pm = {}", p.pm.as_str());
    let _ = writeln!(s, "pm.max_children = {}", p.max_children);
    let _ = writeln!(s, "pm.start_servers = {}", p.start_servers);
    let _ = writeln!(s, "pm.min_spare_servers = {}", p.min_spare_servers);
    let _ = writeln!(s, "pm.max_spare_servers = {}", p.max_spare_servers);
    let _ = writeln!(s, "pm.max_requests = {}", p.max_requests);
    let _ = writeln!(
        s,
        "pm.process_idle_timeout = {}",
        dur(p.process_idle_timeout)
    );
    let _ = writeln!(s, "pm.status_path = {}", opt(&p.status_path));
    if let Some(l) = &p.status_listen {
        let _ = writeln!(s, "pm.status_listen = {l}");
    }
    if let Some(l) = &p.slowlog {
        let _ = writeln!(s, "slowlog = {l}");
    }
    if let Some(l) = &p.access_log {
        let _ = writeln!(s, "access.log = {l}");
    }
    let _ = writeln!(s, "ping.path = {}", opt(&p.ping_path));
    let _ = writeln!(s, "ping.response = {}", opt(&p.ping_response));
    let _ = writeln!(
        s,
        "request_terminate_timeout = {}",
        dur(p.request_terminate_timeout)
    );
    let _ = writeln!(
        s,
        "; workers expected right after start: {}",
        p.expected_workers()
    );
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The stable JSON form.
pub fn to_json(cfg: &FpmConfig) -> serde_json::Value {
    let g = &cfg.global;
    let mut doc = json!({
        "config": lossless::json_path(&cfg.path),
        "files": cfg.files.iter().map(|f| lossless::json_path(f)).collect::<Vec<_>>(),
        "prefix": lossless::json_opt_path(cfg.prefix.as_deref()),
        "compiled_in": {
            "prefix": lossless::json_path(&cfg.build.prefix),
            "localstatedir": lossless::json_path(&cfg.build.localstatedir),
        },
        "pid_file": lossless::json_opt_path(g.pid_file.as_deref()),
        "error_log": lossless::display(&g.error_log),
        "log_level": g.log_level,
        "daemonize": g.daemonize,
        "process_control_timeout_ms": ms(g.process_control_timeout),
        "emergency_restart_threshold": g.emergency_restart_threshold,
        "emergency_restart_interval_ms": ms(g.emergency_restart_interval),
        "systemd_interval_ms": ms(g.systemd_interval),
        "pools": cfg.pools.iter().map(|p| json!({
            "name": p.name,
            "defined_at": p.defined_at.to_string(),
            "listen": p.listen.to_string(),
            "listen_raw": p.listen_raw,
            "listen_backlog": p.listen_backlog,
            "listen_owner": p.listen_owner,
            "listen_group": p.listen_group,
            "listen_mode": p.listen_mode,
            "user": p.user,
            "group": p.group,
            "pm": p.pm.as_str(),
            "max_children": p.max_children,
            "start_servers": p.start_servers,
            "min_spare_servers": p.min_spare_servers,
            "max_spare_servers": p.max_spare_servers,
            "expected_workers": p.expected_workers(),
            "ping_path": p.ping_path,
            "ping_response": p.ping_response,
            "status_path": p.status_path,
            "status_listen": p.status_listen.as_ref().map(|l| l.to_string()),
            "request_terminate_timeout_ms": ms(p.request_terminate_timeout),
            "slowlog": p.slowlog,
            "access_log": p.access_log,
        })).collect::<Vec<_>>(),
    });
    let error_log = lossless::to_path(&g.error_log);
    let listen_paths = cfg.pools.iter().filter_map(|p| p.listen.unix_path());
    lossless::lossy_note(
        &mut doc,
        cfg.files
            .iter()
            .map(PathBuf::as_path)
            .chain([cfg.path.as_path(), error_log.as_path()])
            .chain(g.pid_file.as_deref())
            .chain(listen_paths),
    );
    doc
}
