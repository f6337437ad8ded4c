//! Incidents: a real nginx (workers as www-data) in front of a real php-fpm, driven into each
//! failure `fpmctl doctor` names, the way it happens on a server: a wrong socket owner, a
//! too-short timeout, a slow script with few children, a crashing worker, a port held by the
//! orphans of a killed master. Requests are real HTTP requests through nginx.
//!
//! Every incident lays its files out the same way under its sandbox dir, so that a recorded
//! copy (tests/corpus/CASE/) and a live incident are read by doctor alike:
//!
//! ```text
//! php-fpm.conf  pool.d/*.conf  fpm.log  www/*.php  run/ (sockets)
//! nginx/nginx.conf  nginx/fastcgi_params  nginx/error.log  nginx/access.log
//! ```
//!
//! [`provoke`] leaves the incident live (nginx and FPM in the state the incident left them)
//! for live doctor runs; [`Incident::record`] copies its files into a corpus case with the
//! sandbox path rewritten to [`PLACEHOLDER`].

mod cases;

use super::Sandbox;
use super::load;
use super::nginx::{self, Nginx};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Every cause id doctor knows, in the issue's order.
pub const CAUSES: [&str; 13] = [
    "fpm-not-running",
    "socket-permission",
    "listen-mismatch",
    "backlog-full",
    "max-children-reached",
    "worker-terminated",
    "worker-crashed",
    "upstream-timeout",
    "protocol-mismatch",
    "script-not-found",
    "header-too-big",
    "php-fatal",
    "fpm-bind-failed",
];

/// Every incident case, one directory each under tests/corpus/.
pub const CASES: [&str; 20] = [
    "healthy",
    "fpm-not-running",
    "fpm-not-running-tcp",
    "socket-permission",
    "listen-mismatch",
    "backlog-full",
    "max-children-reached",
    "max-children-reached-ondemand",
    "worker-terminated",
    "worker-crashed",
    "upstream-timeout",
    "protocol-mismatch",
    "protocol-mismatch-fastcgi-to-http",
    "script-not-found",
    "header-too-big",
    "php-fatal",
    "fpm-bind-failed",
    "several-causes",
    "missing-includes",
    "lints-only",
];

/// What stands for the sandbox dir in recorded files.
pub const PLACEHOLDER: &str = "/__CASE__";

/// The user nginx's workers run as (Debian's).
pub const NGINX_USER: &str = "www-data";

/// Limit of one request through nginx in an incident.
const REQUEST_LIMIT: Duration = Duration::from_secs(20);
/// Limit of waiting for a log line an incident must produce.
const LOG_LIMIT: Duration = Duration::from_secs(20);

/// What doctor must say about a case (`expected.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// The cause of the first finding, or `None` when doctor must find no cause.
    pub first_cause: Option<String>,
    /// Causes that must be among the findings.
    pub causes: Vec<String>,
    /// Causes that must not be among the findings.
    pub not_causes: Vec<String>,
    /// Text the first finding's fix must contain (compared case-insensitively).
    pub fix_contains: Option<String>,
    /// Texts that must each appear in some note when the case is read offline from the corpus.
    #[serde(default)]
    pub notes_contain: Vec<String>,
    /// How many requests failed of each cause, as the incident's own client counted them:
    /// the `count` doctor must give that cause's finding.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Texts the first finding's summary or fix must contain.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Lints (`lint-*`, severity warning) that must be among the findings.
    #[serde(default)]
    pub lints: Vec<String>,
}

impl Expected {
    fn cause(first: &str, also: &[&str], not: &[&str], fix: &str) -> Expected {
        let mut causes = vec![first.to_string()];
        causes.extend(also.iter().map(|s| s.to_string()));
        Expected {
            first_cause: Some(first.to_string()),
            causes,
            not_causes: not.iter().map(|s| s.to_string()).collect(),
            fix_contains: Some(fix.to_string()),
            notes_contain: Vec::new(),
            counts: BTreeMap::new(),
            mentions: Vec::new(),
            lints: Vec::new(),
        }
    }

    /// The same, with `n` requests failed of `cause`.
    fn count(mut self, cause: &str, n: u64) -> Expected {
        self.counts.insert(cause.to_string(), n);
        self
    }
}

