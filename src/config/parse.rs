//! Parsing php-fpm's INI dialect into [`FpmConfig`].
//!
//! php-fpm 8.2 reads its config one line at a time and hands each line to PHP's INI scanner;
//! this module does the same, in three steps:
//!
//! 1. **Lines** ([`Loader::load_file`]): every line is a section header (`[global]` or
//!    `[pool]`), a directive (`key = value`), an array directive (`env[NAME] = value`), or
//!    blank/comment. `include = GLOB` loads the matching files in place, and whatever
//!    section the included file ends in stays open afterwards, as in php-fpm.
//! 2. **Values** ([`scan_value`]): quoting, `${ENV}`, `;` comments and the boolean words, as
//!    PHP's INI scanner does them. Then each directive's value is checked by its kind
//!    ([`Kind`]), and `$pool` is substituted in string directives.
//! 3. **Model** ([`Loader::finish`]): php-fpm's defaults and post-processing (relative paths,
//!    `pm.start_servers`, `ping.response`, ...) and its validation, giving [`FpmConfig`].
//!
//! Unlike php-fpm, which stops at the first error, every problem is collected (with its file
//! and line) before [`load`] fails.
//!
//! Known differences from php-fpm, all rare in real configs: PHP constants in unquoted
//! values (`E_ALL`) and INI expressions (`a|b`) are not evaluated (expressions are rejected);
//! `${VAR}` reads only the environment, not php.ini settings; an unterminated `'` is an error;
//! negative counts and timeouts are rejected; `user` is not required of pools (php-fpm
//! requires it only when started as root); `WATCHDOG_USEC` does not override `systemd_interval`.

use super::{FpmConfig, Global, Location, PmStyle, Pool, Problem};
use crate::error::ConfigError;
use crate::listen::ListenAddr;
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to load a config: the environment used for `${VAR}` and the prefix for relative paths.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Like php-fpm's `--prefix`; `None` uses php-fpm's compiled-in defaults.
    pub prefix: Option<PathBuf>,
    /// Variables for `${VAR}`; `None` reads the process environment.
    pub env: Option<std::collections::HashMap<String, String>>,
}

/// Loads and parses the main config at `path` and everything it includes.
pub fn load(path: &Path) -> Result<FpmConfig, ConfigError> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with explicit options.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<FpmConfig, ConfigError> {
    let main = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut loader = Loader::new(opts);
    if !loader.load_file(&main, 1, None) {
        return Err(ConfigError {
            problems: loader.problems,
        });
    }
    loader.finish(main)
}

/// Like [`load_with`], but keeps what could be read when some values are invalid: the model
/// built from every valid directive (pid file, pools and their listen addresses; invalid
/// values fall back to php-fpm's defaults, unbuildable pools are left out) and every
/// problem. `Err` only when the main file cannot be read at all.
pub fn load_lenient(
    path: &Path,
    opts: &LoadOptions,
) -> Result<(FpmConfig, Vec<Problem>), ConfigError> {
    let main = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut loader = Loader::new(opts);
    if !loader.load_file(&main, 1, None) {
        return Err(ConfigError {
            problems: loader.problems,
        });
    }
    Ok(loader.build(main))
}

/// php-fpm's `PHP_PREFIX` as Debian builds it: the base of relative pool paths and includes.
const DEFAULT_PREFIX: &str = "/usr";
/// php-fpm's `PHP_LOCALSTATEDIR` as Debian builds it: the base of a relative `pid`/`error_log`.
const DEFAULT_STATE_DIR: &str = "/var";
/// php-fpm refuses to nest more files than this (the main file counts).
const MAX_INCLUDE_DEPTH: usize = 5;
/// php-fpm's smallest accepted `log_limit`.
const MIN_LOG_LIMIT: i64 = 512;

// ---------------------------------------------------------------------------------------
// Directives
// ---------------------------------------------------------------------------------------

