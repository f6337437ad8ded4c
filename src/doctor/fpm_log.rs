//! php-fpm's error log, one line at a time: `[30-Nov-2026 05:47:09] WARNING: [pool dyn]
//! server reached pm.max_children setting (2), consider raising it`.
//!
//! Only the lines that tell something about failed requests or about FPM's own life are
//! recognised; the parser borrows from the line and does not allocate.

use super::time::{self, Civil};
use memchr::memmem;

/// A recognised FPM log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmRecord<'a> {
    /// When it was written (wall clock).
    pub time: Civil,
    /// `NOTICE`, `WARNING`, `ERROR`, `ALERT`, `DEBUG`.
    pub level: &'a [u8],
    /// The pool, for lines that name one.
    pub pool: Option<&'a [u8]>,
    /// What it says.
    pub kind: FpmKind<'a>,
}

/// What an FPM log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FpmKind<'a> {
    /// `server reached pm.max_children setting (N), consider raising it`.
    MaxChildren(u32),
    /// `seems busy (you may need to increase pm.start_servers, or pm.min/max_spare_servers)`.
    SeemsBusy,
    /// `child PID exited on signal N (NAME)`.
    Signal {
        /// The worker.
        pid: u32,
        /// The signal number.
        signo: u32,
        /// Its name as FPM wrote it (`SIGSEGV`, `SIGSEGV - core dumped`).
        name: &'a [u8],
    },
    /// `child PID, script 'PATH' (request: "...") execution timed out (S sec), terminating`.
    Terminated {
        /// The worker.
        pid: u32,
        /// The script.
        script: &'a [u8],
    },
    /// `unable to bind listening socket for address 'ADDR': REASON`.
    BindFailed {
        /// The address as FPM wrote it.
        addr: &'a [u8],
        /// The reason, e.g. `Address already in use (98)`.
        reason: &'a [u8],
    },
    /// `Another FPM instance seems to already listen on PATH`.
    AlreadyListening(&'a [u8]),
    /// `FPM initialization failed`.
    InitFailed,
    /// A PHP fatal error a worker wrote to its stderr.
    PhpFatal(&'a [u8]),
    /// `ready to handle connections`.
    Ready,
    /// `exiting, bye-bye!`.
    Exiting,
}

/// The byte patterns that mark a line of interest; lines without one are never parsed.
pub const NEEDLES: &[&str] = &[
    "max_children setting",
    "seems busy",
    "exited on signal",
    "execution timed out",
    "unable to bind",
    "already listen on",
    "initialization failed",
    "PHP Fatal error",
    "ready to handle connections",
    "exiting, bye-bye",
];

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// The number right after `prefix` in `b`.
fn number_after(b: &[u8], prefix: &[u8]) -> Option<u32> {
    let at = memmem::find(b, prefix)? + prefix.len();
    let n = digits(&b[at..]);
    parse_u32(&b[at..at + n])
}

/// Parses one line of FPM's error log; `None` for lines of no interest.
pub fn parse(line: &[u8]) -> Option<FpmRecord<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let rest = line.strip_prefix(b"[")?;
    let time = time::parse_fpm(rest)?;
    let rest = rest.get(20..)?.strip_prefix(b"] ")?;
    let colon = memmem::find(rest, b": ")?;
    let level = &rest[..colon];
    if level.is_empty() || level.len() > 8 || !level.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let mut msg = &rest[colon + 2..];
    let mut pool = None;
    if let Some(p) = msg.strip_prefix(b"[pool ") {
        let close = memchr::memchr(b']', p)?;
        pool = Some(&p[..close]);
        msg = p
            .get(close + 1..)?
            .strip_prefix(b" ")
            .unwrap_or(&p[close + 1..]);
    }
    let kind = kind_of(msg)?;
    Some(FpmRecord {
        time,
        level,
        pool,
        kind,
    })
}

