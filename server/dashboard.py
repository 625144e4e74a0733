"""The operator dashboard's data: one snapshot of the city, built at most once per
``SNAPSHOT_EVERY_S`` per process and shared by every operator watching
(``GET /v1/operator/dashboard``, the ``/v1/operator/live`` socket, ``docs/dashboard.md``).

Two cadences, because the sources cost differently:

- *live*, every snapshot: drivers from the Redis live index (one pipelined round trip),
  open requests and the last minute's matches from PostgreSQL (index range scans);
- *stats*, every ``STATS_EVERY_S``: the window's latency percentiles and outcome rates,
  the members' earnings this period and their Gini, the fare rule and open proposals.

However many operators watch, a process runs one build at a time and every socket is
sent the same encoded frame: the database sees one set of queries per interval, not one
per client.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import metrics
from core.clock import iso, now_ms, utcnow
from core.fare_terms import wire_view
from core.models import Member, Trip
from core.models.spatial import lat_lng_columns
from dispatch.runtime import Runtime
from fares import governance, rules
from fares.accounts import Period
from geo import cells
from geo.point import LatLng
from simulation.kpis import gini

# A person reads a number about once a second; faster only costs queries.
SNAPSHOT_EVERY_S = 1.0
# Percentiles, rates and earnings move slowly and cost more to compute.
STATS_EVERY_S = 5.0
# The window for latency percentiles and outcome rates: long enough to have samples in
# a quiet hour, short enough to show what is happening now.
WINDOW_S = 600
MATCH_WINDOW_S = 60
# Markers drawn at most (the counts in the KPIs are always exact); beyond this a map
# is a blur anyway.
MAX_DRIVER_MARKERS = 5000
MAX_REQUEST_MARKERS = 2000
MAX_PROPOSALS = 5
# Trip statuses by what they say about a trip that was requested.
ASSIGNED_OR_LATER = ("assigned", "arrived", "in_progress", "completed", "cancelled")
ENDED = ("completed", "cancelled", "expired")
ALL_STATUSES = ("requested", "assigned", "arrived", "in_progress", *ENDED)


@dataclass(frozen=True, slots=True)
class LiveDriver:
    id: str
    lat: float
    lng: float
    status: str  # available | on_trip
    target: tuple[float, float] | None  # where it is heading while on a trip


@dataclass(frozen=True, slots=True)
class OpenRequest:
    id: str
    lat: float
    lng: float
    requested_at: datetime


async def live_drivers(rt: Runtime) -> list[LiveDriver]:
    """Every driver the index heard from within ``driver_stale_s`` and not offline."""
    min_seen = now_ms() - int(rt.settings.driver_stale_s * 1000)
    ids = [str(d) for d in await rt.redis.zrangebyscore(rt.keys.seen(), min_seen, "+inf")]
    if not ids:
        return []
    async with rt.redis.pipeline(transaction=False) as pipe:
        for d in ids:
            pipe.hmget(rt.keys.driver(d), "lat", "lng", "status", "tlat", "tlng")
        rows = await pipe.execute()
    out = []
    for driver_id, (lat, lng, state, tlat, tlng) in zip(ids, rows, strict=True):
        if lat and lng and state and state != "offline":
            target = (float(tlat), float(tlng)) if tlat and tlng else None
            out.append(LiveDriver(driver_id, float(lat), float(lng), str(state), target))
    return out


async def open_requests(db: AsyncSession, *, limit: int | None = None) -> list[OpenRequest]:
    """Trips waiting for a driver, oldest first."""
    stmt = (
        select(
            Trip.id,
            *lat_lng_columns(Trip.pickup),
            Trip.requested_at,
        )
        .where(Trip.status == "requested")
        .order_by(Trip.requested_at)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        OpenRequest(str(i), float(lat), float(lng), at)
        for i, lat, lng, at in (await db.execute(stmt)).all()
    ]


def supply_cells(
    drivers: list[LiveDriver], requests: list[OpenRequest], resolution: int
) -> dict[str, tuple[int, int]]:
    """Online drivers and open requests per H3 cell: ``{cell: (drivers, requests)}``."""
    counts: dict[str, list[int]] = {}
    for d in drivers:
        counts.setdefault(cells.cell_of(LatLng(d.lat, d.lng), resolution), [0, 0])[0] += 1
    for r in requests:
        counts.setdefault(cells.cell_of(LatLng(r.lat, r.lng), resolution), [0, 0])[1] += 1
    return {c: (v[0], v[1]) for c, v in sorted(counts.items())}


def _percentiles(row: Any) -> dict[str, Any]:
    p50, p95, n = row
    return {
        "p50": None if p50 is None else round(float(p50), 1),
        "p95": None if p95 is None else round(float(p95), 1),
        "samples": int(n),
    }


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def deciles(values: list[int]) -> list[int]:
    """Eleven points of the sorted values: the minimum, each tenth, the maximum."""
    if not values:
        return []
    xs = sorted(values)
    return [xs[min(len(xs) - 1, (len(xs) - 1) * k // 10)] for k in range(11)]


async def _stats(db: AsyncSession, rt: Runtime) -> dict[str, Any]:
    now = utcnow()
    since = now - timedelta(seconds=WINDOW_S)
    # A trip is assigned within the request timeout of its request, or it expires: so
    # "assigned since X" only needs trips requested since X minus that timeout, which
    # keeps every query a range scan of (status, requested_at).
    assigned_floor = since - timedelta(seconds=rt.settings.trip_request_timeout_s)
    to_offer = (
        await db.execute(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY d), count(*) FROM ("
                "  SELECT EXTRACT(EPOCH FROM min(o.created_at) - t.requested_at) AS d"
                "  FROM trips t JOIN offers o ON o.trip_id = t.id"
                "  WHERE t.status = ANY(:statuses) AND t.requested_at >= :since"
                "  GROUP BY t.id, t.requested_at) AS x"
            ),
            {"statuses": list(ALL_STATUSES), "since": since},
        )
    ).one()
    pickup = (
        await db.execute(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY pickup_eta_s),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY pickup_eta_s), count(*)"
                " FROM trips WHERE status = ANY(:statuses) AND requested_at >= :floor"
                " AND assigned_at >= :since AND pickup_eta_s IS NOT NULL"
            ),
            {"statuses": list(ASSIGNED_OR_LATER), "floor": assigned_floor, "since": since},
        )
    ).one()
    ended = dict(
        (
            await db.execute(
                select(Trip.status, func.count())
                .where(Trip.status.in_(ENDED), Trip.requested_at >= since)
                .group_by(Trip.status)
            )
        )
        .tuples()
        .all()
    )
    offers: dict[str, int] = dict(
        (
            await db.execute(
                text(
                    "SELECT status, count(*) FROM offers WHERE created_at >= :since"
                    " AND status <> 'pending' GROUP BY status"
                ),
                {"since": since},
            )
        )
        .tuples()
        .all()
    )
    ended_total = sum(ended.values())
    answered = sum(offers.values())

    period = Period.of(now)
    members = list(await db.scalars(select(Member.id).where(Member.status == "active")))
    earned: dict[str, int] = dict(
        (
            await db.execute(
                text(
                    "SELECT j.member_id, -sum(p.amount_cents)::bigint"
                    " FROM ledger_journals j JOIN ledger_postings p ON p.journal_id = j.id"
                    " WHERE j.period = :period AND j.kind IN ('trip', 'cancellation')"
                    # the member's own account (fares.journals.member_account)
                    " AND p.account = 'member:' || j.member_id GROUP BY j.member_id"
                ),
                {"period": str(period)},
            )
        )
        .tuples()
        .all()
    )
    per_member = [int(earned.get(m, 0)) for m in members]
    rule = await rules.current(db)
    proposals, _ = await governance.list_proposals(
        db, status="open", cursor=None, limit=MAX_PROPOSALS
    )
    open_count = int(
        (
            await db.execute(text("SELECT count(*) FROM proposals WHERE status = 'open'"))
        ).scalar_one()
    )
    return {
        "window_s": WINDOW_S,
        "request_to_offer_s": _percentiles(to_offer),
        "pickup_eta_s": _percentiles(pickup),
        "trips_ended": ended_total,
        "completed": int(ended.get("completed", 0)),
        "cancelled": int(ended.get("cancelled", 0)),
        "expired": int(ended.get("expired", 0)),
        "expiry_rate": _rate(int(ended.get("expired", 0)), ended_total),
        "cancellation_rate": _rate(int(ended.get("cancelled", 0)), ended_total),
        "offers_answered": answered,
        "offer_expiry_rate": _rate(int(offers.get("expired", 0)), answered),
        "earnings": {
            "period": str(period),
            "members": len(per_member),
            "total_cents": sum(per_member),
            "gini": round(gini(per_member), 4),
            "deciles_cents": deciles(per_member),
        },
        "fare_rule": {
            "version": rule.version,
            **wire_view(rule),
            "adopted_at": iso(rule.adopted_at),
        },
        "open_proposals": open_count,
        "proposals": [
            {
                "id": p.id,
                "rationale": p.rationale,
                "closes_at": iso(p.closes_at),
                "eligible_voters": p.eligible_voters,
                "quorum_ballots": p.quorum_ballots,
                "tally": p.tally.payload(),
                "rule": wire_view(p.rule),
            }
            for p in proposals
        ],
    }


class Dashboard:
    """The process's one snapshot producer: ``snapshot()`` returns the cached snapshot,
    rebuilding it (once, whoever asks) when it is older than ``SNAPSHOT_EVERY_S``."""

    def __init__(self, rt: Runtime, *, resolution: int | None = None) -> None:
        self.rt = rt
        self.resolution = rt.settings.h3_resolution if resolution is None else resolution
        self._lock = asyncio.Lock()
        self._seq = 0
        self._built_at = -float("inf")
        self._stats: dict[str, Any] | None = None
        self._stats_at = -float("inf")
        self._snapshot: dict[str, Any] = {}
        self._frame = ""
        self._boundaries: dict[str, list[list[float]]] = {}

    @property
    def seq(self) -> int:
        return self._seq

    def due_in_s(self) -> float:
        """Seconds until the cached snapshot is stale: when a watcher should ask again
        (every watcher asking then gets the one rebuild)."""
        return max(0.0, self._built_at + SNAPSHOT_EVERY_S - time.monotonic())

    async def snapshot(self) -> dict[str, Any]:
        await self._fresh()
        return self._snapshot

    async def frame(self) -> tuple[int, str]:
        """The snapshot as the socket sends it, encoded once for every operator."""
        await self._fresh()
        return self._seq, self._frame

    async def _fresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._built_at < SNAPSHOT_EVERY_S:
                return
            started = time.perf_counter()
            snapshot = await self._build()
            self._seq += 1
            snapshot["seq"] = self._seq
            self._snapshot = snapshot
            self._frame = orjson.dumps({"type": "snapshot", **snapshot}).decode()
            self._built_at = time.monotonic()
            metrics.OPS_SNAPSHOT_SECONDS.observe(time.perf_counter() - started)

    def _boundary(self, cell: str) -> list[list[float]]:
        b = self._boundaries.get(cell)
        if b is None:
            if len(self._boundaries) > 50_000:  # cells come and go; bound the cache
                self._boundaries.clear()
            b = self._boundaries[cell] = [
                [round(lat, 6), round(lng, 6)] for lat, lng in cells.boundary(cell)
            ]
        return b

    async def _build(self) -> dict[str, Any]:
        rt = self.rt
        drivers = await live_drivers(rt)
        match_since = utcnow() - timedelta(seconds=MATCH_WINDOW_S)
        async with rt.sessions() as db:
            requests = await open_requests(db)
            matches = int(
                (
                    await db.execute(
                        select(func.count()).where(
                            Trip.status.in_(ASSIGNED_OR_LATER),
                            Trip.requested_at
                            >= match_since - timedelta(seconds=rt.settings.trip_request_timeout_s),
                            Trip.assigned_at >= match_since,
                        )
                    )
                ).scalar_one()
            )
            if self._stats is None or time.monotonic() - self._stats_at >= STATS_EVERY_S:
                self._stats = await _stats(db, rt)
                self._stats_at = time.monotonic()
        stats = self._stats
        now = utcnow()
        supply = supply_cells(drivers, requests, self.resolution)
        available = sum(1 for d in drivers if d.status == "available")
        return {
            "generated_at": iso(now),
            "resolution": self.resolution,
            "kpis": {
                "online_drivers": len(drivers),
                "available_drivers": available,
                "on_trip_drivers": len(drivers) - available,
                "open_requests": len(requests),
                "matches_last_minute": matches,
                **{k: v for k, v in stats.items() if k not in ("fare_rule", "proposals")},
            },
            "fare_rule": stats["fare_rule"],
            "proposals": stats["proposals"],
            "cells": [
                {
                    "h3": c,
                    "online_drivers": d,
                    "open_requests": r,
                    "boundary": self._boundary(c),
                }
                for c, (d, r) in supply.items()
            ],
            "drivers": [
                {
                    "id": d.id,
                    "lat": d.lat,
                    "lng": d.lng,
                    "status": d.status,
                    "target": None if d.target is None else list(d.target),
                }
                for d in drivers[:MAX_DRIVER_MARKERS]
            ],
            "requests": [
                {
                    "id": r.id,
                    "lat": r.lat,
                    "lng": r.lng,
                    "waiting_s": max(0, int((now - r.requested_at).total_seconds())),
                }
                for r in requests[:MAX_REQUEST_MARKERS]
            ],
        }