/// A provoked incident, live: drop stops nginx, then FPM and everything else it started.
pub struct Incident {
    /// Declared before `sb` so that it is stopped first (its files are in the sandbox).
    pub nginx: Option<Nginx>,
    pub sb: Sandbox,
    pub case: &'static str,
    /// How the incident was provoked (for the corpus README).
    pub how: String,
    pub expected: Expected,
    /// Paths relative to the sandbox dir that a recording leaves out (missing includes).
    pub omit: Vec<&'static str>,
    /// Processes that hold an address FPM could not bind (live only).
    pub holders: Vec<i32>,
    /// Run by the recorder after live checks: the rest of the incident (the orphaned-workers
    /// case kills the orphans holding the port, so nginx then gets refused connections).
    after_live: Option<fn(&mut Incident)>,
}

/// Paths of the files doctor reads, under a case root (live sandbox or materialized copy).
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn fpm_conf(&self) -> PathBuf {
        self.root.join("php-fpm.conf")
    }
    pub fn fpm_log(&self) -> PathBuf {
        self.root.join("fpm.log")
    }
    pub fn nginx_conf(&self) -> PathBuf {
        self.root.join("nginx/nginx.conf")
    }
    pub fn nginx_error_log(&self) -> PathBuf {
        self.root.join("nginx/error.log")
    }
    pub fn nginx_access_log(&self) -> PathBuf {
        self.root.join("nginx/access.log")
    }

    /// The environment doctor runs in: logs are written in UTC (see `run_fpm`).
    pub const DOCTOR_ENV: &[(&str, &str)] = &[("TZ", "UTC")];

    /// `fpmctl` arguments for a doctor run on this layout, JSON output.
    pub fn doctor_args(&self, offline: bool) -> Vec<String> {
        let mut args = vec![
            "doctor".to_string(),
            "--json".into(),
            "-c".into(),
            self.fpm_conf().display().to_string(),
            "--nginx-conf".into(),
            self.nginx_conf().display().to_string(),
            "--nginx-error-log".into(),
            self.nginx_error_log().display().to_string(),
            "--nginx-access-log".into(),
            self.nginx_access_log().display().to_string(),
            "--fpm-log".into(),
            self.fpm_log().display().to_string(),
        ];
        if offline {
            args.insert(1, "--offline".into());
        }
        args
    }
}

/// Whether incidents can run here: php-fpm and nginx installed, and root (nginx's workers
/// must run as www-data for a permission problem to be real). Under `CI=true` anything
/// missing fails the test instead of skipping it.
pub fn available() -> bool {
    if super::fpm_bin().is_none() || !nginx::available() {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("incidents need root (nginx workers as www-data), and CI=true");
        }
        eprintln!("NOTICE: not root; skipping this incident test");
        return false;
    }
    true
}

/// Provokes `case` (one of [`CASES`]) and returns it live, or `None` when it cannot run here
/// (see [`available`]).
pub fn provoke(case: &str) -> Option<Incident> {
    if !available() {
        return None;
    }
    let inc = match case {
        "healthy" => cases::healthy(),
        "fpm-not-running" => cases::fpm_not_running(),
        "fpm-not-running-tcp" => cases::fpm_not_running_tcp(),
        "socket-permission" => cases::socket_permission(),
        "listen-mismatch" => cases::listen_mismatch(),
        "backlog-full" => cases::backlog_full(),
        "max-children-reached" => cases::max_children_reached(),
        "max-children-reached-ondemand" => cases::max_children_reached_ondemand(),
        "worker-terminated" => cases::worker_terminated(),
        "worker-crashed" => cases::worker_crashed(),
        "upstream-timeout" => cases::upstream_timeout(),
        "protocol-mismatch" => cases::protocol_mismatch(),
        "protocol-mismatch-fastcgi-to-http" => cases::protocol_mismatch_fastcgi_to_http(),
        "script-not-found" => cases::script_not_found(),
        "header-too-big" => cases::header_too_big(),
        "php-fatal" => cases::php_fatal(),
        "fpm-bind-failed" => cases::fpm_bind_failed(),
        "several-causes" => cases::several_causes(),
        "missing-includes" => cases::missing_includes(),
        "lints-only" => cases::lints_only(),
        other => panic!("no incident case {other:?}"),
    };
    Some(inc)
}

// ---------------------------------------------------------------------------------------
// Building and driving an incident

