//! `fpmctl supervise`: own one FPM in the foreground, restart it on crash, restart it on
//! request without dropping a request.
//!
//! One thread runs an event loop over `poll(2)`: a self-pipe for signals (signal-hook), the
//! notify socket FPM reports to, the control socket, and a pipe from the health-check thread.
//! All process state changes happen on that thread; the pure decisions (backoff, crash loop,
//! health) live in [`policy`].
//!
//! How a restart keeps every request:
//! - the supervisor holds every listening socket ([`sockets`]) and hands them to each FPM it
//!   starts through `FPM_SOCKETS`, so the sockets never close;
//! - a requested restart starts the new FPM *beside* the old one (both accept on the same
//!   sockets), waits until the new one is ready, then retires the old one without letting its
//!   exit cleanup run: SIGSTOP its master, SIGQUIT its workers (each finishes its request),
//!   and SIGKILL the stopped master once they are gone. FPM therefore never unlinks the unix
//!   socket path nor the pid file the new master wrote;
//! - after a crash, the path FPM may have unlinked is restored from a hard link, the dead
//!   master's orphaned workers (re-parented to us: we are a child subreaper) get SIGQUIT, and
//!   a new FPM starts at once on the same sockets, with backoff when crashes repeat.

pub mod control;
pub mod notify;
pub mod policy;
mod request;
pub mod sockets;

use crate::config::{self, FpmConfig};
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::fpm::Fpm;
use crate::outcome::Outcome;
use crate::procs::{self, ProcId};
use crate::signals::{self, Sent};
use crate::stop::SignalPlan;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use policy::{CrashDecision, CrashTracker, HealthTracker, RestartPolicy};
use request::{Action, control_action};
use serde_json::json;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// How the supervisor behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Crash restarts and the crash-loop limit.
    pub policy: RestartPolicy,
    /// How often each pool is pinged.
    pub health_interval: Duration,
    /// Limit of one ping.
    pub health_timeout: Duration,
    /// Consecutive failed checks that trigger a restart.
    pub unhealthy_after: u32,
    /// How long a new FPM may take to become ready.
    pub ready_timeout: Duration,
    /// How long a retired FPM's workers may take to finish their requests.
    pub drain_timeout: Duration,
    /// How FPM is stopped when the supervisor exits.
    pub stop_plan: SignalPlan,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: RestartPolicy::default(),
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(3),
            unhealthy_after: 3,
            ready_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            stop_plan: SignalPlan::default(),
        }
    }
}

/// A master we started.
#[derive(Debug, Clone)]
struct Master {
    id: ProcId,
    started: Instant,
    /// When it must be ready, or it is killed.
    ready_by: Deadline,
    cfg: FpmConfig,
    ready_at: Option<Instant>,
    last_notify: Option<Instant>,
    status: Option<String>,
}

/// An FPM being retired: its master stopped (or dead), its workers finishing.
#[derive(Debug)]
struct Retiring {
    /// The config (and binary) the retired FPM was started with.
    cfg: FpmConfig,
    master: Option<ProcId>,
    workers: Vec<ProcId>,
    deadline: Deadline,
    escalated: u8,
}

/// Why a new FPM is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    First,
    Crash,
    Requested,
}

/// A graceful (then forced) exit in progress.
#[derive(Debug)]
struct Shutdown {
    code: ExitCode,
    step: usize,
    deadline: Deadline,
    /// A `stop --timeout` given through the control socket: the whole stop's limit.
    limit: Deadline,
}

/// Signals the loop reacts to, set by signal-hook handlers.
struct Flags {
    chld: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

enum Event {
    Health(std::result::Result<(), String>),
}

struct Supervisor {
    cfg_path: PathBuf,
    fpm: Fpm,
    opts: Options,
    cfg: FpmConfig,
    sockets: sockets::HeldSockets,
    notify: notify::Listener,
    control: UnixListener,
    sd: notify::SdNotify,
    current: Option<Master>,
    starting: Option<(Master, Why)>,
    retiring: Vec<Retiring>,
    crashes: CrashTracker,
    health: HealthTracker,
    restart_at: Option<Deadline>,
    /// `--timeout` of the restart request being served: the new FPM's readiness limit.
    ready_limit: Option<Duration>,
    waiting_replies: Vec<(UnixStream, &'static str)>,
    shutdown: Option<Shutdown>,
    announced_ready: bool,
    restarts: u32,
    health_pools: Arc<std::sync::Mutex<Vec<config::Pool>>>,
    events: mpsc::Receiver<Event>,
    watchdog: Option<Duration>,
    last_watchdog: Instant,
}

/// Runs the supervisor until it is told to stop or FPM crash-loops; returns the exit code.
pub fn run(cfg: FpmConfig, fpm: Fpm, opts: Options) -> Result<ExitCode> {
    // Orphaned workers of any FPM we start come back to us, and we reap them.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        warn!(
            "could not become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let sd = notify::SdNotify::from_env();
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_micros);