/// How a directive's value is checked and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
const GLOBAL_DIRECTIVES: &[(&str, Kind)] = &[
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
const POOL_DIRECTIVES: &[(&str, Kind)] = &[
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
const POOL_ARRAYS: &[&str] = &[
    "env",
    "php_value",
    "php_admin_value",
    "php_flag",
    "php_admin_flag",
    "access.suppress_path",
];

const SYSLOG_FACILITIES: &[&str] = &[
    "AUTH", "AUTHPRIV", "CRON", "DAEMON", "FTP", "KERN", "LPR", "MAIL", "NEWS", "SYSLOG", "USER",
    "UUCP", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3", "LOCAL4", "LOCAL5", "LOCAL6", "LOCAL7",
];

/// A checked directive value.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    /// Integers and times (in seconds).
    Number(i64),
    Bool(bool),
    Pm(PmStyle),
}

/// Checks `raw` as a value of `kind`, the way php-fpm's per-kind setters do.
fn convert(kind: Kind, raw: String) -> Result<Value, String> {
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
fn parse_int(raw: &str) -> Result<i64, String> {
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
fn parse_time(raw: &str) -> Result<i64, String> {
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
fn leading_int(s: &str) -> i64 {
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
fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "yes" | "on" | "true" => Ok(true),
        "" | "0" | "no" | "off" | "false" | "none" => Ok(false),
        _ => Err(format!("invalid boolean value '{raw}' (use yes or no)")),
    }
}

// ---------------------------------------------------------------------------------------
// INI scanning
// ---------------------------------------------------------------------------------------

/// Where `${VAR}` values come from.
struct Env<'a>(Option<&'a HashMap<String, String>>);

impl Env<'_> {
    /// The variable's value; unset is empty, as in PHP.
    fn get(&self, name: &str) -> String {
        match self.0 {
            Some(map) => map.get(name).cloned().unwrap_or_default(),
            None => std::env::var_os(name)
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// One line of a config file, scanned.
#[derive(Debug, PartialEq)]
enum Line {
    /// Blank or a comment.
    Empty,
    /// `[name]`.
    Section(String),
    /// `key = value`.
    Directive { key: String, value: String },
    /// `name[key] = value`.
    Array {
        name: String,
        key: String,
        value: String,
    },
}

/// Scans one line the way PHP's INI scanner does for php-fpm; `Err` is a one-line reason.
fn scan_line(line: &str, env: &Env) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let text = line.trim_start_matches([' ', '\t']);
    if text.is_empty() || text.starts_with(';') {
        return Ok(Line::Empty);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return scan_section(rest, env).map(Line::Section);
    }
    if text.starts_with('#') {
        return Err("'#' does not start a comment in php-fpm configs; use ';'".to_string());
    }
    let Some(end) = text.find(['=', '[', ';']) else {
        return Err(format!(
            "'{}' has no value (expected key = value)",
            text.trim_end()
        ));
    };
    let key = text[..end].trim_end_matches([' ', '\t']);
    check_key(key)?;
    match text.as_bytes()[end] {
        b'=' => Ok(Line::Directive {
            key: key.to_string(),
            value: scan_value(&text[end + 1..], env)?,
        }),
        b'[' => {
            let rest = &text[end + 1..];
            let close = rest
                .find(']')
                .ok_or_else(|| format!("missing ']' after '{key}['"))?;
            let after = rest[close + 1..].trim_start_matches([' ', '\t']);
            let value = after
                .strip_prefix('=')
                .ok_or_else(|| format!("'{key}[...]' has no value (expected key = value)"))?;
            Ok(Line::Array {
                name: key.to_string(),
                key: rest[..close].trim().to_string(),
                value: scan_value(value, env)?,
            })
        }
        _ => Err(format!("'{key}' has no value (expected key = value)")),
    }
}

/// A directive name must be plain text.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("missing directive name before '='".to_string());
    }
    match key.chars().find(|c| "&|^$~(){}!\"'\t]".contains(*c)) {
        Some(c) => Err(format!("unexpected '{c}' in directive name '{key}'")),
        None => Ok(()),
    }
}

/// The name of a `[section]`, given the text after `[`. The name is kept exactly as written
/// (php-fpm does not trim it); quotes and `${VAR}` work as in values.
fn scan_section(text: &str, env: &Env) -> Result<String, String> {
    let mut name = String::new();
    let mut rest = text;
    loop {
        let Some(c) = rest.chars().next() else {
            return Err("missing ']' at the end of the section header".to_string());
        };
        rest = &rest[c.len_utf8()..];
        match c {
            ']' => break,
            '"' => {
                let (s, r) = scan_double_quoted(rest, env)?;
                name.push_str(&s);
                rest = r;
            }
            '$' if rest.starts_with('{') => {
                let (s, r) = scan_variable(&rest[1..], env)?;
                name.push_str(&s);
                rest = r;
            }
            _ => name.push(c),
        }
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    if !rest.is_empty() && !rest.starts_with(';') {
        return Err(format!("unexpected '{rest}' after the section header"));
    }
    Ok(name)
}

/// One part of a value, as the INI scanner sees it.
#[derive(Debug)]
enum Piece {
    /// Unquoted blanks between other pieces.
    Blank(String),
    /// An unquoted run of other characters.
    Word(String),
    /// A quoted string or a `${VAR}`: taken as it is.
    Literal(String),
}

/// Scans the text after `=`: unquoted text, `"double"` (with `\"`, `\\`, `\$` escapes and
/// `${VAR}`) and `'single'` (raw) quoted strings and `${VAR}`, all concatenated, up to a `;`
/// comment. Like PHP, it trims the ends, drops blanks next to double-quoted strings, and
/// turns a lone `yes`/`on`/`true` into `1` and `no`/`off`/`false`/`none`/`null` into ``.
fn scan_value(text: &str, env: &Env) -> Result<String, String> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut rest = text;
    let mut after_double_quote = false;
    while let Some(c) = rest.chars().next() {
        match c {
            ';' => break,
            ' ' | '\t' => {
                let blank_len = rest.len() - rest.trim_start_matches([' ', '\t']).len();
                if !after_double_quote {
                    pieces.push(Piece::Blank(rest[..blank_len].to_string()));
                }
                rest = &rest[blank_len..];
                continue;
            }
            '"' => {
                if matches!(pieces.last(), Some(Piece::Blank(_))) {
                    pieces.pop();
                }
                let (s, r) = scan_double_quoted(&rest[1..], env)?;
                pieces.push(Piece::Literal(s));
                rest = r;
                after_double_quote = true;
                continue;
            }
            '\'' => {
                let body = &rest[1..];
                let end = body.find('\'').ok_or("unterminated single-quoted string")?;
                if end == 0 {
                    return Err("'' gives no value in php-fpm; use \"\" for an empty string".into());
                }
                pieces.push(Piece::Literal(body[..end].to_string()));
                rest = &body[end + 1..];
            }
            '$' if rest.starts_with("${") => {
                let (s, r) = scan_variable(&rest[2..], env)?;
                pieces.push(Piece::Literal(s));
                rest = r;
            }
            '=' => return Err("unexpected '=' in the value; quote the value".to_string()),
            '|' | '&' | '^' | '~' | '!' | '(' | ')' => {
                return Err(format!(
                    "INI expressions ('{c}') are not supported; quote the value"
                ));
            }
            _ => {
                // Any other character, including a '$' that does not start '${'.
                match pieces.last_mut() {
                    Some(Piece::Word(word)) => word.push(c),
                    _ => pieces.push(Piece::Word(c.to_string())),
                }
                rest = &rest[c.len_utf8()..];
            }
        }
        after_double_quote = false;
    }
    while matches!(pieces.last(), Some(Piece::Blank(_))) {
        pieces.pop();
    }
    if matches!(pieces.first(), Some(Piece::Blank(_))) {
        pieces.remove(0);
    }
    if let [Piece::Word(word)] = pieces.as_slice()
        && let Some(value) = boolean_word(word)
    {
        return Ok(value.to_string());
    }
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Word(w) if boolean_word(&w).is_some() => {
                return Err(format!(
                    "'{w}' is a boolean word and must stand alone; quote the value"
                ));
            }
            Piece::Blank(s) | Piece::Word(s) | Piece::Literal(s) => out.push_str(&s),
        }
    }
    Ok(out)
}

