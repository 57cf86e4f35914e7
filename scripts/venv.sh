# Sourced by scripts/test: make sure the virtual environment ./.venv exists and set PY to its
# python. Debian and Ubuntu mark their system Python as externally managed (PEP 668): pip
# refuses to install into it, so everything goes into .venv. `python3 -m venv` needs Debian's
# python3-venv package (for ensurepip); as root it is installed here when missing.
VENV="${VENV:-.venv}"

_venv_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

if ! _venv_ok; then
    echo "== creating the virtual environment $VENV with $(command -v python3)"
    if ! python3 -m venv "$VENV"; then
        rm -rf "$VENV"
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "== installing Debian's python3-venv (python3 -m venv needs it)"
            export DEBIAN_FRONTEND=noninteractive
            APT="apt-get -q -o DPkg::Lock::Timeout=300"
            $APT install -y --no-install-recommends python3-venv \
                || { $APT update && $APT install -y --no-install-recommends python3-venv; }
            python3 -m venv "$VENV"
        else
            echo "scripts/test: could not create $VENV with python3 -m venv; on Debian or" \
                 "Ubuntu install python3-venv first (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
PY="$VENV/bin/python"
