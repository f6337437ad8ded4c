//! The directories a php-fpm binary was built with, against which it resolves relative paths
//! when it is started without `-p`/`--prefix` (php-src, `fpm_conf.c`,
//! `fpm_evaluate_full_path`):
//!
//! - `PHP_PREFIX` (`/usr` on Debian, `/usr/local` in the Docker official images): relative
//!   `include`, `listen` (unix socket paths), `slowlog`, `access.log`, `chdir`, `chroot` and a
//!   pool's own `prefix`;
//! - `PHP_LOCALSTATEDIR` (`/var` on Debian, `/usr/local/var` in Docker): relative `pid` and
//!   `error_log` (whose default is `log/php-fpm.log`).
//!
//! With `-p DIR` every one of them is resolved under `DIR` instead (a pool's own `prefix`
//! still wins for its pool paths). The binary is asked, not guessed: [`probe_config`] is a
//! config with a relative `pid` and a relative socket path, and [`BuildDirs::from_dump`]
//! reads where `php-fpm -tt` put them. Running the binary is [`crate::fpm`]'s business; this
//! module only writes the question and reads the answer.

use std::path::{Path, PathBuf};

/// The compiled-in base directories of one php-fpm binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDirs {
    /// `PHP_PREFIX`.
    pub prefix: PathBuf,
    /// `PHP_LOCALSTATEDIR`.
    pub localstatedir: PathBuf,
}

impl Default for BuildDirs {
    /// Debian's and Ubuntu's packages (`--prefix=/usr --localstatedir=/var`), used when the
    /// binary cannot be asked.
    fn default() -> Self {
        BuildDirs {
            prefix: PathBuf::from("/usr"),
            localstatedir: PathBuf::from("/var"),
        }
    }
}

/// The relative names the probe config uses; [`BuildDirs::from_dump`] strips them off.
const PROBE_PID: &str = "fpmctl-probe.pid";
const PROBE_SOCKET: &str = "fpmctl-probe.sock";

/// A config that php-fpm accepts and that makes `-tt` print both base directories: a
/// relative `pid` (under `PHP_LOCALSTATEDIR`) and a relative unix socket (under
/// `PHP_PREFIX`). `-t` opens the error log, so it goes to `/dev/null`; it creates neither
/// the pid file nor the socket. `user` must name an account that exists, which is not root
/// when php-fpm runs as root.
pub fn probe_config(user: &str) -> String {
    format!(
        "[global]\npid = {PROBE_PID}\nerror_log = /dev/null\n\
         [fpmctl-probe]\nuser = {user}\nlisten = {PROBE_SOCKET}\npm = static\npm.max_children = 1\n"
    )
}

impl BuildDirs {
    /// Reads the two directories from `php-fpm -tt`'s output for [`probe_config`]; `None`
    /// when either is missing.
    pub fn from_dump(stderr: &str) -> Option<BuildDirs> {
        let mut pid = None;
        let mut listen = None;
        for line in stderr.lines() {
            let Some((_, entry)) = line.split_once("NOTICE: \t") else {
                continue;
            };
            match entry.split_once(" = ") {
                Some(("pid", v)) => pid = base_of(v, PROBE_PID),
                Some(("listen", v)) => listen = base_of(v, PROBE_SOCKET),
                _ => {}
            }
        }
        Some(BuildDirs {
            prefix: listen?,
            localstatedir: pid?,
        })
    }
}

/// `/base` from `/base/NAME`.
fn base_of(value: &str, name: &str) -> Option<PathBuf> {
    let base = value.trim().strip_suffix(name)?.strip_suffix('/')?;
    let base = if base.is_empty() { "/" } else { base };
    Path::new(base).is_absolute().then(|| PathBuf::from(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_directories_from_a_dump() {
        let dump = "[30-Nov-2026 05:51:48] NOTICE: [global]\n\
            [30-Nov-2026 05:51:48] NOTICE: \tpid = /usr/local/var/fpmctl-probe.pid\n\
            [30-Nov-2026 05:51:48] NOTICE: \terror_log = /dev/null\n\
            [30-Nov-2026 05:51:48] NOTICE: [fpmctl-probe]\n\
            [30-Nov-2026 05:51:48] NOTICE: \tlisten = /usr/local/fpmctl-probe.sock\n\
            [30-Nov-2026 05:51:48] NOTICE: configuration file p.conf test is successful\n";
        assert_eq!(
            BuildDirs::from_dump(dump),
            Some(BuildDirs {
                prefix: PathBuf::from("/usr/local"),
                localstatedir: PathBuf::from("/usr/local/var"),
            })
        );
    }

    #[test]
    fn a_dump_without_the_probe_paths_says_nothing() {
        assert_eq!(BuildDirs::from_dump(""), None);
        let only_pid = "x NOTICE: \tpid = /var/fpmctl-probe.pid\n";
        assert_eq!(BuildDirs::from_dump(only_pid), None);
        let relative = "x NOTICE: \tpid = var/fpmctl-probe.pid\n\
                        x NOTICE: \tlisten = usr/fpmctl-probe.sock\n";
        assert_eq!(BuildDirs::from_dump(relative), None);
        let root = "x NOTICE: \tpid = /fpmctl-probe.pid\nx NOTICE: \tlisten = /fpmctl-probe.sock\n";
        assert_eq!(
            BuildDirs::from_dump(root).map(|d| d.prefix),
            Some(PathBuf::from("/"))
        );
    }

    #[test]
    fn the_probe_names_the_user() {
        assert!(probe_config("nobody").contains("user = nobody\n"));
    }
}
