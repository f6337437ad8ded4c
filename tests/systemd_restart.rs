//! `fpmctl restart` of an FPM that runs in a systemd unit, under a real systemd
//! (`common::systemd`): a unit whose ExecReload is FPM's USR2 re-exec is reloaded, not
//! restarted, and drops no request; `--cold`, or a unit that cannot reload, goes through
//! `systemctl restart` and says why; a master that dies in the reload is started again.
//!
//! Under `CI=true` a missing systemd, unshare or nsenter fails the test.

mod common;

use common::systemd::*;
use fpmctl::fastcgi;
use fpmctl::listen::ListenAddr;
use std::time::Duration;

/// The unit the tests below write.
const UNIT: &str = "fpmctl-test-fpm.service";

/// Boots systemd with [`UNIT`] (its text from `unit`, given the php-fpm binary and the
/// sandbox directory) running FPM on a config with one unix-socket pool, and starts it.
fn boot_sock_unit(unit: impl FnOnce(&str, &str) -> String) -> Booted {
    let fpm = common::fpm_bin().unwrap();
    let b = Booted::boot(false, |dir| {
        let sb = dir.join("sb");
        std::fs::create_dir_all(&sb).unwrap();
        let d = sb.display().to_string();
        std::fs::write(
            sb.join("php-fpm.conf"),
            format!(
                "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\nprocess_control_timeout = 10s\n\n\
                 [sock]\nuser = nobody\ngroup = nogroup\nlisten = {d}/fpm.sock\nlisten.mode = 0666\n\
                 pm = static\npm.max_children = 2\nping.path = /ping\n"
            ),
        )
        .unwrap();
        vec![(UNIT.to_string(), unit(&fpm.display().to_string(), &d))]
    });
    expect_ok(
        &b.systemctl(&format!("start {UNIT}")),
        "systemctl start",
        &b,
        UNIT,
    );
    b
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
    set_process_control_timeout(&b, "30s");
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
    let b = boot_sock_unit(|fpm, d| {
        format!(
            "[Service]\nType=notify\nExecStart={fpm} --nodaemonize --fpm-config {d}/php-fpm.conf\n"
        )
    });
    let unit = UNIT;
    let conf = b.path().join("sb/php-fpm.conf");
    let conf = conf.display();
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
    stop_unit(&b, unit);
}

/// A `Type=forking` unit (FPM daemonizes, `PIDFile=`) whose ExecReload is the USR2 re-exec:
/// the re-executed master daemonizes again under a new PID, which systemd follows through the
/// pid file; `fpmctl restart` waits for that master, and no request fails.
#[test]
fn restart_of_a_forking_unit_reloads_it_and_follows_the_new_master() {
    if !tools_present() {
        return;
    }
    let b = boot_sock_unit(|fpm, d| {
        format!(
            "[Service]\nType=forking\nPIDFile={d}/fpm.pid\n\
             ExecStart={fpm} --daemonize --fpm-config {d}/php-fpm.conf\n\
             ExecReload=/bin/kill -USR2 $MAINPID\n"
        )
    });
    let unit = UNIT;
    let conf = b.path().join("sb/php-fpm.conf");
    let conf = conf.display();
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
    stop_unit(&b, unit);
}

/// A `Type=notify` unit whose master dies in its re-exec (its `argv[0]`, which FPM
/// re-executes, names no file; systemd's `@` prefix starts it from the real binary), with
/// `exec_reload` as its ExecReload.
fn doomed_unit(fpm: &str, d: &str, exec_reload: &str) -> String {
    format!(
        "[Service]\nType=notify\n\
         ExecStart=@{fpm} {d}/gone/php-fpm --nodaemonize --fpm-config {d}/php-fpm.conf\n\
         ExecReload={exec_reload}\n"
    )
}

/// fpmctl's own reload as ExecReload, as packaging/systemd's drop-in sets it.
fn doomed_unit_reloaded_by_fpmctl(fpm: &str, d: &str) -> String {
    doomed_unit(
        fpm,
        d,
        &format!("{FPMCTL} --no-systemd -c {d}/php-fpm.conf reload"),
    )
}

/// `fpmctl restart` of a [`doomed_unit`]: the reload kills FPM, and `restart` starts the unit
/// again rather than leave the site down, says so, and FPM answers afterwards.
fn a_restart_whose_reload_kills_fpm_starts_the_unit_again(b: &Booted) {
    let unit = UNIT;
    let conf = b.path().join("sb/php-fpm.conf");
    let conf = conf.display();
    let master = b.prop(unit, "MainPID");
    assert_ne!(master, "0");
    let out = b.fpmctl(&format!("-c {conf} restart"));
    expect_ok(&out, "fpmctl restart", b, unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "restarted through systemd: systemctl restart {unit} (stop, then start: the reload failed: master {master} exited during the reload"
        )),
        "{}",
        text(&out)
    );
    let new_master = b.prop(unit, "MainPID");
    assert_ne!(new_master, master);
    assert_ne!(new_master, "0");
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    expect_ok(
        &b.fpmctl(&format!("-c {conf} ping")),
        "ping after the restart",
        b,
        unit,
    );
    stop_unit(b, unit);
}

/// ExecReload `kill -USR2 $MAINPID` (Debian's): `systemctl reload` succeeds, FPM dies after.
#[test]
fn restart_of_a_unit_whose_master_dies_in_its_reload_starts_the_unit_again() {
    if !tools_present() {
        return;
    }
    let b = boot_sock_unit(|fpm, d| doomed_unit(fpm, d, "/bin/kill -USR2 $MAINPID"));
    a_restart_whose_reload_kills_fpm_starts_the_unit_again(&b);
}

/// ExecReload fpmctl's own reload: that reload sees FPM die and fails, so `systemctl reload`
/// fails too; FPM is gone all the same, and the unit is started again.
#[test]
fn restart_of_a_unit_reloaded_by_fpmctl_whose_master_dies_starts_the_unit_again() {
    if !tools_present() {
        return;
    }
    let b = boot_sock_unit(doomed_unit_reloaded_by_fpmctl);
    a_restart_whose_reload_kills_fpm_starts_the_unit_again(&b);
}

/// `fpmctl reload --recover` of the same unit: `systemctl reload` fails because the unit's own
/// fpmctl reload saw FPM die; that is FPM dying in the reload, which `--recover` repairs by
/// starting the unit again.
#[test]
fn reload_recover_of_a_unit_reloaded_by_fpmctl_whose_master_dies_starts_fpm_again() {
    if !tools_present() {
        return;
    }
    let b = boot_sock_unit(doomed_unit_reloaded_by_fpmctl);
    let unit = UNIT;
    let conf = b.path().join("sb/php-fpm.conf");
    let conf = conf.display();
    let master = b.prop(unit, "MainPID");
    assert_ne!(master, "0");

    let out = b.fpmctl(&format!("-c {conf} reload --recover"));
    expect_ok(&out, "fpmctl reload --recover", &b, unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "FPM died during the reload: master {master} exited during the reload"
        )),
        "{}",
        text(&out)
    );
    // FPM runs in its unit again (started beside the failed unit, it would be outside
    // systemd's watch), and answers.
    let new_master = b.prop(unit, "MainPID");
    assert_ne!(new_master, master);
    assert_ne!(new_master, "0", "{}", b.journal(unit));
    assert_eq!(b.prop(unit, "ActiveState"), "active");
    expect_ok(
        &b.fpmctl(&format!("-c {conf} ping")),
        "ping after the recovery",
        &b,
        unit,
    );
    stop_unit(&b, unit);
}
