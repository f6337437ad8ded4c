//! Never signal or trust what is not this config's FPM: identity by binary, config tests,
//! orphans by evidence, pings that prove the master, the lock directory, the control socket,
//! the pid file as a hint.

use crate::common::{self, Sandbox, alive};
use std::process::{Command, Stdio};
use std::time::Duration;

fn master_title(sb: &Sandbox) -> String {
    format!("php-fpm: master process ({})", sb.conf.display())
}

/// Every PID named anywhere in a status JSON's `lookalikes`.
fn lookalike_pids(j: &serde_json::Value) -> Vec<i64> {
    j["lookalikes"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["pid"].as_i64()).collect())
        .unwrap_or_default()
}

/// A copy of perl named `php-fpm-evil`, titled as this config's master, is foreign.
#[test]
fn f08_renamed_program_is_foreign() {
    let Some(sb) = Sandbox::new() else { return };
    let evil = sb.copy_program(std::path::Path::new("/usr/bin/perl"), "php-fpm-evil");
    let pid = sb.spawn_titled_perl(&evil, &master_title(&sb), "1");

    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(3);
    let j = status.json();
    assert_eq!(j["state"], "stopped", "{status}");
    assert!(j["master"].is_null(), "{status}");
    assert!(lookalike_pids(&j).contains(&(pid as i64)), "{status}");
    let human = sb.fpmctl(&["status"]);
    assert!(
        human.stdout.contains(&pid.to_string()) && human.stdout.contains("php-fpm-evil"),
        "the impostor is reported by PID and program:\n{human}"
    );

    let start = sb.fpmctl(&["start"]);
    start.expect_code(0);
    let real = sb.pid_from_file().expect("the real FPM wrote its pid file");
    sb.note_master(real);
    assert_ne!(real, pid, "{start}");
    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(0);
    assert_eq!(status.json()["master"]["pid"], real, "{status}");

    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(!alive(real), "the real master was stopped");
    assert!(alive(pid), "the impostor was never signalled");
}

/// A renamed program titled as the master and holding a listen address is never signalled.
#[test]
fn f08_renamed_program_holding_an_address_is_never_signalled() {
    let Some(sb) = Sandbox::new() else { return };
    let evil = sb.copy_program(std::path::Path::new("/usr/bin/perl"), "php-fpm-evil");
    let bind = format!(
        "use IO::Socket::INET; our $s = IO::Socket::INET->new(LocalAddr => '{}', Listen => 5, ReuseAddr => 1) or die $!",
        sb.tcp_addr()
    );
    let pid = sb.spawn_titled_perl(&evil, &master_title(&sb), &bind);
    sb.wait_for(Duration::from_secs(5), "the impostor to listen", || {
        std::net::TcpStream::connect(sb.tcp_addr()).ok().map(|_| ())
    });

    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(3);
    let j = status.json();
    let tcp = j["listen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"] == sb.tcp_addr())
        .cloned()
        .unwrap();
    assert_eq!(tcp["holder_details"][0]["pid"], pid, "{status}");
    assert_eq!(tcp["holder_details"][0]["role"], "foreign", "{status}");

    let stop = sb.fpmctl(&["stop"]);
    stop.expect_code(0);
    assert!(alive(pid), "stop signalled the impostor:\n{stop}");
    let start = sb.fpmctl(&["start"]);
    start.expect_code(7);
    assert!(start.stderr.contains(&pid.to_string()), "{start}");
    assert!(alive(pid), "start signalled the impostor:\n{start}");
}

/// A master whose binary was replaced on disk (an upgrade) is reported, never signalled.
#[test]
fn f08_master_of_a_replaced_binary_is_reported_never_signalled() {
    let Some(mut sb) = Sandbox::new() else { return };
    let real_bin = sb.bin.clone();
    let copy = sb.copy_program(&real_bin, "php-fpm-copy");
    sb.bin = copy.clone();
    let master = sb.start_fpm();
    // An upgrade: the file is replaced by a new one (new inode) while FPM runs.
    std::fs::remove_file(&copy).unwrap();
    sb.copy_program(&real_bin, "php-fpm-copy");
    let bin = copy.display().to_string();

    let status = sb.fpmctl(&["--fpm-bin", &bin, "status", "--json"]);
    status.expect_code(4);
    let j = status.json();
    assert_eq!(j["state"], "unverified", "{status}");
    assert!(lookalike_pids(&j).contains(&(master as i64)), "{status}");
    let human = sb.fpmctl(&["--fpm-bin", &bin, "status"]);
    assert!(human.stdout.contains("replaced"), "{human}");

    let stop = sb.fpmctl(&["--fpm-bin", &bin, "stop", "--timeout", "5s"]);
    assert_ne!(stop.code, 0, "{stop}");
    assert!(alive(master), "stop signalled an unproven master:\n{stop}");
    let start = sb.fpmctl(&["--fpm-bin", &bin, "start"]);
    assert_ne!(start.code, 0, "{start}");
    assert_eq!(
        sb.masters().len(),
        1,
        "start started a second FPM:\n{start}"
    );
}

