#!/usr/bin/env bash
# Install Debian's stock sqlite3 command-line shell for the tests (idempotent).
#
# tests/test_plain_file.py checks that a database file remotetables has used stays readable
# by tools that do not have the module; the stock CLI is one of them. Needs root (CI runs as
# root); exits 0 at once when the command is already there.
#
#   bash scripts/install-sqlite3.sh
set -euo pipefail

if command -v sqlite3 >/dev/null 2>&1; then
    echo "install-sqlite3: $(command -v sqlite3) already installed ($(sqlite3 --version | cut -d' ' -f1))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-sqlite3: the sqlite3 CLI is missing and this is not root; run: sudo bash $0" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-sqlite3: no apt-get here; install the sqlite3 command-line shell by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
"${APT[@]}" update
"${APT[@]}" install -y --no-install-recommends sqlite3

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "install-sqlite3: installed, but no sqlite3 command on PATH" >&2
    exit 1
fi
echo "install-sqlite3: $(command -v sqlite3) installed"
