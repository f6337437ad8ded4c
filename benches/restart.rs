//! What a restart costs the clients of a web server in front of FPM.
//!
//! `cargo bench --bench restart` restarts a sandboxed php-fpm N times (20, or
//! `FPMCTL_BENCH_RESTARTS`) under a steady load through a real nginx, once per strategy and per
//! pool (the unix-socket pool and the TCP pool), and prints one markdown table: how many
//! requests failed (a non-2xx answer or no answer) and how long each restart took.
//!
//! Strategies:
//! - `init-script`: what init scripts do: SIGQUIT the master, wait until it is gone, start
//!   `php-fpm -y CONF -D`;
//! - `fpmctl restart`: fpmctl's own (unsupervised) restart, the default: the new master starts
//!   on the sockets taken from the running one, which is retired once the new one is ready;
//! - `fpmctl restart --cold`: stop, then start, readiness proven;
//! - `fpmctl supervise`: `fpmctl supervise` owns FPM and `fpmctl restart` asks it to replace FPM.
//!
//! All runs share one machine and one process, so compare rows of one run with each other,
//! not with another run's. Everything runs on loopback inside a temp dir; every process the
//! bench starts is killed by PID when it ends, also when it panics.

#[path = "../tests/common/mod.rs"]
mod common;

use common::load::{Load, LoadReport};
use common::nginx::{self, Nginx};
use common::{Opts, Sandbox};
use nix::sys::signal::Signal;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
/// Limit of one wait (a master to exit, a supervisor to become ready or to exit).
const WAIT_LIMIT: Duration = Duration::from_secs(40);
const DEFAULT_RESTARTS: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strategy {
    InitScript,
    FpmctlRestart,
    FpmctlRestartCold,
    FpmctlSupervise,
}

impl Strategy {
    const ALL: [Strategy; 4] = [
        Strategy::InitScript,
        Strategy::FpmctlRestart,
        Strategy::FpmctlRestartCold,
        Strategy::FpmctlSupervise,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::InitScript => "init-script",
            Strategy::FpmctlRestart => "fpmctl restart",
            Strategy::FpmctlRestartCold => "fpmctl restart --cold",
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

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("restart bench: run it with `cargo bench --bench restart`");
        return;
    }
    let restarts = match std::env::var("FPMCTL_BENCH_RESTARTS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("FPMCTL_BENCH_RESTARTS={v:?}: expected a positive number")),
        Err(_) => DEFAULT_RESTARTS,
    };
    if common::fpm_bin().is_none() || !nginx::available() {
        return;
    }
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
    // Declared after the sandbox: dropped (stopped) before it.
    let mut supervisor = None;
    match strategy {
        Strategy::InitScript | Strategy::FpmctlRestart | Strategy::FpmctlRestartCold => {
            sb.start_fpm();
        }
        Strategy::FpmctlSupervise => supervisor = Some(Supervisor::start(&sb)),
    }
    let ng = Nginx::start(&sb);
    let mut rows = Vec::new();
    for (socket, path) in SOCKETS {
        let (status, body) = common::load::get(ng.addr, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}\n{}", ng.logs()));
        assert_eq!(status, 200, "GET {path} before the load: {body}");
        eprintln!("  {} / {socket}: {n} restart(s)", strategy.name());
        let before = time_wait_sockets();
        let (load, times) = phase(&sb, ng.addr, path, strategy, n);
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
fn phase(
    sb: &Sandbox,
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
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(SETTLE);
        }
        times.push(restart(sb, strategy));
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

/// One restart by `strategy`; how long it took until the restarting command returned.
fn restart(sb: &Sandbox, strategy: Strategy) -> Duration {
    match strategy {
        Strategy::InitScript => init_script_restart(sb),
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

/// What an init script's restart does: SIGQUIT the master, wait until it is gone, start
/// `php-fpm -y CONF -D` (which returns once the new master is initialized).
fn init_script_restart(sb: &Sandbox) -> Duration {
    let began = Instant::now();
    let pid = sb.pid_from_file().expect("a pid file");
    let master = fpmctl::procs::read(pid).expect("the master in the pid file is alive");
    let cfg = sb.fpm_config().expect("the sandbox config loads");
    let sent = fpmctl::signals::send_verified(master.id, Signal::SIGQUIT, |p| {
        fpmctl::discovery::is_master_of(p, &cfg)
    });
    assert!(
        matches!(sent, Ok(fpmctl::signals::Sent::Delivered)),
        "SIGQUIT to master {pid}: {sent:?}"
    );
    sb.wait_for(WAIT_LIMIT, "the old master to exit", || {
        fpmctl::procs::read_same(master.id)
            .filter(|p| !p.is_gone())
            .is_none()
            .then_some(())
    });
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
    let took = began.elapsed();
    let new = sb.wait_for(WAIT_LIMIT, "the new pid file", || {
        sb.pid_from_file().filter(|p| *p != pid)
    });
    sb.note_master(new);
    took
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
        let deadline = Instant::now() + WAIT_LIMIT;
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
            if Instant::now() > deadline {
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
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
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

fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| strategy | socket | restarts | requests | failed | failed % | restart median | restart max |\n",
    );
    s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        let total = r.load.requests();
        let pct = if total == 0 {
            0.0
        } else {
            100.0 * r.load.failed() as f64 / total as f64
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} % | {} | {} |",
            r.strategy.name(),
            r.socket,
            r.restarts,
            total,
            r.load.failed(),
            pct,
            ms(median(&r.times)),
            ms(r.times.iter().copied().max().unwrap_or_default()),
        );
    }
    s
}
