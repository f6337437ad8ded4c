//! `fpmctl check`: php-fpm's own verdict (`php-fpm -t`) plus the problems it cannot see
//! without binding sockets: two pools on one address, a socket or pid file directory that
//! does not exist. Changes nothing. Run by a user other than root, `php-fpm -t` cannot read
//! what FPM (started by root) reads; a rejection for lack of permission is reported as
//! "cannot judge as this user: run as root" (exit 4), never as an invalid config.

use super::{Ctx, Outcome};
use crate::cli::GlobalArgs;
use crate::config::{FpmConfig, find_config};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::listen::{ListenAddr, TcpHost};
use crate::lossless;
use serde_json::json;
use std::fmt::Write;

/// Problems (fail the check) and warnings (do not) found without running FPM: two pools on
/// one address, a unix socket path longer than the kernel allows, a missing socket or pid
/// file directory.
pub fn static_checks(cfg: &FpmConfig) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let addrs: Vec<(&str, &ListenAddr, String)> = cfg
        .pools
        .iter()
        .flat_map(|p| {
            let mut v = vec![(
                p.name.as_str(),
                &p.listen,
                format!("{} listen", p.listen_at),
            )];
            if let Some(s) = &p.status_listen {
                v.push((
                    p.name.as_str(),
                    s,
                    format!("{} pm.status_listen", p.defined_at),
                ));
            }
            v
        })
        .collect();
    for (i, (pa, a, wa)) in addrs.iter().enumerate() {
        for (pb, b, wb) in &addrs[i + 1..] {
            if same_address(a, b) {
                problems.push(format!(
                    "pools {pa} ({wa}) and {pb} ({wb}) both listen on {a}; the second bind fails"
                ));
            }
        }
        if let ListenAddr::Unix(path) = a
            && path.as_os_str().len() > crate::listen::SUN_PATH_MAX
        {
            problems.push(format!(
                "pool {pa} ({wa}): the socket path {} is {} bytes, longer than the kernel's limit of {} (FPM would bind a truncated path)",
                path.display(),
                path.as_os_str().len(),
                crate::listen::SUN_PATH_MAX
            ));
        }
        if let ListenAddr::Unix(path) = a
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            problems.push(format!(
                "pool {pa} ({wa}): socket directory {} does not exist",
                dir.display()
            ));
        }
    }
    if let Some(pid) = &cfg.global.pid_file
        && let Some(dir) = pid.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        problems.push(format!(
            "pid file directory {} does not exist ({})",
            dir.display(),
            cfg.path.display()
        ));
    }
    if cfg.global.process_control_timeout.is_zero() {
        warnings.push(
            "process_control_timeout = 0: a graceful stop or reload cannot wait for requests in flight (FPM escalates at once); set it, e.g. 10s".to_string(),
        );
    }
    (problems, warnings)
}

/// True when php-fpm's complaints are about permissions (a file it may not open as this user).
fn denied(messages: &[String]) -> bool {
    messages
        .iter()
        .any(|m| m.contains("Permission denied") || m.contains("Operation not permitted"))
}

fn same_address(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Unix(x), ListenAddr::Unix(y)) => x == y,
        (ListenAddr::Tcp { port: pa, host: ha }, ListenAddr::Tcp { port: pb, host: hb }) => {
            let wild = |h: &TcpHost| match h {
                TcpHost::Any => true,
                TcpHost::Ip(ip) => ip.is_unspecified(),
                TcpHost::Name(_) => false,
            };
            pa == pb && (ha == hb || wild(ha) || wild(hb))
        }
        _ => false,
    }
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
    let Err(ours) = crate::config::load_with(&path, &fpm.load_options()) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_equal_addresses_collide() {
        let p = |s: &str| ListenAddr::parse(s).unwrap();
        assert!(same_address(&p("9000"), &p("127.0.0.1:9000")));
        assert!(same_address(&p("[::]:9000"), &p("127.0.0.1:9000")));
        assert!(same_address(&p("/tmp/a.sock"), &p("/tmp/a.sock")));
        assert!(!same_address(&p("127.0.0.1:9000"), &p("127.0.0.2:9000")));
        assert!(!same_address(&p("/tmp/a.sock"), &p("/tmp/b.sock")));
        assert!(!same_address(&p("9000"), &p("9001")));
    }

    #[test]
    fn a_socket_path_past_the_kernel_limit_is_a_problem_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php-fpm.conf");
        let sock = |len: usize| {
            let name = "s".repeat(len - dir.path().as_os_str().len() - 1);
            dir.path().join(name)
        };
        for (len, bad) in [(107, false), (108, true)] {
            std::fs::write(
                &path,
                format!(
                    "[www]\nlisten = {}\npm = static\npm.max_children = 1\n",
                    sock(len).display()
                ),
            )
            .unwrap();
            let cfg = crate::config::load(&path).unwrap();
            let (problems, _) = static_checks(&cfg);
            assert_eq!(problems.len(), usize::from(bad), "{problems:?}");
            if bad {
                // The line of the `listen` directive.
                assert!(problems[0].contains(&format!("{}:2 listen", path.display())));
                assert!(problems[0].contains("108 bytes"), "{problems:?}");
            }
        }
    }
}
