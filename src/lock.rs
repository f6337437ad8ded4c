//! One exclusive lock per FPM config, so two fpmctl runs (a cron restart and a watchdog, say)
//! never act on the same FPM at once. The lock is an `flock(2)` on a file under
//! `/run/fpmctl` (or `$FPMCTL_LOCK_DIR`; an empty value counts as unset); the kernel releases
//! it when the process dies, so a killed fpmctl never leaves a stale lock. The holder writes
//! its PID into the file so a waiting run can say whom it waits for.
//!
//! fpmctl runs as root, so nothing in the lock directory may be turned against it:
//! [`secure_dir`] creates the directory `0700` (owned by root, or by the running user when
//! not root) and refuses one owned by another user or writable by group or others; every
//! file in it is opened with [`open_no_follow`] (`O_NOFOLLOW`), so a planted symlink never
//! redirects a write. The control socket of [`crate::supervise::control`] and the
//! supervisor's notify socket live there too.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg, OFlag};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::info;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct ConfigLock {
    _lock: Flock<File>,
    /// The lock file.
    pub path: PathBuf,
    /// Another fpmctl held the lock when this one asked: what was looked at before may
    /// have changed meanwhile.
    pub waited: bool,
}

/// The directory for lock files: `$FPMCTL_LOCK_DIR` when set and not empty, else
/// `/run/fpmctl`. Not checked: use [`secure_dir`] before creating anything in it.
pub fn lock_dir() -> PathBuf {
    std::env::var_os("FPMCTL_LOCK_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/fpmctl"))
}

/// Why a lock directory may not be used, or `None` when it may: its `lstat` metadata
/// against the running effective uid.
pub fn dir_problem(meta: &std::fs::Metadata, euid: u32) -> Option<String> {
    if meta.file_type().is_symlink() {
        return Some("is a symlink".into());
    }
    if !meta.is_dir() {
        return Some("is not a directory".into());
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Some(format!(
            "is owned by uid {}, neither root nor the running user (uid {euid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// The lock directory, created `0700` if missing, and refused ([`Error::UnsafeLockDir`])
/// when it is not a directory of root or the running user that only its owner may write.
pub fn secure_dir() -> Result<PathBuf> {
    let dir = lock_dir();
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::io(
                format!("creating lock directory {}", dir.display()),
                e,
            ));
        }
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| Error::io(format!("lock directory {}", dir.display()), e))?;
    if let Some(problem) = dir_problem(&meta, nix::unistd::geteuid().as_raw()) {
        return Err(Error::UnsafeLockDir(format!(
            "lock directory {} {problem}: refusing to use it (remove it, or set FPMCTL_LOCK_DIR)",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Opens (creating `0600` if needed) a regular file in the lock directory, never following
/// a symlink: a planted link fails with an error naming the file.
pub fn open_no_follow(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // O_NONBLOCK only so that a planted FIFO cannot block the open.
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| {
            let what = if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symlink; refusing to follow it".to_string()
            } else {
                e.to_string()
            };
            Error::UnsafeLockDir(format!("opening {}: {what}", path.display()))
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Error::UnsafeLockDir(format!(
            "{} is not a regular file; refusing to use it",
            path.display()
        )));
    }
    Ok(file)
}

/// The lock file for a config: a readable name plus a hash of the canonical path.
pub fn lock_path(config: &Path) -> PathBuf {
    let canonical = config
        .canonicalize()
        .unwrap_or_else(|_| config.to_path_buf());
    let text = canonical.to_string_lossy();
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let stem: String = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lock_dir().join(format!("{stem}.{hash:016x}.lock"))
}

/// Takes the lock for `config`: at once, or waiting up to `timeout` unless `no_wait`.
pub fn acquire(config: &Path, timeout: Duration, no_wait: bool) -> Result<ConfigLock> {
    secure_dir()?;
    let path = lock_path(config);
    let deadline = Deadline::after(timeout);
    let mut announced = false;
    let mut waited = false;
    let mut pause = Duration::from_millis(10);
    loop {
        let file = open_no_follow(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = lock.seek(SeekFrom::Start(0));
                let _ = writeln!(lock, "{}", std::process::id());
                return Ok(ConfigLock {
                    _lock: lock,
                    path,
                    waited,
                });
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                waited = true;
                let holder = read_holder(&mut file);
                let who = holder
                    .map(|p| format!("fpmctl PID {p}"))
                    .unwrap_or_else(|| "another fpmctl".to_string());
                if no_wait {
                    return Err(Error::Locked(format!(
                        "{who} is acting on {} (lock {}); not waiting (--no-wait)",
                        config.display(),
                        path.display()
                    )));
                }
                if deadline.expired() {
                    return Err(Error::Locked(format!(
                        "{who} still holds the lock for {} after {} (lock {})",
                        config.display(),
                        humantime::format_duration(timeout),
                        path.display()
                    )));
                }
                if !announced {
                    info!("waiting for {who}, which is acting on {}", config.display());
                    announced = true;
                }
                // flock has no timed wait; a short, growing pause keeps this cheap.
                std::thread::sleep(deadline.remaining_capped(pause));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err((_, e)) => {
                return Err(Error::io(
                    format!("locking {}", path.display()),
                    std::io::Error::from(e),
                ));
            }
        }
    }
}

fn read_holder(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_is_stable_and_named_after_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("php-fpm.conf");
        std::fs::write(&cfg, "").unwrap();
        let path = lock_path(&cfg);
        assert!(path.to_string_lossy().contains("php-fpm.conf."));
        assert_eq!(lock_path(&cfg), path, "stable");
    }

    #[test]
    fn only_a_private_directory_of_root_or_ours_is_accepted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let d = dir.path().join("locks");
        std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        let meta = || std::fs::symlink_metadata(&d).unwrap();
        assert_eq!(dir_problem(&meta(), me), None);
        // Someone else's: refused unless it is root's.
        let other = meta().uid() + 1;
        let problem = dir_problem(&meta(), other);
        assert_eq!(problem.is_some(), meta().uid() != 0, "{problem:?}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(dir_problem(&meta(), me).unwrap().contains("writable"));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(dir_problem(&meta(), me), None);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let lmeta = std::fs::symlink_metadata(&link).unwrap();
        assert!(dir_problem(&lmeta, me).unwrap().contains("symlink"));
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("x.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = open_no_follow(&link).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let plain = dir.path().join("y.lock");
        open_no_follow(&plain).unwrap();
        let mode = std::fs::metadata(&plain).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
