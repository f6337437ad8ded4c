//! A master run by an `fpmctl supervise` that this fpmctl cannot reach. Commands on a
//! supervised config go through the supervisor's control socket, which lies in the lock
//! directory (`FPMCTL_LOCK_DIR`); an fpmctl started with another lock directory finds no
//! supervisor there and would act on the master directly. The supervisor then takes a master
//! it did not stop for a crash and starts another, and a replacement it is still proving
//! ready looks like a second master to be retired. So `restart`, `reload` and `stop` refuse
//! a master whose parent is an fpmctl supervisor that did not answer them (exit 9, as when
//! another fpmctl holds the config's lock), and say how to reach it.

use crate::discovery::Snapshot;
use crate::error::{Error, Result};
use crate::procs::{self, ProcInfo};

/// The fpmctl supervisor `master` runs under: its parent, when that runs fpmctl (a program
/// named `fpmctl`, or the very binary this process runs) with `supervise` among its
/// arguments. A refusal rests on it, never a signal, so a name is enough here.
pub fn supervisor_of(master: &ProcInfo) -> Option<ProcInfo> {
    if master.ppid <= 1 {
        return None;
    }
    let parent = procs::read(master.ppid).filter(|p| !p.is_gone())?;
    let ours = procs::read(std::process::id() as i32).and_then(|me| me.exe_id);
    let fpmctl = parent
        .exe
        .as_deref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "fpmctl")
        || (parent.exe_id.is_some() && parent.exe_id == ours);
    let supervising = parent.title.split(' ').any(|arg| arg == "supervise");
    (fpmctl && supervising).then_some(parent)
}

/// `Err` (exit 9) when `snap`'s master runs under an fpmctl supervisor; call it once the
/// supervisor's control socket gave no answer.
pub fn refuse_unreached_supervisor(snap: &Snapshot) -> Result<()> {
    let Some(master) = &snap.master else {
        return Ok(());
    };
    let Some(sup) = supervisor_of(master) else {
        return Ok(());
    };
    Err(Error::Locked(format!(
        "master {} runs under fpmctl supervisor {}, which did not answer here (it may run with another FPMCTL_LOCK_DIR); acting on its master directly would race it: run this with the supervisor's FPMCTL_LOCK_DIR, or signal supervisor {} (SIGHUP restarts, SIGUSR2 reloads, SIGTERM stops)",
        master.pid(),
        sup.pid(),
        sup.pid()
    )))
}
