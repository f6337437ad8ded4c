//! Replacing a running FPM master without closing its listening sockets: take the sockets
//! ([`sockets::HeldSockets::adopt`], `pidfd_getfd(2)`), start the new master on them through
//! `FPM_SOCKETS` ([`inherit`], [`start_on`]), then [`retire`] the old master without its exit
//! cleanup, so in-flight requests finish and neither a socket path nor the new pid file is
//! unlinked. Used by `restart` and by the supervisor.

pub mod interrupted;
pub mod names;
pub mod permissions;
pub mod sockets;

use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::Result;
use crate::fpm::Fpm;
use crate::procs::{self, ProcId};
use crate::signals::{self, Sent};
use nix::sys::signal::Signal;
use sockets::HeldSockets;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tracing::{info, warn};

/// How a restart replaces the running FPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Take the running master's sockets, start the new master on them, retire the old one.
    HandOver,
    /// Stop, then start; with the reason when the hand-over was not asked away (`--cold`)
    /// but is not possible.
    Cold(Option<&'static str>),
}

/// The restart's mode from what runs: a hand-over needs exactly one master to hand over
/// from; further masters or orphaned workers are cleaned up by stopping everything.
pub fn choose(cold: bool, master: bool, other_masters: bool, orphans: bool) -> Mode {
    if cold || !master {
        return Mode::Cold(None);
    }
    if other_masters {
        return Mode::Cold(Some(
            "further masters of the config run beside the master; stopping everything cleans them up",
        ));
    }
    if orphans {
        return Mode::Cold(Some(
            "orphaned workers of a dead master are left; stopping everything cleans them up",
        ));
    }
    Mode::HandOver
}