fn kind_of(msg: &[u8]) -> Option<FpmKind<'_>> {
    let has = |p: &[u8]| memmem::find(msg, p).is_some();
    if has(b"max_children setting (") {
        return number_after(msg, b"max_children setting (").map(FpmKind::MaxChildren);
    }
    if has(b"seems busy") {
        return Some(FpmKind::SeemsBusy);
    }
    if let Some(sig_at) = memmem::find(msg, b" exited on signal ") {
        let pid = number_after(msg, b"child ")?;
        let after = &msg[sig_at + b" exited on signal ".len()..];
        let n = digits(after);
        let signo = parse_u32(&after[..n])?;
        let name = after[n..]
            .strip_prefix(b" (")
            .and_then(|r| memchr::memchr(b')', r).map(|c| &r[..c]))
            .unwrap_or(b"");
        return Some(FpmKind::Signal { pid, signo, name });
    }
    if has(b"execution timed out") {
        let pid = number_after(msg, b"child ")?;
        let script = memmem::find(msg, b"script '")
            .map(|i| &msg[i + 8..])
            .and_then(|r| memchr::memchr(b'\'', r).map(|c| &r[..c]))
            .unwrap_or(b"");
        return Some(FpmKind::Terminated { pid, script });
    }
    if let Some(i) = memmem::find(msg, b"unable to bind listening socket for address '") {
        let r = &msg[i + b"unable to bind listening socket for address '".len()..];
        let close = memchr::memchr(b'\'', r)?;
        let reason = r[close + 1..]
            .strip_prefix(b": ")
            .unwrap_or(&r[close + 1..]);
        return Some(FpmKind::BindFailed {
            addr: &r[..close],
            reason,
        });
    }
    if let Some(i) = memmem::find(msg, b"seems to already listen on ") {
        let addr = &msg[i + b"seems to already listen on ".len()..];
        return Some(FpmKind::AlreadyListening(addr));
    }
    if has(b"FPM initialization failed") {
        return Some(FpmKind::InitFailed);
    }
    if let Some(i) = memmem::find(msg, b"PHP Fatal error") {
        return Some(FpmKind::PhpFatal(&msg[i..]));
    }
    if has(b"ready to handle connections") {
        return Some(FpmKind::Ready);
    }
    if has(b"exiting, bye-bye") {
        return Some(FpmKind::Exiting);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as php-fpm 8.2.36 wrote them.
    #[test]
    fn parses_each_kind() {
        let r = parse(b"[30-Nov-2026 05:47:09] WARNING: [pool dyn] server reached pm.max_children setting (2), consider raising it").unwrap();
        assert_eq!(r.pool, Some(&b"dyn"[..]));
        assert_eq!(r.level, b"WARNING");
        assert_eq!(r.kind, FpmKind::MaxChildren(2));

        let r = parse(b"[30-Nov-2026 05:46:44] WARNING: [pool tcp] child 17178 exited on signal 11 (SIGSEGV) after 1.644467 seconds from start").unwrap();
        assert_eq!(
            r.kind,
            FpmKind::Signal {
                pid: 17178,
                signo: 11,
                name: b"SIGSEGV"
            }
        );

        let r = parse(b"[30-Nov-2026 05:46:56] WARNING: [pool www] child 17168, script '/tmp/dr/www/slow.php' (request: \"GET /term/x?s=6\") execution timed out (5.032927 sec), terminating").unwrap();
        assert_eq!(
            r.kind,
            FpmKind::Terminated {
                pid: 17168,
                script: b"/tmp/dr/www/slow.php"
            }
        );

        let r = parse(b"[30-Nov-2026 05:47:07] ERROR: unable to bind listening socket for address '127.0.0.1:19311': Address already in use (98)").unwrap();
        assert_eq!(r.pool, None);
        assert_eq!(
            r.kind,
            FpmKind::BindFailed {
                addr: b"127.0.0.1:19311",
                reason: b"Address already in use (98)"
            }
        );

        let r = parse(
            b"[30-Nov-2026 05:47:00] ERROR: Another FPM instance seems to already listen on /tmp/dr/www.sock\n",
        )
        .unwrap();
        assert_eq!(r.kind, FpmKind::AlreadyListening(b"/tmp/dr/www.sock"));
        let r = parse(b"[30-Nov-2026 05:47:00] ERROR: FPM initialization failed").unwrap();
        assert_eq!(r.kind, FpmKind::InitFailed);
        // catch_workers_output = yes, log_errors to the worker's stderr.
        let r = parse(b"[30-Nov-2026 06:26:46] WARNING: [pool www] child 8218 said into stderr: \"NOTICE: PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function undefined_fn_y() in /tmp/drf/f.php:1\"").unwrap();
        assert_eq!(r.pool, Some(&b"www"[..]));
        assert!(
            matches!(r.kind, FpmKind::PhpFatal(m) if m.starts_with(b"PHP Fatal error:  Uncaught"))
        );
        let r = parse(b"[30-Nov-2026 05:46:42] NOTICE: ready to handle connections").unwrap();
        assert_eq!(r.kind, FpmKind::Ready);
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(
            parse(b"[30-Nov-2026 05:46:42] NOTICE: fpm is running, pid 17167"),
            None
        );
        assert_eq!(
            parse(b"[30-Nov-2026 05:46:44] NOTICE: [pool tcp] child 17294 started"),
            None
        );
        assert_eq!(parse(b"exited on signal 11"), None);
        assert_eq!(
            parse(b"[30-Nov-2026 05:46:44] WARNING: [pool tcp child 1 exited on signal 11"),
            None
        );
    }
}
