//! stop, start, restart, reload and ping against a real php-fpm, including the failures the
//! field reports describe: orphans holding the port, racing restarts, a broken
//! config on restart or reload, stale pid files, foreign listeners, stuck requests.

mod common;
use common::{Opts, Sandbox, alive, slow_request, wait_busy};
use std::process::Command;
use std::time::Duration;

#[test]
fn stop_is_graceful_and_returns_when_everything_is_gone() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let workers: Vec<i32> = sb.workers_of(master).iter().map(|p| p.pid()).collect();
    let run = sb.fpmctl(&["stop", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["result"], "stopped", "{run}");
    assert_eq!(j["master"], master, "{run}");
    assert!(!alive(master), "{run}");
    for w in workers {
        assert!(!alive(w), "worker {w} survived:\n{run}");
    }
    assert!(
        std::net::TcpListener::bind(sb.tcp_addr()).is_ok(),
        "port still held:\n{run}"
    );
    assert!(!sb.sock.exists(), "socket file left:\n{run}");
    assert!(
        run.stderr
            .contains(&format!("stopping master pid={master} signal=\"SIGQUIT\"")),
        "{run}"
    );
    sb.fpmctl(&["status"]).expect_code(3);
}

#[test]
fn stop_when_already_stopped_says_so_and_succeeds() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["stop"]);
    run.expect_code(0);
    assert!(run.stdout.contains("was not running"), "{run}");
}

#[test]
fn start_proves_readiness_and_a_second_start_is_a_no_op() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["start", "--json"]);
    run.expect_code(0);
    let j = run.json();
    let master = j["master"].as_i64().unwrap() as i32;
    sb.note_master(master);
    assert_eq!(j["ready"], true, "{run}");
    assert_eq!(j["pools"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(sb.pid_from_file(), Some(master));
    let ping = sb.fpmctl(&["ping"]);
    ping.expect_code(0);
    let again = sb.fpmctl(&["start", "--json"]);
    again.expect_code(0);
    assert_eq!(again.json()["result"], "already-running", "{again}");
    assert_eq!(sb.masters().len(), 1);
}

/// Orphans of a SIGKILLed master hold the port; restart must clean them up.
#[test]
fn restart_after_master_sigkill_removes_every_orphan_and_ends_ready() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let orphans = sb.kill_master_hard();
    let run = sb.fpmctl(&["restart", "--wait"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("orphaned worker"),
        "restart did not say what it found:\n{run}"
    );
    for o in &orphans {
        assert!(!alive(*o), "orphan {o} survived:\n{run}");
    }
    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(0);
    let j = status.json();
    assert_eq!(j["state"], "running");
    assert_eq!(j["orphans"].as_array().unwrap().len(), 0, "{status}");
    sb.note_master(j["master"]["pid"].as_i64().unwrap() as i32);
    assert_eq!(sb.masters().len(), 1);
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn restart_with_a_broken_config_leaves_the_old_master_serving() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let workers: Vec<i32> = sb.workers_of(master).iter().map(|p| p.pid()).collect();
    sb.write_config(&sb.config_text().replace("pm = static", "pm = statik"));
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(6);
    assert!(
        run.stderr.contains("statik"),
        "FPM's own error is not shown:\n{run}"
    );
    assert!(alive(master));
    for w in workers {
        assert!(alive(w), "worker {w} was touched:\n{run}");
    }
    sb.write_config(&sb.config_text());
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn restart_refuses_when_a_socket_directory_is_missing_and_leaves_fpm_running() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let d = sb.path().display().to_string();
    sb.write_config(&sb.config_text().replace(
        &format!("listen = {d}/fpm.sock"),
        &format!("listen = {d}/nope/fpm.sock"),
    ));
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(6);
    assert!(alive(master), "{run}");
}

#[test]
fn a_stale_pid_file_naming_a_live_unrelated_process_never_gets_it_killed() {
    let Some(sb) = Sandbox::new() else { return };
    let sleep = sb.spawn(Command::new("sleep").arg("300")) as i32;
    std::fs::write(&sb.pid_file, format!("{sleep}\n")).unwrap();
    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(alive(sleep), "stop killed an unrelated process");
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(0);
    sb.note_master(sb.pid_from_file().unwrap());
    assert!(alive(sleep), "restart killed an unrelated process:\n{run}");
    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(alive(sleep), "stop killed an unrelated process");
}

#[test]
fn start_refuses_a_port_held_by_a_foreign_process_and_kills_nothing() {
    let Some(sb) = Sandbox::new() else { return };
    let held = std::net::TcpListener::bind(sb.tcp_addr()).unwrap();
    let run = sb.fpmctl(&["start"]);
    run.expect_code(7);
    let me = std::process::id();
    assert!(run.stderr.contains(&format!("PID {me}")), "{run}");
    assert!(run.stderr.contains(&sb.tcp_addr()), "{run}");
    assert!(sb.masters().is_empty(), "FPM was started anyway:\n{run}");
    drop(held);
}

#[test]
fn start_removes_a_leftover_socket_file_nobody_listens_on() {
    let Some(sb) = Sandbox::new() else { return };
    let stale = std::os::unix::net::UnixListener::bind(&sb.sock).unwrap();
    drop(stale); // the file stays, nothing listens
    assert!(sb.sock.exists());
    let run = sb.fpmctl(&["start"]);
    run.expect_code(0);
    sb.note_master(sb.pid_from_file().unwrap());
    assert!(run.stderr.contains("removed stale socket file"), "{run}");
}

#[test]
fn a_worker_stuck_in_a_long_request_is_ended_by_the_signal_plan_within_its_bounds() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let req = slow_request(&sb, 60);
    wait_busy(&sb);
    let run = sb.fpmctl(&["stop", "--signal-plan", "QUIT:1s,TERM:1s,KILL:2s", "--json"]);
    run.expect_code(0);
    assert!(!alive(master));
    // QUIT lets a worker finish its request; ending this one took the plan's next step.
    let sent: Vec<String> = run.json()["signals"]
        .as_array()
        .unwrap_or_else(|| panic!("no signals list:\n{run}"))
        .iter()
        .filter_map(|s| s["signal"].as_str().map(str::to_string))
        .collect();
    assert!(
        sent.iter()
            .any(|s| s.contains("TERM") || s.contains("KILL")),
        "the plan never escalated past QUIT: {sent:?}\n{run}"
    );
    // The stop cut the request off rather than waiting for it to answer.
    let answer = req.join().unwrap();
    assert!(answer.is_err(), "the 60s request completed: {answer:?}");
    assert!(sb.leftovers().is_empty(), "{run}");
}

