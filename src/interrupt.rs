//! What a signal to fpmctl itself does: SIGHUP (the SSH session dropped), SIGINT (Ctrl-C),
//! SIGQUIT (Ctrl-\\) and SIGTERM never leave FPM down.
//!
//! - SIGHUP never ends fpmctl: the command runs to its end, and what it writes to the dead
//!   terminal is dropped ([`crate::output`]).
//! - SIGINT, SIGQUIT and SIGTERM outside a [`Critical`] section have their default action:
//!   fpmctl ends, and whatever it was doing (waiting for a lock, for readiness) can be left.
//! - Inside a [`Critical`] section (a restart's stop and the start that must follow it) the
//!   first SIGINT, SIGQUIT or SIGTERM is only noted: fpmctl says so, finishes the section, and then
//!   the command ends with [`crate::Error::Interrupted`] (exit 14). A second one aborts at
//!   once, printing the state FPM was left in and the command that repairs it (exit 14).
//!
//! The handlers only touch atomics; messages and the abort happen on a thread of their own.
//! They are installed with signal-hook, once, by [`install`].

use crate::exit::ExitCode;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Where a critical section is, for the message a second signal prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// FPM is being stopped so that it can be started again.
    Stopping = 0,
    /// FPM was stopped and is being started again.
    Starting = 1,
    /// A new master is started on the running one's sockets, then the old one is retired.
    HandingOver = 2,
}

/// Messages for signals inside a critical section, formatted when the handlers are installed.
struct Messages {
    /// The first signal inside a critical section: SIGINT, SIGTERM, SIGQUIT.
    first: [String; 3],
    /// A second signal, per [`Phase`].
    abort: [String; 3],
}

/// True while no critical section runs: SIGINT, SIGQUIT and SIGTERM then have their default action.
fn abortable() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(true)))
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static PHASE: AtomicU8 = AtomicU8::new(0);
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static HUNG_UP: AtomicBool = AtomicBool::new(false);
/// The signals a [`Critical`] section defers.
const DEFERRED: [i32; 3] = [SIGINT, SIGTERM, SIGQUIT];
/// How many [`Critical`] sections are open (they nest: the outermost one decides).
static DEPTH: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers for a command on `config` (not for `supervise`, which has its
/// own). Errors are returned as text: without them fpmctl still works, less safely.
///
/// The handlers themselves only touch atomics (async-signal-safe). What is said about a
/// signal, and the abort on a second one, happen on a thread of their own (signal-hook's
/// iterator), whose writes go through [`crate::output`] and so never block on a stderr
/// nobody reads.
pub fn install(config: &Path) -> Result<(), String> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let conf = config.display();
    let repair = format!(
        "`fpmctl -c {conf} status` shows what runs, `fpmctl -c {conf} restart` starts it again"
    );
    let first = |name: &str| {
        format!(
            "fpmctl: {name} received while restarting FPM {conf}: finishing the restart first so FPM is not left down (a second signal aborts)\n"
        )
    };
    let messages = Messages {
        first: [first("SIGINT"), first("SIGTERM"), first("SIGQUIT")],
        abort: [
            format!(
                "fpmctl: aborted by a second signal while stopping FPM {conf} for a restart: FPM may be DOWN or still stopping; {repair}\n"
            ),
            format!(
                "fpmctl: aborted by a second signal while starting FPM {conf} again after stopping it: FPM is DOWN unless that start completes; {repair}\n"
            ),
            format!(
                "fpmctl: aborted by a second signal while handing FPM {conf}'s sockets to a new master: the old master may be left stopped (SIGSTOP) beside the new one; {repair} (it stops both)\n"
            ),
        ],
    };
    // SAFETY: the closures only store to and load from atomics, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(SIGHUP, || HUNG_UP.store(true, Ordering::SeqCst))
            .map_err(|e| format!("SIGHUP handler: {e}"))?;
        for sig in DEFERRED {
            signal_hook::low_level::register(sig, move || on_signal(sig))
                .map_err(|e| format!("signal {sig} handler: {e}"))?;
        }
    }
    for sig in DEFERRED {
        signal_hook::flag::register_conditional_default(sig, Arc::clone(abortable()))
            .map_err(|e| format!("signal {sig} handler: {e}"))?;
    }
    let mut signals =
        signal_hook::iterator::Signals::new(DEFERRED).map_err(|e| format!("signal thread: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                let n = RECEIVED.load(Ordering::SeqCst);
                if n >= 2 {
                    let phase = usize::from(PHASE.load(Ordering::SeqCst)).min(2);
                    crate::output::eprint(&messages.abort[phase]);
                    std::process::exit(ExitCode::Interrupted.code());
                }
                if n == 1 && seen != 1 {
                    let sig = FIRST_SIGNAL.load(Ordering::SeqCst);
                    let which = match sig {
                        SIGTERM => 1,
                        SIGQUIT => 2,
                        _ => 0,
                    };
                    crate::output::eprint(&messages.first[which]);
                }
                seen = n;
            }
        })
        .map_err(|e| format!("signal thread: {e}"))?;
    Ok(())
}

/// The SIGINT/SIGTERM handler: counts signals inside a critical section (atomics only).
fn on_signal(sig: i32) {
    if abortable().load(Ordering::SeqCst) {
        return; // the default action follows
    }
    if RECEIVED.fetch_add(1, Ordering::SeqCst) == 0 {
        FIRST_SIGNAL.store(sig, Ordering::SeqCst);
    }
}

/// Whether the terminal hung up (SIGHUP) since fpmctl started.
pub fn hung_up() -> bool {
    HUNG_UP.load(Ordering::SeqCst)
}

/// A stretch of work that must not be left half done: SIGINT, SIGQUIT and SIGTERM are deferred
/// until it ends (a second one aborts). Leaving it (or dropping it) restores their default
/// action.
#[derive(Debug)]
pub struct Critical {
    _private: (),
}

impl Critical {
    /// Enters a critical section at `phase` (inside another one: a nested section that
    /// only moves the phase).
    pub fn enter(phase: Phase) -> Critical {
        if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
            RECEIVED.store(0, Ordering::SeqCst);
            FIRST_SIGNAL.store(0, Ordering::SeqCst);
        }
        PHASE.store(phase as u8, Ordering::SeqCst);
        abortable().store(false, Ordering::SeqCst);
        Critical { _private: () }
    }

    /// Moves on to `phase` (what a second signal reports).
    pub fn phase(&self, phase: Phase) {
        PHASE.store(phase as u8, Ordering::SeqCst);
    }

    /// Leaves the section; the name of the signal that arrived during it (or during the
    /// section it is nested in), if one did.
    pub fn leave(self) -> Option<&'static str> {
        let sig = FIRST_SIGNAL.load(Ordering::SeqCst);
        drop(self);
        match sig {
            SIGINT => Some("SIGINT"),
            SIGTERM => Some("SIGTERM"),
            SIGQUIT => Some("SIGQUIT"),
            _ => None,
        }
    }
}

impl Drop for Critical {
    fn drop(&mut self) {
        if DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
            abortable().store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_nest_and_only_the_outermost_restores_the_default_action() {
        let outer = Critical::enter(Phase::Stopping);
        assert!(!abortable().load(Ordering::SeqCst));
        let inner = Critical::enter(Phase::Starting);
        assert_eq!(inner.leave(), None);
        assert!(
            !abortable().load(Ordering::SeqCst),
            "the outer section still runs"
        );
        outer.phase(Phase::Starting);
        assert_eq!(outer.leave(), None);
        assert!(abortable().load(Ordering::SeqCst));
    }
}
