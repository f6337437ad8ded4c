//! `fpmctl doctor` against incidents provoked with real nginx and real php-fpm.
//!
//! - `offline::*`: each recorded case of tests/corpus/ (copied to a temp dir with its paths
//!   made real), read with `--offline`: exit code, first cause and its fix, the exact JSON
//!   shape, evidence that quotes real lines, missing includes as notes.
//! - `live::*`: each case provoked again here, then doctor without `--offline` on the live
//!   state: the right cause first, with the right fix.
//! - `record_corpus` (ignored; `FPMCTL_RECORD_CORPUS=1 cargo test --test doctor -- --ignored
//!   record_corpus`) provokes every case and rewrites tests/corpus/.

mod common;
use common::incidents::{self, CASES, CAUSES, Expected, Incident, Layout, PLACEHOLDER};
use common::{Run, logtime, run_fpmctl};
use serde_json::Value;
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
    let t = 1_796_017_801; // 2026-11-30T05:50:01Z
    assert_eq!(logtime::rfc3339("2026-11-30T05:50:01Z"), Some(t));
    assert_eq!(logtime::rfc3339("2026-11-30T06:50:01.5+01:00"), Some(t));
    assert_eq!(
        logtime::of_line("2026/11/30 05:50:01 [error] 1#1: *1 x"),
        Some(t)
    );
    assert_eq!(
        logtime::of_line("[30-Nov-2026 05:50:01] WARNING: [pool www] x"),
        Some(t)
    );
    assert_eq!(
        logtime::of_line("127.0.0.1 - - [30/Nov/2026:05:50:01 +0000] \"GET / HTTP/1.1\" 502 1"),
        Some(t)
    );
    assert_eq!(logtime::of_line("listen = /run/php.sock"), None);
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

