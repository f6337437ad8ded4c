#!/usr/bin/env bash
# Runs the benchmark suite against the real php-fpm and nginx: builds the release binary and
# the benches, runs each bench, prints its markdown table. Each bench writes its results to
# target/bench/NAME.json (git revision, date, php-fpm and nginx versions, machine), and its
# table to target/bench/NAME.md; compare two runs with scripts/bench-compare.sh A.json B.json.
#
# Usage: scripts/bench.sh [BENCH...]
#   default: restart speed scale crash idle doctor (3-4 minutes on 2 cores after the build)
# More iterations: FPMCTL_BENCH_RESTARTS (restart, 10), FPMCTL_BENCH_ITERATIONS (speed, 15),
# FPMCTL_BENCH_SCALE_BLOCKS (scale, 6), FPMCTL_BENCH_CROWD (scale, 5000),
# FPMCTL_BENCH_CRASHES (crash, 10), FPMCTL_BENCH_DOCTOR_MB (doctor, 256 here).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"

if [[ $# -gt 0 ]]; then
    benches=("$@")
else
    benches=(restart speed scale crash idle doctor)
fi
# The doctor bench's own default is a 1 GiB log; a quarter of it gives the same MB/s.
export FPMCTL_BENCH_DOCTOR_MB="${FPMCTL_BENCH_DOCTOR_MB:-256}"
out=target/bench
mkdir -p "$out"

args=()
for b in "${benches[@]}"; do args+=(--bench "$b"); done
cargo bench --locked --no-run "${args[@]}"

# A bench that fails does not stop the others; the script fails at the end.
began=$SECONDS
failed=()
for b in "${benches[@]}"; do
    echo "== $b" >&2
    rm -f "$out/$b.md" "$out/$b.json"
    if ! cargo bench --locked --quiet --bench "$b" | tee "$out/$b.md"; then
        failed+=("$b")
    fi
done

echo
echo "# Results ($((SECONDS - began))s)"
for b in "${benches[@]}"; do
    echo
    echo "## $b"
    echo
    cat "$out/$b.md"
done
echo
for b in "${benches[@]}"; do
    [[ -f "$out/$b.json" ]] && echo "JSON: $out/$b.json"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
