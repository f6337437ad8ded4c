//! `--prefix DIR` end to end, against a real php-fpm: a config whose pid file, error log,
//! include and socket are all relative runs under `php-fpm -p DIR`, and every command finds
//! them where FPM put them.

mod common;
use common::Sandbox;
use std::time::Duration;

/// Rewrites the sandbox's config so that every path in it is relative: the pid file, the
/// error log, the include and the socket all land in the sandbox only under `-p DIR`.
fn relative_config(sb: &Sandbox) -> String {
    sb.write_config("[global]\npid = fpm.pid\nerror_log = fpm.log\ninclude = pool.d/*.conf\n");
    std::fs::create_dir_all(sb.path().join("pool.d")).unwrap();
    std::fs::write(
        sb.path().join("pool.d/www.conf"),
        "[www]\nuser = nobody\ngroup = nogroup\nlisten = fpm.sock\nlisten.mode = 0666\n\
         pm = static\npm.max_children = 2\nping.path = /ping\n",
    )
    .unwrap();
    sb.path().display().to_string()
}

#[test]
fn a_config_of_relative_paths_runs_under_prefix() {
    let Some(sb) = Sandbox::new() else { return };
    let dir = relative_config(&sb);

    // Without the prefix the include is looked for under php-fpm's compiled-in prefix.
    let lost = sb.fpmctl(&["config"]);
    lost.expect_code(4);
    assert!(lost.stderr.contains("pool.d/*.conf"), "{lost}");

    let start = sb.fpmctl(&["--prefix", &dir, "start"]);
    start.expect_code(0);
    let master = sb.pid_from_file().expect("FPM wrote DIR/fpm.pid");
    sb.note_master(master);
    assert!(sb.sock.exists(), "no socket at DIR/fpm.sock:\n{start}");

    let status = sb.fpmctl(&["--prefix", &dir, "status", "--json"]);
    status.expect_code(0);
    let j = status.json();
    assert_eq!(j["master"]["pid"], master, "{status}");
    assert_eq!(j["pid_file"]["path"], sb.pid_file.display().to_string());
    assert_eq!(j["pools"][0]["listen"], sb.sock.display().to_string());

    sb.fpmctl(&["-p", &dir, "ping"]).expect_code(0);
    let ensure = sb.fpmctl(&["--prefix", &dir, "ensure"]);
    ensure.expect_code(0);
    assert_eq!(ensure.stdout, "", "{ensure}");
    let reopen = sb.fpmctl(&["--prefix", &dir, "reopen-logs", "--json"]);
    reopen.expect_code(0);
    assert_eq!(reopen.json()["confirmed"], true, "{reopen}");
    assert_eq!(
        reopen.json()["error_log"],
        sb.path().join("fpm.log").display().to_string()
    );

    sb.fpmctl(&["--prefix", &dir, "restart"]).expect_code(0);
    let again = sb.pid_from_file().expect("a new master");
    sb.note_master(again);
    assert_ne!(again, master);
    sb.fpmctl(&["--prefix", &dir, "stop"]).expect_code(0);
    assert!(!sb.sock.exists());
    assert!(sb.masters().is_empty());
}

/// The supervisor runs FPM with `-p` too, and reloads the config under the prefix when it
/// restarts FPM.
#[test]
fn a_supervised_fpm_runs_under_prefix() {
    let Some(sb) = Sandbox::new() else { return };
    let dir = relative_config(&sb);
    let sup = sb.supervise(&["--prefix", &dir], &[]);
    let ready = |sb: &Sandbox| {
        let run = sb.fpmctl(&["--prefix", &dir, "status", "--json"]);
        let j: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
        let s = j.get("supervisor")?;
        (s["ready"] == true).then(|| s["master"].as_i64().unwrap_or(0) as i32)
    };
    let first = sb.wait_for(Duration::from_secs(15), "a supervised FPM", || ready(&sb));
    sb.note_master(first);
    assert!(sb.sock.exists(), "{}", sb.supervise_log());
    assert_eq!(sb.pid_from_file(), Some(first), "{}", sb.supervise_log());
    sb.fpmctl(&["--prefix", &dir, "restart"]).expect_code(0);
    let second = sb.wait_for(Duration::from_secs(15), "the new FPM", || {
        ready(&sb).filter(|m| *m != first)
    });
    sb.note_master(second);
    sb.fpmctl(&["--prefix", &dir, "ping"]).expect_code(0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(sb.wait_child(sup, Duration::from_secs(30)), 0);
    assert!(sb.masters().is_empty());
}
