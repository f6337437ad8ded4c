//! A small blocking FastCGI client: enough to ping FPM pools and read their status pages.
use crate::listen::ListenAddr;
use std::time::Duration;

/// Temporary.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FastCgiError(String);

/// Temporary.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: u16,
}

/// Temporary.
pub fn ping(_a: &ListenAddr, _p: &str, _t: Duration) -> Result<String, FastCgiError> {
    Err(FastCgiError("todo".into()))
}
/// Temporary.
pub fn probe(_a: &ListenAddr, _t: Duration) -> Result<Response, FastCgiError> {
    Err(FastCgiError("todo".into()))
}
/// Temporary.
pub fn status(_a: &ListenAddr, _p: &str, _t: Duration) -> Result<serde_json::Value, FastCgiError> {
    Err(FastCgiError("todo".into()))
}
