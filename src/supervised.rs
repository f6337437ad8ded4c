//! A master run by an `fpmctl supervise` that this fpmctl cannot reach. Commands on a
//! supervised config go through the supervisor's control socket, which lies in the lock
//! directory (`FPMCTL_LOCK_DIR`); an fpmctl started with another lock directory finds no
//! supervisor there and would act on the master directly. The supervisor then takes a master
//! it did not stop for a crash and starts another, and a replacement it is still proving
//! ready looks like a second master to be retired. So `restart`, `reload` and `stop` refuse
//! a config whose masters run under an fpmctl supervisor that did not answer them (exit 9, as
//! when another fpmctl holds the config's lock), and say how to reach it.
//!
//! A supervisor is found as the parent of any of the config's masters (the one serving, or a
//! replacement being proven ready beside it), or among the holders of the config's
//! listening sockets (discovery reads the processes that are fpmctl in the same pass it makes
//! anyway): a master it took over from a supervisor that died is not its child, its parent
//! is init, but its sockets are the supervisor's too.

use crate::discovery::{self, Role, Snapshot};
use crate::error::{Error, Result};
use crate::procs::{self, ProcInfo};

/// The fpmctl supervisor `master` runs under: its parent, when that is a program named
/// `fpmctl` running `supervise` ([`discovery::runs_fpmctl_supervise`], the one test of it).
/// A refusal rests on it, never a signal, so a name is enough here.
pub fn supervisor_of(master: &ProcInfo) -> Option<ProcInfo> {
    if master.ppid <= 1 {
        return None;
    }
    let parent = procs::read(master.ppid).filter(|p| !p.is_gone())?;
    discovery::runs_fpmctl_supervise(&parent).then_some(parent)
}

/// `Err` (exit 9) when one of `snap`'s masters runs under an fpmctl supervisor, or one holds
/// the config's sockets (also while no master runs: one in its crash backoff); call it once
/// the supervisor's control socket gave no answer.
pub fn refuse_unreached_supervisor(snap: &Snapshot) -> Result<()> {
    let masters: Vec<&ProcInfo> = snap.master.iter().chain(&snap.other_masters).collect();
    let me = std::process::id() as i32;
    let found = masters
        .iter()
        .find_map(|m| supervisor_of(m).map(|s| (Some(*m), s)))
        .or_else(|| {
            let holder = snap
                .addresses
                .iter()
                .flat_map(|a| &a.holders)
                .find(|h| h.role == Role::Supervisor && h.proc.pid() != me)?;
            Some((masters.first().copied(), holder.proc.clone()))
        });
    let Some((master, sup)) = found else {
        return Ok(());
    };
    let what = match master {
        Some(m) => format!(
            "master {} runs under fpmctl supervisor {}",
            m.pid(),
            sup.pid()
        ),
        None => format!(
            "fpmctl supervisor {} holds this config's sockets",
            sup.pid()
        ),
    };
    Err(Error::Locked(format!(
        "{what}, which did not answer here (it may run with another FPMCTL_LOCK_DIR); acting on its FPM directly would race it: run this with the supervisor's FPMCTL_LOCK_DIR, or signal supervisor {} (SIGHUP restarts, SIGUSR2 reloads, SIGTERM stops)",
        sup.pid()
    )))
}
