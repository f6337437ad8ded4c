//! Building the model: php-fpm's defaults and post-processing, and its validation.

use super::*;

impl Loader<'_> {
    pub(super) fn finish(self, path: PathBuf) -> Result<FpmConfig, ConfigError> {
        let (config, problems) = self.into_model(path);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(config)
    }

    /// The model from what was read, and every problem found.
    pub(super) fn into_model(mut self, path: PathBuf) -> (FpmConfig, Vec<Problem>) {
        let global = self.finish_global();
        if self.pools.is_empty() {
            self.problem(
                None,
                format!(
                    "{}: no pool defined; at least one [pool] section is needed",
                    path.display()
                ),
            );
        }
        let raw_pools = std::mem::take(&mut self.pools);
        let pools: Vec<Pool> = raw_pools
            .iter()
            .filter_map(|raw| self.finish_pool(raw))
            .collect();
        self.check_unique_addresses(&raw_pools, &pools);
        let config = FpmConfig {
            path,
            files: self.files,
            global,
            pools,
            warnings: self.warnings,
            prefix: self.prefix,
            build: self.build,
            uses_build_dirs: self.used_build.get(),
            binary: None,
        };
        (config, self.problems)
    }

    fn finish_global(&mut self) -> Global {
        let g = std::mem::take(&mut self.global);
        let pid_file = g
            .text("pid")
            .map(|p| crate::lossless::to_path(&self.resolve(p, &self.state_dir)));
        let error_log = match g.text("error_log") {
            Some(log) if log.eq_ignore_ascii_case("syslog") => log.to_string(),
            Some(log) => self.resolve(log, &self.state_dir),
            None => self.resolve("log/php-fpm.log", &self.state_dir),
        };
        if let Some(limit) = g.number("log_limit").filter(|&n| n < MIN_LOG_LIMIT) {
            self.problem(
                g.at("log_limit"),
                format!("log_limit must be at least {MIN_LOG_LIMIT} (got {limit})"),
            );
        }
        if let Some(max) = g.number("process.max").filter(|&n| n < 0) {
            self.problem(
                g.at("process.max"),
                format!("process.max must not be negative (got {max})"),
            );
        }
        if let Some(p) = g
            .number("process.priority")
            .filter(|p| !PRIORITY.contains(p))
        {
            self.problem(
                g.at("process.priority"),
                format!("process.priority must be between -19 and 20 (got {p})"),
            );
        }
        let global = Global {
            pid_file,
            error_log,
            log_level: g
                .text("log_level")
                .map(|l| match l.to_ascii_lowercase().as_str() {
                    "warn" => "warning".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "notice".to_string()),
            daemonize: g.flag("daemonize").unwrap_or(true),
            process_control_timeout: self.duration(&g, "process_control_timeout", 0),
            emergency_restart_threshold: self.count(&g, "emergency_restart_threshold", 0),
            emergency_restart_interval: self.duration(&g, "emergency_restart_interval", 0),
            systemd_interval: self.duration(&g, "systemd_interval", 10),
        };
        self.global = g;
        global
    }

    /// php-fpm's per-pool defaults and checks; `None` when the pool cannot be built.
    fn finish_pool(&mut self, raw: &RawPool) -> Option<Pool> {
        let s = &raw.section;
        let base = self.pool_base(raw);
        let listen = self.pool_listen(raw, base.as_deref());
        let status_listen = self.pool_status_listen(raw);
        let pm = self.pool_pm(raw);
        let servers = self.pool_servers(raw, pm);
        let (status_path, ping_path, ping_response) =
            self.pool_status_and_ping(raw, status_listen.is_some());
        let (slowlog, access_log) = self.pool_logs(raw, base.as_deref());
        self.check_chroot_and_chdir(raw, base.as_deref());
        self.check_accounts(raw);
        if let Some(p) = s
            .number("process.priority")
            .filter(|p| !PRIORITY.contains(p))
        {
            let message = format!("process.priority must be between -19 and 20 (got {p})");
            self.pool_problem(raw, Some("process.priority"), message);
        }
        let (listen, listen_raw) = listen?;
        Some(Pool {
            name: raw.name.clone(),
            defined_at: raw.defined_at.clone(),
            listen_at: s
                .at("listen")
                .cloned()
                .unwrap_or_else(|| raw.defined_at.clone()),
            listen,
            listen_raw,
            listen_backlog: s
                .number("listen.backlog")
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(-1),
            listen_owner: s.text("listen.owner").map(str::to_string),
            listen_group: s.text("listen.group").map(str::to_string),
            listen_mode: s.text("listen.mode").map(str::to_string),
            listen_acl_users: name_list(s.text("listen.acl_users")),
            listen_acl_groups: name_list(s.text("listen.acl_groups")),
            user: s.text("user").map(str::to_string),
            group: s.text("group").map(str::to_string),
            pm: pm?,
            max_children: servers.max_children,
            start_servers: servers.start,
            min_spare_servers: servers.min_spare,
            max_spare_servers: servers.max_spare,
            max_requests: self.count(s, "pm.max_requests", 0),
            process_idle_timeout: self.duration(s, "pm.process_idle_timeout", 10),
            ping_path,
            ping_response,
            status_path,
            status_listen,
            request_terminate_timeout: self.duration(s, "request_terminate_timeout", 0),
            request_slowlog_timeout: self.duration(s, "request_slowlog_timeout", 0),
            slowlog,
            access_log,
        })
    }

    /// A problem with a pool, placed at `key`'s line when it is set, else at the header.
    pub(super) fn pool_problem(&mut self, raw: &RawPool, key: Option<&str>, message: String) {
        let at = key
            .and_then(|k| raw.section.at(k))
            .unwrap_or(&raw.defined_at)
            .clone();
        self.problem(Some(&at), format!("pool '{}': {message}", raw.name));
    }

    /// The base of the pool's relative paths: its `prefix` (which must be a directory),
    /// else `--prefix`; `None` means php-fpm's default prefix.
    fn pool_base(&mut self, raw: &RawPool) -> Option<PathBuf> {
        let Some(prefix) = raw.section.text("prefix").filter(|p| !p.is_empty()) else {
            return self.prefix.clone();
        };
        let prefix = self.resolve(prefix, &self.default_prefix);
        if !Path::new(&prefix).is_dir() {
            let message = format!("the prefix {prefix} does not exist or is not a directory");
            self.pool_problem(raw, Some("prefix"), message);
        }
        Some(PathBuf::from(prefix))
    }

    /// `listen`, parsed, and as php-fpm prints it (a relative socket path made absolute).
    fn pool_listen(&mut self, raw: &RawPool, base: Option<&Path>) -> Option<(ListenAddr, String)> {
        let Some(listen) = raw.section.text("listen").filter(|l| !l.is_empty()) else {
            if !raw.section.invalid.contains("listen") {
                self.pool_problem(raw, None, "no listen address is defined".to_string());
            }
            return None;
        };
        let listen = if is_unix_address(listen) {
            self.resolve_in(listen, base, &self.default_prefix)
        } else {
            listen.to_string()
        };
        match ListenAddr::parse(&listen) {
            Ok(addr) => Some((addr, listen)),
            Err(e) => {
                self.pool_problem(raw, Some("listen"), e.to_string());
                None
            }
        }
    }

    /// `pm.status_listen`, parsed. php-fpm serves it from a helper pool that has no
    /// `prefix` of its own, so a relative socket path goes under the global prefix.
    fn pool_status_listen(&mut self, raw: &RawPool) -> Option<ListenAddr> {
        let listen = raw.section.text("pm.status_listen")?;
        let listen = if is_unix_address(listen) {
            self.resolve(listen, &self.default_prefix)
        } else {
            listen.to_string()
        };
        match ListenAddr::parse(&listen) {
            Ok(addr) => Some(addr),
            Err(e) => {
                self.pool_problem(raw, Some("pm.status_listen"), e.to_string());
                None
            }
        }
    }

    fn pool_pm(&mut self, raw: &RawPool) -> Option<PmStyle> {
        match raw.section.get("pm") {
            Some(Value::Pm(pm)) => Some(*pm),
            _ => {
                if raw.section.missing("pm") {
                    let message = "pm is not set (static, dynamic or ondemand)".to_string();
                    self.pool_problem(raw, None, message);
                }
                None
            }
        }
    }

    /// The worker counts, checked and defaulted like php-fpm: dynamic pools need sane spare
    /// limits and get `pm.start_servers = min + (max - min) / 2` when it is unset; ondemand
    /// pools have all three set to 0.
    fn pool_servers(&mut self, raw: &RawPool, pm: Option<PmStyle>) -> Servers {
        let s = &raw.section;
        let max_children = s.number("pm.max_children").unwrap_or(0);
        let mut start = s.number("pm.start_servers").unwrap_or(0);
        let mut min = s.number("pm.min_spare_servers").unwrap_or(0);
        let mut max = s.number("pm.max_spare_servers").unwrap_or(0);
        if max_children < 1 && !s.invalid.contains("pm.max_children") {
            let message = format!("pm.max_children must be at least 1 (got {max_children})");
            self.pool_problem(raw, Some("pm.max_children"), message);
        }
        let mut fail = |key: &str, message: String| self.pool_problem(raw, Some(key), message);
        match pm {
            Some(PmStyle::Dynamic) => {
                if min <= 0 {
                    fail(
                        "pm.min_spare_servers",
                        format!("pm.min_spare_servers must be at least 1 (got {min})"),
                    );
                } else if max <= 0 {
                    fail(
                        "pm.max_spare_servers",
                        format!("pm.max_spare_servers must be at least 1 (got {max})"),
                    );
                } else if min > max_children || max > max_children {
                    fail(
                        "pm.max_spare_servers",
                        format!(
                            "pm.min_spare_servers ({min}) and pm.max_spare_servers ({max}) \
                             cannot be greater than pm.max_children ({max_children})"
                        ),
                    );
                } else if max < min {
                    fail(
                        "pm.max_spare_servers",
                        format!(
                            "pm.max_spare_servers ({max}) must not be less than \
                             pm.min_spare_servers ({min})"
                        ),
                    );
                } else if start <= 0 {
                    start = min + (max - min) / 2;
                } else if start < min || start > max {
                    fail(
                        "pm.start_servers",
                        format!(
                            "pm.start_servers ({start}) must be between pm.min_spare_servers \
                             ({min}) and pm.max_spare_servers ({max})"
                        ),
                    );
                }
                if s.number("pm.max_spawn_rate").is_some_and(|n| n < 1) {
                    fail(
                        "pm.max_spawn_rate",
                        "pm.max_spawn_rate must be at least 1".to_string(),
                    );
                }
            }
            Some(PmStyle::Ondemand) => {
                if s.number("pm.process_idle_timeout").unwrap_or(10) < 1 {
                    fail(
                        "pm.process_idle_timeout",
                        "pm.process_idle_timeout must be at least 1s".to_string(),
                    );
                }
                (start, min, max) = (0, 0, 0);
            }
            Some(PmStyle::Static) | None => {}
        }
        Servers {
            max_children: self.non_negative(raw, "pm.max_children", max_children),
            start: self.non_negative(raw, "pm.start_servers", start),
            min_spare: self.non_negative(raw, "pm.min_spare_servers", min),
            max_spare: self.non_negative(raw, "pm.max_spare_servers", max),
        }
    }

    /// `pm.status_path` (`/` when only `pm.status_listen` is set), `ping.path` and
    /// `ping.response` (`pong` by default, and dropped without a ping path), checked.
    fn pool_status_and_ping(
        &mut self,
        raw: &RawPool,
        has_status_listen: bool,
    ) -> (Option<String>, Option<String>, Option<String>) {
        let s = &raw.section;
        let status_path = match s.text("pm.status_path") {
            None if has_status_listen => Some("/".to_string()),
            other => other.map(str::to_string),
        };
        if let Some(path) = status_path.as_deref().filter(|p| !p.is_empty())
            && let Some(message) = check_url_path(path, !has_status_listen)
        {
            let message = format!("pm.status_path {message}");
            self.pool_problem(raw, Some("pm.status_path"), message);
        }
        let Some(ping_path) = s.text("ping.path").filter(|p| !p.is_empty()) else {
            return (status_path, None, None);
        };
        if let Some(message) = check_url_path(ping_path, true) {
            self.pool_problem(raw, Some("ping.path"), format!("ping.path {message}"));
        }
        let ping_response = s.text("ping.response").unwrap_or("pong");
        if ping_response.is_empty() {
            let message = "ping.response must not be empty".to_string();
            self.pool_problem(raw, Some("ping.response"), message);
        }
        (
            status_path,
            Some(ping_path.to_string()),
            Some(ping_response.to_string()),
        )
    }

    /// `slowlog` and `access.log`, made absolute, and the slow-log settings checked.
    fn pool_logs(
        &mut self,
        raw: &RawPool,
        base: Option<&Path>,
    ) -> (Option<String>, Option<String>) {
        let s = &raw.section;
        let default = self.default_prefix.clone();
        let log_path = |key: &str| match s.text(key) {
            Some(p) if !p.is_empty() => Some(self.resolve_in(p, base, &default)),
            other => other.map(str::to_string),
        };
        let (slowlog, access_log) = (log_path("slowlog"), log_path("access.log"));
        let has_slowlog = slowlog.as_deref().is_some_and(|p| !p.is_empty());
        let terminate = s.number("request_terminate_timeout").unwrap_or(0);
        let slow = s.number("request_slowlog_timeout").unwrap_or(0);
        let depth = s.number("request_slowlog_trace_depth").unwrap_or(0);
        let problems = [
            (
                slow != 0 && !has_slowlog,
                "request_slowlog_timeout",
                "request_slowlog_timeout needs slowlog to be set".to_string(),
            ),
            (
                slow != 0 && terminate != 0 && slow > terminate,
                "request_slowlog_timeout",
                format!(
                    "request_slowlog_timeout ({slow}s) cannot be greater than \
                     request_terminate_timeout ({terminate}s)"
                ),
            ),
            (
                depth != 0 && !has_slowlog,
                "request_slowlog_trace_depth",
                "request_slowlog_trace_depth needs slowlog to be set".to_string(),
            ),
            (
                depth < 0 && has_slowlog,
                "request_slowlog_trace_depth",
                "request_slowlog_trace_depth must be at least 1".to_string(),
            ),
        ];
        for (failed, key, message) in problems {
            if failed {
                self.pool_problem(raw, Some(key), message);
            }
        }
        (slowlog, access_log)
    }

    /// `chroot` (which may start with `$prefix`) and `chdir` must be existing directories,
    /// as php-fpm checks before starting.
    fn check_chroot_and_chdir(&mut self, raw: &RawPool, base: Option<&Path>) {
        let s = &raw.section;
        let default = self.default_prefix.clone();
        let base_text = base
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| default.clone());
        let chroot = s.text("chroot").filter(|c| !c.is_empty()).map(|c| {
            if base.is_none() && c.starts_with("$prefix") {
                self.used_build.set(true);
            }
            match c.strip_prefix("$prefix") {
                Some("") => base_text.clone(),
                // php-fpm joins with '/' even though the rest starts with one.
                Some(rest) => format!("{base_text}/{rest}"),
                None => self.resolve_in(c, base, &default),
            }
        });
        if let Some(chroot) = &chroot {
            let message = if chroot.contains("$prefix") {
                Some("'$prefix' can only start the chroot value".to_string())
            } else if !chroot.starts_with('/') {
                Some(format!("chroot {chroot} must start with '/'"))
            } else if !Path::new(chroot).is_dir() {
                Some(format!(
                    "chroot {chroot} does not exist or is not a directory"
                ))
            } else {
                None
            };
            if let Some(message) = message {
                self.pool_problem(raw, Some("chroot"), message);
            }
        }
        if let Some(chdir) = s.text("chdir").filter(|c| !c.is_empty()) {
            let chdir = self.resolve_in(chdir, base, &default);
            let inside = match &chroot {
                Some(root) => format!("{root}/{chdir}"),
                None => chdir.clone(),
            };
            if !Path::new(&inside).is_dir() {
                let message = format!("chdir {inside} does not exist or is not a directory");
                self.pool_problem(raw, Some("chdir"), message);
            }
        }
    }

    /// php-fpm refuses two pools (or status listeners) on the same address.
    fn check_unique_addresses(&mut self, raw_pools: &[RawPool], pools: &[Pool]) {
        let mut seen: Vec<(String, &str)> = Vec::new();
        for (raw, pool) in pools
            .iter()
            .filter_map(|p| Some((raw_pools.iter().find(|r| r.name == p.name)?, p)))
        {
            let status = pool.status_listen.as_ref().map(|a| a.to_string());
            for address in std::iter::once(pool.listen_raw.clone()).chain(status) {
                match seen.iter().find(|(a, _)| *a == address) {
                    Some((_, owner)) => {
                        let message =
                            format!("listen address {address} is already used by pool '{owner}'");
                        self.pool_problem(raw, Some("listen"), message);
                    }
                    None => seen.push((address, &pool.name)),
                }
            }
        }
    }

    /// A pool count that fpmctl keeps unsigned; a negative one is reported.
    fn non_negative(&mut self, raw: &RawPool, key: &str, n: i64) -> u32 {
        u32::try_from(n).unwrap_or_else(|_| {
            self.pool_problem(
                raw,
                Some(key),
                format!("{key} must not be negative (got {n})"),
            );
            0
        })
    }

    /// A number directive as a count, with its default; a negative one is reported.
    fn count(&mut self, s: &Section, key: &str, default: i64) -> u32 {
        let n = s.number(key).unwrap_or(default);
        u32::try_from(n).unwrap_or_else(|_| {
            self.problem(s.at(key), format!("{key} must not be negative (got {n})"));
            0
        })
    }

    /// A time directive, with its default in seconds; a negative one is reported.
    fn duration(&mut self, s: &Section, key: &str, default: i64) -> Duration {
        Duration::from_secs(u64::from(self.count(s, key, default)))
    }
}

