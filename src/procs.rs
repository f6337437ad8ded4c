//! The process table as fpmctl sees it: one consistent read of `/proc` per question.
//!
//! A process is identified by its PID *and* its start time ([`ProcId`]); PIDs are reused by
//! the kernel, start times are not reused for the same PID. Zombies are treated as gone:
//! they hold no sockets and may never be reaped when PID 1 does not reap.
//!
//! Reading fails closed: a process whose `/proc` entry exists but cannot be read is
//! [`Lookup::Unreadable`], never "gone"; only a missing entry, a zombie or another start
//! time mean gone. A process of another user seen without root has no readable executable
//! or open files: it is marked [`ProcInfo::restricted`], so callers can say what they could
//! not see instead of guessing.
//!
//! This module only reads; signalling lives in [`crate::signals`].

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PID plus start time (clock ticks since boot): a process identity that survives PID reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProcId {
    /// The PID.
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`.
    pub start_time: u64,
}

/// A file's identity: device and inode. Two paths (or a path and a running process's
/// executable) are the same file exactly when these are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `path` names (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The identity in a `stat` result (`fstat`, `fstatat`).
    pub fn of_stat(st: &nix::sys::stat::FileStat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// What fpmctl knows about one process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    /// Device and inode of the running executable (`stat` of `/proc/PID/exe`, which still
    /// works after the file was deleted), when readable.
    pub exe_id: Option<FileId>,
    /// The executable was deleted (or replaced) since the process started it.
    pub exe_deleted: bool,
    /// Its executable or open files could not be read (another user's process, seen
    /// without root): what it runs and which sockets it holds are unknown.
    pub restricted: bool,
    /// Socket inodes among its open files (filled only by [`scan`] with sockets).
    pub sockets: Vec<u64>,
    /// Its real user ID from `/proc/PID/status` (filled only by [`read_uid`]; the owner of
    /// `/proc/PID` is no proof: a process that is not dumpable shows root there).
    pub uid: Option<u32>,
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

/// The outcome of looking one process up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It exists (and, for [`lookup_same`], is the same process, alive).
    Found(ProcInfo),
    /// Proven gone: no such PID, a zombie, or (for [`lookup_same`]) another start time.
    Gone,
    /// Its `/proc` entry exists but could not be read: maybe alive, never "gone".
    Unreadable(String),
}

/// Looks one process up, failing closed.
pub fn lookup(pid: i32) -> Lookup {
    read_process(pid, false)
}

/// Looks up the process `id` names: [`Lookup::Found`] only while it is that process and
/// alive, [`Lookup::Gone`] only when that is proven.
pub fn lookup_same(id: ProcId) -> Lookup {
    match lookup(id.pid) {
        Lookup::Found(p) if p.id == id && !p.is_gone() => Lookup::Found(p),
        Lookup::Found(_) | Lookup::Gone => Lookup::Gone,
        unreadable => unreadable,
    }
}

/// True only when the process `id` is proven gone (an unreadable entry is not).
pub fn is_gone(id: ProcId) -> bool {
    lookup_same(id) == Lookup::Gone
}

/// True only when no live process has `pid`: none at all, or a zombie (an unreadable entry
/// is not gone).
pub fn pid_is_gone(pid: i32) -> bool {
    match lookup(pid) {
        Lookup::Found(p) => p.is_gone(),
        Lookup::Gone => true,
        Lookup::Unreadable(_) => false,
    }
}

/// Reads one process; `None` when it does not exist or could not be read.
pub fn read(pid: i32) -> Option<ProcInfo> {
    match lookup(pid) {
        Lookup::Found(p) => Some(p),
        _ => None,
    }
}

/// Reads one process only if it is still the same one (same start time) and alive.
/// `None` also when it could not be read: use [`is_gone`] to decide that it is gone.
pub fn read_same(id: ProcId) -> Option<ProcInfo> {
    match lookup_same(id) {
        Lookup::Found(p) => Some(p),
        _ => None,
    }
}

fn is_denied(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
}

fn read_process(pid: i32, with_sockets: bool) -> Lookup {
    use procfs::ProcError;
    let unreadable = |e: ProcError| match e {
        ProcError::NotFound(_) => Lookup::Gone,
        other => Lookup::Unreadable(format!("/proc/{pid}: {other}")),
    };
    let proc = match procfs::process::Process::new(pid) {
        Ok(p) => p,
        Err(e) => return unreadable(e),
    };
    let stat = match proc.stat() {
        Ok(s) => s,
        Err(e) => return unreadable(e),
    };
    let title = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| title_from_cmdline(&raw))
        .unwrap_or_default();
    let exe_link = format!("/proc/{pid}/exe");
    let mut restricted = false;
    let mut exe_deleted = false;
    let exe = match std::fs::read_link(&exe_link) {
        Ok(p) => {
            let s = p.to_string_lossy();
            Some(match s.strip_suffix(" (deleted)") {
                Some(stripped) => {
                    exe_deleted = true;
                    PathBuf::from(stripped)
                }
                None => p,
            })
        }
        Err(e) => {
            restricted |= is_denied(&e);
            None
        }
    };
    let exe_id = exe
        .as_ref()
        .and_then(|_| FileId::of(Path::new(&exe_link)).ok());
    let sockets = if with_sockets {
        match socket_inodes(&proc) {
            Ok(s) => s,
            Err(denied) => {
                restricted |= denied;
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Lookup::Found(ProcInfo {
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
        exe_id,
        exe_deleted,
        restricted,
        sockets,
        uid: None,
    })
}

/// Turns raw `/proc/PID/cmdline` bytes into one line: NULs become spaces, padding is trimmed.
/// Bytes that are not UTF-8 are kept ([`crate::lossless`]), so a master's title names its
/// config byte for byte.
pub fn title_from_cmdline(raw: &[u8]) -> String {
    let s: String = crate::lossless::decode(raw)
        .chars()
        .map(|c| if c == '\0' { ' ' } else { c })
        .collect();
    s.trim().to_string()
}

/// Fills in `p`'s socket inodes (for a process read without them); marks it restricted when
/// its open files may not be read. A process that is gone keeps none.
pub fn read_sockets(p: &mut ProcInfo) {
    let Ok(proc) = procfs::process::Process::new(p.pid()) else {
        return;
    };
    match socket_inodes(&proc) {
        Ok(s) => p.sockets = s,
        Err(denied) => p.restricted |= denied,
    }
}

/// Fills in `p`'s real user ID from `/proc/PID/status`; left `None` when unreadable.
pub fn read_uid(p: &mut ProcInfo) {
    p.uid = std::fs::read_to_string(format!("/proc/{}/status", p.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
}

/// Socket inodes among a process's open files; `Err(true)` when they could not be read for
/// lack of permission, `Err(false)` for other failures (the process vanished).
fn socket_inodes(proc: &procfs::process::Process) -> Result<Vec<u64>, bool> {
    let fds = proc
        .fd()
        .map_err(|e| matches!(e, procfs::ProcError::PermissionDenied(_)))?;
    let mut out = Vec::new();
    for fd in fds.flatten() {
        if let procfs::process::FDTarget::Socket(inode) = fd.target {
            out.push(inode);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Full passes over the process table ([`scan`]) made by this process so far.
static SCANS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many times this process has read the whole process table: what a command's cost on
/// a host with many processes grows with.
pub fn scans() -> usize {
    SCANS.load(std::sync::atomic::Ordering::Relaxed)
}

/// What changes with every `execve(2)` of `pid`, and only then: the 16 random bytes the
/// kernel gives each new image (`AT_RANDOM` in its auxiliary vector, read through
/// `/proc/PID/mem`). A process keeps its PID, start time and binary across a re-exec; these
/// bytes are fresh (with or without address randomization). `None` when they cannot be read:
/// gone, in the middle of an exec (the old image is gone already, the new one's vector not
/// written yet), another user's, or a kernel without the entries.
pub fn exec_marker(pid: i32) -> Option<[u8; 16]> {
    use std::os::unix::fs::FileExt;
    const AT_NULL: usize = 0;
    const AT_RANDOM: usize = 25;
    let auxv = std::fs::read(format!("/proc/{pid}/auxv")).ok()?;
    let word = std::mem::size_of::<usize>();
    let at_random = auxv
        .chunks_exact(2 * word)
        .map(|pair| {
            let (k, v) = pair.split_at(word);
            (
                usize::from_ne_bytes(k.try_into().unwrap_or_default()),
                usize::from_ne_bytes(v.try_into().unwrap_or_default()),
            )
        })
        .take_while(|&(k, _)| k != AT_NULL)
        .find(|&(k, _)| k == AT_RANDOM)?
        .1;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut bytes = [0u8; 16];
    mem.read_exact_at(&mut bytes, at_random as u64).ok()?;
    Some(bytes)
}

/// The children of `pid` from `/proc/PID/task/*/children`, read without a pass over the whole
/// process table; `None` when the kernel does not offer the file (or it cannot be read).
pub fn children(pid: i32) -> Option<Vec<ProcInfo>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        for child in text.split_whitespace().filter_map(|c| c.parse().ok()) {
            // Read after the list: a child that exited and whose PID was taken meanwhile is
            // not `pid`'s any more, and is left out.
            if let Some(info) = read(child).filter(|p| p.ppid == pid) {
                out.push(info);
            }
        }
    }
    Some(out)
}

/// The children of `pid` from the kernel's list ([`children`]); on a kernel without that list
/// (built without `CONFIG_PROC_CHILDREN`), the FPM processes among them, from one pass over
/// the process table ([`scan_fpm`] by title). Callers look for FPM's own processes either way.
pub fn children_or_scan(pid: i32) -> Vec<ProcInfo> {
    match children(pid) {
        Some(c) => c,
        None => scan_fpm(Scope::Titles)
            .into_iter()
            .filter(|p| p.ppid == pid)
            .collect(),
    }
}

/// Reads every process, with its socket inodes when `with_sockets` is set. A process whose
/// `/proc` entry cannot be read at all is left out.
pub fn scan(with_sockets: bool) -> Vec<ProcInfo> {
    SCANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut out: Vec<ProcInfo> = all
        .flatten()
        .filter_map(|p| match read_process(p.pid(), with_sockets) {
            Lookup::Found(info) => Some(info),
            _ => None,
        })
        .collect();
    out.sort_by_key(|p| p.id.pid);
    out
}

/// Which processes [`scan_fpm`] reads in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Those whose executable is `binary` (the config's php-fpm, also deleted or replaced
    /// since it started), or whose executable's name contains `php-fpm` (another php-fpm
    /// build). One `readlink` per process; a process whose executable cannot be read
    /// (another user's) is judged by its command line, as under [`Scope::Titles`]. Programs
    /// that are fpmctl ([`is_fpmctl_exe`]) are read too: a supervisor holds a config's
    /// sockets. An impostor (another program titled as FPM) is not read: it is never any
    /// config's FPM, and one that holds a config's socket is found by discovery's pass over
    /// open files.
    Binary(Option<&'a Path>),
    /// Those whose command line names php-fpm in its first bytes, whatever they run: what
    /// `status` reports, impostors included. One open and one read per process.
    Titles,
}

/// The processes that can be FPM, in one pass over `/proc` that reads as little as it can:
/// only those `scope` admits are read in full (as [`scan`] reads them, without open files),
/// and so is the parent of each (a supervisor, or whoever started a master). Identity needs
/// a process's title and binary ([`crate::identity`]), so everything else on the host costs
/// one or two system calls, not a read of its status, executable and open files.
pub fn scan_fpm(scope: Scope<'_>) -> Vec<ProcInfo> {
    scan_fpm_keeping(scope, &|_| true)
}

/// [`scan_fpm`] that, under [`Scope::Binary`], also leaves out a php-fpm process whose title
/// (the first bytes of its command line) `keep` rejects: on a host running many FPMs, the
/// processes of other configs cost one small read instead of a full one. `keep` must say yes to anything
/// that could be the caller's (it only saves work, it decides nothing).
pub fn scan_fpm_keeping(scope: Scope<'_>, keep: &dyn Fn(&str) -> bool) -> Vec<ProcInfo> {
    SCANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // The kernel shows an executable by its resolved path: compare against the binary's.
    let binary = match scope {
        Scope::Binary(Some(b)) => {
            Some(std::fs::canonicalize(b).unwrap_or_else(|_| b.to_path_buf()))
        }
        _ => None,
    };
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut seen: HashSet<i32> = HashSet::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let admitted = match scope {
            Scope::Binary(_) => {
                runs_php_fpm(pid, binary.as_deref()) && title_head(pid).is_none_or(|t| keep(&t))
            }
            Scope::Titles => cmdline_names_fpm(pid),
        };
        if !admitted {
            continue;
        }
        if let Lookup::Found(info) = read_process(pid, false) {
            seen.insert(pid);
            out.push(info);
        }
    }
    let parents: HashSet<i32> = out
        .iter()
        .map(|p| p.ppid)
        .filter(|pp| *pp > 0 && !seen.contains(pp))
        .collect();
    for pid in parents {
        if let Lookup::Found(info) = read_process(pid, false) {
            out.push(info);
        }
    }
    out.sort_by_key(|p| p.id.pid);
    out
}

/// Whether an executable path (` (deleted)` stripped) is fpmctl: a program named `fpmctl`,
/// or the very program this process runs, under whatever name it was installed.
pub fn is_fpmctl_exe(exe: &[u8]) -> bool {
    static OWN: std::sync::LazyLock<Option<Vec<u8>>> = std::sync::LazyLock::new(|| {
        let own = std::fs::read_link("/proc/self/exe").ok()?;
        let own = own.as_os_str().as_encoded_bytes();
        Some(own.strip_suffix(b" (deleted)").unwrap_or(own).to_vec())
    });
    let name = exe.rsplit(|b| *b == b'/').next().unwrap_or(exe);
    name == b"fpmctl" || OWN.as_deref() == Some(exe)
}

/// [`Scope::Binary`]'s test of one PID.
fn runs_php_fpm(pid: i32, binary: Option<&Path>) -> bool {
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => {
            let exe = exe.as_os_str().as_encoded_bytes();
            let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
            let name = exe.rsplit(|b| *b == b'/').next().unwrap_or(exe);
            binary.is_some_and(|b| b.as_os_str().as_encoded_bytes() == exe)
                || memchr::memmem::find(name, b"php-fpm").is_some()
                || is_fpmctl_exe(exe)
        }
        // A kernel thread, or a process that just exited.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Not ours to inspect (another user's): its title decides.
        Err(_) => cmdline_names_fpm(pid),
    }
}

/// The title from the first bytes of `/proc/PID/cmdline`; `None` when it cannot be read.
fn title_head(pid: i32) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/cmdline")).ok()?;
    let mut head = [0u8; 4096];
    let n = file.read(&mut head).ok()?;
    Some(title_from_cmdline(&head[..n]))
}

/// True when the first bytes of `/proc/PID/cmdline` name php-fpm (a title FPM set, or an
/// invocation of a php-fpm binary), or it cannot be read for another reason than the process
/// being gone (fail closed).
fn cmdline_names_fpm(pid: i32) -> bool {
    use std::io::Read;
    let mut file = match std::fs::File::open(format!("/proc/{pid}/cmdline")) {
        Ok(f) => f,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    // One read: titles are short, and an invocation names its binary first.
    let mut head = [0u8; 4096];
    match file.read(&mut head) {
        Ok(n) => memchr::memmem::find(&head[..n], b"php-fpm").is_some(),
        // ESRCH: it exited between the open and the read.
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
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
    fn fpmctl_is_known_by_its_name_or_as_this_very_program() {
        assert!(is_fpmctl_exe(b"/usr/bin/fpmctl"));
        assert!(is_fpmctl_exe(b"fpmctl"));
        assert!(!is_fpmctl_exe(b"/usr/bin/fpmctl-old"));
        assert!(!is_fpmctl_exe(b"/opt/fpmctl/bin/php-fpm"));
        // This test binary is named otherwise, and is this very program.
        let own = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(is_fpmctl_exe(own.as_os_str().as_encoded_bytes()));
        let mut other = own.as_os_str().as_encoded_bytes().to_vec();
        other.extend_from_slice(b".copy");
        assert!(!is_fpmctl_exe(&other));
    }

    #[test]
    fn the_exec_marker_is_stable_within_an_image_and_differs_between_images() {
        let me = std::process::id() as i32;
        let mine = exec_marker(me).expect("our own exec marker");
        assert_eq!(exec_marker(me), Some(mine));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // spawn returns once the child's exec closed its descriptors, which is before the
        // kernel wrote the new image's auxiliary vector: looked at until it is there.
        let limit = crate::deadline::Deadline::after(std::time::Duration::from_secs(10));
        let theirs = loop {
            match exec_marker(child.id() as i32) {
                None if !limit.expired() => std::thread::sleep(std::time::Duration::from_millis(5)),
                m => break m,
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(theirs.is_some_and(|t| t != mine), "{theirs:?} {mine:?}");
        assert_eq!(exec_marker(i32::MAX), None);
    }

    #[test]
    fn children_are_the_processes_whose_parent_is_the_pid() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = children(me).expect("this kernel lists children");
        assert!(found.iter().any(|p| p.pid() == pid), "{found:?}");
        assert!(found.iter().all(|p| p.ppid == me), "{found:?}");
        assert!(children_or_scan(me).iter().all(|p| p.ppid == me));
        child.kill().unwrap();
        child.wait().unwrap();
    }

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
    fn the_scoped_pass_reads_what_names_php_fpm_and_its_parent_only() {
        use std::os::unix::process::CommandExt;
        let mut titled = std::process::Command::new("sleep")
            .arg0("php-fpm: pool scoped-pass-test")
            .arg("30")
            .spawn()
            .unwrap();
        let mut plain = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // Until the child has exec'd, its command line is still the test's.
        let titled_now = || {
            std::fs::read(format!("/proc/{}/cmdline", titled.id()))
                .is_ok_and(|c| c.starts_with(b"php-fpm: pool"))
        };
        let limit = crate::deadline::Deadline::after(Duration::from_secs(10));
        while !titled_now() && !limit.expired() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let table = scan_fpm(Scope::Titles);
        let pids: Vec<i32> = table.iter().map(|p| p.pid()).collect();
        let _ = titled.kill();
        let _ = plain.kill();
        let _ = titled.wait();
        let _ = plain.wait();
        assert!(pids.contains(&(titled.id() as i32)), "{pids:?}");
        assert!(!pids.contains(&(plain.id() as i32)), "{pids:?}");
        // The parent of a candidate (here the test itself) is read too: a supervisor holding
        // the sockets is seen beside its FPM.
        assert!(pids.contains(&(std::process::id() as i32)), "{pids:?}");
    }

    /// Runs a copy of `sleep` named `name` (retrying while another test's fork briefly
    /// holds the new file open for writing).
    fn sleep_copy(dir: &Path, name: &str) -> std::process::Child {
        let path = dir.join(name);
        std::fs::copy("/bin/sleep", &path).unwrap();
        for _ in 0..100 {
            match std::process::Command::new(&path).arg("30").spawn() {
                Ok(child) => return child,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{} stayed busy", path.display());
    }

    #[test]
    fn the_binary_scope_reads_what_runs_php_fpm_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut named = sleep_copy(dir.path(), "php-fpm-scope-test");
        let mut configured = sleep_copy(dir.path(), "configured-binary");
        let mut other = sleep_copy(dir.path(), "other-program");
        let configured_path = dir.path().join("configured-binary");
        let table = scan_fpm(Scope::Binary(Some(&configured_path)));
        let pids: Vec<i32> = table.iter().map(|p| p.pid()).collect();
        for c in [&mut named, &mut configured, &mut other] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(pids.contains(&(named.id() as i32)), "{pids:?}");
        assert!(pids.contains(&(configured.id() as i32)), "{pids:?}");
        assert!(!pids.contains(&(other.id() as i32)), "{pids:?}");
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
        let exe = std::env::current_exe().unwrap();
        assert_eq!(mine.exe_id, Some(FileId::of(&exe).unwrap()));
        assert!(!mine.exe_deleted && !mine.restricted);
        assert!(!is_gone(mine.id));
        let wrong = ProcId {
            pid: me,
            start_time: mine.id.start_time + 1,
        };
        assert!(read_same(wrong).is_none());
        assert!(is_gone(wrong));
        assert_eq!(lookup(i32::MAX), Lookup::Gone);
        drop(listener);
    }
}
