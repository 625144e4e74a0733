#!/usr/bin/env bash
# `make test-fast` on the lowest versions pyproject.toml allows, so its floors stay honest.
#
# .venv-lowest gets every direct dependency at its floor (uv's `--resolution
# lowest-direct`; what they depend on resolves to the newest that fits), the project
# editable with the dev and loadtest extras, as in .venv. uv.lock and .venv are not
# touched. Exits non-zero when the install or any test fails, or when no test ran.
#
# Usage: bash scripts/ci_lowest.sh [pytest args]   (make test-lowest)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
# shellcheck source=scripts/python.sh
source "$ROOT/scripts/python.sh"
log() { printf '[lowest] %s\n' "$*"; }
die() {
    printf '[lowest] ERROR: %s\n' "$*" >&2
    exit 1
}

LOWEST=.venv-lowest
started=$SECONDS

# The same interpreter as .venv when there is one, so the two runs differ only in versions.
if [[ -x $ROOT/.venv/bin/python ]]; then
    py=$ROOT/.venv/bin/python
else
    py=$(find_python)
fi
ensure_uv

log "$LOWEST with $("$py" --version 2>&1), direct dependencies at their floors"
cd "$ROOT"
"$UV" venv --quiet --clear --python "$py" "$LOWEST"
"$UV" pip install --quiet --python "$LOWEST/bin/python" --resolution lowest-direct \
    -e '.[dev,loadtest]' || die "installing the floors of pyproject.toml failed"
log "installed $("$UV" pip list --python "$LOWEST/bin/python" 2>/dev/null | tail -n +3 | wc -l) packages in $((SECONDS - started)) s"

# make fails (exit 2) when pytest exits non-zero, 5 (no test collected) included.
args=${*:-"-q -p no:cacheprovider"}
make test-fast VENV="$LOWEST" PYTEST_ARGS="$args" </dev/null ||
    die "make test-fast failed on the floors of pyproject.toml (raise the floor that broke)"
log "passed in $((SECONDS - started)) s"
