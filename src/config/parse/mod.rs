//! Parsing php-fpm's INI dialect into [`FpmConfig`].
//!
//! php-fpm 8.2 reads its config one line at a time and hands each line to PHP's INI scanner;
//! this module does the same, in three steps:
//!
//! 1. **Lines** (`Loader::load_file`, here): every line is a section header (`[global]` or
//!    `[pool]`), a directive (`key = value`), an array directive (`env[NAME] = value`), or
//!    blank/comment. `include = GLOB` loads the matching files in place, and whatever
//!    section the included file ends in stays open afterwards, as in php-fpm (`include`:
//!    glob expansion).
//! 2. **Values** (`scan`: PHP's INI scanner): quoting, `${ENV}`, `;` comments and the boolean words, as
//!    PHP's INI scanner does them. Then each directive's value is checked by its kind
//!    (`values`: the directive tables and value types), and `$pool` is substituted in string directives.
//! 3. **Model** (`validate`): php-fpm's defaults and post-processing (relative paths,
//!    `pm.start_servers`, `ping.response`, ...) and its validation, giving [`FpmConfig`].
//!
//! Unlike php-fpm, which stops at the first error, every problem is collected (with its file
//! and line) before [`load`] fails.
//!
//! Known differences from php-fpm, all rare in real configs: PHP constants in unquoted
//! values (`E_ALL`) and INI expressions (`a|b`) are not evaluated (expressions are rejected);
//! `${VAR}` reads only the environment, not php.ini settings; an unterminated `'` is an error;
//! negative counts and timeouts are rejected; `user` is not required of pools (php-fpm
//! requires it only when started as root); `WATCHDOG_USEC` does not override `systemd_interval`;
//! a config file must be a regular file of at most 16 MiB (a device or FIFO is refused, not
//! read without end).

mod accounts;
mod include;
mod scan;
mod validate;
mod values;

use scan::{Env, Line, scan_line};
use validate::resolve_under;
use values::{GLOBAL_DIRECTIVES, Kind, POOL_ARRAYS, POOL_DIRECTIVES, Value, convert, parse_bool};

use super::{BuildDirs, FpmConfig, Global, Location, PmStyle, Pool, Problem};
use crate::error::ConfigError;
use crate::listen::ListenAddr;
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to load a config: the environment used for `${VAR}` and the bases of relative paths.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Like php-fpm's `--prefix`; `None` uses the binary's compiled-in directories (`build`).
    pub prefix: Option<PathBuf>,
    /// The php-fpm binary's compiled-in directories (Debian's when not asked).
    pub build: BuildDirs,
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
    Ok(loader.into_model(main))
}

/// php-fpm refuses to nest more files than this (the main file counts).
const MAX_INCLUDE_DEPTH: usize = 5;
/// The most one config file may hold. Real ones are a few KiB; an `include` that names a
/// device (`/dev/zero`) or a runaway file must not be read into memory without end.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// php-fpm's smallest accepted `log_limit`.
const MIN_LOG_LIMIT: i64 = 512;
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
    /// The binary's compiled-in directories, as given.
    build: BuildDirs,
    /// `PHP_PREFIX`: the base of relative pool paths and includes without `--prefix`.
    default_prefix: String,
    /// `PHP_LOCALSTATEDIR`: the base of a relative `pid`/`error_log` without `--prefix`.
    state_dir: String,
    /// Set when a relative path was resolved under `build` (see
    /// [`FpmConfig::uses_build_dirs`]).
    used_build: std::cell::Cell<bool>,
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
            build: opts.build.clone(),
            default_prefix: opts.build.prefix.display().to_string(),
            state_dir: opts.build.localstatedir.display().to_string(),
            used_build: std::cell::Cell::new(false),
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
        let bytes = match read_config_file(path) {
            Ok(bytes) => bytes,
            Err(message) => {
                self.problem(included_at, message);
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
        self.resolve_in(path, self.prefix.as_deref(), default)
    }

    /// [`resolve_under`], noting when `default` (a compiled-in directory) was used.
    fn resolve_in(&self, path: &str, base: Option<&Path>, default: &str) -> String {
        if base.is_none() && !path.starts_with('/') {
            self.used_build.set(true);
        }
        resolve_under(path, base, default)
    }
}

