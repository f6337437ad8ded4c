//! The commands. Each takes the loaded [`Ctx`] and its arguments and returns an [`Outcome`]
//! (exit code, human text, JSON) or an [`Error`]; progress goes to the log as it happens.

mod check;
mod config;
mod doctor;
mod ensure;
mod generate;
mod metrics;
mod ping;
mod probe;
mod reload;
mod reopen_logs;
mod restart;
mod start;
mod status;
mod stop;
mod supervise;
mod unit_restart;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{self as fpmconfig, FpmConfig, Problem};
use crate::error::{ConfigError, Error, Result};
use crate::fpm::Fpm;
use crate::lock::{self, ConfigLock};
use crate::supervise::control::{self, Request};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::outcome::Outcome;

/// Everything commands share: the loaded config and the global options.
#[derive(Debug)]
pub struct Ctx {
    /// The config; when [`Ctx::problems`] is not empty, what could be read of it.
    pub cfg: FpmConfig,
    /// What is wrong with the config (empty when it is valid). Commands that only look or
    /// stop (`status`, `ping`, `stop`) act on what could be read; the others refuse.
    pub problems: Vec<Problem>,
    /// Global options.
    pub global: GlobalArgs,
    /// The php-fpm binary found for the config when it was loaded (found once per run).
    pub(crate) found_fpm: Option<Fpm>,
    /// A `php-fpm -t` started as soon as the binary was known, for a command whose critical
    /// path it is (`reload`); taken by [`Ctx::config_test`].
    pub(crate) early_test: std::sync::Mutex<Option<crate::fpm::PendingTest>>,
}

impl Ctx {
    /// Finds the config named by the global options and loads what can be read of it: a
    /// broken config (a bad value, a syntax error, a missing include) must not keep `status`,
    /// `ping` or `stop` from working on the FPM that runs. Fails only when the main file
    /// cannot be found or read.
    pub fn load(global: &GlobalArgs) -> Result<Ctx> {
        Ctx::load_testing(global, false)
    }

    /// [`Ctx::load`]; with `test_early`, `php-fpm -t` starts as soon as the binary is found
    /// and runs while the config is read and the command goes on ([`Ctx::config_test`]).
    pub fn load_testing(global: &GlobalArgs, test_early: bool) -> Result<Ctx> {
        let path = fpmconfig::find_config(global.config.as_deref(), global.php_version.as_deref())?;
        // Relative paths resolve as the binary that runs this config resolves them; without
        // a binary, Debian's directories (or --prefix) are all there is to go by.
        let fpm = binary_for(&path, global);
        // A test that cannot be started here is started (and its error reported) later.
        let early_test = match &fpm {
            Ok(fpm) if test_early => fpm.spawn_test().ok(),
            _ => None,
        };
        let (mut cfg, problems) = match &fpm {
            Ok(fpm) => fpm.load_lenient(&path)?,
            Err(_) => {
                let opts = fpmconfig::LoadOptions {
                    prefix: global.prefix.clone(),
                    ..fpmconfig::LoadOptions::default()
                };
                fpmconfig::load_lenient(&path, &opts)?
            }
        };
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        // The binary identifies this config's processes; without one nothing is proven ours.
        let found_fpm = fpm.ok();
        cfg.binary = found_fpm
            .as_ref()
            .and_then(|fpm| crate::identity::FpmBinary::resolve(&fpm.bin).ok());
        Ok(Ctx {
            cfg,
            problems,
            global: global.clone(),
            found_fpm,
            early_test: std::sync::Mutex::new(early_test),
        })
    }

    /// `php-fpm -t` on this config, running: the one started early, or a new one. With
    /// `stale` (fpmctl waited for another one's lock since, which may have changed the
    /// config), the early one is dropped (killed) and a new one started.
    pub fn config_test(&self, stale: bool) -> Result<crate::fpm::PendingTest> {
        let early = self
            .early_test
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match early {
            Some(test) if !stale => Ok(test),
            _ => self.fpm()?.spawn_test(),
        }
    }

    /// Refuses a config with problems. When `ask_fpm` is set, php-fpm's own verdict decides:
    /// if `php-fpm -t` rejects it too, the error is [`Error::ConfigInvalid`] (exit 6) with
    /// FPM's own message; otherwise [`Error::Config`] (exit 4).
    pub fn require_valid_config(&self, ask_fpm: bool) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let problems = ConfigError {
            problems: self.problems.clone(),
        };
        if ask_fpm
            && self.cfg.path.is_file()
            && let Some(err) = fpm_verdict(&self.cfg.path, &self.global, &problems)
        {
            return Err(err);
        }
        Err(problems.into())
    }

    /// Logs the config's problems once, for a command that goes on with what could be read.
    pub fn warn_problems(&self, doing: &str) {
        for p in &self.problems {
            tracing::warn!(problem = %p, "config problem; {doing} with what could be read");
        }
    }

    /// The php-fpm binary for this config.
    pub fn fpm(&self) -> Result<Fpm> {
        match &self.found_fpm {
            Some(fpm) => Ok(fpm.clone()),
            // Looked for again for the error it gives.
            None => binary_for(&self.cfg.path, &self.global),
        }
    }

    /// How this command launches FPM: `timeout` for readiness, `wait` to prove it, `test_first`
    /// to run `php-fpm -t` before.
    pub fn launch_options(
        &self,
        timeout: Duration,
        wait: bool,
        test_first: bool,
    ) -> crate::lifecycle::LaunchOptions {
        crate::lifecycle::LaunchOptions {
            timeout,
            wait,
            test_first,
            no_systemd: self.global.no_systemd,
        }
    }

    /// Takes this config's lock, as the global options say.
    pub fn lock(&self) -> Result<ConfigLock> {
        lock::acquire(
            &self.cfg.path,
            self.global.lock_timeout,
            self.global.no_wait,
        )
    }
}

