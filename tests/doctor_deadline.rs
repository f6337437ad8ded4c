//! `fpmctl doctor`'s live checks under one overall limit (`--timeout`): pools whose address
//! never answers a connection are named as not checked once time runs out, never as healthy
//! or down. Their full accept queues are a cause doctor proves without a connection (from
//! the kernel's socket table), so the exit code is 1, as documented: a cause is the answer
//! even when the look was incomplete (8 is for an incomplete look without one, unit-tested).

mod common;
use common::{Opts, Sandbox};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen, socket,
};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// A loopback TCP listener that never accepts, its accept queue filled: the kernel drops
/// further SYNs, so a connection to it is neither accepted nor refused.
struct Unanswering {
    _listener: OwnedFd,
    _queued: Vec<TcpStream>,
    port: u16,
}

fn unanswering() -> Unanswering {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    listen(&fd, Backlog::new(1).unwrap()).unwrap();
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd()).unwrap().port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut queued = Vec::new();
    // Connections complete until the queue is full; the first that does not proves it is.
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        queued.push(s);
        assert!(
            queued.len() < 64,
            "the accept queue of port {port} never filled"
        );
    }
    Unanswering {
        _listener: fd,
        _queued: queued,
        port,
    }
}

#[test]
fn doctor_names_the_pools_it_had_no_time_to_check_beside_the_cause_it_proved() {
    let Some(sb) = Sandbox::with(Opts {
        sock_pool: false,
        ..Opts::default()
    }) else {
        return;
    };
    let held: Vec<Unanswering> = (0..3).map(|_| unanswering()).collect();
    let d = sb.root.display();
    let mut conf =
        format!("[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = yes\n");
    for (name, h) in ["alpha", "beta", "gamma"].iter().zip(&held) {
        conf.push_str(&format!(
            "\n[{name}]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{}\npm = static\npm.max_children = 1\n",
            h.port
        ));
    }
    sb.write_config(&conf);
    let nginx_conf = sb.root.join("nginx.conf");
    std::fs::write(&nginx_conf, "events {}\nhttp {}\n").unwrap();
    let empty = sb.root.join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let run = sb.fpmctl(&[
        "doctor",
        "--json",
        "--timeout",
        "1s",
        "--nginx-conf",
        &nginx_conf.display().to_string(),
        "--nginx-error-log",
        &empty.display().to_string(),
        "--fpm-log",
        &empty.display().to_string(),
    ]);
    run.expect_code(1);
    let j = run.json();
    let causes: Vec<&str> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["cause"].as_str())
        .collect();
    assert!(causes.contains(&"backlog-full"), "{run}");
    let not_checked = j["not_checked"].as_array().unwrap();
    for (name, h) in ["alpha", "beta", "gamma"].iter().zip(&held) {
        let want = serde_json::json!({"address": format!("127.0.0.1:{}", h.port), "pool": name});
        assert!(not_checked.contains(&want), "{want} missing:\n{run}");
    }
    // The text report says it in words, once, near the top.
    let text = sb.fpmctl(&[
        "doctor",
        "--timeout",
        "1s",
        "--nginx-conf",
        &nginx_conf.display().to_string(),
        "--nginx-error-log",
        &empty.display().to_string(),
        "--fpm-log",
        &empty.display().to_string(),
    ]);
    text.expect_code(1);
    let line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("not checked, time ran out"))
        .unwrap_or_else(|| panic!("no not-checked line:\n{text}"));
    for (name, h) in ["alpha", "beta", "gamma"].iter().zip(&held) {
        assert!(
            line.contains(&format!("pool {name} (127.0.0.1:{})", h.port)),
            "{line}"
        );
    }
}
