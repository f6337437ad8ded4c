//! `--log-format json`: every line fpmctl logs is one JSON object, and the lifecycle events
//! (start, stop, restart, signals sent, the supervisor's spawn, ready, crash and retire) carry
//! their facts as fields (`pid`, `signal`, `duration_ms`, `reason`, `exit_code`), not inside
//! the message. `-vv` adds the supervisor's trace-level detail.

mod common;
use common::Sandbox;
use serde_json::Value;
use std::time::Duration;

/// Every log line as JSON; lines FPM itself wrote (forwarded from its stderr, `[date] ...`)
/// are left out.
fn events(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('['))
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n--- whole log:\n{log}"))
        })
        .collect()
}

/// The events whose message is `msg`.
fn named<'a>(events: &'a [Value], msg: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["fields"]["message"] == msg)
        .collect()
}

#[track_caller]
fn field<'a>(e: &'a Value, name: &str) -> &'a Value {
    let v = &e["fields"][name];
    assert!(!v.is_null(), "no field {name} in {e}");
    v
}

#[test]
fn a_handover_restart_logs_takeover_ready_and_retire_as_structured_json() {
    let Some(sb) = Sandbox::new() else { return };
    sb.fpmctl(&["start"]).expect_code(0);
    let old = sb.pid_from_file().unwrap();
    let run = sb.fpmctl(&["--log-format", "json", "restart"]);
    run.expect_code(0);
    let ev = events(&run.stderr);
    let took = named(&ev, "took the running master's listening sockets");
    assert_eq!(took.len(), 1, "{run}");
    assert_eq!(
        field(took[0], "pid").as_i64(),
        Some(i64::from(old)),
        "{run}"
    );
    let new = sb.pid_from_file().unwrap();
    let ready = named(&ev, "ready");
    assert_eq!(ready.len(), 1, "{run}");
    assert_eq!(
        field(ready[0], "pid").as_i64(),
        Some(i64::from(new)),
        "{run}"
    );
    assert!(field(ready[0], "duration_ms").is_u64(), "{run}");
    let retired = named(&ev, "old master retired");
    assert_eq!(retired.len(), 1, "{run}");
    assert_eq!(
        field(retired[0], "pid").as_i64(),
        Some(i64::from(old)),
        "{run}"
    );
    assert!(field(retired[0], "duration_ms").is_u64(), "{run}");
    assert!(field(retired[0], "workers").is_u64(), "{run}");
    for e in &ev {
        let msg = e["fields"]["message"].as_str().unwrap_or("");
        assert!(!msg.contains(&old.to_string()), "a PID in a message: {e}");
    }
    sb.fpmctl(&["stop"]).expect_code(0);
}

#[test]
fn a_cold_restart_logs_stop_signal_and_start_as_structured_json() {
    let Some(sb) = Sandbox::new() else { return };
    sb.fpmctl(&["start"]).expect_code(0);
    let old = sb.pid_from_file().unwrap();
    let run = sb.fpmctl(&["--log-format", "json", "restart", "--cold"]);
    run.expect_code(0);
    let ev = events(&run.stderr);
    let stopping = named(&ev, "stopping master");
    assert_eq!(stopping.len(), 1, "{run}");
    assert_eq!(field(stopping[0], "pid").as_i64(), Some(i64::from(old)));
    assert_eq!(field(stopping[0], "signal"), "SIGQUIT", "{run}");
    let stopped = named(&ev, "stopped");
    assert!(field(stopped[0], "duration_ms").is_u64(), "{run}");
    assert_eq!(named(&ev, "starting FPM").len(), 1, "{run}");
    let ready = named(&ev, "ready");
    assert!(field(ready[0], "duration_ms").is_u64(), "{run}");
    let new = sb.pid_from_file().unwrap();
    assert_eq!(
        field(ready[0], "pid").as_i64(),
        Some(i64::from(new)),
        "{run}"
    );
    // No fact left inside a message.
    for e in &ev {
        let msg = e["fields"]["message"].as_str().unwrap_or("");
        assert!(!msg.contains(&old.to_string()), "a PID in a message: {e}");
    }
    sb.fpmctl(&["stop"]).expect_code(0);
}

#[test]
fn the_supervisor_logs_spawn_ready_restart_crash_and_signals_as_fields() {
    let Some(sb) = Sandbox::new() else { return };
    let sup = sb.supervise(&["--log-format", "json", "-vv"], &[]);
    let first = sb.wait_supervised_ready();
    sb.fpmctl(&["restart"]).expect_code(0);
    let second = sb.wait_supervised_ready();
    assert_ne!(first, second);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    sb.wait_for(Duration::from_secs(30), "the crash restart", || {
        let m = sb.wait_supervised_ready();
        (m != second).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        sb.wait_child(sup, Duration::from_secs(30)),
        0,
        "{}",
        sb.supervise_log()
    );
    let log = sb.supervise_log();
    let ev = events(&log);

    let started = named(&ev, "started FPM master");
    assert_eq!(started.len(), 3, "{log}");
    let reasons: Vec<&Value> = started.iter().map(|e| field(e, "reason")).collect();
    assert_eq!(reasons, ["first", "requested", "crash"], "{log}");
    assert_eq!(field(started[0], "pid").as_i64(), Some(i64::from(first)));

    let restarted = named(&ev, "FPM restarted");
    assert_eq!(field(restarted[0], "reason"), "requested", "{log}");
    assert!(field(restarted[0], "duration_ms").is_u64());
    assert_eq!(
        field(restarted[0], "old_pid").as_i64(),
        Some(i64::from(first))
    );
    assert!(field(named(&ev, "FPM ready")[0], "duration_ms").is_u64());

    // The old master retired: SIGSTOP, then SIGKILL once its workers are gone.
    let signalled: Vec<(i64, String)> = named(&ev, "signalled master")
        .iter()
        .map(|e| {
            (
                field(e, "pid").as_i64().unwrap(),
                field(e, "signal").as_str().unwrap().to_string(),
            )
        })
        .collect();
    let first = i64::from(first);
    assert!(signalled.contains(&(first, "SIGSTOP".into())), "{log}");
    assert!(signalled.contains(&(first, "SIGKILL".into())), "{log}");

    // The crash: the master's end with its signal, and the crash restart's reason.
    let reaped = named(&ev, "FPM master reaped");
    assert!(
        reaped
            .iter()
            .any(|e| e["fields"]["pid"] == i64::from(second) && e["fields"]["signal"] == "SIGKILL"),
        "{log}"
    );
    assert!(
        named(&ev, "restarting FPM now")
            .iter()
            .any(|e| e["fields"]["reason"] == "crash"),
        "{log}"
    );
    // The stop: the signal received, the stop signal sent, the exit code.
    assert!(
        named(&ev, "signal received")
            .iter()
            .any(|e| e["fields"]["signal"] == "SIGTERM"),
        "{log}"
    );
    assert!(
        named(&ev, "stopping FPM master")
            .iter()
            .all(|e| e["fields"]["signal"].is_string() && e["fields"]["pid"].is_i64()),
        "{log}"
    );
    assert!(ev.iter().any(|e| e["fields"]["exit_code"] == 0), "{log}");
    // -vv: the machine's every event at trace level.
    assert!(
        ev.iter()
            .any(|e| e["level"] == "TRACE" && e["fields"]["message"] == "machine event"),
        "{log}"
    );
}
