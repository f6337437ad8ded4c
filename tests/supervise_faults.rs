//! `fpmctl supervise` under faults, against a real php-fpm: a crash during a requested
//! restart, signals (also as PID 1 of a PID namespace), processes PHP requests leave behind,
//! hostile control clients, and an idle supervisor's wakeups.

mod common;
use common::{Sandbox, alive};
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

fn signal(pid: i32, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// The supervisor's FPM masters: its children that are php-fpm masters of this sandbox.
fn masters_of(sb: &Sandbox, sup: u32) -> Vec<i32> {
    sb.masters()
        .iter()
        .filter(|m| m.ppid == sup as i32)
        .map(|m| m.pid())
        .collect()
}

/// The control socket of the sandbox's supervisor.
fn control_socket(sb: &Sandbox) -> PathBuf {
    std::fs::read_dir(sb.lock_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ctl"))
        .expect("a control socket")
}

/// The notify socket the supervisor gives FPM.
fn notify_socket(sb: &Sandbox) -> PathBuf {
    std::fs::read_dir(sb.lock_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("notify-"))
        })
        .expect("a notify directory")
        .join("notify.sock")
}

/// A `status` field of the process `pid` (`VmRSS`, `voluntary_ctxt_switches`, ...), as a
/// number.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

/// Runs `script` on the TCP pool over FastCGI; the body.
fn php(sb: &Sandbox, script: &str) -> String {
    let listen = fpmctl::listen::ListenAddr::parse(&sb.tcp_addr()).unwrap();
    let mut req = fpmctl::fastcgi::Request::get(&format!("/{script}"));
    req.script_filename = sb.docroot().join(script).display().to_string();
    let resp = fpmctl::fastcgi::request(&listen, &req, Duration::from_secs(30)).unwrap();
    String::from_utf8_lossy(&resp.body).into_owned()
}

/// Case 5: the serving master crashes while a requested restart starts its replacement, and
/// the replacement crashes too within the crash window (backoff). No master is leaked, the
/// restart is answered once FPM is ready again, and a stop ends everything with exit 0.
#[test]
fn case5_a_crash_during_a_requested_restart_leaks_no_master_and_stop_exits_0() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&["--max-restarts", "5", "--within", "60s"], &[]);
    let first = sb.wait_supervised_ready();
    // Keep the replacement from saying READY=1 (it falls back to a probe after 1s): the
    // restart's window stays open long enough to crash both masters inside it.
    let notify = notify_socket(&sb);
    let hidden = notify.with_extension("hidden");
    std::fs::rename(&notify, &hidden).unwrap();
    let restart = sb.fpmctl_spawn(&["restart"]);
    let second = sb.wait_for(Duration::from_secs(10), "the replacement master", || {
        masters_of(&sb, sup).into_iter().find(|m| *m != first)
    });
    signal(first, Signal::SIGKILL);
    // The serving master's crash is handled (the replacement takes over) before the
    // replacement crashes in turn.
    sb.wait_for(
        Duration::from_secs(10),
        "the first crash to be handled",
        || {
            sb.supervise_log()
                .contains(&format!("FPM master exited pid={first} "))
                .then_some(())
        },
    );
    signal(second, Signal::SIGKILL);
    std::fs::rename(&hidden, &notify).unwrap();
    let third = sb.wait_for(Duration::from_secs(20), "a third master, ready", || {
        let m = sb.wait_supervised_ready();
        (m != first && m != second).then_some(m)
    });
    let out = restart.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.supervise_log()
    );
    assert_eq!(masters_of(&sb, sup), vec![third], "{}", sb.supervise_log());
    sb.fpmctl(&["ping"]).expect_code(0);
    let log = sb.supervise_log();
    assert!(log.contains("restarting FPM in"), "no backoff:\n{log}");
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0, "{log}");
    assert!(sb.leftovers().is_empty(), "{}", sb.supervise_log());
    assert!(!alive(third));
}

