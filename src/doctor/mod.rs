//! `fpmctl doctor`: name the cause of nginx's 502, 504 and 500 answers from nginx's and
//! FPM's logs, both configurations and, when allowed, the live system.
//!
//! The parts, each its own concern:
//! - [`nginx_conf`] reads nginx's configuration (files with includes, or `nginx -T`) into a
//!   tree; [`nginx_facts`] extracts user, logs, upstreams and pass directives from it.
//! - [`nginx_log`] and [`fpm_log`] parse single log records without allocating;
//!   [`scan`] streams files through a byte search that picks the few lines worth parsing,
//!   and tallies them into [`observe::Observations`].
//! - [`facts`] holds the classifier's other inputs (FPM pools, live facts) and its output;
//!   [`classify`] is a pure function from observations and facts to findings, with
//!   [`lints`] for config-only warnings and the fixes in a module of their own.
//! - [`live`] gathers the live facts (connecting as nginx's user, accept queues, who holds
//!   an address); [`report`] renders findings as text and JSON; [`time`] reads and writes
//!   the timestamps.

pub mod classify;
pub mod facts;
mod fixes;
pub mod fpm_log;
pub mod lints;
pub mod live;
pub mod nginx_conf;
pub mod nginx_facts;
pub mod nginx_log;
pub mod observe;
pub mod report;
pub mod scan;
pub mod time;
