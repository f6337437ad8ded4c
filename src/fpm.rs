//! Running the php-fpm binary: `php-fpm -t` (config test), starting a daemonized FPM, and
//! asking a binary for its compiled-in directories ([`build_dirs`]).
//!
//! FPM is always started with `-y <config>` so its master title names the config, which is how
//! [`crate::discovery`] recognises it, and with `-p <prefix>` when fpmctl was given `--prefix`. Children start with a clean signal mask and default
//! signal dispositions (the standard library resets them before exec), stdin from /dev/null
//! and stderr captured to a file, so a daemon that keeps stderr open cannot block us.

use crate::config::{BuildDirs, LoadOptions};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// A php-fpm binary and the config it runs.
#[derive(Debug, Clone)]
pub struct Fpm {
    /// The php-fpm binary.
    pub bin: PathBuf,
    /// The main config.
    pub config: PathBuf,
    /// `-p`: the base of relative paths, when given; `None` leaves it to the binary.
    pub prefix: Option<PathBuf>,
}

/// A `php-fpm -t` started by [`Fpm::spawn_test`]; its verdict is read by
/// [`PendingTest::result`] or [`PendingTest::require_valid`]. Dropped unread (an error came
/// first), the test is killed and reaped: it is fpmctl's own child, and it changes nothing.
#[derive(Debug)]
pub struct PendingTest {
    child: Option<std::process::Child>,
    bin: PathBuf,
    config: PathBuf,
}

impl Drop for PendingTest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long `php-fpm -t` may run where no command deadline applies. A test takes tens of
/// milliseconds; one that runs for a minute is stuck (a config on a hung network mount).
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

impl PendingTest {
    /// The PID of the running `php-fpm -t`.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Waits for the verdict, at most [`TEST_LIMIT`]; `Err` when the test could not be run
    /// to its end.
    pub fn result(self) -> Result<TestResult> {
        self.result_within(TEST_LIMIT)
    }

    /// Waits for the verdict, at most `limit`: a test still running then is killed (it is
    /// fpmctl's own child, and it changed nothing) and the answer is [`Error::Timeout`].
    pub fn result_within(mut self, limit: Duration) -> Result<TestResult> {
        let mut child = self.child.take().expect("a pending test has its child");
        // Its exit is waited for on a pidfd; the pipes are read after (the few lines php-fpm
        // -t writes fit in them). Should its /proc entry not be readable, our own unreaped
        // child is asked directly: the limit holds either way.
        let deadline = Deadline::after(limit);
        let finished = match crate::procs::read(child.id() as i32) {
            Some(me) => crate::signals::wait_gone(&[me.id], deadline).is_empty(),
            None => loop {
                match child.try_wait() {
                    Ok(None) if !deadline.expired() => {
                        std::thread::sleep(deadline.remaining_capped(Duration::from_millis(5)))
                    }
                    Ok(None) => break false,
                    // Exited, or an error wait_with_output reports below.
                    Ok(Some(_)) | Err(_) => break true,
                }
            },
        };
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout(format!(
                "{} -t on {} did not finish within {:.1}s (a config or php.ini on a hung filesystem?); it was stopped, nothing was changed",
                self.bin.display(),
                self.config.display(),
                limit.as_secs_f64()
            )));
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("running {} -t", self.bin.display()), e))?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        Ok(TestResult {
            ok: out.status.success(),
            messages: fpm_messages(&text),
        })
    }

    /// Waits for the verdict and turns a rejection into [`Error::ConfigInvalid`].
    pub fn require_valid(self) -> Result<()> {
        self.require_valid_within(TEST_LIMIT)
    }

    /// [`PendingTest::require_valid`], waiting at most `limit` ([`PendingTest::result_within`]).
    pub fn require_valid_within(self, limit: Duration) -> Result<()> {
        let config = self.config.clone();
        let t = self.result_within(limit)?;
        if t.ok {
            return Ok(());
        }
        let detail = if t.messages.is_empty() {
            "php-fpm -t failed without a message".to_string()
        } else {
            t.messages.join("; ")
        };
        Err(Error::ConfigInvalid { config, detail })
    }
}

/// How `php-fpm -t` judged the config.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// True when the test passed.
    pub ok: bool,
    /// FPM's own ERROR/ALERT/WARNING lines, timestamps removed.
    pub messages: Vec<String>,
}

impl Fpm {
    /// A command for this binary with `-y <config>` (and `-p <prefix>`), stdin closed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-y").arg(&self.config).stdin(Stdio::null());
        if let Some(prefix) = &self.prefix {
            cmd.arg("-p").arg(prefix);
        }
        // Readiness is proven by fpmctl itself; FPM must not tell a service manager we
        // may be running under that it is the main process.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// How to load this FPM's config so relative paths resolve as this binary resolves them:
    /// under `-p` when given, else under the binary's compiled-in directories.
    pub fn load_options(&self) -> LoadOptions {
        let build = match &self.prefix {
            // Under -p the compiled-in directories play no part.
            Some(_) => BuildDirs::default(),
            None => build_dirs(&self.bin),
        };
        LoadOptions {
            prefix: self.prefix.clone(),
            build,
            env: None,
        }
    }

