//! A small blocking FastCGI client: enough to ping FPM pools, read their status pages and
//! prove that a worker answers.
//!
//! This module owns the FastCGI wire format (records and name-value pairs), one
//! request/response exchange per connection under a single deadline, parsing the CGI
//! response (headers, `Status:`, body) and the [`ping`], [`status`] and [`probe`] helpers.
//! It only talks to sockets; starting, signalling or finding processes is done elsewhere.
//!
//! FPM is stricter than the FastCGI specification in two ways this client respects: it
//! decodes every `FCGI_PARAMS` record on its own, so a name-value pair never straddles two
//! records, and it refuses a `FCGI_PARAMS` record whose content plus padding exceeds 65535
//! bytes. Either mistake makes FPM reset the connection without an answer.

use crate::listen::ListenAddr;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
use nix::sys::time::TimeVal;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const VERSION_1: u8 = 1;
const TYPE_BEGIN_REQUEST: u8 = 1;
const TYPE_END_REQUEST: u8 = 3;
const TYPE_PARAMS: u8 = 4;
const TYPE_STDIN: u8 = 5;
const TYPE_STDOUT: u8 = 6;
const TYPE_STDERR: u8 = 7;
const ROLE_RESPONDER: u16 = 1;
/// One request per connection, so the id is always the same.
const REQUEST_ID: u16 = 1;
const HEADER_LEN: usize = 8;
/// The largest content of one record (the length field is 16 bits).
const MAX_CONTENT: usize = 0xffff;
/// The most stdout plus stderr kept from one response; more means a runaway server.
const MAX_RESPONSE: usize = 64 << 20;
/// How much of a body an error message quotes.
const EXCERPT_CHARS: usize = 200;

/// `protocolStatus` of `FCGI_END_REQUEST`: the request was handled.
pub const FCGI_REQUEST_COMPLETE: u8 = 0;
/// `protocolStatus`: the server cannot multiplex connections.
pub const FCGI_CANT_MPX_CONN: u8 = 1;
/// `protocolStatus`: the server is out of resources.
pub const FCGI_OVERLOADED: u8 = 2;
/// `protocolStatus`: the server does not know the requested role.
pub const FCGI_UNKNOWN_ROLE: u8 = 3;

/// The `SCRIPT_FILENAME` [`probe`] asks for. It lies directly under `/` so that FPM's
/// `cgi.fix_pathinfo` walk finds no existing file prefix to run, and its extension is not
/// one `security.limit_extensions` allows by default.
pub const PROBE_SCRIPT: &str = "/fpmctl-probe.does-not-exist";

/// One FastCGI request in the responder role.
///
/// [`Request::params`] turns it into the parameters nginx's `fastcgi_params` would send
/// for the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `REQUEST_METHOD`, like `GET`.
    pub method: String,
    /// `SCRIPT_FILENAME`: the file FPM would run.
    pub script_filename: String,
    /// `SCRIPT_NAME`: the path FPM matches against `ping.path` and `pm.status_path`.
    pub script_name: String,
    /// `REQUEST_URI`: path and query as a browser sent them.
    pub request_uri: String,
    /// `QUERY_STRING`, without the `?`.
    pub query_string: String,
    /// `CONTENT_TYPE` of the body; may be empty.
    pub content_type: String,
    /// More parameters, sent after the standard ones; a name that is already set replaces
    /// the standard value instead of being sent twice.
    pub extra_params: Vec<(String, String)>,
    /// The request body, sent as `FCGI_STDIN`; `CONTENT_LENGTH` is its length.
    pub body: Vec<u8>,
}

impl Request {
    /// A `GET` for `path` (which may carry a `?query`), with `SCRIPT_NAME` the path part and
    /// `SCRIPT_FILENAME` the same path, as with a document root of `/`. That is all FPM's
    /// ping and status handlers look at.
    pub fn get(path: &str) -> Request {
        let (script, query) = path.split_once('?').unwrap_or((path, ""));
        Request {
            method: "GET".to_string(),
            script_filename: script.to_string(),
            script_name: script.to_string(),
            request_uri: path.to_string(),
            query_string: query.to_string(),
            content_type: String::new(),
            extra_params: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `POST` of `body` to `path`, like [`Request::get`] otherwise.
    pub fn post(path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        Request {
            method: "POST".to_string(),
            content_type: content_type.to_string(),
            body: body.into(),
            ..Request::get(path)
        }
    }

    /// The same request for another `SCRIPT_FILENAME` (a real file under a document root).
    pub fn with_script_filename(mut self, script_filename: impl Into<String>) -> Request {
        self.script_filename = script_filename.into();
        self
    }

    /// The same request with one more parameter (or a standard one replaced).
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// Every parameter sent, in order: nginx's `fastcgi_params` set for this request, then
    /// [`Request::extra_params`] (replacing standard ones of the same name).
    pub fn params(&self) -> Vec<(String, String)> {
        let document_root = match self.script_filename.strip_suffix(&self.script_name) {
            Some(root) if !root.is_empty() && !self.script_name.is_empty() => root,
            _ => "/",
        };
        let standard: [(&str, &str); 18] = [
            ("SCRIPT_FILENAME", &self.script_filename),
            ("QUERY_STRING", &self.query_string),
            ("REQUEST_METHOD", &self.method),
            ("CONTENT_TYPE", &self.content_type),
            ("CONTENT_LENGTH", &self.body.len().to_string()),
            ("SCRIPT_NAME", &self.script_name),
            ("REQUEST_URI", &self.request_uri),
            ("DOCUMENT_URI", &self.script_name),
            ("DOCUMENT_ROOT", document_root),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "http"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            (
                "SERVER_SOFTWARE",
                concat!("fpmctl/", env!("CARGO_PKG_VERSION")),
            ),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_ADDR", "127.0.0.1"),
            ("SERVER_PORT", "80"),
            ("SERVER_NAME", "localhost"),
            ("REDIRECT_STATUS", "200"),
        ];
        let mut params: Vec<(String, String)> = standard
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for (name, value) in &self.extra_params {
            match params.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => params.push((name.clone(), value.clone())),
            }
        }
        params
    }
}

/// A complete answer: the raw streams, the `FCGI_END_REQUEST` fields and the CGI response
/// parsed out of stdout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Everything the application wrote to `FCGI_STDOUT`: CGI headers, blank line, body.
    pub stdout: Vec<u8>,
    /// Everything written to `FCGI_STDERR` (FPM sends PHP's log messages here).
    pub stderr: Vec<u8>,
    /// `appStatus` from `FCGI_END_REQUEST` (FPM always sends 0).
    pub app_status: u32,
    /// `protocolStatus` from `FCGI_END_REQUEST`; always [`FCGI_REQUEST_COMPLETE`] in a
    /// returned response, because [`request`] turns any other value into an error.
    pub protocol_status: u8,
    /// The HTTP status from the CGI `Status:` header; 200 without one.
    pub status: u16,
    /// The CGI headers in order, `Status:` included, values trimmed.
    pub headers: Vec<(String, String)>,
    /// What follows the headers.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Which part of an exchange ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the connection.
    Connect,
    /// Writing the request.
    Send,
    /// Waiting for and reading the response.
    Receive,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting",
            Phase::Send => "sending the request",
            Phase::Receive => "waiting for the response",
        })
    }
}

