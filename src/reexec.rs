//! Waiting for FPM's SIGUSR2 re-exec by events, then proving the new image ready.
//!
//! On SIGUSR2 the master SIGQUITs its workers, waits until all of them are gone (escalating
//! after `process_control_timeout`), and re-executes itself under the same PID. The new image
//! loads the config, binds what it does not inherit, writes the pid file, and forks its
//! workers on the inherited listening sockets. A daemonizing master forks once more in the new
//! image: the new master is the child, and the original PID exits once the child has written
//! the pid file and reported success through a pipe (or exits after the child reported
//! failure). So the master's pidfd firing means "it died" only for a master in the
//! foreground; for a daemonized one it is also the normal end of its re-exec.
//!
//! [`Watch::arm`] runs before the signal is sent: a pidfd on the master and on each old worker
//! (an unexpected pidfd error means "maybe alive", watched through `/proc`), and an inotify
//! watch on the pid file's directory (`IN_CLOSE_WRITE`, `IN_MOVED_TO` for its name).
//! [`Watch::wait`] then sleeps in one `poll(2)` on all of them and the deadline, and asks
//! [`decide`] (pure) what the events seen so far prove:
//! - every old worker gone and the pid file rewritten naming a verified master: the re-exec
//!   happened (`pidfile+ping`);
//! - no pid file to watch: every old worker gone is enough (`drain+ping`), as the pings below
//!   wait until a worker of the new image accepts;
//! - the master gone while old workers remain, or gone without a rewritten pid file: FPM died.
//!
//! Readiness is then proven with one blocking FastCGI ping per pool (it waits in the
//! listening socket's backlog until a new worker accepts it: none of the old ones is left)
//! and the new master's children counted against each pool's expected workers, read from
//! `/proc/PID/task/*/children` rather than from a pass over the whole process table. Only a
//! failed proof (a ping refused, a worker still being forked) is tried again, after waiting at
//! most [`RETRY`] on the master's pidfd and the pid file's watch; the normal path never sleeps.

use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery;
use crate::procs::{self, Lookup, ProcId, ProcInfo};
use crate::ready::{self, PoolReady};
use crate::signals;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::debug;

/// The longest wait before a failed readiness proof is tried again (the master's exit and a
/// pid file write end it sooner).
pub const RETRY: Duration = Duration::from_millis(5);

/// How the re-exec and the readiness of the new image were proven (`ready_by` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    /// The pid file rewritten by the new image, then one ping per pool and the worker count.
    PidFile,
    /// No pid file to watch: every old worker gone, then one ping per pool (answered only by
    /// a worker of the new image) and the worker count.
    Drain,
}

impl ReadyBy {
    /// The stable name used in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyBy::PidFile => "pidfile+ping",
            ReadyBy::Drain => "drain+ping",
        }
    }
}

/// A finished reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The master now serving (the same PID in the foreground; a new one when FPM
    /// daemonizes again after its re-exec).
    pub master: i32,
    /// Each pool's readiness.
    pub pools: Vec<PoolReady>,
    /// The new master's pool workers.
    pub workers: Vec<i32>,
    /// How it was proven.
    pub ready_by: ReadyBy,
}

/// Why a reload was not confirmed; the caller words the message and picks the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// FPM died during the reload: why, one line.
    Died(String),
    /// The deadline passed: what was still missing.
    NotReady(String),
}

/// What the events have shown so far: the input of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// Old workers not proven gone.
    pub old_left: usize,
    /// The master's pidfd fired (or `/proc` proves it gone).
    pub master_exited: bool,
    /// The pid file's directory is watched.
    pub pid_file_watched: bool,
    /// The pid file was written (closed after writing, or renamed into place) since the watch.
    pub pid_file_written: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep waiting; what is missing.
    Wait(String),
    /// FPM died during the reload.
    Died(String),
    /// Read the rewritten pid file and prove its master ready.
    ProveByPidFile,
    /// Prove readiness through the pools (no pid file to watch).
    ProveByDrain,
}

