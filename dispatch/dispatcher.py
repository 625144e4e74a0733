"""The dispatcher loop: one leader per region, one batch every ``COOP_DISPATCH_BATCH_S``.

Each tick: expire offers past their deadline, expire requests that waited too long,
drop stale drivers from the index, then take the region's queue, find candidates for
every request and match them (``dispatch.matching``), turning each match into an offer.

Leadership is a Redis key set with NX and a TTL of a few batches, renewed every tick by
its holder only (compare-and-extend); a standby process polls and takes over within one
TTL when the leader dies. Each acquisition gets a fencing number from a counter, logged
with every batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from geoalchemy2.shape import to_shape
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from core.clock import now_ms
from core.errors import CoopError
from dispatch import candidates, matching, offers, trips
from dispatch.runtime import Runtime
from geo.point import LatLng

log = logging.getLogger(__name__)

# How many queued requests one batch considers; the rest wait for the next window.
BATCH_MAX_REQUESTS = 2000
# Candidates fetched per request: enough for the matcher to route around a driver that
# a nearer request takes, few enough to keep the candidate graph sparse.
CANDIDATES_PER_REQUEST = 8
# The lock outlives three missed batches, so a slow tick does not cost leadership but a
# dead leader is replaced within seconds.
LEADER_TTL_BATCHES = 3
MIN_LEADER_TTL_S = 2.0
# Rebuild the queue from PostgreSQL this often (and on every new leadership).
REQUEUE_EVERY_S = 30.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    def __init__(self, rt: Runtime, region: str, ttl_s: float) -> None:
        self._rt = rt
        self._key = rt.keys.leader(region)
        self._fence_key = rt.keys.fence(region)
        self._ttl_ms = int(ttl_s * 1000)
        self._token = secrets.token_hex(8)
        self._renew = rt.redis.register_script(_RENEW)
        self._resign = rt.redis.register_script(_RESIGN)
        self.fence: int | None = None

    async def acquire(self) -> bool:
        if await self._rt.redis.set(self._key, self._token, nx=True, px=self._ttl_ms):
            self.fence = int(await self._rt.redis.incr(self._fence_key))
            return True
        return False

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self._key], args=[self._token, self._ttl_ms]))

    async def release(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._resign(keys=[self._key], args=[self._token])
        self.fence = None


class Dispatcher:
    def __init__(self, rt: Runtime, region: str = trips.DEFAULT_REGION) -> None:
        self.rt = rt
        self.region = region
        batch_s = rt.settings.dispatch_batch_s
        self.lock = LeaderLock(rt, region, max(MIN_LEADER_TTL_S, LEADER_TTL_BATCHES * batch_s))
        self._last_requeue = -float("inf")
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        batch_s = self.rt.settings.dispatch_batch_s
        leading = False
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                if leading:
                    leading = await self.lock.renew()
                else:
                    leading = await self.lock.acquire()
                    if leading:  # a new leader first rebuilds the queue from PostgreSQL
                        self._last_requeue = -float("inf")
                if leading:
                    await self.tick()
            except (RedisError, OSError, SQLAlchemyError, CoopError) as exc:
                log.warning("dispatch tick failed", extra={"error": repr(exc)})
            except Exception:
                log.exception("dispatch tick crashed")
            elapsed = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, batch_s - elapsed))
        if leading:
            await self.lock.release()

    def stop(self) -> None:
        self._stopping.set()

    async def tick(self) -> int:
        rt = self.rt
        if time.monotonic() - self._last_requeue >= REQUEUE_EVERY_S:
            await trips.requeue_open(rt)
            self._last_requeue = time.monotonic()
        await offers.expire_due(rt)
        await trips.expire_unmatched(rt)
        await rt.presence.reap_stale(cutoff_ms=now_ms() - int(rt.settings.driver_stale_s * 1000))
        return await self.dispatch_batch()

    async def dispatch_batch(self) -> int:
        rt = self.rt
        queue_key = rt.keys.pending(self.region)
        ids = [str(i) for i in await rt.redis.zrange(queue_key, 0, BATCH_MAX_REQUESTS - 1)]
        if not ids:
            return 0
        async with rt.sessions() as db:
            open_trips = [t for t in await trips.trips_by_ids(db, ids) if t.status == "requested"]
        gone = set(ids) - {t.id for t in open_trips}
        await trips.mark_stale_queue_entries(rt, self.region, sorted(gone))
        order = {trip_id: i for i, trip_id in enumerate(ids)}
        open_trips.sort(key=lambda t: order[t.id])

        async with rt.redis.pipeline(transaction=False) as pipe:
            for t in open_trips:
                pipe.smembers(rt.keys.trip_excluded(t.id))
            excluded = await pipe.execute()
        min_seen = now_ms() - int(rt.settings.driver_stale_s * 1000)
        requests = []
        for trip, excl in zip(open_trips, excluded, strict=True):
            p = to_shape(trip.pickup)
            found = await candidates.search(
                rt.presence,
                rt.eta,
                LatLng(p.y, p.x),
                want=CANDIDATES_PER_REQUEST,
                max_pickup_eta_s=rt.settings.max_pickup_eta_s,
                min_seen_ms=min_seen,
                exclude=excl,
            )
            edges = tuple(matching.Edge(c.driver_id, c.pickup_eta_s) for c in found)
            requests.append(matching.Request(trip.id, edges))
        made = 0
        for a in matching.nearest_first(requests):
            offer = await offers.make(rt, offers.Match(a.trip_id, a.driver_id, a.pickup_eta_s))
            made += offer is not None
        log.info(
            "dispatch batch",
            extra={
                "region": self.region,
                "fence": self.lock.fence,
                "requests": len(requests),
                "offers": made,
            },
        )
        return made