/// Case 10: SIGQUIT (Docker's STOPSIGNAL for php images) stops FPM gracefully, also when the
/// supervisor is PID 1 of its own PID namespace, where the kernel drops signals a process
/// does not handle.
#[test]
fn case10_sigquit_stops_gracefully_as_pid_1_of_a_pid_namespace() {
    let Some(sb) = Sandbox::new() else { return };
    let log = std::fs::File::create(sb.path().join("supervise.log")).unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"])
        .arg(env!("CARGO_BIN_EXE_fpmctl"))
        .arg("-c")
        .arg(&sb.conf)
        .arg("supervise")
        .env("FPMCTL_LOCK_DIR", sb.lock_dir())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let unshare = sb.spawn(&mut cmd);
    let pid1 = sb.wait_for(Duration::from_secs(10), "the supervisor as PID 1", || {
        let children =
            std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
        let pid: i32 = children.split_whitespace().next()?.parse().ok()?;
        let nspid = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        nspid
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1"))
            .then_some(pid)
    });
    let master = sb.wait_for(Duration::from_secs(15), "FPM under PID 1", || {
        sb.masters().first().map(|m| m.pid())
    });
    sb.wait_for(Duration::from_secs(15), "FPM to answer", || {
        sb.fpmctl(&["ping"]).code.eq(&0).then_some(())
    });
    signal(pid1, Signal::SIGQUIT);
    let code = sb.wait_child(unshare, Duration::from_secs(30));
    let log = sb.supervise_log();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stopping FPM gracefully"), "{log}");
    assert!(!alive(master), "{log}");
    assert!(sb.leftovers().is_empty(), "{log}");
}

/// Case 10: SIGUSR1 makes FPM reopen its log (forwarded), SIGUSR2 and SIGHUP restart FPM
/// (never forwarded), and none of them stops the supervisor.
#[test]
fn case10_usr1_reopens_fpms_log_and_usr2_and_hup_restart() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let log = sb.path().join("fpm.log");
    let rotated = sb.path().join("fpm.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(sup as i32, Signal::SIGUSR1);
    sb.wait_for(Duration::from_secs(10), "FPM to reopen its log", || {
        log.exists().then_some(())
    });
    assert_eq!(sb.wait_supervised_ready(), first, "USR1 restarted FPM");
    let mut last = first;
    for sig in [Signal::SIGUSR2, Signal::SIGHUP] {
        signal(sup as i32, sig);
        last = sb.wait_for(Duration::from_secs(15), "a new master", || {
            let m = sb.wait_supervised_ready();
            (m != last).then_some(m)
        });
        sb.fpmctl(&["ping"]).expect_code(0);
    }
    assert!(alive(sup as i32));
    assert_eq!(masters_of(&sb, sup), vec![last], "{}", sb.supervise_log());
    let fpm_log = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(&rotated).unwrap_or_default();
    assert!(!fpm_log.contains("SIGHUP"), "FPM saw a SIGHUP:\n{fpm_log}");
}

