//! The one rule that says whether a process is *this configuration's* FPM.
//!
//! A process is this config's master only when all of these hold:
//! - its executable is the php-fpm binary that goes with the config: the same device and
//!   inode as the binary fpmctl resolved (`--fpm-bin`, or the one found for the config);
//!   a name is never enough, since any program can be copied to `php-fpm-anything` and set
//!   any process title;
//! - it was started with this config: its title is `php-fpm: master process (<config>)`, or,
//!   while it re-executes on `SIGUSR2`, its command line is a php-fpm invocation naming the
//!   config with `-y`/`--fpm-config`;
//! - it is not a config test (`-t`, `-tt`, `--test`), which never becomes a master.
//!
//! Pool processes (workers and orphans) must run the same binary too. Whoever decides
//! whom to signal ([`crate::discovery`], [`crate::signals`]' re-check before each signal,
//! `status`, the supervisor) asks this module, and nothing else.
//!
//! The verdict fails closed. A process that looks like this config's FPM but whose binary
//! cannot be proven is [`Verdict::Doubtful`]: reported, never signalled. That covers an
//! executable that cannot be read (another user's process seen without root), a binary
//! replaced on disk since the process started (an upgrade: `/proc/PID/exe` ends in
//! ` (deleted)`; a master re-executed by `SIGUSR2` runs the new file and is proven again),
//! and running without any binary to compare with. A process running another program is a
//! lookalike too, with [`Doubt::OtherBinary`]: an impostor, foreign to this config.

use crate::config::FpmConfig;
use crate::procs::{FileId, ProcInfo};
use std::fmt;
use std::path::{Path, PathBuf};

/// The php-fpm binary that goes with a config, by path and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmBinary {
    /// The path fpmctl resolved.
    pub path: PathBuf,
    /// Device and inode of the file it names (symlinks followed).
    pub id: FileId,
}

impl FpmBinary {
    /// Identifies the binary at `path`.
    pub fn resolve(path: &Path) -> std::io::Result<FpmBinary> {
        Ok(FpmBinary {
            path: path.to_path_buf(),
            id: FileId::of(path)?,
        })
    }
}

/// Why a process that looks like this config's FPM is not proven to be it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doubt {
    /// It runs another program (the path, when known): an impostor, foreign.
    OtherBinary(Option<PathBuf>),
    /// Its executable was deleted or replaced since it started (an upgrade).
    BinaryReplaced(PathBuf),
    /// Its executable could not be read: another user's process, seen without root.
    CannotInspect,
    /// fpmctl found no php-fpm binary for this config to compare with.
    NoBinary,
    /// A pool process of this config's binary whose master is gone, but which holds none
    /// of this config's listening sockets: it may belong to another config.
    NoSocketEvidence,
}

/// The message for [`Doubt::CannotInspect`], also used where a whole view is limited.
pub const CANNOT_INSPECT: &str = "cannot inspect processes of other users: run as root";

impl Doubt {
    /// True when the process is proven to be something else (not merely unproven).
    pub fn is_foreign(&self) -> bool {
        matches!(self, Doubt::OtherBinary(_))
    }

    /// A stable name for `--json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Doubt::OtherBinary(_) => "other-binary",
            Doubt::BinaryReplaced(_) => "binary-replaced",
            Doubt::CannotInspect => "cannot-inspect",
            Doubt::NoBinary => "no-binary",
            Doubt::NoSocketEvidence => "no-socket-evidence",
        }
    }
}

impl fmt::Display for Doubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Doubt::OtherBinary(Some(p)) => write!(f, "runs {}, not this FPM's binary", p.display()),
            Doubt::OtherBinary(None) => f.write_str("runs another program"),
            Doubt::BinaryReplaced(p) => write!(
                f,
                "runs {} (deleted): the binary was replaced since it started, so it cannot be proven to be this FPM",
                p.display()
            ),
            Doubt::CannotInspect => f.write_str(CANNOT_INSPECT),
            Doubt::NoBinary => {
                f.write_str("no php-fpm binary was found to compare it with (pass --fpm-bin)")
            }
            Doubt::NoSocketEvidence => f.write_str(
                "its master is gone and it holds none of this config's sockets (another config's?)",
            ),
        }
    }
}