#[test]
fn a_graceful_stop_lets_an_in_flight_request_finish() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let req = slow_request(&sb, 2);
    wait_busy(&sb);
    let run = sb.fpmctl(&["stop"]);
    run.expect_code(0);
    let body = req
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("request failed: {e}\n{run}"));
    assert_eq!(body, "slept 2", "{run}");
}

#[test]
fn two_restarts_started_together_both_succeed_and_leave_one_master() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let a = sb.fpmctl_spawn(&["restart"]);
    let b = sb.fpmctl_spawn(&["restart"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let show = |o: &std::process::Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(a.status.success(), "first restart failed:\n{}", show(&a));
    assert!(b.status.success(), "second restart failed:\n{}", show(&b));
    let waited = show(&a).contains("waiting for") || show(&b).contains("waiting for");
    assert!(
        waited,
        "neither run said it waited:\n{}\n{}",
        show(&a),
        show(&b)
    );
    let masters = sb.masters();
    assert_eq!(masters.len(), 1, "{masters:?}");
    sb.note_master(masters[0].pid());
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn no_wait_fails_at_once_while_another_fpmctl_holds_the_lock() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let _req = slow_request(&sb, 3);
    wait_busy(&sb);
    // Once the stop says it is stopping the master, it holds the lock.
    let mut slow = sb.fpmctl_spawn_until(&["stop"], "stopping master");
    let run = sb.fpmctl(&["--no-wait", "restart"]);
    run.expect_code(9);
    assert!(run.stderr.contains("--no-wait"), "{run}");
    assert!(slow.wait().unwrap().success());
}

#[test]
fn fpmctl_killed_mid_restart_leaves_a_state_the_next_restart_repairs() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let _req = slow_request(&sb, 30);
    wait_busy(&sb);
    let mut first = sb.fpmctl_spawn_until(&["restart", "--cold"], "stopping master");
    first.kill().unwrap();
    first.wait().unwrap();
    let run = sb.fpmctl(&["restart", "--signal-plan", "QUIT:1s,TERM:1s,KILL:2s"]);
    run.expect_code(0);
    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(0);
    sb.note_master(status.json()["master"]["pid"].as_i64().unwrap() as i32);
    assert_eq!(
        status.json()["orphans"].as_array().unwrap().len(),
        0,
        "{status}"
    );
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn reload_re_executes_the_master_with_new_workers() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let old: Vec<i32> = sb.workers_of(master).iter().map(|p| p.pid()).collect();
    let run = sb.fpmctl(&["reload", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["previous_master"], master, "{run}");
    // Started with -D, FPM daemonizes again after its re-exec: the PID may change.
    sb.note_master(j["master"].as_i64().unwrap() as i32);
    let new: Vec<i64> = j["new_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(new.len(), 4, "{run}");
    for w in old {
        assert!(
            !new.contains(&(w as i64)),
            "old worker {w} still listed:\n{run}"
        );
        assert!(!alive(w), "old worker {w} still alive:\n{run}");
    }
    assert_eq!(sb.masters().len(), 1);
    sb.fpmctl(&["ping"]).expect_code(0);
    // process_control_timeout = 10s: nothing to warn about.
    assert!(!run.stderr.contains("process_control_timeout"), "{run}");
}

/// With `process_control_timeout = 0` (FPM's and Debian's default) a USR2 reload kills the
/// requests in flight: the reload goes ahead, and says so.
#[test]
fn reload_warns_when_process_control_timeout_is_zero() {
    let Some(sb) = Sandbox::with(Opts {
        process_control_timeout: "0",
        ..Opts::default()
    }) else {
        return;
    };
    let master = sb.start_fpm();
    let run = sb.fpmctl(&["reload", "--json"]);
    run.expect_code(0);
    sb.note_master(run.json()["master"].as_i64().unwrap() as i32);
    assert_eq!(run.json()["previous_master"], master, "{run}");
    assert!(
        run.stderr
            .contains("process_control_timeout = 0: this reload kills the requests in flight"),
        "{run}"
    );
    assert!(run.stderr.contains(&sb.conf.display().to_string()), "{run}");
}

#[test]
fn reload_with_a_broken_config_never_reaches_fpm() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let workers: Vec<i32> = sb.workers_of(master).iter().map(|p| p.pid()).collect();
    sb.write_config(&sb.config_text().replace("pm = static", "pm = statik"));
    let run = sb.fpmctl(&["reload"]);
    run.expect_code(6);
    for w in workers {
        assert!(
            alive(w),
            "worker {w} was replaced although the config is broken:\n{run}"
        );
    }
}

#[test]
fn reload_of_a_stopped_fpm_fails_unless_recover() {
    let Some(sb) = Sandbox::new() else { return };
    sb.fpmctl(&["reload"]).expect_code(3);
    let run = sb.fpmctl(&["reload", "--recover"]);
    run.expect_code(0);
    sb.note_master(sb.pid_from_file().unwrap());
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn ping_reports_each_pool_and_the_status_page() {
    let Some(sb) = Sandbox::new() else { return };
    sb.fpmctl(&["ping"]).expect_code(3);
    sb.start_fpm();
    let run = sb.fpmctl(&["ping", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["pools"][0]["pool"], "tcp");
    assert_eq!(j["pools"][0]["status"]["pool"], "tcp", "{run}");
    assert_eq!(j["pools"][1]["ok"], true, "{run}");
    let one = sb.fpmctl(&["ping", "--pool", "sock"]);
    one.expect_code(0);
    assert!(!one.stdout.contains("pool tcp"), "{one}");
    sb.fpmctl(&["ping", "--pool", "nope"]).expect_code(2);
}

#[test]
fn stop_with_orphans_only_applies_the_plan_to_them() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let orphans = sb.kill_master_hard();
    let run = sb.fpmctl(&["stop", "--json"]);
    run.expect_code(0);
    for o in &orphans {
        assert!(!alive(*o), "orphan {o} survived:\n{run}");
    }
    assert!(
        !sb.pid_file.exists(),
        "the dead master's pid file was left:\n{run}"
    );
    sb.fpmctl(&["status"]).expect_code(3);
    assert!(
        std::net::TcpStream::connect(sb.tcp_addr()).is_err(),
        "port still accepts:\n{run}"
    );
}

#[test]
fn processes_left_after_the_plan_give_the_timeout_exit_code_and_are_listed() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let _req = slow_request(&sb, 60);
    wait_busy(&sb);
    // process_control_timeout is 10s: after SIGQUIT the master waits for the busy worker.
    let run = sb.fpmctl(&["stop", "--signal-plan", "QUIT:1s"]);
    run.expect_code(8);
    assert!(run.stderr.contains(&master.to_string()), "{run}");
    assert!(
        run.stderr.contains("still running after the signal plan"),
        "{run}"
    );
    assert!(alive(master), "{run}");
}

#[test]
fn a_reload_that_kills_fpm_says_so_with_its_own_exit_code() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    // php-fpm -t accepts this pid path, but the re-executed master cannot write it and exits.
    sb.write_config(&sb.config_text_dying_at_start());
    let run = sb.fpmctl(&["reload"]);
    run.expect_code(12);
    assert!(run.stderr.contains("died during the reload"), "{run}");
    assert!(sb.masters().is_empty(), "{run}");
}

