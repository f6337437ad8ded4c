//! Honest results: every command's exit code and message say what really happened, also
//! through the supervisor and for users who cannot see everything.

use crate::common::{Sandbox, alive, slow_request, wait_busy};
use std::time::Duration;

/// Fault: a forwarded command fails with 7 (foreign holder); the client used to exit 1.
#[test]
fn f15_a_forwarded_command_returns_the_supervisors_real_exit_code() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    sb.write_config(&format!(
        "{}\n[extra]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = static\npm.max_children = 1\n",
        sb.config_text()
    ));
    for cmd in ["restart", "reload"] {
        let run = sb.fpmctl(&[cmd]);
        run.expect_code(7);
        assert!(
            run.stderr.contains(&std::process::id().to_string()),
            "the holder is not named:\n{run}"
        );
        assert!(alive(master), "{run}");
    }
    drop(foreign);
    sb.write_config(&sb.config_text());
    assert_eq!(sb.wait_supervised_ready(), master);
}

/// Fault: a forwarded stop dropped its plan and answered 0 while the supervisor exited 8.
#[test]
fn f15_a_stop_through_the_supervisor_honours_its_plan_and_answers_the_real_code() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&[], &[]);
    sb.wait_supervised_ready();
    let _req = slow_request(&sb, 30);
    wait_busy(&sb);
    // FPM waits up to process_control_timeout (10s) for the request; the plan allows 1s.
    let run = sb.fpmctl(&["stop", "--signal-plan", "QUIT:1s"]);
    run.expect_code(8);
    assert!(run.stderr.contains("QUIT:1s"), "{run}");
    assert_eq!(
        sb.wait_child(sup, Duration::from_secs(30)),
        8,
        "{}",
        sb.supervise_log()
    );
}

/// Fault: options that a forwarded command cannot honour were silently dropped.
#[test]
fn f15_forwarded_options_are_refused_when_the_supervisor_cannot_honour_them() {
    let Some(sb) = Sandbox::new() else { return };
    sb.supervise(&[], &[]);
    let master = sb.wait_supervised_ready();
    for args in [
        vec!["restart", "--timeout", "9223372036854775807s"],
        vec!["restart", "--signal-plan", "QUIT:1s"],
        vec!["restart", "--stop-timeout", "5s"],
        vec!["restart", "--no-ready-wait"],
        vec!["restart", "--cold"],
    ] {
        let run = sb.fpmctl(&args);
        run.expect_code(2);
        assert!(alive(master), "{run}");
    }
    // An option it can honour is honoured: the readiness limit of the new FPM.
    let run = sb.fpmctl(&["restart", "--timeout", "20s"]);
    run.expect_code(0);
    assert!(run.stdout.contains("through the supervisor"), "{run}");
}

/// Fault: `stop --timeout 0` cut the plan short but claimed the whole plan had run.
#[test]
fn f15_stop_timeout_zero_says_the_timeout_cut_the_plan_short() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let _req = slow_request(&sb, 5);
    wait_busy(&sb);
    let run = sb.fpmctl(&["stop", "--timeout", "0s"]);
    run.expect_code(8);
    assert!(run.stderr.contains("cut the signal plan"), "{run}");
    assert!(run.stderr.contains("short after QUIT"), "{run}");
    assert!(run.stderr.contains("TERM, KILL not sent"), "{run}");
}

/// A non-root user is told what it could not see, never "free", "running" or "INVALID".
#[test]
fn f16_non_root_user_is_told_what_it_cannot_see() {
    let Some(sb) = crate::common::Sandbox::new() else {
        return;
    };
    let master = sb.start_fpm();
    // The config itself is readable by everyone, whatever the umask: only processes are hidden.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sb.conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    const CANNOT: &str = "cannot inspect processes of other users: run as root";

    let status = sb.fpmctl_as("nobody", "nogroup", &["status"]);
    status.expect_code(4);
    assert!(status.stdout.contains(CANNOT), "{status}");
    assert!(!status.stdout.contains(": free"), "{status}");
    let json = sb.fpmctl_as("nobody", "nogroup", &["status", "--json"]);
    json.expect_code(4);
    let j = json.json();
    assert_eq!(j["state"], "unverified", "{json}");
    assert!(j["master"].is_null(), "{json}");
    assert!(
        j["listen"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["holders_known"] == false),
        "{json}"
    );

    let check = sb.fpmctl_as("nobody", "nogroup", &["check"]);
    assert_ne!(check.code, 6, "{check}");
    assert_ne!(check.code, 0, "{check}");
    assert!(!check.stdout.contains("INVALID"), "{check}");
    assert!(
        (check.stdout.clone() + &check.stderr).contains("run as root"),
        "{check}"
    );

    // Root still sees everything, and the master was never touched.
    sb.fpmctl(&["status"]).expect_code(0);
    assert!(crate::common::alive(master));
}
