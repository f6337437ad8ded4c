//! What a restart costs the clients of a web server in front of FPM.
//!
//! `cargo bench --bench restart` (or `scripts/bench.sh`) restarts a sandboxed php-fpm N times
//! (10, or `FPMCTL_BENCH_RESTARTS`) under a steady load through a real nginx, once per
//! strategy and per pool (the unix-socket pool and the TCP pool), and prints one markdown
//! table: how many requests failed (a non-2xx answer or no answer), the request latency
//! (p50, p99, max) over the whole phase, how many requests took longer than 50 ms, and how
//! long each restart took. The same figures,
//! with every restart's time, go to `target/bench/restart.json`.
//!
//! Strategies:
//! - `no restart`: the same load for as long, nothing restarted (the latency baseline);
//! - `init-style stop+start`: SIGQUIT the master, wait until it is gone (pidfd), start
//!   `php-fpm -y CONF -D`, then wait until every pool answers;
//! - `kill -USR2`: FPM's own reload, by hand: SIGUSR2 to the master, wait until the
//!   re-executed FPM runs and every pool answers;
//! - `fpmctl restart`: fpmctl's own (unsupervised) restart, the default: the new master starts
//!   on the sockets taken from the running one, which is retired once the new one is ready;
//! - `fpmctl restart --cold`: stop, then start, readiness proven;
//! - `fpmctl reload`: SIGUSR2 with fpmctl's checks and readiness;
//! - `fpmctl supervise`: `fpmctl supervise` owns FPM and `fpmctl restart` asks it to replace FPM.
//!
//! All runs share one machine and one process, so compare rows of one run with each other,
//! not with another run's. Everything runs on loopback inside a temp dir; every process the
//! bench starts is killed by PID when it ends, also when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use common::load::{Load, LoadReport};
use common::nginx::{self, Nginx};
use common::{Opts, Sandbox};
use fpmctl::deadline::Deadline;
use nix::sys::signal::Signal;
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{WAIT_LIMIT, median, millis, millis_list, ms};

/// Client threads of the load, each with one request in flight at a time.
const THREADS: usize = 4;
/// Each client's pause after each request: keeps the load modest on a small machine.
const PAUSE: Duration = Duration::from_millis(5);
/// Load before the first restart and after the last one.
const WARMUP: Duration = Duration::from_millis(500);
/// Pause between restarts, so each restart starts from a settled FPM.
const SETTLE: Duration = Duration::from_millis(300);
/// Hard limit of one load phase (the stop flag normally ends it much earlier).
const PHASE_LIMIT: Duration = Duration::from_secs(150);
const DEFAULT_RESTARTS: usize = 10;
/// A request slower than this counts as slowed down by a restart: the latency percentiles are
/// over the whole phase, so a slower restart command (a longer phase) dilutes them; this count
/// is not diluted.
const SLOW: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strategy {
    NoRestart,
    InitStyle,
    RawUsr2,
    FpmctlRestart,
    FpmctlRestartCold,
    FpmctlReload,
    FpmctlSupervise,
}

impl Strategy {
    const ALL: [Strategy; 7] = [
        Strategy::NoRestart,
        Strategy::InitStyle,
        Strategy::RawUsr2,
        Strategy::FpmctlRestart,
        Strategy::FpmctlRestartCold,
        Strategy::FpmctlReload,
        Strategy::FpmctlSupervise,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::NoRestart => "no restart",
            Strategy::InitStyle => "init-style stop+start",
            Strategy::RawUsr2 => "kill -USR2",
            Strategy::FpmctlRestart => "fpmctl restart",
            Strategy::FpmctlRestartCold => "fpmctl restart --cold",
            Strategy::FpmctlReload => "fpmctl reload",
            Strategy::FpmctlSupervise => "fpmctl supervise",
        }
    }
}

/// The two pools of the sandbox, by nginx location.
const SOCKETS: [(&str, &str); 2] = [("unix", "/sock/"), ("tcp", "/tcp/")];

struct Row {
    strategy: Strategy,
    socket: &'static str,
    restarts: usize,
    load: LoadReport,
    times: Vec<Duration>,
    /// TCP sockets in TIME_WAIT on the host when the phase began and ended.
    time_wait: (usize, usize),
}

