//! How fast `fpmctl doctor` reads a large nginx error log, against what a user would do
//! instead: `grep -c 'connect() ' FILE` on the same file in the same run.
//!
//! `cargo bench --bench doctor` writes `target/doctor-bench/error.log` (1 GiB; set
//! `FPMCTL_BENCH_DOCTOR_MB` for a smaller one) and prints a table: seconds, MB/s and peak RSS
//! of each, and the ratio (also in `target/bench/doctor.json`). The log is built from lines a
//! real nginx wrote a moment before: the bench starts nginx with `error_log ... info`, asks it
//! for missing files (`open() failed`), lets keep-alive connections close, and sends requests
//! to a `fastcgi_pass` whose socket does not exist (`connect() ... failed`). Those lines are
//! repeated with advancing timestamps: about 98% irrelevant, 2% connect() failures, as on a
//! busy host with an incident. doctor runs single-threaded, so its figure is one core's.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("doctor bench: run it with `cargo bench --bench doctor`");
        return;
    }
    let mb: u64 = std::env::var("FPMCTL_BENCH_DOCTOR_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let meta = support::meta();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/doctor-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("error.log");
    let want = mb << 20;
    if std::fs::metadata(&log).map(|m| m.len() / (1 << 20)).ok() != Some(mb) {
        let (irrelevant, relevant) = real_lines(&dir);
        let t = Instant::now();
        write_log(&log, want, &irrelevant, &relevant);
        eprintln!(
            "wrote {} ({} MiB) in {:.1}s from {} + {} real nginx lines",
            log.display(),
            mb,
            t.elapsed().as_secs_f64(),
            irrelevant.len(),
            relevant.len()
        );
    }
    let size = std::fs::metadata(&log).unwrap().len();
    let log_s = log.to_str().unwrap();

    // Warm the page cache so both read from memory (output discarded: a child's peak RSS
    // starts from ours at fork, so we must stay small).
    Command::new("cat")
        .arg(log_s)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let grep = run(Command::new("grep").args(["-c", "connect() ", log_s]));
    let doctor = run(Command::new(env!("CARGO_BIN_EXE_fpmctl")).args([
        "doctor",
        "--offline",
        "--json",
        "--nginx-error-log",
        log_s,
    ]));
    let grep_count: u64 = grep.stdout.trim().parse().unwrap_or(0);
    let json: serde_json::Value = serde_json::from_str(&doctor.stdout).unwrap_or_default();
    let doctor_count: u64 = json["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["count"].as_u64()).sum())
        .unwrap_or(0);

    let mbs = |secs: f64| size as f64 / (1u64 << 20) as f64 / secs;
    println!(
        "\nnginx error log: {} MiB, {} lines with `connect() `\n",
        size >> 20,
        grep_count
    );
    println!("| reader | seconds | MB/s | peak RSS | found |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| `grep -c 'connect() '` | {:.2} | {:.0} | {} MiB | {grep_count} lines |",
        grep.secs,
        mbs(grep.secs),
        grep.max_rss_kib / 1024
    );
    println!(
        "| `fpmctl doctor --offline` | {:.2} | {:.0} | {} MiB | {doctor_count} failed requests classified |",
        doctor.secs,
        mbs(doctor.secs),
        doctor.max_rss_kib / 1024
    );
    println!(
        "\ndoctor / grep throughput: {:.2}x (doctor {:.0} MB/s on one core; target >= 500 MB/s)",
        grep.secs / doctor.secs,
        mbs(doctor.secs)
    );
    support::write_json(
        "doctor",
        meta,
        serde_json::json!({
            "log_mib": size >> 20,
            "grep": {
                "seconds": grep.secs,
                "mb_per_s": mbs(grep.secs),
                "peak_rss_mib": grep.max_rss_kib / 1024,
                "found": grep_count,
            },
            "doctor": {
                "seconds": doctor.secs,
                "mb_per_s": mbs(doctor.secs),
                "peak_rss_mib": doctor.max_rss_kib / 1024,
                "found": doctor_count,
            },
            "throughput_ratio": grep.secs / doctor.secs,
        }),
    );
}

struct Ran {
    secs: f64,
    max_rss_kib: i64,
    stdout: String,
}

/// Runs `cmd`, timing it and taking its peak RSS from wait4(2) (which also reaps it).
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> Ran {
    let t = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32, "wait4");
    Ran {
        secs: t.elapsed().as_secs_f64(),
        max_rss_kib: usage.ru_maxrss,
        stdout,
    }
}

/// Lines a real nginx writes: (irrelevant ones, `connect() ... failed` ones).
fn real_lines(dir: &Path) -> (Vec<String>, Vec<String>) {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} is not installed (nginx-light)"
    );
    let ng = dir.join("nginx");
    let _ = std::fs::remove_dir_all(&ng);
    std::fs::create_dir_all(ng.join("html")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let d = ng.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/cb; fastcgi_temp_path {d}/fc;\n  \
         proxy_temp_path {d}/pt; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    root {d}/html;\n    \
         location /php/ {{ fastcgi_pass unix:{d}/php-fpm.sock; }}\n  }}\n}}\n"
    );
    std::fs::write(ng.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new(NGINX)
        .args([
            "-c",
            ng.join("nginx.conf").to_str().unwrap(),
            "-p",
            ng.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if up {
        for path in [
            "/favicon.ico",
            "/wp-login.php",
            "/robots.txt",
            "/php/index.php",
            "/.env",
        ] {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
    }
    // SAFETY: signalling the nginx master we started, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
    let _ = child.wait();
    assert!(up, "nginx did not start");
    let text = std::fs::read_to_string(ng.join("error.log")).unwrap();
    let (relevant, irrelevant): (Vec<String>, Vec<String>) = text
        .lines()
        .filter(|l| l.len() > 20)
        .map(str::to_string)
        .partition(|l| l.contains("connect() "));
    assert!(
        !relevant.is_empty() && !irrelevant.is_empty(),
        "nginx wrote:\n{text}"
    );
    (irrelevant, relevant)
}

/// Writes `size` bytes of log from the templates, 2% of lines relevant, timestamps advancing
/// one second every 50 lines.
fn write_log(path: &Path, size: u64, irrelevant: &[String], relevant: &[String]) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut n = 0u64;
    let start = 1_795_000_000i64; // a fixed day, so runs compare
    while written < size {
        let t = start + (n / 50) as i64;
        let line = if n % 50 == 7 {
            &relevant[(n / 50) as usize % relevant.len()]
        } else {
            &irrelevant[n as usize % irrelevant.len()]
        };
        let stamp = stamp(t);
        let rest = &line[19..];
        out.write_all(stamp.as_bytes()).unwrap();
        out.write_all(rest.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        written += (stamp.len() + rest.len() + 1) as u64;
        n += 1;
    }
    out.flush().unwrap();
}

/// `YYYY/MM/DD HH:MM:SS` for a Unix time (UTC).
fn stamp(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}
