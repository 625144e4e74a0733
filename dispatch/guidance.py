"""Where to wait, live: the demand forecast built from the co-op's own trips, and the
advice (``dispatch.demand_forecast``) members get by ``GET /v1/drivers/me/demand-map``
and in ``demand.map`` frames.

- The dispatcher (the region's leader) rebuilds the forecast every
  ``COOP_GUIDANCE_FORECAST_REFRESH_S`` from the trips requested in the last
  ``FORECAST_WEEKS`` weeks, counted per hour of the week and pickup cell in PostgreSQL
  (pickups rounded to ~100 m, well inside a cell, so a busy month is a few thousand
  rows, not every trip), and stores it in Redis, one hash per hour of the week, so every
  api process serves the same forecast.
- Every ``COOP_GUIDANCE_PUSH_S`` it pushes a ``demand.map`` frame to every idle driver
  (available, no offer held): the advice is computed once per occupied cell, from the
  cell's centre, and the same frame goes to every driver in it.
- A driver also gets one when it becomes idle: going online with a known position, its
  first position after going online, and after completing a trip.

Advice only: nothing here touches dispatch. A member who ignores it is offered trips
exactly as before.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Numeric, cast, extract, func, select

from core.clock import iso, now_ms, utcnow
from core.events import Event
from core.models import Trip
from core.models.spatial import lat_lng_columns
from dispatch import demand_forecast
from dispatch.demand_forecast import FORECAST_WEEKS, CellAdvice
from dispatch.runtime import Runtime
from geo import cells
from geo.point import LatLng

log = logging.getLogger(__name__)

# Pickups are grouped on a grid of 3 decimal degrees (~110 m × 85 m) before they are
# put in cells: resolution-8 cells are ~460 m across an edge.
GRID_DECIMALS = 3
# A forecast not rebuilt for a day (no dispatcher) is dropped rather than served stale.
FORECAST_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class DemandMap:
    """The advice for one position at one moment."""

    at: datetime
    hour_of_week: int
    origin_cell: str
    origin: LatLng
    cells: list[CellAdvice]
    forecast_built_ms: int | None

    def body(self) -> dict[str, Any]:
        """The route's answer; the frame is the same with ``"type": "demand.map"``."""
        return {
            "at": iso(self.at),
            "hour_of_week": self.hour_of_week,
            "origin": {
                "cell": self.origin_cell,
                "lat": round(self.origin.lat, 6),
                "lng": round(self.origin.lng, 6),
            },
            "forecast_built_at": None
            if self.forecast_built_ms is None
            else iso(datetime.fromtimestamp(self.forecast_built_ms / 1000, tz=UTC)),
            "cells": [c.wire() for c in self.cells],
        }

    def frame(self) -> dict[str, Any]:
        return {"type": "demand.map", **self.body()}


# -- the forecast -------------------------------------------------------------------


async def refresh_forecast(rt: Runtime, *, now: datetime | None = None) -> int:
    """Rebuild the forecast in Redis from the last ``FORECAST_WEEKS`` weeks of trips;
    returns how many trips it counted."""
    now = now or utcnow()
    since = now - timedelta(weeks=FORECAST_WEEKS)
    local = func.timezone(demand_forecast.SERVICE_TZ.key, Trip.requested_at)
    how = cast((extract("isodow", local) - 1) * 24 + extract("hour", local), Integer)
    lat, lng = lat_lng_columns(Trip.pickup)
    glat, glng = (
        func.round(cast(lat, Numeric()), GRID_DECIMALS),
        func.round(cast(lng, Numeric()), GRID_DECIMALS),
    )
    query = (
        select(how, glat, glng, func.count())
        .where(Trip.requested_at >= since, Trip.requested_at <= now)
        .group_by(how, glat, glng)
    )
    async with rt.sessions() as db:
        rows = (await db.execute(query)).all()
        first = await db.scalar(
            select(func.min(Trip.requested_at)).where(Trip.requested_at >= since)
        )
    resolution = rt.presence.resolution
    trips = sum(int(n) for *_, n in rows)
    weeks = 1
    if first is not None:
        weeks = max(1, min(FORECAST_WEEKS, math.ceil((now - first) / timedelta(weeks=1))))
    rates = demand_forecast.build_rates(
        (
            (int(h), cells.cell_of(LatLng(float(a), float(b)), resolution), float(n))
            for h, a, b, n in rows
        ),
        weeks=weeks,
    )
    k = rt.keys
    async with rt.redis.pipeline(transaction=True) as pipe:
        for h in range(demand_forecast.HOURS_PER_WEEK):
            key = k.demand_forecast(resolution, h)
            pipe.delete(key)
            if rates.get(h):
                pipe.hset(key, mapping={c: repr(r) for c, r in rates[h].items()})
                pipe.expire(key, FORECAST_TTL_S)
        pipe.hset(
            k.demand_forecast_meta(),
            mapping={"built_ms": now_ms(), "weeks": weeks, "trips": trips},
        )
        pipe.expire(k.demand_forecast_meta(), FORECAST_TTL_S)
        await pipe.execute()
    return trips


