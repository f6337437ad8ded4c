//! The config parser against php-fpm itself: generated configs must be accepted by
//! `fpmctl::config::load` exactly when `php-fpm -t` accepts them. The generator stays
//! inside what the parser documents as php-fpm's behaviour (no PHP constants, no
//! expressions, no negative counts, no numbers past `i32`, which php-fpm silently wraps;
//! every pool has a `user`, which php-fpm requires of root). Each case runs php-fpm once, so this target gets fewer cases than the others.

use fpmctl::config;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The php-fpm 8.2 binary; on CI its absence fails the run.
fn php_fpm() -> Option<PathBuf> {
    match config::find_binary(
        Path::new("/etc/php/8.2/fpm/php-fpm.conf"),
        None,
        Some("8.2"),
    ) {
        Ok(path) => Some(path),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("php-fpm 8.2 is required for this test on CI: {e}")
        }
        Err(e) => {
            eprintln!("notice: skipping the differential fuzz target: {e}");
            None
        }
    }
}

fn quoted(inner: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (inner, 0u8..4).prop_map(|(v, q)| match q {
        1 => format!("\"{v}\""),
        2 => format!("'{v}'"),
        _ => v,
    })
}

fn count() -> impl Strategy<Value = String> {
    quoted(prop_oneof![
        8 => (0u32..12).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "", "abc", "5x", "07", "2147483647", "1.5", "1e3", "yes", "no", "on", "none", " 3 ",
            "3 ; comment", "${FPMCTL_FUZZ_N}", "${FPMCTL_FUZZ_UNSET}", "0x10", "+3",
        ])
        .prop_map(str::to_string),
    ])
}

