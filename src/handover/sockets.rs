//! Listening sockets the supervisor creates and holds for FPM, handed over through
//! `FPM_SOCKETS` (see FPM-facts: FPM imports `KEY=FD` pairs and never re-binds them), so a
//! restart never closes a socket and clients wait in the backlog instead of failing.
//!
//! A unix socket path is unlinked by FPM when its master exits normally, even when the
//! socket was inherited. To keep the path, each unix socket gets a hard link next to it
//! (`.NAME.fpmctl-held`); [`HeldSockets::restore_paths`] renames it back over a missing path
//! and links it again. Requested restarts never need that: the old master is retired without
//! running its exit cleanup (see `supervise`).

use crate::config::{FpmConfig, Pool};
use crate::error::{Error, Result};
use crate::listen::{ListenAddr, TcpHost};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, bind, setsockopt, socket,
    sockopt,
};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
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
    /// For a unix socket: the inode of the socket *file* (fstat on the descriptor gives the
    /// socket's own inode, not the file's), to recognise our file before removing it.
    pub file_ino: Option<u64>,
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
                    apply_unix_permissions(pool, path)?;
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
            if let Some(k) = h.keeper.take() {
                let _ = std::fs::remove_file(k);
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
            let (keeper, file_ino) = match addr.unix_path() {
                Some(path) => {
                    use std::os::unix::fs::MetadataExt;
                    let keeper = keeper_path(path);
                    if !keeper.exists() {
                        let _ = std::fs::hard_link(path, &keeper);
                    }
                    (
                        keeper.exists().then_some(keeper),
                        std::fs::symlink_metadata(path).ok().map(|m| m.ino()),
                    )
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
                file_ino,
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
            let (Some(path), Some(keeper)) = (h.addr.unix_path(), &h.keeper) else {
                continue;
            };
            if path.exists() {
                continue;
            }
            // The keeper is itself a name of the inode: link it back under the real name.
            match std::fs::hard_link(keeper, path) {
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

/// A unix socket file's permissions as they were: mode, owner, group and POSIX ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPermissions {
    path: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
    acl: Option<Vec<u8>>,
}

impl HeldSockets {
    /// The permissions of every held unix socket's file, to put back with
    /// [`restore_permissions`] when the settings of a config that did not take over are
    /// undone (the old master keeps serving, and so must its clients).
    pub fn save_permissions(&self) -> Vec<SavedPermissions> {
        use std::os::unix::fs::MetadataExt;
        self.list
            .iter()
            .filter_map(|h| h.addr.unix_path())
            .filter_map(|path| {
                let m = std::fs::symlink_metadata(path).ok()?;
                m.file_type().is_socket().then(|| SavedPermissions {
                    path: path.to_path_buf(),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    acl: get_acl(path),
                })
            })
            .collect()
    }
}

/// Puts back permissions [`HeldSockets::save_permissions`] saved, on the same socket
/// files only (a path that is no socket now is left alone).
pub fn restore_permissions(saved: &[SavedPermissions]) {
    use std::os::unix::fs::PermissionsExt;
    for s in saved {
        // By descriptor: a path swapped for a symlink between a check and a chown by name
        // would lead root's chown onto any file.
        let Ok(file) = SocketFile::open(&s.path) else {
            continue;
        };
        let at = file.path();
        let restored = remove_acl(&at)
            .and_then(|()| {
                nix::unistd::chown(
                    &at,
                    Some(nix::unistd::Uid::from_raw(s.uid)),
                    Some(nix::unistd::Gid::from_raw(s.gid)),
                )
                .map_err(std::io::Error::from)
            })
            .and_then(|()| std::fs::set_permissions(&at, std::fs::Permissions::from_mode(s.mode)))
            .and_then(|()| s.acl.as_deref().map_or(Ok(()), |a| set_acl(&at, a)));
        if let Err(e) = restored {
            warn!(path = %s.path.display(), error = %e, "could not put the socket's permissions back");
        }
    }
}

/// A unix socket's file, opened by its path without following a symlink there (`O_PATH |
/// O_NOFOLLOW`) and proven a socket. Its permissions are changed through
/// `/proc/self/fd/N`, which names the opened file itself: socket paths often lie in a
/// directory the pool's user may write, where the path can be swapped for a symlink to any
/// file between a check and a chmod or chown by name.
struct SocketFile {
    fd: OwnedFd,
}

impl SocketFile {
    fn open(path: &Path) -> std::io::Result<SocketFile> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let st = nix::sys::stat::fstat(&fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(std::io::Error::other(
                "not a socket (a symlink or another file is there now)",
            ));
        }
        Ok(SocketFile { fd })
    }

    /// The path that names the opened file itself, whatever its name points to now.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
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

fn remove_unix(h: &HeldSocket) {
    if let Some(k) = &h.keeper {
        let _ = std::fs::remove_file(k);
    }
    if let (Some(path), Some(ours)) = (h.addr.unix_path(), h.file_ino) {
        // Only our socket file, not one someone else bound since.
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ours) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn keeper_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.fpmctl-held"))
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
            use std::os::unix::fs::MetadataExt;
            let file_ino = std::fs::symlink_metadata(path).ok().map(|m| m.ino());
            let keeper = keeper_path(path);
            let _ = std::fs::remove_file(&keeper);
            std::fs::hard_link(path, &keeper).map_err(|e| {
                Error::io(
                    format!("linking {} to {}", path.display(), keeper.display()),
                    e,
                )
            })?;
            Ok(HeldSocket {
                addr: addr.clone(),
                key,
                fd,
                keeper: Some(keeper),
                file_ino,
            })
        }
        ListenAddr::Tcp { host, port } => {
            let fd = open_tcp(pool, addr, host, *port, backlog)?;
            Ok(HeldSocket {
                addr: addr.clone(),
                key,
                fd,
                keeper: None,
                file_ino: None,
            })
        }
    }
}

fn sys(what: String) -> impl FnOnce(nix::errno::Errno) -> Error {
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
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::Other(format!(
                "pool {}: {} exists and is not a socket",
                pool.name,
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Other(format!(
                "pool {}: something already listens on {}",
                pool.name,
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
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
    apply_unix_permissions(pool, path)?;
    listen_fd(&fd, backlog, &what)?;
    Ok(fd)
}

/// `listen.mode`, then either `listen.acl_users`/`listen.acl_groups` as a POSIX ACL or
/// `listen.owner`/`listen.group` as the file's owner, as php-fpm applies them to a socket it
/// creates (with an ACL, php-fpm ignores owner and group). Applied at creation and again on
/// every restart, so a changed setting takes effect without closing the socket.
fn apply_unix_permissions(pool: &Pool, path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let file = SocketFile::open(path)
        .map_err(|e| Error::io(format!("{what}: its permissions were left alone"), e))?;
    let path = file.path();
    let path = path.as_path();
    let mode = pool
        .listen_mode
        .as_deref()
        .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
        .unwrap_or(0o660)
        & 0o777;
    // A previous ACL would keep granting what the config no longer says.
    remove_acl(path).map_err(|e| Error::io(format!("removing the ACL of {what}"), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {what}"), e))?;
    if !pool.listen_acl_users.is_empty() || !pool.listen_acl_groups.is_empty() {
        let users = pool
            .listen_acl_users
            .iter()
            .map(|n| account(pool, n, true))
            .collect::<Result<Vec<u32>>>()?;
        let groups = pool
            .listen_acl_groups
            .iter()
            .map(|n| account(pool, n, false))
            .collect::<Result<Vec<u32>>>()?;
        let acl = acl_xattr(mode, &users, &groups);
        set_acl(path, &acl).map_err(|e| Error::io(format!("setting the ACL of {what}"), e))?;
        return Ok(());
    }
    let uid = pool
        .listen_owner
        .as_deref()
        .map(|n| account(pool, n, true))
        .transpose()?;
    let gid = pool
        .listen_group
        .as_deref()
        .map(|n| account(pool, n, false))
        .transpose()?;
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(
            path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(sys(format!("chown {what}")))?;
    }
    Ok(())
}

/// The uid (`user`) or gid of an account name, or a numeric id as given.
fn account(pool: &Pool, name: &str, user: bool) -> Result<u32> {
    let found = if user {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    };
    found.or_else(|| name.parse().ok()).ok_or_else(|| {
        Error::Other(format!(
            "pool {}: no {} {name}",
            pool.name,
            if user { "user" } else { "group" }
        ))
    })
}

const ACL_XATTR: &std::ffi::CStr = c"system.posix_acl_access";
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// The kernel's `system.posix_acl_access` value for `mode` plus read and write for `users`
/// and `groups` (as php-fpm's `acl_set_file` leaves it: entries sorted, mask recomputed).
pub fn acl_xattr(mode: u32, users: &[u32], groups: &[u32]) -> Vec<u8> {
    let perm = |bits: u32| (bits & 7) as u16;
    let mut users = users.to_vec();
    users.sort_unstable();
    users.dedup();
    let mut groups = groups.to_vec();
    groups.sort_unstable();
    groups.dedup();
    let rw = 6u16;
    let group_obj = perm(mode >> 3);
    let mut mask = group_obj;
    if !users.is_empty() || !groups.is_empty() {
        mask |= rw;
    }
    let mut entries = vec![(ACL_USER_OBJ, perm(mode >> 6), ACL_UNDEFINED_ID)];
    entries.extend(users.iter().map(|u| (ACL_USER, rw, *u)));
    entries.push((ACL_GROUP_OBJ, group_obj, ACL_UNDEFINED_ID));
    entries.extend(groups.iter().map(|g| (ACL_GROUP, rw, *g)));
    entries.push((ACL_MASK, mask, ACL_UNDEFINED_ID));
    entries.push((ACL_OTHER, perm(mode), ACL_UNDEFINED_ID));
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Sets the ACL of the file `path` names: a [`SocketFile::path`], followed to the file.
fn set_acl(path: &Path, value: &[u8]) -> std::io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: NUL-terminated path and name, a buffer of `value.len()` bytes we own.
    let ret = unsafe {
        libc::setxattr(
            p.as_ptr(),
            ACL_XATTR.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The `system.posix_acl_access` value of `path`, if it has one (at most 64 KiB, the
/// kernel's limit for an extended attribute).
fn get_acl(path: &Path) -> Option<Vec<u8>> {
    let p = c_path(path).ok()?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: NUL-terminated path and name, a buffer of `buf.len()` bytes we own.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            ACL_XATTR.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Removes the ACL of the file `path` names: a [`SocketFile::path`], followed to the file.
fn remove_acl(path: &Path) -> std::io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: NUL-terminated path and attribute name.
    let ret = unsafe { libc::removexattr(p.as_ptr(), ACL_XATTR.as_ptr()) };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        // No ACL there, or a file system without ACLs: nothing to remove.
        if matches!(
            e.raw_os_error(),
            Some(libc::ENODATA) | Some(libc::EOPNOTSUPP)
        ) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
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

    fn entries(x: &[u8]) -> Vec<(u16, u16, u32)> {
        assert_eq!(&x[..4], &2u32.to_le_bytes());
        x[4..]
            .chunks(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect()
    }

    #[test]
    fn an_acl_grants_read_write_to_each_user_and_group_sorted_with_a_mask() {
        let x = acl_xattr(0o660, &[33, 0, 33], &[1000]);
        assert_eq!(
            entries(&x),
            vec![
                (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
                (ACL_USER, 6, 0),
                (ACL_USER, 6, 33),
                (ACL_GROUP_OBJ, 6, ACL_UNDEFINED_ID),
                (ACL_GROUP, 6, 1000),
                (ACL_MASK, 6, ACL_UNDEFINED_ID),
                (ACL_OTHER, 0, ACL_UNDEFINED_ID),
            ]
        );
        // A restrictive mode still lets the named accounts in (the mask says rw).
        let x = acl_xattr(0o600, &[], &[7]);
        assert!(entries(&x).contains(&(ACL_MASK, 6, ACL_UNDEFINED_ID)));
        assert!(entries(&x).contains(&(ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID)));
    }
}
