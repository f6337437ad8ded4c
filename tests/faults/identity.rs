//! Never signal or trust what is not this config's FPM: identity by binary, config tests,
//! orphans by evidence, pings that prove the master, the lock directory, the control socket,
//! the pid file as a hint.

use crate::common::{self, Sandbox, alive};
use std::os::unix::fs::PermissionsExt;
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
    // The ambiguous evidence is reported, not acted on.
    for o in &b_orphans {
        assert!(lookalike_pids(&j).contains(&(*o as i64)), "{status}");
    }
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

/// A planted symlink in the lock directory never truncates its target; an unsafe
/// directory is refused; an empty `FPMCTL_LOCK_DIR` means the default.
#[test]
fn f12_lock_directory_cannot_be_turned_against_root() {
    let Some(sb) = Sandbox::new() else { return };
    // A first run creates the directory and the lock file.
    sb.fpmctl(&["stop"]).expect_code(0);
    let dir = sb.lock_dir();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the lock directory is private");
    let lock = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .expect("a lock file");

    // A symlink planted where the lock file goes.
    let victim = sb.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let run = sb.fpmctl(&["stop"]);
    assert_ne!(run.code, 0, "a symlinked lock file is refused:\n{run}");
    assert!(run.stderr.contains(&lock.display().to_string()), "{run}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(&lock).unwrap();

    // A directory others can write to is refused before anything is created in it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = sb.fpmctl(&["stop"]);
    run.expect_code(1);
    assert!(run.stderr.contains(&dir.display().to_string()), "{run}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A directory owned by another user is refused.
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let run = sb.fpmctl(&["stop"]);
    run.expect_code(1);
    assert!(run.stderr.contains("owned by"), "{run}");
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    // An empty FPMCTL_LOCK_DIR is unset, never the current directory.
    let run = sb.fpmctl_env(&["stop"], &[("FPMCTL_LOCK_DIR", "")]);
    run.expect_code(0);
    let in_cwd: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "lock"))
        .collect();
    assert!(
        in_cwd.is_empty(),
        "a lock file in the current directory: {in_cwd:?}"
    );
}

/// A control socket planted by another user is ignored; the command acts directly.
#[test]
fn f13_control_socket_of_another_user_is_ignored() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let dir = sb.lock_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = fpmctl::config::load(&sb.conf).unwrap();
    let name = fpmctl::supervise::control::socket_path(&cfg.path);
    let ctl = dir.join(name.file_name().unwrap());
    // A fake supervisor: the socket file is chowned to nobody, and it listens as nobody.
    let script = r#"
        use Socket;
        my $path = $ENV{CTL};
        socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die $!;
        bind($s, pack_sockaddr_un($path)) or die $!;
        chown(65534, 65534, $path) or die $!;
        $( = $) = 65534; $< = $> = 65534;
        listen($s, 5) or die $!;
        while (accept(my $c, $s)) {
            my $line = <$c>;
            print $c qq({"code":0,"text":"fake answer\n","json":{}}\n);
            close $c;
        }
    "#;
    sb.spawn(Command::new("perl").arg("-e").arg(script).env("CTL", &ctl));
    sb.wait_for(Duration::from_secs(5), "the fake control socket", || {
        std::os::unix::net::UnixStream::connect(&ctl)
            .ok()
            .map(|_| ())
    });

    let status = sb.fpmctl(&["status"]);
    status.expect_code(0);
    assert!(!status.stdout.contains("fake answer"), "{status}");
    assert!(
        status.stderr.contains(&ctl.display().to_string()),
        "{status}"
    );
    let stop = sb.fpmctl(&["stop"]);
    stop.expect_code(0);
    assert!(!stop.stdout.contains("fake answer"), "{stop}");
    assert!(!alive(master), "stop acted directly:\n{stop}");
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
