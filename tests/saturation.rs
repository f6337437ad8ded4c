//! Saturation seen without a free worker: `status --json`, `metrics` and `probe` against a
//! real php-fpm whose every worker is busy with a slow request and whose accept queues hold
//! connections nobody accepts; `promtool check metrics` on the exposition; probes that leave
//! the access log alone.

mod common;
use common::Sandbox;
use fpmctl::listen::ListenAddr;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Workers of each pool (`pm = static`).
const CHILDREN: u32 = 2;

/// Two static pools, TCP and unix, each with an access log and a status page.
fn config(sb: &Sandbox) -> String {
    let d = sb.path().display();
    format!(
        "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = yes\n\n\
         [tcp]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = static\n\
         pm.max_children = {CHILDREN}\nping.path = /ping\npm.status_path = /status\n\
         access.log = {d}/tcp-access.log\n\n\
         [sock]\nuser = nobody\ngroup = nogroup\nlisten = {d}/fpm.sock\nlisten.mode = 0666\n\
         pm = static\npm.max_children = {CHILDREN}\npm.status_path = /status\n\
         access.log = {d}/sock-access.log\n",
        port = sb.port,
    )
}

fn start(sb: &Sandbox) {
    sb.write_config(&config(sb));
    sb.fpmctl(&["start"]).expect_code(0);
}

/// A slow request (`slow.php`, which loops on the clock) to `addr`, in the background.
fn slow(sb: &Sandbox, addr: ListenAddr, secs: u32) {
    let script = sb.docroot().join("slow.php");
    std::thread::spawn(move || {
        let mut req = fpmctl::fastcgi::Request::get("/slow.php");
        req.script_filename = script.display().to_string();
        req.query_string = format!("s={secs}");
        let _ = fpmctl::fastcgi::request(&addr, &req, Duration::from_secs(120));
    });
}

fn pool<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("pool {name} in {status:#}"))
}

