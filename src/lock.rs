//! One exclusive lock per FPM config, so two fpmctl runs (a cron restart and a watchdog, say)
//! never act on the same FPM at once. The lock is an `flock(2)` on a file under
//! `/run/fpmctl` (or `$FPMCTL_LOCK_DIR`); the kernel releases it when the process dies, so a
//! killed fpmctl never leaves a stale lock. The holder writes its PID into the file so a
//! waiting run can say whom it waits for.

use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::info;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct ConfigLock {
    _lock: Flock<File>,
    /// The lock file.
    pub path: PathBuf,
}

/// The directory for lock files.
pub fn lock_dir() -> PathBuf {
    std::env::var_os("FPMCTL_LOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/fpmctl"))
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
    let path = lock_path(config);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating lock directory {}", dir.display()), e))?;
    }
    let deadline = Instant::now() + timeout;
    let mut announced = false;
    let mut pause = Duration::from_millis(10);
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = lock.seek(SeekFrom::Start(0));
                let _ = writeln!(lock, "{}", std::process::id());
                return Ok(ConfigLock { _lock: lock, path });
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
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
                if Instant::now() >= deadline {
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
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
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
        // SAFETY-free alternative to set_var: compute the path under our own dir.
        let cfg = dir.path().join("php-fpm.conf");
        std::fs::write(&cfg, "").unwrap();
        let path = lock_path(&cfg);
        assert!(path.to_string_lossy().contains("php-fpm.conf."));
        assert_eq!(lock_path(&cfg), path, "stable");
    }
}
