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

use super::policy::{CrashDecision, CrashTracker, HealthTracker};
use crate::deadline::Deadline;
use crate::exit::ExitCode;
use crate::procs::ProcId;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

mod events;
mod requests;
mod stopping;
#[cfg(test)]
mod tests;
mod timers;

pub use events::*;

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
    why: Why,
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
    restart_reason: RestartReason,
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
                why: Why::Adopted,
            },
        );
        let mut out = Vec::new();
        m.spawn(Role::Replacement, Why::Adopted, now, &mut out);
        out.push(Action::Tally(Tally::Restart(RestartReason::Takeover)));
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
            restart_reason: RestartReason::Requested,
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

    /// True when nothing is under way: one master serves and no other master, drain, check,
    /// config load, worker listing or waiting request is pending. (The driver then gives
    /// back the pages that getting here touched: `supervise::resident`.)
    pub fn settled(&self) -> bool {
        self.phase == Phase::Serving
            && self.masters.len() == 1
            && self
                .masters
                .values()
                .all(|m| m.role == Role::Serving && !m.check_in_flight)
            && self.drains.is_empty()
            && self.waiting.is_empty()
            && self.deferred_orphans.is_empty()
            && self.listing.is_empty()
            && !self.loading
    }

    /// True when `event` is the idle loop's own periodic work: a timer, a health check's
    /// result, or a serving master's heartbeat (FPM repeats `READY=1` with its `STATUS=`
    /// every `systemd_interval`). Anything else may run code that waiting does not need.
    pub fn is_idle_work(&self, event: &Event) -> bool {
        match event {
            Event::Timer => true,
            Event::Checked { purpose, .. } => *purpose == Purpose::Health,
            Event::Notify { master, .. } => self
                .masters
                .get(master)
                .is_some_and(|m| m.role == Role::Serving),
            _ => false,
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
                why,
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
                out.push(Action::RevertConfig);
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
                out.push(Action::Tally(Tally::Crash));
                self.health_at = None;
                if let Some(r) = self.find(Role::Replacement) {
                    // A requested restart is under way: its master takes over.
                    if let Some(rm) = self.masters.get_mut(&r) {
                        rm.role = Role::Starting;
                    }
                    self.phase = Phase::Starting;
                    self.restarts += 1;
                    out.push(Action::Tally(Tally::Restart(RestartReason::Crash)));
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
                out.push(Action::RevertConfig);
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
                out.push(Action::Tally(Tally::Restart(RestartReason::Crash)));
                let max = self.settings.policy.max_restarts;
                if after.is_zero() {
                    info!(crashes, max, reason = "crash", "restarting FPM now");
                } else {
                    let delay_ms = after.as_millis() as u64;
                    info!(
                        crashes,
                        max,
                        delay_ms,
                        reason = "crash",
                        "restarting FPM in delay_ms (backoff)"
                    );
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
            "FPM crashed too often within the window: giving up"
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
        let took = now.saturating_duration_since(m.started);
        let took_ms = took.as_millis() as u64;
        let replacement = m.why != Why::First;
        let m_why = m.why;
        self.phase = Phase::Serving;
        self.health.reset();
        self.saturated = false;
        self.health_at = Some(Deadline::after_from(now, self.settings.health_interval));
        let text = match old.and_then(|g| self.masters.get(&g).map(|o| (g, o))) {
            Some((og, o)) => {
                let old_pid = o.id.map(|id| id.pid).unwrap_or(0);
                info!(
                    pid,
                    old_pid,
                    duration_ms = took_ms,
                    via,
                    reason = self.restart_reason_of(m_why),
                    "FPM restarted"
                );
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
                info!(pid, duration_ms = took_ms, via, "FPM ready");
                format!("FPM master {pid} ready in {took_ms} ms")
            }
        };
        // READY=1 before the housekeeping below: the orphans' /proc scan and pidfds do not
        // delay the news that FPM serves again.
        out.push(Action::NotifySystemd(format!(
            "READY=1\nSTATUS=FPM master {pid} ready"
        )));
        out.push(Action::DropUnusedSockets);
        self.release_orphans(out);
        self.answer_waiting(ExitCode::Ok, &text, out);
        if replacement {
            out.push(Action::Tally(Tally::RestartTook(took)));
        }
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
                signal = signal.as_str(),
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

    /// The `reason` field of a restart's events.
    fn restart_reason_of(&self, why: Why) -> &'static str {
        match why {
            Why::First => "first",
            Why::Crash => RestartReason::Crash.as_str(),
            Why::Requested => self.restart_reason.as_str(),
            Why::Adopted => RestartReason::Takeover.as_str(),
        }
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
