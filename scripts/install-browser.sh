#!/bin/sh
# Install Debian's chromium for the browser tests (tests/test_browser.py), if it is missing.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or sudo) and apt-get.
# Playwright drives this binary directly: never run `playwright install` (no browser downloads).
set -eu

if [ -x /usr/bin/chromium ]; then
    echo "chromium is already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser.sh: apt-get not found; install chromium with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser.sh: run as root (or install sudo) to install chromium" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
APT="$SUDO apt-get -o DPkg::Lock::Timeout=300"
# --no-install-recommends: without it apt upgrades base packages and pulls in extras
if ! $APT install -y --no-install-recommends chromium; then
    $APT update
    $APT install -y --no-install-recommends chromium
fi
/usr/bin/chromium --version
