//! The check thread: FastCGI pings and worker counts run here, one at a time, so the event
//! loop never blocks on a pool; each result goes back as an [`Event::Checked`] through a
//! channel and a wake-up pipe. A pool that does not answer while connections wait in its
//! accept queue (sock_diag) is reported saturated.

use super::machine::{Event, MasterNo, Purpose};
use crate::config;
use crate::discovery;
use crate::listen::{AcceptQueue, ListenAddr};
use crate::procs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;
use tracing::warn;

/// A check for the check thread.
pub(super) struct CheckJob {
    pub(super) master: MasterNo,
    pub(super) purpose: Purpose,
    pub(super) pid: i32,
    pub(super) pools: Vec<config::Pool>,
    pub(super) timeout: Duration,
}

/// Runs checks off the loop thread, one at a time, and reports through the wake pipe.
pub(super) fn check_thread(
    jobs: mpsc::Receiver<CheckJob>,
    results: mpsc::Sender<Event>,
    wake: UnixStream,
) {
    while let Ok(job) = jobs.recv() {
        let result = run_check(&job);
        // A pool that did not answer while connections wait in its accept queue has every
        // worker busy with a live request: saturated, not hung.
        let saturated = result.is_err() && busy_pools(&job.pools);
        let ev = Event::Checked {
            master: job.master,
            purpose: job.purpose,
            result,
            saturated,
        };
        if results.send(ev).is_err() {
            return;
        }
        let _ = (&wake).write_all(&[1]);
    }
}

/// True when connections wait in the accept queue (sock_diag) of one of `pools`' sockets.
fn busy_pools(pools: &[config::Pool]) -> bool {
    let Ok(queues) = crate::listen::accept_queues() else {
        return false;
    };
    busy_in(pools.iter().map(|p| (p.name.as_str(), &p.listen)), &queues)
}

/// [`busy_pools`] over the queues read: each pool's queue as `saturation` finds it (by
/// address, so another address on the same port is not this pool's).
fn busy_in<'a>(
    pools: impl IntoIterator<Item = (&'a str, &'a ListenAddr)>,
    queues: &[AcceptQueue],
) -> bool {
    let mut busy = false;
    for (pool, listen) in pools {
        let waiting = crate::saturation::queue_of(listen, queues).map_or(0, |q| q.waiting);
        if waiting > 0 {
            warn!(pool, waiting, "connections wait for a busy pool");
            busy = true;
        }
    }
    busy
}

fn run_check(job: &CheckJob) -> Result<(), String> {
    // The master's children from the kernel's list; the process table only without it.
    let table = procs::children(job.pid).unwrap_or_else(|| procs::scan_fpm(procs::Scope::Titles));
    for pool in &job.pools {
        let n = table
            .iter()
            .filter(|p| {
                p.ppid == job.pid
                    && !p.is_gone()
                    && discovery::pool_of_title(&p.title) == Some(pool.name.as_str())
            })
            .count();
        // Once ready, a dynamic pool may shrink to its idle minimum.
        let want = match (job.purpose, pool.pm) {
            (Purpose::Health, config::PmStyle::Dynamic) => pool.min_spare_servers,
            _ => pool.expected_workers(),
        } as usize;
        if n < want {
            return Err(format!("pool {} has {n} of {want} workers", pool.name));
        }
    }
    for pool in &job.pools {
        crate::ready::check_pool(pool, job.timeout)
            .map_err(|e| format!("pool {}: {e}", pool.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::QueueAddr;

    fn queue(addr: &str, waiting: u32) -> AcceptQueue {
        AcceptQueue {
            addr: QueueAddr::Tcp(addr.parse().unwrap()),
            waiting,
            limit: 511,
        }
    }

    #[test]
    fn a_queue_on_another_address_with_the_same_port_is_not_the_pools() {
        let pool = ListenAddr::parse("127.0.0.1:9000").unwrap();
        let other = [queue("127.0.0.2:9000", 5), queue("127.0.0.1:9000", 0)];
        assert!(!busy_in([("www", &pool)], &other));
        let own = [queue("127.0.0.2:9000", 0), queue("127.0.0.1:9000", 3)];
        assert!(busy_in([("www", &pool)], &own));
        // A bare port listens on every address: a queue on any of them is the pool's.
        let any = ListenAddr::parse("9000").unwrap();
        assert!(busy_in([("www", &any)], &other));
    }
}
