"""Operator routes: service areas and the supply picture."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status
from geoalchemy2 import Geometry
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import cast, func, select

from core.clock import now_ms
from core.models import Trip
from dispatch.deps import CurrentOperator, RuntimeDep, Session
from dispatch.runtime import after_commit
from geo import areas, cells
from geo.point import LatLng

router = APIRouter(tags=["operators"])


class ServiceAreaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    polygon: dict[str, Any] = Field(description="GeoJSON Polygon, [lng, lat] positions")


class ServiceAreaOut(BaseModel):
    id: str
    name: str
    polygon: dict[str, Any]


class SupplyCell(BaseModel):
    h3: str
    online_drivers: int
    open_requests: int


class Supply(BaseModel):
    resolution: int
    cells: list[SupplyCell]


@router.post("/v1/operator/service-areas", status_code=status.HTTP_201_CREATED)
async def create_service_area(
    body: ServiceAreaIn, who: CurrentOperator, db: Session, rt: RuntimeDep
) -> ServiceAreaOut:
    polygon = areas.parse_polygon(body.polygon)
    area = await areas.create(db, name=body.name, polygon=polygon)
    after_commit(db, rt.areas.bump_version)
    return ServiceAreaOut(
        id=area.id, name=area.name, polygon=areas.Area(area.id, area.name, polygon).as_geojson()
    )


@router.get("/v1/operator/service-areas")
async def list_service_areas(who: CurrentOperator, db: Session) -> list[ServiceAreaOut]:
    return [
        ServiceAreaOut(id=a.id, name=a.name, polygon=a.as_geojson())
        for a in await areas.list_areas(db)
    ]


@router.get("/v1/operator/supply")
async def supply(
    who: CurrentOperator,
    db: Session,
    rt: RuntimeDep,
    resolution: int = Query(7, ge=0, le=15),
) -> Supply:
    """Online drivers and open requests per H3 cell at ``resolution``."""
    min_seen = now_ms() - int(rt.settings.driver_stale_s * 1000)
    drivers: dict[str, int] = {}
    online = [str(d) for d in await rt.redis.zrangebyscore(rt.keys.seen(), min_seen, "+inf")]
    if online:
        async with rt.redis.pipeline(transaction=False) as pipe:
            for d in online:
                pipe.hmget(rt.keys.driver(d), "lat", "lng", "status")
            rows = await pipe.execute()
        for lat, lng, state in rows:
            if lat and lng and state and state != "offline":
                c = cells.cell_of(LatLng(float(lat), float(lng)), resolution)
                drivers[c] = drivers.get(c, 0) + 1
    open_requests: dict[str, int] = {}
    result = await db.execute(
        select(
            func.ST_Y(cast(Trip.pickup, Geometry)), func.ST_X(cast(Trip.pickup, Geometry))
        ).where(Trip.status == "requested")
    )
    for lat, lng in result:
        c = cells.cell_of(LatLng(float(lat), float(lng)), resolution)
        open_requests[c] = open_requests.get(c, 0) + 1
    keys = sorted(set(drivers) | set(open_requests))
    return Supply(
        resolution=resolution,
        cells=[
            SupplyCell(
                h3=k, online_drivers=drivers.get(k, 0), open_requests=open_requests.get(k, 0)
            )
            for k in keys
        ],
    )
