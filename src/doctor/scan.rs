//! Streaming through log files: a multi-pattern byte search (aho-corasick) finds the few
//! lines that can matter, and only those are parsed. Memory stays constant: the file is read
//! in chunks, and what is kept is the tally of [`Observations`].
//!
//! Also here: which files a log path stands for once rotation is counted (`error.log.1`,
//! `error.log.2.gz`, ...), and reading `.gz` files through flate2.

use super::nginx_log;
use super::observe::{Evidence, Observations};
use super::time::Civil;
use super::{fpm_log, nginx_log::starts_record};
use aho_corasick::{AhoCorasick, Input, MatchKind};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;
/// The longest record (a PHP message with its stack trace) kept whole, in bytes.
const MAX_RECORD: usize = 64 << 10;

/// Which log a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// nginx's error log.
    NginxError,
    /// nginx's access log (`combined` or `common`).
    NginxAccess,
    /// php-fpm's error log.
    Fpm,
}

impl LogKind {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::NginxError => "nginx error log",
            LogKind::NginxAccess => "nginx access log",
            LogKind::Fpm => "FPM log",
        }
    }
}

/// A prepared search for one kind of log.
#[derive(Debug, Clone)]
pub struct Scanner {
    kind: LogKind,
    ac: AhoCorasick,
}

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Bytes consumed (complete lines only, unless the scan was told the input is final).
    pub offset: u64,
    /// Lines consumed.
    pub line: u64,
}

impl Scanner {
    /// A scanner for `kind`.
    pub fn new(kind: LogKind) -> Scanner {
        let needles: &[&str] = match kind {
            LogKind::NginxError => nginx_log::ERROR_NEEDLES,
            LogKind::NginxAccess => nginx_log::ACCESS_NEEDLES,
            LogKind::Fpm => fpm_log::NEEDLES,
        };
        // The needles are a dozen short literals fixed at compile time: building the
        // automaton fails only on size limits they are far below, never on input.
        #[allow(clippy::expect_used)]
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(needles)
            .expect("a dozen fixed literals always build");
        Scanner { kind, ac }
    }

    /// Reads `input` to its end, counting what matters into `obs`. `file` names it in evidence;
    /// `from` is where `input` starts (for resuming a followed file); records before `since`
    /// are skipped. With `complete`, a last line without a newline counts too; otherwise it is
    /// left for the next read and not included in the returned position.
    pub fn scan(
        &self,
        mut input: impl Read,
        file: &str,
        from: Position,
        since: Option<Civil>,
        complete: bool,
        obs: &mut Observations,
    ) -> io::Result<Position> {
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + MAX_RECORD);
        let mut pos = from;
        let mut eof = false;
        while !eof || !buf.is_empty() {
            // Fill the buffer to one chunk past what is carried over.
            let want = buf.len() + CHUNK;
            while !eof && buf.len() < want {
                let old = buf.len();
                buf.resize(want, 0);
                match input.read(&mut buf[old..]) {
                    Ok(0) => {
                        buf.truncate(old);
                        eof = true;
                    }
                    Ok(n) => buf.truncate(old + n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(old),
                    Err(e) => {
                        buf.truncate(old);
                        return Err(e);
                    }
                }
            }
            let end = match memchr::memrchr(b'\n', &buf) {
                Some(i) if !(eof && complete) => i + 1,
                _ if eof && complete => buf.len(),
                Some(i) => i + 1,
                None if eof => 0,
                None if buf.len() > MAX_RECORD => buf.len(),
                None => continue,
            };
            let (done, lines) = self.scan_block(&buf[..end], eof, file, pos.line, since, obs);
            pos.offset += done as u64;
            pos.line += lines;
            obs.bytes += done as u64;
            buf.drain(..done);
            if eof && (done == 0 || buf.is_empty()) {
                break;
            }
        }
        Ok(pos)
    }

