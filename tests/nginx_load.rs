//! The nginx and load harness checks itself against a real php-fpm: requests through nginx
//! reach both pools, a steady load sees only 2xx, and stopping FPM under load is counted.

mod common;
use common::{Sandbox, alive, load, load::Load, nginx::Nginx};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Each load thread's pause between requests: enough load to matter, little CPU.
const PAUSE: Duration = Duration::from_millis(1);

#[test]
fn nginx_reaches_both_pools_and_a_steady_load_sees_only_2xx() {
    let Some(sb) = Sandbox::new() else { return };
    if !common::nginx::available() {
        return;
    }
    sb.start_fpm();
    let ng = Nginx::start(&sb);
    let limit = Duration::from_secs(5);
    for path in ["/tcp/", "/sock/"] {
        let (status, body) = load::get(ng.addr, path, limit).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}\n{}", ng.logs());
        assert!(body.starts_with("hello from "), "GET {path}: {body}");
    }
    for path in ["/slow/tcp?s=1", "/slow/sock?s=1"] {
        let (status, body) = load::get(ng.addr, path, limit).unwrap();
        assert_eq!((status, body.as_str()), (200, "slept 1"), "GET {path}");
    }

    for path in ["/tcp/", "/sock/"] {
        let stop = Arc::new(AtomicBool::new(false));
        let rep = Load::new(2, Duration::from_secs(1))
            .pause(PAUSE)
            .run(ng.addr, path, stop);
        eprintln!("GET {path}: {rep}");
        assert!(rep.requests() > 10, "GET {path}: {rep}");
        assert_eq!(rep.failed(), 0, "GET {path}: {rep}\n{}", ng.logs());
        assert_eq!(rep.statuses.keys().collect::<Vec<_>>(), [&200], "{rep}");
        // Every client ran to the run's own limit: none was held up by a stuck request.
        assert_eq!(rep.ended_by, [load::End::MaxDuration; 2], "{rep}");
    }

    let pid = ng.pid().unwrap();
    assert!(alive(pid));
    drop(ng);
    assert!(!alive(pid), "nginx master {pid} survived its drop");
}

#[test]
fn stopping_fpm_under_load_is_counted_as_failures() {
    let Some(sb) = Sandbox::new() else { return };
    if !common::nginx::available() {
        return;
    }
    sb.start_fpm();
    let ng = Nginx::start(&sb);
    let stop = Arc::new(AtomicBool::new(false));
    let bg = Load::new(2, Duration::from_secs(30)).pause(PAUSE).spawn(
        ng.addr,
        "/tcp/",
        Arc::clone(&stop),
    );
    std::thread::sleep(Duration::from_millis(500));
    let run = sb.fpmctl(&["stop"]);
    eprintln!("{run}");
    run.expect_code(0);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let rep = bg.join().unwrap();
    eprintln!("GET /tcp/ with a stop: {rep}");
    assert!(
        rep.ok_2xx > 0,
        "no request succeeded before the stop: {rep}"
    );
    assert!(rep.non_2xx > 0, "the stop went unnoticed: {rep}");
    assert!(rep.statuses.contains_key(&502), "{rep}");
    assert!(!rep.first_errors.is_empty(), "{rep}");
    // The failures did not wedge the clients: each one saw the stop flag, well before
    // the run's 30s limit would have ended it.
    assert_eq!(rep.ended_by, [load::End::StopFlag; 2], "{rep}");
}