/// The verdict on one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Proven: this config's FPM.
    Ours,
    /// It looks like this config's FPM but is not proven: report it, never signal it.
    Doubtful(Doubt),
    /// Not this config's FPM, and does not claim to be.
    NotOurs,
}

impl Verdict {
    /// Only a proven process may be signalled.
    pub fn is_ours(&self) -> bool {
        matches!(self, Verdict::Ours)
    }
}

/// Whether `p` runs `bin`: `Ok` when proven, else why not.
pub fn runs_binary(p: &ProcInfo, bin: Option<&FpmBinary>) -> Result<(), Doubt> {
    let Some(bin) = bin else {
        return Err(Doubt::NoBinary);
    };
    match (&p.exe, p.exe_id) {
        (_, Some(id)) if id == bin.id => Ok(()),
        (Some(path), _) if p.exe_deleted => Err(Doubt::BinaryReplaced(path.clone())),
        (Some(path), _) => Err(Doubt::OtherBinary(Some(path.clone()))),
        (None, _) if p.restricted => Err(Doubt::CannotInspect),
        (None, _) => Err(Doubt::OtherBinary(None)),
    }
}

/// What a process's title and command line claim, before its binary is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It claims to be the master of the config.
    Master,
    /// A php-fpm config test (`-t`/`-tt`) of the config: never a master.
    ConfigTest,
    /// It claims nothing about this config.
    Nothing,
}

/// What `p`'s title claims about the config at `config`.
pub fn master_claim(p: &ProcInfo, config: &Path) -> Claim {
    if let Some(inner) = p
        .title
        .strip_prefix("php-fpm: master process (")
        .and_then(|t| t.strip_suffix(')'))
    {
        // Titles keep bytes that are not UTF-8 (crate::lossless): compare byte for byte.
        return if same_path(&crate::lossless::to_path(inner), config, p.pid()) {
            Claim::Master
        } else {
            Claim::Nothing
        };
    }
    let Some(inv) = parse_invocation(&p.title) else {
        return Claim::Nothing;
    };
    match &inv.config {
        Some(c) if same_path(&crate::lossless::to_path(c), config, p.pid()) => {
            if inv.test {
                Claim::ConfigTest
            } else {
                Claim::Master
            }
        }
        _ => Claim::Nothing,
    }
}

/// The verdict on `p` as the master of `config` run by `bin`.
pub fn judge_master(p: &ProcInfo, config: &Path, bin: Option<&FpmBinary>) -> Verdict {
    if p.is_gone() || master_claim(p, config) != Claim::Master {
        return Verdict::NotOurs;
    }
    match runs_binary(p, bin) {
        Ok(()) => Verdict::Ours,
        Err(d) => Verdict::Doubtful(d),
    }
}

/// The pool name in a worker title `php-fpm: pool NAME`.
pub fn pool_of_title(title: &str) -> Option<&str> {
    title.strip_prefix("php-fpm: pool ").map(str::trim)
}

/// True when the title is any FPM master's, of any config.
pub fn is_any_master_title(title: &str) -> bool {
    title.starts_with("php-fpm: master process")
}

/// The verdict on `p` as a pool process (worker or orphan) of `cfg`: titled for one of its
/// pools and running its binary. Whose child it is, is [`crate::discovery`]'s question.
pub fn judge_pool_process(p: &ProcInfo, cfg: &FpmConfig) -> Verdict {
    if p.is_gone() || pool_of_title(&p.title).is_none_or(|name| cfg.pool_of_process(name).is_none())
    {
        return Verdict::NotOurs;
    }
    match runs_binary(p, cfg.binary.as_ref()) {
        Ok(()) => Verdict::Ours,
        Err(d) => Verdict::Doubtful(d),
    }
}

/// A php-fpm command line, as far as identity cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Invocation {
    /// The config named with `-y`/`--fpm-config`.
    config: Option<String>,
    /// A config test: `-t`, `-tt`, `--test`, or `t` in a cluster of short flags.
    test: bool,
}

/// Options of php-fpm that take a value (as a separate argument or glued to the letter).
const VALUE_OPTS: &str = "cdgpyeR";

