//! `fpmctl restart` hands the running master's sockets to the new one: under load through
//! nginx no request fails, a long request in flight completes, on an FPM fpmctl did not start.

mod common;
use common::{Sandbox, alive, load::Load, nginx::Nginx};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Each load thread's pause between requests: enough load to matter, little CPU.
const PAUSE: Duration = Duration::from_millis(1);

#[test]
fn twenty_restarts_under_load_fail_no_request_and_a_long_request_completes() {
    let Some(sb) = Sandbox::new() else { return };
    if !common::nginx::available() {
        return;
    }
    let first = sb.start_fpm();
    let ng = Nginx::start(&sb);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = ["/tcp/", "/sock/"]
        .into_iter()
        .map(|path| {
            let bg = Load::new(2, Duration::from_secs(300)).pause(PAUSE).spawn(
                ng.addr,
                path,
                Arc::clone(&stop),
            );
            (path, bg)
        })
        .collect();
    // A request that runs 10 s of wall-clock time, in flight across the first restart.
    let addr = ng.addr;
    let slow = std::thread::spawn(move || {
        common::load::get(addr, "/slow/sock?s=10", Duration::from_secs(120))
    });
    sb.wait_for(Duration::from_secs(10), "the long request to start", || {
        sb.workers_of(first)
            .iter()
            .any(|w| {
                std::fs::read_to_string(format!("/proc/{}/stat", w.pid()))
                    .is_ok_and(|s| s.contains(" R ") || s.contains(" S "))
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut masters = vec![first];
    for i in 0..20 {
        let run = sb.fpmctl(&["restart", "--wait"]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("sockets handed over"),
            "restart {i}: {run}"
        );
        let pid = sb.pid_from_file().expect("a pid file after the restart");
        sb.note_master(pid);
        let old = *masters.last().unwrap();
        assert_ne!(pid, old, "restart {i}: the pid file still names {old}");
        assert!(alive(pid), "restart {i}: the pid file names dead {pid}");
        assert!(!alive(old), "restart {i}: old master {old} still runs");
        assert_eq!(
            sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
            [pid],
            "restart {i}: {run}"
        );
        assert!(sb.sock.exists(), "restart {i}: the socket path is gone");
        masters.push(pid);
    }
    let (status, body) = slow
        .join()
        .unwrap()
        .expect("the long request got no answer");
    assert_eq!((status, body.as_str()), (200, "slept 10"));
    stop.store(true, Ordering::Relaxed);
    for (path, bg) in loads {
        let rep = bg.join().unwrap();
        eprintln!("GET {path} over 20 restarts: {rep}");
        assert!(rep.ok_2xx > 100, "GET {path}: {rep}");
        assert_eq!(rep.failed(), 0, "GET {path}: {rep}\n{}", ng.logs());
    }
    // No leftover: the old masters' workers finished and were reaped.
    let last = *masters.last().unwrap();
    sb.wait_for(Duration::from_secs(10), "the old workers to go", || {
        masters[..masters.len() - 1]
            .iter()
            .all(|m| sb.group_of(*m).is_empty())
            .then_some(())
    });
    assert!(alive(last));
}

#[test]
fn a_cold_restart_still_stops_then_starts() {
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    let run = sb.fpmctl(&["restart", "--cold"]);
    run.expect_code(0);
    assert!(run.stdout.contains("stopped in"), "{run}");
    assert!(!run.stdout.contains("handed over"), "{run}");
    let pid = sb.pid_from_file().unwrap();
    sb.note_master(pid);
    assert_ne!(pid, first);
    assert!(!alive(first));
}

#[test]
fn a_new_master_that_dies_at_start_leaves_the_old_one_serving() {
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    // php-fpm -t accepts this pid path, but the new master cannot write it and exits.
    sb.write_config(&sb.config_text_dying_at_start());
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(12);
    assert!(
        run.stderr.contains("Unable to create the PID file"),
        "FPM's own error is missing: {run}"
    );
    assert!(run.stderr.contains("keeps serving"), "{run}");
    assert!(alive(first), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [first]
    );
    assert_eq!(sb.pid_from_file(), Some(first));
    // Both pools still answer, the unix one through its path.
    sb.write_config(&sb.config_text());
    sb.fpmctl(&["ping"]).expect_code(0);
    assert!(sb.sock.exists());
}

#[test]
fn an_added_address_is_bound_a_removed_one_leaves_no_socket_path_and_modes_apply() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let extra = sb.path().join("extra.sock");
    // A third pool on a new path; the sock pool's mode changes.
    let with_extra = sb
        .config_text()
        .replace("listen.mode = 0666", "listen.mode = 0660")
        + &format!(
            "\n[extra]\nuser = nobody\ngroup = nogroup\nlisten = {}\npm = static\npm.max_children = 1\nping.path = /ping\n",
            extra.display()
        );
    sb.write_config(&with_extra);
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(0);
    assert!(run.stdout.contains("handed over"), "{run}");
    sb.note_master(sb.pid_from_file().unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sb.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o660,
        "listen.mode was not applied to the taken socket"
    );
    assert!(extra.exists());
    sb.fpmctl(&["ping"]).expect_code(0);
    // The extra pool goes away again: its socket path must not be left behind.
    sb.write_config(&sb.config_text());
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(0);
    sb.note_master(sb.pid_from_file().unwrap());
    assert!(!extra.exists(), "a dead socket path was left: {run}");
    assert!(sb.sock.exists());
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn fpmctl_killed_while_retiring_the_old_master_leaves_a_state_the_next_restart_repairs() {
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    let _req = common::slow_request(&sb, 30);
    common::wait_busy(&sb);
    // The old master is stopped and its busy worker holds the retirement up: kill fpmctl.
    let mut run = sb.fpmctl_spawn_until(&["restart"], "old master stopped");
    run.kill().unwrap();
    run.wait().unwrap();
    if let Some(pid) = sb.pid_from_file() {
        sb.note_master(pid);
    }
    let run = sb.fpmctl(&["restart", "--signal-plan", "QUIT:1s,TERM:1s,KILL:2s"]);
    run.expect_code(0);
    assert!(run.stdout.contains("cold restart"), "{run}");
    let pid = sb.pid_from_file().unwrap();
    sb.note_master(pid);
    assert!(!alive(first), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [pid],
        "{run}"
    );
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn sigint_while_retiring_the_old_master_finishes_the_hand_over_then_says_so() {
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    let _req = common::slow_request(&sb, 3);
    common::wait_busy(&sb);
    let restart = sb.spawn_until(&["restart"], "old master stopped");
    restart.signal(nix::sys::signal::Signal::SIGINT);
    let run = restart.wait(Duration::from_secs(60));
    run.expect_code(14);
    assert!(run.stderr.contains("interrupted by SIGINT"), "{run}");
    let pid = sb.pid_from_file().unwrap();
    sb.note_master(pid);
    assert!(!alive(first), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [pid],
        "{run}"
    );
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn a_hand_over_reads_the_process_table_once_and_is_told_readiness() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let run = sb.fpmctl(&["restart", "--wait", "--json"]);
    run.expect_code(0);
    sb.note_master(sb.pid_from_file().unwrap());
    let json = run.json();
    assert_eq!(json["mode"], "handover", "{run}");
    // One look before (the snapshot). The new master names itself in its READY=1 (the
    // kernel says who sent it), its workers are its children and the old master's workers
    // its children: none of that reads the process table again.
    assert_eq!(json["start"]["ready_by"], "notify", "{run}");
    assert_eq!(json["process_table_scans"], 1, "{run}");
    assert_eq!(
        json["start"]["master"],
        sb.pid_from_file().unwrap(),
        "{run}"
    );
}