/// Case 13: processes PHP requests leave behind (`exec('cmd &')`) are re-parented to the
/// supervisor. A short one is reaped as it exits (no zombie, no busy loop); a long one gets
/// the stop plan with FPM, is named in the log, and a clean FPM stop still exits 0.
#[test]
fn case13_processes_left_behind_by_php_requests_are_reaped_and_stopped_with_fpm() {
    let Some(sb) = Sandbox::new() else { return };
    std::fs::write(
        sb.docroot().join("leave.php"),
        "<?php exec('sleep ' . (int)($_GET['s'] ?? 1) . ' > /dev/null 2>&1 &'); echo 'left';\n",
    )
    .unwrap();
    std::fs::write(
        sb.docroot().join("leave_long.php"),
        // It ignores SIGQUIT, so it outlives FPM's graceful stop.
        "<?php exec(\"sh -c 'trap \\\"\\\" QUIT; exec sleep 300' > /dev/null 2>&1 &\"); echo 'left';\n",
    )
    .unwrap();
    let sup = sb.supervise(&["--signal-plan", "QUIT:4s,TERM:3s,KILL:1s"], &[]);
    sb.wait_supervised_ready();
    let children = |sup: u32| -> Vec<fpmctl::procs::ProcInfo> {
        fpmctl::procs::scan(false)
            .into_iter()
            .filter(|p| p.ppid == sup as i32 && p.comm == "sleep")
            .collect()
    };
    assert_eq!(php(&sb, "leave.php"), "left");
    let short = sb.wait_for(Duration::from_secs(10), "the leftover to be ours", || {
        children(sup).first().map(|p| p.pid())
    });
    // It exits after 1s and is reaped: no zombie stays behind.
    sb.wait_for(Duration::from_secs(15), "the leftover to be reaped", || {
        fpmctl::procs::read(short).is_none().then_some(())
    });
    sb.expect_log("reaped a process left behind by a PHP request");
    assert_eq!(php(&sb, "leave_long.php"), "left");
    let long = sb.wait_for(
        Duration::from_secs(10),
        "the long leftover to be ours",
        || children(sup).first().map(|p| p.pid()),
    );
    signal(sup as i32, Signal::SIGTERM);
    // FPM stops at once; the leftover ignores SIGQUIT and waits for TERM: meanwhile the
    // supervisor sleeps instead of spinning on waitpid.
    sb.wait_for(Duration::from_secs(15), "FPM to stop", || {
        masters_of(&sb, sup).is_empty().then_some(())
    });
    let before = cpu_ticks(sup);
    std::thread::sleep(Duration::from_millis(1500));
    let spent = cpu_ticks(sup) - before;
    assert!(alive(long), "the leftover should still be waiting for TERM");
    assert!(spent <= 10, "{spent} ticks of CPU while waiting");
    let code = sb.wait_child(sup, Duration::from_secs(60));
    let log = sb.supervise_log();
    assert_eq!(code, 0, "FPM itself stopped cleanly:\n{log}");
    assert!(!alive(long), "{log}");
    assert!(
        log.contains("stopping a process left behind by a PHP request") && log.contains("sleep"),
        "{log}"
    );
    assert!(sb.leftovers().is_empty(), "{log}");
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Case 7: five silent control clients do not delay crash handling: FPM is back while they
/// are still connected; they are closed at their deadline, not served in turn.
#[test]
fn case7_silent_control_clients_never_delay_crash_handling() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let ctl = control_socket(&sb);
    let silent: Vec<UnixStream> = (0..5).map(|_| UnixStream::connect(&ctl).unwrap()).collect();
    signal(first, Signal::SIGKILL);
    sb.wait_for(Duration::from_secs(15), "FPM back after the crash", || {
        let m = sb.masters();
        m.iter().any(|p| p.pid() != first).then_some(())
    });
    let log = sb.supervise_log();
    let restarted = log.find("restarting FPM now").expect("a crash restart");
    // The crash was handled before any silent client was given up on.
    if let Some(closed) = log.find("control client sent no request in time") {
        assert!(restarted < closed, "{log}");
    }
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.is_empty(), "a silent client got an answer: {buf:?}");
    }
    sb.wait_supervised_ready();
}

/// Case 7: a 256 MiB request is refused after 64 KiB without growing the supervisor, and the
/// refusal does not quote it.
#[test]
fn case7_a_huge_control_request_does_not_grow_the_supervisor_and_is_not_echoed() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let rss_before = proc_status(sup, "VmRSS");
    let mut s = UnixStream::connect(control_socket(&sb)).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'A'; 1 << 20];
            for _ in 0..256 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    drop(s);
    let _ = writer.join();
    assert!(reply.contains("too large"), "{reply}");
    assert!(!reply.contains("AAAA"), "the request was echoed: {reply}");
    let rss_after = proc_status(sup, "VmRSS");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    sb.fpmctl(&["status"]).expect_code(0);
}

