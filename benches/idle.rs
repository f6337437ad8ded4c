//! What `fpmctl supervise` costs while nothing happens: CPU time and memory of the supervisor
//! process over an idle window, with the default health interval and a busy one.
//!
//! `cargo bench --bench idle` prints two markdown tables (and writes `target/bench/idle.json`):
//! the totals per row, with the
//! resident-size target (RSS ≤ 4 MiB) as PASS or FAIL, and where the resident pages are, per
//! kind of mapping of `/proc/PID/smaps`. The supervisor waits in `poll(2)`; only the health
//! check wakes it, once per `--health-interval`, so idle CPU should be about zero. Each
//! interval runs twice in the same run: as shipped (`released`: the pages of fpmctl's binary
//! that only start-up touched are unmapped once the supervisor settles) and with
//! `FPMCTL_RELEASE_PAGES=0` (`kept`).
//! The window is longer than the longest interval, so every row includes health checks.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use common::Sandbox;
use std::collections::BTreeMap;
use std::time::Duration;

/// Idle window measured per row: longer than the default health interval.
const WINDOW: Duration = Duration::from_secs(12);
/// The resident size an idle supervisor may have.
const TARGET_KIB: u64 = 4 * 1024;

/// utime + stime of `pid`, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 overall.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 * 1000.0 / procfs::ticks_per_second() as f64
}

/// Resident, proportional, private and anonymous KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Mem {
    rss: u64,
    pss: u64,
    private: u64,
    anon: u64,
}

impl Mem {
    fn add(&mut self, o: Mem) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.private += o.private;
        self.anon += o.anon;
    }
}

/// The kinds of mapping the breakdown shows, in order.
const PARTS: [&str; 7] = [
    "fpmctl code and constants (file, read-only)",
    "fpmctl relocated and writable data",
    "shared libraries (libc, ld.so, libgcc_s)",
    "heap",
    "main thread stack",
    "thread stacks, malloc arenas, other anonymous",
    "kernel (vdso)",
];

/// The supervisor's memory from `/proc/PID/smaps`: the total and each part of [`PARTS`].
fn memory(pid: u32) -> (Mem, BTreeMap<usize, Mem>) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_string_lossy().into_owned();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut parts: BTreeMap<usize, Mem> = BTreeMap::new();
    let mut total = Mem::default();
    let mut cur: Option<(String, Mem)> = None;
    let mut flush = |cur: &mut Option<(String, Mem)>| {
        if let Some((path, m)) = cur.take() {
            let part = if path.starts_with(&exe) {
                if m.anon == 0 { 0 } else { 1 }
            } else if path.contains(".so") {
                2
            } else if path == "[heap]" {
                3
            } else if path == "[stack]" {
                4
            } else if path.is_empty() {
                5
            } else {
                6
            };
            parts.entry(part).or_default().add(m);
            total.add(m);
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            flush(&mut cur);
            // start-end perms offset dev inode [path]
            let path = f.skip(4).collect::<Vec<_>>().join(" ");
            cur = Some((path, Mem::default()));
            continue;
        }
        let Some((_, m)) = cur.as_mut() else { continue };
        let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match first {
            "Rss:" => m.rss = kib,
            "Pss:" => m.pss = kib,
            "Private_Clean:" | "Private_Dirty:" => m.private += kib,
            "Anonymous:" => m.anon = kib,
            _ => {}
        }
    }
    flush(&mut cur);
    (total, parts)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Size in KiB of the ELF section `name` of the file at `path` (64-bit little-endian ELF),