fn time() -> impl Strategy<Value = String> {
    quoted(prop_oneof![
        6 => (0u32..200, prop::sample::select(vec!["", "s", "m", "h", "d"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        1 => prop::sample::select(vec!["", "10S", "1x", "5 s", "s", "1x5"])
            .prop_map(str::to_string),
    ])
}

fn flag() -> impl Strategy<Value = String> {
    quoted(
        prop::sample::select(vec![
            "yes", "no", "on", "off", "true", "false", "1", "0", "Yes", "2", "none", "",
        ])
        .prop_map(str::to_string),
    )
}

fn url_path() -> impl Strategy<Value = String> {
    quoted(
        prop::sample::select(vec![
            "/ping",
            "ping",
            "/",
            "/a b",
            "/a-b_c.~",
            "/$pool",
            "",
            "/st%61tus",
            "/x/y",
        ])
        .prop_map(str::to_string),
    )
}

fn pool(index: usize) -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just(format!("p{index}")),
        Just("www".to_string()),
        "[a-z][a-z0-9_]{0,6}",
    ];
    let pm = quoted(
        prop::sample::select(vec!["static", "dynamic", "ondemand", "Static", "sometimes"])
            .prop_map(str::to_string),
    );
    let optional = prop::collection::vec(
        prop_oneof![
            count().prop_map(|v| format!("pm.min_spare_servers = {v}")),
            count().prop_map(|v| format!("pm.max_spare_servers = {v}")),
            count().prop_map(|v| format!("pm.start_servers = {v}")),
            count().prop_map(|v| format!("pm.max_requests = {v}")),
            count().prop_map(|v| format!("pm.max_spawn_rate = {v}")),
            time().prop_map(|v| format!("request_terminate_timeout = {v}")),
            time().prop_map(|v| format!("pm.process_idle_timeout = {v}")),
            url_path().prop_map(|v| format!("ping.path = {v}")),
            "[a-z]{0,6}".prop_map(|v| format!("ping.response = {v}")),
            url_path().prop_map(|v| format!("pm.status_path = {v}")),
            flag().prop_map(|v| format!("catch_workers_output = {v}")),
            flag().prop_map(|v| format!("clear_env = {v}")),
            count().prop_map(|v| format!("listen.backlog = {v}")),
            prop::sample::select(vec![
                "PM.MAX_CHILDREN = 2",
                "Pm = static",
                "listen.mode = 0660",
                "listen.mode = 660",
                "listen.mode = abc",
                "env[PATH] = /bin",
                "env[] = x",
                "env[X] =",
                "php_admin_value[memory_limit] = 64M",
                "php_flag[display_errors] = off",
                "php_flag[display_errors] = maybe",
                "access.suppress_path[] = /ping",
                "access.suppress_path[] = ping",
                "slowlog = {dir}/$pool.slow",
                "request_slowlog_timeout = 5s",
                "access.log = {dir}/$pool.access",
                "chdir = /",
                "chdir = /nonexistent",
                "chdir = relative",
                "security.limit_extensions = .php",
                "; comment",
                "",
                "  ",
                "listen.allowed_clients = 127.0.0.1",
                "process.priority = 5",
                "process.priority = 40",
                "rlimit_files = 1024",
                "user = ",
                "group = nogroup",
                "group = nosuchgroupfpm",
                "listen.owner = nosuchuserfpm",
                "listen.group = nogroup",
                "pm.status_listen = 127.0.0.1:19399",
                "ping.response = \"a;b\"",
                "ping.response = a b c",
                "clear_env = \"no\"",
            ])
            .prop_map(str::to_string),
        ],
        0..5,
    );
    (name, prop::bool::ANY, pm, count(), optional).prop_map(
        move |(name, tcp, pm, max_children, optional)| {
            let listen = if tcp {
                format!("127.0.0.1:{}", 19300 + index)
            } else {
                format!("{{dir}}/{index}.sock")
            };
            let mut text = format!(
                "[{name}]\nuser = nobody\nlisten = {listen}\npm = {pm}\npm.max_children = {max_children}\n"
            );
            for line in optional {
                text.push_str(&line);
                text.push('\n');
            }
            text
        },
    )
}

fn config_text() -> impl Strategy<Value = String> {
    let global = prop::collection::vec(
        prop_oneof![
            time().prop_map(|v| format!("process_control_timeout = {v}")),
            count().prop_map(|v| format!("emergency_restart_threshold = {v}")),
            time().prop_map(|v| format!("emergency_restart_interval = {v}")),
            flag().prop_map(|v| format!("daemonize = {v}")),
            prop::sample::select(vec!["debug", "notice", "warning", "error", "alert", "loud"])
                .prop_map(|v| format!("log_level = {v}")),
            prop::sample::select(vec![
                "log_limit = 100",
                "log_limit = 4096",
                "syslog.facility = daemon",
                "syslog.facility = nothing",
                "events.mechanism = epoll",
                "systemd_interval = 5",
                "process.max = 10",
                "rlimit_core = unlimited",
                "rlimit_core = 0",
                "include = {dir}/none/*.conf",
                "include = {dir}/*.none",
                "LOG_LEVEL = notice",
                "emergency_restart_threshold = 3",
            ])
            .prop_map(str::to_string),
        ],
        0..3,
    );
    (
        global,
        pool(0),
        pool(1),
        prop::bool::ANY,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(global, a, b, two, back)| {
            let mut text =
                "[global]\npid = {dir}/fpm.pid\nerror_log = {dir}/error.log\n".to_string();
            for line in global {
                text.push_str(&line);
                text.push('\n');
            }
            text.push_str(&a);
            if two {
                text.push_str(&b);
            }
            if back {
                // Back to [global] after the pools, with a pool directive in it.
                text.push_str("[global]\nlog_level = notice\n");
            }
            text
        })
}

proptest! {
    #![proptest_config(crate::config_expensive())]

    #[test]
    fn fpmctl_accepts_exactly_what_php_fpm_accepts(text in config_text()) {
        let Some(bin) = php_fpm() else { return Ok(()) };
        let dir = tempfile::tempdir().expect("temp dir");
        let main = dir.path().join("main.conf");
        let text = text.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&main, &text).expect("write");
        let output = Command::new(&bin)
            .arg("-t")
            .arg("-y")
            .arg(&main)
            .env_remove("WATCHDOG_USEC")
            .env_remove("FPMCTL_FUZZ_UNSET")
            .env("FPMCTL_FUZZ_N", "4")
            .output()
            .expect("php-fpm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The exit status: with `log_level` above notice, success prints nothing.
        let theirs = output.status.success();
        let opts = config::LoadOptions {
            prefix: None,
            env: Some(std::collections::HashMap::from([(
                "FPMCTL_FUZZ_N".to_string(),
                "4".to_string(),
            )])),
            ..config::LoadOptions::default()
        };
        let ours = config::load_with(&main, &opts);
        prop_assert_eq!(
            ours.is_ok(),
            theirs,
            "\n--- config\n{}--- php-fpm\n{}--- fpmctl\n{:?}",
            text,
            stderr,
            ours.err().map(|e| e.to_string())
        );
    }
}
