//! Property-based fuzzing of `doctor`'s parsers of outside input: the nginx config reader,
//! nginx's error and access log lines, FPM's log lines, the streaming scanner, `nginx -T`
//! dumps and `--since`.
//!
//! Inputs mix random bytes with mutations (byte flips, cuts, splices) of the real lines in
//! `tests/corpus/` (what nginx and php-fpm wrote when the incidents were provoked). Each target
//! checks that nothing panics and that no single allocation grows beyond a bound linear in
//! the input (a parser must never allocate from a length it read). Bounded for CI;
//! `FPMCTL_FUZZ_CASES` (cases per target, default 256) raises it.

#[path = "fuzz/alloc.rs"]
mod alloc;

use fpmctl::doctor::nginx_conf::{self, Source};
use fpmctl::doctor::observe::Observations;
use fpmctl::doctor::scan::{LogKind, Position, Scanner};
use fpmctl::doctor::{fpm_log, nginx_log, time};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::Path;
use std::sync::LazyLock;

#[global_allocator]
static ALLOCATOR: alloc::Tracking = alloc::Tracking;

fn config(weight: u32) -> Config {
    let base = std::env::var("FPMCTL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(256);
    Config {
        cases: base.saturating_mul(weight),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Real lines from the recorded corpus, by file name (`error.log`, `access.log`, `fpm.log`,
/// `nginx.conf`).
fn corpus(name: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for case in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for p in [case.path().join(name), case.path().join("nginx").join(name)] {
            if let Ok(text) = std::fs::read_to_string(&p) {
                if name.ends_with(".conf") {
                    out.push(text);
                } else {
                    out.extend(text.lines().map(str::to_string));
                }
            }
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

static ERROR_LINES: LazyLock<Vec<String>> = LazyLock::new(|| corpus("error.log"));
static ACCESS_LINES: LazyLock<Vec<String>> = LazyLock::new(|| corpus("access.log"));
static FPM_LINES: LazyLock<Vec<String>> = LazyLock::new(|| corpus("fpm.log"));
static CONFS: LazyLock<Vec<String>> = LazyLock::new(|| corpus("nginx.conf"));

/// A real sample, mutated: some bytes replaced, cut at some point, maybe doubled.
fn mutated(pool: &'static LazyLock<Vec<String>>) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(pick, flips, cut, twice)| {
            let mut b = pool[pick.index(pool.len())].clone().into_bytes();
            for (at, v) in flips {
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] = v;
                }
            }
            if !b.is_empty() {
                b.truncate(cut.index(b.len() + 1));
            }
            if twice {
                let c = b.clone();
                b.push(b'\n');
                b.extend_from_slice(&c);
            }
            b
        })
}

fn input(pool: &'static LazyLock<Vec<String>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        mutated(pool),
        mutated(pool),
    ]
}

/// The largest allocation a parser may make for `n` bytes of input.
fn bound(n: usize) -> usize {
    64 * n + 64 * 1024
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn nginx_error_lines(line in input(&ERROR_LINES)) {
        let (parsed, largest) = alloc::largest_allocation(|| {
            nginx_log::parse_error(&line).map(|r| (r.message.len(), r.upstream.map(<[u8]>::len), nginx_log::classify(r.message)))
        });
        prop_assert!(largest <= bound(line.len()), "{largest} bytes for {} of input", line.len());
        if let Some((msg, up, _)) = parsed {
            prop_assert!(msg <= line.len());
            prop_assert!(up.unwrap_or(0) <= line.len());
        }
    }

    #[test]
    fn nginx_access_lines(line in input(&ACCESS_LINES)) {
        let (parsed, largest) = alloc::largest_allocation(|| nginx_log::parse_access(&line));
        prop_assert!(largest <= bound(line.len()));
        if let Some(r) = parsed {
            prop_assert!(r.status <= 999);
        }
    }

    /// Access lines assembled from parts: the quoted request is where parsers slip.
    #[test]
    fn nginx_access_lines_by_parts(
        request in "[\"\\\\ a-zA-Z0-9/.]{0,12}",
        status in "[0-9]{1,4}",
        tail in "[ -~]{0,20}",
    ) {
        let line = format!("127.0.0.1 - - [30/Nov/2026:05:46:43 +0000] \"{request}\" {status} {tail}");
        if let Some(r) = nginx_log::parse_access(line.as_bytes()) {
            prop_assert!(r.status <= 999);
        }
    }

    #[test]
    fn fpm_lines(line in input(&FPM_LINES)) {
        let (parsed, largest) = alloc::largest_allocation(|| fpm_log::parse(&line).map(|r| r.time));
        prop_assert!(largest <= bound(line.len()));
        let _ = parsed;
    }

    #[test]
    fn nginx_config_text(text in prop_oneof![
        any::<String>(),
        input(&CONFS).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        prop::collection::vec(prop::sample::select(vec!["{", "}", ";", "\"", "'", "\\", "#", "\n", " ", "include", "*.conf", "location", "~", "$a", "${b}", "fastcgi_pass", "unix:/x", "127.0.0.1:9000", "upstream", "server"]), 0..60).prop_map(|t| t.concat()),
    ]) {
        let ((directives, notes), largest) =
            alloc::largest_allocation(|| nginx_conf::parse_text(Path::new("/f.conf"), &text));
        prop_assert!(largest <= bound(text.len()), "{largest} bytes for {} of input", text.len());
        prop_assert!(directives.len() + notes.len() <= text.len() + 1);
    }

    #[test]
    fn nginx_t_dumps(text in any::<String>(), conf in input(&CONFS)) {
        let dump = format!("# configuration file /etc/nginx/nginx.conf:\n{}\n{text}", String::from_utf8_lossy(&conf));
        let source = Source::from_dump(&dump);
        let _ = nginx_conf::read(Path::new("/etc/nginx/nginx.conf"), &source);
    }

    #[test]
    fn since_values(s in prop_oneof![any::<String>(), "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:]{8}(Z|[+-][0-9]{2}:[0-9]{2})?", "[0-9]{1,25}[smhd]"]) {
        let _ = time::parse_since(&s, 2_000_000_000, 3600);
    }
}

proptest! {
    #![proptest_config(config(1))]

    /// The scanner over whole logs: lines counted exactly, every byte consumed, memory bounded.
    #[test]
    fn scanning_logs(lines in prop::collection::vec(prop_oneof![input(&ERROR_LINES), input(&FPM_LINES), input(&ACCESS_LINES)], 0..40), kind in 0..3u8) {
        let mut text = Vec::new();
        for l in &lines {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        let kind = [LogKind::NginxError, LogKind::Fpm, LogKind::NginxAccess][kind as usize];
        let mut obs = Observations::default();
        let (pos, largest) = alloc::largest_allocation(|| {
            Scanner::new(kind).scan(&text[..], "f", Position::default(), None, true, &mut obs)
        });
        let pos = pos.unwrap();
        prop_assert_eq!(pos.offset, text.len() as u64);
        prop_assert_eq!(pos.line, text.iter().filter(|b| **b == b'\n').count() as u64);
        // The read buffer (one chunk plus one record) is the largest allocation.
        prop_assert!(largest <= (1 << 20) + (64 << 10) + bound(0));
    }
}
