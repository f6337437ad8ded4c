//! Property-based fuzzing of every parser that reads outside input: FPM configs, FastCGI
//! answers, listen values, `/proc` text, sock_diag netlink replies, the control socket's JSON,
//! notify datagrams, php-fpm's stderr, signal plans and durations.
//!
//! Each target mixes random bytes with structure-aware inputs (mutated real configs,
//! well-formed records with hostile lengths) and checks that the parser never panics, never
//! allocates in proportion to a length field beyond the bytes it really got, and, where an
//! encoder exists, that decoding what was encoded gives it back.
//!
//! The run is bounded so that CI finishes it in well under a minute; set
//! `FPMCTL_FUZZ_CASES` (cases per target, default 256) for a longer run, e.g.
//! `FPMCTL_FUZZ_CASES=20000 cargo test --release --test fuzz`.

mod alloc;
mod cli;
mod config;
mod control;
mod differential;
mod fastcgi;
mod fpm_messages;
mod listen;
mod netlink;
mod notify;
mod procs;

use proptest::test_runner::Config;

#[global_allocator]
static ALLOCATOR: alloc::Tracking = alloc::Tracking;

/// Cases per target when `FPMCTL_FUZZ_CASES` is not set.
const DEFAULT_CASES: u32 = 256;

/// For targets that run a process per case: an eighth of the base count, at least 8.
pub fn config_expensive() -> Config {
    let mut config = config(1);
    config.cases = (config.cases / 8).max(8);
    config
}

/// The proptest configuration of a target: `weight` times the base case count (cheap pure
/// parsers get more cases than targets that write files or open sockets). Failures are not
/// persisted to files: a failing input is printed, and its fix gets a named unit test.
pub fn config(weight: u32) -> Config {
    let base = std::env::var("FPMCTL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases: base.saturating_mul(weight),
        failure_persistence: None,
        ..Config::default()
    }
}