/// Case 11: an idle supervisor sleeps: over a few seconds its loop wakes at most for FPM's
/// own status messages, never on a fixed short interval.
#[test]
fn case11_an_idle_supervisor_does_not_wake_up() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&["--health-interval", "60s"], &[]);
    sb.wait_supervised_ready();
    // Let the first readiness traffic settle.
    std::thread::sleep(Duration::from_millis(500));
    let main_thread = |f: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{f}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = main_thread("voluntary_ctxt_switches");
    std::thread::sleep(Duration::from_secs(3));
    let after = main_thread("voluntary_ctxt_switches");
    // FPM reports its status every 10s (systemd_interval): at most one such wakeup here.
    assert!(
        after - before <= 2,
        "{} wakeups in 3s while idle\n{}",
        after - before,
        sb.supervise_log()
    );
    assert!(masters_of(&sb, sup).len() == 1);
}

/// The POSIX ACL of `path` (`system.posix_acl_access`), if any.
fn acl_of(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: NUL-terminated strings and a buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn mode_uid_gid(path: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.mode() & 0o777, m.uid(), m.gid())
}

/// Case 9: `listen.acl_users` / `listen.acl_groups` on the first start give the held unix
/// socket exactly the ACL php-fpm itself gives a socket it creates.
#[test]
fn case9_listen_acls_are_applied_on_first_start_as_php_fpm_applies_them() {
    let Some(sb) = Sandbox::new() else { return };
    let acl = sb.config_text().replace(
        "listen.mode = 0666\n",
        "listen.mode = 0660\nlisten.acl_users = nobody\nlisten.acl_groups = nogroup\n",
    );
    sb.write_config(&acl);
    // php-fpm's own socket is the oracle.
    let master = sb.start_fpm();
    let theirs = acl_of(&sb.sock).expect("php-fpm sets an ACL");
    let their_mode = mode_uid_gid(&sb.sock);
    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(!alive(master));
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    assert_eq!(acl_of(&sb.sock), Some(theirs), "{}", sb.supervise_log());
    assert_eq!(mode_uid_gid(&sb.sock), their_mode);
    sb.fpmctl(&["ping"]).expect_code(0);
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
}

/// Case 8: a restart applies changed listen.mode/owner/group and ACLs to the held unix
/// socket (the permission-502 fix "change listen.owner and restart" works), and a changed
/// listen address gets a new socket while the old path is removed.
#[test]
fn case8_a_restart_applies_changed_socket_permissions_and_addresses() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    assert_eq!(mode_uid_gid(&sb.sock).0, 0o666);
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    sb.write_config(&sb.config_text().replace(
        "listen.mode = 0666\n",
        "listen.mode = 0600\nlisten.owner = nobody\nlisten.group = nogroup\nlisten.backlog = 7\n",
    ));
    sb.fpmctl(&["restart"]).expect_code(0);
    assert_eq!(mode_uid_gid(&sb.sock), (0o600, nobody, nogroup));
    assert_eq!(acl_of(&sb.sock), None);
    // An ACL added by a restart, then taken away by the next one.
    sb.write_config(&sb.config_text().replace(
        "listen.mode = 0666\n",
        "listen.mode = 0660\nlisten.acl_groups = nogroup\n",
    ));
    sb.fpmctl(&["restart"]).expect_code(0);
    assert!(acl_of(&sb.sock).is_some(), "{}", sb.supervise_log());
    sb.write_config(&sb.config_text());
    sb.fpmctl(&["restart"]).expect_code(0);
    assert_eq!(acl_of(&sb.sock), None);
    assert_eq!(mode_uid_gid(&sb.sock).0, 0o666);
    // A new address: a new socket that FPM serves, and the old path gone.
    let moved = sb.path().join("fpm2.sock");
    sb.write_config(&sb.config_text().replace(
        &format!("listen = {}\n", sb.sock.display()),
        &format!("listen = {}\n", moved.display()),
    ));
    sb.fpmctl(&["restart"]).expect_code(0);
    assert!(moved.exists());
    sb.wait_for(Duration::from_secs(10), "the old socket path to go", || {
        (!sb.sock.exists()).then_some(())
    });
    let listen = fpmctl::listen::ListenAddr::parse(&moved.display().to_string()).unwrap();
    fpmctl::fastcgi::probe(&listen, Duration::from_secs(10)).expect("the new socket serves");
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
}

