//! `fpmctl supervise` against a real php-fpm: crash recovery, crash loops, signals, the
//! control socket, sd_notify, and restarts that keep the socket path and in-flight requests.

mod common;
use common::{Opts, Sandbox, alive, slow_request, wait_busy};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// The supervised master once it is another than `first`, ready (after a crash restart).
fn wait_replaced(sb: &Sandbox, first: i32, limit: Duration) -> i32 {
    sb.wait_for(limit, "a new master", || {
        let m = sb.wait_supervised_ready();
        (m != first).then_some(m)
    })
}

#[test]
fn supervise_starts_fpm_and_status_names_the_supervisor() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["master"]["pid"], master, "{run}");
    assert_eq!(j["supervisor"]["supervisor_pid"], sup, "{run}");
    for l in j["listen"].as_array().unwrap() {
        let roles: Vec<&str> = l["holder_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["role"].as_str().unwrap())
            .collect();
        assert!(roles.contains(&"supervisor"), "{run}");
        assert!(!roles.contains(&"foreign"), "{run}");
    }
    sb.fpmctl(&["ping"]).expect_code(0);
    // start on a supervised config answers with the supervisor's view
    let start = sb.fpmctl(&["start"]);
    start.expect_code(0);
    assert!(start.stdout.contains("supervis"), "{start}");
}

#[test]
fn kill_9_of_the_master_brings_fpm_back_ready_with_no_orphan() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    // Its whole process group (FPM runs in a session of its own): a worker forked a moment
    // ago still bears the master's title, and is orphaned by the kill all the same.
    let old_workers: Vec<i32> = sb
        .group_of(first)
        .iter()
        .map(|p| p.pid())
        .filter(|p| *p != first)
        .collect();
    signal(first as u32, nix::sys::signal::SIGKILL);
    let second = wait_replaced(&sb, first, Duration::from_secs(15));
    sb.wait_for(Duration::from_secs(15), "the old workers to exit", || {
        old_workers.iter().all(|w| !alive(*w)).then_some(())
    });
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["orphans"].as_array().unwrap().len(), 0, "{run}");
    assert_eq!(run.json()["master"]["pid"], second, "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
    sb.expect_log("was killed by SIGKILL");
}

/// The `mappings=N` of each of the supervisor's "released the pages" log lines.
fn releases(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("released the pages"))
        .filter_map(|l| l.split_once("mappings=")?.1.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_settled_supervisor_releases_its_start_up_pages_and_still_recovers_and_restarts() {
    let Some(sb) = Sandbox::new() else { return };
    // Released by default: no FPMCTL_RELEASE_PAGES.
    sb.supervise(&[], &[("FPMCTL_LOG", "fpmctl=debug")]);
    let first = sb.wait_supervised_ready();
    sb.expect_log("released the pages");
    sb.wait_for(
        Duration::from_secs(10),
        "a release of the binary's pages",
        || {
            releases(&sb.supervise_log())
                .iter()
                .any(|n| *n >= 1)
                .then_some(())
        },
    );
    let before = releases(&sb.supervise_log()).len();
    // Crash handling, the control socket and a restart fault their code back in.
    signal(first as u32, nix::sys::signal::SIGKILL);
    let second = wait_replaced(&sb, first, Duration::from_secs(15));
    sb.fpmctl(&["ping"]).expect_code(0);
    sb.fpmctl(&["restart"]).expect_code(0);
    let third = sb.wait_supervised_ready();
    assert_ne!(third, second);
    sb.fpmctl(&["ping"]).expect_code(0);
    // Settled again after each: released again.
    sb.wait_for(Duration::from_secs(10), "another release", || {
        (releases(&sb.supervise_log()).len() > before).then_some(())
    });
    sb.fpmctl(&["stop"]).expect_code(0);
}

#[test]
fn release_pages_0_keeps_the_binarys_pages() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(
        &[],
        &[
            ("FPMCTL_LOG", "fpmctl=debug"),
            ("FPMCTL_RELEASE_PAGES", "0"),
        ],
    );
    sb.wait_supervised_ready();
    sb.fpmctl(&["restart"]).expect_code(0);
    sb.wait_supervised_ready();
    sb.fpmctl(&["stop"]).expect_code(0);
    sb.wait_child(sup, Duration::from_secs(30));
    let log = sb.supervise_log();
    assert!(log.contains("FPM ready"), "{log}");
    assert!(releases(&log).is_empty(), "{log}");
}

