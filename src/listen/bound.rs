//! The file a unix socket is bound to, as the kernel knows it (`NETLINK_SOCK_DIAG`,
//! `UNIX_DIAG_VFS`): the device and inode of the file `bind(2)` created, whatever its path
//! names now. A path can be swapped (a directory on it replaced by a symlink) between the
//! bind and a later chmod by name; comparing this with `fstat` of the file opened by path
//! tells whether the path still leads to the socket.

use super::netlink::{attributes, query};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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
    /// Whether the open file `fd` (any descriptor, `O_PATH` too) is this file. The kernel
    /// reports the device of the file system's superblock, which is what the mount `fd` was
    /// opened through names (`mnt_id` in `/proc/self/fdinfo`, its line in
    /// `/proc/self/mountinfo`); `st_dev` can be another number for the very same file (a
    /// btrfs subvolume's own device, an overlay's per-layer device), so it is used only when
    /// the mount cannot be read.
    pub fn is_open_file(&self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        let st = nix::sys::stat::fstat(fd)?;
        if st.st_ino as u32 != self.ino {
            return Ok(false);
        }
        let dev = mount_dev(fd).unwrap_or((libc::major(st.st_dev), libc::minor(st.st_dev)));
        Ok(dev == self.dev)
    }
}

/// The device (major, minor) of the superblock of the mount `fd` was opened through, as
/// `/proc/self/mountinfo` gives it; `None` when either file cannot be read or parsed.
fn mount_dev(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let mnt_id = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_dev_in(&mounts, &mnt_id)
}

