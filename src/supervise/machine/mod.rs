//! The supervisor's decisions as a sans-IO state machine.
//!
//! [`Machine::on`] takes one [`Event`] (something the driver observed) and the current time,
//! and returns the [`Action`]s the driver must perform, in order. [`Machine::next_wakeup`]
//! says when the driver must feed [`Event::Timer`] at the latest. The machine never reads a
//! clock, a file or `/proc`, and never signals anything: every process it wants signalled is
//! named by its generation and identity ([`Target`]), and every fact it needs from the
//! system (the workers of a master, whether a config loads, a health check) is asked for with
//! an action and answered with an event. That is why its behaviour is tested as data.
//!
//! Every master the machine ever asked to spawn stays in [`Machine::masters`] until the
//! driver reports it exited ([`Event::MasterExited`]) or reports that it never started
//! ([`Event::SpawnFailed`]): no path forgets one.

use super::policy::{CrashDecision, CrashTracker, HealthTracker, RestartPolicy};
use crate::deadline::Deadline;
use crate::exit::ExitCode;
use crate::procs::ProcId;
use crate::stop::SignalPlan;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

#[cfg(test)]
mod tests;

/// The number the machine gives each FPM master it starts (1, 2, ...), never reused.
pub type MasterNo = u32;

/// A control connection, numbered by the driver.
pub type ConnId = u64;

/// The machine's settings (validated before it is built: no zero intervals).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Crash restarts and the crash-loop limit.
    pub policy: RestartPolicy,
    /// Time between health checks of a ready master.
    pub health_interval: Duration,
    /// Consecutive failed checks that trigger a restart.
    pub unhealthy_after: u32,
    /// How long a new master may take to become ready.
    pub ready_timeout: Duration,
    /// How long FPM may stay silent on the notify socket before readiness is probed over
    /// FastCGI instead (an FPM built without systemd support never speaks).
    pub notify_grace: Duration,
    /// How long the workers of a retired or dead master may take to finish their requests.
    pub drain_timeout: Duration,
    /// How FPM (and what its requests left behind) is stopped when the supervisor exits.
    pub stop_plan: SignalPlan,
    /// The service manager's watchdog interval (`WATCHDOG_USEC`), if it asked for pings.
    pub watchdog: Option<Duration>,
}

/// Signals the supervisor reacts to (SIGCHLD is the driver's business: it reaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM: graceful stop; a second one skips the graceful step.
    Term,
    /// SIGINT: as SIGTERM.
    Int,
    /// SIGQUIT (Docker's STOPSIGNAL for php images): as SIGTERM.
    Quit,
    /// SIGHUP: restart FPM (never forwarded: FPM has no HUP handler).
    Hup,
    /// SIGUSR1: FPM reopens its logs.
    Usr1,
    /// SIGUSR2: reload FPM (a restart beside the old one).
    Usr2,
}

/// A request on the control socket, with the options the supervisor honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Restart (or reload: the supervisor reloads by replacing) FPM beside the running one;
    /// `ready_limit` is a forwarded `--timeout`: how long the new FPM may take to be ready.
    Restart {
        /// The new master's readiness limit instead of the configured one.
        ready_limit: Option<Duration>,
    },
    /// Stop FPM and exit, with a forwarded `--signal-plan` and `--timeout` (the whole
    /// stop's limit).
    Stop {
        /// The plan instead of the configured one.
        plan: Option<SignalPlan>,
        /// The whole stop's limit.
        limit: Option<Duration>,
    },
    /// Report state.
    Status,
}

/// Why a check was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Readiness of a starting master that did not report `READY=1`.
    Ready,
    /// Periodic health of the serving master.
    Health,
}

/// Something the driver observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The master asked for with [`Action::Spawn`] runs as `id`. `hung_after`: how long it
    /// may stay silent on the notify socket once ready (from its `systemd_interval`).
    Spawned {
        /// Which master.
        master: MasterNo,
        /// Its identity.
        id: ProcId,
        /// Silence limit, when FPM sends periodic status.
        hung_after: Option<Duration>,
    },
    /// The master could not be started at all.
    SpawnFailed {
        /// Which master.
        master: MasterNo,
        /// Why.
        error: String,
    },
    /// A master exited and was reaped.
    MasterExited {
        /// Which master.
        master: MasterNo,
        /// How ("exited with status 1", "was killed by SIGKILL").
        how: String,
    },
    /// A message on the notify socket from a master (the kernel named the sender).
    Notify {
        /// Which master.
        master: MasterNo,
        /// `READY=1` was in it.
        ready: bool,
        /// `STATUS=` text.
        status: Option<String>,
    },
    /// A signal arrived.
    Signal(Sig),
    /// A control request arrived on connection `conn`.
    Control {
        /// The connection to answer on.
        conn: ConnId,
        /// What it asks.
        cmd: Command,
    },
    /// A deadline from [`Machine::next_wakeup`] may have passed.
    Timer,
    /// The answer to [`Action::Check`].
    Checked {
        /// Which master.
        master: MasterNo,
        /// Why it was checked.
        purpose: Purpose,
        /// `Err` says what failed.
        result: Result<(), String>,
        /// A pool that did not answer has connections waiting in its accept queue: its
        /// workers are all busy, FPM is not hung.
        saturated: bool,
    },
    /// The answer to [`Action::LoadConfig`]: the config loads, `php-fpm -t` passes and the
    /// held sockets match it; or the code and reason it did not.
    ConfigLoaded(Result<(), (ExitCode, String)>),
    /// The answer to [`Action::ListWorkers`]: the live workers of that master.
    WorkersOf {
        /// Which master.
        master: MasterNo,
        /// Their identities.
        workers: Vec<ProcId>,
    },
    /// A worker the machine tracks exited.
    WorkerGone(ProcId),
    /// A child that is no master was reaped: a worker, or a process a PHP request left
    /// behind that was re-parented to us.
    ChildReaped {
        /// Its PID.
        pid: i32,
    },
    /// `waitpid` says we have no child left at all.
    NoChildren,
}