/// The worker counts of a pool.
pub(super) struct Servers {
    max_children: u32,
    start: u32,
    min_spare: u32,
    max_spare: u32,
}

/// The range php-fpm accepts for `process.priority`.
pub(super) const PRIORITY: std::ops::RangeInclusive<i64> = -19..=20;

/// `path` made absolute like php-fpm's `fpm_evaluate_full_path`: absolute paths stay,
/// others go under `prefix`, or under `default` when there is no prefix.
pub(super) fn resolve_under(path: &str, prefix: Option<&Path>, default: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    match prefix {
        Some(p) => format!("{}/{path}", p.display()),
        None => format!("{default}/{path}"),
    }
}

/// php-fpm's rule: an address with a ':' or made only of digits is TCP, the rest a path.
pub(super) fn is_unix_address(address: &str) -> bool {
    !address.contains(':') && !address.bytes().all(|b| b.is_ascii_digit())
}

/// What is wrong with a status or ping URL path, as php-fpm checks it.
pub(super) fn check_url_path(path: &str, needs_two_chars: bool) -> Option<String> {
    if !path.starts_with('/') {
        Some(format!("'{path}' must start with '/'"))
    } else if needs_two_chars && path.len() < 2 {
        Some(format!("'{path}' is too short"))
    } else if path
        .chars()
        .any(|c| !c.is_ascii_alphanumeric() && !"/-_.~".contains(c))
    {
        Some(format!(
            "'{path}' may only contain letters, digits and '/', '-', '_', '.', '~'"
        ))
    } else {
        None
    }
}

