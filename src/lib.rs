//! fpmctl: a safe PHP-FPM supervisor and restart tool.
//!
//! The library holds all behaviour; the `fpmctl` binary only parses arguments, sets up
//! logging and maps results to exit codes. See `ARCHITECTURE.md` for the map of modules.
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod deadline;
pub mod discovery;
pub mod doctor;
pub mod endpoint;
pub mod error;
pub mod exit;
pub mod fastcgi;
pub mod fpm;
pub mod handover;
pub mod identity;
pub mod interrupt;
pub mod lifecycle;
pub mod listen;
pub mod lock;
pub mod lossless;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod output;
pub mod probe;
pub mod procs;
pub mod ready;
pub mod reexec;
pub mod saturation;
pub mod signals;
pub mod stop;
pub mod supervise;
pub mod supervised;
pub mod systemd;

pub use error::{Error, Result};
pub use exit::ExitCode;
pub use outcome::Outcome;
