//! How the supervisor watches a master it took over (started by a supervisor that died, so
//! not its child: its exit comes as a pidfd event, not as SIGCHLD).
//!
//! The pidfd is opened first and the process looked at after: a pidfd opened on a PID that
//! another process took over in between would watch that process, and the dead master would
//! never be noticed. A master proven gone at that look is reported exited at once; an
//! unreadable `/proc` entry is "maybe alive" and watched (fail closed).

use crate::procs::Lookup;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

/// How an adopted master is watched.
#[derive(Debug)]
pub enum Watch {
    /// Its pidfd, opened before the look that proved it the same process.
    Pidfd(OwnedFd),
    /// Gone already (exited, or its PID taken by another process): report the exit now.
    Exited,
    /// No pidfd could be had (why): its exit cannot be seen.
    Blind(String),
}

/// Decides from `opened` (`pidfd_open` of the master's PID) and `after` (a look at the master
/// by PID and start time, taken after it). Pure.
pub fn watch(opened: Result<Option<OwnedFd>, Errno>, after: Lookup) -> Watch {
    match (opened, after) {
        (Err(Errno::ESRCH), _) | (_, Lookup::Gone) => Watch::Exited,
        (Ok(Some(fd)), Lookup::Found(_) | Lookup::Unreadable(_)) => Watch::Pidfd(fd),
        (Ok(None), _) => Watch::Blind("this kernel has no pidfd_open".into()),
        (Err(e), _) => Watch::Blind(format!("pidfd_open: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn alive() -> Lookup {
        Lookup::Found(crate::procs::read(std::process::id() as i32).unwrap())
    }

    #[test]
    fn a_master_proven_the_same_after_its_pidfd_is_watched_by_it() {
        assert!(matches!(watch(Ok(Some(fd())), alive()), Watch::Pidfd(_)));
        // Unreadable is "maybe alive": watched, never reported gone.
        assert!(matches!(
            watch(Ok(Some(fd())), Lookup::Unreadable("EACCES".into())),
            Watch::Pidfd(_)
        ));
    }

    #[test]
    fn a_pidfd_on_a_pid_taken_over_is_not_kept() {
        // The pidfd opened fine, but on another process: the master's start time is gone.
        assert!(matches!(watch(Ok(Some(fd())), Lookup::Gone), Watch::Exited));
        assert!(matches!(watch(Err(Errno::ESRCH), alive()), Watch::Exited));
        assert!(matches!(
            watch(Err(Errno::ESRCH), Lookup::Gone),
            Watch::Exited
        ));
    }

    #[test]
    fn without_a_pidfd_the_watch_is_blind_and_says_why() {
        assert!(
            matches!(watch(Ok(None), alive()), Watch::Blind(why) if why.contains("pidfd_open"))
        );
        assert!(matches!(
            watch(Err(Errno::EMFILE), alive()),
            Watch::Blind(why) if why.contains("EMFILE")
        ));
    }
}
