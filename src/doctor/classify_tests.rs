//! The classifier as data: real log lines (as nginx 1.22.1 and php-fpm 8.2.36 wrote them
//! when provoked) scanned into observations, configs given as text or facts.

use super::*;
use crate::doctor::facts::{FpmFacts, HolderFacts, LiveFacts, PoolFacts, Probe, ProbeResult};
use crate::doctor::nginx_conf::{NginxConf, parse_text};
use crate::doctor::nginx_facts::facts;
use crate::doctor::scan::{LogKind, Position, Scanner};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PERM: &str = "2026/11/30 05:46:43 [crit] 17177#17177: *1 connect() to unix:/tmp/dr/www.sock failed (13: Permission denied) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /perm/x HTTP/1.1\", upstream: \"fastcgi://unix:/tmp/dr/www.sock:\", host: \"127.0.0.1:19380\"\n";
const NOSOCK: &str = "2026/11/30 05:46:43 [crit] 17177#17177: *3 connect() to unix:/tmp/dr/missing.sock failed (2: No such file or directory) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /nosock/x HTTP/1.1\", upstream: \"fastcgi://unix:/tmp/dr/missing.sock:\", host: \"127.0.0.1:19380\"\n";
const REFUSED: &str = "2026/11/30 05:46:43 [error] 17177#17177: *5 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /refused/x HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19312\", host: \"127.0.0.1:19380\"\n";
const SEGV_RESET: &str = "2026/11/30 05:46:44 [error] 17177#17177: *19 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /segv.php HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19311\", host: \"127.0.0.1:19380\"\n";
const PROXY_RESET: &str = "2026/11/30 05:46:51 [error] 17794#17794: *21 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /proxy/x HTTP/1.1\", upstream: \"http://127.0.0.1:19311/proxy/x\", host: \"127.0.0.1:19380\"\n";
const TERM_RESET: &str = "2026/11/30 05:46:56 [error] 17794#17794: *23 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /term/x?s=6 HTTP/1.1\", upstream: \"fastcgi://unix:/tmp/dr/www.sock:\", host: \"127.0.0.1:19380\"\n";
const TIMEOUT: &str = "2026/11/30 05:46:44 [error] 17177#17177: *9 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /timeout/x HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19311\", host: \"127.0.0.1:19380\"\n";
const BIGHDR: &str = "2026/11/30 05:46:44 [error] 17177#17177: *17 upstream sent too big header while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /bighdr.php HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19311\", host: \"127.0.0.1:19380\"\n";
const EAGAIN: &str = "2026/11/30 05:47:08 [error] 18676#18676: *38 connect() to unix:/tmp/dr/dyn.sock failed (11: Resource temporarily unavailable) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /dyn/x?s=2 HTTP/1.1\", upstream: \"fastcgi://unix:/tmp/dr/dyn.sock:\", host: \"127.0.0.1:19380\"\n";

const FPM_SEGV: &str = "[30-Nov-2026 05:46:44] WARNING: [pool tcp] child 17178 exited on signal 11 (SIGSEGV) after 1.644467 seconds from start\n";
const FPM_TERM: &str = "[30-Nov-2026 05:46:56] WARNING: [pool www] child 17168, script '/tmp/dr/www/slow.php' (request: \"GET /term/x?s=6\") execution timed out (5.032927 sec), terminating\n[30-Nov-2026 05:46:56] WARNING: [pool www] child 17168 exited on signal 15 (SIGTERM) after 13.366600 seconds from start\n";
const FPM_MAX: &str = "[30-Nov-2026 05:47:09] WARNING: [pool dyn] server reached pm.max_children setting (2), consider raising it\n";
const FPM_BIND: &str = "[30-Nov-2026 05:47:07] ERROR: unable to bind listening socket for address '127.0.0.1:19311': Address already in use (98)\n[30-Nov-2026 05:47:07] ERROR: FPM initialization failed\n";

const NGINX: &str = "user www-data;\nhttp {\n  server {\n    location /perm/ { fastcgi_pass unix:/tmp/dr/www.sock; }\n    location /refused/ { fastcgi_pass 127.0.0.1:19312; }\n    location /proxy/ { proxy_pass http://127.0.0.1:19311; }\n    location /timeout/ { fastcgi_read_timeout 1s; fastcgi_pass 127.0.0.1:19311; }\n    location ~ \\.php$ { fastcgi_buffer_size 1k; fastcgi_pass 127.0.0.1:19311; }\n  }\n}\n";

