//! The exit-code table: the one place that says what each code of `fpmctl` means.
//!
//! `status` follows the LSB convention for `status` actions (0 running, 1 dead but a
//! pid file or orphans remain, 3 not running, 4 unknown). Every other command uses
//! the codes below; each code has exactly one meaning across commands so scripts can
//! rely on it. The table is printed by `--help`, copied into the README, and checked by
//! the integration tests.

/// A process exit code with a stable meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Success. For `status`: FPM is running.
    Ok,
    /// Generic failure. For `status`: FPM is dead but its pid file or orphaned workers remain.
    Failure,
    /// Bad command line (unknown flag, malformed duration or signal plan).
    Usage,
    /// For `status`, `ping` and `reopen-logs`: FPM is not running.
    NotRunning,
    /// The FPM configuration could not be found, read or parsed (LSB "unknown" for `status`).
    ConfigUnreadable,
    /// No php-fpm binary was found for this configuration.
    BinaryNotFound,
    /// `php-fpm -t` rejected the configuration; nothing was changed.
    ConfigInvalid,
    /// A listen address is held by a process that is not this configuration's FPM; nothing was killed.
    AddressInUse,
    /// Processes were still alive after the signal plan, or FPM was not ready within the timeout.
    Timeout,
    /// Another fpmctl holds the lock for this configuration (`--no-wait`, or `--lock-timeout`
    /// expired), or supervises its FPM without answering this one (another lock directory).
    Locked,
    /// FPM runs but FPM is not ready: a pool is short of workers or did not answer over FastCGI (or the worker count is short).
    NotReady,
    /// The master belongs to a systemd unit and fpmctl will not act behind systemd's back.
    Systemd,
    /// FPM exited while starting or reloading.
    FpmDied,
    /// `supervise`: FPM crashed too often within the crash-loop window.
    CrashLoop,
    /// fpmctl was interrupted by a signal; a step that must not be left half done (the start
    /// after a stop) was finished first. The message says in which state FPM was left.
    Interrupted,
}

impl ExitCode {
    /// Every code, in table order.
    pub const ALL: [ExitCode; 15] = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::NotRunning,
        ExitCode::ConfigUnreadable,
        ExitCode::BinaryNotFound,
        ExitCode::ConfigInvalid,
        ExitCode::AddressInUse,
        ExitCode::Timeout,
        ExitCode::Locked,
        ExitCode::NotReady,
        ExitCode::Systemd,
        ExitCode::FpmDied,
        ExitCode::CrashLoop,
        ExitCode::Interrupted,
    ];

    /// The numeric code passed to `exit(2)`.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::NotRunning => 3,
            ExitCode::ConfigUnreadable => 4,
            ExitCode::BinaryNotFound => 5,
            ExitCode::ConfigInvalid => 6,
            ExitCode::AddressInUse => 7,
            ExitCode::Timeout => 8,
            ExitCode::Locked => 9,
            ExitCode::NotReady => 10,
            ExitCode::Systemd => 11,
            ExitCode::FpmDied => 12,
            ExitCode::CrashLoop => 13,
            ExitCode::Interrupted => 14,
        }
    }

    /// The code with this number, if it is one of the table's.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// One line saying what the code means.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "success; status: FPM is running",
            ExitCode::Failure => {
                "failure; status: FPM is dead but its pid file or orphaned workers remain"
            }
            ExitCode::Usage => "bad command line",
            ExitCode::NotRunning => "status, ping, reopen-logs: FPM is not running",
            ExitCode::ConfigUnreadable => "FPM config not found, unreadable or unparsable",
            ExitCode::BinaryNotFound => "no php-fpm binary found",
            ExitCode::ConfigInvalid => "php-fpm -t rejected the config; nothing was changed",
            ExitCode::AddressInUse => {
                "a listen address is held by a process that is not this FPM; nothing was killed"
            }
            ExitCode::Timeout => {
                "processes still alive after the signal plan, or a step did not finish in time"
            }
            ExitCode::Locked => {
                "another fpmctl holds the lock for this config, or supervises it out of reach"
            }
            ExitCode::NotReady => {
                "FPM is not ready: a pool is short of workers or did not answer over FastCGI"
            }
            ExitCode::Systemd => "the master belongs to a systemd unit; refused",
            ExitCode::FpmDied => "FPM exited while starting or reloading",
            ExitCode::CrashLoop => "supervise: FPM crashed too often",
            ExitCode::Interrupted => {
                "interrupted by a signal; the step in progress was finished first"
            }
        }
    }

    /// The table as plain text, for `--help` and the README.
    pub fn table() -> String {
        let mut out = String::from("Exit codes:\n");
        for code in Self::ALL {
            out.push_str(&format!("  {:>2}  {}\n", code.code(), code.meaning()));
        }
        out
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        // Every code is below 256 by construction.
        std::process::ExitCode::from(code.code() as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_in_order() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        let expected: Vec<i32> = (0..ExitCode::ALL.len() as i32).collect();
        assert_eq!(codes, expected);
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ExitCode::from_code(101), None);
    }
}