/// Decides from the events seen what they prove. Pure.
pub fn decide(master: i32, s: Seen) -> Next {
    let died = || {
        Next::Died(format!(
            "master {master} exited during the reload and no new master appeared"
        ))
    };
    // The master waits for all of its old workers before it re-executes: gone before them,
    // it was killed.
    if s.master_exited && s.old_left > 0 {
        return died();
    }
    if s.old_left > 0 {
        return Next::Wait(format!("{} old worker(s) still finishing", s.old_left));
    }
    if !s.pid_file_watched {
        return Next::ProveByDrain;
    }
    if s.pid_file_written {
        Next::ProveByPidFile
    } else if s.master_exited {
        // A daemonized master's original PID exits only after the new master wrote the pid
        // file (seen first: the watch is read after the exit), or after it failed.
        died()
    } else {
        Next::Wait("no new master yet (re-executing)".into())
    }
}

/// Counts each pool's workers among `titles` (the titles of the master's pool processes);
/// `Err` names the first pool short of its expected workers. Pure.
pub fn count_workers(
    pools: &[(&str, u32)],
    titles: &[&str],
) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for &(pool, expected) in pools {
        let n = titles
            .iter()
            .filter(|t| discovery::pool_of_title(t) == Some(pool))
            .count();
        if n < expected as usize {
            return Err(format!("pool {pool} has {n} of {expected} workers"));
        }
        out.push(n);
    }
    Ok(out)
}

/// A process pinned before the signal: its pidfd, or none when the kernel would not give one
/// (then `/proc` is asked, failing closed).
struct Pinned {
    id: ProcId,
    fd: Option<OwnedFd>,
}

impl Pinned {
    /// `None` when the process is proven gone already.
    fn open(id: ProcId) -> Option<Pinned> {
        let fd = match signals::pidfd_open(id.pid) {
            Err(Errno::ESRCH) => return None,
            Ok(fd) => fd,
            // An unexpected error: maybe alive, watched through /proc.
            Err(e) => {
                debug!(pid = id.pid, error = %e, "no pidfd: watched through /proc");
                None
            }
        };
        // The pidfd is taken after the identity was read: it may pin a process that reused the
        // PID. Checked once now; afterwards the pidfd cannot be redirected.
        match procs::lookup_same(id) {
            Lookup::Gone => None,
            Lookup::Found(_) | Lookup::Unreadable(_) => Some(Pinned { id, fd }),
        }
    }

    /// Proven gone: its pidfd is readable (it exited), or `/proc` proves it.
    fn is_gone(&self) -> bool {
        match &self.fd {
            Some(fd) => readable(fd.as_fd()),
            None => procs::is_gone(self.id),
        }
    }
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// The inotify watch on the pid file's directory.
struct PidFileWatch {
    inotify: Inotify,
    path: PathBuf,
    name: OsString,
}

impl PidFileWatch {
    fn open(path: &Path) -> Option<PidFileWatch> {
        let name = path.file_name()?.to_os_string();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let arm = || -> nix::Result<Inotify> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            inotify.add_watch(
                dir,
                AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO,
            )?;
            Ok(inotify)
        };
        match arm() {
            Ok(inotify) => Some(PidFileWatch {
                inotify,
                path: path.to_path_buf(),
                name,
            }),
            Err(e) => {
                debug!(path = %path.display(), error = %e, "cannot watch the pid file: readiness by drain");
                None
            }
        }
    }

    /// Reads the queued events; true when one was for the pid file.
    fn drain(&self) -> bool {
        let mut hit = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            hit |= events.iter().any(|e| e.name.as_ref() == Some(&self.name));
        }
        hit
    }

    /// What the pid file names: a verified master, nothing of the kind (yet), or a process
    /// whose `/proc` entry cannot be read (maybe the master: never taken for "none").
    fn master(&self, cfg: &FpmConfig) -> Named {
        let Some(pid) = discovery::pid_in_file(&self.path) else {
            return Named::Nothing;
        };
        match procs::lookup(pid) {
            Lookup::Found(p) if !p.is_gone() && discovery::is_master_of(&p, cfg) => {
                Named::Master(p)
            }
            Lookup::Unreadable(why) => Named::Unreadable(why),
            _ => Named::Nothing,
        }
    }
}

/// What a rewritten pid file names.
enum Named {
    Master(ProcInfo),
    Nothing,
    Unreadable(String),
}