/// The value of the series `name{pool="POOL",...}` in an exposition.
fn series(text: &str, name: &str, pool: &str) -> Option<f64> {
    let prefix = format!("{name}{{pool=\"{pool}\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` on `text`: its only allowed complaint is the missing `_total`
/// suffix of the exporter's counters. Under `CI=true` a missing promtool fails.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is missing and CI=true ({e}): scripts/install-deps.sh installs it"
            );
            eprintln!("NOTICE: promtool not installed; skipping the promtool check");
            return;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let counters = [
        "phpfpm_accepted_connections",
        "phpfpm_max_listen_queue",
        "phpfpm_max_active_processes",
        "phpfpm_max_children_reached",
        "phpfpm_slow_requests",
    ];
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        let allowed = line.contains("should have \"_total\" suffix")
            && counters.iter().any(|c| line.starts_with(c));
        assert!(allowed, "promtool complains:\n{said}\non:\n{text}");
    }
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn every_worker_busy_and_a_queue_are_seen_from_the_kernel_and_proc() {
    let Some(sb) = Sandbox::new() else { return };
    start(&sb);
    let tcp = ListenAddr::parse(&sb.tcp_addr()).unwrap();
    let unix = ListenAddr::Unix(sb.sock.clone());

    // Quiet: everything idle, the status page answers, and promtool likes the exposition.
    let quiet = sb.fpmctl(&["metrics"]);
    quiet.expect_code(0);
    promtool_accepts(&quiet.stdout);
    assert_eq!(
        series(&quiet.stdout, "phpfpm_total_processes", "tcp"),
        Some(f64::from(CHILDREN)),
        "{quiet}"
    );
    assert!(quiet.stdout.contains("fpmctl_ready 1\n"), "{quiet}");
    // Idle workers wait in accept on the pool's socket: /proc says so on this kernel.
    for name in ["tcp", "sock"] {
        assert_eq!(
            series(&quiet.stdout, "phpfpm_idle_processes", name),
            Some(f64::from(CHILDREN)),
            "{quiet}"
        );
        assert_eq!(
            series(&quiet.stdout, "phpfpm_active_processes", name),
            Some(0.0),
            "{quiet}"
        );
    }

    // Every worker of both pools busy for a minute.
    for _ in 0..CHILDREN {
        slow(&sb, tcp.clone(), 60);
        slow(&sb, unix.clone(), 60);
    }
    // Waiting asks the probe, which never sends a request: `status` would ask the status page
    // while a worker looks idle, and a request that lost the race to a slow one would stay in
    // the accept queue and spoil the count below.
    sb.wait_for(Duration::from_secs(20), "every worker busy", || {
        let j = sb.fpmctl(&["probe", "readiness", "--json"]).json();
        let busy = |name: &str| {
            j["pools"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["pool"] == name))
                .and_then(|p| p["workers"]["busy"].as_u64())
        };
        (busy("tcp") == Some(u64::from(CHILDREN)) && busy("sock") == Some(u64::from(CHILDREN)))
            .then_some(())
    });

    // Connections nobody accepts: 3 on TCP, 4 on the unix socket.
    let held_tcp: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(sb.tcp_addr()).unwrap())
        .collect();
    let held_unix: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&sb.sock).unwrap())
        .collect();

    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(0);
    let j = run.json();
    for (name, queued) in [("tcp", 3), ("sock", 4)] {
        let load = &pool(&j, name)["load"];
        assert_eq!(load["health"], "saturated", "{name}: {run}");
        assert_eq!(load["workers"]["busy"], CHILDREN, "{name}: {run}");
        assert_eq!(load["workers"]["idle"], 0, "{name}: {run}");
        assert_eq!(load["workers"]["total"], CHILDREN, "{name}: {run}");
        assert_eq!(load["queue"]["waiting"], queued, "{name}: {run}");
        assert!(load["queue"]["limit"].as_u64().unwrap() > 0, "{run}");
        // The status page was not asked: it would need a free worker.
        assert!(load["status_page"].is_null(), "{run}");
    }
    let text = sb.fpmctl(&["status"]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("running, saturated: pool tcp, pool sock"),
        "{text}"
    );
    assert!(
        text.stdout
            .contains("saturated: workers 2 busy, 0 idle of 2")
            && text.stdout.contains("queue 4/"),
        "{text}"
    );

    let m = sb.fpmctl(&["metrics"]);
    m.expect_code(0);
    for (name, queued) in [("tcp", 3.0), ("sock", 4.0)] {
        assert_eq!(
            series(&m.stdout, "phpfpm_listen_queue", name),
            Some(queued),
            "{m}"
        );
        assert_eq!(
            series(&m.stdout, "phpfpm_active_processes", name),
            Some(f64::from(CHILDREN)),
            "{m}"
        );
        assert_eq!(
            series(&m.stdout, "phpfpm_idle_processes", name),
            Some(0.0),
            "{m}"
        );
        assert_eq!(series(&m.stdout, "phpfpm_up", name), Some(1.0), "{m}");
        assert_eq!(
            series(&m.stdout, "fpmctl_pool_saturated", name),
            Some(1.0),
            "{m}"
        );
    }
    promtool_accepts(&m.stdout);

    // The textfile is the same exposition, written whole.
    let prom = sb.path().join("fpm.prom");
    sb.fpmctl(&["metrics", "--textfile", prom.to_str().unwrap()])
        .expect_code(0);
    let written = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(series(&written, "phpfpm_listen_queue", "sock"), Some(4.0));

    // Probes answer within their deadline while every worker is busy.
    for (args, code) in [
        (&["probe", "liveness", "--json"][..], 0),
        (&["probe", "readiness", "--json"][..], 0),
        (&["probe", "startup", "--json"][..], 0),
        (&["probe", "readiness", "--max-queue", "3", "--json"][..], 1),
    ] {
        let p = sb.fpmctl(args);
        p.expect_code(code);
        let j = p.json();
        assert!(
            j["elapsed_ms"].as_u64().unwrap() <= j["timeout_ms"].as_u64().unwrap(),
            "{p}"
        );
        assert_eq!(j["timeout_ms"], 900, "{p}");
        if code == 1 {
            assert!(j["reason"].as_str().unwrap().contains("saturated"), "{p}");
        }
    }

    // The HTTP endpoint a host can serve says the same.
    let mut cfg = fpmctl::config::load(&sb.conf).unwrap();
    cfg.binary = fpmctl::identity::FpmBinary::resolve(&sb.bin).ok();
    let health = fpmctl::endpoint::FpmHealth {
        cfg,
        max_queue: Some(3),
        budget: Duration::from_secs(2),
        extra: Default::default(),
    };
    let ep = fpmctl::endpoint::Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = ep.local_addr().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| ep.serve_until(&health, &stop));
        let metrics = http_get(addr, "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert_eq!(
            series(&metrics, "phpfpm_listen_queue", "sock"),
            Some(4.0),
            "{metrics}"
        );
        assert_eq!(
            series(&metrics, "phpfpm_listen_queue", "tcp"),
            Some(3.0),
            "{metrics}"
        );
        let live = http_get(addr, "/livez");
        assert!(live.starts_with("HTTP/1.1 200"), "{live}");
        // 4 wait on the unix socket, more than 3.
        let ready = http_get(addr, "/readyz");
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        assert!(ready.contains("pool sock is saturated"), "{ready}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });

    // And the status page indeed cannot answer now (asked last: it joins the queue).
    let page = fpmctl::fastcgi::status(&tcp, "/status", Duration::from_millis(300));
    assert!(page.is_err(), "{page:?}");
    drop((held_tcp, held_unix));
}