    let snap = discovery::discover(&cfg);
    if let Some(m) = &snap.master {
        return Err(Error::Other(format!(
            "FPM {} already runs outside the supervisor (master {}); stop it first (`fpmctl stop`)",
            cfg.path.display(),
            m.pid()
        )));
    }
    if !snap.orphans.is_empty() {
        info!(
            "stopping {} orphaned worker(s) left by a dead master",
            snap.orphans.len()
        );
        crate::stop::stop(&cfg, &SignalPlan::default(), Duration::from_secs(30))?;
    }
    discovery::refuse_foreign_holders(&discovery::discover(&cfg))?;
    fpm.require_valid()?;

    let control = control::bind(&cfg.path)?;
    let lock_dir = crate::lock::secure_dir()?;
    let notify = notify::Listener::new(&lock_dir).map_err(|e| {
        Error::io(
            format!("creating a notify socket under {}", lock_dir.display()),
            e,
        )
    })?;
    let mut held = sockets::HeldSockets::default();
    held.reconcile(&cfg)?;

    let (tx, rx) = mpsc::channel();
    let (wake_r, wake_w) = UnixStream::pair().map_err(|e| Error::io("creating a pipe", e))?;
    wake_r
        .set_nonblocking(true)
        .map_err(|e| Error::io("pipe", e))?;
    let flags = install_signals(&wake_w)?;
    let health_pools = Arc::new(std::sync::Mutex::new(cfg.pools.clone()));
    spawn_health_thread(
        Arc::clone(&health_pools),
        opts.health_interval,
        opts.health_timeout,
        tx,
        wake_w.try_clone().map_err(|e| Error::io("pipe", e))?,
    );

    let mut sup = Supervisor {
        cfg_path: cfg.path.clone(),
        fpm,
        crashes: CrashTracker::new(opts.policy),
        health: HealthTracker::new(opts.unhealthy_after),
        opts,
        cfg,
        sockets: held,
        notify,
        control,
        sd,
        current: None,
        starting: None,
        retiring: Vec::new(),
        restart_at: None,
        ready_limit: None,
        waiting_replies: Vec::new(),
        shutdown: None,
        announced_ready: false,
        restarts: 0,
        health_pools,
        events: rx,
        watchdog,
        last_watchdog: Instant::now(),
    };
    sup.spawn(Why::First);
    let code = sup.event_loop(&wake_r, &flags);
    sup.finish(code);
    Ok(code)
}

fn install_signals(wake: &UnixStream) -> Result<Flags> {
    use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
    let flags = Flags {
        chld: Arc::new(AtomicBool::new(false)),
        term: Arc::new(AtomicBool::new(false)),
        reload: Arc::new(AtomicBool::new(false)),
    };
    let reg = |sig: i32, flag: &Arc<AtomicBool>| -> Result<()> {
        signal_hook::flag::register(sig, Arc::clone(flag))
            .map_err(|e| Error::io(format!("installing a handler for signal {sig}"), e))?;
        let w = wake.try_clone().map_err(|e| Error::io("pipe", e))?;
        signal_hook::low_level::pipe::register(sig, w)
            .map_err(|e| Error::io(format!("installing a handler for signal {sig}"), e))?;
        Ok(())
    };
    reg(SIGCHLD, &flags.chld)?;
    reg(SIGTERM, &flags.term)?;
    reg(SIGINT, &flags.term)?;
    // A container's STOPSIGNAL for FPM images (php:*-fpm) is SIGQUIT; as PID 1 an unhandled
    // signal would be ignored.
    reg(SIGQUIT, &flags.term)?;
    reg(SIGHUP, &flags.reload)?;
    reg(SIGUSR2, &flags.reload)?;
    Ok(flags)
}

fn spawn_health_thread(
    pools: Arc<std::sync::Mutex<Vec<config::Pool>>>,
    interval: Duration,
    timeout: Duration,
    tx: mpsc::Sender<Event>,
    wake: UnixStream,
) {
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            use std::io::Write;
            loop {
                std::thread::sleep(interval);
                let list = pools.lock().map(|p| p.clone()).unwrap_or_default();
                let mut failures = Vec::new();
                for pool in &list {
                    if let Err(e) = crate::ready::check_pool(pool, timeout) {
                        failures.push(format!("pool {}: {e}", pool.name));
                    }
                }
                let result = if failures.is_empty() {
                    Ok(())
                } else {
                    Err(failures.join("; "))
                };
                if tx.send(Event::Health(result)).is_err() {
                    return;
                }
                let _ = (&wake).write_all(&[1]);
            }
        })
        .expect("spawning the health thread");
}