/// A running `php-fpm -t` / `-tt` of this config is not a master.
#[test]
fn f09_config_test_is_never_a_master() {
    let Some(sb) = Sandbox::new() else { return };
    // Both block on their first write to a full pipe, so they stay alive as config tests.
    let (_read_end, write_end) = common::full_pipe();
    let mut tests = Vec::new();
    for flag in ["-t", "-tt"] {
        let pid = sb.spawn(
            Command::new(&sb.bin)
                .arg("-y")
                .arg(&sb.conf)
                .arg(flag)
                .stdout(Stdio::from(write_end.try_clone().unwrap()))
                .stderr(Stdio::from(write_end.try_clone().unwrap())),
        ) as i32;
        tests.push(pid);
    }
    sb.wait_for(Duration::from_secs(5), "the config tests to run", || {
        tests
            .iter()
            .all(|p| fpmctl::procs::read(*p).is_some_and(|i| i.title.contains(" -t")))
            .then_some(())
    });

    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(3);
    assert!(status.json()["master"].is_null(), "{status}");
    let stop = sb.fpmctl(&["stop"]);
    stop.expect_code(0);
    let start = sb.fpmctl(&["start"]);
    start.expect_code(0);
    let real = sb.pid_from_file().expect("FPM started");
    sb.note_master(real);
    assert!(!tests.contains(&real), "{start}");
    sb.fpmctl(&["stop"]).expect_code(0);
    for p in &tests {
        assert!(alive(*p), "config test {p} was signalled");
    }
}

/// A stale pid file of config A naming config B's dead master does not hand B's orphans to A.
#[test]
fn f10_orphans_of_another_config_are_not_ours() {
    let Some(a) = Sandbox::new() else { return };
    let Some(b) = Sandbox::new() else { return };
    let b_master = b.start_fpm();
    let b_orphans = b.kill_master_hard();
    // A's pid file names B's dead master: PID reuse, or two configs with one `pid =`.
    std::fs::write(&a.pid_file, format!("{b_master}\n")).unwrap();

    let status = a.fpmctl(&["status", "--json"]);
    let j = status.json();
    assert_eq!(j["orphans"].as_array().unwrap().len(), 0, "{status}");
    let stop = a.fpmctl(&["stop"]);
    stop.expect_code(0);
    for o in &b_orphans {
        assert!(alive(*o), "A's stop signalled B's orphan {o}:\n{stop}");
    }
    // B's own view is unchanged: they are its orphans.
    let b_status = b.fpmctl(&["status", "--json"]);
    b_status.expect_code(1);
    assert_eq!(
        b_status.json()["orphans"].as_array().unwrap().len(),
        b_orphans.len(),
        "{b_status}"
    );
}

/// `ping` reports FPM down when only orphans of a dead master answer.
#[test]
fn f11_ping_with_dead_master_and_answering_orphans_is_down() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    sb.kill_master_hard();
    let ping = sb.fpmctl(&["ping"]);
    ping.expect_code(3);
    assert!(
        (ping.stdout.clone() + &ping.stderr).contains("orphan"),
        "ping says that orphans answered:\n{ping}"
    );
}

/// A pid file with junk in it is removed by a successful stop.
#[test]
fn f14_junk_pid_file_is_removed_by_stop() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    sb.kill_master_hard();
    // A crash mid-write leaves an empty (or garbled) pid file.
    std::fs::write(&sb.pid_file, "").unwrap();
    let stop = sb.fpmctl(&["stop"]);
    stop.expect_code(0);
    assert!(!sb.pid_file.exists(), "{stop}");
    sb.fpmctl(&["status"]).expect_code(3);

    // Nothing runs, and the pid file holds garbage.
    std::fs::write(&sb.pid_file, "garbage\n").unwrap();
    sb.fpmctl(&["status"]).expect_code(1);
    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(!sb.pid_file.exists());
    sb.fpmctl(&["status"]).expect_code(3);
}
