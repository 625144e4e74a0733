"""Operator routes: service areas and the supply picture."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from dispatch.runtime import after_commit
from geo import areas
from server import dashboard
from web.deps import CurrentOperator, RuntimeDep, Session
from web.schemas import RequestIn

router = APIRouter(tags=["operators"])


class ServiceAreaIn(RequestIn):
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


@router.post(
    "/v1/operator/service-areas",
    operation_id="createServiceArea",
    status_code=status.HTTP_201_CREATED,
)
async def create_service_area(
    body: ServiceAreaIn, who: CurrentOperator, db: Session, rt: RuntimeDep
) -> ServiceAreaOut:
    polygon = areas.parse_polygon(body.polygon)
    area = await areas.create(db, name=body.name, polygon=polygon)
    after_commit(db, rt.areas.bump_version)
    return ServiceAreaOut(
        id=area.id, name=area.name, polygon=areas.Area(area.id, area.name, polygon).as_geojson()
    )


@router.get("/v1/operator/service-areas", operation_id="listServiceAreas")
async def list_service_areas(who: CurrentOperator, db: Session) -> list[ServiceAreaOut]:
    return [
        ServiceAreaOut(id=a.id, name=a.name, polygon=a.as_geojson())
        for a in await areas.list_areas(db)
    ]


@router.get("/v1/operator/supply", operation_id="getSupply")
async def supply(
    who: CurrentOperator,
    db: Session,
    rt: RuntimeDep,
    resolution: int = Query(7, ge=0, le=15),
) -> Supply:
    """Online drivers and open requests per H3 cell at ``resolution``."""
    counts = dashboard.supply_cells(
        await dashboard.live_drivers(rt), await dashboard.open_requests(db), resolution
    )
    return Supply(
        resolution=resolution,
        cells=[SupplyCell(h3=c, online_drivers=d, open_requests=r) for c, (d, r) in counts.items()],
    )
