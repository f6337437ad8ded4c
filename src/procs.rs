//! The process table as fpmctl sees it: one consistent read of `/proc` per question.
//!
//! A process is identified by its PID *and* its start time ([`ProcId`]); PIDs are reused by
//! the kernel, start times are not reused for the same PID. Zombies are treated as gone:
//! they hold no sockets and may never be reaped when PID 1 does not reap.
//!
//! This module only reads; signalling lives in [`crate::signals`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// PID plus start time (clock ticks since boot): a process identity that survives PID reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    /// The PID.
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`.
    pub start_time: u64,
}

/// What fpmctl knows about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Identity.
    pub id: ProcId,
    /// Parent PID.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// State letter from `/proc/PID/stat` (`R`, `S`, `Z`, ...).
    pub state: char,
    /// `comm`: the short program name.
    pub comm: String,
    /// The command line with NULs as spaces: for FPM the process title it set.
    pub title: String,
    /// The executable, when readable (` (deleted)` stripped).
    pub exe: Option<PathBuf>,
    /// Socket inodes among its open files (filled only by [`scan`] with sockets).
    pub sockets: Vec<u64>,
}

impl ProcInfo {
    /// The PID.
    pub fn pid(&self) -> i32 {
        self.id.pid
    }

    /// A zombie (or dead) process counts as gone.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// A short program name for messages: the executable's file name, else `comm`.
    pub fn program(&self) -> String {
        self.exe
            .as_ref()
            .and_then(|e| e.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.comm.clone())
    }

    /// True when the executable looks like a php-fpm binary (`php-fpm`, `php-fpm8.2`, ...).
    /// When the executable cannot be read, `comm` decides.
    pub fn is_php_fpm_binary(&self) -> bool {
        match &self.exe {
            Some(exe) => exe
                .file_name()
                .map(|n| n.to_string_lossy().starts_with("php-fpm"))
                .unwrap_or(false),
            None => self.comm.starts_with("php-fpm"),
        }
    }

    /// How long the process has been running.
    pub fn age(&self) -> Option<Duration> {
        let up = system_uptime()?;
        // `try_`: a zero tick rate or a garbled /proc/uptime gives no age, not a panic.
        let started =
            Duration::try_from_secs_f64(self.id.start_time as f64 / ticks_per_second()).ok()?;
        up.checked_sub(started)
    }
}

fn ticks_per_second() -> f64 {
    procfs::ticks_per_second() as f64
}

fn system_uptime() -> Option<Duration> {
    parse_uptime(&std::fs::read_to_string("/proc/uptime").ok()?)
}

/// The first field of `/proc/uptime` text; `None` for anything not a finite, non-negative
/// number of seconds.
fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// Reads one process; `None` when it does not exist (or vanished while being read).
pub fn read(pid: i32) -> Option<ProcInfo> {
    read_process(pid, false)
}

/// Reads one process only if it is still the same one (same start time) and alive.
pub fn read_same(id: ProcId) -> Option<ProcInfo> {
    read(id.pid).filter(|p| p.id == id && !p.is_gone())
}

fn read_process(pid: i32, with_sockets: bool) -> Option<ProcInfo> {
    let proc = procfs::process::Process::new(pid).ok()?;
    let stat = proc.stat().ok()?;
    let title = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| title_from_cmdline(&raw))
        .unwrap_or_default();
    let exe = proc.exe().ok().map(|p| {
        let s = p.to_string_lossy();
        match s.strip_suffix(" (deleted)") {
            Some(stripped) => PathBuf::from(stripped),
            None => p,
        }
    });
    let sockets = if with_sockets {
        socket_inodes(&proc)
    } else {
        Vec::new()
    };
    Some(ProcInfo {
        id: ProcId {
            pid,
            start_time: stat.starttime,
        },
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        state: stat.state,
        comm: stat.comm,
        title,
        exe,
        sockets,
    })
}

/// Turns raw `/proc/PID/cmdline` bytes into one line: NULs become spaces, padding is trimmed.
pub fn title_from_cmdline(raw: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c == '\0' { ' ' } else { c })
        .collect();
    s.trim().to_string()
}

fn socket_inodes(proc: &procfs::process::Process) -> Vec<u64> {
    let mut out = Vec::new();
    if let Ok(fds) = proc.fd() {
        for fd in fds.flatten() {
            if let procfs::process::FDTarget::Socket(inode) = fd.target {
                out.push(inode);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Reads every process, with its socket inodes when `with_sockets` is set.
pub fn scan(with_sockets: bool) -> Vec<ProcInfo> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut out: Vec<ProcInfo> = all
        .flatten()
        .filter_map(|p| read_process(p.pid(), with_sockets))
        .collect();
    out.sort_by_key(|p| p.id.pid);
    out
}

/// Every process (not zombie) holding one of `inodes` open.
pub fn holders_of<'a>(table: &'a [ProcInfo], inodes: &HashSet<u64>) -> Vec<&'a ProcInfo> {
    table
        .iter()
        .filter(|p| !p.is_gone() && p.sockets.iter().any(|i| inodes.contains(i)))
        .collect()
}

/// The systemd unit a process runs in, from its cgroup path (`.../php8.2-fpm.service`).
pub fn systemd_unit(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_from_cgroup(&text)
}

/// The last `*.service` component of any cgroup path in `/proc/PID/cgroup` text.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        // hierarchy-ID:controllers:path ; the path may itself contain ':'.
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        if let Some(unit) = path
            .split('/')
            .rfind(|c| c.ends_with(".service") && !c.starts_with("user@"))
        {
            found = Some(unit.to_string());
            if line.starts_with("0::") {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbled_uptime_is_no_age_not_a_panic() {
        assert_eq!(
            parse_uptime("12.5 40.0\n"),
            Some(Duration::from_millis(12_500))
        );
        for bad in ["inf 1", "NaN 1", "-1 1", "1e400 1", "", "x"] {
            assert_eq!(parse_uptime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn titles_lose_nuls_and_padding() {
        assert_eq!(
            title_from_cmdline(b"php-fpm: master process (/etc/php.conf)\0\0\0   \0"),
            "php-fpm: master process (/etc/php.conf)"
        );
        assert_eq!(title_from_cmdline(b"sleep\x0030\0"), "sleep 30");
    }

    #[test]
    fn finds_the_service_in_cgroup_paths() {
        assert_eq!(
            unit_from_cgroup("0::/system.slice/php8.2-fpm.service\n").as_deref(),
            Some("php8.2-fpm.service")
        );
        assert_eq!(
            unit_from_cgroup("1:name=systemd:/system.slice/php-fpm.service\n").as_deref(),
            Some("php-fpm.service")
        );
        assert_eq!(
            unit_from_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(
            unit_from_cgroup("0::/user.slice/user-0.slice/user@0.service/app.slice/x.service\n")
                .as_deref(),
            Some("x.service")
        );
        assert_eq!(unit_from_cgroup("0::/\n"), None);
    }

    #[test]
    fn reads_itself_and_sees_its_own_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id() as i32;
        let table = scan(true);
        let mine = table.iter().find(|p| p.pid() == me).unwrap();
        assert!(!mine.is_gone());
        assert!(!mine.sockets.is_empty());
        let same = read_same(mine.id).unwrap();
        assert_eq!(same.id, mine.id);
        let wrong = ProcId {
            pid: me,
            start_time: mine.id.start_time + 1,
        };
        assert!(read_same(wrong).is_none());
        drop(listener);
    }
}
