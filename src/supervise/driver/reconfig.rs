//! The config of a requested restart: tested and loaded before the replacement starts, the
//! held sockets brought in line with it (new addresses bound, `listen.mode`, owner, group and
//! ACLs applied to the sockets the serving master uses too), and all of that undone when the
//! replacement does not take over. The supervisor's view (health checks, `status`) then
//! describes the config the serving master runs again, only its sockets stay held, and its
//! clients keep the access they had: a wrong `listen.owner` in a config whose master never
//! came up must not turn into 502s.
//!
//! `php-fpm -t` takes tens of milliseconds, or up to its minute's limit with a config or log
//! on a hung filesystem, so it runs beside the event loop ([`ConfigTest`]): a thread waits for
//! its verdict (and reaps it; the loop leaves that one child alone) and wakes the loop, which
//! then loads the config. Crashes, signals and control requests are handled meanwhile.
//!
//! FPM reads its config file itself, so a crash restart runs what is on disk, which may be an
//! edit not yet applied by a restart: before a crash restart the view and the held sockets
//! follow the file when it changed ([`Driver::follow_config_on_disk`]), or health checks
//! would ping pools the new master does not run and sockets of removed pools would stay held,
//! accepting connections nobody serves.

use super::Driver;
use crate::config::{self, FpmConfig, LoadOptions};
use crate::discovery;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::handover::sockets::{self, SavedPermissions};
use crate::supervise::machine::Event;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use tracing::{info, warn};

/// A requested restart's `php-fpm -t`, running: its PID (the loop does not reap it), a pidfd
/// to end it by should the supervisor exit first, and where its verdict comes.
#[derive(Debug)]
pub(in crate::supervise) struct ConfigTest {
    pid: i32,
    pidfd: Option<OwnedFd>,
    verdict: mpsc::Receiver<crate::error::Result<()>>,
}

/// What loading a config replaced, kept until its master takes over.
#[derive(Debug)]
pub(super) struct Previous {
    cfg: FpmConfig,
    permissions: Vec<SavedPermissions>,
}

impl Driver {
    /// Starts `php-fpm -t` for a requested restart ([`ConfigTest`]); its verdict comes back
    /// through the wake pipe ([`Driver::collect_config_test`]). A test that cannot be started
    /// is the answer at once.
    pub(super) fn start_config_test(&mut self) {
        if self.config_test.is_some() {
            return; // the machine asks once per restart; the running test answers it
        }
        let refused = |e: Error| Event::ConfigLoaded(Err((e.exit_code(), e.to_string())));
        let pending = match self.fpm.spawn_test() {
            Ok(p) => p,
            Err(e) => return self.queue.push_back(refused(e)),
        };
        let Some(pid) = pending.pid() else {
            return self
                .queue
                .push_back(refused(Error::Other("php-fpm -t did not start".into())));
        };
        let wake = match self.wake_w.try_clone() {
            Ok(w) => w,
            Err(e) => {
                return self
                    .queue
                    .push_back(refused(Error::io("creating a pipe", e)));
            }
        };
        let pidfd = crate::signals::pidfd_open(pid).ok().flatten();
        let (tx, verdict) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("config-test".into())
            .spawn(move || {
                let _ = tx.send(pending.require_valid());
                let _ = (&wake).write_all(&[1]);
            });
        match started {
            Ok(_) => {
                self.config_test = Some(ConfigTest {
                    pid,
                    pidfd,
                    verdict,
                })
            }
            // The closure, and with it the test, was dropped: the test was killed and reaped.
            Err(e) => self
                .queue
                .push_back(refused(Error::io("starting the config test's thread", e))),
        }
    }

    /// Whether `pid` is the running config test (its thread reaps it, not the loop).
    pub(super) fn is_config_test(&self, pid: i32) -> bool {
        self.config_test.as_ref().is_some_and(|t| t.pid == pid)
    }

    /// Once the config test has its verdict: the config is loaded on it and the machine told.
    pub(super) fn collect_config_test(&mut self) {
        let Some(test) = &self.config_test else {
            return;
        };
        let verdict = match test.verdict.try_recv() {
            Ok(v) => v,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err(Error::Other(
                "the config test ended without a verdict".into(),
            )),
        };
        self.config_test = None;
        let ev = Event::ConfigLoaded(self.load_config(verdict));
        self.queue.push_back(ev);
    }

