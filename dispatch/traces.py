"""A trip's route: where the driver stood at each step, and the positions the live index
sampled while it drove (about one per 10 s), written to PostgreSQL in the transaction
that ends the trip. Live positions never reach PostgreSQL otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.models import Trip, TripTracePoint
from core.models.spatial import point_value
from dispatch.runtime import Runtime, after_commit

# The trace point each driver step records.
KIND = {"arrived": "arrived", "in_progress": "started", "completed": "completed"}


async def record(db: AsyncSession, rt: Runtime, *, trip: Trip, kind: str, final: bool) -> None:
    """Where the driver stands now (from the live index), and, when the trip ends, the
    positions sampled along the way: in the trip's own transaction, so the trace is in
    PostgreSQL exactly when the trip's end is. Live positions never are."""
    assert trip.driver_id is not None
    now = utcnow()
    state = await rt.presence.state(trip.driver_id)
    if state.lat is not None and state.lng is not None:
        db.add(
            TripTracePoint(
                trip_id=trip.id, at=now, kind=kind, position=point_value(state.lat, state.lng)
            )
        )
    if not final:
        return
    for ts_ms, lat, lng in await rt.presence.take_trace(trip.id):
        db.add(
            TripTracePoint(
                trip_id=trip.id,
                at=datetime.fromtimestamp(ts_ms / 1000, UTC),
                kind="track",
                position=point_value(lat, lng),
            )
        )
    trip_id = trip.id

    async def forget() -> None:
        await rt.presence.drop_trace(trip_id)

    after_commit(db, forget)
