#!/usr/bin/env bash
# Install Apache Superset into its own virtualenv for the optional Superset test (idempotent).
#
# Superset 6.1 pins SQLAlchemy < 2 and pandas < 2.2, so it cannot share remotetables' test
# environment (SQLAlchemy 2, pandas 3): it gets a venv of its own, with remotetables' runtime
# dependencies; the test runs remotetables from the source tree inside it. About 850 MB and a
# few minutes; scripts/test does not run this. Then:
#
#   bash scripts/install-superset.sh                  # SUPERSET_VENV=/opt/remotetables-superset
#   REMOTETABLES_SUPERSET_PYTHON=/opt/remotetables-superset/bin/python \
#       python -m pytest tests/test_superset.py
set -euo pipefail

VENV="${SUPERSET_VENV:-/opt/remotetables-superset}"
PY="${PYTHON:-python3}"

if [ -x "${VENV}/bin/python" ] && "${VENV}/bin/python" -c "import superset, apsw, httpx2" 2>/dev/null; then
    echo "install-superset: already installed in ${VENV}"
    exit 0
fi

"$PY" -m venv "$VENV"
# Superset's own lock file pins these (its wheel allows newer ones that break create_app)
"${VENV}/bin/pip" install --quiet --disable-pip-version-check \
    "apache-superset==6.1.0" \
    "flask==2.3.3" "werkzeug==3.1.3" "flask-caching==2.3.1" "cachelib==0.13.0" \
    "flask-sqlalchemy==2.5.1" "flask-appbuilder==5.0.2" "flask-babel==3.1.0" \
    "marshmallow-sqlalchemy==1.4.0" "flask-limiter==3.12" "flask-session==0.8.0" \
    "flask-wtf==1.2.2" "flask-compress==1.17" "flask-jwt-extended==4.7.1" \
    apsw httpx2 authlib cachetools orjson platformdirs keyring
"${VENV}/bin/python" -c "import superset, apsw, httpx2"
echo "install-superset: installed in ${VENV}; run the test with REMOTETABLES_SUPERSET_PYTHON=${VENV}/bin/python"
