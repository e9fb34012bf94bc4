#!/bin/sh
# Installs what `make bench` needs and the project venv does not carry: wrk (the load generator),
# nginx (the reference reverse proxy and the fixed-body upstream) and taskset (util-linux).
# Debian/Ubuntu only; installs nothing when all three are already on PATH.
set -eu

missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v taskset >/dev/null 2>&1 || missing="$missing util-linux"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench/setup.sh: please install:$missing (no apt-get here)" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "bench/setup.sh: installing$missing" >&2
$SUDO apt-get update -qq
# nginx-light is enough (core + proxy + auth_basic); fall back to nginx where it does not exist.
# shellcheck disable=SC2086
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing; then
    missing=$(echo "$missing" | sed 's/nginx-light/nginx/')
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# The Debian package starts a system nginx on port 80; the bench runs its own instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl stop nginx || true
fi
