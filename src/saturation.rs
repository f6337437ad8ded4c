//! How full each pool is, seen without needing a free worker.
//!
//! Three sources, one function each:
//! - the accept queue (waiting connections and the queue's limit) from the kernel through
//!   [`crate::listen::accept_queues`], right for unix and TCP sockets alike;
//! - each worker's state from `/proc/PID/syscall`: a worker blocked in `accept(2)` on the
//!   pool's listening socket is idle, anything else (running PHP, sleeping in a script,
//!   reading a request, writing a response) is busy. A `/proc` entry that cannot be read is
//!   unknown, never idle;
//! - FPM's status page, when it can answer without queueing behind the requests it should
//!   measure: through `pm.status_listen` (FPM ≥ 8.0 serves it from a helper pool of its own),
//!   or through the pool's own socket only when a worker is idle and the caller allows it.
//!
//! The verdict ([`Health`]) is data computed from those figures: a pool whose every worker is
//! busy or whose queue holds connections is *saturated*, not down.

use crate::config::{FpmConfig, Pool};
use crate::deadline::Deadline;
use crate::discovery::Snapshot;
use crate::fastcgi;
use crate::listen::{AcceptQueue, QueueAddr};
use crate::listen::{ListenAddr, TcpHost};
use serde::Serialize;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

/// The longest a status page request may take within the caller's deadline: a page that
/// does not answer in this time is not going to help anyone see saturation.
pub const STATUS_PAGE_LIMIT: Duration = Duration::from_millis(1500);

/// What one worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Blocked in `accept(2)` on the pool's listening socket: free for the next request.
    Idle,
    /// Anything else.
    Busy,
    /// Its `/proc` entry could not be read.
    Unknown,
}

/// What `/proc/PID/syscall` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// On a CPU right now.
    Running,
    /// Blocked in system call `nr` with `arg0` its first argument.
    Blocked {
        /// The system call number.
        nr: i64,
        /// The first argument (a file descriptor for `accept`).
        arg0: u64,
    },
    /// Stopped outside a system call (`-1 ...`).
    Outside,
}

/// Parses `/proc/PID/syscall`: `running`, `-1 SP PC`, or `NR ARG0 ... SP PC` with hex
/// arguments. `None` for anything else.
pub fn parse_syscall(text: &str) -> Option<Syscall> {
    let mut words = text.split_whitespace();
    let first = words.next()?;
    if first == "running" {
        return Some(Syscall::Running);
    }
    let nr: i64 = first.parse().ok()?;
    if nr < 0 {
        return Some(Syscall::Outside);
    }
    let arg0 = words.next()?;
    let arg0 = u64::from_str_radix(arg0.trim_start_matches("0x"), 16).ok()?;
    Some(Syscall::Blocked { nr, arg0 })
}

/// Whether system call `nr` is `accept` or `accept4` on this architecture.
pub fn is_accept(nr: i64) -> bool {
    nr == libc::SYS_accept4 || nr == libc::SYS_accept
}

/// The state of a worker whose `/proc/PID/syscall` reads `syscall` (`None`: unreadable);
/// `fd_inode` maps one of its descriptors to the socket inode it holds, and `listen` is the
/// pool's listening socket inodes (empty when the kernel could not say: then blocking in
/// `accept` on any socket counts as idle).
pub fn classify(
    syscall: Option<Syscall>,
    fd_inode: impl Fn(u64) -> Option<u64>,
    listen: &HashSet<u64>,
) -> WorkerState {
    match syscall {
        None => WorkerState::Unknown,
        Some(Syscall::Blocked { nr, arg0 }) if is_accept(nr) => match fd_inode(arg0) {
            Some(inode) if listen.is_empty() || listen.contains(&inode) => WorkerState::Idle,
            Some(_) => WorkerState::Busy,
            None => WorkerState::Unknown,
        },
        Some(_) => WorkerState::Busy,
    }
}