/// The cgroup v2 hierarchy, when it is mounted and writable here.
fn cgroup2_root() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = mounts.lines().find_map(|l| {
        let (_, after) = l.split_once(" - ")?;
        after
            .starts_with("cgroup2 ")
            .then(|| l.split(' ').nth(4).map(std::path::PathBuf::from))?
    })?;
    let probe = root.join(format!("fpmctl-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let _ = std::fs::remove_dir(&probe);
    Some(root)
}

#[test]
fn a_master_in_a_systemd_unit_is_not_acted_on_behind_systemds_back() {
    let Some(sb) = Sandbox::new() else { return };
    let Some(root) = cgroup2_root() else {
        // CI runs as root with a cgroup2 mount; there a missing one is a broken setup.
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "no writable cgroup v2 hierarchy in /proc/self/mountinfo, and CI=true: \
                 mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) as root"
            );
        }
        eprintln!("NOTICE: no writable cgroup v2 hierarchy; systemd refusal not exercised");
        return;
    };
    let master = sb.start_fpm();
    let unit = format!("fpmctl-test-{}.service", sb.port);
    let cg = root.join(&unit);
    std::fs::create_dir(&cg).unwrap();
    std::fs::write(cg.join("cgroup.procs"), master.to_string()).unwrap();
    let status = sb.fpmctl(&["status", "--json"]);
    assert_eq!(
        status.json()["master"]["systemd_unit"],
        unit.as_str(),
        "{status}"
    );
    for cmd in [&["stop"][..], &["restart"][..], &["reload"][..]] {
        let run = sb.fpmctl(cmd);
        run.expect_code(11);
        assert!(run.stderr.contains(&unit), "{run}");
        assert!(alive(master), "{cmd:?} touched the master:\n{run}");
    }
    let forced = sb.fpmctl(&["--no-systemd", "stop"]);
    forced.expect_code(0);
    assert!(!alive(master), "{forced}");
    // The cgroup empties once the master is reaped; it may linger as a zombie here.
    for _ in 0..50 {
        if std::fs::remove_dir(&cg).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn log_format_json_gives_one_json_object_per_step_and_quiet_silences_steps() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["--log-format", "json", "start"]);
    run.expect_code(0);
    sb.note_master(sb.pid_from_file().unwrap());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty(), "{run}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{run}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(run.stderr.contains("starting "), "{run}");
    let quiet = sb.fpmctl(&["-q", "restart"]);
    quiet.expect_code(0);
    assert!(quiet.stderr.trim().is_empty(), "{quiet}");
    assert!(quiet.stdout.contains("restarted"), "{quiet}");
    sb.note_master(sb.pid_from_file().unwrap());
}