/// What PHP's INI scanner makes of an unquoted boolean word.
fn boolean_word(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" => Some("1"),
        "no" | "off" | "false" | "none" | "null" => Some(""),
        _ => None,
    }
}

/// The body of a double-quoted string (given the text after the opening quote) and the
/// text after the closing quote.
fn scan_double_quoted<'t>(text: &'t str, env: &Env) -> Result<(String, &'t str), String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => return Ok((out, rest)),
            '\\' => match rest.chars().next() {
                Some(escaped @ ('"' | '\\' | '$')) => {
                    out.push(escaped);
                    rest = &rest[1..];
                }
                _ => out.push('\\'),
            },
            '$' if rest.starts_with('{') => {
                let (s, r) = scan_variable(&rest[1..], env)?;
                out.push_str(&s);
                rest = r;
            }
            _ => out.push(c),
        }
    }
    Err("unterminated double-quoted string".to_string())
}

/// The value of `${NAME}` (given the text after `${`) and the text after the `}`.
fn scan_variable<'t>(text: &'t str, env: &Env) -> Result<(String, &'t str), String> {
    let end = text.find('}').ok_or("missing '}' after '${'")?;
    let name = text[..end].trim();
    if name.is_empty() {
        return Err("empty variable name in '${}'".to_string());
    }
    Ok((env.get(name), &text[end + 1..]))
}

