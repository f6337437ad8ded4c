//! The permissions of the unix socket files fpmctl holds: `listen.mode`, `listen.owner`,
//! `listen.group` and the POSIX ACL of `listen.acl_users`/`listen.acl_groups`, applied as
//! php-fpm applies them, saved before a restart and put back when its config does not take
//! over. Root changes them in directories the pool's user may write, so every change goes
//! through a descriptor of the file itself (`SocketFile`), and only once the kernel says
//! it is the file the held socket is bound to.

use super::sockets::{HeldSockets, sys};
use crate::config::Pool;
use crate::error::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use tracing::warn;

/// A unix socket file's permissions as they were: mode, owner, group and POSIX ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPermissions {
    path: PathBuf,
    /// The held socket's own inode: the file is changed back only while its path leads to
    /// the file that socket is bound to.
    sock_ino: u64,
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
        self.list
            .iter()
            .filter_map(|h| {
                let path = h.addr.unix_path()?;
                let sock_ino = nix::sys::stat::fstat(&h.fd).ok()?.st_ino;
                // Only the file the held socket is bound to: what another file's path leads
                // to is nobody's to put back.
                let file = SocketFile::open(path).ok()?;
                if file.leads_to(sock_ino) == Some(false) {
                    return None;
                }
                let st = nix::sys::stat::fstat(&file.fd).ok()?;
                Some(SavedPermissions {
                    path: path.to_path_buf(),
                    sock_ino,
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    acl: get_acl(&file.path()),
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
        if file.leads_to(s.sock_ino) == Some(false) {
            warn!(
                path = %s.path.display(),
                "the socket path leads to another file now; its permissions were not put back"
            );
            continue;
        }
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

    /// Whether this is the file the unix socket with own inode `sock_ino` is bound to, as
    /// the kernel says (`UNIX_DIAG_VFS`). `None` when the kernel cannot say (no
    /// `UNIX_DIAG` support): then only the last component of the path is known not to be a
    /// symlink. A socket bound to no file (or unknown to the kernel) has no file here.
    fn leads_to(&self, sock_ino: u64) -> Option<bool> {
        match crate::listen::unix_bound_file(sock_ino) {
            Ok(Some(bound)) => bound.is_open_file(self.fd.as_fd()).ok(),
            Ok(None) => Some(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }

    /// The path that names the opened file itself, whatever its name points to now.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// `listen.mode`, then either `listen.acl_users`/`listen.acl_groups` as a POSIX ACL or
/// `listen.owner`/`listen.group` as the file's owner, as php-fpm applies them to a socket it
/// creates (with an ACL, php-fpm ignores owner and group). Applied at creation and again on
/// every restart, so a changed setting takes effect without closing the socket.
pub(super) fn apply_unix_permissions(pool: &Pool, path: &Path, sock: &OwnedFd) -> Result<()> {
    let what = path.display().to_string();
    let file = SocketFile::open(path)
        .map_err(|e| Error::io(format!("{what}: its permissions were left alone"), e))?;
    // Root changes these in a directory the pool's user may write: a directory on the path
    // replaced by a symlink since the bind would lead the change onto another socket (a
    // container runtime's, made world-writable).
    let sock_ino = nix::sys::stat::fstat(sock)
        .map_err(|e| Error::io(format!("fstat of the socket for {what}"), e.into()))?
        .st_ino;
    if file.leads_to(sock_ino) == Some(false) {
        return Err(Error::Other(format!(
            "pool {}: {what} is not the socket file fpmctl holds (the path, or a directory on it, was replaced since the socket was bound); its permissions were left alone",
            pool.name
        )));
    }
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

/// The `system.posix_acl_access` value of the file `path` names, if it has one: a
/// [`SocketFile::path`], followed to the file (at most 64 KiB, the kernel's limit for an
/// extended attribute).
fn get_acl(path: &Path) -> Option<Vec<u8>> {
    let p = c_path(path).ok()?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: NUL-terminated path and name, a buffer of `buf.len()` bytes we own.
    let n = unsafe {
        libc::getxattr(
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
