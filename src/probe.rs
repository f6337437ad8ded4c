//! Health probes for orchestrators (Kubernetes exec probes, HTTP `/livez` and `/readyz`):
//! decisions as data over [`crate::saturation::PoolState`], and [`bounded`], which gives an
//! answer at the deadline whatever the work is stuck on.
//!
//! The probes never send a request through a pool's workers: the kernel's accept queue and
//! `/proc` say whether a pool listens and how full it is, so a probe neither waits behind the
//! requests it measures nor writes to the pool's access log.
//!
//! - liveness fails only when the master is gone or a pool's address has no listening socket
//!   (a saturated FPM is alive: restarting it would drop every request in flight; accept
//!   queues the kernel would not show are unknown, not "nothing listens");
//! - readiness also fails when a pool has no worker (except `pm = ondemand`), when its
//!   accept queue holds more than `max_queue` connections, or, without `max_queue`, when the
//!   queue is full (the kernel refuses or drops new connections);
//! - startup is readiness, retried until the deadline.

use crate::deadline::Deadline;
use crate::saturation::{Health, PoolState};
use serde::Serialize;
use std::sync::mpsc;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Is FPM alive: master running, every pool listening.
    Liveness,
    /// May FPM take traffic: alive, workers present, queue within bounds.
    Readiness,
    /// Readiness, waited for until the deadline.
    Startup,
}

impl Kind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
            Kind::Startup => "startup",
        }
    }
}

/// A probe's answer: `Ok(())` passes, `Err` says why it fails.
pub type Verdict = Result<(), String>;

/// Liveness: a master runs and every pool's socket listens.
pub fn liveness(master: bool, pools: &[PoolState]) -> Verdict {
    if !master {
        return Err("no FPM master of this config runs".into());
    }
    if pools.is_empty() {
        return Err("the config has no pool".into());
    }
    for p in pools {
        if p.queue.is_none() && !p.queue_unknown {
            return Err(format!("pool {}: nothing listens on {}", p.pool, p.listen));
        }
    }
    Ok(())
}

/// Readiness: [`liveness`], every pool has a worker (ondemand pools may have none) and its
/// queue holds at most `max_queue` connections (without a limit: is not full).
pub fn readiness(master: bool, pools: &[PoolState], max_queue: Option<u32>) -> Verdict {
    liveness(master, pools)?;
    for p in pools {
        if p.workers.total == 0 && p.pm != "ondemand" {
            return Err(format!("pool {}: no worker runs", p.pool));
        }
        let Some(q) = p.queue else { continue };
        match max_queue {
            Some(max) if q.waiting > max => {
                return Err(format!(
                    "pool {} is saturated: {} connections wait (more than --max-queue {max}), {}/{} workers busy",
                    p.pool, q.waiting, p.workers.busy, p.workers.total
                ));
            }
            None if q.limit > 0 && q.waiting >= q.limit => {
                return Err(format!(
                    "pool {}: its accept queue is full ({}/{})",
                    p.pool, q.waiting, q.limit
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether any pool is saturated (for messages).
pub fn saturated(pools: &[PoolState]) -> impl Iterator<Item = &PoolState> {
    pools.iter().filter(|p| p.health == Health::Saturated)
}

/// Runs `work` on its own thread and returns its result, or `None` when `deadline` passes
/// first. The work gets the deadline to bound its own waits; this is the guarantee that the
/// caller answers in time even when something the work waits on does not (a hung `/proc`
/// read, a socket that accepts and never answers). A late worker thread is left behind and
/// ends with the process.
pub fn bounded<T, F>(deadline: Deadline, work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(Deadline) -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            let _ = tx.send(work(deadline));
        });
    if spawned.is_err() {
        return None;
    }
    if deadline.is_never() {
        return rx.recv().ok();
    }
    rx.recv_timeout(deadline.remaining()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saturation::{Queue, Workers};
    use std::time::{Duration, Instant};

    fn pool(total: u32, busy: u32, waiting: Option<u32>) -> PoolState {
        PoolState {
            pool: "www".into(),
            listen: "/run/www.sock".into(),
            scrape_uri: "unix:///run/www.sock".into(),
            pm: "static",
            max_children: total,
            workers: Workers {
                total,
                busy,
                idle: total - busy,
                unknown: 0,
            },
            queue: waiting.map(|waiting| Queue { waiting, limit: 8 }),
            queue_unknown: false,
            status_page: None,
            status_page_note: None,
            health: Health::Ok,
        }
    }

    #[test]
    fn a_pool_whose_queue_could_not_be_read_is_not_judged_dead() {
        let mut p = pool(2, 0, None);
        assert!(liveness(true, std::slice::from_ref(&p)).is_err());
        p.queue_unknown = true;
        assert_eq!(liveness(true, std::slice::from_ref(&p)), Ok(()));
        assert_eq!(readiness(true, std::slice::from_ref(&p), Some(0)), Ok(()));
        assert!(liveness(false, &[p]).is_err());
    }

    #[test]
    fn a_saturated_pool_is_alive_and_ready_until_the_queue_limit() {
        let full = [pool(2, 2, Some(5))];
        assert_eq!(liveness(true, &full), Ok(()));
        assert_eq!(readiness(true, &full, None), Ok(()));
        assert_eq!(readiness(true, &full, Some(5)), Ok(()));
        let err = readiness(true, &full, Some(4)).unwrap_err();
        assert!(err.contains("5 connections wait"), "{err}");
        // A full queue fails readiness without a limit.
        assert!(readiness(true, &[pool(2, 2, Some(8))], None).is_err());
        assert!(liveness(true, &[pool(2, 2, Some(8))]).is_ok());
    }

    #[test]
    fn liveness_fails_only_without_master_or_socket() {
        assert!(liveness(false, &[pool(2, 0, Some(0))]).is_err());
        let err = liveness(true, &[pool(2, 0, None)]).unwrap_err();
        assert!(err.contains("nothing listens on /run/www.sock"), "{err}");
        assert!(liveness(true, &[]).is_err());
        assert!(readiness(true, &[pool(0, 0, Some(0))], None).is_err());
    }

    #[test]
    fn bounded_answers_at_the_deadline_when_the_work_never_does() {
        // A listener that accepts and never answers: a FastCGI request to it with no
        // deadline of its own would block forever.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr =
            crate::listen::ListenAddr::parse(&listener.local_addr().unwrap().to_string()).unwrap();
        let started = Instant::now();
        let deadline = Deadline::after(Duration::from_millis(200));
        let out = bounded(deadline, move |_| {
            crate::fastcgi::status(&addr, "/status", Duration::from_secs(3600)).map(|_| ())
        });
        assert!(out.is_none());
        // It returned because the deadline passed, not before.
        assert!(deadline.expired_at(Instant::now()));
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(listener);
        assert_eq!(
            bounded(Deadline::after(Duration::from_secs(60)), |_| 7),
            Some(7)
        );
    }
}
