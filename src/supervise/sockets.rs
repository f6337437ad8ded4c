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
    /// `pm.status_listen`), honouring listen.owner/group/mode/backlog.
    pub fn reconcile(&mut self, cfg: &FpmConfig) -> Result<()> {
        for pool in &cfg.pools {
            let mut addrs = vec![&pool.listen];
            addrs.extend(pool.status_listen.iter());
            for addr in addrs {
                if self.list.iter().any(|h| &h.addr == addr) {
                    continue;
                }
                let held = open(pool, addr)?;
                info!(
                    "holding listening socket {} (fd {})",
                    held.addr,
                    held.fd.as_raw_fd()
                );
                self.list.push(held);
            }
        }
        Ok(())
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
            info!(
                "closing listening socket {} (no pool uses it any more)",
                h.addr
            );
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
                    warn!("restored socket path {} that FPM removed", path.display());
                    restored.push(path.to_path_buf());
                }
                Err(e) => warn!("could not restore socket path {}: {e}", path.display()),
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
    let mode = pool
        .listen_mode
        .as_deref()
        .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
        .unwrap_or(0o660);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {what}"), e))?;
    let uid = match &pool.listen_owner {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| Error::Other(format!("pool {}: no user {name}", pool.name)))?
                .uid,
        ),
        None => None,
    };
    let gid = match &pool.listen_group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| Error::Other(format!("pool {}: no group {name}", pool.name)))?
                .gid,
        ),
        None => None,
    };
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(path, uid, gid).map_err(sys(format!("chown {what}")))?;
    }
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
