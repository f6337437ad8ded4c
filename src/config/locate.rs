//! Finding the main FPM config file and the php-fpm binary that goes with it.
use crate::error::{ConfigError, Error};
use std::path::{Path, PathBuf};

/// Temporary: explicit path only.
pub fn find_config(explicit: Option<&Path>, _php_version: Option<&str>) -> Result<PathBuf, Error> {
    explicit
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Config(ConfigError::msg("pass -c")))
}

/// Temporary.
pub fn find_binary(
    _config: &Path,
    explicit: Option<&Path>,
    _php_version: Option<&str>,
) -> Result<PathBuf, Error> {
    Ok(explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/php-fpm8.2")))
}
