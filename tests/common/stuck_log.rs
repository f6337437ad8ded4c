//! An FPM error log that is a FIFO whose reader has stalled (a log shipper that hung): its
//! buffer is full, so whoever writes to it next blocks. Real php-fpm's daemon writes
//! `fpm is running` to its error log before it tells its launcher it started, so with this
//! log the launcher never returns and the daemon stays half started.
//!
//! `php-fpm -t` on the same config writes one line to that log and must be let through (fpmctl
//! tests the config before it launches). The buffer is one page, and a pipe takes a write only
//! into the room after its last byte, so room is made by reading the whole page and writing
//! back at once all but what the config test writes (measured once, at the start, plus two
//! bytes for a PID one digit longer): whichever goes first, the buffer is full again, but
//! for those two bytes, once the test has written, far less than the daemon's line.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const GATE: u8 = 0;
const DRAIN: u8 = 1;
const QUIT: u8 = 2;
const PAGE: usize = 4096;
const SLACK: usize = 2;

pub struct StuckLog {
    pub path: PathBuf,
    mode: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl StuckLog {
    /// Creates the FIFO at `path` (which `conf` names as its error log) and fills it; config
    /// tests of `conf` by `bin` are let through.
    pub fn new(path: &Path, conf: &Path, bin: &Path) -> StuckLog {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).unwrap();
        // Held open for reading and writing: FPM's open of its log never blocks, and the
        // buffer never loses its reader.
        let fd: OwnedFd = open(path, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        // One page of buffer.
        // SAFETY: fcntl(2) on a descriptor this process owns; no memory is passed.
        let set = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PAGE as libc::c_int) };
        assert!(set > 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
        // What a config test writes to it.
        let out = std::process::Command::new(bin)
            .arg("-y")
            .arg(conf)
            .arg("-t")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "php-fpm -t: {out:?}");
        let mut buf = [0u8; PAGE];
        let mut test_writes = 0;
        while let Ok(n @ 1..) = nix::unistd::read(&fd, &mut buf) {
            test_writes += n;
        }
        assert!(
            test_writes > 0 && test_writes + SLACK < PAGE,
            "{test_writes}"
        );
        // Filled.
        let chunk = [b'#'; 256];
        while nix::unistd::write(&fd, &chunk).is_ok() {}
        while nix::unistd::write(&fd, &chunk[..1]).is_ok() {}
        let mode = Arc::new(AtomicU8::new(GATE));
        let thread = {
            let mode = Arc::clone(&mode);
            let conf = conf.to_path_buf();
            std::thread::spawn(move || keeper(fd, &conf, &mode, test_writes))
        };
        StuckLog {
            path: path.to_path_buf(),
            mode,
            thread: Some(thread),
        }
    }

    /// The reader comes back: from now on everything written is read (and dropped).
    pub fn drain(&self) {
        self.mode.store(DRAIN, Ordering::SeqCst);
    }
}

impl Drop for StuckLog {
    fn drop(&mut self) {
        self.mode.store(QUIT, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn keeper(fd: OwnedFd, conf: &Path, mode: &AtomicU8, test_writes: usize) {
    let mut buf = [0u8; 65536];
    let filler = [b'#'; PAGE];
    loop {
        match mode.load(Ordering::SeqCst) {
            QUIT => return,
            DRAIN => while matches!(nix::unistd::read(&fd, &mut buf), Ok(n) if n > 0) {},
            _ => {
                for pid in blocked_config_tests(conf) {
                    // The page out, and back all but the test's line: full again once it
                    // wrote, in either order.
                    let _ = nix::unistd::read(&fd, &mut buf[..PAGE]);
                    let _ = nix::unistd::write(&fd, &filler[..PAGE - test_writes - SLACK]);
                    let waited = std::time::Instant::now();
                    while writing_to_pipe(pid) && waited.elapsed() < Duration::from_millis(500) {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    if writing_to_pipe(pid) && mode.load(Ordering::SeqCst) == GATE {
                        // It writes more than measured: room until it is done, then full again
                        // (before a launcher, which runs only once the test has exited, writes).
                        eprintln!("stuck log: config test {pid} writes more than measured");
                        while writing_to_pipe(pid) && mode.load(Ordering::SeqCst) == GATE {
                            while matches!(nix::unistd::read(&fd, &mut buf), Ok(n) if n > 0) {}
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        while nix::unistd::write(&fd, &filler[..256]).is_ok() {}
                        while nix::unistd::write(&fd, &filler[..1]).is_ok() {}
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// PIDs of `php-fpm ... -y CONF ... -t` processes blocked writing to a pipe.
fn blocked_config_tests(conf: &Path) -> Vec<i32> {
    let conf = conf.as_os_str().as_encoded_bytes();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&&b"-t"[..]) && args.contains(&conf)
        })
        .filter(|pid| writing_to_pipe(*pid))
        .collect()
}

fn writing_to_pipe(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe_write"))
}
