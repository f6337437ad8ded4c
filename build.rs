//! Sets `FPMCTL_VERSION` for `fpmctl --version`: the package version and, when built from
//! the project's own git checkout, the short revision (`0.1.0 (abc1234)`). A build from a
//! source tarball, or with no git installed, gets the package version alone.
//!
//! A release build for Linux links the `fpmctl` binary with `build/idle-layout.ld`, which
//! puts the code an idle supervisor runs in one place (see build/layout.rs);
//! `FPMCTL_IDLE_LAYOUT=0` links without it.

#[path = "build/layout.rs"]
mod layout;
#[path = "build/version.rs"]
mod version;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/version.rs");
    println!("cargo:rerun-if-changed=build/layout.rs");
    println!("cargo:rerun-if-changed={}", layout::FILE);
    println!("cargo:rerun-if-env-changed={}", layout::VAR);
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let pkg_version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let setting = std::env::var(layout::VAR).ok();
    println!("cargo:rerun-if-env-changed=MOLD_PATH");
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let linker = std::env::var("RUSTC_LINKER").ok();
    let scriptless = layout::scriptless_linker(
        &rustflags,
        linker.as_deref(),
        std::env::var_os("MOLD_PATH").is_some(),
    );
    let mut script = layout::choose(&profile, &target_os, setting.as_deref(), &manifest_dir);
    let asked = setting.as_deref().is_some_and(|s| !s.is_empty());
    if let (Some(_), Some(linker), false) = (&script, &scriptless, asked) {
        println!(
            "cargo:warning=linking without {} ({linker} cannot read it; {}=FILE to insist)",
            layout::FILE,
            layout::VAR
        );
        script = None;
    }
    if let Some(script) = script {
        // A named file that is not there would fail the link with the linker's own words.
        if !script.is_file() {
            eprintln!(
                "{}={}: no such file ({}; a relative path is taken from {})",
                layout::VAR,
                setting.as_deref().unwrap_or_default(),
                script.display(),
                manifest_dir.display()
            );
            std::process::exit(1);
        }
        println!("cargo:rerun-if-changed={}", script.display());
        for arg in layout::link_args(&script) {
            println!("cargo:rustc-link-arg-bin=fpmctl={arg}");
        }
    }
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
