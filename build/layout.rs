// Where the linker puts the code an idle `fpmctl supervise` runs. Shared by build.rs and the
// packaging tests.
//
// The kernel maps a file's pages 64 KiB around each page a fault touches, so the few hundred
// KiB of code a health check runs keep about 2 MiB of the binary resident when they lie spread
// over it. `build/idle-layout.ld` names those functions (written by `scripts/idle-layout.py`
// from a profile of the idle loop) and puts them next to each other, in an output section of
// their own before `.text`. It only orders code: a name that no longer exists matches nothing
// and costs only locality.

use std::path::{Path, PathBuf};

/// The layout file in the source tree.
pub const FILE: &str = "build/idle-layout.ld";

/// The environment variable that turns the layout off (`0`) or names another file.
pub const VAR: &str = "FPMCTL_IDLE_LAYOUT";

/// The linker script to pass when linking the `fpmctl` binary, if any: the one `setting`
/// names (set and not `0`; relative to `manifest_dir`), else the source tree's for a release
/// build for Linux (the layout is an optimisation of the shipped binary; test builds link as
/// they always did).
pub fn choose(
    profile: &str,
    target_os: &str,
    setting: Option<&str>,
    manifest_dir: &Path,
) -> Option<PathBuf> {
    match setting {
        Some("0") => None,
        Some(path) if !path.is_empty() => Some(manifest_dir.join(path)),
        _ => {
            let file = manifest_dir.join(FILE);
            (profile == "release" && target_os == "linux" && file.is_file()).then_some(file)
        }
    }
}

/// The arguments that make the linker (through the C compiler driver rustc calls) read
/// `script`, one `cargo:rustc-link-arg` each. `-Xlinker` passes its argument on whole:
/// `-Wl,` would split the path at its commas.
pub fn link_args(script: &Path) -> Vec<String> {
    vec![
        "-Xlinker".into(),
        "-T".into(),
        "-Xlinker".into(),
        script.display().to_string(),
    ]
}

/// The linker the build asks for when it is one that cannot read this script (gold and mold
/// do not take `INSERT BEFORE`): `rustflags` as cargo encodes them (`CARGO_ENCODED_RUSTFLAGS`,
/// separated by 0x1f), `linker` as cargo resolved it (`RUSTC_LINKER`), and whether the build
/// runs under `mold -run` (`MOLD_PATH` set).
pub fn scriptless_linker(rustflags: &str, linker: Option<&str>, mold_run: bool) -> Option<String> {
    let refuses = |prog: &str| {
        let name = prog.rsplit('/').next().unwrap_or(prog);
        let name = name.strip_prefix("ld.").unwrap_or(name);
        name.starts_with("gold") || name.starts_with("mold")
    };
    if mold_run {
        return Some("mold".into());
    }
    let asked = rustflags.split('\x1f').find_map(|flag| {
        ["-fuse-ld=", "--ld-path=", "linker="]
            .iter()
            .find_map(|key| flag.split_once(key).map(|(_, v)| v))
            .filter(|v| refuses(v))
    });
    asked.or(linker.filter(|l| refuses(l))).map(str::to_string)
}
