//! `fpmctl doctor` against incidents provoked with real nginx and real php-fpm.
//!
//! - `record_corpus` (ignored; `FPMCTL_RECORD_CORPUS=1 cargo test --test doctor -- --ignored
//!   record_corpus`) provokes every case and rewrites tests/corpus/.

mod common;
use common::incidents::{self, CASES, CAUSES, Expected, PLACEHOLDER};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn read_expected(case_dir: &Path) -> Expected {
    let path = case_dir.join("expected.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (record the corpus first)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[test]
fn rfc3339_check_knows_the_format() {
    for ok in [
        "2026-11-30T05:50:01Z",
        "2026-11-30T05:50:01.123+01:00",
        "2026-11-30T05:50:01-05:30",
    ] {
        assert!(is_rfc3339(ok), "{ok}");
    }
    for bad in [
        "2026/11/30 05:50:01",
        "2026-11-30 05:50:01",
        "2026-11-30T05:50:01",
        "2026-11-30T05:50:01+0100",
        "",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}

/// The corpus on disk: one dir per case, each with its files and `expected.json`, and no
/// trace of the temp dir it was recorded in.
#[test]
fn corpus_is_complete_and_has_no_temp_paths() {
    for case in CASES {
        let dir = corpus_dir().join(case);
        for f in [
            "expected.json",
            "php-fpm.conf",
            "fpm.log",
            "nginx/nginx.conf",
            "nginx/error.log",
            "nginx/access.log",
        ] {
            assert!(dir.join(f).is_file(), "{case}: {f} missing");
        }
        let e = read_expected(&dir);
        if let Some(c) = &e.first_cause {
            assert!(
                CAUSES.contains(&c.as_str()) && e.causes.contains(c),
                "{case}: {e:?}"
            );
        }
        let mut stack = vec![dir.clone()];
        while let Some(p) = stack.pop() {
            for ent in std::fs::read_dir(&p).unwrap() {
                let ent = ent.unwrap();
                if ent.file_type().unwrap().is_dir() {
                    stack.push(ent.path());
                    continue;
                }
                let text = std::fs::read_to_string(ent.path()).unwrap();
                assert!(
                    !text.contains("/tmp/fpmctl-test-"),
                    "{} holds a temp path instead of {PLACEHOLDER}",
                    ent.path().display()
                );
            }
        }
    }
}

/// Provokes every case and writes tests/corpus/ (only with FPMCTL_RECORD_CORPUS=1).
#[test]
#[ignore]
fn record_corpus() {
    if std::env::var("FPMCTL_RECORD_CORPUS").as_deref() != Ok("1") {
        eprintln!("NOTICE: set FPMCTL_RECORD_CORPUS=1 to record the corpus");
        return;
    }
    let only: Option<Vec<String>> = std::env::var("FPMCTL_RECORD_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut readme = String::from(README_HEAD);
    for case in CASES {
        let selected = only.as_ref().is_none_or(|o| o.iter().any(|c| c == case));
        let dir = corpus_dir().join(case);
        let how = if selected {
            let inc = incidents::provoke(case).expect("php-fpm, nginx and root to record");
            inc.settle();
            inc.record(&dir);
            eprintln!("recorded {case}");
            inc.how.clone()
        } else {
            previous_how(case)
        };
        let e = read_expected(&dir);
        readme.push_str(&format!(
            "## {case}\n\n{how}\n\nExpected: first cause `{}`{}.\n\n",
            e.first_cause.as_deref().unwrap_or("none"),
            e.fix_contains
                .as_deref()
                .map(|f| format!(", its fix mentions `{f}`"))
                .unwrap_or_default()
        ));
    }
    std::fs::write(corpus_dir().join("README.md"), readme).unwrap();
}

/// A case's description from the README already on disk (when re-recording some cases).
fn previous_how(case: &str) -> String {
    let readme = std::fs::read_to_string(corpus_dir().join("README.md")).unwrap_or_default();
    let head = format!("## {case}\n\n");
    readme
        .split_once(&head)
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map(|(how, _)| how.to_string())
        .unwrap_or_else(|| panic!("{case} was never recorded: record it too"))
}

const README_HEAD: &str = "# Incident corpus for `fpmctl doctor`

Each directory is one incident, provoked with a real nginx 1.22 (workers as www-data) in front
of a real php-fpm 8.2 by `tests/common/incidents.rs`, and recorded by

    scripts/record-corpus.sh [CASE...]

(as root; it runs `FPMCTL_RECORD_CORPUS=1 cargo test --test doctor -- --ignored record_corpus`,
with `FPMCTL_RECORD_CASES=a,b` when cases are named, to re-record only those). Nothing here is written by hand: the
logs are what the daemons wrote. The only change made while recording is that the temp dir the
incident ran in is replaced by `/__CASE__` in every file; the tests copy a case to a temp dir and
put that dir's path back in, so that includes, sockets and log paths point into the copy.

Layout of a case: `php-fpm.conf`, `pool.d/*.conf`, `fpm.log` (FPM's error_log), `www/` (the
scripts), `nginx/nginx.conf` (with `fastcgi_params` and any includes), `nginx/error.log`,
`nginx/access.log`, and `expected.json`:

- `first_cause`: the cause of doctor's first finding (`null`: doctor must find no cause, exit 0);
- `causes`: causes that must be among the findings; `not_causes`: causes that must not;
- `fix_contains`: text the first finding's fix must contain (case-insensitive);
- `notes_contain`: texts that must appear in doctor's notes when the case is read offline.

";
