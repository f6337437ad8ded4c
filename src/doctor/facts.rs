//! The classifier's inputs besides the logs: what the FPM configuration says about each pool,
//! what the live system showed, and the finding type it produces. Plain data, built by the
//! command and by tests alike.

use super::observe::Evidence;
use super::time::Civil;
use crate::config::FpmConfig;
use crate::listen::{ListenAddr, TcpHost};
use std::path::PathBuf;
use std::time::Duration;

/// One pool, as far as the doctor cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFacts {
    /// The pool name.
    pub name: String,
    /// `listen`.
    pub listen: ListenAddr,
    /// The file the pool is defined in.
    pub file: PathBuf,
    /// The line of its `[name]` section header.
    pub line: usize,
    /// `listen.owner`.
    pub owner: Option<String>,
    /// `listen.group`.
    pub group: Option<String>,
    /// `listen.mode` (php-fpm's default is 0660).
    pub mode: Option<String>,
    /// `listen.backlog` (-1: the kernel's maximum).
    pub backlog: i32,
    /// `pm.max_children`.
    pub max_children: u32,
    /// `request_terminate_timeout` (zero: off).
    pub terminate_timeout: Duration,
}

/// The FPM configuration, as far as the doctor cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FpmFacts {
    /// The main config file.
    pub config: PathBuf,
    /// The pools.
    pub pools: Vec<PoolFacts>,
    /// `process_control_timeout`.
    pub process_control_timeout: Duration,
}

impl FpmFacts {
    /// From a parsed config.
    pub fn from_config(cfg: &FpmConfig) -> FpmFacts {
        FpmFacts {
            config: cfg.path.clone(),
            pools: cfg
                .pools
                .iter()
                .map(|p| PoolFacts {
                    name: p.name.clone(),
                    listen: p.listen.clone(),
                    file: p.defined_at.file.clone(),
                    line: p.defined_at.line,
                    owner: p.listen_owner.clone(),
                    group: p.listen_group.clone(),
                    mode: p.listen_mode.clone(),
                    backlog: p.listen_backlog,
                    max_children: p.max_children,
                    terminate_timeout: p.request_terminate_timeout,
                })
                .collect(),
            process_control_timeout: cfg.global.process_control_timeout,
        }
    }

    /// The pool listening on `addr`.
    pub fn pool_for(&self, addr: &ListenAddr) -> Option<&PoolFacts> {
        self.pools.iter().find(|p| same_address(&p.listen, addr))
    }

    /// The pool with this name.
    pub fn pool(&self, name: &str) -> Option<&PoolFacts> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// True when a client connecting to `a` reaches a socket listening on `b` (or the reverse):
/// the same unix path, or the same port with equal, wildcard or both-loopback hosts.
pub fn same_address(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Unix(x), ListenAddr::Unix(y)) => x == y,
        (ListenAddr::Tcp { host: h1, port: p1 }, ListenAddr::Tcp { host: h2, port: p2 }) => {
            p1 == p2 && (h1 == h2 || wildcard(h1) || wildcard(h2) || (loopback(h1) && loopback(h2)))
        }
        _ => false,
    }
}

fn wildcard(h: &TcpHost) -> bool {
    match h {
        TcpHost::Any => true,
        TcpHost::Ip(ip) => ip.is_unspecified(),
        TcpHost::Name(_) => false,
    }
}

fn loopback(h: &TcpHost) -> bool {
    match h {
        TcpHost::Any => false,
        TcpHost::Ip(ip) => ip.is_loopback(),
        TcpHost::Name(n) => n == "localhost",
    }
}

/// What connecting to an address as nginx's user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// Connected.
    Connected,
    /// The OS error number and text.
    Failed(i32, String),
    /// The probe could not be made (not root, unknown user, ...).
    NotTried(String),
    /// Not checked: doctor's overall limit for the live checks ran out before (or while) it
    /// was tried. Neither healthy nor down.
    NotChecked,
}