#[test]
fn an_fpm_that_dies_right_after_start_ends_in_backoff_then_the_crash_loop_exit_code() {
    let Some(sb) = Sandbox::new() else { return };
    // php-fpm -t accepts this pid path; FPM fails to write it at start and exits (78).
    sb.write_config(&sb.config_text_dying_at_start());
    let started = Instant::now();
    let sup = sb.supervise(&["--max-restarts", "3", "--within", "60s"], &[]);
    let code = sb.wait_child(sup, Duration::from_secs(30));
    let log = sb.supervise_log();
    assert_eq!(code, 13, "{log}");
    assert!(log.contains("restarting FPM in"), "no backoff seen:\n{log}");
    assert!(log.contains("giving up"), "{log}");
    // Backoff took time: 0 + 0.2 + 0.4 (+ jitter) seconds at least.
    assert!(started.elapsed() >= Duration::from_millis(600), "{log}");
    assert!(sb.leftovers().is_empty(), "{log}");
    assert!(!sb.sock.exists(), "socket file left behind:\n{log}");
}

#[test]
fn sigterm_stops_fpm_gracefully_and_leaves_nothing_behind() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    signal(sup, nix::sys::signal::SIGTERM);
    let code = sb.wait_child(sup, Duration::from_secs(30));
    assert_eq!(code, 0, "{}", sb.supervise_log());
    assert!(sb.leftovers().is_empty(), "{}", sb.supervise_log());
    assert!(!sb.sock.exists(), "socket path left");
    let keepers: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("fpmctl-held"))
        .collect();
    assert!(keepers.is_empty(), "{keepers:?}");
    assert!(std::net::TcpListener::bind(sb.tcp_addr()).is_ok());
}

#[test]
fn a_second_sigterm_stops_fast_even_with_a_long_request_in_flight() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let req = slow_request(&sb, 60);
    wait_busy(&sb);
    signal(sup, nix::sys::signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sb.leftovers().iter().any(|p| p.title.contains("pool tcp")),
        "graceful stop did not wait"
    );
    signal(sup, nix::sys::signal::SIGTERM);
    let code = sb.wait_child(sup, Duration::from_secs(20));
    assert_eq!(code, 0, "{}", sb.supervise_log());
    // Fast, whatever the machine's load: the 60 s request was cut, not waited for.
    let cut = req.join().unwrap();
    assert!(cut.is_err(), "{cut:?}\n{}", sb.supervise_log());
    assert!(sb.leftovers().is_empty(), "{}", sb.supervise_log());
    sb.expect_log("stopping FPM fast");
}

#[test]
fn fpmctl_stop_goes_through_the_supervisor() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let run = sb.fpmctl(&["stop"]);
    run.expect_code(0);
    assert!(run.stdout.contains("through the supervisor"), "{run}");
    assert_eq!(sb.wait_child(sup, Duration::from_secs(10)), 0);
    assert!(sb.leftovers().is_empty());
}

#[test]
fn restarts_through_the_supervisor_never_remove_the_socket_path_and_replace_the_master() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let mut master = sb.wait_supervised_ready();
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, missing, path) = (stop.clone(), missing.clone(), sb.sock.clone());
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if !path.exists() {
                    missing.fetch_add(1, Ordering::SeqCst);
                }
                checks += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            checks
        })
    };
    for i in 0..5 {
        let run = sb.fpmctl(&["restart"]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("through the supervisor"),
            "restart {i}: {run}"
        );
        let now = sb.wait_supervised_ready();
        assert_ne!(
            now, master,
            "restart {i} did not replace the master:\n{run}"
        );
        master = now;
        sb.fpmctl(&["ping"]).expect_code(0);
    }
    stop.store(true, Ordering::SeqCst);
    let checks = watcher.join().unwrap();
    assert!(checks > 100);
    assert_eq!(
        missing.load(Ordering::SeqCst),
        0,
        "the socket path was missing during restarts"
    );
    sb.wait_for(Duration::from_secs(10), "retired masters to go", || {
        (sb.masters().len() == 1).then_some(())
    });
}

#[test]
fn a_restart_keeps_a_ten_second_request_and_returns_long_before_it_ends() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let req = slow_request(&sb, 10);
    wait_busy(&sb);
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(0);
    // Long before it ends, whatever the machine's load: the request still runs.
    assert!(!req.is_finished(), "restart waited for the request: {run}");
    sb.fpmctl(&["ping"]).expect_code(0);
    let body = req
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", sb.supervise_log()));
    assert_eq!(body, "slept 10");
}

