//! Stopping one config's FPM: an explicit signal plan (graceful first, escalating after
//! each step's grace), applied to the master, and to workers and orphans where no master can
//! pass the signal on. It returns only when every process of the config is gone (zombies
//! count as gone) or the plan is exhausted.
//!
//! Who gets each signal:
//! - the master (and any other master of the same config), always;
//! - orphaned workers, always (nobody else will tell them);
//! - workers of a live master only on SIGKILL, because a master killed that way leaves them
//!   behind holding the listen sockets (a hard-killed master's orphans).
//!
//! Every signal is sent with [`crate::signals::send_verified`], re-checking identity first.

use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery::{self, PidFile, Snapshot};
use crate::error::{Error, Result};
use crate::procs::{ProcId, ProcInfo};
use crate::signals::{self, Sent};
use nix::sys::signal::Signal;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long FPM's master goes on after `process_control_timeout` when it stops or reloads:
/// it then sends SIGTERM to the workers left, SIGKILL a second later, and waits one more
/// second (fpm_pctl.c, fpm_pctl_action_next).
pub const FPM_ESCALATION: Duration = Duration::from_secs(2);

/// One step of a plan: a signal and how long to wait after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The signal.
    pub signal: Signal,
    /// How long to wait for everything to exit before the next step.
    pub grace: Duration,
}

/// Signals tried in order, like `QUIT:20s,TERM:5s,KILL:2s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPlan {
    /// At least one step.
    pub steps: Vec<Step>,
}

impl Default for SignalPlan {
    fn default() -> Self {
        "QUIT:20s,TERM:5s,KILL:2s"
            .parse()
            .expect("the default plan parses")
    }
}

impl SignalPlan {
    /// The default plan for `cfg`: QUIT:20s,TERM:5s,KILL:2s, with the QUIT grace raised to
    /// `process_control_timeout` + 2s when that is longer. FPM's master waits that long for
    /// busy workers after SIGQUIT; escalating earlier would cut requests FPM lets finish.
    pub fn for_config(cfg: &FpmConfig) -> SignalPlan {
        let mut plan = SignalPlan::default();
        let fpm_grace = cfg
            .global
            .process_control_timeout
            .saturating_add(FPM_ESCALATION);
        if let Some(quit) = plan.steps.first_mut() {
            quit.grace = quit.grace.max(fpm_grace);
        }
        plan
    }

    /// The sum of the graces (saturating).
    pub fn total(&self) -> Duration {
        // Saturating: graces come from the command line and may be absurdly long.
        self.steps
            .iter()
            .fold(Duration::ZERO, |sum, s| sum.saturating_add(s.grace))
    }

    /// The overall limit that goes with the plan: its total plus 3s.
    pub fn default_timeout(&self) -> Duration {
        self.total().saturating_add(Duration::from_secs(3))
    }
}

impl FromStr for SignalPlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut steps = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, grace) = part
                .split_once(':')
                .ok_or_else(|| format!("'{part}': a step is SIGNAL:DURATION, like QUIT:20s"))?;
            let upper = name.trim().to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            let signal = match bare {
                "QUIT" => Signal::SIGQUIT,
                "TERM" => Signal::SIGTERM,
                "INT" => Signal::SIGINT,
                "KILL" => Signal::SIGKILL,
                _ => {
                    return Err(format!(
                        "'{name}': the signals that stop FPM are QUIT (graceful), TERM, INT and KILL"
                    ));
                }
            };
            let grace = crate::deadline::parse_duration(grace.trim())
                .map_err(|e| format!("'{part}': {e}"))?;
            steps.push(Step { signal, grace });
        }
        if steps.is_empty() {
            return Err("the signal plan is empty; example: QUIT:20s,TERM:5s,KILL:2s".into());
        }
        Ok(SignalPlan { steps })
    }
}

impl fmt::Display for SignalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    signals::short_name(s.signal),
                    humantime::format_duration(s.grace)
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// What a stop did.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    /// Nothing of this config was running.
    pub already_stopped: bool,
    /// The master that was stopped.
    pub master: Option<i32>,
    /// Every PID that was stopped.
    pub stopped: Vec<i32>,
    /// Each signal sent and to which PIDs.
    pub signals: Vec<(String, Vec<i32>)>,
    /// How long it took.
    pub elapsed: Duration,
    /// Addresses still held by processes that are not this FPM (never signalled).
    pub foreign_holders: Vec<String>,
    /// A stale pid file that was removed.
    pub removed_pid_file: Option<String>,
    /// The last look at the system, taken when everything was gone.
    pub after: Option<Snapshot>,
}