async def _snapshot(
    rt: Runtime, hour: int, reach: list[str]
) -> tuple[dict[str, float], dict[str, int], int | None]:
    """The hour's forecast rates and the idle drivers in ``reach``, and when the
    forecast was built: one round trip."""
    k = rt.keys
    res = rt.presence.resolution
    async with rt.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(k.demand_forecast(res, hour), reach)
        pipe.hget(k.demand_forecast_meta(), "built_ms")
        for c in reach:
            pipe.zcard(k.cell_geo(res, c))
        raw_rates, built, *counts = await pipe.execute()
    rates = {c: float(r) for c, r in zip(reach, raw_rates, strict=True) if r is not None}
    idle = {c: int(n) for c, n in zip(reach, counts, strict=True) if n}
    return rates, idle, None if built is None else int(built)


async def demand_map(
    rt: Runtime,
    origin: LatLng,
    *,
    idle_in: str | None,
    limit: int = demand_forecast.DEFAULT_LIMIT,
    at: datetime | None = None,
) -> DemandMap:
    """The ranked cells near ``origin``. ``idle_in``: the cell the advised driver is
    counted idle in (it is not its own competition), or None."""
    at = at or utcnow()
    hour = demand_forecast.hour_of_week(at)
    res = rt.presence.resolution
    origin_cell = cells.cell_of(origin, res)
    # The far reach too: a driver with no demand nearby is shown cells further out.
    rings = demand_forecast.search_rings(
        rt.eta, max_drive_s=demand_forecast.FAR_DRIVE_S, resolution=res
    )
    _, reach = demand_forecast.neighbourhood(origin_cell, rings)
    rates, idle, built = await _snapshot(rt, hour, reach)
    advice = demand_forecast.advise(
        origin,
        eta=rt.eta,
        rates=rates,
        idle=idle,
        exclude_self_from=idle_in,
        limit=limit,
        resolution=res,
    )
    return DemandMap(at, hour, origin_cell, origin, advice, built)


# -- frames -------------------------------------------------------------------------


async def push_to_idle(rt: Runtime) -> int:
    """A ``demand.map`` frame to every idle driver, computed once per occupied cell from
    its centre; returns the frames sent."""
    by_cell = await rt.presence.idle_by_cell(now_ms=now_ms())
    at = utcnow()
    events: list[Event] = []
    for cell, drivers in by_cell.items():
        found = await demand_map(rt, cells.center(cell), idle_in=cell, at=at)
        frame = found.frame()
        events += [Event("driver", d, frame, durable=False) for d in drivers]
    await rt.bus.publish(events)
    return len(events)


async def push_to(rt: Runtime, driver_id: str, origin: LatLng) -> None:
    """One driver's ``demand.map`` now (it just became idle at ``origin``). Advice is
    best effort: a failure is logged, never passed on to what made the driver idle."""
    try:
        found = await demand_map(rt, origin, idle_in=cells.cell_of(origin, rt.presence.resolution))
        await rt.bus.publish([Event("driver", driver_id, found.frame(), durable=False)])
    except Exception as exc:  # advice must never fail a trip or a frame
        log.warning("demand map push failed", extra={"driver": driver_id, "error": repr(exc)})


class GuidanceLoop:
    """Run by the dispatcher's tick: the forecast and the periodic frames when due."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._forecast_at = -math.inf
        self._pushed_at = -math.inf

    async def tick(self) -> None:
        settings = self.rt.settings
        try:
            if time.monotonic() - self._forecast_at >= settings.guidance_forecast_refresh_s:
                self._forecast_at = time.monotonic()
                trips = await refresh_forecast(self.rt)
                log.info("demand forecast rebuilt", extra={"trips": trips})
            if time.monotonic() - self._pushed_at >= settings.guidance_push_s:
                self._pushed_at = time.monotonic()
                await push_to_idle(self.rt)
        except Exception as exc:  # advice must never stop dispatching
            log.warning("guidance failed", extra={"error": repr(exc)})
