//! The supervisor's control socket: `fpmctl restart|reload|stop|status` run against a
//! supervised config talk to the running supervisor instead of acting on their own. One
//! request per connection, one JSON line each way. The socket is `0600` in the lock directory
//! (see [`crate::lock::secure_dir`]) and both sides check each other: the supervisor answers
//! only root or its own user, and a client believes a socket only when the socket file and
//! the peer (`SO_PEERCRED`) belong to root or the invoking user; any other is ignored with a
//! warning, and the command acts on its own.
//!
//! The supervisor side never blocks on a client: connections are non-blocking, each has a
//! deadline to send its request ([`REQUEST_DEADLINE`]), a request is at most
//! [`MAX_REQUEST`] bytes (reading stops there, so a huge request costs no memory), and at
//! most [`MAX_CONNECTIONS`] are open at once. Errors never echo what the client sent.

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
    /// `restart --cold`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cold: bool,
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

/// Reads one line from `stream` within `wait` in all: the socket's read timeout is set to
/// what is left of one deadline before every read, so a peer that sends a byte at a time
/// cannot stretch the wait (a per-read timeout restarts with each byte).
fn read_line_within(stream: &UnixStream, wait: Duration) -> std::io::Result<String> {
    struct Within<'a> {
        stream: &'a UnixStream,
        deadline: crate::deadline::Deadline,
    }
    impl Read for Within<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.deadline.expired() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no whole answer in time",
                ));
            }
            let left = self.deadline.remaining().max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(left))?;
            let mut s = self.stream;
            s.read(buf)
        }
    }
    read_line_bounded(Within {
        stream,
        deadline: crate::deadline::Deadline::after(wait),
    })
}

/// Parses one reply line from the supervisor.
pub fn parse_reply(line: &str) -> Result<Reply> {
    serde_json::from_str(line.trim())
        .map_err(|e| Error::Other(format!("bad answer from the supervisor: {e}")))
}

/// The largest request accepted, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send its request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Connections open at once (reading a request or waiting for an answer).
pub const MAX_CONNECTIONS: usize = 32;

/// What reading from a connection gave.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Nothing complete yet: wait for more.
    Pending,
    /// A whole request.
    Request(Request),
    /// A request that cannot be served; the text says why (never the request itself).
    Bad(String),
    /// The client went away before sending a whole request.
    Closed,
}

