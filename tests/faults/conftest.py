"""Fixtures for the fault tests: a Redis and a PostgreSQL of their own per module, with
a migrated database on it (``tests/fixtures/own_services.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.settings import Settings
from server.harness import migrate
from tests.fixtures.own_services import Backing, own_services


@pytest.fixture(scope="module")
def backing(test_settings: Settings) -> Iterator[Backing]:
    """Own Redis + PostgreSQL (migrated database ``coopride``) for one test module."""
    with own_services() as (redis, pg):
        pg.psql("CREATE DATABASE coopride")
        migrate(pg.url("coopride"))
        settings = test_settings.model_copy(
            update={
                "database_url": pg.url("coopride"),
                "redis_url": redis.url,
                "redis_prefix": "faults:",
            }
        )
        yield Backing(redis, pg, settings)