/// Reads one worker's state from `/proc`.
pub fn worker_state(pid: i32, listen: &HashSet<u64>) -> WorkerState {
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .ok()
        .and_then(|t| parse_syscall(&t));
    classify(
        syscall,
        |fd| {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            socket_inode(&link.to_string_lossy())
        },
        listen,
    )
}

/// The inode of a `socket:[INODE]` link target.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Worker counts of one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Workers {
    /// Workers of the serving master in this pool.
    pub total: u32,
    /// Workers doing something else than waiting in `accept`.
    pub busy: u32,
    /// Workers waiting in `accept`.
    pub idle: u32,
    /// Workers whose state could not be read.
    pub unknown: u32,
}

impl Workers {
    /// Counts a list of states.
    pub fn count(states: &[WorkerState]) -> Workers {
        let mut w = Workers {
            total: states.len() as u32,
            ..Workers::default()
        };
        for s in states {
            match s {
                WorkerState::Idle => w.idle += 1,
                WorkerState::Busy => w.busy += 1,
                WorkerState::Unknown => w.unknown += 1,
            }
        }
        w
    }
}

/// A pool's accept queue, from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Queue {
    /// Connections waiting to be accepted.
    pub waiting: u32,
    /// The queue's limit (the effective backlog).
    pub limit: u32,
}

/// The figures of FPM's status page that the kernel and `/proc` cannot give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusPage {
    /// Where it was read, as `tcp://HOST:PORT/PATH` or `unix:///PATH;/PATH`.
    pub uri: String,
    /// `accepted conn`.
    pub accepted_conn: u64,
    /// `listen queue` (always 0 on unix sockets).
    pub listen_queue: u64,
    /// `max listen queue` since start.
    pub max_listen_queue: u64,
    /// `listen queue len`.
    pub listen_queue_len: u64,
    /// `idle processes`.
    pub idle_processes: u64,
    /// `active processes` (the status request itself counts when it came through the pool).
    pub active_processes: u64,
    /// `total processes`.
    pub total_processes: u64,
    /// `max active processes` since start.
    pub max_active_processes: u64,
    /// `max children reached` since start.
    pub max_children_reached: u64,
    /// `slow requests` since start.
    pub slow_requests: u64,
}

impl StatusPage {
    /// Reads the figures out of the status page's JSON; missing numbers are 0.
    pub fn from_json(uri: String, v: &serde_json::Value) -> StatusPage {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        StatusPage {
            uri,
            accepted_conn: n("accepted conn"),
            listen_queue: n("listen queue"),
            max_listen_queue: n("max listen queue"),
            listen_queue_len: n("listen queue len"),
            idle_processes: n("idle processes"),
            active_processes: n("active processes"),
            total_processes: n("total processes"),
            max_active_processes: n("max active processes"),
            max_children_reached: n("max children reached"),
            slow_requests: n("slow requests"),
        }
    }
}

/// A pool's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No master, or nothing listens on the pool's address.
    Down,
    /// It accepts connections but every worker is busy or connections wait in the queue.
    Saturated,
    /// It accepts and a worker is free.
    Ok,
}

impl Health {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Down => "down",
            Health::Saturated => "saturated",
            Health::Ok => "ok",
        }
    }
}

/// The verdict from the figures: down only when there is no master or no listening socket.
pub fn health(master: bool, queue: Option<Queue>, workers: Workers, max_children: u32) -> Health {
    let Some(queue) = queue else {
        return Health::Down;
    };
    health_of(master, Some(queue), workers, max_children)
}

/// [`health`] when the kernel's accept queue could not be read but the address may listen:
/// the workers alone decide between ok and saturated.
pub fn health_queue_unknown(master: bool, workers: Workers, max_children: u32) -> Health {
    health_of(master, None, workers, max_children)
}

fn health_of(master: bool, queue: Option<Queue>, workers: Workers, max_children: u32) -> Health {
    if !master {
        return Health::Down;
    }
    let all_busy = max_children > 0 && workers.busy >= max_children;
    if queue.is_some_and(|q| q.waiting > 0) || all_busy {
        Health::Saturated
    } else {
        Health::Ok
    }
}

