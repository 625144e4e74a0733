"""Async SQLAlchemy engine and the unit of work.

A unit of work is one session and one transaction: it commits when the block succeeds,
rolls back when it raises, and only after a successful commit hands the events collected
during the block to Redis (``core.events``). So no socket ever hears about a trip that
the database does not hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.errors import Unavailable
from core.settings import asyncpg_url

OUTBOX = "coop_outbox"


def make_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    options: dict[str, Any] = {
        "pool_size": 10,
        "max_overflow": 20,
        "pool_pre_ping": True,
        # asyncpg's statement cache is per connection; keep it, but bound it.
        "connect_args": {"statement_cache_size": 256, "timeout": 5},
    }
    options.update(kwargs)
    # Settings already give the asyncpg form; a URL from elsewhere (a copied Settings, a
    # test) may still be a plain postgresql:// one.
    return create_async_engine(asyncpg_url(database_url), **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def outbox(db: AsyncSession) -> list[Any]:
    """The events to publish once this session's transaction commits."""
    box: list[Any] = db.info.setdefault(OUTBOX, [])
    return box


# SQLSTATEs that say the server, not the statement, is the problem: class 08 (connection
# exception) and the operator interventions 57P01 admin_shutdown ("terminating connection
# due to administrator command", what every session hears when PostgreSQL stops),
# 57P02 crash_shutdown and 57P03 cannot_connect_now ("the database system is shutting
# down / starting up").
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")


def is_connection_error(exc: BaseException) -> bool:
    """True when the database itself is unreachable, not when a statement failed.

    The driver's own verdict (``connection_invalidated``) is not enough: asyncpg reports
    an admin shutdown as an ordinary server error, and whether the socket is already
    marked closed when SQLAlchemy asks depends on which packet arrived first. The
    SQLSTATE says it without a race.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
    return isinstance(exc, OSError | ConnectionError)


def is_data_error(exc: BaseException) -> bool:
    """True for a PostgreSQL data exception (SQLSTATE class 22): a value it cannot store
    or compare, such as a NUL character in a string. The input was bad, not the
    database."""
    if not isinstance(exc, DBAPIError) or is_connection_error(exc):
        return False
    return str(getattr(exc.orig, "sqlstate", "") or "").startswith("22")


@asynccontextmanager
async def unit_of_work(
    sessions: async_sessionmaker[AsyncSession],
    publish: Any | None = None,
) -> AsyncIterator[AsyncSession]:
    """One transaction; ``publish(events)`` runs only after a successful commit."""
    try:
        async with sessions() as db:
            try:
                yield db
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
            events = list(outbox(db))
            outbox(db).clear()
    except (OSError, DBAPIError) as exc:
        if not is_connection_error(exc):
            raise
        raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
    if events and publish is not None:
        await publish(events)
