//! The command line itself: help, exit-code table, bad arguments.

mod common;
use fpmctl::ExitCode;

fn run(args: &[&str]) -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    common::run_fpmctl(&args, dir.path(), &[])
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
