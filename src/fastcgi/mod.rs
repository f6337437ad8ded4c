//! A small blocking FastCGI client: enough to ping FPM pools, read their status pages and
//! prove that a worker answers.
//!
//! This module owns the FastCGI wire format (records and name-value pairs), one
//! request/response exchange per connection under a single deadline, parsing the CGI
//! response (headers, `Status:`, body) and the [`ping`], [`status`] and [`probe`] helpers.
//! It only talks to sockets; starting, signalling or finding processes is done elsewhere.
//!
//! Submodules: `wire` (records and name-value pairs, encode and decode), `client`
//! (connecting, sending and receiving under one deadline), `response` (the CGI response
//! and the status page JSON).
//!
//! FPM is stricter than the FastCGI specification in two ways this client respects: it
//! decodes every `FCGI_PARAMS` record on its own, so a name-value pair never straddles two
//! records, and it refuses a `FCGI_PARAMS` record whose content plus padding exceeds 65535
//! bytes. Either mistake makes FPM reset the connection without an answer.

mod client;
mod response;
#[cfg(test)]
mod test_server;
mod wire;

use client::{Deadline, connect, receive, send};
use response::{parse_cgi, parse_status_json};
use wire::encode_request;

use crate::listen::ListenAddr;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
use nix::sys::time::TimeVal;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
