//! `ensure` (the cron job) and `reopen-logs` (logrotate's postrotate) against a real php-fpm:
//! a healthy FPM is never touched and nothing is printed; a stopped one is started; orphans
//! holding the port (a SIGKILLed master) are repaired; a broken config is refused with FPM's own words;
//! only the verified master ever gets SIGUSR1.

mod common;
use common::{Sandbox, alive};
use std::process::Command;
use std::time::Duration;

#[test]
fn ensure_starts_a_stopped_fpm_and_says_what_was_wrong() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["ensure"]);
    run.expect_code(0);
    let master = sb.pid_from_file().expect("a pid file after ensure");
    sb.note_master(master);
    assert!(run.stdout.contains("was not running"), "{run}");
    assert!(run.stdout.contains(&format!("master {master}")), "{run}");
    assert!(run.stdout.contains("ready"), "{run}");
    sb.fpmctl(&["ping"]).expect_code(0);
}

#[test]
fn ensure_leaves_a_running_ready_fpm_alone_and_prints_nothing() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let workers: Vec<i32> = sb.workers_of(master).iter().map(|p| p.pid()).collect();
    for args in [&["ensure"][..], &["-q", "ensure"][..]] {
        let run = sb.fpmctl(args);
        run.expect_code(0);
        assert_eq!(run.stdout, "", "ensure printed something:\n{run}");
        assert_eq!(run.stderr, "", "ensure logged something:\n{run}");
    }
    assert_eq!(sb.pid_from_file(), Some(master));
    assert_eq!(sb.masters().len(), 1);
    for w in workers {
        assert!(alive(w), "worker {w} was replaced");
    }
    let j = sb.fpmctl(&["ensure", "--json"]);
    j.expect_code(0);
    assert_eq!(j.json()["result"], "ok", "{j}");
    assert_eq!(j.json()["master"], master, "{j}");
}

/// The master was SIGKILLed; its orphans hold the port. A cron job that only
/// started php-fpm would fail on "Address already in use" every minute.
#[test]
fn ensure_repairs_orphans_holding_the_port() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let orphans = sb.kill_master_hard();
    let run = sb.fpmctl(&["-q", "ensure"]);
    run.expect_code(0);
    let master = sb.pid_from_file().expect("a new master");
    sb.note_master(master);
    assert!(run.stdout.contains("orphaned worker"), "{run}");
    for o in &orphans {
        assert!(!alive(*o), "orphan {o} survived:\n{run}");
        assert!(run.stdout.contains(&o.to_string()), "{run}");
    }
    sb.fpmctl(&["ping"]).expect_code(0);
    // And the next minute's run finds it healthy and says nothing.
    let again = sb.fpmctl(&["-q", "ensure"]);
    again.expect_code(0);
    assert_eq!(again.stdout, "", "{again}");
    assert_eq!(sb.pid_from_file(), Some(master));
}

#[test]
fn ensure_with_a_broken_config_while_stopped_gives_fpms_message_and_starts_nothing() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(
        &sb.config_text()
            .replacen("pm.max_children = 2", "pm.max_children = 0", 1),
    );
    let run = sb.fpmctl(&["-q", "ensure"]);
    run.expect_code(6);
    assert!(run.stderr.contains("pm.max_children"), "{run}");
    assert!(run.stderr.contains("php-fpm -t rejected"), "{run}");
    assert!(sb.masters().is_empty(), "FPM was started:\n{run}");
}

#[test]
fn ensure_reports_a_running_unready_fpm_without_restarting_it() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    // A master whose pid file is gone is not ready: an init script could no longer find it.
    std::fs::remove_file(&sb.pid_file).unwrap();
    let run = sb.fpmctl(&["-q", "ensure", "--timeout", "1s"]);
    run.expect_code(10);
    assert!(run.stderr.contains("not ready"), "{run}");
    assert!(run.stderr.contains("--restart-unready"), "{run}");
    assert!(alive(master), "{run}");
    assert_eq!(sb.masters().len(), 1, "{run}");

    let run = sb.fpmctl(&["-q", "ensure", "--timeout", "5s", "--restart-unready"]);
    run.expect_code(0);
    let new = sb.pid_from_file().expect("a new master");
    sb.note_master(new);
    assert_ne!(new, master, "{run}");
    assert!(!alive(master), "{run}");
    assert!(run.stdout.contains("not ready"), "{run}");
    assert!(run.stdout.contains("restarted"), "{run}");
}

#[test]
fn ensure_never_waits_for_the_lock() {
    let Some(sb) = Sandbox::new() else { return };
    let name = fpmctl::lock::lock_path(&sb.conf)
        .file_name()
        .unwrap()
        .to_owned();
    let dir = sb.path().join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let run = sb.fpmctl(&["-q", "ensure"]);
    run.expect_code(9);
    assert!(run.stderr.contains("not waiting"), "{run}");
    assert!(sb.masters().is_empty(), "FPM was started:\n{run}");
    drop(held);
}

#[test]
fn ensure_leaves_a_supervised_fpm_to_its_supervisor() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    let run = sb.fpmctl(&["-q", "ensure"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "", "{run}");
    let status = sb.fpmctl(&["status", "--json"]);
    assert_eq!(status.json()["master"]["pid"], master, "{status}");
}

#[test]
fn reopen_logs_after_a_rotation_writes_to_the_new_file() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let log = sb.path().join("fpm.log");
    let rotated = sb.path().join("fpm.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let run = sb.fpmctl(&["reopen-logs", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["confirmed"], true, "{run}");
    assert_eq!(run.json()["master"], master, "{run}");
    let new = std::fs::read_to_string(&log).expect("FPM created the new error log");
    assert!(new.contains("error log file re-opened"), "{new}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("error log file re-opened"), "{old}");
    assert_eq!(sb.pid_from_file(), Some(master));
    assert!(alive(master));
    // FPM keeps writing there: a reload's lines land in the new file, none in the old one.
    sb.fpmctl(&["reload"]).expect_code(0);
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(new.contains("Reloading in progress"), "{new}");
    let old_after = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old, old_after, "FPM still writes to the rotated file");
}

#[test]
fn reopen_logs_never_signals_what_a_stale_pid_file_names() {
    let Some(sb) = Sandbox::new() else { return };
    // `sleep` dies of SIGUSR1: if it was signalled, it is gone.
    let sleep = sb.spawn(Command::new("sleep").arg("300")) as i32;
    std::fs::write(&sb.pid_file, format!("{sleep}\n")).unwrap();
    let run = sb.fpmctl(&["reopen-logs"]);
    run.expect_code(3);
    assert!(run.stderr.contains("not running"), "{run}");
    assert!(run.stderr.contains("stale"), "{run}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(sleep), "an unrelated process got SIGUSR1:\n{run}");
}

#[test]
fn reopen_logs_of_a_stopped_fpm_is_exit_3() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["reopen-logs"]);
    run.expect_code(3);
    assert!(run.stderr.contains("nothing was signalled"), "{run}");
}

#[test]
fn reopen_logs_says_when_log_level_hides_the_confirmation() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(
        &sb.config_text()
            .replacen("[global]\n", "[global]\nlog_level = warning\n", 1),
    );
    let master = sb.start_fpm();
    let run = sb.fpmctl(&["reopen-logs", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["confirmed"], false, "{run}");
    assert_eq!(run.json()["master"], master, "{run}");
    let text = sb.fpmctl(&["reopen-logs"]);
    text.expect_code(0);
    assert!(text.stdout.contains("log_level (warning)"), "{text}");
    assert!(alive(master));
}
