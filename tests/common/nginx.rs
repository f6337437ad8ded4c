//! A real nginx in front of a sandbox's FPM, so tests see what a web server's clients see
//! (502s included) rather than what a FastCGI client sees.
//!
//! Everything nginx writes (config, pid, error log, temp dirs) stays in the sandbox dir; it
//! listens on a free loopback port and runs as our child in its own process group. Drop stops
//! it gracefully (SIGQUIT), then SIGKILLs its process group, and reaps it.

use super::{Sandbox, free_port};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// Whether nginx is installed; prints a notice when it is not. Under `CI=true` a missing
/// nginx fails the test instead of skipping it.
pub fn available() -> bool {
    if Path::new(NGINX_BIN).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("nginx is not installed, and CI=true: install nginx-light (.ci/run does)");
    }
    eprintln!("NOTICE: nginx not installed; skipping this test");
    false
}

/// How long nginx may take to accept connections after it is started.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long a graceful stop may take before the process group is killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);

pub struct Nginx {
    /// Where clients connect: `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    pub port: u16,
    /// The nginx config file.
    pub conf: PathBuf,
    /// nginx's own directory (prefix): pid file, error log, temp paths.
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx in front of the sandbox's two pools and waits until its port accepts.
    /// Panics (after cleaning up) when nginx is missing or does not come up.
    pub fn start(sb: &Sandbox) -> Nginx {
        Self::start_with(sb, |dir, port| config_text(sb, dir, port))
    }

    /// Starts nginx with the config `config(dir, port)` writes (nginx's directory, the free
    /// port it must listen on) and waits until that port accepts. The config is written to
    /// `<sandbox>/nginx/nginx.conf`; it is made again with a new port when a port race is lost.
    pub fn start_with(sb: &Sandbox, config: impl Fn(&Path, u16) -> String) -> Nginx {
        assert!(
            Path::new(NGINX_BIN).exists(),
            "{NGINX_BIN} is not installed (nginx-light)"
        );
        let dir = sb.path().join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        // A free port is only free until someone takes it: retry a lost race a few times.
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(&dir, port)).unwrap();
            let mut ng = Nginx {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                port,
                conf,
                dir: dir.clone(),
                child: None,
            };
            ng.spawn();
            match ng.wait_accepting() {
                Ok(()) => return ng,
                Err(e) => last_err = e,
            }
            // `ng` drops here: stopped and reaped before the next attempt.
        }
        panic!("nginx did not start: {last_err}");
    }

    fn spawn(&mut self) {
        let out = std::fs::File::create(self.dir.join("nginx.out")).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(NGINX_BIN)
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.dir)
            .arg("-e")
            .arg(self.dir.join("error.log"))
            // Log times in UTC whatever the host's zone (nginx keeps TZ for its workers), so
            // recorded logs read the same everywhere.
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {NGINX_BIN}: {e}"));
        self.child = Some(child);
    }

    /// Bounded polling until the port accepts a connection or nginx has exited.
    fn wait_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(how) = self.exited() {
                return Err(format!(
                    "nginx {how} before accepting on {}:\n{}",
                    self.addr,
                    self.logs()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx does not accept on {} after {START_LIMIT:?}:\n{}",
                    self.addr,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's PID (also its process group).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// How the master ended, if it has, without reaping it: while it is an unreaped zombie
    /// its PID, and so its process group ID, cannot be reused.
    fn exited(&self) -> Option<String> {
        let Some(pid) = self.pid() else {
            return Some("was never started".into());
        };
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Exited(_, code)) => Some(format!("exited with status {code}")),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("was killed by {sig}")),
            Ok(other) => Some(format!("ended ({other:?})")),
            Err(e) => Some(format!("cannot be waited for ({e})")),
        }
    }

    /// nginx's error log and its stdout/stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- nginx error.log\n{}--- nginx stdout/stderr\n{}---",
            read("error.log"),
            read("nginx.out")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if self.exited().is_none() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            let deadline = Instant::now() + STOP_LIMIT;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The master is exited-but-unreaped or still alive, so the group is still ours:
        // kill whatever is left in it (workers of a master that did not stop in time).
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

fn config_text(sb: &Sandbox, dir: &Path, port: u16) -> String {
    let d = dir.display();
    let www = sb.docroot();
    let www = www.display();
    let tcp = sb.tcp_addr();
    let sock = sb.sock.display();
    let location = |path: &str, exact: bool, upstream: &str, script: &str, slow: bool| {
        format!(
            "        location {eq}{path} {{\n\
             \x20           include /etc/nginx/fastcgi_params;\n\
             \x20           fastcgi_param SCRIPT_FILENAME {www}/{script};\n\
             \x20           fastcgi_pass {upstream};\n{timeout}\
             \x20       }}\n",
            eq = if exact { "= " } else { "" },
            timeout = if slow {
                "            fastcgi_read_timeout 120s;\n"
            } else {
                ""
            },
        )
    };
    let tcp_up = tcp.to_string();
    let sock_up = format!("unix:{sock}");
    format!(
        "daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{\n    worker_connections 512;\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       server_name localhost;\n\
         \x20       root {www};\n\
         {l_tcp}{l_sock}{l_slow_tcp}{l_slow_sock}\
         \x20   }}\n\
         }}\n",
        l_tcp = location("/tcp/", false, &tcp_up, "hello.php", false),
        l_sock = location("/sock/", false, &sock_up, "hello.php", false),
        l_slow_tcp = location("/slow/tcp", true, &tcp_up, "slow.php", true),
        l_slow_sock = location("/slow/sock", true, &sock_up, "slow.php", true),
    )
}