/// Stops everything of `cfg` with `plan`, within `timeout` (which may cut the plan short;
/// the error then names the steps that really ran).
pub fn stop(cfg: &FpmConfig, plan: &SignalPlan, timeout: Duration) -> Result<StopReport> {
    stop_from(cfg, discovery::discover(cfg), plan, timeout)
}

/// [`stop`] starting from `snap`, a look the caller has just taken (so the process table is
/// not read again before the first signal; every signal still re-checks its target).
pub fn stop_from(
    cfg: &FpmConfig,
    snap: Snapshot,
    plan: &SignalPlan,
    timeout: Duration,
) -> Result<StopReport> {
    let started = Instant::now();
    let hard_deadline = Deadline::after_from(started, timeout);
    let mut snap = snap;
    let mut seen: HashSet<ProcId> = HashSet::new();
    // A master an interrupted restart left stopped ignores every signal but SIGKILL: its
    // retirement is finished first (its workers get the first step's grace), and the rest
    // is stopped as usual.
    let first_grace = plan.steps.first().map_or(Duration::ZERO, |s| s.grace);
    let finished =
        crate::handover::interrupted::finish(cfg, &snap, hard_deadline.slice(first_grace));
    if !finished.is_empty() {
        seen.extend(finished.iter().map(|f| f.found.master));
        snap = discovery::discover(cfg);
    }
    let mut report = StopReport {
        master: snap.master.as_ref().map(ProcInfo::pid),
        ..StopReport::default()
    };
    if snap.master.is_none() {
        refuse_unverified(cfg, &snap)?;
    }
    for l in &snap.lookalikes {
        info!(
            pid = l.proc.pid(),
            program = %l.proc.program(),
            doubt = %l.doubt,
            "looks like this config's FPM but is not proven, so it is not signalled"
        );
    }
    if snap.is_empty() {
        report.already_stopped = true;
    } else {
        describe(&snap);
    }
    let mut ran: Vec<Signal> = Vec::new();
    let mut cut_short = false;

    'plan: for (i, step) in plan.steps.iter().enumerate() {
        if snap.is_empty() {
            break;
        }
        if i > 0 && hard_deadline.expired() {
            cut_short = true;
            break;
        }
        seen.extend(snap.all_processes().iter().map(|p| p.id));
        ran.push(step.signal);
        let sent = send_step(cfg, &snap, step.signal);
        if !sent.is_empty() {
            report
                .signals
                .push((signals::short_name(step.signal).to_string(), sent));
        }
        let step_deadline = hard_deadline.slice(step.grace);
        let mut last_note = Instant::now();
        loop {
            let ids: Vec<ProcId> = snap.all_processes().iter().map(|p| p.id).collect();
            signals::wait_gone(&ids, step_deadline.slice(Duration::from_millis(250)));
            snap = discovery::discover(cfg);
            if snap.is_empty() {
                break 'plan;
            }
            // Processes that appeared since the step began get the step's signal too.
            let new: Vec<&ProcInfo> = snap
                .all_processes()
                .into_iter()
                .filter(|p| !seen.contains(&p.id))
                .collect();
            if !new.is_empty() {
                seen.extend(new.iter().map(|p| p.id));
                send_step(cfg, &snap, step.signal);
            }
            if step_deadline.expired() {
                if hard_deadline.expired() {
                    cut_short = i + 1 < plan.steps.len();
                    break 'plan;
                }
                break;
            }
            if last_note.elapsed() >= Duration::from_secs(1) {
                last_note = Instant::now();
                let w = Waiting::of(&snap);
                info!(
                    master = w.master,
                    workers = w.workers,
                    orphans = w.orphans,
                    elapsed_ms = started_ms(started),
                    "waiting: FPM processes still running"
                );
            }
        }
    }

    report.elapsed = started.elapsed();
    report.stopped = seen.iter().map(|id| id.pid).collect();
    report.stopped.sort_unstable();
    if !snap.is_empty() {
        let left: Vec<String> = snap
            .all_processes()
            .iter()
            .map(|p| format!("{} ({})", p.pid(), p.title))
            .collect();
        let how = if cut_short {
            cut_short_note(plan, &ran, timeout)
        } else {
            format!("after the signal plan {plan}")
        };
        return Err(Error::Timeout(format!(
            "still running {how} ({:.2}s): {}",
            report.elapsed.as_secs_f64(),
            left.join(", ")
        )));
    }

    for addr in &snap.addresses {
        for h in addr.foreign() {
            let note = format!(
                "{} is held by PID {} ({}), which is not this FPM",
                addr.addr,
                h.proc.pid(),
                h.proc.program()
            );
            warn!("{note}");
            report.foreign_holders.push(note);
        }
    }
    // A master that was killed could not remove its pid file; junk in it names nobody.
    if let PidFile::Stale { path, pid, .. } = &snap.pid_file
        && snap.unverified_masters().next().is_none()
        && pid.is_none_or(|pid| report.stopped.contains(&pid) || crate::procs::pid_is_gone(pid))
        && remove_pid_file(path)
    {
        match pid {
            Some(pid) => info!(pid, path = %path.display(), "removed stale pid file"),
            None => info!(path = %path.display(), "removed pid file, which held no PID"),
        }
        report.removed_pid_file = Some(path.display().to_string());
    }
    if !report.already_stopped {
        info!(duration_ms = report.elapsed.as_millis() as u64, "stopped");
    }
    if report.removed_pid_file.is_some() {
        snap.pid_file = PidFile::Missing(snap.pid_file.path().map(Into::into).unwrap_or_default());
    }
    report.after = Some(snap);
    Ok(report)
}

