#!/usr/bin/env bash
# Dependency policy, offline: every crate's licence is on deny.toml's list, no wildcard
# versions, every crate comes from crates.io. Installs cargo-deny (--locked) when missing.
# Security advisories are not checked here: that needs the RustSec database from GitHub,
# which CI cannot reach (`cargo deny check advisories` where the network allows).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"

if ! cargo deny --version >/dev/null 2>&1; then
    echo "check-deps: installing cargo-deny" >&2
    cargo install cargo-deny --locked --quiet
fi
cargo deny --offline --locked check licenses bans sources
