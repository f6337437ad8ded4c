//! Waiting for FPM's SIGUSR2 re-exec by events, then proving the new image ready.
//!
//! On SIGUSR2 the master SIGQUITs its workers, waits until all of them are gone (escalating
//! after `process_control_timeout`), and re-executes itself under the same PID. The new image
//! loads the config, binds what it does not inherit, writes the pid file, and forks its
//! workers on the inherited listening sockets. A daemonizing master forks once more in the new
//! image: the new master is the child, and the original PID exits once the child has written
//! the pid file and reported success through a pipe, before it forks its workers (or exits
//! after the child reported failure). So the master's pidfd firing means "it died" only for a
//! master in the foreground; for a daemonized one it is also the normal end of its re-exec.
//!
//! [`Watch::arm`] runs before the signal is sent: a pidfd on the master and on each old worker
//! (an unexpected pidfd error means "maybe alive", watched through `/proc`), and
//! [`Watch::pin_late_workers`] pins, right before the signal, the workers forked since (the
//! old image's replacements of workers that exited on their own). [`Watch::wait`]
//! then sleeps in one `poll(2)` on all of them and the deadline, and asks [`decide`] (pure)
//! what the events seen so far prove:
//! - the master gone while old workers remain: FPM died;
//! - every old worker gone: the old image is drained, and the proof below starts.
//!
//! The proof is one blocking FastCGI ping per pool: it waits in the listening socket's backlog
//! until a worker accepts it, and none of the old ones is left, so the answer comes from the
//! new image (which wrote its pid file before it forked that worker). The pid file then names
//! the new master (`pidfile+ping`); without one, the master is found through the original
//! PID or its adopters (`drain+ping`). Its children, read from `/proc/PID/task/*/children`
//! rather than from a pass over the whole process table, are counted against each pool's
//! expected workers. A daemonized original PID must have exited too ([`handed_off`]): until
//! then its new master is its child, and discovery would take the original for the master.
//! Only a failed proof (a ping refused, a worker still being forked, the original not exited
//! yet) is tried again, after waiting at most [`RETRY`] on the master's pidfd (a daemonized
//! original exits once its new master has reported success to it); the normal path never
//! sleeps.
//!
//! With no old worker to wait for (`pm = ondemand` with none running), the drain proves
//! nothing: a ping sent at once could reach the old image before it acted on the signal, and
//! an ondemand master still spawns a worker for it then. Only then is the re-exec itself
//! watched: the master's PID, start time and binary stay the same, but every new image gets
//! 16 fresh random bytes from the kernel ([`procs::exec_marker`]), read before the signal and
//! looked at again every [`RETRY`] until they change. This holds with or without a pid file,
//! in the foreground or daemonized. Where they cannot be read (fpmctl not allowed to read
//! the master's memory), the pid file is watched with inotify instead (`IN_CLOSE_WRITE`,
//! `IN_MOVED_TO` for its name) and its rewrite by the new image starts the proof; without
//! either, the pings go ahead. Neither is used when old workers exist: closing an inotify
//! instance waits for an SRCU grace period in the kernel (13-18 ms measured here), more than
//! half of a whole raw reload.

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
use std::path::PathBuf;
use std::time::Duration;
use tracing::debug;

/// The longest wait before a refused ping is tried again (the master's exit ends it sooner).
pub const RETRY: Duration = Duration::from_millis(5);

/// The longest wait before the new master's workers are counted again when every pool
/// answered but a worker was still being forked (a daemonized original PID exiting ends it
/// sooner). A look at one master's children is cheap.
pub const COUNT_RETRY: Duration = Duration::from_millis(1);

