//! Test harness: a sandboxed real php-fpm per test.
//!
//! Each [`Sandbox`] has its own temp dir, config, pid file, unix socket and free loopback
//! port. On drop it kills, by PID, every process of its config (found with the library's
//! discovery, plus every process group of a master it saw), and any helper child it
//! spawned, also when the test panicked; then it checks nothing is left.
#![allow(dead_code)]

pub mod incidents;
pub mod load;
pub mod logtime;
pub mod nginx;
pub mod stuck_log;
pub mod systemd;

use fpmctl::deadline::Deadline;
use fpmctl::procs::{self, ProcInfo};
use std::fmt;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The php-fpm binary, or `None` (a notice) when it is missing; under `CI=true` a missing
/// php-fpm fails the test instead of skipping it.
pub fn fpm_bin() -> Option<PathBuf> {
    for cand in [
        "/usr/sbin/php-fpm8.2",
        "/usr/sbin/php-fpm",
        "/usr/local/sbin/php-fpm",
    ] {
        if Path::new(cand).exists() {
            return Some(PathBuf::from(cand));
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("php-fpm is not installed, and CI=true: install php8.2-fpm (.ci/run does)");
    }
    eprintln!("NOTICE: php-fpm not installed; skipping this test");
    None
}

/// True when `pid` is alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    procs::read(pid).is_some_and(|p| !p.is_gone())
}

/// A request to `slow.php?s=SECS` on the sandbox's TCP pool, straight over FastCGI, in a
/// background thread; joins to the response body or the error.
pub fn slow_request(sb: &Sandbox, secs: u32) -> std::thread::JoinHandle<Result<String, String>> {
    let listen = fpmctl::listen::ListenAddr::parse(&sb.tcp_addr()).unwrap();
    let script = sb.docroot().join("slow.php");
    std::thread::spawn(move || {
        let mut req = fpmctl::fastcgi::Request::get("/slow.php");
        req.script_filename = script.display().to_string();
        req.query_string = format!("s={secs}");
        fpmctl::fastcgi::request(&listen, &req, Duration::from_secs(120))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .map_err(|e| e.to_string())
    })
}

/// Busy workers of the TCP pool, from its status page (the status request counts itself).
pub fn busy_workers(sb: &Sandbox) -> u64 {
    let listen = fpmctl::listen::ListenAddr::parse(&sb.tcp_addr()).unwrap();
    fpmctl::fastcgi::status(&listen, "/status", Duration::from_secs(2))
        .ok()
        .and_then(|v| v["active processes"].as_u64())
        .unwrap_or(0)
}

/// Waits until a slow request keeps a TCP worker busy.
#[track_caller]
pub fn wait_busy(sb: &Sandbox) {
    sb.wait_for(Duration::from_secs(5), "a busy worker", || {
        (busy_workers(sb) >= 2).then_some(())
    });
}

/// A free loopback TCP port, never one this test process handed out before: the kernel may
/// give a port it just released to the next `bind(0)`, and two sandboxes of one test must not
/// share an address. The port is bound then released, so it is taken below the kernel's
/// ephemeral range when there is room: a port from that range may meanwhile become the local
/// port of one of the many connections the load tests open, and FPM's bind then fails with
/// "Address already in use". Only explicit binds take a port below the range.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    /// The lowest port handed out below the ephemeral range.
    const LOW: u32 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let any = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The kernel's pick spreads the tries (and parallel test processes) over the room.
        let port = if ephemeral_start > LOW + 1000 {
            let candidate = (LOW + u32::from(any) % (ephemeral_start - LOW)) as u16;
            if TcpListener::bind(("127.0.0.1", candidate)).is_err() {
                continue;
            }
            candidate
        } else {
            any
        };
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// What one fpmctl run did, printable in full when an assertion fails.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ fpmctl {}\nexit {} after {:.2}s\n--- stdout\n{}--- stderr\n{}---",
            self.args.join(" "),
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// Options for a sandbox config.
#[derive(Clone)]
pub struct Opts {
    pub process_control_timeout: &'static str,
    /// Extra lines for the TCP pool.
    pub tcp_extra: String,
    /// Include the unix-socket pool.
    pub sock_pool: bool,
    /// Put everything in a directory of this name inside the temp dir (any bytes, e.g. not
    /// UTF-8), instead of in the temp dir itself.
    pub root_name: Option<&'static [u8]>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            process_control_timeout: "10s",
            tcp_extra: String::new(),
            sock_pool: true,
            root_name: None,
        }
    }
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// Where the sandbox's files are: the temp dir, or a directory in it (`Opts::root_name`).
    pub root: PathBuf,
    pub conf: PathBuf,
    pub pid_file: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub bin: PathBuf,
    pub opts: Opts,
    seen_masters: Mutex<Vec<i32>>,
    children: Mutex<Vec<Child>>,
}

