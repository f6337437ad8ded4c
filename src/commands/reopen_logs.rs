//! `fpmctl reopen-logs`: logrotate's postrotate. SIGUSR1 goes to the verified master only
//! (through [`signals::send_verified`], like every other signal), never to a PID a pid file
//! merely names; then FPM's own confirmation, `NOTICE: error log file re-opened`, is awaited
//! in the error log at its configured path (the new file, when logrotate moved the old one).
//! FPM not running is exit 3, so a postrotate on a stopped FPM says so instead of signalling
//! whatever the pid file names.

use super::{Ctx, Outcome};
use crate::cli::ReopenLogsArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::signals::{self, Sent};
use nix::sys::signal::Signal;
use serde_json::json;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// What FPM writes into the (new) error log once it re-opened it (fpm_events.c).
const REOPENED: &str = "NOTICE: error log file re-opened";
/// What it writes (into the old file, the new one could not be opened) when that failed.
const REOPEN_FAILED: &str = "unable to re-opened error log file";

pub(super) fn run(ctx: &Ctx, args: &ReopenLogsArgs) -> Result<Outcome> {
    let cfg = &ctx.cfg;
    // A supervisor holds the config's lock for its lifetime; it does not mind a SIGUSR1 to
    // its master (the identity check below still applies). Otherwise wait for a restart in
    // progress, so its new master is the one signalled.
    let supervised = crate::supervise::control::socket_path(&cfg.path).exists()
        && crate::supervise::control::request(
            &cfg.path,
            &crate::supervise::control::Request::new("status"),
            Duration::from_secs(3),
        )
        .ok()
        .flatten()
        .is_some();
    let _lock = if supervised { None } else { Some(ctx.lock()?) };
    let started = Instant::now();
    let snap = discovery::discover(cfg);
    let Some(master) = snap.master.clone() else {
        if let Some(l) = snap.unverified_masters().next() {
            return Err(Error::Other(format!(
                "PID {} looks like the master of {}, but {}; nothing was signalled",
                l.proc.pid(),
                cfg.path.display(),
                l.doubt
            )));
        }
        let stale = match &snap.pid_file {
            discovery::PidFile::Stale { path, reason, .. } => {
                format!(
                    "; the pid file {} is stale ({reason}) and was not used",
                    path.display()
                )
            }
            _ => String::new(),
        };
        return Err(Error::NotRunning(format!(
            "FPM {} is not running; nothing was signalled{stale}",
            cfg.path.display()
        )));
    };
    // FPM confirms at NOTICE level: a higher log_level hides the line.
    let notices = matches!(cfg.global.log_level.as_str(), "notice" | "debug");
    let log = ErrorLog::new(&cfg.global.error_log).filter(|_| notices);
    let before = log.as_ref().map(|l| l.mark());
    match signals::send_verified(master.id, Signal::SIGUSR1, |p| {
        discovery::is_master_of(p, cfg)
    }) {
        Ok(Sent::Delivered) => info!(
            pid = master.pid(),
            signal = "USR1",
            "asked the master to re-open its logs"
        ),
        Ok(Sent::Gone | Sent::Refused) => {
            return Err(Error::NotRunning(format!(
                "master {} of {} exited before SIGUSR1 reached it; nothing was signalled",
                master.pid(),
                cfg.path.display()
            )));
        }
        Err(e) => {
            return Err(Error::Other(format!(
                "could not signal master {}: {e}",
                master.pid()
            )));
        }
    }
    let (Some(log), Some(before)) = (log, before) else {
        let why = if notices {
            format!("its error_log is {}, not a file", cfg.global.error_log)
        } else {
            format!(
                "its log_level ({}) hides FPM's notice",
                cfg.global.log_level
            )
        };
        let text = format!(
            "sent SIGUSR1 to master {} of {}; {why}, so the reopen is not confirmed\n",
            master.pid(),
            cfg.path.display(),
        );
        return Ok(Outcome {
            code: ExitCode::Ok,
            json: json!({
                "result": "signalled",
                "master": master.pid(),
                "error_log": crate::lossless::display(&cfg.global.error_log),
                "confirmed": false,
            }),
            text,
            error: None,
        });
    };
    let deadline = Deadline::after(args.timeout);
    let mut pause = Duration::from_millis(5);
    loop {
        match log.since(&before) {
            Seen::Reopened => break,
            Seen::Failed => {
                return Err(Error::Other(format!(
                    "master {} could not re-open its error log {}: see the end of the old file",
                    master.pid(),
                    log.path.display()
                )));
            }
            Seen::Nothing => {}
        }
        if deadline.expired() {
            return Err(Error::Timeout(format!(
                "sent SIGUSR1 to master {}, but after {} no '{REOPENED}' line appeared in {}",
                master.pid(),
                humantime::format_duration(args.timeout),
                log.path.display()
            )));
        }
        debug!(file = %log.path.display(), "waiting for FPM to confirm the reopen");
        std::thread::sleep(pause.min(deadline.remaining()));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    let alive = discovery::discover(cfg)
        .master
        .is_some_and(|m| m.id == master.id);
    if !alive {
        return Err(Error::FpmDied(format!(
            "master {} re-opened its error log {} but is gone now",
            master.pid(),
            log.path.display()
        )));
    }
    Ok(Outcome {
        code: ExitCode::Ok,
        text: format!(
            "master {} of {} re-opened its logs in {:.2}s: {} (FPM confirmed it there)\n",
            master.pid(),
            cfg.path.display(),
            elapsed.as_secs_f64(),
            log.path.display()
        ),
        json: json!({
            "result": "reopened",
            "master": master.pid(),
            "error_log": crate::lossless::json_path(&log.path),
            "confirmed": true,
            "elapsed_ms": elapsed.as_millis() as u64,
        }),
        error: None,
    })
}

/// An error log that is a file (or was: logrotate may have moved it away).
struct ErrorLog {
    path: PathBuf,
}

/// Where the file stood before the signal: its identity and length.
struct Mark {
    file: Option<(u64, u64)>,
    len: u64,
}

enum Seen {
    Reopened,
    Failed,
    Nothing,
}

impl ErrorLog {
    /// `None` for syslog and for anything that is not a regular file (or absent), such as
    /// `/proc/self/fd/2` in a container: there is no file to read the confirmation from.
    fn new(error_log: &str) -> Option<ErrorLog> {
        // The config's text keeps bytes that are not UTF-8 (crate::lossless).
        let path = crate::lossless::to_path(error_log);
        // `/proc/self/...` would name fpmctl's own descriptors, not FPM's.
        if error_log.eq_ignore_ascii_case("syslog")
            || !path.is_absolute()
            || path.starts_with("/proc")
            || path.starts_with("/dev")
        {
            return None;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(ErrorLog { path }),
            Ok(_) => None,
            // Moved away by logrotate: FPM creates it again on reopen.
            Err(_) => Some(ErrorLog { path }),
        }
    }

    fn mark(&self) -> Mark {
        match std::fs::metadata(&self.path) {
            Ok(m) => Mark {
                file: Some((m.dev(), m.ino())),
                len: m.len(),
            },
            Err(_) => Mark { file: None, len: 0 },
        }
    }

    /// What FPM wrote to the file at the path since `before` (the whole file when the path
    /// now names a new file).
    fn since(&self, before: &Mark) -> Seen {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Seen::Nothing;
        };
        let Ok(m) = f.metadata() else {
            return Seen::Nothing;
        };
        let same = before.file == Some((m.dev(), m.ino()));
        let from = if same && m.len() >= before.len {
            before.len
        } else {
            0
        };
        let mut text = String::new();
        if f.seek(SeekFrom::Start(from)).is_err() {
            return Seen::Nothing;
        }
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_err() {
            return Seen::Nothing;
        }
        text.push_str(&String::from_utf8_lossy(&bytes));
        judge(&text)
    }
}

fn judge(text: &str) -> Seen {
    if text.contains(REOPENED) {
        Seen::Reopened
    } else if text.contains(REOPEN_FAILED) {
        Seen::Failed
    } else {
        Seen::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_lines_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fpm.log");
        std::fs::write(&path, format!("[x] {REOPENED}\n")).unwrap();
        let log = ErrorLog::new(path.to_str().unwrap()).unwrap();
        let before = log.mark();
        assert!(matches!(log.since(&before), Seen::Nothing), "old line");
        std::fs::rename(&path, dir.path().join("fpm.log.1")).unwrap();
        assert!(matches!(log.since(&before), Seen::Nothing), "moved away");
        std::fs::write(&path, format!("[y] {REOPENED}\n")).unwrap();
        assert!(matches!(log.since(&before), Seen::Reopened), "new file");
    }

    #[test]
    fn syslog_and_streams_are_not_files() {
        assert!(ErrorLog::new("syslog").is_none());
        assert!(ErrorLog::new("/proc/self/fd/2").is_none());
        assert!(ErrorLog::new("/dev/null").is_none());
    }
}
