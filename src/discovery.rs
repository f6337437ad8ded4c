//! Which processes are *this configuration's* FPM: its master (from the pid file, verified by
//! title and binary), its workers, orphaned workers of a dead master, and every process that
//! holds one of its listen addresses.
//!
//! The rules, in order of trust:
//! - The master's title is `php-fpm: master process (<config path>)` (or, while it re-execs,
//!   its argv is a php-fpm invocation naming the config) and its executable is a php-fpm binary.
//! - A worker's title is `php-fpm: pool <name>` for a pool of this config and its parent is
//!   the master.
//! - An orphan has a pool title of this config, its parent is no FPM master, and it either
//!   holds a listening socket on one of this config's addresses, or shares a process group
//!   with one that does, or its process group is the PID the pid file names (FPM's master calls
//!   `setsid()`, so the group is the old master's PID).
//! - A pid file naming a dead PID, a zombie or another program is *stale*; that process is
//!   never called FPM.

use crate::config::FpmConfig;
use crate::listen::{self, ListenAddr};
use crate::procs::{self, ProcInfo};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What the pid file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFile {
    /// The config has no `pid` directive.
    NotConfigured,
    /// The file does not exist.
    Missing(PathBuf),
    /// It names the verified master.
    Live(PathBuf, i32),
    /// It names a dead PID, a zombie or another program, or holds no PID.
    Stale {
        /// The pid file.
        path: PathBuf,
        /// The PID it names, if it names one.
        pid: Option<i32>,
        /// Why it is stale, one line.
        reason: String,
    },
}

impl PidFile {
    /// The path, when configured.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PidFile::NotConfigured => None,
            PidFile::Missing(p) | PidFile::Live(p, _) | PidFile::Stale { path: p, .. } => Some(p),
        }
    }

    /// The PID written in the file, if any.
    pub fn pid(&self) -> Option<i32> {
        match self {
            PidFile::Live(_, pid) => Some(*pid),
            PidFile::Stale { pid, .. } => *pid,
            _ => None,
        }
    }
}

/// A worker or orphan and its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The process.
    pub proc: ProcInfo,
    /// Its pool name (from its title).
    pub pool: String,
}

/// How a process holding a listen address relates to this config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The master.
    Master,
    /// A worker of the master.
    Worker,
    /// An orphaned worker of a dead master.
    Orphan,
    /// The `fpmctl supervise` that owns this FPM and holds its sockets (never signalled).
    Supervisor,
    /// Anything else: never signalled by fpmctl.
    Foreign,
}

impl Role {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Orphan => "orphan",
            Role::Supervisor => "supervisor",
            Role::Foreign => "foreign",
        }
    }
}

/// A process holding a listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The process.
    pub proc: ProcInfo,
    /// What it is to this config.
    pub role: Role,
}

/// One listen address of the config and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The pool it belongs to.
    pub pool: String,
    /// The address.
    pub addr: ListenAddr,
    /// Listening socket inodes on it.
    pub inodes: Vec<u64>,
    /// Processes holding those sockets.
    pub holders: Vec<Holder>,
}

impl Address {
    /// Holders that are not this config's FPM.
    pub fn foreign(&self) -> impl Iterator<Item = &Holder> {
        self.holders.iter().filter(|h| h.role == Role::Foreign)
    }
}

/// One consistent look at this config's processes and addresses.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// What the pid file says.
    pub pid_file: PidFile,
    /// The master, verified.
    pub master: Option<ProcInfo>,
    /// Further masters of the same config (should not exist; stopped along with the master).
    pub other_masters: Vec<ProcInfo>,
    /// Workers of the master and of any other master of the config.
    pub workers: Vec<Worker>,
    /// Orphaned workers of a dead master.
    pub orphans: Vec<Worker>,
    /// Every listen address (pool `listen` and `pm.status_listen`).
    pub addresses: Vec<Address>,
}

/// The overall state, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A verified master runs.
    Running,
    /// Nothing of this config runs and no pid file is left.
    Stopped,
    /// Nothing runs but the pid file is stale.
    StalePidFile,
    /// No master, but orphaned workers of this config remain.
    Orphans,
}