/// One live connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The address.
    pub addr: ListenAddr,
    /// The user it connected as.
    pub user: String,
    /// The outcome.
    pub result: ProbeResult,
    /// For a unix socket: `owner:group mode` of the socket file, when it exists.
    pub socket_perms: Option<String>,
}

/// A listening socket's accept queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The address.
    pub addr: ListenAddr,
    /// Connections waiting to be accepted.
    pub waiting: u32,
    /// The queue's limit (the effective backlog).
    pub limit: u32,
}

/// A process holding an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderFacts {
    /// The address.
    pub addr: ListenAddr,
    /// One line per process: `PID 123 (php-fpm8.2: php-fpm: pool www), orphan`.
    pub holders: Vec<String>,
    /// True when every holder is an orphaned worker of this config.
    pub orphans_only: bool,
    /// True when this config's running FPM (master or workers) holds it.
    pub own: bool,
}

/// What the live system showed (all empty with `--offline`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveFacts {
    /// Whether this config's FPM master runs (`None`: not looked).
    pub fpm_running: Option<bool>,
    /// Connections tried as nginx's user.
    pub probes: Vec<Probe>,
    /// Accept queues of the pools' sockets.
    pub queues: Vec<Queue>,
    /// Who holds each pool address.
    pub holders: Vec<HolderFacts>,
    /// `net.core.somaxconn`.
    pub somaxconn: Option<u32>,
    /// Average resident memory of each pool's running workers, in KiB.
    pub worker_rss_kib: Vec<(String, u64)>,
    /// `MemTotal` of `/proc/meminfo`, in KiB.
    pub mem_total_kib: Option<u64>,
}

/// `error` for a cause, `warning` for a lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A cause of failed requests.
    Error,
    /// A config problem without evidence of failed requests.
    Warning,
}

/// One named cause (or lint) with its evidence and fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The stable id (`socket-permission`, `lint-...`).
    pub cause: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Requests (or events, for causes seen only in FPM's log) it accounts for.
    pub count: u64,
    /// Failed requests nginx logged for it: the impact it is ordered by.
    pub failed: u64,
    /// First seen (wall clock), `None` for a lint.
    pub first: Option<Civil>,
    /// Last seen (wall clock).
    pub last: Option<Civil>,
    /// One sentence.
    pub summary: String,
    /// Two or three quoted lines.
    pub evidence: Vec<Evidence>,
    /// What to change, where, and to what.
    pub fix: String,
    /// The address or pool it is about (not printed; relates lints to causes).
    pub subject: String,
}

/// Everything the classifier concluded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnosis {
    /// Findings, most failed requests first.
    pub findings: Vec<Finding>,
    /// Notes: what could not be read or checked, events that explain nothing on their own.
    pub notes: Vec<String>,
    /// Addresses the live checks did not reach before their overall limit ran out.
    pub not_checked: Vec<NotChecked>,
}

/// An address the live checks did not reach in time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotChecked {
    /// The address, as nginx spells it.
    pub address: String,
    /// The FPM pool that listens there, when known.
    pub pool: Option<String>,
}

impl Diagnosis {
    /// True when at least one cause (not a lint) was found.
    pub fn has_cause(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> ListenAddr {
        ListenAddr::parse(s).unwrap()
    }

    #[test]
    fn addresses_match_as_a_client_sees_them() {
        assert!(same_address(&a("/run/a.sock"), &a("/run/a.sock")));
        assert!(!same_address(&a("/run/a.sock"), &a("/run/b.sock")));
        assert!(same_address(&a("127.0.0.1:9000"), &a("9000")));
        assert!(same_address(&a("localhost:9000"), &a("127.0.0.1:9000")));
        assert!(same_address(&a("127.0.0.1:9000"), &a("0.0.0.0:9000")));
        assert!(!same_address(&a("127.0.0.1:9000"), &a("127.0.0.1:9001")));
        assert!(!same_address(&a("10.0.0.1:9000"), &a("127.0.0.1:9000")));
        assert!(!same_address(&a("127.0.0.1:9000"), &a("/run/a.sock")));
    }
}
