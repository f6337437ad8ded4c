//! The live system, for what logs cannot prove: connecting to each address as nginx's user
//! (a forked child that drops to that user), the accept queue of each pool's socket (sock_diag
//! through [`crate::listen`]), who holds each address ([`crate::discovery`]), whether FPM's
//! master runs, and `net.core.somaxconn`. Never used with `--offline`.
//!
//! One [`Deadline`] bounds the connections: each takes the smaller of its own limit and what
//! is left, and an address not reached in time is [`ProbeResult::NotChecked`] (neither healthy
//! nor down), so doctor answers promptly however many pools do not.

use super::facts::{HolderFacts, LiveFacts, Probe, ProbeResult, Queue};
use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery::{self, Role};
use crate::listen::{self, ListenAddr, QueueAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// A TCP connection's own limit.
const TCP_CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// A probe child's own limit (a non-blocking connect as another user: a fork and a few
/// system calls).
const CHILD_LIMIT: Duration = Duration::from_secs(2);

/// Gathers live facts for the pools of `cfg` (when known) and the FastCGI addresses nginx
/// passes to, probing as `nginx_user` (as ourselves when it is unknown: that still shows
/// whether anything listens), the probes within `deadline`.
pub fn gather(
    cfg: Option<&FpmConfig>,
    nginx_targets: &[ListenAddr],
    nginx_user: Option<&str>,
    deadline: Deadline,
) -> LiveFacts {
    let mut live = LiveFacts {
        somaxconn: std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        mem_total_kib: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| meminfo_total(&t)),
        ..LiveFacts::default()
    };
    let mut addrs: Vec<ListenAddr> = Vec::new();
    if let Some(cfg) = cfg {
        let snap = discovery::discover_reporting(cfg);
        live.fpm_running = Some(snap.master.is_some());
        for a in &snap.addresses {
            let holders: Vec<String> = a
                .holders
                .iter()
                .map(|h| {
                    format!(
                        "PID {} ({}), {}",
                        h.proc.pid(),
                        h.proc.title,
                        h.role.as_str()
                    )
                })
                .collect();
            live.holders.push(HolderFacts {
                addr: a.addr.clone(),
                orphans_only: !a.holders.is_empty()
                    && a.holders.iter().all(|h| h.role == Role::Orphan),
                own: a
                    .holders
                    .iter()
                    .any(|h| matches!(h.role, Role::Master | Role::Worker | Role::Supervisor)),
                holders,
            });
        }
        addrs.extend(cfg.pools.iter().map(|p| p.listen.clone()));
        for pool in &cfg.pools {
            let rss: Vec<u64> = snap
                .pool_workers(&pool.name)
                .iter()
                .filter_map(|w| rss_kib(w.pid()))
                .collect();
            if !rss.is_empty() {
                live.worker_rss_kib.push((
                    pool.name.clone(),
                    rss.iter().sum::<u64>() / rss.len() as u64,
                ));
            }
        }
    }
    for t in nginx_targets {
        if !addrs.contains(t) {
            addrs.push(t.clone());
        }
    }
    for a in &addrs {
        live.probes.push(probe_within(a, nginx_user, deadline));
    }
    if let Ok(queues) = listen::accept_queues() {
        for a in &addrs {
            for q in &queues {
                let on = match (&q.addr, a) {
                    (QueueAddr::Unix(p), ListenAddr::Unix(want)) => p == want,
                    (QueueAddr::Tcp(s), ListenAddr::Tcp { .. }) => a.tcp_conflicts_with(s),
                    _ => false,
                };
                if on {
                    live.queues.push(Queue {
                        addr: a.clone(),
                        waiting: q.waiting,
                        limit: q.limit,
                    });
                }
            }
        }
    }
    live
}

/// Resident memory of a process in KiB (`/proc/PID/statm`, pages).
fn rss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf with a constant name has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()? / 1024)
}

/// `MemTotal` from `/proc/meminfo` text, in KiB.
pub fn meminfo_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Connects to `addr`: a unix socket as `user` (in a child that drops to it), TCP and an
/// unknown user as we are. A unix socket is connected to without blocking, as nginx does: a
/// full accept queue (the saturated pool behind a 502) answers `EAGAIN` at once, where a
/// blocking connect would wait for a worker to accept, for ever if none does.
pub fn probe(addr: &ListenAddr, user: Option<&str>) -> Probe {
    probe_within(addr, user, Deadline::after(Duration::from_secs(60)))
}

