//! How long fpmctl takes to restart and reload FPM, as a ratio to doing the same by hand, in
//! one run on one machine, without load.
//!
//! `cargo bench --bench speed` (or `scripts/bench.sh`) runs N iterations (15, or
//! `FPMCTL_BENCH_ITERATIONS`); each iteration runs every pair below, the two sides back to back
//! and in alternating order (A,B then B,A), so that the machine's noise falls on both sides.
//! It prints one markdown table with the medians, their ratio and the target:
//! - `fpmctl restart --wait` against a bare stop+start: SIGQUIT the master, wait until it is
//!   gone (pidfd), `php-fpm -y CONF -D`, then poll until every pool answers (target ≤ 1.3 ×);
//! - `fpmctl restart --cold --wait` against the same bare stop+start (target ≤ 1.3 ×);
//! - `fpmctl reload` against a raw `kill -USR2`, waiting until the re-executed FPM runs and
//!   every pool answers (target ≤ 1.7 ×).
//!
//! fpmctl's times are the wall-clock time of the whole `fpmctl` process, as a user sees it; the
//! medians of the numeric fields of its `--json` output (its own `elapsed_ms`, how often it
//! read the process table) are printed under the table. Everything goes to
//! `target/bench/speed.json`. Every process is started through the test harness and killed by
//! PID at the end, also on panic.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use common::Sandbox;
use fpmctl::config::FpmConfig;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{median, millis, millis_list, ms, ratio, verdict};

const DEFAULT_ITERATIONS: usize = 15;
/// Pause after each measured operation, so the next starts from a settled FPM.
const SETTLE: Duration = Duration::from_millis(50);

/// What a user would do by hand instead.
#[derive(Clone, Copy)]
enum ByHand {
    StopStart,
    Usr2,
}

impl ByHand {
    fn name(self) -> &'static str {
        match self {
            ByHand::StopStart => "bare stop+start + readiness",
            ByHand::Usr2 => "raw kill -USR2 + readiness",
        }
    }

    fn run(self, sb: &Sandbox, cfg: &FpmConfig) -> Duration {
        match self {
            ByHand::StopStart => support::bare_restart(sb, cfg),
            ByHand::Usr2 => support::raw_usr2(sb, cfg),
        }
    }
}

struct Pair {
    args: &'static [&'static str],
    by_hand: ByHand,
    target: f64,
    fpmctl: Vec<Duration>,
    reference: Vec<Duration>,
    json: Vec<Value>,
}

impl Pair {
    fn new(args: &'static [&'static str], by_hand: ByHand, target: f64) -> Pair {
        Pair {
            args,
            by_hand,
            target,
            fpmctl: Vec::new(),
            reference: Vec::new(),
            json: Vec::new(),
        }
    }

    /// `fpmctl restart --wait` (without the `--json` the bench adds to read the breakdown).
    fn name(&self) -> String {
        let shown: Vec<&str> = self
            .args
            .iter()
            .copied()
            .filter(|a| *a != "--json")
            .collect();
        format!("fpmctl {}", shown.join(" "))
    }

    fn run_fpmctl(&mut self, sb: &Sandbox, measure: bool) {
        let run = sb.fpmctl(self.args);
        assert_eq!(run.code, 0, "{run}");
        let new = sb
            .pid_from_file()
            .unwrap_or_else(|| panic!("no pid file after:\n{run}"));
        sb.note_master(new);
        if measure {
            self.fpmctl.push(run.elapsed);
            self.json.push(run.json());
        }
    }

    fn run_by_hand(&mut self, sb: &Sandbox, cfg: &FpmConfig, measure: bool) {
        let took = self.by_hand.run(sb, cfg);
        if measure {
            self.reference.push(took);
        }
    }

    fn ratio(&self) -> f64 {
        ratio(median(&self.fpmctl), median(&self.reference))
    }

    /// The median of the per-iteration ratios (each of two adjacent runs).
    fn paired_ratio(&self) -> f64 {
        let r: Vec<f64> = self
            .fpmctl
            .iter()
            .zip(&self.reference)
            .map(|(a, b)| ratio(*a, *b))
            .collect();
        support::median_f64(&r)
    }
}

