//! Listening sockets the supervisor creates and holds for FPM, handed over through
//! `FPM_SOCKETS` (FPM imports `KEY=FD` pairs and never binds them again), so a restart never
//! closes a socket and clients wait in the backlog instead of failing.
//!
//! A unix socket path is unlinked by FPM when its master exits normally, even when the
//! socket was inherited. To keep the path, each unix socket gets a hard link next to it
//! (`.NAME.fpmctl-held`); [`HeldSockets::restore_paths`] links it back over a missing path.
//! Both names are made and removed through a descriptor of their directory
//! ([`super::names`]). Requested restarts never need that: the old master is retired without
//! running its exit cleanup (see `supervise`).

use super::AtPath;
use super::names::{Dir, keeper_name};
use super::permissions::apply_unix_permissions;
pub use super::permissions::{SavedPermissions, restore_permissions};
use crate::config::{FpmConfig, Pool};
use crate::error::{Error, Result};
use crate::listen::{ListenAddr, TcpHost};
use crate::procs::FileId;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, bind, setsockopt, socket,
    sockopt,
};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// One held listening socket.
#[derive(Debug)]
pub struct HeldSocket {
    /// The address as the config writes it.
    pub addr: ListenAddr,
    /// FPM's key for it in `FPM_SOCKETS`.
    pub key: String,
    /// The listening socket.
    pub fd: OwnedFd,
    /// For a unix socket: the hard link that keeps its inode reachable by name.
    pub keeper: Option<PathBuf>,
    /// For a unix socket: device and inode of the socket *file* (fstat on the descriptor
    /// gives the socket's own inode, not the file's), to recognise our file and keeper before
    /// removing them.
    pub file: Option<FileId>,
}

/// Every socket held for one config.
#[derive(Debug, Default)]
pub struct HeldSockets {
    /// The sockets.
    pub list: Vec<HeldSocket>,
}

impl HeldSockets {
    /// Creates sockets for every address of `cfg` not held yet (pool `listen` and
    /// `pm.status_listen`), honouring listen.owner/group/mode/backlog/acl_users/acl_groups,
    /// and applies those settings again to the sockets already held.
    pub fn reconcile(&mut self, cfg: &FpmConfig) -> Result<()> {
        self.apply_settings(cfg)?;
        for pool in &cfg.pools {
            let mut addrs = vec![&pool.listen];
            addrs.extend(pool.status_listen.iter());
            for addr in addrs {
                if self.list.iter().any(|h| &h.addr == addr) {
                    continue;
                }
                let held = open(pool, addr)?;
                info!(
                    pool = pool.name.as_str(),
                    addr = %held.addr,
                    fd = held.fd.as_raw_fd(),
                    "holding listening socket"
                );
                self.list.push(held);
            }
        }
        Ok(())
    }

    /// Applies `listen.owner`/`group`/`mode`/`acl_*` and `listen.backlog` of `cfg` to the
    /// sockets already held, as they would apply to a new socket (the socket never closes).
    pub fn apply_settings(&self, cfg: &FpmConfig) -> Result<()> {
        for pool in &cfg.pools {
            let addrs = std::iter::once(&pool.listen).chain(pool.status_listen.iter());
            for addr in addrs {
                let Some(h) = self.list.iter().find(|h| &h.addr == addr) else {
                    continue;
                };
                if let Some(path) = addr.unix_path() {
                    apply_unix_permissions(pool, path, &h.fd)?;
                }
                listen_fd(&h.fd, pool.listen_backlog, &addr.to_string())?;
            }
        }
        Ok(())
    }

    /// Removes the hard links that keep unix socket paths restorable, for a holder that
    /// does not outlive the hand-over (the socket paths themselves stay).
    pub fn release_keepers(&mut self) {
        for h in &mut self.list {
            if h.keeper.take().is_some() {
                remove_keeper(h);
            }
        }
    }

