//! Which processes are *this configuration's* FPM: its master (from the pid file, verified by
//! title and binary), its workers, orphaned workers of a dead master, and every process that
//! holds one of its listen addresses.
//!
//! Who is proven to be this config's FPM is decided by [`crate::identity`] (the binary by
//! device and inode, the config in the title, never a config test). On top of that:
//! - A worker's title is `php-fpm: pool <name>` for a pool of this config, it runs the
//!   config's binary, and its parent is the master.
//! - An orphan is such a pool process whose parent is no FPM master and which itself holds a
//!   listening socket (by inode) on one of this config's addresses. A process group or a pid
//!   file is no evidence: a stale pid file may name another config's dead master. A pool
//!   process without that evidence is a [`Lookalike`]: reported, never signalled.
//! - A pid file naming a dead PID, a zombie or another program is *stale*; that process is
//!   never called FPM.
//! - Whatever looks like this config's FPM but is not proven (another binary, a binary
//!   replaced since it started, a process fpmctl may not inspect) is a [`Lookalike`].

use crate::config::FpmConfig;
use crate::identity::{self, Doubt, Verdict};
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
    /// It names a process that looks like the master but is not proven (see [`Lookalike`]).
    Unverified(PathBuf, i32),
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
            PidFile::Missing(p)
            | PidFile::Live(p, _)
            | PidFile::Unverified(p, _)
            | PidFile::Stale { path: p, .. } => Some(p),
        }
    }

    /// The PID written in the file, if any.
    pub fn pid(&self) -> Option<i32> {
        match self {
            PidFile::Live(_, pid) | PidFile::Unverified(_, pid) => Some(*pid),
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
    /// It looks like this config's FPM but cannot be proven to be (a [`Lookalike`] whose
    /// doubt is not foreign): never signalled.
    Unverified,
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
            Role::Unverified => "unverified",
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
    /// False when a listening socket here has no holder fpmctl could see while the open
    /// files of some processes could not be read (another user's, without root).
    pub holders_known: bool,
}

impl Address {
    /// Holders not proven to be this config's FPM (foreign or unverified).
    pub fn foreign(&self) -> impl Iterator<Item = &Holder> {
        self.holders
            .iter()
            .filter(|h| matches!(h.role, Role::Foreign | Role::Unverified))
    }
}

/// What a [`Lookalike`] looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looks {
    /// This config's master.
    Master,
    /// A pool process of this config (the pool named).
    Pool(String),
}

/// A process that looks like this config's FPM (by title) but is not proven to be it.
/// Reported; never signalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookalike {
    /// The process.
    pub proc: ProcInfo,
    /// What it looks like.
    pub looks: Looks,
    /// Why it is not proven.
    pub doubt: Doubt,
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
    /// Processes that look like this config's FPM but are not proven to be it.
    pub lookalikes: Vec<Lookalike>,
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
    /// No proven master, but one that cannot be verified runs (a replaced binary, or a
    /// process fpmctl may not inspect): LSB "unknown".
    Unverified,
}

impl State {
    /// The stable name used in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::StalePidFile => "stale-pid-file",
            State::Orphans => "orphans",
            State::Unverified => "unverified",
        }
    }
}

