//! Writing to stdout and stderr without ever failing.
//!
//! fpmctl's output may go to a pipe whose reader has gone (`fpmctl restart 2>&1 | head -1`),
//! a terminal that hung up (an SSH session that dropped), or a full disk. None of that may
//! abort a lifecycle step half way: a restart that panics on a log line after the stop
//! leaves FPM down. Every write here swallows its error (Rust ignores `SIGPIPE`, so a closed
//! pipe is an `EPIPE` error, not a signal); the command's own exit code stands.

use std::io::Write;

/// Writes `text` to stdout; a failed write is ignored.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `text` to stderr; a failed write is ignored.
pub fn eprint(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The log's writer: stderr, where a failed write counts as written, so the log layer never
/// reports (and never panics on) a broken pipe or a dead terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().lock().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'a self) -> Self::Writer {
        LossyStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_never_fails() {
        let mut w = LossyStderr;
        assert_eq!(w.write(b"").unwrap(), 0);
        assert!(w.flush().is_ok());
    }
}