fn obs(nginx: &str, fpm: &str) -> Observations {
    let mut o = Observations::default();
    Scanner::new(LogKind::NginxError)
        .scan(
            nginx.as_bytes(),
            "/var/log/nginx/error.log",
            Position::default(),
            None,
            true,
            &mut o,
        )
        .unwrap();
    Scanner::new(LogKind::Fpm)
        .scan(
            fpm.as_bytes(),
            "/var/log/php8.2-fpm.log",
            Position::default(),
            None,
            true,
            &mut o,
        )
        .unwrap();
    o
}

fn pool(name: &str, listen: &str) -> PoolFacts {
    PoolFacts {
        name: name.into(),
        listen: ListenAddr::parse(listen).unwrap(),
        file: PathBuf::from(format!("/etc/php/8.2/fpm/pool.d/{name}.conf")),
        line: 1,
        owner: Some("root".into()),
        group: None,
        mode: Some("0600".into()),
        backlog: 511,
        max_children: 5,
        terminate_timeout: Duration::from_secs(4),
    }
}

fn fpm() -> FpmFacts {
    FpmFacts {
        config: PathBuf::from("/etc/php/8.2/fpm/php-fpm.conf"),
        pools: vec![
            pool("www", "/tmp/dr/www.sock"),
            pool("tcp", "127.0.0.1:19311"),
        ],
        process_control_timeout: Duration::from_secs(10),
    }
}

fn nginx() -> NginxFacts {
    let (directives, notes) = parse_text(Path::new("/etc/nginx/nginx.conf"), NGINX);
    let conf = NginxConf {
        main: PathBuf::from("/etc/nginx/nginx.conf"),
        directives,
        notes,
    };
    facts(&conf, Path::new("/usr/share/nginx"))
}

fn run(o: &Observations, fpm: Option<&FpmFacts>, live: &LiveFacts) -> Diagnosis {
    let n = nginx();
    classify(&Input {
        obs: o,
        nginx: Some(&n),
        fpm,
        live,
        now: 0,
    })
}

fn causes(d: &Diagnosis) -> Vec<&'static str> {
    d.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.cause)
        .collect()
}

#[test]
fn permission_denied_names_nginx_user_and_the_pool_file() {
    let o = obs(PERM, "");
    let d = run(&o, Some(&fpm()), &LiveFacts::default());
    assert_eq!(causes(&d), ["socket-permission"]);
    let f = &d.findings[0];
    assert_eq!((f.count, f.failed), (1, 1));
    assert!(f.fix.contains("listen.owner = www-data"), "{}", f.fix);
    assert!(
        f.fix.contains("/etc/php/8.2/fpm/pool.d/www.conf"),
        "{}",
        f.fix
    );
    assert!(f.summary.contains("listen.mode = 0600"), "{}", f.summary);
    assert_eq!(f.evidence[0].line, 1);
    assert_eq!(f.evidence[0].file, "/var/log/nginx/error.log");
}

#[test]
fn a_reset_is_what_fpm_logged_at_that_time_in_that_pool() {
    let d = run(
        &obs(TERM_RESET, FPM_TERM),
        Some(&fpm()),
        &LiveFacts::default(),
    );
    assert_eq!(causes(&d), ["worker-terminated"]);
    assert!(d.findings[0].fix.contains("request_terminate_timeout"));
    assert_eq!(d.findings[0].evidence.len(), 2, "nginx's line and FPM's");

    let d = run(
        &obs(SEGV_RESET, FPM_SEGV),
        Some(&fpm()),
        &LiveFacts::default(),
    );
    assert_eq!(causes(&d), ["worker-crashed"]);
    assert!(
        d.findings[0].summary.contains("SIGSEGV"),
        "{}",
        d.findings[0].summary
    );

    // A crash in another pool does not explain a reset on this one.
    let d = run(
        &obs(TERM_RESET, FPM_SEGV),
        Some(&fpm()),
        &LiveFacts::default(),
    );
    assert_eq!(causes(&d), ["worker-crashed"]);
    assert_eq!(d.findings[0].failed, 0);
    assert!(
        d.notes.iter().any(|n| n.contains("1 connection resets")),
        "{:?}",
        d.notes
    );

    // Alone, a reset names nothing.
    let d = run(&obs(SEGV_RESET, ""), Some(&fpm()), &LiveFacts::default());
    assert!(causes(&d).is_empty());
}

#[test]
fn proxy_pass_to_fpm_is_a_protocol_mismatch() {
    let d = run(&obs(PROXY_RESET, ""), Some(&fpm()), &LiveFacts::default());
    assert_eq!(causes(&d), ["protocol-mismatch"]);
    assert!(
        d.findings[0].fix.contains("/etc/nginx/nginx.conf:6"),
        "{}",
        d.findings[0].fix
    );
    assert!(
        !d.findings
            .iter()
            .any(|f| f.cause == "lint-proxy-pass-to-fpm")
    );
}

