//! Sets `FPMCTL_VERSION` for `fpmctl --version`: the package version and, when built from
//! the project's own git checkout, the short revision (`0.1.0 (abc1234)`). A build from a
//! source tarball, or with no git installed, gets the package version alone.

#[path = "build/version.rs"]
mod version;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/version.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let pkg_version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let revision = version::git_revision(&manifest_dir);
    if revision.is_some() {
        for path in version::watched_files(&manifest_dir) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!(
        "cargo:rustc-env=FPMCTL_VERSION={}",
        version::version_string(&pkg_version, revision.as_deref())
    );
}