/// Why a FastCGI exchange failed. Every message names the address and fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum FastCgiError {
    /// Nothing accepted the connection (refused, no such socket, permission denied).
    #[error("cannot connect to FastCGI server {addr}: {source}")]
    Connect {
        /// The address as configured.
        addr: String,
        /// The OS error (for several candidate addresses, all of them in its message).
        #[source]
        source: io::Error,
    },
    /// The deadline passed.
    #[error("FastCGI server {addr} timed out while {phase}")]
    Timeout {
        /// The address as configured.
        addr: String,
        /// What was going on.
        phase: Phase,
    },
    /// The peer broke the protocol: hung up early, sent garbage, refused the request.
    #[error("FastCGI server {addr}: {detail}")]
    Protocol {
        /// The address as configured.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// Any other socket error.
    #[error("FastCGI server {addr}: I/O error: {source}")]
    Io {
        /// The address as configured.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A well-formed answer with an unwanted HTTP status.
    #[error("FastCGI server {addr} answered HTTP status {status}: {body}")]
    Status {
        /// The address as configured.
        addr: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body, on one line.
        body: String,
    },
}

impl FastCgiError {
    /// The address the failed exchange was with.
    pub fn addr(&self) -> &str {
        match self {
            FastCgiError::Connect { addr, .. }
            | FastCgiError::Timeout { addr, .. }
            | FastCgiError::Protocol { addr, .. }
            | FastCgiError::Io { addr, .. }
            | FastCgiError::Status { addr, .. } => addr,
        }
    }
}

/// Sends `req` to `addr` and reads the whole response.
///
/// `timeout` bounds the entire exchange (connect, write, read): each socket operation gets
/// the time that is left. TCP addresses try each of [`ListenAddr::connect_addrs`] in
/// order. The connection is closed after `FCGI_END_REQUEST`.
pub fn request(
    addr: &ListenAddr,
    req: &Request,
    timeout: Duration,
) -> Result<Response, FastCgiError> {
    let deadline = Deadline::after(timeout);
    let name = addr.to_string();
    let wire = encode_request(req).map_err(|detail| protocol(&name, detail))?;
    let mut conn = connect(addr, &name, &deadline)?;
    let hangup = send(&mut conn, &wire, &deadline, &name)?;
    let mut response = receive(&mut conn, &deadline, &name).map_err(|err| match (err, hangup) {
        // The server stopped reading part way and then did not answer either: say so.
        (FastCgiError::Protocol { addr, detail }, Some((sent, e))) => FastCgiError::Protocol {
            addr,
            detail: format!(
                "{detail} (it stopped reading the request after {sent} of {} bytes: {e})",
                wire.len()
            ),
        },
        (err, _) => err,
    })?;
    if response.protocol_status != FCGI_REQUEST_COMPLETE {
        return Err(protocol(
            &name,
            format!(
                "the server refused the request: {}",
                protocol_status_name(response.protocol_status)
            ),
        ));
    }
    let cgi = parse_cgi(&response.stdout).map_err(|detail| protocol(&name, detail))?;
    response.status = cgi.status;
    response.headers = cgi.headers;
    response.body = cgi.body;
    Ok(response)
}

/// Asks the pool's `ping.path` and returns the body (FPM's `ping.response`, `pong` by
/// default), trimmed. Any status but 200 is an error.
pub fn ping(addr: &ListenAddr, path: &str, timeout: Duration) -> Result<String, FastCgiError> {
    let response = request(addr, &Request::get(path), timeout)?;
    expect_200(addr, &response)?;
    Ok(String::from_utf8_lossy(&response.body).trim().to_string())
}

/// Reads the pool's status page (`pm.status_path`) as JSON; `?json` is added to `path`
/// unless it asks for it already, so `path` may carry `?full`.
///
/// FPM has been seen to print strings unescaped in the per-process fields of `?full`; such
/// JSON is repaired where the damage is obvious, and otherwise the top-level scalar fields
/// (pool, process manager, counters) are returned without the process list.
pub fn status(
    addr: &ListenAddr,
    path: &str,
    timeout: Duration,
) -> Result<serde_json::Value, FastCgiError> {
    let response = request(addr, &Request::get(&with_json_query(path)), timeout)?;
    expect_200(addr, &response)?;
    parse_status_json(&response.body).map_err(|detail| protocol(&addr.to_string(), detail))
}

/// Proves that a worker of the pool answers, for pools without `ping.path`.
///
/// Asks for [`PROBE_SCRIPT`], which FPM answers without running any PHP: with the default
/// `cgi.fix_pathinfo=1` a 404 "File not found." (and "Primary script unknown" on stderr),
/// with `cgi.fix_pathinfo=0` a 403 "Access denied." from `security.limit_extensions` (the
/// reason again on stderr).
/// Any HTTP status is success: the point is a complete, well-formed FastCGI response,
/// which only a worker produces, not just an accepting socket.
pub fn probe(addr: &ListenAddr, timeout: Duration) -> Result<Response, FastCgiError> {
    request(addr, &probe_request(), timeout)
}

/// The request [`probe`] sends: a `GET` for [`PROBE_SCRIPT`].
pub fn probe_request() -> Request {
    Request::get(PROBE_SCRIPT)
}

fn expect_200(addr: &ListenAddr, response: &Response) -> Result<(), FastCgiError> {
    if response.status == 200 {
        return Ok(());
    }
    Err(FastCgiError::Status {
        addr: addr.to_string(),
        status: response.status,
        body: excerpt(&response.body),
    })
}

fn protocol(addr: &str, detail: impl Into<String>) -> FastCgiError {
    FastCgiError::Protocol {
        addr: addr.to_string(),
        detail: detail.into(),
    }
}

fn protocol_status_name(status: u8) -> String {
    match status {
        FCGI_CANT_MPX_CONN => "FCGI_CANT_MPX_CONN".to_string(),
        FCGI_OVERLOADED => "FCGI_OVERLOADED".to_string(),
        FCGI_UNKNOWN_ROLE => "FCGI_UNKNOWN_ROLE".to_string(),
        other => format!("unknown protocol status {other}"),
    }
}

/// The start of `bytes` as one printable line.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| if c.is_control() { '?' } else { c }));
        if out.chars().count() > EXCERPT_CHARS {
            let cut: String = out.chars().take(EXCERPT_CHARS).collect();
            return cut + "...";
        }
    }
    out
}