impl Supervisor {
    fn event_loop(&mut self, wake: &UnixStream, flags: &Flags) -> ExitCode {
        loop {
            let timeout = self.next_timeout();
            {
                let mut fds = [
                    PollFd::new(wake.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.notify.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.control.as_fd(), PollFlags::POLLIN),
                ];
                let ms = timeout.as_millis().clamp(0, 60_000) as i32;
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                ) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => warn!("poll: {e}"),
                }
            }
            let mut buf = [0u8; 64];
            while matches!((&*wake).read(&mut buf), Ok(n) if n > 0) {}

            if flags.chld.swap(false, Ordering::SeqCst) {
                self.reap();
            }
            if flags.term.swap(false, Ordering::SeqCst) {
                self.on_term();
            }
            if flags.reload.swap(false, Ordering::SeqCst) {
                info!("reload requested by signal");
                self.request_restart(None, None);
            }
            for msg in self.notify.drain() {
                self.on_notify(msg);
            }
            self.accept_control();
            while let Ok(ev) = self.events.try_recv() {
                match ev {
                    Event::Health(r) => self.on_health(r),
                }
            }
            self.tick();
            if let Some(code) = self.shutdown_done() {
                return code;
            }
        }
    }

    fn next_timeout(&self) -> Duration {
        let mut next = Deadline::after(Duration::from_secs(30));
        if let Some(t) = self.restart_at {
            next = next.min(t);
        }
        if self.starting.is_some() || self.current.as_ref().is_some_and(|m| m.ready_at.is_none()) {
            next = next.slice(Duration::from_millis(25));
        }
        for r in &self.retiring {
            next = next.min(r.deadline).slice(Duration::from_millis(100));
        }
        if let Some(s) = &self.shutdown {
            next = next
                .min(s.deadline)
                .min(s.limit)
                .slice(Duration::from_millis(50));
        }
        if let Some(w) = self.watchdog {
            next = next.min(Deadline::after_from(self.last_watchdog, w / 2));
        }
        next.remaining()
    }

    /// Starts a new FPM on the held sockets.
    fn spawn(&mut self, why: Why) {
        let mut cfg = self.cfg.clone();
        // What this master will run: identified now, so an upgrade of the file later does
        // not make it unprovable to us (its executable keeps this device and inode).
        if let Ok(bin) = crate::identity::FpmBinary::resolve(&self.fpm.bin) {
            cfg.binary = Some(bin);
        }
        let fds = self.sockets.raw_fds(&cfg);
        let mut cmd = Command::new(&self.fpm.bin);
        cmd.arg("-F").arg("-y").arg(&self.fpm.config);
        if let Some(prefix) = &self.fpm.prefix {
            cmd.arg("-p").arg(prefix);
        }
        cmd.env("FPM_SOCKETS", self.sockets.env_value(&cfg))
            .env("NOTIFY_SOCKET", self.notify.path())
            .stdin(Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec only async-signal-safe calls: fcntl(2) clearing
        // FD_CLOEXEC on the listening sockets FPM must inherit.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    let flags = libc::fcntl(*fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id() as i32;
                // We reap with waitpid(-1); the Child handle is not used to wait.
                drop(child);
                let id = procs::read(pid)
                    .map(|p| p.id)
                    .unwrap_or(ProcId { pid, start_time: 0 });
                let reason = match why {
                    Why::First => "first start",
                    Why::Crash => "after a crash",
                    Why::Requested => "restart requested",
                };
                info!("started FPM master {pid} ({reason})");
                let ready_in = match why {
                    Why::Requested => self.ready_limit.unwrap_or(self.opts.ready_timeout),
                    _ => self.opts.ready_timeout,
                };
                let m = Master {
                    id,
                    started: Instant::now(),
                    ready_by: Deadline::after(ready_in),
                    cfg,
                    ready_at: None,
                    last_notify: None,
                    status: None,
                };
                if why == Why::Requested && self.current.is_some() {
                    self.starting = Some((m, why));
                } else {
                    self.current = Some(m);
                }
            }
            Err(e) => {
                error!("could not start {}: {e}", self.fpm.bin.display());
                self.on_master_gone(None, "could not be started");
            }
        }
    }

    /// Reaps every exited child; true when no child is left at all.
    fn reap(&mut self) -> bool {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return false,
                Err(Errno::ECHILD) => return true,
                Err(Errno::EINTR) => continue,
                Err(_) => return false,
                Ok(status) => {
                    let Some(pid) = status.pid().map(Pid::as_raw) else {
                        return false;
                    };
                    let how = describe(&status);
                    if self.current.as_ref().is_some_and(|m| m.id.pid == pid) {
                        let m = self.current.take();
                        self.on_master_gone(m, &how);
                    } else if self.starting.as_ref().is_some_and(|(m, _)| m.id.pid == pid) {
                        let (m, _) = self.starting.take().expect("checked");
                        warn!(
                            "the new FPM master {pid} {how} before it was ready; the old one keeps serving"
                        );
                        self.retire_orphans_of(&m.cfg, m.id.pid);
                        self.reply_all(ExitCode::FpmDied, &format!("the new FPM master {pid} {how} before it was ready; the running FPM was kept"));
                    } else if let Some(r) = self
                        .retiring
                        .iter_mut()
                        .find(|r| r.master.is_some_and(|m| m.pid == pid))
                    {
                        r.master = None;
                        debug!("retired master {pid} reaped");
                    } else {
                        debug!("reaped {pid} ({how})");
                    }
                }
            }
        }
    }

    /// The serving master died (or could not start).
    fn on_master_gone(&mut self, m: Option<Master>, how: &str) {
        let pid = m.as_ref().map(|m| m.id.pid);
        if self.shutdown.is_some() {
            return;
        }
        match pid {
            Some(pid) => error!("FPM master {pid} {how}"),
            None => error!("FPM {how}"),
        }
        for path in self.sockets.restore_paths() {
            info!("socket path {} is back", path.display());
        }
        if let Some(m) = &m {
            self.retire_orphans_of(&m.cfg, m.id.pid);
        }
        self.sd.send("STATUS=FPM exited; restarting");
        match self.crashes.on_crash(Instant::now(), policy::jitter()) {
            CrashDecision::Restart { after, crashes } => {
                self.restarts += 1;
                if after.is_zero() {
                    info!(
                        "restarting FPM now (crash {crashes} of at most {} within {})",
                        self.opts.policy.max_restarts,
                        humantime::format_duration(self.opts.policy.within)
                    );
                } else {
                    info!(
                        "restarting FPM in {} (crash {crashes} of at most {} within {})",
                        humantime::format_duration(round_ms(after)),
                        self.opts.policy.max_restarts,
                        humantime::format_duration(self.opts.policy.within)
                    );
                }
                self.restart_at = Some(Deadline::after(after));
            }
            CrashDecision::GiveUp { crashes } => {
                error!(
                    "FPM crashed {crashes} times within {}: giving up",
                    humantime::format_duration(self.opts.policy.within)
                );
                self.begin_shutdown(ExitCode::CrashLoop);
            }
        }
    }

    /// SIGQUITs the live workers of a dead or retired master and tracks them until gone.
    fn retire_orphans_of(&mut self, cfg: &FpmConfig, master_pid: i32) {
        let workers: Vec<ProcId> = procs::scan(false)
            .into_iter()
            .filter(|p| {
                !p.is_gone()
                    && p.pgrp == master_pid
                    && p.pid() != master_pid
                    && discovery::is_pool_process_of(p, cfg)
            })
            .map(|p| p.id)
            .collect();
        if workers.is_empty() {
            return;
        }
        info!(
            "{} worker(s) of master {master_pid} finish their requests (SIGQUIT)",
            workers.len()
        );
        for w in &workers {
            signal_worker(cfg, *w, Signal::SIGQUIT);
        }
        self.retiring.push(Retiring {
            cfg: cfg.clone(),
            master: None,
            workers,
            deadline: Deadline::after(self.opts.drain_timeout),
            escalated: 0,
        });
    }

    fn on_notify(&mut self, msg: notify::Message) {
        let Some(sender) = msg.sender else { return };
        let now = Instant::now();
        let target = match (&mut self.current, &mut self.starting) {
            (Some(m), _) if m.id.pid == sender => Some(m),
            (_, Some((m, _))) if m.id.pid == sender => Some(m),
            _ => None,
        };
        let Some(m) = target else {
            debug!("notify from unknown PID {sender}: {msg:?}");
            return;
        };
        m.last_notify = Some(now);
        if let Some(s) = &msg.status {
            debug!("FPM {sender}: {s}");
            m.status = Some(s.clone());
            if m.ready_at.is_some() {
                self.sd.send(&format!("STATUS={s}"));
            }
        }
    }

    /// Readiness of a starting master: its workers up and every pool answering.
    fn check_ready(&self, m: &Master) -> Readiness {
        if m.ready_by.expired() {
            return Readiness::TimedOut;
        }
        let table = procs::scan(false);
        for pool in &m.cfg.pools {
            let n = workers_of(&table, m.id.pid, &pool.name);
            if n < pool.expected_workers() as usize {
                return Readiness::Waiting(format!(
                    "pool {}: {n} of {} workers",
                    pool.name,
                    pool.expected_workers()
                ));
            }
        }
        for pool in &m.cfg.pools {
            if let Err(e) = crate::ready::check_pool(pool, Duration::from_secs(2)) {
                return Readiness::Waiting(format!("pool {}: {e}", pool.name));
            }
        }
        Readiness::Ready
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if self.shutdown.is_some() {
            self.shutdown_step();
            self.progress_retiring();
            return;
        }
        if self.restart_at.is_some_and(|t| t.expired_at(now)) {
            self.restart_at = None;
            self.spawn(Why::Crash);
        }
        // A first (or post-crash) master becoming ready.
        if let Some(m) = self.current.clone().filter(|m| m.ready_at.is_none()) {
            match self.check_ready(&m) {
                Readiness::Ready => self.on_ready(None),
                Readiness::TimedOut => {
                    error!(
                        "FPM master {} not ready after {:.1}s; killing it",
                        m.id.pid,
                        m.started.elapsed().as_secs_f64()
                    );
                    signal_master(&m.cfg, m.id, Signal::SIGKILL);
                }
                Readiness::Waiting(why) => debug!("not ready yet: {why}"),
            }
        }
        // A replacement becoming ready.
        if let Some((m, _)) = self.starting.clone() {
            match self.check_ready(&m) {
                Readiness::Ready => {
                    let (new, _) = self.starting.take().expect("checked");
                    let old = self.current.replace(new);
                    self.on_ready(old);
                }
                Readiness::TimedOut => {
                    error!(
                        "the new FPM master {} was not ready in time; the old one keeps serving",
                        m.id.pid
                    );
                    signal_master(&m.cfg, m.id, Signal::SIGKILL);
                }
                Readiness::Waiting(why) => debug!("replacement not ready yet: {why}"),
            }
        }
        self.progress_retiring();
        self.check_hung_master();
        if let Some(w) = self.watchdog
            && Deadline::after_from(self.last_watchdog, w / 2).expired_at(now)
        {
            self.last_watchdog = now;
            if self.current.as_ref().is_some_and(|m| m.ready_at.is_some())
                && self.health.failures() == 0
            {
                self.sd.send("WATCHDOG=1");
            }
        }
    }

    fn on_ready(&mut self, old: Option<Master>) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.ready_at = Some(Instant::now());
        let took = cur.started.elapsed();
        let pid = cur.id.pid;
        self.health.reset();
        if let Ok(mut p) = self.health_pools.lock() {
            *p = cur.cfg.pools.clone();
        }
        let text = match &old {
            Some(o) => format!(
                "restarted: master {} replaced by {pid}, ready in {:.2}s",
                o.id.pid,
                took.as_secs_f64()
            ),
            None => format!("FPM master {pid} ready in {:.2}s", took.as_secs_f64()),
        };
        info!("{text}");
        if let Some(o) = old {
            self.retire(o);
        }
        self.sockets.drop_unused(&self.cfg);
        if !self.announced_ready {
            self.announced_ready = true;
            self.sd.send(&format!(
                "READY=1\nSTATUS=FPM master {pid} ready\nMAINPID={}",
                std::process::id()
            ));
        } else {
            self.sd
                .send(&format!("READY=1\nSTATUS=FPM master {pid} ready"));
        }
        self.reply_all(ExitCode::Ok, &text);
    }

    /// Retires a replaced master without its exit cleanup (see the module docs).
    fn retire(&mut self, old: Master) {
        if !signal_master(&old.cfg, old.id, Signal::SIGSTOP) {
            // Already gone: only its workers are left, if any.
            self.retire_orphans_of(&old.cfg, old.id.pid);
            return;
        }
        let workers: Vec<ProcId> = procs::scan(false)
            .into_iter()
            .filter(|p| {
                p.ppid == old.id.pid && !p.is_gone() && discovery::is_pool_process_of(p, &old.cfg)
            })
            .map(|p| p.id)
            .collect();
        info!(
            "retiring master {}: SIGSTOP, then SIGQUIT to its {} worker(s)",
            old.id.pid,
            workers.len()
        );
        for w in &workers {
            signal_worker(&old.cfg, *w, Signal::SIGQUIT);
        }
        self.retiring.push(Retiring {
            cfg: old.cfg.clone(),
            master: Some(old.id),
            workers,
            deadline: Deadline::after(self.opts.drain_timeout),
            escalated: 0,
        });
    }

    fn progress_retiring(&mut self) {
        let now = Instant::now();
        let mut done = Vec::new();
        for (i, r) in self.retiring.iter_mut().enumerate() {
            r.workers.retain(|w| !procs::is_gone(*w));
            if r.workers.is_empty() {
                if let Some(m) = r.master {
                    // Workers are gone; the stopped master never runs its cleanup.
                    let cfg = &r.cfg;
                    match signals::send_verified(m, Signal::SIGKILL, |p| {
                        discovery::is_master_of(p, cfg)
                    }) {
                        Ok(Sent::Delivered) => debug!("retired master {} killed", m.pid),
                        _ => r.master = None,
                    }
                    if procs::is_gone(m) {
                        r.master = None;
                    }
                }
                if r.master.is_none() {
                    done.push(i);
                }
                continue;
            }
            if r.deadline.expired_at(now) {
                let sig = if r.escalated == 0 {
                    Signal::SIGTERM
                } else {
                    Signal::SIGKILL
                };
                warn!(
                    "{} retired worker(s) still busy after the drain timeout: {}",
                    r.workers.len(),
                    sig.as_str()
                );
                for w in &r.workers {
                    signal_worker(&r.cfg, *w, sig);
                }
                r.escalated += 1;
                r.deadline = Deadline::after_from(now, Duration::from_secs(5));
            }
        }
        for i in done.into_iter().rev() {
            self.retiring.remove(i);
        }
    }

    fn check_hung_master(&mut self) {
        let Some(m) = &self.current else { return };
        let (Some(_), Some(last)) = (m.ready_at, m.last_notify) else {
            return;
        };
        let limit = (m.cfg.global.systemd_interval.saturating_mul(3)).max(Duration::from_secs(30));
        if Deadline::after_from(last, limit).expired() && !m.cfg.global.systemd_interval.is_zero() {
            warn!(
                "FPM master {} sent no status for {}s: treating it as hung",
                m.id.pid,
                last.elapsed().as_secs()
            );
            if let Some(m) = self.current.as_mut() {
                m.last_notify = Some(Instant::now());
            }
            self.request_restart(None, None);
        }
    }

    fn on_health(&mut self, result: std::result::Result<(), String>) {
        let ready = self.current.as_ref().is_some_and(|m| m.ready_at.is_some());
        if !ready || self.starting.is_some() || self.shutdown.is_some() {
            return;
        }
        let result = result.and(self.worker_counts());
        match &result {
            Ok(()) => debug!("health check passed"),
            Err(e) => warn!(
                "health check failed ({} in a row): {e}",
                self.health.failures() + 1
            ),
        }
        if self.health.on_check(result.is_ok()) {
            warn!(
                "FPM is unhealthy after {} failed checks: restarting it",
                self.opts.unhealthy_after
            );
            self.request_restart(None, None);
        }
    }

    /// Every pool of the serving master has at least its expected workers.
    fn worker_counts(&self) -> std::result::Result<(), String> {
        let Some(m) = &self.current else {
            return Ok(());
        };
        let table = procs::scan(false);
        let short: Vec<String> = m
            .cfg
            .pools
            .iter()
            .filter_map(|pool| {
                let n = workers_of(&table, m.id.pid, &pool.name);
                // In steady state a dynamic pool may shrink to its idle minimum.
                let want = match pool.pm {
                    config::PmStyle::Dynamic => pool.min_spare_servers,
                    _ => pool.expected_workers(),
                } as usize;
                (n < want).then(|| format!("pool {} has {n} of {want} workers", pool.name))
            })
            .collect();
        if short.is_empty() {
            Ok(())
        } else {
            Err(short.join("; "))
        }
    }

    /// Starts a replacement FPM (config reloaded and tested first); `reply` gets the answer.
    /// Starts a replacement FPM (config tested and reloaded first); `reply` gets the answer.
    /// `ready_limit` is a forwarded `--timeout`: how long the new FPM may take to be ready.
    fn request_restart(
        &mut self,
        reply: Option<(UnixStream, &'static str)>,
        ready_limit: Option<Duration>,
    ) {
        if self.shutdown.is_some() {
            if let Some((s, _)) = reply {
                control::write_reply(
                    s,
                    &reply_of(ExitCode::Failure, "the supervisor is stopping"),
                );
            }
            return;
        }
        if let Some(r) = reply {
            self.waiting_replies.push(r);
        }
        if self.starting.is_some() {
            return; // the restart in progress answers everyone
        }
        // php-fpm's verdict first, so a config it rejects is exit 6, as without a supervisor.
        let cfg = self
            .fpm
            .require_valid()
            .and_then(|()| {
                config::load_with(&self.cfg_path, &self.fpm.load_options()).map_err(Error::from)
            })
            .and_then(|mut cfg| {
                // The binary proves which processes are ours (the master is no foreign holder).
                cfg.binary = self.cfg.binary.clone();
                // Refused exactly as `restart` and `reload` refuse it without a supervisor.
                discovery::refuse_foreign_holders(&discovery::discover(&cfg))?;
                self.sockets.reconcile(&cfg)?;
                Ok(cfg)
            });
        let cfg = match cfg {
            Ok(cfg) => cfg,
            Err(e) => {
                error!("not restarting: {e}");
                self.reply_all(
                    e.exit_code(),
                    &format!("not restarted, the running FPM was kept: {e}"),
                );
                return;
            }
        };
        self.cfg = cfg;
        self.ready_limit = ready_limit;
        self.sd.send("RELOADING=1\nSTATUS=restarting FPM");
        self.restart_at = None;
        self.restarts += 1;
        if self.current.is_some() {
            self.spawn(Why::Requested);
        } else {
            self.spawn(Why::Crash);
        }
    }

    fn reply_all(&mut self, code: ExitCode, text: &str) {
        for (stream, _) in self.waiting_replies.drain(..) {
            control::write_reply(stream, &reply_of(code, text));
        }
    }

    fn accept_control(&mut self) {
        loop {
            let stream = match self.control.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            let req = match control::read_request(&stream) {
                Ok(r) => r,
                Err(e) => {
                    control::write_reply(stream, &reply_of(ExitCode::Usage, &e.to_string()));
                    continue;
                }
            };
            if !control::peer_allowed(&stream) {
                warn!("refused a control connection from a user that is neither root nor ours");
                let msg = format!(
                    "refused: only root or uid {} may control this supervisor",
                    nix::unistd::geteuid()
                );
                control::write_reply(stream, &reply_of(ExitCode::Failure, &msg));
                continue;
            }
            info!("control request: {}", req.cmd);
            match control_action(&req) {
                Err(msg) => control::write_reply(stream, &reply_of(ExitCode::Usage, &msg)),
                Ok(Action::Restart { ready_limit }) => {
                    self.request_restart(Some((stream, "restart")), ready_limit)
                }
                Ok(Action::Stop { plan, limit }) => {
                    self.waiting_replies.push((stream, "stop"));
                    if self.shutdown.is_none() {
                        if let Some(plan) = plan {
                            self.opts.stop_plan = plan;
                        }
                        self.begin_shutdown(ExitCode::Ok);
                        if let (Some(s), Some(limit)) = (&mut self.shutdown, limit) {
                            s.limit = Deadline::after(limit);
                        }
                    }
                }
                Ok(Action::Status) => control::write_reply(stream, &self.status_reply()),
            }
        }
    }

    fn status_reply(&self) -> control::Reply {
        let cur = self.current.as_ref();
        let text = match cur {
            Some(m) if m.ready_at.is_some() => format!(
                "supervised by fpmctl {}: master {} ready, {} restart(s){}\n",
                std::process::id(),
                m.id.pid,
                self.restarts,
                m.status
                    .as_ref()
                    .map(|s| format!(", FPM says: {s}"))
                    .unwrap_or_default()
            ),
            Some(m) => format!(
                "supervised by fpmctl {}: master {} starting\n",
                std::process::id(),
                m.id.pid
            ),
            None => format!(
                "supervised by fpmctl {}: FPM is down, restart pending\n",
                std::process::id()
            ),
        };
        let ready = cur.is_some_and(|m| m.ready_at.is_some());
        control::Reply::from(&Outcome {
            code: if ready {
                ExitCode::Ok
            } else {
                ExitCode::NotReady
            },
            text,
            json: json!({
                "supervisor_pid": std::process::id(),
                "master": cur.map(|m| m.id.pid),
                "ready": cur.is_some_and(|m| m.ready_at.is_some()),
                "restarts": self.restarts,
                "fpm_status": cur.and_then(|m| m.status.clone()),
                "sockets": self.sockets.list.iter().map(|h| h.addr.to_string()).collect::<Vec<_>>(),
            }),
            error: None,
        })
    }

    fn on_term(&mut self) {
        match &mut self.shutdown {
            None => {
                info!("stopping FPM gracefully (signal); a second signal stops it fast");
                self.begin_shutdown(ExitCode::Ok);
            }
            Some(s) => {
                // A second request: skip the graceful step.
                let fast = self
                    .opts
                    .stop_plan
                    .steps
                    .iter()
                    .position(|st| st.signal != Signal::SIGQUIT)
                    .unwrap_or(0);
                if s.step < fast {
                    warn!("second stop signal: stopping FPM fast");
                    s.step = fast;
                    s.deadline = Deadline::after(Duration::ZERO);
                }
            }
        }
    }

    fn begin_shutdown(&mut self, code: ExitCode) {
        if self.shutdown.is_some() {
            return;
        }
        self.sd.send("STOPPING=1\nSTATUS=stopping FPM");
        self.restart_at = None;
        self.shutdown = Some(Shutdown {
            code,
            step: 0,
            deadline: Deadline::after(Duration::ZERO),
            limit: Deadline::NEVER,
        });
        self.send_shutdown_signal(0);
    }

    fn send_shutdown_signal(&mut self, step: usize) {
        let Some(st) = self.opts.stop_plan.steps.get(step).copied() else {
            return;
        };
        let masters: Vec<(ProcId, &FpmConfig)> = self
            .current
            .iter()
            .map(|m| (m.id, &m.cfg))
            .chain(self.starting.iter().map(|(m, _)| (m.id, &m.cfg)))
            .collect();
        for (m, cfg) in &masters {
            if signal_master(cfg, *m, st.signal) {
                info!(
                    pid = m.pid,
                    signal = signals::short_name(st.signal),
                    "stopping master {} (SIG{})",
                    m.pid,
                    signals::short_name(st.signal)
                );
            }
        }
        // Retired masters are stopped: kill them; their workers already had SIGQUIT.
        for r in &self.retiring {
            if let Some(m) = r.master {
                signal_master(&r.cfg, m, Signal::SIGKILL);
            }
        }
        if st.signal == Signal::SIGKILL || masters.is_empty() {
            let cfgs: Vec<&FpmConfig> = masters
                .iter()
                .map(|(_, c)| *c)
                .chain(std::iter::once(&self.cfg))
                .collect();
            for p in procs::scan(false) {
                let Some(cfg) = cfgs.iter().find(|c| discovery::is_pool_process_of(&p, c)) else {
                    continue;
                };
                if p.ppid == std::process::id() as i32
                    || masters
                        .iter()
                        .any(|(m, _)| m.pid == p.pgrp || m.pid == p.ppid)
                {
                    signal_worker(cfg, p.id, st.signal);
                }
            }
        }
        if let Some(s) = &mut self.shutdown {
            s.step = step;
            s.deadline = Deadline::after(st.grace);
        }
    }

    fn shutdown_step(&mut self) {
        let gone = self.reap();
        let Some(s) = &self.shutdown else { return };
        if s.deadline.expired() && !gone {
            let next = s.step + 1;
            if next < self.opts.stop_plan.steps.len() {
                self.send_shutdown_signal(next);
            }
        }
    }

    fn shutdown_done(&mut self) -> Option<ExitCode> {
        self.shutdown.as_ref()?;
        // No child left at all: we are a subreaper, so orphaned workers are our children too.
        if self.reap() {
            return self.shutdown.as_ref().map(|s| s.code);
        }
        let s = self.shutdown.as_ref()?;
        let last = self.opts.stop_plan.steps.len().saturating_sub(1);
        if s.limit.expired() {
            error!("FPM processes still alive when the stop's --timeout expired; exiting anyway");
            return Some(ExitCode::Timeout);
        }
        if s.step >= last && s.deadline.extended(Duration::from_secs(5)).expired() {
            error!("FPM processes still alive after the whole stop plan; exiting anyway");
            return Some(ExitCode::Timeout);
        }
        None
    }

    /// Answers every waiting client with the code the supervisor exits with.
    fn finish(&mut self, code: ExitCode) {
        let text = match code {
            ExitCode::Ok => "FPM stopped; supervisor exiting".to_string(),
            ExitCode::Timeout => format!(
                "FPM processes were still alive after the signal plan {} (or the stop's --timeout); supervisor exiting",
                self.opts.stop_plan
            ),
            other => format!("supervisor exiting: {}", other.meaning()),
        };
        self.reply_all(code, &text);
        let _ = std::fs::remove_file(control::socket_path(&self.cfg_path));
        std::mem::take(&mut self.sockets).remove_all();
        info!("{text}");
    }
}

