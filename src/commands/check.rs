//! `fpmctl check`: php-fpm's own verdict (`php-fpm -t`) plus the problems it cannot see
//! without binding sockets: two pools on one address, a socket or pid file directory that
//! does not exist. Changes nothing. Run by a user other than root, `php-fpm -t` cannot read
//! what FPM (started by root) reads; a rejection for lack of permission is reported as
//! "cannot judge as this user: run as root" (exit 4), never as an invalid config.

use super::{Ctx, Outcome};
use crate::cli::GlobalArgs;
use crate::config::{find_config, static_checks};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::lossless;
use serde_json::json;
use std::fmt::Write;

/// True when php-fpm's complaints are about permissions (a file it may not open as this user).
fn denied(messages: &[String]) -> bool {
    messages
        .iter()
        .any(|m| m.contains("Permission denied") || m.contains("Operation not permitted"))
}

/// `check` of a config the parser rejected (`err`, from loading it): the same report as for
/// one it accepts, with php-fpm's verdict and every problem found, each naming its file and
/// line. Only when php-fpm cannot be asked is `err` returned as it is.
pub(super) fn rejected(global: &GlobalArgs, err: Error) -> Result<Outcome> {
    let Ok(path) = find_config(global.config.as_deref(), global.php_version.as_deref()) else {
        return Err(err);
    };
    let Ok(fpm) = super::binary_for(&path, global) else {
        return Err(err);
    };
    let Err(ours) = crate::config::load_with(&path, &fpm.options_for(&path)) else {
        return Err(err);
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    let Ok(test) = fpm.test() else {
        return Err(err);
    };
    let problems: Vec<String> = ours.problems.iter().map(|p| p.to_string()).collect();
    let mut text = String::new();
    if test.ok {
        let _ = writeln!(text, "php-fpm -t: {} is valid", path.display());
    } else {
        let _ = writeln!(text, "php-fpm -t: {} is INVALID", path.display());
        for m in &test.messages {
            let _ = writeln!(text, "  {m}");
        }
    }
    for p in &problems {
        let _ = writeln!(text, "problem: {p}");
    }
    let _ = writeln!(text, "check FAILED");
    Ok(Outcome {
        // What loading said: 6 when php-fpm rejects it too, 4 when only fpmctl cannot read it.
        code: err.exit_code(),
        text,
        json: json!({
            "config": lossless::json_path(&path),
            "valid": false,
            "fpm_test": { "ok": test.ok, "binary": lossless::json_path(&fpm.bin), "messages": test.messages },
            "problems": problems,
            "warnings": Vec::<String>::new(),
        }),
        error: None,
    })
}

pub(super) fn run(ctx: &Ctx) -> Result<Outcome> {
    let fpm = ctx.fpm()?;
    let test = fpm.test()?;
    let (problems, warnings) = static_checks(&ctx.cfg);
    let ok = test.ok && problems.is_empty();
    let euid = nix::unistd::geteuid();
    let unjudged = !test.ok && !euid.is_root() && denied(&test.messages);
    let mut text = String::new();
    if test.ok {
        let _ = writeln!(text, "php-fpm -t: {} is valid", ctx.cfg.path.display());
    } else if unjudged {
        let _ = writeln!(
            text,
            "php-fpm -t: cannot judge {} as uid {euid}: FPM runs as root and reads files this user may not; run as root",
            ctx.cfg.path.display()
        );
        for m in &test.messages {
            let _ = writeln!(text, "  {m}");
        }
    } else {
        let _ = writeln!(text, "php-fpm -t: {} is INVALID", ctx.cfg.path.display());
        for m in &test.messages {
            let _ = writeln!(text, "  {m}");
        }
    }
    for p in &problems {
        let _ = writeln!(text, "problem: {p}");
    }
    for w in &warnings {
        let _ = writeln!(text, "warning: {w}");
    }
    let verdict = if ok {
        "check passed"
    } else if unjudged && problems.is_empty() {
        "check INCOMPLETE: run as root"
    } else {
        "check FAILED"
    };
    let _ = writeln!(text, "{verdict}");
    let mut json = json!({
        "config": lossless::json_path(&ctx.cfg.path),
        "valid": if unjudged && problems.is_empty() { serde_json::Value::Null } else { ok.into() },
        "judged": !unjudged,
        "fpm_test": { "ok": test.ok, "binary": lossless::json_path(&fpm.bin), "messages": test.messages },
        "problems": problems,
        "warnings": warnings,
    });
    lossless::lossy_note(&mut json, [ctx.cfg.path.as_path(), fpm.bin.as_path()]);
    Ok(Outcome {
        code: if ok {
            ExitCode::Ok
        } else if unjudged && problems.is_empty() {
            ExitCode::ConfigUnreadable
        } else {
            ExitCode::ConfigInvalid
        },
        text,
        json,
        error: None,
    })
}