/// How a timeout cut `plan` short after the steps in `ran`: `the --timeout of 0s cut the
/// signal plan QUIT:20s,TERM:5s,KILL:2s short after QUIT (TERM, KILL not sent)`.
fn cut_short_note(plan: &SignalPlan, ran: &[Signal], timeout: Duration) -> String {
    let names = |sigs: &mut dyn Iterator<Item = Signal>| {
        sigs.map(signals::short_name).collect::<Vec<_>>().join(", ")
    };
    let sent = names(&mut ran.iter().copied());
    let skipped = names(&mut plan.steps.iter().skip(ran.len()).map(|s| s.signal));
    let after = if sent.is_empty() {
        "before any signal".to_string()
    } else {
        format!("after {sent}")
    };
    format!(
        "because the --timeout of {} cut the signal plan {plan} short {after} ({skipped} not sent)",
        humantime::format_duration(timeout)
    )
}

/// Refuses to call a config stopped while a master that looks like its own runs unproven.
fn refuse_unverified(cfg: &FpmConfig, snap: &Snapshot) -> Result<()> {
    let doubts: Vec<String> = snap
        .unverified_masters()
        .map(|l| format!("PID {} {}", l.proc.pid(), l.doubt))
        .collect();
    if doubts.is_empty() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "a master of {} runs but is not proven to be this FPM, so it was not signalled: {}",
        cfg.path.display(),
        doubts.join("; ")
    )))
}

/// Removes a pid file, never through a symlink (only a regular file is removed).
fn remove_pid_file(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::remove_file(path).is_ok()
}

fn describe(snap: &Snapshot) {
    if let Some(m) = &snap.master {
        info!(pid = m.pid(), workers = snap.workers.len(), "found master");
    }
    if !snap.orphans.is_empty() {
        let pids: Vec<String> = snap
            .orphans
            .iter()
            .map(|w| w.proc.pid().to_string())
            .collect();
        info!(
            orphans = snap.orphans.len(),
            pids = pids.join(" "),
            "found orphaned workers of a dead master"
        );
    }
}

/// What a stop still waits for.
struct Waiting {
    master: Option<i32>,
    workers: usize,
    orphans: usize,
}

impl Waiting {
    fn of(snap: &Snapshot) -> Waiting {
        Waiting {
            master: snap.master.as_ref().map(|m| m.pid()),
            workers: snap.workers.len(),
            orphans: snap.orphans.len(),
        }
    }
}

fn started_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// Sends `sig` to whoever should get it at this step; returns the PIDs signalled.
fn send_step(cfg: &FpmConfig, snap: &Snapshot, sig: Signal) -> Vec<i32> {
    let name = sig.as_str();
    let mut sent = Vec::new();
    let is_master = |p: &ProcInfo| discovery::is_master_of(p, cfg);
    let is_pool = |p: &ProcInfo| discovery::is_pool_process_of(p, cfg);

    for m in snap.master.iter().chain(snap.other_masters.iter()) {
        if deliver(m, sig, &is_master) {
            info!(pid = m.pid(), signal = name, "stopping master");
            sent.push(m.pid());
        }
    }
    let mut direct: Vec<&ProcInfo> = snap.orphans.iter().map(|w| &w.proc).collect();
    if sig == Signal::SIGKILL || (snap.master.is_none() && snap.other_masters.is_empty()) {
        direct.extend(snap.workers.iter().map(|w| &w.proc));
    }
    let mut to_workers = Vec::new();
    for w in direct {
        if deliver(w, sig, &is_pool) {
            to_workers.push(w.pid());
        }
    }
    if !to_workers.is_empty() {
        let list: Vec<String> = to_workers.iter().map(i32::to_string).collect();
        info!(
            signal = name,
            workers = to_workers.len(),
            pids = list.join(" "),
            "signalling workers directly"
        );
        sent.extend(to_workers);
    }
    sent
}