    /// [`Fpm::load_options`] without asking the binary when `path` does not need it: the
    /// compiled-in directories matter only for a relative path (or a default php-fpm fills
    /// in, such as `error_log`), and asking costs a run of php-fpm. A config that cannot be
    /// read at all gets the full options, so its errors read as they always do.
    pub fn options_for(&self, path: &Path) -> LoadOptions {
        if self.prefix.is_some() {
            return self.load_options();
        }
        let cheap = LoadOptions::default();
        match crate::config::load_lenient(path, &cheap) {
            Ok((cfg, _)) if !cfg.uses_build_dirs => cheap,
            _ => self.load_options(),
        }
    }

    /// Loads `path` leniently (the model from what could be read, and every problem) as this
    /// binary reads it; the binary is asked for its directories only when a relative path
    /// needs them.
    pub fn load_lenient(
        &self,
        path: &Path,
    ) -> std::result::Result<
        (crate::config::FpmConfig, Vec<crate::config::Problem>),
        crate::error::ConfigError,
    > {
        if self.prefix.is_none() {
            let cheap = LoadOptions::default();
            let loaded = crate::config::load_lenient(path, &cheap)?;
            if !loaded.0.uses_build_dirs {
                return Ok(loaded);
            }
        }
        crate::config::load_lenient(path, &self.load_options())
    }

    /// Runs `php-fpm -t`; `Err` only when it could not be run at all.
    pub fn test(&self) -> Result<TestResult> {
        self.spawn_test()?.result()
    }

    /// Runs `php-fpm -t` and turns a rejection into [`Error::ConfigInvalid`].
    pub fn require_valid(&self) -> Result<()> {
        self.spawn_test()?.require_valid()
    }

    /// Starts `php-fpm -t` and returns at once, so the caller can do what does not depend on
    /// the verdict (a look at the processes) while it runs.
    pub fn spawn_test(&self) -> Result<PendingTest> {
        let child = self
            .command()
            .arg("-t")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("running {} -t", self.bin.display()), e))?;
        Ok(PendingTest {
            child: Some(child),
            bin: self.bin.clone(),
            config: self.config.clone(),
        })
    }

    /// Starts FPM in the background (`-D`) and waits for the launching process to exit;
    /// php-fpm's launcher exits only once the daemon reported success or failure.
    pub fn start_daemon(&self, timeout: Duration) -> Result<()> {
        self.start_daemon_with(timeout, |_| {})
    }

    /// [`Fpm::start_daemon`] with `prepare` applied to the command first (an environment,
    /// descriptors to inherit). A launcher still running at `timeout` is killed and the
    /// answer is [`Error::LauncherCutOff`], naming the daemon it had forked, if any: that
    /// daemon is left alone here (it does not need its launcher), for the caller to judge.
    pub fn start_daemon_with(
        &self,
        timeout: Duration,
        prepare: impl FnOnce(&mut Command),
    ) -> Result<()> {
        let log = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
        let log_w = log
            .try_clone()
            .map_err(|e| Error::io("creating a temp file", e))?;
        let mut cmd = self.command();
        keep_only_std_descriptors(&mut cmd);
        prepare(&mut cmd);
        let mut child = cmd
            .arg("-D")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_w))
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.bin.display()), e))?;
        if let Some(me) = crate::procs::read(child.id() as i32) {
            crate::signals::wait_gone(&[me.id], Deadline::after(timeout));
        }
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => {
                // Its child, the daemon, is identified while the launcher still lives: once
                // it is reparented, nothing but its title would tell it apart, and it takes
                // that title only some way into its init.
                let daemon = crate::procs::children_or_scan(child.id() as i32)
                    .into_iter()
                    .find(|p| !p.is_gone())
                    .map(|p| p.id);
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::LauncherCutOff {
                    detail: format!(
                        "{} -D did not return within {:.1}s",
                        self.bin.display(),
                        timeout.as_secs_f64()
                    ),
                    daemon,
                });
            }
            Err(e) => return Err(Error::io("waiting for php-fpm", e)),
        };
        let mut text = String::new();
        let mut log = log;
        use std::io::Seek;
        let _ = log.seek(std::io::SeekFrom::Start(0));
        let _ = log.read_to_string(&mut text);
        if status.success() {
            return Ok(());
        }
        let messages = fpm_messages(&text);
        let detail = if messages.is_empty() {
            format!("php-fpm exited with {status}")
        } else {
            format!("php-fpm exited with {status}: {}", messages.join("; "))
        };
        if status.code() == Some(78) {
            return Err(Error::ConfigInvalid {
                config: self.config.clone(),
                detail,
            });
        }
        Err(Error::FpmDied(detail))
    }
}