/// A restart whose new master never comes up (its pid file cannot be created: php-fpm -t
/// passes, the start fails) keeps the serving master, and with it the socket permissions its
/// clients had: the new config's `listen.mode` and owner are undone, nginx's access stays.
/// The next restart, with the config fixed, applies its permissions as usual.
#[test]
fn a_restart_that_fails_puts_the_serving_masters_socket_permissions_back() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let before = mode_uid_gid(&sb.sock);
    assert_eq!(before.0, 0o666);
    let stricter = |text: String| {
        text.replace(
            "listen.mode = 0666\n",
            "listen.mode = 0600\nlisten.owner = nobody\nlisten.group = nogroup\n",
        )
    };
    sb.write_config(&stricter(sb.config_text_dying_at_start()));
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(12);
    assert_eq!(mode_uid_gid(&sb.sock), before, "{}", sb.supervise_log());
    assert_eq!(acl_of(&sb.sock), None);
    assert!(alive(first));
    sb.fpmctl(&["ping"]).expect_code(0);
    // Fixed, the same permissions take over with the new master.
    sb.write_config(&stricter(sb.config_text()));
    sb.fpmctl(&["restart"]).expect_code(0);
    assert_eq!(mode_uid_gid(&sb.sock).0, 0o600, "{}", sb.supervise_log());
    sb.wait_for(
        Duration::from_secs(30),
        "the first master to be retired",
        || (!alive(first)).then_some(()),
    );
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
}

/// The same with an ACL on the serving master's socket (`listen.acl_users`): a restart into a
/// config without it, whose master never comes up, puts the ACL back as it was.
#[test]
fn a_restart_that_fails_puts_the_serving_masters_socket_acl_back() {
    let Some(sb) = Sandbox::new() else { return };
    let with_acl = |text: String| {
        text.replace(
            "listen.mode = 0666\n",
            "listen.mode = 0660\nlisten.acl_users = nobody\nlisten.acl_groups = nogroup\n",
        )
    };
    sb.write_config(&with_acl(sb.config_text()));
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let before = (acl_of(&sb.sock), mode_uid_gid(&sb.sock));
    assert!(before.0.is_some(), "{}", sb.supervise_log());
    sb.write_config(&sb.config_text_dying_at_start());
    sb.fpmctl(&["restart"]).expect_code(12);
    assert_eq!(
        (acl_of(&sb.sock), mode_uid_gid(&sb.sock)),
        before,
        "{}",
        sb.supervise_log()
    );
    assert!(alive(first));
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
}

