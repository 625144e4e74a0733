"""server.harness: what every test, benchmark and load test that starts a real process
relies on. A setting lost on the way to the subprocess, a server that died but is waited
for, or a fast run that starts a server after all would each pass unnoticed elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from server import harness
from tests.fixtures.servers import starts_server


def test_every_setting_reaches_the_subprocess_and_none_removes_its_variable(
    test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOP_OPS_TILE_URL", "https://tiles.invalid/{z}/{x}/{y}.png")
    monkeypatch.setenv("UNRELATED", "kept")
    settings = test_settings.model_copy(update={"ops_tile_url": None, "bench_endpoints": True})
    env = harness.service_env(settings)
    assert env["UNRELATED"] == "kept"
    assert "COOP_OPS_TILE_URL" not in env
    unset = {name for name in Settings.model_fields if getattr(settings, name) is None}
    assert unset >= {"ops_tile_url"}
    named = {f"COOP_{name.upper()}" for name in Settings.model_fields}
    assert named - {f"COOP_{name.upper()}" for name in unset} <= env.keys()
    assert not {f"COOP_{name.upper()}" for name in unset} & env.keys()
    # What the subprocess reads back is what was given, field by field.
    monkeypatch.setattr("os.environ", env)
    assert Settings(_env_file=None) == settings


def test_database_urls() -> None:
    url = "postgresql+asyncpg://u:p@127.0.0.1:5432/coopride?ssl=disable"
    other = harness.with_database(url, "coopride_test_x")
    assert other == "postgresql+asyncpg://u:p@127.0.0.1:5432/coopride_test_x?ssl=disable"
    assert harness.database_name(other) == "coopride_test_x"
    assert harness.libpq_url(other).startswith("postgresql://u:p@127.0.0.1:5432/")


def test_only_plain_database_names_reach_sql(test_settings: Settings) -> None:
    with pytest.raises(ValueError, match="plain"):
        harness.drop_database(harness.with_database(test_settings.database_url, 'x"; DROP'))


def test_without_server_processes_the_harness_refuses_to_start_one(
    test_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make test-fast``: a test that would start a server fails instead of running."""
    monkeypatch.setenv(harness.NO_SERVER_PROCESSES, "1")
    with pytest.raises(harness.ServerProcessRefused, match="e2e"):
        harness.start_server(test_settings, tmp_path / "server.log")
    with pytest.raises(harness.ServerProcessRefused):
        harness.start_dispatcher(test_settings, tmp_path / "dispatcher.log")
    with pytest.raises(harness.ServerProcessRefused):
        harness.run(["demo", "--duration", "1"], test_settings, timeout_s=10)
    assert not (tmp_path / "server.log").exists()


def test_importing_the_harness_does_not_import_the_app() -> None:
    """Load tests and benchmarks import it in processes that must stay light, and a
    harness that built the app in-process could hide what only a subprocess shows."""
    code = (
        "import sys, server.harness; "
        "print(sorted(m for m in ('fastapi', 'server.app') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=harness.ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.e2e
def test_a_server_that_exits_is_reported_at_once_with_its_log(
    test_settings: Settings, tmp_path: Path
) -> None:
    # Outside development a placeholder secret stops the server at start-up.
    refused = test_settings.model_copy(update={"operator_token": "change-me"})
    with pytest.raises(RuntimeError, match="exited with") as failed:
        harness.start_server(refused, tmp_path / "server.log", ready_timeout_s=60)
    assert "COOP_OPERATOR_TOKEN" in str(failed.value)


@pytest.fixture
@starts_server
def declared_server() -> None:
    """Declared as starting a server, without starting one: the mark is what is tested."""


@pytest.fixture
def through_another(declared_server: None) -> None:
    pass


def test_a_fixture_that_starts_a_server_marks_its_tests_e2e(
    declared_server: None, request: pytest.FixtureRequest
) -> None:
    # Only in the whole suite: make test-fast leaves it out, because of the mark.
    assert request.node.get_closest_marker("e2e") is not None


def test_the_mark_follows_the_fixture_through_other_fixtures(
    through_another: None, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("e2e") is not None