impl Sandbox {
    /// A sandbox with the default config, or `None` when php-fpm is missing outside CI.
    pub fn new() -> Option<Sandbox> {
        Self::with(Opts::default())
    }

    pub fn with(opts: Opts) -> Option<Sandbox> {
        let bin = fpm_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("fpmctl-test-")
            .tempdir()
            .unwrap();
        // Workers run as nobody and must reach the scripts.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = match opts.root_name {
            Some(name) => {
                use std::os::unix::ffi::OsStrExt;
                let root = dir.path().join(std::ffi::OsStr::from_bytes(name));
                std::fs::create_dir(&root).unwrap();
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
                root
            }
            None => dir.path().to_path_buf(),
        };
        let sb = Sandbox {
            conf: root.join("php-fpm.conf"),
            pid_file: root.join("fpm.pid"),
            sock: root.join("fpm.sock"),
            root,
            port: free_port(),
            bin,
            opts,
            dir,
            seen_masters: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        };
        std::fs::create_dir_all(sb.docroot()).unwrap();
        std::fs::write(
            sb.docroot().join("hello.php"),
            "<?php echo 'hello from ', getmypid();\n",
        )
        .unwrap();
        std::fs::write(
            sb.docroot().join("slow.php"),
            // sleep() returns early when a signal arrives; loop until the deadline instead.
            "<?php $s = (int)($_GET['s'] ?? 5); $end = microtime(true) + $s;\n\
             while (microtime(true) < $end) { usleep(20000); }\necho 'slept ', $s;\n",
        )
        .unwrap();
        sb.write_config(&sb.config_text());
        Some(sb)
    }

    pub fn path(&self) -> &Path {
        self.root.as_path()
    }

    pub fn docroot(&self) -> PathBuf {
        self.root.as_path().join("www")
    }

    pub fn tcp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn config_text(&self) -> String {
        self.config_text_with(self.opts.clone())
    }

    /// The config this sandbox would write with other options (same paths and port).
    pub fn config_text_with(&self, opts: Opts) -> String {
        let d = self.root.as_path().display();
        let mut s = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = yes\nprocess_control_timeout = {pct}\n\n\
             [tcp]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = static\npm.max_children = 2\n\
             ping.path = /ping\npm.status_path = /status\n{extra}\n",
            pct = opts.process_control_timeout,
            port = self.port,
            extra = opts.tcp_extra,
        );
        if opts.sock_pool {
            s.push_str(&format!(
                "\n[sock]\nuser = nobody\ngroup = nogroup\nlisten = {d}/fpm.sock\nlisten.mode = 0666\n\
                 pm = dynamic\npm.max_children = 4\npm.start_servers = 2\npm.min_spare_servers = 1\npm.max_spare_servers = 3\n"
            ));
        }
        s
    }

    /// A config php-fpm -t accepts but with which FPM dies at start (exit 78): its pid file
    /// is in /proc, where it cannot be created.
    pub fn config_text_dying_at_start(&self) -> String {
        self.config_text().replace(
            &format!("pid = {}", self.pid_file.display()),
            &format!("pid = /proc/fpmctl-test-{}.pid", self.port),
        )
    }

    /// Writes the config. The sandbox's paths in `text` (as `display()` shows them, lossily
    /// when they are not UTF-8) are written with their real bytes.
    pub fn write_config(&self, text: &str) {
        use std::os::unix::ffi::OsStrExt;
        let shown = self.root.display().to_string();
        let real = self.root.as_os_str().as_bytes();
        let mut bytes = Vec::new();
        for (i, part) in text.split(shown.as_str()).enumerate() {
            if i > 0 {
                bytes.extend_from_slice(real);
            }
            bytes.extend_from_slice(part.as_bytes());
        }
        std::fs::write(&self.conf, bytes).unwrap();
    }

    /// Starts php-fpm directly (not through fpmctl), daemonized, and waits for its pid file.
    pub fn start_fpm(&self) -> i32 {
        let out = Command::new(&self.bin)
            .arg("-y")
            .arg(&self.conf)
            .arg("-D")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "php-fpm failed to start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.error_log()
        );
        let pid = self.wait_for(Duration::from_secs(10), "a pid file", || {
            self.pid_from_file()
        });
        self.note_master(pid);
        self.wait_for(Duration::from_secs(10), "workers", || {
            (self.workers_of(pid).len() >= 4 - if self.opts.sock_pool { 0 } else { 2 })
                .then_some(())
        });
        pid
    }

    /// Remembers a master so drop can clean up its process group.
    pub fn note_master(&self, pid: i32) {
        self.seen_masters.lock().unwrap().push(pid);
    }

    pub fn pid_from_file(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Live pool processes whose parent is `master`.
    pub fn workers_of(&self, master: i32) -> Vec<ProcInfo> {
        procs::scan(false)
            .into_iter()
            .filter(|p| p.ppid == master && p.title.starts_with("php-fpm: pool") && !p.is_gone())
            .collect()
    }

    /// Live php-fpm processes in the process group of `master` (its workers, orphaned or not).
    pub fn group_of(&self, master: i32) -> Vec<ProcInfo> {
        procs::scan(false)
            .into_iter()
            .filter(|p| p.pgrp == master && p.title.starts_with("php-fpm") && !p.is_gone())
            .collect()
    }

    /// Live masters titled for this sandbox's config.
    pub fn masters(&self) -> Vec<ProcInfo> {
        use std::os::unix::ffi::OsStrExt;
        let conf = fpmctl::lossless::decode(self.conf.as_os_str().as_bytes());
        let title = format!("php-fpm: master process ({conf})");
        let titled: Vec<ProcInfo> = procs::scan(false)
            .into_iter()
            .filter(|p| p.title == title && !p.is_gone())
            .collect();
        // A worker bears its master's title from its fork until it sets its own: a child of
        // a master is that master's worker, not a second master.
        let pids: Vec<i32> = titled.iter().map(|p| p.pid()).collect();
        titled
            .into_iter()
            .filter(|p| !pids.contains(&p.ppid))
            .collect()
    }

    /// SIGKILLs the master: its workers live on as orphans. Returns their PIDs.
    pub fn kill_master_hard(&self) -> Vec<i32> {
        let pid = self.pid_from_file().expect("a running master");
        let workers: Vec<i32> = self.workers_of(pid).iter().map(|p| p.pid()).collect();
        assert!(!workers.is_empty(), "master {pid} has no workers to orphan");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        self.wait_for(Duration::from_secs(5), "the master to die", || {
            procs::read(pid)
                .filter(|p| !p.is_gone())
                .is_none()
                .then_some(())
        });
        workers
    }

    /// Spawns a helper child (killed on drop).
    pub fn spawn(&self, cmd: &mut Command) -> u32 {
        let child = cmd.stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        pid
    }

    /// Runs fpmctl with `-c <config>` and the given arguments.
    pub fn fpmctl(&self, args: &[&str]) -> Run {
        self.fpmctl_env(args, &[])
    }

    pub fn fpmctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all: Vec<std::ffi::OsString> = vec!["-c".into(), self.conf.clone().into()];
        all.extend(args.iter().map(Into::into));
        run_fpmctl_os(&all, self.root.as_path(), env)
    }

    /// Starts fpmctl in the background (for races); the caller waits on it.
    pub fn fpmctl_spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.fpmctl_command(args);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        cmd.spawn().unwrap()
    }

    /// `fpmctl -c CONF ARGS` with this sandbox's lock directory, for a test that sets up
    /// stdio or signals itself. Spawned from Rust, the child has default signal dispositions.
    pub fn fpmctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fpmctl"));
        cmd.arg("-c").arg(&self.conf).args(args);
        cmd.env("FPMCTL_LOCK_DIR", self.root.as_path().join("locks"));
        cmd.current_dir(self.root.as_path());
        cmd
    }

    /// Starts `fpmctl -c CONF supervise ARGS` in the background (output to `supervise.log`
    /// in the sandbox); killed on drop if still running.
    pub fn supervise(&self, args: &[&str], env: &[(&str, &str)]) -> u32 {
        let log = std::fs::File::create(self.root.as_path().join("supervise.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fpmctl"));
        cmd.arg("-c").arg(&self.conf).arg("supervise").args(args);
        cmd.env("FPMCTL_LOCK_DIR", self.root.as_path().join("locks"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        self.spawn(&mut cmd)
    }

    pub fn supervise_log(&self) -> String {
        std::fs::read_to_string(self.root.as_path().join("supervise.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the supervisor's log says `needle`: the supervisor writes its log
    /// from a thread of its own, so a line may follow the event it tells of by a moment.
    #[track_caller]
    pub fn expect_log(&self, needle: &str) {
        let deadline = Deadline::after(Duration::from_secs(10));
        loop {
            let log = self.supervise_log();
            if log.contains(needle) {
                return;
            }
            if deadline.expired() {
                panic!("the supervisor's log never said {needle:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the supervisor reports a ready master; returns its PID.
    #[track_caller]
    pub fn wait_supervised_ready(&self) -> i32 {
        self.wait_for(
            Duration::from_secs(15),
            "the supervised FPM to be ready",
            || {
                let j: serde_json::Value =
                    serde_json::from_str(&self.fpmctl(&["status", "--json"]).stdout).ok()?;
                let sup = j.get("supervisor")?;
                (sup["ready"] == true).then(|| sup["master"].as_i64().unwrap() as i32)
            },
        )
    }

    /// Waits for a helper child to exit; its exit code.
    #[track_caller]
    pub fn wait_child(&self, pid: u32, limit: Duration) -> i32 {
        let deadline = Deadline::after(limit);
        loop {
            {
                let mut children = self.children.lock().unwrap();
                if let Some(c) = children.iter_mut().find(|c| c.id() == pid) {
                    if let Some(status) = c.try_wait().unwrap() {
                        return status.code().unwrap_or(-1);
                    }
                } else {
                    panic!("{pid} is not a child of this sandbox");
                }
            }
            if deadline.expired() {
                panic!(
                    "child {pid} still running after {limit:?}\nsupervise log:\n{}",
                    self.supervise_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts fpmctl in the background and returns once its log shows `needle`, collecting
    /// its stderr, so the test can signal it mid-step and read everything it said.
    #[track_caller]
    pub fn spawn_until(&self, args: &[&str], needle: &str) -> Spawned {
        use std::io::Read;
        let mut child = self.fpmctl_spawn(args);
        let mut err = child.stderr.take().unwrap();
        let seen = std::sync::Arc::new(Mutex::new(String::new()));
        let mut buf = [0u8; 256];
        while !seen.lock().unwrap().contains(needle) {
            let n = err.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "fpmctl {args:?} ended before logging {needle:?}: {}",
                seen.lock().unwrap()
            );
            seen.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let sink = std::sync::Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Spawned {
            child,
            args: args.iter().map(|s| s.to_string()).collect(),
            stderr: seen,
            reader: Some(reader),
        }
    }

    /// Starts fpmctl in the background and returns once its log shows `needle` (so it is in
    /// the middle of its work, holding the lock).
    #[track_caller]
    pub fn fpmctl_spawn_until(&self, args: &[&str], needle: &str) -> Child {
        use std::io::Read;
        let mut child = self.fpmctl_spawn(args);
        let mut err = child.stderr.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains(needle) {
            let n = err.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "fpmctl {args:?} ended before logging {needle:?}: {seen}"
            );
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        child
    }

    /// The lock directory fpmctl runs of this sandbox use (`$FPMCTL_LOCK_DIR`).
    pub fn lock_dir(&self) -> PathBuf {
        self.dir.path().join("locks")
    }

    /// Copies a program into the sandbox under `name` (mode 0755); its path.
    pub fn copy_program(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.dir.path().join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread that forked while the copy was open for writing holds that fd
        // until its child execs: until then exec fails with ETXTBSY. Wait for that to pass by
        // running the copy (`-v` prints a version for php-fpm and perl alike).
        self.wait_for(
            Duration::from_secs(10),
            "the copied program to be executable",
            || match Command::new(&to)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => None,
                _ => Some(()),
            },
        );
        to
    }

    /// Starts `perl` (any copy of it, under any name) running `script` with `$0` set to
    /// `title`, and waits until its process title shows it; its PID (killed on drop).
    pub fn spawn_titled_perl(&self, perl: &Path, title: &str, script: &str) -> i32 {
        let code = format!("$0 = $ENV{{FPMCTL_TEST_TITLE}}; {script}; sleep 600;");
        let pid = self.spawn(
            Command::new(perl)
                .arg("-e")
                .arg(code)
                .env("FPMCTL_TEST_TITLE", title),
        ) as i32;
        self.wait_for(Duration::from_secs(5), "the helper's process title", || {
            procs::read(pid).filter(|p| p.title == title).map(|_| ())
        });
        pid
    }

    /// Runs fpmctl on this sandbox's config as another user, through
    /// `setpriv --reuid USER --regid GROUP --clear-groups`.
    pub fn fpmctl_as(&self, user: &str, group: &str, args: &[&str]) -> Run {
        let started = Instant::now();
        let mut all: Vec<String> = vec!["-c".into(), self.conf.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let out = Command::new("setpriv")
            .args(["--reuid", user, "--regid", group, "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_fpmctl"))
            .args(&all)
            .current_dir(self.dir.path())
            .env("FPMCTL_LOCK_DIR", self.lock_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run {
            args: all,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.root.as_path().join("fpm.log")).unwrap_or_default()
    }

    /// Polls `f` (bounded, short pauses) until it returns `Some`, or panics after `limit`.
    #[track_caller]
    pub fn wait_for<T>(&self, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Deadline::after(limit);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if deadline.expired() {
                panic!(
                    "timed out after {limit:?} waiting for {what}\nFPM log:\n{}",
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sandbox's config as fpmctl loads it, with its php-fpm binary identified.
    pub fn fpm_config(&self) -> Option<fpmctl::config::FpmConfig> {
        let mut cfg = fpmctl::config::load(&self.conf).ok()?;
        cfg.binary = fpmctl::identity::FpmBinary::resolve(&self.bin).ok();
        Some(cfg)
    }

    /// Every live process of this sandbox: its config's FPM, orphans, helper children.
    pub fn leftovers(&self) -> Vec<ProcInfo> {
        let mut out: Vec<ProcInfo> = Vec::new();
        if let Some(cfg) = self.fpm_config() {
            let snap = fpmctl::discovery::discover(&cfg);
            out.extend(snap.all_processes().into_iter().cloned());
        }
        for m in self.masters() {
            out.push(m);
        }
        for pid in self.seen_masters.lock().unwrap().iter() {
            out.extend(self.group_of(*pid));
        }
        out.sort_by_key(|p| p.id);
        out.dedup_by_key(|p| p.id);
        out
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "--- sandbox {} config:\n{}",
                self.root.as_path().display(),
                std::fs::read_to_string(&self.conf).unwrap_or_default()
            );
            eprintln!("--- FPM log:\n{}", self.error_log());
        }
        for child in self.children.lock().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Kill by PID everything of this sandbox, a few rounds in case a master forks.
        for _ in 0..20 {
            let left = self.leftovers();
            if left.is_empty() {
                break;
            }
            for p in &left {
                let _ = fpmctl::signals::send_verified(p.id, nix::sys::signal::SIGKILL, |_| true);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let left = self.leftovers();
        if !left.is_empty() && !panicking {
            panic!("sandbox left processes behind: {left:?}");
        }
    }
}

/// An fpmctl running in the background whose stderr is being collected.
pub struct Spawned {
    pub child: Child,
    pub args: Vec<String>,
    stderr: std::sync::Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Spawned {
    /// Sends `sig` to the fpmctl process itself, by PID.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits (bounded) for it to exit; everything it printed.
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> Run {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut run = wait_run(&mut self.child, &args, limit);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        run.stderr = self.stderr.lock().unwrap().clone();
        run
    }
}

/// Waits (bounded) for a child fpmctl to exit; its output so far and exit code, printable.
#[track_caller]
pub fn wait_run(child: &mut Child, args: &[&str], limit: Duration) -> Run {
    use std::io::Read;
    let started = Instant::now();
    let deadline = Deadline::after_from(started, limit);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if deadline.expired() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fpmctl {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

/// A pipe whose buffer is already full: a process given the write end blocks on its first
/// write (until the read end, returned first, is read or closed).
pub fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (r, w) = nix::unistd::pipe().unwrap();
    let flags = OFlag::from_bits_truncate(fcntl(&w, FcntlArg::F_GETFL).unwrap());
    fcntl(&w, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    let chunk = [b'x'; 4096];
    while nix::unistd::write(&w, &chunk).is_ok() {}
    fcntl(&w, FcntlArg::F_SETFL(flags)).unwrap();
    (r, w)
}

/// Runs the fpmctl binary with the given arguments from `dir`, with locks under `dir`.
pub fn run_fpmctl(args: &[String], dir: &Path, env: &[(&str, &str)]) -> Run {
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    run_fpmctl_os(&args, dir, env)
}

/// [`run_fpmctl`] with arguments that may not be UTF-8.
pub fn run_fpmctl_os(args: &[std::ffi::OsString], dir: &Path, env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fpmctl"));
    cmd.args(args)
        .current_dir(dir)
        .env("FPMCTL_LOCK_DIR", dir.join("locks"))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().unwrap();
    Run {
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}
