//! Finding the main FPM config file and the php-fpm binary that goes with it.
//!
//! [`find_config`] and [`find_binary`] search the real file system; the `_in` variants
//! take the root to search under (and the `$PATH` to use), so they can be tried on a
//! directory tree built for the purpose. An explicit path always wins and must exist.

use crate::error::{ConfigError, Error, Result};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Where distributions install the main config, relative to the root, in search order.
const CONFIG_PATTERNS: &[&str] = &[
    "etc/php/*/fpm/php-fpm.conf",
    "etc/php-fpm.conf",
    "usr/local/etc/php-fpm.conf",
];

/// Directories searched for php-fpm after `$PATH`, relative to the root.
const SBIN_DIRS: &[&str] = &["usr/sbin", "usr/local/sbin"];

/// Finds the main config: `explicit` when given (it must exist), else
/// `/etc/php/X.Y/fpm/php-fpm.conf` for `php_version`, else the only one of
/// `/etc/php/*/fpm/php-fpm.conf`, `/etc/php-fpm.conf` and `/usr/local/etc/php-fpm.conf`.
pub fn find_config(explicit: Option<&Path>, php_version: Option<&str>) -> Result<PathBuf> {
    find_config_in(Path::new("/"), explicit, php_version)
}

/// [`find_config`] with the well-known locations taken under `root`.
pub fn find_config_in(
    root: &Path,
    explicit: Option<&Path>,
    php_version: Option<&str>,
) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(path.to_path_buf()),
            Ok(_) => Err(config_error(format!("{} is not a file", path.display()))),
            Err(e) => Err(config_error(format!(
                "cannot use config file {}: {e}",
                path.display()
            ))),
        };
    }
    if let Some(version) = php_version {
        check_version(version)?;
        let path = root.join(format!("etc/php/{version}/fpm/php-fpm.conf"));
        return if path.is_file() {
            Ok(path)
        } else {
            Err(config_error(format!(
                "no php-fpm config for PHP {version}: {} does not exist",
                path.display()
            )))
        };
    }
    let mut found = Vec::new();
    for pattern in CONFIG_PATTERNS {
        found.extend(
            glob_under(root, pattern)
                .into_iter()
                .filter(|p| p.is_file()),
        );
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(config_error(format!(
            "no php-fpm config found (looked for {}); pass -c PATH",
            join_paths(CONFIG_PATTERNS.iter().map(|p| root.join(p)))
        ))),
        several => Err(config_error(format!(
            "several php-fpm configs found: {}; pass --php-version X.Y or -c PATH",
            join_paths(several.iter().cloned())
        ))),
    }
}

/// Finds the php-fpm binary for `config`: `explicit` when given (it must be executable);
/// `/usr/sbin/php-fpmX.Y` for a config under `/etc/php/X.Y/fpm/`; otherwise, searching
/// `$PATH`, `/usr/sbin` and `/usr/local/sbin`: `php-fpmX.Y` when `php_version` is given,
/// else `php-fpm`, else the only versioned `php-fpmX.Y` there is.
pub fn find_binary(
    config: &Path,
    explicit: Option<&Path>,
    php_version: Option<&str>,
) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH");
    find_binary_in(
        Path::new("/"),
        path_var.as_deref(),
        config,
        explicit,
        php_version,
    )
}

/// [`find_binary`] with the well-known locations taken under `root` and `path_var` as
/// `$PATH` (its entries are used as they are).
pub fn find_binary_in(
    root: &Path,
    path_var: Option<&OsStr>,
    config: &Path,
    explicit: Option<&Path>,
    php_version: Option<&str>,
) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(Error::BinaryNotFound(format!(
                "{} is not an executable file",
                path.display()
            )))
        };
    }
    let dirs = search_dirs(root, path_var);
    let config_version = debian_version(root, config);
    if let Some(version) = &config_version {
        let path = root.join(format!("usr/sbin/php-fpm{version}"));
        if is_executable(&path) {
            return Ok(path);
        }
    }
    if let Some(version) = config_version.as_deref().or(php_version) {
        check_version(version)?;
        let name = format!("php-fpm{version}");
        return first_in(&dirs, &name).ok_or_else(|| {
            Error::BinaryNotFound(format!(
                "{name} not found in {}; install it or pass the binary's path",
                join_paths(dirs.iter().cloned())
            ))
        });
    }
    if let Some(path) = first_in(&dirs, "php-fpm") {
        return Ok(path);
    }
    match versioned_binaries(&dirs).as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::BinaryNotFound(format!(
            "no php-fpm binary found in {}; pass the binary's path",
            join_paths(dirs.iter().cloned())
        ))),
        several => Err(Error::BinaryNotFound(format!(
            "several php-fpm binaries found: {}; pass --php-version X.Y or the binary's path",
            join_paths(several.iter().cloned())
        ))),
    }
}

