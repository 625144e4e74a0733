#!/usr/bin/env bash
# The project's pinned uv (scripts/python.sh: UV_VERSION), installed into .venv-tools on
# first use, run from the project root on .venv:
#   bash scripts/uv.sh lock              # uv.lock to match pyproject.toml (make lock)
#   bash scripts/uv.sh lock --upgrade    # the newest releases pyproject.toml allows (make upgrade)
#   bash scripts/uv.sh tree --frozen     # what is locked, as a tree
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
# shellcheck source=scripts/python.sh
source "$ROOT/scripts/python.sh"

ensure_uv >&2
cd "$ROOT"
export UV_PROJECT_ENVIRONMENT=$ROOT/.venv
exec "$UV" "$@"
