#!/usr/bin/env bash
# fpmctl against a real php-fpm, in a throwaway sandbox: nothing of the system's own FPM
# is touched. Installs php-fpm if missing (as root), builds fpmctl, then:
#   1. starts FPM and proves it ready;          2. shows its status;
#   3. SIGKILLs the master, as a hard kill in the field does: the workers live on as
#      orphans holding the port, and a plain `php-fpm` start fails with "Address already in use";
#   4. shows fpmctl seeing the orphans;          5. repairs it with `fpmctl restart --wait`;
#   6. pings every pool, then stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"

scripts/install-deps.sh php8.2-fpm
cargo build --release --quiet
fpmctl="$PWD/target/release/fpmctl"
fpm_bin=$(command -v php-fpm8.2 || command -v php-fpm || ls /usr/sbin/php-fpm* | head -1)

dir=$(mktemp -d /tmp/fpmctl-demo.XXXXXX)
chmod 755 "$dir"
export FPMCTL_LOCK_DIR="$dir/locks"
conf="$dir/php-fpm.conf"
cleanup() {
    # Stop whatever this demo started (fpmctl finds it by this config, orphans included).
    "$fpmctl" -q -c "$conf" stop --signal-plan QUIT:2s,TERM:2s,KILL:2s >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

# A free loopback port: nothing answers a connect to it.
port=""
for _ in $(seq 1 100); do
    candidate=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
        port=$candidate
        break
    fi
done
[[ -n $port ]] || { echo "no free port found" >&2; exit 1; }

mkdir -p "$dir/www"
cat >"$conf" <<CONF
[global]
pid = $dir/fpm.pid
error_log = $dir/fpm.log
process_control_timeout = 10s

[tcp]
user = nobody
group = nogroup
listen = 127.0.0.1:$port
pm = static
pm.max_children = 3
ping.path = /ping
pm.status_path = /status

[sock]
user = nobody
group = nogroup
listen = $dir/fpm.sock
listen.mode = 0666
pm = dynamic
pm.max_children = 4
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
CONF

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. start FPM and prove it is ready"
run "$fpmctl" -c "$conf" start

step "2. status"
run "$fpmctl" -c "$conf" status

step "3. the master is SIGKILLed; its workers become orphans holding 127.0.0.1:$port"
master=$(cat "$dir/fpm.pid")
run kill -KILL "$master"
sleep 0.2
echo "a plain start now fails, as restart_php.sh did:"
"$fpm_bin" -y "$conf" -D 2>&1 | sed 's/^/    /' || true

step "4. fpmctl sees the orphans (exit code 1: dead, but processes remain)"
run "$fpmctl" -c "$conf" status || echo "(exit $?)"

step "5. fpmctl restart --wait: stops the orphans, waits until the port is free, starts, proves ready"
run "$fpmctl" -c "$conf" restart --wait

step "6. ping every pool over FastCGI, then stop"
run "$fpmctl" -c "$conf" ping
run "$fpmctl" -c "$conf" stop
run "$fpmctl" -c "$conf" status || echo "(exit $?: not running)"