#[test]
fn a_restart_into_new_pm_settings_applies_them() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    sb.write_config(
        &sb.config_text()
            .replace("pm.max_children = 2", "pm.max_children = 3"),
    );
    sb.fpmctl(&["restart"]).expect_code(0);
    let run = sb.fpmctl(&["status", "--json"]);
    assert_eq!(run.json()["pools"][0]["expected_workers"], 3, "{run}");
    // FPM is ready once it forked its workers; one forked last may still bear the master's
    // title for a moment, and status names a pool's workers by their titles.
    sb.wait_for(Duration::from_secs(10), "3 tcp workers in status", || {
        let run = sb.fpmctl(&["status", "--json"]);
        let tcp = &run.json()["pools"][0];
        (tcp["workers"].as_array()?.len() == 3).then_some(())
    });
}

/// An edit not yet applied by a restart: FPM reads the file itself, so the master a crash
/// restart starts runs it, and the supervisor follows: the new pool's socket is held like the
/// others (it survives the next restart), not bound by FPM alone.
#[test]
fn a_crash_restart_runs_the_edited_config_and_the_supervisor_holds_its_new_socket() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let extra = sb.root.join("extra.sock");
    sb.write_config(&format!(
        "{}\n[extra]\nuser = nobody\ngroup = nogroup\nlisten = {}\nlisten.mode = 0666\npm = static\npm.max_children = 1\n",
        sb.config_text(),
        extra.display()
    ));
    signal(first as u32, nix::sys::signal::SIGKILL);
    wait_replaced(&sb, first, Duration::from_secs(15));
    sb.expect_log("the config on disk changed since FPM last started");
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(0);
    let j = run.json();
    let entry = j["listen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"] == extra.display().to_string())
        .unwrap_or_else(|| panic!("no listen entry for {}: {run}", extra.display()));
    let roles: Vec<&str> = entry["holder_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["role"].as_str().unwrap())
        .collect();
    assert!(roles.contains(&"supervisor"), "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// A pool removed from the file before a crash: its socket is not held on for a master that
/// does not serve it (clients would wait on a backlog nobody accepts from).
#[test]
fn a_crash_restart_into_a_config_without_a_pool_closes_and_removes_its_socket() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    let without_sock = sb.config_text_with(Opts {
        sock_pool: false,
        ..Opts::default()
    });
    sb.write_config(&without_sock);
    signal(first as u32, nix::sys::signal::SIGKILL);
    wait_replaced(&sb, first, Duration::from_secs(15));
    sb.wait_for(
        Duration::from_secs(10),
        "the unused socket to close",
        || (!sb.sock.exists()).then_some(()),
    );
    sb.expect_log("no pool uses it any more");
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// A config on disk that php-fpm refuses: the crash restart is tried on it anyway (nothing
/// else could run), the supervisor says why, and once the file is fixed FPM comes back.
#[test]
fn a_crash_restart_on_a_broken_config_names_it_and_recovers_once_it_is_fixed() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    sb.write_config(&sb.config_text().replace("pm = static", "pm = statik"));
    signal(first as u32, nix::sys::signal::SIGKILL);
    sb.expect_log("FPM is started on it anyway");
    sb.write_config(&sb.config_text());
    wait_replaced(&sb, first, Duration::from_secs(60));
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn a_broken_config_on_restart_keeps_the_supervised_fpm_serving() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    sb.write_config(&sb.config_text().replace("pm = static", "pm = statik"));
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(6);
    assert!(alive(master));
    sb.write_config(&sb.config_text());
    assert_eq!(sb.wait_supervised_ready(), master);
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// The children of `pid` whose command line has `arg` among its arguments.
fn children_with_arg(pid: u32, arg: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            ppid == Some(pid) && cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
        })
        .collect()
}

