//! Directive tables and value types: what each directive takes and how a value is read.

use super::*;

/// How a directive's value is checked and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Any string; `$pool` is substituted.
    Text,
    /// An integer: optional `-` and digits.
    Int,
    /// Seconds, with an optional `s`, `m`, `h` or `d` suffix.
    Time,
    /// php-fpm's boolean words.
    Bool,
    /// `static`, `dynamic` or `ondemand`.
    Pm,
    /// `debug`, `notice`, `warning`, `error` or `alert`.
    LogLevel,
    /// A syslog facility name.
    Facility,
    /// A non-negative integer or `unlimited`.
    RlimitCore,
}

/// Every directive php-fpm 8.2 on Linux accepts in `[global]`.
pub(super) const GLOBAL_DIRECTIVES: &[(&str, Kind)] = &[
    ("pid", Kind::Text),
    ("error_log", Kind::Text),
    ("syslog.ident", Kind::Text),
    ("syslog.facility", Kind::Facility),
    ("log_buffering", Kind::Bool),
    ("log_level", Kind::LogLevel),
    ("log_limit", Kind::Int),
    ("emergency_restart_threshold", Kind::Int),
    ("emergency_restart_interval", Kind::Time),
    ("process_control_timeout", Kind::Time),
    ("process.max", Kind::Int),
    ("process.priority", Kind::Int),
    ("daemonize", Kind::Bool),
    ("rlimit_files", Kind::Int),
    ("rlimit_core", Kind::RlimitCore),
    ("events.mechanism", Kind::Text),
    ("systemd_interval", Kind::Time),
];

/// Every plain directive php-fpm 8.2 on Linux accepts in a pool.
pub(super) const POOL_DIRECTIVES: &[(&str, Kind)] = &[
    ("prefix", Kind::Text),
    ("user", Kind::Text),
    ("group", Kind::Text),
    ("listen", Kind::Text),
    ("listen.backlog", Kind::Int),
    ("listen.acl_users", Kind::Text),
    ("listen.acl_groups", Kind::Text),
    ("listen.owner", Kind::Text),
    ("listen.group", Kind::Text),
    ("listen.mode", Kind::Text),
    ("listen.allowed_clients", Kind::Text),
    ("process.priority", Kind::Int),
    ("process.dumpable", Kind::Bool),
    ("pm", Kind::Pm),
    ("pm.max_children", Kind::Int),
    ("pm.start_servers", Kind::Int),
    ("pm.min_spare_servers", Kind::Int),
    ("pm.max_spare_servers", Kind::Int),
    ("pm.max_spawn_rate", Kind::Int),
    ("pm.process_idle_timeout", Kind::Time),
    ("pm.max_requests", Kind::Int),
    ("pm.status_path", Kind::Text),
    ("pm.status_listen", Kind::Text),
    ("ping.path", Kind::Text),
    ("ping.response", Kind::Text),
    ("access.log", Kind::Text),
    ("access.format", Kind::Text),
    ("slowlog", Kind::Text),
    ("request_slowlog_timeout", Kind::Time),
    ("request_slowlog_trace_depth", Kind::Int),
    ("request_terminate_timeout", Kind::Time),
    ("request_terminate_timeout_track_finished", Kind::Bool),
    ("rlimit_files", Kind::Int),
    ("rlimit_core", Kind::RlimitCore),
    ("chroot", Kind::Text),
    ("chdir", Kind::Text),
    ("catch_workers_output", Kind::Bool),
    ("decorate_workers_output", Kind::Bool),
    ("clear_env", Kind::Bool),
    ("security.limit_extensions", Kind::Text),
    ("apparmor_hat", Kind::Text),
];

/// The `name[key] = value` directives of a pool (php-fpm matches these names exactly).
pub(super) const POOL_ARRAYS: &[&str] = &[
    "env",
    "php_value",
    "php_admin_value",
    "php_flag",
    "php_admin_flag",
    "access.suppress_path",
];

pub(super) const SYSLOG_FACILITIES: &[&str] = &[
    "AUTH", "AUTHPRIV", "CRON", "DAEMON", "FTP", "KERN", "LPR", "MAIL", "NEWS", "SYSLOG", "USER",
    "UUCP", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3", "LOCAL4", "LOCAL5", "LOCAL6", "LOCAL7",
];

/// A checked directive value.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Text(String),
    /// Integers and times (in seconds).
    Number(i64),
    Bool(bool),
    Pm(PmStyle),
}

