"""Where a driver on a trip is heading: the pickup until the trip starts, then the
drop-off. The live index keeps the leg (``Presence.set_trip``), so every position the
driver streams reaches the rider with an ETA to it; accepting an offer, starting the
trip and reconciling a reconnecting driver all put the driver on its current leg."""

from __future__ import annotations

from dataclasses import dataclass

from core.models import Trip
from dispatch.runtime import Runtime
from dispatch.views import latlng_of
from geo.point import LatLng


@dataclass(frozen=True, slots=True)
class Leg:
    driver_id: str
    trip_id: str
    rider_id: str
    target: LatLng


def current(trip: Trip) -> Leg:
    """The leg of ``trip`` as it stands (read it before the commit that may move it on:
    the values are copied, so the leg can be followed after the session is gone)."""
    assert trip.driver_id is not None, f"trip {trip.id} has no driver"
    target = latlng_of(trip.dropoff if trip.status == "in_progress" else trip.pickup)
    return Leg(trip.driver_id, trip.id, trip.rider_id, target)


async def follow(rt: Runtime, leg: Leg) -> None:
    """Put the driver on ``leg`` in the live index."""
    await rt.presence.set_trip(
        leg.driver_id,
        trip_id=leg.trip_id,
        rider_id=leg.rider_id,
        target_lat=leg.target.lat,
        target_lng=leg.target.lng,
    )
