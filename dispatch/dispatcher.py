"""The dispatcher loop: one leader per region, one batch every ``COOP_DISPATCH_BATCH_S``.

Each tick: expire offers past their deadline, take the sockets of api processes whose
lease ran out off their drivers, withdraw offers whose driver has had no socket for the
grace, expire requests that waited too long, drop stale drivers from the index, then
take the region's queue, find candidates for every request and plan the batch
(``dispatch.batch.planner``: a first pass over every request that can still be answered
in time, a second, wider one for those it left unmatched), turning each match into an
offer.

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

import orjson
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from core import metrics
from core.clock import iso, now_ms, utcnow
from core.errors import CoopError
from core.models import Trip
from dispatch import candidates, offers, trips
from dispatch.batch import planner
from dispatch.batch.planner import (
    BATCH_MAX_REQUESTS,
    CANDIDATES_PER_REQUEST,
    SECOND_PASS_CANDIDATES,
)
from dispatch.batch.types import Candidate, Request
from dispatch.guidance import GuidanceLoop
from dispatch.runtime import Runtime
from dispatch.views import latlng_of
from fares import governance, rules

log = logging.getLogger(__name__)

# The lock outlives three missed batches, so a slow tick does not cost leadership but a
# dead leader is replaced within seconds.
LEADER_TTL_BATCHES = 3
MIN_LEADER_TTL_S = 2.0
# A member can ask about the last this-many decisions that involved it, for a day.
DISPATCH_LOG_KEEP = 200
DISPATCH_LOG_TTL_S = 24 * 3600
# Rebuild the queue from PostgreSQL this often (and on every new leadership).
REQUEUE_EVERY_S = 30.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# A fresh counter (first use, or Redis lost it) starts at the clock in ms, not at 1, so
# a fence handed out before a Redis restart is never handed out again after it.
_NEXT_FENCE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  n = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], n)
end
return n
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
        self._next_fence = rt.redis.register_script(_NEXT_FENCE)
        self.fence: int | None = None

    async def acquire(self) -> bool:
        if await self._rt.redis.set(self._key, self._token, nx=True, px=self._ttl_ms):
            self.fence = int(await self._next_fence(keys=[self._fence_key], args=[now_ms()]))
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
        self.guidance = GuidanceLoop(rt)

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
            # PostgreSQL is the truth: put its pending offers and open trips back into
            # Redis (a no-op unless Redis lost them, or a dispatcher died mid-batch).
            restored = await offers.restore_pending(rt)
            requeued = await trips.requeue_open(rt)
            self._last_requeue = time.monotonic()
            log.info(
                "reconciled redis from postgresql",
                extra={"region": self.region, "pending_offers": restored, "open_trips": requeued},
            )
        await offers.expire_due(rt)
        # Sockets of api processes that died stop counting: their drivers are
        # disconnected, and offers they hold are withdrawn after the grace.
        await offers.orphan_gone(rt, await rt.presence.reap_lapsed_processes())
        await offers.withdraw_orphaned(rt)
        await trips.expire_unmatched(rt)
        await rt.presence.reap_stale(cutoff_ms=now_ms() - int(rt.settings.driver_stale_s * 1000))
        await governance.close_due_proposals(rt.sessions, publish=rt.flush)
        made = await self.dispatch_batch()
        # After the batch: advice to idle drivers (when due) never delays an offer.
        await self.guidance.tick()
        return made

    async def dispatch_batch(self) -> int:
        """Plan the region's queue (``dispatch.batch.planner``) and turn the assignments
        into offers. Two passes: the first plans every request that can still be
        answered in time with its nearest candidates, and its offers are made at once;
        then the requests it left unmatched are searched again, wider, and planned among
        the drivers still free (the first pass's offers hold theirs in the live index,
        so the search leaves them out)."""
        rt = self.rt
        started = time.perf_counter()
        queue_key = rt.keys.pending(self.region)
        ids = [str(i) for i in await rt.redis.zrange(queue_key, 0, BATCH_MAX_REQUESTS - 1)]
        if not ids:
            return 0
        async with rt.sessions() as db:
            open_trips = [t for t in await trips.trips_by_ids(db, ids) if t.status == "requested"]
            rule = await rules.current(db)
        gone = set(ids) - {t.id for t in open_trips}
        await trips.mark_stale_queue_entries(rt, self.region, sorted(gone))
        order = {trip_id: i for i, trip_id in enumerate(ids)}
        open_trips.sort(key=lambda t: order[t.id])
        if not open_trips:
            return 0

        async with rt.redis.pipeline(transaction=False) as pipe:
            for t in open_trips:
                pipe.smembers(rt.keys.trip_excluded(t.id))
            excluded = dict(zip([t.id for t in open_trips], await pipe.execute(), strict=True))
        now, wall = now_ms(), utcnow()
        timeout_s = rt.settings.trip_request_timeout_s
        found = await self._search(open_trips, excluded, want=CANDIDATES_PER_REQUEST, now=now)
        searched = time.perf_counter()
        requests = [
            Request(
                trip.id,
                planner.nearest(ranked),
                # As ``trips.expire_unmatched`` will count it.
                expires_in_s=timeout_s - (wall - trip.requested_at).total_seconds(),
            )
            for trip, ranked in zip(open_trips, found, strict=True)
        ]
        weight = rule.fairness_weight
        first = planner.plan(
            requests,
            policy=rt.settings.dispatch_policy,
            max_pickup_eta_s=rt.settings.max_pickup_eta_s,
            stats=planner.stats_of(requests, now_ms=now),
            fairness_weight=weight,
            offer_timeout_s=rt.settings.offer_timeout_s,
            batch_s=rt.settings.dispatch_batch_s,
        )
        solved = time.perf_counter()
        made = await offers.make_batch(
            rt, first.assignments, region=self.region, fence=self.lock.fence
        )

        batch, second_ms = first, 0.0
        if retry := set(first.retry):
            second_started = time.perf_counter()
            again = [t for t in open_trips if t.id in retry]
            found = await self._search(again, excluded, want=SECOND_PASS_CANDIDATES, now=now)
            wider = [Request(t.id, tuple(ranked)) for t, ranked in zip(again, found, strict=True)]
            batch = planner.second_pass(first, wider, stats=planner.stats_of(wider, now_ms=now))
            later = [a for a in batch.assignments if a.trip_id in retry]
            second_ms = (time.perf_counter() - second_started) * 1000
            made += await offers.make_batch(rt, later, region=self.region, fence=self.lock.fence)

        batch_id = f"{self.region}:{self.lock.fence}:{int(time.time() * 1000)}"
        await self._explain(batch_id, batch, {o.trip_id for o in made}, rule.version)
        metrics.DISPATCH_BATCH_SIZE.observe(len(requests))
        metrics.DISPATCH_SOLVE_SECONDS.observe(solved - searched)
        metrics.OFFERS.labels("sent").inc(len(made))
        log.info(
            "dispatch batch",
            extra={
                "batch": batch_id,
                "region": self.region,
                "fence": self.lock.fence,
                "policy": batch.policy,
                "fairness_weight": weight,
                "fare_rule_version": rule.version,
                "requests": len(requests),
                "expiring": len(batch.skipped),
                "candidate_edges": sum(len(r.candidates) for r in batch.requests),
                "matched": len(batch.assignments),
                "second_pass_requests": len(retry),
                "second_pass_matched": len(batch.assignments) - len(first.assignments),
                "offers": len(made),
                "search_ms": round((searched - started) * 1000, 2),
                "solve_ms": round((solved - searched) * 1000, 2),
                "second_pass_ms": round(second_ms, 2),
                "total_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return len(made)

    async def _search(
        self, open_trips: list[Trip], excluded: dict[str, set[str]], *, want: int, now: int
    ) -> list[list[Candidate]]:
        """Each trip's ``want`` nearest available drivers within the maximum pickup ETA,
        never one that declined it; gathered, so they go to Redis in one round trip, and
        every pickup leg of the batch is estimated in one call (``candidates.rank``)."""
        rt = self.rt
        min_seen = now - int(rt.settings.driver_stale_s * 1000)
        pickups = [latlng_of(trip.pickup) for trip in open_trips]
        nearby = await asyncio.gather(
            *(
                candidates.near(
                    rt.presence,
                    rt.eta,
                    pickup,
                    want=want,
                    max_pickup_eta_s=rt.settings.max_pickup_eta_s,
                    min_seen_ms=min_seen,
                    exclude=excluded[trip.id],
                )
                for trip, pickup in zip(open_trips, pickups, strict=True)
            )
        )
        return candidates.rank(
            rt.eta, pickups, nearby, max_pickup_eta_s=rt.settings.max_pickup_eta_s
        )

    async def _explain(
        self, batch_id: str, batch: planner.Plan, offered: set[str], rule_version: int
    ) -> None:
        """Tell every candidate driver what the batch decided about each trip it could
        have had, and why (``GET /v1/drivers/me/dispatch-log``)."""
        context = {
            "at": iso(utcnow()),
            "batch": batch_id,
            "policy": batch.policy,
            "fairness_weight": batch.fairness_weight,
            "fare_rule_version": rule_version,
        }
        entries = {
            driver_id: [orjson.dumps({**context, **d}).decode() for d in decisions]
            for driver_id, decisions in planner.explain(batch, offered=offered).items()
        }
        await self.rt.presence.append_dispatch_log(
            entries, keep=DISPATCH_LOG_KEEP, ttl_s=DISPATCH_LOG_TTL_S
        )