/// Marks every descriptor from 3 up close-on-exec in `cmd`'s child, also those fpmctl
/// itself inherited from its caller: a daemon that kept a caller's pipe would keep that
/// caller waiting for EOF as long as FPM runs. Descriptors meant for FPM are made
/// inheritable again by a later `pre_exec` (`handover::inherit`). Linux 5.11 and later;
/// on an older kernel inherited descriptors stay as they are.
pub fn keep_only_std_descriptors(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range(2) between fork and exec is async-signal-safe and only changes
    // the child's own descriptor flags.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}

/// Compiled-in directories already asked for in this run, per binary.
static BUILD_DIRS: LazyLock<Mutex<HashMap<PathBuf, BuildDirs>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The compiled-in `PHP_PREFIX` and `PHP_LOCALSTATEDIR` of `bin`, asked once per binary and
/// run (`php-fpm -tt` on a probe config in a temp dir). When the binary cannot tell, Debian's
/// (`/usr`, `/var`), with a warning: relative paths may then be resolved elsewhere than FPM
/// resolves them.
pub fn build_dirs(bin: &Path) -> BuildDirs {
    if let Some(dirs) = BUILD_DIRS.lock().ok().and_then(|c| c.get(bin).cloned()) {
        return dirs;
    }
    let dirs = match probe_build_dirs(bin) {
        Ok(dirs) => {
            tracing::debug!(
                bin = %bin.display(),
                prefix = %dirs.prefix.display(),
                localstatedir = %dirs.localstatedir.display(),
                "compiled-in directories"
            );
            dirs
        }
        Err(why) => {
            let dirs = BuildDirs::default();
            tracing::warn!(
                bin = %bin.display(),
                "could not ask php-fpm for its compiled-in prefix ({why}); relative paths are \
                 taken under {} and {} (pass --prefix to be sure)",
                dirs.prefix.display(),
                dirs.localstatedir.display()
            );
            dirs
        }
    };
    if let Ok(mut cache) = BUILD_DIRS.lock() {
        cache.insert(bin.to_path_buf(), dirs.clone());
    }
    dirs
}

fn probe_build_dirs(bin: &Path) -> std::result::Result<BuildDirs, String> {
    let user = probe_user().ok_or("no account to name as the probe pool's user")?;
    let dir = tempfile::Builder::new()
        .prefix("fpmctl-probe-")
        .tempdir()
        .map_err(|e| format!("creating a temp dir: {e}"))?;
    let conf = dir.path().join("probe.conf");
    std::fs::write(&conf, crate::config::probe_config(&user))
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let out = Command::new(bin)
        .arg("-tt")
        .arg("-y")
        .arg(&conf)
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .output()
        .map_err(|e| format!("running {} -tt: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    BuildDirs::from_dump(&text).ok_or_else(|| {
        let why = fpm_messages(&text).join("; ");
        format!("php-fpm -tt exited with {}: {why}", out.status)
    })
}

/// An account the probe pool can name: ours when we are not root (FPM ignores it then, but
/// looks it up), otherwise a common unprivileged one that exists.
fn probe_user() -> Option<String> {
    use nix::unistd::{Uid, User};
    let me = Uid::effective();
    if !me.is_root() {
        return User::from_uid(me).ok().flatten().map(|u| u.name);
    }
    ["nobody", "www-data", "daemon"]
        .into_iter()
        .find(|n| matches!(User::from_name(n), Ok(Some(u)) if !u.uid.is_root()))
        .map(str::to_string)
}

/// FPM's ERROR, ALERT and WARNING lines from its stderr, without the `[date] ` prefix.
pub fn fpm_messages(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.find("] ") {
            Some(i) if l.starts_with('[') => &l[i + 2..],
            _ => l,
        })
        .filter(|l| l.starts_with("ERROR:") || l.starts_with("ALERT:") || l.starts_with("WARNING:"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_fpm_problems() {
        let text = "[21-Nov-2026 23:52:58] ERROR: unable to bind listening socket for address '127.0.0.1:19000': Address already in use (98)\n[21-Nov-2026 23:52:58] ERROR: FPM initialization failed\n[21-Nov-2026 23:52:58] NOTICE: configuration file /x test is successful\n";
        assert_eq!(
            fpm_messages(text),
            vec![
                "ERROR: unable to bind listening socket for address '127.0.0.1:19000': Address already in use (98)",
                "ERROR: FPM initialization failed"
            ]
        );
    }
}
