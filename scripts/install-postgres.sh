#!/usr/bin/env bash
# Install Debian's PostgreSQL 15 server binaries for the tests (idempotent).
#
# The tests start their own throw-away server from /usr/lib/postgresql/15/bin on 127.0.0.1
# (tests/pg.py); this script only makes the binaries exist. It never creates or starts the
# packaged "main" cluster. Needs root (CI runs as root); exits 0 at once when already installed.
#
#   bash scripts/install-postgres.sh          # PG_VERSION=15 by default
set -euo pipefail

PG_VERSION="${PG_VERSION:-15}"
PG_BIN="/usr/lib/postgresql/${PG_VERSION}/bin"

have_binaries() {
    [ -x "${PG_BIN}/initdb" ] && [ -x "${PG_BIN}/pg_ctl" ] && [ -x "${PG_BIN}/postgres" ]
}

if have_binaries && id -u postgres >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL ${PG_VERSION} already installed in ${PG_BIN}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-postgres: PostgreSQL ${PG_VERSION} is missing and this is not root;" \
         "run: sudo bash $0" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: no apt-get here; install PostgreSQL ${PG_VERSION} by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
"${APT[@]}" update
# Do not let the server package create (and try to start) its own "main" cluster on port
# 5432: the tests run their own server. postgresql-common's createcluster.conf says so.
"${APT[@]}" install -y --no-install-recommends postgresql-common
conf=/etc/postgresql-common/createcluster.conf
if [ -f "$conf" ] && ! grep -q '^create_main_cluster *= *false' "$conf"; then
    sed -i 's/^#\? *create_main_cluster *=.*/create_main_cluster = false/' "$conf"
    grep -q '^create_main_cluster' "$conf" || echo "create_main_cluster = false" >> "$conf"
fi
"${APT[@]}" install -y --no-install-recommends "postgresql-${PG_VERSION}"

if ! have_binaries; then
    echo "install-postgres: installed, but ${PG_BIN} has no initdb/pg_ctl/postgres" >&2
    exit 1
fi
echo "install-postgres: PostgreSQL ${PG_VERSION} installed in ${PG_BIN}"
