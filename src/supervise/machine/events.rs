//! The machine's vocabulary: what the driver reports ([`Event`]) and what it must do
//! ([`Action`]), with the settings and names both sides share.

use super::super::policy::RestartPolicy;
use crate::exit::ExitCode;
use crate::procs::ProcId;
use crate::stop::SignalPlan;
use nix::sys::signal::Signal;
use std::time::Duration;
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

impl Sig {
    /// The signal's name, `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Int => "SIGINT",
            Sig::Quit => "SIGQUIT",
            Sig::Hup => "SIGHUP",
            Sig::Usr1 => "SIGUSR1",
            Sig::Usr2 => "SIGUSR2",
        }
    }
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
    /// A deadline from [`Machine::next_wakeup`](super::Machine::next_wakeup) may have passed.
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

/// Why FPM was restarted (the `reason` label of `fpmctl_fpm_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestartReason {
    /// Asked for through the control socket (`fpmctl restart`).
    Requested,
    /// SIGHUP or SIGUSR2 to the supervisor.
    Reload,
    /// The serving master exited (or could not be started).
    Crash,
    /// Failed health checks, or a master that stopped sending its status.
    Unhealthy,
    /// A master left by a supervisor that died, replaced at takeover.
    Takeover,
}

impl RestartReason {
    /// Every reason, so each is exported from zero.
    pub const ALL: [RestartReason; 5] = [
        RestartReason::Requested,
        RestartReason::Reload,
        RestartReason::Crash,
        RestartReason::Unhealthy,
        RestartReason::Takeover,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Requested => "requested",
            RestartReason::Reload => "reload",
            RestartReason::Crash => "crash",
            RestartReason::Unhealthy => "unhealthy",
            RestartReason::Takeover => "takeover",
        }
    }
}

/// Something the supervisor counts for its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// A restart began.
    Restart(RestartReason),
    /// The serving (or starting) master exited unasked.
    Crash,
    /// A replacement master became ready this long after it was spawned.
    RestartTook(Duration),
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
    /// A replacement did not take over: go back to the config the serving master runs, with
    /// its socket permissions (mode, owner, ACLs) and without the sockets only the new config
    /// wanted. Nothing to do when the replacement loaded no config (a health restart).
    RevertConfig,
    /// Answer a control connection (and close it).
    Reply {
        /// The connection.
        conn: ConnId,
        /// The answer.
        answer: Answer,
    },
    /// Tell the service manager (sd_notify text, `KEY=VALUE` lines).
    NotifySystemd(String),
    /// Count this in the supervisor's metrics.
    Tally(Tally),
    /// Exit with this code (after cleaning up).
    Exit(ExitCode),
}