/// Checks the exact JSON shape of the issue: `{"findings": [...], "notes": [...]}`, every
/// finding with exactly its eight fields of the right types, RFC 3339 times, and evidence
/// quoting real lines of files under `root`. Returns the findings.
fn check_shape(run: &Run, root: &Path) -> Vec<Value> {
    let j = run.json();
    let obj = j
        .as_object()
        .unwrap_or_else(|| panic!("not an object:\n{run}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["findings", "not_checked", "notes"],
        "top-level keys:\n{run}"
    );
    for note in j["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("notes is not an array:\n{run}"))
    {
        assert!(note.is_string(), "a note is not a string: {note}\n{run}");
    }
    let findings = j["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("findings is not an array:\n{run}"))
        .clone();
    for f in &findings {
        let fo = f
            .as_object()
            .unwrap_or_else(|| panic!("a finding is not an object:\n{run}"));
        let mut keys: Vec<&str> = fo.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "cause",
                "count",
                "evidence",
                "first_seen",
                "fix",
                "last_seen",
                "severity",
                "summary"
            ],
            "finding keys: {f}\n{run}"
        );
        let cause = f["cause"].as_str().unwrap_or_else(|| panic!("cause: {f}"));
        let severity = f["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("severity: {f}"));
        if cause.starts_with("lint-") {
            assert_eq!(severity, "warning", "a lint is a warning: {f}\n{run}");
        } else {
            assert!(
                CAUSES.contains(&cause),
                "unknown cause id {cause:?}: {f}\n{run}"
            );
            assert!(
                matches!(severity, "error" | "warning"),
                "severity: {f}\n{run}"
            );
        }
        assert!(f["count"].is_u64(), "count is not a count: {f}\n{run}");
        for t in ["first_seen", "last_seen"] {
            // A lint has no time; a cause was seen at some time.
            if cause.starts_with("lint-") && f[t].is_null() {
                continue;
            }
            let s = f[t].as_str().unwrap_or_else(|| panic!("{t}: {f}\n{run}"));
            assert!(is_rfc3339(s), "{t} is not RFC 3339: {s:?}\n{run}");
        }
        assert!(
            f["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "summary: {f}\n{run}"
        );
        assert!(
            f["fix"].as_str().is_some_and(|s| !s.is_empty()),
            "fix: {f}\n{run}"
        );
        let evidence = f["evidence"]
            .as_array()
            .unwrap_or_else(|| panic!("evidence: {f}\n{run}"));
        if !cause.starts_with("lint-") {
            assert!(!evidence.is_empty(), "a cause needs evidence: {f}\n{run}");
        }
        let seen = |t: &str| f[t].as_str().and_then(logtime::rfc3339);
        for e in evidence {
            let line = check_evidence(e, root, run);
            // A quoted log line was written between the finding's first and last time.
            if let (Some(at), Some(first), Some(last)) = (
                logtime::of_line(&line),
                seen("first_seen"),
                seen("last_seen"),
            ) {
                assert!(
                    first <= at && at <= last,
                    "evidence at {at} outside first_seen..last_seen ({first}..{last}): {line}\n{run}"
                );
            }
        }
    }
    findings
}

/// An evidence line names a file under `root` and a line of it that holds its text.
fn check_evidence(e: &Value, root: &Path, run: &Run) -> String {
    let eo = e
        .as_object()
        .unwrap_or_else(|| panic!("evidence is not an object: {e}\n{run}"));
    let mut keys: Vec<&str> = eo.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["file", "line", "text"], "evidence keys: {e}\n{run}");
    let file = e["file"]
        .as_str()
        .unwrap_or_else(|| panic!("file: {e}\n{run}"));
    let line = e["line"]
        .as_u64()
        .filter(|n| *n >= 1)
        .unwrap_or_else(|| panic!("line: {e}\n{run}"));
    let text = e["text"]
        .as_str()
        .unwrap_or_else(|| panic!("text: {e}\n{run}"));
    assert!(
        Path::new(file).starts_with(root),
        "evidence from a file that was not given: {e}\n{run}"
    );
    let content =
        std::fs::read_to_string(file).unwrap_or_else(|err| panic!("{file}: {err}\n{run}"));
    let actual = content
        .lines()
        .nth(line as usize - 1)
        .unwrap_or_else(|| panic!("{file} has no line {line}: {e}\n{run}"));
    let quoted = text.trim_end_matches('…').trim_end_matches("...").trim();
    assert!(
        actual.contains(quoted),
        "evidence text is not line {line} of {file}:\n  quoted: {text}\n  actual: {actual}\n{run}"
    );
    actual.to_string()
}

/// Checks doctor's answer against what the case expects.
fn check(run: &Run, expected: &Expected, root: &Path, offline: bool) {
    let findings = check_shape(run, root);
    let causes: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["cause"].as_str())
        .filter(|c| !c.starts_with("lint-"))
        .collect();
    match &expected.first_cause {
        None => {
            run.expect_code(0);
            assert!(
                causes.is_empty(),
                "the healthy case names causes {causes:?}:\n{run}"
            );
        }
        Some(first) => {
            run.expect_code(1);
            assert_eq!(
                findings[0]["cause"],
                first.as_str(),
                "first finding:\n{run}"
            );
            if let Some(fix) = &expected.fix_contains {
                let got = findings[0]["fix"].as_str().unwrap_or_default();
                assert!(
                    got.to_lowercase().contains(&fix.to_lowercase()),
                    "the fix does not contain {fix:?}: {got:?}\n{run}"
                );
            }
        }
    }
    for c in &expected.causes {
        assert!(causes.contains(&c.as_str()), "cause {c} not found:\n{run}");
    }
    for c in &expected.not_causes {
        assert!(
            !causes.contains(&c.as_str()),
            "cause {c} must not be named:\n{run}"
        );
    }
    if let Some(first) = findings.first() {
        let said = format!(
            "{} {}",
            first["summary"].as_str().unwrap_or_default(),
            first["fix"].as_str().unwrap_or_default()
        );
        for want in &expected.mentions {
            assert!(
                said.contains(want.as_str()),
                "the first finding's summary and fix do not mention {want:?}:\n{run}"
            );
        }
    }
    for lint in &expected.lints {
        assert!(
            findings
                .iter()
                .any(|f| f["cause"] == lint.as_str() && f["severity"] == "warning"),
            "no {lint} warning:\n{run}"
        );
    }
    for (cause, n) in &expected.counts {
        let f = findings
            .iter()
            .find(|f| f["cause"] == cause.as_str())
            .unwrap_or_else(|| panic!("no {cause} finding:\n{run}"));
        assert_eq!(
            f["count"].as_u64(),
            Some(*n),
            "{cause}: {n} requests failed of it, the finding counts otherwise:\n{run}"
        );
    }
    if offline {
        let notes = run.json()["notes"].clone();
        for want in &expected.notes_contain {
            assert!(
                notes
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n.as_str().is_some_and(|s| s.contains(want.as_str()))),
                "no note mentions {want:?}:\n{run}"
            );
        }
    }
}

