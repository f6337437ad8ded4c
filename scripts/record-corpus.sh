#!/usr/bin/env bash
# Provokes every incident of tests/corpus/ again with real nginx and php-fpm (as root) and
# rewrites the corpus. Arguments: case names to re-record only those (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
if [[ $# -gt 0 ]]; then
    FPMCTL_RECORD_CASES="$(IFS=,; echo "$*")"
    export FPMCTL_RECORD_CASES
fi
FPMCTL_RECORD_CORPUS=1 exec cargo test --test doctor -- --ignored --exact record_corpus