/// Everything known about one pool's load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolState {
    /// The pool.
    pub pool: String,
    /// Its `listen` address.
    pub listen: String,
    /// `tcp://...` or `unix://...` of the status page when the pool has one, else of the
    /// pool's address: the `scrape_uri` label.
    pub scrape_uri: String,
    /// `pm`.
    pub pm: &'static str,
    /// `pm.max_children`.
    pub max_children: u32,
    /// Worker counts from `/proc`.
    pub workers: Workers,
    /// The accept queue from the kernel; `None` when nothing listens on the address, or
    /// when the kernel's queues could not be read (then [`PoolState::queue_unknown`]).
    pub queue: Option<Queue>,
    /// The kernel's accept queues could not be read and the address may listen: the pool
    /// is not judged down for it (fail closed: unknown is "maybe alive", never "gone").
    pub queue_unknown: bool,
    /// The status page, when it was asked and answered.
    pub status_page: Option<StatusPage>,
    /// Why the status page was not read (not configured, no idle worker, or its error).
    pub status_page_note: Option<String>,
    /// The verdict.
    pub health: Health,
}

/// When to read a pool's status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPolicy {
    /// Never: kernel and `/proc` figures only.
    Never,
    /// Only through `pm.status_listen`, which uses none of the pool's workers and writes
    /// nothing to its access log.
    DedicatedOnly,
    /// Through `pm.status_listen`, else through the pool's socket when a worker is idle
    /// (that request then appears in the pool's access log, as any exporter's does).
    WhenIdle,
}

/// The `scrape_uri` form of an address and path: `tcp://127.0.0.1:9000/status`,
/// `unix:///run/php/fpm.sock;/status`.
pub fn scrape_uri(addr: &ListenAddr, path: Option<&str>) -> String {
    let path = path.unwrap_or("");
    match addr {
        ListenAddr::Unix(p) => {
            let sep = if path.is_empty() { "" } else { ";" };
            format!("unix://{}{sep}{path}", p.display())
        }
        ListenAddr::Tcp { host, port } => {
            let host = match host {
                TcpHost::Any => "127.0.0.1".to_string(),
                TcpHost::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
                TcpHost::Ip(ip) => ip.to_string(),
                TcpHost::Name(n) => n.clone(),
            };
            format!("tcp://{host}:{port}{path}")
        }
    }
}

/// The kernel's accept queue for `addr` among `queues` (summed when several sockets stand
/// on it, as with a bare port on both stacks).
pub fn queue_of(addr: &ListenAddr, queues: &[AcceptQueue]) -> Option<Queue> {
    let mut found: Option<Queue> = None;
    for q in queues {
        let matches = match (&q.addr, addr) {
            (QueueAddr::Unix(p), ListenAddr::Unix(want)) => p == want,
            (QueueAddr::Tcp(sa), ListenAddr::Tcp { .. }) => addr.tcp_conflicts_with(sa),
            _ => false,
        };
        if matches {
            let f = found.get_or_insert(Queue {
                waiting: 0,
                limit: 0,
            });
            f.waiting = f.waiting.saturating_add(q.waiting);
            f.limit = f.limit.saturating_add(q.limit);
        }
    }
    found
}

/// Reads every pool's state: one sock_diag dump, one `/proc` read per worker, and the status
/// pages `policy` allows, each bounded by `deadline` (and [`STATUS_PAGE_LIMIT`]).
pub fn observe(
    cfg: &FpmConfig,
    snap: &Snapshot,
    policy: StatusPolicy,
    deadline: Deadline,
) -> Vec<PoolState> {
    observe_from(cfg, snap, crate::listen::accept_queues(), policy, deadline)
}

/// [`observe`] with the kernel's accept queues already read (or the error reading them).
pub fn observe_from(
    cfg: &FpmConfig,
    snap: &Snapshot,
    queues: std::io::Result<Vec<AcceptQueue>>,
    policy: StatusPolicy,
    deadline: Deadline,
) -> Vec<PoolState> {
    let queues = match queues {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read accept queues from the kernel");
            None
        }
    };
    cfg.pools
        .iter()
        .map(|pool| observe_pool(pool, snap, queues.as_deref(), policy, deadline))
        .collect()
}

