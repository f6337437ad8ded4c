//! Never leave FPM down: a fault during a lifecycle step (broken output, a signal to fpmctl,
//! a broken config, a bad value, a non-UTF-8 path, a reload into a taken address, a slow
//! reload) never leaves FPM down when it could run.

use crate::common::{self, Opts, Sandbox, alive, slow_request, wait_busy};
use nix::sys::signal::Signal;
use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

/// Waits for a master other than `old` to be named by the pid file and alive; notes it.
#[track_caller]
fn new_master(sb: &Sandbox, old: i32) -> i32 {
    let pid = sb.wait_for(Duration::from_secs(15), "a new master", || {
        sb.pid_from_file().filter(|p| *p != old && alive(*p))
    });
    sb.note_master(pid);
    pid
}

/// Fault: output to a pipe whose reader went away mid-restart (`restart --wait 2>&1 | head -1`).
#[test]
fn f01_a_closed_output_pipe_mid_restart_never_leaves_fpm_down() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    // Close-on-exec, so only the write end reaches fpmctl (as with a shell pipe).
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = sb.fpmctl_command(&["restart", "--wait"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone().unwrap()))
        .stderr(Stdio::from(write));
    let mut child = cmd.spawn().unwrap();
    // Like `head -1`: read one line, then go away.
    let mut reader = std::io::BufReader::new(std::fs::File::from(read));
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    drop(reader);
    let run = common::wait_run(&mut child, &["restart", "--wait"], Duration::from_secs(60));
    assert_eq!(run.code, 0, "first line {first:?}\n{run}");
    new_master(&sb, old);
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Fault: the terminal fpmctl writes to is closed mid-restart (writes fail with EIO).
#[test]
fn f01_a_closed_terminal_mid_restart_never_leaves_fpm_down() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let pty = nix::pty::openpty(None, None).unwrap();
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
    }
    let mut cmd = sb.fpmctl_command(&["restart", "--wait"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    // Read what the terminal shows until the first line, then hang up the terminal.
    let mut terminal = std::io::BufReader::new(std::fs::File::from(pty.master));
    let mut first = String::new();
    terminal.read_line(&mut first).unwrap();
    drop(terminal);
    let run = common::wait_run(&mut child, &["restart", "--wait"], Duration::from_secs(60));
    assert_eq!(run.code, 0, "first line {first:?}\n{run}");
    new_master(&sb, old);
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Fault: stderr is a full pipe that nobody reads (a blocking log write would stall the restart).
#[test]
fn f01_a_full_stderr_pipe_does_not_stall_a_restart() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // Fill the pipe to the brim: any further write blocks until someone reads.
    let size = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap() as usize;
    let mut written = 0;
    while written < size {
        written += nix::unistd::write(&write, &vec![b'x'; size - written]).unwrap();
    }
    let mut cmd = sb.fpmctl_command(&["restart", "--wait"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write));
    let mut child = cmd.spawn().unwrap();
    let run = common::wait_run(&mut child, &["restart", "--wait"], Duration::from_secs(30));
    drop(read);
    assert_eq!(run.code, 0, "{run}");
    new_master(&sb, old);
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Sends `sig` to an fpmctl restart while it waits for a graceful stop (a request is in
/// flight), and returns what it said.
fn signal_mid_restart(sb: &Sandbox, sigs: &[Signal]) -> common::Run {
    let _req = slow_request(sb, 3);
    wait_busy(sb);
    let restart = sb.spawn_until(&["restart", "--cold"], "stopping master");
    for sig in sigs {
        restart.signal(*sig);
        std::thread::sleep(Duration::from_millis(100));
    }
    restart.wait(Duration::from_secs(60))
}

/// Fault: Ctrl-C (SIGINT) to fpmctl between the stop and the start of a restart.
#[test]
fn f02_sigint_mid_restart_finishes_the_start_then_says_it_was_interrupted() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let run = signal_mid_restart(&sb, &[Signal::SIGINT]);
    run.expect_code(14);
    assert!(run.stderr.contains("interrupted by SIGINT"), "{run}");
    new_master(&sb, old);
    sb.fpmctl(&["status"]).expect_code(0);
}

/// Fault: SIGTERM to fpmctl between the stop and the start of a restart.
#[test]
fn f02_sigterm_mid_restart_finishes_the_start_then_says_it_was_interrupted() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let run = signal_mid_restart(&sb, &[Signal::SIGTERM]);
    run.expect_code(14);
    assert!(run.stderr.contains("interrupted by SIGTERM"), "{run}");
    new_master(&sb, old);
    sb.fpmctl(&["status"]).expect_code(0);
}

/// Fault: the SSH session drops (SIGHUP) between the stop and the start of a restart.
#[test]
fn f02_sighup_mid_restart_does_not_stop_the_restart() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let run = signal_mid_restart(&sb, &[Signal::SIGHUP]);
    run.expect_code(0);
    new_master(&sb, old);
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Fault: SIGQUIT (Ctrl-\\, and what a container runtime sends a PHP image's PID 1) to fpmctl
/// between the stop and the start of a restart: its default action (a core dump) ended fpmctl
/// with FPM stopped.
#[test]
fn f02_sigquit_mid_restart_finishes_the_start_then_says_it_was_interrupted() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let run = signal_mid_restart(&sb, &[Signal::SIGQUIT]);
    run.expect_code(14);
    assert!(run.stderr.contains("interrupted by SIGQUIT"), "{run}");
    new_master(&sb, old);
    sb.fpmctl(&["status"]).expect_code(0);
}

/// Fault: Ctrl-C twice mid-restart (fpmctl aborts, naming FPM's state and the repair).
#[test]
fn f02_a_second_sigint_aborts_and_names_the_state_and_the_repair() {
    let Some(sb) = Sandbox::new() else { return };
    let old = sb.start_fpm();
    let run = signal_mid_restart(&sb, &[Signal::SIGINT, Signal::SIGINT]);
    run.expect_code(14);
    assert!(run.stderr.contains("aborted"), "{run}");
    assert!(run.stderr.contains("DOWN"), "{run}");
    assert!(run.stderr.contains("restart"), "{run}");
    sb.fpmctl(&["restart"]).expect_code(0);
    new_master(&sb, old);
}

/// The sandbox config with one fault, and a name for messages.
fn broken_configs(sb: &Sandbox) -> Vec<(&'static str, String)> {
    let good = sb.config_text();
    let missing = sb.path().join("pool.d").join("*.conf");
    vec![
        (
            "a bad number",
            good.replace("pm.max_children = 2", "pm.max_children = banana"),
        ),
        (
            "a syntax error",
            good.replace("[tcp]\n", "[tcp]\nthis line is not a directive\n"),
        ),
        (
            "a missing include",
            good.replace(
                "[global]\n",
                &format!("[global]\ninclude = {}\n", missing.display()),
            ),
        ),
    ]
}

/// Fault: the config is broken (bad value, syntax error, missing include) while FPM runs.
#[test]
fn f03_a_broken_config_blocks_neither_status_nor_ping_nor_stop() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    for (what, text) in broken_configs(&sb) {
        sb.write_config(&text);
        let status = sb.fpmctl(&["status"]);
        status.expect_code(0);
        assert!(
            status.stdout.contains("config problem"),
            "{what}:\n{status}"
        );
        let json = sb.fpmctl(&["status", "--json"]);
        json.expect_code(0);
        assert!(
            !json.json()["config_problems"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{what}:\n{json}"
        );
        sb.fpmctl(&["ping"]).expect_code(0);
        for cmd in ["start", "restart", "reload"] {
            let run = sb.fpmctl(&[cmd]);
            run.expect_code(6);
            assert!(alive(master), "{what}: {cmd} touched FPM:\n{run}");
            assert_eq!(sb.pid_from_file(), Some(master), "{what}:\n{run}");
        }
    }
    let stop = sb.fpmctl(&["stop"]);
    stop.expect_code(0);
    assert!(sb.leftovers().is_empty(), "{stop}");
}

/// Fault: the config is broken while a supervisor runs FPM.
#[test]
fn f03_a_broken_config_does_not_block_the_supervisor() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    sb.write_config(
        &sb.config_text()
            .replace("pm.max_children = 2", "pm.max_children = banana"),
    );
    let restart = sb.fpmctl(&["restart"]);
    restart.expect_code(6);
    assert!(restart.stderr.contains("supervisor"), "{restart}");
    assert!(alive(master), "{restart}");
    sb.fpmctl(&["ping"]).expect_code(0);
    let stop = sb.fpmctl(&["stop"]);
    stop.expect_code(0);
    assert_eq!(
        sb.wait_child(sup, Duration::from_secs(30)),
        0,
        "{}",
        sb.supervise_log()
    );
    assert!(sb.leftovers().is_empty(), "{stop}");
}

