//! The FPM config parser through `config::load_with`: INI scanning, includes and globs,
//! directive values and listen values, on mutated real configs and on random bytes.

use fpmctl::config::{LoadOptions, load_with};
use proptest::prelude::*;
use std::collections::HashMap;

/// A config php-fpm accepts, as the starting point for mutations.
const BASE: &str = "[global]\n\
pid = run/php-fpm.pid\n\
error_log = log/php-fpm.log\n\
process_control_timeout = 10s\n\
include = {dir}/pool.d/*.conf\n\
[www]\n\
user = nobody\n\
listen = 127.0.0.1:9000\n\
pm = dynamic\n\
pm.max_children = 5\n\
pm.start_servers = 2\n\
pm.min_spare_servers = 1\n\
pm.max_spare_servers = 3\n\
pm.status_path = /status\n\
ping.path = /ping\n";

const KEYS: &[&str] = &[
    "pid",
    "error_log",
    "syslog.facility",
    "log_level",
    "log_limit",
    "daemonize",
    "process_control_timeout",
    "emergency_restart_threshold",
    "emergency_restart_interval",
    "systemd_interval",
    "process.priority",
    "rlimit_files",
    "events.mechanism",
    "prefix",
    "user",
    "group",
    "listen",
    "listen.backlog",
    "listen.owner",
    "listen.group",
    "listen.mode",
    "listen.allowed_clients",
    "pm",
    "pm.max_children",
    "pm.start_servers",
    "pm.min_spare_servers",
    "pm.max_spare_servers",
    "pm.max_requests",
    "pm.process_idle_timeout",
    "pm.status_path",
    "pm.status_listen",
    "ping.path",
    "ping.response",
    "access.log",
    "slowlog",
    "request_slowlog_timeout",
    "request_terminate_timeout",
    "chroot",
    "chdir",
    "catch_workers_output",
    "clear_env",
    "security.limit_extensions",
    "include",
    "no.such.directive",
    "LISTEN",
    "Pm",
];

const INCLUDES: &[&str] = &[
    "{dir}/pool.d/*.conf",
    "pool.d/*.conf",
    "{dir}/*.conf",
    "{dir}/nowhere/*.conf",
    "{dir}/pool.d/[",
    "{dir}/pool.d/[a-",
    "{dir}/pool.d/a.conf",
    "/nonexistent/fpmctl/*.conf",
    "/dev/zero",
    "/dev/null",
    "{dir}/pool.d/**/*",
    "",
];

/// Values of every kind a directive takes, and values no directive takes.
pub fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,25}[smhdSx]?",
        prop::sample::select(vec![
            "yes",
            "no",
            "on",
            "off",
            "true",
            "false",
            "none",
            "null",
            "1",
            "0",
            "static",
            "dynamic",
            "ondemand",
            "syslog",
            "/dev/null",
            "$pool",
            "${FOO}",
            "${PORT}",
            "${UNSET}",
            "${}",
            "\"",
            "'",
            "a|b",
            "E_ALL",
            "0660",
            "0999",
        ])
        .prop_map(str::to_string),
        crate::listen::listen_value(),
        "\"[ -~]{0,20}\"",
        "'[ -~]{0,20}'",
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ]
}

/// One line of a config file.
fn line() -> impl Strategy<Value = String> {
    let section = prop_oneof![
        prop::sample::select(vec!["global", "GLOBAL", "www", "WWW", "a b", "$pool", ""])
            .prop_map(str::to_string),
        "[a-z]{1,8}",
        "\\PC{0,10}",
    ];
    prop_oneof![
        section.prop_map(|s| format!("[{s}]")),
        (prop::sample::select(KEYS), value(), "[ \t]{0,2}")
            .prop_map(|(k, v, ws)| format!("{k}{ws}={ws}{v}")),
        (
            prop::sample::select(vec![
                "env",
                "php_value",
                "php_admin_value",
                "php_flag",
                "php_admin_flag",
                "access.suppress_path",
                "bogus",
            ]),
            "[A-Za-z_.]{0,6}",
            value(),
        )
            .prop_map(|(n, k, v)| format!("{n}[{k}] = {v}")),
        prop::sample::select(INCLUDES).prop_map(|p| format!("include = {p}")),
        "; [ -~]{0,20}",
        Just(String::new()),
        "\\PC{0,40}",
    ]
}

