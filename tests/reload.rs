//! `reload` proves FPM's SIGUSR2 re-exec by events against a real php-fpm: it returns only
//! once the old workers are gone (a request in flight that runs on the wall clock finishes
//! first), it says how readiness was proven (`ready_by`), it works without a pid file (FPM
//! daemonized or in the foreground), and a master that dies during its re-exec is reported
//! with exit 12 and started again by `--recover`.

mod common;
use common::{Sandbox, alive, slow_request, wait_busy};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn old_workers(sb: &Sandbox, master: i32) -> Vec<i32> {
    sb.workers_of(master).iter().map(|p| p.pid()).collect()
}

fn new_workers(run: &common::Run) -> Vec<i64> {
    run.json()["new_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// The sandbox's config without a `pid` line.
fn config_without_pid_file(sb: &Sandbox) -> String {
    let text = sb.config_text();
    let line = format!("pid = {}\n", sb.pid_file.display());
    assert!(text.contains(&line), "no pid line in:\n{text}");
    text.replace(&line, "")
}

/// The one master of the sandbox's config, once it has all 4 workers.
fn wait_master(sb: &Sandbox) -> i32 {
    sb.wait_for(Duration::from_secs(10), "a master with 4 workers", || {
        let masters = sb.masters();
        let [m] = masters.as_slice() else { return None };
        (sb.workers_of(m.pid()).len() >= 4).then_some(m.pid())
    })
}

/// php-fpm started with `-F` (as a container or a supervisor runs it); its PID.
fn spawn_in_the_foreground(sb: &Sandbox) -> i32 {
    let master = sb.spawn(
        Command::new(&sb.bin)
            .arg("-y")
            .arg(&sb.conf)
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    ) as i32;
    sb.note_master(master);
    master
}

/// [`spawn_in_the_foreground`], once it has all 4 workers.
fn start_in_the_foreground(sb: &Sandbox) -> i32 {
    let master = spawn_in_the_foreground(sb);
    assert_eq!(wait_master(sb), master);
    master
}

#[test]
fn reload_returns_only_after_the_old_worker_finished_its_request() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let old = old_workers(&sb, master);
    let sent = Instant::now();
    // 3 s on the wall clock: a signal does not cut it short (process_control_timeout = 10s).
    let req = slow_request(&sb, 3);
    wait_busy(&sb);
    let run = sb.fpmctl(&["reload", "--json"]);
    let returned = sent.elapsed();
    let still_alive: Vec<i32> = old.iter().copied().filter(|&w| alive(w)).collect();
    run.expect_code(0);
    sb.note_master(run.json()["master"].as_i64().unwrap() as i32);
    assert!(
        still_alive.is_empty(),
        "old workers {still_alive:?} alive when reload returned:\n{run}"
    );
    assert!(
        returned >= Duration::from_secs(3),
        "reload returned {returned:?} after the 3 s request started:\n{run}"
    );
    assert_eq!(req.join().unwrap().as_deref(), Ok("slept 3"), "{run}");
    assert_eq!(run.json()["ready_by"], "pidfile+ping", "{run}");
    let new = new_workers(&run);
    assert_eq!(new.len(), 4, "{run}");
    assert!(new.iter().all(|w| !old.contains(&(*w as i32))), "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn reload_without_a_pid_file_of_a_daemonized_fpm() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(&config_without_pid_file(&sb));
    let out = Command::new(&sb.bin)
        .arg("-y")
        .arg(&sb.conf)
        .arg("-D")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", sb.error_log());
    let master = wait_master(&sb);
    sb.note_master(master);
    let old = old_workers(&sb, master);
    for round in 0..2 {
        let run = sb.fpmctl(&["reload", "--json"]);
        run.expect_code(0);
        let j = run.json();
        let now = j["master"].as_i64().unwrap() as i32;
        sb.note_master(now);
        assert_eq!(j["ready_by"], "drain+ping", "round {round}:\n{run}");
        // FPM daemonizes again after its re-exec: the master is the one running now.
        assert_eq!(sb.masters().len(), 1, "round {round}:\n{run}");
        assert_eq!(sb.masters()[0].pid(), now, "round {round}:\n{run}");
        assert_eq!(new_workers(&run).len(), 4, "round {round}:\n{run}");
    }
    for w in old {
        assert!(!alive(w), "old worker {w} still alive");
    }
    assert!(!sb.pid_file.exists());
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn reload_without_a_pid_file_of_fpm_in_the_foreground() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(&config_without_pid_file(&sb));
    let master = start_in_the_foreground(&sb);
    let old = old_workers(&sb, master);
    let run = sb.fpmctl(&["reload", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["ready_by"], "drain+ping", "{run}");
    // In the foreground the re-exec keeps the PID.
    assert_eq!(j["master"], master, "{run}");
    let new = new_workers(&run);
    assert_eq!(new.len(), 4, "{run}");
    for w in old {
        assert!(!alive(w), "old worker {w} still alive:\n{run}");
        assert!(!new.contains(&(w as i64)), "{run}");
    }
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// In the foreground the re-exec keeps its PID and rewrites the same pid file: the master
/// is the one the file names once a worker of the new image answered, and every worker is new.
#[test]
fn reload_of_fpm_in_the_foreground_with_a_pid_file() {
    let Some(sb) = Sandbox::new() else { return };
    let master = start_in_the_foreground(&sb);
    for round in 0..3 {
        let old = old_workers(&sb, master);
        let run = sb.fpmctl(&["reload", "--json"]);
        run.expect_code(0);
        let j = run.json();
        assert_eq!(j["ready_by"], "pidfile+ping", "round {round}:\n{run}");
        assert_eq!(j["master"], master, "round {round}:\n{run}");
        assert_eq!(sb.pid_from_file(), Some(master), "round {round}:\n{run}");
        let new = new_workers(&run);
        assert_eq!(new.len(), 4, "round {round}:\n{run}");
        for w in old {
            assert!(
                !alive(w),
                "round {round}: old worker {w} still alive:\n{run}"
            );
            assert!(!new.contains(&(w as i64)), "round {round}:\n{run}");
        }
    }
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// With `pm = ondemand` and no worker running, no old worker's exit can prove the re-exec:
/// `reload` waits for the new image to rewrite the pid file. A daemonized FPM forks again
/// after its re-exec, so the master it reports must be a new PID and the old one gone (the
/// reload is over only once the original PID has exited);
/// answering on the old image's word (a ping the old master spawns a worker for before it
/// acts on the signal) would report the old master.
#[test]
fn reload_of_an_ondemand_pool_without_workers_waits_for_the_new_image() {
    let Some(sb) = Sandbox::new() else { return };
    let text = sb
        .config_text_with(common::Opts {
            sock_pool: false,
            ..Default::default()
        })
        .replace(
            "pm = static\npm.max_children = 2\n",
            "pm = ondemand\npm.max_children = 2\npm.process_idle_timeout = 1s\n",
        );
    assert!(text.contains("pm = ondemand"), "{text}");
    sb.write_config(&text);
    sb.fpmctl(&["start", "--wait"]).expect_code(0);
    let mut master = sb.pid_from_file().expect("a pid file after the start");
    sb.note_master(master);
    for round in 0..3 {
        // The readiness pings' worker leaves after its idle timeout (1s).
        sb.wait_for(
            Duration::from_secs(10),
            "the ondemand pool without workers",
            || old_workers(&sb, master).is_empty().then_some(()),
        );
        let run = sb.fpmctl(&["reload", "--json"]);
        run.expect_code(0);
        let j = run.json();
        let now = j["master"].as_i64().unwrap() as i32;
        sb.note_master(now);
        assert_eq!(j["ready_by"], "pidfile+ping", "round {round}:\n{run}");
        assert_ne!(
            now, master,
            "round {round}: the old master was reported:\n{run}"
        );
        assert!(
            !alive(master),
            "round {round}: master {master} still runs:\n{run}"
        );
        assert_eq!(sb.pid_from_file(), Some(now), "round {round}:\n{run}");
        // The next command sees what the reload reported: not the original PID, still
        // exiting, with the new master taken for its child.
        let status = sb.fpmctl(&["status", "--json"]);
        assert_eq!(
            status.json()["master"]["pid"],
            now,
            "round {round}:\n{status}"
        );
        master = now;
    }
}

/// A master in the foreground (as a container runs it) with neither a pid file nor a worker
/// (an idle ondemand pool): only the re-exec itself tells the new image from the old one
/// (same PID, start time and binary), and reload returns only once it happened.
#[test]
fn reload_of_a_foreground_ondemand_master_without_pid_file_or_workers_waits_for_the_re_exec() {
    let Some(sb) = Sandbox::new() else { return };
    let line = format!("pid = {}\n", sb.pid_file.display());
    let text = sb
        .config_text_with(common::Opts {
            sock_pool: false,
            ..Default::default()
        })
        .replace(&line, "")
        .replace(
            "pm = static\npm.max_children = 2\n",
            "pm = ondemand\npm.max_children = 2\npm.process_idle_timeout = 1s\n",
        );
    assert!(
        text.contains("pm = ondemand") && !text.contains(&line),
        "{text}"
    );
    sb.write_config(&text);
    let master = spawn_in_the_foreground(&sb);
    sb.wait_for(Duration::from_secs(10), "the master", || {
        sb.masters().iter().any(|m| m.pid() == master).then_some(())
    });
    for round in 0..3 {
        // A ping's worker leaves after its idle timeout (1s).
        sb.wait_for(
            Duration::from_secs(10),
            "the ondemand pool without workers",
            || old_workers(&sb, master).is_empty().then_some(()),
        );
        let before = fpmctl::procs::exec_marker(master).expect("the master's exec marker");
        let run = sb.fpmctl(&["reload", "--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["master"], master, "round {round}:\n{run}");
        let after = fpmctl::procs::exec_marker(master).expect("the master's exec marker");
        assert_ne!(
            before, after,
            "round {round}: reload returned before the master re-executed:\n{run}"
        );
    }
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// A master whose re-exec fails: started through a name found on its `PATH`, which is gone
/// when it re-executes (`execvp` fails and the master exits). `php-fpm -t` runs the real
/// binary and passes.
fn start_doomed_master(sb: &Sandbox) -> i32 {
    let bin_dir = sb.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let link = bin_dir.join("php-fpm-doomed");
    std::os::unix::fs::symlink(&sb.bin, &link).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("php-fpm-doomed")
        .env("PATH", path)
        .arg("-y")
        .arg(&sb.conf)
        .arg("-D")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", sb.error_log());
    let master = wait_master(sb);
    sb.note_master(master);
    std::fs::remove_file(&link).unwrap();
    master
}

#[test]
fn a_master_dying_in_its_re_exec_is_reported_and_recover_starts_fpm_again() {
    let Some(sb) = Sandbox::new() else { return };
    let master = start_doomed_master(&sb);
    let run = sb.fpmctl(&["reload"]);
    run.expect_code(12);
    assert!(run.stderr.contains("died during the reload"), "{run}");
    assert!(run.stderr.contains(&master.to_string()), "{run}");
    assert!(!alive(master), "{run}");
    assert!(sb.masters().is_empty(), "{run}");
    assert!(
        sb.error_log().contains("execvp() failed"),
        "the master did not die in its re-exec:\n{}",
        sb.error_log()
    );

    let master = start_doomed_master(&sb);
    let run = sb.fpmctl(&["reload", "--recover", "--json"]);
    run.expect_code(0);
    assert!(run.stderr.contains("died during the reload"), "{run}");
    assert!(!alive(master), "{run}");
    let now = sb.pid_from_file().expect("a pid file after --recover");
    sb.note_master(now);
    assert_eq!(sb.masters().len(), 1, "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Without a pid file there is no rewrite to wait for: a master that dies in its re-exec
/// closes the sockets, and the pools that no longer answer must be reported as FPM dead
/// (exit 12, so `--recover` starts it), not retried until the reload's limit and called
/// "not ready".
#[test]
fn a_master_dying_in_its_re_exec_without_a_pid_file_is_reported_and_recovered() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(&config_without_pid_file(&sb));
    let master = start_doomed_master(&sb);
    let run = sb.fpmctl(&["reload"]);
    run.expect_code(12);
    assert!(run.stderr.contains("during the reload"), "{run}");
    assert!(!alive(master), "{run}");
    assert!(sb.masters().is_empty(), "{run}");

    let master = start_doomed_master(&sb);
    let run = sb.fpmctl(&["reload", "--recover"]);
    run.expect_code(0);
    assert!(!alive(master), "{run}");
    let masters = sb.masters();
    for m in &masters {
        sb.note_master(m.pid());
    }
    assert_eq!(masters.len(), 1, "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// The children of `pid` (every thread's).
fn children_of(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// How many pidfds `pid` holds.
fn pidfds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[pidfd]")
                })
                .count()
        })
        .unwrap_or(0)
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// The `php-fpm -t` that the fpmctl `child` runs, once it runs php-fpm (fpmctl's spawn waits
/// for the exec); looked for without a pause. `None` when fpmctl finished first.
fn config_test_of(child: &mut std::process::Child) -> Option<i32> {
    let exec_done = |t: &i32| {
        std::fs::read(format!("/proc/{t}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"-t"))
    };
    loop {
        if let Some(&t) = children_of(child.id()).iter().find(|t| exec_done(t)) {
            return Some(t);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
    }
}

/// A `php-fpm -t` that does not finish (a config on a hung network mount; here, held with
/// SIGSTOP) does not hang `reload`: at `--timeout` it is killed, the answer is exit 8, and
/// FPM was never signalled.
#[test]
fn a_config_test_that_hangs_ends_the_reload_at_its_timeout_with_fpm_untouched() {
    use nix::sys::signal::Signal;
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let workers = old_workers(&sb, master);
    let mut attempts = 0;
    let (child, test) = loop {
        attempts += 1;
        assert!(attempts <= 20, "php-fpm -t never seen as fpmctl's child");
        let mut child = sb.fpmctl_spawn(&["reload", "--timeout", "2s"]);
        if let Some(test) = config_test_of(&mut child) {
            signal(test, Signal::SIGSTOP);
            break (child, test);
        }
        // Missed: that reload went through; the next one starts from its master.
        child.wait_with_output().unwrap();
        sb.wait_for(Duration::from_secs(10), "a master with 4 workers", || {
            let m = sb.pid_from_file()?;
            (alive(m) && old_workers(&sb, m).len() == 4).then_some(())
        });
    };
    let master = sb.pid_from_file().unwrap();
    sb.note_master(master);
    let workers = if attempts == 1 {
        workers
    } else {
        old_workers(&sb, master)
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(
        stderr.contains("-t on") && stderr.contains("did not finish within 2.0s"),
        "{stderr}"
    );
    assert!(!alive(test), "the stuck php-fpm -t {test} was left running");
    assert!(alive(master));
    assert_eq!(old_workers(&sb, master), workers, "FPM was signalled");
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// `reload` tests the config while it waits for the lock: a test that passed before a wait
/// proves nothing about a config another fpmctl's turn may have seen changed. Here a
/// restart holds the lock (its old worker finishes a 4 s request) while the config is broken;
/// the reload that waited for it tests again and refuses (exit 6), FPM untouched. Sent on
/// the first test's word, the SIGUSR2 would have re-executed FPM into the broken config.
#[test]
fn a_reload_that_waited_for_the_lock_tests_the_config_again() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let good = sb.config_text();
    let _req = common::slow_request(&sb, 4);
    common::wait_busy(&sb);
    let mut restart = sb.fpmctl_spawn_until(&["restart"], "old master stopped");
    let mut reload = sb.fpmctl_spawn_until(&["reload"], "waiting for");
    // Its first test has read the config (and exited) before the config changes.
    sb.wait_for(
        Duration::from_secs(10),
        "the first php-fpm -t to finish",
        || {
            children_of(reload.id())
                .iter()
                .all(|&c| !alive(c))
                .then_some(())
        },
    );
    sb.write_config(&good.replace("pm = static", "pm = bogus"));
    assert!(restart.wait().unwrap().success());
    let serving = sb.pid_from_file().expect("the restarted master's pid file");
    sb.note_master(serving);
    assert_eq!(
        reload.wait().unwrap().code(),
        Some(6),
        "the stale test was trusted"
    );
    assert!(alive(serving), "FPM was re-executed into the broken config");
    assert_eq!(sb.pid_from_file(), Some(serving));
    sb.write_config(&good);
    sb.fpmctl(&["ping"]).expect_code(0);
}

/// Workers that exit on their own (pm.max_requests, a crash) while `php-fpm -t` runs, after
/// the old workers were pinned, are replaced by the old image before SIGUSR2 is sent. Their
/// replacements are old workers too: a ping they answer, and a count of them, prove nothing.
/// The master is held stopped after the signal (as a busy machine may leave it before it acts
/// on SIGUSR2) so that the replacements stay up to answer.
#[test]
fn workers_replaced_while_the_config_test_runs_are_old_workers_too() {
    use nix::sys::signal::Signal;
    let Some(sb) = Sandbox::new() else { return };
    let mut master = sb.start_fpm();
    // `php-fpm -t` runs for some ms only: a busy machine may keep this thread from seeing it.
    // A reload it missed is a plain reload; the next one is watched again.
    let mut attempts = 0;
    let (pinned, mut child, fpmctl, test) = loop {
        attempts += 1;
        assert!(attempts <= 20, "php-fpm -t never seen as fpmctl's child");
        let pinned = old_workers(&sb, master);
        assert_eq!(pinned.len(), 4);
        let mut child = sb.fpmctl_spawn(&["reload", "--json"]);
        let fpmctl = child.id();
        // Held (fpmctl's only child before the signal) while the workers change.
        if let Some(test) = config_test_of(&mut child) {
            break (pinned, child, fpmctl, test);
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        master = json["master"].as_i64().unwrap() as i32;
        sb.note_master(master);
        sb.wait_for(Duration::from_secs(10), "4 workers", || {
            (old_workers(&sb, master).len() == 4).then_some(())
        });
    };
    signal(test, Signal::SIGSTOP);
    // The master and its 4 workers pinned.
    sb.wait_for(Duration::from_secs(10), "fpmctl's pidfds", || {
        (pidfds_of(fpmctl) >= 5).then_some(())
    });
    for &w in &pinned {
        signal(w, Signal::SIGKILL);
    }
    let replacements = sb.wait_for(Duration::from_secs(10), "replacement workers", || {
        let now = old_workers(&sb, master);
        (now.len() == 4 && now.iter().all(|w| !pinned.contains(w))).then_some(now)
    });
    signal(master, Signal::SIGSTOP);
    signal(test, Signal::SIGCONT);
    // Without the replacements pinned, fpmctl reports "reloaded" now, with the master stopped.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(2) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(master, Signal::SIGCONT);
    let out = child.wait_with_output().unwrap();
    let run = common::Run {
        args: vec!["reload".into(), "--json".into()],
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: waited.elapsed(),
    };
    run.expect_code(0);
    sb.note_master(run.json()["master"].as_i64().unwrap() as i32);
    let new = new_workers(&run);
    assert!(
        new.iter()
            .all(|w| !replacements.contains(&(*w as i32)) && !pinned.contains(&(*w as i32))),
        "old workers {replacements:?} reported as the new image's:\n{run}"
    );
    sb.fpmctl(&["ping"]).expect_code(0);
}