// ---------------------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------------------

/// A directive's checked value and where it was set (the last setting wins, as in php-fpm).
struct Setting {
    value: Value,
    at: Location,
}

/// The directives of `[global]` or of one pool.
#[derive(Default)]
struct Section {
    settings: HashMap<&'static str, Setting>,
    /// Directives that were set to a bad value (already reported), so later checks do not
    /// also call them missing.
    invalid: HashSet<&'static str>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&Value> {
        self.settings.get(key).map(|s| &s.value)
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        }
    }

    fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn at(&self, key: &str) -> Option<&Location> {
        self.settings.get(key).map(|s| &s.at)
    }

    /// True when the directive is neither set nor set to a bad value.
    fn missing(&self, key: &str) -> bool {
        !self.settings.contains_key(key) && !self.invalid.contains(key)
    }
}

/// A pool as read, before defaults and checks.
struct RawPool {
    name: String,
    defined_at: Location,
    section: Section,
}

/// Which section the following directives go to.
#[derive(Clone, Copy)]
enum Current {
    Global,
    Pool(usize),
    /// After a section header that could not be read: directives are skipped.
    Broken,
}

struct Loader<'a> {
    env: Env<'a>,
    /// `--prefix`, made absolute.
    prefix: Option<PathBuf>,
    files: Vec<PathBuf>,
    global: Section,
    pools: Vec<RawPool>,
    current: Current,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'a> Loader<'a> {
    fn new(opts: &'a LoadOptions) -> Self {
        let mut loader = Loader {
            env: Env(opts.env.as_ref()),
            prefix: None,
            files: Vec::new(),
            global: Section::default(),
            pools: Vec::new(),
            current: Current::Global,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        if let Some(prefix) = &opts.prefix {
            let prefix = std::path::absolute(prefix).unwrap_or_else(|_| prefix.clone());
            if !prefix.is_dir() {
                loader.problem(
                    None,
                    format!("the prefix {} is not a directory", prefix.display()),
                );
            }
            loader.prefix = Some(prefix);
        }
        loader
    }

    fn problem(&mut self, at: Option<&Location>, message: String) {
        self.problems.push(Problem {
            at: at.cloned(),
            message,
        });
    }

    /// Reads one file and applies its lines; false when it could not be read.
    /// `depth` is 1 for the main file; `included_at` is the `include =` that named it.
    fn load_file(&mut self, path: &Path, depth: usize, included_at: Option<&Location>) -> bool {
        if depth > MAX_INCLUDE_DEPTH {
            self.problem(
                included_at,
                format!(
                    "cannot include {}: php-fpm nests at most {MAX_INCLUDE_DEPTH} files",
                    path.display()
                ),
            );
            return false;
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.problem(included_at, format!("cannot read {}: {e}", path.display()));
                return false;
            }
        };
        self.files.push(path.to_path_buf());
        // Lossless: a path that is not UTF-8 keeps its bytes (crate::lossless).
        let text = crate::lossless::decode(&bytes);
        for (index, line) in text.split('\n').enumerate() {
            let at = Location {
                file: path.to_path_buf(),
                line: index + 1,
            };
            match scan_line(line, &self.env) {
                Ok(Line::Empty) => {}
                Ok(Line::Section(name)) => self.open_section(name, at),
                Ok(Line::Directive { key, value }) if key == "include" => {
                    self.include(&value, &at, depth);
                }
                Ok(Line::Directive { key, value }) => self.set(&key, value, at),
                Ok(Line::Array { name, key, value }) => self.set_array(&name, &key, &value, &at),
                Err(message) => {
                    if line.trim_start().starts_with('[') {
                        self.current = Current::Broken;
                    }
                    self.problem(Some(&at), message);
                }
            }
        }
        true
    }

    /// `[global]` (any case) switches back to global settings; a known pool name (any case)
    /// reopens that pool; any other name starts a new pool.
    fn open_section(&mut self, name: String, at: Location) {
        if name.eq_ignore_ascii_case("global") {
            self.current = Current::Global;
        } else if let Some(i) = self
            .pools
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(&name))
        {
            self.current = Current::Pool(i);
        } else {
            self.pools.push(RawPool {
                name,
                defined_at: at,
                section: Section::default(),
            });
            self.current = Current::Pool(self.pools.len() - 1);
        }
    }

    /// `include = PATTERN`: a relative pattern is taken from the prefix; matches are read in
    /// sorted order, directories skipped. A pattern matching nothing is only a warning.
    fn include(&mut self, pattern: &str, at: &Location, depth: usize) {
        let pattern = self.resolve(pattern, DEFAULT_PREFIX);
        match expand_glob(&pattern) {
            Err(message) => self.problem(Some(at), message),
            Ok(paths) if paths.is_empty() => self.warnings.push(Problem {
                at: Some(at.clone()),
                message: format!("nothing matches the include pattern '{pattern}'"),
            }),
            Ok(paths) => {
                for path in paths.iter().filter(|p| !p.is_dir()) {
                    self.load_file(path, depth + 1, Some(at));
                }
            }
        }
    }

    /// A `key = value` line in the current section.
    fn set(&mut self, key: &str, raw: String, at: Location) {
        let (table, other) = match self.current {
            Current::Broken => return,
            Current::Global => (GLOBAL_DIRECTIVES, POOL_DIRECTIVES),
            Current::Pool(_) => (POOL_DIRECTIVES, GLOBAL_DIRECTIVES),
        };
        let Some(&(name, kind)) = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)) else {
            let hint = match self.current {
                Current::Global if other.iter().any(|(n, _)| n.eq_ignore_ascii_case(key)) => {
                    " (it belongs in a pool section)"
                }
                Current::Pool(_) if other.iter().any(|(n, _)| n.eq_ignore_ascii_case(key)) => {
                    " (it belongs in [global])"
                }
                _ => "",
            };
            self.problem(Some(&at), format!("unknown directive '{key}'{hint}"));
            return;
        };
        let raw = if kind == Kind::Text {
            match self.expand_pool_name(raw) {
                Ok(raw) => raw,
                Err(message) => {
                    self.problem(Some(&at), format!("{name}: {message}"));
                    self.section_mut().invalid.insert(name);
                    return;
                }
            }
        } else {
            raw
        };
        match convert(kind, raw) {
            Ok(value) => {
                let section = self.section_mut();
                section.invalid.remove(name);
                section.settings.insert(name, Setting { value, at });
            }
            Err(message) => {
                self.problem(Some(&at), format!("{name}: {message}"));
                self.section_mut().invalid.insert(name);
            }
        }
    }

    /// A `name[key] = value` line: checked like php-fpm does, but not kept.
    fn set_array(&mut self, name: &str, key: &str, value: &str, at: &Location) {
        let message = match self.current {
            Current::Broken => return,
            Current::Global => Some(format!("'{name}[...]' is only allowed in a pool section")),
            Current::Pool(_) if !POOL_ARRAYS.contains(&name) => {
                Some(format!("unknown directive '{name}[...]'"))
            }
            Current::Pool(_) if name == "access.suppress_path" => {
                if !key.is_empty() {
                    Some("access.suppress_path[] takes no key".to_string())
                } else if !value.starts_with('/') {
                    Some(format!(
                        "access.suppress_path[] '{value}' must start with '/'"
                    ))
                } else {
                    None
                }
            }
            Current::Pool(_) if key.is_empty() => Some(format!("{name}[] needs a key")),
            Current::Pool(_) if name == "env" && value.is_empty() => {
                Some(format!("env[{key}] has an empty value"))
            }
            Current::Pool(_) if name.ends_with("_flag") => parse_bool(value)
                .err()
                .map(|e| format!("{name}[{key}]: {e}")),
            Current::Pool(_) => None,
        };
        if let Some(message) = message {
            self.problem(Some(at), message);
        }
    }

    fn section_mut(&mut self) -> &mut Section {
        match self.current {
            Current::Pool(i) => &mut self.pools[i].section,
            Current::Global | Current::Broken => &mut self.global,
        }
    }

    /// Replaces `$pool` with the current pool's name, as php-fpm does in string directives.
    fn expand_pool_name(&self, raw: String) -> Result<String, String> {
        if !raw.contains("$pool") {
            return Ok(raw);
        }
        match self.current {
            Current::Pool(i) => Ok(raw.replace("$pool", &self.pools[i].name)),
            _ => Err("'$pool' can only be used in a pool section".to_string()),
        }
    }

    /// A relative path made absolute the way php-fpm does: under `--prefix` when given,
    /// otherwise under `default` (php-fpm joins with '/' and does not normalise).
    fn resolve(&self, path: &str, default: &str) -> String {
        resolve_under(path, self.prefix.as_deref(), default)
    }

    // -----------------------------------------------------------------------------------
    // Building the model
    // -----------------------------------------------------------------------------------

    fn finish(self, path: PathBuf) -> Result<FpmConfig, ConfigError> {
        let (config, problems) = self.build(path);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(config)
    }

    /// The model from what was read, and every problem found.
    fn build(mut self, path: PathBuf) -> (FpmConfig, Vec<Problem>) {
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
        };
        (config, self.problems)
    }

    fn finish_global(&mut self) -> Global {
        let g = std::mem::take(&mut self.global);
        let pid_file = g
            .text("pid")
            .map(|p| crate::lossless::to_path(&self.resolve(p, DEFAULT_STATE_DIR)));
        let error_log = match g.text("error_log") {
            Some(log) if log.eq_ignore_ascii_case("syslog") => log.to_string(),
            Some(log) => self.resolve(log, DEFAULT_STATE_DIR),
            None => self.resolve("log/php-fpm.log", DEFAULT_STATE_DIR),
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
            listen,
            listen_raw,
            listen_backlog: s
                .number("listen.backlog")
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(-1),
            listen_owner: s.text("listen.owner").map(str::to_string),
            listen_group: s.text("listen.group").map(str::to_string),
            listen_mode: s.text("listen.mode").map(str::to_string),
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
    fn pool_problem(&mut self, raw: &RawPool, key: Option<&str>, message: String) {
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
        let prefix = self.resolve(prefix, DEFAULT_PREFIX);
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
            resolve_under(listen, base, DEFAULT_PREFIX)
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
            self.resolve(listen, DEFAULT_PREFIX)
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
        let log_path = |key: &str| match s.text(key) {
            Some(p) if !p.is_empty() => Some(resolve_under(p, base, DEFAULT_PREFIX)),
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
        let base_text = base
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        let chroot = s.text("chroot").filter(|c| !c.is_empty()).map(|c| {
            match c.strip_prefix("$prefix") {
                Some("") => base_text.clone(),
                // php-fpm joins with '/' even though the rest starts with one.
                Some(rest) => format!("{base_text}/{rest}"),
                None => resolve_under(c, base, DEFAULT_PREFIX),
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
            let chdir = resolve_under(chdir, base, DEFAULT_PREFIX);
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
struct Servers {
    max_children: u32,
    start: u32,
    min_spare: u32,
    max_spare: u32,
}

/// The range php-fpm accepts for `process.priority`.
const PRIORITY: std::ops::RangeInclusive<i64> = -19..=20;

/// `path` made absolute like php-fpm's `fpm_evaluate_full_path`: absolute paths stay,
/// others go under `prefix`, or under `default` when there is no prefix.
fn resolve_under(path: &str, prefix: Option<&Path>, default: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    match prefix {
        Some(p) => format!("{}/{path}", p.display()),
        None => format!("{default}/{path}"),
    }
}

/// php-fpm's rule: an address with a ':' or made only of digits is TCP, the rest a path.
fn is_unix_address(address: &str) -> bool {
    !address.contains(':') && !address.bytes().all(|b| b.is_ascii_digit())
}

/// What is wrong with a status or ping URL path, as php-fpm checks it.
fn check_url_path(path: &str, needs_two_chars: bool) -> Option<String> {
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

/// Expands an include pattern like glob(3) with `GLOB_ERR`, as php-fpm does: matches sorted
/// bytewise; a hidden file matches only a pattern that spells out the dot; a directory that
/// the pattern must search but which cannot be read is an error.
fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let entries = glob::glob_with(pattern, options)
        .map_err(|e| format!("invalid include pattern '{pattern}': {e}"))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| format!("cannot expand include pattern '{pattern}': {e}"))?);
    }
    if paths.is_empty()
        && let Some(dir) = unreadable_search_dir(pattern)
    {
        return Err(format!(
            "cannot expand include pattern '{pattern}': directory {dir} does not exist"
        ));
    }
    paths.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(paths)
}

/// The directory before the first wildcard of `pattern`, when it does not exist (glob(3)
/// then fails instead of matching nothing).
fn unreadable_search_dir(pattern: &str) -> Option<String> {
    let wildcard = pattern.find(['*', '?', '['])?;
    let dir = match pattern[..wildcard].rfind('/') {
        Some(0) => "/",
        Some(slash) => &pattern[..slash],
        None => ".",
    };
    (!Path::new(dir).is_dir()).then(|| dir.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Result<String, String> {
        let env: HashMap<String, String> = [("FOO".to_string(), "foo".to_string())].into();
        scan_value(text, &Env(Some(&env)))
    }

    #[test]
    fn values_scan_like_php() {
        // Each expectation was checked against `php-fpm8.2 -tt`.
        assert_eq!(value(" foo   bar  ; comment").unwrap(), "foo   bar");
        assert_eq!(value(r#" "a\"b\\c\$d\n""#).unwrap(), r#"a"b\c$d\n"#);
        assert_eq!(
            value(" 'single $pool ${FOO} \\n'").unwrap(),
            "single $pool ${FOO} \\n"
        );
        assert_eq!(value(r#" foo"bar"baz"#).unwrap(), "foobarbaz");
        assert_eq!(value(r#" "a"  b"#).unwrap(), "ab");
        assert_eq!(value(" x  'a'").unwrap(), "x  a");
        assert_eq!(value(r#" a b 'c d' "e f""#).unwrap(), "a b c de f");
        assert_eq!(value(" x${UNSET_VARIABLE_FOR_TEST}y").unwrap(), "xy");
        assert_eq!(value(" ${ FOO } bar").unwrap(), "foo bar");
        assert_eq!(value(r#" "h=${FOO}""#).unwrap(), "h=foo");
        assert_eq!(value(" a;b").unwrap(), "a");
        assert_eq!(value(r#" "a;b""#).unwrap(), "a;b");
        assert_eq!(value(" $$pool").unwrap(), "$$pool");
        assert_eq!(value(" a#b{c}").unwrap(), "a#b{c}");
        assert_eq!(value("").unwrap(), "");
        assert_eq!(value(r#" """#).unwrap(), "");
        assert_eq!(value(" [::]:9000").unwrap(), "[::]:9000");
    }

    #[test]
    fn boolean_words_stand_alone() {
        assert_eq!(value(" yes").unwrap(), "1");
        assert_eq!(value(" On ; c").unwrap(), "1");
        assert_eq!(value(" none").unwrap(), "");
        assert_eq!(value(" NULL").unwrap(), "");
        assert_eq!(value(r#" "yes""#).unwrap(), "yes");
        assert_eq!(value(" yesno").unwrap(), "yesno");
        assert_eq!(value(" yes-x").unwrap(), "yes-x");
        assert!(value(" yes foo").is_err());
        assert!(value(" foo yes").is_err());
    }

    #[test]
    fn syntax_php_rejects_is_rejected() {
        for bad in [
            " a=b", " \"open", " 'open", " ${FOO", " ${}", " ''", " a|b", " a~b",
        ] {
            assert!(value(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn lines_scan_into_sections_and_directives() {
        let env = Env(None);
        assert_eq!(scan_line("  ; note", &env).unwrap(), Line::Empty);
        assert_eq!(scan_line("\r", &env).unwrap(), Line::Empty);
        assert_eq!(
            scan_line("[ www ] ; c", &env).unwrap(),
            Line::Section(" www ".into())
        );
        assert_eq!(
            scan_line("LISTEN\t=\t9000\r", &env).unwrap(),
            Line::Directive {
                key: "LISTEN".into(),
                value: "9000".into()
            }
        );
        assert_eq!(
            scan_line("env[PATH] = /bin", &env).unwrap(),
            Line::Array {
                name: "env".into(),
                key: "PATH".into(),
                value: "/bin".into()
            }
        );
        assert!(scan_line("[www", &env).is_err());
        assert!(scan_line("[www]x", &env).is_err());
        assert!(scan_line("# comment", &env).is_err());
        assert!(scan_line("listen", &env).is_err());
    }

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

    #[test]
    fn relative_paths_resolve_like_php_fpm() {
        assert_eq!(resolve_under("/a", None, "/usr"), "/a");
        assert_eq!(resolve_under("a.sock", None, "/usr"), "/usr/a.sock");
        assert_eq!(
            resolve_under("run/x.pid", Some(Path::new("/srv")), "/var"),
            "/srv/run/x.pid"
        );
    }

    /// Writes `files` into a new temp dir; `{dir}` in their text stands for that dir.
    fn files(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = text.replace("{dir}", &dir.path().display().to_string());
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn problems(dir: &Path) -> Vec<(String, usize, String)> {
        let err = load(&dir.join("main.conf")).unwrap_err();
        err.problems
            .into_iter()
            .map(|p| {
                let at = p.at.expect("every problem here has a location");
                let file = at.file.strip_prefix(dir).unwrap().display().to_string();
                (file, at.line, p.message)
            })
            .collect()
    }

    const POOL: &str = "user = nobody\npm = static\npm.max_children = 1\n";

    #[test]
    fn problems_in_several_files_are_all_reported() {
        let dir = files(&[
            ("main.conf", "[global]\ninclude = {dir}/pool.d/*.conf\n"),
            (
                "pool.d/a.conf",
                "[a]\nlisten = 127.0.0.1:9001\npm = static\npm.max_children = lots\n",
            ),
            (
                "pool.d/b.conf",
                "[b]\nlisten = 127.0.0.1:9002\n\npm = sometimes\npm.max_children = 1\n",
            ),
        ]);
        let found = problems(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].0.as_str(), found[0].1), ("pool.d/a.conf", 4));
        assert!(found[0].2.contains("pm.max_children"), "{found:?}");
        assert_eq!((found[1].0.as_str(), found[1].1), ("pool.d/b.conf", 4));
        assert!(found[1].2.contains("sometimes"), "{found:?}");
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

    #[test]
    fn included_pool_stays_open_after_the_include() {
        let dir = files(&[
            (
                "main.conf",
                "error_log = syslog\ninclude = {dir}/pool.d/*.conf\npm.max_children = 4\n\
                 [global]\ndaemonize = no\n",
            ),
            (
                "pool.d/a.conf",
                "[a]\nlisten = 9001\nuser = nobody\npm = static\n",
            ),
            ("pool.d/readme.txt", "not a config"),
            ("pool.d/dir.conf/x", ""),
        ]);
        let config = load(&dir.path().join("main.conf")).unwrap();
        assert_eq!(config.pools.len(), 1);
        let pool = &config.pools[0];
        assert_eq!(pool.max_children, 4);
        assert_eq!(pool.defined_at.file, dir.path().join("pool.d/a.conf"));
        assert_eq!(pool.defined_at.line, 1);
        assert!(!config.global.daemonize);
        assert_eq!(
            config.files,
            [
                dir.path().join("main.conf"),
                dir.path().join("pool.d/a.conf")
            ]
        );
    }

    #[test]
    fn unreadable_includes_name_the_file_and_the_include() {
        let dir = files(&[(
            "main.conf",
            &format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/pool.d/*.conf\n"),
        )]);
        std::fs::create_dir(dir.path().join("pool.d")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("pool.d/gone.conf")).unwrap();
        let found = problems(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0.as_str(), found[0].1), ("main.conf", 6));
        assert!(found[0].2.contains("pool.d/gone.conf"), "{found:?}");
    }

    #[test]
    fn include_patterns_that_match_nothing() {
        let text = format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/none/*.conf\n");
        let dir = files(&[("main.conf", &text)]);
        let found = problems(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("does not exist"), "{found:?}");

        let text = format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/*.none\n");
        let dir = files(&[("main.conf", &text)]);
        let config = load(&dir.path().join("main.conf")).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].message.contains("nothing matches"));
    }

    #[test]
    fn includes_nest_at_most_five_files_deep() {
        let mut list = vec![(
            "main.conf".to_string(),
            format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/1.conf\n"),
        )];
        for i in 1..=5 {
            list.push((
                format!("{i}.conf"),
                format!("include = {{dir}}/{}.conf\n", i + 1),
            ));
        }
        list.push(("6.conf".to_string(), String::new()));
        let list: Vec<(&str, &str)> = list.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let found = problems(files(&list).path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0.as_str(), found[0].1), ("4.conf", 1));
    }

    #[test]
    fn environment_comes_from_the_options() {
        let dir = files(&[(
            "main.conf",
            &format!("[www]\nlisten = {{dir}}/${{SOCK}}.sock\n{POOL}"),
        )]);
        let opts = LoadOptions {
            prefix: None,
            env: Some([("SOCK".to_string(), "app".to_string())].into()),
        };
        let config = load_with(&dir.path().join("main.conf"), &opts).unwrap();
        let expected = dir.path().join("app.sock");
        assert_eq!(config.pools[0].listen_raw, expected.display().to_string());
    }

    #[test]
    fn unreadable_main_file_is_one_problem() {
        let err = load(Path::new("/nonexistent/php-fpm.conf")).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0]
                .message
                .contains("/nonexistent/php-fpm.conf")
        );
    }

    #[test]
    fn search_dir_of_a_pattern() {
        assert_eq!(
            unreadable_search_dir("/nonexistent-dir-for-test/*.conf").as_deref(),
            Some("/nonexistent-dir-for-test")
        );
        assert_eq!(unreadable_search_dir("/tmp/*.conf"), None);
        assert_eq!(
            unreadable_search_dir("/nonexistent-file-for-test.conf"),
            None
        );
    }
}
