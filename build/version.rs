// The version `fpmctl --version` prints: the package version, plus the git revision when the
// crate is built from its own git checkout. Shared by build.rs and the packaging tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `git ARGS` in `dir`; its trimmed stdout when it succeeded.
pub fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The short revision of the checkout whose top level is `manifest_dir`; `None` when git is
/// missing, or `manifest_dir` is not the top of a git work tree (a source tarball, including
/// one unpacked inside some other repository).
pub fn git_revision(manifest_dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(manifest_dir, &["rev-parse", "--show-toplevel"])?);
    let same = match (top.canonicalize(), manifest_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return None;
    }
    git(manifest_dir, &["rev-parse", "--short", "HEAD"])
}

/// `0.1.0 (abc1234)`, or `0.1.0` without a revision.
pub fn version_string(pkg_version: &str, revision: Option<&str>) -> String {
    match revision {
        Some(rev) => format!("{pkg_version} ({rev})"),
        None => pkg_version.to_string(),
    }
}

/// The files whose change means a new revision: HEAD, the branch it names, packed refs.
pub fn watched_files(manifest_dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut add = |git_path: &str| {
        if let Some(p) = git(manifest_dir, &["rev-parse", "--git-path", git_path]) {
            let p = PathBuf::from(p);
            let p = if p.is_absolute() {
                p
            } else {
                manifest_dir.join(p)
            };
            // A path that does not exist would make cargo rerun the build script every time.
            if p.exists() {
                paths.push(p);
            }
        }
    };
    add("HEAD");
    add("packed-refs");
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        add(&branch);
    }
    paths
}