fn observe_pool(
    pool: &Pool,
    snap: &Snapshot,
    queues: Option<&[AcceptQueue]>,
    policy: StatusPolicy,
    deadline: Deadline,
) -> PoolState {
    let listening = crate::listen::listening_inodes(&pool.listen);
    let listen: HashSet<u64> = listening
        .as_ref()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    let states: Vec<WorkerState> = snap
        .pool_workers(&pool.name)
        .iter()
        .map(|p| worker_state(p.pid(), &listen))
        .collect();
    let workers = Workers::count(&states);
    let queue = queues.and_then(|q| queue_of(&pool.listen, q));
    // Without the kernel's queues, the socket tables say whether the address listens; when
    // they cannot be read either, it may.
    let queue_unknown = queues.is_none() && listening.as_ref().map_or(true, |v| !v.is_empty());
    let master = snap.master.is_some();
    let (status_page, status_page_note) = read_status_page(pool, master, workers, policy, deadline);
    let status_addr = pool.status_listen.as_ref().unwrap_or(&pool.listen);
    PoolState {
        pool: pool.name.clone(),
        listen: pool.listen.to_string(),
        scrape_uri: scrape_uri(status_addr, pool.status_path.as_deref()),
        pm: pool.pm.as_str(),
        max_children: pool.max_children,
        workers,
        queue,
        queue_unknown,
        status_page,
        status_page_note,
        health: if queue_unknown {
            health_queue_unknown(master, workers, pool.max_children)
        } else {
            health(master, queue, workers, pool.max_children)
        },
    }
}

/// Which address the status page may be read through, or why not.
pub fn status_route(
    pool: &Pool,
    master: bool,
    workers: Workers,
    policy: StatusPolicy,
) -> Result<&ListenAddr, String> {
    if pool.status_path.is_none() {
        return Err("pm.status_path is not set".into());
    }
    if !master {
        return Err("FPM is not running".into());
    }
    match (policy, &pool.status_listen) {
        (StatusPolicy::Never, _) => Err("not asked".into()),
        (_, Some(addr)) => Ok(addr),
        (StatusPolicy::DedicatedOnly, None) => Err("pm.status_listen is not set".into()),
        (StatusPolicy::WhenIdle, None) if workers.idle == 0 => {
            Err("no idle worker to answer it, and no pm.status_listen".into())
        }
        (StatusPolicy::WhenIdle, None) => Ok(&pool.listen),
    }
}

