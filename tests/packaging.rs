//! What packagers use: `fpmctl --version` with the git revision, `fpmctl generate man` (pages
//! that `man -l` renders) and `fpmctl generate completions` (scripts that name every command),
//! hidden from `--help`.

mod common;

#[path = "../build/version.rs"]
#[allow(dead_code)]
mod version;

use clap::CommandFactory;
use std::path::Path;
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str]) -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    common::run_fpmctl(&args, dir.path(), &[("COLUMNS", "100")])
}

/// The visible commands, from the definitions themselves.
fn commands() -> Vec<String> {
    fpmctl::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing, and CI=true: scripts/install-deps.sh installs it"
        );
        eprintln!("NOTICE: {tool} missing; skipping");
    }
    found
}

#[test]
fn version_names_the_git_revision_of_the_checkout() {
    let r = run(&["--version"]);
    r.expect_code(0);
    let pkg = env!("CARGO_PKG_VERSION");
    match version::git_revision(Path::new(REPO)) {
        Some(rev) => assert_eq!(r.stdout.trim(), format!("fpmctl {pkg} ({rev})"), "{r}"),
        None => assert_eq!(r.stdout.trim(), format!("fpmctl {pkg}"), "{r}"),
    }
}

#[test]
fn a_source_tree_without_its_own_git_checkout_gets_no_revision() {
    if !have("git") {
        return;
    }
    // Unpacked from a tarball: no .git at all.
    let tarball = tempfile::tempdir().unwrap();
    std::fs::write(tarball.path().join("Cargo.toml"), "[package]\n").unwrap();
    assert_eq!(version::git_revision(tarball.path()), None);
    // Unpacked inside some other repository: that repository's revision is not ours.
    let outer = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .arg("-C")
            .arg(outer.path())
            .args(args)
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}: {st:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@localhost",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "outer",
    ]);
    let inner = outer.path().join("fpmctl-0.1.0");
    std::fs::create_dir_all(&inner).unwrap();
    assert_eq!(version::git_revision(&inner), None);
    assert!(version::git_revision(outer.path()).is_some());
    assert_eq!(version::version_string("0.1.0", None), "0.1.0");
    assert_eq!(
        version::version_string("0.1.0", Some("abc1234")),
        "0.1.0 (abc1234)"
    );
}

#[test]
fn generate_is_hidden_from_help() {
    let r = run(&["--help"]);
    r.expect_code(0);
    assert!(!r.stdout.contains("generate"), "{r}");
}

#[test]
fn man_pages_exist_for_every_command_and_render_with_man() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let r = run(&["generate", "man", out.to_str().unwrap()]);
    r.expect_code(0);
    let mut expected = vec!["fpmctl.1".to_string()];
    expected.extend(commands().iter().map(|c| format!("fpmctl-{c}.1")));
    let mut found: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "{r}");
    assert!(!found.iter().any(|f| f.contains("generate")));
    if !have("man") {
        return;
    }
    for page in &found {
        let o = Command::new("man")
            .arg("-l")
            .arg(out.join(page))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "man -l {page}: {err}");
        assert!(err.trim().is_empty(), "man -l {page} warned: {err}");
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"] {
            assert!(text.contains(section), "{page} lacks {section}:\n{text}");
        }
        let name = page.trim_end_matches(".1");
        assert!(text.contains(name), "{page} does not name {name}:\n{text}");
    }
    // The main page carries the exit-code table and lists each command's page.
    let main = std::fs::read_to_string(out.join("fpmctl.1")).unwrap();
    for c in commands() {
        // roff escapes every hyphen.
        let roff = format!("fpmctl-{c}(1)").replace('-', "\\-");
        assert!(main.contains(&roff), "fpmctl.1 lacks {roff}");
    }
    assert!(main.contains("crashed too often"), "no exit-code table");
}

#[test]
fn man_into_a_directory_that_cannot_be_made_fails_naming_it() {
    let r = run(&["generate", "man", "/proc/fpmctl-no-such-dir/man1"]);
    r.expect_code(1);
    assert!(r.stderr.contains("/proc/fpmctl-no-such-dir/man1"), "{r}");
}

#[test]
fn completions_name_every_command_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&["generate", "completions", shell]);
        r.expect_code(0);
        for c in commands() {
            assert!(r.stdout.contains(&c), "{shell} completion lacks {c}:\n{r}");
        }
        assert!(
            !r.stdout.contains("generate"),
            "{shell} completes the hidden command"
        );
        assert!(r.stdout.contains("signal-plan"), "{shell}: no options");
    }
    // The bash script parses (the others' shells are not installed here).
    let r = run(&["generate", "completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fpmctl.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    let o = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Sourced, it registers a completion for fpmctl.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(". {}; complete -p fpmctl", script.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("fpmctl"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let r = run(&["generate", "completions", "tcsh"]);
    r.expect_code(2);
    assert!(r.stderr.contains("tcsh"), "{r}");
}

#[test]
fn generate_needs_no_fpm_config() {
    // No config anywhere that auto-detection could find is needed.
    let r = common::run_fpmctl(
        &[
            "-c".into(),
            "/nonexistent/php-fpm.conf".into(),
            "generate".into(),
            "completions".into(),
            "bash".into(),
        ],
        Path::new("/"),
        &[],
    );
    r.expect_code(0);
}

#[test]
fn the_logrotate_snippet_parses_and_reopens_through_fpmctl() {
    if !have("logrotate") {
        return;
    }
    let snippet = Path::new(REPO).join("packaging/logrotate/php8.2-fpm");
    let text = std::fs::read_to_string(&snippet).unwrap();
    assert!(text.contains("fpmctl -q -c /etc/php/8.2/fpm/php-fpm.conf reopen-logs"));
    // -d: parse and report only, nothing is rotated or run.
    let state = tempfile::tempdir().unwrap();
    let o = Command::new("logrotate")
        .arg("-d")
        .arg("-s")
        .arg(state.path().join("status"))
        .arg(&snippet)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "logrotate -d: {err}");
    assert!(!err.contains("error"), "logrotate -d: {err}");
    assert!(err.contains("/var/log/php8.2-fpm.log"), "{err}");
}