/// A byte-level mutation: replace, insert or delete at a position.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b'[', b']', b'=', b';', b'"', b'\'', b'$', b'{', b'}', b'\\', b'\n', b'\r', b'\0', b':',
        b'/', b'*', 0xff, 0xc3,
    ]);
    prop_oneof![
        (
            any::<prop::sample::Index>(),
            prop_oneof![interesting, any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Replace(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..20).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(mut text: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match m {
            Mutation::Replace(i, b) if !text.is_empty() => {
                let at = i.index(text.len());
                text[at] = *b;
            }
            Mutation::Replace(..) => {}
            Mutation::Insert(i, bytes) => {
                let at = i.index(text.len() + 1);
                text.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i.index(text.len() + 1);
                let end = (at + n).min(text.len());
                text.drain(at..end);
            }
        }
    }
    text
}

/// A file: the base config or nothing, then generated lines, then byte mutations.
fn file(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::bool::weighted(0.7),
        prop::collection::vec(line(), 0..12),
        prop::sample::select(vec!["\n", "\r\n"]),
        prop::collection::vec(mutation(), 0..4),
    )
        .prop_map(move |(with_base, lines, eol, mutations)| {
            let mut text = if with_base {
                base.to_string()
            } else {
                String::new()
            };
            for l in lines {
                text.push_str(&l);
                text.push_str(eol);
            }
            apply(text.into_bytes(), &mutations)
        })
}

/// Writes the files, loads twice, and checks what every load must satisfy.
fn check(main: &[u8], included: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().display().to_string();
    let fill = |bytes: &[u8]| {
        // `{dir}` stands for the temp dir, so includes point inside it.
        let text = String::from_utf8_lossy(bytes);
        if text.contains("{dir}") && std::str::from_utf8(bytes).is_ok() {
            text.replace("{dir}", &root).into_bytes()
        } else {
            bytes.to_vec()
        }
    };
    std::fs::create_dir(dir.path().join("pool.d")).expect("pool.d");
    std::fs::write(dir.path().join("main.conf"), fill(main)).expect("main.conf");
    for (i, bytes) in included.iter().enumerate() {
        let name = format!("pool.d/{}.conf", (b'a' + i as u8) as char);
        std::fs::write(dir.path().join(name), fill(bytes)).expect("include");
    }
    let opts = LoadOptions {
        prefix: Some(dir.path().to_path_buf()),
        env: Some(HashMap::from([
            ("FOO".to_string(), "foo".to_string()),
            ("PORT".to_string(), "9001".to_string()),
        ])),
        ..LoadOptions::default()
    };
    let path = dir.path().join("main.conf");
    let first = load_with(&path, &opts);
    match &first {
        Ok(cfg) => {
            prop_assert!(!cfg.pools.is_empty(), "a config without pools was accepted");
            for pool in &cfg.pools {
                let _ = pool.listen.to_string();
                let _ = pool.expected_workers();
            }
            for w in &cfg.warnings {
                prop_assert!(!w.to_string().contains('\n'), "multi-line warning: {w}");
            }
        }
        Err(err) => {
            prop_assert!(!err.problems.is_empty(), "an error without a problem");
            for p in &err.problems {
                prop_assert!(!p.message.is_empty());
                prop_assert!(!p.to_string().contains('\n'), "multi-line problem: {p:?}");
            }
        }
    }
    // The same files give the same answer.
    prop_assert_eq!(&first, &load_with(&path, &opts));
    Ok(())
}

proptest! {
    #![proptest_config(crate::config(1))]

    /// Mutated real configs with mutated includes.
    #[test]
    fn mutated_configs_load_or_fail_cleanly(
        main in file(BASE),
        included in prop::collection::vec(file("[extra]\nlisten = /tmp/x.sock\npm = static\npm.max_children = 1\n"), 0..3),
    ) {
        check(&main, &included)?;
    }

    /// Random bytes as the main config.
    #[test]
    fn random_bytes_load_or_fail_cleanly(main in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&main, &[])?;
    }
}

/// A pool as meant, before it is written in one of the many ways php-fpm accepts.
#[derive(Debug, Clone)]
struct PoolModel {
    name: String,
    pm: &'static str,
    max_children: u32,
    min_spare: u32,
    max_spare: u32,
    start: Option<u32>,
    terminate_secs: u32,
    user: Option<String>,
    /// A TCP port; `None` for a unix socket in the temp dir.
    port: Option<u16>,
}

fn pool_model() -> impl Strategy<Value = PoolModel> {
    (
        "[a-z][a-z0-9_-]{0,10}",
        prop::sample::select(vec!["static", "dynamic", "ondemand"]),
        1u32..500,
        any::<(
            prop::sample::Index,
            prop::sample::Index,
            prop::sample::Index,
        )>(),
        prop::bool::ANY,
        0u32..200_000,
        // Users php-fpm can resolve: unknown names are refused, as php-fpm -t refuses them.
        prop::option::of(
            prop::sample::select(vec!["nobody", "root", "daemon", "www-data"])
                .prop_map(str::to_string),
        ),
        prop::option::of(1024u16..65535),
    )
        .prop_map(
            |(name, pm, max_children, (a, b, c), with_start, terminate_secs, user, port)| {
                // 1 <= min <= start <= max <= max_children, as dynamic requires.
                let min = 1 + a.index(max_children as usize) as u32;
                let max = min + b.index((max_children - min + 1) as usize) as u32;
                let start = min + c.index((max - min + 1) as usize) as u32;
                PoolModel {
                    name,
                    pm,
                    max_children,
                    min_spare: min,
                    max_spare: max,
                    start: with_start.then_some(start),
                    terminate_secs,
                    user,
                    port,
                }
            },
        )
}

