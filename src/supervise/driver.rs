//! The I/O half of the supervisor: it waits on file descriptors, turns what it sees into
//! [`machine::Event`]s and performs the [`machine::Action`]s the machine returns.
//!
//! One thread polls:
//! - a `signalfd` (every signal the supervisor handles is blocked and read from it, so a
//!   signal is an ordinary readable descriptor, also when we run as PID 1);
//! - the notify socket FPM reports to (`READY=1`, `STATUS=`; the kernel names the sender);
//! - the control socket and each open control connection (non-blocking, bounded);
//! - a pidfd per worker the machine waits for (a worker of a stopped master is not our
//!   child: its pidfd becomes readable when it exits);
//! - a pipe from the check thread, which runs FastCGI pings so the loop never blocks.
//!
//! The poll timeout is the machine's [`Machine::next_wakeup`] (and the earliest control
//! connection deadline): an idle supervisor wakes only for its health checks.

mod conns;
mod reconfig;

use conns::reply_of;

use super::checks::{CheckJob, check_thread};
use super::control::{self, Conn};
use super::machine::{
    self, Action, Answer, ConnId, Event, Machine, MasterNo, Purpose, Sig, Target,
};
use super::{notify, resident, sockets};
use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::fpm::Fpm;
use crate::procs::{self, ProcId};
use crate::signals::{self, Sent};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, trace, warn};

/// The signals the supervisor handles (blocked, read from the signalfd).
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set
}

/// Everything the driver owns.
pub struct Driver {
    pub(super) cfg_path: PathBuf,
    pub(super) fpm: Fpm,
    /// The config the next master starts with.
    pub(super) cfg: FpmConfig,
    /// The config each master was started with (its workers are verified against it).
    pub(super) cfgs: BTreeMap<MasterNo, FpmConfig>,
    /// The PID of each master (kept after it exits: its orphans are found by group).
    pids: BTreeMap<MasterNo, i32>,
    pub(super) sockets: sockets::HeldSockets,
    pub(super) notify: notify::Listener,
    pub(super) control: UnixListener,
    pub(super) sd: notify::SdNotify,
    pub(super) health_timeout: Duration,
    pub(super) sigfd: SignalFd,
    conns: BTreeMap<ConnId, (Conn, Deadline)>,
    waiting: HashMap<ConnId, UnixStream>,
    refused: std::collections::HashSet<ConnId>,
    next_conn: ConnId,
    pidfds: BTreeMap<ProcId, OwnedFd>,
    /// pidfds of masters that are not our children (taken over from a dead supervisor):
    /// their exit cannot be reaped, only seen.
    adopted: BTreeMap<MasterNo, OwnedFd>,
    jobs: mpsc::Sender<CheckJob>,
    results: mpsc::Receiver<Event>,
    wake: UnixStream,
    queue: VecDeque<Event>,
    counters: super::observe::Counters,
    /// Whether settling releases the binary's pages ([`resident`]).
    pub(super) release_pages: bool,
    /// What the config of a restart under way replaced ([`reconfig`]).
    previous: Option<reconfig::Previous>,
    /// The `php-fpm -t` of a requested restart, running beside the loop ([`reconfig`]).
    config_test: Option<reconfig::ConfigTest>,
    /// The writing end of the wake pipe, for threads other than the check thread.
    wake_w: UnixStream,
}