/// A restart's `php-fpm -t` runs beside the supervisor's event loop: while it hangs (the
/// config's error log is a FIFO whose reader stalled), the supervisor still answers `status`
/// and stops on SIGTERM, and the test it started ends with it.
#[test]
fn a_hung_config_test_of_a_restart_blocks_nothing_and_ends_with_the_supervisor() {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    let fifo = sb.root.join("full.fifo");
    let text = sb.config_text().replace(
        &format!("error_log = {}/fpm.log", sb.root.display()),
        &format!("error_log = {}", fifo.display()),
    );
    assert!(text.contains("full.fifo"), "{text}");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    // Held open for reading and writing, so opening it never blocks; one page, filled.
    let fd = open(&fifo, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
    // SAFETY: fcntl(2) on a descriptor this test owns; no memory is passed.
    let set = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(set > 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
    while nix::unistd::write(&fd, &[b'x'; 256]).is_ok() {}
    sb.write_config(&text);
    let mut restart = sb.fpmctl_spawn(&["restart"]);
    let test = sb.wait_for(Duration::from_secs(15), "the restart's php-fpm -t", || {
        children_with_arg(sup, "-t").first().copied()
    });
    // The loop answers while the test hangs (the answer carries the supervisor's part).
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(0);
    assert!(
        run.json()["supervisor"].is_object(),
        "{run}\n{}",
        sb.supervise_log()
    );
    assert!(
        alive(test),
        "the config test ended early: {}",
        sb.supervise_log()
    );
    signal(sup, nix::sys::signal::SIGTERM);
    assert_eq!(
        sb.wait_child(sup, Duration::from_secs(30)),
        0,
        "{}",
        sb.supervise_log()
    );
    sb.wait_for(Duration::from_secs(10), "the config test to end", || {
        (!alive(test)).then_some(())
    });
    assert!(!alive(master));
    let log = sb.supervise_log();
    assert!(!log.contains("left behind by a PHP request"), "{log}");
    let _ = restart.wait();
    drop(fd);
}

#[test]
fn sighup_restarts_fpm() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let first = sb.wait_supervised_ready();
    signal(sup, nix::sys::signal::SIGHUP);
    sb.wait_for(Duration::from_secs(15), "a replacement master", || {
        let m = sb.wait_supervised_ready();
        (m != first).then_some(())
    });
}

#[test]
fn systemd_notify_ready_reloading_and_stopping() {
    let Some(sb) = Sandbox::new() else { return };
    let path = sb.path().join("systemd-notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let sup = sb.supervise(
        &["--health-interval", "1s"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0u8; 4096];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.contains("READY=1"), "{first}");
    assert!(first.contains(&format!("MAINPID={sup}")), "{first}");
    sb.fpmctl(&["restart"]).expect_code(0);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("READY=1")) {
        seen.push(recv());
    }
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
    signal(sup, nix::sys::signal::SIGTERM);
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert_eq!(sb.wait_child(sup, Duration::from_secs(10)), 0);
}

/// An fpmctl started with another lock directory finds no supervisor to ask: it must not act
/// on the supervised master behind the supervisor's back (which would take a stop for a crash,
/// or see its replacement retired as a second master). Refused with exit 9, naming the
/// supervisor; nothing is touched.
#[test]
fn commands_with_another_lock_dir_refuse_to_act_behind_the_supervisors_back() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    let other = sb.root.join("other-locks");
    let other = other.to_str().unwrap();
    let commands: [&[&str]; 5] = [
        &["restart"],
        &["reload"],
        &["stop"],
        &["ensure"],
        &["supervise"],
    ];
    for args in commands {
        let run = sb.fpmctl_env(args, &[("FPMCTL_LOCK_DIR", other)]);
        if args == ["ensure"] {
            // A healthy FPM is only looked at: nothing to refuse.
            run.expect_code(0);
            continue;
        }
        run.expect_code(9);
        assert!(
            run.stderr
                .contains(&format!("runs under fpmctl supervisor {sup}")),
            "{run}"
        );
        assert!(alive(master), "{run}");
    }
    assert_eq!(sb.wait_supervised_ready(), master);
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn supervise_refuses_when_fpm_already_runs_outside_it() {
    let Some(sb) = Sandbox::with(Opts::default()) else {
        return;
    };
    let master = sb.start_fpm();
    let sup = sb.supervise(&[], &[]);
    let code = sb.wait_child(sup, Duration::from_secs(10));
    assert_eq!(code, 1, "{}", sb.supervise_log());
    sb.expect_log(&format!("master {master}"));
    assert!(alive(master));
}

#[test]
fn a_restart_into_a_config_without_a_pool_closes_and_removes_its_socket() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let without_sock = sb.config_text_with(Opts {
        sock_pool: false,
        ..Opts::default()
    });
    sb.write_config(&without_sock);
    let run = sb.fpmctl(&["restart"]);
    run.expect_code(0);
    sb.fpmctl(&["ping"]).expect_code(0);
    sb.wait_for(
        Duration::from_secs(10),
        "the unused socket to close",
        || (!sb.sock.exists()).then_some(()),
    );
    sb.expect_log("no pool uses it any more");
}

