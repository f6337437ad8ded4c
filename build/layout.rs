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
/// names (set and not `0`; relative to `manifest_dir`), else the source tree's for a release build for Linux (the layout
/// is an optimisation of the shipped binary; test builds link as they always did).
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