/// Everything a reload waits on, armed before the signal is sent.
pub struct Watch {
    master: Option<Pinned>,
    master_pid: i32,
    /// The master's parent when the watch was armed.
    master_ppid: i32,
    old: Vec<Pinned>,
    old_ids: Vec<ProcId>,
    pid_file: Option<PidFileWatch>,
    seen: Seen,
}

enum Attempt {
    Ready(Reloaded),
    Retry(String),
    Died(String),
}

impl Watch {
    /// Pins the master and its old workers and watches `cfg`'s pid file (the one the new
    /// image will write). Call it before sending SIGUSR2.
    pub fn arm(cfg: &FpmConfig, master: &ProcInfo, old_workers: &[ProcId]) -> Watch {
        let pinned_master = Pinned::open(master.id);
        let old: Vec<Pinned> = old_workers
            .iter()
            .filter_map(|&w| Pinned::open(w))
            .collect();
        let pid_file = cfg.global.pid_file.as_deref().and_then(PidFileWatch::open);
        let seen = Seen {
            old_left: old.len(),
            master_exited: pinned_master.is_none(),
            pid_file_watched: pid_file.is_some(),
            pid_file_written: false,
        };
        Watch {
            master: pinned_master,
            master_pid: master.pid(),
            master_ppid: master.ppid,
            old,
            old_ids: old_workers.to_vec(),
            pid_file,
            seen,
        }
    }

    /// Waits for the re-exec and proves the new image ready, or says why not by `deadline`.
    pub fn wait(
        mut self,
        cfg: &FpmConfig,
        deadline: Deadline,
    ) -> std::result::Result<Reloaded, Failure> {
        loop {
            self.refresh();
            let ready_by = match decide(self.master_pid, self.seen) {
                Next::Wait(why) => {
                    if deadline.expired() {
                        return Err(Failure::NotReady(why));
                    }
                    debug!(reason = %why, "reload not confirmed yet");
                    self.sleep_until(deadline);
                    continue;
                }
                Next::Died(why) => return Err(Failure::Died(why)),
                Next::ProveByPidFile => ReadyBy::PidFile,
                Next::ProveByDrain => ReadyBy::Drain,
            };
            let known = match (&self.pid_file, ready_by) {
                (Some(watch), ReadyBy::PidFile) => match watch.master(cfg) {
                    Named::Master(m) => Some(m),
                    Named::Unreadable(why) => {
                        // Fail closed: not "no master" (which could end in "FPM died" and a
                        // second FPM started beside a live one); look again shortly.
                        if deadline.expired() {
                            return Err(Failure::NotReady(why));
                        }
                        debug!(reason = %why, "pid file names a process that cannot be read");
                        std::thread::sleep(deadline.remaining_capped(RETRY));
                        continue;
                    }
                    Named::Nothing => {
                        // Written, but not (yet) naming a verified master: wait for the next
                        // write or the master's exit.
                        debug!(path = %watch.path.display(), "pid file names no verified master");
                        self.seen.pid_file_written = false;
                        continue;
                    }
                },
                _ => None,
            };
            return self.prove(cfg, deadline, known, ready_by);
        }
    }

    /// Takes in what happened since the last look.
    fn refresh(&mut self) {
        self.old.retain(|p| !p.is_gone());
        self.seen.old_left = self.old.len();
        // The master first, the pid file after: a daemonized master's original PID exits only
        // after the new master wrote the pid file, so that write is never missed.
        if !self.seen.master_exited {
            self.seen.master_exited = self.master.as_ref().is_none_or(Pinned::is_gone);
        }
        if let Some(watch) = &self.pid_file {
            self.seen.pid_file_written |= watch.drain();
        }
    }

    /// One `poll(2)` on everything still to happen, until `deadline` (at most [`RETRY`] when
    /// a process has no pidfd and only `/proc` can tell).
    fn sleep_until(&self, deadline: Deadline) {
        let mut fds: Vec<PollFd> = Vec::new();
        let mut blind = false;
        let waiting: Vec<&Pinned> = self
            .old
            .iter()
            .chain(self.master.iter().filter(|_| !self.seen.master_exited))
            .collect();
        for p in waiting {
            match &p.fd {
                Some(fd) => fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
                None => blind = true,
            }
        }
        if let Some(watch) = &self.pid_file {
            fds.push(PollFd::new(watch.inotify.as_fd(), PollFlags::POLLIN));
        }
        let until = if blind {
            deadline.slice(RETRY)
        } else {
            deadline
        };
        // At least 1ms so an instant just short of the deadline does not spin; -1 for never.
        let ms = match until.poll_millis() {
            -1 => -1,
            ms => ms.max(1),
        };
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        // EINTR or an event: either way the caller looks again.
        let _ = poll(&mut fds, timeout);
    }

