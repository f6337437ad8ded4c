//! fpmctl: a safe PHP-FPM supervisor and restart tool.
//!
//! The library holds all behaviour; the `fpmctl` binary only parses arguments, sets up
//! logging and maps results to exit codes. See `ARCHITECTURE.md` for the map of modules.
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod exit;
pub mod fastcgi;
pub mod listen;

pub use error::{Error, Result};
pub use exit::ExitCode;
