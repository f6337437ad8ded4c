#!/usr/bin/env bash
# Checks packaging/ansible: `ansible-playbook --syntax-check`, `ansible-lint --offline`, then
# runs site.yml for real with `connection: local` against two sandboxed FPMs (own configs,
# loopback ports, temp dir; the system's FPM is never touched), as two inventory hosts:
#   1. both good: each is restarted in turn (serial: 1) and proven ready;
#   2. the first one's config broken: the play fails there, and the second one is not touched.
# ansible-core and ansible-lint go into a virtualenv under target/ (pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
repo=$PWD

fail() { echo "test-ansible: FAIL: $*" >&2; exit 1; }
step() { echo "test-ansible: $*" >&2; }

venv=$repo/target/ansible-venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r packaging/ansible/requirements.txt
export PATH="$venv/bin:$PATH" ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0

(cd packaging/ansible && ansible-playbook --syntax-check -i inventory.example.yml site.yml >/dev/null) \
    || fail "syntax check"
(cd packaging/ansible && ansible-lint --offline -q site.yml roles/fpmctl) || fail "ansible-lint"
step "syntax check and ansible-lint pass"

cargo build --locked --quiet
fpmctl=$repo/target/debug/fpmctl
dir=$(mktemp -d /tmp/fpmctl-ansible.XXXXXX)
chmod 755 "$dir"
export FPMCTL_LOCK_DIR="$dir/locks"
cleanup() {
    for h in web1 web2; do
        [[ -f $dir/$h/php-fpm.conf.good ]] && cp "$dir/$h/php-fpm.conf.good" "$dir/$h/php-fpm.conf"
        "$fpmctl" -q --no-systemd -c "$dir/$h/php-fpm.conf" stop \
            --signal-plan QUIT:5s,TERM:2s,KILL:2s >/dev/null 2>&1 || true
    done
    [[ -n ${FPMCTL_KEEP_ANSIBLE_LOG:-} ]] && cp "$dir/play.log" "$FPMCTL_KEEP_ANSIBLE_LOG"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
for h in web1 web2; do
    mkdir -p "$dir/$h"
    cat >"$dir/$h/php-fpm.conf" <<CONF
[global]
pid = $dir/$h/fpm.pid
error_log = $dir/$h/fpm.log
process_control_timeout = 5s

[www]
user = nobody
group = nogroup
listen = 127.0.0.1:$(free_port)
pm = static
pm.max_children = 2
ping.path = /ping
CONF
    cp "$dir/$h/php-fpm.conf" "$dir/$h/php-fpm.conf.good"
    "$fpmctl" -q --no-systemd -c "$dir/$h/php-fpm.conf" start >/dev/null || fail "starting the $h sandbox"
done
master() {
    "$fpmctl" --no-systemd -c "$dir/$1/php-fpm.conf" status --json 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["master"]["pid"])'
}

cat >"$dir/inventory.yml" <<INV
php_fpm:
  hosts:
    web1:
      fpmctl_config: $dir/web1/php-fpm.conf
      fpmctl_systemd_dir: $dir/web1/systemd
    web2:
      fpmctl_config: $dir/web2/php-fpm.conf
      fpmctl_systemd_dir: $dir/web2/systemd
  vars:
    ansible_connection: local
    ansible_python_interpreter: $venv/bin/python
    ansible_become: false
    fpmctl_bin: $fpmctl
    fpmctl_global_args: ["--no-systemd"]
    fpmctl_environment:
      FPMCTL_LOCK_DIR: $dir/locks
    fpmctl_restart_timeout: 20s
INV
play() { timeout 300 ansible-playbook -i "$dir/inventory.yml" packaging/ansible/site.yml >"$dir/play.log" 2>&1; }

# 1. Both good: both restarted, in order, and ready.
before1=$(master web1) before2=$(master web2)
play || { cat "$dir/play.log" >&2; fail "the rolling restart failed"; }
after1=$(master web1) after2=$(master web2)
[[ $after1 != "$before1" && $after2 != "$before2" ]] \
    || fail "masters not replaced: web1 $before1 -> $after1, web2 $before2 -> $after2"
grep -q "ExecReload=$fpmctl --no-systemd -c $dir/web1/php-fpm.conf reload" \
    "$dir/web1/systemd/php8.2-fpm.service.d/fpmctl.conf" || fail "drop-in not placed"
for h in web1 web2; do
    "$fpmctl" -q --no-systemd -c "$dir/$h/php-fpm.conf" ping >/dev/null || fail "$h does not answer"
done
first=$(grep -n "Restart FPM and prove it ready" "$dir/play.log" | head -1 | cut -d: -f1)
[[ $(sed -n "$((first + 1))p" "$dir/play.log") == *web1* ]] || fail "web1 was not restarted first"
step "rolling restart: web1 $before1 -> $after1, then web2 $before2 -> $after2"

# 2. web1's config broken: the play stops at web1; web2 keeps its master; web1's FPM serves.
echo "this line is broken" >>"$dir/web1/php-fpm.conf"
if play; then cat "$dir/play.log" >&2; fail "the play succeeded with a broken config"; fi
grep -q "rejected" "$dir/play.log" || { cat "$dir/play.log" >&2; fail "no reason in the log"; }
[[ $(master web2) == "$after2" ]] || fail "web2 was restarted after web1 failed"
grep -q "web2" <(grep -A2 "Restart FPM and prove it ready" "$dir/play.log") \
    && fail "the play went on to web2"
cp "$dir/web1/php-fpm.conf.good" "$dir/web1/php-fpm.conf"
[[ $(master web1) == "$after1" ]] || fail "web1's FPM was touched despite the broken config"
"$fpmctl" -q --no-systemd -c "$dir/web1/php-fpm.conf" ping >/dev/null || fail "web1 stopped serving"
step "a broken config stops the play at web1; web2 untouched"
echo "test-ansible: ok"
