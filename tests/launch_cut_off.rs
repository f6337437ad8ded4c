//! A `php-fpm -D` launcher cut off at fpmctl's limit, against real php-fpm: its error log is a
//! FIFO whose reader stalled ([`common::stuck_log`]), so the daemon it forked blocks writing
//! `fpm is running` before it reports its start to the launcher. fpmctl must name what the
//! launcher left behind and deal with it as documented (README, "Exit codes").

mod common;
use common::stuck_log::StuckLog;
use common::{Opts, Sandbox, alive};
use std::time::Duration;

/// fpmctl's limit for the launcher. The daemon blocks for good, so the launcher is always cut
/// off at it; it is generous only so that a loaded machine still forks the daemon before.
const LIMIT: &str = "8s";

/// A sandbox whose error log is a stalled FIFO (and, with `debug`, at log level debug).
fn stalled(debug: bool) -> Option<(Sandbox, StuckLog)> {
    let sb = Sandbox::with(Opts {
        sock_pool: false,
        ..Opts::default()
    })?;
    let fifo = sb.root.join("fpm-log.fifo");
    let mut text = sb.config_text().replace(
        &format!("error_log = {}/fpm.log", sb.root.display()),
        &format!("error_log = {}", fifo.display()),
    );
    if debug {
        text = text.replace("[global]\n", "[global]\nlog_level = debug\n");
    }
    assert!(text.contains("fpm-log.fifo"), "{text}");
    sb.write_config(&text);
    let log = StuckLog::new(&fifo, &sb.conf, &sb.bin);
    Some((sb, log))
}

#[test]
fn start_cut_off_names_the_master_it_left_running_which_then_comes_up() {
    let Some((sb, log)) = stalled(false) else {
        return;
    };
    let run = sb.fpmctl(&["start", "--timeout", LIMIT]);
    run.expect_code(8);
    // The daemon wrote its pid file (after binding its sockets), then blocked on its log.
    let master = sb
        .pid_from_file()
        .unwrap_or_else(|| panic!("no pid file of the half-started master:\n{run}"));
    sb.note_master(master);
    assert!(alive(master), "{run}");
    assert!(sb.workers_of(master).is_empty(), "{run}");
    for needle in [
        "did not return within".to_string(),
        format!("master PID {master}"),
        "no worker yet".to_string(),
        "left running".to_string(),
        format!("fpmctl -c {} ping", sb.conf.display()),
    ] {
        assert!(run.stderr.contains(&needle), "missing {needle:?}:\n{run}");
    }
    // A second start does not start another FPM beside it.
    let again = sb.fpmctl(&["start", "--timeout", "1s"]);
    again.expect_code(10);
    assert_eq!(sb.masters().len(), 1, "{again}");
    // Left running, it comes up on its own once its log is read again.
    log.drain();
    sb.wait_for(Duration::from_secs(30), "the master's workers", || {
        (sb.workers_of(master).len() >= 2).then_some(())
    });
    let ping = sb.fpmctl(&["ping", "--timeout", "20s"]);
    ping.expect_code(0);
    sb.fpmctl(&["stop"]).expect_code(0);
    assert!(!alive(master));
}

#[test]
fn start_cut_off_before_the_master_bound_its_sockets_names_it_and_stop_ends_it() {
    // At log level debug the daemon blocks on its log early in its init, before its
    // sockets and pid file: it is still proven this config's master by its command line.
    let Some((sb, _log)) = stalled(true) else {
        return;
    };
    let run = sb.fpmctl(&["start", "--timeout", LIMIT]);
    run.expect_code(8);
    let master: i32 = run
        .stderr
        .split("master PID ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no master named:\n{run}"));
    sb.note_master(master);
    assert!(alive(master), "{run}");
    assert!(run.stderr.contains("not yet bound its sockets"), "{run}");
    assert!(sb.pid_from_file().is_none(), "{run}");
    // Recognised, it is stopped by `stop` even though it never finished its start.
    let stop = sb.fpmctl(&["stop", "--timeout", "10s"]);
    stop.expect_code(0);
    assert!(!alive(master), "{stop}");
}