    /// When the supervisor stops: a config test still running is ended (SIGKILL through its
    /// pidfd; it is our own child and changes nothing). Its thread still reaps it and brings
    /// the verdict, which a stopping machine ignores.
    pub(super) fn kill_config_test(&self) {
        if let Some(ConfigTest {
            pidfd: Some(fd), ..
        }) = &self.config_test
        {
            let _ = crate::signals::pidfd_kill(fd);
        }
    }

    /// Loads the config for a restart on `php-fpm -t`'s verdict `tested`, refused exactly
    /// as `restart` refuses it without a supervisor: php-fpm's verdict first (exit 6), then
    /// fpmctl's parse, then a foreign holder of a new address (exit 7); the held sockets follow
    /// the new config. A refusal leaves the sockets as they were.
    pub(super) fn load_config(
        &mut self,
        tested: crate::error::Result<()>,
    ) -> Result<(), (ExitCode, String)> {
        let permissions = self.sockets.save_permissions();
        let cfg = tested
            .and_then(|()| {
                config::load_with(&self.cfg_path, &self.fpm.options_for(&self.cfg_path))
                    .map_err(Error::from)
            })
            .and_then(|mut cfg| {
                // The running masters are proven ours by the binary they run.
                cfg.binary = self.cfg.binary.clone();
                discovery::refuse_foreign_holders(&discovery::discover(&cfg))?;
                self.sockets.reconcile(&cfg)?;
                Ok(cfg)
            });
        match cfg {
            Ok(cfg) => {
                let old = std::mem::replace(&mut self.cfg, cfg);
                self.show_config();
                self.previous = Some(Previous {
                    cfg: old,
                    permissions,
                });
                Ok(())
            }
            Err(e) => {
                // reconcile may have failed half way.
                sockets::restore_permissions(&permissions);
                self.sockets.drop_unused(&self.cfg);
                Err((e.exit_code(), e.to_string()))
            }
        }
    }

    /// Before a crash restart: when the config on disk is no longer the one the view holds,
    /// it is loaded as for a requested restart, and the view and the held sockets follow it
    /// (no master serves whose config could be gone back to). It is not run through
    /// `php-fpm -t` first: the master about to start is that test, and the site is down
    /// until it serves. A config on disk that does not load or is refused is logged; FPM is
    /// started on it anyway (it reads the file itself, so nothing else could run), says why it
    /// cannot run, and the crash backoff goes on until the file is fixed. An unchanged file
    /// costs one parse: the binary's directories are those the view was loaded with, php-fpm
    /// is not asked again.
    pub(super) fn follow_config_on_disk(&mut self) {
        let options = LoadOptions {
            prefix: self.fpm.prefix.clone(),
            build: self.cfg.build.clone(),
            env: None,
        };
        match config::load_with(&self.cfg_path, &options) {
            Ok(mut on_disk) => {
                on_disk.binary = self.cfg.binary.clone();
                if on_disk == self.cfg {
                    return;
                }
            }
            Err(e) => {
                warn!(
                    config = %self.cfg_path.display(),
                    error = %e,
                    "the config on disk does not load; FPM is started on it anyway"
                );
                return;
            }
        }
        info!(
            config = %self.cfg_path.display(),
            "the config on disk changed since FPM last started; the crash restart runs it"
        );
        match self.load_config(Ok(())) {
            Ok(()) => self.config_taken_over(),
            Err((code, error)) => warn!(
                config = %self.cfg_path.display(),
                exit_code = code.code(),
                error,
                "the changed config on disk is refused; FPM is started on it anyway"
            ),
        }
    }

    /// The new master serves: what its config replaced is not needed any more.
    pub(super) fn config_taken_over(&mut self) {
        self.previous = None;
    }

    /// The replacement did not take over: back to the serving master's config, its socket
    /// permissions, and only its sockets.
    pub(super) fn revert_config(&mut self) {
        let Some(previous) = self.previous.take() else {
            return;
        };
        sockets::restore_permissions(&previous.permissions);
        self.cfg = previous.cfg;
        self.sockets.drop_unused(&self.cfg);
        self.show_config();
        info!(
            config = %self.cfg_path.display(),
            "the new config did not take over: the serving master's config and socket permissions are back"
        );
    }

    /// The config `status` and the metrics show.
    fn show_config(&self) {
        match self.counters.config.write() {
            Ok(mut shown) => *shown = Some(self.cfg.clone()),
            Err(_) => warn!("the config shown by status could not be updated"),
        }
    }
}