/// A connection reading its request without blocking.
#[derive(Debug)]
pub struct Conn {
    /// The stream (non-blocking).
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Wraps an accepted connection.
    pub fn new(stream: UnixStream) -> std::io::Result<Conn> {
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Reads what is there, never more than [`MAX_REQUEST`] bytes in all.
    pub fn read(&mut self) -> ReadOutcome {
        let mut chunk = [0u8; 4096];
        loop {
            let room = (MAX_REQUEST + 1).saturating_sub(self.buf.len());
            let want = room.min(chunk.len());
            match (&self.stream).read(&mut chunk[..want]) {
                Ok(0) => return self.feed(&[], true),
                Ok(n) => {
                    let out = self.feed(&chunk[..n], false);
                    if out != ReadOutcome::Pending {
                        return out;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return ReadOutcome::Pending;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Adds bytes to the request read so far (`eof`: the client closed its side).
    pub fn feed(&mut self, bytes: &[u8], eof: bool) -> ReadOutcome {
        self.buf.extend_from_slice(bytes);
        if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            return parse_request(&self.buf[..end]);
        }
        if self.buf.len() > MAX_REQUEST {
            return ReadOutcome::Bad(format!(
                "control request too large (limit {} KiB)",
                MAX_REQUEST / 1024
            ));
        }
        if eof {
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                return ReadOutcome::Closed;
            }
            return parse_request(&self.buf);
        }
        ReadOutcome::Pending
    }
}

/// Parses one request line; the error never quotes it.
pub fn parse_request(line: &[u8]) -> ReadOutcome {
    match serde_json::from_slice::<Request>(line) {
        Ok(r) => ReadOutcome::Request(r),
        Err(e) => ReadOutcome::Bad(format!(
            "bad control request ({} bytes): not a JSON object with a \"cmd\" field ({})",
            line.len(),
            e.classify_name()
        )),
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// Writes a reply without blocking (a reply is far smaller than a socket buffer) and closes.
pub fn write_reply(mut stream: UnixStream, reply: &Reply) {
    let _ = stream.set_nonblocking(true);
    let mut line = serde_json::to_string(reply).unwrap_or_else(|_| "{}".into());
    line.push('\n');
    let _ = stream.write_all(line.as_bytes());
}

/// The least time given to the supervisor's answer: a caller at its deadline (`start`'s last
/// look at readiness) still gets the answer a status gives at once, and a zero read timeout
/// is an error of the socket interface, not "no time left".
pub const MIN_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Sends `req` to the supervisor of `config`, if one runs; `Ok(None)` when none answers, or
/// when the socket or its peer belongs to neither root nor us (a warning says so).
/// `wait` bounds how long the supervisor may take (a restart waits for readiness); it is
/// at least [`MIN_ANSWER_WAIT`].
pub fn request(config: &Path, req: &Request, wait: Duration) -> Result<Option<Reply>> {
    let wait = wait.max(MIN_ANSWER_WAIT);
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
    let line = read_line_within(&stream, wait).map_err(|e| {
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

    /// A supervisor that answers one byte at a time never stretches the client's wait past
    /// its deadline (each byte used to restart the read timeout).
    #[test]
    fn a_dribbling_answer_is_cut_off_at_the_wait_not_per_byte() {
        let (client, server) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let mut server = server;
            for b in b"{\"code\":0,\"text\":\"a slow answer that takes long to arrive\"}\n" {
                if server.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let err = read_line_within(&client, Duration::from_millis(500)).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        drop(client);
        let _ = writer.join();
    }

    fn conn() -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Conn::new(a).unwrap(), b)
    }

    #[test]
    fn an_endless_control_line_is_cut_off_not_buffered() {
        // A peer that never sends a newline: refused after MAX_LINE bytes.
        let err = read_line_bounded(std::io::repeat(b'a')).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let ok = read_line_bounded(&b"{\"cmd\":\"status\"}\nrest"[..]).unwrap();
        assert_eq!(
            parse_request(ok.trim().as_bytes()),
            ReadOutcome::Request(Request::new("status"))
        );
    }

    #[test]
    fn a_request_may_arrive_in_pieces() {
        let (mut c, _peer) = conn();
        assert_eq!(c.feed(b"{\"cmd\":", false), ReadOutcome::Pending);
        assert_eq!(
            c.feed(b"\"status\"}\n", false),
            ReadOutcome::Request(Request::new("status"))
        );
    }

    #[test]
    fn an_oversized_request_is_refused_without_being_kept_or_echoed() {
        let (mut c, mut peer) = conn();
        let secret = "S3CRET".repeat(20_000);
        let mut out = ReadOutcome::Pending;
        std::thread::spawn(move || {
            let _ = peer.write_all(secret.as_bytes());
        });
        for _ in 0..10_000 {
            out = c.read();
            if out != ReadOutcome::Pending {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        match out {
            ReadOutcome::Bad(msg) => {
                assert!(msg.contains("too large"), "{msg}");
                assert!(!msg.contains("S3CRET"));
            }
            other => panic!("{other:?}"),
        }
        assert!(c.buf.len() <= MAX_REQUEST + 4096);
    }

    #[test]
    fn a_malformed_request_is_refused_without_echo() {
        let (mut c, _peer) = conn();
        match c.feed(b"password=hunter2\n", false) {
            ReadOutcome::Bad(msg) => assert!(!msg.contains("hunter2"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_client_that_closes_early_is_just_closed() {
        let (mut c, peer) = conn();
        drop(peer);
        assert_eq!(c.read(), ReadOutcome::Closed);
    }

    #[test]
    fn a_silent_client_leaves_the_read_pending() {
        let (mut c, _peer) = conn();
        assert_eq!(c.read(), ReadOutcome::Pending);
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