/// What the machine asks a process to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A master, verified as this config's master before the signal.
    Master {
        /// Which master.
        master: MasterNo,
        /// Its identity.
        id: ProcId,
    },
    /// A worker of master `master`, verified as a pool process of that master's config.
    Worker {
        /// Whose worker.
        master: MasterNo,
        /// Its identity.
        id: ProcId,
    },
    /// Every child of the supervisor that is no master: what PHP requests left behind.
    Leftovers,
}

/// Why a master is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The supervisor just started.
    First,
    /// The serving master crashed.
    Crash,
    /// A restart was asked for (control socket, signal, health, silence).
    Requested,
    /// Replacing the master of a supervisor that died.
    Adopted,
}

/// A state the driver reports on `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// The master serving (or starting, when none serves).
    pub master: Option<i32>,
    /// It is ready.
    pub ready: bool,
    /// Restarts so far (crashes and requests).
    pub restarts: u32,
    /// FPM's last `STATUS=` text.
    pub fpm_status: Option<String>,
    /// The pool looked saturated at the last failed health check.
    pub saturated: bool,
}

/// An answer for a control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The request finished with this code and text.
    Done(ExitCode, String),
    /// The state, for `status`.
    Status(StatusView),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a new master on the held sockets (with the config last loaded); answer with
    /// [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn {
        /// The number it gets.
        master: MasterNo,
        /// Why (for the log).
        why: Why,
    },
    /// Reload the config, test it and reconcile the held sockets; answer with
    /// [`Event::ConfigLoaded`].
    LoadConfig,
    /// Signal a process the machine knows.
    Signal {
        /// Who.
        target: Target,
        /// What.
        signal: Signal,
    },
    /// Find the live workers of a master (its children, or its process group once it is
    /// dead); answer with [`Event::WorkersOf`] and report each exit with
    /// [`Event::WorkerGone`].
    ListWorkers {
        /// Whose.
        master: MasterNo,
    },
    /// Run a check of master `master` off the loop thread; answer with [`Event::Checked`].
    Check {
        /// Which master.
        master: MasterNo,
        /// Why.
        purpose: Purpose,
    },
    /// Put back a unix socket path a dead master may have unlinked.
    RestoreSocketPaths,
    /// Close held sockets no pool of the serving config uses any more.
    DropUnusedSockets,
    /// Answer a control connection (and close it).
    Reply {
        /// The connection.
        conn: ConnId,
        /// The answer.
        answer: Answer,
    },
    /// Tell the service manager (sd_notify text, `KEY=VALUE` lines).
    NotifySystemd(String),
    /// Exit with this code (after cleaning up).
    Exit(ExitCode),
}

/// The role of one master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Starting; becomes the serving master when ready.
    Starting,
    /// Starting beside the serving master (a requested restart).
    Replacement,
    /// Ready and serving.
    Serving,
    /// Replaced: stopped with SIGSTOP, its workers finishing; SIGKILLed once they are gone.
    Retiring,
    /// Given up on (not ready in time, or being stopped): waiting for its exit.
    Abandoned,
}

/// One master the machine started.
#[derive(Debug, Clone)]
pub struct Master {
    /// Its role.
    pub role: Role,
    /// Its identity once spawned.
    pub id: Option<ProcId>,
    started: Instant,
    ready_timeout: Duration,
    ready_at: Option<Instant>,
    last_notify: Option<Instant>,
    status: Option<String>,
    hung_after: Option<Duration>,
    probe_at: Option<Deadline>,
    probe_backoff: Duration,
    check_in_flight: bool,
    killed: bool,
}

/// Workers finishing their requests after their master was retired or died.
#[derive(Debug, Clone)]
struct Drain {
    workers: BTreeSet<ProcId>,
    deadline: Deadline,
    escalated: u8,
}

/// A stop in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopping {
    /// The code to exit with once FPM is gone.
    pub code: ExitCode,
    /// A forwarded `stop --timeout`: the whole stop's limit.
    pub limit: Deadline,
    /// The step of the plan last applied.
    pub step: usize,
    /// When the next step is due.
    pub deadline: Deadline,
}

/// The supervisor's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No master serves; one is starting (first start, or after a crash).
    Starting,
    /// A master serves.
    Serving,
    /// A master serves and a replacement is starting (or its config is being loaded).
    Replacing,
    /// No master: a crash restart is due at this deadline.
    Backoff(Deadline),
    /// Stopping FPM before exiting.
    Stopping(Stopping),
    /// The machine asked to exit with this code.
    Exited(ExitCode),
}

/// The supervisor's state.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    phase: Phase,
    masters: BTreeMap<MasterNo, Master>,
    drains: BTreeMap<MasterNo, Drain>,
    next_gen: MasterNo,
    crashes: CrashTracker,
    health: HealthTracker,
    health_at: Option<Deadline>,
    waiting: Vec<ConnId>,
    deferred_orphans: Vec<MasterNo>,
    listing: BTreeSet<MasterNo>,
    loading: bool,
    ready_limit: Option<Duration>,
    restarts: u32,
    saturated: bool,
    no_children: bool,
    watchdog_at: Option<Deadline>,
    jitter: f64,
}