/// Waits (bounded) until the supervisor reports a ready master other than `old`; the log
/// is shown when it does not.
fn supervised_master_other_than(sb: &Sandbox, old: i32) -> i32 {
    for _ in 0..1000 {
        let run = sb.fpmctl(&["status", "--json"]);
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&run.stdout)
            && j["supervisor"]["ready"] == true
            && let Some(m) = j["supervisor"]["master"].as_i64()
            && m as i32 != old
        {
            return m as i32;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no new supervised master:\n{}", sb.supervise_log());
}

/// Case 6: `fpmctl supervise` SIGKILLed (OOM, kill -9) leaves FPM running; a new
/// `fpmctl supervise` on the same config takes over its sockets and replaces it without a
/// dropped request (one in flight completes, a steady stream of pings never fails), and
/// cleans the dead supervisor's leftovers.
#[test]
fn case6_a_new_supervisor_takes_over_from_a_killed_one_without_dropping_a_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Some(sb) = Sandbox::new() else { return };
    let first_sup = sb.supervise(&[], &[]);
    let old_master = sb.wait_supervised_ready();
    let old_notify = notify_socket(&sb).parent().unwrap().to_path_buf();
    let inflight = common::slow_request(&sb, 6);
    common::wait_busy(&sb);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let pinger = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let tcp = fpmctl::listen::ListenAddr::parse(&sb.tcp_addr()).unwrap();
        let unix = fpmctl::listen::ListenAddr::parse(&sb.sock.display().to_string()).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let a = fpmctl::fastcgi::ping(&tcp, "/ping", Duration::from_secs(20));
                let b = fpmctl::fastcgi::probe(&unix, Duration::from_secs(20));
                if a.is_ok() && b.is_ok() {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    signal(first_sup as i32, Signal::SIGKILL);
    assert_eq!(sb.wait_child(first_sup, Duration::from_secs(10)), -1);
    assert!(alive(old_master), "FPM outlives its supervisor");
    let sup = sb.supervise(&[], &[]);
    let new_master = supervised_master_other_than(&sb, old_master);
    sb.wait_for(
        Duration::from_secs(20),
        "the old master to be retired",
        || (!alive(old_master)).then_some(()),
    );
    let body = inflight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the request in flight failed: {e}\n{}", sb.supervise_log()));
    assert_eq!(body, "slept 6");
    stop.store(true, Ordering::SeqCst);
    pinger.join().unwrap();
    let log = sb.supervise_log();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{log}");
    assert!(ok.load(Ordering::SeqCst) > 0);
    assert!(
        !old_notify.exists(),
        "the dead supervisor's notify dir is left:\n{log}"
    );
    assert_eq!(masters_of(&sb, sup), vec![new_master], "{log}");
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0, "{log}");
    assert!(sb.leftovers().is_empty(), "{}", sb.supervise_log());
    assert!(!sb.sock.exists());
}

/// Case 3: a pool whose workers are all busy with live requests is saturated, not hung:
/// failed health checks while connections wait in its accept queue are reported and never
/// restart FPM (which would cut those requests).
#[test]
fn case3_a_saturated_pool_is_reported_and_never_restarted() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(
        &[
            "--health-interval",
            "1s",
            "--health-timeout",
            "1s",
            "--unhealthy-after",
            "2",
        ],
        &[],
    );
    let master = sb.wait_supervised_ready();
    // Both workers of the TCP pool busy for 6s, and one more client waiting in the queue.
    let busy: Vec<_> = (0..2).map(|_| common::slow_request(&sb, 6)).collect();
    let waiting = std::net::TcpStream::connect(sb.tcp_addr()).unwrap();
    for b in busy {
        let body = b
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("a busy request failed: {e}\n{}", sb.supervise_log()));
        assert_eq!(body, "slept 6");
    }
    drop(waiting);
    let log = sb.supervise_log();
    assert!(log.contains("pool saturated"), "{log}");
    assert!(!log.contains("FPM is unhealthy"), "{log}");
    assert_eq!(sb.wait_supervised_ready(), master, "{log}");
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
}

/// Case 2: readiness is FPM's own `READY=1` from that master's PID (SCM_CREDENTIALS): a
/// `READY=1` from any other process is ignored, and an FPM that stays silent is proven ready
/// by a FastCGI probe instead.
#[test]
fn case2_readiness_is_ready_1_from_that_master_and_a_probe_only_when_fpm_is_silent() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    sb.expect_log("via=\"notify\"");
    // The replacement cannot reach the notify socket under its name; the test can, by the
    // socket's other name, and claims READY=1 for it.
    let notify = notify_socket(&sb);
    let hidden = notify.with_extension("hidden");
    std::fs::rename(&notify, &hidden).unwrap();
    let restart = sb.fpmctl_spawn(&["restart"]);
    sb.wait_for(Duration::from_secs(10), "the replacement master", || {
        masters_of(&sb, sup).into_iter().find(|m| *m != first)
    });
    let spoof = std::os::unix::net::UnixDatagram::unbound().unwrap();
    spoof.send_to(b"READY=1\nSTATUS=spoofed", &hidden).unwrap();
    let out = restart.wait_with_output().unwrap();
    std::fs::rename(&hidden, &notify).unwrap();
    assert!(out.status.success(), "{}", sb.supervise_log());
    // The supervisor writes its log from a thread of its own: a line may follow the answer.
    sb.expect_log("no master of ours");
    sb.expect_log("via=\"probe\"");
    let log = sb.supervise_log();
    assert!(!log.contains("spoofed"), "{log}");
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
}

