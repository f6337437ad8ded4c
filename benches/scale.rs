//! What a crowded host costs fpmctl: `fpmctl status` against `ps -e` with 5,000 extra
//! processes on the host, and `fpmctl restart --wait` with those 5,000 against with none, in
//! one run on one machine, without load.
//!
//! `cargo bench --bench scale` (or `scripts/bench.sh`) alternates blocks without and with the
//! crowd (N blocks, 6 or `FPMCTL_BENCH_SCALE_BLOCKS`; crowd size 5,000 or
//! `FPMCTL_BENCH_CROWD`). Each block runs 2 restarts and 3 `status`/`ps -e` pairs, the pairs in
//! alternating order. The crowd is one helper process (this bench binary run again, in a
//! process group of its own) that forks that many children which wait in `pause()`; it
//! prints one markdown table with the medians, their ratios and the targets (status ≤ 0.3 ×
//! `ps -e`, restart with the crowd ≤ 2 × without) and writes `target/bench/scale.json`.
//!
//! Other processes already on the host count too: the table says how many there were in each
//! phase. The crowd is stopped (its helper kills and reaps its children) at the end of each
//! block and when the bench panics; should the helper not exit in time, its process group
//! gets SIGKILL, and its children have SIGKILL as their parent-death signal.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use common::Sandbox;
use fpmctl::deadline::Deadline;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::json;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{median, millis, millis_list, ms, ratio, verdict};

/// Set on the helper process: how many children it forks.
const CROWD_ENV: &str = "FPMCTL_BENCH_CROWD_HELPER";
const DEFAULT_CROWD: usize = 5_000;
const DEFAULT_BLOCKS: usize = 6;
const RESTARTS_PER_BLOCK: usize = 2;
const PAIRS_PER_BLOCK: usize = 3;
const STATUS_TARGET: f64 = 0.3;
const RESTART_TARGET: f64 = 2.0;
/// How long the crowd may take to stop.
const CROWD_STOP_LIMIT: Duration = Duration::from_secs(30);

fn main() {
    if let Ok(n) = std::env::var(CROWD_ENV) {
        crowd_helper(n.parse().unwrap_or(0));
    }
    if !support::asked_to_run("scale") {
        return;
    }
    let crowd = support::env_count("FPMCTL_BENCH_CROWD", DEFAULT_CROWD);
    let blocks = support::env_count("FPMCTL_BENCH_SCALE_BLOCKS", DEFAULT_BLOCKS);
    let Some(sb) = Sandbox::new() else { return };
    let meta = support::meta();
    let began = Instant::now();
    sb.start_fpm();
    eprintln!(
        "scale bench: {blocks} block(s), alternately without and with {crowd} extra processes"
    );
    // Unmeasured: the first exec of each program.
    Measured::default().warm_up(&sb);
    let mut m = Measured::default();
    for block in 0..blocks {
        let crowded = block % 2 == 1;
        let _crowd = crowded.then(|| Crowd::spawn(crowd));
        let procs = support::host_processes();
        if crowded {
            m.procs_crowded.push(procs);
        } else {
            m.procs_alone.push(procs);
        }
        for i in 0..PAIRS_PER_BLOCK {
            if (block + i) % 2 == 0 {
                m.status(&sb, crowded);
                m.ps(crowded);
            } else {
                m.ps(crowded);
                m.status(&sb, crowded);
            }
        }
        for _ in 0..RESTARTS_PER_BLOCK {
            m.restart(&sb, crowded);
        }
        // `_crowd` stops here: killed and reaped before the next block.
    }
    sb.fpmctl(&["stop"]).expect_code(0);

    println!("{}", m.table(crowd));
    println!("Run: {}", support::meta_line(&meta));
    println!(
        "Processes on the host (the bench's own included): {} in the blocks without the added \
         ones, {} with them (medians).",
        median_count(&m.procs_alone),
        median_count(&m.procs_crowded)
    );
    let status_ratio = ratio(median(&m.status[1]), median(&m.ps[1]));
    let restart_ratio = ratio(median(&m.restart[1]), median(&m.restart[0]));
    support::write_json(
        "scale",
        meta,
        json!({
            "crowd": crowd,
            "blocks": blocks,
            "host_processes_alone": m.procs_alone,
            "host_processes_crowded": m.procs_crowded,
            "status": {
                "alone": {
                    "fpmctl_status_median_ms": millis(median(&m.status[0])),
                    "ps_median_ms": millis(median(&m.ps[0])),
                    "fpmctl_status_ms": millis_list(&m.status[0]),
                    "ps_ms": millis_list(&m.ps[0]),
                },
                "crowded": {
                    "fpmctl_status_median_ms": millis(median(&m.status[1])),
                    "ps_median_ms": millis(median(&m.ps[1])),
                    "fpmctl_status_ms": millis_list(&m.status[1]),
                    "ps_ms": millis_list(&m.ps[1]),
                },
                "ratio_crowded": (status_ratio * 1000.0).round() / 1000.0,
                "target": STATUS_TARGET,
                "verdict": verdict(status_ratio, STATUS_TARGET),
            },
            "restart": {
                "alone_ms": millis_list(&m.restart[0]),
                "crowded_ms": millis_list(&m.restart[1]),
                "alone_median_ms": millis(median(&m.restart[0])),
                "crowded_median_ms": millis(median(&m.restart[1])),
                "ratio": (restart_ratio * 1000.0).round() / 1000.0,
                "target": RESTART_TARGET,
                "verdict": verdict(restart_ratio, RESTART_TARGET),
                "fpmctl_json_medians": {
                    "alone": support::json_medians(&m.restart_json[0]),
                    "crowded": support::json_medians(&m.restart_json[1]),
                },
            },
        }),
    );
    eprintln!("scale bench: done in {:.0}s", began.elapsed().as_secs_f64());
}