/// Parses a php-fpm command line (`/usr/sbin/php-fpm8.2 -y CONF -D`). Arguments are split on
/// spaces, so a path with spaces is not found (and the process is then never a master).
fn parse_invocation(cmdline: &str) -> Option<Invocation> {
    let mut args = cmdline.split(' ');
    let first = args.next()?;
    if !Path::new(first)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("php-fpm"))
    {
        return None;
    }
    let mut inv = Invocation::default();
    while let Some(a) = args.next() {
        if a == "--fpm-config" {
            inv.config = args.next().map(str::to_string);
        } else if let Some(v) = a.strip_prefix("--fpm-config=") {
            inv.config = Some(v.to_string());
        } else if a == "--test" {
            inv.test = true;
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.starts_with('-')) {
            // A cluster of short flags; the first value-taking letter takes the rest (or the
            // next argument) as its value.
            for (i, c) in cluster.char_indices() {
                if c == 't' {
                    inv.test = true;
                } else if VALUE_OPTS.contains(c) {
                    let glued = &cluster[i + c.len_utf8()..];
                    let value = if glued.is_empty() {
                        args.next().map(str::to_string)
                    } else {
                        Some(glued.to_string())
                    };
                    if c == 'y' {
                        inv.config = value;
                    }
                    break;
                }
            }
        }
    }
    Some(inv)
}