    /// Takes over the listening sockets of `cfg` that the running master `pid` holds (an FPM
    /// whose supervisor died): each is duplicated out of it with `pidfd_getfd(2)`, so the
    /// very same sockets keep their queued connections. Returns how many were taken.
    pub fn adopt(&mut self, cfg: &FpmConfig, pid: i32) -> Result<usize> {
        let pidfd = match crate::signals::pidfd_open(pid) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Err(Error::Other("this kernel has no pidfd support".into())),
            Err(e) => {
                return Err(Error::io(
                    format!("pidfd of master {pid}"),
                    std::io::Error::from(e),
                ));
            }
        };
        let dir = format!("/proc/{pid}/fd");
        let entries =
            std::fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {dir}"), e))?;
        let mut taken = 0;
        for entry in entries.flatten() {
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            let Some(num) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if !is_socket {
                continue;
            }
            let fd = pidfd_getfd(&pidfd, num).map_err(|e| {
                Error::io(
                    format!("taking socket {num} of master {pid} (pidfd_getfd)"),
                    std::io::Error::from(e),
                )
            })?;
            if !nix::sys::socket::getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
                continue;
            }
            let Some((pool, addr)) = cfg.pools.iter().find_map(|p| {
                std::iter::once(&p.listen)
                    .chain(p.status_listen.iter())
                    .find(|a| bound_to(&fd, a))
                    .map(|a| (p, a))
            }) else {
                continue;
            };
            if self.list.iter().any(|h| &h.addr == addr) {
                continue;
            }
            // The descriptor's socket inode must be one the kernel lists as listening on
            // this address: a name alone could belong to a socket that lost its path.
            let inodes = crate::listen::listening_inodes(addr)
                .map_err(|e| Error::io(format!("listing the sockets on {addr}"), e))?;
            if !socket_inode(&fd).is_some_and(|ino| inodes.contains(&ino)) {
                warn!(address = %addr, pid, fd = num, "descriptor is bound to the address but is not its listening socket; not taken");
                continue;
            }
            let key = addr.fpm_sockets_key().ok_or_else(|| {
                Error::Other(format!(
                    "pool {}: cannot resolve listen address {addr}",
                    pool.name
                ))
            })?;
            // SAFETY: fcntl(2) on a descriptor we own: the held copy must not leak into
            // children except where the spawn clears the flag on purpose.
            unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            }
            // The file the socket is bound to, where its path leads (the dead supervisor's
            // keeper when it is a name of that very file; else a new one).
            let (keeper, file) = match addr.unix_path() {
                Some(path) => {
                    let found = Dir::of(path).and_then(|dir| {
                        let (file, id) = bound_name(&dir, &fd)?;
                        Ok((keep(&dir, &file, id), id))
                    });
                    match found {
                        Ok((kept, id)) => {
                            if let Err(e) = &kept {
                                warn!(path = %path.display(), error = %e, "no keeper for the socket path");
                            }
                            (kept.is_ok().then(|| keeper_path(path)), Some(id))
                        }
                        Err(e) => {
                            warn!(path = %path.display(), error = %e, "the taken socket's file is not at its path; no keeper, and the path is left alone");
                            (None, None)
                        }
                    }
                }
                None => (None, None),
            };
            info!(
                address = %addr,
                pid,
                "took over the listening socket of the running master"
            );
            self.list.push(HeldSocket {
                addr: addr.clone(),
                key,
                fd,
                keeper,
                file,
            });
            taken += 1;
        }
        Ok(taken)
    }

    /// Closes sockets `cfg` no longer uses (after the FPM that used them is gone).
    pub fn drop_unused(&mut self, cfg: &FpmConfig) {
        let wanted: Vec<&ListenAddr> = cfg
            .pools
            .iter()
            .flat_map(|p| std::iter::once(&p.listen).chain(p.status_listen.iter()))
            .collect();
        let (keep, drop): (Vec<HeldSocket>, Vec<HeldSocket>) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|h| wanted.contains(&&h.addr));
        self.list = keep;
        for h in drop {
            info!(addr = %h.addr, "closing listening socket (no pool uses it any more)");
            remove_unix(&h);
        }
    }

    /// The sockets `cfg` uses. FPM closes (and for unix sockets unlinks) any inherited socket
    /// its config does not use, so it must be handed only these.
    fn used_by<'a>(&'a self, cfg: &FpmConfig) -> impl Iterator<Item = &'a HeldSocket> {
        let wanted = addresses(cfg);
        self.list.iter().filter(move |h| wanted.contains(&h.addr))
    }

    /// The `FPM_SOCKETS` value for the sockets `cfg` uses.
    /// A unix path that is not UTF-8 keeps its bytes (the keys are read losslessly).
    pub fn env_value(&self, cfg: &FpmConfig) -> std::ffi::OsString {
        let text = self
            .used_by(cfg)
            .map(|h| format!("{}={}", h.key, h.fd.as_raw_fd()))
            .collect::<Vec<_>>()
            .join(",");
        crate::lossless::to_path(&text).into_os_string()
    }

    /// Raw descriptors of the sockets `cfg` uses, to pass to FPM.
    pub fn raw_fds(&self, cfg: &FpmConfig) -> Vec<RawFd> {
        self.used_by(cfg).map(|h| h.fd.as_raw_fd()).collect()
    }

    /// Puts back every unix socket path that FPM removed; returns the paths restored.
    pub fn restore_paths(&self) -> Vec<PathBuf> {
        let mut restored = Vec::new();
        for h in &self.list {
            let (Some(path), Some(_), Some(ours)) = (h.addr.unix_path(), &h.keeper, h.file) else {
                continue;
            };
            let Ok(dir) = Dir::of(path) else { continue };
            if dir.stat(dir.name()).is_some() {
                continue;
            }
            // The keeper is itself a name of the inode: link it back under the real name,
            // from the keeper opened and found to be that very file (another file put under
            // the keeper's name is not made the pool's socket path).
            let linked = dir.open(&dir.keeper()).and_then(|keeper| {
                if FileId::of_stat(&nix::sys::stat::fstat(&keeper)?) != ours {
                    return Err(std::io::Error::other(
                        "the keeper is not the held socket's file any more",
                    ));
                }
                dir.link_file(&keeper, dir.name())
            });
            match linked {
                Ok(()) => {
                    warn!(path = %path.display(), "restored a socket path FPM removed");
                    restored.push(path.to_path_buf());
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not restore a socket path")
                }
            }
        }
        restored
    }

    /// Removes socket paths and keepers (when the supervisor exits).
    pub fn remove_all(self) {
        for h in &self.list {
            remove_unix(h);
        }
    }
}

