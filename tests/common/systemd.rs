//! A real systemd for tests: Debian's systemd booted as PID 1 of a private PID and mount
//! namespace ([`Booted`]), with private tmpfs on `/run`, `/tmp` and `/var/log`, the tmpfiles
//! units masked (they would empty the host's `/tmp`), and every unit the host's targets want
//! masked too (nginx, databases, timers, udev, sysctl: nothing that would act on the shared
//! network, kernel or file systems). It boots `basic.target` and runs only what a test
//! starts. Units under test go to the namespace's own `/run/systemd/system`.
//!
//! The namespace's processes show in the host's process table; the tests only ever signal
//! processes of their own namespace (matched by its PID-namespace inode), by PID. Also a
//! bounded FastCGI [`Load`] and the checks the systemd tests share.
//!
//! Under `CI=true` a missing systemd, unshare or nsenter fails the test.

use fpmctl::deadline::Deadline;
use fpmctl::fastcgi;
use fpmctl::listen::ListenAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const FPMCTL: &str = env!("CARGO_BIN_EXE_fpmctl");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const DISTRO_UNIT: &str = "/lib/systemd/system/php8.2-fpm.service";

/// One booted systemd at a time: each holds a few processes and a journal.
static BOOT: Mutex<()> = Mutex::new(());

pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when `path` exists; otherwise a notice, or a failure under `CI=true`.
pub fn need(path: &str, what: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    assert!(
        !ci(),
        "{what} ({path}) is missing, and CI=true: install it (scripts/install-deps.sh does)"
    );
    eprintln!("NOTICE: {what} ({path}) missing; skipping this test");
    false
}

pub fn tools_present() -> bool {
    need("/lib/systemd/systemd", "systemd")
        && need("/usr/bin/unshare", "unshare (util-linux)")
        && need("/usr/bin/nsenter", "nsenter (util-linux)")
        && need("/usr/bin/cgi-fcgi", "cgi-fcgi (libfcgi-bin)")
        && super::fpm_bin().is_some()
}

