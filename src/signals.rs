//! Sending signals only to the process we identified, and waiting for processes to end.
//!
//! Every signal goes through [`send_verified`]: it pins the target with a pidfd, re-reads
//! `/proc` to check the PID still has the start time we identified *and* still passes the
//! caller's check (for example "is this config's FPM master"), and only then signals through
//! the pidfd. A pidfd cannot be redirected to a new process that reuses the PID, so the
//! check and the signal refer to the same process. ESRCH means "already gone"; any other
//! failure (an unreadable `/proc` entry, an unexpected pidfd error) fails closed: the process
//! is not signalled and counts as possibly alive, never as gone.
//!
//! Waiting uses the same pidfds: a pidfd becomes readable when its process exits, also for
//! processes that are not our children and also while they are unreaped zombies.

use crate::deadline::Deadline;
use crate::procs::{self, ProcId, ProcInfo};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// What happened to a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered to the identified process.
    Delivered,
    /// The process no longer exists (or is a zombie, or its PID now belongs to another process).
    Gone,
    /// The process exists but no longer passes the caller's identity check: not signalled.
    Refused,
}

/// Opens a pidfd; `Ok(None)` when the kernel has no pidfd support.
pub fn pidfd_open(pid: i32) -> Result<Option<OwnedFd>, Errno> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new file descriptor or -1;
    // it touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return match Errno::last() {
            Errno::ENOSYS => Ok(None),
            e => Err(e),
        };
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }))
}

/// SIGKILL to the process behind `fd`, a pidfd of our own child: the pidfd names that very
/// process, so a PID reused since it exited is never hit.
pub fn pidfd_kill(fd: &OwnedFd) -> Result<(), Errno> {
    pidfd_send_signal(fd, Signal::SIGKILL)
}

fn pidfd_send_signal(fd: &OwnedFd, sig: Signal) -> Result<(), Errno> {
    // SAFETY: a valid pidfd, a valid signal number, no siginfo (null) and no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Signals `id` only if it is still that process, alive, and `still_ours` accepts it.
pub fn send_verified(
    id: ProcId,
    sig: Signal,
    still_ours: impl Fn(&ProcInfo) -> bool,
) -> Result<Sent, Errno> {
    let pidfd = match pidfd_open(id.pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Ok(Sent::Gone),
        Err(e) => return Err(e),
    };
    let now = match procs::lookup_same(id) {
        procs::Lookup::Found(p) => p,
        procs::Lookup::Gone => return Ok(Sent::Gone),
        procs::Lookup::Unreadable(_) => return Ok(Sent::Refused),
    };
    if !still_ours(&now) {
        return Ok(Sent::Refused);
    }
    let result = match &pidfd {
        Some(fd) => pidfd_send_signal(fd, sig),
        None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(id.pid), sig),
    };
    match result {
        Ok(()) => Ok(Sent::Delivered),
        Err(Errno::ESRCH) => Ok(Sent::Gone),
        Err(e) => Err(e),
    }
}

/// Waits until every process in `ids` is gone (exited, zombie, or its PID reused) or
/// `deadline` passes; returns the ones still alive (or that could not be proven gone).
pub fn wait_gone(ids: &[ProcId], deadline: Deadline) -> Vec<ProcId> {
    let mut watched: Vec<(ProcId, Option<OwnedFd>)> = Vec::new();
    for &id in ids {
        match pidfd_open(id.pid) {
            Err(Errno::ESRCH) => continue,
            // No pidfd (an unexpected error): watch it through /proc alone.
            Err(_) => watched.push((id, None)),
            Ok(fd) => watched.push((id, fd)),
        }
    }
    loop {
        watched.retain(|(id, _)| !procs::is_gone(*id));
        if watched.is_empty() {
            return Vec::new();
        }
        if deadline.expired() {
            return watched.into_iter().map(|(id, _)| id).collect();
        }
        if watched.iter().all(|(_, fd)| fd.is_some()) {
            poll_pidfds(&watched, deadline);
        } else {
            // No pidfd support: fall back to a short sleep between /proc reads.
            std::thread::sleep(deadline.remaining_capped(Duration::from_millis(20)));
        }
    }
}

fn poll_pidfds(watched: &[(ProcId, Option<OwnedFd>)], deadline: Deadline) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds: Vec<PollFd> = watched
        .iter()
        .filter_map(|(_, fd)| fd.as_ref())
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    // At least 1ms so an instant just short of the deadline does not spin; -1 for never.
    let ms = match deadline.poll_millis() {
        -1 => -1,
        ms => ms.max(1),
    };
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    // EINTR or a readable pidfd: either way the caller re-checks.
    let _ = poll(&mut fds, timeout);
}

/// The signal's name without the `SIG` prefix (`QUIT`, `TERM`).
pub fn short_name(sig: Signal) -> &'static str {
    let name = sig.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn signals_a_live_child_and_sees_it_go() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let info = procs::read(pid).unwrap();
        let sent = send_verified(info.id, Signal::SIGTERM, |_| true).unwrap();
        assert_eq!(sent, Sent::Delivered);
        // The child becomes a zombie (we have not reaped it): that counts as gone.
        let left = wait_gone(&[info.id], Deadline::after(Duration::from_secs(5)));
        assert!(left.is_empty());
        assert_eq!(
            send_verified(info.id, Signal::SIGTERM, |_| true).unwrap(),
            Sent::Gone
        );
        child.wait().unwrap();
    }

    #[test]
    fn refuses_a_process_that_fails_the_check_and_a_stale_identity() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let info = procs::read(pid).unwrap();
        assert_eq!(
            send_verified(info.id, Signal::SIGKILL, |p| p.comm == "php-fpm").unwrap(),
            Sent::Refused
        );
        let stale = ProcId {
            pid,
            start_time: info.id.start_time.wrapping_sub(1),
        };
        assert_eq!(
            send_verified(stale, Signal::SIGKILL, |_| true).unwrap(),
            Sent::Gone
        );
        // Still alive after both refusals.
        assert!(procs::read_same(info.id).is_some());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_unexpected_pidfd_error_never_means_gone() {
        // pidfd_open refuses a thread that does not lead its process (EINVAL), although
        // /proc shows it alive: waiting must not take the error for "gone".
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let err = pidfd_open(tid).unwrap_err();
        assert_ne!(err, Errno::ESRCH);
        let info = procs::read(tid).unwrap();
        let left = wait_gone(&[info.id], Deadline::after(Duration::from_millis(50)));
        assert_eq!(left, vec![info.id]);
        assert!(send_verified(info.id, Signal::SIGUSR1, |_| true).is_err());
        done_tx.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn wait_gone_returns_survivors_at_the_deadline() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let info = procs::read(child.id() as i32).unwrap();
        let left = wait_gone(&[info.id], Deadline::after(Duration::from_millis(50)));
        assert_eq!(left, vec![info.id]);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
