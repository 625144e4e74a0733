"""The ETA interface and the straight-line model: road distance and drive time between two
points as the straight line times one detour factor, at one speed for the whole city.
Every model (``geo.eta.calibrated``, ``geo.eta.road``) answers ``leg``, ``seconds``
and ``reach_m`` the same way."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from geo.point import LatLng, haversine_m

# Manhattan's grid makes road distance ~1.3-1.4x the straight line; 6 m/s (21.6 km/h)
# is a typical mid-day average speed for city traffic including stops.
DEFAULT_DETOUR_FACTOR = 1.35
DEFAULT_SPEED_MPS = 6.0


@dataclass(frozen=True, slots=True)
class Leg:
    distance_m: int
    duration_s: int


@dataclass(frozen=True, slots=True)
class EtaModel:
    detour_factor: float = DEFAULT_DETOUR_FACTOR
    speed_mps: float = DEFAULT_SPEED_MPS

    def leg(self, origin: LatLng, destination: LatLng) -> Leg:
        road_m = haversine_m(origin, destination) * self.detour_factor
        return Leg(distance_m=round(road_m), duration_s=math.ceil(road_m / self.speed_mps))

    def seconds(self, origin: LatLng, destination: LatLng) -> int:
        return self.leg(origin, destination).duration_s

    def seconds_many(self, origins: Sequence[LatLng], destinations: Sequence[LatLng]) -> list[int]:
        """``seconds`` of each (origin, destination) pair. Models that predict in bulk
        (``geo.eta.learned``) answer a whole batch in one call; these few-microsecond
        formulas simply answer each pair."""
        seconds = self.seconds
        return [seconds(o, d) for o, d in zip(origins, destinations, strict=True)]

    def reach_m(self, seconds: float) -> float:
        """The straight-line radius a driver can cover in ``seconds``."""
        return seconds * self.speed_mps / self.detour_factor


DEFAULT_MODEL = EtaModel()