#[test]
fn probes_leave_the_access_log_alone_and_fail_when_fpm_is_gone() {
    let Some(sb) = Sandbox::new() else { return };
    start(&sb);
    // `start` itself proved readiness with a request to each pool: only what follows counts.
    let logs = ["tcp-access.log", "sock-access.log"];
    let before: Vec<u64> = logs
        .iter()
        .map(|l| std::fs::metadata(sb.path().join(l)).map_or(0, |m| m.len()))
        .collect();
    for kind in ["liveness", "readiness", "startup"] {
        for _ in 0..3 {
            sb.fpmctl(&["probe", kind]).expect_code(0);
        }
    }
    for (log, before) in logs.iter().zip(before) {
        let text = std::fs::read(sb.path().join(log)).unwrap_or_default();
        let added = String::from_utf8_lossy(text.get(before as usize..).unwrap_or_default());
        assert!(added.is_empty(), "{log} was written by a probe:\n{added}");
    }
    sb.fpmctl(&["stop"]).expect_code(0);
    for kind in ["liveness", "readiness"] {
        let p = sb.fpmctl(&["probe", kind, "--json"]);
        p.expect_code(1);
        assert!(
            p.json()["reason"]
                .as_str()
                .unwrap()
                .contains("no FPM master"),
            "{p}"
        );
    }
    // A stopped FPM is down in the metrics, not absent.
    let m = sb.fpmctl(&["metrics"]);
    m.expect_code(0);
    assert_eq!(series(&m.stdout, "phpfpm_up", "tcp"), Some(0.0), "{m}");
    assert!(m.stdout.contains("fpmctl_ready 0\n"), "{m}");
    // startup waits until its deadline, then fails.
    let p = sb.fpmctl(&["probe", "startup", "--timeout", "300ms", "--json"]);
    p.expect_code(1);
    assert!(p.json()["reason"].is_string(), "{p}");
}

