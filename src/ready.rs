//! Proving FPM is ready: the master is verified (through its pid file when one is
//! configured), every pool has at least its expected worker count, and every pool answers over
//! FastCGI: `ping.path` must return `ping.response`; a pool without `ping.path` must return
//! any well-formed FastCGI response to a request that runs no script.

use crate::config::{FpmConfig, Global, Pool};
use crate::deadline::Deadline;
use crate::discovery::{self, PidFile, Snapshot};
use crate::error::{Error, Result};
use crate::fastcgi;
use crate::procs::{self, ProcId, ProcInfo};
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// One pool's readiness.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolReady {
    /// Pool name.
    pub pool: String,
    /// Workers expected right after start.
    pub expected_workers: u32,
    /// Workers running.
    pub workers: usize,
    /// How the pool answered (or why it did not).
    pub answer: std::result::Result<String, String>,
}

/// Checks one pool over FastCGI; `Ok` says how it answered.
pub fn check_pool(pool: &Pool, timeout: Duration) -> std::result::Result<String, String> {
    match &pool.ping_path {
        Some(path) => {
            let want = pool.ping_response.as_deref().unwrap_or("pong");
            match fastcgi::ping(&pool.listen, path, timeout) {
                Ok(body) if body.trim() == want => Ok(format!("{path} answered '{want}'")),
                Ok(body) => Err(format!(
                    "{path} on {} answered '{}', expected '{want}'",
                    pool.listen,
                    body.trim().chars().take(60).collect::<String>()
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        None => match fastcgi::probe(&pool.listen, timeout) {
            Ok(resp) => Ok(format!(
                "a worker answered a FastCGI request (status {}; no ping.path set)",
                resp.status
            )),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// How long a reload may legitimately take: FPM's own drain (the old workers get
/// `process_control_timeout` to finish their requests, then FPM escalates for 2s more) plus
/// `ready`, the time the re-executed master may take to be ready.
pub fn reload_limit(global: &Global, ready: Duration) -> Duration {
    global
        .process_control_timeout
        .saturating_add(crate::stop::FPM_ESCALATION)
        .saturating_add(ready)
}

/// Waits until `cfg`'s FPM is ready or `deadline` passes.
pub fn wait_ready(cfg: &FpmConfig, deadline: Deadline) -> Result<Vec<PoolReady>> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    for pool in cfg.pools.iter().filter(|p| p.ping_path.is_none()) {
        info!(
            "pool {} has no ping.path: readiness is proven with a FastCGI request that runs no script",
            pool.name
        );
    }
    let mut last_note = Instant::now();
    loop {
        let snap = discovery::discover(cfg);
        let verdict = assess(cfg, &snap, deadline);
        match verdict {
            Ok(pools) => return Ok(pools),
            Err(why) => {
                if deadline.expired() {
                    return Err(Error::NotReady(format!(
                        "FPM for {} is not ready after {:.1}s: {why}",
                        cfg.path.display(),
                        started.elapsed().as_secs_f64()
                    )));
                }
                if last_note.elapsed() >= Duration::from_secs(1) {
                    last_note = Instant::now();
                    info!(reason = %why, "waiting for readiness");
                } else {
                    debug!(reason = %why, "not ready yet");
                }
            }
        }
        std::thread::sleep(deadline.remaining_capped(pause));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Waits until the known master `master` of `cfg` is ready or `deadline` passes, following
/// that one process instead of reading the process table: its workers from the kernel's list
/// of its children, its pid file naming it, and one FastCGI answer per pool (which waits in
/// the socket's backlog until a worker accepts). Used once FPM said `READY=1` from `master`:
/// the counts are then complete and the first look normally succeeds; a short pause follows
/// only a look that found something missing.
pub fn wait_ready_of(
    cfg: &FpmConfig,
    master: ProcId,
    deadline: Deadline,
) -> Result<Vec<PoolReady>> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    // A worker forked a moment ago still bears the master's title until it has set up: one
    // answer from each pool (which waits in the backlog until a worker accepts) first, so
    // the count that follows finds them titled.
    for pool in &cfg.pools {
        let _ = check_pool(pool, deadline.remaining_capped(Duration::from_secs(3)));
    }
    loop {
        // A master that exited will not become ready: said at once, not at the deadline.
        if procs::is_gone(master) {
            return Err(Error::NotReady(format!(
                "master {} of {} exited before it was ready",
                master.pid,
                cfg.path.display()
            )));
        }
        // Only this master's workers count (discovery's "master" may be another one, such as
        // the old master of a hand-over).
        let verdict = assess_master(cfg, master, &procs::children_or_scan(master.pid), deadline);
        match verdict {
            Ok(pools) => return Ok(pools),
            Err(why) if deadline.expired() => {
                return Err(Error::NotReady(format!(
                    "FPM for {} is not ready after {:.1}s: {why}",
                    cfg.path.display(),
                    started.elapsed().as_secs_f64()
                )));
            }
            Err(why) => debug!(pid = master.pid, reason = %why, "not ready yet"),
        }
        // The last workers of a pool are still setting up (a few ms): look again soon.
        std::thread::sleep(deadline.remaining_capped(pause));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Judges master `master` from its `children`; `Err` says what is missing.
fn assess_master(
    cfg: &FpmConfig,
    master: ProcId,
    children: &[ProcInfo],
    deadline: Deadline,
) -> std::result::Result<Vec<PoolReady>, String> {
    if let Some(path) = &cfg.global.pid_file
        && discovery::pid_in_file(path) != Some(master.pid)
    {
        return Err(format!(
            "master {} runs but the pid file {} does not name it",
            master.pid,
            path.display()
        ));
    }
    let count = |pool: &str| {
        children
            .iter()
            .filter(|c| {
                !c.is_gone()
                    && c.ppid == master.pid
                    && discovery::pool_of_title(&c.title) == Some(pool)
            })
            .count()
    };
    pools_ready(cfg, count, deadline)
}

/// Judges one snapshot; `Err` says what is missing.
pub fn assess(
    cfg: &FpmConfig,
    snap: &Snapshot,
    deadline: Deadline,
) -> std::result::Result<Vec<PoolReady>, String> {
    let Some(master) = &snap.master else {
        return Err("no master process is running".into());
    };
    if let PidFile::Missing(path) | PidFile::Unverified(path, _) | PidFile::Stale { path, .. } =
        &snap.pid_file
    {
        return Err(format!(
            "master {} runs but the pid file {} does not name it",
            master.pid(),
            path.display()
        ));
    }
    pools_ready(cfg, |pool| snap.pool_workers(pool).len(), deadline)
}

/// Every pool has its expected workers (`count` says how many it has) and answers.
fn pools_ready(
    cfg: &FpmConfig,
    count: impl Fn(&str) -> usize,
    deadline: Deadline,
) -> std::result::Result<Vec<PoolReady>, String> {
    let mut pools = Vec::new();
    for pool in &cfg.pools {
        let workers = count(&pool.name);
        let expected = pool.expected_workers();
        if workers < expected as usize {
            return Err(format!(
                "pool {} has {workers} of {expected} workers",
                pool.name
            ));
        }
        let answer = check_pool(
            pool,
            deadline
                .remaining_capped(Duration::from_secs(3))
                .max(Duration::from_millis(100)),
        );
        if let Err(e) = &answer {
            return Err(format!("pool {}: {e}", pool.name));
        }
        pools.push(PoolReady {
            pool: pool.name.clone(),
            expected_workers: expected,
            workers,
            answer,
        });
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_may_take_fpms_drain_plus_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php-fpm.conf");
        let load = |pct: &str| {
            std::fs::write(
                &path,
                format!("[global]\nprocess_control_timeout = {pct}\n[www]\nlisten = 9999\npm = static\npm.max_children = 1\n"),
            )
            .unwrap();
            crate::config::load(&path).unwrap().global
        };
        let secs = Duration::from_secs;
        assert_eq!(reload_limit(&load("0"), secs(30)), secs(32));
        assert_eq!(reload_limit(&load("45s"), secs(30)), secs(77));
        assert_eq!(reload_limit(&load("8s"), secs(3)), secs(13));
        assert_eq!(reload_limit(&load("1m"), Duration::MAX), Duration::MAX);
    }
}