/// How long a stop waits past its last step before giving up on what is left.
const FINAL_GRACE: Duration = Duration::from_secs(5);
/// How long escalation steps of a drain wait (TERM, then KILL).
const DRAIN_ESCALATION: Duration = Duration::from_secs(5);
/// The longest pause between two readiness probes.
const MAX_PROBE_BACKOFF: Duration = Duration::from_secs(1);
/// The first pause between two readiness probes.
const FIRST_PROBE_BACKOFF: Duration = Duration::from_millis(50);

impl Machine {
    /// A machine that starts the first master right away: feed the returned actions.
    pub fn start(settings: Settings, now: Instant) -> (Machine, Vec<Action>) {
        let mut m = Machine::new(settings, now);
        let mut out = Vec::new();
        m.spawn(Role::Starting, Why::First, now, &mut out);
        (m, out)
    }

    /// A machine that takes over the running master `id` of a supervisor that died: it
    /// serves as master 1, and a master of this supervisor replaces it at once, beside it,
    /// as a requested restart would (no request is dropped).
    pub fn adopt(settings: Settings, id: ProcId, now: Instant) -> (Machine, Vec<Action>) {
        let mut m = Machine::new(settings, now);
        let adopted = m.next_gen;
        m.next_gen += 1;
        m.masters.insert(
            adopted,
            Master {
                role: Role::Serving,
                id: Some(id),
                started: now,
                ready_timeout: m.settings.ready_timeout,
                ready_at: Some(now),
                last_notify: None,
                status: None,
                hung_after: None,
                probe_at: None,
                probe_backoff: FIRST_PROBE_BACKOFF,
                check_in_flight: false,
                killed: false,
            },
        );
        let mut out = Vec::new();
        m.spawn(Role::Replacement, Why::Adopted, now, &mut out);
        m.phase = Phase::Replacing;
        (m, out)
    }

    fn new(settings: Settings, now: Instant) -> Machine {
        Machine {
            crashes: CrashTracker::new(settings.policy),
            health: HealthTracker::new(settings.unhealthy_after),
            watchdog_at: settings.watchdog.map(|w| Deadline::after_from(now, w / 2)),
            settings,
            phase: Phase::Starting,
            masters: BTreeMap::new(),
            drains: BTreeMap::new(),
            next_gen: 1,
            health_at: None,
            waiting: Vec::new(),
            deferred_orphans: Vec::new(),
            listing: BTreeSet::new(),
            loading: false,
            ready_limit: None,
            restarts: 0,
            saturated: false,
            no_children: false,
            jitter: 0.0,
        }
    }

    /// Sets the jitter in `[0, 1)` the next crash backoff uses (the driver draws it).
    pub fn set_jitter(&mut self, jitter: f64) {
        self.jitter = jitter;
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Every master not yet reaped.
    pub fn masters(&self) -> &BTreeMap<MasterNo, Master> {
        &self.masters
    }

    /// The master whose PID is `pid`, if the machine knows one.
    pub fn master_gen(&self, pid: i32) -> Option<MasterNo> {
        self.masters
            .iter()
            .find(|(_, m)| m.id.is_some_and(|id| id.pid == pid))
            .map(|(g, _)| *g)
    }

    /// Every master the machine may still name in an action: live ones, dead ones whose
    /// workers it tracks, and dead ones whose orphans it has yet to look for.
    pub fn referenced(&self) -> BTreeSet<MasterNo> {
        self.masters
            .keys()
            .chain(self.drains.keys())
            .chain(self.deferred_orphans.iter())
            .chain(self.listing.iter())
            .copied()
            .collect()
    }

    /// Workers the machine waits for (of retired or dead masters).
    pub fn tracked_workers(&self) -> impl Iterator<Item = (MasterNo, ProcId)> + '_ {
        self.drains
            .iter()
            .flat_map(|(g, d)| d.workers.iter().map(move |w| (*g, *w)))
    }

    /// The state `status` reports.
    pub fn status(&self) -> StatusView {
        let shown = self
            .serving()
            .or_else(|| self.find(Role::Starting))
            .and_then(|g| self.masters.get(&g));
        StatusView {
            master: shown.and_then(|m| m.id.map(|id| id.pid)),
            ready: shown.is_some_and(|m| m.role == Role::Serving),
            restarts: self.restarts,
            fpm_status: shown.and_then(|m| m.status.clone()),
            saturated: self.saturated,
        }
    }

    /// When the driver must call [`Machine::on`] with [`Event::Timer`] at the latest;
    /// `None`: only an event can change anything.
    pub fn next_wakeup(&self) -> Option<Deadline> {
        let mut next = Deadline::NEVER;
        match self.phase {
            Phase::Exited(_) => return None,
            Phase::Backoff(at) => next = next.min(at),
            Phase::Stopping(s) => next = next.min(s.deadline).min(s.limit),
            _ => {}
        }
        let stopping = matches!(self.phase, Phase::Stopping(_));
        for m in self.masters.values() {
            if stopping {
                break;
            }
            if matches!(m.role, Role::Starting | Role::Replacement) && !m.killed {
                next = next.min(Deadline::after_from(m.started, m.ready_timeout));
                if !m.check_in_flight
                    && let Some(p) = m.probe_at
                {
                    next = next.min(p);
                }
            }
            if m.role == Role::Serving
                && let Some(d) = hung_deadline_of(m)
            {
                next = next.min(d);
            }
        }
        if !stopping {
            for d in self.drains.values() {
                next = next.min(d.deadline);
            }
            if let Some(h) = self.health_at {
                next = next.min(h);
            }
            if let Some(w) = self.watchdog_at {
                next = next.min(w);
            }
        }
        (!next.is_never()).then_some(next)
    }