fn config_error(message: String) -> Error {
    Error::Config(ConfigError::msg(message))
}

/// True for versions written like `8.2`.
fn is_version(version: &str) -> bool {
    match version.split_once('.') {
        Some((major, minor)) => [major, minor]
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

fn check_version(version: &str) -> Result<()> {
    if is_version(version) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "a PHP version looks like 8.2, not '{version}'"
        )))
    }
}

/// `X.Y` when `config` is Debian's `/etc/php/X.Y/fpm/...` (under `root`).
fn debian_version(root: &Path, config: &Path) -> Option<String> {
    let relative = config.strip_prefix(root).unwrap_or(config);
    let parts: Vec<&OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [etc, php, version, fpm, _, ..] if *etc == "etc" && *php == "php" && *fpm == "fpm" => {
            let version = version.to_str()?;
            is_version(version).then(|| version.to_string())
        }
        _ => None,
    }
}

/// `$PATH`'s directories, then the sbin directories under `root`, without repeats.
fn search_dirs(root: &Path, path_var: Option<&OsStr>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let from_path = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in from_path
        .into_iter()
        .filter(|d| !d.as_os_str().is_empty())
        .chain(SBIN_DIRS.iter().map(|d| root.join(d)))
    {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The first executable called `name` in `dirs`.
fn first_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

/// Every executable `php-fpmX.Y` in `dirs`; a name found twice counts once (the first). A
/// directory reached twice (`/sbin` is `/usr/sbin` on a merged-/usr system) is read once.
fn versioned_binaries(dirs: &[PathBuf]) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found: Vec<PathBuf> = Vec::new();
    let mut listed: Vec<(u64, u64)> = Vec::new();
    for dir in dirs {
        if let Ok(m) = std::fs::metadata(dir) {
            if listed.contains(&(m.dev(), m.ino())) {
                continue;
            }
            listed.push((m.dev(), m.ino()));
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("php-fpm"))
                    .is_some_and(is_version)
            })
            .map(|e| e.path())
            .filter(|p| is_executable(p))
            .collect();
        here.sort();
        for path in here {
            if !found.iter().any(|f| f.file_name() == path.file_name()) {
                found.push(path);
            }
        }
    }
    found
}

