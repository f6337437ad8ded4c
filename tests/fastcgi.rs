//! The FastCGI client against a real php-fpm, cross-checked with the reference client
//! `cgi-fcgi`.
//!
//! Every test starts its own php-fpm (`-n`: no php.ini, so the host's PHP settings do not
//! leak in) in its own temporary directory with three pools: `tcp` on a loopback port,
//! `unix` on a socket, both with ping and status pages, and `noping` on a socket with
//! neither. A guard stops that php-fpm, and only it, when the test ends or panics.
//!
//! Without php-fpm or cgi-fcgi the tests print a notice and pass, unless `CI=true`.

mod common;

use common::free_port;
use fpmctl::fastcgi::{self, FastCgiError, Phase, Request, Response};
use fpmctl::listen::{ListenAddr, TcpHost};
use fpmctl::{procs, signals};
use nix::sys::signal::Signal;
use std::fs;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PHP_FPM: &str = "/usr/sbin/php-fpm8.2";
const CGI_FCGI: &str = "/usr/bin/cgi-fcgi";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/php");
/// Generous for one request to a local pool, even with every test's FPM starting at once.
const TIMEOUT: Duration = Duration::from_secs(5);

/// True when every program is installed. Otherwise: on CI a failure, elsewhere a notice.
fn have(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !Path::new(p).is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{} not installed (packages php8.2-fpm and libfcgi-bin)",
        missing.join(" and ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}; CI=true, so this is a failure");
    }
    eprintln!("notice: skipping a php-fpm test: {message}");
    false
}

fn loopback(port: u16) -> ListenAddr {
    ListenAddr::Tcp {
        host: TcpHost::Ip(Ipv4Addr::LOCALHOST.into()),
        port,
    }
}

/// A php-fpm master started by this test, stopped on drop.
struct Fpm {
    child: Child,
    dir: tempfile::TempDir,
    tcp: ListenAddr,
    unix: ListenAddr,
    noping: ListenAddr,
}