/// Case 7: more silent clients than the supervisor serves at once fill its slots; the rest
/// wait in the kernel's backlog. Crash handling goes on, and once the silent ones reach their
/// deadline a real request is answered.
#[test]
fn case7_connections_are_bounded_and_a_flood_of_silent_clients_blocks_nothing() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let ctl = control_socket(&sb);
    let flood: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(&ctl).ok())
        .collect();
    assert!(flood.len() >= 32);
    signal(first, Signal::SIGKILL);
    sb.wait_for(Duration::from_secs(15), "FPM back after the crash", || {
        sb.masters()
            .iter()
            .any(|p| p.pid() != first && p.ppid == sup as i32)
            .then_some(())
    });
    assert_ne!(sb.wait_supervised_ready(), first);
    assert!(alive(sup as i32));
    drop(flood);
}

/// A supervisor SIGKILLed (OOM) while it retires a master leaves that master stopped
/// (SIGSTOP) beside the new one: `status` names it, and the next `supervise` finishes its
/// retirement before it takes over the serving master.
#[test]
fn a_supervisor_killed_while_retiring_a_master_leaves_it_stopped_until_the_next_one_finishes_it() {
    let Some(sb) = Sandbox::new() else { return };
    let first_sup = sb.supervise(&[], &[]);
    let old_master = sb.wait_supervised_ready();
    let inflight = common::slow_request(&sb, 8);
    common::wait_busy(&sb);
    let mut restart = sb.fpmctl_spawn(&["restart"]);
    // The old master is retired once the new one is ready: stopped, its busy worker still
    // finishing the request. Now the supervisor dies.
    sb.wait_for(
        Duration::from_secs(30),
        "the old master to be stopped",
        || {
            fpmctl::procs::read(old_master)
                .is_some_and(|p| p.state == 'T')
                .then_some(())
        },
    );
    signal(first_sup as i32, Signal::SIGKILL);
    assert_eq!(sb.wait_child(first_sup, Duration::from_secs(10)), -1);
    let _ = common::wait_run(&mut restart, &["restart"], Duration::from_secs(30));
    for m in sb.masters() {
        sb.note_master(m.pid());
    }
    // The new master the dead supervisor started, which the next one takes over.
    let taken = sb.pid_from_file().unwrap();
    assert_ne!(taken, old_master);
    assert_eq!(
        fpmctl::procs::read(old_master).map(|p| p.state),
        Some('T'),
        "the stopped master did not stay stopped when its supervisor died"
    );
    let status = sb.fpmctl(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("master    {old_master} STOPPED")),
        "{status}"
    );
    let sup = sb.supervise(&[], &[]);
    sb.wait_for(
        Duration::from_secs(30),
        "the stopped master to be retired",
        || (!alive(old_master)).then_some(()),
    );
    let body = inflight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the request in flight failed: {e}\n{}", sb.supervise_log()));
    assert_eq!(body, "slept 8");
    let master = supervised_master_other_than(&sb, taken);
    sb.wait_for(
        Duration::from_secs(30),
        "the taken-over master to be retired",
        || (!alive(taken)).then_some(()),
    );
    let log = sb.supervise_log();
    assert_eq!(masters_of(&sb, sup), vec![master], "{log}");
    sb.fpmctl(&["ping"]).expect_code(0);
    signal(sup as i32, Signal::SIGTERM);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0, "{log}");
    assert!(sb.leftovers().is_empty(), "{}", sb.supervise_log());
}