fn main() {
    if !support::asked_to_run("speed") {
        return;
    }
    let n = support::env_count("FPMCTL_BENCH_ITERATIONS", DEFAULT_ITERATIONS);
    let Some(sb) = Sandbox::new() else { return };
    let meta = support::meta();
    let cfg = sb.fpm_config().expect("the sandbox config loads");
    let began = Instant::now();
    sb.start_fpm();
    let mut pairs = [
        Pair::new(&["restart", "--wait", "--json"], ByHand::StopStart, 1.3),
        Pair::new(
            &["restart", "--cold", "--wait", "--json"],
            ByHand::StopStart,
            1.3,
        ),
        Pair::new(&["reload", "--json"], ByHand::Usr2, 1.7),
    ];
    eprintln!(
        "speed bench: {n} iteration(s) of {} pairs, interleaved",
        pairs.len()
    );
    // One unmeasured round first: page cache, the first exec of each program.
    for i in 0..=n {
        let measure = i > 0;
        for pair in pairs.iter_mut() {
            if i % 2 == 0 {
                pair.run_fpmctl(&sb, measure);
                std::thread::sleep(SETTLE);
                pair.run_by_hand(&sb, &cfg, measure);
            } else {
                pair.run_by_hand(&sb, &cfg, measure);
                std::thread::sleep(SETTLE);
                pair.run_fpmctl(&sb, measure);
            }
            std::thread::sleep(SETTLE);
        }
    }
    sb.fpmctl(&["stop"]).expect_code(0);

    println!("{}", table(&pairs, n));
    println!("Run: {}", support::meta_line(&meta));
    let mut results = Vec::new();
    for p in &pairs {
        let breakdown = support::json_medians(&p.json);
        println!(
            "{}: medians of its --json: {}",
            p.name(),
            breakdown
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.push(json!({
            "fpmctl": p.name(),
            "by_hand": p.by_hand.name(),
            "iterations": n,
            "fpmctl_median_ms": millis(median(&p.fpmctl)),
            "by_hand_median_ms": millis(median(&p.reference)),
            "ratio": (p.ratio() * 1000.0).round() / 1000.0,
            "paired_ratio_median": (p.paired_ratio() * 1000.0).round() / 1000.0,
            "target": p.target,
            "verdict": verdict(p.ratio(), p.target),
            "fpmctl_ms": millis_list(&p.fpmctl),
            "by_hand_ms": millis_list(&p.reference),
            "fpmctl_json_medians": breakdown,
            // What each restart did (`handover` or `cold`, with the reason for falling back).
            "fpmctl_modes": p.json.iter().map(|j| j["mode"].clone()).collect::<Vec<_>>(),
            "fpmctl_cold_reasons": p.json
                .iter()
                .filter_map(|j| j["cold_reason"].as_str())
                .collect::<Vec<_>>(),
            "fpmctl_json_last": p.json.last(),
        }));
    }
    support::write_json(
        "speed",
        meta,
        json!({ "settle_ms": millis(SETTLE), "pairs": results }),
    );
    eprintln!("speed bench: done in {:.0}s", began.elapsed().as_secs_f64());
}

fn table(pairs: &[Pair], n: usize) -> String {
    let mut s = String::new();
    s.push_str(
        "| fpmctl | by hand | runs | fpmctl median | by hand median | ratio | target | verdict |\n",
    );
    s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for p in pairs {
        let _ = writeln!(
            s,
            "| `{}` | {} | {n} | {} | {} | {:.2} × | ≤ {:.1} × | {} |",
            p.name(),
            p.by_hand.name(),
            ms(median(&p.fpmctl)),
            ms(median(&p.reference)),
            p.ratio(),
            p.target,
            verdict(p.ratio(), p.target),
        );
    }
    s
}