impl Fpm {
    /// Starts php-fpm and waits until every pool answers; `None` if php-fpm is missing.
    fn start() -> Option<Fpm> {
        if !have(&[PHP_FPM]) {
            return None;
        }
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            match Fpm::try_start() {
                Ok(fpm) => return Some(fpm),
                // Another process took the port between our probe and FPM's bind.
                Err(log) if log.contains("Address already in use") && attempt < ATTEMPTS => {}
                Err(log) => panic!("php-fpm did not come up: {log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn try_start() -> Result<Fpm, String> {
        let dir = tempfile::Builder::new()
            .prefix("fpmctl-fastcgi-")
            .tempdir()
            .expect("create a temporary directory");
        // Workers run as nobody and must reach the scripts.
        let www = dir.path().join("www");
        fs::create_dir(&www).expect("create www");
        for d in [dir.path(), www.as_path()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        }
        for entry in fs::read_dir(FIXTURES).expect("read the PHP fixtures") {
            let from = entry.expect("fixture entry").path();
            let to = www.join(from.file_name().expect("fixture name"));
            fs::copy(&from, &to).expect("copy a fixture");
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).expect("chmod 0644");
        }
        let port = free_port();
        let d = dir.path().display();
        let pool = |name: &str, listen: &str, pages: bool| {
            let mut s = format!(
                "[{name}]\nlisten = {listen}\nlisten.mode = 0666\nuser = nobody\n\
                 group = nogroup\npm = static\npm.max_children = 2\n"
            );
            if pages {
                s.push_str("ping.path = /ping\npm.status_path = /status\n");
            }
            s
        };
        let config = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = no\n\n{}\n{}\n{}",
            pool("tcp", &format!("127.0.0.1:{port}"), true),
            pool("unix", &format!("{d}/unix.sock"), true),
            pool("noping", &format!("{d}/noping.sock"), false),
        );
        let conf = dir.path().join("php-fpm.conf");
        fs::write(&conf, config).expect("write php-fpm.conf");
        let stderr = fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");

        let mut command = Command::new(PHP_FPM);
        command
            .args(["-n", "-F", "-y"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // If this test process dies without running the guard, php-fpm still goes: SIGTERM
        // makes the master stop its workers too.
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn php-fpm");
        let mut fpm = Fpm {
            child,
            tcp: loopback(port),
            unix: ListenAddr::Unix(dir.path().join("unix.sock")),
            noping: ListenAddr::Unix(dir.path().join("noping.sock")),
            dir,
        };
        fpm.wait_until_ready()?;
        Ok(fpm)
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let quick = Duration::from_millis(500);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("php-fpm exited ({status}): {}", self.logs()));
            }
            // The daemon answers before every worker exists: count them too (3 pools x 2).
            let ready = self.workers() == 6
                && fastcgi::ping(&self.tcp, "/ping", quick).is_ok()
                && fastcgi::ping(&self.unix, "/ping", quick).is_ok()
                && fastcgi::probe(&self.noping, quick).is_ok();
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within 10s: {}", self.logs()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's children: its workers.
    fn workers(&self) -> usize {
        let pid = self.child.id();
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|s| s.split_whitespace().count())
            .unwrap_or(0)
    }

    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "\n--- fpm.log\n{}\n--- stderr\n{}",
            read("fpm.log"),
            read("stderr.log")
        )
    }

    /// The full path of a fixture script as the workers see it.
    fn script(&self, name: &str) -> String {
        self.dir.path().join("www").join(name).display().to_string()
    }

    /// A request for a fixture script, as a web server would send it.
    fn get(&self, script: &str, query: &str) -> Request {
        let uri = if query.is_empty() {
            format!("/{script}")
        } else {
            format!("/{script}?{query}")
        };
        Request::get(&uri).with_script_filename(self.script(script))
    }

    fn post(&self, script: &str, query: &str, content_type: &str, body: Vec<u8>) -> Request {
        Request {
            method: "POST".into(),
            content_type: content_type.into(),
            body,
            ..self.get(script, query)
        }
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGQUIT (graceful), then SIGKILL to the master and the workers it forked if it is still
/// there after a grace period; always reaps the master. Signals go through the library's
/// identity-checked sender, and waiting is on the master's pidfd.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let Some(master) = procs::read(child.id() as i32) else {
        let _ = child.wait();
        return;
    };
    let _ = signals::send_verified(master.id, Signal::SIGQUIT, |_| true);
    let left = signals::wait_gone(
        &[master.id],
        fpmctl::deadline::Deadline::after(Duration::from_secs(3)),
    );
    if !left.is_empty() {
        let workers: Vec<_> = procs::scan(false)
            .into_iter()
            .filter(|p| p.ppid == master.pid())
            .collect();
        let _ = signals::send_verified(master.id, Signal::SIGKILL, |_| true);
        for w in workers {
            let _ = signals::send_verified(w.id, Signal::SIGKILL, |_| true);
        }
    }
    let _ = child.wait();
}

/// Sends `req` with `cgi-fcgi -bind -connect`, passing exactly our client's parameters as
/// its environment and the body on stdin; returns its stdout and stderr.
fn cgi_fcgi(addr: &ListenAddr, req: &Request) -> (Vec<u8>, Vec<u8>) {
    let mut child = Command::new(CGI_FCGI)
        .args(["-bind", "-connect"])
        .arg(addr.to_string())
        .env_clear()
        .envs(req.params())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cgi-fcgi");
    let mut stdin = child.stdin.take().expect("cgi-fcgi stdin");
    let body = req.body.clone();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("cgi-fcgi stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("cgi-fcgi stderr")));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cgi-fcgi") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cgi-fcgi did not finish within 10s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = stdout.join().expect("cgi-fcgi stdout reader");
    let stderr = stderr.join().expect("cgi-fcgi stderr reader");
    assert!(
        status.success(),
        "cgi-fcgi failed ({status}): {}",
        String::from_utf8_lossy(&stderr)
    );
    (stdout, stderr)
}