/// The `major:minor` field of the line of `mountinfo` whose mount ID is `mnt_id`.
fn mount_dev_in(mountinfo: &str, mnt_id: &str) -> Option<(u32, u32)> {
    mountinfo.lines().find_map(|l| {
        let mut f = l.split(' ');
        if f.next()? != mnt_id {
            return None;
        }
        let (major, minor) = f.nth(1)?.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// The file the unix socket whose own inode is `sock_ino` (`fstat` of the socket's
/// descriptor) is bound to. `Ok(None)` when that socket is bound to no file (unbound, or
/// an abstract name) or the kernel does not report it; `Err` of kind `NotFound` when the
/// kernel knows no such socket, of another kind when it cannot be asked (no `UNIX_DIAG`
/// support: `Unsupported`).
pub fn unix_bound_file(sock_ino: u64) -> io::Result<Option<BoundFile>> {
    let ino = u32::try_from(sock_ino)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket inode above 32 bits"))?;
    telling_unsupported(ask(ino), probe)
}

/// The kernel answers ENOENT both for a socket it does not know and for a family it has no
/// diag handler for (a kernel built without `UNIX_DIAG`): asking about a socket just created
/// here, which it must know, tells which. Without the handler the answer is `Unsupported`, so
/// that a socket fpmctl holds is never taken for one the kernel does not know.
fn telling_unsupported(
    asked: io::Result<Option<BoundFile>>,
    probe: impl FnOnce() -> io::Result<Option<BoundFile>>,
) -> io::Result<Option<BoundFile>> {
    match asked {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match probe() {
            Err(p) if p.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel answers no UNIX_DIAG query",
            )),
            _ => Err(e),
        },
        other => other,
    }
}

/// [`ask`] about an unbound socket of a pair created for the question.
fn probe() -> io::Result<Option<BoundFile>> {
    let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    let st = nix::sys::stat::fstat(&a)?;
    let ino = u32::try_from(st.st_ino)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket inode above 32 bits"))?;
    ask(ino)
}

/// One exact `UNIX_DIAG` query for the socket with inode `ino`.
fn ask(ino: u32) -> io::Result<Option<BoundFile>> {
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
    let (_, payload) = attributes(m.get(UNIX_DIAG_MSG_LEN..)?)
        .into_iter()
        .find(|(kind, payload)| *kind == UNIX_DIAG_VFS && payload.len() >= 8)?;
    let ino = u32::from_ne_bytes(payload[0..4].try_into().ok()?);
    // The kernel's own dev_t: 12 bits of major above 20 bits of minor.
    let dev = u32::from_ne_bytes(payload[4..8].try_into().ok()?);
    Some(BoundFile {
        dev: (dev >> 20, dev & 0xf_ffff),
        ino,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

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
        assert!(bound.is_open_file(open_path(&path).as_fd()).unwrap());
        assert!(!bound.is_open_file(open_path(&other_path).as_fd()).unwrap());
    }

    fn open_path(p: &std::path::Path) -> std::os::fd::OwnedFd {
        use nix::fcntl::OFlag;
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    }

    /// An overlay whose upper layer lies on another file system than its lower one, mounted
    /// for the test and lazily unmounted on drop.
    struct Overlay {
        _lower: tempfile::TempDir,
        _dirs: tempfile::TempDir,
        merged: std::path::PathBuf,
    }

    impl Overlay {
        fn mount() -> Option<Overlay> {
            let ci = std::env::var_os("CI").is_some_and(|v| v == "true");
            // The lower layer on tmpfs, the upper one on the temp dir's file system.
            let lower = tempfile::tempdir_in("/dev/shm").unwrap();
            let dirs = tempfile::tempdir().unwrap();
            let (upper, work, merged) = (
                dirs.path().join("upper"),
                dirs.path().join("work"),
                dirs.path().join("merged"),
            );
            for d in [&upper, &work, &merged] {
                std::fs::create_dir(d).unwrap();
            }
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.path().display(),
                upper.display(),
                work.display()
            );
            let c = |p: &std::path::Path| {
                std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
            };
            let (src, target, fs, data) = (
                c("overlay".as_ref()),
                c(&merged),
                c("overlay".as_ref()),
                c(opts.as_ref()),
            );
            // SAFETY: all four are valid NUL-terminated strings that live for the call.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    fs.as_ptr(),
                    0,
                    data.as_ptr().cast(),
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                assert!(!ci, "cannot mount an overlay for the test: {e}");
                eprintln!("skipped: cannot mount an overlay ({e})");
                return None;
            }
            Some(Overlay {
                _lower: lower,
                _dirs: dirs,
                merged,
            })
        }
    }

    impl Drop for Overlay {
        fn drop(&mut self) {
            if let Ok(c) = std::ffi::CString::new(self.merged.as_os_str().as_encoded_bytes()) {
                // SAFETY: c is a valid NUL-terminated path that lives for the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }

    #[test]
    fn a_socket_on_an_overlay_over_two_file_systems_is_its_own_file() {
        // Such an overlay reports a per-layer st_dev for its files, not its own device.
        let Some(ov) = Overlay::mount() else {
            return;
        };
        let path = ov.merged.join("fpm.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let sock = fstat(listener.as_raw_fd());
        let bound = unix_bound_file(sock.st_ino).unwrap().expect("a bound file");
        assert!(bound.is_open_file(open_path(&path).as_fd()).unwrap());
        let other = ov.merged.join("other.sock");
        let _other = std::os::unix::net::UnixListener::bind(&other).unwrap();
        assert!(!bound.is_open_file(open_path(&other).as_fd()).unwrap());
    }

    #[test]
    fn a_socket_the_kernel_does_not_know_is_not_found() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let gone = fstat(a.as_raw_fd()).st_ino;
        drop(a);
        let e = unix_bound_file(gone).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn without_unix_diag_the_kernel_cannot_say_rather_than_not_know_the_socket() {
        // A kernel without the handler answers ENOENT to every query, the probe's too.
        let enoent = || Err(io::Error::from_raw_os_error(libc::ENOENT));
        let e = telling_unsupported(enoent(), enoent).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        // One that answers the probe does not know the socket asked about.
        let e = telling_unsupported(enoent(), || Ok(None)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(telling_unsupported(Ok(None), enoent).unwrap(), None);
    }

    #[test]
    fn a_mounts_device_is_read_from_its_mountinfo_line() {
        let info = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    46 27 0:41 / /m rw,relatime - overlay overlay rw\n";
        assert_eq!(mount_dev_in(info, "27"), Some((254, 0)));
        assert_eq!(mount_dev_in(info, "46"), Some((0, 41)));
        assert_eq!(mount_dev_in(info, "2"), None);
    }

    #[test]
    fn an_unbound_socket_has_no_file() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock = fstat(a.as_raw_fd());
        assert_eq!(unix_bound_file(sock.st_ino).unwrap(), None);
    }
}
