//! The commands. Each takes the loaded [`Ctx`] and its arguments and returns an [`Outcome`]
//! (exit code, human text, JSON) or an [`Error`]; progress goes to the log as it happens.

mod check;
mod config;
mod ensure;
mod ping;
mod reload;
mod reopen_logs;
mod restart;
mod start;
mod status;
mod stop;
mod supervise;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{self as fpmconfig, FpmConfig};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::fpm::Fpm;
use crate::lock::{self, ConfigLock};
use std::path::PathBuf;

/// What a command produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code.
    pub code: ExitCode,
    /// Human-readable result for stdout.
    pub text: String,
    /// Machine-readable result for `--json`.
    pub json: serde_json::Value,
}

/// Everything commands share: the loaded config and the global options.
#[derive(Debug)]
pub struct Ctx {
    /// The config.
    pub cfg: FpmConfig,
    /// Global options.
    pub global: GlobalArgs,
}

impl Ctx {
    /// Finds and loads the config named by the global options. When the config does not
    /// parse and `ask_fpm` is set, php-fpm's own verdict decides: if `php-fpm -t` rejects it
    /// too, the error is [`Error::ConfigInvalid`] with FPM's own message.
    pub fn load(global: &GlobalArgs, ask_fpm: bool) -> Result<Ctx> {
        let path = fpmconfig::find_config(global.config.as_deref(), global.php_version.as_deref())?;
        // Relative paths resolve as the binary that runs this config resolves them; without
        // a binary, Debian's directories (or --prefix) are all there is to go by.
        let fpm = binary_for(&path, global);
        let opts = match &fpm {
            Ok(fpm) => fpm.load_options(),
            Err(_) => fpmconfig::LoadOptions {
                prefix: global.prefix.clone(),
                ..fpmconfig::LoadOptions::default()
            },
        };
        let mut cfg = match fpmconfig::load_with(&path, &opts) {
            Ok(cfg) => cfg,
            Err(problems) => {
                if ask_fpm
                    && path.is_file()
                    && let Some(err) = fpm_verdict(&path, global, &problems)
                {
                    return Err(err);
                }
                return Err(problems.into());
            }
        };
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        // The binary identifies this config's processes; without one nothing is proven ours.
        cfg.binary = fpm
            .ok()
            .and_then(|fpm| crate::identity::FpmBinary::resolve(&fpm.bin).ok());
        Ok(Ctx {
            cfg,
            global: global.clone(),
        })
    }

    /// The php-fpm binary for this config.
    pub fn fpm(&self) -> Result<Fpm> {
        binary_for(&self.cfg.path, &self.global)
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
    problems: &crate::error::ConfigError,
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
        Command::Supervise(_) => false,
    }
}

/// Runs the command the command line names.
pub fn run(cli: &Cli) -> Result<Outcome> {
    // An unreadable config is exit 4 for every command, which is LSB "unknown" for `status`.
    let ask_fpm = !matches!(cli.command, Command::Status(_) | Command::Config(_));
    let ctx = match Ctx::load(&cli.global, ask_fpm) {
        Ok(ctx) => ctx,
        // `check` reports a config it cannot load in its own form, with every problem.
        Err(e @ (Error::ConfigInvalid { .. } | Error::Config(_)))
            if matches!(cli.command, Command::Check(_)) =>
        {
            return check::rejected(&cli.global, e);
        }
        Err(e) => return Err(e),
    };
    match &cli.command {
        Command::Config(_) => config::run(&ctx),
        Command::Status(_) => status::run(&ctx),
        Command::Check(_) => check::run(&ctx),
        Command::Stop(a) => stop::run(&ctx, a),
        Command::Start(a) => start::run(&ctx, a),
        Command::Restart(a) => restart::run(&ctx, a),
        Command::Reload(a) => reload::run(&ctx, a),
        Command::Ping(a) => ping::run(&ctx, a),
        Command::Supervise(a) => supervise::run(&ctx, a),
        Command::Ensure(a) => ensure::run(&ctx, a),
        Command::ReopenLogs(a) => reopen_logs::run(&ctx, a),
    }
}

/// Seconds with two decimals, for messages.
pub(crate) fn secs(d: std::time::Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Sends `cmd` to a supervisor running for this config; `None` when there is none.
pub(crate) fn delegate(ctx: &Ctx, cmd: &str, wait: std::time::Duration) -> Result<Option<Outcome>> {
    let Some(reply) = crate::supervise::control::request(&ctx.cfg.path, cmd, wait)? else {
        return Ok(None);
    };
    let code = ExitCode::ALL
        .into_iter()
        .find(|c| c.code() == reply.code)
        .unwrap_or(ExitCode::Failure);
    if code != ExitCode::Ok {
        let msg = reply.text.trim().to_string();
        return Err(match code {
            ExitCode::ConfigInvalid => Error::ConfigInvalid {
                config: ctx.cfg.path.clone(),
                detail: msg,
            },
            ExitCode::ConfigUnreadable => Error::Other(msg),
            ExitCode::FpmDied => Error::FpmDied(msg),
            ExitCode::NotReady => Error::NotReady(msg),
            ExitCode::CrashLoop => Error::CrashLoop(msg),
            _ => Error::Other(msg),
        });
    }
    Ok(Some(Outcome {
        code,
        text: format!("(through the supervisor) {}", reply.text),
        json: reply.json,
    }))
}