/// [`probe`], within `deadline`: [`ProbeResult::NotChecked`] when it has passed, or when
/// the connection it cut short had not been answered.
pub fn probe_within(addr: &ListenAddr, user: Option<&str>, deadline: Deadline) -> Probe {
    let result = if deadline.expired() {
        ProbeResult::NotChecked
    } else {
        match (addr, user) {
            (ListenAddr::Unix(path), Some(user)) => connect_unix_as(path, user, deadline),
            (ListenAddr::Unix(path), None) => connect_unix(path),
            (ListenAddr::Tcp { .. }, _) => connect_tcp(addr, deadline),
        }
    };
    let socket_perms = match addr {
        ListenAddr::Unix(path) => socket_perms(path),
        ListenAddr::Tcp { .. } => None,
    };
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "fpmctl's user".to_string(), |u| u.name);
    Probe {
        addr: addr.clone(),
        user: user.map_or(me, str::to_string),
        result,
        socket_perms,
    }
}

fn failed(e: &std::io::Error) -> ProbeResult {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    ProbeResult::Failed(e.raw_os_error().unwrap_or(0), text)
}

fn connect_tcp(addr: &ListenAddr, deadline: Deadline) -> ProbeResult {
    let targets = match addr.connect_addrs() {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return ProbeResult::NotTried("no address to connect to".into()),
        Err(e) => return ProbeResult::NotTried(format!("cannot resolve: {e}")),
    };
    let mut last = None;
    for t in targets {
        let limit = deadline.remaining_capped(TCP_CONNECT_LIMIT);
        if limit.is_zero() {
            return ProbeResult::NotChecked;
        }
        match std::net::TcpStream::connect_timeout(&t, limit) {
            Ok(_) => return ProbeResult::Connected,
            // Cut short by the overall limit, not by its own: unanswered is not an answer.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && limit < TCP_CONNECT_LIMIT => {
                return ProbeResult::NotChecked;
            }
            Err(e) => last = Some(e),
        }
    }
    last.map_or(ProbeResult::NotTried("no address".into()), |e| failed(&e))
}

/// A non-blocking connect to a unix socket, as we are.
fn connect_unix(path: &Path) -> ProbeResult {
    match crate::listen::connect_unix_now(path) {
        Ok(()) => ProbeResult::Connected,
        Err(e @ nix::errno::Errno::ENAMETOOLONG) => {
            ProbeResult::NotTried(format!("{}: {e}", path.display()))
        }
        Err(e) => failed(&std::io::Error::from(e)),
    }
}