    /// Scans whole lines in `block`; returns bytes consumed and newlines counted. A record
    /// whose continuation lines may go on past the block is left for the next block.
    fn scan_block(
        &self,
        block: &[u8],
        last: bool,
        file: &str,
        first_line: u64,
        since: Option<Civil>,
        obs: &mut Observations,
    ) -> (usize, u64) {
        let mut at = 0usize; // next byte to search from
        let mut counted = 0usize; // newlines are counted up to here
        let mut line = first_line; // lines before `counted`
        while at < block.len() {
            let Some(m) = self.ac.find(Input::new(block).span(at..block.len())) else {
                break;
            };
            let start = memchr::memrchr(b'\n', &block[..m.start()]).map_or(0, |i| i + 1);
            let mut stop = memchr::memchr(b'\n', &block[m.start()..])
                .map_or(block.len(), |i| m.start() + i + 1);
            if start < at {
                // Inside a record already handled.
                at = stop;
                continue;
            }
            if self.kind == LogKind::NginxError && starts_record(&block[start..]) {
                // Continuation lines (no timestamp) belong to this record.
                while stop < block.len()
                    && stop - start < MAX_RECORD
                    && !starts_record(&block[stop..])
                {
                    stop =
                        memchr::memchr(b'\n', &block[stop..]).map_or(block.len(), |i| stop + i + 1);
                }
                if stop == block.len() && !last && stop - start < MAX_RECORD && start > 0 {
                    // The record may continue in the next block.
                    line += count_newlines(&block[counted..start]);
                    return (start, line - first_line);
                }
            }
            line += count_newlines(&block[counted..start]);
            counted = start;
            self.record(&block[start..stop], file, line + 1, since, obs);
            at = stop;
        }
        line += count_newlines(&block[counted..]);
        (block.len(), line - first_line)
    }

    fn record(
        &self,
        rec: &[u8],
        file: &str,
        line: u64,
        since: Option<Civil>,
        obs: &mut Observations,
    ) {
        let ev = || Evidence::new(file, line, rec);
        let after = |t: Civil| since.is_none_or(|s| t >= s);
        match self.kind {
            LogKind::NginxError => {
                if let Some(r) = nginx_log::parse_error(rec)
                    && after(r.time)
                    && let Some(kind) = nginx_log::classify(r.message)
                {
                    obs.add_nginx(kind, r.upstream.unwrap_or_default(), r.time, ev);
                }
            }
            LogKind::NginxAccess => {
                if let Some(r) = nginx_log::parse_access(rec)
                    && after(r.time)
                    && r.status >= 500
                {
                    obs.add_access(r.status, r.time, ev);
                }
            }
            LogKind::Fpm => {
                if let Some(r) = fpm_log::parse(rec)
                    && after(r.time)
                {
                    obs.add_fpm(&r, ev);
                }
            }
        }
    }
}

/// Newlines in `b`, counted in blocks the compiler vectorises.
pub fn count_newlines(b: &[u8]) -> u64 {
    let mut total = 0u64;
    for chunk in b.chunks(255) {
        let mut n = 0u8;
        for &c in chunk {
            n += u8::from(c == b'\n');
        }
        total += u64::from(n);
    }
    total
}

/// Opens a log file, decompressing `.gz`. Only a regular file is read: a log that is a pipe,
/// a terminal or a device (nginx's image links its logs to `/dev/stdout` and `/dev/stderr`,
/// which for fpmctl are its own) would block the read, or never end. It is opened without
/// blocking, so a FIFO without a writer cannot hang the open either. What the path names is
/// looked at before it is opened for reading (through an `O_PATH` descriptor, which opens
/// nothing): opening is itself an action on a device or a FIFO (a watchdog device arms, a
/// terminal can become fpmctl's controlling terminal), and a log path can be a symlink a
/// site's user planted.
pub fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    use std::os::unix::fs::OpenOptionsExt;
    let at = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    if !at.metadata()?.is_file() {
        return Err(io::Error::other(
            "not a regular file (a pipe, a terminal or a device, such as a log sent to /dev/stderr)",
        ));
    }
    // The very file looked at, whatever the path names by now.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&at)
        ))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::new(f),
        )))
    } else {
        Ok(Box::new(f))
    }
}

