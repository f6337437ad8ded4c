//! Differential test of the config parser: for each sample config, php-fpm's own resolved
//! view (`php-fpm8.2 -tt -y CONF`, which prints every directive with its defaults filled
//! in) must agree field by field with what `fpmctl::config::load_with` returns.
//!
//! `-tt` checks the config and exits: it starts no workers and binds no sockets, but it
//! does open the log files a config names, so every sample keeps them in its temp dir.
//! Without php-fpm 8.2 the tests print a notice and pass, except when `CI=true`.

use fpmctl::config::{self, FpmConfig, LoadOptions};
use fpmctl::fpm;
use fpmctl::listen::ListenAddr;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Debian's shipped main config (only ever read).
const DEBIAN_CONFIG: &str = "/etc/php/8.2/fpm/php-fpm.conf";

/// The php-fpm 8.2 binary; `None` (after a notice) when it is not installed.
fn php_fpm() -> Option<PathBuf> {
    match config::find_binary(Path::new(DEBIAN_CONFIG), None, Some("8.2")) {
        Ok(path) => Some(path),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("php-fpm 8.2 is required for this test on CI: {e}")
        }
        Err(e) => {
            eprintln!("notice: skipping the php-fpm differential test: {e}");
            None
        }
    }
}

/// One sample: files written into a fresh temp dir (`{dir}` in their text and in `env`
/// values stands for that dir; the main file is `main.conf`), extra environment for both
/// php-fpm and the parser, and whether to pass the temp dir as `--prefix`.
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    env: &'static [(&'static str, &'static str)],
    prefix: bool,
}

/// Global lines most samples start with, keeping every file php-fpm opens in the temp dir.
macro_rules! global {
    ($($line:literal),* $(,)?) => {
        concat!(
            "[global]\npid = {dir}/fpm.pid\nerror_log = {dir}/error.log\n",
            $($line, "\n",)*
        )
    };
}

