//! What became of a start whose `php-fpm -D` launcher was cut off at its limit.
//!
//! php-fpm's launcher forks the daemon (the future master) early in its init and returns only
//! once that daemon reports its init finished, which is before the daemon forks any worker.
//! A launcher cut off at its limit may therefore leave behind a master that is still starting
//! (a slow filesystem, an error log that is a pipe nobody reads) or hung, already holding the
//! pool sockets and the pid file. Such a master is looked for (identity-proven, as everywhere)
//! and named in the error, with what to do next.
//!
//! The launcher's child is identified (PID and start time) before the launcher is killed, so a
//! daemon that discovery does not prove to be this config's master is still named (and left
//! alone: fpmctl signals only what it proves).
//!
//! A master found there (proven by discovery) is **left running** by a start: it was started with nothing else
//! serving, so stopping it could only keep the site down, while left alone it may still come
//! up on its own (it does not need its launcher). It does not block what comes next: fpmctl
//! recognises it as this config's master, so `ping` checks it, `restart` replaces it, `stop`
//! stops it, a further `start` reports it running but not ready instead of starting a second
//! FPM beside it, and `ensure --restart-unready` replaces it. A hand-over is different: there
//! the old master still serves, so the half-started new one is retired (see
//! `lifecycle::restart`).

use crate::config::FpmConfig;
use crate::discovery::{self, Snapshot};
use crate::error::Error;
use crate::procs::ProcId;
use std::path::Path;

/// What a look after the cut-off found. Data, so the wording is tested apart from the look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A proven master of this config.
    Master {
        /// Its PID.
        pid: i32,
        /// How many workers it had.
        workers: usize,
        /// Whether the pid file names it (FPM writes it once its sockets are bound); `None`
        /// when the config has no pid file.
        in_pid_file: Option<bool>,
    },
    /// The daemon the launcher forked still runs, but is not proven to be this config's
    /// master.
    Unrecognised {
        /// Its PID.
        pid: i32,
    },
    /// A process that looks like this config's master but is not proven to be it.
    Unproven {
        /// Its PID.
        pid: i32,
        /// Why it is not proven.
        doubt: String,
    },
    /// Nothing of this config runs.
    Nothing,
}

/// What `snap`, taken after the cut-off, found; `daemon` is the launcher's child when it
/// still runs.
pub fn found_in(snap: &Snapshot, daemon: Option<i32>) -> Found {
    if let Some(m) = &snap.master {
        return Found::Master {
            pid: m.pid(),
            workers: snap
                .workers
                .iter()
                .filter(|w| w.proc.ppid == m.pid())
                .count(),
            in_pid_file: (snap.pid_file != discovery::PidFile::NotConfigured)
                .then(|| snap.pid_file.pid() == Some(m.pid())),
        };
    }
    if let Some(l) = snap.unverified_masters().next() {
        return Found::Unproven {
            pid: l.proc.pid(),
            doubt: l.doubt.to_string(),
        };
    }
    match daemon {
        Some(pid) => Found::Unrecognised { pid },
        None => Found::Nothing,
    }
}

/// `daemon`'s PID unless it is proven gone (an unreadable entry may be alive).
pub fn still_running(daemon: Option<ProcId>) -> Option<i32> {
    daemon.filter(|d| !crate::procs::is_gone(*d)).map(|d| d.pid)
}

/// Looks for what the cut-off launcher left and turns `detail` (the launcher's timeout) into
/// the error a start reports: [`Error::Timeout`], naming the master and what to do.
pub fn after_start(cfg: &FpmConfig, detail: &str, daemon: Option<ProcId>) -> Error {
    let found = found_in(&discovery::discover(cfg), still_running(daemon));
    match &found {
        Found::Master { pid, workers, .. } => tracing::warn!(
            pid = *pid,
            workers = *workers,
            "launcher cut off; its master was left running"
        ),
        Found::Unproven { pid, .. } | Found::Unrecognised { pid } => tracing::warn!(
            pid = *pid,
            "launcher cut off; what it left is not proven to be the master"
        ),
        Found::Nothing => tracing::warn!("launcher cut off; no master of this config runs"),
    }
    Error::Timeout(start_message(detail, &cfg.path, &found))
}

