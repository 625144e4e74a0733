#!/usr/bin/env bash
# Make a fresh Debian/Ubuntu machine (Python 3.11+) ready to run and test
# coopride: system packages, PostgreSQL + PostGIS, Redis, nginx (for a test), the
# app's role and database, the .venv installed from uv.lock, and the migrations.
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
# shellcheck source=scripts/python.sh
source "$ROOT/scripts/python.sh"

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

# The project and every dependency, exactly as uv.lock pins them (hashes checked), with
# the dev and loadtest extras; the project itself editable. `uv sync` changes only what
# differs, so a second run takes a moment. A pyproject.toml edited without `make lock`
# stops here: the lock no longer says what to install.
sync_venv() {
    local venv=$ROOT/.venv
    [[ -f $ROOT/uv.lock ]] || die "uv.lock not found in $ROOT (run 'make lock' and commit it)"
    ensure_uv
    log "uv sync --locked --all-extras (.venv from uv.lock)"
    rm -f "$venv"/.installed-* # pip-era stamp files
    if ! (cd "$ROOT" && UV_PROJECT_ENVIRONMENT=$venv "$UV" sync --locked --all-extras \
        --python "$venv/bin/python" --quiet); then
        die "uv sync --locked failed; if it says the lockfile needs to be updated, pyproject.toml changed: run 'make lock' and commit uv.lock"
    fi
    log "project installed in .venv from uv.lock"
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

# npm ci in a package folder whose dependencies the test suite uses: tools/asyncapi (the
# AsyncAPI parser tests/server/test_asyncapi.py validates asyncapi.json with) and
# clients/typescript (the SDK tests/server/test_typescript_sdk.py checks and builds).
# Skipped while package.json and package-lock.json are unchanged since the last
# successful install (stamp file node_modules/.installed-<sha256>).
npm_ci_once() {
    local rel=$1 what=$2 dir=$ROOT/$1 sum
    [[ -f $dir/package-lock.json ]] || die "$rel/package-lock.json not found"
    sum=$(cd "$dir" && sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
    if [[ -f $dir/node_modules/.installed-$sum ]]; then
        log "$what already installed ($rel unchanged)"
        return 0
    fi
    log "npm ci ($rel)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $rel"
    touch "$dir/node_modules/.installed-$sum"
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
sync_venv
ensure_frontend_packages
ensure_proxy_packages
build_dashboard
npm_ci_once tools/asyncapi "AsyncAPI parser"
npm_ci_once clients/typescript "TypeScript SDK dependencies"
run_migrations
log "done"