/// The files a log path stands for, oldest first: rotated siblings (`P.N`, `P.N.gz`, also
/// `P-YYYYMMDD` as logrotate's `dateext` writes them) whose last write is at or after
/// `since` (as a Unix time), then `P` itself. Without `since`, only `P`.
pub fn with_rotated(path: &Path, since_unix: Option<i64>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(since) = since_unix
        && let (Some(dir), Some(name)) = (path.parent(), path.file_name())
    {
        let name = name.to_string_lossy().into_owned();
        let mut rotated: Vec<(i64, PathBuf)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            for e in entries.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let Some(suffix) = fname
                    .strip_prefix(&name)
                    .and_then(|s| s.strip_prefix('.').or_else(|| s.strip_prefix('-')))
                else {
                    continue;
                };
                let core = suffix.strip_suffix(".gz").unwrap_or(suffix);
                if core.is_empty() || !core.bytes().all(|c| c.is_ascii_digit()) {
                    continue;
                }
                let Ok(meta) = e.metadata() else { continue };
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                if mtime >= since {
                    rotated.push((mtime, dir.join(&fname)));
                }
            }
        }
        rotated.sort();
        out.extend(rotated.into_iter().map(|(_, p)| p));
    }
    out.push(path.to_path_buf());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::nginx_log::ErrorKind;

    /// Opening is itself an action on a device or a FIFO (a watchdog device arms, a terminal
    /// can become the controlling terminal of a session without one, a FIFO lets a writer
    /// waiting for a reader through): one a log path names (a symlink planted in a log
    /// directory a site's user can write) is refused without being opened.
    #[test]
    fn a_pipe_a_log_path_points_to_is_refused_without_being_opened() {
        use std::os::unix::fs::OpenOptionsExt;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let link = dir.path().join("access.log");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        // A writer that waits in open() until a reader opens the FIFO.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        let w = fifo.clone();
        std::thread::spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw());
            let _ = tx.send(std::fs::OpenOptions::new().write(true).open(&w).is_ok());
        });
        let tid = tid_rx.recv().unwrap();
        // Until it waits there (first field of its syscall file: the call it blocks in).
        let openat = libc::SYS_openat.to_string();
        while std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
            .ok()
            .and_then(|t| t.split(' ').next().map(|n| n != openat))
            .unwrap_or(true)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let err = open(&link).err().expect("a FIFO is refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // Opened by a reader, the writer's open would have returned.
        assert!(
            rx.recv_timeout(Duration::from_secs(2)).is_err(),
            "the FIFO was opened"
        );
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(60)).unwrap());
    }

    #[test]
    fn a_log_that_is_a_pipe_or_a_device_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("error.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would wait for one for ever.
        let err = open(&fifo).err().expect("a FIFO is refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = open(Path::new("/dev/null"))
            .err()
            .expect("a device is refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let file = dir.path().join("access.log");
        std::fs::write(&file, "x\n").unwrap();
        let mut text = String::new();
        open(&file).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "x\n");
    }

    const FATAL: &str = "2026/11/30 05:46:44 [error] 17177#17177: *15 FastCGI sent in stderr: \"PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function undefined_function_x() in /tmp/dr/www/fatal.php:1\nStack trace:\n#0 {main}\n  thrown in /tmp/dr/www/fatal.php on line 1\" while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /fatal.php HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19311\", host: \"127.0.0.1:19380\"\n";
    const REFUSED: &str = "2026/11/30 05:46:43 [error] 17177#17177: *5 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /refused/x HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:19312\", host: \"127.0.0.1:19380\"\n";
    const KEEPALIVE: &str =
        "2026/11/30 05:46:43 [info] 17177#17177: *5 client 127.0.0.1 closed keepalive connection\n";

    fn scan(kind: LogKind, text: &str, complete: bool) -> (Observations, Position) {
        let mut obs = Observations::default();
        let pos = Scanner::new(kind)
            .scan(
                text.as_bytes(),
                "log",
                Position::default(),
                None,
                complete,
                &mut obs,
            )
            .unwrap();
        (obs, pos)
    }

    #[test]
    fn counts_events_and_numbers_lines_across_multi_line_records() {
        let text = format!("{KEEPALIVE}{FATAL}{KEEPALIVE}{REFUSED}{REFUSED}");
        let (obs, pos) = scan(LogKind::NginxError, &text, true);
        assert_eq!(pos.line, 8);
        assert_eq!(pos.offset, text.len() as u64);
        let refused = &obs.nginx["fastcgi://127.0.0.1:19312"][&ErrorKind::ConnectFailed(111)];
        assert_eq!(refused.count, 2);
        assert_eq!(refused.samples[0].line, 7);
        assert_eq!(refused.samples[1].line, 8);
        let fatal = &obs.nginx["fastcgi://127.0.0.1:19311"][&ErrorKind::PhpFatal];
        assert_eq!(fatal.samples[0].line, 2);
        assert!(
            fatal.samples[0].text.ends_with("fatal.php:1"),
            "{}",
            fatal.samples[0].text
        );
    }

    #[test]
    fn a_partial_last_line_waits_unless_complete() {
        let text = format!("{REFUSED}{}", &REFUSED[..60]);
        let (obs, pos) = scan(LogKind::NginxError, &text, false);
        assert_eq!(pos.offset, REFUSED.len() as u64);
        assert_eq!(pos.line, 1);
        assert_eq!(obs.nginx.values().flat_map(|k| k.values()).count(), 1);
    }

    #[test]
    fn large_inputs_split_into_chunks_keep_every_record() {
        let mut text = String::new();
        while text.len() < 3 * CHUNK {
            text.push_str(KEEPALIVE);
            text.push_str(FATAL);
            text.push_str(REFUSED);
        }
        let rounds = text.len() / (KEEPALIVE.len() + FATAL.len() + REFUSED.len());
        let (obs, pos) = scan(LogKind::NginxError, &text, true);
        assert_eq!(pos.line as usize, rounds * 6);
        let fatal = &obs.nginx["fastcgi://127.0.0.1:19311"][&ErrorKind::PhpFatal];
        assert_eq!(fatal.count as usize, rounds);
        let refused = &obs.nginx["fastcgi://127.0.0.1:19312"][&ErrorKind::ConnectFailed(111)];
        assert_eq!(refused.count as usize, rounds);
    }

    #[test]
    fn since_skips_older_records() {
        let text = format!("{REFUSED}{}", REFUSED.replace("05:46:43", "05:50:00"));
        let mut obs = Observations::default();
        let since = crate::doctor::time::parse_nginx_error(b"2026/11/30 05:47:00");
        Scanner::new(LogKind::NginxError)
            .scan(
                text.as_bytes(),
                "log",
                Position::default(),
                since,
                true,
                &mut obs,
            )
            .unwrap();
        let t = &obs.nginx["fastcgi://127.0.0.1:19312"][&ErrorKind::ConnectFailed(111)];
        assert_eq!((t.count, t.samples[0].line), (1, 2));
    }

    #[test]
    fn newline_count_matches_a_naive_count() {
        let b: Vec<u8> = (0..10_000u32)
            .map(|i| if i % 7 == 0 { b'\n' } else { b'x' })
            .collect();
        assert_eq!(
            count_newlines(&b),
            b.iter().filter(|c| **c == b'\n').count() as u64
        );
    }

    #[test]
    fn rotated_files_are_read_oldest_first_when_since_reaches_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("error.log");
        std::fs::write(&log, REFUSED).unwrap();
        std::fs::write(dir.path().join("error.log.1"), REFUSED).unwrap();
        let gz = std::fs::File::create(dir.path().join("error.log.2.gz")).unwrap();
        let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, REFUSED.as_bytes()).unwrap();
        enc.finish().unwrap();
        std::fs::write(dir.path().join("error.log.old"), REFUSED).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("error.log.2.gz"))
            .unwrap();
        f.set_modified(old).unwrap();
        assert_eq!(with_rotated(&log, None), vec![log.clone()]);
        let now = crate::doctor::time::now_unix();
        let files = with_rotated(&log, Some(now - 3600));
        assert_eq!(files, vec![dir.path().join("error.log.1"), log.clone()]);
        let files = with_rotated(&log, Some(now - 3 * 3600));
        assert_eq!(files.len(), 3);
        assert_eq!(files[0], dir.path().join("error.log.2.gz"));
        let mut text = String::new();
        open(&files[0]).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, REFUSED);
    }
}
