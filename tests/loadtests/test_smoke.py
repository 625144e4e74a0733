"""A 30-second city rollout: ``coopride loadtest`` in a subprocess, as an operator runs it.

The command starts its own server (two api processes and a dispatcher, a database and a
Redis prefix of its own), runs Locust (never imported here) with drivers who decline
some offers and riders who cancel some trips, arriving at the real rate of the April 2014
demand file, and writes its reports. The assertions read those reports.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import asyncpg
import pytest

from core.settings import Settings
from server import harness

pytestmark = pytest.mark.e2e

DURATION_S = 30


def test_a_short_rollout_requests_matches_and_completes_trips_without_errors(
    test_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "loadtest"
    settings = test_settings.model_copy(update={"dispatch_batch_s": 1.0})
    result = harness.run(
        [
            "loadtest",
            "--duration",
            str(DURATION_S),
            "--api-workers",
            "2",
            "--drivers",
            "8",
            "--trace",
            "--speedup",
            "1",
            "--decline-rate",
            "0.2",
            "--cancel-rate",
            "0.2",
            # Trips must finish inside the 30 s: at 100× one CI run ended with three
            # trips still under way and none completed.
            "--drive-speedup",
            "300",
            # A smoke on a shared machine, not a capacity check: the threshold only has
            # to catch a dispatcher that does not offer at all.
            "--max-p99-offer-s",
            "20",
            "--out",
            str(out),
        ],
        settings,
        timeout_s=DURATION_S + 200,
    )
    said = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, said
    summary = json.loads((out / "kpi.json").read_text())

    assert summary["requests"] >= 5, said
    assert summary["matched"] >= 3, said
    assert summary["completed"] >= 1, said
    assert summary["offers"].get("accepted", 0) == summary["matched"]
    assert summary["request_to_offer_s"]["n"] == summary["requests"]
    assert summary["errors"] == {}, said
    assert summary["locust"]["failures"] == 0
    assert summary["passed"] is True

    with (out / "locust_stats.csv").open(newline="") as f:
        stats = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    for key in [
        ("POST", "/v1/drivers [admit]"),
        ("POST", "/v1/trips"),
        ("WS", "driver connect"),
        ("WS", "rider connect"),
        ("WS", "offer received"),
        ("WS", "offer→accept"),
        ("WS", "request→completed"),
        ("POST", "/v1/trips/[id]/complete"),
        ("GET", "/v1/trips/[id]/receipt"),
    ]:
        assert key in stats, sorted(stats)
        assert int(stats[key]["Request Count"]) >= 1, key
        assert int(stats[key]["Failure Count"]) == 0, key
    assert int(stats[("POST", "/v1/drivers [admit]")]["Request Count"]) == 8
    assert (out / "report.html").stat().st_size > 0

    # The command cleans up after itself: its database is gone.
    assert "database coopride_loadtest_" in result.stdout
    name = result.stdout.split("database ", 1)[1].split(",", 1)[0]
    assert not _database_exists(settings, name)


def _database_exists(settings: Settings, name: str) -> bool:
    async def check() -> bool:
        admin_url = harness.libpq_url(harness.with_database(settings.database_url, "postgres"))
        conn = await asyncpg.connect(admin_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    return asyncio.run(check())