impl State {
    /// The stable name used in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::StalePidFile => "stale-pid-file",
            State::Orphans => "orphans",
        }
    }
}

impl Snapshot {
    /// The overall state.
    pub fn state(&self) -> State {
        if self.master.is_some() {
            State::Running
        } else if !self.orphans.is_empty() {
            State::Orphans
        } else if matches!(self.pid_file, PidFile::Stale { .. }) {
            State::StalePidFile
        } else {
            State::Stopped
        }
    }

    /// Every process of this config: masters, workers, orphans.
    pub fn all_processes(&self) -> Vec<&ProcInfo> {
        let mut out: Vec<&ProcInfo> = Vec::new();
        out.extend(self.master.iter());
        out.extend(self.other_masters.iter());
        out.extend(self.workers.iter().map(|w| &w.proc));
        out.extend(self.orphans.iter().map(|w| &w.proc));
        out
    }

    /// Workers of one pool that belong to the serving master (not those of another master of
    /// the same config, such as one being retired).
    pub fn pool_workers(&self, pool: &str) -> Vec<&ProcInfo> {
        let Some(master) = &self.master else {
            return Vec::new();
        };
        self.workers
            .iter()
            .filter(|w| w.pool == pool && w.proc.ppid == master.pid())
            .map(|w| &w.proc)
            .collect()
    }

    /// Refuses when a process that is not this FPM holds one of its addresses: nothing
    /// may start on an address someone else serves.
    pub fn refuse_foreign_holders(&self) -> crate::error::Result<()> {
        for a in &self.addresses {
            if let Some(h) = a.foreign().next() {
                return Err(crate::error::Error::AddressInUse {
                    address: a.addr.to_string(),
                    pool: a.pool.clone(),
                    pid: h.proc.pid(),
                    program: h.proc.program(),
                });
            }
        }
        Ok(())
    }

    /// True when nothing of this config runs.
    pub fn is_empty(&self) -> bool {
        self.all_processes().is_empty()
    }
}

/// The pool name in a worker title `php-fpm: pool NAME`.
pub fn pool_of_title(title: &str) -> Option<&str> {
    title.strip_prefix("php-fpm: pool ").map(str::trim)
}

fn is_any_master_title(title: &str) -> bool {
    title.starts_with("php-fpm: master process")
}

/// True when `p` is the FPM master of the config at `config`: alive, a php-fpm binary, and
/// titled for this config (or, mid re-exec, invoked with `-y`/`--fpm-config` naming it).
pub fn is_master_of(p: &ProcInfo, config: &Path) -> bool {
    if p.is_gone() || !p.is_php_fpm_binary() {
        return false;
    }
    if let Some(inner) = p
        .title
        .strip_prefix("php-fpm: master process (")
        .and_then(|t| t.strip_suffix(')'))
    {
        return same_path(Path::new(inner), config, p.pid());
    }
    argv_config(&p.title)
        .map(|c| same_path(Path::new(&c), config, p.pid()))
        .unwrap_or(false)
}

/// True when `p` is a live php-fpm pool process of a pool named in `cfg`.
pub fn is_pool_process_of(p: &ProcInfo, cfg: &FpmConfig) -> bool {
    !p.is_gone()
        && p.is_php_fpm_binary()
        && pool_of_title(&p.title).is_some_and(|name| cfg.pool(name).is_some())
}

/// The config named on a php-fpm command line (`-y PATH`, `-yPATH`, `--fpm-config PATH` or
/// `--fpm-config=PATH`). Arguments are split on spaces, so paths with spaces are not found.
fn argv_config(cmdline: &str) -> Option<String> {
    let mut args = cmdline.split(' ');
    let first = args.next()?;
    if !Path::new(first)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("php-fpm"))
    {
        return None;
    }
    while let Some(a) = args.next() {
        if a == "-y" || a == "--fpm-config" {
            return args.next().map(str::to_string);
        }
        if let Some(v) = a.strip_prefix("--fpm-config=") {
            return Some(v.to_string());
        }
        if let Some(v) = a.strip_prefix("-y").filter(|v| !v.is_empty()) {
            return Some(v.to_string());
        }
    }
    None
}