/// Duplicates descriptor `target` of the process behind `pidfd` into ours.
fn pidfd_getfd(pidfd: &OwnedFd, target: i32) -> std::result::Result<OwnedFd, nix::errno::Errno> {
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags (0) and returns a
    // new descriptor or -1; it touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if ret < 0 {
        return Err(nix::errno::Errno::last());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// The socket's own inode (what `/proc/net/*` and `/proc/PID/fd` name it by).
fn socket_inode(fd: &OwnedFd) -> Option<u64> {
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

/// True when the socket `fd` is bound to `addr`.
fn bound_to(fd: &OwnedFd, addr: &ListenAddr) -> bool {
    use nix::sys::socket::{SockaddrStorage, getsockname};
    let Ok(local) = getsockname::<SockaddrStorage>(fd.as_raw_fd()) else {
        return false;
    };
    match addr {
        ListenAddr::Unix(path) => local
            .as_unix_addr()
            .and_then(|u| u.path())
            .is_some_and(|p| p == path.as_path()),
        ListenAddr::Tcp { host, port } => {
            let (ip, p): (IpAddr, u16) = if let Some(v4) = local.as_sockaddr_in() {
                (IpAddr::V4(v4.ip()), v4.port())
            } else if let Some(v6) = local.as_sockaddr_in6() {
                (IpAddr::V6(v6.ip()), v6.port())
            } else {
                return false;
            };
            p == *port
                && match host {
                    TcpHost::Any => ip.is_unspecified(),
                    TcpHost::Ip(want) => {
                        ip == *want
                            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped() == Some(match want { IpAddr::V4(w) => *w, _ => std::net::Ipv4Addr::UNSPECIFIED }))
                    }
                    TcpHost::Name(_) => addr
                        .connect_addrs()
                        .is_ok_and(|all| all.iter().any(|a| a.ip() == ip)),
                }
        }
    }
}

/// Every address `cfg` listens on: each pool's `listen` and `pm.status_listen`.
fn addresses(cfg: &FpmConfig) -> Vec<ListenAddr> {
    crate::discovery::config_addresses(cfg)
        .into_iter()
        .map(|(_, addr)| addr)
        .collect()
}

/// Removes the socket's keeper, if it is still a name of the socket's file.
fn remove_keeper(h: &HeldSocket) {
    if let (Some(path), Some(ours)) = (h.addr.unix_path(), h.file)
        && let Ok(dir) = Dir::of(path)
    {
        dir.remove_if(&dir.keeper(), ours);
    }
}

fn remove_unix(h: &HeldSocket) {
    if h.keeper.is_some() {
        remove_keeper(h);
    }
    // Only our socket file, not one someone else bound since.
    if let (Some(path), Some(ours)) = (h.addr.unix_path(), h.file)
        && let Ok(dir) = Dir::of(path)
    {
        dir.remove_if(dir.name(), ours);
    }
}

/// The socket file `sock` is bound to, named in `dir` (`dir.name()`), with its keeper next to
/// it: an error, and nothing linked, when that name is not the file (the path, or a directory
/// on it, was replaced since the bind) or the keeper cannot be made.
fn keep_name(dir: &Dir, sock: &OwnedFd) -> std::io::Result<FileId> {
    let (file, id) = bound_name(dir, sock)?;
    keep(dir, &file, id)?;
    Ok(id)
}

/// The file `dir.name()` names, opened, and its identity, when it is the very file the unix
/// socket `sock` is bound to (the kernel's `UNIX_DIAG_VFS`). A directory on the path can be
/// swapped for a symlink at any time: what the name leads to is recorded, linked and later
/// removed only once the kernel says it is ours. When the kernel cannot say (no `UNIX_DIAG`),
/// a socket file that is no symlink is taken, as for its permissions.
fn bound_name(dir: &Dir, sock: &OwnedFd) -> std::io::Result<(OwnedFd, FileId)> {
    use std::io::{Error, ErrorKind};
    let file = dir.open(dir.name())?;
    let st = nix::sys::stat::fstat(&file)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Error::other("not a socket file"));
    }
    let replaced = || {
        Error::other(
            "not the file the socket is bound to (the path, or a directory on it, was replaced since the bind)",
        )
    };
    let sock_ino = nix::sys::stat::fstat(sock)?.st_ino;
    match crate::listen::unix_bound_file(sock_ino) {
        Ok(Some(bound)) => {
            if !bound.is_open_file(std::os::fd::AsFd::as_fd(&file))? {
                return Err(replaced());
            }
        }
        Ok(None) => return Err(replaced()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(replaced()),
        Err(_) => {}
    }
    Ok((file, FileId::of_stat(&st)))
}

