#!/usr/bin/env bash
# Builds target/debian/fpmctl_VERSION_ARCH.deb: the release binary, the man pages and shell
# completions it generates, then cargo-deb (installed here when missing) packs what
# [package.metadata.deb] in Cargo.toml lists. Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb" >&2
    cargo install cargo-deb --locked --quiet
fi
cargo build --release --locked --quiet
out=target/packaging
rm -rf "$out"
mkdir -p "$out/man/man1" "$out/completions"
target/release/fpmctl generate man "$out/man/man1" >/dev/null
target/release/fpmctl generate completions bash >"$out/completions/fpmctl.bash"
target/release/fpmctl generate completions zsh >"$out/completions/_fpmctl"
target/release/fpmctl generate completions fish >"$out/completions/fpmctl.fish"
cargo deb --no-build --locked --quiet