    /// Proves the new image ready: one ping per pool, then its workers counted. A failed
    /// proof is tried again after an event or [`RETRY`], until `deadline`.
    fn prove(
        mut self,
        cfg: &FpmConfig,
        deadline: Deadline,
        mut known: Option<ProcInfo>,
        ready_by: ReadyBy,
    ) -> std::result::Result<Reloaded, Failure> {
        loop {
            match self.attempt(cfg, deadline, &mut known, ready_by) {
                Attempt::Ready(r) => return Ok(r),
                Attempt::Died(why) => return Err(Failure::Died(why)),
                Attempt::Retry(why) => {
                    if deadline.expired() {
                        return Err(Failure::NotReady(why));
                    }
                    debug!(reason = %why, "readiness not proven yet");
                    self.refresh();
                    self.sleep_until(deadline.slice(RETRY));
                }
            }
        }
    }

    fn attempt(
        &self,
        cfg: &FpmConfig,
        deadline: Deadline,
        known: &mut Option<ProcInfo>,
        ready_by: ReadyBy,
    ) -> Attempt {
        let mut answers = Vec::new();
        for pool in &cfg.pools {
            // Blocks in the backlog until a worker of the new image accepts.
            let timeout = deadline.remaining().max(Duration::from_millis(100));
            match ready::check_pool(pool, timeout) {
                Ok(a) => answers.push(a),
                Err(e) => {
                    if let Some(m) = known.as_ref().filter(|m| procs::is_gone(m.id)) {
                        return Attempt::Died(format!(
                            "master {} exited after its re-exec",
                            m.pid()
                        ));
                    }
                    // Without a pid file: once the original PID is gone, a pool that does
                    // not answer may be a dead FPM. Died only when no master of the config
                    // is found at all (so `--recover` starts it), else look again.
                    if known.is_none()
                        && self.master.as_ref().is_none_or(Pinned::is_gone)
                        && let Err(Attempt::Died(why)) = self.master_after_drain(cfg)
                    {
                        return Attempt::Died(why);
                    }
                    return Attempt::Retry(format!("pool {}: {e}", pool.name));
                }
            }
        }
        // Once found, the new master is kept: a retry only waits for its workers.
        let master = match known {
            Some(m) => m.clone(),
            None => match self.master_after_drain(cfg) {
                Ok(m) => known.insert(m).clone(),
                Err(a) => return a,
            },
        };
        let Some(children) = procs::children(master.pid()) else {
            if procs::is_gone(master.id) {
                return Attempt::Died(format!("master {} exited after its re-exec", master.pid()));
            }
            return Attempt::Retry(format!(
                "cannot read the children of master {}",
                master.pid()
            ));
        };
        let workers: Vec<&ProcInfo> = children
            .iter()
            .filter(|p| discovery::is_pool_process_of(p, cfg))
            .collect();
        let titles: Vec<&str> = workers.iter().map(|p| p.title.as_str()).collect();
        let expected: Vec<(&str, u32)> = cfg
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.expected_workers()))
            .collect();
        let counts = match count_workers(&expected, &titles) {
            Ok(c) => c,
            Err(why) => return Attempt::Retry(why),
        };
        let pools = cfg
            .pools
            .iter()
            .zip(counts)
            .zip(answers)
            .map(|((pool, workers), answer)| PoolReady {
                pool: pool.name.clone(),
                expected_workers: pool.expected_workers(),
                workers,
                answer: Ok(answer),
            })
            .collect();
        Attempt::Ready(Reloaded {
            master: master.pid(),
            pools,
            workers: workers.iter().map(|p| p.pid()).collect(),
            ready_by,
        })
    }

    /// With no pid file: which master serves now that the pools answered. The same PID when
    /// FPM runs in the foreground (its children are new workers); its child when FPM
    /// daemonized again and the original PID still waits to exit; after that exit, the one
    /// master of this config a look at the process table finds.
    fn master_after_drain(&self, cfg: &FpmConfig) -> std::result::Result<ProcInfo, Attempt> {
        let old = self.master.as_ref().map(|p| p.id);
        let alive = match old.map(procs::lookup_same) {
            Some(Lookup::Found(p)) => Some(p),
            Some(Lookup::Unreadable(why)) => return Err(Attempt::Retry(why)),
            Some(Lookup::Gone) | None => None,
        };
        if let Some(p) = alive {
            let children = procs::children(p.pid()).unwrap_or_default();
            if children
                .iter()
                .any(|c| discovery::is_pool_process_of(c, cfg) && !self.old_ids.contains(&c.id))
            {
                return Ok(p);
            }
            if let Some(c) = children
                .into_iter()
                .find(|c| discovery::is_master_of(c, cfg))
            {
                return Ok(c);
            }
            return Err(Attempt::Retry(format!(
                "no new workers of master {} yet",
                p.pid()
            )));
        }
        // The new master was the original PID's child: on its exit it went to the nearest
        // subreaper, most often the original's parent or PID 1. Asked there first; the whole
        // process table only when neither has it.
        let adopters = [self.master_ppid, 1];
        for parent in adopters.into_iter().filter(|&p| p > 0) {
            if let Some(m) = procs::children(parent)
                .unwrap_or_default()
                .into_iter()
                .find(|c| discovery::is_master_of(c, cfg))
            {
                return Ok(m);
            }
        }
        discovery::discover(cfg).master.ok_or_else(|| {
            Attempt::Died(format!(
                "master {} exited during the reload and no new master appeared",
                self.master_pid
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(old_left: usize, exited: bool, watched: bool, written: bool) -> Seen {
        Seen {
            old_left,
            master_exited: exited,
            pid_file_watched: watched,
            pid_file_written: written,
        }
    }

    #[test]
    fn waits_for_every_old_worker_first() {
        for watched in [true, false] {
            for written in [true, false] {
                assert_eq!(
                    decide(7, seen(2, false, watched, written)),
                    Next::Wait("2 old worker(s) still finishing".into())
                );
            }
        }
    }

    #[test]
    fn a_master_gone_before_its_old_workers_died() {
        for watched in [true, false] {
            assert!(matches!(
                decide(7, seen(1, true, watched, false)),
                Next::Died(why) if why.contains("master 7 exited")
            ));
        }
    }

    #[test]
    fn with_a_pid_file_the_rewrite_proves_the_re_exec() {
        assert_eq!(
            decide(7, seen(0, false, true, false)),
            Next::Wait("no new master yet (re-executing)".into())
        );
        assert_eq!(decide(7, seen(0, false, true, true)), Next::ProveByPidFile);
        // A daemonized master's original PID exits once the new master wrote the pid file.
        assert_eq!(decide(7, seen(0, true, true, true)), Next::ProveByPidFile);
        // Exited with no new pid file: the new image failed.
        assert!(matches!(
            decide(7, seen(0, true, true, false)),
            Next::Died(_)
        ));
    }

    #[test]
    fn without_a_pid_file_the_drain_leads_to_the_pings() {
        assert_eq!(decide(7, seen(0, false, false, false)), Next::ProveByDrain);
        // The daemonized original PID may exit: the pings and one look decide.
        assert_eq!(decide(7, seen(0, true, false, false)), Next::ProveByDrain);
    }

    #[test]
    fn counts_workers_per_pool_by_title() {
        let titles = [
            "php-fpm: pool www",
            "php-fpm: pool www",
            "php-fpm: pool api",
            "php-fpm: pool www_status",
        ];
        assert_eq!(
            count_workers(&[("www", 2), ("api", 1), ("lazy", 0)], &titles),
            Ok(vec![2, 1, 0])
        );
        assert_eq!(
            count_workers(&[("www", 2), ("api", 2)], &titles),
            Err("pool api has 1 of 2 workers".into())
        );
    }

    #[test]
    fn ready_by_names_are_stable() {
        assert_eq!(ReadyBy::PidFile.as_str(), "pidfile+ping");
        assert_eq!(ReadyBy::Drain.as_str(), "drain+ping");
    }
}
