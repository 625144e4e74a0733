"""Fixtures against real services.

- One test database per run (``coopride_test_<run>``), created and migrated by Alembic
  once per session and dropped at the end; this run created it, so this run drops it.
- Redis: every key of the run starts with ``cooptest:<run>:`` (and each test that
  builds its own runtime gets its own sub-prefix), removed at the end.
- ``server``: the real ``coopride serve`` in a subprocess on a free port.

A service that cannot be reached fails the run; nothing here skips.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from redis import Redis as SyncRedis

from core.settings import Settings, get_settings

RUN_ID = secrets.token_hex(4)
ROOT = Path(__file__).resolve().parent.parent


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def database_url(base_settings: Settings) -> Iterator[str]:
    name = f"coopride_test_{RUN_ID}"
    admin_url = _libpq(_with_db(base_settings.database_url, "postgres"))

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    url = _with_db(base_settings.database_url, name)
    env = {**os.environ, "COOP_DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        check=True,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield url
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_prefix(base_settings: Settings) -> Iterator[str]:
    prefix = f"cooptest:{RUN_ID}:"
    client = SyncRedis.from_url(base_settings.redis_url, socket_connect_timeout=5)
    client.ping()
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()


@pytest.fixture(scope="session")
def test_settings(base_settings: Settings, database_url: str, redis_prefix: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=base_settings.redis_url,
        redis_prefix=redis_prefix,
        jwt_secret=secrets.token_urlsafe(48),
        operator_token=secrets.token_urlsafe(24),
        dispatch_batch_s=0.1,
        offer_timeout_s=15,
        driver_stale_s=30,
        trip_request_timeout_s=300,
    )


@pytest.fixture
def settings(test_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Per-test settings: a Redis sub-prefix of its own, so no test sees another's
    drivers, queue or offers."""
    return test_settings.model_copy(
        update={"redis_prefix": f"{test_settings.redis_prefix}{secrets.token_hex(3)}:"}
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[object]:
    from dispatch.runtime import Runtime

    rt = Runtime.create(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base_url: str
    ws_url: str
    settings: Settings
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a ``coopride`` subprocess use ``settings``."""
    return {
        "COOP_ENVIRONMENT": settings.environment,
        "COOP_DATABASE_URL": settings.database_url,
        "COOP_REDIS_URL": settings.redis_url,
        "COOP_REDIS_PREFIX": settings.redis_prefix,
        "COOP_JWT_SECRET": settings.jwt_secret,
        "COOP_OPERATOR_TOKEN": settings.operator_token,
        "COOP_DISPATCH_BATCH_S": str(settings.dispatch_batch_s),
        "COOP_OFFER_TIMEOUT_S": str(settings.offer_timeout_s),
        "COOP_OFFER_DISCONNECT_GRACE_S": str(settings.offer_disconnect_grace_s),
        "COOP_DRIVER_STALE_S": str(settings.driver_stale_s),
        "COOP_TRIP_REQUEST_TIMEOUT_S": str(settings.trip_request_timeout_s),
        "COOP_VOTE_MIN_WINDOW_S": str(settings.vote_min_window_s),
        "COOP_VOTE_QUORUM": str(settings.vote_quorum),
        "COOP_SIGNUP_RATE_PER_MIN": str(settings.signup_rate_per_min),
        "COOP_TRIP_REQUEST_RATE_PER_MIN": str(settings.trip_request_rate_per_min),
        "COOP_QUOTE_RATE_PER_MIN": str(settings.quote_rate_per_min),
        "COOP_LOCATION_RATE_PER_S": str(settings.location_rate_per_s),
        "COOP_LOCATION_BURST": str(settings.location_burst),
        "COOP_MAX_BODY_BYTES": str(settings.max_body_bytes),
    }


def start_server(
    settings: Settings, log_path: Path, *, dispatcher: bool = True, log_level: str = "warning"
) -> tuple[subprocess.Popen[bytes], Server]:
    port = _free_port()
    env = {**os.environ, **service_env(settings)}
    log = log_path.open("wb")
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    if not dispatcher:
        args.append("--no-dispatcher")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", settings, log_path)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            r = httpx.get(f"{server.base_url}/readyz", timeout=1)
            if r.status_code == 200:
                return proc, server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server not ready within 30 s:\n{server.log_tail()}")
        time.sleep(0.1)  # polling readiness of a starting process, bounded above


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def server(test_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server (api + dispatcher) on a free port, shared by the e2e tests."""
    settings = test_settings.model_copy(
        update={"redis_prefix": f"{test_settings.redis_prefix}e2e:"}
    )
    proc, srv = start_server(settings, tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield srv
    finally:
        stop_server(proc)