/// Bytes with every value, in a pattern that shows misplaced or dropped chunks.
fn binary_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ping_answers_pong_over_tcp_and_unix() {
    let Some(fpm) = Fpm::start() else { return };
    for addr in [&fpm.tcp, &fpm.unix] {
        assert_eq!(
            fastcgi::ping(addr, "/ping", TIMEOUT).unwrap(),
            "pong",
            "{addr}"
        );
    }
    // A bare port is tried on IPv4 loopback first, where this pool listens.
    let ListenAddr::Tcp { port, .. } = fpm.tcp else {
        unreachable!()
    };
    let bare = ListenAddr::parse(&port.to_string()).unwrap();
    assert_eq!(fastcgi::ping(&bare, "/ping", TIMEOUT).unwrap(), "pong");
}

#[test]
fn status_json_has_the_pool_counters() {
    let Some(fpm) = Fpm::start() else { return };
    for (addr, pool) in [(&fpm.tcp, "tcp"), (&fpm.unix, "unix")] {
        let status = fastcgi::status(addr, "/status", TIMEOUT).unwrap();
        assert_eq!(status["pool"], pool, "{status}");
        assert_eq!(status["process manager"], "static", "{status}");
        assert_eq!(status["total processes"], 2, "{status}");
        for key in [
            "start time",
            "accepted conn",
            "listen queue",
            "idle processes",
            "active processes",
            "max children reached",
            "slow requests",
        ] {
            assert!(status[key].is_u64(), "{key} in {status}");
        }
        // The request asking for the status is itself running.
        assert!(status["active processes"].as_u64() >= Some(1), "{status}");

        let full = fastcgi::status(addr, "/status?full", TIMEOUT).unwrap();
        let processes = full["processes"].as_array().expect("a process list");
        assert_eq!(processes.len(), 2, "{full}");
        assert!(processes.iter().all(|p| p["pid"].is_u64()), "{full}");
    }
}

#[test]
fn a_post_body_over_70kb_round_trips() {
    let Some(fpm) = Fpm::start() else { return };
    let body = binary_body(150_000);
    for addr in [&fpm.tcp, &fpm.unix] {
        let req = fpm.post(
            "echo.php",
            "a=1&b=2",
            "application/octet-stream",
            body.clone(),
        );
        let resp = fastcgi::request(addr, &req, TIMEOUT).unwrap();
        let mut expected = b"method=POST\nquery=a=1&b=2\ncontent_type=application/octet-stream\n\
            length=150000\n\n"
            .to_vec();
        expected.extend_from_slice(&body);
        assert!(resp.body == expected, "{addr}: the echoed body differs");
        assert_eq!(text(&resp.stderr), "PHP message: echo.php POST", "{addr}");
    }
}

#[test]
fn a_custom_header_and_status_201_are_parsed() {
    let Some(fpm) = Fpm::start() else { return };
    let resp = fastcgi::request(&fpm.unix, &fpm.get("echo.php", "x=1"), TIMEOUT).unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("Status"), Some("201 Created"));
    assert_eq!(resp.header("x-fpmctl-echo"), Some("yes"));
    assert!(resp.header("Content-Type").is_some(), "{:?}", resp.headers);
    assert_eq!(
        text(&resp.body),
        "method=GET\nquery=x=1\ncontent_type=\nlength=0\n\n"
    );
    assert_eq!(resp.protocol_status, fastcgi::FCGI_REQUEST_COMPLETE);
    assert_eq!(resp.app_status, 0);
}

#[test]
fn parameters_spread_over_several_records_all_arrive() {
    let Some(fpm) = Fpm::start() else { return };
    let mut req = fpm.get("params.php", "");
    for i in 0..40 {
        req.extra_params
            .push((format!("FPMCTL_P{i:03}"), "p".repeat(4000)));
    }
    let resp = fastcgi::request(&fpm.tcp, &req, TIMEOUT).unwrap();
    assert_eq!(text(&resp.body), "count=40\nbytes=160000\n");
}

#[test]
fn probe_gets_an_answer_from_a_pool_without_ping() {
    let Some(fpm) = Fpm::start() else { return };
    let resp: Response = fastcgi::probe(&fpm.noping, TIMEOUT).unwrap();
    // FPM answers for the missing script itself; no PHP code runs.
    assert_eq!(resp.status, 404);
    assert_eq!(text(&resp.body), "File not found.\n");
    assert_eq!(text(&resp.stderr), "Primary script unknown");

    // The same pool has no ping page, so asking for one is a status error naming the pool.
    match fastcgi::ping(&fpm.noping, "/ping", TIMEOUT) {
        Err(err @ FastCgiError::Status { status: 404, .. }) => {
            assert!(err.to_string().contains("noping.sock"), "{err}");
        }
        other => panic!("expected a 404 status error, got {other:?}"),
    }
}