/// `path` with `json` in its query string.
fn with_json_query(path: &str) -> String {
    match path.split_once('?') {
        None => format!("{path}?json"),
        Some((script, "")) => format!("{script}?json"),
        Some((_, query))
            if query
                .split('&')
                .any(|p| p.split('=').next() == Some("json")) =>
        {
            path.to_string()
        }
        Some(_) => format!("{path}&json"),
    }
}

// ---------------------------------------------------------------------------------------
// Connection and deadline

/// One point in time by which the whole exchange must be done.
struct Deadline(Instant);

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        let now = Instant::now();
        // A timeout too large to represent is as good as none.
        let far = Duration::from_secs(365 * 24 * 3600);
        Deadline(now.checked_add(timeout).unwrap_or(now + far))
    }

    /// The time left, or `None` once it has passed.
    fn remaining(&self) -> Option<Duration> {
        let left = self.0.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(Some(d)),
            Conn::Tcp(s) => s.set_read_timeout(Some(d)),
        }
    }

    fn set_write_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(Some(d)),
            Conn::Tcp(s) => s.set_write_timeout(Some(d)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

fn timeout(addr: &str, phase: Phase) -> FastCgiError {
    FastCgiError::Timeout {
        addr: addr.to_string(),
        phase,
    }
}

fn connect(addr: &ListenAddr, name: &str, deadline: &Deadline) -> Result<Conn, FastCgiError> {
    let connect_err = |source| FastCgiError::Connect {
        addr: name.to_string(),
        source,
    };
    match addr {
        ListenAddr::Unix(path) => connect_unix(path, name, deadline).map(Conn::Unix),
        ListenAddr::Tcp { .. } => {
            let candidates = addr.connect_addrs().map_err(connect_err)?;
            connect_tcp(&candidates, name, deadline).map(Conn::Tcp)
        }
    }
}

/// A unix stream connect blocks while the listener's backlog is full (every FPM worker
/// busy); the kernel bounds that wait by the socket's send timeout, so set it first.
fn connect_unix(path: &Path, name: &str, deadline: &Deadline) -> Result<UnixStream, FastCgiError> {
    let connect_err = |e: nix::errno::Errno| FastCgiError::Connect {
        addr: name.to_string(),
        source: io::Error::from(e),
    };
    let sockaddr = UnixAddr::new(path).map_err(connect_err)?;
    loop {
        let left = deadline
            .remaining()
            .ok_or_else(|| timeout(name, Phase::Connect))?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(connect_err)?;
        socket::setsockopt(&fd, sockopt::SendTimeout, &timeval(left)).map_err(connect_err)?;
        match socket::connect(fd.as_raw_fd(), &sockaddr) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            // A signal: start over with a fresh socket and the time that is left.
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => {
                return Err(timeout(name, Phase::Connect));
            }
            Err(e) => return Err(connect_err(e)),
        }
    }
}

fn timeval(d: Duration) -> TimeVal {
    let secs = d.as_secs().min(i32::MAX as u64);
    // Zero would mean "no timeout"; never round a short wait down to that.
    let micros = if secs == 0 {
        d.subsec_micros().max(1)
    } else {
        d.subsec_micros()
    };
    TimeVal::new(secs as _, micros as _)
}