    /// Handles one event at `now`; returns what the driver must do, in order.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Exited(_)) {
            if let Event::Control { conn, .. } = event {
                out.push(reply(conn, ExitCode::Failure, "the supervisor is exiting"));
            }
            return out;
        }
        match event {
            Event::Spawned {
                master,
                id,
                hung_after,
            } => {
                if let Some(m) = self.masters.get_mut(&master) {
                    m.id = Some(id);
                    m.hung_after = hung_after;
                    if let Phase::Stopping(s) = self.phase {
                        // Started just as the stop began: it gets the current step too.
                        m.role = Role::Abandoned;
                        let sig = self.step_signal(s.step);
                        out.push(signal_master(master, id, sig));
                    }
                }
            }
            Event::SpawnFailed { master, error } => {
                self.on_spawn_failed(master, &error, now, &mut out)
            }
            Event::MasterExited { master, how } => {
                self.on_master_exited(master, &how, now, &mut out)
            }
            Event::Notify {
                master,
                ready,
                status,
            } => self.on_notify(master, ready, status, now, &mut out),
            Event::Signal(sig) => self.on_signal(sig, now, &mut out),
            Event::Control { conn, cmd } => self.on_control(conn, cmd, now, &mut out),
            Event::Timer => {}
            Event::Checked {
                master,
                purpose,
                result,
                saturated,
            } => self.on_checked(master, purpose, result, saturated, now, &mut out),
            Event::ConfigLoaded(result) => self.on_config_loaded(result, now, &mut out),
            Event::WorkersOf { master, workers } => self.on_workers(master, workers, now, &mut out),
            Event::WorkerGone(id) => self.forget_worker(|w| *w == id, &mut out),
            Event::ChildReaped { pid } => {
                let known = self.tracked_workers().any(|(_, w)| w.pid == pid);
                if known {
                    self.forget_worker(|w| w.pid == pid, &mut out);
                } else {
                    debug!(pid, "reaped a child that is no master");
                }
            }
            Event::NoChildren => self.no_children = true,
        }
        self.on_time(now, &mut out);
        self.check_stopped(now, &mut out);
        out
    }

    // ---- masters -------------------------------------------------------------------------

    fn spawn(&mut self, role: Role, why: Why, now: Instant, out: &mut Vec<Action>) -> MasterNo {
        let ready_timeout = match why {
            Why::Requested => self
                .ready_limit
                .take()
                .unwrap_or(self.settings.ready_timeout),
            _ => self.settings.ready_timeout,
        };
        let master = self.next_gen;
        self.next_gen += 1;
        self.no_children = false;
        self.masters.insert(
            master,
            Master {
                role,
                id: None,
                started: now,
                ready_timeout,
                ready_at: None,
                last_notify: None,
                status: None,
                hung_after: None,
                probe_at: Some(Deadline::after_from(now, self.settings.notify_grace)),
                probe_backoff: FIRST_PROBE_BACKOFF,
                check_in_flight: false,
                killed: false,
            },
        );
        out.push(Action::Spawn { master, why });
        master
    }

    fn find(&self, role: Role) -> Option<MasterNo> {
        self.masters
            .iter()
            .find(|(_, m)| m.role == role)
            .map(|(g, _)| *g)
    }

    fn serving(&self) -> Option<MasterNo> {
        self.find(Role::Serving)
    }

    fn on_spawn_failed(
        &mut self,
        master: MasterNo,
        error: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.masters.remove(&master) else {
            return;
        };
        error!(master, error, "could not start FPM");
        match m.role {
            Role::Replacement => {
                self.phase = Phase::Serving;
                self.answer_waiting(
                    ExitCode::FpmDied,
                    &format!("FPM could not be started: {error}; the running FPM was kept"),
                    out,
                );
            }
            Role::Starting => self.on_crash(now, out),
            _ => {}
        }
    }

    fn on_master_exited(
        &mut self,
        master: MasterNo,
        how: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.masters.remove(&master) else {
            return;
        };
        let crashed = matches!(m.role, Role::Serving | Role::Starting)
            && !matches!(self.phase, Phase::Stopping(_));
        self.master_gone(m, how, now, out);
        // Whatever it left behind finishes its requests and is tracked until gone. After a
        // crash the orphans keep serving until the new master is ready, and only then get
        // SIGQUIT: on a small machine they never compete with the new master's start.
        if crashed && !matches!(self.phase, Phase::Stopping(_)) {
            self.deferred_orphans.push(master);
        } else {
            self.list_workers(master, out);
        }
    }

    fn release_orphans(&mut self, out: &mut Vec<Action>) {
        for master in std::mem::take(&mut self.deferred_orphans) {
            self.list_workers(master, out);
        }
    }

    /// Asks for the workers of `master`; it stays referenced until they are known.
    fn list_workers(&mut self, master: MasterNo, out: &mut Vec<Action>) {
        self.listing.insert(master);
        out.push(Action::ListWorkers { master });
    }

    fn master_gone(&mut self, m: Master, how: &str, now: Instant, out: &mut Vec<Action>) {
        let pid = m.id.map(|id| id.pid).unwrap_or(0);
        if matches!(self.phase, Phase::Stopping(_)) {
            info!(pid, how, "FPM master exited");
            return;
        }
        match m.role {
            Role::Serving | Role::Starting => {
                error!(pid, how, "FPM master exited");
                out.push(Action::RestoreSocketPaths);
                out.push(Action::NotifySystemd(
                    "STATUS=FPM exited; restarting".into(),
                ));
                self.health_at = None;
                if let Some(r) = self.find(Role::Replacement) {
                    // A requested restart is under way: its master takes over.
                    if let Some(rm) = self.masters.get_mut(&r) {
                        rm.role = Role::Starting;
                    }
                    self.phase = Phase::Starting;
                    self.restarts += 1;
                    if let CrashDecision::GiveUp { crashes } =
                        self.crashes.on_crash(now, self.jitter)
                    {
                        self.give_up(crashes, now, out);
                    }
                    return;
                }
                self.on_crash(now, out);
            }
            Role::Replacement => {
                warn!(pid, how, "the new FPM master exited before it was ready");
                self.phase = Phase::Serving;
                self.answer_waiting(
                    ExitCode::FpmDied,
                    &format!(
                        "the new FPM master {pid} {how} before it was ready; the running FPM was kept"
                    ),
                    out,
                );
            }
            Role::Retiring | Role::Abandoned => debug!(pid, how, "retired FPM master reaped"),
        }
    }

    /// No master serves any more: restart after the backoff, or give up.
    fn on_crash(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.loading {
            // A restart was being prepared; it no longer has a master to replace.
            self.loading = false;
        }
        match self.crashes.on_crash(now, self.jitter) {
            CrashDecision::Restart { after, crashes } => {
                self.restarts += 1;
                let max = self.settings.policy.max_restarts;
                if after.is_zero() {
                    info!(crashes, max, "restarting FPM now");
                } else {
                    let delay_ms = after.as_millis() as u64;
                    info!(crashes, max, delay_ms, "restarting FPM in {delay_ms} ms");
                }
                if after.is_zero() {
                    self.spawn(Role::Starting, Why::Crash, now, out);
                    self.phase = Phase::Starting;
                } else {
                    self.phase = Phase::Backoff(Deadline::after_from(now, after));
                }
            }
            CrashDecision::GiveUp { crashes } => self.give_up(crashes, now, out),
        }
    }

    fn give_up(&mut self, crashes: u32, now: Instant, out: &mut Vec<Action>) {
        error!(
            crashes,
            within_s = self.settings.policy.within.as_secs(),
            "FPM crashed {crashes} times within the window: giving up"
        );
        self.begin_stop(ExitCode::CrashLoop, now, out);
    }

    fn on_notify(
        &mut self,
        master: MasterNo,
        ready: bool,
        status: Option<String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.masters.get_mut(&master) else {
            return;
        };
        m.last_notify = Some(now);
        if let Some(s) = status {
            if m.role == Role::Serving {
                out.push(Action::NotifySystemd(format!("STATUS={s}")));
            }
            m.status = Some(s);
        }
        if ready && matches!(m.role, Role::Starting | Role::Replacement) && !m.killed {
            self.on_ready(master, "notify", now, out);
        }
    }

    /// `via`: how readiness was learnt (`notify`: FPM's READY=1; `probe`: FastCGI).
    fn on_ready(&mut self, master: MasterNo, via: &str, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Stopping(_)) {
            return;
        }
        let old = self.serving();
        let Some(m) = self.masters.get_mut(&master) else {
            return;
        };
        m.role = Role::Serving;
        m.ready_at = Some(now);
        m.probe_at = None;
        let pid = m.id.map(|id| id.pid).unwrap_or(0);
        let took_ms = now.saturating_duration_since(m.started).as_millis() as u64;
        self.phase = Phase::Serving;
        self.health.reset();
        self.saturated = false;
        self.health_at = Some(Deadline::after_from(now, self.settings.health_interval));
        let text = match old.and_then(|g| self.masters.get(&g).map(|o| (g, o))) {
            Some((og, o)) => {
                let old_pid = o.id.map(|id| id.pid).unwrap_or(0);
                info!(pid, old_pid, took_ms, via, "FPM restarted");
                let old_id = o.id;
                if let Some(o) = self.masters.get_mut(&og) {
                    o.role = Role::Retiring;
                }
                // Retire without FPM's exit cleanup: it would unlink the socket path and the
                // pid file the new master uses.
                if let Some(id) = old_id {
                    out.push(signal_master(og, id, Signal::SIGSTOP));
                }
                self.list_workers(og, out);
                format!("restarted: master {old_pid} replaced by {pid}, ready in {took_ms} ms")
            }
            None => {
                info!(pid, took_ms, via, "FPM ready");
                format!("FPM master {pid} ready in {took_ms} ms")
            }
        };
        out.push(Action::DropUnusedSockets);
        self.release_orphans(out);
        out.push(Action::NotifySystemd(format!(
            "READY=1\nSTATUS=FPM master {pid} ready"
        )));
        self.answer_waiting(ExitCode::Ok, &text, out);
    }

    fn on_workers(
        &mut self,
        master: MasterNo,
        workers: Vec<ProcId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.listing.remove(&master);
        let signal = match self.phase {
            Phase::Stopping(s) => self.step_signal(s.step),
            _ => Signal::SIGQUIT,
        };
        let retiring = self
            .masters
            .get(&master)
            .is_some_and(|m| m.role == Role::Retiring);
        if !workers.is_empty() {
            info!(
                master,
                workers = workers.len(),
                signal = crate::signals::short_name(signal),
                "workers of a replaced or dead master finish their requests"
            );
        }
        for w in &workers {
            out.push(Action::Signal {
                target: Target::Worker { master, id: *w },
                signal,
            });
        }
        let drain = self.drains.entry(master).or_insert_with(|| Drain {
            workers: BTreeSet::new(),
            deadline: Deadline::after_from(now, self.settings.drain_timeout),
            escalated: 0,
        });
        drain.workers.extend(workers);
        if drain.workers.is_empty() {
            self.drains.remove(&master);
            if retiring {
                self.kill_retired(master, out);
            }
        }
    }

    fn forget_worker(&mut self, gone: impl Fn(&ProcId) -> bool, out: &mut Vec<Action>) {
        let mut emptied = Vec::new();
        for (g, d) in self.drains.iter_mut() {
            d.workers.retain(|w| !gone(w));
            if d.workers.is_empty() {
                emptied.push(*g);
            }
        }
        for g in emptied {
            self.drains.remove(&g);
            if self
                .masters
                .get(&g)
                .is_some_and(|m| m.role == Role::Retiring)
            {
                self.kill_retired(g, out);
            }
        }
    }

    /// The stopped master of a replaced FPM, once its workers are gone: SIGKILL, so it never
    /// runs its exit cleanup.
    fn kill_retired(&mut self, master: MasterNo, out: &mut Vec<Action>) {
        if let Some(m) = self.masters.get_mut(&master)
            && !m.killed
            && let Some(id) = m.id
        {
            m.killed = true;
            out.push(signal_master(master, id, Signal::SIGKILL));
        }
    }

    // ---- requests ------------------------------------------------------------------------

    fn on_signal(&mut self, sig: Sig, now: Instant, out: &mut Vec<Action>) {
        match sig {
            Sig::Term | Sig::Int | Sig::Quit => {
                if let Phase::Stopping(s) = self.phase {
                    self.skip_graceful(s, now, out);
                } else {
                    info!(signal = ?sig, "stopping FPM gracefully; a second signal stops it fast");
                    self.begin_stop(ExitCode::Ok, now, out);
                }
            }
            Sig::Hup | Sig::Usr2 => {
                info!(signal = ?sig, "restart requested by signal");
                self.request_restart(None, out);
            }
            Sig::Usr1 => {
                for (g, m) in &self.masters {
                    if matches!(m.role, Role::Serving | Role::Starting | Role::Replacement)
                        && let Some(id) = m.id
                    {
                        out.push(signal_master(*g, id, Signal::SIGUSR1));
                    }
                }
            }
        }
    }

    fn on_control(&mut self, conn: ConnId, cmd: Command, now: Instant, out: &mut Vec<Action>) {
        match cmd {
            Command::Restart { ready_limit } => {
                if ready_limit.is_some() && !self.loading && self.find(Role::Replacement).is_none()
                {
                    self.ready_limit = ready_limit;
                }
                self.request_restart(Some(conn), out)
            }
            Command::Stop { plan, limit } => {
                self.waiting.push(conn);
                if !matches!(self.phase, Phase::Stopping(_)) {
                    if let Some(plan) = plan {
                        self.settings.stop_plan = plan;
                    }
                    self.begin_stop(ExitCode::Ok, now, out);
                    if let (Phase::Stopping(s), Some(limit)) = (&mut self.phase, limit) {
                        s.limit = Deadline::after_from(now, limit);
                    }
                }
            }
            Command::Status => out.push(Action::Reply {
                conn,
                answer: Answer::Status(self.status()),
            }),
        }
    }

    /// A replacement beside the serving master (config reloaded and tested first).
    fn request_restart(&mut self, conn: Option<ConnId>, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Stopping(_)) {
            if let Some(c) = conn {
                out.push(reply(c, ExitCode::Failure, "the supervisor is stopping"));
            }
            return;
        }
        if let Some(c) = conn {
            self.waiting.push(c);
        }
        if self.loading || self.find(Role::Replacement).is_some() {
            return; // the restart in progress answers everyone
        }
        if self.phase == Phase::Starting {
            return; // the starting master answers everyone once ready
        }
        self.loading = true;
        out.push(Action::LoadConfig);
    }

    fn on_config_loaded(
        &mut self,
        result: Result<(), (ExitCode, String)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !std::mem::take(&mut self.loading) || matches!(self.phase, Phase::Stopping(_)) {
            return;
        }
        if let Err((code, why)) = result {
            error!(reason = %why, "not restarting");
            self.answer_waiting(
                code,
                &format!("not restarted, the running FPM was kept: {why}"),
                out,
            );
            return;
        }
        out.push(Action::NotifySystemd(
            "RELOADING=1\nSTATUS=restarting FPM".into(),
        ));
        self.restarts += 1;
        if self.serving().is_some() {
            self.spawn(Role::Replacement, Why::Requested, now, out);
            self.phase = Phase::Replacing;
        } else if self.find(Role::Starting).is_none() {
            // Down (backoff after a crash): the operator asked, so start now.
            self.spawn(Role::Starting, Why::Requested, now, out);
            self.phase = Phase::Starting;
        }
    }

    fn on_checked(
        &mut self,
        master: MasterNo,
        purpose: Purpose,
        result: Result<(), String>,
        saturated: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.masters.get_mut(&master) else {
            return;
        };
        m.check_in_flight = false;
        match purpose {
            Purpose::Ready => {
                if !matches!(m.role, Role::Starting | Role::Replacement) || m.killed {
                    return;
                }
                match result {
                    Ok(()) => self.on_ready(master, "probe", now, out),
                    Err(why) => {
                        debug!(master, reason = %why, "not ready yet");
                        m.probe_at = Some(Deadline::after_from(now, m.probe_backoff));
                        m.probe_backoff = (m.probe_backoff * 2).min(MAX_PROBE_BACKOFF);
                    }
                }
            }
            Purpose::Health => {
                if m.role != Role::Serving || self.phase != Phase::Serving {
                    return;
                }
                self.health_at = Some(Deadline::after_from(now, self.settings.health_interval));
                match result {
                    Ok(()) => {
                        self.saturated = false;
                        self.health.on_check(true);
                    }
                    Err(why) if saturated || is_saturated(m.status.as_deref()) => {
                        // Every worker is busy with a live request: saturated, not hung.
                        self.saturated = true;
                        warn!(master, reason = %why, status = m.status.as_deref().unwrap_or(""),
                            "pool saturated: every worker busy; not restarting");
                    }
                    Err(why) => {
                        self.saturated = false;
                        warn!(master, reason = %why, failures = self.health.failures() + 1,
                            "health check failed");
                        if self.health.on_check(false) {
                            warn!(
                                failures = self.settings.unhealthy_after,
                                "FPM is unhealthy: restarting it"
                            );
                            self.request_restart(None, out);
                        }
                    }
                }
            }
        }
    }

    // ---- time ----------------------------------------------------------------------------

    fn on_time(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Stopping(s) = self.phase {
            if s.deadline.expired_at(now) && s.step + 1 < self.settings.stop_plan.steps.len() {
                self.apply_step(s.step + 1, now, out);
            }
            return;
        }
        if let Phase::Backoff(at) = self.phase
            && at.expired_at(now)
        {
            self.spawn(Role::Starting, Why::Crash, now, out);
            self.phase = Phase::Starting;
        }
        let mut to_kill = Vec::new();
        let mut checks = Vec::new();
        let mut hung = false;
        for (g, m) in self.masters.iter_mut() {
            if matches!(m.role, Role::Starting | Role::Replacement) && !m.killed {
                if Deadline::after_from(m.started, m.ready_timeout).expired_at(now) {
                    to_kill.push(*g);
                } else if !m.check_in_flight
                    && m.id.is_some()
                    && m.probe_at.is_some_and(|p| p.expired_at(now))
                {
                    m.check_in_flight = true;
                    m.probe_at = None;
                    checks.push((*g, Purpose::Ready));
                }
            }
            if m.role == Role::Serving
                && let Some(d) = hung_deadline_of(m)
                && d.expired_at(now)
            {
                warn!(
                    master = *g,
                    silent_s = now
                        .saturating_duration_since(m.last_notify.or(m.ready_at).unwrap_or(now))
                        .as_secs(),
                    "FPM master sent no status: treating it as hung"
                );
                m.last_notify = Some(now);
                hung = true;
            }
        }
        for g in to_kill {
            self.not_ready_in_time(g, out);
        }
        for (master, purpose) in checks {
            out.push(Action::Check { master, purpose });
        }
        if hung {
            self.request_restart(None, out);
        }
        if let Some(h) = self.health_at
            && h.expired_at(now)
            && self.phase == Phase::Serving
            && let Some(g) = self.serving()
            && let Some(m) = self.masters.get_mut(&g)
        {
            self.health_at = None;
            if !m.check_in_flight {
                m.check_in_flight = true;
                out.push(Action::Check {
                    master: g,
                    purpose: Purpose::Health,
                });
            }
        }
        self.drain_deadlines(now, out);
        if let (Some(w), Some(at)) = (self.settings.watchdog, self.watchdog_at)
            && at.expired_at(now)
        {
            self.watchdog_at = Some(Deadline::after_from(now, w / 2));
            if self.serving().is_some() && self.health.failures() == 0 {
                out.push(Action::NotifySystemd("WATCHDOG=1".into()));
            }
        }
    }

    fn not_ready_in_time(&mut self, master: MasterNo, out: &mut Vec<Action>) {
        let Some(m) = self.masters.get_mut(&master) else {
            return;
        };
        m.killed = true;
        let replacement = m.role == Role::Replacement;
        m.role = if replacement {
            Role::Abandoned
        } else {
            Role::Starting
        };
        let pid = m.id.map(|id| id.pid).unwrap_or(0);
        let ready_timeout_ms = m.ready_timeout.as_millis() as u64;
        error!(
            pid,
            ready_timeout_ms, "FPM master not ready in time; killing it"
        );
        if let Some(id) = m.id {
            out.push(signal_master(master, id, Signal::SIGKILL));
        }
        if replacement {
            self.phase = Phase::Serving;
            self.answer_waiting(
                ExitCode::NotReady,
                &format!(
                    "the new FPM master {pid} was not ready in time; the running FPM was kept"
                ),
                out,
            );
        }
        // A starting master killed here is reaped as a crash (backoff, crash loop).
    }

    fn drain_deadlines(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (g, d) in self.drains.iter_mut() {
            if !d.deadline.expired_at(now) || d.escalated >= 2 {
                continue;
            }
            let signal = if d.escalated == 0 {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            warn!(
                master = *g,
                workers = d.workers.len(),
                signal = crate::signals::short_name(signal),
                "workers still busy after the drain timeout"
            );
            for w in &d.workers {
                out.push(Action::Signal {
                    target: Target::Worker { master: *g, id: *w },
                    signal,
                });
            }
            d.escalated += 1;
            d.deadline = if d.escalated >= 2 {
                Deadline::NEVER
            } else {
                Deadline::after_from(now, DRAIN_ESCALATION)
            };
        }
    }

    // ---- stopping ------------------------------------------------------------------------

    fn begin_stop(&mut self, code: ExitCode, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Stopping(_)) {
            return;
        }
        out.push(Action::NotifySystemd(
            "STOPPING=1\nSTATUS=stopping FPM".into(),
        ));
        self.ready_limit = None;
        self.release_orphans(out);
        self.loading = false;
        self.health_at = None;
        self.phase = Phase::Stopping(Stopping {
            code,
            limit: Deadline::NEVER,
            step: 0,
            deadline: Deadline::NEVER,
        });
        self.apply_step(0, now, out);
    }

    fn step_signal(&self, step: usize) -> Signal {
        self.settings
            .stop_plan
            .steps
            .get(step)
            .map(|s| s.signal)
            .unwrap_or(Signal::SIGKILL)
    }

    /// Applies step `step` of the stop plan to every master, tracked worker and leftover.
    fn apply_step(&mut self, step: usize, now: Instant, out: &mut Vec<Action>) {
        let Phase::Stopping(mut s) = self.phase else {
            return;
        };
        let plan = &self.settings.stop_plan.steps;
        let last = plan.len().saturating_sub(1);
        let step = step.min(last);
        let signal = self.step_signal(step);
        let grace = plan.get(step).map(|s| s.grace).unwrap_or(Duration::ZERO);
        for (g, m) in self.masters.iter_mut() {
            let Some(id) = m.id else { continue };
            // A retired master is stopped and its workers already had SIGQUIT: it only ever
            // gets SIGKILL, so it never runs the cleanup that unlinks the socket path.
            let sig = if m.role == Role::Retiring {
                Signal::SIGKILL
            } else {
                signal
            };
            if m.role == Role::Retiring && m.killed {
                continue;
            }
            m.killed |= sig == Signal::SIGKILL;
            info!(
                pid = id.pid,
                signal = crate::signals::short_name(sig),
                "stopping FPM master"
            );
            out.push(signal_master(*g, id, sig));
        }
        for (g, d) in &self.drains {
            if step == 0 && signal == Signal::SIGQUIT {
                continue; // they had SIGQUIT already
            }
            for w in &d.workers {
                out.push(Action::Signal {
                    target: Target::Worker { master: *g, id: *w },
                    signal,
                });
            }
        }
        if !self.no_children {
            out.push(Action::Signal {
                target: Target::Leftovers,
                signal,
            });
        }
        s.step = step;
        s.deadline = Deadline::after_from(
            now,
            if step == last {
                grace.saturating_add(FINAL_GRACE)
            } else {
                grace
            },
        );
        self.phase = Phase::Stopping(s);
    }

    /// A second stop request: skip the graceful step (SIGQUIT), never the forceful ones.
    fn skip_graceful(&mut self, s: Stopping, now: Instant, out: &mut Vec<Action>) {
        let fast = self
            .settings
            .stop_plan
            .steps
            .iter()
            .position(|st| st.signal != Signal::SIGQUIT)
            .unwrap_or(0);
        if s.step < fast {
            warn!("second stop signal: stopping FPM fast");
            self.apply_step(fast, now, out);
        }
    }

    fn check_stopped(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Stopping(s) = self.phase else {
            return;
        };
        let fpm_gone = self.masters.is_empty() && self.drains.is_empty();
        let last = self.settings.stop_plan.steps.len().saturating_sub(1);
        let exhausted = (s.step >= last && s.deadline.expired_at(now)) || s.limit.expired_at(now);
        let code = if fpm_gone && (self.no_children || exhausted) {
            if !self.no_children {
                warn!("processes left behind by PHP requests survived the stop plan");
            }
            s.code
        } else if exhausted {
            error!(
                masters = self.masters.len(),
                workers = self.tracked_workers().count(),
                "FPM processes still alive after the whole stop plan; exiting anyway"
            );
            ExitCode::Timeout
        } else {
            return;
        };
        let text = match code {
            ExitCode::Ok => "FPM stopped; supervisor exiting".to_string(),
            ExitCode::Timeout => format!(
                "FPM processes were still alive after the signal plan {} (or the stop's --timeout); supervisor exiting",
                self.settings.stop_plan
            ),
            other => format!("supervisor exiting: {}", other.meaning()),
        };
        self.answer_waiting(code, &text, out);
        self.phase = Phase::Exited(code);
        out.push(Action::Exit(code));
    }

    fn answer_waiting(&mut self, code: ExitCode, text: &str, out: &mut Vec<Action>) {
        for conn in self.waiting.drain(..) {
            out.push(reply(conn, code, text));
        }
    }
}

fn hung_deadline_of(m: &Master) -> Option<Deadline> {
    let limit = m.hung_after?;
    let since = m.last_notify.or(m.ready_at)?;
    Some(Deadline::after_from(since, limit))
}

fn signal_master(master: MasterNo, id: ProcId, signal: Signal) -> Action {
    Action::Signal {
        target: Target::Master { master, id },
        signal,
    }
}

fn reply(conn: ConnId, code: ExitCode, text: &str) -> Action {
    Action::Reply {
        conn,
        answer: Answer::Done(code, text.to_string()),
    }
}

/// FPM's periodic status says no worker is idle (`..., idle: 0, ...`): a failed check then
/// means "saturated", not "hung".
pub fn is_saturated(status: Option<&str>) -> bool {
    let Some(s) = status else { return false };
    s.split(',').any(|part| {
        part.trim()
            .strip_prefix("idle:")
            .is_some_and(|n| n.trim() == "0")
    })
}
