//! The file a unix socket is bound to, as the kernel knows it (`NETLINK_SOCK_DIAG`,
//! `UNIX_DIAG_VFS`): the device and inode of the file `bind(2)` created, whatever its path
//! names now. A path can be swapped (a directory on it replaced by a symlink) between the
//! bind and a later chmod by name; comparing this with `fstat` of the file opened by path
//! tells whether the path still leads to the socket.

use super::netlink::query;
use std::io;

const UNIX_DIAG_MSG_LEN: usize = 16;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UNIX_DIAG_VFS: u16 = 1;

/// Where a unix socket's file is: the kernel's device number, split, and the inode's low 32
/// bits (all the kernel reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundFile {
    /// Major and minor of the file system's device.
    pub dev: (u32, u32),
    /// The file's inode, truncated to 32 bits.
    pub ino: u32,
}

impl BoundFile {
    /// Whether `st` (an `fstat` of a file) is this file.
    pub fn is(&self, st: &libc::stat) -> bool {
        (libc::major(st.st_dev), libc::minor(st.st_dev)) == self.dev && st.st_ino as u32 == self.ino
    }
}

/// The file the unix socket whose own inode is `sock_ino` (`fstat` of the socket's
/// descriptor) is bound to. `Ok(None)` when that socket is bound to no file (unbound, or
/// an abstract name) or the kernel does not report it; `Err` when the kernel cannot be asked
/// (no `UNIX_DIAG` support) or knows no such socket.
pub fn unix_bound_file(sock_ino: u64) -> io::Result<Option<BoundFile>> {
    let ino = u32::try_from(sock_ino)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket inode above 32 bits"))?;
    // struct unix_diag_req: family, protocol, pad, states, inode, show, cookie (none).
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&ino.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let mut found = None;
    query(&req, false, |m| {
        if m.get(4..8)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            == Some(ino)
        {
            found = Some(parse_vfs(m));
        }
    })?;
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such socket"))
}

/// The `UNIX_DIAG_VFS` attribute of one `unix_diag_msg`.
fn parse_vfs(m: &[u8]) -> Option<BoundFile> {
    let mut attrs = m.get(UNIX_DIAG_MSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let payload = &attrs[4..len];
        if kind == UNIX_DIAG_VFS && payload.len() >= 8 {
            let ino = u32::from_ne_bytes(payload[0..4].try_into().ok()?);
            // The kernel's own dev_t: 12 bits of major above 20 bits of minor.
            let dev = u32::from_ne_bytes(payload[4..8].try_into().ok()?);
            return Some(BoundFile {
                dev: (dev >> 20, dev & 0xf_ffff),
                ino,
            });
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn fstat(fd: i32) -> libc::stat {
        // SAFETY: a zeroed stat is a valid out-parameter; fd is open for the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes into st, which lives for the call.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        st
    }

    #[test]
    fn a_bound_socket_names_its_file_and_not_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let other_path = dir.path().join("o.sock");
        let _other = std::os::unix::net::UnixListener::bind(&other_path).unwrap();
        let sock = fstat(listener.as_raw_fd());
        let bound = unix_bound_file(sock.st_ino).unwrap().expect("a bound file");
        let st = |p: &std::path::Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: as above; c is a valid NUL-terminated path.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: lstat writes into st.
            assert_eq!(unsafe { libc::lstat(c.as_ptr(), &mut st) }, 0);
            st
        };
        assert!(bound.is(&st(&path)));
        assert!(!bound.is(&st(&other_path)));
    }

    #[test]
    fn an_unbound_socket_has_no_file() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock = fstat(a.as_raw_fd());
        assert_eq!(unix_bound_file(sock.st_ino).unwrap(), None);
    }
}
