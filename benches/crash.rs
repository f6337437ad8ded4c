//! How fast `fpmctl supervise` brings FPM back after a crash, as a ratio to how fast a bare
//! php-fpm starts, measured in one run on one machine.
//!
//! `cargo bench --bench crash` (N = 10, or `FPMCTL_BENCH_CRASHES`):
//! - bare start: `php-fpm -F -y CONF` with `NOTIFY_SOCKET` pointing at the bench, from spawn to
//!   FPM's own `READY=1`;
//! - crash → ready: the supervised master gets SIGKILL; the time until the supervisor, whose
//!   `NOTIFY_SOCKET` is the bench's, says `READY=1` for a new master. Crashes are spaced wider
//!   than the crash window, so each restart is immediate (no backoff).
//!
//! The supervised crashes run with the binary's start-up pages released when the supervisor
//! settles (as shipped) and kept (`FPMCTL_RELEASE_PAGES=0`), in alternating rounds.
//! It prints one markdown table with the medians and their ratio to the bare start, and writes
//! them (with every run's time) to `target/bench/crash.json`. Every process is started through
//! the test harness and killed by PID at the end, also on panic.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use common::Sandbox;
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_CRASHES: usize = 10;
/// The longest wait for one `READY=1`.
const WAIT: Duration = Duration::from_secs(30);

/// Waits for a datagram containing `READY=1` (and `needle`, when given); its text.
fn wait_ready(sock: &UnixDatagram, needle: Option<&str>) -> String {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("a READY=1 in time");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.lines().any(|l| l == "READY=1") && needle.is_none_or(|s| !text.contains(s)) {
            return text;
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("crash bench: run it with `cargo bench --bench crash`");
        return;
    }
    let n: usize = std::env::var("FPMCTL_BENCH_CRASHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CRASHES)
        .max(1);
    let Some(sb) = Sandbox::new() else { return };
    let meta = support::meta();
    let sock_path = sb.path().join("bench-notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();

    // Bare php-fpm: spawn to READY=1.
    let mut bare = Vec::new();
    for _ in 0..n {
        let mut cmd = Command::new(&sb.bin);
        cmd.arg("-F")
            .arg("-y")
            .arg(&sb.conf)
            .env("NOTIFY_SOCKET", &sock_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let pid = sb.spawn(&mut cmd);
        wait_ready(&sock, None);
        bare.push(started.elapsed());
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGQUIT).unwrap();
        sb.wait_child(pid, WAIT);
    }

    // Supervised: SIGKILL of the master to the supervisor's READY=1 for the next one, with
    // the binary's start-up pages released when the supervisor settles (as shipped) and kept
    // (`FPMCTL_RELEASE_PAGES=0`), alternating so both see the same load.
    let mut released = Crashes::default();
    let mut kept = Crashes::default();
    for round in 0..2 {
        for keep in [false, true] {
            let runs = n / 2 + (round == 0 && n % 2 == 1) as usize;
            let into = if keep { &mut kept } else { &mut released };
            supervised_crashes(&sb, &sock, &sock_path, runs, keep, into);
        }
    }

    if std::env::var_os("FPMCTL_BENCH_LOG").is_some() {
        eprintln!("{}", sb.supervise_log());
    }
    let bare_ms = support::millis_list(&bare);
    let b = median(bare);
    let mut results = serde_json::json!({
        "runs": n,
        "bare_start_to_ready_median_ms": support::millis(b),
        "bare_start_to_ready_ms": bare_ms,
    });
    println!(
        "| runs | start-up pages | bare php-fpm start → READY=1 | supervised crash → READY=1 | ratio | supervisor CPU per crash | its page faults per crash |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for (pages, crash) in [("released", released), ("kept", kept)] {
        let runs = crash.ready.len();
        let crash_ms = support::millis_list(&crash.ready);
        let c = median(crash.ready);
        let cpu_ms = crash.cpu_ns as f64 / 1e6 / runs as f64;
        let faults = crash.faults / runs as u64;
        println!(
            "| {runs} | {pages} | {:.1} ms | {:.1} ms | {:.2} × | {cpu_ms:.2} ms | {faults} |",
            b.as_secs_f64() * 1000.0,
            c.as_secs_f64() * 1000.0,
            c.as_secs_f64() / b.as_secs_f64(),
        );
        let row = serde_json::json!({
            "supervised_crash_to_ready_median_ms": support::millis(c),
            "ratio": (support::ratio(c, b) * 1000.0).round() / 1000.0,
            "supervised_crash_to_ready_ms": crash_ms,
            "supervisor_cpu_ms_per_crash": cpu_ms,
            "supervisor_page_faults_per_crash": faults,
        });
        // As shipped (pages kept) at the top level, as before; the release beside it.
        match pages {
            "kept" => {
                if let (Some(all), Some(row)) = (results.as_object_mut(), row.as_object()) {
                    all.extend(row.clone());
                }
            }
            _ => results["start_up_pages_released"] = row,
        }
    }
    support::write_json("crash", meta, results);
}

/// What the supervised crashes of one kind cost.
#[derive(Default)]
struct Crashes {
    /// SIGKILL of the master → `READY=1` of the next, per crash.
    ready: Vec<Duration>,
    /// The supervisor's CPU time over whole crash cycles (crash, restart, settling, and the
    /// release of its pages when they are released), all threads.
    cpu_ns: u64,
    /// Its page faults (minor and major) over the same cycles.
    faults: u64,
}

/// CPU time of every thread of `pid` so far, in ns (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Minor plus major page faults of `pid` (all threads) so far.
fn faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0;
    };
    // Fields after the `(comm)`: minflt and majflt are fields 10 and 12 overall.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(7) + n(9)
}

/// `runs` crashes of a supervised FPM (a supervisor of its own, stopped at the end): the
/// time from SIGKILL of the master to the supervisor's `READY=1` for the next one, and what
/// the supervisor spent on each whole crash cycle.
fn supervised_crashes(
    sb: &Sandbox,
    sock: &UnixDatagram,
    sock_path: &std::path::Path,
    runs: usize,
    keep_pages: bool,
    into: &mut Crashes,
) {
    let mut env = vec![("NOTIFY_SOCKET", sock_path.to_str().unwrap())];
    if keep_pages {
        env.push(("FPMCTL_RELEASE_PAGES", "0"));
    }
    let sup = sb.supervise(&["--max-restarts", "1000", "--within", "1s"], &env);
    let mut master = sb.wait_supervised_ready();
    for _ in 0..runs {
        // Wider than --within (with the second after each crash below): every crash is a
        // first crash, restarted at once.
        std::thread::sleep(Duration::from_millis(200));
        while sock.set_nonblocking(true).is_ok() && sock.recv(&mut [0u8; 4096]).is_ok() {}
        sock.set_nonblocking(false).unwrap();
        let killed = format!("master {master} ");
        let (cpu, flt) = (cpu_ns(sup), faults(sup));
        let started = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(master), Signal::SIGKILL).unwrap();
        wait_ready(sock, Some(&killed));
        into.ready.push(started.elapsed());
        master = sb.wait_supervised_ready();
        // Until it settled again (the orphans of the dead master are gone).
        std::thread::sleep(Duration::from_millis(1000));
        into.cpu_ns += cpu_ns(sup).saturating_sub(cpu);
        into.faults += faults(sup).saturating_sub(flt);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), Signal::SIGTERM).unwrap();
    sb.wait_child(sup, WAIT);
}