/// Makes the keeper in `dir` a name of `file` (identity `id`), unless it is one already (a
/// dead supervisor's): linked from the open file itself, never from a name that could be
/// swapped meanwhile. Whatever else has the keeper's name (a stale keeper, or a file or
/// symlink the pool's user left there to make the link fail) is removed as a name in this
/// directory only: `unlinkat` follows no symlink and removes no directory.
fn keep(dir: &Dir, file: &OwnedFd, id: FileId) -> std::io::Result<()> {
    let keeper = dir.keeper();
    if dir.stat(&keeper).map(|(k, _)| k) == Some(id) {
        return Ok(());
    }
    dir.remove_name(&keeper);
    dir.link_file(file, &keeper)
}

fn keeper_path(path: &Path) -> PathBuf {
    path.with_file_name(keeper_name(path.file_name().unwrap_or_default()))
}

fn open(pool: &Pool, addr: &ListenAddr) -> Result<HeldSocket> {
    let key = addr.fpm_sockets_key().ok_or_else(|| {
        Error::Other(format!(
            "pool {}: cannot resolve listen address {addr}",
            pool.name
        ))
    })?;
    let backlog = pool.listen_backlog;
    match addr {
        ListenAddr::Unix(path) => {
            let fd = open_unix(pool, path, backlog)?;
            let keeper = keeper_path(path);
            let linking = || format!("linking {} to {}", path.display(), keeper.display());
            let dir = Dir::of(path).map_err(|e| Error::io(linking(), e))?;
            let file = keep_name(&dir, &fd).map_err(|e| Error::io(linking(), e))?;
            Ok(HeldSocket {
                addr: addr.clone(),
                key,
                fd,
                keeper: Some(keeper),
                file: Some(file),
            })
        }
        ListenAddr::Tcp { host, port } => {
            let fd = open_tcp(pool, addr, host, *port, backlog)?;
            Ok(HeldSocket {
                addr: addr.clone(),
                key,
                fd,
                keeper: None,
                file: None,
            })
        }
    }
}

