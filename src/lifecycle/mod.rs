//! What changes whether and how FPM runs, in one place below the commands: starting it
//! ([`launch`]), restarting it ([`restart`]: through its systemd unit, by the socket hand-over,
//! or stop then start) and proving a launched FPM ready by its own `READY=1` ([`Watch`]).
//! Stopping is [`crate::stop`]'s signal plan, which these use.
//!
//! Each works from one look at the system ([`crate::discovery::discover`], which reads in full
//! only the processes that can be FPM) and afterwards follows the processes it knows: a stop
//! waits on their pidfds, a launched master names itself in its `READY=1`, its workers are its
//! children. Commands parse their options, call these and print what they return.

pub mod cut_off;
mod launch;
mod restart;
mod watch;

pub use launch::{Launch, LaunchOptions, launch, launch_watched};
pub use restart::{Cold, HandOver, RestartOptions, Restarted, restart};
pub use watch::{Ready, ReadyBy, Watch};
