//! The supervisor's control socket: `fpmctl restart|reload|stop|status` run against a
//! supervised config talk to the running supervisor instead of acting on their own. One
//! request per connection, one JSON line each way. The socket is `0600` in the lock directory
//! (see [`crate::lock::secure_dir`]) and both sides check each other: the supervisor answers
//! only root or its own user, and a client believes a socket only when the socket file and
//! the peer (`SO_PEERCRED`) belong to root or the invoking user; any other is ignored with a
//! warning, and the command acts on its own.

use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::outcome::Outcome;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A request: the command and every option given to it, so the supervisor honours them or
/// refuses them (exit 2), never drops them. A field this supervisor does not know is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `restart`, `reload`, `stop` or `status`.
    pub cmd: String,
    /// `--timeout`, in milliseconds: readiness of the new FPM for `restart`/`reload`, the
    /// whole stop for `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `--signal-plan`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_plan: Option<String>,
    /// `restart --stop-timeout`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_ms: Option<u64>,
    /// `restart --no-ready-wait`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_ready_wait: bool,
}

impl Request {
    /// A request without options.
    pub fn new(cmd: &str) -> Request {
        Request {
            cmd: cmd.to_string(),
            ..Request::default()
        }
    }
}

/// A reply: the command's [`Outcome`], serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Exit code.
    pub code: i32,
    /// Human text.
    pub text: String,
    /// JSON result.
    pub json: serde_json::Value,
    /// The error message, when the command failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&Outcome> for Reply {
    fn from(o: &Outcome) -> Reply {
        Reply {
            code: o.code.code(),
            text: o.text.clone(),
            json: o.json.clone(),
            error: o.error.clone(),
        }
    }
}

impl From<Reply> for Outcome {
    /// The supervisor's outcome as it was, its exit code included; a code outside the
    /// table is a failure that says so.
    fn from(r: Reply) -> Outcome {
        let Some(code) = ExitCode::from_code(r.code) else {
            return Outcome::failure(
                ExitCode::Failure,
                format!(
                    "unknown exit code {} ({})",
                    r.code,
                    r.error.as_deref().unwrap_or(r.text.trim())
                ),
            );
        };
        let error = match r.error {
            Some(e) => Some(e),
            None if code != ExitCode::Ok => Some(r.text.trim().to_string()),
            None => None,
        };
        Outcome {
            code,
            text: if error.is_some() {
                String::new()
            } else {
                r.text
            },
            json: r.json,
            error,
        }
    }
}

/// The control socket path for a config (beside its lock file).
pub fn socket_path(config: &Path) -> PathBuf {
    crate::lock::lock_path(config).with_extension("ctl")
}

/// Binds the control socket (replacing a stale one nobody answers on).
pub fn bind(config: &Path) -> Result<UnixListener> {
    crate::lock::secure_dir()?;
    let path = socket_path(config);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(Error::Other(format!(
                "another supervisor already answers on {}",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("control socket", e))?;
    Ok(listener)
}

/// True when `uid` may be trusted on the control socket: root or the running user.
pub fn trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// The peer's uid (`SO_PEERCRED`), if the kernel tells it.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

/// True when the peer may control us: root or our own user.
pub fn peer_allowed(stream: &UnixStream) -> bool {
    peer_uid(stream).is_some_and(trusted_uid)
}

/// Reads one request from a freshly accepted connection (bounded wait).
pub fn read_request(stream: &UnixStream) -> Result<Request> {
    stream
        .set_nonblocking(false)
        .and_then(|_| stream.set_read_timeout(Some(Duration::from_secs(2))))
        .map_err(|e| Error::io("control connection", e))?;
    let line = read_line_bounded(stream).map_err(|e| Error::io("reading a control request", e))?;
    parse_request(&line)
}

/// The longest line either side reads: a status reply with every pool's JSON fits many
/// times over; a peer that sends more without a newline is cut off, not buffered.
pub const MAX_LINE: usize = 1 << 20;

/// Reads one line of at most [`MAX_LINE`] bytes.
fn read_line_bounded(stream: impl Read) -> std::io::Result<String> {
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE as u64 + 1)).read_line(&mut line)?;
    if line.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(line)
}

