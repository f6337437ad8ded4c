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

/// The state letter of `pid` in /proc/PID/stat (`T`: stopped by a signal).
fn state_of(pid: i32) -> Option<char> {
    fpmctl::procs::read(pid).map(|p| p.state)
}

/// Starts FPM, keeps one of its workers busy for `secs` and SIGKILLs a `restart` right
/// after it stopped the old master: the new master serves, the old one stays stopped.
/// Returns (old master, new master, the busy request).
fn kill_a_restart_mid_retirement(
    sb: &Sandbox,
    secs: u32,
) -> (i32, i32, std::thread::JoinHandle<Result<String, String>>) {
    let first = sb.start_fpm();
    let req = common::slow_request(sb, secs);
    common::wait_busy(sb);
    let mut run = sb.fpmctl_spawn_until(&["restart"], "old master stopped");
    run.kill().unwrap();
    run.wait().unwrap();
    let new = sb.pid_from_file().expect("the new master's pid file");
    sb.note_master(new);
    assert_ne!(new, first);
    assert!(alive(new));
    // SIGSTOP is only queued when fpmctl logs: the master stops once it is scheduled.
    sb.wait_for(
        Duration::from_secs(10),
        "the old master to be stopped",
        || (state_of(first) == Some('T')).then_some(()),
    );
    (first, new, req)
}

