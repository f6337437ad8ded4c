//! Parsing php-fpm's INI dialect into [`FpmConfig`](super::FpmConfig).

use super::FpmConfig;
use crate::error::ConfigError;
use std::path::{Path, PathBuf};

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
    let _ = (path, opts);
    Err(ConfigError::msg("config parsing is not implemented yet"))
}
