//! `fpmctl doctor`: find the configs and logs, read them, look at the live system unless
//! `--offline`, classify, print; with `--follow`, keep reading and print each new finding.

use super::{Outcome, usage};
use crate::cli::{DoctorArgs, GlobalArgs};
use crate::config::{self as fpmconfig, FpmConfig};
use crate::doctor::classify::{Input, classify};
use crate::doctor::facts::{Diagnosis, FpmFacts, LiveFacts, Severity};
use crate::doctor::nginx_conf::{self, Source};
use crate::doctor::nginx_facts::{self, NginxFacts, Protocol, Target};
use crate::doctor::observe::Observations;
use crate::doctor::scan::{self, LogKind, Position, Scanner};
use crate::doctor::{live, report, time};
use crate::error::{ConfigError, Error, Result};
use crate::exit::ExitCode;
use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where nginx is installed on Debian, RHEL and the official image.
const NGINX_BINS: &[&str] = &[
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
];
/// nginx's main config when `nginx -T` cannot be asked.
const NGINX_CONF: &str = "/etc/nginx/nginx.conf";
/// nginx's compiled-in prefix on Debian (relative log paths resolve against it).
const NGINX_PREFIX: &str = "/usr/share/nginx";
/// Logs a Debian, RHEL or Docker host has when the configs name none.
const DEFAULT_NGINX_ERROR: &[&str] = &["/var/log/nginx/error.log"];
const DEFAULT_NGINX_ACCESS: &[&str] = &["/var/log/nginx/access.log"];
const DEFAULT_FPM_LOGS: &[&str] = &[
    "/var/log/php*-fpm.log",
    "/var/log/php-fpm/error.log",
    "/usr/local/var/log/php-fpm.log",
];

/// One log file being read.
struct LogFile {
    path: PathBuf,
    kind: LogKind,
    pos: Position,
    inode: u64,
}

/// Everything read before classifying.
struct World {
    cfg: Option<FpmConfig>,
    fpm: Option<FpmFacts>,
    nginx: Option<NginxFacts>,
    live: LiveFacts,
    notes: Vec<String>,
}

pub(super) fn run(global: &GlobalArgs, a: &DoctorArgs) -> Result<Outcome> {
    let now_unix = time::now_unix();
    let offset = time::local_offset(now_unix);
    let now = now_unix + offset;
    let since = match &a.since {
        Some(s) => Some(time::parse_since(s, now, offset).map_err(usage)?),
        None => None,
    };
    let mut notes = Vec::new();
    let cfg = load_fpm(global, a.offline, &mut notes)?;
    let nginx = load_nginx(a, &mut notes)?;
    let fpm = cfg.as_ref().map(FpmFacts::from_config);
    let live = if a.offline {
        LiveFacts::default()
    } else {
        let user = nginx.as_ref().map(|n| n.worker_user());
        // One limit for every live check, taken from here: reading the configs and logs is
        // not a network wait.
        live::gather(
            cfg.as_ref(),
            &fastcgi_targets(nginx.as_ref()),
            user,
            crate::deadline::Deadline::after(a.timeout),
        )
    };
    if let (Some(running), Some(c)) = (live.fpm_running, &cfg) {
        notes.push(format!(
            "live: {} FPM master of {}",
            if running { "a verified" } else { "no" },
            c.path.display()
        ));
    }
    let mut world = World {
        cfg,
        fpm,
        nginx,
        live,
        notes,
    };
    let mut extra_notes = Vec::new();
    let mut files = log_files(a, &world, &mut extra_notes)?;
    let mut obs = Observations::default();
    let mut sources = Vec::new();
    let since_unix = since.map(|s| s - offset);
    for f in &mut files {
        read_with_rotated(
            f,
            since,
            since_unix,
            &mut obs,
            &mut sources,
            &mut extra_notes,
        );
    }
    world.notes.extend(extra_notes);
    if files.is_empty() {
        world
            .notes
            .push("no log was found or given: pass --nginx-error-log and --fpm-log".into());
    }
    let diag = diagnose(&world, &obs, now);
    if a.follow {
        return follow(a, &world, files, obs, diag, now, offset);
    }
    let code = exit_code(&diag);
    Ok(Outcome {
        code,
        text: report::to_text(&diag, &sources, now, offset),
        json: report::to_json(&diag, now, offset),
        error: None,
    })
}