pub(super) fn sys(what: String) -> impl FnOnce(nix::errno::Errno) -> Error {
    move |e| Error::io(what, std::io::Error::from(e))
}

fn listen_fd(fd: &OwnedFd, backlog: i32, what: &str) -> Result<()> {
    // SAFETY: listen(2) on a descriptor we own; a negative backlog means the kernel maximum.
    let ret = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    if ret < 0 {
        return Err(Error::io(
            format!("listen on {what}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn open_unix(pool: &Pool, path: &Path, backlog: i32) -> Result<OwnedFd> {
    match super::clear_dead_socket(path) {
        AtPath::Free | AtPath::Removed => {}
        AtPath::NotASocket => {
            return Err(Error::Other(format!(
                "pool {}: {} exists and is not a socket",
                pool.name,
                path.display()
            )));
        }
        AtPath::Listening => {
            return Err(Error::Other(format!(
                "pool {}: something already listens on {}",
                pool.name,
                path.display()
            )));
        }
        AtPath::Unknown => {
            return Err(Error::Other(format!(
                "pool {}: cannot tell whether something listens on {}; it was left alone",
                pool.name,
                path.display()
            )));
        }
    }
    let what = path.display().to_string();
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sys(format!("socket for {what}")))?;
    let sa = UnixAddr::new(path).map_err(sys(format!("socket path {what}")))?;
    bind(fd.as_raw_fd(), &sa).map_err(sys(format!("bind {what}")))?;
    apply_unix_permissions(pool, path, &fd)?;
    listen_fd(&fd, backlog, &what)?;
    Ok(fd)
}

fn open_tcp(
    pool: &Pool,
    addr: &ListenAddr,
    host: &TcpHost,
    port: u16,
    backlog: i32,
) -> Result<OwnedFd> {
    let what = addr.to_string();
    let target: SocketAddr = match host {
        TcpHost::Any => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        TcpHost::Ip(ip) => SocketAddr::new(*ip, port),
        TcpHost::Name(_) => *addr
            .connect_addrs()
            .map_err(|e| Error::io(format!("resolving {what}"), e))?
            .first()
            .ok_or_else(|| Error::Other(format!("pool {}: {what} does not resolve", pool.name)))?,
    };
    let family = if target.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(sys(format!("socket for {what}")))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sys(format!("SO_REUSEADDR on {what}")))?;
    let bound = match target {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => {
            if matches!(host, TcpHost::Any) {
                setsockopt(&fd, sockopt::Ipv6V6Only, &false)
                    .map_err(sys(format!("IPV6_V6ONLY on {what}")))?;
            }
            bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))
        }
    };
    bound.map_err(|e| {
        Error::io(
            format!("pool {}: bind {what}", pool.name),
            std::io::Error::from(e),
        )
    })?;
    listen_fd(&fd, backlog, &what)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_directory_swapped_after_the_bind_gets_no_keeper_and_its_file_is_not_recorded() {
        // The pool's user replaces a directory on the path between the bind and the keeper:
        // the path now leads to another service's socket of the same name.
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let path = a.join("www.sock");
        let ours = OwnedFd::from(UnixListener::bind(&path).unwrap());
        std::fs::rename(&a, tmp.path().join("moved")).unwrap();
        std::fs::create_dir(&a).unwrap();
        let _theirs = UnixListener::bind(&path).unwrap();
        let dir = Dir::of(&path).unwrap();
        assert!(keep_name(&dir, &ours).is_err());
        assert!(
            !a.join(".www.sock.fpmctl-held").exists(),
            "root linked a name to another service's socket"
        );
        // Where the socket really is, its keeper is made.
        let real = Dir::of(&tmp.path().join("moved/www.sock")).unwrap();
        let id = keep_name(&real, &ours).unwrap();
        assert_eq!(real.stat(&real.keeper()).unwrap().0, id);
    }

    #[test]
    fn a_file_planted_in_the_keepers_name_neither_blocks_the_keeper_nor_is_followed() {
        // The pool's user leaves a plain file, or a symlink to a file of root's, where the
        // keeper goes: the supervisor must still hold the socket with its keeper.
        let tmp = tempfile::tempdir().unwrap();
        let precious = tmp.path().join("precious");
        std::fs::write(&precious, "x").unwrap();
        for planted in ["file", "symlink"] {
            let run = tmp.path().join(planted);
            std::fs::create_dir(&run).unwrap();
            let path = run.join("www.sock");
            let keeper = run.join(".www.sock.fpmctl-held");
            match planted {
                "file" => std::fs::write(&keeper, "junk").unwrap(),
                _ => std::os::unix::fs::symlink(&precious, &keeper).unwrap(),
            }
            let ours = OwnedFd::from(UnixListener::bind(&path).unwrap());
            let dir = Dir::of(&path).unwrap();
            let id = keep_name(&dir, &ours).unwrap_or_else(|e| panic!("{planted}: {e}"));
            assert_eq!(dir.stat(&dir.keeper()).unwrap().0, id, "{planted}");
        }
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "x");
    }

    #[test]
    fn only_the_sockets_own_file_is_linked_back_over_a_removed_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("www.sock");
        let fd = OwnedFd::from(UnixListener::bind(&path).unwrap());
        let id = keep_name(&Dir::of(&path).unwrap(), &fd).unwrap();
        let keeper = keeper_path(&path);
        let held = HeldSockets {
            list: vec![HeldSocket {
                addr: ListenAddr::Unix(path.clone()),
                key: path.display().to_string(),
                fd,
                keeper: Some(keeper.clone()),
                file: Some(id),
            }],
        };
        // FPM removed the path: the keeper puts the very file back.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(held.restore_paths(), vec![path.clone()]);
        let dir = Dir::of(&path).unwrap();
        assert_eq!(dir.stat(dir.name()).unwrap().0, id);
        // The pool's user put another socket (one they listen on) under the keeper's name:
        // it must not become the pool's socket path.
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&keeper).unwrap();
        let _theirs = UnixListener::bind(&keeper).unwrap();
        assert!(held.restore_paths().is_empty());
        assert!(path.symlink_metadata().is_err());
    }

    #[test]
    fn a_listener_with_a_full_backlog_at_the_path_fails_the_bind_without_hanging_it() {
        // The pool's user listens at the socket's path and never accepts: a blocking connect
        // to see whether something listens would wait forever (the supervisor's whole loop,
        // when a restart adds the pool).
        use nix::sys::socket::{
            AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
        };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("www.sock");
        let conf = tmp.path().join("fpm.conf");
        std::fs::write(
            &conf,
            format!(
                "[global]\npid = {0}/fpm.pid\n[www]\nlisten = {1}\npm = static\npm.max_children = 1\n",
                tmp.path().display(),
                path.display()
            ),
        )
        .unwrap();
        let cfg = crate::config::load(&conf).unwrap();
        let theirs = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        let addr = UnixAddr::new(&path).unwrap();
        bind(theirs.as_raw_fd(), &addr).unwrap();
        listen(&theirs, Backlog::new(0).unwrap()).unwrap();
        let mut queued = Vec::new();
        loop {
            let c = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            let full = connect(c.as_raw_fd(), &addr).is_err();
            queued.push(c);
            if full {
                break;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = &cfg.pools[0];
            let _ = tx.send(
                open(pool, &pool.listen)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        });
        // Generous: the answer takes microseconds; only a hang waits this out.
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the bind hung on the listener's full backlog");
        let err = got.expect_err("something listens there");
        assert!(err.contains("already listens"), "{err}");
        assert!(path.exists());
    }
}