/// A unit file from `packaging/systemd/` as the test installs it.
pub fn unit_text(rel: &str) -> String {
    let text = std::fs::read_to_string(Path::new(REPO).join("packaging/systemd").join(rel))
        .unwrap_or_else(|e| panic!("packaging/systemd/{rel}: {e}"));
    text.replace("/usr/bin/fpmctl", FPMCTL)
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}---",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The inode of a process's PID namespace, or `None` when it is gone.
pub fn pid_ns(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Host PIDs of the processes in PID namespace `ns` (systemd and everything it runs).
pub fn procs_in(ns: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| pid_ns(*pid).as_deref() == Some(ns))
        .collect()
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Files to put under the namespace's `/run/systemd/system`: (relative path, content).
pub type Units = Vec<(String, String)>;

/// systemd running as PID 1 of a private namespace; powered off (and, failing that,
/// SIGKILLed with everything in its namespace) on drop.
pub struct Booted {
    dir: tempfile::TempDir,
    unshare: Child,
    pub systemd: i32,
    ns: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Booted {
    /// Boots systemd with the units `prepare` returns; `prepare` gets the test's directory
    /// first (to write configs, and files in its private `etc-default/`, into). With
    /// `private_php_etc`, a private copy of `/etc/php/8.2/fpm` is bound over it, so a test may
    /// break the config.
    pub fn boot(private_php_etc: bool, prepare: impl FnOnce(&Path) -> Units) -> Booted {
        let serial = BOOT.lock().unwrap_or_else(|e| e.into_inner());
        // Outside /tmp: the namespace gets its own /tmp, and the test's files must be seen
        // from both sides.
        let dir = tempfile::Builder::new()
            .prefix("fpmctl-systemd-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // A private /etc/default (a copy, bound over it inside), so a test can write the
        // units' /etc/default/fpmctl-INSTANCE without touching the host's.
        let etc_default = dir.path().join("etc-default");
        let st = Command::new("cp")
            .args(["-a", "/etc/default"])
            .arg(&etc_default)
            .status()
            .unwrap();
        assert!(st.success(), "copying /etc/default");
        let units = dir.path().join("units");
        for (rel, content) in prepare(dir.path()) {
            let path = units.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
        }
        std::fs::create_dir_all(&units).unwrap();
        let mut bind = format!("mount --bind {} /etc/default\n", etc_default.display());
        if private_php_etc {
            let copy = dir.path().join("etc-php-fpm");
            let st = Command::new("cp")
                .args(["-a", "/etc/php/8.2/fpm"])
                .arg(&copy)
                .status()
                .unwrap();
            assert!(st.success(), "copying /etc/php/8.2/fpm");
            bind.push_str(&format!(
                "mount --bind {} /etc/php/8.2/fpm\n",
                copy.display()
            ));
        }
        let script = format!(
            r#"#!/bin/bash
set -e
# Private /run, /tmp and /var/log: systemd's boot must never touch the host's.
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/systemd/system
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/log
{bind}mask() {{ ln -sf /dev/null "/run/systemd/system/$1"; }}
for u in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
         systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer \
         systemd-remount-fs.service swap.target systemd-journald-dev-log.socket; do
    mask "$u"
done
# Nothing the host's targets want: only journald, and what a test starts itself.
for f in /lib/systemd/system/*.wants/* /etc/systemd/system/*.wants/*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    u=$(basename "$f")
    case "$u" in
        systemd-journald.service|systemd-journald.socket|php8.2-fpm.service) ;;
        *) mask "$u" ;;
    esac
done
if [ -f /usr/lib/tmpfiles.d/php8.2-fpm.conf ]; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/php8.2-fpm.conf
fi
cp -r {units}/. /run/systemd/system/
export container=other
exec /lib/systemd/systemd --system --unit=basic.target
"#,
            units = units.display()
        );
        let boot = dir.path().join("boot.sh");
        std::fs::write(&boot, script).unwrap();
        std::fs::set_permissions(&boot, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = std::fs::File::create(dir.path().join("boot.log")).unwrap();
        let unshare = Command::new("setsid")
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--propagation",
                "private",
                "--mount-proc",
                // Should this test die, unshare's death takes systemd and its namespace along.
                "--kill-child",
            ])
            .arg(&boot)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut booted = Booted {
            dir,
            unshare,
            systemd: 0,
            ns: PathBuf::new(),
            _serial: serial,
        };
        // The host-side PID of systemd: the child of unshare, once boot.sh exec'd it.
        let upid = booted.unshare.id();
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            let child = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok());
            if let Some(pid) = child
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
                && let Some(ns) = pid_ns(pid)
            {
                booted.systemd = pid;
                booted.ns = ns;
                break;
            }
            assert!(
                !deadline.expired(),
                "systemd did not start in the namespace:\n{}",
                booted.boot_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its bus socket appears a moment after the exec: ask until it answers.
        let deadline = Deadline::after(Duration::from_secs(60));
        loop {
            let out = booted.sh("timeout 60 systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                !deadline.expired(),
                "systemd did not finish booting: {state}\n{}\n{}\n{}",
                text(&out),
                booted.boot_log(),
                booted.journal("")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        booted
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn boot_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("boot.log")).unwrap_or_default()
    }

    /// Runs a shell command inside the namespace (bounded to two minutes).
    pub fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.systemd.to_string())
            .args(["-a", "timeout", "120", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn systemctl(&self, args: &str) -> Output {
        self.sh(&format!("systemctl {args}"))
    }

    /// `systemctl show -p PROP --value UNIT`.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        let out = self.systemctl(&format!("show -p {prop} --value {unit}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn journal(&self, unit: &str) -> String {
        let filter = if unit.is_empty() {
            String::new()
        } else {
            format!("-u {unit}")
        };
        let out = self.sh(&format!("journalctl --no-pager -n 80 {filter}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// fpmctl inside the namespace (PIDs in pid files are the namespace's own).
    pub fn fpmctl(&self, args: &str) -> Output {
        self.sh(&format!("{FPMCTL} {args}"))
    }

    /// php-fpm processes of this namespace, as host PIDs with their titles.
    pub fn fpm_processes(&self) -> Vec<(i32, String)> {
        procs_in(&self.ns)
            .into_iter()
            .map(|p| (p, cmdline(p)))
            .filter(|(_, c)| c.starts_with("php-fpm"))
            .collect()
    }

    #[track_caller]
    pub fn wait_for<T>(&self, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Deadline::after(limit);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                !deadline.expired(),
                "timed out waiting for {what}\n{}",
                self.journal("")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if self.systemd > 0 {
            let _ = self.sh("systemctl poweroff");
        }
        let deadline = Deadline::after(Duration::from_secs(30));
        while !deadline.expired() {
            if matches!(self.unshare.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Still up: SIGKILL our systemd (the kernel then kills its whole namespace), and
        // anything else left in that namespace, by PID.
        if self.systemd > 0 {
            for pid in procs_in(&self.ns) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A bounded request load: `clients` threads send FastCGI requests for a PHP script that
/// answers `ok` after 20 ms (so requests are in flight whenever FPM is signalled) to every
/// address in turn, until [`Load::finish`] or `max` requests in all. Loopback and unix
/// sockets only.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Writes the script [`Load`] asks for into `dir` (seen alike inside and outside the
/// namespace; readable by the pools' users) and returns its path.
pub fn load_script(dir: &Path) -> PathBuf {
    let php = dir.join("load.php");
    std::fs::write(&php, "<?php usleep(20000); echo 'ok';\n").unwrap();
    std::fs::set_permissions(&php, std::fs::Permissions::from_mode(0o644)).unwrap();
    php
}

impl Load {
    pub fn start(addrs: &[String], script: &Path, clients: usize, max: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let addrs: Vec<ListenAddr> = addrs
            .iter()
            .map(|a| ListenAddr::parse(a).unwrap())
            .collect();
        let script = script.display().to_string();
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok, sent, failures) =
                    (stop.clone(), ok.clone(), sent.clone(), failures.clone());
                let (addrs, script) = (addrs.clone(), script.clone());
                std::thread::spawn(move || {
                    let req = fastcgi::Request::get("/load.php").with_script_filename(script);
                    let mut n = i;
                    while !stop.load(Ordering::SeqCst) && sent.fetch_add(1, Ordering::SeqCst) < max
                    {
                        let addr = &addrs[n % addrs.len()];
                        n += 1;
                        match fastcgi::request(addr, &req, Duration::from_secs(30)) {
                            Ok(r) if r.status == 200 && r.body == b"ok" => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => failures.lock().unwrap().push(format!(
                                "{addr}: status {} body {:?} stderr {:?}",
                                r.status,
                                String::from_utf8_lossy(&r.body),
                                String::from_utf8_lossy(&r.stderr)
                            )),
                            Err(e) => failures.lock().unwrap().push(format!("{addr}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits until `more` requests beyond those answered so far were answered (or the load
    /// ran out of requests), so the load covers what just happened and a while after.
    pub fn run_past(&self, b: &Booted, more: usize) {
        let target = self.ok() + more;
        b.wait_for(Duration::from_secs(60), "the load to go on", || {
            (self.ok() >= target || self.threads.iter().all(|t| t.is_finished())).then_some(())
        });
    }

    /// Stops the load; returns (answered, failures).
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.ok(), failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[track_caller]
pub fn expect_no_failed_request(load: Load, min: usize, what: &str, b: &Booted, unit: &str) {
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed {what}: {:?}\n{}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)],
        b.journal(unit)
    );
    assert!(ok >= min, "only {ok} requests answered {what}");
}

/// Sets `process_control_timeout` in the booted copy of Debian's php-fpm.conf, which leaves
/// it commented out at 0.
pub fn set_process_control_timeout(b: &Booted, value: &str) {
    let conf_copy = b.path().join("etc-php-fpm/php-fpm.conf");
    let debian = std::fs::read_to_string(&conf_copy).unwrap();
    assert!(
        debian.contains("\n;process_control_timeout = 0\n"),
        "{debian}"
    );
    std::fs::write(
        &conf_copy,
        debian.replace(
            "\n;process_control_timeout = 0\n",
            &format!("\nprocess_control_timeout = {value}\n"),
        ),
    )
    .unwrap();
}

/// `systemctl stop UNIT` succeeds and every php-fpm process exits.
pub fn stop_unit(b: &Booted, unit: &str) {
    expect_ok(
        &b.systemctl(&format!("stop {unit}")),
        "systemctl stop",
        b,
        unit,
    );
    b.wait_for(
        Duration::from_secs(10),
        "every php-fpm process to exit",
        || b.fpm_processes().is_empty().then_some(()),
    );
}

pub fn expect_ok(out: &Output, what: &str, b: &Booted, unit: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        text(out),
        b.journal(unit)
    );
}

/// A PHP script that runs `secs` seconds of wall-clock time (a signal cannot cut it short
/// the way it cuts `sleep()`), answering `done`; it writes `marks/NAME` when it begins.
pub fn slow_script(dir: &Path, name: &str, secs: u32) -> PathBuf {
    let marks = dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let php = dir.join(format!("{name}.php"));
    std::fs::write(
        &php,
        format!(
            "<?php file_put_contents('{}/{name}', '1');\n\
             $end = microtime(true) + {secs}; while (microtime(true) < $end) usleep(50000);\n\
             echo 'done';\n",
            marks.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&php, std::fs::Permissions::from_mode(0o644)).unwrap();
    php
}
