"""`coopride demo`, the README's first command, plays a city through the real API."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from core.settings import Settings
from server import harness
from tests.fixtures.isolated import isolated_settings

pytestmark = pytest.mark.e2e


def test_the_demo_city_completes_trips_and_keeps_no_commission(test_settings: Settings) -> None:
    # A database of its own: the demo seeds an area and a fare rule, and its trips must
    # not reach the shared e2e server's dispatcher (it re-queues open trips from
    # PostgreSQL).
    with isolated_settings(test_settings, "demo") as settings:
        _run_the_demo(settings)


def _run_the_demo(settings: Settings) -> None:
    port = harness.free_port()
    result = harness.run(
        [
            "demo",
            "--port",
            str(port),
            "--duration",
            "40",
            "--drivers",
            "6",
            "--speedup",
            "60",
            "--riders-per-minute",
            "24",
            "--report-every",
            "10",
        ],
        settings,
        timeout_s=150,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("[demo] {")]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert lines, result.stdout[-3000:]
    summary = json.loads(lines[-1][len("[demo] ") :])
    assert summary["requested"] >= 3
    assert summary["completed"] >= 1
    assert summary["platform_commission_cents"] == 0
    assert (
        summary["fares_cents"] == summary["driver_earnings_cents"] + summary["cost_recovery_cents"]
    )
    assert summary["errors"] == {}, summary
    assert f"http://127.0.0.1:{port}" in result.stdout
    # The newcomer is shown where to look, with what, and how seeding goes.
    assert f"http://127.0.0.1:{port}/ops" in result.stdout
    assert f"operator token  {settings.operator_token}" in result.stdout
    assert "seeding: members 6/6" in result.stdout
    # Stopping leaves no request open behind it: another dispatcher of this database
    # (the next run's) would offer it to its drivers.
    assert asyncio.run(_open_demo_requests(settings.database_url)) == 0


async def _open_demo_requests(database_url: str) -> int:
    conn = await asyncpg.connect(harness.libpq_url(database_url))
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM trips JOIN riders ON riders.id = trips.rider_id "
            "WHERE riders.name = 'Demo rider' AND trips.status = 'requested'"
        )
        return count
    finally:
        await conn.close()