fn same_path(seen: &Path, config: &Path, pid: i32) -> bool {
    if seen == config {
        return true;
    }
    let seen = if seen.is_relative() {
        PathBuf::from(format!("/proc/{pid}/cwd")).join(seen)
    } else {
        seen.to_path_buf()
    };
    match (seen.canonicalize(), config.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Every listen address of the config, with its pool.
pub fn config_addresses(cfg: &FpmConfig) -> Vec<(String, ListenAddr)> {
    let mut out = Vec::new();
    for pool in &cfg.pools {
        out.push((pool.name.clone(), pool.listen.clone()));
        if let Some(status) = &pool.status_listen {
            out.push((pool.name.clone(), status.clone()));
        }
    }
    out
}

/// Takes one look at the system for `cfg`.
pub fn discover(cfg: &FpmConfig) -> Snapshot {
    let mut listeners: Vec<(String, ListenAddr, Vec<u64>)> = Vec::new();
    for (pool, addr) in config_addresses(cfg) {
        let inodes = listen::listening_inodes(&addr).unwrap_or_default();
        listeners.push((pool, addr, inodes));
    }
    // Open files are only read when a socket listens on one of our addresses: with nothing
    // listening there are no holders, and orphans (which always hold one) cannot exist.
    let anything_listens = listeners.iter().any(|l| !l.2.is_empty());
    let table = procs::scan(anything_listens);
    discover_in(cfg, &table, &listeners)
}

/// [`discover`] over a given process table and listening sockets (for tests).
pub fn discover_in(
    cfg: &FpmConfig,
    table: &[ProcInfo],
    listeners: &[(String, ListenAddr, Vec<u64>)],
) -> Snapshot {
    let config = cfg.path.as_path();
    let pid_file_path = cfg.global.pid_file.clone();
    let file_pid = pid_file_path.as_ref().map(|p| read_pid_file(p));

    let masters: Vec<&ProcInfo> = table.iter().filter(|p| is_master_of(p, config)).collect();
    let by_pid = |pid: i32| table.iter().find(|p| p.pid() == pid);

    let pid_file = match (&pid_file_path, file_pid) {
        (None, _) | (_, None) => PidFile::NotConfigured,
        (Some(path), Some(Err(PidFileRead::Missing))) => PidFile::Missing(path.clone()),
        (Some(path), Some(Err(PidFileRead::Bad(reason)))) => PidFile::Stale {
            path: path.clone(),
            pid: None,
            reason,
        },
        (Some(path), Some(Ok(pid))) => match by_pid(pid) {
            Some(p) if masters.iter().any(|m| m.id == p.id) => PidFile::Live(path.clone(), pid),
            Some(p) if p.is_gone() => PidFile::Stale {
                path: path.clone(),
                pid: Some(pid),
                reason: format!("PID {pid} is a zombie"),
            },
            Some(p) => PidFile::Stale {
                path: path.clone(),
                pid: Some(pid),
                reason: format!(
                    "PID {pid} is {} ({}), not this config's FPM master",
                    p.program(),
                    if p.title.is_empty() {
                        &p.comm
                    } else {
                        &p.title
                    }
                ),
            },
            None => PidFile::Stale {
                path: path.clone(),
                pid: Some(pid),
                reason: format!("PID {pid} does not exist"),
            },
        },
    };

    // The master: the one the pid file names, else the oldest process titled for this config.
    let master = match &pid_file {
        PidFile::Live(_, pid) => masters
            .iter()
            .find(|m| m.pid() == *pid)
            .map(|m| (*m).clone()),
        _ => masters
            .iter()
            .min_by_key(|m| m.id.start_time)
            .map(|m| (*m).clone()),
    };
    let other_masters: Vec<ProcInfo> = masters
        .iter()
        .filter(|m| Some(m.id) != master.as_ref().map(|x| x.id))
        .map(|m| (*m).clone())
        .collect();
    let master_pids: HashSet<i32> = masters.iter().map(|m| m.pid()).collect();

    let all_inodes: HashSet<u64> = listeners.iter().flat_map(|l| l.2.iter().copied()).collect();
    let mut workers = Vec::new();
    let mut candidates = Vec::new();
    for p in table.iter().filter(|p| is_pool_process_of(p, cfg)) {
        let pool = pool_of_title(&p.title).unwrap_or_default().to_string();
        if master_pids.contains(&p.ppid) {
            workers.push(Worker {
                proc: p.clone(),
                pool,
            });
        } else if !by_pid(p.ppid).is_some_and(|parent| is_any_master_title(&parent.title)) {
            candidates.push(Worker {
                proc: p.clone(),
                pool,
            });
        }
    }
    // Orphans: evidence from sockets, the process group, or the pid file's dead master.
    let holding_groups: HashSet<i32> = candidates
        .iter()
        .filter(|w| w.proc.sockets.iter().any(|i| all_inodes.contains(i)))
        .map(|w| w.proc.pgrp)
        .collect();
    let dead_master = match &pid_file {
        PidFile::Stale { pid: Some(pid), .. } => Some(*pid),
        _ => None,
    };
    let orphans: Vec<Worker> = candidates
        .into_iter()
        .filter(|w| {
            w.proc.sockets.iter().any(|i| all_inodes.contains(i))
                || holding_groups.contains(&w.proc.pgrp)
                || Some(w.proc.pgrp) == dead_master
        })
        .collect();

    let role_of = |p: &ProcInfo| -> Role {
        if masters.iter().any(|m| m.id == p.id) {
            Role::Master
        } else if workers.iter().any(|w| w.proc.id == p.id) {
            Role::Worker
        } else if orphans.iter().any(|w| w.proc.id == p.id) {
            Role::Orphan
        } else if is_supervisor_of(p, &masters, &orphans) {
            Role::Supervisor
        } else {
            Role::Foreign
        }
    };
    let addresses = listeners
        .iter()
        .map(|(pool, addr, inodes)| {
            let set: HashSet<u64> = inodes.iter().copied().collect();
            let holders = procs::holders_of(table, &set)
                .into_iter()
                .map(|p| Holder {
                    proc: p.clone(),
                    role: role_of(p),
                })
                .collect();
            Address {
                pool: pool.clone(),
                addr: addr.clone(),
                inodes: inodes.clone(),
                holders,
            }
        })
        .collect();

    Snapshot {
        pid_file,
        master,
        other_masters,
        workers,
        orphans,
        addresses,
    }
}

/// The process that started this config's master (or inherited its orphans) running
/// `fpmctl ... supervise`.
fn is_supervisor_of(p: &ProcInfo, masters: &[&ProcInfo], orphans: &[Worker]) -> bool {
    let parent_of_ours =
        masters.iter().any(|m| m.ppid == p.pid()) || orphans.iter().any(|o| o.proc.ppid == p.pid());
    parent_of_ours && p.title.split(' ').any(|a| a == "supervise")
}

enum PidFileRead {
    Missing,
    Bad(String),
}

fn read_pid_file(path: &Path) -> Result<i32, PidFileRead> {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(PidFileRead::Bad(format!(
                "{} does not hold a PID: {:?}",
                path.display(),
                text.trim().chars().take(40).collect::<String>()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PidFileRead::Missing),
        Err(e) => Err(PidFileRead::Bad(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_config_on_a_php_fpm_command_line() {
        assert_eq!(
            argv_config("/usr/sbin/php-fpm8.2 -F -y /tmp/a.conf").as_deref(),
            Some("/tmp/a.conf")
        );
        assert_eq!(
            argv_config("php-fpm --fpm-config=/tmp/b.conf").as_deref(),
            Some("/tmp/b.conf")
        );
        assert_eq!(
            argv_config("php-fpm -y/tmp/c.conf").as_deref(),
            Some("/tmp/c.conf")
        );
        assert_eq!(argv_config("sleep -y /tmp/a.conf"), None);
        assert_eq!(argv_config("/usr/sbin/php-fpm8.2 --nodaemonize"), None);
    }

    fn config() -> (tempfile::TempDir, FpmConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php-fpm.conf");
        let text = format!(
            "[global]\npid = {d}/fpm.pid\n[www]\nuser = nobody\nlisten = 127.0.0.1:9999\npm = static\npm.max_children = 2\n",
            d = dir.path().display()
        );
        std::fs::write(&path, text).unwrap();
        let cfg = crate::config::load(&path).unwrap();
        (dir, cfg)
    }

    fn proc(pid: i32, ppid: i32, pgrp: i32, title: &str, exe: &str, sockets: &[u64]) -> ProcInfo {
        ProcInfo {
            id: crate::procs::ProcId {
                pid,
                start_time: 1000 + pid as u64,
            },
            ppid,
            pgrp,
            state: 'S',
            comm: exe.rsplit('/').next().unwrap().chars().take(15).collect(),
            title: title.to_string(),
            exe: Some(PathBuf::from(exe)),
            sockets: sockets.to_vec(),
        }
    }

    const FPM: &str = "/usr/sbin/php-fpm8.2";

    #[test]
    fn counts_only_the_serving_masters_workers_per_pool() {
        let (_d, cfg) = config();
        std::fs::write(cfg.global.pid_file.as_ref().unwrap(), "100\n").unwrap();
        let master = format!("php-fpm: master process ({})", cfg.path.display());
        let table = vec![
            proc(100, 1, 100, &master, FPM, &[7]),
            proc(101, 100, 100, "php-fpm: pool www", FPM, &[7]),
            proc(102, 100, 100, "php-fpm: pool www", FPM, &[7]),
            // An older master of the same config being retired, and its worker.
            proc(90, 1, 90, &master, FPM, &[7]),
            proc(91, 90, 90, "php-fpm: pool www", FPM, &[7]),
        ];
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let snap = discover_in(&cfg, &table, &[("www".into(), addr, vec![7])]);
        assert_eq!(snap.master.as_ref().map(ProcInfo::pid), Some(100));
        assert_eq!(snap.other_masters.len(), 1);
        assert_eq!(snap.pool_workers("www").len(), 2);
        assert_eq!(snap.all_processes().len(), 5);
    }

    #[test]
    fn orphans_are_found_by_socket_or_process_group_and_others_are_foreign() {
        let (_d, cfg) = config();
        std::fs::write(cfg.global.pid_file.as_ref().unwrap(), "100\n").unwrap();
        let table = vec![
            // The master 100 is dead; 101 holds the socket, 102 is in its group.
            proc(101, 1, 100, "php-fpm: pool www", FPM, &[7]),
            proc(102, 1, 100, "php-fpm: pool www", FPM, &[]),
            // A pool of the same name under another live master: not ours.
            proc(
                200,
                1,
                200,
                "php-fpm: master process (/other.conf)",
                FPM,
                &[8],
            ),
            proc(201, 200, 200, "php-fpm: pool www", FPM, &[8]),
            // Something else on our port.
            proc(300, 1, 300, "nc -l 9999", "/usr/bin/nc", &[7]),
        ];
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let snap = discover_in(&cfg, &table, &[("www".into(), addr, vec![7])]);
        let orphans: Vec<i32> = snap.orphans.iter().map(|o| o.proc.pid()).collect();
        assert_eq!(orphans, vec![101, 102]);
        assert_eq!(snap.state(), State::Orphans);
        let roles: Vec<(i32, Role)> = snap.addresses[0]
            .holders
            .iter()
            .map(|h| (h.proc.pid(), h.role))
            .collect();
        assert_eq!(roles, vec![(101, Role::Orphan), (300, Role::Foreign)]);
    }

    #[test]
    fn a_pid_file_naming_another_program_is_stale_and_it_is_never_the_master() {
        let (_d, cfg) = config();
        std::fs::write(cfg.global.pid_file.as_ref().unwrap(), "300\n").unwrap();
        let table = vec![proc(300, 1, 300, "sleep 300", "/usr/bin/sleep", &[])];
        let snap = discover_in(&cfg, &table, &[]);
        assert!(snap.master.is_none());
        assert_eq!(snap.state(), State::StalePidFile);
        match &snap.pid_file {
            PidFile::Stale { reason, .. } => assert!(reason.contains("sleep"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pool_titles() {
        assert_eq!(pool_of_title("php-fpm: pool www"), Some("www"));
        assert_eq!(pool_of_title("php-fpm: master process (/x)"), None);
    }
}