/// Fault: absurd or zero durations on the command line.
#[test]
fn f04_absurd_and_zero_durations_are_usage_errors_and_touch_nothing() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let huge = "9223372036854775807s";
    for args in [
        vec!["restart", "--timeout", huge],
        vec!["restart", "--stop-timeout", huge],
        vec!["stop", "--timeout", huge],
        vec!["stop", "--signal-plan", "QUIT:9223372036854775807s"],
        vec!["reload", "--timeout", huge],
        vec!["start", "--timeout", huge],
        vec!["--lock-timeout", huge, "restart"],
        vec!["ping", "--timeout", "0s"],
        vec!["restart", "--timeout", "0s"],
        vec!["ensure", "--timeout", "0s"],
        vec!["reopen-logs", "--timeout", "0s"],
        vec!["supervise", "--health-interval", "0s"],
        vec!["supervise", "--health-timeout", "0s"],
        vec!["supervise", "--within", "0s"],
        vec!["supervise", "--unhealthy-after", "0"],
    ] {
        let run = sb.fpmctl(&args);
        run.expect_code(2);
        assert!(alive(master), "{run}");
        assert_eq!(sb.pid_from_file(), Some(master), "{run}");
    }
}

/// Fault: a unix listen path past the kernel's 107-byte limit (FPM binds a truncated path).
#[test]
fn f04_a_unix_path_past_the_kernel_limit_fails_check_and_start_before_launch() {
    let Some(sb) = Sandbox::new() else { return };
    let long = sb.path().join(format!("{}.sock", "s".repeat(110)));
    let text = sb
        .config_text()
        .replace(&sb.sock.display().to_string(), &long.display().to_string());
    sb.write_config(&text);
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("listen") && l.contains(".sock"))
        .unwrap();
    let check = sb.fpmctl(&["check"]);
    check.expect_code(6);
    assert!(check.stdout.contains("107"), "{check}");
    let start = sb.fpmctl(&["start"]);
    start.expect_code(6);
    assert!(start.stderr.contains("107"), "{start}");
    assert!(
        start
            .stderr
            .contains(&format!("{}:{line}", sb.conf.display())),
        "the listen line is not named:\n{start}"
    );
    assert!(sb.masters().is_empty(), "php-fpm was launched:\n{start}");
}

