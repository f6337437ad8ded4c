//! The systemd notify protocol, both ways: a datagram socket FPM reports to (we pass it as
//! `NOTIFY_SOCKET`; the kernel tells us the sender's PID with `SCM_CREDENTIALS`), and
//! [`SdNotify`], which reports our own state to the service manager that started us.

use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, setsockopt, sockopt};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// One message from FPM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The sender's PID (from the kernel, not from the text).
    pub sender: Option<i32>,
    /// `READY=1` was in it.
    pub ready: bool,
    /// `STATUS=...`.
    pub status: Option<String>,
    /// `MAINPID=...`.
    pub main_pid: Option<i32>,
}

impl Message {
    /// Parses the `KEY=VALUE` lines of a notify datagram.
    pub fn parse(text: &str, sender: Option<i32>) -> Message {
        let mut m = Message {
            sender,
            ..Message::default()
        };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("READY", "1")) => m.ready = true,
                Some(("STATUS", v)) => m.status = Some(v.to_string()),
                Some(("MAINPID", v)) => m.main_pid = v.trim().parse().ok(),
                _ => {}
            }
        }
        m
    }
}

/// The socket FPM reports to.
#[derive(Debug)]
pub struct Listener {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Listener {
    /// Binds a fresh socket in a private temp dir under `parent`.
    pub fn new(parent: &Path) -> std::io::Result<Listener> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix("notify-")
            .tempdir_in(parent)?;
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path)?;
        sock.set_nonblocking(true)?;
        setsockopt(&sock, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
        Ok(Listener {
            sock,
            path,
            _dir: dir,
        })
    }

    /// The path to pass as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message waiting, without blocking.
    pub fn drain(&self) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<UnixAddr>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(m) => m,
                Err(_) => break,
            };
            let mut sender = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmCredentials(cred) = c {
                        sender = Some(cred.pid());
                    }
                }
            }
            let len = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            out.push(Message::parse(&text, sender));
        }
        out
    }
}

impl Listener {
    /// Waits until a message arrives or `deadline` passes, then returns every message waiting
    /// (none at the deadline).
    pub fn wait(&self, deadline: crate::deadline::Deadline) -> Vec<Message> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        loop {
            let now = self.drain();
            if !now.is_empty() || deadline.expired() {
                return now;
            }
            let ms = deadline
                .remaining_capped(std::time::Duration::from_secs(1))
                .as_millis()
                .max(1);
            let timeout = PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            // EINTR or a spurious wake-up: the loop looks again.
            let _ = poll(&mut fds, timeout);
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Reports to the service manager named by our own `NOTIFY_SOCKET` (if any).
#[derive(Debug, Default)]
pub struct SdNotify {
    target: Option<String>,
    sock: Option<UnixDatagram>,
}

impl SdNotify {
    /// Takes `NOTIFY_SOCKET` from the environment (children must not see it: FPM gets ours).
    pub fn from_env() -> SdNotify {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let sock = target.as_ref().and_then(|_| UnixDatagram::unbound().ok());
        SdNotify { target, sock }
    }

    /// True when a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `text` (lines of `KEY=VALUE`); failures are ignored, as sd_notify does.
    pub fn send(&self, text: &str) {
        let (Some(target), Some(sock)) = (&self.target, &self.sock) else {
            return;
        };
        if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
                let _ = sock.send_to_addr(text.as_bytes(), &addr);
            }
        } else {
            let _ = sock.send_to(text.as_bytes(), target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fpm_messages() {
        let m = Message::parse(
            "READY=1\nSTATUS=Ready to handle connections\nMAINPID=42",
            Some(42),
        );
        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("Ready to handle connections"));
        assert_eq!(m.main_pid, Some(42));
        let m = Message::parse("STATUS=Processes active: 0, idle: 2", None);
        assert!(!m.ready);
    }

    #[test]
    fn receives_with_the_senders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let l = Listener::new(dir.path()).unwrap();
        let s = UnixDatagram::unbound().unwrap();
        s.send_to(b"READY=1\nSTATUS=hi", l.path()).unwrap();
        let got = l.drain();
        assert_eq!(got.len(), 1);
        assert!(got[0].ready);
        assert_eq!(got[0].sender, Some(std::process::id() as i32));
        assert!(l.drain().is_empty());
    }
}
