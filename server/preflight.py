"""What ``coopride`` checks before it serves, dispatches or migrates: that the settings
parse, that Redis and PostgreSQL answer at their URLs, and that the database has PostGIS.

Each failure is a ``ConfigError`` whose message is one line naming the setting and the
fix; ``server.cli`` prints it and exits 2, with no traceback. URLs in messages carry no
password.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from core.settings import ASYNC_SCHEME, Settings, get_settings

CONNECT_TIMEOUT_S = 5.0
# `make setup` installs and starts both services on this machine; elsewhere the operator does.
SETUP_HINT = "`make setup` does it for a server on this machine"


class ConfigError(Exception):
    """A setting that keeps coopride from starting; the message is one line."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load_settings() -> Settings:
    """``get_settings()``, with a bad value reported as the variable that holds it."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            field = ".".join(str(part) for part in error["loc"])
            variable = f"COOP_{field.upper()}"
            problems.append(
                message if not field or variable in message else f"{variable}: {message}"
            )
        raise ConfigError("; ".join(problems)) from None


def redis_location(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{parts.path}"


@dataclass(frozen=True)
class _Database:
    """Where COOP_DATABASE_URL points, without the password."""

    user: str
    host: str
    port: int
    name: str

    @classmethod
    def of(cls, url: str) -> _Database:
        parts = urlsplit(url)
        user = parts.username or "postgres"
        return cls(user, parts.hostname or "localhost", parts.port or 5432, parts.path[1:] or user)

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


async def check_redis(url: str) -> None:
    where = redis_location(url)
    try:
        client = Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise ConfigError(
            f"COOP_REDIS_URL is not a Redis URL ({_one_line(exc)}): set it to "
            "redis://[:PASSWORD@]HOST:PORT/DB"
        ) from None
    try:
        await client.ping()
    except AuthenticationError as exc:
        raise ConfigError(
            f"COOP_REDIS_URL: Redis at {where} refused the credentials ({_one_line(exc)}): "
            "put its password in the URL, redis://:PASSWORD@HOST:PORT/DB"
        ) from None
    except ResponseError as exc:  # NOAUTH: a password is needed and none was given
        raise ConfigError(
            f"COOP_REDIS_URL: Redis at {where} answered {_one_line(exc)}: put its password "
            "in the URL, redis://:PASSWORD@HOST:PORT/DB"
        ) from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise ConfigError(
            f"COOP_REDIS_URL: no Redis answers at {where} ({_one_line(exc)}): start Redis "
            f"there ({SETUP_HINT}) or point COOP_REDIS_URL at one that runs"
        ) from None
    finally:
        await client.aclose()


async def _connect(url: str) -> asyncpg.Connection:
    db = _Database.of(url)
    dsn = url.replace(f"{ASYNC_SCHEME}://", "postgresql://", 1)
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except asyncpg.InvalidPasswordError:
        fix = "fix the password in COOP_DATABASE_URL"
        problem = f"PostgreSQL at {db.server} refused the password of role '{db.user}'"
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        fix = f"create the role ({SETUP_HINT}) or fix the user in COOP_DATABASE_URL"
        problem = f"PostgreSQL at {db.server} refused role '{db.user}' ({_one_line(exc)})"
    except asyncpg.InvalidCatalogNameError:
        fix = f"create it ({SETUP_HINT}) or fix the database name in COOP_DATABASE_URL"
        problem = f"database '{db.name}' does not exist on {db.server}"
    except (OSError, TimeoutError) as exc:
        fix = f"start PostgreSQL there ({SETUP_HINT}) or fix the host and port"
        problem = f"no PostgreSQL answers at {db.server} ({_one_line(exc)})"
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        fix = "fix COOP_DATABASE_URL"
        problem = f"cannot connect to {db.server}/{db.name} as '{db.user}' ({_one_line(exc)})"
    raise ConfigError(f"COOP_DATABASE_URL: {problem}: {fix}")


async def check_database(url: str, *, migrating: bool) -> None:
    """PostgreSQL answers, and the database has PostGIS; or, when ``migrating``, the
    migrations can create it (``CREATE EXTENSION postgis`` needs the package on the
    server and a superuser)."""
    db = _Database.of(url)
    conn = await _connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT extversion FROM pg_extension WHERE extname = 'postgis') AS installed,
                      EXISTS (SELECT FROM pg_available_extensions WHERE name = 'postgis')
                          AS available,
                      current_setting('server_version_num')::int / 10000 AS major,
                      (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser"""
        )
    finally:
        await conn.close()
    problem = postgis_problem(
        db.name,
        db.user,
        db.server,
        installed=row["installed"] is not None,
        available=bool(row["available"]),
        major=int(row["major"]),
        superuser=bool(row["superuser"]),
        migrating=migrating,
    )
    if problem:
        raise ConfigError(f"COOP_DATABASE_URL: {problem}")


def postgis_problem(
    database: str,
    user: str,
    server: str,
    *,
    installed: bool,
    available: bool,
    major: int,
    superuser: bool,
    migrating: bool,
) -> str | None:
    """What keeps PostGIS from the database, and the fix; None when nothing does."""
    if installed:
        return None
    if not available:
        return (
            f"the PostgreSQL {major} server at {server} has no PostGIS: install "
            f"postgresql-{major}-postgis-3 there ({SETUP_HINT}), then run `coopride migrate`"
        )
    if migrating and superuser:
        return None  # the first migration runs CREATE EXTENSION postgis
    if migrating:
        fix = (
            f"role '{user}' is not a superuser, so a superuser must run "
            f"CREATE EXTENSION postgis; in database '{database}', then `coopride migrate`"
        )
    else:
        fix = (
            "run `coopride migrate` (it runs CREATE EXTENSION postgis, as a superuser), "
            f"or CREATE EXTENSION postgis; in database '{database}'"
        )
    return f"database '{database}' on {server} has no PostGIS extension: {fix}"


def check(settings: Settings, *, redis: bool = True, migrating: bool = False) -> None:
    """The start-up checks, Redis first (it answers faster), in a loop of their own."""

    async def run() -> None:
        if redis:
            await check_redis(settings.redis_url)
        await check_database(settings.database_url, migrating=migrating)

    asyncio.run(run())