/// A comma-separated list of account names, as `listen.acl_users` takes them.
fn name_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{files, problems};
    use super::*;

    #[test]
    fn relative_paths_resolve_like_php_fpm() {
        assert_eq!(resolve_under("/a", None, "/usr"), "/a");
        assert_eq!(resolve_under("a.sock", None, "/usr"), "/usr/a.sock");
        assert_eq!(
            resolve_under("run/x.pid", Some(Path::new("/srv")), "/var"),
            "/srv/run/x.pid"
        );
    }

    #[test]
    fn pool_checks_point_at_the_directive_or_the_header() {
        let dir = files(&[(
            "main.conf",
            "pid = $pool.pid\nbogus = 1\n[www]\nuser = nobody\npm = dynamic\n\
             pm.max_children = 0\n",
        )]);
        let found = problems(dir.path());
        let lines: Vec<usize> = found.iter().map(|p| p.1).collect();
        assert_eq!(lines, [1, 2, 3, 6, 3], "{found:?}");
        assert!(found[0].2.contains("$pool"), "{found:?}");
        assert!(
            found[1].2.contains("unknown directive 'bogus'"),
            "{found:?}"
        );
        assert!(found[2].2.contains("no listen address"), "{found:?}");
        assert!(found[3].2.contains("pm.max_children must be at least 1"));
        assert!(found[4].2.contains("pm.min_spare_servers"), "{found:?}");
    }
}