/// The message of a start whose launcher was cut off. Pure.
pub fn start_message(what: &str, config: &Path, found: &Found) -> String {
    let c = config.display();
    match found {
        Found::Master {
            pid,
            workers,
            in_pid_file,
        } => {
            let state = match (workers, in_pid_file) {
                (0, Some(false)) => {
                    "it has not yet bound its sockets and written its pid file".into()
                }
                (0, Some(true)) => "it holds its sockets but has no worker yet".into(),
                (0, None) => "it has no worker yet".into(),
                (n, _) => format!("it has {n} worker(s) now"),
            };
            format!(
                "{what}: its master PID {pid} of {c} did not report its start finished; {state}. \
                 It was left running, as it may still come up: `fpmctl -c {c} ping` checks it, \
                 `fpmctl -c {c} restart` replaces it, `fpmctl -c {c} stop` stops it"
            )
        }
        Found::Unrecognised { pid } => format!(
            "{what}: the daemon PID {pid} it had forked still runs but is not proven to be the \
             master of {c}; it was left alone (`fpmctl -c {c} status` shows what runs)"
        ),
        Found::Unproven { pid, doubt } => format!(
            "{what}: PID {pid} looks like the master of {c} but {doubt}; it was left alone \
             (`fpmctl -c {c} status` shows it)"
        ),
        Found::Nothing => format!(
            "{what}: no master of {c} runs, nothing was started (FPM's error log may say why)"
        ),
    }
}

/// The clause a failed hand-over adds about the new master its launcher left behind: its
/// PID and whether it was stopped (its error otherwise). Pure.
pub fn handover_clause(left: Option<(i32, Result<(), String>)>) -> String {
    match left {
        None => "no new master was left behind".into(),
        Some((pid, Ok(()))) => format!("the new master PID {pid} it had started was stopped"),
        Some((pid, Err(e))) => format!(
            "the new master PID {pid} it had started could not be stopped ({e}); \
             `fpmctl status` shows it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "/usr/sbin/php-fpm -D did not return within 5.0s";

    #[test]
    fn a_master_without_workers_is_named_and_left_running() {
        let m = start_message(
            WHAT,
            Path::new("/etc/fpm.conf"),
            &Found::Master {
                pid: 42,
                workers: 0,
                in_pid_file: Some(true),
            },
        );
        assert!(m.starts_with(WHAT), "{m}");
        assert!(m.contains("master PID 42"), "{m}");
        assert!(m.contains("no worker yet"), "{m}");
        assert!(m.contains("left running"), "{m}");
        assert!(m.contains("`fpmctl -c /etc/fpm.conf ping`"), "{m}");
        assert!(m.contains("`fpmctl -c /etc/fpm.conf restart`"), "{m}");
    }

    #[test]
    fn a_master_before_its_pid_file_is_said_to_be_earlier_in_its_start() {
        let m = start_message(
            WHAT,
            Path::new("/c"),
            &Found::Master {
                pid: 7,
                workers: 0,
                in_pid_file: Some(false),
            },
        );
        assert!(m.contains("not yet bound its sockets"), "{m}");
    }

    #[test]
    fn nothing_found_says_nothing_was_started() {
        let m = start_message(WHAT, Path::new("/c"), &Found::Nothing);
        assert!(
            m.contains("no master of /c runs, nothing was started"),
            "{m}"
        );
    }

    #[test]
    fn an_unrecognised_daemon_is_named_and_left_alone() {
        let m = start_message(WHAT, Path::new("/c"), &Found::Unrecognised { pid: 11 });
        assert!(m.contains("daemon PID 11"), "{m}");
        assert!(m.contains("left alone"), "{m}");
    }

    #[test]
    fn an_unproven_lookalike_is_named_and_never_claimed() {
        let m = start_message(
            WHAT,
            Path::new("/c"),
            &Found::Unproven {
                pid: 9,
                doubt: "runs another program".into(),
            },
        );
        assert!(m.contains("PID 9 looks like the master"), "{m}");
        assert!(m.contains("left alone"), "{m}");
        assert!(!m.contains("restart"), "{m}");
    }

    #[test]
    fn a_handover_names_the_new_master_and_its_fate() {
        assert_eq!(
            handover_clause(Some((5, Ok(())))),
            "the new master PID 5 it had started was stopped"
        );
        assert!(
            handover_clause(Some((5, Err("EPERM".into()))))
                .contains("could not be stopped (EPERM)")
        );
        assert_eq!(handover_clause(None), "no new master was left behind");
    }
}
