//! The names of a held unix socket's file: the socket path and its keeper (the hard link
//! `.NAME.fpmctl-held` that keeps the inode reachable while FPM removes the path). Socket
//! paths often lie in a directory the pool's user may write, and root removes and links
//! these names, so each operation looks at a name and acts on it through one descriptor of
//! its directory ([`Dir`]): a directory on the path swapped for a symlink between the look
//! and the unlink cannot turn root's unlink onto a file of the same name elsewhere. A name
//! is removed only while it is the very file (device and inode) fpmctl made.

use crate::procs::FileId;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The keeper's name for a socket file named `name`: `.NAME.fpmctl-held`.
pub fn keeper_name(name: &OsStr) -> OsString {
    let mut k = OsString::from(".");
    k.push(name);
    k.push(".fpmctl-held");
    k
}

/// The directory of a path, opened once (`O_PATH | O_DIRECTORY`), and the path's last
/// component: every look and change below goes through this one descriptor.
pub struct Dir {
    fd: OwnedFd,
    name: OsString,
}

impl Dir {
    /// The directory `path` lies in, as its path leads now, and `path`'s file name.
    pub fn of(path: &Path) -> io::Result<Dir> {
        use nix::fcntl::OFlag;
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let fd = nix::fcntl::open(
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            name: name.to_os_string(),
        })
    }

    /// A path that leads to `name` in this very directory, whatever the directory's own path
    /// leads to now (`/proc/self/fd/N/NAME`): for what only takes a path, such as a unix
    /// socket's `connect`.
    pub fn path_to(&self, name: &OsStr) -> PathBuf {
        use std::os::fd::AsRawFd;
        Path::new(&format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(name)
    }

    /// The socket's own name in this directory.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The keeper's name for the socket.
    pub fn keeper(&self) -> OsString {
        keeper_name(&self.name)
    }

    /// Identity and file type (`S_IFMT` bits) of `name` here, not following a symlink.
    pub fn stat(&self, name: &OsStr) -> Option<(FileId, u32)> {
        let st = nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()?;
        Some((FileId::of_stat(&st), st.st_mode & libc::S_IFMT))
    }

    /// Removes `name` here if it is the file `id`; whether it did.
    pub fn remove_if(&self, name: &OsStr, id: FileId) -> bool {
        self.stat(name).is_some_and(|(found, _)| found == id) && self.unlink(name)
    }

    /// Removes `name` here if it is a unix socket file; whether it did.
    pub fn remove_if_socket(&self, name: &OsStr) -> bool {
        self.stat(name)
            .is_some_and(|(_, kind)| kind == libc::S_IFSOCK)
            && self.unlink(name)
    }

    /// Removes the name `name` here, whatever non-directory it names (a symlink itself, never
    /// its target); whether it did.
    pub fn remove_name(&self, name: &OsStr) -> bool {
        self.unlink(name)
    }

    fn unlink(&self, name: &OsStr) -> bool {
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok()
    }

    /// The file `name` names here itself, not following a symlink (`O_PATH | O_NOFOLLOW`).
    pub fn open(&self, name: &OsStr) -> io::Result<OwnedFd> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::openat(
            &self.fd,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(fd)
    }

    /// Makes `to` here a name of the open file `file` (`linkat(2)` of `/proc/self/fd/N`,
    /// which names the file itself, whatever its names lead to now).
    pub fn link_file(&self, file: &OwnedFd, to: &OsStr) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let from = format!("/proc/self/fd/{}", file.as_raw_fd());
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            from.as_str(),
            &self.fd,
            to,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )?;
        Ok(())
    }

    /// Makes `to` here another name of the file `from` names here (`linkat(2)`, never
    /// following a symlink).
    pub fn link(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        nix::unistd::linkat(&self.fd, from, &self.fd, to, nix::fcntl::AtFlags::empty())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socket_is_reached_through_the_directory_opened_not_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let dead = UnixListener::bind(a.join("www.sock")).unwrap();
        drop(dead); // its file stays: a socket nobody listens on
        let dir = Dir::of(&a.join("www.sock")).unwrap();
        // The directory is moved away and a live socket of the same name put where the path
        // leads now: through the descriptor, the dead one is still the one seen.
        std::fs::rename(&a, tmp.path().join("moved")).unwrap();
        std::fs::create_dir(&a).unwrap();
        let _live = UnixListener::bind(a.join("www.sock")).unwrap();
        let through = dir.path_to(dir.name());
        assert_eq!(crate::listen::unix_path_listened(&through), Some(false));
        assert_eq!(
            crate::listen::unix_path_listened(&a.join("www.sock")),
            Some(true)
        );
        let (id, _) = dir.stat(dir.name()).unwrap();
        assert!(dir.remove_if(dir.name(), id));
        assert!(a.join("www.sock").exists(), "the live socket stays");
        assert!(!tmp.path().join("moved/www.sock").exists());
    }

    #[test]
    fn removes_only_the_file_it_was_told_and_only_through_the_directory_it_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let _ours = UnixListener::bind(a.join("www.sock")).unwrap();
        let dir = Dir::of(&a.join("www.sock")).unwrap();
        let (id, kind) = dir.stat(dir.name()).unwrap();
        assert_eq!(kind, libc::S_IFSOCK);

        // The directory is moved away and another socket of the same name appears where the
        // path leads now: the one opened is still the one acted on.
        std::fs::rename(&a, tmp.path().join("moved")).unwrap();
        std::fs::create_dir(&a).unwrap();
        let _theirs = UnixListener::bind(a.join("www.sock")).unwrap();
        let other = Dir::of(&a.join("www.sock")).unwrap();
        assert!(
            !other.remove_if(other.name(), id),
            "another file of that name"
        );
        assert!(a.join("www.sock").exists());
        assert!(dir.remove_if(dir.name(), id));
        assert!(!tmp.path().join("moved/www.sock").exists());
        assert!(a.join("www.sock").exists());
        // Gone already: nothing more to remove.
        assert!(!dir.remove_if(dir.name(), id));
    }

    #[test]
    fn a_symlink_or_a_plain_file_in_the_sockets_place_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, "x").unwrap();
        let sock = tmp.path().join("www.sock");
        std::os::unix::fs::symlink(&target, &sock).unwrap();
        let dir = Dir::of(&sock).unwrap();
        let (target_id, _) = dir.stat(OsStr::new("precious")).unwrap();
        // The symlink is not its target, and is no socket.
        assert!(!dir.remove_if(dir.name(), target_id));
        assert!(!dir.remove_if_socket(dir.name()));
        assert!(!dir.remove_if_socket(OsStr::new("precious")));
        assert!(sock.symlink_metadata().is_ok() && target.exists());
    }

    #[test]
    fn the_keeper_is_a_second_name_of_the_socket_file_next_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("php.sock");
        let _l = UnixListener::bind(&path).unwrap();
        let dir = Dir::of(&path).unwrap();
        assert_eq!(dir.keeper(), OsString::from(".php.sock.fpmctl-held"));
        dir.link(dir.name(), &dir.keeper()).unwrap();
        let (id, _) = dir.stat(dir.name()).unwrap();
        assert_eq!(dir.stat(&dir.keeper()).unwrap().0, id);
        // FPM removes the path; the keeper puts it back.
        std::fs::remove_file(&path).unwrap();
        dir.link(&dir.keeper(), dir.name()).unwrap();
        assert_eq!(dir.stat(dir.name()).unwrap().0, id);
        assert!(dir.remove_if(&dir.keeper(), id));
        assert!(dir.remove_if_socket(dir.name()));
        assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory_and_root_names_no_file() {
        assert!(Dir::of(Path::new("/")).is_err());
        assert_eq!(Dir::of(Path::new("x.sock")).unwrap().name(), "x.sock");
    }
}