#[test]
fn refused_is_a_mismatch_or_fpm_down_or_a_failed_bind() {
    let d = run(&obs(REFUSED, ""), Some(&fpm()), &LiveFacts::default());
    assert_eq!(causes(&d), ["listen-mismatch"]);
    assert!(
        d.findings[0]
            .fix
            .starts_with("fastcgi_pass unix:/tmp/dr/www.sock; at /etc/nginx/nginx.conf:5"),
        "{}",
        d.findings[0].fix
    );
    assert!(!d.findings.iter().any(|f| f.cause == "lint-listen-mismatch"));

    let mut f = fpm();
    f.pools.push(pool("other", "127.0.0.1:19312"));
    let d = run(&obs(REFUSED, ""), Some(&f), &LiveFacts::default());
    assert_eq!(causes(&d), ["fpm-not-running"]);

    let d = run(&obs(NOSOCK, ""), None, &LiveFacts::default());
    assert_eq!(causes(&d), ["fpm-not-running"]);

    let refused_bound = REFUSED
        .replace("19312", "19311")
        .replace("05:46:43", "05:47:08");
    let d = run(
        &obs(&refused_bound, FPM_BIND),
        Some(&fpm()),
        &LiveFacts::default(),
    );
    assert_eq!(causes(&d), ["fpm-bind-failed"]);
    assert_eq!(d.findings[0].failed, 1);
}

#[test]
fn a_failed_bind_names_the_holder_and_the_way_out() {
    let live = LiveFacts {
        holders: vec![HolderFacts {
            addr: ListenAddr::parse("127.0.0.1:19311").unwrap(),
            holders: vec!["PID 42 (php-fpm: pool tcp), orphan".into()],
            orphans_only: true,
            own: false,
        }],
        ..LiveFacts::default()
    };
    let d = run(&obs("", FPM_BIND), Some(&fpm()), &live);
    assert_eq!(causes(&d), ["fpm-bind-failed"]);
    assert!(
        d.findings[0].summary.contains("PID 42"),
        "{}",
        d.findings[0].summary
    );
    assert!(
        d.findings[0]
            .fix
            .contains("fpmctl stop -c /etc/php/8.2/fpm/php-fpm.conf"),
        "{}",
        d.findings[0].fix
    );
}

#[test]
fn the_location_that_served_the_request_gives_the_fix() {
    let d = run(
        &obs(&format!("{TIMEOUT}{BIGHDR}"), ""),
        Some(&fpm()),
        &LiveFacts::default(),
    );
    let timeout = d
        .findings
        .iter()
        .find(|f| f.cause == "upstream-timeout")
        .unwrap();
    assert!(
        timeout.fix.contains("at /etc/nginx/nginx.conf:7 (now 1s)"),
        "{}",
        timeout.fix
    );
    let hdr = d
        .findings
        .iter()
        .find(|f| f.cause == "header-too-big")
        .unwrap();
    assert!(
        hdr.fix.contains("at /etc/nginx/nginx.conf:8 (now 1k)"),
        "{}",
        hdr.fix
    );
}

#[test]
fn max_children_counts_without_nginx_evidence_and_orders_last() {
    let mut f = fpm();
    f.pools.push(pool("dyn", "/tmp/dr/dyn.sock"));
    let d = run(
        &obs(&format!("{EAGAIN}{EAGAIN}"), FPM_MAX),
        Some(&f),
        &LiveFacts::default(),
    );
    assert_eq!(causes(&d), ["backlog-full", "max-children-reached"]);
    assert_eq!(d.findings[0].failed, 2);
    assert!(
        d.findings[0].fix.contains("listen.backlog"),
        "{}",
        d.findings[0].fix
    );
    assert!(
        d.findings[1]
            .fix
            .starts_with("pm.max_children = 4 in /etc/php/8.2/fpm/pool.d/dyn.conf"),
        "{}",
        d.findings[1].fix
    );
}

#[test]
fn healthy_logs_name_no_cause_and_lints_are_warnings() {
    let mut f = fpm();
    f.process_control_timeout = Duration::ZERO;
    let d = run(&Observations::default(), Some(&f), &LiveFacts::default());
    assert!(!d.has_cause());
    assert!(
        d.findings
            .iter()
            .all(|f| f.severity == Severity::Warning && f.cause.starts_with("lint-"))
    );
    assert!(
        d.findings
            .iter()
            .any(|f| f.cause == "lint-process-control-timeout")
    );
}

