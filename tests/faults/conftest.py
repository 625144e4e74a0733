"""Fixtures for the fault tests: a Redis and a PostgreSQL of their own per module, a
migrated database on it, and ``coopride`` processes pointed at them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.settings import Settings
from tests.conftest import ROOT, service_env
from tests.faults.services import OwnPostgres, OwnRedis, own_services


@dataclass
class Backing:
    redis: OwnRedis
    pg: OwnPostgres
    settings: Settings


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        check=True,
        env={**os.environ, "COOP_DATABASE_URL": database_url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


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


def dispatcher_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``coopride dispatcher`` alone, on ``settings``."""
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "dispatcher", "--log-level", "info"],
        env={**os.environ, **service_env(settings)},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