/// Reads one config file: a regular file of at most [`MAX_FILE_BYTES`]. It is opened
/// non-blocking, so a FIFO is refused instead of waiting for a writer.
fn read_config_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |why: String| format!("cannot read {}: {why}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| cannot(e.to_string()))?;
    let meta = file.metadata().map_err(|e| cannot(e.to_string()))?;
    if !meta.is_file() {
        return Err(cannot("not a regular file".to_string()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(cannot(format!(
            "larger than {} MiB, which no FPM config is",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` into a new temp dir; `{dir}` in their text stands for that dir.
    pub(super) fn files(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = text.replace("{dir}", &dir.path().display().to_string());
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    pub(super) fn problems(dir: &Path) -> Vec<(String, usize, String)> {
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

    pub(super) const POOL: &str = "user = nobody\npm = static\npm.max_children = 1\n";

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
    fn environment_comes_from_the_options() {
        let dir = files(&[(
            "main.conf",
            &format!("[www]\nlisten = {{dir}}/${{SOCK}}.sock\n{POOL}"),
        )]);
        let opts = LoadOptions {
            env: Some([("SOCK".to_string(), "app".to_string())].into()),
            ..LoadOptions::default()
        };
        let config = load_with(&dir.path().join("main.conf"), &opts).unwrap();
        let expected = dir.path().join("app.sock");
        assert_eq!(config.pools[0].listen_raw, expected.display().to_string());
    }

    /// The binary is asked for its directories only when a path needs them: an absolute
    /// config does not, one relative path (or a default such as `error_log`) does.
    #[test]
    fn the_compiled_in_directories_are_needed_only_for_relative_paths() {
        let dir = files(&[
            (
                "absolute.conf",
                "[global]\npid = {dir}/fpm.pid\nerror_log = {dir}/error.log\n[www]\nlisten = {dir}/www.sock\nslowlog = {dir}/slow.log\nuser = nobody\npm = static\npm.max_children = 1\n",
            ),
            (
                "default-log.conf",
                "[global]\npid = {dir}/fpm.pid\n[www]\nlisten = {dir}/www.sock\nuser = nobody\npm = static\npm.max_children = 1\n",
            ),
            (
                "relative-socket.conf",
                "[global]\nerror_log = {dir}/error.log\n[www]\nlisten = run/www.sock\nuser = nobody\npm = static\npm.max_children = 1\n",
            ),
        ]);
        let needs = |name: &str| {
            load_lenient(&dir.path().join(name), &LoadOptions::default())
                .unwrap()
                .0
                .uses_build_dirs
        };
        assert!(!needs("absolute.conf"));
        assert!(needs("default-log.conf"));
        assert!(needs("relative-socket.conf"));
    }

    /// A binary built with another prefix (the Docker images: `/usr/local`) resolves
    /// relative paths under its own directories, without `--prefix`.
    #[test]
    fn relative_paths_follow_the_binarys_compiled_in_directories() {
        let dir = files(&[
            (
                "etc/php-fpm.conf",
                "[global]\npid = run/fpm.pid\ninclude=etc/php-fpm.d/*.conf\n",
            ),
            (
                "etc/php-fpm.d/www.conf",
                &format!("[www]\nlisten = run/www.sock\nslowlog = log/$pool.slow\n{POOL}"),
            ),
        ]);
        let d = dir.path();
        let opts = LoadOptions {
            build: BuildDirs {
                prefix: d.to_path_buf(),
                localstatedir: d.join("var"),
            },
            ..LoadOptions::default()
        };
        let config = load_with(&d.join("etc/php-fpm.conf"), &opts).unwrap();
        assert_eq!(config.files[1], d.join("etc/php-fpm.d/www.conf"));
        assert_eq!(config.global.pid_file, Some(d.join("var/run/fpm.pid")));
        assert_eq!(
            config.global.error_log,
            d.join("var/log/php-fpm.log").display().to_string()
        );
        let pool = &config.pools[0];
        assert_eq!(
            pool.listen_raw,
            d.join("run/www.sock").display().to_string()
        );
        assert_eq!(
            pool.slowlog.as_deref(),
            Some(d.join("log/www.slow").display().to_string().as_str())
        );
        assert_eq!(config.prefix, None);
        assert_eq!(config.build, opts.build);
        // Under --prefix the same config puts pid and error_log under the prefix itself.
        let opts = LoadOptions {
            prefix: Some(d.to_path_buf()),
            ..opts
        };
        let config = load_with(&d.join("etc/php-fpm.conf"), &opts).unwrap();
        assert_eq!(config.global.pid_file, Some(d.join("run/fpm.pid")));
        assert_eq!(config.prefix.as_deref(), Some(d));
    }

    #[test]
    fn an_include_of_a_device_or_fifo_is_refused_not_read_forever() {
        let dir = files(&[(
            "main.conf",
            "[global]\ninclude = /dev/zero\ninclude = {dir}/fifo\n",
        )]);
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = load(&dir.path().join("main.conf")).unwrap_err();
        let found: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            found[0].contains("main.conf:2: cannot read /dev/zero: not a regular file"),
            "{found:?}"
        );
        assert!(
            found[1].contains("main.conf:3: cannot read")
                && found[1].contains("fifo: not a regular file"),
            "{found:?}"
        );
    }

    #[test]
    fn a_config_file_past_the_size_limit_is_refused() {
        let dir = files(&[("main.conf", "[global]\ninclude = {dir}/big.conf\n")]);
        let big = std::fs::File::create(dir.path().join("big.conf")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = load(&dir.path().join("main.conf")).unwrap_err();
        assert!(
            err.problems[0]
                .to_string()
                .contains("main.conf:2: cannot read"),
            "{err}"
        );
        assert!(
            err.problems[0].message.contains("larger than 16 MiB"),
            "{err}"
        );
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
}
