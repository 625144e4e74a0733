"""Service areas: operator-drawn polygons stored in PostGIS, checked in memory.

The containment check runs on every quote and trip request, so it never touches the
database while the areas are unchanged: each process keeps the polygons (shapely,
prepared) and reloads them only when the Redis version counter, bumped on every change,
has moved. The counter is read at most once per ``VERSION_CHECK_S`` per process.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
import shapely
from geoalchemy2.shape import from_shape, to_shape
from redis.asyncio import Redis
from shapely.geometry import Polygon, shape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import InvalidCoordinates, InvalidPolygon
from core.ids import new_id
from core.keys import Keys
from core.models import ServiceArea
from geo.point import LatLng, finite_number

# How stale a process's copy of the areas may be after an operator edits them.
VERSION_CHECK_S = 1.0
MAX_VERTICES = 10_000


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    polygon: Polygon

    def as_geojson(self) -> dict[str, Any]:
        geo: dict[str, Any] = orjson.loads(shapely.to_geojson(self.polygon))
        return geo


def parse_polygon(geojson: Any) -> Polygon:
    """A GeoJSON Polygon from untrusted input, or ``InvalidPolygon`` saying why not."""
    if not isinstance(geojson, dict) or geojson.get("type") != "Polygon":
        raise InvalidPolygon("polygon must be a GeoJSON object with type Polygon")
    rings = geojson.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise InvalidPolygon("coordinates must be a non-empty list of linear rings")
    vertices = 0
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 4:
            raise InvalidPolygon("each ring needs at least 4 positions")
        for position in ring:
            if not isinstance(position, list | tuple) or len(position) < 2:
                raise InvalidPolygon("each position must be [lng, lat] numbers")
            try:
                lng, lat = finite_number(position[0], "lng"), finite_number(position[1], "lat")
            except InvalidCoordinates as exc:
                raise InvalidPolygon(f"each position must be [lng, lat] numbers: {exc}") from None
            if not (-180 <= lng <= 180 and -90 <= lat <= 90):
                raise InvalidPolygon("position out of range (GeoJSON order is [lng, lat])")
        if list(ring[0][:2]) != list(ring[-1][:2]):
            raise InvalidPolygon("each ring must be closed (first position == last)")
        vertices += len(ring)
    if vertices > MAX_VERTICES:
        raise InvalidPolygon(f"at most {MAX_VERTICES} vertices")
    polygon = shape(geojson)
    if not isinstance(polygon, Polygon) or polygon.is_empty or polygon.area == 0:
        raise InvalidPolygon("the polygon has no area")
    if not polygon.is_valid:
        raise InvalidPolygon(f"invalid polygon: {shapely.is_valid_reason(polygon)}")
    return polygon


class ServiceAreas:
    def __init__(
        self, redis: Redis, keys: Keys, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._sessions = sessions
        self._areas: list[Area] = []
        self._version: str | None = None
        self._checked_at = -math.inf
        self._lock = asyncio.Lock()

    async def current(self) -> list[Area]:
        if time.monotonic() - self._checked_at >= VERSION_CHECK_S:
            async with self._lock:
                if time.monotonic() - self._checked_at >= VERSION_CHECK_S:
                    await self._refresh()
        return self._areas

    async def _refresh(self) -> None:
        version = str((await self._redis.get(self._keys.areas_version())) or "0")
        if version != self._version:
            async with self._sessions() as db:
                rows = (await db.scalars(select(ServiceArea))).all()
            areas = [Area(r.id, r.name, to_shape(r.polygon)) for r in rows]
            for area in areas:
                shapely.prepare(area.polygon)
            self._areas = areas
            self._version = version
        self._checked_at = time.monotonic()

    async def contains(self, point: LatLng) -> bool:
        """True when the point is in some area, or when no area is defined yet."""
        areas = await self.current()
        if not areas:
            return True
        p = shapely.Point(point.lng, point.lat)
        return any(shapely.covers(a.polygon, p) for a in areas)

    def invalidate(self) -> None:
        self._checked_at = -math.inf

    async def bump_version(self) -> None:
        await self._redis.incr(self._keys.areas_version())
        self.invalidate()


async def create(db: AsyncSession, *, name: str, polygon: Polygon) -> ServiceArea:
    area = ServiceArea(id=new_id("area"), name=name, polygon=from_shape(polygon, srid=4326))
    db.add(area)
    await db.flush()
    return area


async def list_areas(db: AsyncSession) -> list[Area]:
    rows = (await db.scalars(select(ServiceArea).order_by(ServiceArea.created_at))).all()
    return [Area(r.id, r.name, to_shape(r.polygon)) for r in rows]