impl Row {
    fn failed_pct(&self) -> f64 {
        let total = self.load.requests();
        if total == 0 {
            0.0
        } else {
            100.0 * self.load.failed() as f64 / total as f64
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "strategy": self.strategy.name(),
            "socket": self.socket,
            "restarts": self.restarts,
            "requests": self.load.requests(),
            "failed": self.load.failed(),
            "failed_pct": (self.failed_pct() * 100.0).round() / 100.0,
            "connection_errors": self.load.errors,
            "statuses": self.load.statuses,
            "latency_p50_ms": millis(self.load.latency_quantile(0.5)),
            "latency_p99_ms": millis(self.load.latency_quantile(0.99)),
            "latency_max_ms": millis(self.load.latency_quantile(1.0)),
            "slow_requests": self.load.slower_than(SLOW),
            "slow_ms": millis(SLOW),
            "restart_median_ms": millis(median(&self.times)),
            "restart_max_ms": millis(self.times.iter().copied().max().unwrap_or_default()),
            "restart_ms": millis_list(&self.times),
            "time_wait_sockets": [self.time_wait.0, self.time_wait.1],
            "first_errors": self.load.first_errors.iter().take(3).collect::<Vec<_>>(),
        })
    }
}

fn main() {
    if !support::asked_to_run("restart") {
        return;
    }
    let restarts = support::env_count("FPMCTL_BENCH_RESTARTS", DEFAULT_RESTARTS);
    if common::fpm_bin().is_none() || !nginx::available() {
        return;
    }
    let meta = support::meta();
    let began = Instant::now();
    eprintln!(
        "restart bench: {restarts} restart(s) per strategy and socket, {THREADS} client threads \
         through nginx ({}ms pause per request)",
        PAUSE.as_millis()
    );
    let mut rows = Vec::new();
    for strategy in Strategy::ALL {
        rows.extend(bench(strategy, restarts));
    }
    println!("{}", table(&rows));
    println!("Run: {}", support::meta_line(&meta));
    for r in &rows {
        println!(
            "{} / {}: statuses {:?}, {} connection error(s); TCP sockets in TIME_WAIT on the \
             host {} -> {}",
            r.strategy.name(),
            r.socket,
            r.load.statuses,
            r.load.errors,
            r.time_wait.0,
            r.time_wait.1,
        );
        for e in r.load.first_errors.iter().take(3) {
            println!("    {e}");
        }
    }
    support::write_json(
        "restart",
        meta,
        json!({
            "load": {
                "client_threads": THREADS,
                "pause_ms": millis(PAUSE),
                "settle_ms": millis(SETTLE),
                "warmup_ms": millis(WARMUP),
                "request": "GET through nginx, one connection per request (Connection: close)",
            },
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        }),
    );
    eprintln!(
        "restart bench: done in {:.0}s",
        began.elapsed().as_secs_f64()
    );
}

/// One strategy: a fresh sandbox, FPM and nginx; a load phase with `n` restarts per socket.
fn bench(strategy: Strategy, n: usize) -> Vec<Row> {
    let sb = Sandbox::with(Opts {
        process_control_timeout: "10s",
        ..Opts::default()
    })
    .expect("php-fpm is installed");
    let cfg = sb.fpm_config().expect("the sandbox config loads");
    // Declared after the sandbox: dropped (stopped) before it.
    let mut supervisor = None;
    match strategy {
        Strategy::FpmctlSupervise => supervisor = Some(Supervisor::start(&sb)),
        _ => {
            sb.start_fpm();
        }
    }
    let ng = Nginx::start(&sb);
    let mut rows = Vec::new();
    let n = if strategy == Strategy::NoRestart {
        0
    } else {
        n
    };
    for (socket, path) in SOCKETS {
        let (status, body) = common::load::get(ng.addr, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}\n{}", ng.logs()));
        assert_eq!(status, 200, "GET {path} before the load: {body}");
        eprintln!("  {} / {socket}: {n} restart(s)", strategy.name());
        let before = time_wait_sockets();
        let (load, times) = phase(&sb, &cfg, ng.addr, path, strategy, n);
        rows.push(Row {
            strategy,
            socket,
            restarts: n,
            load,
            times,
            time_wait: (before, time_wait_sockets()),
        });
    }
    match supervisor.take() {
        Some(s) => s.stop(),
        None => {
            let run = sb.fpmctl(&["stop"]);
            assert_eq!(run.code, 0, "{run}");
        }
    }
    drop(ng);
    rows
}

