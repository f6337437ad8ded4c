//! The fault matrix: what fpmctl survives, one test per fault, each against a real php-fpm.
//!
//! Every test is named after the fault it proves (`fNN_...`), grouped by the promise it keeps:
//! [`never_down`] (a fault during a lifecycle step never leaves FPM down when it could run),
//! [`identity`] (fpmctl never signals or trusts what is not this config's FPM) and [`honest`]
//! (exit codes and messages say what really happened). Each test failed on the code before its
//! fix.
//!
//! | #  | fault | what fpmctl does | tests |
//! |----|-------|------------------|-------|
//! | 1  | stdout/stderr closed, dead or full mid-restart | logging never aborts a step; FPM ends up running | `f01_*` |
//! | 2  | SIGINT/SIGTERM/SIGQUIT/SIGHUP to fpmctl between stop and start | finishes the start, then exits 14; HUP ignored; a second INT aborts naming the state and the repair | `f02_*` |
//! | 3  | config broken during an incident | status, ping, stop and the supervisor still work on what runs; only start/restart/reload refuse (6) | `f03_*` |
//! | 4  | absurd or zero durations; unix path over 107 bytes | usage error (2) / check and start fail before php-fpm is launched | `f04_*` |
//! | 5  | paths that are not UTF-8 | every command works; JSON says it is lossy | `f05_*` |
//! | 6  | reload into an address a foreign process holds | refused (7), FPM untouched, holder named | `f06_*` |
//! | 7  | a slow but successful reload | waits process_control_timeout + start, reports success | `f07_*` |
//! | 8  | a renamed program posing as the master | foreign by binary (device+inode), never signalled | `f08_*` |
//! | 9  | a running `php-fpm -t`/`-tt` | never a master, never signalled | `f09_*` |
//! | 10 | another config's orphans behind a stale pid file | not ours without socket evidence; reported, not killed | `f10_*` |
//! | 11 | master dead, orphans still answer | `ping` says down (3) and names the orphans | `f11_*` |
//! | 12 | planted files and symlinks in the lock directory | 0700 root only, O_NOFOLLOW; refused otherwise | `f12_*` |
//! | 13 | a control socket planted by another user | ignored with a warning; the command acts directly | `f13_*` |
//! | 14 | a pid file with junk content | removed after a successful stop | `f14_*` |
//! | 15 | commands forwarded to the supervisor | the supervisor's real exit code; options honoured or refused | `f15_*` |
//! | 16 | a non-root user | told what it cannot see; unreadable /proc means "maybe alive" | `f16_*` |
//! | 17 | hostile bytes in any parser of outside input | no panic, bounded allocation | `tests/fuzz/`, `tests/doctor_fuzz.rs` |
//! | 18 | (this table) | | |

#[path = "../common/mod.rs"]
mod common;

mod honest;
mod identity;
mod never_down;