impl Incident {
    /// A sandbox with this layout's FPM main config (pools to be added with [`Incident::pool`]),
    /// the test scripts, and nginx's fastcgi_params; nothing started yet.
    fn new(case: &'static str) -> Incident {
        let sb = Sandbox::new().expect("php-fpm is installed");
        let d = sb.path().display().to_string();
        let global = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = yes\n\
             process_control_timeout = 10s\n\ninclude = {d}/pool.d/*.conf\n"
        );
        sb.write_config(&global);
        for sub in ["pool.d", "run", "nginx"] {
            std::fs::create_dir_all(sb.path().join(sub)).unwrap();
        }
        let www = sb.docroot();
        // The sandbox wrote hello.php and slow.php (slow loops on the clock: a signal cuts
        // sleep() short).
        std::fs::write(
            www.join("fatal.php"),
            "<?php\n// A deploy that calls a function it forgot to ship.\n\
             echo render_page_header();\n",
        )
        .unwrap();
        std::fs::write(
            www.join("crash.php"),
            "<?php\n// The worker dies on a segmentation fault, as with a crashing extension.\n\
             posix_kill(getmypid(), 11);\necho 'still alive';\n",
        )
        .unwrap();
        std::fs::write(
            www.join("bigheader.php"),
            "<?php\n// A debug header that grew with the session.\n\
             header('X-Debug-Trace: ' . str_repeat('frame;', 800));\necho 'ok';\n",
        )
        .unwrap();
        let params = std::fs::read("/etc/nginx/fastcgi_params")
            .expect("nginx's /etc/nginx/fastcgi_params (package nginx-common)");
        std::fs::write(sb.path().join("nginx/fastcgi_params"), params).unwrap();
        Incident {
            nginx: None,
            sb,
            case,
            how: String::new(),
            expected: Expected::default(),
            omit: Vec::new(),
            holders: Vec::new(),
            after_live: None,
        }
    }

    /// Writes pool file `name` under pool.d/.
    fn pool(&self, name: &str, text: &str) {
        std::fs::write(self.sb.path().join("pool.d").join(name), text).unwrap();
    }

    /// The sandbox dir as text, for configs.
    pub fn d(&self) -> String {
        self.sb.path().display().to_string()
    }

    pub fn layout(&self) -> Layout {
        Layout {
            root: self.sb.path().to_path_buf(),
        }
    }

    /// nginx's client address.
    pub fn addr(&self) -> SocketAddr {
        self.nginx.as_ref().expect("nginx runs").addr
    }

    /// Starts FPM (daemonized, as an init script does) and waits for `workers` workers.
    fn start_fpm(&self, workers: usize) -> i32 {
        let out = self.run_fpm();
        assert!(
            out.status.success(),
            "php-fpm failed to start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.sb.error_log()
        );
        let pid = self.sb.wait_for(Duration::from_secs(10), "a pid file", || {
            self.sb.pid_from_file()
        });
        self.sb.note_master(pid);
        self.sb.wait_for(Duration::from_secs(10), "workers", || {
            (self.sb.workers_of(pid).len() >= workers).then_some(())
        });
        pid
    }

    /// Runs `php-fpm -y CONF -D` and returns how it ended.
    fn run_fpm(&self) -> Output {
        Command::new(&self.sb.bin)
            .arg("-y")
            .arg(&self.sb.conf)
            .arg("-D")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Starts nginx with the config `conf(sandbox dir, port)`.
    fn start_nginx(&mut self, conf: impl Fn(&str, u16) -> String) {
        let d = self.d();
        self.nginx = Some(Nginx::start_with(&self.sb, |_, port| conf(&d, port)));
    }

    /// One GET through nginx.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        load::get(self.addr(), path, REQUEST_LIMIT)
    }

    /// `n` GETs of `path` through nginx at once; each one's outcome.
    pub fn burst(&self, path: &str, n: usize) -> Vec<Result<(u16, String), String>> {
        let addr = self.addr();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let path = path.to_string();
                std::thread::spawn(move || load::get(addr, &path, REQUEST_LIMIT))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// `n` sequential GETs of `path`, each answered with `status`.
    #[track_caller]
    fn expect_status(&self, path: &str, n: usize, status: u16) {
        for _ in 0..n {
            let mut got = self.get(path);
            // A connection nginx resets before answering (nginx itself logs nothing) is a
            // hiccup of the set-up, not an answer: ask again, a bounded few times.
            for _ in 0..3 {
                if !matches!(&got, Err(e) if e.contains("reset by peer")) {
                    break;
                }
                got = self.get(path);
            }
            assert!(
                matches!(got, Ok((s, _)) if s == status),
                "GET {path}: expected {status}, got {got:?}\n{}",
                self.logs()
            );
        }
    }

    pub fn nginx_error_log(&self) -> String {
        std::fs::read_to_string(self.layout().nginx_error_log()).unwrap_or_default()
    }

    /// Both daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- nginx error.log\n{}--- fpm.log\n{}---",
            self.nginx_error_log(),
            self.sb.error_log()
        )
    }

    /// Waits until `file` (relative to the sandbox dir) contains `needle`.
    #[track_caller]
    fn wait_log(&self, file: &str, needle: &str) {
        let path = self.sb.path().join(file);
        self.sb
            .wait_for(LOG_LIMIT, &format!("{needle:?} in {file}"), || {
                std::fs::read_to_string(&path)
                    .ok()
                    .filter(|s| s.contains(needle))
                    .map(|_| ())
            });
    }

    /// Asserts nginx's error log contains `needle` (it writes each line at once).
    #[track_caller]
    fn wait_nginx(&self, needle: &str) {
        self.wait_log("nginx/error.log", needle);
    }

    /// Finishes the incident as it ended on the server (see `after_live`), for recording.
    pub fn settle(&mut self) {
        if let Some(f) = self.after_live.take() {
            f(self);
        }
    }

    /// Copies this incident's files into `dest` (a corpus case dir, emptied first), with the
    /// sandbox dir rewritten to [`PLACEHOLDER`], and writes `expected.json`.
    pub fn record(&self, dest: &Path) {
        if dest.exists() {
            std::fs::remove_dir_all(dest).unwrap();
        }
        std::fs::create_dir_all(dest).unwrap();
        let prefix = self.d();
        for top in ["php-fpm.conf", "pool.d", "fpm.log", "www", "nginx"] {
            copy_tree(
                self.sb.path(),
                &self.sb.path().join(top),
                dest,
                &prefix,
                &self.omit,
            );
        }
        let expected = serde_json::to_string_pretty(&self.expected).unwrap() + "\n";
        std::fs::write(
            dest.join("expected.json"),
            expected.replace(&prefix, PLACEHOLDER),
        )
        .unwrap();
    }
}

/// nginx's runtime files and temp dirs: not part of a recording.
const NOT_RECORDED: [&str; 8] = [
    "nginx/nginx.pid",
    "nginx/nginx.out",
    "nginx/client_body",
    "nginx/proxy",
    "nginx/fastcgi",
    "nginx/uwsgi",
    "nginx/scgi",
    "fpm.pid",
];

/// Copies the regular files under `path` (a file or dir under `root`) to the same relative
/// place under `dest`, rewriting `prefix` to [`PLACEHOLDER`]; skips `omit` and runtime files.
fn copy_tree(root: &Path, path: &Path, dest: &Path, prefix: &str, omit: &[&str]) {
    let rel = path.strip_prefix(root).unwrap();
    let rel_s = rel.to_string_lossy();
    if omit.iter().any(|o| *o == rel_s) || NOT_RECORDED.contains(&rel_s.as_ref()) {
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            copy_tree(root, &e, dest, prefix, omit);
        }
    } else if meta.is_file() {
        let text = String::from_utf8(std::fs::read(path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not text: {e}", path.display()));
        let out = dest.join(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(out, text.replace(prefix, PLACEHOLDER)).unwrap();
    }
}

/// Copies a recorded case to `dest` with [`PLACEHOLDER`] replaced by `dest`, so that its
/// paths (includes, sockets, log references) point into the copy.
pub fn materialize(case_dir: &Path, dest: &Path) {
    fn walk(src: &Path, rel: &Path, dest: &Path) {
        for e in std::fs::read_dir(src.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(src, &r, dest);
            } else {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let out = dest.join(&r);
                std::fs::create_dir_all(out.parent().unwrap()).unwrap();
                let d = dest.display().to_string();
                std::fs::write(out, text.replace(PLACEHOLDER, &d)).unwrap();
            }
        }
    }
    walk(case_dir, Path::new(""), dest);
}
