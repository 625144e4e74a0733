"""What the dispatch services and the dispatcher need, built once per process.

A ``Runtime`` holds the process's connections and the services built on them: the
database engine and sessions, Redis and its key names, the event bus, the live driver
index (with the process's lease, under which its sockets count), the service areas and
the ETA model. The dispatcher process (``coopride
dispatcher``) runs on one as it is; an api process runs on ``web.runtime.ApiRuntime``,
which adds what only sockets and HTTP routes use (the hub that fans events out to
sockets, the rate limiter). Service functions take either as ``rt: Runtime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.bulk_redis import BulkScriptRunner
from core.db import make_engine, make_sessionmaker, outbox, unit_of_work
from core.events import Event, EventBus
from core.keys import Keys
from core.redis import make_redis
from core.settings import Settings
from dispatch import telemetry
from dispatch.presence import Presence
from geo.areas import ServiceAreas
from geo.eta import EtaModel, load_eta_model

AfterCommit = Callable[[], Awaitable[Any]]
# A refresh of the ETA correction is one Redis read; longer than this, it is cancelled.
FEEDBACK_STOP_S = 5.0


def after_commit(db: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` once this session's transaction has committed (Redis bookkeeping
    that must not happen for a rolled-back change)."""
    outbox(db).append(action)


def emit(db: AsyncSession, event: Event) -> None:
    """Publish ``event`` once this session's transaction has committed."""
    outbox(db).append(event)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    bus: EventBus
    presence: Presence
    areas: ServiceAreas
    eta: EtaModel  # pickup legs: ranking drivers, the pickup ETA (COOP_ETA_MODEL)
    trip_eta: EtaModel  # a rider's trip: quotes and their fares (COOP_TRIP_ETA_MODEL)

    @classmethod
    def create(cls, settings: Settings) -> Self:
        return cls(**cls.parts(settings))

    @classmethod
    def parts(cls, settings: Settings) -> dict[str, Any]:
        """The constructor's arguments for ``settings`` (a subclass adds its own)."""
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        redis = make_redis(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        return {
            "settings": settings,
            "engine": engine,
            "sessions": sessions,
            "redis": redis,
            "keys": keys,
            "bus": EventBus(redis, keys),
            "presence": Presence(
                redis,
                keys,
                settings.h3_resolution,
                bulk=BulkScriptRunner(settings.redis_url),
                bulk_search=BulkScriptRunner(settings.redis_url),
                location_burst=settings.location_burst,
                location_rate_per_s=settings.location_rate_per_s,
                lease_s=settings.process_lease_s,
            ),
            "areas": ServiceAreas(redis, keys, sessions),
            "eta": load_eta_model(settings.eta_model),
            "trip_eta": load_eta_model(settings.trip_eta_model, leg_at_a_time=True),
        }

    async def start(self) -> None:
        """Take the process's lease, under which its sockets count, and follow the
        co-op's finished trips for the learned ETA model's live correction
        (``dispatch.eta_feedback``). ``ApiRuntime`` also starts its hub."""
        from dispatch import eta_feedback

        await self.presence.start()
        self._stopping = asyncio.Event()
        self._feedback = asyncio.create_task(eta_feedback.keep_fresh(self, self._stopping))

    async def close(self) -> None:
        feedback = getattr(self, "_feedback", None)
        if feedback is not None:
            self._stopping.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(feedback, FEEDBACK_STOP_S)
        await self.presence.stop()
        await self.redis.aclose()
        self.presence.close()
        await self.engine.dispose()

    async def flush(self, items: list[Any]) -> None:
        """Deliver what a committed unit of work queued, in order: events go out in
        batches (one round trip each), after-commit actions run between them."""
        batch: list[Event] = []
        for item in items:
            if isinstance(item, Event):
                batch.append(item)
                continue
            if batch:
                await self._publish(batch)
                batch = []
            result = item()
            if inspect.isawaitable(result):
                await result
        if batch:
            await self._publish(batch)

    async def _publish(self, events: list[Event]) -> None:
        await self.bus.publish(events)
        telemetry.observe(events)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions, self.flush) as db:
            yield db