/// `owner:group mode` of a socket file.
fn socket_perms(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let owner = nix::unistd::User::from_uid(m.uid().into())
        .ok()
        .flatten()
        .map_or_else(|| m.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(m.gid().into())
        .ok()
        .flatten()
        .map_or_else(|| m.gid().to_string(), |g| g.name);
    Some(format!("{owner}:{group} {:04o}", m.mode() & 0o7777))
}

/// Exit status of the probe child when dropping privileges failed.
const DROP_FAILED: i32 = 255;

fn connect_unix_as(path: &Path, user: &str, deadline: Deadline) -> ProbeResult {
    let Ok(Some(u)) = nix::unistd::User::from_name(user) else {
        return ProbeResult::NotTried(format!("no user {user} on this host"));
    };
    let me = nix::unistd::geteuid();
    if me == u.uid {
        return connect_unix(path);
    }
    if !me.is_root() {
        return ProbeResult::NotTried(format!("connecting as {user} needs root"));
    }
    // Everything the child needs is built before fork: it only makes system calls.
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        return ProbeResult::NotTried("socket path too long".into());
    }
    for (dst, src) in sa.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let (uid, gid) = (u.uid.as_raw(), u.gid.as_raw());
    // SAFETY: fpmctl is single-threaded here; the child calls only async-signal-safe
    // functions (setgroups, setresgid, setresuid, socket, connect, _exit) on data prepared
    // before the fork, and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return ProbeResult::NotTried(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; every call's arguments are valid for its duration.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(DROP_FAILED);
            }
            let fd = libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            );
            if fd < 0 {
                libc::_exit(*libc::__errno_location() & 0x7f);
            }
            let r = libc::connect(
                fd,
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            libc::_exit(if r == 0 {
                0
            } else {
                *libc::__errno_location() & 0x7f
            });
        }
    }
    // Its own limit or what is left, whichever is less; then it is killed and reaped (our own
    // unreaped child: its PID cannot have been reused).
    let limit = Deadline::after(deadline.remaining_capped(CHILD_LIMIT));
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child, without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return ProbeResult::NotTried("lost the probe child".into());
        }
        if limit.expired() {
            // SAFETY: signalling and reaping our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return if deadline.expired() {
                ProbeResult::NotChecked
            } else {
                ProbeResult::NotTried("the probe child did not finish".into())
            };
        }
        std::thread::sleep(limit.remaining_capped(Duration::from_millis(1)));
    }
    if !libc::WIFEXITED(status) {
        return ProbeResult::NotTried("the probe child died".into());
    }
    match libc::WEXITSTATUS(status) {
        0 => ProbeResult::Connected,
        DROP_FAILED => ProbeResult::NotTried(format!("could not switch to user {user}")),
        errno => failed(&std::io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_memtotal() {
        assert_eq!(
            meminfo_total("MemTotal:        8123456 kB\nMemFree: 1 kB\n"),
            Some(8_123_456)
        );
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert!(rss_kib(std::process::id() as i32).is_some_and(|k| k > 0));
    }

    /// A listener whose accept queue is full (nothing accepts): the probe answers EAGAIN,
    /// as nginx's non-blocking connect gets it, instead of waiting for ever.
    #[test]
    fn a_full_accept_queue_answers_eagain_instead_of_hanging() {
        use nix::sys::socket::{
            AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
        };
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("full.sock");
        let addr = UnixAddr::new(&path).unwrap();
        let unix = || {
            socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap()
        };
        let listener = unix();
        bind(listener.as_raw_fd(), &addr).unwrap();
        listen(&listener, Backlog::new(1).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        // Fill the queue: connects succeed until it is full.
        let mut queued = Vec::new();
        loop {
            let c = unix();
            match connect(c.as_raw_fd(), &addr) {
                Ok(()) => queued.push(c),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => panic!("filling the queue: {e}"),
            }
            assert!(queued.len() < 100, "the queue never filled");
        }
        let mut users = vec![None];
        if nix::unistd::geteuid().is_root() {
            users.push(Some("nobody"));
        }
        for user in users {
            let (tx, rx) = std::sync::mpsc::channel();
            let target = ListenAddr::Unix(path.clone());
            std::thread::spawn(move || {
                let _ = tx.send(probe(&target, user));
            });
            // A hang detector, not a speed limit: a blocking connect never returns here.
            let p = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the probe as {user:?} hangs on a full accept queue"));
            assert!(
                matches!(p.result, ProbeResult::Failed(11, _)),
                "as {user:?}: {:?}",
                p.result
            );
        }
        drop(queued);
    }

    /// Past the overall deadline nothing is tried, and a TCP connection the deadline cut
    /// short (a full accept queue drops the SYN: no answer at all) is not checked, not down.
    #[test]
    fn the_overall_deadline_leaves_addresses_not_checked() {
        use nix::sys::socket::{Backlog, SockaddrIn, bind, getsockname, listen};
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::new(127, 0, 0, 1, 0),
        )
        .unwrap();
        listen(&fd, Backlog::new(1).unwrap()).unwrap();
        let port = getsockname::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .unwrap()
            .port();
        let sa = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut queued = Vec::new();
        while let Ok(c) = std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(500)) {
            queued.push(c);
            assert!(queued.len() < 64, "the queue never filled");
        }
        let addr = ListenAddr::parse(&format!("127.0.0.1:{port}")).unwrap();
        let gone = Deadline::after(Duration::ZERO);
        assert_eq!(
            probe_within(&addr, None, gone).result,
            ProbeResult::NotChecked
        );
        let short = Deadline::after(Duration::from_millis(200));
        assert_eq!(
            probe_within(&addr, None, short).result,
            ProbeResult::NotChecked
        );
        let unix = ListenAddr::Unix("/nonexistent/x.sock".into());
        assert_eq!(
            probe_within(&unix, None, Deadline::after(Duration::ZERO)).result,
            ProbeResult::NotChecked
        );
    }

    #[test]
    fn a_socket_only_root_may_use_refuses_nobody() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("NOTICE: not root; the drop-to-user probe cannot be tested");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("p.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = probe(&ListenAddr::Unix(path.clone()), Some("nobody"));
        assert_eq!(
            p.result,
            ProbeResult::Failed(13, "Permission denied".into())
        );
        assert!(
            p.socket_perms.as_deref().unwrap().ends_with(" 0600"),
            "{:?}",
            p.socket_perms
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            probe(&ListenAddr::Unix(path.clone()), Some("nobody")).result,
            ProbeResult::Connected
        );
        let gone = probe(
            &ListenAddr::Unix(dir.path().join("none.sock")),
            Some("nobody"),
        );
        assert!(matches!(gone.result, ProbeResult::Failed(2, _)), "{gone:?}");
        let nouser = probe(&ListenAddr::Unix(path), Some("no-such-user-x"));
        assert!(matches!(nouser.result, ProbeResult::NotTried(_)));
    }
}
