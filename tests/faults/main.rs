//! The fault matrix: what fpmctl survives, one test per fault, each against a real php-fpm.
//!
//! Every test is named after the fault it proves (`fNN_...`), grouped by the promise it keeps:
//! - [`never_down`]: a fault during a lifecycle step never leaves FPM down when it could run
//!   (broken output, signals to fpmctl, broken configs, bad values, non-UTF-8 paths, reloads).
//! - [`identity`]: fpmctl never signals or trusts what is not this config's FPM (renamed
//!   programs, config tests, foreign orphans, orphans answering pings, planted files and sockets).
//! - [`honest`]: every command's exit code and message say what really happened, also through
//!   the supervisor and for users who cannot see everything.
//!
//! The README links this file; read the module docs for the list.

#[path = "../common/mod.rs"]
mod common;

mod honest;
mod identity;
mod never_down;
