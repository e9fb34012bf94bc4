#!/bin/sh
# Installs Debian's chromium for tests/e2e/test_dashboard.py (Playwright drives it with
# executable_path; no browser is ever downloaded).  Run by `make test`; does nothing when
# /usr/bin/chromium is already there.
set -eu

[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/e2e/setup_chromium.sh: please install chromium (no apt-get here)" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "tests/e2e/setup_chromium.sh: installing chromium" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
