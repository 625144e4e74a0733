"""A database of its own for tests that change co-op-wide state.

Adopting a fare rule changes the current rule for every trip priced after it, and the
shared test database is used by every other test (and by the shared e2e server, whose
dispatcher closes due proposals). So governance tests get their own database, created
and migrated like the shared one and dropped when they are done; each module that needs
one asks ``isolated_database`` for it. The first one migrates a template database, and
the others are copied from it, which is much faster than migrating each.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from core.settings import Settings
from tests.conftest import ROOT, RUN_ID, Server, start_server, stop_server


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def libpq_url(url: str) -> str:
    """The same URL for asyncpg/libpq (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _admin(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(libpq_url(with_database(url, "postgres")), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


_templates: dict[str, str] = {}


def _migrate(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        check=True,
        env={**os.environ, "COOP_DATABASE_URL": url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def _template(base_url: str) -> str:
    """A migrated database nobody connects to, copied by ``CREATE DATABASE … TEMPLATE``;
    dropped when the test process exits."""
    server = with_database(base_url, "postgres")  # one template per server
    name = _templates.get(server)
    if name is None:
        name = f"coopride_test_{RUN_ID}_template"
        _admin(base_url, f'CREATE DATABASE "{name}"')
        atexit.register(_admin, base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _migrate(with_database(base_url, name))
        _templates[server] = name
    return name


@contextmanager
def isolated_database(base_url: str, label: str) -> Iterator[str]:
    """A freshly migrated database for the block; its SQLAlchemy URL."""
    name = f"coopride_test_{RUN_ID}_{label}_{secrets.token_hex(2)}"
    _admin(base_url, f'CREATE DATABASE "{name}" TEMPLATE "{_template(base_url)}"')
    try:
        yield with_database(base_url, name)
    finally:
        _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def isolated_settings(
    test_settings: Settings, label: str, **overrides: object
) -> Iterator[Settings]:
    """``test_settings`` on a database of its own and the Redis prefix
    ``<run prefix><label>:``, with ``overrides``; the database is dropped after the block.
    For servers and dispatchers whose trips, rules or periods must not reach the shared
    ones: every dispatcher re-queues the open trips of its database."""
    with isolated_database(test_settings.database_url, label) as url:
        yield test_settings.model_copy(
            update={
                "database_url": url,
                "redis_prefix": f"{test_settings.redis_prefix}{label}:",
                **overrides,
            }
        )


@contextmanager
def isolated_server(
    test_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    label: str,
    **overrides: object,
) -> Iterator[Server]:
    """A real server (api + dispatcher) on ``isolated_settings``, stopped after the
    block."""
    with isolated_settings(test_settings, label, **overrides) as settings:
        proc, server = start_server(settings, tmp_path_factory.mktemp(label) / "server.log")
        try:
            yield server
        finally:
            stop_server(proc)