/// Doctor `--offline` on a recorded case, copied to a temp dir with its paths made real.
fn offline(case: &str) {
    let case_dir = corpus_dir().join(case);
    let expected = read_expected(&case_dir);
    let tmp = tempfile::Builder::new()
        .prefix("fpmctl-corpus-")
        .tempdir()
        .unwrap();
    incidents::materialize(&case_dir, tmp.path());
    let layout = Layout {
        root: tmp.path().to_path_buf(),
    };
    let run = run_fpmctl(&layout.doctor_args(true), tmp.path(), Layout::DOCTOR_ENV);
    check(&run, &expected, tmp.path(), true);
}

/// Provokes a case and runs doctor on the live state (not offline).
fn live(case: &str) -> Option<(Incident, Run)> {
    let inc = incidents::provoke(case)?;
    let layout = inc.layout();
    let run = run_fpmctl(
        &layout.doctor_args(false),
        inc.sb.path(),
        Layout::DOCTOR_ENV,
    );
    eprintln!("{run}");
    check(&run, &inc.expected, inc.sb.path(), false);
    Some((inc, run))
}

/// Without `--json`, the text report names the cause, quotes evidence as file:line and says
/// which directive to change.
#[test]
fn offline_text_report_names_cause_evidence_and_fix() {
    let case_dir = corpus_dir().join("socket-permission");
    let tmp = tempfile::Builder::new()
        .prefix("fpmctl-corpus-")
        .tempdir()
        .unwrap();
    incidents::materialize(&case_dir, tmp.path());
    let layout = Layout {
        root: tmp.path().to_path_buf(),
    };
    let args: Vec<String> = layout
        .doctor_args(true)
        .into_iter()
        .filter(|a| a != "--json")
        .collect();
    let run = run_fpmctl(&args, tmp.path(), Layout::DOCTOR_ENV);
    run.expect_code(1);
    for want in ["socket-permission", "listen.owner = www-data"] {
        assert!(
            run.stdout.contains(want),
            "the report lacks {want:?}:\n{run}"
        );
    }
    let quoted = format!("{}:", layout.nginx_error_log().display());
    assert!(
        run.stdout.match_indices(&quoted).any(
            |(at, _)| run.stdout[at + quoted.len()..].starts_with(|c: char| c.is_ascii_digit())
        ),
        "the report quotes no line as {quoted}LINE:\n{run}"
    );
}