#[test]
fn fpmctl_killed_while_retiring_the_old_master_leaves_a_state_the_next_restart_repairs() {
    let Some(sb) = Sandbox::new() else { return };
    let (first, stopped_beside, _req) = kill_a_restart_mid_retirement(&sb, 30);
    // The stopped master's retirement is finished (its busy worker is cut at the stop
    // timeout), and the serving master is handed over from as usual, not stopped cold.
    let run = sb.fpmctl(&["restart", "--stop-timeout", "1s"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("finishing its retirement"),
        "the stopped master was not retired first: {run}"
    );
    assert!(run.stdout.contains("sockets handed over"), "{run}");
    assert!(!run.stdout.contains("cold restart"), "{run}");
    let pid = sb.pid_from_file().unwrap();
    sb.note_master(pid);
    assert!(!alive(first), "{run}");
    assert!(!alive(stopped_beside), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [pid],
        "{run}"
    );
    assert!(sb.sock.exists());
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn a_master_left_stopped_by_a_killed_restart_is_shown_by_status_and_retired_by_ensure() {
    let Some(sb) = Sandbox::new() else { return };
    let (first, new, req) = kill_a_restart_mid_retirement(&sb, 4);
    let status = sb.fpmctl(&["status"]);
    status.expect_code(0);
    assert!(
        status
            .stdout
            .contains(&format!("master    {first} STOPPED")),
        "status does not show the stopped master as what it is: {status}"
    );
    let json = sb.fpmctl(&["status", "--json"]).json();
    assert_eq!(json["half_retired"][0]["pid"], first, "{json}");
    assert_eq!(json["half_retired"][0]["serving"], new, "{json}");
    // The cron job finishes the retirement and leaves the serving master alone.
    let run = sb.fpmctl(&["ensure"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("finished retiring master {first}")),
        "{run}"
    );
    assert!(!alive(first), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [new],
        "{run}"
    );
    assert_eq!(sb.pid_from_file(), Some(new));
    assert!(sb.sock.exists(), "the socket path is gone: {run}");
    sb.fpmctl(&["ping"]).expect_code(0);
    // The request in flight on the old master was let finish.
    assert_eq!(req.join().unwrap().as_deref(), Ok("slept 4"));
    // Nothing left to do: ensure is silent again.
    let again = sb.fpmctl(&["ensure"]);
    again.expect_code(0);
    assert_eq!(again.stdout, "", "{again}");
}

#[test]
fn stop_retires_a_master_left_stopped_by_a_killed_restart_without_needing_sigkill() {
    let Some(sb) = Sandbox::new() else { return };
    let (first, new, _req) = kill_a_restart_mid_retirement(&sb, 3);
    // A stopped master ignores QUIT and TERM: without finishing its retirement, the stop
    // would sit through both graces and end with KILL.
    let run = sb.fpmctl(&[
        "stop",
        "--json",
        "--signal-plan",
        "QUIT:20s,TERM:20s,KILL:2s",
    ]);
    run.expect_code(0);
    let json = run.json();
    let signals: Vec<&str> = json["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["signal"].as_str())
        .collect();
    assert_eq!(signals, ["QUIT"], "{run}");
    let stopped = json["stopped"].as_array().unwrap();
    assert!(stopped.contains(&first.into()), "{run}");
    assert!(stopped.contains(&new.into()), "{run}");
    assert!(!alive(first) && !alive(new), "{run}");
    assert!(sb.masters().is_empty(), "{run}");
}

#[test]
fn sigint_while_retiring_the_old_master_finishes_the_hand_over_then_says_so() {
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    // Long enough to outlast the restart's config test and start under load: the request
    // must still hold the retirement up when SIGINT comes, or there is nothing to defer.
    let _req = common::slow_request(&sb, 10);
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

#[test]
fn a_hand_over_without_a_pid_file_finds_the_new_master_and_leaves_one() {
    let Some(sb) = Sandbox::new() else { return };
    // `pid` is optional in php-fpm: without it, the new master must still be told apart from
    // the old one, or the restart fails with both left running.
    let no_pid = sb
        .config_text()
        .replace(&format!("pid = {}\n", sb.pid_file.display()), "");
    assert_ne!(no_pid, sb.config_text());
    sb.write_config(&no_pid);
    sb.fpmctl(&["start"]).expect_code(0);
    let first: Vec<i32> = sb.masters().iter().map(|m| m.pid()).collect();
    assert_eq!(first.len(), 1);
    sb.note_master(first[0]);
    let run = sb.fpmctl(&["restart"]);
    let now: Vec<i32> = sb.masters().iter().map(|m| m.pid()).collect();
    for m in &now {
        sb.note_master(*m);
    }
    run.expect_code(0);
    assert!(run.stdout.contains("sockets handed over"), "{run}");
    assert_eq!(now.len(), 1, "masters after the restart: {now:?}\n{run}");
    assert_ne!(now[0], first[0], "{run}");
    assert!(!alive(first[0]), "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn retiring_a_master_that_is_gone_never_touches_the_children_of_its_reused_pid() {
    let Some(sb) = Sandbox::new() else { return };
    let live = sb.start_fpm();
    let cfg = sb.fpm_config().unwrap();
    let workers: Vec<_> = sb.workers_of(live).iter().map(|w| w.id).collect();
    assert!(!workers.is_empty());
    // The identity of a master that died, whose PID now belongs to another process: here
    // a live FPM master, as likely as any after PID reuse.
    let real = fpmctl::procs::read(live).unwrap().id;
    let dead = fpmctl::procs::ProcId {
        pid: live,
        start_time: real.start_time.wrapping_sub(1),
    };
    let retired = fpmctl::handover::retire(
        dead,
        &cfg,
        fpmctl::deadline::Deadline::after(Duration::from_secs(2)),
    )
    .unwrap();
    assert_eq!(retired.workers, 0, "{retired:?}");
    for w in &workers {
        assert!(
            fpmctl::procs::read_same(*w).is_some(),
            "worker {} of the live master {live} was signalled",
            w.pid
        );
    }
    assert_eq!(state_of(live), Some('S'));
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn a_fifo_planted_as_the_pid_file_does_not_hang_a_hand_over() {
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    // Whoever may write in the pid file's directory can put a FIFO there: reading it
    // blocks until a writer comes, which is never.
    std::fs::remove_file(&sb.pid_file).unwrap();
    nix::unistd::mkfifo(
        &sb.pid_file,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut child = sb.fpmctl_spawn(&["restart"]);
    let run = common::wait_run(&mut child, &["restart"], Duration::from_secs(60));
    if let Some(pid) = sb.pid_from_file() {
        sb.note_master(pid);
    }
    for m in sb.masters() {
        sb.note_master(m.pid());
    }
    run.expect_code(0);
    assert!(run.stdout.contains("sockets handed over"), "{run}");
    let pid = sb.pid_from_file().expect("the new master's pid file");
    assert!(!alive(first), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [pid],
        "{run}"
    );
}

#[test]
fn the_new_master_does_not_inherit_descriptors_fpmctl_was_given() {
    for args in [&["restart"][..], &["restart", "--cold"]] {
        no_descriptor_of_the_caller_reaches_fpm(args);
    }
}

fn no_descriptor_of_the_caller_reaches_fpm(args: &[&str]) {
    use std::os::fd::AsRawFd;
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    // A caller's pipe left inheritable (a CI runner, a deploy script reading fpmctl's
    // output): a daemon that keeps its write end keeps the caller waiting for EOF forever.
    let (r, w) = nix::unistd::pipe().unwrap();
    let ino = nix::sys::stat::fstat(&w).unwrap().st_ino;
    let raw = w.as_raw_fd();
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFD);
        libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
    let mut cmd = sb.fpmctl_command(args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(w);
    let run = common::wait_run(&mut child, args, Duration::from_secs(60));
    let pid = sb.pid_from_file().unwrap();
    sb.note_master(pid);
    run.expect_code(0);
    let pipe = format!("pipe:[{ino}]");
    let mut holders = vec![pid];
    holders.extend(sb.workers_of(pid).iter().map(|w| w.pid()));
    for p in holders {
        let held = std::fs::read_dir(format!("/proc/{p}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .any(|t| t.to_string_lossy() == pipe);
        assert!(
            !held,
            "FPM process {p} holds the caller's pipe {pipe}: {run}"
        );
    }
    drop(r);
}

#[test]
fn a_launcher_cut_off_at_the_timeout_leaves_no_second_master() {
    let Some(sb) = Sandbox::new() else { return };
    // Many workers: FPM's launcher returns once its daemon is set up, before the daemon
    // forks its workers, so the shortest timeouts cut off the launcher and the longer ones
    // the new master's readiness while it still forks: either way after it may exist.
    let big = sb
        .config_text()
        .replace("pm.max_children = 2\n", "pm.max_children = 60\n");
    sb.write_config(&big);
    let first = sb.start_fpm();
    // The old master too has all its workers first: one it is still forking bears its
    // title, and the count below is of masters.
    sb.wait_for(
        Duration::from_secs(30),
        "the old master's 60 tcp workers",
        || {
            let tcp = sb
                .workers_of(first)
                .iter()
                .filter(|w| w.title == "php-fpm: pool tcp")
                .count();
            (tcp >= 60).then_some(())
        },
    );
    for ms in (20..=400).step_by(20) {
        let limit = format!("{ms}ms");
        let run = sb.fpmctl(&["restart", "--timeout", &limit]);
        for m in sb.masters() {
            sb.note_master(m.pid());
        }
        if run.code == 0 {
            // Fast enough this time: the new master serves alone; go on from it.
            break;
        }
        assert!(alive(first), "{run}");
        let now: Vec<i32> = sb.masters().iter().map(|m| m.pid()).collect();
        assert_eq!(now, [first], "a master was left beside the old one: {run}");
        assert_eq!(sb.pid_from_file(), Some(first), "{run}");
    }
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// A socket path under a directory the pool's user may write: that directory replaced by a
/// symlink after the bind must not lead root's chmod onto the socket it now points to (a
/// container runtime's, made world-writable). The restart is refused, the old master keeps
/// serving, the other socket keeps its mode.
#[test]
fn a_restart_never_changes_a_socket_that_a_replaced_directory_leads_to() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sb) = Sandbox::new() else { return };
    let dir = sb.root.join("run");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("fpm.sock");
    let text = sb.config_text().replace(
        &format!("listen = {}\n", sb.sock.display()),
        &format!("listen = {}\n", path.display()),
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    sb.write_config(&text);
    let first = sb.start_fpm();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666
    );
    // Another socket, private to its owner.
    let elsewhere = sb.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let other = elsewhere.join("fpm.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The pool's user replaces the directory with a symlink to the other socket's.
    std::fs::rename(&dir, sb.root.join("run.moved")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    // Watched while the restart runs: a failed restart puts back what it saved, so only
    // the mode in between shows the change.
    let args = ["restart"];
    let mut cmd = sb.fpmctl_command(&args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut modes = std::collections::BTreeSet::new();
    while child.try_wait().unwrap().is_none() {
        modes.insert(std::fs::metadata(&other).unwrap().permissions().mode() & 0o777);
        std::thread::sleep(Duration::from_millis(2));
    }
    let run = common::wait_run(&mut child, &args, Duration::from_secs(60));
    modes.insert(std::fs::metadata(&other).unwrap().permissions().mode() & 0o777);
    assert_eq!(
        modes.into_iter().collect::<Vec<_>>(),
        [0o600],
        "root changed the mode of a socket it does not hold: {run}"
    );
    run.expect_code(1);
    assert!(
        run.stderr.contains("is not the socket file fpmctl holds"),
        "{run}"
    );
    assert!(alive(first), "{run}");
    assert_eq!(sb.masters().len(), 1, "{run}");
}

#[test]
fn a_failed_hand_over_leaves_the_socket_permissions_as_the_old_master_had_them() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(sb) = Sandbox::new() else { return };
    let first = sb.start_fpm();
    let before = std::fs::metadata(&sb.sock).unwrap();
    assert_eq!(before.permissions().mode() & 0o777, 0o666);
    // A new config that tightens the unix socket's mode and owner, and with which the new
    // master dies at start: the old master keeps serving, and so must its clients.
    let tighter = sb.config_text_dying_at_start().replace(
        "listen.mode = 0666",
        "listen.mode = 0600\nlisten.owner = nobody",
    );
    sb.write_config(&tighter);
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(12);
    assert!(run.stderr.contains("keeps serving, untouched"), "{run}");
    assert!(alive(first), "{run}");
    let after = std::fs::metadata(&sb.sock).unwrap();
    assert_eq!(
        (after.permissions().mode() & 0o777, after.uid(), after.gid()),
        (0o666, before.uid(), before.gid()),
        "the old master's socket lost its permissions: {run}"
    );
}

/// Starts FPM, then a restart to a config with 250 workers (the new master takes a while to
/// fork them all, and fpmctl waits for every one before it retires the old master), and
/// SIGKILLs fpmctl once the new master runs: the old master and the new one, both running on
/// the same sockets. Returns once the new master's launcher has exited (it does once the new
/// master wrote its pid file and reported to it, before the workers are forked): until then
/// it claims the config by its command line, with the new master its child (a fork of it, as
/// discovery sees it, not a second master).
fn kill_a_restart_while_it_proves_the_new_master_ready(sb: &Sandbox) -> (i32, i32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let first = sb.start_fpm();
    let text = sb.config_text();
    let many = text.replacen("pm.max_children = 2\n", "pm.max_children = 250\n", 1);
    assert_ne!(text, many);
    sb.write_config(&many);
    let title = sb.masters()[0].title.clone();
    let mut run = sb.fpmctl_spawn(&["restart"]);
    // The new master writes its pid file before it forks a worker (a look at one file and
    // one process, where a scan of a table of hundreds of workers is slow under load), and
    // is stopped as soon as seen: it cannot finish forking and tell fpmctl it is ready, so
    // fpmctl cannot get past proving it ready, however late it is killed.
    let second = sb.wait_for(Duration::from_secs(10), "a second master", || {
        let pid = sb.pid_from_file().filter(|p| *p != first)?;
        fpmctl::procs::read(pid)
            .filter(|p| p.title == title && !p.is_gone())
            .map(|_| pid)
    });
    kill(Pid::from_raw(second), Signal::SIGSTOP).unwrap();
    run.kill().unwrap();
    run.wait().unwrap();
    sb.note_master(second);
    kill(Pid::from_raw(second), Signal::SIGCONT).unwrap();
    assert!(
        alive(first) && alive(second) && state_of(first) != Some('T'),
        "the restart was not interrupted while it proved the new master ready"
    );
    sb.wait_for(
        Duration::from_secs(60),
        "the new master's launcher to exit",
        || {
            let parent = fpmctl::procs::read(second)?.ppid;
            let launching = fpmctl::procs::read(parent).is_some_and(|p| {
                !p.is_gone()
                    && fpmctl::identity::master_claim(&p, &sb.conf)
                        == fpmctl::identity::Claim::Master
            });
            (!launching).then_some(())
        },
    );
    (first, second)
}

/// The cron job finds the same state with FPM answering: it retires the second master under
/// the lock (its workers finish their requests) and says so, so that the next restart hands
/// over instead of stopping both.
#[test]
fn ensure_retires_a_master_an_interrupted_restart_left_running_beside_the_serving_one() {
    let Some(sb) = Sandbox::new() else { return };
    let (first, second) = kill_a_restart_while_it_proves_the_new_master_ready(&sb);
    // The config the serving master runs (ensure judges readiness by the file).
    sb.write_config(&sb.config_text());
    let run = sb.fpmctl(&["ensure"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("finished retiring master {second}")),
        "{run}"
    );
    assert!(!alive(second), "{run}");
    assert!(alive(first), "{run}");
    assert_eq!(sb.pid_from_file(), Some(first), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [first],
        "{run}"
    );
    // Nothing left to repair: silent again.
    let again = sb.fpmctl(&["ensure"]);
    again.expect_code(0);
    assert!(again.stdout.is_empty(), "{again}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// fpmctl SIGKILLed while it proves the new master ready leaves two running masters on the
/// same sockets. The next restart keeps the old one (it served before; the new one was never
/// proven ready), retires the other as it would a stopped one, and hands over as usual: no
/// cold restart, one master left, answering.
#[test]
fn fpmctl_killed_while_proving_the_new_master_ready_leaves_a_state_the_next_restart_repairs() {
    let Some(sb) = Sandbox::new() else { return };
    let (first, second) = kill_a_restart_while_it_proves_the_new_master_ready(&sb);
    let json = sb.fpmctl(&["status", "--json"]).json();
    assert_eq!(json["doubled"][0]["pid"], second, "{json}");
    assert_eq!(json["doubled"][0]["serving"], first, "{json}");
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("left running beside the serving one by an interrupted restart"),
        "the second master was not retired first: {run}"
    );
    assert!(run.stdout.contains("sockets handed over"), "{run}");
    assert!(!run.stdout.contains("cold restart"), "{run}");
    let pid = sb.pid_from_file().unwrap();
    sb.note_master(pid);
    assert!(!alive(first), "{run}");
    assert!(!alive(second), "{run}");
    assert_eq!(
        sb.masters().iter().map(|m| m.pid()).collect::<Vec<_>>(),
        [pid],
        "{run}"
    );
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Gives a command the listening socket `fd` as its descriptor 3 (without close-on-exec).
fn with_socket_as_fd3(cmd: &mut std::process::Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only dup2 and fcntl run, both async-signal-safe, on
    // descriptors of the child.
    unsafe {
        cmd.pre_exec(move || {
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// An unprivileged user who can run PHP code can start php-fpm's own binary with a command
/// line naming the config (`php-fpm -i -y CONF`, blocked on its output) holding the listening
/// socket, which programs started from a worker inherit. Older than the master (which got the
/// socket after it, as a hand-over's new master does), it holds every address: it must never
/// count as the serving master of a doubled pair, so the real master is not retired in its
/// favour by root.
#[test]
fn a_program_of_another_user_holding_the_socket_never_gets_the_serving_master_retired() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let Some(sb) = Sandbox::with(common::Opts {
        sock_pool: false,
        ..common::Opts::default()
    }) else {
        return;
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", sb.port)).unwrap();
    let (_full, w) = common::full_pipe();
    let mut planted = Command::new(&sb.bin);
    planted
        .arg("-i")
        .arg("-y")
        .arg(&sb.conf)
        .stdout(Stdio::from(w))
        .stderr(Stdio::null())
        .uid(65534)
        .gid(65534);
    with_socket_as_fd3(&mut planted, listener.as_raw_fd());
    let planted = sb.spawn(&mut planted) as i32;
    let title = format!("{} -i -y {}", sb.bin.display(), sb.conf.display());
    sb.wait_for(
        Duration::from_secs(10),
        "the planted program to run",
        || fpmctl::procs::read(planted).filter(|p| p.title == title && p.state == 'S'),
    );
    // The master, started after it on the same socket.
    let mut fpm = Command::new(&sb.bin);
    fpm.arg("-y")
        .arg(&sb.conf)
        .arg("-D")
        .env("FPM_SOCKETS", format!("127.0.0.1:{}=3", sb.port))
        .stdin(Stdio::null());
    with_socket_as_fd3(&mut fpm, listener.as_raw_fd());
    let out = fpm.output().unwrap();
    assert!(out.status.success(), "{}", sb.error_log());
    let master = sb.wait_for(Duration::from_secs(10), "a pid file", || sb.pid_from_file());
    sb.note_master(master);
    drop(listener);
    sb.wait_for(Duration::from_secs(10), "workers", || {
        (!sb.workers_of(master).is_empty()).then_some(())
    });

    let json = sb.fpmctl(&["status", "--json"]).json();
    assert_eq!(json["doubled"], serde_json::json!([]), "{json}");
    let cfg = sb.fpm_config().unwrap();
    let done = fpmctl::handover::interrupted::finish(
        &cfg,
        &fpmctl::discovery::discover(&cfg),
        fpmctl::deadline::Deadline::after(Duration::from_secs(5)),
    );
    assert!(
        done.is_empty(),
        "{:?}",
        done.iter().map(|f| f.line()).collect::<Vec<_>>()
    );
    assert!(alive(master) && state_of(master) != Some('T'));
}

/// A unix socket's path lies in a directory its pool's user may be able to write (a run
/// directory owned by it): swapped for a symlink, it must never lead the permissions a
/// restart applies (`listen.mode = 0666` here, as root) onto the file it points to.
#[test]
fn a_socket_path_swapped_for_a_symlink_never_leads_a_restart_chmod_onto_its_target() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let target = sb.path().join("root-only");
    std::fs::write(&target, "secret\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&sb.sock).unwrap();
    std::os::unix::fs::symlink(&target, &sb.sock).unwrap();
    let run = sb.fpmctl(&["restart"]);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o600,
        "the restart changed the symlink's target: {run}"
    );
}