/// Fault: config, pid file and socket in a directory whose name is not UTF-8 (byte 0xff).
#[test]
fn f05_paths_that_are_not_utf8_work_for_every_command() {
    let Some(sb) = Sandbox::with(Opts {
        root_name: Some(b"fpm-\xff-dir"),
        ..Opts::default()
    }) else {
        return;
    };
    for cmd in ["check", "config"] {
        let run = sb.fpmctl(&[cmd, "--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["lossy_paths"], true, "{run}");
    }
    let start = sb.fpmctl(&["start"]);
    start.expect_code(0);
    let master = sb.pid_from_file().expect("a pid file");
    sb.note_master(master);
    let status = sb.fpmctl(&["status", "--json"]);
    status.expect_code(0);
    assert_eq!(status.json()["master"]["pid"], master, "{status}");
    assert_eq!(status.json()["lossy_paths"], true, "{status}");
    sb.fpmctl(&["ping"]).expect_code(0);
    for cmd in ["restart", "reload"] {
        let run = sb.fpmctl(&[cmd]);
        run.expect_code(0);
        sb.note_master(sb.pid_from_file().expect("a pid file"));
    }
    let master = sb.pid_from_file().expect("a pid file");
    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(!alive(master));
    assert!(sb.leftovers().is_empty());
}

/// Fault: a supervised FPM whose config and socket paths are not UTF-8 (byte 0xff).
#[test]
fn f05_a_supervisor_runs_fpm_from_paths_that_are_not_utf8() {
    let Some(sb) = Sandbox::with(Opts {
        root_name: Some(b"sup-\xff-dir"),
        ..Opts::default()
    }) else {
        return;
    };
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    sb.fpmctl(&["ping"]).expect_code(0);
    let restart = sb.fpmctl(&["restart"]);
    restart.expect_code(0);
    assert_ne!(sb.wait_supervised_ready(), first, "{restart}");
    sb.fpmctl(&["ping"]).expect_code(0);
    assert!(
        sb.sock.exists(),
        "the socket path is gone:\n{}",
        sb.supervise_log()
    );
    sb.fpmctl(&["stop"]).expect_code(0);
    assert_eq!(
        sb.wait_child(sup, Duration::from_secs(30)),
        0,
        "{}",
        sb.supervise_log()
    );
}

/// Fault: a reload into a config with a new address a foreign process holds.
#[test]
fn f06_a_reload_into_an_address_held_by_a_foreign_process_is_refused() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let workers: Vec<i32> = sb.workers_of(master).iter().map(|p| p.pid()).collect();
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    sb.write_config(&format!(
        "{}\n[extra]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = static\npm.max_children = 1\n",
        sb.config_text()
    ));
    let run = sb.fpmctl(&["reload"]);
    run.expect_code(7);
    assert!(
        run.stderr.contains(&std::process::id().to_string()),
        "the holder is not named:\n{run}"
    );
    assert!(alive(master), "{run}");
    for w in workers {
        assert!(alive(w), "worker {w} was replaced:\n{run}");
    }
    drop(foreign);
}

/// Fault: a reload slowed by a request in flight past the old fixed limit (at a smaller scale).
#[test]
fn f07_a_slow_but_successful_reload_is_reported_as_success() {
    let Some(sb) = Sandbox::with(Opts {
        process_control_timeout: "8s",
        ..Opts::default()
    }) else {
        return;
    };
    let master = sb.start_fpm();
    let req = slow_request(&sb, 5);
    wait_busy(&sb);
    // --timeout is the time FPM may take to start after its drain, which the config bounds.
    let run = sb.fpmctl(&["reload", "--timeout", "3s", "--json"]);
    run.expect_code(0);
    sb.note_master(run.json()["master"].as_i64().unwrap() as i32);
    assert_eq!(req.join().unwrap().as_deref(), Ok("slept 5"), "{run}");
    assert!(alive(master) || sb.pid_from_file().is_some_and(alive));
    sb.fpmctl(&["ping"]).expect_code(0);
}
