"""What benchmarks that need the real server add to ``server.harness``: a database and
Redis prefix named for the benchmark, members created in bulk, the server process's
CPU time, and percentiles."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from core.auth import issue_token
from core.settings import Settings, get_settings
from server import harness

BENCH_DATABASE_PREFIX = "coopride_bench_"


def bench_settings(name: str, **overrides: object) -> Settings:
    """Settings for a benchmark run: its own database and Redis prefix, fresh secrets."""
    base = get_settings()
    return Settings(
        environment="test",
        database_url=harness.with_database(base.database_url, f"{BENCH_DATABASE_PREFIX}{name}"),
        redis_url=base.redis_url,
        redis_prefix=f"coopbench:{name}:{secrets.token_hex(3)}:",
        jwt_secret=secrets.token_urlsafe(48),
        operator_token=secrets.token_urlsafe(24),
        bench_endpoints=True,
        **overrides,  # type: ignore[arg-type]
    )


def _own_database(settings: Settings) -> str:
    """The benchmark's database URL; only ``coopride_bench_*`` ones are dropped here."""
    name = harness.database_name(settings.database_url)
    assert name.startswith(BENCH_DATABASE_PREFIX), name
    return settings.database_url


def fresh_database(settings: Settings) -> None:
    """Drop and recreate the benchmark's own database (named coopride_bench_*), migrate."""
    url = _own_database(settings)
    harness.drop_database(url)
    harness.create_database(url)
    harness.migrate(url)


def drop_database(settings: Settings) -> None:
    harness.drop_database(_own_database(settings))


def create_members(settings: Settings, count: int) -> list[tuple[str, str]]:
    """``count`` members inserted in bulk; returns (id, token) pairs."""
    ids = [f"drv_bench{i:06d}" for i in range(count)]

    async def run() -> None:
        conn = await asyncpg.connect(harness.libpq_url(settings.database_url))
        try:
            await conn.executemany(
                "INSERT INTO members (id, name, phone, status) VALUES ($1, $2, $3, 'active')",
                [(i, f"Bench driver {n}", f"+1555{n:07d}") for n, i in enumerate(ids)],
            )
        finally:
            await conn.close()

    asyncio.run(run())
    return [
        (i, issue_token(secret=settings.jwt_secret, role="driver", subject_id=i, ttl_s=86400))
        for i in ids
    ]


class RunningServer(str):
    """The server's base URL (a str), with the process id for CPU accounting."""

    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@contextmanager
def running_server(
    settings: Settings, *, dispatcher: bool = False, workers: int = 1
) -> Iterator[RunningServer]:
    """``coopride serve`` (api only unless asked) for the block; log in the temp dir."""
    port = harness.free_port()
    log = Path(tempfile.gettempdir()) / f"coopride-bench-{port}.log"
    with harness.start_server(
        settings, log, dispatcher=dispatcher, workers=workers, port=port, ready_timeout_s=60
    ) as server:
        running = RunningServer(server.base_url)
        running.pid = server.process.popen.pid
        yield running


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]