impl Driver {
    /// Sets up the check thread; the rest is given.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cfg: FpmConfig,
        fpm: Fpm,
        sockets: sockets::HeldSockets,
        notify: notify::Listener,
        control: UnixListener,
        sd: notify::SdNotify,
        health_timeout: Duration,
        sigfd: SignalFd,
        counters: super::observe::Counters,
    ) -> crate::error::Result<Driver> {
        let (wake, wake_w) = UnixStream::pair().map_err(|e| Error::io("creating a pipe", e))?;
        wake.set_nonblocking(true)
            .map_err(|e| Error::io("pipe", e))?;
        let (jobs, job_rx) = mpsc::channel::<CheckJob>();
        let (res_tx, results) = mpsc::channel();
        let checks_wake = wake_w
            .try_clone()
            .map_err(|e| Error::io("creating a pipe", e))?;
        std::thread::Builder::new()
            .name("checks".into())
            .spawn(move || check_thread(job_rx, res_tx, checks_wake))
            .map_err(|e| Error::io("starting the check thread", e))?;
        Ok(Driver {
            cfg_path: cfg.path.clone(),
            fpm,
            cfg,
            cfgs: BTreeMap::new(),
            pids: BTreeMap::new(),
            sockets,
            notify,
            control,
            sd,
            health_timeout,
            sigfd,
            conns: BTreeMap::new(),
            waiting: HashMap::new(),
            refused: Default::default(),
            next_conn: 1,
            pidfds: BTreeMap::new(),
            adopted: BTreeMap::new(),
            jobs,
            results,
            wake,
            queue: VecDeque::new(),
            counters,
            release_pages: false,
            previous: None,
            config_test: None,
            wake_w,
        })
    }

    /// Registers the master `id` the machine took over as `master`: started with `cfg` by a
    /// supervisor that died, so it is not our child and its exit is watched by pidfd.
    pub(super) fn adopt_master(&mut self, master: MasterNo, cfg: FpmConfig, id: ProcId) {
        self.cfgs.insert(master, cfg);
        self.pids.insert(master, id.pid);
        // The pidfd first, the look after: see `adopted`.
        let opened = signals::pidfd_open(id.pid);
        match super::adopted::watch(opened, procs::lookup_same(id)) {
            super::adopted::Watch::Pidfd(fd) => {
                self.adopted.insert(master, fd);
            }
            super::adopted::Watch::Exited => self.queue.push_back(Event::MasterExited {
                master,
                how: "exited before it was watched (a master taken over, not our child)".into(),
            }),
            super::adopted::Watch::Blind(why) => warn!(
                pid = id.pid,
                reason = %why,
                "the master taken over cannot be watched: its exit will not be noticed"
            ),
        }
    }

    /// Runs the machine until it exits; returns its code.
    pub fn run(&mut self, mut m: Machine, first: Vec<Action>) -> ExitCode {
        if let Some(code) = self.perform(&mut m, first) {
            return code;
        }
        // Whether anything but the idle loop's own work ran since pages were last released.
        let mut touched = true;
        loop {
            // The queue is handled before the sources are read again, the first actions'
            // events too: a master's `Spawned` must reach the machine before its READY=1 is
            // read, or the message comes from "no master of ours" and is lost (FPM speaks
            // about 26 ms after exec; a loaded host may run the first read later than that).
            while let Some(ev) = self.queue.pop_front() {
                // The idle loop's own work (health checks, FPM's heartbeat) keeps its
                // pages; anything else may have touched code that waiting does not need.
                touched |= !m.is_idle_work(&ev);
                m.set_jitter(super::policy::jitter());
                trace!(event = ?ev, "machine event");
                let actions = m.on(ev, Instant::now());
                trace!(actions = ?actions, phase = ?m.phase(), "machine actions");
                let stop = self.perform(&mut m, actions);
                self.counters
                    .ready
                    .store(m.status().ready, Ordering::Relaxed);
                if let Some(code) = stop {
                    self.counters.ready.store(false, Ordering::Relaxed);
                    return code;
                }
            }
            self.prune(&m);
            if touched && m.settled() && self.conns.is_empty() && self.waiting.is_empty() {
                touched = false;
                resident::trim_heap();
                if self.release_pages {
                    let released = resident::release();
                    debug!(
                        mappings = released.mappings,
                        kib = released.kib,
                        "released the pages of fpmctl's binary that waiting does not use"
                    );
                }
            }
            self.wait(&m);
            self.collect(&m);
            let now = Instant::now();
            if m.next_wakeup().is_some_and(|d| d.expired_at(now)) {
                self.queue.push_back(Event::Timer);
            }
        }
    }

    /// Blocks in `poll(2)` until something is readable or the next deadline.
    fn wait(&mut self, m: &Machine) {
        let mut deadline = m.next_wakeup().unwrap_or(Deadline::NEVER);
        for (_, d) in self.conns.values() {
            deadline = deadline.min(*d);
        }
        // Events already queued (a master taken over that was gone before it was watched)
        // are handled at once: only look whether anything else is ready.
        if !self.queue.is_empty() {
            deadline = Deadline::after(Duration::ZERO);
        }
        let accept = self.conns.len() + self.waiting.len() < control::MAX_CONNECTIONS;
        let conn_ids: Vec<ConnId> = self.conns.keys().copied().collect();
        let pid_ids: Vec<ProcId> = self.pidfds.keys().copied().collect();
        let mut fds = vec![
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.notify.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            PollFd::new(
                self.control.as_fd(),
                if accept {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                },
            ),
        ];
        for id in &conn_ids {
            if let Some((c, _)) = self.conns.get(id) {
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
            }
        }
        for id in &pid_ids {
            if let Some(fd) = self.pidfds.get(id) {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        let adopted_ids: Vec<MasterNo> = self.adopted.keys().copied().collect();
        for g in &adopted_ids {
            if let Some(fd) = self.adopted.get(g) {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        let ms = deadline.poll_millis();
        let timeout = if ms < 0 {
            PollTimeout::NONE
        } else {
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => warn!(error = %e, "poll failed"),
        }
        let ready = |f: &PollFd| {
            f.revents()
                .is_some_and(|r| !r.is_empty() && r != PollFlags::POLLNVAL)
        };
        let base = 4;
        let gone: Vec<ProcId> = pid_ids
            .iter()
            .enumerate()
            .filter(|(i, _)| fds.get(base + conn_ids.len() + i).is_some_and(ready))
            .map(|(_, id)| *id)
            .collect();
        let base_adopted = base + conn_ids.len() + pid_ids.len();
        let exited: Vec<MasterNo> = adopted_ids
            .iter()
            .enumerate()
            .filter(|(i, _)| fds.get(base_adopted + i).is_some_and(ready))
            .map(|(_, g)| *g)
            .collect();
        drop(fds);
        for master in exited {
            self.adopted.remove(&master);
            self.queue.push_back(Event::MasterExited {
                master,
                how: "exited (a master taken over, not our child)".into(),
            });
        }
        for id in gone {
            self.pidfds.remove(&id);
            self.queue.push_back(Event::WorkerGone(id));
        }
    }

    /// Reads every source without blocking and queues what it found.
    fn collect(&mut self, m: &Machine) {
        // Signals.
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    let sig = match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGTERM) => Some(Sig::Term),
                        Ok(Signal::SIGINT) => Some(Sig::Int),
                        Ok(Signal::SIGQUIT) => Some(Sig::Quit),
                        Ok(Signal::SIGHUP) => Some(Sig::Hup),
                        Ok(Signal::SIGUSR1) => Some(Sig::Usr1),
                        Ok(Signal::SIGUSR2) => Some(Sig::Usr2),
                        _ => None, // SIGCHLD: reaped below in any case
                    };
                    if let Some(s) = sig {
                        info!(signal = s.name(), sender = info.ssi_pid, "signal received");
                        self.queue.push_back(Event::Signal(s));
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    warn!(error = %e, "reading the signalfd");
                    break;
                }
            }
        }
        self.reap(m);
        // Check results.
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        while let Ok(ev) = self.results.try_recv() {
            self.queue.push_back(ev);
        }
        self.collect_config_test();
        // FPM's notify messages, from the master the kernel names as the sender.
        for msg in self.notify.drain() {
            let Some(pid) = msg.sender else { continue };
            if !msg.ready && msg.status.is_none() {
                continue; // an empty probe (another supervisor checking we are alive)
            }
            let Some(master) = m.master_gen(pid) else {
                warn!(
                    pid,
                    "notify message from a process that is no master of ours"
                );
                continue;
            };
            if let Some(s) = &msg.status {
                debug!(pid, status = s.as_str(), "FPM status");
            }
            self.queue.push_back(Event::Notify {
                master,
                ready: msg.ready,
                status: msg.status,
            });
        }
        self.accept_control();
        self.read_control();
    }

    /// Reaps every exited child, naming what is no master.
    fn reap(&mut self, m: &Machine) {
        loop {
            // Peek first (WNOWAIT): the zombie's name is still readable.
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            let pid = match waitid(Id::All, flags) {
                Ok(WaitStatus::StillAlive) => return,
                Ok(st) => match st.pid() {
                    Some(p) => p,
                    None => return,
                },
                Err(Errno::ECHILD) => {
                    self.queue.push_back(Event::NoChildren);
                    return;
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "waitid failed");
                    return;
                }
            };
            // A restart's php-fpm -t is reaped by the thread that waits for its verdict;
            // that thread wakes the loop, which then reaps whatever else exited.
            if self.is_config_test(pid.as_raw()) {
                return;
            }
            let name = procs::read(pid.as_raw())
                .map(|p| p.comm)
                .unwrap_or_default();
            let status = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!(pid = pid.as_raw(), error = %e, "waitpid failed");
                    return;
                }
            };
            let how = describe(&status);
            let pid = pid.as_raw();
            if let Some(master) = m.master_gen(pid) {
                let (signal, exit_code) = match status {
                    WaitStatus::Exited(_, c) => (None, Some(c)),
                    WaitStatus::Signaled(_, s, _) => (Some(s.as_str()), None),
                    _ => (None, None),
                };
                info!(pid, master, signal, exit_code, "FPM master reaped");
                self.queue.push_back(Event::MasterExited { master, how });
                continue;
            }
            if !m.tracked_workers().any(|(_, w)| w.pid == pid) && !self.is_fpm_name(&name) {
                info!(
                    pid,
                    name = name.as_str(),
                    how = how.as_str(),
                    "reaped a process left behind by a PHP request"
                );
            } else {
                debug!(
                    pid,
                    name = name.as_str(),
                    how = how.as_str(),
                    "reaped a worker"
                );
            }
            self.queue.push_back(Event::ChildReaped { pid });
        }
    }

    /// Performs actions in order; `Some(code)` when the machine asked to exit.
    fn perform(&mut self, m: &mut Machine, actions: Vec<Action>) -> Option<ExitCode> {
        for a in actions {
            match a {
                Action::Spawn { master, why } => {
                    let ev = self.spawn(master, why);
                    self.queue.push_back(ev);
                }
                Action::LoadConfig => self.start_config_test(),
                Action::Signal { target, signal } => self.signal(m, target, signal),
                Action::ListWorkers { master } => {
                    // Each worker is watched through a pidfd opened before its identity is
                    // checked again, so the pidfd is that worker's; one already gone is left out.
                    let mut workers = self.workers_of(m, master);
                    workers.retain(|w| match signals::pidfd_open(w.pid) {
                        Ok(Some(fd)) => {
                            let alive = !procs::is_gone(*w);
                            if alive {
                                self.pidfds.insert(*w, fd);
                            }
                            alive
                        }
                        Ok(None) => true,
                        Err(Errno::ESRCH) => false,
                        // Fail closed: maybe alive, so kept (and signalled) without a pidfd.
                        Err(_) => true,
                    });
                    if m.masters().get(&master).is_none() {
                        self.lower_priority(&workers);
                    }
                    self.queue.push_back(Event::WorkersOf { master, workers });
                }
                Action::Check { master, purpose } => self.check(m, master, purpose),
                Action::RestoreSocketPaths => {
                    for path in self.sockets.restore_paths() {
                        info!(path = %path.display(), "socket path restored");
                    }
                }
                Action::DropUnusedSockets => {
                    self.config_taken_over();
                    self.sockets.drop_unused(&self.cfg);
                }
                Action::RevertConfig => self.revert_config(),
                Action::Reply { conn, answer } => {
                    if let Some(stream) = self.waiting.remove(&conn) {
                        let reply = match answer {
                            Answer::Done(code, text) => reply_of(code, &text),
                            Answer::Status(v) => self.status_reply(&v),
                        };
                        control::write_reply(stream, &reply);
                    }
                }
                Action::NotifySystemd(text) => {
                    if text.starts_with("READY=1") {
                        self.sd
                            .send(&format!("{text}\nMAINPID={}", std::process::id()));
                    } else {
                        self.sd.send(&text);
                    }
                }
                Action::Tally(t) => self.counters.tally(t),
                Action::Exit(code) => return Some(code),
            }
        }
        None
    }

    /// Forgets configs, PIDs and pidfds of masters and workers the machine no longer knows.
    fn prune(&mut self, m: &Machine) {
        let live = m.referenced();
        self.cfgs.retain(|g, _| live.contains(g));
        self.pids.retain(|g, _| live.contains(g));
        self.adopted.retain(|g, _| live.contains(g));
        self.pidfds
            .retain(|id, _| m.tracked_workers().any(|(_, w)| w == *id));
    }

    /// Starts a new FPM on the held sockets.
    fn spawn(&mut self, master: MasterNo, why: machine::Why) -> Event {
        if why == machine::Why::Crash {
            self.follow_config_on_disk();
        }
        let mut cfg = self.cfg.clone();
        // What this master will run, identified now: an upgrade of the file later does not
        // make it unprovable to us (its executable keeps this device and inode).
        if let Ok(bin) = crate::identity::FpmBinary::resolve(&self.fpm.bin) {
            cfg.binary = Some(bin);
        }
        let fds = self.sockets.raw_fds(&cfg);
        // `-y <config>` and `-p <prefix>` as every fpmctl command runs FPM, in the foreground.
        let mut cmd = self.fpm.command();
        cmd.arg("-F")
            .env("FPM_SOCKETS", self.sockets.env_value(&cfg))
            .env("NOTIFY_SOCKET", self.notify.path())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        // A session of its own, as a daemonized FPM has (and so a process group named by
        // its PID). In our session, its group would be orphaned when the supervisor dies
        // (SIGKILL, OOM), and the kernel then sends SIGHUP and SIGCONT to a group with a
        // stopped member: a master stopped for retirement would resume and serve again.
        // SAFETY: setsid(2) between fork and exec is async-signal-safe; the child is not a
        // process group leader, so it cannot fail.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        crate::handover::inherit(&mut cmd, fds);
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id() as i32;
                if let Some(pipe) = child.stderr.take()
                    && let Err(e) = super::observe::forward_stderr(pipe, self.counters.clone())
                {
                    warn!(pid, error = %e, "FPM's log is not read");
                }
                // Reaped with waitpid; the Child handle is not used to wait.
                drop(child);
                let id = procs::read(pid)
                    .map(|p| p.id)
                    .unwrap_or(ProcId { pid, start_time: 0 });
                let reason = match why {
                    machine::Why::First => "first",
                    machine::Why::Crash => "crash",
                    machine::Why::Requested => "requested",
                    machine::Why::Adopted => "takeover",
                };
                info!(pid, master, reason, "started FPM master");
                let interval = cfg.global.systemd_interval;
                let hung_after = (!interval.is_zero())
                    .then(|| interval.saturating_mul(3).max(Duration::from_secs(30)));
                self.cfgs.insert(master, cfg);
                self.pids.insert(master, pid);
                Event::Spawned {
                    master,
                    id,
                    hung_after,
                }
            }
            Err(e) => Event::SpawnFailed {
                master,
                error: format!("{}: {e}", self.fpm.bin.display()),
            },
        }
    }

    fn cfg_of(&self, master: MasterNo) -> &FpmConfig {
        self.cfgs.get(&master).unwrap_or(&self.cfg)
    }

    fn signal(&self, m: &Machine, target: Target, sig: Signal) {
        let name = signals::short_name(sig);
        match target {
            Target::Master { master, id } => {
                let cfg = self.cfg_of(master);
                match signals::send_verified(id, sig, |p| discovery::is_master_of(p, cfg)) {
                    Ok(Sent::Delivered) => info!(
                        pid = id.pid,
                        master,
                        signal = sig.as_str(),
                        "signalled master"
                    ),
                    Ok(other) => {
                        debug!(pid = id.pid, master, signal = name, outcome = ?other, "master not signalled")
                    }
                    Err(e) => warn!(pid = id.pid, signal = name, error = %e, "signalling master"),
                }
            }
            Target::Worker { master, id } => {
                let cfg = self.cfg_of(master);
                let _ = signals::send_verified(id, sig, |p| discovery::is_pool_process_of(p, cfg));
            }
            Target::Leftovers => {
                // A stop: a restart's config test is of no use any more.
                self.kill_config_test();
                let me = std::process::id() as i32;
                // Our children from the kernel's list; the whole table only without it.
                for p in procs::children(me).unwrap_or_else(|| procs::scan(false)) {
                    if p.ppid != me
                        || p.is_gone()
                        || m.master_gen(p.pid()).is_some()
                        || self.is_config_test(p.pid())
                    {
                        continue;
                    }
                    info!(
                        pid = p.pid(),
                        name = p.comm.as_str(),
                        signal = name,
                        "stopping a process left behind by a PHP request"
                    );
                    // Our own unreaped child: its PID cannot be reused before we reap it.
                    let _ = signals::send_verified(p.id, sig, |q| q.ppid == me);
                }
            }
        }
    }

    /// Live workers of master `master`: its children, or its process group once it is dead.
    fn workers_of(&self, m: &Machine, master: MasterNo) -> Vec<ProcId> {
        let cfg = self.cfg_of(master);
        let pid = m
            .masters()
            .get(&master)
            .and_then(|x| x.id)
            .map(|id| id.pid)
            .or_else(|| self.pids.get(&master).copied());
        let Some(pid) = pid else { return Vec::new() };
        // Pool processes name php-fpm in their titles: the scoped pass finds every one.
        procs::scan_fpm(procs::Scope::Titles)
            .into_iter()
            .filter(|p| {
                !p.is_gone()
                    && p.pid() != pid
                    && (p.ppid == pid || p.pgrp == pid)
                    && discovery::is_pool_process_of(p, cfg)
            })
            .map(|p| p.id)
            .collect()
    }

    /// Orphans of a dead master finish their requests at the lowest priority, so they do
    /// not slow the new master's start on a small machine.
    fn lower_priority(&self, workers: &[ProcId]) {
        let me = std::process::id() as i32;
        for w in workers {
            // Only our own children (re-parented orphans): their PIDs cannot be reused before
            // we reap them, so the PID names this worker.
            if procs::read_same(*w).is_some_and(|p| p.ppid == me) {
                // SAFETY: setpriority takes plain integers and touches no memory of ours.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, w.pid as libc::id_t, 19);
                }
            }
        }
    }

    fn is_fpm_name(&self, comm: &str) -> bool {
        comm.starts_with("php-fpm")
    }

    fn check(&self, m: &Machine, master: MasterNo, purpose: Purpose) {
        let Some(pid) = m.masters().get(&master).and_then(|x| x.id).map(|id| id.pid) else {
            return;
        };
        let job = CheckJob {
            master,
            purpose,
            pid,
            pools: self.cfg_of(master).pools.clone(),
            timeout: self.health_timeout,
        };
        if self.jobs.send(job).is_err() {
            error!("the check thread is gone");
        }
    }

    /// Cleans up on exit: answers nobody is left waiting, removes the control socket and
    /// the held socket paths.
    pub(super) fn finish(&mut self, code: ExitCode) {
        let text = match code {
            ExitCode::Ok => "FPM stopped; supervisor exiting".to_string(),
            other => format!("supervisor exiting: {}", other.meaning()),
        };
        for (_, stream) in self.waiting.drain() {
            control::write_reply(stream, &reply_of(code, &text));
        }
        self.kill_config_test();
        let _ = std::fs::remove_file(control::socket_path(&self.cfg_path));
        std::mem::take(&mut self.sockets).remove_all();
        info!(exit_code = code.code(), "{text}");
    }
}

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("was killed by {}", sig.as_str()),
        other => format!("{other:?}"),
    }
}