impl Snapshot {
    /// The overall state.
    pub fn state(&self) -> State {
        if self.master.is_some() {
            State::Running
        } else if self.unverified_masters().next().is_some() {
            State::Unverified
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

    /// True when nothing of this config runs.
    pub fn is_empty(&self) -> bool {
        self.all_processes().is_empty()
    }

    /// The first address held by a process that is not this config's FPM (nor its
    /// supervisor), with that holder.
    pub fn foreign_holder(&self) -> Option<(&Address, &Holder)> {
        self.addresses
            .iter()
            .find_map(|a| a.foreign().next().map(|h| (a, h)))
    }

    /// Lookalike masters that may well be this config's master but cannot be proven
    /// (not impostors): while one runs, nothing can be said for sure.
    pub fn unverified_masters(&self) -> impl Iterator<Item = &Lookalike> {
        self.lookalikes
            .iter()
            .filter(|l| l.looks == Looks::Master && !l.doubt.is_foreign())
    }

    /// What was found, one line: the master and its workers (or "no master"), orphaned
    /// workers of a dead master and a stale pid file.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.master {
            Some(m) => parts.push(format!(
                "master {} with {} worker(s)",
                m.pid(),
                self.workers.len()
            )),
            None => parts.push("no master".to_string()),
        }
        if !self.orphans.is_empty() {
            let pids: Vec<String> = self
                .orphans
                .iter()
                .map(|o| o.proc.pid().to_string())
                .collect();
            parts.push(format!(
                "{} orphaned worker(s) of a dead master ({})",
                self.orphans.len(),
                pids.join(" ")
            ));
        }
        if let PidFile::Stale { reason, .. } = &self.pid_file {
            parts.push(format!("a stale pid file ({reason})"));
        }
        parts.join(", ")
    }

    /// True when the view is limited because processes of other users could not be read.
    pub fn limited_view(&self) -> bool {
        self.lookalikes
            .iter()
            .any(|l| l.doubt == Doubt::CannotInspect)
            || self.addresses.iter().any(|a| !a.holders_known)
    }
}

/// The one decision every command (start, restart, reload) and the supervisor share: FPM
/// must not be started, restarted or reloaded onto an address a foreign process holds, or it
/// dies binding it. `Err` names the address, the pool and the holder; nothing is touched.
pub fn refuse_foreign_holders(snap: &Snapshot) -> crate::Result<()> {
    // Nothing seen listening where the view is incomplete proves nothing: refuse.
    if let Some(a) = snap
        .addresses
        .iter()
        .find(|a| a.holders.is_empty() && !a.holders_known)
    {
        return Err(crate::Error::Other(format!(
            "cannot tell who holds {} (pool {}): the socket table or other users' processes \
             could not be read; nothing was touched (run as root)",
            a.addr, a.pool
        )));
    }
    match snap.foreign_holder() {
        None => Ok(()),
        Some((a, h)) => Err(crate::Error::AddressInUse {
            address: a.addr.to_string(),
            pool: a.pool.clone(),
            pid: h.proc.pid(),
            program: h.proc.program(),
        }),
    }
}

pub use crate::identity::pool_of_title;

/// True when `p` is proven to be the FPM master of `cfg` (see [`crate::identity`]).
pub fn is_master_of(p: &ProcInfo, cfg: &FpmConfig) -> bool {
    identity::judge_master(p, &cfg.path, cfg.binary.as_ref()).is_ours()
}