fn median_count(v: &[usize]) -> usize {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Times by state: index 0 without the crowd, 1 with it.
#[derive(Default)]
struct Measured {
    status: [Vec<Duration>; 2],
    ps: [Vec<Duration>; 2],
    restart: [Vec<Duration>; 2],
    restart_json: [Vec<serde_json::Value>; 2],
    procs_alone: Vec<usize>,
    procs_crowded: Vec<usize>,
}

impl Measured {
    /// One of each, on a throw-away record.
    fn warm_up(mut self, sb: &Sandbox) {
        self.status(sb, false);
        self.ps(false);
        self.restart(sb, false);
    }

    fn status(&mut self, sb: &Sandbox, crowded: bool) {
        let run = sb.fpmctl(&["status"]);
        assert_eq!(run.code, 0, "{run}");
        self.status[usize::from(crowded)].push(run.elapsed);
    }

    fn ps(&mut self, crowded: bool) {
        let began = Instant::now();
        let out = Command::new("ps")
            .arg("-e")
            .stdin(Stdio::null())
            .output()
            .expect("running ps -e");
        let took = began.elapsed();
        assert!(out.status.success(), "ps -e failed");
        self.ps[usize::from(crowded)].push(took);
    }

    fn restart(&mut self, sb: &Sandbox, crowded: bool) {
        let run = sb.fpmctl(&["restart", "--wait", "--json"]);
        assert_eq!(run.code, 0, "{run}");
        if let Some(pid) = sb.pid_from_file() {
            sb.note_master(pid);
        }
        self.restart[usize::from(crowded)].push(run.elapsed);
        self.restart_json[usize::from(crowded)].push(run.json());
    }

    fn table(&self, crowd: usize) -> String {
        let mut s = String::new();
        s.push_str(
            "| measurement | runs | fpmctl median | compared with | its median | ratio | target | verdict |\n",
        );
        s.push_str("| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |\n");
        let status_ratio = ratio(median(&self.status[1]), median(&self.ps[1]));
        let _ = writeln!(
            s,
            "| `fpmctl status`, {crowd} processes added | {} | {} | `ps -e`, same host | {} | {:.2} × | ≤ {STATUS_TARGET} × | {} |",
            self.status[1].len(),
            ms(median(&self.status[1])),
            ms(median(&self.ps[1])),
            status_ratio,
            verdict(status_ratio, STATUS_TARGET),
        );
        let alone_ratio = ratio(median(&self.status[0]), median(&self.ps[0]));
        let _ = writeln!(
            s,
            "| `fpmctl status`, none added | {} | {} | `ps -e`, same host | {} | {:.2} × | | |",
            self.status[0].len(),
            ms(median(&self.status[0])),
            ms(median(&self.ps[0])),
            alone_ratio,
        );
        let restart_ratio = ratio(median(&self.restart[1]), median(&self.restart[0]));
        let _ = writeln!(
            s,
            "| `fpmctl restart --wait`, {crowd} processes added | {} | {} | the same, none added | {} | {:.2} × | ≤ {RESTART_TARGET} × | {} |",
            self.restart[1].len(),
            ms(median(&self.restart[1])),
            ms(median(&self.restart[0])),
            restart_ratio,
            verdict(restart_ratio, RESTART_TARGET),
        );
        s
    }
}

/// The helper: forks `n` children that wait in `pause()`, says `ready N` on stdout, waits for
/// SIGTERM, then kills and reaps every child and exits. Run as a fresh exec of this binary,
/// so it is single-threaded when it forks.
fn crowd_helper(n: usize) -> ! {
    use nix::sys::signal::SigSet;
    use nix::unistd::{ForkResult, fork, getpid, getppid};
    use std::io::Write;
    // SIGTERM stays pending until the helper asks for it, also before `ready` is said.
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    let _ = term.thread_block();
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let me = getpid();
    let mut kids = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: this process has one thread (a fresh exec that started none), so the child
        // may run any code; it runs only prctl, getppid and pause.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: as above; the child dies with the helper.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                if getppid() != me {
                    // SAFETY: ends this child at once, without running the parent's cleanup.
                    unsafe { libc::_exit(0) };
                }
                loop {
                    // SAFETY: pause takes no arguments.
                    unsafe { libc::pause() };
                }
            }
            Ok(ForkResult::Parent { child }) => kids.push(child),
            Err(e) => {
                eprintln!(
                    "crowd helper: fork failed after {} children: {e}",
                    kids.len()
                );
                break;
            }
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready {}", kids.len());
    let _ = out.flush();
    let _ = term.wait();
    for k in &kids {
        let _ = kill(*k, Signal::SIGKILL);
    }
    for k in &kids {
        let _ = nix::sys::wait::waitpid(*k, None);
    }
    std::process::exit(0);
}

/// The crowd: the helper, our child, leader of its own process group.
struct Crowd {
    child: Option<Child>,
}

impl Crowd {
    fn spawn(n: usize) -> Crowd {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let child = Command::new(exe)
            .env(CROWD_ENV, n.to_string())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the crowd helper");
        let mut crowd = Crowd { child: Some(child) };
        let out = crowd
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("the helper's stdout");
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        assert_eq!(
            line.trim(),
            format!("ready {n}"),
            "the crowd helper did not fork {n} children"
        );
        crowd
    }

    /// SIGTERM to the helper (it kills and reaps its children); SIGKILL to its process group
    /// when it has not exited in time. Reaps it.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Deadline::after(CROWD_STOP_LIMIT);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if !deadline.expired() => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    // Not reaped yet, so the group is still the one we created.
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop();
    }
}
