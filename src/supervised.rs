//! A master run by an `fpmctl supervise` that this fpmctl cannot reach. Commands on a
//! supervised config go through the supervisor's control socket, which lies in the lock
//! directory (`FPMCTL_LOCK_DIR`); an fpmctl started with another lock directory finds no
//! supervisor there and would act on the master directly. The supervisor then takes a master
//! it did not stop for a crash and starts another, and a replacement it is still proving
//! ready looks like a second master to be retired. So `restart`, `reload` and `stop` refuse
//! a config whose masters run under an fpmctl supervisor that did not answer them (exit 9, as
//! when another fpmctl holds the config's lock), and say how to reach it.
//!
//! A supervisor is found two ways: as the parent of any of the config's masters (the one
//! serving, or a replacement being proven ready beside it), and as an fpmctl supervisor that
//! holds one of a master's listening sockets (a master it took over from a supervisor that
//! died is not its child: its parent is init, but its sockets are the supervisor's too).

use crate::discovery::Snapshot;
use crate::error::{Error, Result};
use crate::procs::{self, FileId, ProcInfo};
use std::collections::HashSet;

/// Whether `p` runs fpmctl (a program named `fpmctl`, or the binary `ours`) with
/// `supervise` among its arguments.
fn is_supervisor(p: &ProcInfo, ours: Option<FileId>) -> bool {
    let fpmctl = p
        .exe
        .as_deref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "fpmctl")
        || (p.exe_id.is_some() && p.exe_id == ours);
    fpmctl && p.title.split(' ').any(|arg| arg == "supervise")
}

fn our_exe() -> Option<FileId> {
    procs::read(std::process::id() as i32).and_then(|me| me.exe_id)
}

/// The fpmctl supervisor `master` runs under: its parent, when that runs fpmctl (a program
/// named `fpmctl`, or the very binary this process runs) with `supervise` among its
/// arguments. A refusal rests on it, never a signal, so a name is enough here.
pub fn supervisor_of(master: &ProcInfo) -> Option<ProcInfo> {
    if master.ppid <= 1 {
        return None;
    }
    let parent = procs::read(master.ppid).filter(|p| !p.is_gone())?;
    is_supervisor(&parent, our_exe()).then_some(parent)
}

/// An fpmctl supervisor other than this process that holds one of `master`'s sockets (a
/// master it took over, which is not its child). Only processes whose command line has a
/// `supervise` argument are read in full.
fn supervisor_holding_sockets_of(master: &ProcInfo) -> Option<ProcInfo> {
    let mut m = master.clone();
    procs::read_sockets(&mut m);
    let inodes: HashSet<u64> = m.sockets.iter().copied().collect();
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id() as i32;
    let ours = our_exe();
    let all = procfs::process::all_processes().ok()?;
    all.flatten()
        .filter(|p| p.pid() != me && p.pid() != master.pid())
        .filter(|p| {
            p.cmdline()
                .is_ok_and(|args| args.iter().any(|a| a == "supervise"))
        })
        .filter_map(|p| procs::read(p.pid()))
        .filter(|p| !p.is_gone() && is_supervisor(p, ours))
        .find_map(|mut p| {
            procs::read_sockets(&mut p);
            p.sockets.iter().any(|i| inodes.contains(i)).then_some(p)
        })
}

/// `Err` (exit 9) when one of `snap`'s masters runs under an fpmctl supervisor; call it once
/// the supervisor's control socket gave no answer.
pub fn refuse_unreached_supervisor(snap: &Snapshot) -> Result<()> {
    let masters: Vec<&ProcInfo> = snap.master.iter().chain(&snap.other_masters).collect();
    let found = masters
        .iter()
        .find_map(|m| supervisor_of(m).map(|s| (*m, s)))
        .or_else(|| {
            masters
                .iter()
                .find_map(|m| supervisor_holding_sockets_of(m).map(|s| (*m, s)))
        });
    let Some((master, sup)) = found else {
        return Ok(());
    };
    Err(Error::Locked(format!(
        "master {} runs under fpmctl supervisor {}, which did not answer here (it may run with another FPMCTL_LOCK_DIR); acting on its master directly would race it: run this with the supervisor's FPMCTL_LOCK_DIR, or signal supervisor {} (SIGHUP restarts, SIGUSR2 reloads, SIGTERM stops)",
        master.pid(),
        sup.pid(),
        sup.pid()
    )))
}
