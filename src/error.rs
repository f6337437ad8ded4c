//! The crate's typed errors. Each carries the context a person needs (file and line, PID,
//! address) and maps to exactly one [`ExitCode`]; `main` turns them into a one-line
//! message and that code.

use crate::config::Problem;
use crate::exit::ExitCode;
use std::path::PathBuf;

/// A config that could not be read or parsed; every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// One problem without a location.
    pub fn msg(message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                at: None,
                message: message.into(),
            }],
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Everything that can go wrong in fpmctl.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config could not be found, read or parsed.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// No php-fpm binary.
    #[error("{0}")]
    BinaryNotFound(String),
    /// `php-fpm -t` said no.
    #[error("{config}: php-fpm -t rejected the configuration: {detail}")]
    ConfigInvalid {
        /// The main config file.
        config: PathBuf,
        /// FPM's own error line(s).
        detail: String,
    },
    /// A foreign process holds a listen address.
    #[error(
        "{address} (pool {pool}) is held by PID {pid} ({program}), which is not this FPM; nothing was killed"
    )]
    AddressInUse {
        /// The address.
        address: String,
        /// The pool that wants it.
        pool: String,
        /// Who holds it.
        pid: i32,
        /// Its program name.
        program: String,
    },
    /// Something did not happen in time.
    #[error("{0}")]
    Timeout(String),
    /// `php-fpm -D`'s launcher did not return in time and was killed; `daemon` is the process
    /// it had forked (the future master), identified while it was still the launcher's child.
    #[error("{detail}")]
    LauncherCutOff {
        /// What did not happen in time.
        detail: String,
        /// The launcher's child when it had one.
        daemon: Option<crate::procs::ProcId>,
    },
    /// The per-config lock is held.
    #[error("{0}")]
    Locked(String),
    /// FPM runs but does not answer.
    #[error("{0}")]
    NotReady(String),
    /// FPM is not running (for commands that need it).
    #[error("{0}")]
    NotRunning(String),
    /// Refused because systemd owns the master.
    #[error("{0}")]
    Systemd(String),
    /// FPM exited during start or reload.
    #[error("{0}")]
    FpmDied(String),
    /// Too many crashes.
    #[error("{0}")]
    CrashLoop(String),
    /// fpmctl was interrupted by a signal (after finishing what could not be left half done).
    #[error("{0}")]
    Interrupted(String),
    /// Bad arguments that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// An I/O error with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What fpmctl was doing, naming the file, PID or address.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The lock directory, or a file in it, could be turned against fpmctl (another user's
    /// directory, writable by others, a planted symlink): refused.
    #[error("{0}")]
    UnsafeLockDir(String),
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The exit code this error ends the process with: the one mapping from errors to the
    /// exit table, used directly and by the supervisor's answers alike.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::ConfigUnreadable,
            Error::BinaryNotFound(_) => ExitCode::BinaryNotFound,
            Error::ConfigInvalid { .. } => ExitCode::ConfigInvalid,
            Error::AddressInUse { .. } => ExitCode::AddressInUse,
            Error::Timeout(_) | Error::LauncherCutOff { .. } => ExitCode::Timeout,
            Error::Locked(_) => ExitCode::Locked,
            Error::NotReady(_) => ExitCode::NotReady,
            Error::NotRunning(_) => ExitCode::NotRunning,
            Error::Systemd(_) => ExitCode::Systemd,
            Error::FpmDied(_) => ExitCode::FpmDied,
            Error::CrashLoop(_) => ExitCode::CrashLoop,
            Error::Usage(_) => ExitCode::Usage,
            Error::Interrupted(_) => ExitCode::Interrupted,
            Error::Io { .. } | Error::UnsafeLockDir(_) | Error::Other(_) => ExitCode::Failure,
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
