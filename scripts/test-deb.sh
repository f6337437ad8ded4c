#!/usr/bin/env bash
# Builds the .deb and proves it on this machine: `dpkg -i`, the installed binary, man pages,
# completions and units (`systemd-analyze verify` on the installed files as they are), then
# `dpkg -r` leaves nothing but the conffile, and `dpkg --purge` leaves nothing. Runs as root;
# refuses to touch an fpmctl that was installed before it ran. Nothing is started: the
# maintainer scripts never touch FPM.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*" >&2; }

[[ $(id -u) -eq 0 ]] || fail "needs root (dpkg -i)"
if dpkg-query -W -f='${Status}' fpmctl 2>/dev/null | grep -q "installed\|config-files"; then
    fail "an fpmctl package is already on this machine; remove it first (dpkg --purge fpmctl)"
fi
[[ ! -e /usr/bin/fpmctl ]] || fail "/usr/bin/fpmctl exists and is not from a package"

deb=$(scripts/build-deb.sh | tail -1)
[[ -f $deb ]] || fail "build-deb.sh made no .deb ($deb)"
step "built $deb"
installed=0
cleanup() {
    if ((installed)); then dpkg --purge fpmctl >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

dpkg -i "$deb" >/dev/null
installed=1
step "installed"

# The binary, with the revision it was built from when built from a checkout.
version=$(/usr/bin/fpmctl --version)
expected="fpmctl $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
rev=$(git rev-parse --short HEAD 2>/dev/null || true)
[[ -n $rev && $(git rev-parse --show-toplevel) == "$PWD" ]] && expected="$expected ($rev)"
[[ $version == "$expected" ]] || fail "--version says '$version', expected '$expected'"
step "$version"

# The idle layout (build/idle-layout.ld) is linked in: its section holds the idle loop's code.
idle=$(readelf -SW /usr/bin/fpmctl | sed -n 's/.* \.text\.idle  *PROGBITS  *[0-9a-f]*  *[0-9a-f]*  *\([0-9a-f]*\) .*/\1/p')
[[ -n $idle ]] || fail "/usr/bin/fpmctl has no .text.idle section: built without build/idle-layout.ld"
((0x$idle >= 100 * 1024)) || fail ".text.idle holds only $((0x$idle)) bytes: the layout matched little"
step ".text.idle holds $((0x$idle / 1024)) KiB"

# Man pages: installed compressed, found by name, rendered.
for page in fpmctl fpmctl-restart fpmctl-supervise; do
    file=/usr/share/man/man1/$page.1.gz
    [[ -f $file ]] || fail "$file missing"
    MANWIDTH=80 man -l "$file" 2>&1 | grep -q "^NAME" || fail "man -l $file does not render"
    [[ $(man -w "$page") == "$file" ]] || fail "man -w $page does not find $file"
done
step "man pages render"

# Completions.
. /usr/share/bash-completion/completions/fpmctl
complete -p fpmctl >/dev/null || fail "the bash completion registers nothing"
grep -q supervise /usr/share/zsh/vendor-completions/_fpmctl || fail "zsh completion"
grep -q supervise /usr/share/fish/vendor_completions.d/fpmctl.fish || fail "fish completion"
step "completions"

# Units, verified as installed (binary and man pages in place now).
for f in /lib/systemd/system/fpmctl-supervise@.service \
         /lib/systemd/system/php8.2-fpm.service.d/fpmctl.conf \
         /usr/lib/tmpfiles.d/fpmctl.conf /usr/share/fpmctl/logrotate/php8.2-fpm \
         /usr/share/doc/fpmctl/copyright /usr/share/doc/fpmctl/README.md; do
    [[ -f $f ]] || fail "$f missing"
done
out=$(systemd-analyze verify fpmctl-supervise@8.2.service php8.2-fpm.service 2>&1) \
    || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify warned: $out"
[[ $(stat -c %a:%U /run/fpmctl) == 700:root ]] || fail "/run/fpmctl is $(stat -c %a:%U /run/fpmctl), not 700:root"
step "units verify; /run/fpmctl is 0700 root"

# Remove: every file of the package is gone but the conffile.
files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print substr($6, 2)}')
conffiles=$(dpkg-deb -f "$deb" Conffiles 2>/dev/null; dpkg-deb -I "$deb" conffiles 2>/dev/null || true)
dpkg -r fpmctl >/dev/null
for f in $files; do
    if grep -qx "$f" <<<"$conffiles"; then
        [[ -f $f ]] || fail "conffile $f was removed by dpkg -r"
    else
        [[ ! -e $f ]] || fail "$f left after dpkg -r"
    fi
done
status=$(dpkg-query -W -f='${Status}' fpmctl)
[[ $status == "deinstall ok config-files" ]] || fail "after dpkg -r: $status"
step "dpkg -r leaves only: $(tr '\n' ' ' <<<"$conffiles")"

dpkg --purge fpmctl >/dev/null
installed=0
for f in $files; do
    [[ ! -e $f ]] || fail "$f left after dpkg --purge"
done
step "dpkg --purge leaves nothing"
echo "test-deb: ok"
