"""What the live index's operations return, and what a location frame hands it for the
rider. Plain frozen values; ``dispatch.presence.index`` builds them."""

from __future__ import annotations

from dataclasses import dataclass

from geo.point import LatLng


@dataclass(frozen=True, slots=True)
class LocationResult:
    accepted: bool
    status: str
    trip_id: str | None
    rider_id: str | None
    last_ts_ms: int | None = None
    target_lat: float | None = None
    target_lng: float | None = None
    # Set when the driver's location rate limit dropped the frame: ms until the next.
    retry_after_ms: int | None = None
    # Redis held no status for the driver (it lost its data, or the driver has never
    # sent one): the frame assumed the socket's status; the caller re-checks the trip.
    restored: bool = False
    # The target as Redis holds it ('tlat,tlng'), to pass back as the next frame's
    # ``RiderForward.target``; and whether this frame's forward was published.
    target: str = ","
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class RiderForward:
    """A location frame's position for the rider, published by the location script itself
    when the driver is still on ``trip_id`` heading for ``target`` (as the previous
    frame's ``LocationResult`` said), so an on-trip frame is one round trip too."""

    trip_id: str
    target: str
    channel: str
    frame: str


@dataclass(frozen=True, slots=True)
class DriverState:
    driver_id: str
    status: str
    lat: float | None
    lng: float | None
    ts_ms: int | None
    seen_ms: int | None
    cell: str | None
    trip_id: str | None
    heading: float | None = None
    speed_mps: float | None = None


@dataclass(frozen=True, slots=True)
class TripLeg:
    """The trip a driver is on and where it is heading, as Redis holds them: what a
    location frame's ``RiderForward`` is computed for."""

    trip_id: str
    rider_id: str
    target: str  # 'tlat,tlng' exactly as stored, so the script can compare it

    @property
    def target_point(self) -> LatLng | None:
        lat, _, lng = self.target.partition(",")
        return LatLng(float(lat), float(lng)) if lat and lng else None
