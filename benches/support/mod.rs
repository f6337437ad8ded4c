//! What the benches share: their iteration counts, medians and ratios, the JSON file each one
//! writes under `target/bench/` (with the machine and versions it ran on, so two commits can be
//! compared), and what a user does by hand instead of fpmctl: a bare stop+start and a raw
//! `kill -USR2`, each followed by the readiness a user would want (every pool answers).
#![allow(dead_code)]

use crate::common::Sandbox;
use fpmctl::config::FpmConfig;
use fpmctl::deadline::Deadline;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Limit of one wait in a bench (a master to exit, a pool to answer).
pub const WAIT_LIMIT: Duration = Duration::from_secs(40);

/// True when run by `cargo bench` (which passes `--bench`); `cargo test --all-targets` runs
/// each bench binary without it, and then there is nothing to do.
pub fn asked_to_run(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    eprintln!("{name} bench: run it with `cargo bench --bench {name}` (or scripts/bench.sh)");
    false
}

/// A positive count from the environment variable `var`, or `default` when it is unset.
pub fn env_count(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{var}={v:?}: expected a positive number")),
        Err(_) => default,
    }
}

pub fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

pub fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `a / b`, 0 when `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

/// `PASS` when `ratio` is at most `target`.
pub fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio <= target { "PASS" } else { "FAIL" }
}

/// The durations in milliseconds, for the JSON file.
pub fn millis_list(times: &[Duration]) -> Vec<f64> {
    times.iter().map(|d| millis(*d)).collect()
}

/// Median of each numeric top-level field (PIDs left out) over several `--json` outputs of
/// fpmctl (what it says it spent its time on); fields missing from some outputs are taken from
/// the others.
pub fn json_medians(outputs: &[Value]) -> serde_json::Map<String, Value> {
    let mut keys: Vec<String> = outputs
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| {
            o.iter()
                .filter(|(k, v)| v.is_number() && !k.contains("master"))
                .map(|(k, _)| k.clone())
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let vals: Vec<f64> = outputs.iter().filter_map(|o| o[&k].as_f64()).collect();
            (k, json!(median_f64(&vals)))
        })
        .collect()
}

/// Live processes on the host (entries of /proc that are PIDs).
pub fn host_processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

fn first_line(cmd: &mut Command) -> String {
    cmd.stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let mut all = o.stdout;
            all.extend_from_slice(&o.stderr);
            String::from_utf8_lossy(&all)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The git revision of the tree the bench was built from, `+dirty` when it has changes.
fn git_revision() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let rev = first_line(Command::new("git").args(["-C", root, "rev-parse", "--short=12", "HEAD"]));
    let dirty = Command::new("git")
        .args(["-C", root, "status", "--porcelain", "--untracked-files=no"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if rev.is_empty() {
        "unknown".into()
    } else if dirty {
        format!("{rev}+dirty")
    } else {
        rev
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The machine, the versions and the revision a bench ran with.
pub fn meta() -> Value {
    let fpm = crate::common::fpm_bin()
        .map(|b| first_line(Command::new(b).arg("-v")))
        .unwrap_or_default();
    let nginx = first_line(Command::new(crate::common::nginx::NGINX_BIN).arg("-v"));
    let fpmctl = first_line(Command::new(env!("CARGO_BIN_EXE_fpmctl")).arg("--version"));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    json!({
        "git_revision": git_revision(),
        "date": utc_now(),
        "fpmctl": fpmctl,
        "php_fpm": fpm,
        "nginx": nginx,
        "machine": {
            "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
            "os": os,
            "cpu": cpu,
            "load_average": read_trimmed("/proc/loadavg"),
            "processes": host_processes(),
        },
    })
}

/// Where build output goes: the `target` directory this bench binary was built into
/// (`target/release/deps/NAME-HASH`), else `target/` of the package.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Writes `target/bench/NAME.json`: this run's machine and versions (`meta`, taken when the
/// bench began) and its `results`. Returns the path.
pub fn write_json(name: &str, meta: Value, results: Value) -> PathBuf {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.json"));
    let doc = json!({ "bench": name, "meta": meta, "results": results });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(&path, text + "\n")
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("{name} bench: results in {}", path.display());
    path
}

/// One line on the machine and versions, to print under a table.
pub fn meta_line(meta: &Value) -> String {
    format!(
        "{} ({}), {}, {}; {} cores, Linux {}, load average {}; {} processes on the host",
        meta["git_revision"].as_str().unwrap_or("?"),
        meta["date"].as_str().unwrap_or("?"),
        meta["php_fpm"]
            .as_str()
            .unwrap_or("?")
            .split(" (")
            .next()
            .unwrap_or("?"),
        meta["nginx"]
            .as_str()
            .unwrap_or("?")
            .trim_start_matches("nginx version: "),
        meta["machine"]["nproc"],
        meta["machine"]["kernel"].as_str().unwrap_or("?"),
        meta["machine"]["load_average"]
            .as_str()
            .unwrap_or("?")
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        meta["machine"]["processes"],
    )
}

/// Polls every pool of `cfg` until it answers as fpmctl's readiness check wants (`ping.path`
/// answers `ping.response`; a pool without one answers any FastCGI request), one pool after
/// the other, with no backoff: what a user would wait for after starting FPM by hand.
pub fn wait_pools_answer(cfg: &FpmConfig) {
    let deadline = Deadline::after(WAIT_LIMIT);
    for pool in &cfg.pools {
        loop {
            match fpmctl::ready::check_pool(pool, deadline.remaining_capped(Duration::from_secs(3)))
            {
                Ok(_) => break,
                Err(e) if deadline.expired() => {
                    panic!(
                        "pool {} did not answer within {WAIT_LIMIT:?}: {e}",
                        pool.name
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

/// The master in the pid file, pinned by its start time.
fn pinned_master(sb: &Sandbox) -> (i32, fpmctl::procs::ProcId) {
    let pid = sb.pid_from_file().expect("a pid file naming the master");
    let master = fpmctl::procs::read(pid)
        .filter(|p| !p.is_gone())
        .unwrap_or_else(|| panic!("the master {pid} in the pid file is not running"));
    (pid, master.id)
}

/// Waits (pidfd) until `id` has exited.
fn wait_exited(id: fpmctl::procs::ProcId, what: &str) {
    let left = fpmctl::signals::wait_gone(&[id], Deadline::after(WAIT_LIMIT));
    assert!(
        left.is_empty(),
        "{what} {} still runs after {WAIT_LIMIT:?}",
        id.pid
    );
}

/// Waits until the pid file names a live master other than `old`; its PID.
fn wait_new_master(sb: &Sandbox, old: i32) -> i32 {
    let deadline = Deadline::after(WAIT_LIMIT);
    loop {
        if let Some(pid) = sb.pid_from_file().filter(|p| *p != old)
            && crate::common::alive(pid)
        {
            sb.note_master(pid);
            return pid;
        }
        assert!(
            !deadline.expired(),
            "no new master in the pid file after {WAIT_LIMIT:?}\n{}",
            sb.error_log()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A bare stop+start, as a user or an init script does it, plus readiness: SIGQUIT the master
/// in the pid file, wait until it is gone (pidfd), `php-fpm -y CONF -D`, then poll until every
/// pool answers. Its duration, from reading the pid file to the last pool's answer.
pub fn bare_restart(sb: &Sandbox, cfg: &FpmConfig) -> Duration {
    let began = Instant::now();
    let (pid, id) = pinned_master(sb);
    kill(Pid::from_raw(pid), Signal::SIGQUIT).expect("SIGQUIT to the master");
    wait_exited(id, "the old master");
    let out = Command::new(&sb.bin)
        .arg("-y")
        .arg(&sb.conf)
        .arg("-D")
        .stdin(Stdio::null())
        .output()
        .expect("running php-fpm");
    assert!(
        out.status.success(),
        "php-fpm -D failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.error_log()
    );
    wait_new_master(sb, pid);
    wait_pools_answer(cfg);
    began.elapsed()
}

/// A raw reload plus readiness: `kill -USR2` the master in the pid file, wait until the
/// re-executed FPM is done (the daemonized master re-executes, forks its new master and exits
/// once that one runs: its pidfd says when), then poll until every pool answers. Its duration.
pub fn raw_usr2(sb: &Sandbox, cfg: &FpmConfig) -> Duration {
    let began = Instant::now();
    let (pid, id) = pinned_master(sb);
    kill(Pid::from_raw(pid), Signal::SIGUSR2).expect("SIGUSR2 to the master");
    wait_exited(id, "the re-executing master");
    wait_new_master(sb, pid);
    wait_pools_answer(cfg);
    began.elapsed()
}