/// A master a supervisor took over from one that died is not its child (its parent is
/// init): a command run with another FPMCTL_LOCK_DIR still finds that supervisor, by the
/// listening sockets it holds with the master, and refuses to act behind its back (a stop
/// would be taken for a crash). Here the take-over's replacement cannot start, so the
/// supervisor keeps serving with the master it took over.
#[test]
fn a_command_with_another_lock_dir_refuses_a_master_its_supervisor_took_over() {
    let Some(sb) = Sandbox::new() else { return };
    let first_sup = sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    signal(first_sup as i32, Signal::SIGKILL);
    assert_eq!(sb.wait_child(first_sup, Duration::from_secs(10)), -1);
    assert!(alive(master), "FPM outlives its supervisor");
    // php-fpm -t accepts it; a master started on it exits at start.
    sb.write_config(&sb.config_text_dying_at_start());
    let sup = sb.supervise(&["--max-restarts", "1000", "--within", "60s"], &[]);
    sb.expect_log("exited before it was ready");
    assert!(alive(master), "{}", sb.supervise_log());
    let other = sb.root.join("other-locks");
    let other = other.to_str().unwrap();
    for args in [&["stop"][..], &["restart"], &["supervise"]] {
        let run = sb.fpmctl_env(args, &[("FPMCTL_LOCK_DIR", other)]);
        run.expect_code(9);
        assert!(
            run.stderr
                .contains(&format!("runs under fpmctl supervisor {sup}")),
            "{run}\n{}",
            sb.supervise_log()
        );
        assert!(alive(master), "{run}");
    }
    signal(sup as i32, Signal::SIGTERM);
    sb.wait_child(sup, Duration::from_secs(30));
}

/// A supervisor in its crash backoff holds the config's sockets while no master runs: `start`
/// and `ensure` from another lock directory must not start an FPM beside it (it would fail
/// on the held addresses at best).
#[test]
fn a_start_with_another_lock_dir_refuses_a_supervisor_in_its_backoff() {
    let Some(sb) = Sandbox::new() else { return };
    // php-fpm -t accepts it; a master started on it exits at start.
    sb.write_config(&sb.config_text_dying_at_start());
    let sup = sb.supervise(&["--max-restarts", "1000", "--within", "60s"], &[]);
    sb.expect_log("restarting FPM in");
    let other = sb.root.join("other-locks");
    let other = other.to_str().unwrap();
    for args in [&["start"][..], &["ensure"]] {
        let run = sb.fpmctl_env(args, &[("FPMCTL_LOCK_DIR", other)]);
        run.expect_code(9);
        assert!(
            run.stderr.contains(&format!("fpmctl supervisor {sup}")),
            "{run}\n{}",
            sb.supervise_log()
        );
    }
    signal(sup as i32, Signal::SIGTERM);
    sb.wait_child(sup, Duration::from_secs(30));
}

/// An fpmctl installed under another name is still known as a supervisor by that same
/// program: `start` from another lock directory refuses the supervisor in its backoff.
#[test]
fn a_renamed_fpmctl_knows_its_own_supervisor() {
    let Some(sb) = Sandbox::new() else { return };
    // Copied through the harness: it waits out the ETXTBSY of another test thread's fork
    // that still holds the copy's write descriptor.
    let renamed = sb.copy_program(
        std::path::Path::new(env!("CARGO_BIN_EXE_fpmctl")),
        "fpm-keeper",
    );
    sb.write_config(&sb.config_text_dying_at_start());
    let log = std::fs::File::create(sb.root.join("supervise.log")).unwrap();
    let mut cmd = std::process::Command::new(&renamed);
    cmd.arg("-c")
        .arg(&sb.conf)
        .args(["supervise", "--max-restarts", "1000", "--within", "60s"])
        .env("FPMCTL_LOCK_DIR", sb.root.join("locks"))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let sup = sb.spawn(&mut cmd);
    sb.expect_log("restarting FPM in");
    let out = std::process::Command::new(&renamed)
        .arg("-c")
        .arg(&sb.conf)
        .arg("start")
        .env("FPMCTL_LOCK_DIR", sb.root.join("other-locks"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(9),
        "{stderr}\n{}",
        sb.supervise_log()
    );
    assert!(
        stderr.contains(&format!("fpmctl supervisor {sup}")),
        "{stderr}"
    );
    signal(sup as i32, Signal::SIGTERM);
    sb.wait_child(sup, Duration::from_secs(30));
}
