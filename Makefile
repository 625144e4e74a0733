# Thin wrappers; the real work is in scripts/setup.sh and the `coopride` CLI.
SHELL := /bin/bash

# `make test-fast VENV=.venv-lowest` runs the suite on another venv (scripts/ci_lowest.sh);
# setup always installs .venv, from uv.lock.
VENV := .venv
BIN := $(VENV)/bin
# The project's pinned uv (installed into .venv-tools on first use).
UV := bash scripts/uv.sh

HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
LOADTEST_ARGS ?=
# Optional: file that receives pytest's exit status (used by .ci/run, since
# make itself only ever exits 0 or 2).
PYTEST_STATUS_FILE ?=

.PHONY: setup run test test-fast test-lowest lock upgrade lint bench loadtest clean venv-check contract

# System packages, PostgreSQL/PostGIS, Redis, role/db, .venv (from uv.lock), migrations.
setup:
	bash scripts/setup.sh

# uv.lock again after a dependency was added or changed in pyproject.toml; every other
# pin stays as it is. Commit uv.lock with the pyproject.toml change.
lock:
	$(UV) lock

# Take new releases deliberately: every pin moves to the newest that pyproject.toml
# allows, then setup syncs .venv. Run the suite, then commit uv.lock.
upgrade:
	$(UV) lock --upgrade
	bash scripts/setup.sh

# test-fast on the lowest versions pyproject.toml allows, in .venv-lowest (CI runs it).
test-lowest:
	bash scripts/ci_lowest.sh

# The backend with a living demo city (Ctrl-C stops it). `coopride serve` for an empty one.
run: setup
	$(BIN)/coopride demo --host $(HOST) --port $(PORT)

test: setup
ifneq ($(strip $(PYTEST_STATUS_FILE)),)
	rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; echo $$rc > $(PYTEST_STATUS_FILE); exit $$rc
else
	$(BIN)/pytest $(PYTEST_ARGS)
endif

# The suite without server processes (no `coopride serve`, dispatcher, demo or loadtest;
# the test database is still created and migrated): tests marked e2e are left out, and
# server/harness.py refuses to start a server, so a test that starts one unmarked fails
# here instead of quietly making this slow. `make test` stays the whole suite.
test-fast: setup
	COOPRIDE_NO_SERVER_PROCESSES=1 $(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

# Needs only the venv, not the services.
lint: venv-check
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/mypy

# The committed wire contract (openapi.json, asyncapi.json) again from the code, after a
# route, a schema or a socket frame changed; commit the files with the change. Needs the
# venv, and for the TypeScript SDK's generated files (clients/typescript/src/generated)
# its node_modules (`make setup`). `python -m` runs this checkout's code whichever
# checkout the venv was made in.
contract: venv-check
	$(BIN)/python -m server.cli contract write
	cd clients/typescript && npm run --silent generate

# Runs every benchmarks/bench_*.py with the venv's python.
bench: setup
	@shopt -s nullglob; files=(benchmarks/bench_*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks/bench_*.py found" >&2; exit 1; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(BIN)/python "$$f" || exit $$?; done

loadtest: setup
	$(BIN)/coopride loadtest $(LOADTEST_ARGS)

# Removes the venvs and caches only; databases and services are left alone.
clean:
	rm -rf .venv .venv-tools .venv-lowest .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info .ci/junit.xml
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

venv-check:
	@test -x $(BIN)/python || { echo "no .venv yet: run 'make setup' first" >&2; exit 1; }
