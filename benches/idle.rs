//! What `fpmctl supervise` costs while nothing happens: CPU time and resident memory of the
//! supervisor process over an idle window, with the default health interval and a busy one.
//!
//! `cargo bench --bench idle` prints a markdown table and writes `target/bench/idle.json`. The
//! supervisor waits in `poll(2)`; only the health thread wakes, once per `--health-interval`, so
//! idle CPU should be about zero.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use common::Sandbox;
use std::time::Duration;

/// Idle window measured per row.
const WINDOW: Duration = Duration::from_secs(5);

/// utime + stime of `pid`, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 overall.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 * 1000.0 / procfs::ticks_per_second() as f64
}

/// A memory figure of `pid` from /proc/PID/status (`VmRSS`, `RssAnon`), in KiB.
fn mem_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("idle bench: run it with `cargo bench --bench idle`");
        return;
    }
    let meta = support::meta();
    let mut rows = Vec::new();
    for interval in ["10s", "1s"] {
        let Some(sb) = Sandbox::new() else { return };
        let sup = sb.supervise(&["--health-interval", interval], &[]);
        sb.wait_supervised_ready();
        std::thread::sleep(Duration::from_millis(500));
        let before = cpu_ms(sup);
        std::thread::sleep(WINDOW);
        let used = cpu_ms(sup) - before;
        rows.push((
            interval,
            used,
            mem_kib(sup, "VmRSS"),
            mem_kib(sup, "RssAnon"),
        ));
        sb.fpmctl(&["stop"]).expect_code(0);
    }
    // RSS counts the binary's own pages, which the kernel maps from the page cache (shared,
    // clean, dropped under pressure); the private column is the memory the supervisor itself
    // allocated (RssAnon: heap, stacks).
    println!(
        "| health interval | idle window | supervisor CPU | CPU share | supervisor RSS | of it private |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for &(interval, used, rss, private) in &rows {
        println!(
            "| {interval} | {:.0} s | {used:.0} ms | {:.3} % | {:.1} MiB | {:.1} MiB |",
            WINDOW.as_secs_f64(),
            100.0 * used / (WINDOW.as_secs_f64() * 1000.0),
            rss as f64 / 1024.0,
            private as f64 / 1024.0
        );
    }
    support::write_json(
        "idle",
        meta,
        serde_json::json!({
            "window_s": WINDOW.as_secs_f64(),
            "rows": rows.iter().map(|(interval, used, rss, private)| serde_json::json!({
                "health_interval": interval,
                "cpu_ms": used,
                "cpu_pct": 100.0 * used / (WINDOW.as_secs_f64() * 1000.0),
                "rss_kib": rss,
                "private_kib": private,
            })).collect::<Vec<_>>(),
        }),
    );
}
