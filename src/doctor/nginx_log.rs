//! nginx's logs, one record at a time: the error log (`2026/11/30 05:46:43 [crit]
//! 17177#17177: *1 connect() to unix:/run/php.sock failed (13: Permission denied) while
//! connecting to upstream, client: ..., server: ..., request: "...", upstream: "...", host:
//! "..."`) and the access log in the `combined` format.
//!
//! The parsers take bytes and borrow from them; nothing here allocates per line. A record of
//! the error log can span lines: PHP's messages passed through FastCGI stderr keep their
//! newlines, and continuation lines carry no timestamp.

use super::time::{self, Civil};
use memchr::memmem;

/// A parsed error log record, borrowing from the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord<'a> {
    /// When it was written (wall clock).
    pub time: Civil,
    /// `emerg`, `alert`, `crit`, `error`, `warn`, `notice`, `info` or `debug`.
    pub level: &'a [u8],
    /// The worker's PID.
    pub pid: u32,
    /// The connection id (`*123`), when the message is about a connection.
    pub cid: Option<u64>,
    /// The message up to the context fields.
    pub message: &'a [u8],
    /// `client:`.
    pub client: Option<&'a [u8]>,
    /// `server:`.
    pub server: Option<&'a [u8]>,
    /// `request:` without quotes.
    pub request: Option<&'a [u8]>,
    /// `upstream:` without quotes, e.g. `fastcgi://unix:/run/php.sock:` or `http://127.0.0.1:9000/x`.
    pub upstream: Option<&'a [u8]>,
}

/// What an error log message says about the upstream, for the messages that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// `connect() ... failed (ERRNO: ...)`.
    ConnectFailed(i32),
    /// `recv()/readv()/writev()/send() failed (104: Connection reset by peer)` or a broken pipe.
    Reset,
    /// `upstream prematurely closed connection`.
    PrematureClose,
    /// `upstream timed out (110: ...) while connecting to upstream`.
    ConnectTimedOut,
    /// `upstream timed out (110: ...) while reading ...`.
    ReadTimedOut,
    /// `FastCGI sent in stderr: "Primary script unknown"`.
    ScriptUnknown,
    /// `FastCGI sent in stderr: "PHP message: PHP Fatal error: ..."`.
    PhpFatal,
    /// `upstream sent too big header`.
    TooBigHeader,
    /// `upstream sent unsupported FastCGI protocol version` or an invalid header/status:
    /// what answered does not speak the protocol nginx used.
    BadProtocol,
    /// `no live upstreams`: every server of an upstream block was marked failed.
    NoLiveUpstreams,
}

/// The byte patterns that can start a record of interest; lines without one are never parsed.
pub const ERROR_NEEDLES: &[&str] = &[
    "connect() ",
    "recv() failed",
    "readv() failed",
    "writev() failed",
    "send() failed",
    "upstream timed out",
    "upstream prematurely closed",
    "FastCGI sent in stderr",
    "too big header",
    "unsupported FastCGI protocol",
    "upstream sent invalid",
    "no live upstreams",
];

/// True when `line` starts like an error log record (a timestamp); false for continuation lines.
pub fn starts_record(line: &[u8]) -> bool {
    line.len() >= 20 && line[4] == b'/' && line[7] == b'/' && line[10] == b' ' && line[13] == b':'
}

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// Parses one error log record (its first line and any continuation lines).
pub fn parse_error(rec: &[u8]) -> Option<ErrorRecord<'_>> {
    let time = time::parse_nginx_error(rec)?;
    let rest = rec.get(20..)?;
    let rest = rest.strip_prefix(b"[")?;
    let close = memchr::memchr(b']', rest)?;
    let level = &rest[..close];
    let rest = rest.get(close + 1..)?.strip_prefix(b" ")?;
    let n = digits(rest);
    let pid = u32::try_from(parse_u64(&rest[..n])?).ok()?;
    let rest = rest.get(n..)?.strip_prefix(b"#")?;
    let n = digits(rest);
    let rest = rest.get(n..)?.strip_prefix(b": ")?;
    let (cid, rest) = match rest.strip_prefix(b"*") {
        Some(r) => {
            let n = digits(r);
            let cid = parse_u64(&r[..n])?;
            (Some(cid), r.get(n..)?.strip_prefix(b" ").unwrap_or(&r[n..]))
        }
        None => (None, rest),
    };
    // A FastCGI stderr quote may contain anything; the context starts after its closing
    // `" while `.
    let search_from = if rest.starts_with(b"FastCGI sent in stderr: \"") {
        memmem::rfind(rest, b"\" while ").unwrap_or(0)
    } else {
        0
    };
    let ctx_at = memmem::find(&rest[search_from..], b", client: ").map(|i| i + search_from);
    let (message, ctx) = match ctx_at {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (trim_end(rest), &rest[rest.len()..]),
    };
    let client = field(ctx, b", client: ", b", ");
    let server = field(ctx, b", server: ", b", ");
    let request = quoted(
        ctx,
        b", request: \"",
        &[b"\", upstream: \"", b"\", host: \""],
    );
    let upstream = quoted(ctx, b", upstream: \"", &[b"\""]);
    Some(ErrorRecord {
        time,
        level,
        pid,
        cid,
        message,
        client,
        server,
        request,
        upstream,
    })
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rev()
        .take_while(|c| **c == b'\n' || **c == b'\r')
        .count();
    &b[..b.len() - n]
}

