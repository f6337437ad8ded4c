//! The units in `packaging/systemd/` under a real systemd (`common::systemd`: Debian's
//! systemd booted as PID 1 of a private PID and mount namespace), with `/usr/bin/fpmctl`
//! replaced by the binary under test. `systemd-analyze verify` runs on every unit, no
//! namespace needed. `fpmctl restart` of a unit's FPM is tested in `tests/systemd_restart.rs`.
//!
//! Under `CI=true` a missing systemd, unshare or nsenter fails the test.

mod common;

use common::systemd::*;
use fpmctl::fastcgi;
use fpmctl::listen::ListenAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
    set_process_control_timeout(&b, "10s");
    let conf_copy = b.path().join("etc-php-fpm/php-fpm.conf");
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

    stop_unit(&b, unit);
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