/// Doctor's exit code: a cause is the answer (1) even when some addresses were not reached;
/// without one, an incomplete look is not "healthy" (8, the addresses named); else 0.
fn exit_code(d: &Diagnosis) -> ExitCode {
    if d.has_cause() {
        ExitCode::Failure
    } else if !d.not_checked.is_empty() {
        ExitCode::Timeout
    } else {
        ExitCode::Ok
    }
}

fn diagnose(world: &World, obs: &Observations, now: time::Civil) -> Diagnosis {
    let mut d = classify(&Input {
        obs,
        nginx: world.nginx.as_ref(),
        fpm: world.fpm.as_ref(),
        live: &world.live,
        now,
    });
    let mut notes = world.notes.clone();
    notes.append(&mut d.notes);
    let mut seen = HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    d.notes = notes;
    d
}

fn config_error(msg: String) -> Error {
    Error::Config(ConfigError::msg(msg))
}

/// The FPM config: a named one must be readable (exit 4); a broken or missing one is a note.
fn load_fpm(
    global: &GlobalArgs,
    offline: bool,
    notes: &mut Vec<String>,
) -> Result<Option<FpmConfig>> {
    let path = match &global.config {
        Some(p) => {
            if let Err(e) = std::fs::File::open(p) {
                return Err(config_error(format!(
                    "cannot read FPM config {}: {e}",
                    p.display()
                )));
            }
            p.clone()
        }
        None if offline => {
            notes.push("no FPM config given (-c): pools and their addresses are unknown".into());
            return Ok(None);
        }
        None => match fpmconfig::find_config(None, global.php_version.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("FPM config: {e}"));
                return Ok(None);
            }
        },
    };
    // Relative paths resolve as the binary that runs this config resolves them (asking it
    // runs it: not offline); otherwise under --prefix or Debian's directories.
    let fpm = if offline {
        None
    } else {
        super::binary_for(&path, global).ok()
    };
    let opts = match &fpm {
        Some(fpm) => fpm.options_for(&path),
        None => fpmconfig::LoadOptions {
            prefix: global.prefix.clone(),
            ..fpmconfig::LoadOptions::default()
        },
    };
    match fpmconfig::load_with(&path, &opts) {
        Ok(mut cfg) => {
            // The binary identifies this config's processes: without it the live look
            // proves no master, worker or orphan to be this config's.
            cfg.binary = fpm.and_then(|f| crate::identity::FpmBinary::resolve(&f.bin).ok());
            if !offline && cfg.binary.is_none() {
                notes.push(format!(
                    "no php-fpm binary found for {}: its processes cannot be identified",
                    path.display()
                ));
            }
            Ok(Some(cfg))
        }
        Err(problems) => {
            let first = problems
                .problems
                .first()
                .map(|p| p.to_string())
                .unwrap_or_default();
            notes.push(format!(
                "FPM config {} does not parse, so its pools are unknown: {first}",
                path.display()
            ));
            Ok(None)
        }
    }
}

/// nginx's config: a named one must be readable (exit 4); otherwise `nginx -T`, then the
/// usual file; offline, only a named one.
fn load_nginx(a: &DoctorArgs, notes: &mut Vec<String>) -> Result<Option<NginxFacts>> {
    if let Some(path) = &a.nginx_conf {
        let conf = nginx_conf::read(path, &Source::Files)
            .map_err(|e| config_error(format!("cannot read nginx config {e}")))?;
        let prefix = path
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from(NGINX_PREFIX), Path::to_path_buf);
        return Ok(Some(nginx_facts::facts(&conf, &prefix)));
    }
    if a.offline {
        notes.push("no nginx config given (--nginx-conf): nginx's user and fastcgi_pass targets are unknown".into());
        return Ok(None);
    }
    if let Some(bin) = NGINX_BINS.iter().map(Path::new).find(|p| p.exists())
        && let Ok(out) = std::process::Command::new(bin)
            .arg("-T")
            .stdin(std::process::Stdio::null())
            .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let source = Source::from_dump(&text);
        let main = match &source {
            Source::Dump(files) => files.first().map(|(p, _)| p.clone()),
            Source::Files => None,
        };
        if out.status.success()
            && let Some(main) = main
            && let Ok(conf) = nginx_conf::read(&main, &source)
        {
            return Ok(Some(nginx_facts::facts(&conf, Path::new(NGINX_PREFIX))));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        notes.push(format!(
            "nginx -T failed ({}); reading {NGINX_CONF} instead",
            err.lines()
                .find(|l| l.contains("emerg"))
                .unwrap_or(err.trim())
        ));
    }
    match nginx_conf::read(Path::new(NGINX_CONF), &Source::Files) {
        Ok(conf) => Ok(Some(nginx_facts::facts(&conf, Path::new(NGINX_PREFIX)))),
        Err(e) => {
            notes.push(format!("no nginx config: {e}"));
            Ok(None)
        }
    }
}

