"""Configuration errors at start-up (server/preflight.py), through the real ``coopride``
command in a subprocess: a database URL with the wrong scheme, a Redis that does not
answer, a database without PostGIS. Each is one line on stderr naming the setting and the
fix, exit status 2, no traceback. And the plain ``postgresql://`` scheme works.

The commands that would serve (serve, dispatcher, demo) are marked e2e: they stop at the
check here, but a check that let them through would start a server."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from core.settings import Settings, asyncpg_url
from server import harness
from server.preflight import postgis_problem

SERVING = [
    ["serve", "--port", "0"],
    ["dispatcher"],
    ["demo", "--port", "0", "--duration", "1"],
]
TIMEOUT_S = 60


def coopride(
    command: list[str], settings: Settings, **variables: str
) -> subprocess.CompletedProcess[str]:
    """``coopride COMMAND`` with ``settings``, ``variables`` overriding their variables
    (which may hold what a Settings could not: a mysql:// URL)."""
    env = {**harness.service_env(settings), **variables}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *command],
        env=env,
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The single line the command printed on stderr, checked for each of ``expected``."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


def plain(url: str) -> str:
    """``url`` as libpq (and a hosting provider) writes it."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
def scratch_url(test_settings: Settings) -> Iterator[str]:
    """A database of this test's own, empty and without PostGIS (copied from template0, so
    whatever template1 holds stays out), dropped at the end."""
    url = harness.with_database(
        test_settings.database_url, f"coopride_scratch_{secrets.token_hex(4)}"
    )
    harness.create_database(url, template="template0")
    try:
        yield url
    finally:
        harness.drop_database(url)


# -- the database URL's scheme ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://u:p%40ss@db.example:5433/coop",
            "postgresql+asyncpg://u:p%40ss@db.example:5433/coop",
        ),
        ("postgres://u@h/coop", "postgresql+asyncpg://u@h/coop"),
        ("postgresql+asyncpg://u@h/coop", "postgresql+asyncpg://u@h/coop"),
        ("postgresql://h/coop?sslmode=require", "postgresql+asyncpg://h/coop?ssl=require"),
    ],
)
def test_the_plain_scheme_gets_the_asyncpg_driver(given: str, expected: str) -> None:
    assert asyncpg_url(given) == expected
    assert Settings(_env_file=None, database_url=given).database_url == expected


@pytest.mark.parametrize("url", ["mysql://u@h/coop", "postgresql+psycopg2://u@h/coop", "h/coop"])
def test_another_scheme_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match=r"COOP_DATABASE_URL.*postgresql://"):
        asyncpg_url(url)


def test_migrate_and_audit_work_with_the_plain_scheme(
    test_settings: Settings, scratch_url: str
) -> None:
    url = plain(scratch_url)
    migrated = coopride(["migrate"], test_settings, COOP_DATABASE_URL=url)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "[migrate] done" in migrated.stdout
    audit = coopride(["audit", "verify"], test_settings, COOP_DATABASE_URL=url)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    async def tables() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {r["tablename"] for r in rows}
        finally:
            await conn.close()

    assert {"trips", "members", "alembic_version"} <= asyncio.run(tables())


def test_migrate_with_a_mysql_url_says_what_to_write(test_settings: Settings) -> None:
    result = coopride(["migrate"], test_settings, COOP_DATABASE_URL="mysql://coop:hunter2@db/coop")
    line = one_line_error(result, "COOP_DATABASE_URL", "mysql://", "postgresql://")
    assert "hunter2" not in line


@pytest.mark.e2e
@pytest.mark.parametrize("command", SERVING, ids=lambda c: c[0])
def test_serving_with_a_mysql_url_says_what_to_write(
    test_settings: Settings, command: list[str]
) -> None:
    result = coopride(command, test_settings, COOP_DATABASE_URL="mysql://coop@db/coop")
    one_line_error(result, "COOP_DATABASE_URL", "mysql://", "postgresql://")


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("command", SERVING, ids=lambda c: c[0])
def test_an_unreachable_redis_is_named_without_its_password(
    test_settings: Settings, command: list[str]
) -> None:
    port = harness.free_port()  # nothing listens there
    url = f"redis://:hunter2secret@127.0.0.1:{port}/0"
    result = coopride(command, test_settings, COOP_REDIS_URL=url)
    line = one_line_error(result, "COOP_REDIS_URL", f"redis://127.0.0.1:{port}/0", "start Redis")
    assert "hunter2secret" not in result.stderr + result.stdout, line


# -- PostGIS -----------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("command", SERVING, ids=lambda c: c[0])
def test_a_database_without_postgis_says_how_to_get_it(
    test_settings: Settings, scratch_url: str, command: list[str]
) -> None:
    result = coopride(command, test_settings, COOP_DATABASE_URL=plain(scratch_url))
    one_line_error(
        result,
        "COOP_DATABASE_URL",
        "no PostGIS extension",
        "CREATE EXTENSION postgis",
        harness.database_name(scratch_url),
    )


def test_audit_on_a_database_without_postgis_says_how_to_get_it(
    test_settings: Settings, scratch_url: str
) -> None:
    result = coopride(["audit", "verify"], test_settings, COOP_DATABASE_URL=scratch_url)
    one_line_error(result, "COOP_DATABASE_URL", "CREATE EXTENSION postgis")


def test_a_server_without_the_postgis_package_names_it() -> None:
    """Not reproducible on a machine with PostGIS installed: the message alone."""
    problem = postgis_problem(
        "coop",
        "coop",
        "db:5432",
        installed=False,
        available=False,
        major=16,
        superuser=True,
        migrating=True,
    )
    assert problem is not None
    assert "postgresql-16-postgis-3" in problem and "coopride migrate" in problem
    assert "\n" not in problem


def test_migrate_creates_postgis_itself_when_it_may() -> None:
    args = {"installed": False, "available": True, "major": 15}
    assert postgis_problem("d", "u", "h:1", superuser=True, migrating=True, **args) is None
    refused = postgis_problem("d", "u", "h:1", superuser=False, migrating=True, **args)
    assert refused is not None and "superuser" in refused and "CREATE EXTENSION postgis" in refused
    installed = {"installed": True, "available": True, "major": 15}
    assert postgis_problem("d", "u", "h:1", superuser=False, migrating=False, **installed) is None


# -- the other settings ------------------------------------------------------------------


def test_a_bad_setting_is_one_line_naming_its_variable(test_settings: Settings) -> None:
    result = coopride(["migrate"], test_settings, COOP_DISPATCH_BATCH_S="soon")
    one_line_error(result, "COOP_DISPATCH_BATCH_S")