/// Checks `raw` as a value of `kind`, the way php-fpm's per-kind setters do.
pub(super) fn convert(kind: Kind, raw: String) -> Result<Value, String> {
    match kind {
        Kind::Text => Ok(Value::Text(raw)),
        Kind::Int => parse_int(&raw).map(Value::Number),
        Kind::Time => parse_time(&raw).map(Value::Number),
        Kind::Bool => parse_bool(&raw).map(Value::Bool),
        Kind::Pm => match raw.to_ascii_lowercase().as_str() {
            "static" => Ok(Value::Pm(PmStyle::Static)),
            "dynamic" => Ok(Value::Pm(PmStyle::Dynamic)),
            "ondemand" => Ok(Value::Pm(PmStyle::Ondemand)),
            _ => Err(format!(
                "invalid process manager '{raw}' (static, dynamic or ondemand)"
            )),
        },
        Kind::LogLevel => match raw.to_ascii_lowercase().as_str() {
            "debug" | "notice" | "warning" | "warn" | "error" | "alert" => Ok(Value::Text(raw)),
            _ => Err(format!(
                "invalid log level '{raw}' (debug, notice, warning, error or alert)"
            )),
        },
        Kind::Facility => {
            if SYSLOG_FACILITIES
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&raw))
            {
                Ok(Value::Text(raw))
            } else {
                Err(format!("invalid syslog facility '{raw}'"))
            }
        }
        Kind::RlimitCore => {
            if raw.eq_ignore_ascii_case("unlimited") {
                return Ok(Value::Number(-1));
            }
            match parse_int(&raw)? {
                n if n < 0 => Err("must be 0 or more, or 'unlimited'".to_string()),
                n => Ok(Value::Number(n)),
            }
        }
    }
}

/// An integer as php-fpm accepts it: an optional `-`, then digits only (empty means 0).
pub(super) fn parse_int(raw: &str) -> Result<i64, String> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{raw}' is not a valid number"));
    }
    let magnitude: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().unwrap_or(i64::MAX)
    };
    let n = if raw.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    if i32::try_from(n).is_err() {
        return Err(format!("'{raw}' is out of range"));
    }
    Ok(n)
}

/// A time in seconds: a number with an optional `s`, `m`, `h` or `d` suffix. Like php-fpm
/// (which uses C's `atoi`), the number is read up to the first character that is not a digit.
pub(super) fn parse_time(raw: &str) -> Result<i64, String> {
    let Some(last) = raw.chars().last() else {
        return Err("empty time value".to_string());
    };
    let (number, unit) = match last {
        's' => (&raw[..raw.len() - 1], 1),
        'm' => (&raw[..raw.len() - 1], 60),
        'h' => (&raw[..raw.len() - 1], 60 * 60),
        'd' => (&raw[..raw.len() - 1], 24 * 60 * 60),
        '0'..='9' => (raw, 1),
        _ => {
            return Err(format!(
                "unknown suffix in time value '{raw}' (use s, m, h or d)"
            ));
        }
    };
    let seconds = leading_int(number).saturating_mul(unit);
    if i32::try_from(seconds).is_err() {
        return Err(format!("time value '{raw}' is out of range"));
    }
    Ok(seconds)
}

/// C's `atoi`: skips leading whitespace, reads an optional sign and digits, ignores the rest.
pub(super) fn leading_int(s: &str) -> i64 {
    let s = s.trim_start();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative { -n } else { n }
}

/// php-fpm 8.2's boolean words (after the INI scanner turned bare `yes`/`off`/... into
/// `1` or an empty string). Case matters here: a quoted `"Yes"` is rejected.
pub(super) fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "yes" | "on" | "true" => Ok(true),
        "" | "0" | "no" | "off" | "false" | "none" => Ok(false),
        _ => Err(format!("invalid boolean value '{raw}' (use yes or no)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_parse_like_php_fpm() {
        assert_eq!(parse_int("03"), Ok(3));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int(""), Ok(0));
        assert!(parse_int("+3").is_err());
        assert!(parse_int("5x").is_err());
        assert!(parse_int("99999999999").is_err());
        assert_eq!(parse_time("20"), Ok(20));
        assert_eq!(parse_time("20s"), Ok(20));
        assert_eq!(parse_time("2m"), Ok(120));
        assert_eq!(parse_time("1h"), Ok(3600));
        assert_eq!(parse_time("1d"), Ok(86400));
        assert_eq!(parse_time("5 s"), Ok(5));
        assert_eq!(parse_time("1x5"), Ok(1));
        assert!(parse_time("").is_err());
        assert!(parse_time("10S").is_err());
        assert!(parse_time("1x").is_err());
    }

    #[test]
    fn booleans_parse_like_php_fpm_8_2() {
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool("yes"), Ok(true));
        assert_eq!(parse_bool(""), Ok(false));
        assert_eq!(parse_bool("0"), Ok(false));
        assert_eq!(parse_bool("none"), Ok(false));
        assert!(parse_bool("Yes").is_err());
        assert!(parse_bool("2").is_err());
    }
}