fn field<'a>(ctx: &'a [u8], key: &[u8], end: &[u8]) -> Option<&'a [u8]> {
    let start = memmem::find(ctx, key)? + key.len();
    let v = &ctx[start..];
    let stop = memmem::find(v, end).unwrap_or(v.len());
    Some(trim_end(&v[..stop]))
}

fn quoted<'a>(ctx: &'a [u8], key: &[u8], ends: &[&[u8]]) -> Option<&'a [u8]> {
    let start = memmem::find(ctx, key)? + key.len();
    let v = &ctx[start..];
    let stop = ends
        .iter()
        .find_map(|e| memmem::find(v, e))
        .or_else(|| memchr::memrchr(b'"', v))
        .unwrap_or(v.len());
    Some(&v[..stop])
}

/// The errno in `failed (ERRNO: text)` or `timed out (ERRNO: text)`.
fn errno(message: &[u8]) -> Option<i32> {
    let open = memmem::find(message, b" (")? + 2;
    let n = digits(&message[open..]);
    let v = parse_u64(&message[open..open + n])?;
    (message.get(open + n) == Some(&b':'))
        .then_some(v)
        .and_then(|v| i32::try_from(v).ok())
}

/// What the message of a record says, when it is one of the upstream failures that matter.
pub fn classify(message: &[u8]) -> Option<ErrorKind> {
    let starts = |p: &[u8]| message.starts_with(p);
    if starts(b"connect() ") {
        return errno(message).map(ErrorKind::ConnectFailed);
    }
    if starts(b"upstream timed out") {
        return Some(if memmem::find(message, b"while connecting").is_some() {
            ErrorKind::ConnectTimedOut
        } else {
            ErrorKind::ReadTimedOut
        });
    }
    if starts(b"recv() failed")
        || starts(b"readv() failed")
        || starts(b"writev() failed")
        || starts(b"send() failed")
    {
        return match errno(message) {
            Some(104) | Some(32) => Some(ErrorKind::Reset),
            _ => None,
        };
    }
    if starts(b"upstream prematurely closed") {
        return Some(ErrorKind::PrematureClose);
    }
    if starts(b"FastCGI sent in stderr: ") {
        if memmem::find(message, b"Primary script unknown").is_some() {
            return Some(ErrorKind::ScriptUnknown);
        }
        if memmem::find(message, b"PHP Fatal error").is_some() {
            return Some(ErrorKind::PhpFatal);
        }
        return None;
    }
    if starts(b"upstream sent too big header") {
        return Some(ErrorKind::TooBigHeader);
    }
    if starts(b"upstream sent unsupported FastCGI protocol version")
        || starts(b"upstream sent invalid")
    {
        return Some(ErrorKind::BadProtocol);
    }
    if starts(b"no live upstreams") {
        return Some(ErrorKind::NoLiveUpstreams);
    }
    None
}

/// One access log line in the `combined` (or `common`) format: its time and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRecord {
    /// `$time_local`, wall clock.
    pub time: Civil,
    /// `$status`.
    pub status: u16,
}

/// Patterns that mark an access log line with a failed status; others are never parsed.
pub const ACCESS_NEEDLES: &[&str] = &["\" 500 ", "\" 502 ", "\" 503 ", "\" 504 "];

