//! The command line itself: help, exit-code table, bad arguments.

mod common;
use fpmctl::ExitCode;

fn run(args: &[&str]) -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    // Help is wrapped to the terminal width: pin it.
    common::run_fpmctl(&args, dir.path(), &[("COLUMNS", "100")])
}

#[test]
fn help_lists_every_exit_code() {
    let r = run(&["--help"]);
    r.expect_code(0);
    for code in ExitCode::ALL {
        let line = format!("{:>2}  {}", code.code(), code.meaning());
        assert!(r.stdout.contains(&line), "--help lacks '{line}':\n{r}");
    }
}

#[test]
fn readme_lists_every_exit_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for code in ExitCode::ALL {
        let row = format!("| {} | {} |", code.code(), code.meaning());
        assert!(readme.contains(&row), "README lacks the row '{row}'");
    }
}

#[test]
fn a_bad_duration_is_a_usage_error() {
    let r = run(&["stop", "--timeout", "soon"]);
    r.expect_code(2);
    assert!(r.stderr.contains("soon"), "{r}");
}

#[test]
fn a_bad_signal_plan_is_a_usage_error() {
    let r = run(&["stop", "--signal-plan", "HUP:1s"]);
    r.expect_code(2);
    assert!(r.stderr.contains("HUP"), "{r}");
}

/// `--help` of the binary and of each command, compared with `tests/snapshots/`.
/// After an intended change: `FPMCTL_UPDATE_SNAPSHOTS=1 cargo test --test cli`.
#[test]
fn help_output_matches_the_snapshots() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots");
    let update = std::env::var_os("FPMCTL_UPDATE_SNAPSHOTS").is_some();
    let commands = [
        "",
        "config",
        "status",
        "check",
        "stop",
        "start",
        "restart",
        "reload",
        "ping",
        "supervise",
        "ensure",
        "reopen-logs",
        "doctor",
        "metrics",
        "probe",
    ];
    for cmd in commands {
        let args: Vec<&str> = if cmd.is_empty() {
            vec!["--help"]
        } else {
            vec![cmd, "--help"]
        };
        let r = run(&args);
        r.expect_code(0);
        let name = if cmd.is_empty() {
            "help".to_string()
        } else {
            format!("help-{cmd}")
        };
        let path = format!("{dir}/{name}.txt");
        if update {
            std::fs::write(&path, &r.stdout).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("no snapshot {path}; run with FPMCTL_UPDATE_SNAPSHOTS=1"));
        assert_eq!(r.stdout, want, "`fpmctl {cmd} --help` changed; see {path}");
    }
}
