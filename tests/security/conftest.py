"""A server per test module, on a database of its own: these tests publish budgets,
close periods, open proposals and suspend members, which the other end-to-end tests
(sharing the run's database) do not expect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.settings import Settings
from server.harness import Server
from tests.fixtures.isolated import isolated_server
from tests.fixtures.servers import starts_server


@pytest.fixture(scope="module")
@starts_server
def own_server(
    test_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Server]:
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with isolated_server(test_settings, tmp_path_factory, name) as server:
        yield server