/// The load on `path` while FPM restarts `n` times; the load's report and each restart's time.
/// Without restarts (the baseline), the load runs as long as 10 restarts' pauses would take.
fn phase(
    sb: &Sandbox,
    cfg: &fpmctl::config::FpmConfig,
    addr: SocketAddr,
    path: &str,
    strategy: Strategy,
    n: usize,
) -> (LoadReport, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the load also when a restart panics.
    let _stop_on_exit = SetOnDrop(Arc::clone(&stop));
    let bg = Load::new(THREADS, PHASE_LIMIT)
        .pause(PAUSE)
        .spawn(addr, path, Arc::clone(&stop));
    std::thread::sleep(WARMUP);
    let mut times = Vec::with_capacity(n);
    if n == 0 {
        std::thread::sleep(SETTLE * 10);
    }
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(SETTLE);
        }
        times.push(restart(sb, cfg, strategy));
    }
    std::thread::sleep(WARMUP);
    stop.store(true, Ordering::Relaxed);
    let load = bg.join().expect("the load thread panicked");
    (load, times)
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One restart by `strategy`; how long it took until the restarting command returned (by hand:
/// until every pool answered).
fn restart(sb: &Sandbox, cfg: &fpmctl::config::FpmConfig, strategy: Strategy) -> Duration {
    match strategy {
        Strategy::NoRestart => Duration::ZERO,
        Strategy::InitStyle => support::bare_restart(sb, cfg),
        Strategy::RawUsr2 => support::raw_usr2(sb, cfg),
        Strategy::FpmctlRestart | Strategy::FpmctlRestartCold => {
            let cold = strategy == Strategy::FpmctlRestartCold;
            let run = sb.fpmctl(if cold {
                &["restart", "--cold"][..]
            } else {
                &["restart"][..]
            });
            assert_eq!(run.code, 0, "{run}");
            assert_eq!(
                run.stdout.contains("sockets handed over"),
                !cold,
                "not the restart asked for:\n{run}"
            );
            if let Some(pid) = sb.pid_from_file() {
                sb.note_master(pid);
            }
            run.elapsed
        }
        Strategy::FpmctlReload => {
            let run = sb.fpmctl(&["reload"]);
            assert_eq!(run.code, 0, "{run}");
            if let Some(pid) = sb.pid_from_file() {
                sb.note_master(pid);
            }
            run.elapsed
        }
        Strategy::FpmctlSupervise => {
            let run = sb.fpmctl(&["restart"]);
            assert_eq!(run.code, 0, "{run}");
            assert!(
                run.stdout.contains("through the supervisor"),
                "the restart did not go through the supervisor:\n{run}"
            );
            run.elapsed
        }
    }
}

/// `fpmctl supervise` as our child; stopped (SIGTERM, then SIGKILL) and reaped on drop.
struct Supervisor {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Supervisor {
    fn start(sb: &Sandbox) -> Supervisor {
        let log = sb.path().join("supervise.log");
        let out = std::fs::File::create(sb.path().join("supervise.out")).unwrap();
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fpmctl"))
            .arg("-c")
            .arg(&sb.conf)
            .arg("supervise")
            .current_dir(sb.path())
            .env("FPMCTL_LOCK_DIR", sb.path().join("locks"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning fpmctl supervise");
        let mut sup = Supervisor {
            child: Some(child),
            log,
        };
        let deadline = Deadline::after(WAIT_LIMIT);
        loop {
            let run = sb.fpmctl(&["status", "--json"]);
            let ready = serde_json::from_str::<serde_json::Value>(&run.stdout)
                .ok()
                .is_some_and(|j| j["supervisor"]["ready"] == true);
            if ready {
                return sup;
            }
            if let Some(status) = sup.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("fpmctl supervise exited ({status}):\n{}", sup.log_text());
            }
            if deadline.expired() {
                panic!(
                    "fpmctl supervise not ready after {WAIT_LIMIT:?}:\n{run}\n{}",
                    sup.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then a bounded wait; true when it exited by itself with status 0.
    fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        }
        let deadline = Deadline::after(WAIT_LIMIT);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if !deadline.expired() => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    // Not yet reaped, so the PID is still our child's.
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// Stops the supervisor (and with it FPM); panics when it does not exit cleanly.
    fn stop(mut self) {
        let clean = self.terminate();
        assert!(
            clean,
            "fpmctl supervise did not exit cleanly:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.is_some() {
            if std::thread::panicking() {
                eprintln!("--- fpmctl supervise log:\n{}", self.log_text());
            }
            self.terminate();
        }
    }
}

/// TCP sockets in TIME_WAIT (state 06) in this network namespace, IPv4 and IPv6: every
/// pass over `/proc/net/tcp*` (fpmctl's discovery makes several per restart) costs more when
/// there are many, so the notes under the table say under which conditions they were measured.
fn time_wait_sockets() -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|l| l.split_whitespace().nth(3) == Some("06"))
                .count()
        })
        .sum()
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| strategy | socket | restarts | requests | failed | failed % | p50 | p99 | max | > 50 ms | restart median | restart max |\n",
    );
    s.push_str(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        let (median, max) = if r.times.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                ms(median(&r.times)),
                ms(r.times.iter().copied().max().unwrap_or_default()),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} % | {} | {} | {} | {} | {median} | {max} |",
            r.strategy.name(),
            r.socket,
            r.restarts,
            r.load.requests(),
            r.load.failed(),
            r.failed_pct(),
            ms(r.load.latency_quantile(0.5)),
            ms(r.load.latency_quantile(0.99)),
            ms(r.load.latency_quantile(1.0)),
            r.load.slower_than(SLOW),
        );
    }
    s
}
