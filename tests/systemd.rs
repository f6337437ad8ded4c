//! The units in `packaging/systemd/` under a real systemd: Debian's systemd booted as PID 1 of
//! a private PID and mount namespace, with private tmpfs on `/run`, `/tmp` and `/var/log`, the
//! tmpfiles units masked (they would empty the host's `/tmp`), and every unit the host's
//! targets want masked too (nginx, databases, timers, udev, sysctl: nothing that would act on
//! the shared network, kernel or file systems). It boots `basic.target` and runs only what a
//! test starts. Units under test go to the namespace's own `/run/systemd/system`, with
//! `/usr/bin/fpmctl` replaced by the binary under test.
//!
//! The namespace's processes show in the host's process table; the tests only ever signal
//! processes of their own namespace (matched by its PID-namespace inode), by PID.
//! `systemd-analyze verify` runs on every unit, no namespace needed.
//!
//! Under `CI=true` a missing systemd, unshare or nsenter fails the test.

mod common;

use fpmctl::deadline::Deadline;
use fpmctl::fastcgi;
use fpmctl::listen::ListenAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FPMCTL: &str = env!("CARGO_BIN_EXE_fpmctl");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const DISTRO_UNIT: &str = "/lib/systemd/system/php8.2-fpm.service";

/// One booted systemd at a time: each holds a few processes and a journal.
static BOOT: Mutex<()> = Mutex::new(());

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when `path` exists; otherwise a notice, or a failure under `CI=true`.
fn need(path: &str, what: &str) -> bool {
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

fn tools_present() -> bool {
    need("/lib/systemd/systemd", "systemd")
        && need("/usr/bin/unshare", "unshare (util-linux)")
        && need("/usr/bin/nsenter", "nsenter (util-linux)")
        && need("/usr/bin/cgi-fcgi", "cgi-fcgi (libfcgi-bin)")
        && common::fpm_bin().is_some()
}

/// A unit file from `packaging/systemd/` as the test installs it.
fn unit_text(rel: &str) -> String {
    let text = std::fs::read_to_string(Path::new(REPO).join("packaging/systemd").join(rel))
        .unwrap_or_else(|e| panic!("packaging/systemd/{rel}: {e}"));
    text.replace("/usr/bin/fpmctl", FPMCTL)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}---",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The inode of a process's PID namespace, or `None` when it is gone.
fn pid_ns(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Host PIDs of the processes in PID namespace `ns` (systemd and everything it runs).
fn procs_in(ns: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| pid_ns(*pid).as_deref() == Some(ns))
        .collect()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Files to put under the namespace's `/run/systemd/system`: (relative path, content).
type Units = Vec<(String, String)>;

/// systemd running as PID 1 of a private namespace; powered off (and, failing that,
/// SIGKILLed with everything in its namespace) on drop.
struct Booted {
    dir: tempfile::TempDir,
    unshare: Child,
    systemd: i32,
    ns: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Booted {
    /// Boots systemd with the units `prepare` returns; `prepare` gets the test's directory
    /// first (to write configs, and files in its private `etc-default/`, into). With
    /// `private_php_etc`, a private copy of `/etc/php/8.2/fpm` is bound over it, so a test may
    /// break the config.
    fn boot(private_php_etc: bool, prepare: impl FnOnce(&Path) -> Units) -> Booted {
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

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn boot_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("boot.log")).unwrap_or_default()
    }

    /// Runs a shell command inside the namespace (bounded to two minutes).
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.systemd.to_string())
            .args(["-a", "timeout", "120", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn systemctl(&self, args: &str) -> Output {
        self.sh(&format!("systemctl {args}"))
    }

    /// `systemctl show -p PROP --value UNIT`.
    fn prop(&self, unit: &str, prop: &str) -> String {
        let out = self.systemctl(&format!("show -p {prop} --value {unit}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn journal(&self, unit: &str) -> String {
        let filter = if unit.is_empty() {
            String::new()
        } else {
            format!("-u {unit}")
        };
        let out = self.sh(&format!("journalctl --no-pager -n 80 {filter}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// fpmctl inside the namespace (PIDs in pid files are the namespace's own).
    fn fpmctl(&self, args: &str) -> Output {
        self.sh(&format!("{FPMCTL} {args}"))
    }

    /// php-fpm processes of this namespace, as host PIDs with their titles.
    fn fpm_processes(&self) -> Vec<(i32, String)> {
        procs_in(&self.ns)
            .into_iter()
            .map(|p| (p, cmdline(p)))
            .filter(|(_, c)| c.starts_with("php-fpm"))
            .collect()
    }

    #[track_caller]
    fn wait_for<T>(&self, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Writes the script [`Load`] asks for into `dir` (seen alike inside and outside the
/// namespace; readable by the pools' users) and returns its path.
fn load_script(dir: &Path) -> PathBuf {
    let php = dir.join("load.php");
    std::fs::write(&php, "<?php usleep(20000); echo 'ok';\n").unwrap();
    std::fs::set_permissions(&php, std::fs::Permissions::from_mode(0o644)).unwrap();
    php
}

impl Load {
    fn start(addrs: &[String], script: &Path, clients: usize, max: usize) -> Load {
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

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits until `more` requests beyond those answered so far were answered (or the load
    /// ran out of requests), so the load covers what just happened and a while after.
    fn run_past(&self, b: &Booted, more: usize) {
        let target = self.ok() + more;
        b.wait_for(Duration::from_secs(60), "the load to go on", || {
            (self.ok() >= target || self.threads.iter().all(|t| t.is_finished())).then_some(())
        });
    }

    /// Stops the load; returns (answered, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
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
fn expect_no_failed_request(load: Load, min: usize, what: &str, b: &Booted, unit: &str) {
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

fn expect_ok(out: &Output, what: &str, b: &Booted, unit: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        text(out),
        b.journal(unit)
    );
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    if !need("/usr/bin/systemd-analyze", "systemd-analyze (systemd)")
        || !need("/usr/bin/man", "man-db")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    let man = dir.path().join("man");
    std::fs::create_dir_all(units.join("php8.2-fpm.service.d")).unwrap();
    // Documentation=man:fpmctl-supervise(1) must resolve: the pages as the package installs them.
    let out = Command::new(FPMCTL)
        .args(["generate", "man"])
        .arg(man.join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        units.join("fpmctl-supervise@.service"),
        unit_text("fpmctl-supervise@.service"),
    )
    .unwrap();
    std::fs::write(
        units.join("php8.2-fpm.service.d/fpmctl.conf"),
        unit_text("php8.2-fpm.service.d/fpmctl.conf"),
    )
    .unwrap();
    let mut names = vec!["fpmctl-supervise@8.2.service"];
    // The drop-in is verified on the distribution's own unit.
    if Path::new(DISTRO_UNIT).exists() || ci() {
        std::fs::copy(DISTRO_UNIT, units.join("php8.2-fpm.service")).unwrap();
        names.push("php8.2-fpm.service");
    }
    for name in names {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(name)
            .current_dir(&units)
            // The unit search path: these units first, then the system's.
            .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
            .env("MANPATH", format!("{}:", man.display()))
            .output()
            .unwrap();
        // verify exits 0 on some problems (unknown keys) and only says so on stderr.
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {name}:\n{}",
            text(&out)
        );
    }
}

/// Debian's php8.2-fpm.service with the fpmctl drop-in: starts through `fpmctl check`,
/// reloads through `fpmctl reload` (same master, ready), refuses a reload with a broken config
/// (systemctl fails, the old FPM serves), and stops leaving no process behind.
#[test]
fn the_distribution_unit_with_the_drop_in_starts_reloads_refuses_a_broken_config_and_stops() {
    if !tools_present() || !need(DISTRO_UNIT, "php8.2-fpm's systemd unit") {
        return;
    }
    let b = Booted::boot(true, |_| {
        vec![(
            "php8.2-fpm.service.d/fpmctl.conf".into(),
            unit_text("php8.2-fpm.service.d/fpmctl.conf"),
        )]
    });
    let unit = "php8.2-fpm.service";
    let conf = "/etc/php/8.2/fpm/php-fpm.conf";
    // Debian leaves process_control_timeout at 0: a USR2 reload then kills the requests in
    // flight at once. With a grace period the workers finish them, and connections that
    // arrive while the master re-executes wait in the backlog of the sockets it keeps.
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
            "\nprocess_control_timeout = 10s\n",
        ),
    )
    .unwrap();
    let script = load_script(b.path());
    let socket = format!("/proc/{}/root/run/php/php8.2-fpm.sock", b.systemd);
    expect_ok(
        &b.systemctl("start php8.2-fpm"),
        "systemctl start",
        &b,
        unit,
    );
    assert!(b.prop(unit, "ExecStartPre").contains(&format!("{FPMCTL} ")));
    let reload = b.prop(unit, "ExecReload");
    assert!(
        reload.contains(FPMCTL) && reload.contains("reload") && !reload.contains("/bin/kill"),
        "ExecReload not replaced: {reload}"
    );
    let journal = b.journal(unit);
    assert!(journal.contains("check passed"), "{journal}");
    let master = b.prop(unit, "MainPID");
    assert_ne!(master, "0");
    expect_ok(
        &b.fpmctl(&format!("--no-systemd -c {conf} ping")),
        "ping",
        &b,
        unit,
    );

    // A good reload under load: systemctl waits for fpmctl, which proves the re-executed
    // master ready, and no request fails.
    let load = Load::start(std::slice::from_ref(&socket), &script, 4, 2000);
    load.run_past(&b, 50);
    expect_ok(
        &b.systemctl("reload php8.2-fpm"),
        "systemctl reload",
        &b,
        unit,
    );
    load.run_past(&b, 50);
    expect_no_failed_request(load, 100, "during systemctl reload", &b, unit);
    assert_eq!(b.prop(unit, "MainPID"), master, "USR2 re-executes in place");
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    let journal = b.journal(unit);
    assert!(journal.contains("reloaded FPM"), "{journal}");
    expect_ok(
        &b.fpmctl(&format!("--no-systemd -c {conf} ping")),
        "ping after reload",
        &b,
        unit,
    );

    // An operator's `fpmctl reload` goes through systemctl, whose ExecReload is fpmctl again:
    // the outer run must not hold the config's lock while the inner one needs it.
    let out = b.fpmctl(&format!("-c {conf} reload"));
    expect_ok(&out, "fpmctl reload through systemd", &b, unit);
    assert_eq!(b.prop(unit, "MainPID"), master);
    // And `fpmctl restart`: the drop-in's ExecReload is fpmctl's reload, so the unit is
    // reloaded (same lock rule), and the master re-executes in place.
    let out = b.fpmctl(&format!("-c {conf} restart"));
    expect_ok(&out, "fpmctl restart through systemd", &b, unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "restarted through systemd: systemctl reload php8.2-fpm.service (USR2 re-exec, sockets kept)\n"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(b.prop(unit, "MainPID"), master);
    assert_eq!(b.prop(unit, "ActiveState"), "active");

    // A broken config: the reload fails as systemctl sees it, the old FPM keeps serving.
    let good = std::fs::read_to_string(&conf_copy).unwrap();
    std::fs::write(&conf_copy, format!("{good}\nthis line is broken\n")).unwrap();
    let out = b.systemctl("reload php8.2-fpm");
    assert!(
        !out.status.success(),
        "reload with a broken config succeeded:\n{}",
        text(&out)
    );
    assert_eq!(b.prop(unit, "MainPID"), master, "{}", b.journal(unit));
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    // fpmctl itself refuses the broken config now; FPM's own FastCGI answer proves it serves.
    let out = b.sh(
        "SCRIPT_NAME=/fpmctl-test SCRIPT_FILENAME=/fpmctl-test REQUEST_METHOD=GET \
         cgi-fcgi -bind -connect /run/php/php8.2-fpm.sock",
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("Status: 404"),
        "FPM did not answer after the refused reload:\n{}",
        text(&out)
    );
    std::fs::write(&conf_copy, good).unwrap();
    expect_ok(
        &b.fpmctl(&format!("--no-systemd -c {conf} ping")),
        "ping after the refused reload",
        &b,
        unit,
    );
    assert_eq!(b.prop(unit, "MainPID"), master);

    // Stop: no master, no worker, no orphan left in the namespace.
    assert!(!b.fpm_processes().is_empty());
    expect_ok(&b.systemctl("stop php8.2-fpm"), "systemctl stop", &b, unit);
    b.wait_for(
        Duration::from_secs(10),
        "every php-fpm process to exit",
        || b.fpm_processes().is_empty().then_some(()),
    );
    assert_eq!(b.prop(unit, "Result"), "success", "{}", b.journal(unit));
}

/// A PHP script that runs `secs` seconds of wall-clock time (a signal cannot cut it short
/// the way it cuts `sleep()`), answering `done`; it writes `marks/NAME` when it begins.
fn slow_script(dir: &Path, name: &str, secs: u32) -> PathBuf {
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

/// `fpmctl restart` on Debian's own php8.2-fpm.service (ExecReload `kill -USR2 $MAINPID`):
/// the unit is reloaded, not restarted. Under a concurrent load no request fails, a request
/// that runs 10 s completes with its full body, and the master stays the unit's MainPID.
/// `restart --cold` goes through `systemctl restart` and says so.
#[test]
fn restart_of_the_distribution_unit_reloads_it_and_drops_no_request() {
    if !tools_present() || !need(DISTRO_UNIT, "php8.2-fpm's systemd unit") {
        return;
    }
    let b = Booted::boot(true, |_| Vec::new());
    let unit = "php8.2-fpm.service";
    let conf = "/etc/php/8.2/fpm/php-fpm.conf";
    // A grace period longer than the slow request: the reload lets it finish.
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
            "\nprocess_control_timeout = 30s\n",
        ),
    )
    .unwrap();
    let script = load_script(b.path());
    let slow = slow_script(b.path(), "slow", 10);
    let socket = format!("/proc/{}/root/run/php/php8.2-fpm.sock", b.systemd);
    expect_ok(
        &b.systemctl("start php8.2-fpm"),
        "systemctl start",
        &b,
        unit,
    );
    assert_eq!(
        b.prop(unit, "ExecReload")
            .split(" ; ")
            .find(|f| f.starts_with("argv[]="))
            .unwrap_or_default(),
        "argv[]=/bin/kill -USR2 $MAINPID",
        "the distribution's unit as shipped"
    );
    let master = b.prop(unit, "MainPID");
    assert_ne!(master, "0");

    let load = Load::start(std::slice::from_ref(&socket), &script, 4, 100_000);
    load.run_past(&b, 50);
    let inflight = {
        let (addr, slow) = (
            ListenAddr::parse(&socket).unwrap(),
            slow.display().to_string(),
        );
        std::thread::spawn(move || {
            let req = fastcgi::Request::get("/slow.php").with_script_filename(slow);
            fastcgi::request(&addr, &req, Duration::from_secs(90))
        })
    };
    b.wait_for(Duration::from_secs(20), "the slow request to begin", || {
        b.path().join("marks/slow").exists().then_some(())
    });
    let out = b.fpmctl(&format!("-c {conf} restart --wait"));
    expect_ok(&out, "fpmctl restart --wait", &b, unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "restarted through systemd: systemctl reload php8.2-fpm.service (USR2 re-exec, sockets kept)\n"
        ),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains(&format!(
            "re-executed FPM {conf} (master {master}); ready in"
        )),
        "{}",
        text(&out)
    );
    // The request that began before the restart ran its 10 s to the end.
    let answer = inflight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the slow request failed: {e}\n{}", b.journal(unit)));
    assert_eq!(
        (
            answer.status,
            String::from_utf8_lossy(&answer.body).as_ref()
        ),
        (200, "done"),
        "{answer:?}"
    );
    load.run_past(&b, 50);
    expect_no_failed_request(load, 100, "during fpmctl restart", &b, unit);
    assert_eq!(b.prop(unit, "MainPID"), master, "USR2 re-executes in place");
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    assert_eq!(b.prop(unit, "NRestarts"), "0");

    // --cold: systemctl restart, a new main process, and the output says so.
    let out = b.fpmctl(&format!("-c {conf} restart --cold --json"));
    expect_ok(&out, "fpmctl restart --cold", &b, unit);
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(j["mode"], "systemd-restart", "{j}");
    assert_eq!(j["cold_reason"], "--cold", "{j}");
    assert_eq!(
        j["done"],
        "restarted through systemd: systemctl restart php8.2-fpm.service (stop, then start: --cold)",
        "{j}"
    );
    let cold_master = b.prop(unit, "MainPID");
    assert_ne!(cold_master, master);
    assert_ne!(cold_master, "0");
    assert_eq!(j["start"]["master"].to_string(), cold_master, "{j}");
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    let journal = b.journal(unit);
    assert!(journal.contains("Stopping"), "{journal}");
    expect_ok(
        &b.fpmctl(&format!("--no-systemd -c {conf} ping")),
        "ping after the cold restart",
        &b,
        unit,
    );

    expect_ok(&b.systemctl("stop php8.2-fpm"), "systemctl stop", &b, unit);
    b.wait_for(
        Duration::from_secs(10),
        "every php-fpm process to exit",
        || b.fpm_processes().is_empty().then_some(()),
    );
}

/// A unit without ExecReload cannot re-execute FPM: `fpmctl restart` falls back to
/// `systemctl restart` and gives the reason in one line.
#[test]
fn restart_of_a_unit_that_cannot_reload_falls_back_to_systemctl_restart_and_says_why() {
    if !tools_present() {
        return;
    }
    let fpm = common::fpm_bin().unwrap();
    let b = Booted::boot(false, |dir| {
        let sb = dir.join("sb");
        std::fs::create_dir_all(&sb).unwrap();
        let d = sb.display();
        std::fs::write(
            sb.join("php-fpm.conf"),
            format!(
                "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\nprocess_control_timeout = 10s\n\n\
                 [sock]\nuser = nobody\ngroup = nogroup\nlisten = {d}/fpm.sock\nlisten.mode = 0666\n\
                 pm = static\npm.max_children = 2\nping.path = /ping\n"
            ),
        )
        .unwrap();
        vec![(
            "fpmctl-test-fpm.service".to_string(),
            format!(
                "[Service]\nType=notify\nExecStart={} --nodaemonize --fpm-config {d}/php-fpm.conf\n",
                fpm.display()
            ),
        )]
    });
    let unit = "fpmctl-test-fpm.service";
    let conf = b.path().join("sb/php-fpm.conf");
    let conf = conf.display();
    expect_ok(
        &b.systemctl(&format!("start {unit}")),
        "systemctl start",
        &b,
        unit,
    );
    assert_eq!(b.prop(unit, "CanReload"), "no");
    let master = b.prop(unit, "MainPID");
    assert_ne!(master, "0");

    let out = b.fpmctl(&format!("-c {conf} restart"));
    expect_ok(&out, "fpmctl restart", &b, unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let why: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("ExecReload"))
        .collect();
    assert_eq!(
        why,
        [format!(
            "restarted through systemd: systemctl restart {unit} (stop, then start: {unit} has no ExecReload, so it cannot reload)"
        )],
        "{}",
        text(&out)
    );
    let new_master = b.prop(unit, "MainPID");
    assert_ne!(new_master, master);
    assert_ne!(new_master, "0");
    assert!(
        stdout.contains(&format!(
            "restarted FPM {conf} (master {new_master}); ready in"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    expect_ok(
        &b.fpmctl(&format!("-c {conf} ping")),
        "ping after the restart",
        &b,
        unit,
    );
    expect_ok(
        &b.systemctl(&format!("stop {unit}")),
        "systemctl stop",
        &b,
        unit,
    );
    b.wait_for(
        Duration::from_secs(10),
        "every php-fpm process to exit",
        || b.fpm_processes().is_empty().then_some(()),
    );
}

/// A `Type=forking` unit (FPM daemonizes, `PIDFile=`) whose ExecReload is the USR2 re-exec:
/// the re-executed master daemonizes again under a new PID, which systemd follows through the
/// pid file; `fpmctl restart` waits for that master, and no request fails.
#[test]
fn restart_of_a_forking_unit_reloads_it_and_follows_the_new_master() {
    if !tools_present() {
        return;
    }
    let fpm = common::fpm_bin().unwrap();
    let b = Booted::boot(false, |dir| {
        let sb = dir.join("sb");
        std::fs::create_dir_all(&sb).unwrap();
        let d = sb.display();
        std::fs::write(
            sb.join("php-fpm.conf"),
            format!(
                "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\nprocess_control_timeout = 10s\n\n\
                 [sock]\nuser = nobody\ngroup = nogroup\nlisten = {d}/fpm.sock\nlisten.mode = 0666\n\
                 pm = static\npm.max_children = 2\nping.path = /ping\n"
            ),
        )
        .unwrap();
        vec![(
            "fpmctl-test-forking.service".to_string(),
            format!(
                "[Service]\nType=forking\nPIDFile={d}/fpm.pid\n\
                 ExecStart={} --daemonize --fpm-config {d}/php-fpm.conf\n\
                 ExecReload=/bin/kill -USR2 $MAINPID\n",
                fpm.display()
            ),
        )]
    });
    let unit = "fpmctl-test-forking.service";
    let conf = b.path().join("sb/php-fpm.conf");
    let conf = conf.display();
    expect_ok(
        &b.systemctl(&format!("start {unit}")),
        "systemctl start",
        &b,
        unit,
    );
    let master = b.prop(unit, "MainPID");
    assert_ne!(master, "0");
    let script = load_script(b.path());
    let socket = b.path().join("sb/fpm.sock").display().to_string();
    let load = Load::start(std::slice::from_ref(&socket), &script, 4, 100_000);
    load.run_past(&b, 50);
    let out = b.fpmctl(&format!("-c {conf} restart --json"));
    expect_ok(&out, "fpmctl restart", &b, unit);
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(j["mode"], "systemd-reload", "{j}");
    assert_eq!(
        j["done"],
        format!("restarted through systemd: systemctl reload {unit} (USR2 re-exec, sockets kept)"),
        "{j}"
    );
    let new_master = j["start"]["master"].to_string();
    assert_ne!(
        new_master, master,
        "a daemonizing FPM re-executes under a new PID"
    );
    load.run_past(&b, 50);
    expect_no_failed_request(load, 100, "during fpmctl restart", &b, unit);
    b.wait_for(
        Duration::from_secs(10),
        "systemd to follow the new master",
        || (b.prop(unit, "MainPID") == new_master).then_some(()),
    );
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    expect_ok(&b.fpmctl(&format!("-c {conf} ping")), "ping", &b, unit);
    expect_ok(
        &b.systemctl(&format!("stop {unit}")),
        "systemctl stop",
        &b,
        unit,
    );
    b.wait_for(
        Duration::from_secs(10),
        "every php-fpm process to exit",
        || b.fpm_processes().is_empty().then_some(()),
    );
}

/// `fpmctl-supervise@.service` as shipped (hardening included): ready through sd_notify, a
/// SIGKILLed FPM master is replaced by the supervisor (systemd sees no restart), the watchdog
/// is fed, `systemctl reload` restarts FPM through the control socket and fails on a broken
/// config while the old FPM serves, and a stop leaves nothing behind.
#[test]
fn the_supervise_unit_recovers_a_killed_master_feeds_the_watchdog_and_reloads() {
    if !tools_present() {
        return;
    }
    let port = common::free_port();
    let b = Booted::boot(false, |dir| {
        let sb = dir.join("sb");
        std::fs::create_dir_all(&sb).unwrap();
        let d = sb.display();
        std::fs::write(
            sb.join("php-fpm.conf"),
            format!(
                "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\nprocess_control_timeout = 90s\n\n\
                 [tcp]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = static\n\
                 pm.max_children = 2\nping.path = /ping\npm.status_path = /status\n\n\
                 [sock]\nuser = nobody\ngroup = nogroup\nlisten = {d}/fpm.sock\nlisten.mode = 0666\n\
                 pm = static\npm.max_children = 1\n"
            ),
        )
        .unwrap();
        // The instance's config and options, where the unit documents them (the namespace's
        // own /etc/default).
        std::fs::write(
            dir.join("etc-default/fpmctl-sandbox"),
            format!(
                "FPMCTL_CONFIG={d}/php-fpm.conf\nFPMCTL_SUPERVISE_OPTS=\"--health-interval 1s\"\n"
            ),
        )
        .unwrap();
        // A short watchdog, so that a starved one would show within the test.
        // A short stop timeout, so that a hung supervisor's stop is seen within the test.
        let instance = "[Service]\nWatchdogSec=4s\nTimeoutStopSec=3s\n".to_string();
        vec![
            (
                "fpmctl-supervise@.service".to_string(),
                unit_text("fpmctl-supervise@.service"),
            ),
            (
                "fpmctl-supervise@sandbox.service.d/test.conf".to_string(),
                instance,
            ),
        ]
    });
    let unit = "fpmctl-supervise@sandbox.service";
    let conf = b.path().join("sb/php-fpm.conf");
    let conf_s = conf.display().to_string();
    expect_ok(
        &b.systemctl(&format!("start {unit}")),
        "systemctl start",
        &b,
        unit,
    );
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    let supervisor = b.prop(unit, "MainPID");
    let status = b.prop(unit, "StatusText");
    assert!(status.contains("ready"), "status text: {status}");
    // The hardening is in force: CHOWN, DAC_OVERRIDE, KILL, SETGID, SETUID, SYS_PTRACE and
    // nothing else.
    let caps = b.sh(&format!("grep CapBnd /proc/{supervisor}/status"));
    assert_eq!(
        String::from_utf8_lossy(&caps.stdout)
            .split_whitespace()
            .nth(1),
        Some("00000000000800e3"),
        "{}",
        text(&caps)
    );
    // Config and options came from /etc/default/fpmctl-sandbox.
    let cmd = b.sh(&format!("tr '\\0' ' ' < /proc/{supervisor}/cmdline"));
    let cmd = String::from_utf8_lossy(&cmd.stdout).into_owned();
    assert!(
        cmd.contains(&format!("-c {conf_s} supervise --health-interval 1s")),
        "{cmd}"
    );
    let mode = b.sh("stat -c %a:%U /run/fpmctl");
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "700:root");
    let master_of = |b: &Booted| -> Option<i64> {
        let out = b.fpmctl(&format!("-c {conf_s} status --json"));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        j["master"]["pid"].as_i64()
    };
    let first = b.wait_for(Duration::from_secs(10), "a master", || master_of(&b));
    expect_ok(&b.fpmctl(&format!("-c {conf_s} ping")), "ping", &b, unit);

    // The watchdog is fed: its timestamp moves, and systemd never restarts the unit.
    let fed = b.prop(unit, "WatchdogTimestampMonotonic");
    b.wait_for(Duration::from_secs(20), "a watchdog ping", || {
        (b.prop(unit, "WatchdogTimestampMonotonic") != fed).then_some(())
    });

    // A crashed FPM: the supervisor starts a new one; systemd's unit does not restart.
    expect_ok(&b.sh(&format!("kill -KILL {first}")), "kill", &b, unit);
    let second = b.wait_for(Duration::from_secs(20), "a new master", || {
        master_of(&b).filter(|m| *m != first)
    });
    b.wait_for(Duration::from_secs(20), "the new FPM to answer", || {
        b.fpmctl(&format!("-c {conf_s} ping"))
            .status
            .success()
            .then_some(())
    });
    assert_eq!(b.prop(unit, "MainPID"), supervisor);
    assert_eq!(b.prop(unit, "NRestarts"), "0");

    // systemctl reload under load: an overlapped restart through the control socket, and
    // no request fails on either pool.
    let script = load_script(b.path());
    let addrs = [
        format!("127.0.0.1:{port}"),
        b.path().join("sb/fpm.sock").display().to_string(),
    ];
    let load = Load::start(&addrs, &script, 4, 2000);
    load.run_past(&b, 50);
    expect_ok(
        &b.systemctl(&format!("reload {unit}")),
        "systemctl reload",
        &b,
        unit,
    );
    load.run_past(&b, 50);
    expect_no_failed_request(load, 100, "during systemctl reload", &b, unit);
    let third = master_of(&b).expect("a master after reload");
    assert_ne!(third, second, "reload did not replace the master");
    // The killed master's orphans and the replaced master with its workers are gone: only
    // the serving master and its 3 workers are left.
    b.wait_for(
        Duration::from_secs(30),
        "only the serving FPM's processes",
        || (b.fpm_processes().len() == 4).then_some(()),
    );
    expect_ok(
        &b.fpmctl(&format!("-c {conf_s} ping")),
        "ping after reload",
        &b,
        unit,
    );

    // A broken config: the reload fails, the running FPM stays.
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{good}\nthis line is broken\n")).unwrap();
    let out = b.systemctl(&format!("reload {unit}"));
    assert!(
        !out.status.success(),
        "reload with a broken config succeeded:\n{}",
        text(&out)
    );
    std::fs::write(&conf, good).unwrap();
    assert_eq!(master_of(&b), Some(third));
    expect_ok(
        &b.fpmctl(&format!("-c {conf_s} ping")),
        "ping after refused reload",
        &b,
        unit,
    );
    assert_eq!(b.prop(unit, "MainPID"), supervisor);
    assert_eq!(b.prop(unit, "NRestarts"), "0");

    // systemd's own restart of a killed supervisor, under load. KillMode=process leaves FPM
    // serving on the sockets it holds; the restarted supervisor takes them over, starts its
    // own FPM beside the old one and retires it: no request fails.
    let load = Load::start(&addrs, &script, 4, 3000);
    load.run_past(&b, 50);
    expect_ok(
        &b.sh(&format!("kill -KILL {supervisor}")),
        "kill the supervisor",
        &b,
        unit,
    );
    let restarted = b.wait_for(Duration::from_secs(30), "systemd's restart", || {
        let pid = b.prop(unit, "MainPID");
        (b.prop(unit, "NRestarts") == "1"
            && b.prop(unit, "ActiveState") == "active"
            && pid != supervisor
            && pid != "0")
            .then_some(pid)
    });
    let fourth = b.wait_for(Duration::from_secs(30), "the new supervisor's FPM", || {
        master_of(&b).filter(|m| *m != third)
    });
    b.wait_for(
        Duration::from_secs(30),
        "the old master to be retired",
        || (!b.sh(&format!("kill -0 {third}")).status.success()).then_some(()),
    );
    load.run_past(&b, 50);
    expect_no_failed_request(
        load,
        100,
        "while systemd restarted the supervisor",
        &b,
        unit,
    );
    // The new FPM is the new supervisor's child, and nothing of the old one is left: its
    // master, its workers, the dead supervisor's notify directory.
    let ppid = b.sh(&format!("grep PPid /proc/{fourth}/status"));
    assert_eq!(
        String::from_utf8_lossy(&ppid.stdout)
            .split_whitespace()
            .nth(1),
        Some(restarted.as_str()),
        "{}",
        text(&ppid)
    );
    b.wait_for(
        Duration::from_secs(30),
        "only the serving FPM's processes",
        || (b.fpm_processes().len() == 4).then_some(()),
    );
    let run = b.sh("ls /run/fpmctl");
    let notify_dirs = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter(|l| l.starts_with("notify-"))
        .count();
    assert_eq!(notify_dirs, 1, "{}", text(&run));
    let journal = b.journal(unit);
    assert!(journal.contains("taking over its sockets"), "{journal}");
    expect_ok(
        &b.fpmctl(&format!("-c {conf_s} ping")),
        "ping after the takeover",
        &b,
        unit,
    );
    // The new supervisor feeds the watchdog too.
    let fed = b.prop(unit, "WatchdogTimestampMonotonic");
    b.wait_for(
        Duration::from_secs(20),
        "a watchdog ping after the restart",
        || (b.prop(unit, "WatchdogTimestampMonotonic") != fed).then_some(()),
    );
    let supervisor = restarted;

    // Long enough past WatchdogSec that a starved watchdog would have killed the unit.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(b.prop(unit, "ActiveState"), "active", "{}", b.journal(unit));
    assert_eq!(b.prop(unit, "MainPID"), supervisor);
    assert_eq!(b.prop(unit, "NRestarts"), "1");

    expect_ok(
        &b.systemctl(&format!("stop {unit}")),
        "systemctl stop",
        &b,
        unit,
    );
    b.wait_for(
        Duration::from_secs(10),
        "every php-fpm process to exit",
        || b.fpm_processes().is_empty().then_some(()),
    );
    assert!(!b.path().join("sb/fpm.sock").exists(), "socket path left");
    // The supervisor stopped FPM itself and exited 0: systemd had nothing left to kill.
    assert_eq!(b.prop(unit, "Result"), "success", "{}", b.journal(unit));
    assert_eq!(b.prop(unit, "ExecMainStatus"), "0", "{}", b.journal(unit));

    // A supervisor that does not stop within TimeoutStopSec (3s here; a request in flight
    // keeps its graceful stop going) is SIGKILLed alone (KillMode=process); the unit's
    // ExecStopPost then stops the FPM it left. Left alone, FPM would finish that request
    // (60s) or escalate (process_control_timeout, 90s) long after the wait below gives up.
    expect_ok(
        &b.systemctl(&format!("start {unit}")),
        "systemctl start again",
        &b,
        unit,
    );
    b.wait_for(Duration::from_secs(10), "a master", || master_of(&b));
    let slow = b.path().join("slow.php");
    std::fs::write(
        &slow,
        "<?php $end = microtime(true) + 60; while (microtime(true) < $end) usleep(50000); echo 'done';\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tcp = ListenAddr::parse(&addrs[0]).unwrap();
    let inflight = {
        let (tcp, slow) = (tcp.clone(), slow.display().to_string());
        std::thread::spawn(move || {
            let req = fastcgi::Request::get("/slow.php").with_script_filename(slow);
            fastcgi::request(&tcp, &req, Duration::from_secs(90))
        })
    };
    // Busy: the status request's own worker and the slow one.
    b.wait_for(
        Duration::from_secs(10),
        "the slow request in flight",
        || {
            let j = fastcgi::status(&tcp, "/status", Duration::from_secs(5)).ok()?;
            (j["active processes"].as_u64()? >= 2).then_some(())
        },
    );
    let _ = b.systemctl(&format!("stop {unit}"));
    b.wait_for(
        Duration::from_secs(30),
        "every php-fpm process to exit after a stop timeout",
        || b.fpm_processes().is_empty().then_some(()),
    );
    let _ = inflight.join().unwrap();
    assert_eq!(b.prop(unit, "Result"), "timeout", "{}", b.journal(unit));
    assert_eq!(b.prop(unit, "ActiveState"), "failed", "{}", b.journal(unit));
}