/// Parses a `combined`/`common` access log line: `ADDR - USER [TIME] "REQUEST" STATUS BYTES ...`.
pub fn parse_access(line: &[u8]) -> Option<AccessRecord> {
    let open = memchr::memchr(b'[', line)?;
    let time = time::parse_access(line.get(open + 1..)?)?;
    let close = open + memchr::memchr(b']', &line[open..])?;
    let rest = line.get(close + 1..)?.strip_prefix(b" \"")?;
    // The request may contain escaped quotes (`\"`): the status follows the first `" `
    // followed by three digits and a space.
    let mut from = 0;
    loop {
        let q = from + memmem::find(&rest[from..], b"\" ")?;
        let after = &rest[q + 2..];
        let escaped = q > 0 && rest[q - 1] == b'\\';
        if after.len() >= 4 && digits(&after[..3]) == 3 && after[3] == b' ' && !escaped {
            let status = parse_u64(&after[..3])? as u16;
            return Some(AccessRecord { time, status });
        }
        from = q + 1;
        if from >= rest.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as nginx 1.22.1 wrote them when a real php-fpm 8.2 was behind it.
    const PERM: &[u8] = b"2026/11/30 05:46:43 [crit] 17177#17177: *1 connect() to unix:/tmp/dr/www.sock failed (13: Permission denied) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /perm/x HTTP/1.1\", upstream: \"fastcgi://unix:/tmp/dr/www.sock:\", host: \"127.0.0.1:19380\"";
    const REFUSED: &[u8] = b"2026/11/30 05:46:43 [error] 17177#17177: *5 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /refused/x HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19312\", host: \"127.0.0.1:19380\"";
    const FATAL: &[u8] = b"2026/11/30 05:46:44 [error] 17177#17177: *15 FastCGI sent in stderr: \"PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function undefined_function_x() in /tmp/dr/www/fatal.php:1\nStack trace:\n#0 {main}\n  thrown in /tmp/dr/www/fatal.php on line 1\" while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /fatal.php HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19311\", host: \"127.0.0.1:19380\"";
    const NOTICE: &[u8] = b"2026/11/30 05:46:42 [notice] 17175#17175: start worker process 17177";

    #[test]
    fn parses_a_connect_failure() {
        let r = parse_error(PERM).unwrap();
        assert_eq!(r.level, b"crit");
        assert_eq!(r.pid, 17177);
        assert_eq!(r.cid, Some(1));
        assert_eq!(r.client, Some(&b"127.0.0.1"[..]));
        assert_eq!(r.server, Some(&b""[..]));
        assert_eq!(r.request, Some(&b"GET /perm/x HTTP/1.1"[..]));
        assert_eq!(r.upstream, Some(&b"fastcgi://unix:/tmp/dr/www.sock:"[..]));
        assert_eq!(classify(r.message), Some(ErrorKind::ConnectFailed(13)));
        let r = parse_error(REFUSED).unwrap();
        assert_eq!(classify(r.message), Some(ErrorKind::ConnectFailed(111)));
        assert_eq!(r.upstream, Some(&b"fastcgi://127.0.0.1:19312"[..]));
    }

    #[test]
    fn a_php_fatal_spans_lines_and_keeps_its_context() {
        let r = parse_error(FATAL).unwrap();
        assert_eq!(classify(r.message), Some(ErrorKind::PhpFatal));
        assert_eq!(r.request, Some(&b"GET /fatal.php HTTP/1.1"[..]));
        assert!(!starts_record(b"Stack trace:"));
        assert!(starts_record(FATAL));
    }

    #[test]
    fn a_message_without_connection_has_no_context() {
        let r = parse_error(NOTICE).unwrap();
        assert_eq!(r.cid, None);
        assert_eq!(r.message, b"start worker process 17177");
        assert_eq!(r.upstream, None);
        assert_eq!(classify(r.message), None);
    }

    #[test]
    fn classifies_each_upstream_failure() {
        let cases: &[(&[u8], Option<ErrorKind>)] = &[
            (
                b"recv() failed (104: Connection reset by peer) while reading response header from upstream",
                Some(ErrorKind::Reset),
            ),
            (
                b"upstream timed out (110: Connection timed out) while reading response header from upstream",
                Some(ErrorKind::ReadTimedOut),
            ),
            (
                b"upstream timed out (110: Connection timed out) while connecting to upstream",
                Some(ErrorKind::ConnectTimedOut),
            ),
            (
                b"FastCGI sent in stderr: \"Primary script unknown\" while reading response header from upstream",
                Some(ErrorKind::ScriptUnknown),
            ),
            (
                b"upstream sent too big header while reading response header from upstream",
                Some(ErrorKind::TooBigHeader),
            ),
            (
                b"upstream sent unsupported FastCGI protocol version: 72 while reading response header from upstream",
                Some(ErrorKind::BadProtocol),
            ),
            (
                b"connect() to unix:/x.sock failed (11: Resource temporarily unavailable) while connecting to upstream",
                Some(ErrorKind::ConnectFailed(11)),
            ),
            (b"FastCGI sent in stderr: \"PHP message: PHP Warning:  x\"", None),
            (b"client 127.0.0.1 closed keepalive connection", None),
            (b"connect() failed (", None),
        ];
        for (msg, want) in cases {
            assert_eq!(classify(msg), *want, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn parses_combined_access_lines() {
        let line = b"127.0.0.1 - - [30/Nov/2026:05:46:43 +0000] \"GET /perm/x HTTP/1.1\" 502 157 \"-\" \"curl/7.88.1\"";
        let r = parse_access(line).unwrap();
        assert_eq!(r.status, 502);
        assert_eq!(
            r.time,
            time::parse_nginx_error(b"2026/11/30 05:46:43").unwrap()
        );
        let quoted = b"::1 - bob [30/Nov/2026:05:46:43 +0000] \"GET /a\\\" 502 x HTTP/1.1\" 200 5 \"-\" \"-\"";
        assert_eq!(parse_access(quoted).unwrap().status, 200);
        assert_eq!(parse_access(b"garbage [30/Nov/2026:05:46:43 +0000]"), None);
        // Hostile input: an empty quoted request right before the status.
        assert_eq!(
            parse_access(b"x [30/Nov/2026:05:46:43 +0000] \"\" 400 0 \"-\" \"-\"")
                .map(|r| r.status),
            Some(400)
        );
    }
}
