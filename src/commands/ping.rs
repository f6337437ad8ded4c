//! `fpmctl ping`: a FastCGI ping of each pool, plus its status page when `pm.status_path`
//! is set. Exit 0 only when every pool answers *and* this config's master runs: orphaned
//! workers of a dead master still answer, but FPM is down (exit 3, saying that orphans
//! answered). Usable as a container or Kubernetes probe.

use super::{Ctx, Outcome, usage};
use crate::cli::PingArgs;
use crate::config::Pool;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::{fastcgi, ready};
use serde_json::json;
use std::fmt::Write;

pub(super) fn run(ctx: &Ctx, args: &PingArgs) -> Result<Outcome> {
    if ctx.cfg.pools.is_empty() {
        // Nothing could be read to ping: never a green probe for an empty list.
        ctx.require_valid_config(false)?;
    }
    ctx.warn_problems("pinging the pools");
    let pools: Vec<&Pool> = match &args.pool {
        Some(name) => vec![ctx.cfg.pool(name).ok_or_else(|| {
            usage(format!(
                "no pool named '{name}' in {} (pools: {})",
                ctx.cfg.path.display(),
                ctx.cfg
                    .pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?],
        None => ctx.cfg.pools.iter().collect(),
    };
    let mut text = String::new();
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for pool in pools {
        let answer = ready::check_pool(pool, args.timeout);
        let status = pool.status_path.as_ref().map(|path| {
            let addr = pool.status_listen.as_ref().unwrap_or(&pool.listen);
            fastcgi::status(addr, path, args.timeout).map_err(|e| e.to_string())
        });
        match &answer {
            Ok(a) => {
                let _ = writeln!(text, "pool {} ({}): ok, {a}", pool.name, pool.listen);
            }
            Err(e) => {
                let _ = writeln!(text, "pool {} ({}): FAILED: {e}", pool.name, pool.listen);
                failed.push(format!("pool {}: {e}", pool.name));
            }
        }
        if let Some(Ok(st)) = &status {
            let get = |k: &str| {
                st.get(k)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into())
            };
            let _ = writeln!(
                text,
                "  status: {} active, {} idle, {} total, listen queue {}, accepted {}",
                get("active processes"),
                get("idle processes"),
                get("total processes"),
                get("listen queue"),
                get("accepted conn")
            );
        } else if let Some(Err(e)) = &status {
            let _ = writeln!(text, "  status page: {e}");
        }
        results.push(json!({
            "pool": pool.name,
            "listen": pool.listen.to_string(),
            "ok": answer.is_ok(),
            "answer": match &answer { Ok(a) | Err(a) => a },
            "status": match status { Some(Ok(v)) => v, Some(Err(e)) => json!({"error": e}), None => serde_json::Value::Null },
        }));
    }
    let snap = crate::discovery::discover(&ctx.cfg);
    // A master that cannot be proven (another user's, as non-root) is not a dead one.
    let running = snap.master.is_some() || snap.unverified_masters().next().is_some();
    if !running && failed.len() < results.len() {
        let who = if snap.orphans.is_empty() {
            "processes that are not this FPM's master answered".to_string()
        } else {
            let pids: Vec<String> = snap
                .orphans
                .iter()
                .map(|o| o.proc.pid().to_string())
                .collect();
            format!(
                "{} orphaned worker(s) of a dead master answered ({}); `fpmctl restart` replaces them",
                snap.orphans.len(),
                pids.join(" ")
            )
        };
        return Err(Error::NotRunning(format!(
            "FPM {} is not running (no master): {who}",
            ctx.cfg.path.display()
        )));
    }
    if !failed.is_empty() {
        let msg = failed.join("; ");
        // In --json mode the per-pool details still matter: put them in the error text.
        return Err(if running {
            Error::NotReady(msg)
        } else {
            Error::NotRunning(format!(
                "FPM {} is not running: {msg}",
                ctx.cfg.path.display()
            ))
        });
    }
    Ok(Outcome {
        code: ExitCode::Ok,
        text,
        json: json!({ "ok": true, "pools": results }),
        error: None,
    })
}
