#!/usr/bin/env bash
# Installs what fpmctl's tests and demo need on Debian 12: the real php-fpm, nginx,
# the reference FastCGI client (cgi-fcgi), wrk for load tests, promtool (which Debian 12 ships
# only in the `prometheus` package) to check the metrics exposition; for the packaging checks,
# systemd (booted in a namespace by tests/systemd.rs), man-db (man -l), logrotate and
# python3-venv (ansible-core for the role's check). Only missing packages are installed;
# run as root. With package names as arguments, only those (the demo needs php-fpm alone).
set -euo pipefail

packages=(php8.2-fpm libfcgi-bin nginx-light wrk systemd man-db groff-base logrotate python3-venv prometheus)
if (($# > 0)); then
    packages=("$@")
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Only promtool is wanted: where systemd runs, the Prometheus server the package enables
# is stopped and disabled again.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