fn same_path(seen: &Path, config: &Path, pid: i32) -> bool {
    if seen == config {
        return true;
    }
    let seen = if seen.is_relative() {
        PathBuf::from(format!("/proc/{pid}/cwd")).join(seen)
    } else {
        seen.to_path_buf()
    };
    match (seen.canonicalize(), config.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::ProcId;

    const CONF: &str = "/etc/php/8.2/fpm/php-fpm.conf";
    const FPM_ID: FileId = FileId { dev: 8, ino: 4242 };

    fn bin() -> FpmBinary {
        FpmBinary {
            path: PathBuf::from("/usr/sbin/php-fpm8.2"),
            id: FPM_ID,
        }
    }

    fn proc(title: &str, exe: Option<&str>, exe_id: Option<FileId>) -> ProcInfo {
        ProcInfo {
            id: ProcId {
                pid: 100,
                start_time: 1,
            },
            ppid: 1,
            pgrp: 100,
            state: 'S',
            comm: "php-fpm8.2".into(),
            title: title.into(),
            exe: exe.map(PathBuf::from),
            exe_id,
            ..ProcInfo::default()
        }
    }

    fn master_title() -> String {
        format!("php-fpm: master process ({CONF})")
    }

    #[test]
    fn the_master_runs_the_configs_binary_and_names_the_config() {
        let p = proc(&master_title(), Some("/usr/sbin/php-fpm8.2"), Some(FPM_ID));
        assert_eq!(
            judge_master(&p, Path::new(CONF), Some(&bin())),
            Verdict::Ours
        );
        // Another config's master is not ours, whatever it runs.
        let other = proc(
            "php-fpm: master process (/etc/other.conf)",
            Some("/usr/sbin/php-fpm8.2"),
            Some(FPM_ID),
        );
        assert_eq!(
            judge_master(&other, Path::new(CONF), Some(&bin())),
            Verdict::NotOurs
        );
    }

    #[test]
    fn a_renamed_program_with_the_masters_title_is_foreign() {
        let evil = FileId { dev: 8, ino: 7 };
        let p = proc(&master_title(), Some("/tmp/php-fpm-evil"), Some(evil));
        let v = judge_master(&p, Path::new(CONF), Some(&bin()));
        assert_eq!(
            v,
            Verdict::Doubtful(Doubt::OtherBinary(Some(PathBuf::from("/tmp/php-fpm-evil"))))
        );
        match v {
            Verdict::Doubtful(d) => assert!(d.is_foreign()),
            other => panic!("{other:?}"),
        }
        // Even the right path is not enough when the file is another one.
        let same_name = proc(&master_title(), Some("/usr/sbin/php-fpm8.2"), Some(evil));
        assert!(!judge_master(&same_name, Path::new(CONF), Some(&bin())).is_ours());
    }

    #[test]
    fn a_replaced_binary_an_unreadable_one_and_no_binary_are_doubtful_not_foreign() {
        let old = FileId { dev: 8, ino: 1 };
        let mut p = proc(&master_title(), Some("/usr/sbin/php-fpm8.2"), Some(old));
        p.exe_deleted = true;
        let v = judge_master(&p, Path::new(CONF), Some(&bin()));
        assert_eq!(
            v,
            Verdict::Doubtful(Doubt::BinaryReplaced(PathBuf::from("/usr/sbin/php-fpm8.2")))
        );
        // A binary deleted after fpmctl identified it is still the same file.
        p.exe_id = Some(FPM_ID);
        assert_eq!(
            judge_master(&p, Path::new(CONF), Some(&bin())),
            Verdict::Ours
        );

        let mut hidden = proc(&master_title(), None, None);
        hidden.restricted = true;
        assert_eq!(
            judge_master(&hidden, Path::new(CONF), Some(&bin())),
            Verdict::Doubtful(Doubt::CannotInspect)
        );
        assert_eq!(Doubt::CannotInspect.to_string(), CANNOT_INSPECT);

        let ok = proc(&master_title(), Some("/usr/sbin/php-fpm8.2"), Some(FPM_ID));
        assert_eq!(
            judge_master(&ok, Path::new(CONF), None),
            Verdict::Doubtful(Doubt::NoBinary)
        );
    }

    #[test]
    fn config_tests_are_never_masters() {
        for cmdline in [
            format!("/usr/sbin/php-fpm8.2 -y {CONF} -t"),
            format!("/usr/sbin/php-fpm8.2 -y {CONF} -tt"),
            format!("php-fpm8.2 -t -y {CONF}"),
            format!("php-fpm8.2 --test --fpm-config={CONF}"),
            format!("php-fpm8.2 -Fty {CONF}"),
        ] {
            let p = proc(&cmdline, Some("/usr/sbin/php-fpm8.2"), Some(FPM_ID));
            assert_eq!(
                master_claim(&p, Path::new(CONF)),
                Claim::ConfigTest,
                "{cmdline}"
            );
            assert_eq!(
                judge_master(&p, Path::new(CONF), Some(&bin())),
                Verdict::NotOurs,
                "{cmdline}"
            );
        }
    }

    #[test]
    fn a_master_mid_reexec_is_recognised_by_its_command_line() {
        for cmdline in [
            format!("/usr/sbin/php-fpm8.2 -F -y {CONF}"),
            format!("php-fpm --fpm-config={CONF} -D"),
            format!("php-fpm -y{CONF}"),
            format!("php-fpm --nodaemonize --fpm-config {CONF}"),
        ] {
            let p = proc(&cmdline, Some("/usr/sbin/php-fpm8.2"), Some(FPM_ID));
            assert_eq!(
                judge_master(&p, Path::new(CONF), Some(&bin())),
                Verdict::Ours,
                "{cmdline}"
            );
        }
        // A `t` inside a value is not a test flag; `-d` takes the next argument.
        let p = proc(
            &format!("php-fpm -d date.timezone=UTC -y {CONF}"),
            Some("/usr/sbin/php-fpm8.2"),
            Some(FPM_ID),
        );
        assert_eq!(master_claim(&p, Path::new(CONF)), Claim::Master);
        let not_fpm = proc(&format!("sleep -y {CONF}"), Some("/usr/bin/sleep"), None);
        assert_eq!(master_claim(&not_fpm, Path::new(CONF)), Claim::Nothing);
        let no_config = proc("/usr/sbin/php-fpm8.2 --nodaemonize", None, None);
        assert_eq!(master_claim(&no_config, Path::new(CONF)), Claim::Nothing);
    }

    #[test]
    fn zombies_are_never_masters() {
        let mut p = proc(&master_title(), Some("/usr/sbin/php-fpm8.2"), Some(FPM_ID));
        p.state = 'Z';
        assert_eq!(
            judge_master(&p, Path::new(CONF), Some(&bin())),
            Verdict::NotOurs
        );
    }

    #[test]
    fn pool_titles() {
        assert_eq!(pool_of_title("php-fpm: pool www"), Some("www"));
        assert_eq!(pool_of_title("php-fpm: master process (/x)"), None);
    }
}