/// Signals a worker of the FPM started with `cfg`, re-checking its identity first.
fn signal_worker(cfg: &FpmConfig, id: ProcId, sig: Signal) {
    let _ = signals::send_verified(id, sig, |p| discovery::is_pool_process_of(p, cfg));
}

/// Signals a master started with `cfg`, re-checking its identity first; true if delivered.
fn signal_master(cfg: &FpmConfig, id: ProcId, sig: Signal) -> bool {
    matches!(
        signals::send_verified(id, sig, |p| discovery::is_master_of(p, cfg)),
        Ok(Sent::Delivered)
    )
}

/// How far a starting master is.
enum Readiness {
    Ready,
    Waiting(String),
    TimedOut,
}

/// Live workers of `pool` whose parent is `master`.
fn workers_of(table: &[procs::ProcInfo], master: i32, pool: &str) -> usize {
    table
        .iter()
        .filter(|p| {
            p.ppid == master && !p.is_gone() && discovery::pool_of_title(&p.title) == Some(pool)
        })
        .count()
}

/// The reply for an outcome the supervisor reached: its [`Outcome`], serialized.
fn reply_of(code: ExitCode, text: &str) -> control::Reply {
    let out = if code == ExitCode::Ok {
        Outcome::ok(
            format!("{text}\n"),
            json!({ "code": code.code(), "message": text }),
        )
    } else {
        Outcome::failure(code, text)
    };
    control::Reply::from(&out)
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("was killed by {}", sig.as_str()),
        other => format!("{other:?}"),
    }
}