/// Parses one request line (the JSON object `{"cmd": ...}`).
pub fn parse_request(line: &str) -> Result<Request> {
    serde_json::from_str(line.trim()).map_err(|e| {
        let shown: String = line.trim().chars().take(200).collect();
        Error::Other(format!("bad control request {shown:?}: {e}"))
    })
}

/// Parses one reply line from the supervisor.
pub fn parse_reply(line: &str) -> Result<Reply> {
    serde_json::from_str(line.trim())
        .map_err(|e| Error::Other(format!("bad answer from the supervisor: {e}")))
}

/// Writes a reply and closes.
pub fn write_reply(mut stream: UnixStream, reply: &Reply) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut line = serde_json::to_string(reply).unwrap_or_else(|_| "{}".into());
    line.push('\n');
    let _ = stream.write_all(line.as_bytes());
}

/// Sends `req` to the supervisor of `config`, if one runs; `Ok(None)` when none answers, or
/// when the socket or its peer belongs to neither root nor us (a warning says so).
/// `wait` bounds how long the supervisor may take (a restart waits for readiness).
pub fn request(config: &Path, req: &Request, wait: Duration) -> Result<Option<Reply>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let path = socket_path(config);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Ok(None);
    };
    if !meta.file_type().is_socket() || !trusted_uid(meta.uid()) {
        tracing::warn!(
            uid = meta.uid(),
            "ignoring {}: it is not a socket of root or of this user (uid {}); acting directly",
            path.display(),
            meta.uid()
        );
        return Ok(None);
    }
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    match peer_uid(&stream) {
        Some(uid) if trusted_uid(uid) => {}
        peer => {
            tracing::warn!(
                "ignoring {}: the process answering on it runs as uid {}, neither root nor this user; acting directly",
                path.display(),
                peer.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            );
            return Ok(None);
        }
    }
    let req = serde_json::to_string(req).unwrap_or_default() + "\n";
    stream.write_all(req.as_bytes()).map_err(|e| {
        Error::io(
            format!("talking to the supervisor on {}", path.display()),
            e,
        )
    })?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| Error::io("control socket", e))?;
    let line = read_line_bounded(&stream).map_err(|e| {
        Error::io(
            format!("waiting for the supervisor's answer on {}", path.display()),
            e,
        )
    })?;
    if line.trim().is_empty() {
        return Err(Error::Other(format!(
            "the supervisor on {} closed the connection without an answer",
            path.display()
        )));
    }
    parse_reply(&line).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_control_line_is_cut_off_not_buffered() {
        // A peer that never sends a newline: refused after MAX_LINE bytes.
        let err = read_line_bounded(std::io::repeat(b'a')).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let ok = read_line_bounded(&b"{\"cmd\":\"status\"}\nrest"[..]).unwrap();
        assert_eq!(parse_request(&ok).unwrap().cmd, "status");
    }

    #[test]
    fn a_reply_keeps_the_outcome_and_its_code() {
        for code in ExitCode::ALL {
            let out = if code == ExitCode::Ok {
                Outcome::ok("done\n", serde_json::json!({"a": 1}))
            } else {
                Outcome::failure(code, "it failed")
            };
            let line = serde_json::to_string(&Reply::from(&out)).unwrap();
            let back: Reply = serde_json::from_str(&line).unwrap();
            assert_eq!(Outcome::from(back), out);
        }
        let odd = Reply {
            code: 101,
            text: "boom".into(),
            json: serde_json::Value::Null,
            error: None,
        };
        let out = Outcome::from(odd);
        assert_eq!(out.code, ExitCode::Failure);
        assert!(out.error.unwrap().contains("101"));
    }

    #[test]
    fn options_travel_with_the_request_and_unknown_ones_are_refused() {
        let req = Request {
            timeout_ms: Some(1500),
            signal_plan: Some("QUIT:1s".into()),
            ..Request::new("stop")
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), req);
        assert_eq!(
            serde_json::to_string(&Request::new("status")).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"stop","force":true}"#).is_err());
    }
}