/// How each value is written: bare, double- or single-quoted; spacing around `=`; a
/// trailing comment; comment and blank lines between directives; LF or CRLF.
#[derive(Debug, Clone)]
struct Style {
    quote: Vec<u8>,
    spacing: Vec<&'static str>,
    comment: Vec<bool>,
    crlf: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop::collection::vec(0u8..3, 64),
        prop::collection::vec(
            prop::sample::select(vec!["=", " = ", "\t=\t", "  =", "= "]),
            64,
        ),
        prop::collection::vec(prop::bool::weighted(0.2), 64),
        prop::bool::ANY,
    )
        .prop_map(|(quote, spacing, comment, crlf)| Style {
            quote,
            spacing,
            comment,
            crlf,
        })
}

fn write_config(pools: &[PoolModel], dir: &std::path::Path, style: &Style) -> String {
    let eol = if style.crlf { "\r\n" } else { "\n" };
    let mut text = format!("[global]{eol}error_log = /dev/null{eol}");
    let mut n = 0usize;
    let mut directive = |text: &mut String, key: &str, value: &str| {
        let value = match style.quote[n % 64] {
            1 => format!("\"{value}\""),
            2 => format!("'{value}'"),
            _ => value.to_string(),
        };
        let comment = if style.comment[n % 64] { " ; note" } else { "" };
        text.push_str(&format!(
            "{key}{}{value}{comment}{eol}",
            style.spacing[n % 64]
        ));
        if style.comment[(n + 1) % 64] {
            text.push_str(&format!("; a comment line{eol}{eol}"));
        }
        n += 1;
    };
    for p in pools {
        text.push_str(&format!("[{}]{eol}", p.name));
        let listen = match p.port {
            Some(port) => format!("127.0.0.1:{port}"),
            None => format!("{}/{}.sock", dir.display(), p.name),
        };
        directive(&mut text, "listen", &listen);
        directive(&mut text, "pm", p.pm);
        directive(&mut text, "pm.max_children", &p.max_children.to_string());
        if p.pm == "dynamic" {
            directive(&mut text, "pm.min_spare_servers", &p.min_spare.to_string());
            directive(&mut text, "pm.max_spare_servers", &p.max_spare.to_string());
            if let Some(start) = p.start {
                directive(&mut text, "pm.start_servers", &start.to_string());
            }
        }
        let t = p.terminate_secs;
        let t = if t % 60 == 0 && t > 0 {
            format!("{}m", t / 60)
        } else {
            format!("{t}s")
        };
        directive(&mut text, "request_terminate_timeout", &t);
        if let Some(user) = &p.user {
            directive(&mut text, "user", user);
        }
    }
    text
}

proptest! {
    #![proptest_config(crate::config(1))]

    /// A config written from a model, in any of the spellings php-fpm accepts, loads back
    /// to that model.
    #[test]
    fn configs_written_from_a_model_load_back_to_it(
        pools in prop::collection::vec(pool_model(), 1..4),
        style in style(),
    ) {
        // php-fpm refuses two pools on one address and merges sections of the same name.
        let mut pools = pools;
        let mut names = std::collections::HashSet::new();
        let mut ports = std::collections::HashSet::new();
        pools.retain(|p| names.insert(p.name.clone()) && p.port.is_none_or(|port| ports.insert(port)));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("main.conf");
        std::fs::write(&path, write_config(&pools, dir.path(), &style)).expect("write");
        let opts = LoadOptions {
            prefix: Some(dir.path().to_path_buf()),
            env: Some(HashMap::new()),
            ..LoadOptions::default()
        };
        let cfg = load_with(&path, &opts);
        let cfg = match cfg {
            Ok(cfg) => cfg,
            Err(e) => return Err(TestCaseError::fail(format!("refused: {e}"))),
        };
        prop_assert_eq!(cfg.pools.len(), pools.len());
        for (got, want) in cfg.pools.iter().zip(&pools) {
            prop_assert_eq!(&got.name, &want.name);
            prop_assert_eq!(got.pm.as_str(), want.pm);
            prop_assert_eq!(got.max_children, want.max_children);
            if want.pm == "dynamic" {
                prop_assert_eq!(got.min_spare_servers, want.min_spare);
                prop_assert_eq!(got.max_spare_servers, want.max_spare);
                let start = want.start.unwrap_or(want.min_spare + (want.max_spare - want.min_spare) / 2);
                prop_assert_eq!(got.start_servers, start);
            }
            prop_assert_eq!(got.request_terminate_timeout.as_secs(), u64::from(want.terminate_secs));
            prop_assert_eq!(&got.user, &want.user);
            match want.port {
                Some(port) => prop_assert_eq!(got.listen.to_string(), format!("127.0.0.1:{port}")),
                None => {
                    let socket = dir.path().join(format!("{}.sock", want.name));
                    prop_assert_eq!(got.listen.unix_path(), Some(socket.as_path()));
                }
            }
        }
    }
}
