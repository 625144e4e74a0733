"""The road model: the fastest route over the Midtown OpenStreetMap road graph
(``geo.roads``) where it covers both ends, the calibrated model elsewhere."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from geo.eta.base import EtaModel, Leg
from geo.eta.calibrated import HOURS_PER_WEEK, CalibratedEtaModel
from geo.point import LatLng
from geo.roads import MIN_CONGESTION, RoadRouter, congestion_factor


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class RoadNetworkEtaModel(EtaModel):
    """Fastest route over the road graph where it covers both ends (free-flow time ×
    the hour's congestion factor, route metres), the calibrated model elsewhere. The
    hour comes from the fallback's clock."""

    router: RoadRouter
    fallback: CalibratedEtaModel
    _congestion: list[float] = field(init=False, repr=False)
    _road_reach_mps: float = field(init=False, repr=False)
    _road_reach_cap_m: float = field(init=False, repr=False)

    # Haversine and the graph's local metres differ by well under 1% over Midtown.
    _REACH_MARGIN = 1.01

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __post_init__(self) -> None:
        object.__setattr__(self, "detour_factor", self.fallback.detour_factor)
        object.__setattr__(self, "speed_mps", self.fallback.speed_mps)
        object.__setattr__(
            self, "_congestion", [congestion_factor(h) for h in range(HOURS_PER_WEEK)]
        )
        margin = self._REACH_MARGIN
        object.__setattr__(
            self, "_road_reach_mps", self.router.max_speed_mps / MIN_CONGESTION * margin
        )
        object.__setattr__(self, "_road_reach_cap_m", self.router.diameter_m * margin)

    @property
    def clock(self) -> Callable[[], int]:
        return self.fallback.clock

    def seconds_at(self, origin: LatLng, destination: LatLng, how: int) -> int:
        free_flow_s = self.router.free_flow_s(origin, destination)
        if free_flow_s is None:
            return self.fallback.seconds_at(origin, destination, how)
        return math.ceil(free_flow_s * self._congestion[how])

    def leg_at(self, origin: LatLng, destination: LatLng, how: int) -> Leg:
        road = self.router.leg(origin, destination)
        if road is None:
            return self.fallback.leg_at(origin, destination, how)
        return Leg(
            distance_m=round(road.distance_m),
            duration_s=math.ceil(road.free_flow_s * self._congestion[how]),
        )

    def seconds(self, origin: LatLng, destination: LatLng) -> int:
        return self.seconds_at(origin, destination, self.clock())

    def leg(self, origin: LatLng, destination: LatLng) -> Leg:
        return self.leg_at(origin, destination, self.clock())

    def reach_m(self, seconds: float) -> float:
        """A route is never faster than the fastest edge at the lightest traffic, and
        both its ends lie inside the extract; elsewhere the calibrated bound holds."""
        road = min(seconds * self._road_reach_mps, self._road_reach_cap_m)
        return max(road, self.fallback.reach_m(seconds))