#[test]
fn a_live_probe_proves_permission_without_logs() {
    let live = LiveFacts {
        probes: vec![Probe {
            addr: ListenAddr::parse("/tmp/dr/www.sock").unwrap(),
            user: "www-data".into(),
            result: ProbeResult::Failed(13, "Permission denied".into()),
            socket_perms: Some("root:root 0600".into()),
        }],
        ..LiveFacts::default()
    };
    let d = run(&Observations::default(), Some(&fpm()), &live);
    assert_eq!(causes(&d), ["socket-permission"]);
    let f = &d.findings[0];
    assert!(
        f.summary.contains("now: connect() as www-data"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("root:root 0600"), "{}", f.summary);
    assert_eq!(f.evidence[0].file, "/etc/php/8.2/fpm/pool.d/www.conf");
    assert_eq!(
        (f.evidence[0].line, f.evidence[0].text.as_str()),
        (1, "[www]")
    );
    assert_eq!(f.count, 1);

    // With log evidence too, the proof joins the summary and the count stays the logs'.
    let d = run(&obs(PERM, ""), Some(&fpm()), &live);
    let f = &d.findings[0];
    assert_eq!((f.count, f.failed), (1, 1));
    assert!(
        f.summary.contains("now: connect() as www-data"),
        "{}",
        f.summary
    );
    assert!(f.evidence.iter().all(|e| e.line > 0));
}

#[test]
fn a_stopped_fpm_is_a_cause_only_where_nginx_sends_requests() {
    let probe = |addr: &str| Probe {
        addr: ListenAddr::parse(addr).unwrap(),
        user: "www-data".into(),
        result: ProbeResult::Failed(2, "No such file or directory".into()),
        socket_perms: None,
    };
    let live = LiveFacts {
        fpm_running: Some(false),
        probes: vec![probe("/tmp/dr/www.sock"), probe("/tmp/dr/unused.sock")],
        ..LiveFacts::default()
    };
    let d = run(&Observations::default(), Some(&fpm()), &live);
    assert_eq!(causes(&d), ["fpm-not-running"]);
    assert!(
        d.findings[0].summary.contains("unix:/tmp/dr/www.sock"),
        "{}",
        d.findings[0].summary
    );
    assert!(
        d.findings[0].fix.contains("fpmctl start"),
        "{}",
        d.findings[0].fix
    );
}

#[test]
fn a_right_config_with_a_wrong_socket_needs_a_restart_and_a_fixed_one_says_so() {
    let mut f = fpm();
    f.pools[0].owner = Some("www-data".into());
    let probe = |result| LiveFacts {
        probes: vec![Probe {
            addr: ListenAddr::parse("/tmp/dr/www.sock").unwrap(),
            user: "www-data".into(),
            result,
            socket_perms: Some("nobody:nogroup 0660".into()),
        }],
        ..LiveFacts::default()
    };
    let d = run(
        &obs(PERM, ""),
        Some(&f),
        &probe(ProbeResult::Failed(13, "Permission denied".into())),
    );
    assert_eq!(causes(&d), ["socket-permission"]);
    assert!(
        d.findings[0].fix.contains("kept its old owner"),
        "{}",
        d.findings[0].fix
    );
    assert!(
        d.findings[0]
            .fix
            .contains("fpmctl restart -c /etc/php/8.2/fpm/php-fpm.conf"),
        "{}",
        d.findings[0].fix
    );

    let d = run(&obs(PERM, ""), Some(&f), &probe(ProbeResult::Connected));
    assert!(
        d.findings[0]
            .summary
            .ends_with("fixed after the last failure"),
        "{}",
        d.findings[0].summary
    );
}

#[test]
fn more_workers_than_memory_holds_is_a_lint() {
    let live = LiveFacts {
        mem_total_kib: Some(1024 * 1024),
        worker_rss_kib: vec![("www".into(), 300 * 1024)],
        ..LiveFacts::default()
    };
    let d = run(&Observations::default(), Some(&fpm()), &live);
    assert!(!d.has_cause());
    let l = d
        .findings
        .iter()
        .find(|f| f.cause == "lint-max-children-memory")
        .unwrap();
    assert!(l.summary.contains("1500 MiB"), "{}", l.summary);
    assert!(
        l.fix
            .starts_with("pm.max_children = 2 in /etc/php/8.2/fpm/pool.d/www.conf (now 5)"),
        "{}",
        l.fix
    );
}

#[test]
fn fpm_not_running_quotes_fpms_exit() {
    // The recorded incident: FPM stopped, then nginx found no socket.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/fpm-not-running");
    let read = |p: &str| std::fs::read_to_string(case.join(p)).unwrap();
    let o = obs(&read("nginx/error.log"), &read("fpm.log"));
    let mut f = fpm();
    f.pools = vec![pool("www", "/__CASE__/run/php8.2-fpm.sock")];
    let d = run(&o, Some(&f), &LiveFacts::default());
    assert_eq!(causes(&d), ["fpm-not-running"]);
    let ev = d.findings[0].evidence.last().unwrap();
    let exit_line = read("fpm.log")
        .lines()
        .position(|l| l.contains("exiting, bye-bye"))
        .unwrap() as u64
        + 1;
    assert_eq!(
        (ev.file.as_str(), ev.line),
        ("/var/log/php8.2-fpm.log", exit_line)
    );
    // The incident starts with FPM's exit: every quoted line lies within first..last.
    let exit_time = crate::doctor::time::parse_fpm(&ev.text.as_bytes()[1..]).unwrap();
    assert!(d.findings[0].first.unwrap() <= exit_time);
    assert!(
        d.findings[0]
            .summary
            .ends_with("FPM's log shows it exiting before")
    );
    // FPM's exit after the failures explains nothing.
    let later = obs(
        &read("nginx/error.log").replace("2026/11/30 ", "2026/11/29 "),
        &read("fpm.log"),
    );
    let d = run(&later, Some(&f), &LiveFacts::default());
    assert!(
        d.findings[0]
            .evidence
            .iter()
            .all(|e| e.file.ends_with("error.log"))
    );
}

#[test]
fn a_live_probe_proves_a_mismatch_while_fpm_runs_elsewhere() {
    let live = LiveFacts {
        fpm_running: Some(true),
        probes: vec![Probe {
            addr: ListenAddr::parse("127.0.0.1:19312").unwrap(),
            user: "www-data".into(),
            result: ProbeResult::Failed(111, "Connection refused".into()),
            socket_perms: None,
        }],
        ..LiveFacts::default()
    };
    let d = run(&Observations::default(), Some(&fpm()), &live);
    assert_eq!(causes(&d), ["listen-mismatch"]);
    let f = &d.findings[0];
    assert_eq!(f.evidence[0].file, "/etc/nginx/nginx.conf");
    assert_eq!(
        (f.evidence[0].line, f.evidence[0].text.as_str()),
        (5, "127.0.0.1:19312")
    );
    assert!(
        f.fix
            .starts_with("fastcgi_pass unix:/tmp/dr/www.sock; at /etc/nginx/nginx.conf:5"),
        "{}",
        f.fix
    );
    assert!(!d.findings.iter().any(|f| f.cause == "lint-listen-mismatch"));
    // Nothing runs: the probe alone names nothing for an address no pool has.
    let stopped = LiveFacts {
        fpm_running: Some(false),
        ..live
    };
    assert!(causes(&run(&Observations::default(), Some(&fpm()), &stopped)).is_empty());
}

#[test]
fn without_nginx_config_nginx_user_is_not_guessed() {
    let o = obs(PERM, "");
    let live = LiveFacts::default();
    let d = classify(&Input {
        obs: &o,
        nginx: None,
        fpm: Some(&fpm()),
        live: &live,
        now: 0,
    });
    assert_eq!(causes(&d), ["socket-permission"]);
    let f = &d.findings[0];
    assert!(
        f.summary.starts_with("nginx's workers may not connect"),
        "{}",
        f.summary
    );
    assert!(f.fix.contains("pass --nginx-conf"), "{}", f.fix);
    assert!(
        !f.fix.contains("nobody") && !f.fix.contains("www-data"),
        "{}",
        f.fix
    );
}

#[test]
fn max_children_fix_fits_memory_when_workers_were_measured() {
    let mut f = fpm();
    f.pools.push(pool("dyn", "/tmp/dr/dyn.sock"));
    let live = |mem_mib: u64| LiveFacts {
        mem_total_kib: Some(mem_mib * 1024),
        worker_rss_kib: vec![("dyn".into(), 100 * 1024)],
        ..LiveFacts::default()
    };
    let fix = |mem| {
        run(&obs("", FPM_MAX), Some(&f), &live(mem))
            .findings
            .into_iter()
            .find(|x| x.cause == "max-children-reached")
            .unwrap()
            .fix
    };
    assert!(fix(8192).starts_with("pm.max_children = 4 in /etc/php/8.2/fpm/pool.d/dyn.conf (now 2; workers use about 100 MiB each"), "{}", fix(8192));
    assert!(fix(375).starts_with("pm.max_children = 3 "), "{}", fix(375));
    assert!(
        fix(200).contains("already fill the host's memory"),
        "{}",
        fix(200)
    );
}