#[test]
fn restart_hand_over_cut_off_stops_the_new_master_and_the_old_one_keeps_serving() {
    let Some((sb, log)) = stalled(false) else {
        return;
    };
    log.drain();
    let run = sb.fpmctl(&["start", "--json"]);
    run.expect_code(0);
    let old = run.json()["master"].as_i64().unwrap() as i32;
    sb.note_master(old);
    // The log stalls again: a new master would block in its start.
    drop(log);
    let text = std::fs::read_to_string(&sb.conf)
        .unwrap()
        .replace("fpm-log.fifo", "fpm-log2.fifo");
    sb.write_config(&text);
    let log = StuckLog::new(&sb.root.join("fpm-log2.fifo"), &sb.conf, &sb.bin);
    let run = sb.fpmctl(&["restart", "--timeout", LIMIT]);
    run.expect_code(12);
    let new: i32 = run
        .stderr
        .split("the new master PID ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no new master named:\n{run}"));
    assert_ne!(new, old);
    assert!(run.stderr.contains("it had started was stopped"), "{run}");
    assert!(
        run.stderr.contains(&format!("master {old} keeps serving")),
        "{run}"
    );
    sb.wait_for(Duration::from_secs(10), "the new master to be gone", || {
        (!alive(new)).then_some(())
    });
    assert!(alive(old));
    assert_eq!(sb.pid_from_file(), Some(old), "{run}");
    // The old master answers on its sockets.
    let ping = sb.fpmctl(&["ping", "--timeout", "20s"]);
    ping.expect_code(0);
    log.drain();
    sb.fpmctl(&["stop"]).expect_code(0);
}

#[test]
fn reload_recover_and_ensure_name_the_master_a_cut_off_launcher_left_and_ensure_then_reports_it() {
    let Some((sb, log)) = stalled(false) else {
        return;
    };
    // `reload --recover` of a stopped FPM starts it as `start` does.
    let run = sb.fpmctl(&["reload", "--recover", "--timeout", LIMIT]);
    run.expect_code(8);
    let master = sb
        .pid_from_file()
        .unwrap_or_else(|| panic!("no pid file of the half-started master:\n{run}"));
    sb.note_master(master);
    assert!(
        run.stderr.contains(&format!("master PID {master}")),
        "{run}"
    );
    assert!(run.stderr.contains("left running"), "{run}");
    // The cron job sees it running but not ready, and starts nothing beside it.
    let ensure = sb.fpmctl(&["ensure", "--timeout", "1s"]);
    ensure.expect_code(10);
    assert_eq!(sb.masters().len(), 1, "{ensure}");
    log.drain();
    sb.wait_for(Duration::from_secs(30), "the master's workers", || {
        (sb.workers_of(master).len() >= 2).then_some(())
    });
    let ensure = sb.fpmctl(&["ensure", "--timeout", "20s"]);
    ensure.expect_code(0);
    sb.fpmctl(&["stop"]).expect_code(0);
}

/// A config test that hangs (the error log a FIFO nobody reads, its buffer full: php-fpm -t
/// blocks writing its verdict there) ends a start at the launch's limit (5 s at least, so
/// here for `--timeout 1s`), not at the 60 s any other `php-fpm -t` gets; nothing is started.
#[test]
fn start_whose_config_test_hangs_ends_at_the_launch_limit_and_starts_nothing() {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let Some(sb) = Sandbox::with(Opts {
        sock_pool: false,
        ..Opts::default()
    }) else {
        return;
    };
    let fifo = sb.root.join("full.fifo");
    let text = sb.config_text().replace(
        &format!("error_log = {}/fpm.log", sb.root.display()),
        &format!("error_log = {}", fifo.display()),
    );
    assert!(text.contains("full.fifo"), "{text}");
    sb.write_config(&text);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    // Held open for reading and writing, so opening it never blocks; one page, filled.
    let fd = open(&fifo, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
    // SAFETY: fcntl(2) on a descriptor this test owns; no memory is passed.
    let set = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(set > 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
    while nix::unistd::write(&fd, &[b'x'; 256]).is_ok() {}
    let run = sb.fpmctl(&["start", "--timeout", "1s"]);
    run.expect_code(8);
    assert!(
        run.stderr.contains("-t on") && run.stderr.contains("did not finish within 5.0s"),
        "{run}"
    );
    assert!(sb.masters().is_empty(), "{run}");
    assert_eq!(sb.pid_from_file(), None, "{run}");
    drop(fd);
}
