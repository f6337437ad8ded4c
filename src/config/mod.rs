//! The FPM configuration model: finding the main config, parsing it the way php-fpm does
//! (`[global]`, pools, `include=` globs, `$pool` and `${ENV}` substitution, quoting,
//! comments, unit suffixes, php-fpm's own defaults) and answering questions about it.
//!
//! This module reads files only; it never looks at processes.

mod build;
mod locate;
mod parse;
mod preflight;

pub use build::{BuildDirs, probe_config};
pub use locate::{find_binary, find_config};
pub use parse::{LoadOptions, load, load_lenient, load_with};
pub use preflight::static_checks;

use crate::listen::ListenAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A place in a config file, for error messages and `fpmctl config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One problem found in a config; parsing collects them all before failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, when known.
    pub at: Option<Location>,
    /// What is wrong, one line.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The whole effective configuration of one FPM instance.
#[derive(Debug, Clone, PartialEq)]
pub struct FpmConfig {
    /// The main config file, absolute, as php-fpm is given it with `-y`.
    pub path: PathBuf,
    /// Every file read: the main file first, then each include in the order read.
    pub files: Vec<PathBuf>,
    /// `[global]` settings with php-fpm's defaults filled in.
    pub global: Global,
    /// Pools in the order php-fpm defines them.
    pub pools: Vec<Pool>,
    /// What php-fpm would only warn about, such as an include pattern that matches nothing.
    pub warnings: Vec<Problem>,
    /// `--prefix` (absolute) when relative paths were resolved under it, as under `php-fpm -p`.
    pub prefix: Option<PathBuf>,
    /// The binary's compiled-in directories relative paths were resolved under otherwise.
    pub build: BuildDirs,
    /// Some path of the config (or a default php-fpm fills in) is relative and was resolved
    /// under `build`: only then does the binary need to be asked for its directories.
    pub uses_build_dirs: bool,
    /// The php-fpm binary that runs this config, by identity; `None` until whoever resolved
    /// it (`--fpm-bin` or [`find_binary`]) sets it. Without it no process is proven to be
    /// this config's FPM (see [`crate::identity`]).
    pub binary: Option<crate::identity::FpmBinary>,
}

/// `[global]` directives fpmctl needs, with php-fpm's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// `pid`, made absolute the way php-fpm does (relative to its localstatedir); `None` when unset.
    pub pid_file: Option<PathBuf>,
    /// `error_log`: a path made absolute, or `syslog`.
    pub error_log: String,
    /// `log_level`, lower-case (default `notice`).
    pub log_level: String,
    /// `daemonize` (default yes).
    pub daemonize: bool,
    /// `process_control_timeout` (default 0).
    pub process_control_timeout: Duration,
    /// `emergency_restart_threshold` (default 0).
    pub emergency_restart_threshold: u32,
    /// `emergency_restart_interval` (default 0).
    pub emergency_restart_interval: Duration,
    /// `systemd_interval` (default 10s).
    pub systemd_interval: Duration,
}

/// Process manager style of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmStyle {
    /// A fixed number of workers.
    Static,
    /// Between min and max spare servers.
    Dynamic,
    /// Workers forked on demand.
    Ondemand,
}

impl PmStyle {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            PmStyle::Static => "static",
            PmStyle::Dynamic => "dynamic",
            PmStyle::Ondemand => "ondemand",
        }
    }
}

/// One `[pool]` with php-fpm's defaults filled in and `$pool` substituted.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The section name.
    pub name: String,
    /// Where the `[name]` section header stands.
    pub defined_at: Location,
    /// `listen`, parsed.
    pub listen: ListenAddr,
    /// Where the `listen` directive stands, for messages about the address.
    pub listen_at: Location,
    /// `listen` as written (after substitution), as php-fpm prints it.
    pub listen_raw: String,
    /// `listen.backlog` (php-fpm's default is -1: the kernel's maximum).
    pub listen_backlog: i32,
    /// `listen.owner`.
    pub listen_owner: Option<String>,
    /// `listen.group`.
    pub listen_group: Option<String>,
    /// `listen.mode` as an octal string like `0660`; `None` when unset (php-fpm then uses 0660).
    pub listen_mode: Option<String>,
    /// `listen.acl_users`: users given read and write on a unix socket through a POSIX ACL
    /// (php-fpm then ignores `listen.owner` and `listen.group`).
    pub listen_acl_users: Vec<String>,
    /// `listen.acl_groups`: groups given read and write through a POSIX ACL.
    pub listen_acl_groups: Vec<String>,
    /// `user`.
    pub user: Option<String>,
    /// `group`.
    pub group: Option<String>,
    /// `pm`.
    pub pm: PmStyle,
    /// `pm.max_children`.
    pub max_children: u32,
    /// `pm.start_servers` (for dynamic, php-fpm's computed default when unset).
    pub start_servers: u32,
    /// `pm.min_spare_servers`.
    pub min_spare_servers: u32,
    /// `pm.max_spare_servers`.
    pub max_spare_servers: u32,
    /// `pm.max_requests`.
    pub max_requests: u32,
    /// `pm.process_idle_timeout` (default 10s).
    pub process_idle_timeout: Duration,
    /// `ping.path`.
    pub ping_path: Option<String>,
    /// `ping.response` (default `pong` when `ping.path` is set).
    pub ping_response: Option<String>,
    /// `pm.status_path`.
    pub status_path: Option<String>,
    /// `pm.status_listen`, parsed.
    pub status_listen: Option<ListenAddr>,
    /// `request_terminate_timeout` (default 0: off).
    pub request_terminate_timeout: Duration,
    /// `request_slowlog_timeout` (default 0: off).
    pub request_slowlog_timeout: Duration,
    /// `slowlog`, when set.
    pub slowlog: Option<String>,
    /// `access.log`, when set.
    pub access_log: Option<String>,
}

impl Pool {
    /// How many workers php-fpm forks for this pool right after start:
    /// static: `pm.max_children`; dynamic: `pm.start_servers`; ondemand: 0.
    pub fn expected_workers(&self) -> u32 {
        match self.pm {
            PmStyle::Static => self.max_children,
            PmStyle::Dynamic => self.start_servers,
            PmStyle::Ondemand => 0,
        }
    }
}

impl FpmConfig {
    /// The pool with this name.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The pool a process titled `php-fpm: pool NAME` serves: NAME itself, or `POOL_status`,
    /// the extra pool FPM creates to answer `pm.status_listen` for POOL.
    pub fn pool_of_process(&self, name: &str) -> Option<&Pool> {
        self.pool(name).or_else(|| {
            let base = name.strip_suffix("_status")?;
            self.pool(base).filter(|p| p.status_listen.is_some())
        })
    }
}