/// A regular file (after symlinks) with an execute bit.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The existing paths matching `pattern` under `root`, sorted.
fn glob_under(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let root = glob::Pattern::escape(&root.to_string_lossy());
    let full = format!("{}/{pattern}", root.trim_end_matches('/'));
    let mut paths: Vec<PathBuf> = match glob::glob(&full) {
        Ok(entries) => entries.filter_map(|e| e.ok()).collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
}

fn join_paths(paths: impl Iterator<Item = PathBuf>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Creates `files` (executable when the name contains `bin/`) under a new temp dir.
    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "").unwrap();
            if file.contains("bin/") {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        dir
    }

    fn message(result: Result<PathBuf>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn one_debian_config_is_found() {
        let root = tree(&["etc/php/8.2/fpm/php-fpm.conf"]);
        let found = find_config_in(root.path(), None, None).unwrap();
        assert_eq!(found, root.path().join("etc/php/8.2/fpm/php-fpm.conf"));
    }

    #[test]
    fn several_configs_are_all_named() {
        let root = tree(&[
            "etc/php/8.1/fpm/php-fpm.conf",
            "etc/php/8.2/fpm/php-fpm.conf",
            "usr/local/etc/php-fpm.conf",
        ]);
        let err = message(find_config_in(root.path(), None, None));
        assert!(err.contains("8.1/fpm/php-fpm.conf"), "{err}");
        assert!(err.contains("8.2/fpm/php-fpm.conf"), "{err}");
        assert!(err.contains("usr/local/etc/php-fpm.conf"), "{err}");
        assert!(err.contains("--php-version X.Y or -c PATH"), "{err}");
        let picked = find_config_in(root.path(), None, Some("8.1")).unwrap();
        assert_eq!(picked, root.path().join("etc/php/8.1/fpm/php-fpm.conf"));
    }

    #[test]
    fn missing_configs_are_reported() {
        let root = tree(&["etc/php/8.2/fpm/php-fpm.conf"]);
        let err = message(find_config_in(root.path(), None, Some("7.4")));
        assert!(err.contains("etc/php/7.4/fpm/php-fpm.conf"), "{err}");
        let err = message(find_config_in(root.path(), None, Some("8")));
        assert!(err.contains("'8'"), "{err}");
        let empty = tree(&[]);
        let err = message(find_config_in(empty.path(), None, None));
        assert!(err.contains("no php-fpm config found"), "{err}");
    }

    #[test]
    fn explicit_config_wins_and_must_exist() {
        let root = tree(&[
            "etc/php/8.1/fpm/php-fpm.conf",
            "etc/php/8.2/fpm/php-fpm.conf",
        ]);
        let mine = root.path().join("etc/php/8.2/fpm/php-fpm.conf");
        assert_eq!(
            find_config_in(root.path(), Some(&mine), None).unwrap(),
            mine
        );
        let missing = root.path().join("nope.conf");
        let err = message(find_config_in(root.path(), Some(&missing), Some("8.1")));
        assert!(err.contains("nope.conf"), "{err}");
    }

    #[test]
    fn debian_config_gets_its_versioned_binary() {
        let root = tree(&[
            "etc/php/8.2/fpm/php-fpm.conf",
            "usr/sbin/php-fpm8.1",
            "usr/sbin/php-fpm8.2",
        ]);
        let config = root.path().join("etc/php/8.2/fpm/php-fpm.conf");
        let found = find_binary_in(root.path(), None, &config, None, None).unwrap();
        assert_eq!(found, root.path().join("usr/sbin/php-fpm8.2"));
        let config = root.path().join("etc/php/7.4/fpm/php-fpm.conf");
        let err = message(find_binary_in(root.path(), None, &config, None, None));
        assert!(err.contains("php-fpm7.4 not found"), "{err}");
    }

    #[test]
    fn unversioned_binary_is_preferred_elsewhere() {
        let root = tree(&["usr/sbin/php-fpm8.1", "opt/bin/php-fpm"]);
        let config = root.path().join("srv/fpm.conf");
        let path_var = root.path().join("opt/bin");
        let found =
            find_binary_in(root.path(), Some(path_var.as_os_str()), &config, None, None).unwrap();
        assert_eq!(found, root.path().join("opt/bin/php-fpm"));
        let found = find_binary_in(
            root.path(),
            Some(path_var.as_os_str()),
            &config,
            None,
            Some("8.1"),
        )
        .unwrap();
        assert_eq!(found, root.path().join("usr/sbin/php-fpm8.1"));
    }

    #[test]
    fn several_versioned_binaries_need_a_choice() {
        let root = tree(&["usr/sbin/php-fpm8.1", "usr/local/sbin/php-fpm8.3"]);
        let config = root.path().join("srv/fpm.conf");
        let err = message(find_binary_in(root.path(), None, &config, None, None));
        assert!(
            err.contains("php-fpm8.1") && err.contains("php-fpm8.3"),
            "{err}"
        );
        let single = tree(&["usr/local/sbin/php-fpm8.3"]);
        let found = find_binary_in(single.path(), None, &config, None, None).unwrap();
        assert_eq!(found, single.path().join("usr/local/sbin/php-fpm8.3"));
    }

    #[test]
    fn a_directory_reached_twice_is_read_once() {
        // A merged-/usr system: `sbin` is a link to `usr/sbin`, and `$PATH` names both.
        let root = tree(&["usr/sbin/php-fpm8.2"]);
        std::os::unix::fs::symlink("usr/sbin", root.path().join("sbin")).unwrap();
        let config = root.path().join("srv/fpm.conf");
        let path_var =
            std::env::join_paths([root.path().join("sbin"), root.path().join("usr/sbin")]).unwrap();
        let found = find_binary_in(root.path(), Some(&path_var), &config, None, None).unwrap();
        assert_eq!(found, root.path().join("sbin/php-fpm8.2"));
    }

    #[test]
    fn explicit_binary_must_be_executable() {
        let root = tree(&["usr/sbin/php-fpm8.2", "etc/not-executable"]);
        let config = root.path().join("etc/php/8.2/fpm/php-fpm.conf");
        let plain = root.path().join("etc/not-executable");
        let err = find_binary_in(root.path(), None, &config, Some(&plain), None).unwrap_err();
        assert!(matches!(err, Error::BinaryNotFound(_)), "{err}");
        assert!(err.to_string().contains("not-executable"), "{err}");
        let bin = root.path().join("usr/sbin/php-fpm8.2");
        assert_eq!(
            find_binary_in(root.path(), None, &config, Some(&bin), None).unwrap(),
            bin
        );
    }
}