fn connect_tcp(
    candidates: &[SocketAddr],
    name: &str,
    deadline: &Deadline,
) -> Result<TcpStream, FastCgiError> {
    let mut failures: Vec<(SocketAddr, io::Error)> = Vec::new();
    for candidate in candidates {
        let left = deadline
            .remaining()
            .ok_or_else(|| timeout(name, Phase::Connect))?;
        match TcpStream::connect_timeout(candidate, left) {
            Ok(stream) => {
                // One write per request, but no reason to let Nagle hold back its tail.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => failures.push((*candidate, e)),
        }
    }
    if deadline.remaining().is_none() && failures.iter().any(|(_, e)| is_timeout(e)) {
        return Err(timeout(name, Phase::Connect));
    }
    let source = match failures.len() {
        0 => io::Error::new(
            io::ErrorKind::NotFound,
            "the host name resolved to no IPv4 address",
        ),
        1 if failures[0].0.to_string() == name => failures.remove(0).1,
        _ => {
            let kind = failures
                .last()
                .map(|(_, e)| e.kind())
                .unwrap_or(io::ErrorKind::Other);
            let all: Vec<String> = failures.iter().map(|(a, e)| format!("{a}: {e}")).collect();
            io::Error::new(kind, all.join("; "))
        }
    };
    Err(FastCgiError::Connect {
        addr: name.to_string(),
        source,
    })
}

/// Writes the whole request. If the server hangs up part way, returns how far it got so
/// the caller can still read an answer the server may have sent before closing.
fn send(
    conn: &mut Conn,
    wire: &[u8],
    deadline: &Deadline,
    name: &str,
) -> Result<Option<(usize, io::Error)>, FastCgiError> {
    let io_err = |source| FastCgiError::Io {
        addr: name.to_string(),
        source,
    };
    let mut sent = 0;
    while sent < wire.len() {
        let left = deadline
            .remaining()
            .ok_or_else(|| timeout(name, Phase::Send))?;
        conn.set_write_timeout(left).map_err(io_err)?;
        match conn.write(&wire[sent..]) {
            Ok(0) => return Err(io_err(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timeout(name, Phase::Send)),
            Err(e) if is_hangup(&e) => return Ok(Some((sent, e))),
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(None)
}

/// Reads records until `FCGI_END_REQUEST`; the CGI fields of the result are left empty.
fn receive(conn: &mut Conn, deadline: &Deadline, name: &str) -> Result<Response, FastCgiError> {
    let io_err = |source| FastCgiError::Io {
        addr: name.to_string(),
        source,
    };
    let mut decoder = Decoder::default();
    let mut response = Response::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline
            .remaining()
            .ok_or_else(|| timeout(name, Phase::Receive))?;
        conn.set_read_timeout(left).map_err(io_err)?;
        let n = match conn.read(&mut buf) {
            Ok(0) => {
                return Err(protocol(
                    name,
                    closed_early(&decoder, &response, "closed the connection"),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(timeout(name, Phase::Receive)),
            Err(e) if is_hangup(&e) => {
                return Err(protocol(
                    name,
                    closed_early(&decoder, &response, "reset the connection"),
                ));
            }
            Err(e) => return Err(io_err(e)),
        };
        decoder.push(&buf[..n]);
        while let Some(record) = decoder.next_record().map_err(|d| protocol(name, d))? {
            if record.request_id != REQUEST_ID {
                // Management records (id 0, e.g. FCGI_UNKNOWN_TYPE) or someone else's.
                continue;
            }
            match record.kind {
                TYPE_STDOUT => response.stdout.extend_from_slice(&record.content),
                TYPE_STDERR => response.stderr.extend_from_slice(&record.content),
                TYPE_END_REQUEST => {
                    let body: [u8; 5] = record
                        .content
                        .get(..5)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| {
                            protocol(
                                name,
                                format!(
                                    "FCGI_END_REQUEST body is {} bytes, expected 8",
                                    record.content.len()
                                ),
                            )
                        })?;
                    response.app_status = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    response.protocol_status = body[4];
                    return Ok(response);
                }
                // Record types a responder never gets are skipped, as the spec asks.
                _ => {}
            }
            if response.stdout.len() + response.stderr.len() > MAX_RESPONSE {
                return Err(protocol(
                    name,
                    format!("response larger than {MAX_RESPONSE} bytes"),
                ));
            }
        }
    }
}

fn closed_early(decoder: &Decoder, response: &Response, what: &str) -> String {
    let mut detail = format!(
        "the server {what} before FCGI_END_REQUEST ({} bytes of stdout",
        response.stdout.len()
    );
    if !decoder.buf.is_empty() {
        detail.push_str(&format!(
            ", {} bytes of an unfinished record",
            decoder.buf.len()
        ));
    }
    detail.push(')');
    detail
}

// ---------------------------------------------------------------------------------------
// Wire format

/// Padding that keeps a record 8-byte aligned, unless that would push content plus padding
/// past 65535, which FPM refuses for `FCGI_PARAMS`.
fn padding_for(len: usize) -> usize {
    let pad = (8 - len % 8) % 8;
    if len + pad > MAX_CONTENT { 0 } else { pad }
}

/// Appends one record; `content` must not exceed 65535 bytes.
fn encode_record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT);
    let len = content.len() as u16;
    let pad = padding_for(content.len());
    let [id_hi, id_lo] = REQUEST_ID.to_be_bytes();
    let [len_hi, len_lo] = len.to_be_bytes();
    out.extend_from_slice(&[VERSION_1, kind, id_hi, id_lo, len_hi, len_lo, pad as u8, 0]);
    out.extend_from_slice(content);
    out.resize(out.len() + pad, 0);
}

/// Appends a name-value pair length: one byte below 128, else four with the top bit set.
fn encode_length(out: &mut Vec<u8>, len: usize) -> Result<(), String> {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0x7fff_ffff {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    } else {
        return Err(format!(
            "a parameter of {len} bytes is too long for FastCGI"
        ));
    }
    Ok(())
}

fn encode_name_value(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), String> {
    encode_length(out, name.len())?;
    encode_length(out, value.len())?;
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    Ok(())
}

/// The contents of the `FCGI_PARAMS` records: whole pairs packed into records of at most
/// 65535 bytes, because FPM decodes each record on its own.
fn encode_params(params: &[(String, String)]) -> Result<Vec<Vec<u8>>, String> {
    let mut records = Vec::new();
    let mut current = Vec::new();
    for (name, value) in params {
        let mut pair = Vec::new();
        encode_name_value(&mut pair, name.as_bytes(), value.as_bytes())?;
        if pair.len() > MAX_CONTENT {
            return Err(format!(
                "parameter {name} takes {} bytes; FPM decodes each FCGI_PARAMS record on its own, \
                 so one name-value pair must fit in {MAX_CONTENT} bytes",
                pair.len()
            ));
        }
        if current.len() + pair.len() > MAX_CONTENT {
            records.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(&pair);
    }
    if !current.is_empty() {
        records.push(current);
    }
    Ok(records)
}

/// Every byte of the request: BEGIN_REQUEST, PARAMS records, empty PARAMS, STDIN records,
/// empty STDIN.
fn encode_request(req: &Request) -> Result<Vec<u8>, String> {
    let params = encode_params(&req.params())?;
    // BEGIN_REQUEST, the PARAMS records and their end, the STDIN records and their end;
    // each adds at most 8 header and 7 padding bytes to its content.
    let records = 3 + params.len() + req.body.len().div_ceil(MAX_CONTENT);
    let content = 8 + params.iter().map(Vec::len).sum::<usize>() + req.body.len();
    let mut out = Vec::with_capacity(content + records * 15);
    let [role_hi, role_lo] = ROLE_RESPONDER.to_be_bytes();
    // Flags 0: no FCGI_KEEP_CONN, the server closes after the request.
    encode_record(
        &mut out,
        TYPE_BEGIN_REQUEST,
        &[role_hi, role_lo, 0, 0, 0, 0, 0, 0],
    );
    for content in &params {
        encode_record(&mut out, TYPE_PARAMS, content);
    }
    encode_record(&mut out, TYPE_PARAMS, &[]);
    for chunk in req.body.chunks(MAX_CONTENT) {
        encode_record(&mut out, TYPE_STDIN, chunk);
    }
    encode_record(&mut out, TYPE_STDIN, &[]);
    Ok(out)
}

/// One record as read: type, request id, content (padding dropped).
#[derive(Debug, PartialEq, Eq)]
struct Record {
    kind: u8,
    request_id: u16,
    content: Vec<u8>,
}

/// Reassembles records from reads of any size.
#[derive(Default)]
struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, `None` if more bytes are needed.
    fn next_record(&mut self) -> Result<Option<Record>, String> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        if header[0] != VERSION_1 {
            let hint = if self.buf.starts_with(b"HTTP/") {
                "; this is an HTTP server, not FastCGI"
            } else {
                ""
            };
            return Err(format!(
                "not a FastCGI response: record version {} (expected 1){hint}",
                header[0]
            ));
        }
        let kind = header[1];
        let request_id = u16::from_be_bytes([header[2], header[3]]);
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let pad = header[6] as usize;
        let total = HEADER_LEN + len + pad;
        if self.buf.len() < total {
            return Ok(None);
        }
        let content = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..total);
        Ok(Some(Record {
            kind,
            request_id,
            content,
        }))
    }
}

// ---------------------------------------------------------------------------------------
// CGI response

struct Cgi {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Splits CGI output at the first empty line (`\r\n\r\n`, `\n\n` or a mix), parses the
/// headers and takes the status from `Status:`.
fn parse_cgi(stdout: &[u8]) -> Result<Cgi, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let body_start = loop {
        let Some(nl) = stdout[pos..].iter().position(|&b| b == b'\n') else {
            return Err(if stdout.is_empty() {
                "the response has no CGI headers (stdout is empty)".to_string()
            } else {
                format!(
                    "the response has no end of CGI headers: {}",
                    excerpt(&stdout[..stdout.len().min(EXCERPT_CHARS)])
                )
            });
        };
        let line = &stdout[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if line.is_empty() {
            break pos;
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) {
            // An obsolete folded continuation line.
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(text.trim());
                    continue;
                }
                None => return Err(format!("malformed CGI header line: {}", excerpt(line))),
            }
        }
        match text.split_once(':') {
            Some((name, value))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                headers.push((name.to_string(), value.trim().to_string()));
            }
            _ => return Err(format!("malformed CGI header line: {}", excerpt(line))),
        }
    };
    let status = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("status"))
    {
        None => 200,
        Some((_, value)) => value
            .get(..3)
            .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..=999).contains(code))
            .ok_or_else(|| format!("bad CGI Status header: {}", excerpt(value.as_bytes())))?,
    };
    Ok(Cgi {
        status,
        headers,
        body: stdout[body_start..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------
// Status JSON

/// Parses FPM's `?json` status page: strictly, then repaired, then just its scalar
/// top-level fields.
fn parse_status_json(body: &[u8]) -> Result<serde_json::Value, String> {
    let text = String::from_utf8_lossy(body);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        return if value.is_object() {
            Ok(value)
        } else {
            Err(format!(
                "the status page is JSON but not an object: {}",
                excerpt(body)
            ))
        };
    }
    if let Ok(value @ serde_json::Value::Object(_)) =
        serde_json::from_str::<serde_json::Value>(&repair_json(&text))
    {
        return Ok(value);
    }
    let fields = scalar_fields(&text);
    if fields.is_empty() {
        return Err(format!("the status page is not JSON: {}", excerpt(body)));
    }
    Ok(serde_json::Value::Object(fields))
}

/// Escapes what FPM leaves raw inside strings: a `"` not followed by `,` `:` `}` `]` or the
/// end, a backslash that starts no valid escape, and control characters.
fn repair_json(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if !in_string {
            in_string = c == '"';
            out.push(c);
            continue;
        }
        match c {
            '\\' => match chars.get(i) {
                Some(&e @ ('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't')) => {
                    out.push('\\');
                    out.push(e);
                    i += 1;
                }
                Some('u')
                    if chars
                        .get(i + 1..i + 5)
                        .is_some_and(|h| h.iter().all(char::is_ascii_hexdigit)) =>
                {
                    out.push('\\');
                    out.extend(&chars[i..i + 5]);
                    i += 5;
                }
                _ => out.push_str("\\\\"),
            },
            '"' => {
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if matches!(next, None | Some(',' | ':' | '}' | ']')) {
                    in_string = false;
                    out.push('"');
                } else {
                    out.push_str("\\\"");
                }
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The leading `"key": scalar` members of a JSON object, read leniently; stops at the first
/// nested value (FPM's process list comes last) or at anything it cannot follow.
fn scalar_fields(text: &str) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut fields = serde_json::Map::new();
    let Some(mut rest) = text.trim_start().strip_prefix('{') else {
        return fields;
    };
    while let Some(r) = rest.trim_start().strip_prefix('"') {
        let Some(end) = r.find('"') else { break };
        let key = &r[..end];
        let Some(r) = r[end + 1..].trim_start().strip_prefix(':') else {
            break;
        };
        let r = r.trim_start();
        let (value, r) = if let Some(s) = r.strip_prefix('"') {
            // The string ends at the first quote that a member separator follows.
            let close = s.match_indices('"').map(|(i, _)| i).find(|&i| {
                let after = s[i + 1..].trim_start();
                after.is_empty() || after.starts_with([',', '}'])
            });
            let Some(close) = close else { break };
            let raw = &s[..close];
            let value = serde_json::from_str::<String>(&format!("\"{raw}\""))
                .unwrap_or_else(|_| raw.to_string());
            (Value::String(value), &s[close + 1..])
        } else {
            let end = r.find([',', '}']).unwrap_or(r.len());
            match serde_json::from_str::<Value>(r[..end].trim()) {
                Ok(v) if !v.is_array() && !v.is_object() => (v, &r[end..]),
                _ => break,
            }
        };
        fields.insert(key.to_string(), value);
        match r.trim_start().strip_prefix(',') {
            Some(r) => rest = r,
            None => break,
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::TcpHost;
    use std::net::{Ipv4Addr, TcpListener};
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::thread;

    // -- helpers: the server side of the protocol ------------------------------------

    fn read_length(bytes: &mut &[u8]) -> Result<usize, String> {
        let first = *bytes.first().ok_or("truncated length")?;
        if first < 0x80 {
            *bytes = &bytes[1..];
            return Ok(first as usize);
        }
        let four: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("truncated 4-byte length")?;
        *bytes = &bytes[4..];
        Ok((u32::from_be_bytes(four) & 0x7fff_ffff) as usize)
    }

    type Pair = (Vec<u8>, Vec<u8>);

    /// Decodes name-value pairs the way FPM does: only whole pairs within `bytes`.
    fn decode_name_values(mut bytes: &[u8]) -> Result<Vec<Pair>, String> {
        let mut pairs = Vec::new();
        while !bytes.is_empty() {
            let name_len = read_length(&mut bytes)?;
            let value_len = read_length(&mut bytes)?;
            if bytes.len() < name_len + value_len {
                return Err("pair runs past the end of the record".into());
            }
            let (name, rest) = bytes.split_at(name_len);
            let (value, rest) = rest.split_at(value_len);
            pairs.push((name.to_vec(), value.to_vec()));
            bytes = rest;
        }
        Ok(pairs)
    }

    /// Splits encoded bytes into (header, content) without any reassembly logic.
    fn split_records(mut bytes: &[u8]) -> Vec<([u8; 8], Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let header: [u8; 8] = bytes[..8].try_into().unwrap();
            let len = u16::from_be_bytes([header[4], header[5]]) as usize;
            let pad = header[6] as usize;
            out.push((header, bytes[8..8 + len].to_vec()));
            bytes = &bytes[8 + len + pad..];
        }
        out
    }

    fn raw_record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let [id_hi, id_lo] = id.to_be_bytes();
        let [len_hi, len_lo] = (content.len() as u16).to_be_bytes();
        out.extend_from_slice(&[VERSION_1, kind, id_hi, id_lo, len_hi, len_lo, 0, 0]);
        out.extend_from_slice(content);
        out
    }

    fn end_request(app_status: u32, protocol_status: u8) -> Vec<u8> {
        let mut body = app_status.to_be_bytes().to_vec();
        body.extend_from_slice(&[protocol_status, 0, 0, 0]);
        raw_record(TYPE_END_REQUEST, REQUEST_ID, &body)
    }

    struct Received {
        begin: Vec<u8>,
        params: Vec<(String, String)>,
        stdin: Vec<u8>,
    }

    /// Reads one request up to its empty FCGI_STDIN, checking FPM's PARAMS rules.
    fn read_request(stream: &mut impl Read) -> Received {
        let mut decoder = Decoder::default();
        let mut got = Received {
            begin: Vec::new(),
            params: Vec::new(),
            stdin: Vec::new(),
        };
        let mut buf = [0u8; 4096];
        loop {
            while let Some(rec) = decoder.next_record().unwrap() {
                match rec.kind {
                    TYPE_BEGIN_REQUEST => got.begin = rec.content,
                    TYPE_PARAMS => {
                        for (n, v) in decode_name_values(&rec.content).unwrap() {
                            got.params.push((
                                String::from_utf8(n).unwrap(),
                                String::from_utf8(v).unwrap(),
                            ));
                        }
                    }
                    TYPE_STDIN if rec.content.is_empty() => return got,
                    TYPE_STDIN => got.stdin.extend_from_slice(&rec.content),
                    other => panic!("unexpected record type {other}"),
                }
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "client closed before the end of the request");
            decoder.push(&buf[..n]);
        }
    }

    fn unix_server(
        handler: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (tempfile::TempDir, ListenAddr, thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fcgi.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handler(stream);
        });
        (dir, ListenAddr::Unix(path), handle)
    }

    const SHORT: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(5);

    // -- encoding ---------------------------------------------------------------------

    #[test]
    fn lengths_use_one_byte_below_128_and_four_bytes_above() {
        let enc = |len| {
            let mut v = Vec::new();
            encode_length(&mut v, len).unwrap();
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [127]);
        assert_eq!(enc(128), [0x80, 0, 0, 128]);
        assert_eq!(enc(70_000), [0x80, 0x01, 0x11, 0x70]);
        assert_eq!(enc(0x7fff_ffff), [0xff, 0xff, 0xff, 0xff]);
        assert!(encode_length(&mut Vec::new(), 0x8000_0000).is_err());
    }

    #[test]
    fn name_value_pairs_round_trip_in_both_length_forms() {
        let long_name = "N".repeat(300);
        let long_value = "v".repeat(200);
        let mut bytes = Vec::new();
        encode_name_value(&mut bytes, b"SHORT", b"x").unwrap();
        encode_name_value(&mut bytes, b"EMPTY", b"").unwrap();
        encode_name_value(&mut bytes, long_name.as_bytes(), long_value.as_bytes()).unwrap();
        assert_eq!(&bytes[..8], b"\x05\x01SHORTx");
        assert_eq!(&bytes[8..10], [5, 0]);
        assert_eq!(&bytes[15..23], [0x80, 0, 1, 44, 0x80, 0, 0, 200]);
        let pairs = decode_name_values(&bytes).unwrap();
        assert_eq!(
            pairs,
            vec![
                (b"SHORT".to_vec(), b"x".to_vec()),
                (b"EMPTY".to_vec(), Vec::new()),
                (long_name.into_bytes(), long_value.into_bytes()),
            ]
        );
    }

    #[test]
    fn records_are_padded_to_eight_bytes_without_exceeding_65535() {
        let mut out = Vec::new();
        encode_record(&mut out, TYPE_STDIN, b"hello");
        assert_eq!(out, b"\x01\x05\x00\x01\x00\x05\x03\x00hello\0\0\0");
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(65527), 1);
        assert_eq!(padding_for(65528), 0);
        // 65530 + 6 would be 65536: FPM rejects that, so no padding.
        assert_eq!(padding_for(65530), 0);
        assert_eq!(padding_for(65535), 0);
    }

    #[test]
    fn params_are_packed_into_records_of_whole_pairs() {
        let params: Vec<(String, String)> = (0..40)
            .map(|i| (format!("FPMCTL_P{i:03}"), "x".repeat(4000)))
            .collect();
        let records = encode_params(&params).unwrap();
        assert!(records.len() >= 3, "{} records", records.len());
        let mut all = Vec::new();
        for content in &records {
            assert!(content.len() + padding_for(content.len()) <= MAX_CONTENT);
            // Each record must decode on its own, as FPM decodes it.
            all.extend(decode_name_values(content).unwrap());
        }
        assert_eq!(all.len(), 40);
        assert_eq!(all[39].0, b"FPMCTL_P039");
    }

    #[test]
    fn a_pair_larger_than_one_record_is_refused_before_connecting() {
        let huge = vec![("X_HUGE".to_string(), "y".repeat(70_000))];
        let err = encode_params(&huge).unwrap_err();
        assert!(err.contains("X_HUGE") && err.contains("65535"), "{err}");
        // No listener at this path: the error must come before any connect attempt.
        let addr = ListenAddr::Unix("/nonexistent/fpmctl.sock".into());
        let req = Request::get("/x").with_param("X_HUGE", "y".repeat(70_000));
        match request(&addr, &req, SHORT) {
            Err(FastCgiError::Protocol { addr, detail }) => {
                assert_eq!(addr, "/nonexistent/fpmctl.sock");
                assert!(detail.contains("X_HUGE"), "{detail}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn a_request_is_begin_params_stdin_each_with_its_end_marker() {
        let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let req = Request::post("/echo.php?a=1", "application/octet-stream", body.clone());
        let wire = encode_request(&req).unwrap();
        let records = split_records(&wire);
        for (header, content) in &records {
            assert_eq!(header[0], VERSION_1);
            assert_eq!(u16::from_be_bytes([header[2], header[3]]), REQUEST_ID);
            assert!(content.len() + header[6] as usize <= 65536);
        }
        let kinds: Vec<(u8, usize)> = records.iter().map(|(h, c)| (h[1], c.len())).collect();
        assert_eq!(kinds[0], (TYPE_BEGIN_REQUEST, 8));
        // Role RESPONDER, flags 0 (the server closes the connection).
        assert_eq!(records[0].1, [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(kinds[1].0, TYPE_PARAMS);
        assert_eq!(kinds[2], (TYPE_PARAMS, 0));
        assert_eq!(
            &kinds[3..],
            [
                (TYPE_STDIN, 65535),
                (TYPE_STDIN, 65535),
                (TYPE_STDIN, 150_000 - 2 * 65535),
                (TYPE_STDIN, 0)
            ]
        );
        let sent: Vec<u8> = records[3..].iter().flat_map(|(_, c)| c.clone()).collect();
        assert_eq!(sent, body);
    }

    #[test]
    fn get_sets_the_parameters_nginx_would() {
        let req = Request::get("/status?json&full").with_param("SERVER_NAME", "example");
        let params = req.params();
        let get = |name: &str| {
            params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("REQUEST_METHOD"), ["GET"]);
        assert_eq!(get("SCRIPT_NAME"), ["/status"]);
        assert_eq!(get("SCRIPT_FILENAME"), ["/status"]);
        assert_eq!(get("REQUEST_URI"), ["/status?json&full"]);
        assert_eq!(get("QUERY_STRING"), ["json&full"]);
        assert_eq!(get("SERVER_PROTOCOL"), ["HTTP/1.1"]);
        assert_eq!(get("GATEWAY_INTERFACE"), ["CGI/1.1"]);
        assert_eq!(get("CONTENT_LENGTH"), ["0"]);
        // An extra parameter replaces the standard one instead of doubling it.
        assert_eq!(get("SERVER_NAME"), ["example"]);
        let post = Request::post("/a.php", "text/plain", "abc")
            .with_script_filename("/srv/www/a.php")
            .params();
        assert!(post.contains(&("CONTENT_LENGTH".into(), "3".into())));
        assert!(post.contains(&("CONTENT_TYPE".into(), "text/plain".into())));
        assert!(post.contains(&("DOCUMENT_ROOT".into(), "/srv/www".into())));
    }

    #[test]
    fn status_paths_get_json_added_once() {
        assert_eq!(with_json_query("/status"), "/status?json");
        assert_eq!(with_json_query("/status?"), "/status?json");
        assert_eq!(with_json_query("/status?full"), "/status?full&json");
        assert_eq!(with_json_query("/status?json&full"), "/status?json&full");
        assert_eq!(with_json_query("/status?full&json="), "/status?full&json=");
    }

    // -- decoding ---------------------------------------------------------------------

    #[test]
    fn the_decoder_reassembles_records_split_across_reads() {
        let mut stream = raw_record(TYPE_STDOUT, 1, b"Status: 201 Created\r\n\r\nhi");
        let mut padded = Vec::new();
        encode_record(&mut padded, TYPE_STDERR, b"warn");
        stream.extend_from_slice(&padded);
        stream.extend_from_slice(&end_request(0, 0));
        let mut decoder = Decoder::default();
        let mut records = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            while let Some(r) = decoder.next_record().unwrap() {
                records.push(r);
            }
        }
        let kinds: Vec<u8> = records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [TYPE_STDOUT, TYPE_STDERR, TYPE_END_REQUEST]);
        assert_eq!(records[1].content, b"warn");
        assert!(decoder.buf.is_empty());
    }

    #[test]
    fn the_decoder_recognises_an_http_server() {
        let mut decoder = Decoder::default();
        decoder.push(b"HTTP/1.1 400 Bad Request\r\n");
        let err = decoder.next_record().unwrap_err();
        assert!(err.contains("HTTP server"), "{err}");
    }

    #[test]
    fn cgi_headers_split_at_crlf_or_lf_blank_lines() {
        let cgi = parse_cgi(
            b"Status: 201 Created\r\nX-A: 1\r\nContent-type: text/plain\r\n\r\nbody\r\n\r\nmore",
        )
        .unwrap();
        assert_eq!(cgi.status, 201);
        assert_eq!(cgi.headers[1], ("X-A".into(), "1".into()));
        assert_eq!(cgi.body, b"body\r\n\r\nmore");
        let cgi = parse_cgi(b"Content-Type: text/plain\n\npong").unwrap();
        assert_eq!((cgi.status, cgi.body.as_slice()), (200, &b"pong"[..]));
        let cgi = parse_cgi(b"A: 1\r\nB: 2\n\n").unwrap();
        assert_eq!(cgi.headers.len(), 2);
        assert!(cgi.body.is_empty());
        let cgi = parse_cgi(b"X-Long: a\r\n  b\r\n\r\n").unwrap();
        assert_eq!(cgi.headers[0].1, "a b");
    }

    #[test]
    fn broken_cgi_output_is_an_error_not_a_guess() {
        assert!(parse_cgi(b"").is_err());
        assert!(parse_cgi(b"Content-Type: text/plain\r\n").is_err());
        assert!(parse_cgi(b"no colon here\r\n\r\n").is_err());
        assert!(parse_cgi(b"Status: abc\r\n\r\n").is_err());
        assert!(parse_cgi(b"Status: 42\r\n\r\n").is_err());
    }

    #[test]
    fn status_json_is_parsed_strictly_when_valid() {
        let v =
            parse_status_json(br#"{"pool":"www","process manager":"static","active processes":1}"#)
                .unwrap();
        assert_eq!(v["pool"], "www");
        assert_eq!(v["active processes"], 1);
        assert!(parse_status_json(b"[1,2]").is_err());
        assert!(parse_status_json(b"File not found.").is_err());
    }

    #[test]
    fn status_json_with_raw_quotes_and_backslashes_is_repaired() {
        let body = "{\"pool\":\"www\",\"active processes\":1, \"processes\":[{\"pid\":7,\
            \"request uri\":\"/a\"b\\c?q=\"x\"\",\"user\":\"-\",\"script\":\"/srv/x\ty.php\"}]}";
        let v = parse_status_json(body.as_bytes()).unwrap();
        assert_eq!(v["pool"], "www");
        assert_eq!(v["processes"][0]["pid"], 7);
        assert_eq!(v["processes"][0]["request uri"], "/a\"b\\c?q=\"x\"");
        assert_eq!(v["processes"][0]["script"], "/srv/x\ty.php");
    }

    #[test]
    fn hopeless_status_json_falls_back_to_the_scalar_fields() {
        // A value with `",` inside defeats the repair; the top-level fields still come back.
        let body = r#"{"pool":"www","process manager":"dynamic","start time":1700000000,"active processes":2,"idle processes":1, "processes":[{"pid":7,"request uri":"/a","b":"c"#;
        let v = parse_status_json(body.as_bytes()).unwrap();
        assert_eq!(v["pool"], "www");
        assert_eq!(v["process manager"], "dynamic");
        assert_eq!(v["active processes"], 2);
        assert_eq!(v["idle processes"], 1);
        assert!(v.get("processes").is_none());
    }

    #[test]
    fn status_json_parsing_never_panics_on_garbage() {
        let valid = r#"{"pool":"w\"w","n":1,"processes":[{"pid":1,"request uri":"/x\u0041"}]}"#;
        for end in 0..=valid.len() {
            let _ = parse_status_json(&valid.as_bytes()[..end]);
        }
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let junk: Vec<u8> = (0..(seed % 64))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    b"{}[]\":,\\u0aZ \t\x01\xff"[(seed % 16) as usize]
                })
                .collect();
            let _ = parse_status_json(&junk);
        }
    }

    // -- exchanges with fake servers --------------------------------------------------

    #[test]
    fn a_full_exchange_with_records_split_and_unknown_types() {
        let (_dir, addr, server) = unix_server(|mut s| {
            let got = read_request(&mut s);
            assert_eq!(got.begin, [0, 1, 0, 0, 0, 0, 0, 0]);
            assert!(
                got.params
                    .contains(&("SCRIPT_NAME".into(), "/echo.php".into()))
            );
            assert_eq!(got.stdin, b"request body");
            let mut reply = Vec::new();
            // A management record (id 0) and a type no responder knows: both skipped.
            reply.extend(raw_record(11, 0, &[42, 0, 0, 0, 0, 0, 0, 0]));
            reply.extend(raw_record(42, REQUEST_ID, b"ignore me"));
            reply.extend(raw_record(
                TYPE_STDOUT,
                REQUEST_ID,
                b"Status: 201 Created\r\nX-Test: yes\r\n",
            ));
            reply.extend(raw_record(TYPE_STDERR, REQUEST_ID, b"a warning"));
            reply.extend(raw_record(TYPE_STDOUT, REQUEST_ID, b"\r\nhello"));
            reply.extend(raw_record(TYPE_STDOUT, REQUEST_ID, b""));
            reply.extend(end_request(7, FCGI_REQUEST_COMPLETE));
            // Dribble it out so records and headers arrive split across reads.
            for chunk in reply.chunks(3) {
                s.write_all(chunk).unwrap();
                thread::sleep(Duration::from_micros(200));
            }
        });
        let req = Request::post("/echo.php", "text/plain", "request body");
        let resp = request(&addr, &req, LONG).unwrap();
        server.join().unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("x-test"), Some("yes"));
        assert_eq!(resp.body, b"hello");
        assert_eq!(resp.stderr, b"a warning");
        assert_eq!(resp.app_status, 7);
        assert_eq!(resp.protocol_status, FCGI_REQUEST_COMPLETE);
        assert_eq!(
            resp.stdout,
            b"Status: 201 Created\r\nX-Test: yes\r\n\r\nhello".to_vec()
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out_within_the_deadline() {
        let (tx, rx) = mpsc::channel::<()>();
        let (_dir, addr, server) = unix_server(move |mut s| {
            read_request(&mut s);
            let _ = rx.recv();
        });
        let started = Instant::now();
        let err = request(&addr, &Request::get("/ping"), SHORT).unwrap_err();
        let took = started.elapsed();
        tx.send(()).unwrap();
        server.join().unwrap();
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Receive,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            took >= SHORT && took < SHORT + Duration::from_secs(1),
            "{took:?}"
        );
        assert!(err.to_string().contains("fcgi.sock"), "{err}");
    }

    #[test]
    fn a_server_that_does_not_read_times_out_the_send() {
        let (tx, rx) = mpsc::channel::<()>();
        let (_dir, addr, server) = unix_server(move |s| {
            let _ = rx.recv();
            drop(s);
        });
        let req = Request::post("/x.php", "application/octet-stream", vec![0u8; 16 << 20]);
        let started = Instant::now();
        let err = request(&addr, &req, SHORT).unwrap_err();
        let took = started.elapsed();
        tx.send(()).unwrap();
        server.join().unwrap();
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Send,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(took < SHORT + Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn a_full_backlog_times_out_the_connect() {
        use nix::sys::socket::{Backlog, bind, listen};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let sockaddr = UnixAddr::new(&path).unwrap();
        bind(listener.as_raw_fd(), &sockaddr).unwrap();
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        // Never accept; fill the queue with non-blocking connects until the kernel says so.
        let mut queued = Vec::new();
        loop {
            let fd = socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            match socket::connect(fd.as_raw_fd(), &sockaddr) {
                Ok(()) => queued.push(fd),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(queued.len() < 64, "the backlog never filled");
        }
        let started = Instant::now();
        let err = request(&ListenAddr::Unix(path), &Request::get("/ping"), SHORT).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            took >= SHORT && took < SHORT + Duration::from_secs(1),
            "{took:?}"
        );
    }

    #[test]
    fn a_server_that_closes_early_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&raw_record(
                TYPE_STDOUT,
                REQUEST_ID,
                b"Content-Type: text/plain\r\n",
            ))
            .unwrap();
            s.write_all(&[VERSION_1, TYPE_STDOUT, 0]).unwrap();
        });
        let err = request(&addr, &Request::get("/ping"), LONG).unwrap_err();
        server.join().unwrap();
        match &err {
            FastCgiError::Protocol { detail, .. } => {
                assert!(detail.contains("before FCGI_END_REQUEST"), "{detail}");
                assert!(detail.contains("unfinished record"), "{detail}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn a_server_that_hangs_up_mid_request_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(drop);
        let req = Request::post("/x.php", "application/octet-stream", vec![0u8; 4 << 20]);
        let err = request(&addr, &req, LONG).unwrap_err();
        server.join().unwrap();
        match &err {
            FastCgiError::Protocol { detail, .. } => {
                assert!(detail.contains("stopped reading the request"), "{detail}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_request_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&end_request(0, FCGI_OVERLOADED)).unwrap();
        });
        let err = request(&addr, &Request::get("/ping"), LONG).unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains("FCGI_OVERLOADED"), "{err}");
    }

    #[test]
    fn a_short_end_request_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&raw_record(TYPE_END_REQUEST, REQUEST_ID, &[0, 0]))
                .unwrap();
        });
        let err = request(&addr, &Request::get("/ping"), LONG).unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains("FCGI_END_REQUEST body"), "{err}");
    }

    #[test]
    fn ping_and_status_check_the_http_status() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            let out = b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n";
            s.write_all(&raw_record(TYPE_STDOUT, REQUEST_ID, out))
                .unwrap();
            s.write_all(&end_request(0, 0)).unwrap();
        });
        let err = ping(&addr, "/ping", LONG).unwrap_err();
        server.join().unwrap();
        match &err {
            FastCgiError::Status { status, body, .. } => {
                assert_eq!(*status, 404);
                assert_eq!(body, "File not found.");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
        assert!(err.to_string().contains("fcgi.sock"), "{err}");
    }

    #[test]
    fn tcp_works_and_a_refused_port_names_every_address_tried() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let got = read_request(&mut s);
            assert!(got.params.contains(&("SCRIPT_NAME".into(), "/ping".into())));
            s.write_all(&raw_record(
                TYPE_STDOUT,
                REQUEST_ID,
                b"Content-Type: text/plain\r\n\r\npong\n",
            ))
            .unwrap();
            s.write_all(&end_request(0, 0)).unwrap();
        });
        let addr = ListenAddr::Tcp {
            host: TcpHost::Ip(Ipv4Addr::LOCALHOST.into()),
            port,
        };
        assert_eq!(ping(&addr, "/ping", LONG).unwrap(), "pong");
        server.join().unwrap();

        // The listener is gone now: nothing on that port.
        match request(&addr, &Request::get("/ping"), LONG) {
            Err(err @ FastCgiError::Connect { .. }) => {
                let msg = err.to_string();
                assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
        // A bare port tries IPv4 then IPv6 loopback; both failures are reported.
        let any = ListenAddr::Tcp {
            host: TcpHost::Any,
            port,
        };
        let msg = request(&any, &Request::get("/ping"), LONG)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&format!("127.0.0.1:{port}:")), "{msg}");
        assert!(msg.contains(&format!("[::1]:{port}:")), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn a_missing_unix_socket_is_a_connect_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sock");
        let err = request(
            &ListenAddr::Unix(path.clone()),
            &Request::get("/ping"),
            LONG,
        )
        .unwrap_err();
        assert!(matches!(err, FastCgiError::Connect { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(err.addr(), path.display().to_string());
    }

    #[test]
    fn a_zero_timeout_fails_fast() {
        let err = request(
            &ListenAddr::Unix("/nonexistent.sock".into()),
            &Request::get("/ping"),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