/// Lets `cmd` inherit `fds` and no other descriptor beyond stdin, stdout and stderr (all
/// others are marked close-on-exec in the child, also those fpmctl itself inherited from
/// its caller: a daemon keeping a caller's pipe open keeps that caller waiting for EOF),
/// and starts it with an empty signal mask (a blocked mask is inherited through exec, and
/// FPM must see SIGQUIT and SIGTERM).
pub fn inherit(cmd: &mut Command, fds: Vec<RawFd>) {
    crate::fpm::keep_only_std_descriptors(cmd);
    // SAFETY: between fork and exec only async-signal-safe calls: sigprocmask(2) and
    // fcntl(2) on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in &fds {
                let flags = libc::fcntl(*fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Starts a daemonized FPM for `cfg` on the held sockets (addresses not held are bound by
/// FPM itself), with `prepare` applied to the command (a notify socket), and waits for its
/// launcher's verdict.
pub fn start_on(
    fpm: &Fpm,
    cfg: &FpmConfig,
    held: &HeldSockets,
    timeout: Duration,
    prepare: impl FnOnce(&mut Command),
) -> Result<()> {
    let env = held.env_value(cfg);
    let fds = held.raw_fds(cfg);
    fpm.start_daemon_with(timeout, |cmd| {
        cmd.env("FPM_SOCKETS", env);
        prepare(cmd);
        inherit(cmd, fds);
    })
}

/// The master a hand-over started: the one the pid file names when it is a proven master
/// other than `old`; without a pid file (`pid` is optional), the youngest proven master of
/// `cfg` other than `old` (discovery calls the oldest one *the* master).
pub fn new_master(cfg: &FpmConfig, old: ProcId) -> Option<ProcId> {
    // The new master wrote its pid file before its launcher returned.
    if let Some(p) = discovery::master_by_pid_file(cfg).filter(|p| p.id != old) {
        return Some(p.id);
    }
    let snap = discovery::discover(cfg);
    snap.master
        .into_iter()
        .chain(snap.other_masters)
        .filter(|m| m.id != old)
        .max_by_key(|m| m.id.start_time)
        .map(|m| m.id)
}

/// The first bytes of a small file (a pid file): opened non-blocking, so a FIFO planted in
/// its place cannot hang the caller, and read bounded, so a device cannot fill memory.
pub fn read_small(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(256).read_to_end(&mut bytes).ok()?;
    String::from_utf8(bytes).ok()
}

/// Writes `text` to the pid file `path`, created if missing, never through a symlink and
/// never into anything but a regular file (its directory may be writable by FPM's user).
/// True when written.
pub fn write_pid_file(path: &std::path::Path, text: &str) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| {
            if !f.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            f.set_len(0)?;
            f.write_all(text.as_bytes())
        });
    if let Err(e) = &written {
        warn!(path = %path.display(), error = %e, "could not write the pid file");
    }
    written.is_ok()
}

/// What [`retire`] did.
#[derive(Debug, Default)]
pub struct Retired {
    /// Workers that finished their requests and exited.
    pub workers: usize,
    /// Workers still busy at the deadline, killed.
    pub killed: Vec<i32>,
}

/// Retires master `master` of `cfg` while another master serves its sockets: SIGSTOP the
/// master (it no longer forks workers and never runs its exit cleanup), SIGQUIT its workers
/// (each finishes its request), wait until none is left or `deadline` (then SIGKILL the
/// rest), then SIGKILL the master. Its workers, orphaned, are reaped by init.
pub fn retire(master: ProcId, cfg: &FpmConfig, deadline: Deadline) -> Result<Retired> {
    let is_master = |p: &procs::ProcInfo| discovery::is_master_of(p, cfg);
    // A child of the stopped master titled as a pool process, of any pool: the old config
    // may have had pools the new one dropped. The stopped master cannot reap its children,
    // so none of their PIDs can be reused while it lives.
    // A worker forked a moment before the SIGSTOP may not have set its title yet (it still
    // bears the master's): a child running the config's binary is a worker too.
    let is_worker = |p: &procs::ProcInfo| {
        p.ppid == master.pid
            && !p.is_gone()
            && (crate::identity::pool_of_title(&p.title).is_some()
                || crate::identity::runs_binary(p, cfg.binary.as_ref()).is_ok())
    };
    match signals::send_verified(master, Signal::SIGSTOP, is_master) {
        Ok(Sent::Delivered) => {}
        // Its PID may belong to another process by now: whatever runs under that PID, and
        // its children, are nobody's to signal here.
        Ok(Sent::Gone) => {
            info!(pid = master.pid, "master to retire is already gone");
            return Ok(Retired::default());
        }
        Ok(other) => {
            return Err(crate::error::Error::Other(format!(
                "master {} could not be proven to be FPM's before SIGSTOP ({other:?}); it was left running",
                master.pid
            )));
        }
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("SIGSTOP to master {}", master.pid),
                std::io::Error::from(e),
            ));
        }
    }
    // SIGSTOP takes effect asynchronously: a master in the middle of forking a worker (a
    // launch still under way) finishes that fork first. Only once /proc says it is stopped
    // is its list of children complete.
    let stop_seen = Deadline::after(Duration::from_secs(1));
    while !deadline_or_stopped(master, stop_seen) {
        std::thread::sleep(Duration::from_micros(200));
    }
    // Stopped, the master forks no more workers: this list is complete. Its children are
    // read from the kernel's list; only without that list is the whole table read.
    let workers: Vec<ProcId> = procs::children_or_scan(master.pid)
        .into_iter()
        .filter(|p| is_worker(p))
        .map(|p| p.id)
        .collect();
    // Still the same master, alive, after the list was read: so its PID was not reused
    // while the list was read, and the list is its children's (a SIGKILL from elsewhere
    // could have ended it after the SIGSTOP).
    let workers = if procs::read_same(master).is_some() {
        workers
    } else {
        if !procs::is_gone(master) {
            warn!(
                pid = master.pid,
                "cannot read the stopped master again; its workers are not signalled"
            );
        }
        Vec::new()
    };
    for w in &workers {
        let _ = signals::send_verified(*w, Signal::SIGQUIT, is_worker);
    }
    info!(
        pid = master.pid,
        workers = workers.len(),
        "old master stopped; its workers finish their requests"
    );
    let busy = signals::wait_gone(&workers, deadline);
    for w in &busy {
        warn!(
            pid = w.pid,
            signal = "KILL",
            "worker still busy at the deadline"
        );
        let _ = signals::send_verified(*w, Signal::SIGKILL, is_worker);
    }
    // A stopped master still answers to its identity in /proc.
    let _ = signals::send_verified(master, Signal::SIGKILL, is_master);
    signals::wait_gone(&[master], Deadline::after(Duration::from_secs(5)));
    Ok(Retired {
        workers: workers.len() - busy.len(),
        killed: busy.iter().map(|w| w.pid).collect(),
    })
}