/// True when `p` is proven to be a live pool process (worker or orphan) of `cfg`.
pub fn is_pool_process_of(p: &ProcInfo, cfg: &FpmConfig) -> bool {
    identity::judge_pool_process(p, cfg).is_ours()
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

/// Takes one look at the system for `cfg`, reading in full only the processes that run a
/// php-fpm binary ([`procs::Scope::Binary`]): what every decision needs. A program that only
/// poses as FPM is not listed among the lookalikes (it holds none of the config's sockets,
/// or it is found as their holder); [`discover_reporting`] lists it.
pub fn discover(cfg: &FpmConfig) -> Snapshot {
    let binary = cfg.binary.as_ref().map(|b| b.path.as_path());
    discover_scoped(cfg, procs::Scope::Binary(binary))
}

/// False only for a title that is surely another config's: a master titled for another
/// config file, or a pool process of a pool this config does not have. Saves reading the
/// other FPMs of a busy host in full; [`identity`] still judges what is read.
fn may_be_ours(title: &str, cfg: &FpmConfig) -> bool {
    if let Some(inner) = title
        .strip_prefix("php-fpm: master process (")
        .and_then(|t| t.strip_suffix(')'))
    {
        let seen = crate::lossless::to_path(inner);
        return seen.is_relative()
            || seen == cfg.path
            || matches!((seen.canonicalize(), cfg.path.canonicalize()), (Ok(a), Ok(b)) if a == b);
    }
    match pool_of_title(title) {
        Some(pool) => cfg.pool_of_process(pool).is_some(),
        None => true,
    }
}

/// [`discover`] that also reads every process whose title names php-fpm, whatever it runs,
/// so impostors are reported: `status`.
pub fn discover_reporting(cfg: &FpmConfig) -> Snapshot {
    discover_scoped(cfg, procs::Scope::Titles)
}

fn discover_scoped(cfg: &FpmConfig, scope: procs::Scope<'_>) -> Snapshot {
    let mut listeners: Vec<(String, ListenAddr, Vec<u64>)> = Vec::new();
    // Addresses whose socket table could not be read: who listens there is unknown, never
    // "nobody" (fail closed: start and restart refuse to bind onto them).
    let mut unreadable = Vec::new();
    for (i, (pool, addr)) in config_addresses(cfg).into_iter().enumerate() {
        let inodes = match listen::listening_inodes(&addr) {
            Ok(inodes) => inodes,
            Err(e) => {
                tracing::warn!(address = %addr, error = %e, "cannot read the kernel's socket table");
                unreadable.push(i);
                Vec::new()
            }
        };
        listeners.push((pool, addr, inodes));
    }
    // Open files are only read when a socket listens on one of our addresses: with nothing
    // listening there are no holders, and orphans (which always hold one) cannot exist.
    let anything_listens = !unreadable.is_empty() || listeners.iter().any(|l| !l.2.is_empty());
    // Only what can be FPM is read in full; the rest of the host only when a listening
    // socket on our addresses has no holder among those (a foreign program, or a supervisor
    // holding the sockets while no FPM runs): then every process's open files are read, as
    // who holds the address decides whether FPM may be started on it.
    let mut table = procs::scan_fpm_keeping(scope, &|title| may_be_ours(title, cfg));
    if anything_listens {
        // Open files are read only where they can make a difference: processes that claim
        // to be this config's FPM (orphans prove themselves by the sockets they hold) and
        // their parents (a supervisor holding the sockets). Another config's FPM is left.
        let read: HashSet<i32> = table
            .iter()
            .filter(|p| claims_to_be_ours(p, cfg))
            .flat_map(|p| [p.pid(), p.ppid])
            .chain(
                table
                    .iter()
                    .filter(|p| runs_fpmctl_supervise(p))
                    .map(|p| p.pid()),
            )
            .collect();
        for p in table.iter_mut().filter(|p| read.contains(&p.pid())) {
            procs::read_sockets(p);
        }
        // A parent is read to recognise a supervisor: one closed to us (init under a
        // container runtime) does not make the view unknown. Should it hold a socket no FPM
        // process holds, the pass over every process below finds that socket without a
        // holder and judges it there, unreadable processes and all.
        for p in table.iter_mut().filter(|p| !claims_to_be_ours(p, cfg)) {
            p.restricted = false;
        }
    }
    let held: HashSet<u64> = table
        .iter()
        .flat_map(|p| p.sockets.iter().copied())
        .collect();
    let unheld = !unreadable.is_empty()
        || listeners
            .iter()
            .any(|l| l.2.iter().any(|inode| !held.contains(inode)));
    if anything_listens && unheld {
        table = procs::scan(true);
    }
    // The process a pid file names is judged whatever it runs: a stale pid file says what it
    // names instead.
    if let Some(pid) = cfg.global.pid_file.as_deref().and_then(pid_in_file)
        && !table.iter().any(|p| p.pid() == pid)
        && let procs::Lookup::Found(p) = procs::lookup(pid)
    {
        table.push(p);
        table.sort_by_key(|p| p.pid());
    }
    // Who runs a would-be master: a master is only ever retired in favour of one of the
    // same user (handover::interrupted), never of a program another user started.
    for p in table
        .iter_mut()
        .filter(|p| identity::master_claim(p, &cfg.path) == identity::Claim::Master)
    {
        procs::read_uid(p);
    }
    let mut snap = discover_in(cfg, &table, &listeners);
    for i in unreadable {
        if let Some(a) = snap.addresses.get_mut(i) {
            a.holders_known = false;
        }
    }
    snap
}

/// [`discover`] over a given process table and listening sockets (for tests).
pub fn discover_in(
    cfg: &FpmConfig,
    table: &[ProcInfo],
    listeners: &[(String, ListenAddr, Vec<u64>)],
) -> Snapshot {
    let config = cfg.path.as_path();
    let bin = cfg.binary.as_ref();
    let pid_file_path = cfg.global.pid_file.clone();
    let file_pid = pid_file_path.as_ref().map(|p| read_pid_file(p));

    let mut masters: Vec<&ProcInfo> = Vec::new();
    let mut lookalikes: Vec<Lookalike> = Vec::new();
    for p in table {
        match identity::judge_master(p, config, bin) {
            Verdict::Ours => masters.push(p),
            Verdict::Doubtful(doubt) => lookalikes.push(Lookalike {
                proc: p.clone(),
                looks: Looks::Master,
                doubt,
            }),
            Verdict::NotOurs => {}
        }
    }
    // A worker forked a moment ago bears its master's title until it has set up: a "master"
    // whose parent is a master of this config is such a fork (a master is started by a
    // launcher, init or a supervisor, never by another master), counted with the workers.
    let claimed: HashSet<i32> = masters.iter().map(|m| m.pid()).collect();
    let (masters, forks): (Vec<&ProcInfo>, Vec<&ProcInfo>) = masters
        .into_iter()
        .partition(|m| !claimed.contains(&m.ppid));
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
            Some(p)
                if lookalikes
                    .iter()
                    .any(|l| l.proc.id == p.id && !l.doubt.is_foreign()) =>
            {
                PidFile::Unverified(path.clone(), pid)
            }
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

    // The master: the one the pid file names, else the oldest proven master of this config.
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
    let lookalike_master_pids: HashSet<i32> = lookalikes.iter().map(|l| l.proc.pid()).collect();

    let all_inodes: HashSet<u64> = listeners.iter().flat_map(|l| l.2.iter().copied()).collect();
    let mut workers: Vec<Worker> = forks
        .iter()
        .map(|p| Worker {
            proc: (*p).clone(),
            pool: String::new(),
        })
        .collect();
    let mut orphans = Vec::new();
    for p in table {
        let verdict = identity::judge_pool_process(p, cfg);
        if verdict == Verdict::NotOurs {
            continue;
        }
        let pool = pool_of_title(&p.title).unwrap_or_default().to_string();
        if master_pids.contains(&p.ppid) {
            match verdict {
                Verdict::Ours => workers.push(Worker {
                    proc: p.clone(),
                    pool,
                }),
                Verdict::Doubtful(doubt) => lookalikes.push(Lookalike {
                    proc: p.clone(),
                    looks: Looks::Pool(pool),
                    doubt,
                }),
                Verdict::NotOurs => {}
            }
            continue;
        }
        // Workers of an unproven master are reported with it, or of another config's master
        // not at all.
        if lookalike_master_pids.contains(&p.ppid)
            || by_pid(p.ppid).is_some_and(|parent| identity::is_any_master_title(&parent.title))
        {
            continue;
        }
        // An orphan proves itself: it holds one of this config's listening sockets. Without
        // that, only a process in the group of the PID the pid file names is worth reporting
        // (the evidence is ambiguous); other pool processes of the same name are not ours.
        let holds_ours = p.sockets.iter().any(|i| all_inodes.contains(i));
        if !holds_ours && Some(p.pgrp) != pid_file.pid() {
            continue;
        }
        match verdict {
            Verdict::Ours if holds_ours => orphans.push(Worker {
                proc: p.clone(),
                pool,
            }),
            Verdict::Ours => lookalikes.push(Lookalike {
                proc: p.clone(),
                looks: Looks::Pool(pool),
                doubt: Doubt::NoSocketEvidence,
            }),
            Verdict::Doubtful(doubt) => lookalikes.push(Lookalike {
                proc: p.clone(),
                looks: Looks::Pool(pool),
                doubt,
            }),
            Verdict::NotOurs => {}
        }
    }

    let role_of = |p: &ProcInfo| -> Role {
        if masters.iter().any(|m| m.id == p.id) {
            Role::Master
        } else if workers.iter().any(|w| w.proc.id == p.id) {
            Role::Worker
        } else if orphans.iter().any(|w| w.proc.id == p.id) {
            Role::Orphan
        } else if is_supervisor_of(p, &masters, &orphans) {
            Role::Supervisor
        } else if lookalikes
            .iter()
            .any(|l| l.proc.id == p.id && !l.doubt.is_foreign())
        {
            Role::Unverified
        } else {
            Role::Foreign
        }
    };
    // A listening socket always has a holder: when none was seen and some processes' open
    // files could not be read, who holds it is unknown (never "free").
    let some_unreadable = table.iter().any(|p| p.restricted && !p.is_gone());
    for p in table.iter().filter(|p| p.restricted && !p.is_gone()) {
        tracing::debug!(pid = p.pid(), "open files could not be read");
    }
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
                .collect::<Vec<Holder>>();
            let holders_known = !some_unreadable
                || inodes
                    .iter()
                    .all(|i| holders.iter().any(|h| h.proc.sockets.contains(i)));
            Address {
                pool: pool.clone(),
                addr: addr.clone(),
                inodes: inodes.clone(),
                holders,
                holders_known,
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
        lookalikes,
    }
}

/// True when `p` claims to be this config's master or one of its pool processes (proven or
/// not: only [`identity`] decides that).
fn claims_to_be_ours(p: &ProcInfo, cfg: &FpmConfig) -> bool {
    identity::master_claim(p, &cfg.path) == identity::Claim::Master
        || identity::pool_of_title(&p.title).is_some_and(|n| cfg.pool_of_process(n).is_some())
}

/// A holder of this config's sockets running `fpmctl ... supervise`: the process that started
/// its master (or inherited its orphans), or fpmctl by its executable (a supervisor that took
/// the master over from one that died is not its parent, and holds its sockets all the same).
fn is_supervisor_of(p: &ProcInfo, masters: &[&ProcInfo], orphans: &[Worker]) -> bool {
    let parent_of_ours =
        masters.iter().any(|m| m.ppid == p.pid()) || orphans.iter().any(|o| o.proc.ppid == p.pid());
    runs_fpmctl_supervise(p) || (parent_of_ours && p.title.split(' ').any(|a| a == "supervise"))
}

/// fpmctl ([`procs::is_fpmctl_exe`]: named `fpmctl`, or this very program under another
/// name) with `supervise` among its arguments: how an fpmctl supervisor is told from other
/// processes.
pub fn runs_fpmctl_supervise(p: &ProcInfo) -> bool {
    p.exe
        .as_deref()
        .is_some_and(|e| procs::is_fpmctl_exe(e.as_os_str().as_encoded_bytes()))
        && p.title.split(' ').any(|a| a == "supervise")
}

/// The PID a pid file holds, if it holds one (read as discovery reads it: bounded, never
/// blocking on a FIFO).
pub fn pid_in_file(path: &Path) -> Option<i32> {
    read_pid_file(path).ok()
}

/// The master `cfg`'s pid file names, when that process is proven to be it: the one-process
/// look after a start, where the whole table is not needed.
pub fn master_by_pid_file(cfg: &FpmConfig) -> Option<ProcInfo> {
    let pid = pid_in_file(cfg.global.pid_file.as_deref()?)?;
    procs::read(pid).filter(|p| is_master_of(p, cfg))
}

/// A PID from a pid file's text, as FPM writes it. Pure.
pub fn parse_pid(text: &str) -> Option<i32> {
    text.trim().parse::<i32>().ok().filter(|&pid| pid > 0)
}

enum PidFileRead {
    Missing,
    Bad(String),
}

fn read_pid_file(path: &Path) -> Result<i32, PidFileRead> {
    match read_head(path) {
        Ok(text) => match parse_pid(&text) {
            Some(pid) => Ok(pid),
            None => Err(PidFileRead::Bad(format!(
                "{} does not hold a PID: {:?}",
                path.display(),
                text.trim().chars().take(40).collect::<String>()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PidFileRead::Missing),
        Err(e) => Err(PidFileRead::Bad(format!("{}: {e}", path.display()))),
    }
}

/// The first bytes of a pid file: enough for any PID and then some. Opened non-blocking so a
/// FIFO planted in its place fails instead of hanging, and read bounded so a device or a
/// huge file is not read without end.
fn read_head(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut bytes = Vec::new();
    file.take(256).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pid_files_as_fpm_writes_them() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid(" 1234 "), Some(1234));
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("-1"), None);
        assert_eq!(parse_pid("12ab"), None);
        assert_eq!(parse_pid(""), None);
    }

    #[test]
    fn a_pid_file_that_is_a_fifo_or_a_device_is_bad_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fpm.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // With no writer, a non-blocking read of a FIFO sees end of file: no PID in it.
        assert!(matches!(read_pid_file(&fifo), Err(PidFileRead::Bad(_))));
        assert!(matches!(
            read_pid_file(Path::new("/dev/zero")),
            Err(PidFileRead::Bad(_))
        ));
        let good = dir.path().join("good.pid");
        std::fs::write(&good, "1234\n").unwrap();
        assert!(matches!(read_pid_file(&good), Ok(1234)));
    }

    fn config() -> (tempfile::TempDir, FpmConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php-fpm.conf");
        let text = format!(
            "[global]\npid = {d}/fpm.pid\n[www]\nuser = nobody\nlisten = 127.0.0.1:9999\npm = static\npm.max_children = 2\n",
            d = dir.path().display()
        );
        std::fs::write(&path, text).unwrap();
        let mut cfg = crate::config::load(&path).unwrap();
        cfg.binary = Some(crate::identity::FpmBinary {
            path: PathBuf::from(FPM),
            id: FPM_ID,
        });
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
            exe_id: Some(if exe == FPM {
                FPM_ID
            } else {
                crate::procs::FileId {
                    dev: 1,
                    ino: pid as u64,
                }
            }),
            sockets: sockets.to_vec(),
            ..ProcInfo::default()
        }
    }

    const FPM: &str = "/usr/sbin/php-fpm8.2";
    const FPM_ID: crate::procs::FileId = crate::procs::FileId { dev: 1, ino: 42 };

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

    /// Seen the moment after a fork, a worker still bears its master's title: it is not a
    /// second master (which would turn a restart cold), it is one of the master's workers.
    #[test]
    fn a_worker_forked_a_moment_ago_is_not_a_second_master() {
        let (_d, cfg) = config();
        std::fs::write(cfg.global.pid_file.as_ref().unwrap(), "100\n").unwrap();
        let master = format!("php-fpm: master process ({})", cfg.path.display());
        let table = vec![
            proc(100, 1, 100, &master, FPM, &[7]),
            proc(101, 100, 100, "php-fpm: pool www", FPM, &[7]),
            proc(102, 100, 100, &master, FPM, &[7]),
        ];
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let snap = discover_in(&cfg, &table, &[("www".into(), addr, vec![7])]);
        assert_eq!(snap.master.as_ref().map(ProcInfo::pid), Some(100));
        assert!(snap.other_masters.is_empty(), "{:?}", snap.other_masters);
        assert!(snap.workers.iter().any(|w| w.proc.pid() == 102));
        assert_eq!(snap.all_processes().len(), 3);
    }

    #[test]
    fn orphans_are_found_by_the_sockets_they_hold_and_others_are_foreign() {
        let (_d, cfg) = config();
        std::fs::write(cfg.global.pid_file.as_ref().unwrap(), "100\n").unwrap();
        let table = vec![
            // The master 100 is dead; 101 and 102 hold the socket.
            proc(101, 1, 100, "php-fpm: pool www", FPM, &[7]),
            proc(102, 1, 100, "php-fpm: pool www", FPM, &[7]),
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
        assert_eq!(
            roles,
            vec![
                (101, Role::Orphan),
                (102, Role::Orphan),
                (300, Role::Foreign)
            ]
        );
    }

    #[test]
    fn a_stale_pid_file_naming_another_configs_dead_master_proves_nothing() {
        let (_d, cfg) = config();
        // 500 was another config's master; its orphans share pool names with ours and sit
        // in its process group, but hold only that config's socket (8).
        std::fs::write(cfg.global.pid_file.as_ref().unwrap(), "500\n").unwrap();
        let table = vec![
            proc(501, 1, 500, "php-fpm: pool www", FPM, &[8]),
            proc(502, 1, 500, "php-fpm: pool www", FPM, &[]),
        ];
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let snap = discover_in(&cfg, &table, &[("www".into(), addr, vec![7])]);
        assert!(snap.orphans.is_empty());
        assert!(snap.is_empty());
        assert_eq!(snap.state(), State::StalePidFile);
        let doubts: Vec<(i32, &Doubt)> = snap
            .lookalikes
            .iter()
            .map(|l| (l.proc.pid(), &l.doubt))
            .collect();
        assert_eq!(
            doubts,
            vec![
                (501, &Doubt::NoSocketEvidence),
                (502, &Doubt::NoSocketEvidence)
            ]
        );
    }

    #[test]
    fn an_impostor_master_is_foreign_and_a_replaced_binary_is_unverified() {
        let (_d, cfg) = config();
        let master = format!("php-fpm: master process ({})", cfg.path.display());
        let table = vec![proc(600, 1, 600, &master, "/tmp/php-fpm-evil", &[7])];
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let listeners = [("www".to_string(), addr, vec![7])];
        let snap = discover_in(&cfg, &table, &listeners);
        assert!(snap.master.is_none());
        assert_eq!(snap.state(), State::Stopped);
        assert_eq!(snap.addresses[0].holders[0].role, Role::Foreign);
        assert_eq!(snap.addresses[0].foreign().count(), 1);

        let mut old = proc(700, 1, 700, &master, FPM, &[7]);
        old.exe_id = Some(crate::procs::FileId { dev: 1, ino: 41 });
        old.exe_deleted = true;
        let snap = discover_in(&cfg, &[old], &listeners);
        assert!(snap.master.is_none());
        assert_eq!(snap.state(), State::Unverified);
        assert_eq!(snap.addresses[0].holders[0].role, Role::Unverified);
        assert!(snap.is_empty(), "never signalled");
    }

    #[test]
    fn an_address_whose_holder_is_unknown_is_refused_not_taken_as_free() {
        let (_d, cfg) = config();
        let mut hidden = proc(800, 1, 800, "php-fpm: pool www", FPM, &[]);
        hidden.restricted = true;
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let mut snap = discover_in(&cfg, &[hidden], &[("www".into(), addr, vec![7])]);
        assert!(!snap.addresses[0].holders_known);
        let err = refuse_foreign_holders(&snap).unwrap_err().to_string();
        assert!(
            err.contains("cannot tell who holds 127.0.0.1:9999"),
            "{err}"
        );
        // A complete view of a free address is free.
        snap.addresses[0].holders_known = true;
        assert!(refuse_foreign_holders(&snap).is_ok());
    }

    #[test]
    fn other_users_processes_make_the_view_limited() {
        let (_d, cfg) = config();
        let master = format!("php-fpm: master process ({})", cfg.path.display());
        let mut hidden = proc(800, 1, 800, &master, FPM, &[]);
        hidden.exe = None;
        hidden.exe_id = None;
        hidden.restricted = true;
        let addr = ListenAddr::parse("127.0.0.1:9999").unwrap();
        let snap = discover_in(&cfg, &[hidden], &[("www".into(), addr, vec![7])]);
        assert_eq!(snap.state(), State::Unverified);
        assert!(snap.limited_view());
        assert!(!snap.addresses[0].holders_known);
        assert_eq!(snap.lookalikes[0].doubt, Doubt::CannotInspect);
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
}
