//! The config of a requested restart: loaded and tested before the replacement starts, the
//! held sockets brought in line with it (new addresses bound, `listen.mode`, owner, group and
//! ACLs applied to the sockets the serving master uses too), and all of that undone when the
//! replacement does not take over. The supervisor's view (health checks, `status`) then
//! describes the config the serving master runs again, only its sockets stay held, and its
//! clients keep the access they had: a wrong `listen.owner` in a config whose master never
//! came up must not turn into 502s.
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
use tracing::{info, warn};

/// What loading a config replaced, kept until its master takes over.
#[derive(Debug)]
pub(super) struct Previous {
    cfg: FpmConfig,
    permissions: Vec<SavedPermissions>,
}

impl Driver {
    /// Reloads and tests the config for a restart, refused exactly as `restart` refuses it
    /// without a supervisor: php-fpm's verdict first (exit 6), then fpmctl's parse, then a
    /// foreign holder of a new address (exit 7); the held sockets follow the new config. A
    /// refusal leaves the sockets as they were.
    pub(super) fn load_config(&mut self) -> Result<(), (ExitCode, String)> {
        let permissions = self.sockets.save_permissions();
        let cfg = self
            .fpm
            .require_valid()
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
    /// it is loaded and tested as for a requested restart, and the view and the held sockets
    /// follow it (no master serves whose config could be gone back to). A config on disk that
    /// does not load or is refused is logged; FPM is started on it anyway (it reads the file
    /// itself, so nothing else could run), says why it cannot run, and the crash backoff goes
    /// on until the file is fixed. An unchanged file costs one parse: the binary's directories
    /// are those the view was loaded with, php-fpm is not asked again.
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
        match self.load_config() {
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
