//! What packagers use: `fpmctl --version` with the git revision, `fpmctl generate man` (pages
//! that `man -l` renders) and `fpmctl generate completions` (scripts that name every command),
//! hidden from `--help`.

mod common;

#[path = "../build/layout.rs"]
mod layout;
#[path = "../build/version.rs"]
#[allow(dead_code)]
mod version;

use clap::CommandFactory;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
fn the_idle_layout_links_into_release_builds_for_linux_unless_turned_off() {
    let repo = Path::new(REPO);
    let file = repo.join(layout::FILE);
    assert_eq!(
        layout::choose("release", "linux", None, repo),
        Some(file.clone())
    );
    // Test builds link as they always did; other systems have no such linker script.
    assert_eq!(layout::choose("debug", "linux", None, repo), None);
    assert_eq!(layout::choose("release", "macos", None, repo), None);
    // Turned off, or another file (relative to the source tree).
    assert_eq!(layout::choose("release", "linux", Some("0"), repo), None);
    assert_eq!(
        layout::choose("release", "linux", Some("target/trial.ld"), repo),
        Some(repo.join("target/trial.ld"))
    );
    assert_eq!(
        layout::choose("debug", "linux", Some("/tmp/x.ld"), repo),
        Some("/tmp/x.ld".into())
    );
    assert_eq!(
        layout::choose("release", "linux", Some(""), repo),
        Some(file)
    );
    // A source tree without the file (trimmed by a packager) links without it.
    let bare = tempfile::tempdir().unwrap();
    assert_eq!(layout::choose("release", "linux", None, bare.path()), None);
    // The switch documented is the one build.rs reads.
    let arch = std::fs::read_to_string(repo.join("ARCHITECTURE.md")).unwrap();
    assert!(arch.contains(&format!("`{}=0`", layout::VAR)));
}