fn read_status_page(
    pool: &Pool,
    master: bool,
    workers: Workers,
    policy: StatusPolicy,
    deadline: Deadline,
) -> (Option<StatusPage>, Option<String>) {
    let addr = match status_route(pool, master, workers, policy) {
        Ok(addr) => addr,
        Err(why) => return (None, Some(why)),
    };
    let Some(path) = pool.status_path.as_deref() else {
        return (None, Some("pm.status_path is not set".into()));
    };
    let budget = deadline.remaining().min(STATUS_PAGE_LIMIT);
    if budget.is_zero() {
        return (None, Some("no time left".into()));
    }
    match fastcgi::status(addr, path, budget) {
        Ok(v) => (
            Some(StatusPage::from_json(scrape_uri(addr, Some(path)), &v)),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::path::PathBuf;

    #[test]
    fn proc_syscall_lines_parse() {
        assert_eq!(parse_syscall("running\n"), Some(Syscall::Running));
        assert_eq!(parse_syscall("-1 0x7ffd1 0x7f00\n"), Some(Syscall::Outside));
        assert_eq!(
            parse_syscall("43 0x3 0x7ffc 0x7ffd 0x0 0x0 0x0 0x7ffe 0x7f01\n"),
            Some(Syscall::Blocked { nr: 43, arg0: 3 })
        );
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("garbage"), None);
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn only_accept_on_the_pool_socket_is_idle() {
        let listen: HashSet<u64> = [77].into_iter().collect();
        let accept = Some(Syscall::Blocked {
            nr: libc::SYS_accept,
            arg0: 3,
        });
        assert_eq!(classify(accept, |_| Some(77), &listen), WorkerState::Idle);
        // accept on another socket (not the pool's) is not waiting for this pool.
        assert_eq!(classify(accept, |_| Some(5), &listen), WorkerState::Busy);
        // The descriptor vanished in between: say so, never guess idle.
        assert_eq!(classify(accept, |_| None, &listen), WorkerState::Unknown);
        let sleeping = Some(Syscall::Blocked {
            nr: libc::SYS_nanosleep,
            arg0: 0,
        });
        assert_eq!(classify(sleeping, |_| Some(77), &listen), WorkerState::Busy);
        assert_eq!(
            classify(Some(Syscall::Running), |_| None, &listen),
            WorkerState::Busy
        );
        assert_eq!(classify(None, |_| None, &listen), WorkerState::Unknown);
        // The kernel could not say which sockets listen: accept on any socket is idle.
        assert_eq!(
            classify(accept, |_| Some(5), &HashSet::new()),
            WorkerState::Idle
        );
    }

    #[test]
    fn a_full_pool_is_saturated_not_down() {
        let q = |waiting| {
            Some(Queue {
                waiting,
                limit: 511,
            })
        };
        let w = |busy, idle| Workers {
            total: busy + idle,
            busy,
            idle,
            unknown: 0,
        };
        assert_eq!(health(true, q(0), w(1, 1), 2), Health::Ok);
        assert_eq!(health(true, q(0), w(2, 0), 2), Health::Saturated);
        assert_eq!(health(true, q(3), w(2, 0), 2), Health::Saturated);
        // A queue alone is saturation even when /proc says a worker just went idle.
        assert_eq!(health(true, q(1), w(1, 1), 2), Health::Saturated);
        assert_eq!(health(true, None, w(0, 0), 2), Health::Down);
        assert_eq!(health(false, q(0), w(0, 0), 2), Health::Down);
        // ondemand with no worker yet and nothing waiting is fine.
        assert_eq!(health(true, q(0), w(0, 0), 5), Health::Ok);
        // The kernel's queues could not be read: the workers decide, never "down".
        assert_eq!(health_queue_unknown(true, w(1, 1), 2), Health::Ok);
        assert_eq!(health_queue_unknown(true, w(2, 0), 2), Health::Saturated);
        assert_eq!(health_queue_unknown(false, w(2, 0), 2), Health::Down);
    }

    #[test]
    fn queues_match_the_pool_address() {
        let tcp: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let queues = vec![
            AcceptQueue {
                addr: QueueAddr::Tcp(tcp),
                waiting: 2,
                limit: 511,
            },
            AcceptQueue {
                addr: QueueAddr::Unix(PathBuf::from("/run/a.sock")),
                waiting: 4,
                limit: 128,
            },
        ];
        let a = ListenAddr::parse("127.0.0.1:9000").unwrap();
        assert_eq!(
            queue_of(&a, &queues),
            Some(Queue {
                waiting: 2,
                limit: 511
            })
        );
        let u = ListenAddr::parse("/run/a.sock").unwrap();
        assert_eq!(
            queue_of(&u, &queues),
            Some(Queue {
                waiting: 4,
                limit: 128
            })
        );
        let none = ListenAddr::parse("/run/b.sock").unwrap();
        assert_eq!(queue_of(&none, &queues), None);
    }

    #[test]
    fn scrape_uris_look_like_the_exporters() {
        let t = ListenAddr::parse("127.0.0.1:9000").unwrap();
        assert_eq!(
            scrape_uri(&t, Some("/status")),
            "tcp://127.0.0.1:9000/status"
        );
        let u = ListenAddr::parse("/run/php/fpm.sock").unwrap();
        assert_eq!(
            scrape_uri(&u, Some("/status")),
            "unix:///run/php/fpm.sock;/status"
        );
        assert_eq!(scrape_uri(&u, None), "unix:///run/php/fpm.sock");
    }
}
