"""Shared set-up for benchmarks that need the real server: a database of their own,
members created in bulk, and ``coopride serve`` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from core.auth import issue_token
from core.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def bench_settings(name: str, **overrides: object) -> Settings:
    """Settings for a benchmark run: its own database and Redis prefix, fresh secrets."""
    base = get_settings()
    return Settings(
        environment="test",
        database_url=_with_db(base.database_url, f"coopride_bench_{name}"),
        redis_url=base.redis_url,
        redis_prefix=f"coopbench:{name}:{secrets.token_hex(3)}:",
        jwt_secret=secrets.token_urlsafe(48),
        operator_token=secrets.token_urlsafe(24),
        bench_endpoints=True,
        **overrides,  # type: ignore[arg-type]
    )


def env_of(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "COOP_ENVIRONMENT": settings.environment,
        "COOP_DATABASE_URL": settings.database_url,
        "COOP_REDIS_URL": settings.redis_url,
        "COOP_REDIS_PREFIX": settings.redis_prefix,
        "COOP_JWT_SECRET": settings.jwt_secret,
        "COOP_OPERATOR_TOKEN": settings.operator_token,
        "COOP_BENCH_ENDPOINTS": "1" if settings.bench_endpoints else "0",
        "COOP_DISPATCH_BATCH_S": str(settings.dispatch_batch_s),
        "COOP_DRIVER_STALE_S": str(settings.driver_stale_s),
        "COOP_LOCATION_RATE_PER_S": str(settings.location_rate_per_s),
        "COOP_LOCATION_BURST": str(settings.location_burst),
        "COOP_SIGNUP_RATE_PER_MIN": str(settings.signup_rate_per_min),
    }


def fresh_database(settings: Settings) -> None:
    """Drop and recreate the benchmark's own database (named coopride_bench_*), migrate."""
    name = urlsplit(settings.database_url).path.lstrip("/")
    assert name.startswith("coopride_bench_"), name
    admin = _libpq(_with_db(settings.database_url, "postgres"))

    async def run() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())
    subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        env=env_of(settings),
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def drop_database(settings: Settings) -> None:
    name = urlsplit(settings.database_url).path.lstrip("/")
    assert name.startswith("coopride_bench_"), name
    admin = _libpq(_with_db(settings.database_url, "postgres"))

    async def run() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())


def create_members(settings: Settings, count: int) -> list[tuple[str, str]]:
    """``count`` members inserted in bulk; returns (id, token) pairs."""
    ids = [f"drv_bench{i:06d}" for i in range(count)]

    async def run() -> None:
        conn = await asyncpg.connect(_libpq(settings.database_url))
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    port = free_port()
    args = [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    if not dispatcher:
        args.append("--no-dispatcher")
    log = open(f"/tmp/coopride-bench-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        env=env_of(settings),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready; see {log.name}")
            time.sleep(0.2)
        running = RunningServer(base)
        running.pid = proc.pid
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]