#[test]
fn a_slow_worker_hits_the_deadline_and_the_pool_still_answers() {
    let Some(fpm) = Fpm::start() else { return };
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    // Far longer than the deadline: the worker is still on it when the client gives up.
    let slow = fpm.get("sleep.php", "ms=30000");
    let err = fastcgi::request(&fpm.tcp, &slow, deadline).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            FastCgiError::Timeout {
                phase: Phase::Receive,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(took >= deadline, "{took:?}");
    assert!(err.to_string().contains(&fpm.tcp.to_string()), "{err}");
    // The client was cut off, not answered: the slow request is still running in FPM.
    let full = fastcgi::status(&fpm.tcp, "/status?full", TIMEOUT).unwrap();
    let processes = full["processes"].as_array().expect("a process list");
    assert!(
        processes
            .iter()
            .any(|p| p["state"] == "Running" && p["request uri"] == "/sleep.php?ms=30000"),
        "the slow request is no longer running: {full}"
    );
    // The other worker is free.
    assert_eq!(fastcgi::ping(&fpm.tcp, "/ping", TIMEOUT).unwrap(), "pong");
}

#[test]
fn connecting_to_a_free_port_is_a_connect_error_naming_it() {
    let addr = loopback(free_port());
    match fastcgi::ping(&addr, "/ping", TIMEOUT) {
        Err(err @ FastCgiError::Connect { .. }) => {
            let message = err.to_string();
            assert!(message.contains(&addr.to_string()), "{message}");
            assert!(message.contains("refused"), "{message}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn our_stdout_and_stderr_match_cgi_fcgi() {
    if !have(&[CGI_FCGI]) {
        return;
    }
    let Some(fpm) = Fpm::start() else { return };
    let requests = [
        Request::get("/ping"),
        fpm.get("echo.php", "a=1&b=%20two"),
        fpm.post(
            "echo.php",
            "big",
            "application/octet-stream",
            binary_body(100_000),
        ),
        fpm.post("echo.php", "", "text/plain", b"short body".to_vec()),
        fpm.get("missing.php", ""),
        fastcgi::probe_request(),
    ];
    for addr in [&fpm.tcp, &fpm.unix] {
        for req in &requests {
            let ours = fastcgi::request(addr, req, TIMEOUT).unwrap();
            let (stdout, stderr) = cgi_fcgi(addr, req);
            // Nothing in these answers depends on time, so the bytes must be identical.
            assert!(
                ours.stdout == stdout,
                "{addr} {}: stdout differs\nours:   {:?}\ntheirs: {:?}",
                req.request_uri,
                text(&ours.stdout[..ours.stdout.len().min(300)]),
                text(&stdout[..stdout.len().min(300)]),
            );
            assert_eq!(
                text(&ours.stderr),
                text(&stderr),
                "{addr} {}",
                req.request_uri
            );
        }

        // The status page changes between two requests (counters, durations): compare the
        // headers exactly and the JSON by its keys.
        let req = Request::get("/status?json");
        let ours = fastcgi::request(addr, &req, TIMEOUT).unwrap();
        let (stdout, _) = cgi_fcgi(addr, &req);
        let split = |bytes: &[u8]| -> (String, serde_json::Value) {
            let all = text(bytes);
            let (head, body) = all.split_once("\r\n\r\n").expect("CGI headers");
            (
                head.to_string(),
                serde_json::from_str(body).expect("status JSON"),
            )
        };
        let (our_head, our_json) = split(&ours.stdout);
        let (their_head, their_json) = split(&stdout);
        assert_eq!(our_head, their_head, "{addr}");
        let keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&our_json), keys(&their_json), "{addr}");
        assert_eq!(our_json["pool"], their_json["pool"], "{addr}");
    }
}