fn deliver(p: &ProcInfo, sig: Signal, check: &dyn Fn(&ProcInfo) -> bool) -> bool {
    match signals::send_verified(p.id, sig, check) {
        Ok(Sent::Delivered) => true,
        Ok(Sent::Gone) => false,
        Ok(Sent::Refused) => {
            warn!(
                pid = p.pid(),
                signal = sig.as_str(),
                "no longer the process fpmctl identified; not signalled"
            );
            false
        }
        Err(e) => {
            warn!(pid = p.pid(), signal = sig.as_str(), error = %e, "could not signal");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_with_an_absurd_grace_does_not_overflow_its_total() {
        // Parsing refuses such graces (huge_graces_are_refused_and_sums_saturate); a plan
        // built in code must still not overflow.
        let huge = Duration::from_secs(u64::MAX);
        let plan = SignalPlan {
            steps: vec![
                Step {
                    signal: Signal::SIGQUIT,
                    grace: huge,
                },
                Step {
                    signal: Signal::SIGKILL,
                    grace: huge,
                },
            ],
        };
        assert_eq!(plan.total(), Duration::MAX);
        assert_eq!(plan.default_timeout(), Duration::MAX);
    }

    #[test]
    fn parses_and_prints_plans() {
        let plan: SignalPlan = "quit:20s, SIGTERM:5s,KILL:2s".parse().unwrap();
        assert_eq!(plan.steps.len(), 3);
        assert_eq!(plan.steps[0].signal, Signal::SIGQUIT);
        assert_eq!(plan.steps[1].grace, Duration::from_secs(5));
        assert_eq!(plan.to_string(), "QUIT:20s,TERM:5s,KILL:2s");
        assert_eq!(SignalPlan::default(), plan);
    }

    #[test]
    fn the_default_plan_waits_at_least_as_long_as_fpm_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php-fpm.conf");
        let write = |pct: &str| {
            std::fs::write(
                &path,
                format!("[global]\nprocess_control_timeout = {pct}\n[www]\nlisten = 9999\npm = static\npm.max_children = 1\n"),
            )
            .unwrap();
            crate::config::load(&path).unwrap()
        };
        let plan = SignalPlan::for_config(&write("10s"));
        assert_eq!(plan, SignalPlan::default());
        assert_eq!(plan.default_timeout(), Duration::from_secs(30));
        let plan = SignalPlan::for_config(&write("1m"));
        assert_eq!(plan.to_string(), "QUIT:1m 2s,TERM:5s,KILL:2s");
        assert_eq!(plan.default_timeout(), Duration::from_secs(72));
    }

    #[test]
    fn a_cut_short_plan_names_what_ran_and_what_did_not() {
        let plan = SignalPlan::default();
        assert_eq!(
            cut_short_note(&plan, &[Signal::SIGQUIT], Duration::ZERO),
            "because the --timeout of 0s cut the signal plan QUIT:20s,TERM:5s,KILL:2s short after QUIT (TERM, KILL not sent)"
        );
        assert!(
            cut_short_note(
                &plan,
                &[Signal::SIGQUIT, Signal::SIGTERM],
                Duration::from_secs(21)
            )
            .contains("after QUIT, TERM (KILL not sent)")
        );
    }

    #[test]
    fn huge_graces_are_refused_and_sums_saturate() {
        assert!(
            "QUIT:9223372036854775807s"
                .parse::<SignalPlan>()
                .unwrap_err()
                .contains("longest")
        );
        let plan: SignalPlan = "QUIT:7d,TERM:7d,KILL:7d".parse().unwrap();
        assert_eq!(plan.total(), Duration::from_secs(21 * 24 * 3600));
    }

    #[test]
    fn rejects_bad_plans_with_a_reason() {
        assert!("".parse::<SignalPlan>().unwrap_err().contains("empty"));
        assert!(
            "QUIT"
                .parse::<SignalPlan>()
                .unwrap_err()
                .contains("SIGNAL:DURATION")
        );
        assert!("HUP:1s".parse::<SignalPlan>().unwrap_err().contains("HUP"));
        assert!(
            "TERM:soon"
                .parse::<SignalPlan>()
                .unwrap_err()
                .contains("soon")
        );
    }
}