macro_rules! cases {
    ($($name:ident => $case:literal),* $(,)?) => {
        /// Every recorded case, read offline.
        mod offline {
            $(#[test] fn $name() { super::offline($case) })*
        }
        /// Every case, provoked here and diagnosed live.
        mod live {
            $(#[test] fn $name() { super::live_case($case) })*
        }
        #[test]
        fn every_case_has_a_test() {
            let named = [$($case),*];
            assert_eq!(named, CASES);
        }
    };
}

cases! {
    healthy => "healthy",
    fpm_not_running => "fpm-not-running",
    fpm_not_running_tcp => "fpm-not-running-tcp",
    socket_permission => "socket-permission",
    listen_mismatch => "listen-mismatch",
    backlog_full => "backlog-full",
    max_children_reached => "max-children-reached",
    max_children_reached_ondemand => "max-children-reached-ondemand",
    worker_terminated => "worker-terminated",
    worker_crashed => "worker-crashed",
    upstream_timeout => "upstream-timeout",
    protocol_mismatch => "protocol-mismatch",
    protocol_mismatch_fastcgi_to_http => "protocol-mismatch-fastcgi-to-http",
    script_not_found => "script-not-found",
    header_too_big => "header-too-big",
    php_fatal => "php-fatal",
    fpm_bind_failed => "fpm-bind-failed",
    several_causes => "several-causes",
    missing_includes => "missing-includes",
    lints_only => "lints-only",
}

/// Whether `text` holds `n` as a whole number (not as part of a longer one).
/// A log named on the command line that cannot be read is an error naming it (exit 4), like a
/// named config: with a typo in a cron job's path, doctor must not answer "no cause" forever.
#[test]
fn a_named_log_that_cannot_be_read_is_exit_4_naming_it() {
    let case_dir = corpus_dir().join("healthy");
    let tmp = tempfile::Builder::new()
        .prefix("fpmctl-corpus-")
        .tempdir()
        .unwrap();
    incidents::materialize(&case_dir, tmp.path());
    let layout = Layout {
        root: tmp.path().to_path_buf(),
    };
    let missing = tmp.path().join("no-such-error.log");
    let mut args = layout.doctor_args(true);
    let at = args.iter().position(|a| a == "--nginx-error-log").unwrap() + 1;
    args[at] = missing.display().to_string();
    let run = run_fpmctl(&args, tmp.path(), Layout::DOCTOR_ENV);
    run.expect_code(4);
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "the error does not name the log:\n{run}"
    );
}

fn names_number(text: &str, n: i32) -> bool {
    let n = n.to_string();
    text.match_indices(&n).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + n.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

fn live_case(case: &str) {
    let Some((inc, run)) = live(case) else { return };
    if case == "fpm-bind-failed" {
        // Live, doctor names the processes that hold the address.
        let first = &run.json()["findings"][0];
        let text = first.to_string();
        assert!(
            inc.holders.iter().any(|p| names_number(&text, *p)),
            "the finding names none of the holders {:?}:\n{run}",
            inc.holders
        );
    }
}

/// Kills and reaps a background doctor, also when the test fails.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--follow --json` prints a finding as one JSON line once its evidence appears in the logs:
/// a healthy site whose FPM is then stopped.
#[test]
fn follow_prints_a_new_finding_as_one_json_line() {
    use std::io::BufRead;
    let Some(inc) = incidents::provoke("healthy") else {
        return;
    };
    let mut args = inc.layout().doctor_args(false);
    args.push("--follow".into());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fpmctl"))
        .args(&args)
        .env("FPMCTL_LOCK_DIR", inc.sb.path().join("locks"))
        .envs(Layout::DOCTOR_ENV.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Background(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Nothing to report while the site is healthy; then FPM goes away.
    let master = inc.sb.pid_from_file().expect("FPM runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::SIGQUIT,
    )
    .unwrap();
    inc.sb
        .wait_for(std::time::Duration::from_secs(10), "FPM to exit", || {
            (!common::alive(master)).then_some(())
        });
    let deadline = fpmctl::deadline::Deadline::after(std::time::Duration::from_secs(30));
    let mut seen = Vec::new();
    loop {
        // Requests keep failing until doctor reports (a follower may start at the end).
        let _ = inc.get("/hello.php");
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
                let causes: Vec<String> = if v["findings"].is_array() {
                    v["findings"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|f| f["cause"].as_str().map(str::to_string))
                        .collect()
                } else {
                    v["cause"]
                        .as_str()
                        .map(str::to_string)
                        .into_iter()
                        .collect()
                };
                seen.push(line);
                if causes.iter().any(|c| c == "fpm-not-running") {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!(
                    "doctor --follow ended; it printed {seen:#?}\n{}",
                    inc.logs()
                )
            }
        }
        assert!(
            !deadline.expired(),
            "no fpm-not-running finding after 30s; printed {seen:#?}\n{}",
            inc.logs()
        );
    }
}

/// The corpus on disk: one dir per case, each with its files and `expected.json`, and no
/// trace of the temp dir it was recorded in.
#[test]
fn corpus_is_complete_and_has_no_temp_paths() {
    let mut first_causes = Vec::new();
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
        first_causes.extend(e.first_cause);
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
    for cause in CAUSES {
        assert!(
            first_causes.iter().any(|c| c == cause),
            "no corpus case has {cause} as its first cause"
        );
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
            let mut inc = incidents::provoke(case).expect("php-fpm, nginx and root to record");
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
logs are what the daemons wrote (nginx and FPM run with `TZ=UTC`, so their times are UTC). The only change made while recording is that the temp dir the
incident ran in is replaced by `/__CASE__` in every file; the tests copy a case to a temp dir and
put that dir's path back in, so that includes, sockets and log paths point into the copy.

Layout of a case: `php-fpm.conf`, `pool.d/*.conf`, `fpm.log` (FPM's error_log), `www/` (the
scripts), `nginx/nginx.conf` (with `fastcgi_params` and any includes), `nginx/error.log`,
`nginx/access.log`, and `expected.json`:

- `first_cause`: the cause of doctor's first finding (`null`: doctor must find no cause, exit 0);
- `causes`: causes that must be among the findings; `not_causes`: causes that must not;
- `fix_contains`: text the first finding's fix must contain (case-insensitive);
- `notes_contain`: texts that must appear in doctor's notes when the case is read offline;
- `counts`: for each cause, how many requests the incident's own client saw fail of it: the
  `count` of that cause's finding;
- `mentions`: texts the first finding's summary or fix must contain;
- `lints`: `lint-*` warnings that must be among the findings.

";