/// Literal addresses nginx passes FastCGI to.
fn fastcgi_targets(nginx: Option<&NginxFacts>) -> Vec<crate::listen::ListenAddr> {
    let mut out = Vec::new();
    for p in nginx.map(|n| n.passes.as_slice()).unwrap_or_default() {
        if p.protocol != Protocol::FastCgi {
            continue;
        }
        match &p.target {
            Target::Addr(a) => out.push(a.clone()),
            Target::Upstream(_, servers) => out.extend(servers.iter().cloned()),
            _ => {}
        }
    }
    out.dedup();
    out
}

fn glob_paths(pattern: &str) -> Vec<PathBuf> {
    glob::glob(pattern)
        .map(|g| g.flatten().collect())
        .unwrap_or_default()
}

/// The logs to read: those given, else (not offline) those the configs name, else the
/// usual places.
/// The logs to read: the ones named on the command line (each must be readable: a typo must
/// not turn into "no cause found", exit 4), else the ones the configs name or the usual places
/// (a missing one is a note).
fn log_files(a: &DoctorArgs, world: &World, notes: &mut Vec<String>) -> Result<Vec<LogFile>> {
    let mut out: Vec<(PathBuf, LogKind)> = Vec::new();
    let given =
        !(a.nginx_error_log.is_empty() && a.nginx_access_log.is_empty() && a.fpm_log.is_empty());
    out.extend(
        a.nginx_error_log
            .iter()
            .map(|p| (p.clone(), LogKind::NginxError)),
    );
    out.extend(
        a.nginx_access_log
            .iter()
            .map(|p| (p.clone(), LogKind::NginxAccess)),
    );
    out.extend(a.fpm_log.iter().map(|p| (p.clone(), LogKind::Fpm)));
    if !a.offline {
        let existing = |list: &[&str]| -> Vec<PathBuf> {
            list.iter()
                .flat_map(|p| glob_paths(p))
                .filter(|p| p.is_file())
                .collect()
        };
        if a.nginx_error_log.is_empty() && !given {
            let mut v = world
                .nginx
                .as_ref()
                .map(|n| n.error_logs.clone())
                .unwrap_or_default();
            if v.is_empty() {
                v.extend(existing(DEFAULT_NGINX_ERROR));
            }
            out.extend(v.into_iter().map(|p| (p, LogKind::NginxError)));
        }
        if a.nginx_access_log.is_empty() && !given {
            let mut v = world
                .nginx
                .as_ref()
                .map(|n| n.access_logs.clone())
                .unwrap_or_default();
            if v.is_empty() {
                v.extend(existing(DEFAULT_NGINX_ACCESS));
            }
            out.extend(v.into_iter().map(|p| (p, LogKind::NginxAccess)));
        }
        if a.fpm_log.is_empty() && !given {
            let mut v = Vec::new();
            if let Some(cfg) = &world.cfg
                && cfg.global.error_log != "syslog"
            {
                v.push(PathBuf::from(&cfg.global.error_log));
            } else {
                v.extend(existing(DEFAULT_FPM_LOGS));
            }
            out.extend(v.into_iter().map(|p| (p, LogKind::Fpm)));
        }
    }
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for (path, kind) in out {
        if !seen.insert(path.clone()) {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push(LogFile {
                path,
                kind,
                pos: Position::default(),
                inode: m.ino(),
            }),
            Ok(_) => notes.push(format!(
                "{} ({}) is not a regular file (a pipe to a container's output?); not read",
                path.display(),
                kind.as_str()
            )),
            Err(e) if given => {
                return Err(config_error(format!(
                    "{} ({}): {e}",
                    path.display(),
                    kind.as_str()
                )));
            }
            Err(e) => notes.push(format!(
                "{} ({}): {e}; not read",
                path.display(),
                kind.as_str()
            )),
        }
    }
    Ok(files)
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Reads a log and, when `since` reaches back into them, its rotated predecessors.
fn read_with_rotated(
    f: &mut LogFile,
    since: Option<time::Civil>,
    since_unix: Option<i64>,
    obs: &mut Observations,
    sources: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let scanner = Scanner::new(f.kind);
    for path in scan::with_rotated(&f.path, since_unix) {
        let before = obs.bytes;
        let name = path.display().to_string();
        let result = scan::open(&path)
            .and_then(|r| scanner.scan(r, &name, Position::default(), since, path != f.path, obs));
        match result {
            Ok(pos) => {
                if path == f.path {
                    f.pos = pos;
                }
                sources.push(format!(
                    "{} {name} ({})",
                    f.kind.as_str(),
                    human_bytes(obs.bytes - before)
                ));
            }
            Err(e) => notes.push(format!("{name} ({}): {e}; not read", f.kind.as_str())),
        }
    }
}

/// Reads what was appended to `f` since the last read; starts over when it was rotated or
/// truncated.
fn read_more(f: &mut LogFile, obs: &mut Observations) -> std::io::Result<()> {
    let meta = std::fs::metadata(&f.path)?;
    // A pipe or a device is never read (see `scan::open`).
    if !meta.is_file() {
        return Ok(());
    }
    if meta.ino() != f.inode || meta.len() < f.pos.offset {
        f.inode = meta.ino();
        f.pos = Position::default();
    }
    if meta.len() == f.pos.offset {
        return Ok(());
    }
    let mut file = std::fs::File::open(&f.path)?;
    file.seek(SeekFrom::Start(f.pos.offset))?;
    let name = f.path.display().to_string();
    f.pos = Scanner::new(f.kind).scan(file, &name, f.pos, None, false, obs)?;
    Ok(())
}

/// How often `--follow` looks at the logs.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

fn follow(
    a: &DoctorArgs,
    world: &World,
    mut files: Vec<LogFile>,
    mut obs: Observations,
    first: Diagnosis,
    now: time::Civil,
    offset: i64,
) -> Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("installing a signal handler", e))?;
    }
    let mut printed: HashSet<(&'static str, String)> = HashSet::new();
    let mut any_cause = false;
    let mut shown = 0usize;
    let mut emit = |d: &Diagnosis, now: time::Civil| {
        let mut out = std::io::stdout().lock();
        for f in &d.findings {
            if !printed.insert((f.cause, f.summary.clone())) {
                continue;
            }
            any_cause |= f.severity == Severity::Error;
            shown += 1;
            let text = if a.json {
                format!("{}\n", report::finding_json(f, now, offset))
            } else {
                format!("{}\n", report::finding_text(shown, f, now, offset))
            };
            // A closed pipe ends following.
            if out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return false;
            }
        }
        true
    };
    let mut open = emit(&first, now);
    // The live checks run once, before following: what they did not reach is said once.
    if let Some(line) = report::not_checked_text(&first) {
        crate::output::eprint(&format!("note: {line}"));
    }
    let mut notes_seen: HashSet<String> = first.notes.iter().cloned().collect();
    if !a.json {
        for n in &first.notes {
            crate::output::eprint(&format!("note: {n}\n"));
        }
    }
    while open && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(FOLLOW_INTERVAL);
        let mut grew = false;
        for f in &mut files {
            let before = obs.bytes;
            if let Err(e) = read_more(f, &mut obs) {
                let n = format!("{}: {e}", f.path.display());
                if notes_seen.insert(n.clone()) {
                    tracing::warn!(file = %f.path.display(), "{n}");
                }
            }
            grew |= obs.bytes != before;
        }
        if grew {
            let now_unix = time::now_unix();
            let now = now_unix + offset;
            open = emit(&diagnose(world, &obs, now), now);
        }
    }
    Ok(Outcome {
        code: if any_cause {
            ExitCode::Failure
        } else {
            ExitCode::Ok
        },
        text: String::new(),
        json: serde_json::Value::Null,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_look_is_8_unless_a_cause_was_found() {
        use crate::doctor::facts::{Finding, NotChecked};
        let unchecked = NotChecked {
            address: "127.0.0.1:9000".into(),
            pool: Some("www".into()),
        };
        let cause = Finding {
            cause: "backlog-full",
            severity: Severity::Error,
            count: 1,
            failed: 0,
            first: None,
            last: None,
            summary: String::new(),
            evidence: Vec::new(),
            fix: String::new(),
            subject: String::new(),
        };
        let mut d = Diagnosis::default();
        assert_eq!(exit_code(&d), ExitCode::Ok);
        d.not_checked.push(unchecked);
        assert_eq!(exit_code(&d), ExitCode::Timeout);
        d.findings.push(Finding {
            severity: Severity::Warning,
            ..cause.clone()
        });
        assert_eq!(exit_code(&d), ExitCode::Timeout, "a warning is no answer");
        d.findings.push(cause);
        assert_eq!(exit_code(&d), ExitCode::Failure);
    }

    /// Real lines nginx wrote when the socket-permission incident was provoked.
    fn corpus_log() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus/socket-permission/nginx/error.log");
        std::fs::read_to_string(p).unwrap()
    }

    fn count(obs: &Observations) -> u64 {
        obs.nginx
            .values()
            .flat_map(|k| k.values())
            .map(|t| t.count)
            .sum()
    }

    #[test]
    fn since_reaches_back_into_rotated_and_gzipped_logs() {
        let text = corpus_log();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("error.log");
        std::fs::write(&log, "").unwrap();
        std::fs::write(dir.path().join("error.log.1"), &text).unwrap();
        let gz = dir.path().join("error.log.2.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&gz)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let read = |since_unix: Option<i64>| {
            let mut f = LogFile {
                path: log.clone(),
                kind: LogKind::NginxError,
                pos: Position::default(),
                inode: 0,
            };
            let (mut obs, mut sources, mut notes) = (Observations::default(), vec![], vec![]);
            read_with_rotated(&mut f, None, since_unix, &mut obs, &mut sources, &mut notes);
            assert!(notes.is_empty(), "{notes:?}");
            (count(&obs), sources.len())
        };
        let per_file = {
            let mut obs = Observations::default();
            Scanner::new(LogKind::NginxError)
                .scan(
                    text.as_bytes(),
                    "x",
                    Position::default(),
                    None,
                    true,
                    &mut obs,
                )
                .unwrap();
            count(&obs)
        };
        assert!(per_file > 0);
        let now = time::now_unix();
        assert_eq!(read(None), (0, 1));
        assert_eq!(read(Some(now - 3600)), (per_file, 2));
        assert_eq!(read(Some(now - 3 * 3600)), (2 * per_file, 3));
    }

    #[test]
    fn follow_reads_what_was_appended_and_starts_over_after_rotation() {
        let text = corpus_log();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("error.log");
        std::fs::write(&log, &text).unwrap();
        let mut f = LogFile {
            path: log.clone(),
            kind: LogKind::NginxError,
            pos: Position::default(),
            inode: std::fs::metadata(&log).unwrap().ino(),
        };
        let mut obs = Observations::default();
        read_more(&mut f, &mut obs).unwrap();
        let once = count(&obs);
        assert!(once > 0);
        read_more(&mut f, &mut obs).unwrap();
        assert_eq!(count(&obs), once, "nothing new, nothing counted");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        read_more(&mut f, &mut obs).unwrap();
        assert_eq!(count(&obs), 2 * once);
        // Rotation: a new file under the same name is read from its start.
        std::fs::rename(&log, dir.path().join("error.log.1")).unwrap();
        std::fs::write(&log, &text).unwrap();
        read_more(&mut f, &mut obs).unwrap();
        assert_eq!(count(&obs), 3 * once);
    }
}
