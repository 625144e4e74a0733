# shellcheck shell=bash
# Python helpers for scripts/setup.sh, scripts/uv.sh and scripts/ci_lowest.sh: the
# interpreter, `python -m venv`, and uv (which installs .venv from uv.lock). Sourced after
# scripts/services.sh (log, die, have, apt_install); expects `set -euo pipefail` and ROOT.
#
# Public functions:
#   find_python       print the interpreter to use: $PYTHON, else the first python3* >= 3.11
#   ensure_venv_module PY   make `PY -m venv` work (python3-venv from apt when missing)
#   ensure_uv         uv $UV_VERSION in .venv-tools/ (made with `python -m venv` + pip);
#                     sets UV to its path

MIN_PY=(3 11)
# The uv that reads and writes uv.lock. Pinned, so every machine resolves and installs
# alike; raise it deliberately (then `make lock`).
UV_VERSION=0.13.10
# uv lives in a venv of its own: pip then installs it as root or not, and where the system
# Python refuses `pip install` (PEP 668, Debian 12+). `uv sync` makes .venv match uv.lock
# exactly, so uv cannot live in .venv itself.
TOOLS_VENV=$ROOT/.venv-tools
# No managed Python downloads: the venvs use the interpreter found here.
export UV_PYTHON_DOWNLOADS=never

py_ok() { # py_ok INTERPRETER: true when it runs and is >= 3.11
    "$1" -c "import sys; sys.exit(sys.version_info < (${MIN_PY[0]}, ${MIN_PY[1]}))" >/dev/null 2>&1
}

find_python() {
    local c
    if [[ -n ${PYTHON:-} ]]; then
        py_ok "$PYTHON" || die "PYTHON=$PYTHON is not a Python >= ${MIN_PY[0]}.${MIN_PY[1]}"
        printf '%s' "$PYTHON"
        return 0
    fi
    for c in python3 python3.13 python3.12 python3.11; do
        if have "$c" && py_ok "$c"; then
            printf '%s' "$c"
            return 0
        fi
    done
    die "Python >= ${MIN_PY[0]}.${MIN_PY[1]} is required (found: $(python3 --version 2>&1 || echo 'no python3')); install it or set PYTHON=/path/to/python3.11"
}

# `python -m venv` needs ensurepip, which Debian/Ubuntu ship separately.
ensure_venv_module() {
    local py=$1 ver
    "$py" -c 'import venv, ensurepip' >/dev/null 2>&1 && return 0
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if ! pkg_installed python3-venv; then
        apt_install python3-venv
    fi
    if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install "python$ver-venv"
    fi
    "$py" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        die "$py -m venv does not work (ensurepip missing) even after installing python3-venv"
}

ensure_uv() {
    UV=$TOOLS_VENV/bin/uv
    if [[ -x $UV ]] && [[ $("$UV" --version 2>/dev/null) == "uv $UV_VERSION"* ]]; then
        return 0
    fi
    local py
    py=$(find_python)
    ensure_venv_module "$py"
    log "installing uv $UV_VERSION into .venv-tools (it installs .venv from uv.lock)"
    "$py" -m venv --clear "$TOOLS_VENV" >/dev/null ||
        die "$py -m venv $TOOLS_VENV failed"
    "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "uv==$UV_VERSION" || die "pip install uv==$UV_VERSION failed (is PyPI reachable?)"
    [[ $("$UV" --version 2>/dev/null) == "uv $UV_VERSION"* ]] ||
        die "$UV is not uv $UV_VERSION after installing it"
}