/// The php-fpm binary for the config at `path`, with `--prefix`.
fn binary_for(path: &std::path::Path, global: &GlobalArgs) -> Result<Fpm> {
    let bin: PathBuf = fpmconfig::find_binary(
        path,
        global.fpm_bin.as_deref(),
        global.php_version.as_deref(),
    )?;
    Ok(Fpm {
        bin,
        config: path.to_path_buf(),
        prefix: global.prefix.clone(),
    })
}

/// `php-fpm -t`'s opinion of a config our parser rejected; `None` when it cannot be asked
/// or accepts it.
fn fpm_verdict(
    path: &std::path::Path,
    global: &GlobalArgs,
    problems: &ConfigError,
) -> Option<Error> {
    let fpm = binary_for(path, global).ok()?;
    let test = fpm.test().ok()?;
    if test.ok {
        return None;
    }
    let mut detail = test.messages.join("; ");
    if detail.is_empty() {
        detail = problems.to_string();
    }
    Some(Error::ConfigInvalid {
        config: path.to_path_buf(),
        detail: format!(
            "{detail} (fpmctl: {})",
            problems.to_string().replace('\n', "; ")
        ),
    })
}

/// Whether the command asked for JSON.
pub fn wants_json(cli: &Cli) -> bool {
    match &cli.command {
        Command::Config(a) | Command::Status(a) | Command::Check(a) => a.json,
        Command::Stop(a) => a.json,
        Command::Start(a) => a.json,
        Command::Restart(a) => a.json,
        Command::Reload(a) => a.json,
        Command::Ping(a) => a.json,
        Command::Ensure(a) => a.json,
        Command::ReopenLogs(a) => a.json,
        Command::Supervise(_) | Command::Generate(_) => false,
        Command::Doctor(a) => a.json && !a.follow,
        Command::Metrics(_) => false,
        Command::Probe(a) => a.json,
    }
}

/// Runs the command the command line names.
pub fn run(cli: &Cli) -> Result<Outcome> {
    // `generate` reads no FPM config.
    if let Command::Generate(what) = &cli.command {
        return generate::run(what);
    }
    // A diagnosis must work when the FPM config is broken or missing: doctor loads it itself.
    if let Command::Doctor(a) = &cli.command {
        return doctor::run(&cli.global, a);
    }
    // A probe answers within its deadline, config loading included: it loads the config
    // itself on a thread it can leave behind.
    if let Command::Probe(a) = &cli.command {
        return probe::run(&cli.global, a);
    }
    // `reload`'s critical path is `php-fpm -t`: it starts before the config is even read.
    let test_early = matches!(cli.command, Command::Reload(_));
    let ctx = match Ctx::load_testing(&cli.global, test_early) {
        Ok(ctx) => ctx,
        // `check` reports a config it cannot load in its own form, with every problem.
        Err(e @ Error::Config(_)) if matches!(cli.command, Command::Check(_)) => {
            return check::rejected(&cli.global, e);
        }
        Err(e) => return Err(e),
    };
    if !matches!(cli.command, Command::Supervise(_))
        && let Err(e) = crate::interrupt::install(&ctx.cfg.path)
    {
        tracing::warn!("signals to fpmctl keep their default action: {e}");
    }
    match &cli.command {
        // An unparsable config is exit 4 here, which is LSB "unknown" for `config`.
        Command::Config(_) => {
            ctx.require_valid_config(false)?;
            config::run(&ctx)
        }
        Command::Status(_) => status::run(&ctx),
        Command::Check(_) => match ctx.require_valid_config(true) {
            Ok(()) => check::run(&ctx),
            // `check` reports a config it cannot load in its own form, with every problem.
            Err(e) => check::rejected(&cli.global, e),
        },
        Command::Stop(a) => stop::run(&ctx, a),
        Command::Start(a) => start::run(&ctx, a),
        Command::Restart(a) => restart::run(&ctx, a),
        Command::Reload(a) => reload::run(&ctx, a),
        Command::Ping(a) => ping::run(&ctx, a),
        Command::Supervise(a) => {
            ctx.require_valid_config(true)?;
            supervise::run(&ctx, a)
        }
        Command::Doctor(a) => doctor::run(&cli.global, a),
        Command::Probe(a) => probe::run(&cli.global, a),
        Command::Metrics(a) => metrics::run(&ctx, a),
        Command::Ensure(a) => ensure::run(&ctx, a),
        Command::ReopenLogs(a) => reopen_logs::run(&ctx, a),
        Command::Generate(what) => generate::run(what),
    }
}

/// Seconds with two decimals, for messages.
pub(crate) fn secs(d: std::time::Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Milliseconds of a duration for a control request.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sends `req` to a supervisor running for this config; `None` when there is none. The
/// supervisor's outcome is returned as it is, exit code included: a forwarded command
/// fails with the same code it would have failed with directly.
pub(crate) fn delegate(ctx: &Ctx, req: &Request, wait: Duration) -> Result<Option<Outcome>> {
    let Some(reply) = control::request(&ctx.cfg.path, req, wait)? else {
        return Ok(None);
    };
    let mut out = Outcome::from(reply);
    match &mut out.error {
        Some(e) => *e = format!("the supervisor answered: {e}"),
        None => out.text = format!("(through the supervisor) {}", out.text),
    }
    Ok(Some(out))
}