/// How the re-exec and the readiness of the new image were proven (`ready_by` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    /// Every old worker gone, one ping per pool (answered only by a worker of the new
    /// image), then the master the rewritten pid file names and its workers counted.
    PidFile,
    /// The same without a pid file naming a verified master: the master is found through the
    /// original PID or its adopters.
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
    /// With no old worker to prove the re-exec: the pid file is watched and its rewrite by
    /// the new image not seen yet.
    pub rewrite_pending: bool,
    /// With no old worker to prove the re-exec: the master's exec marker is watched and has
    /// not changed yet.
    pub exec_pending: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep waiting; what is missing.
    Wait(String),
    /// FPM died during the reload.
    Died(String),
    /// The old image is drained: prove the new one ready.
    Prove,
}

/// Warns when `cfg`'s reload will kill the requests in flight. FPM's default grace period is
/// none: SIGUSR2 then ends every request at once (measured under load with Debian's config: a
/// few of every few hundred failed; with `process_control_timeout = 10s`, none). The reload
/// goes ahead, as the distribution's own ExecReload would.
pub fn warn_if_requests_die(cfg: &FpmConfig) {
    if cfg.global.process_control_timeout.is_zero() {
        tracing::warn!(
            config = %cfg.path.display(),
            "process_control_timeout = 0: this reload kills the requests in flight; set it in [global] (e.g. 10s) for a reload that drops none"
        );
    }
}

/// The workers of `master` in `snap`: what its re-exec replaces. Workers of other masters of
/// the config (one an interrupted hand-over left beside it) outlive a good re-exec, and would
/// read as FPM dying if they counted.
pub fn old_workers(snap: &crate::discovery::Snapshot, master: &ProcInfo) -> Vec<ProcId> {
    snap.workers
        .iter()
        .filter(|w| w.proc.ppid == master.pid())
        .map(|w| w.proc.id)
        .collect()
}

/// Decides from the events seen what they prove. Pure.
pub fn decide(master: i32, s: Seen) -> Next {
    // The master waits for all of its old workers before it re-executes: gone before them,
    // it was killed.
    if s.master_exited && s.old_left > 0 {
        return Next::Died(format!(
            "master {master} exited during the reload and no new master appeared"
        ));
    }
    if s.old_left > 0 {
        return Next::Wait(format!("{} old worker(s) still finishing", s.old_left));
    }
    if s.rewrite_pending {
        // A daemonized original PID exits only after its new master wrote the pid file
        // (seen first: the watch is read after the exit); gone without it, FPM died.
        if s.master_exited {
            return Next::Died(format!(
                "master {master} exited during the reload and no new master wrote the pid file"
            ));
        }
        return Next::Wait("no new master yet (re-executing)".into());
    }
    // Gone with its marker unchanged, the original PID tells nothing more: a daemonized one
    // may have re-executed and exited between two looks. The pings and one look decide.
    if s.exec_pending && !s.master_exited {
        return Next::Wait("no new image yet (re-executing)".into());
    }
    // Whether the original PID is gone or not, the pings and one look decide: a daemonized
    // original exits as the normal end of its re-exec.
    Next::Prove
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

/// Whether the reload is over once the new image answered with all its workers. A
/// daemonized original PID (`original`) forked the master now serving (`serving`) in the new
/// image, and exits only once that master has reported success to it: until then the
/// process table shows the serving master as the child of a process whose command line
/// claims the config, which discovery takes for a fork of that one (and the pid file for
/// stale), so a command run right after the reload would take the exiting original for the
/// master. `Err` says what is still awaited. Pure.
pub fn handed_off(
    original: i32,
    serving: i32,
    original_exited: bool,
) -> std::result::Result<(), String> {
    if serving == original || original_exited {
        Ok(())
    } else {
        Err(format!(
            "master {original} has not exited yet after forking master {serving}"
        ))
    }
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

/// An inotify watch on the pid file's directory, for its rewrite by the new image.
struct PidFileWatch {
    inotify: Inotify,
    name: OsString,
}

impl PidFileWatch {
    /// `None` when it cannot be watched (then the pings go ahead, as without a pid file).
    fn open(path: &std::path::Path) -> Option<PidFileWatch> {
        let name = path.file_name()?.to_os_string();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
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
            Ok(inotify) => Some(PidFileWatch { inotify, name }),
            Err(e) => {
                debug!(path = %path.display(), error = %e, "cannot watch the pid file");
                None
            }
        }
    }

    /// Reads the queued events; true when one was for the pid file.
    fn written(&self) -> bool {
        let mut hit = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            hit |= events.iter().any(|e| e.name.as_ref() == Some(&self.name));
        }
        hit
    }
}