#[test]
fn pm_status_listen_answers_while_every_worker_is_busy() {
    let Some(sb) = Sandbox::new() else { return };
    let d = sb.path().display();
    // A dynamic pool that reaches pm.max_children, with its status page on a socket of its
    // own (FPM serves it from a helper pool, not from the pool's workers).
    sb.write_config(&format!(
        "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = yes\n\n\
         [tcp]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = dynamic\n\
         pm.max_children = {CHILDREN}\npm.start_servers = 1\npm.min_spare_servers = 1\n\
         pm.max_spare_servers = 1\npm.status_path = /status\npm.status_listen = {d}/status.sock\n\
         access.log = {d}/tcp-access.log\n",
        port = sb.port,
    ));
    sb.fpmctl(&["start"]).expect_code(0);
    let tcp = ListenAddr::parse(&sb.tcp_addr()).unwrap();
    for _ in 0..CHILDREN + 1 {
        slow(&sb, tcp.clone(), 60);
    }
    // FPM counts "max children reached" in its once-a-second maintenance.
    let j = sb.wait_for(Duration::from_secs(20), "max children reached", || {
        let j = sb.fpmctl(&["status", "--json"]).json();
        let load = pool(&j, "tcp")["load"].clone();
        (load["workers"]["busy"] == CHILDREN
            && load["status_page"]["max_children_reached"].as_u64() >= Some(1))
        .then_some(load)
    });
    // The third request waits in the queue; the status page came through status.sock.
    assert_eq!(j["queue"]["waiting"], 1, "{j:#}");
    assert_eq!(j["workers"]["total"], CHILDREN, "{j:#}");
    assert_eq!(j["health"], "saturated", "{j:#}");
    assert_eq!(
        j["status_page"]["uri"],
        format!("unix://{d}/status.sock;/status"),
        "{j:#}"
    );
    let m = sb.fpmctl(&["metrics"]);
    assert!(
        series(&m.stdout, "phpfpm_max_children_reached", "tcp").is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert_eq!(
        series(&m.stdout, "phpfpm_listen_queue", "tcp"),
        Some(1.0),
        "{m}"
    );
    promtool_accepts(&m.stdout);
}

/// The worker FPM forks to answer `pm.status_listen` (titled `pool tcp_status`) belongs to this
/// FPM: a hand-over restart retires it with the old master instead of leaving it orphaned on
/// the status socket (it was not recognised as a pool process of the config).
#[test]
fn the_status_listen_worker_is_retired_with_its_master() {
    let Some(sb) = Sandbox::new() else { return };
    let d = sb.path().display();
    sb.write_config(&format!(
        "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = yes\n\n\
         [tcp]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{port}\npm = static\n\
         pm.max_children = 1\npm.status_path = /status\npm.status_listen = {d}/status.sock\n",
        port = sb.port,
    ));
    sb.fpmctl(&["start"]).expect_code(0);
    let master = sb.pid_from_file().unwrap();
    // FPM forks the status worker on demand: ask once.
    let status = ListenAddr::Unix(sb.path().join("status.sock"));
    fpmctl::fastcgi::status(&status, "/status", Duration::from_secs(5)).unwrap();
    let status_workers: Vec<i32> = fpmctl::procs::scan(false)
        .into_iter()
        .filter(|p| p.ppid == master && p.title == "php-fpm: pool tcp_status")
        .map(|p| p.pid())
        .collect();
    assert!(!status_workers.is_empty(), "no status worker of {master}");
    sb.fpmctl(&["restart"]).expect_code(0);
    for w in &status_workers {
        sb.wait_for(
            Duration::from_secs(10),
            "the old status worker to go",
            || (!common::alive(*w)).then_some(()),
        );
    }
    sb.fpmctl(&["stop"]).expect_code(0);
}

// ---- the supervisor's endpoint -------------------------------------------------------------

/// The value of the unlabelled series `name` (or `name{labels}` given in full).
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `fpmctl supervise ARGS --metrics-listen ADDR` (and `--health-listen` when `health`), on
/// ports taken free and tried again if another process took one meanwhile. Returns the
/// supervisor's PID and the metrics and health addresses.
fn supervise_listening(
    sb: &Sandbox,
    args: &[&str],
    health: bool,
) -> (u32, std::net::SocketAddr, std::net::SocketAddr) {
    for _ in 0..5 {
        let m: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let h: std::net::SocketAddr = if health {
            format!("127.0.0.1:{}", common::free_port())
                .parse()
                .unwrap()
        } else {
            m
        };
        let (ms, hs) = (m.to_string(), h.to_string());
        let mut all = args.to_vec();
        all.extend(["--metrics-listen", &ms, "--health-listen", &hs]);
        let sup = sb.supervise(&all, &[]);
        // Bound before anything else: either it answers or the supervisor exits.
        let up = sb.wait_for(Duration::from_secs(15), "the endpoint or an exit", || {
            if TcpStream::connect(h).is_ok() && TcpStream::connect(m).is_ok() {
                return Some(true);
            }
            (!common::alive(sup as i32) || sb.supervise_log().contains("for HTTP")).then_some(false)
        });
        if up {
            return (sup, m, h);
        }
        assert!(
            sb.supervise_log().contains("Address already in use"),
            "{}",
            sb.supervise_log()
        );
        sb.wait_child(sup, Duration::from_secs(10));
    }
    panic!("no free port in 5 tries");
}

/// A config whose FPM logs to its stderr (as in containers), so the supervisor reads it.
fn logging_to_stderr(sb: &Sandbox, opts: common::Opts) -> String {
    sb.config_text_with(opts).replace(
        &format!("error_log = {}/fpm.log", sb.path().display()),
        "error_log = /proc/self/fd/2",
    )
}

fn metrics_of(addr: std::net::SocketAddr) -> String {
    let r = http_get(addr, "/metrics");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn the_supervisor_counts_crashes_restarts_and_workers_fpm_terminated_or_saw_crash() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(&logging_to_stderr(
        &sb,
        common::Opts {
            tcp_extra: "request_terminate_timeout = 1s\n".into(),
            sock_pool: false,
            ..Default::default()
        },
    ));
    std::fs::write(
        sb.docroot().join("segv.php"),
        "<?php posix_kill(getmypid(), 11); echo 'still here';\n",
    )
    .unwrap();
    let (_sup, addr, _) = supervise_listening(&sb, &[], false);
    let first = sb.wait_supervised_ready();
    let m = sb.wait_for(Duration::from_secs(10), "fpmctl_ready 1", || {
        let m = metrics_of(addr);
        (value(&m, "fpmctl_ready") == Some(1.0)).then_some(m)
    });
    promtool_accepts(&m);
    assert_eq!(value(&m, "fpmctl_fpm_crashes_total"), Some(0.0), "{m}");
    assert_eq!(
        value(&m, "fpmctl_worker_terminated_total"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(series(&m, "phpfpm_up", "tcp"), Some(1.0), "{m}");
    assert!(http_get(addr, "/readyz").starts_with("HTTP/1.1 200"));

    // request_terminate_timeout: FPM kills the worker and says so in its log.
    let tcp = ListenAddr::parse(&sb.tcp_addr()).unwrap();
    slow(&sb, tcp.clone(), 10);
    sb.wait_for(
        Duration::from_secs(20),
        "a terminated worker counted",
        || (value(&metrics_of(addr), "fpmctl_worker_terminated_total") == Some(1.0)).then_some(()),
    );
    // A worker that crashes on SIGSEGV.
    let mut req = fpmctl::fastcgi::Request::get("/segv.php");
    req.script_filename = sb.docroot().join("segv.php").display().to_string();
    let _ = fpmctl::fastcgi::request(&tcp, &req, Duration::from_secs(10));
    sb.wait_for(Duration::from_secs(20), "a crashed worker counted", || {
        (value(&metrics_of(addr), "fpmctl_worker_crashed_total") == Some(1.0)).then_some(())
    });
    // FPM's log is forwarded; the supervisor writes its log from a thread of its own, so a
    // line may follow the count it led to by a moment.
    sb.expect_log("execution timed out");
    sb.expect_log("exited on signal 11");

    // SIGKILL of the master: one crash, one crash restart, one restart duration.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::SIGKILL).unwrap();
    let m = sb.wait_for(
        Duration::from_secs(30),
        "the crash counted and FPM back",
        || {
            let m = metrics_of(addr);
            (value(&m, "fpmctl_fpm_crashes_total") == Some(1.0)
                && value(&m, "fpmctl_restart_duration_seconds_count") == Some(1.0)
                && value(&m, "fpmctl_ready") == Some(1.0))
            .then_some(m)
        },
    );
    assert_eq!(
        value(&m, "fpmctl_fpm_restarts_total{reason=\"crash\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "fpmctl_fpm_restarts_total{reason=\"requested\"}"),
        Some(0.0),
        "{m}"
    );
    assert_ne!(sb.wait_supervised_ready(), first);
    promtool_accepts(&m);

    // A requested restart moves its own reason; a pool the new config adds is scraped.
    sb.write_config(&logging_to_stderr(
        &sb,
        common::Opts {
            tcp_extra: "request_terminate_timeout = 1s\n".into(),
            ..Default::default()
        },
    ));
    sb.fpmctl(&["restart"]).expect_code(0);
    let m = metrics_of(addr);
    assert_eq!(series(&m, "phpfpm_up", "sock"), Some(1.0), "{m}");
    assert_eq!(
        value(&m, "fpmctl_fpm_restarts_total{reason=\"requested\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "fpmctl_restart_duration_seconds_count"),
        Some(2.0),
        "{m}"
    );
}

#[test]
fn the_supervisors_probes_answer_while_every_worker_is_busy() {
    let Some(sb) = Sandbox::with(common::Opts {
        sock_pool: false,
        ..Default::default()
    }) else {
        return;
    };
    let (_sup, maddr, haddr) = supervise_listening(&sb, &[], true);
    sb.wait_supervised_ready();
    let tcp = ListenAddr::parse(&sb.tcp_addr()).unwrap();
    for _ in 0..CHILDREN + 2 {
        slow(&sb, tcp.clone(), 20);
    }
    let m = sb.wait_for(
        Duration::from_secs(15),
        "every worker busy and a queue",
        || {
            let m = metrics_of(maddr);
            (series(&m, "phpfpm_active_processes", "tcp") == Some(f64::from(CHILDREN))
                && series(&m, "phpfpm_listen_queue", "tcp") == Some(2.0))
            .then_some(m)
        },
    );
    assert_eq!(value(&m, "fpmctl_ready"), Some(1.0), "{m}");
    for path in ["/livez", "/readyz"] {
        let started = std::time::Instant::now();
        let r = http_get(haddr, path);
        eprintln!("{path} answered in {:?}", started.elapsed());
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
    }
    // The health address serves only what it was asked for and the metrics one too.
    assert!(http_get(haddr, "/metrics").starts_with("HTTP/1.1 200"));
}

#[test]
fn the_supervisors_readyz_fails_while_fpm_is_down() {
    let Some(sb) = Sandbox::new() else { return };
    sb.write_config(&sb.config_text_dying_at_start());
    let (_sup, addr, _) =
        supervise_listening(&sb, &["--max-restarts", "50", "--within", "60s"], false);
    sb.wait_for(Duration::from_secs(15), "a crash counted", || {
        let m = metrics_of(addr);
        (value(&m, "fpmctl_fpm_crashes_total").is_some_and(|c| c >= 1.0)).then_some(())
    });
    let r = http_get(addr, "/readyz");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert_eq!(value(&metrics_of(addr), "fpmctl_ready"), Some(0.0));
}

/// When the kernel's accept queues cannot be read (no `unix_diag` in a container, sock_diag
/// refused), a running FPM is alive with its queues unknown, not "nothing listens": a
/// liveness probe failing there makes an orchestrator kill a healthy FPM. Once FPM is
/// stopped, its pools are down again: the socket tables still say nothing listens.
#[test]
fn unreadable_accept_queues_leave_a_running_fpm_alive() {
    use fpmctl::deadline::Deadline;
    use fpmctl::saturation::{self, Health, StatusPolicy};
    let Some(sb) = Sandbox::new() else { return };
    start(&sb);
    let mut cfg = fpmctl::config::load(&sb.conf).unwrap();
    cfg.binary = Some(fpmctl::identity::FpmBinary::resolve(&sb.bin).unwrap());
    let refused = || Err(std::io::Error::other("sock_diag refused"));
    let observe = |cfg: &fpmctl::config::FpmConfig| {
        let snap = fpmctl::discovery::discover(cfg);
        let pools = saturation::observe_from(
            cfg,
            &snap,
            refused(),
            StatusPolicy::Never,
            Deadline::after(Duration::from_secs(10)),
        );
        (snap.master.is_some(), pools)
    };

    let (master, pools) = observe(&cfg);
    assert!(master);
    assert_eq!(pools.len(), 2);
    for p in &pools {
        assert_ne!(p.health, Health::Down, "{p:?}");
        assert!(p.queue_unknown, "{p:?}");
    }
    fpmctl::probe::liveness(master, &pools).unwrap();
    fpmctl::probe::readiness(master, &pools, None).unwrap();
    let text = fpmctl::metrics::render(&pools, true).unwrap();
    assert_eq!(series(&text, "phpfpm_up", "tcp"), Some(1.0), "{text}");

    sb.fpmctl(&["stop"]).expect_code(0);
    let (master, pools) = observe(&cfg);
    assert!(!master);
    for p in &pools {
        assert_eq!(p.health, Health::Down, "{p:?}");
        assert!(!p.queue_unknown, "{p:?}");
    }
    assert!(fpmctl::probe::liveness(master, &pools).is_err());
}