/// True once `master` is seen stopped (state `T`), gone, or `limit` passed.
fn deadline_or_stopped(master: ProcId, limit: Deadline) -> bool {
    match procs::lookup_same(master) {
        procs::Lookup::Found(p) => p.state == 'T' || p.state == 't' || limit.expired(),
        procs::Lookup::Gone => true,
        procs::Lookup::Unreadable(_) => limit.expired(),
    }
}

/// Unix socket paths `pid` listens on (its descriptors' inodes against the kernel's list).
pub fn unix_listeners_of(pid: i32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<u64> = entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    crate::listen::read_unix_listeners()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, ino)| inodes.contains(ino))
        .map(|(path, _)| path)
        .collect()
}

/// What [`clear_dead_socket`] found at a unix socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtPath {
    /// Nothing there (or it went meanwhile): free to bind.
    Free,
    /// A socket file nobody listened on: removed.
    Removed,
    /// Another kind of file: left alone.
    NotASocket,
    /// A socket something listens on: left alone.
    Listening,
    /// A socket whose listener could not be told (not ours to inspect): left alone.
    Unknown,
}

/// Clears a unix socket path for a bind: a socket file nobody listens on any more (connect
/// refused) is removed, anything else is left and said. The look, the connect and the unlink
/// all go through one descriptor of its directory, and only the socket file found dead goes:
/// a directory swapped for a symlink meanwhile cannot turn the unlink onto a live socket of
/// the same name elsewhere. The connect is non-blocking: a listener with a full backlog must
/// not hang a restart, or the supervisor's loop.
pub fn clear_dead_socket(path: &std::path::Path) -> AtPath {
    let Ok(dir) = names::Dir::of(path) else {
        return AtPath::Free; // no directory: the bind says why
    };
    let Some((id, kind)) = dir.stat(dir.name()) else {
        return AtPath::Free;
    };
    if kind != libc::S_IFSOCK {
        return AtPath::NotASocket;
    }
    // A socket path holds at most 107 bytes; a long name is reached by its own path then.
    let through = dir.path_to(dir.name());
    let probe = if through.as_os_str().len() < 108 {
        through.as_path()
    } else {
        path
    };
    match crate::listen::unix_path_listened(probe) {
        Some(true) => AtPath::Listening,
        None => AtPath::Unknown,
        // Not removed: gone or replaced meanwhile; the bind finds what is there now.
        Some(false) if dir.remove_if(dir.name(), id) => AtPath::Removed,
        Some(false) => AtPath::Free,
    }
}

/// Removes `path` when it is a unix socket nobody listens on any more ([`clear_dead_socket`]).
pub fn remove_dead_socket(path: &std::path::Path) -> bool {
    clear_dead_socket(path) == AtPath::Removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_socket_is_removed_and_a_live_one_or_another_file_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("php.sock");
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(!remove_dead_socket(&path));
        assert!(path.exists());
        drop(live);
        assert!(remove_dead_socket(&path));
        assert!(!path.exists());
        // Not a socket: left alone.
        std::fs::write(&path, "x").unwrap();
        assert!(!remove_dead_socket(&path));
        assert!(path.exists());
        assert!(!remove_dead_socket(&tmp.path().join("missing.sock")));
    }

    #[test]
    fn a_single_master_is_handed_over_unless_cold_is_asked_for() {
        assert_eq!(choose(false, true, false, false), Mode::HandOver);
        assert_eq!(choose(true, true, false, false), Mode::Cold(None));
    }

    #[test]
    fn nothing_running_is_a_plain_start_without_a_reason() {
        assert_eq!(choose(false, false, false, false), Mode::Cold(None));
        assert_eq!(choose(false, false, true, true), Mode::Cold(None));
    }

    #[test]
    fn leftovers_beside_the_master_make_it_cold_with_a_reason() {
        assert!(
            matches!(choose(false, true, true, false), Mode::Cold(Some(r)) if r.contains("further masters"))
        );
        assert!(
            matches!(choose(false, true, false, true), Mode::Cold(Some(r)) if r.contains("orphaned"))
        );
        assert_eq!(choose(true, true, true, true), Mode::Cold(None));
    }
}
