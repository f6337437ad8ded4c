//! Running the php-fpm binary: `php-fpm -t` (config test) and starting a daemonized FPM.
//!
//! FPM is always started with `-y <config>` so its master title names the config, which is how
//! [`crate::discovery`] recognises it. Children start with a clean signal mask and default
//! signal dispositions (the standard library resets them before exec), stdin from /dev/null
//! and stderr captured to a file, so a daemon that keeps stderr open cannot block us.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A php-fpm binary and the config it runs.
#[derive(Debug, Clone)]
pub struct Fpm {
    /// The php-fpm binary.
    pub bin: PathBuf,
    /// The main config.
    pub config: PathBuf,
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
    /// A command for this binary with `-y <config>`, stdin closed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-y").arg(&self.config).stdin(Stdio::null());
        // Readiness is proven by fpmctl itself; FPM must not tell a service manager we
        // may be running under that it is the main process.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// Runs `php-fpm -t`; `Err` only when it could not be run at all.
    pub fn test(&self) -> Result<TestResult> {
        let out = self
            .command()
            .arg("-t")
            .output()
            .map_err(|e| Error::io(format!("running {} -t", self.bin.display()), e))?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        Ok(TestResult {
            ok: out.status.success(),
            messages: fpm_messages(&text),
        })
    }

    /// Runs `php-fpm -t` and turns a rejection into [`Error::ConfigInvalid`].
    pub fn require_valid(&self) -> Result<()> {
        let t = self.test()?;
        if t.ok {
            return Ok(());
        }
        let detail = if t.messages.is_empty() {
            "php-fpm -t failed without a message".to_string()
        } else {
            t.messages.join("; ")
        };
        Err(Error::ConfigInvalid {
            config: self.config.clone(),
            detail,
        })
    }

    /// Starts FPM in the background (`-D`) and waits for the launching process to exit;
    /// php-fpm's launcher exits only once the daemon reported success or failure.
    pub fn start_daemon(&self, timeout: Duration) -> Result<()> {
        let log = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
        let log_w = log
            .try_clone()
            .map_err(|e| Error::io("creating a temp file", e))?;
        let mut child = self
            .command()
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
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout(format!(
                    "{} -D did not return within {:.1}s",
                    self.bin.display(),
                    timeout.as_secs_f64()
                )));
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
