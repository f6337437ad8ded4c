//! Writing to stdout and stderr without ever failing or stalling.
//!
//! fpmctl's output may go to a pipe whose reader has gone (`fpmctl restart 2>&1 | head -1`),
//! a terminal that hung up (an SSH session that dropped), a pipe nobody reads, or a full
//! disk. None of that may abort or stall a lifecycle step half way: a restart that panics
//! (or blocks) on a log line after the stop leaves FPM down. Every write here swallows its
//! error (Rust ignores `SIGPIPE`, so a closed pipe is an `EPIPE` error, not a signal); the
//! command's own exit code stands. The log goes through a bounded queue to a thread of its
//! own, so a full pipe drops log lines instead of blocking the step that logs them.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Log lines that may wait for a slow stderr before new ones are dropped.
const LOG_QUEUE: usize = 512;

/// The queue to the log thread.
struct LogQueue {
    tx: Option<SyncSender<Vec<u8>>>,
    /// Lines queued and not yet written.
    pending: &'static Pending,
}

/// How many lines wait for the log thread; [`flush_log`] sleeps on the condition variable
/// until the thread has written the last one (woken by it, not by polling).
struct Pending {
    count: Mutex<usize>,
    drained: Condvar,
}

impl Pending {
    fn add(&self, n: isize) {
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.saturating_add_signed(n);
        if *c == 0 {
            self.drained.notify_all();
        }
    }
}

fn log_queue() -> &'static LogQueue {
    static QUEUE: OnceLock<LogQueue> = OnceLock::new();
    static PENDING: Pending = Pending {
        count: Mutex::new(0),
        drained: Condvar::new(),
    };
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(LOG_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || {
                // Signals are never this thread's: a process-directed signal the supervisor
                // reads from its signalfd (blocked in every other thread) must not be
                // delivered here, where its default action would end the process.
                let _ = nix::sys::signal::SigSet::all().thread_block();
                for line in rx {
                    let _ = std::io::stderr().lock().write_all(&line);
                    PENDING.add(-1);
                }
            });
        LogQueue {
            // Without a log thread, lines are written directly (and may block).
            tx: spawned.ok().map(|_| tx),
            pending: &PENDING,
        }
    })
}

/// Waits until the queued log lines are written, at most `limit` (a stderr nobody reads
/// must not keep fpmctl from exiting).
pub fn flush_log(limit: Duration) {
    let deadline = crate::deadline::Deadline::after(limit);
    let p = log_queue().pending;
    let mut count = p.count.lock().unwrap_or_else(|e| e.into_inner());
    while *count > 0 && !deadline.expired() {
        count = match p.drained.wait_timeout(count, deadline.remaining()) {
            Ok((c, _)) => c,
            Err(e) => e.into_inner().0,
        };
    }
}

/// Writes `text` to stdout; a failed write is ignored. It may wait for a slow reader (a
/// pager): stdout is the command's answer, written once at the end, when FPM is settled.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `text` to stderr after the log, waiting at most a second for a stderr nobody reads;
/// a failed write is ignored.
pub fn eprint(text: &str) {
    let _ = LossyStderr.write(text.as_bytes());
    flush_log(Duration::from_secs(1));
}

/// The log's writer: stderr through the log thread. A write always succeeds: a line that
/// cannot be queued (stderr is not keeping up) or written (closed pipe, dead terminal) is
/// dropped, so the log layer never reports, panics on, or waits for a broken stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let q = log_queue();
        match &q.tx {
            Some(tx) => {
                q.pending.add(1);
                if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                    tx.try_send(buf.to_vec())
                {
                    q.pending.add(-1);
                }
            }
            None => {
                let _ = std::io::stderr().lock().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
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
    fn a_write_never_fails_nor_waits_for_ever() {
        let mut w = LossyStderr;
        assert_eq!(w.write(b"").unwrap(), 0);
        assert!(w.flush().is_ok());
        // More lines than the queue holds: the surplus is dropped, nothing blocks.
        for _ in 0..LOG_QUEUE * 2 {
            assert_eq!(w.write(b"").unwrap(), 0);
        }
        flush_log(Duration::from_secs(5));
    }
}