const CASES: &[Case] = &[
    Case {
        name: "include globs over several pool files",
        files: &[
            (
                "main.conf",
                global!(
                    "include = {dir}/pool.d/*.conf",
                    "; the pool opened last in the includes is still open here",
                    "request_terminate_timeout = 45s",
                ),
            ),
            (
                "pool.d/a.conf",
                "[alpha]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:19201\n\
                 pm = static\npm.max_children = 2\n",
            ),
            (
                "pool.d/b.conf",
                "[beta]\nuser = nobody\nlisten = {dir}/beta.sock\npm = dynamic\n\
                 pm.max_children = 8\npm.min_spare_servers = 2\npm.max_spare_servers = 4\n",
            ),
            (
                "pool.d/c.conf",
                "[gamma]\nuser = nobody\nlisten = 127.0.0.1:19203\npm = ondemand\n\
                 pm.max_children = 3\n",
            ),
            ("pool.d/notes.txt", "this is not a config file\n"),
            (
                "pool.d/skipped.conf/readme",
                "a directory matching the glob is skipped\n",
            ),
        ],
        env: &[],
        prefix: false,
    },
    Case {
        name: "$pool in listen and log paths",
        files: &[(
            "main.conf",
            global!(
                "[app]",
                "user = nobody",
                "listen = {dir}/$pool.sock",
                "slowlog = {dir}/$pool.slow.log",
                "request_slowlog_timeout = 5s",
                "access.log = {dir}/$pool-$pool.access.log",
                "pm = static",
                "pm.max_children = 1",
                "[api]",
                "user = nobody",
                "listen = {dir}/$pool.sock",
                "pm.status_path = /$pool-status",
                "pm = static",
                "pm.max_children = 1",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "bare port and IPv6 addresses",
        files: &[(
            "main.conf",
            global!(
                "[port]",
                "user = nobody",
                "listen = 19204",
                "pm = static",
                "pm.max_children = 1",
                "[any6]",
                "user = nobody",
                "listen = [::]:19205",
                "pm = static",
                "pm.max_children = 1",
                "[loop6]",
                "user = nobody",
                "listen = [::1]:19206",
                "pm = static",
                "pm.max_children = 1",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "static with and without start_servers",
        files: &[(
            "main.conf",
            global!(
                "[plain]",
                "user = nobody",
                "listen = 127.0.0.1:19207",
                "pm = static",
                "pm.max_children = 4",
                "[started]",
                "user = nobody",
                "listen = 127.0.0.1:19208",
                "pm = static",
                "pm.max_children = 4",
                "pm.start_servers = 3",
                "pm.min_spare_servers = 1",
                "pm.max_spare_servers = 2",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "dynamic with and without start_servers",
        files: &[(
            "main.conf",
            global!(
                "[computed]",
                "user = nobody",
                "listen = 127.0.0.1:19209",
                "pm = dynamic",
                "pm.max_children = 10",
                "pm.min_spare_servers = 2",
                "pm.max_spare_servers = 7",
                "[explicit]",
                "user = nobody",
                "listen = 127.0.0.1:19210",
                "pm = dynamic",
                "pm.max_children = 10",
                "pm.start_servers = 3",
                "pm.min_spare_servers = 1",
                "pm.max_spare_servers = 5",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "ondemand with and without start_servers",
        files: &[(
            "main.conf",
            global!(
                "[lazy]",
                "user = nobody",
                "listen = 127.0.0.1:19211",
                "pm = ondemand",
                "pm.max_children = 5",
                "[lazy_started]",
                "user = nobody",
                "listen = 127.0.0.1:19212",
                "pm = ondemand",
                "pm.max_children = 5",
                "pm.start_servers = 2",
                "pm.min_spare_servers = 1",
                "pm.max_spare_servers = 3",
                "pm.process_idle_timeout = 30s",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "timeouts with s, m, h, d and no suffix",
        files: &[(
            "main.conf",
            global!(
                "process_control_timeout = 90s",
                "emergency_restart_threshold = 5",
                "emergency_restart_interval = 2m",
                "systemd_interval = 1d",
                "[slow]",
                "user = nobody",
                "listen = 127.0.0.1:19213",
                "pm = ondemand",
                "pm.max_children = 2",
                "pm.process_idle_timeout = 1m",
                "request_terminate_timeout = 2h",
                "[plain_seconds]",
                "user = nobody",
                "listen = 127.0.0.1:19214",
                "pm = static",
                "pm.max_children = 1",
                "request_terminate_timeout = 300",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "${ENV} substitution",
        files: &[(
            "main.conf",
            global!(
                "[${FPMCTL_TT_POOL}]",
                "user = ${FPMCTL_TT_USER}",
                "listen = ${FPMCTL_TT_DIR}/${FPMCTL_TT_POOL}.sock",
                "ping.path = /ping",
                "ping.response = \"${FPMCTL_TT_UNSET}pong from ${ FPMCTL_TT_POOL }\"",
                "pm = static",
                "pm.max_children = ${FPMCTL_TT_CHILDREN}",
            ),
        )],
        env: &[
            ("FPMCTL_TT_POOL", "from_env"),
            ("FPMCTL_TT_USER", "nobody"),
            ("FPMCTL_TT_DIR", "{dir}"),
            ("FPMCTL_TT_CHILDREN", "3"),
        ],
        prefix: false,
    },
    Case {
        name: "double and single quotes",
        files: &[(
            "main.conf",
            global!(
                "[quoted]",
                "user = \"nobody\"",
                "group = 'nogroup'",
                "listen = \"{dir}/with space $pool.sock\"",
                "listen.owner = 'nobody'",
                "listen.mode = '0660'",
                "ping.path = \"/ping\"",
                "ping.response = \"say \\\"hi\\\"; twice\"",
                "access.log = '{dir}/access.'$pool'.log'",
                "slowlog = \"{dir}/\"slow\".log\"",
                "pm = \"static\"",
                "pm.max_children = \"2\"",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "comments, blank lines and trailing comments",
        files: &[(
            "main.conf",
            concat!(
                "; a full-line comment\n",
                "\n",
                "   ; an indented comment\n",
                "[global] ; after a header\n",
                "pid = {dir}/fpm.pid ; the pid file\n",
                "error_log = {dir}/error.log;no space before\n",
                "daemonize = no ; stay in front\n",
                "\n",
                "[commented] ; the only pool\n",
                "user = nobody ; the user\n",
                "group = nogroup\t; after a tab\n",
                "listen = 127.0.0.1:19215 ; loopback only\n",
                "pm = dynamic   ;\n",
                "pm.max_children = 10 ; ten\n",
                "pm.min_spare_servers = 1\n",
                "pm.max_spare_servers = 3\n",
                "pm.status_path = /status ; the status page\n",
                "ping.path = /ping ; answered with the default\n",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "CRLF, case-insensitive names and reopened sections",
        files: &[(
            "main.conf",
            concat!(
                "[GLOBAL]\r\n",
                "PID = {dir}/fpm.pid\r\n",
                "Error_Log\t=\t{dir}/error.log\r\n",
                "[www]\r\n",
                "user = nobody\r\n",
                "Listen = 127.0.0.1:19216\r\n",
                "[Global]\r\n",
                "daemonize = yes\r\n",
                "[WWW]\r\n",
                "PM = Static\r\n",
                "pm.max_children = 2\r\n",
                "listen.backlog = 128\r\n",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "relative pid, error_log and pool paths without a prefix",
        files: &[(
            "main.conf",
            concat!(
                "[global]\n",
                "pid = run/fpmctl-differential-test.pid\n",
                // Relative to /var, yet inside the temp dir: php-fpm opens the error log.
                "error_log = ..{dir}/error.log\n",
                "[rel]\n",
                "user = nobody\n",
                "listen = fpmctl-differential-test.sock\n",
                "access.log = ..{dir}/access.log\n",
                "slowlog = ..{dir}/slow.log\n",
                "pm = static\n",
                "pm.max_children = 1\n",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "relative paths and includes under --prefix",
        files: &[
            (
                "main.conf",
                "[global]\npid = run/fpm.pid\nerror_log = log/error.log\n\
                 include = pool.d/*.conf\n",
            ),
            ("log/.keep", ""),
            ("own/.keep", ""),
            (
                "pool.d/pools.conf",
                "[pre]\nuser = nobody\nlisten = sock/$pool.sock\n\
                 access.log = log/$pool.access.log\npm = static\npm.max_children = 1\n\
                 [own]\nprefix = {dir}/own\nuser = nobody\nlisten = own.sock\n\
                 slowlog = slow.log\npm = static\npm.max_children = 1\n",
            ),
        ],
        env: &[],
        prefix: true,
    },
    Case {
        name: "status listener, ping and listen options",
        files: &[(
            "main.conf",
            global!(
                "[status]",
                "user = nobody",
                "listen = 127.0.0.1:19217",
                "pm.status_listen = 127.0.0.1:19218",
                "ping.path = /ping",
                "pm = static",
                "pm.max_children = 1",
                "[options]",
                "user = nobody",
                "group = nogroup",
                "listen = {dir}/options.sock",
                "listen.backlog = 511",
                "listen.owner = nobody",
                "listen.group = nogroup",
                "listen.mode = 0600",
                "pm.status_path = /fpm-status",
                "pm.status_listen = {dir}/status.sock",
                "ping.response = dropped without ping.path",
                "pm = static",
                "pm.max_children = 1",
            ),
        )],
        env: &[],
        prefix: false,
    },
    // The layouts below follow configs php-fpm's own test suite (php-src, sapi/fpm/tests)
    // exercises, written afresh with other names and values.
    Case {
        name: "php-src style: pools included in name order, not file order",
        files: &[
            (
                "main.conf",
                global!("log_level = notice", "include = {dir}/conf.d/*.conf"),
            ),
            (
                "conf.d/zeta.conf",
                "[zeta]\nlisten = 127.0.0.1:19241\nuser = nobody\npm = ondemand\npm.max_children = 4\n",
            ),
            (
                "conf.d/alpha.conf",
                "[alpha]\nlisten = 127.0.0.1:19242\nuser = nobody\npm = ondemand\npm.max_children = 4\n",
            ),
            (
                "conf.d/Mid.conf",
                "[mid]\nlisten = 127.0.0.1:19243\nuser = nobody\npm = ondemand\npm.max_children = 4\n",
            ),
        ],
        env: &[],
        prefix: false,
    },
    Case {
        name: "php-src style: one pool per process manager, each with its own ping answer",
        files: &[(
            "main.conf",
            global!(
                "[pm_dyn]",
                "user = nobody",
                "listen = 127.0.0.1:19244",
                "ping.path = /are-you-there",
                "ping.response = dyn-here",
                "pm = dynamic",
                "pm.max_children = 6",
                "pm.start_servers = 3",
                "pm.min_spare_servers = 2",
                "pm.max_spare_servers = 4",
                "[pm_lazy]",
                "user = nobody",
                "listen = 127.0.0.1:19245",
                "ping.path = /are-you-there",
                "ping.response = lazy-here",
                "pm = ondemand",
                "pm.max_children = 3",
                "pm.process_idle_timeout = 7",
                "[pm_fixed]",
                "user = nobody",
                "listen = 127.0.0.1:19246",
                "ping.path = /are-you-there",
                "ping.response = fixed-here",
                "pm = static",
                "pm.max_children = 3",
            ),
        )],
        env: &[],
        prefix: false,
    },
    Case {
        name: "php-src style: unix socket with ACL users and groups, numeric owner",
        files: &[(
            "main.conf",
            global!(
                "[acl]",
                "user = nobody",
                "listen = {dir}/acl.sock",
                "listen.acl_users = nobody,www-data",
                "listen.acl_groups = nogroup,www-data",
                "listen.owner = 65534",
                "listen.mode = 0600",
                "pm = dynamic",
                "pm.max_children = 5",
                "pm.min_spare_servers = 1",
                "pm.max_spare_servers = 3",
            ),
        )],
        env: &[],
        prefix: false,
    },
    // RHEL and Fedora ship /etc/php-fpm.conf including /etc/php-fpm.d/*.conf, a www pool on
    // /run/php-fpm/www.sock open to the web server through ACLs, and PHP settings per pool.
    Case {
        name: "RHEL/Fedora layout: www.conf with ACLs and php_admin_value",
        files: &[
            (
                "main.conf",
                concat!(
                    "; RHEL-style main file: includes first, then [global]\n",
                    "include={dir}/php-fpm.d/*.conf\n",
                    "\n",
                    "[global]\n",
                    "pid = {dir}/run/php-fpm/php-fpm.pid\n",
                    "error_log = {dir}/error.log\n",
                    "daemonize = yes\n",
                ),
            ),
            (
                "php-fpm.d/www.conf",
                concat!(
                    "[www]\n",
                    "user = www-data\n",
                    "group = www-data\n",
                    "listen = /run/php-fpm/www.sock\n",
                    "listen.acl_users = www-data,nobody\n",
                    "listen.allowed_clients = 127.0.0.1\n",
                    "pm = dynamic\n",
                    "pm.max_children = 50\n",
                    "pm.start_servers = 5\n",
                    "pm.min_spare_servers = 5\n",
                    "pm.max_spare_servers = 35\n",
                    "slowlog = {dir}/www-slow.log\n",
                    "php_admin_value[error_log] = /var/log/php-fpm/www-error.log\n",
                    "php_admin_flag[log_errors] = on\n",
                    "php_value[session.save_handler] = files\n",
                    "php_value[session.save_path]    = /var/lib/php/session\n",
                    "php_value[soap.wsdl_cache_dir]  = /var/lib/php/wsdlcache\n",
                ),
            ),
        ],
        env: &[],
        prefix: false,
    },
    Case {
        name: "defaults and boolean words",
        files: &[(
            "main.conf",
            concat!(
                "error_log = {dir}/error.log\n",
                "daemonize = off\n",
                "log_buffering = \"no\"\n",
                "[minimal]\n",
                "user = nobody\n",
                "listen = 127.0.0.1:19219\n",
                "pm = static\n",
                "pm.max_children = 1\n",
                "catch_workers_output = yes\n",
                "clear_env = None\n",
                "php_admin_flag[log_errors] = on\n",
                "env[PATH] = /usr/bin:/bin\n",
            ),
        )],
        env: &[],
        prefix: false,
    },
];

#[test]
fn debian_shipped_config_matches_php_fpm() {
    let Some(bin) = php_fpm() else { return };
    let config = Path::new(DEBIAN_CONFIG);
    if !config.is_file() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{DEBIAN_CONFIG} is missing"
        );
        eprintln!("notice: {DEBIAN_CONFIG} is missing; skipping");
        return;
    }
    let dump = php_fpm_dump(&bin, config, None, &[]);
    let ours = config::load(config).unwrap_or_else(|e| panic!("{DEBIAN_CONFIG}:\n{e}"));
    let diffs = differences(&dump, &ours);
    assert!(diffs.is_empty(), "{DEBIAN_CONFIG}:\n{}", diffs.join("\n"));
}

#[test]
fn sample_configs_match_php_fpm() {
    let Some(bin) = php_fpm() else { return };
    let mut failures = Vec::new();
    for case in CASES {
        let dir = write_case(case.files);
        let dir_text = dir.path().display().to_string();
        let env: Vec<(String, String)> = case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.replace("{dir}", &dir_text)))
            .collect();
        let main = dir.path().join("main.conf");
        let prefix = case.prefix.then(|| dir.path().to_path_buf());
        let dump = php_fpm_dump(&bin, &main, prefix.as_deref(), &env);

        let mut vars: HashMap<String, String> = std::env::vars().collect();
        vars.remove("FPMCTL_TT_UNSET");
        vars.extend(env.iter().cloned());
        // What the binary says its compiled-in directories are: checked here too, by the
        // cases with relative paths and no prefix.
        let opts = LoadOptions {
            prefix,
            build: fpm::build_dirs(&bin),
            env: Some(vars),
        };
        let diffs = match config::load_with(&main, &opts) {
            Ok(ours) => differences(&dump, &ours),
            Err(e) => vec![format!("  our parser failed: {e}")],
        };
        if !diffs.is_empty() {
            failures.push(format!("{}:\n{}", case.name, diffs.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "fpmctl differs from php-fpm -tt:\n{}",
        failures.join("\n")
    );
}

/// The start of every invalid sample: 3 global lines, then the `[www]` header on line 4
/// and 3 more lines, so the tail of a sample starts on line 8.
const INVALID_HEAD: &str = concat!(
    global!(),
    "[www]\nuser = nobody\nlisten = 127.0.0.1:19230\npm = static\n"
);

/// Configs php-fpm refuses: name, the lines after [`INVALID_HEAD`], and the line of
/// main.conf our first problem must point at.
const INVALID: &[(&str, &str, usize)] = &[
    ("no workers", "pm.max_children = 0\n", 8),
    ("bad number", "pm.max_children = five\n", 8),
    ("unknown pm", "pm.max_children = 1\npm = sometimes\n", 9),
    (
        "unknown directive",
        "pm.max_children = 1\nlisten.ownr = x\n",
        9,
    ),
    (
        "bad time suffix",
        "pm.max_children = 1\nrequest_terminate_timeout = 10x\n",
        9,
    ),
    (
        "unterminated quote",
        "pm.max_children = 1\nping.path = \"/ping\n",
        9,
    ),
    ("hash comment", "pm.max_children = 1\n# not a comment\n", 9),
    (
        "ping path without slash",
        "pm.max_children = 1\nping.path = ping\n",
        9,
    ),
    (
        "start_servers out of range",
        "pm = dynamic\npm.max_children = 9\npm.min_spare_servers = 2\n\
         pm.max_spare_servers = 4\npm.start_servers = 8\n",
        12,
    ),
    (
        "$pool outside a pool",
        "pm.max_children = 1\n[global]\npid = $pool.pid\n",
        10,
    ),
    // An empty listen is no listen: reported at the pool header.
    ("no listen", "pm.max_children = 1\nlisten =\n", 4),
    (
        "same address twice",
        "pm.max_children = 1\n[twin]\nuser = nobody\nlisten = 127.0.0.1:19230\n\
         pm = static\npm.max_children = 1\n",
        11,
    ),
    (
        "include directory missing",
        "pm.max_children = 1\ninclude = {dir}/missing/*.conf\n",
        9,
    ),
];

#[test]
fn invalid_configs_are_rejected_by_both() {
    let Some(bin) = php_fpm() else { return };
    for (name, tail, line) in INVALID {
        let text = format!("{INVALID_HEAD}{tail}");
        let dir = write_case(&[("main.conf", &text)]);
        let main = dir.path().join("main.conf");
        let output = Command::new(&bin)
            .arg("-t")
            .arg("-y")
            .arg(&main)
            .output()
            .expect("php-fpm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("test is successful"),
            "{name}: php-fpm accepted it:\n{stderr}"
        );
        let err = match config::load(&main) {
            Ok(_) => panic!("{name}: our parser accepted it; php-fpm said:\n{stderr}"),
            Err(e) => e,
        };
        let first = &err.problems[0];
        let at = first.at.as_ref().map(|a| a.line);
        assert_eq!(at, Some(*line), "{name}: {err}");
    }
}

/// Creates the files of a case in a new temp dir, `{dir}` replaced by its path.
fn write_case(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_text = dir.path().display().to_string();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
        std::fs::write(&path, text.replace("{dir}", &dir_text)).expect("write file");
    }
    dir
}

/// php-fpm's `-tt` dump: each section (`global` first, then the pools) with its values.
type Dump = Vec<(String, HashMap<String, String>)>;

/// Runs `php-fpm -tt` and reads the `NOTICE:` lines of its dump.
fn php_fpm_dump(
    bin: &Path,
    config: &Path,
    prefix: Option<&Path>,
    env: &[(String, String)],
) -> Dump {
    let mut command = Command::new(bin);
    command.arg("-tt").arg("-y").arg(config);
    if let Some(prefix) = prefix {
        command.arg("--prefix").arg(prefix);
    }
    // A systemd watchdog in the environment would override systemd_interval.
    command
        .env_remove("WATCHDOG_USEC")
        .env_remove("FPMCTL_TT_UNSET");
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let output = command.output().expect("php-fpm runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains("test is successful"),
        "php-fpm rejected {}:\n{stderr}",
        config.display()
    );
    let mut dump: Dump = Vec::new();
    // With `error_log = /proc/self/fd/2` (the Docker images) each line arrives twice, once
    // on stderr and once through the error log: a repeated section continues the first.
    let mut current = 0;
    for line in stderr.lines() {
        let Some((_, notice)) = line.split_once("] NOTICE: ") else {
            continue;
        };
        if let Some(entry) = notice.strip_prefix('\t') {
            if let (Some((key, value)), Some((_, section))) =
                (entry.split_once(" = "), dump.get_mut(current))
            {
                section.insert(key.to_string(), value.to_string());
            }
        } else if let Some(name) = notice.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            current = match dump.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    dump.push((name.to_string(), HashMap::new()));
                    dump.len() - 1
                }
            };
        }
    }
    assert_eq!(
        dump.first().map(|s| s.0.as_str()),
        Some("global"),
        "{stderr}"
    );
    dump
}

/// Every field fpmctl relies on where `ours` differs from php-fpm's dump, one line each.
fn differences(dump: &Dump, ours: &FpmConfig) -> Vec<String> {
    // (field, php-fpm's value, ours printed the way php-fpm prints it)
    let mut rows: Vec<(String, Option<String>, String)> = Vec::new();
    let g = &dump[0].1;
    let o = &ours.global;
    let pid = o.pid_file.as_ref().map(|p| p.display().to_string());
    for (key, value) in [
        ("pid", text(pid)),
        ("error_log", o.error_log.clone()),
        ("daemonize", yes_no(o.daemonize)),
        ("process_control_timeout", secs(o.process_control_timeout)),
        (
            "emergency_restart_threshold",
            o.emergency_restart_threshold.to_string(),
        ),
        (
            "emergency_restart_interval",
            secs(o.emergency_restart_interval),
        ),
        ("systemd_interval", secs(o.systemd_interval)),
    ] {
        rows.push((key.to_string(), g.get(key).cloned(), value));
    }

    let their_names: Vec<&str> = dump[1..].iter().map(|(n, _)| n.as_str()).collect();
    let our_names: Vec<&str> = ours.pools.iter().map(|p| p.name.as_str()).collect();
    if their_names != our_names {
        return vec![format!(
            "  pools: php-fpm {their_names:?}, fpmctl {our_names:?}"
        )];
    }

    for ((name, t), p) in dump[1..].iter().zip(&ours.pools) {
        // php-fpm prints both addresses as written; compare them parsed as well.
        let parsed = |key: &str| {
            t.get(key)
                .filter(|v| *v != "undefined")
                .map(|v| format!("{:?}", ListenAddr::parse(v).ok()))
        };
        rows.push((
            format!("[{name}] listen, parsed"),
            parsed("listen"),
            format!("{:?}", Some(&p.listen)),
        ));
        if p.status_listen.is_some() || parsed("pm.status_listen").is_some() {
            rows.push((
                format!("[{name}] pm.status_listen, parsed"),
                parsed("pm.status_listen"),
                format!("{:?}", p.status_listen.as_ref()),
            ));
        }
        for (key, value) in [
            ("listen", p.listen_raw.clone()),
            ("listen.backlog", p.listen_backlog.to_string()),
            ("listen.owner", text(p.listen_owner.clone())),
            ("listen.group", text(p.listen_group.clone())),
            ("listen.mode", text(p.listen_mode.clone())),
            ("user", text(p.user.clone())),
            ("group", text(p.group.clone())),
            ("pm", p.pm.as_str().to_string()),
            ("pm.max_children", p.max_children.to_string()),
            ("pm.start_servers", p.start_servers.to_string()),
            ("pm.min_spare_servers", p.min_spare_servers.to_string()),
            ("pm.max_spare_servers", p.max_spare_servers.to_string()),
            ("pm.max_requests", p.max_requests.to_string()),
            // The one time php-fpm prints without the `s`.
            (
                "pm.process_idle_timeout",
                p.process_idle_timeout.as_secs().to_string(),
            ),
            ("ping.path", text(p.ping_path.clone())),
            ("ping.response", text(p.ping_response.clone())),
            ("pm.status_path", text(p.status_path.clone())),
            (
                "request_terminate_timeout",
                secs(p.request_terminate_timeout),
            ),
            ("request_slowlog_timeout", secs(p.request_slowlog_timeout)),
            ("slowlog", text(p.slowlog.clone())),
            ("access.log", text(p.access_log.clone())),
        ] {
            rows.push((format!("[{name}] {key}"), t.get(key).cloned(), value));
        }
    }
    rows.into_iter()
        .filter(|(_, theirs, ours)| theirs.as_ref() != Some(ours))
        .map(|(what, theirs, ours)| format!("  {what}: php-fpm {theirs:?}, fpmctl {ours:?}"))
        .collect()
}

/// php-fpm's way of printing an optional string.
fn text(value: Option<String>) -> String {
    value.unwrap_or_else(|| "undefined".to_string())
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

/// php-fpm prints times as whole seconds with an `s`, e.g. `60s` for `1m`.
fn secs(value: Duration) -> String {
    format!("{}s", value.as_secs())
}

/// The Docker official images' php-fpm layout (php:8.2-fpm), written afresh: a main file whose
/// only include is relative to FPM's prefix (`/usr/local` there), the stock `www.conf`, the
/// image's `docker.conf` (logs to the container's stderr) and `zz-docker.conf` (foreground, a
/// bare port that overrides the stock listen address).
const DOCKER_LAYOUT: &[(&str, &str)] = &[
    (
        "etc/php-fpm.conf",
        concat!(
            "; main file as the image ships it: mostly comments, and the pools from php-fpm.d\n",
            "[global]\n",
            "pid = run/php-fpm.pid\n",
            ";error_log = log/php-fpm.log\n",
            ";log_level = notice\n",
            "\n",
            "include=etc/php-fpm.d/*.conf\n",
        ),
    ),
    (
        "etc/php-fpm.d/www.conf",
        concat!(
            "[www]\n",
            "user = www-data\n",
            "group = www-data\n",
            "listen = 127.0.0.1:9000\n",
            ";listen.owner = www-data\n",
            "pm = dynamic\n",
            "pm.max_children = 5\n",
            "pm.start_servers = 2\n",
            "pm.min_spare_servers = 1\n",
            "pm.max_spare_servers = 3\n",
            ";pm.status_path = /status\n",
        ),
    ),
    (
        "etc/php-fpm.d/docker.conf",
        concat!(
            "[global]\n",
            "error_log = /proc/self/fd/2\n",
            "log_limit = 8192\n",
            "\n",
            "[www]\n",
            "access.log = /proc/self/fd/2\n",
            "clear_env = no\n",
            "catch_workers_output = yes\n",
            "decorate_workers_output = no\n",
        ),
    ),
    (
        "etc/php-fpm.d/zz-docker.conf",
        "[global]\ndaemonize = no\n\n[www]\nlisten = 9000\n",
    ),
];

/// `fpmctl --prefix DIR config` on the Docker layout agrees with `php-fpm -tt -p DIR`, through
/// the library and through the binary.
#[test]
fn docker_layout_under_prefix_matches_php_fpm() {
    let Some(bin) = php_fpm() else { return };
    let dir = write_case(DOCKER_LAYOUT);
    let main = dir.path().join("etc/php-fpm.conf");
    let dump = php_fpm_dump(&bin, &main, Some(dir.path()), &[]);

    let opts = LoadOptions {
        prefix: Some(dir.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let ours = config::load_with(&main, &opts).unwrap_or_else(|e| panic!("our parser: {e}"));
    let diffs = differences(&dump, &ours);
    assert!(diffs.is_empty(), "Docker layout:\n{}", diffs.join("\n"));
    let d = dir.path();
    assert_eq!(
        ours.files,
        [
            main.clone(),
            d.join("etc/php-fpm.d/docker.conf"),
            d.join("etc/php-fpm.d/www.conf"),
            d.join("etc/php-fpm.d/zz-docker.conf"),
        ]
    );

    // The binary, as a user runs it.
    let out = Command::new(env!("CARGO_BIN_EXE_fpmctl"))
        .arg("-c")
        .arg(&main)
        .arg("--prefix")
        .arg(d)
        .arg("--fpm-bin")
        .arg(&bin)
        .args(["config", "--json"])
        .env("FPMCTL_LOCK_DIR", d.join("locks"))
        .output()
        .expect("fpmctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fpmctl config failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let g = &dump[0].1;
    assert_eq!(j["pid_file"].as_str(), g.get("pid").map(String::as_str));
    assert_eq!(
        j["error_log"].as_str(),
        g.get("error_log").map(String::as_str)
    );
    assert_eq!(j["prefix"].as_str(), d.to_str());
    let www = &dump[1].1;
    assert_eq!(
        j["pools"][0]["listen_raw"].as_str(),
        www.get("listen").map(String::as_str)
    );
    assert_eq!(j["files"].as_array().map(Vec::len), Some(4), "{j}");
    assert!(
        j["pid_file"]
            .as_str()
            .is_some_and(|p| p.starts_with(d.to_str().unwrap())),
        "{j}"
    );

    // Without the prefix, php-fpm looks for the pools under its compiled-in prefix, and so
    // does fpmctl: both refuse the same way rather than agree by accident.
    let build = fpm::build_dirs(&bin);
    let unprefixed = config::load_with(
        &main,
        &LoadOptions {
            build: build.clone(),
            ..LoadOptions::default()
        },
    );
    let expected = build.prefix.join("etc/php-fpm.d");
    if !expected.exists() {
        let err = unprefixed.expect_err("no pools without the prefix");
        assert!(
            err.to_string().contains(&expected.display().to_string()),
            "{err}"
        );
    }
}

/// php-fpm looks up every account name while testing the config, also when it does not run
/// as root; an unknown one fails the test. Numeric IDs are not looked up.
const UNKNOWN_ACCOUNTS: &[(&str, &str)] = &[
    ("user", "cannot get uid for user 'fpmctl-no-such-user'"),
    ("group", "cannot get gid for group 'fpmctl-no-such-group'"),
    (
        "listen.owner",
        "cannot get uid for user 'fpmctl-no-such-user'",
    ),
    (
        "listen.group",
        "cannot get gid for group 'fpmctl-no-such-group'",
    ),
];

#[test]
fn unknown_accounts_are_rejected_like_php_fpm() {
    let Some(bin) = php_fpm() else { return };
    for (key, message) in UNKNOWN_ACCOUNTS {
        let value = if key.ends_with("group") {
            "fpmctl-no-such-group"
        } else {
            "fpmctl-no-such-user"
        };
        // The [other] pool starts on line 9; the account directive is its line 14.
        let text = format!(
            "{INVALID_HEAD}pm.max_children = 1\n[other]\nlisten = {{dir}}/other.sock\n\
             user = nobody\npm = static\npm.max_children = 1\n{key} = {value}\n"
        );
        let dir = write_case(&[("main.conf", &text)]);
        let main = dir.path().join("main.conf");
        let output = Command::new(&bin)
            .arg("-tt")
            .arg("-y")
            .arg(&main)
            .output()
            .expect("php-fpm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(message),
            "{key}: php-fpm said:\n{stderr}"
        );
        let err = config::load(&main).expect_err(key);
        assert_eq!(err.problems.len(), 1, "{key}: {err}");
        let p = &err.problems[0];
        assert_eq!(p.at.as_ref().map(|a| a.line), Some(14), "{key}: {err}");
        assert!(p.message.contains(message), "{key}: {err}");
        assert!(p.message.contains("pool 'other'"), "{key}: {err}");

        // Through the binary: `config` names file and line (exit 4); `check` also asks
        // php-fpm and gives its words (exit 6).
        for (command, code) in [("config", 4), ("check", 6)] {
            let out = Command::new(env!("CARGO_BIN_EXE_fpmctl"))
                .arg("-c")
                .arg(&main)
                .arg("--fpm-bin")
                .arg(&bin)
                .arg(command)
                .env("FPMCTL_LOCK_DIR", dir.path().join("locks"))
                .output()
                .expect("fpmctl runs");
            // `config` fails with an error on stderr, `check` reports on stdout.
            let err = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(code), "{key} {command}:\n{err}");
            assert!(err.contains(message), "{key} {command}:\n{err}");
            assert!(err.contains("main.conf:14"), "{key} {command}:\n{err}");
        }
    }
    // Numbers are IDs, not names: accepted by both.
    let text =
        format!("{INVALID_HEAD}pm.max_children = 1\nlisten.owner = 4242\nlisten.group = 4343\n");
    let dir = write_case(&[("main.conf", &text)]);
    let main = dir.path().join("main.conf");
    php_fpm_dump(&bin, &main, None, &[]);
    config::load(&main).expect("numeric IDs");
}