/// What `path` names now: a verified master of `cfg`, nothing of the kind, or a process
/// whose `/proc` entry cannot be read (maybe the master: never taken for "none").
fn named_in(path: &std::path::Path, cfg: &FpmConfig) -> Named {
    let Some(pid) = discovery::pid_in_file(path) else {
        return Named::Nothing;
    };
    match procs::lookup(pid) {
        Lookup::Found(p) if !p.is_gone() && discovery::is_master_of(&p, cfg) => Named::Master(p),
        Lookup::Unreadable(why) => Named::Unreadable(why),
        _ => Named::Nothing,
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
    /// The pid file the new image writes.
    pid_file: Option<PathBuf>,
    /// Its watch, only when no old worker can prove the re-exec and the exec marker cannot
    /// be read.
    rewrite: Option<PidFileWatch>,
    /// The master's exec marker before the signal, only when no old worker can prove the
    /// re-exec.
    exec_before: Option<[u8; 16]>,
    seen: Seen,
}

enum Attempt {
    Ready(Reloaded),
    /// Why not yet, and how long to wait at most before the next attempt.
    Retry(String, Duration),
    Died(String),
}

impl Watch {
    /// Pins the master and its old workers. Call it before sending SIGUSR2.
    pub fn arm(cfg: &FpmConfig, master: &ProcInfo, old_workers: &[ProcId]) -> Watch {
        let pinned_master = Pinned::open(master.id);
        let old: Vec<Pinned> = old_workers
            .iter()
            .filter_map(|&w| Pinned::open(w))
            .collect();
        let mut watch = Watch {
            seen: Seen {
                old_left: old.len(),
                master_exited: pinned_master.is_none(),
                ..Seen::default()
            },
            master: pinned_master,
            master_pid: master.pid(),
            master_ppid: master.ppid,
            old,
            old_ids: old_workers.to_vec(),
            pid_file: cfg.global.pid_file.clone(),
            rewrite: None,
            exec_before: None,
        };
        watch.watch_the_re_exec();
        watch
    }

    /// With no old worker left to prove the re-exec: its marker, or else the pid file's
    /// rewrite, is what the proof waits for. Armed once, before the signal.
    fn watch_the_re_exec(&mut self) {
        if !self.old.is_empty() || self.exec_before.is_some() || self.rewrite.is_some() {
            return;
        }
        self.exec_before = procs::exec_marker(self.master_pid);
        if self.exec_before.is_none()
            && let Some(path) = &self.pid_file
        {
            self.rewrite = PidFileWatch::open(path);
        }
        self.seen.exec_pending = self.exec_before.is_some();
        self.seen.rewrite_pending = self.rewrite.is_some();
    }

    /// Pins the workers the master forked since [`Watch::arm`]. Call it right before the
    /// signal: a worker that exited on its own in between (`pm.max_requests`, a crash, an idle
    /// ondemand worker retired) was replaced by the old image, and an unpinned replacement
    /// could answer the ping and be counted as the new image's. Its children listed before
    /// the signal are all the old image's. With no old worker left to prove the re-exec, the
    /// re-exec is watched, as when none was found at [`Watch::arm`].
    pub fn pin_late_workers(&mut self, cfg: &FpmConfig) {
        if self.seen.master_exited {
            return;
        }
        for child in procs::children_or_scan(self.master_pid) {
            if discovery::is_pool_process_of(&child, cfg)
                && !self.old_ids.contains(&child.id)
                && let Some(p) = Pinned::open(child.id)
            {
                self.old_ids.push(child.id);
                self.old.push(p);
            }
        }
        self.old.retain(|p| !p.is_gone());
        self.seen.old_left = self.old.len();
        self.watch_the_re_exec();
    }

    /// Whether the master pinned at [`Watch::arm`] has exited (its pidfd fired, or `/proc`
    /// proves it gone). For a master in the foreground that is FPM dying; a daemonized one
    /// also exits at the end of a good re-exec, so [`Watch::wait`] has the last word.
    pub fn master_exited(&mut self) -> bool {
        self.refresh();
        self.seen.master_exited
    }

    /// Waits for the re-exec and proves the new image ready, or says why not by `deadline`.
    pub fn wait(
        mut self,
        cfg: &FpmConfig,
        deadline: Deadline,
    ) -> std::result::Result<Reloaded, Failure> {
        loop {
            self.refresh();
            match decide(self.master_pid, self.seen) {
                Next::Wait(why) => {
                    if deadline.expired() {
                        return Err(Failure::NotReady(why));
                    }
                    debug!(reason = %why, "reload not confirmed yet");
                    self.sleep_until(deadline);
                }
                Next::Died(why) => return Err(Failure::Died(why)),
                Next::Prove => return self.prove(cfg, deadline),
            }
        }
    }

    /// Takes in what happened since the last look.
    fn refresh(&mut self) {
        // The master before its workers: a master seen gone had no old worker left at the end
        // of a good re-exec, so a worker seen alive after it means FPM died. The other order
        // could see a worker alive, then (fpmctl held up in between) a daemonized master at the
        // normal end of its re-exec, and take a good reload for a dead FPM.
        if !self.seen.master_exited {
            self.seen.master_exited = self.master.as_ref().is_none_or(Pinned::is_gone);
        }
        self.old.retain(|p| !p.is_gone());
        self.seen.old_left = self.old.len();
        // The pid file after the master: a daemonized master's original PID exits only after
        // the new master wrote the pid file, so that write is never missed.
        if let Some(watch) = &self.rewrite
            && watch.written()
        {
            self.seen.rewrite_pending = false;
        }
        // Changed: a new image runs. Unreadable: the master is in the middle of its exec (its
        // old image is gone already), gone (decided above), or cannot be read any more; the
        // pings go ahead.
        if self.seen.exec_pending && procs::exec_marker(self.master_pid) != self.exec_before {
            self.seen.exec_pending = false;
        }
    }

    /// One `poll(2)` on every pinned process still to exit, until `deadline` (at most
    /// [`RETRY`] when a process has no pidfd and only `/proc` can tell).
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
        if let Some(watch) = self.rewrite.as_ref().filter(|_| self.seen.rewrite_pending) {
            fds.push(PollFd::new(watch.inotify.as_fd(), PollFlags::POLLIN));
        }
        // The marker has no descriptor to wait on: looked at again every RETRY.
        let until = if blind || self.seen.exec_pending {
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

    /// Proves the new image ready: one ping per pool, then its master and its workers. A
    /// failed proof is tried again after the master's exit or [`RETRY`], until `deadline`.
    fn prove(
        mut self,
        cfg: &FpmConfig,
        deadline: Deadline,
    ) -> std::result::Result<Reloaded, Failure> {
        let mut known = None;
        // A pool's answer stands once given (a worker of the new image gave it): a retry
        // pings only the pools that have not answered yet.
        let mut answers = vec![None; cfg.pools.len()];
        loop {
            match self.attempt(cfg, deadline, &mut known, &mut answers) {
                Attempt::Ready(r) => return Ok(r),
                Attempt::Died(why) => return Err(Failure::Died(why)),
                Attempt::Retry(why, wait) => {
                    if deadline.expired() {
                        return Err(Failure::NotReady(why));
                    }
                    debug!(reason = %why, "readiness not proven yet");
                    self.refresh();
                    self.sleep_until(deadline.slice(wait));
                }
            }
        }
    }

    /// The new master, once found: named by the pid file, else through the original PID.
    fn find_master(&self, cfg: &FpmConfig) -> std::result::Result<(ProcInfo, ReadyBy), Attempt> {
        if let Some(path) = &self.pid_file {
            match named_in(path, cfg) {
                Named::Master(m) => return Ok((m, ReadyBy::PidFile)),
                // Fail closed: not "no master" (which could end in "FPM died" and a second
                // FPM started beside a live one); look again shortly.
                Named::Unreadable(why) => return Err(Attempt::Retry(why, RETRY)),
                Named::Nothing => {
                    debug!(path = %path.display(), "pid file names no verified master")
                }
            }
        }
        self.master_after_drain(cfg).map(|m| (m, ReadyBy::Drain))
    }

    fn attempt(
        &self,
        cfg: &FpmConfig,
        deadline: Deadline,
        known: &mut Option<(ProcInfo, ReadyBy)>,
        answers: &mut [Option<String>],
    ) -> Attempt {
        for (pool, answer) in cfg.pools.iter().zip(answers.iter_mut()) {
            if answer.is_some() {
                continue;
            }
            // Blocks in the backlog until a worker of the new image accepts.
            let timeout = deadline.remaining().max(Duration::from_millis(100));
            match ready::check_pool(pool, timeout) {
                Ok(a) => *answer = Some(a),
                Err(e) => {
                    if let Some((m, _)) = known.as_ref().filter(|(m, _)| procs::is_gone(m.id)) {
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
                    return Attempt::Retry(format!("pool {}: {e}", pool.name), RETRY);
                }
            }
        }
        // Once found, the new master is kept: a retry only waits for its workers.
        let (master, ready_by) = match known {
            Some(k) => k.clone(),
            None => match self.find_master(cfg) {
                Ok(k) => known.insert(k).clone(),
                Err(a) => return a,
            },
        };
        let children = procs::children_or_scan(master.pid());
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
            Err(_) if procs::is_gone(master.id) => {
                return Attempt::Died(format!("master {} exited after its re-exec", master.pid()));
            }
            Err(why) => return Attempt::Retry(why, COUNT_RETRY),
        };
        // Waited for on the original's pidfd (a retry's sleep ends at its exit).
        let original_exited = self.master.as_ref().is_none_or(Pinned::is_gone);
        if let Err(why) = handed_off(self.master_pid, master.pid(), original_exited) {
            return Attempt::Retry(why, RETRY);
        }
        let pools = cfg
            .pools
            .iter()
            .zip(counts)
            .zip(answers.iter())
            .map(|((pool, workers), answer)| PoolReady {
                pool: pool.name.clone(),
                expected_workers: pool.expected_workers(),
                workers,
                answer: Ok(answer.clone().unwrap_or_default()),
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
            Some(Lookup::Unreadable(why)) => return Err(Attempt::Retry(why, RETRY)),
            Some(Lookup::Gone) | None => None,
        };
        if let Some(p) = alive {
            let children = procs::children_or_scan(p.pid());
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
            return Err(Attempt::Retry(
                format!("no new workers of master {} yet", p.pid()),
                COUNT_RETRY,
            ));
        }
        // The new master was the original PID's child: on its exit it went to the nearest
        // subreaper, most often the original's parent or PID 1. Asked there first; the whole
        // process table only when neither has it.
        let adopters = [self.master_ppid, 1];
        for parent in adopters.into_iter().filter(|&p| p > 0) {
            if let Some(m) = procs::children_or_scan(parent)
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

    fn seen(old_left: usize, exited: bool) -> Seen {
        Seen {
            old_left,
            master_exited: exited,
            ..Seen::default()
        }
    }

    fn without_workers(exited: bool, rewrite_pending: bool) -> Seen {
        Seen {
            old_left: 0,
            master_exited: exited,
            rewrite_pending,
            exec_pending: false,
        }
    }

    #[test]
    fn without_old_workers_a_changed_exec_marker_proves_the_re_exec() {
        let pending = Seen {
            exec_pending: true,
            ..Seen::default()
        };
        assert_eq!(
            decide(7, pending),
            Next::Wait("no new image yet (re-executing)".into())
        );
        assert_eq!(decide(7, Seen::default()), Next::Prove);
        // Gone before its marker was seen to change: a daemonized original may have
        // re-executed and exited between two looks; the pings and one look decide.
        let gone = Seen {
            master_exited: true,
            ..pending
        };
        assert_eq!(decide(7, gone), Next::Prove);
    }

    #[test]
    fn without_old_workers_the_pid_file_rewrite_proves_the_re_exec() {
        assert_eq!(
            decide(7, without_workers(false, true)),
            Next::Wait("no new master yet (re-executing)".into())
        );
        assert_eq!(decide(7, without_workers(false, false)), Next::Prove);
        // A daemonized original exits once its new master wrote the pid file.
        assert_eq!(decide(7, without_workers(true, false)), Next::Prove);
        // Gone without a rewrite: the new image failed.
        assert!(matches!(
            decide(7, without_workers(true, true)),
            Next::Died(why) if why.contains("master 7 exited")
        ));
    }

    /// Regression: a daemonized reload was reported done while its original PID, which
    /// forked the new master, had not exited: `status` run then named that PID as the master.
    #[test]
    fn a_daemonized_reload_is_over_only_once_the_original_pid_exited() {
        assert!(
            matches!(handed_off(7, 9, false), Err(why) if why.contains("master 7 has not exited"))
        );
        assert_eq!(handed_off(7, 9, true), Ok(()));
        // In the foreground the re-exec keeps the PID: nothing else to wait for.
        assert_eq!(handed_off(7, 7, false), Ok(()));
    }

    #[test]
    fn waits_for_every_old_worker_first() {
        assert_eq!(
            decide(7, seen(2, false)),
            Next::Wait("2 old worker(s) still finishing".into())
        );
    }

    #[test]
    fn a_master_gone_before_its_old_workers_died() {
        assert!(matches!(
            decide(7, seen(1, true)),
            Next::Died(why) if why.contains("master 7 exited")
        ));
    }

    #[test]
    fn the_drain_leads_to_the_pings() {
        // A master in the foreground keeps its PID.
        assert_eq!(decide(7, seen(0, false)), Next::Prove);
        // A daemonized original PID exits as the normal end of its re-exec: the pings and
        // one look decide whether a new master serves.
        assert_eq!(decide(7, seen(0, true)), Next::Prove);
    }

    #[test]
    fn only_the_masters_own_workers_are_old_workers() {
        use crate::discovery::{PidFile, Snapshot, Worker};
        let proc = |pid: i32, ppid: i32| ProcInfo {
            id: ProcId { pid, start_time: 1 },
            ppid,
            ..ProcInfo::default()
        };
        let worker = |pid, ppid| Worker {
            proc: proc(pid, ppid),
            pool: "www".into(),
        };
        let master = proc(10, 1);
        let snap = Snapshot {
            pid_file: PidFile::NotConfigured,
            master: Some(master.clone()),
            other_masters: vec![proc(20, 1)],
            // 21 is the other master's: it outlives this master's re-exec.
            workers: vec![worker(11, 10), worker(21, 20), worker(12, 10)],
            orphans: Vec::new(),
            addresses: Vec::new(),
            lookalikes: Vec::new(),
        };
        let pids: Vec<i32> = old_workers(&snap, &master).iter().map(|w| w.pid).collect();
        assert_eq!(pids, vec![11, 12]);
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