/// Regression: a config that php-fpm -t accepts but that fails at start made restart exit 6
/// ("nothing was changed") although it had stopped the old FPM.
#[test]
fn a_restart_whose_new_fpm_fails_to_start_says_fpm_is_down() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    sb.write_config(&sb.config_text_dying_at_start());
    // The cold restart stops first (the hand-over keeps the old FPM: tests/handover.rs).
    let run = sb.fpmctl(&["restart", "--cold"]);
    run.expect_code(12);
    assert!(run.stderr.contains("DOWN"), "{run}");
    assert!(
        run.stderr.contains("Unable to create the PID file"),
        "{run}"
    );
}

/// The kernel's socket table names a unix socket by the path text it was bound with. A
/// listener bound through another spelling of the pool's path (here a symlinked directory)
/// is not seen there; its socket file is no leftover, and `start` must not remove it.
#[test]
fn start_never_removes_a_socket_file_another_spelling_of_the_path_listens_on() {
    let Some(sb) = Sandbox::new() else { return };
    let real = sb.root.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = sb.root.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let path = link.join("fpm.sock");
    let text = sb.config_text().replace(
        &format!("listen = {}\n", sb.sock.display()),
        &format!("listen = {}\n", path.display()),
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    sb.write_config(&text);
    // Another program listens there, bound by the other spelling.
    let _other = std::os::unix::net::UnixListener::bind(real.join("fpm.sock")).unwrap();
    let run = sb.fpmctl(&["start"]);
    run.expect_code(1);
    assert!(run.stderr.contains("not removing it"), "{run}");
    assert!(real.join("fpm.sock").exists(), "{run}");
    assert!(sb.masters().is_empty(), "{run}");
}