/// Issue target: restarts under load through nginx fail no request, for the unix-socket and
/// the TCP pool, also into a config with other pm settings, and a 10-second request in flight
/// during the restarts completes.
#[test]
fn restarts_under_load_through_nginx_fail_no_request_on_either_pool() {
    use common::{load, load::Load, nginx::Nginx};
    let Some(sb) = Sandbox::new() else { return };
    if !common::nginx::available() {
        return;
    }
    sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let ng = Nginx::start(&sb);
    let slow = {
        let addr = ng.addr;
        std::thread::spawn(move || load::get(addr, "/slow/sock?s=10", Duration::from_secs(60)))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = ["/tcp/", "/sock/"]
        .into_iter()
        .map(|path| {
            let l = Load::new(2, Duration::from_secs(60)).pause(Duration::from_millis(2));
            (path, l.spawn(ng.addr, path, stop.clone()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        if i == 3 {
            // One restart goes into a config with other pm settings.
            let more = sb
                .config_text()
                .replace("pm.max_children = 2", "pm.max_children = 3");
            sb.write_config(&more);
        }
        let run = sb.fpmctl(&["restart"]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("through the supervisor"),
            "restart {i}: {run}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for (path, handle) in loads {
        let rep = handle.join().unwrap();
        eprintln!("GET {path} across 5 restarts: {rep}");
        assert!(rep.requests() > 50, "GET {path}: {rep}");
        assert_eq!(
            rep.failed(),
            0,
            "GET {path}: {rep}\n{}\n{}",
            ng.logs(),
            sb.supervise_log()
        );
    }
    let (status, body) = slow.join().unwrap().expect("the slow request");
    assert_eq!(
        (status, body.as_str()),
        (200, "slept 10"),
        "{}",
        sb.supervise_log()
    );
    let run = sb.fpmctl(&["status", "--json"]);
    let tcp_workers = run.json()["pools"][0]["workers"].as_array().unwrap().len();
    assert_eq!(tcp_workers, 3, "{run}");
}

#[test]
fn watchdog_pings_are_sent_while_healthy_when_systemd_asks_for_them() {
    let Some(sb) = Sandbox::new() else { return };
    let path = sb.path().join("systemd-notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sb.supervise(
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut buf = [0u8; 4096];
    let mut watchdogs = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while watchdogs < 2 && Instant::now() < deadline {
        let n = sock.recv(&mut buf).expect("a notify message");
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            watchdogs += 1;
        }
    }
    assert_eq!(watchdogs, 2, "{}", sb.supervise_log());
}

#[test]
fn the_held_unix_socket_gets_the_pools_listen_mode() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let mode = std::fs::metadata(&sb.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "listen.mode = 0666 in the sandbox config");
}

/// The control socket is root-only (0600); even if its mode is opened up, the supervisor
/// checks the peer's credentials and refuses a user that is neither root nor its own.
#[test]
fn a_user_that_is_not_root_cannot_drive_the_supervisor() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    let ctl = std::fs::read_dir(sb.path().join("locks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ctl"))
        .expect("a control socket");
    assert_eq!(
        std::fs::metadata(&ctl).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The lock directory is 0700 too; let others reach the socket so the supervisor's own
    // check is what refuses them.
    std::fs::set_permissions(
        sb.path().join("locks"),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_fpmctl"))
        .arg("-c")
        .arg(&sb.conf)
        .arg("restart")
        .env("FPMCTL_LOCK_DIR", sb.path().join("locks"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused: only root"), "{stderr}");
    assert_eq!(
        sb.wait_supervised_ready(),
        master,
        "the master was replaced"
    );
    sb.expect_log("refused a control connection");
}

/// `start` through a supervisor whose FPM never becomes ready ends at `--timeout` with the
/// supervisor's own answer (exit 10, not ready), not with an error of the control socket: the
/// last look, at the deadline, has no time left and must still ask (a zero read timeout is
/// refused by the kernel interface).
#[test]
fn start_through_a_supervisor_that_is_not_ready_ends_with_not_ready_at_its_timeout() {
    let Some(sb) = Sandbox::new() else { return };
    // php-fpm -t accepts this pid path; FPM fails to write it at start and exits, again
    // and again: the supervisor stays up, never ready.
    sb.write_config(&sb.config_text_dying_at_start());
    let sup = sb.supervise(&["--max-restarts", "1000", "--within", "60s"], &[]);
    let answering = fpmctl::deadline::Deadline::after(Duration::from_secs(60));
    let status = loop {
        let run = sb.fpmctl(&["status"]);
        if run.stdout.contains("supervised by fpmctl") {
            break run;
        }
        assert!(
            !answering.expired(),
            "the supervisor never answered:\n{run}\n{}",
            sb.supervise_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = sb.fpmctl(&["start", "--timeout", "1s"]);
    run.expect_code(10);
    assert!(!run.stderr.contains("control socket"), "{run}\n{status}");
    signal(sup, nix::sys::signal::SIGTERM);
    sb.wait_child(sup, Duration::from_secs(30));
}
