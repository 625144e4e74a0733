#!/usr/bin/env bash
# Make a fresh Debian/Ubuntu machine (Python 3.11+) ready to run and test
# coopride: system packages, PostgreSQL + PostGIS, Redis, nginx (for a test), the
# app's role and database, the .venv with the project installed, and the migrations.
# Idempotent: safe to run again; it only does what is missing.
#
# Usage: bash scripts/setup.sh [--services-only]
#   --services-only   packages, services, role and database; no venv, no migrate
#
# Settings (environment wins over ./.env, which wins over the defaults):
#   COOP_DATABASE_URL  default postgresql+asyncpg://coopride:coopride@127.0.0.1:5432/coopride
#   COOP_REDIS_URL     default redis://127.0.0.1:6379/0
#   PYTHON             interpreter for the venv (default: python3 if >= 3.11, else python3.1x)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"

SERVICES_ONLY=0
for arg in "$@"; do
    case $arg in
        --services-only) SERVICES_ONLY=1 ;;
        -h | --help)
            sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

# ---------------------------------------------------------------- Python

MIN_PY=(3 11)

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

ensure_venv() {
    local venv=$ROOT/.venv py
    if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        py_ok "$venv/bin/python" ||
            die ".venv uses $("$venv/bin/python" --version 2>&1), need >= ${MIN_PY[0]}.${MIN_PY[1]}; remove it (make clean) and rerun"
        log ".venv present ($("$venv/bin/python" --version 2>&1))"
        return 0
    fi
    py=$(find_python)
    ensure_venv_module "$py"
    if [[ -e $venv ]]; then
        log ".venv is broken (no working bin/python); recreating it"
        "$py" -m venv --clear "$venv"
    else
        log "creating .venv with $("$py" --version 2>&1)"
        "$py" -m venv "$venv"
    fi
}

# pip install -e '.[dev]', skipped while pyproject.toml is unchanged since the
# last successful install (stamp file .venv/.installed-<sha256>).
ensure_project_installed() {
    local venv=$ROOT/.venv sum stamp
    [[ -f $ROOT/pyproject.toml ]] || die "pyproject.toml not found in $ROOT"
    sum=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
    stamp=$venv/.installed-$sum
    if [[ -f $stamp ]]; then
        log "project already installed in .venv (pyproject.toml unchanged)"
        return 0
    fi
    log "upgrading pip"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    log "pip install -e '.[dev]' (this can take a few minutes the first time)"
    (cd "$ROOT" && "$venv/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]') ||
        die "pip install -e '.[dev]' failed"
    rm -f "$venv"/.installed-*
    touch "$stamp"
    log "project installed"
}

# ---------------------------------------------------------------- dashboard

# Node.js + npm build the operator dashboard (frontend/ops); Debian's Chromium runs the
# browser test (tests/e2e/test_ops_dashboard.py, driven by Playwright's Python package).
ensure_frontend_packages() {
    local missing=()
    have node || missing+=(nodejs)
    have npm || missing+=(npm)
    have chromium || missing+=(chromium)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]} (dashboard build and browser test)"
        apt_install "${missing[@]}"
    fi
}

# ---------------------------------------------------------------- reverse proxy

# Debian's nginx and openssl: tests/e2e/test_reverse_proxy.py runs nginx of its own, with
# its own config and a self-signed certificate, on free loopback ports, in front of the
# api processes, using the site in deploy/nginx/. Only the binaries are needed: when
# setup installs nginx, the system service Debian starts on port 80 is stopped and
# disabled again (an nginx that was already installed is left as it is).
ensure_proxy_packages() {
    local missing=()
    have nginx || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    have openssl || missing+=(openssl)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "nginx and openssl present"
        return 0
    fi
    log "installing ${missing[*]} (the reverse-proxy test)"
    apt_install "${missing[@]}"
    if [[ " ${missing[*]} " == *" nginx "* ]]; then
        log "stopping and disabling the system nginx (the tests run their own)"
        if have systemctl && [[ -d /run/systemd/system ]]; then
            as_root systemctl disable --now nginx >/dev/null 2>&1 || true
        else
            as_root service nginx stop >/dev/null 2>&1 || true
            if have update-rc.d; then
                as_root update-rc.d nginx disable >/dev/null 2>&1 || true
            fi
        fi
    fi
}

# npm ci + the build into server/static/ops, skipped while the front end's sources,
# package.json and package-lock.json are unchanged since the last successful build
# (stamp file server/static/ops/.built-<sha256>).
build_dashboard() {
    local src=$ROOT/frontend/ops out=$ROOT/server/static/ops sum
    [[ -f $src/package-lock.json ]] || die "frontend/ops/package-lock.json not found"
    sum=$(cd "$src" && find package.json package-lock.json build.mjs src -type f -print0 |
        sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    if [[ -f $out/.built-$sum && -f $out/index.html ]]; then
        log "dashboard already built (frontend/ops unchanged)"
        return 0
    fi
    log "npm ci (frontend/ops)"
    (cd "$src" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in frontend/ops"
    log "building the dashboard into server/static/ops"
    (cd "$src" && npm run --silent build) || die "the dashboard build failed"
    touch "$out/.built-$sum"
}

run_migrations() {
    if [[ -x $ROOT/.venv/bin/coopride ]]; then
        log "coopride migrate"
        (cd "$ROOT" && "$ROOT/.venv/bin/coopride" migrate) || die "coopride migrate failed"
    else
        log "no .venv/bin/coopride entry point; skipping migrations"
    fi
}

# ---------------------------------------------------------------- main

load_settings "$ROOT"
parse_db_url "$COOP_DATABASE_URL"
parse_redis_url "$COOP_REDIS_URL"
log "database $PG_USER@$PG_HOST:$PG_PORT/$PG_DB, redis $REDIS_HOST:$REDIS_PORT"

ensure_service_packages
ensure_postgres
ensure_postgis_package
ensure_redis
ensure_role_and_db

if [[ $SERVICES_ONLY -eq 1 ]]; then
    log "services ready (--services-only)"
    exit 0
fi

ensure_venv
ensure_project_installed
ensure_frontend_packages
ensure_proxy_packages
build_dashboard
run_migrations
log "done"