/// `None` when the file has no such section or is no such ELF.
fn section_kib(path: &str, name: &str) -> Option<u64> {
    let elf = std::fs::read(path).ok()?;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = u64_at(0x28)? as usize;
    let (size, count, names) = (
        u16_at(0x3a)? as usize,
        u16_at(0x3c)? as usize,
        u16_at(0x3e)? as usize,
    );
    let header = |i: usize| shoff + i * size;
    let strtab = u64_at(header(names) + 0x18)? as usize;
    (0..count).find_map(|i| {
        let at = strtab + u32_at(header(i))? as usize;
        let end = at + elf.get(at..)?.iter().position(|b| *b == 0)?;
        (&elf[at..end] == name.as_bytes()).then(|| u64_at(header(i) + 0x20).map(|b| b / 1024))?
    })
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("idle bench: run it with `cargo bench --bench idle`");
        return;
    }
    let meta = support::meta();
    let mut rows = Vec::new();
    for (interval, keep) in [("10s", false), ("10s", true), ("1s", false), ("1s", true)] {
        let Some(sb) = Sandbox::new() else { return };
        let env: &[(&str, &str)] = if keep {
            &[("FPMCTL_RELEASE_PAGES", "0")]
        } else {
            &[]
        };
        let sup = sb.supervise(&["--health-interval", interval], env);
        sb.wait_supervised_ready();
        std::thread::sleep(Duration::from_millis(500));
        let before = cpu_ms(sup);
        std::thread::sleep(WINDOW);
        let used = cpu_ms(sup) - before;
        let (total, parts) = memory(sup);
        let pages = if keep { "kept" } else { "released" };
        rows.push((interval, pages, used, total, parts));
        sb.fpmctl(&["stop"]).expect_code(0);
    }
    // RSS counts every page mapped into the supervisor, also the pages of libc that every
    // process shares (Pss divides each page among the processes mapping it); Private is
    // what only the supervisor maps (its heap and stacks, and the pages of fpmctl's binary
    // no other process maps right now); anonymous is what it allocated itself.
    println!(
        "| health interval | start-up pages | idle window | supervisor CPU | CPU share | RSS | Pss | Private | of it anonymous | RSS ≤ {} |",
        mib(TARGET_KIB)
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (interval, pages, used, m, _) in &rows {
        println!(
            "| {interval} | {pages} | {:.0} s | {used:.0} ms | {:.3} % | {} | {} | {} | {} | {} |",
            WINDOW.as_secs_f64(),
            100.0 * used / (WINDOW.as_secs_f64() * 1000.0),
            mib(m.rss),
            mib(m.pss),
            mib(m.private),
            mib(m.anon),
            if m.rss <= TARGET_KIB { "PASS" } else { "FAIL" }
        );
    }
    println!();
    print!("| mapping (KiB) |");
    for (interval, pages, ..) in &rows {
        print!(" RSS {interval} {pages} | Pss |");
    }
    println!();
    println!("| --- |{}", " ---: | ---: |".repeat(rows.len()));
    for (i, part) in PARTS.iter().enumerate() {
        print!("| {part} |");
        for (.., parts) in &rows {
            let m = parts.get(&i).copied().unwrap_or_default();
            print!(" {} | {} |", m.rss, m.pss);
        }
        println!();
    }
    // The idle loop's code in one place (build/idle-layout.ld): a section far smaller than
    // before, or resident code growing, says the layout went stale.
    let idle_kib = section_kib(env!("CARGO_BIN_EXE_fpmctl"), ".text.idle");
    let text_kib = section_kib(env!("CARGO_BIN_EXE_fpmctl"), ".text");
    println!();
    match idle_kib {
        Some(kib) => println!(
            "`.text.idle` (build/idle-layout.ld): {kib} KiB, beside {} KiB of `.text`",
            text_kib.unwrap_or(0)
        ),
        None => println!("`.text.idle`: none (built without build/idle-layout.ld)"),
    }
    support::write_json(
        "idle",
        meta,
        serde_json::json!({
            "idle_section_kib": idle_kib,
            "window_s": WINDOW.as_secs_f64(),
            "target_rss_kib": TARGET_KIB,
            "rows": rows.iter().map(|(interval, pages, used, m, parts)| serde_json::json!({
                "strategy": format!("{interval} {pages}"),
                "health_interval": interval,
                "start_up_pages": pages,
                "cpu_ms": used,
                "cpu_pct": 100.0 * used / (WINDOW.as_secs_f64() * 1000.0),
                "rss_kib": m.rss,
                "pss_kib": m.pss,
                "smaps_private_kib": m.private,
                "anonymous_kib": m.anon,
                "rss_target_met": m.rss <= TARGET_KIB,
                "mappings": PARTS.iter().enumerate().map(|(i, part)| {
                    let p = parts.get(&i).copied().unwrap_or_default();
                    serde_json::json!({ "strategy": part, "rss_kib": p.rss, "pss_kib": p.pss })
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    );
}