#[test]
fn the_idle_layout_links_from_a_source_tree_whose_path_has_commas_and_spaces() {
    // A source tree unpacked or cloned under such a name (`cargo install --path`): the
    // script's path must reach the linker whole, not split at its commas.
    if !have("cc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fpmctl, 0.1 (copy)");
    std::fs::create_dir(&dir).unwrap();
    let script = dir.join("idle-layout.ld");
    std::fs::copy(Path::new(REPO).join(layout::FILE), &script).unwrap();
    let main = tmp.path().join("main.c");
    std::fs::write(&main, "int main(void) { return 0; }\n").unwrap();
    let out = Command::new("cc")
        .arg(&main)
        .arg("-o")
        .arg(tmp.path().join("main"))
        .args(layout::link_args(&script))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_build_that_asks_for_gold_or_mold_links_without_the_idle_layout() {
    // Neither reads the script (`INSERT BEFORE`): a release build asking for one would fail
    // to link at all.
    let flags = |f: &[&str]| f.join("\x1f");
    for (rustflags, linker, mold_run, want) in [
        (
            flags(&["-C", "link-arg=-fuse-ld=gold"]),
            None,
            false,
            Some("gold"),
        ),
        (
            flags(&["-Clink-arg=-fuse-ld=/usr/bin/mold"]),
            None,
            false,
            Some("/usr/bin/mold"),
        ),
        (
            flags(&["-Clink-arg=--ld-path=/opt/ld.mold"]),
            None,
            false,
            Some("/opt/ld.mold"),
        ),
        (
            String::new(),
            Some("/usr/bin/ld.gold"),
            false,
            Some("/usr/bin/ld.gold"),
        ),
        (String::new(), None, true, Some("mold")),
        (
            flags(&["-Clink-arg=-fuse-ld=lld", "-Clinker=clang"]),
            Some("clang"),
            false,
            None,
        ),
        (
            flags(&["-Clinker-flavor=gcc", "-Ctarget-cpu=native"]),
            None,
            false,
            None,
        ),
        (String::new(), None, false, None),
    ] {
        assert_eq!(
            layout::scriptless_linker(&rustflags, linker, mold_run).as_deref(),
            want,
            "{rustflags:?} {linker:?}"
        );
    }
    // What the check spares such a build, when gold is here to show it.
    let gold = Command::new("sh")
        .args(["-c", "command -v ld.gold && command -v cc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if gold {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("main.c");
        std::fs::write(&main, "int main(void) { return 0; }\n").unwrap();
        let out = Command::new("cc")
            .arg(&main)
            .arg("-o")
            .arg(tmp.path().join("main"))
            .arg("-fuse-ld=gold")
            .args(layout::link_args(&Path::new(REPO).join(layout::FILE)))
            .output()
            .unwrap();
        assert!(!out.status.success(), "gold read the script after all");
    }
}

#[test]
fn the_idle_layout_is_a_linker_script_of_function_patterns() {
    let text = std::fs::read_to_string(Path::new(REPO).join(layout::FILE)).unwrap();
    let body = text
        .split_once(".text.idle :\n  {\n")
        .and_then(|(_, rest)| rest.split_once("\n  }\n}\nINSERT BEFORE .text;\n"))
        .map(|(patterns, _)| patterns)
        .expect("SECTIONS { .text.idle : { ... } } INSERT BEFORE .text;");
    let mut n = 0;
    for line in body.lines() {
        // `*(.text.P .text.unlikely.P)`: unquoted, so the linker matches `*` as a wildcard;
        // a character outside mangled names would end the pattern early.
        let inner = line
            .strip_prefix("    *(.text.")
            .and_then(|l| l.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not a pattern line: {line:?}"));
        let (hot, cold) = inner.split_once(" .text.unlikely.").unwrap();
        assert_eq!(hot, cold, "{line}");
        assert!(
            hot.starts_with("_ZN")
                || hot.starts_with("_R")
                || hot.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            hot.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c)),
            "{line}"
        );
        n += 1;
    }
    assert!(n >= 50, "only {n} functions in {}", layout::FILE);
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
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS"] {
            assert!(text.contains(section), "{page} lacks {section}:\n{text}");
        }
        let name = page.trim_end_matches(".1");
        assert!(text.contains(name), "{page} does not name {name}:\n{text}");
        // Every code of the table, on every page.
        let source = std::fs::read_to_string(out.join(page)).unwrap();
        for code in fpmctl::ExitCode::ALL {
            let entry = format!(".TP\n\\fB{}\\fR\n", code.code());
            assert!(
                source.contains(&entry),
                "{page} lacks exit code {}",
                code.code()
            );
        }
        assert!(
            text.contains(fpmctl::cli::VERSION),
            "{page} lacks the version:\n{text}"
        );
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

// ---- packaging/docker: the image's entrypoint, run outside Docker ----

/// A JSON-array instruction of packaging/docker/Dockerfile: `ENTRYPOINT [...]`, or the
/// `CMD [...]` of `HEALTHCHECK`, continuation lines joined.
fn dockerfile_array(instruction: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(REPO).join("packaging/docker/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with(instruction))
        .unwrap_or_else(|| panic!("the Dockerfile has no {instruction}"));
    let array = &line[line.find('[').unwrap()..=line.rfind(']').unwrap()];
    serde_json::from_str(array).unwrap()
}

/// The official php:8.2-fpm image's FPM config tree under `root` (prefix `root/usr/local`):
/// php-fpm.conf including `etc/php-fpm.d/*.conf` relative to the prefix, www.conf,
/// docker.conf and zz-docker.conf as the image writes them, plus the example image's
/// zz-fpmctl.conf. One file of the test's own puts the pool on a free loopback port in place
/// of the image's `listen = 9000` on every address. Returns the main config's path.
fn docker_layout(root: &Path, port: u16) -> std::path::PathBuf {
    let etc = root.join("usr/local/etc");
    let d = etc.join("php-fpm.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        etc.join("php-fpm.conf"),
        "[global]\n;pid = run/php-fpm.pid\n;error_log = log/php-fpm.log\n\
         include=etc/php-fpm.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        d.join("www.conf"),
        "[www]\nuser = www-data\ngroup = www-data\nlisten = 127.0.0.1:9000\npm = dynamic\n\
         pm.max_children = 5\npm.start_servers = 2\npm.min_spare_servers = 1\n\
         pm.max_spare_servers = 3\n",
    )
    .unwrap();
    std::fs::write(
        d.join("docker.conf"),
        "[global]\nerror_log = /proc/self/fd/2\nlog_limit = 8192\n\n[www]\n\
         access.log = /proc/self/fd/2\nclear_env = no\ncatch_workers_output = yes\n\
         decorate_workers_output = no\n",
    )
    .unwrap();
    std::fs::write(
        d.join("zz-docker.conf"),
        "[global]\ndaemonize = no\n\n[www]\nlisten = 9000\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(REPO).join("packaging/docker/zz-fpmctl.conf"),
        d.join("zz-fpmctl.conf"),
    )
    .unwrap();
    std::fs::write(
        d.join("zzz-test.conf"),
        format!("[www]\nlisten = 127.0.0.1:{port}\n"),
    )
    .unwrap();
    etc.join("php-fpm.conf")
}

/// The entrypoint's command line, running as PID 1 of a private PID namespace (as in a
/// container); killed with its namespace on drop.
struct Container {
    root: tempfile::TempDir,
    unshare: std::process::Child,
    pid1: i32,
    /// PID 1's namespace, kept to look for leftovers once PID 1 is gone.
    ns: std::path::PathBuf,
    fpm_bin: std::path::PathBuf,
    port: u16,
}

impl Container {
    fn start() -> Option<Container> {
        let fpm_bin = common::fpm_bin()?;
        if !have("unshare") || !have("nsenter") {
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("fpmctl-docker-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = common::free_port();
        docker_layout(root.path(), port);
        let www = root.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(
            www.join("slow.php"),
            format!(
                "<?php touch('{}/started'); $end = microtime(true) + 3;\n\
                 while (microtime(true) < $end) {{ usleep(20000); }}\necho 'slept 3';\n",
                www.display()
            ),
        )
        .unwrap();
        let mut args = dockerfile_array("ENTRYPOINT");
        assert_eq!(args[0], "fpmctl");
        args.remove(0);
        let args = Self::rebase(root.path(), args);
        let log = std::fs::File::create(root.path().join("entrypoint.log")).unwrap();
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--mount-proc", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_fpmctl"))
            .args(&args)
            .arg("--fpm-bin")
            .arg(&fpm_bin)
            .env("FPMCTL_LOCK_DIR", root.path().join("locks"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut c = Container {
            root,
            unshare,
            pid1: 0,
            ns: std::path::PathBuf::new(),
            fpm_bin,
            port,
        };
        let upid = c.unshare.id();
        c.pid1 = c.wait_for(Duration::from_secs(10), "PID 1 of the namespace", || {
            std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        c.ns = std::fs::read_link(format!("/proc/{}/ns/pid", c.pid1)).unwrap();
        c.wait_for(Duration::from_secs(30), "the HEALTHCHECK to pass", || {
            c.healthcheck().status.success().then_some(())
        });
        Some(c)
    }

    /// Paths under the image's /usr/local moved under the test's root.
    fn rebase(root: &Path, args: Vec<String>) -> Vec<String> {
        args.into_iter()
            .map(|a| match a.strip_prefix("/usr/local") {
                Some(rest) => format!("{}/usr/local{rest}", root.display()),
                None => a,
            })
            .collect()
    }

    /// A command inside the namespace, as `docker exec` runs it.
    fn exec(&self, args: &[String]) -> std::process::Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.pid1.to_string())
            .args(["-p", "-m", "--"])
            .args(args)
            .env("FPMCTL_LOCK_DIR", self.root.path().join("locks"))
            .output()
            .unwrap()
    }

    /// The Dockerfile's HEALTHCHECK command.
    fn healthcheck(&self) -> std::process::Output {
        let mut args = dockerfile_array("HEALTHCHECK");
        assert_eq!(args[0], "fpmctl");
        args[0] = env!("CARGO_BIN_EXE_fpmctl").to_string();
        let mut args = Self::rebase(self.root.path(), args);
        args.push("--fpm-bin".into());
        args.push(self.fpm_bin.display().to_string());
        self.exec(&args)
    }

    fn fpmctl(&self, args: &[&str]) -> std::process::Output {
        let conf = self.root.path().join("usr/local/etc/php-fpm.conf");
        let mut all = vec![
            env!("CARGO_BIN_EXE_fpmctl").to_string(),
            "--no-systemd".into(),
            "-p".into(),
            self.root.path().join("usr/local").display().to_string(),
            "-c".into(),
            conf.display().to_string(),
            "--fpm-bin".into(),
            self.fpm_bin.display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        self.exec(&all)
    }

    /// The FPM master's PID inside the namespace.
    fn master(&self) -> Option<i64> {
        let out = self.fpmctl(&["status", "--json"]);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        j["master"]["pid"].as_i64()
    }

    /// Host PIDs of the namespace's processes, with their state letter.
    fn processes(&self) -> Vec<(i32, char)> {
        let ns = &self.ns;
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(ns)
            })
            .filter_map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                let state = stat[stat.rfind(')')? + 2..].chars().next()?;
                Some((p, state))
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("entrypoint.log")).unwrap_or_default()
    }

    #[track_caller]
    fn wait_for<T>(&self, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = fpmctl::deadline::Deadline::after(limit);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                !deadline.expired(),
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Signals PID 1 as `docker stop` does and returns its exit status.
    fn stop_with(&mut self, sig: nix::sys::signal::Signal) -> i32 {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid1), sig).unwrap();
        let deadline = fpmctl::deadline::Deadline::after(Duration::from_secs(30));
        loop {
            if let Some(st) = self.unshare.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                !deadline.expired(),
                "PID 1 did not exit on {sig}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // unshare --kill-child: its death SIGKILLs PID 1, and with it the whole namespace.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

#[test]
fn the_docker_healthcheck_deadline_is_below_one_second() {
    let hc = dockerfile_array("HEALTHCHECK");
    let i = hc
        .iter()
        .position(|a| a == "--timeout")
        .expect("ping --timeout");
    let d = humantime::parse_duration(&hc[i + 1]).unwrap();
    assert!(d < Duration::from_secs(1), "{d:?}");
    let text =
        std::fs::read_to_string(Path::new(REPO).join("packaging/docker/Dockerfile")).unwrap();
    assert!(text.contains("FROM php:8.2-fpm"));
    assert!(text.contains("STOPSIGNAL SIGQUIT"));
}

/// The entrypoint as PID 1 against the official image's config tree: the relative include
/// resolves under the prefix, the HEALTHCHECK passes, a SIGKILLed master's orphans are reaped
/// (no zombie), and SIGQUIT, the image's stop signal, stops FPM gracefully: a request in
/// flight completes and PID 1 exits 0 with nothing left.
#[test]
fn the_docker_entrypoint_as_pid_1_recovers_reaps_and_stops_gracefully_on_sigquit() {
    let Some(mut c) = Container::start() else {
        return;
    };
    let first = c.wait_for(Duration::from_secs(10), "a master", || c.master());
    let out = c.exec(&["kill".into(), "-KILL".into(), first.to_string()]);
    assert!(out.status.success(), "{out:?}");
    c.wait_for(Duration::from_secs(20), "a new master", || {
        c.master().filter(|m| *m != first)
    });
    c.wait_for(
        Duration::from_secs(20),
        "the HEALTHCHECK to pass again",
        || c.healthcheck().status.success().then_some(()),
    );
    // The dead master's workers came back to PID 1, finished, and were reaped.
    c.wait_for(
        Duration::from_secs(20),
        "no zombie in the namespace",
        || c.processes().iter().all(|(_, s)| *s != 'Z').then_some(()),
    );

    // A 3-second request in flight when `docker stop` sends SIGQUIT completes.
    let addr = fpmctl::listen::ListenAddr::parse(&format!("127.0.0.1:{}", c.port)).unwrap();
    let script = c.root.path().join("www/slow.php");
    let req = std::thread::spawn(move || {
        let mut r = fpmctl::fastcgi::Request::get("/slow.php");
        r.script_filename = script.display().to_string();
        fpmctl::fastcgi::request(&addr, &r, Duration::from_secs(60))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .map_err(|e| e.to_string())
    });
    let started = c.root.path().join("www/started");
    c.wait_for(Duration::from_secs(10), "the request to start", || {
        started.exists().then_some(())
    });
    let code = c.stop_with(nix::sys::signal::SIGQUIT);
    let body = req.join().unwrap();
    assert_eq!(code, 0, "{}", c.log());
    assert_eq!(body.as_deref(), Ok("slept 3"), "{}", c.log());
    assert!(c.processes().is_empty(), "{:?}", c.processes());
}

#[test]
fn the_docker_entrypoint_as_pid_1_stops_gracefully_on_sigterm() {
    let Some(mut c) = Container::start() else {
        return;
    };
    let code = c.stop_with(nix::sys::signal::SIGTERM);
    assert_eq!(code, 0, "{}", c.log());
    assert!(c.log().contains("stopping FPM gracefully"), "{}", c.log());
    assert!(c.processes().is_empty(), "{:?}", c.processes());
}

/// The logrotate snippet run for real (`logrotate -f`) against a sandboxed FPM: the log is
/// rotated, and the postrotate's `fpmctl reopen-logs` makes FPM write to a new file.
#[test]
fn logrotate_with_the_snippet_rotates_and_fpm_reopens_its_log() {
    let Some(sb) = common::Sandbox::new() else {
        return;
    };
    if !have("logrotate") {
        return;
    }
    sb.start_fpm();
    let log = sb.path().join("fpm.log");
    let snippet = std::fs::read_to_string(Path::new(REPO).join("packaging/logrotate/php8.2-fpm"))
        .unwrap()
        .replace("/var/log/php8.2-fpm.log", &log.display().to_string())
        .replace("/usr/bin/fpmctl", env!("CARGO_BIN_EXE_fpmctl"))
        .replace(
            "/etc/php/8.2/fpm/php-fpm.conf",
            &sb.conf.display().to_string(),
        );
    let conf = sb.path().join("logrotate.conf");
    std::fs::write(&conf, snippet).unwrap();
    let o = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(sb.path().join("logrotate.status"))
        .arg(&conf)
        .env("FPMCTL_LOCK_DIR", sb.path().join("locks"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "logrotate: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let rotated = sb.path().join("fpm.log.1");
    assert!(rotated.exists(), "not rotated");
    sb.wait_for(Duration::from_secs(10), "FPM to write a new log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("re-opened"))
    });
    sb.fpmctl(&["ping"]).expect_code(0);
}
