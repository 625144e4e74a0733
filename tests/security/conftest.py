"""A server per test module, on a database of its own: these tests publish budgets,
close periods, open proposals and suspend members, which the other end-to-end tests
(sharing the run's database) do not expect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.settings import Settings
from tests.conftest import Server, start_server, stop_server
from tests.isolated_db import isolated_database


@pytest.fixture(scope="module")
def own_server(
    test_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Server]:
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with isolated_database(test_settings.database_url, name) as url:
        settings = test_settings.model_copy(
            update={"database_url": url, "redis_prefix": f"{test_settings.redis_prefix}{name}:"}
        )
        proc, server = start_server(settings, tmp_path_factory.mktemp(name) / "server.log")
        try:
            yield server
        finally:
            stop_server(proc)
