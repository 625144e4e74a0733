"""The calibrated model: detour factor and pace fitted by place (H3 cell, district), hour
of the week, trip length and direction (``data/eta_calibration.json``, made by
``benchmarks/calibrate_eta.py``). What it was fitted against, and how well it does, is
in ``docs/eta.md``."""

from __future__ import annotations

import bisect
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.data import DataFile, data_path
from geo import cells
from geo.eta.base import EtaModel, Leg
from geo.point import LatLng, haversine_m


def calibration_path() -> Path:
    """The fitted parameters in the data folder (``COOP_DATA_DIR``; core/data.py)."""
    return data_path(DataFile.ETA_CALIBRATION)


CALIBRATION_FORMAT = 1
HOURS_PER_WEEK = 168
# Direction profiles are periodic over 90°: a street grid looks the same turned by a
# right angle. Knots every 15°.
DIRECTION_PERIOD_DEG = 90.0
DIRECTION_KNOTS = 6
# reach_m's table: straight-line distances from 10 m, 8 steps per doubling, to ~330 km.
_REACH_GRID_MIN_M = 10.0
_REACH_GRID_STEPS = 8 * 15
# Distinct places remembered by a calibrated model (H3 cells seen): NYC has ~1,500
# resolution-8 cells, so this is never reached in service; it only bounds memory.
_PLACES_KEPT = 50_000


def hour_of_week(when: datetime) -> int:
    """0 = Monday 00:00-00:59 in ``when``'s own time zone, … 167 = Sunday 23:00."""
    return when.weekday() * 24 + when.hour


class HourOfWeekClock:
    """The current hour of the week in ``timezone``. Reads the wall clock on each call
    (~70 ns) and converts to local time only once the hour it knows has ended."""

    __slots__ = ("_hour", "_now", "_tz", "_until")

    def __init__(self, timezone: str, now: Callable[[], float] = time.time) -> None:
        self._tz = ZoneInfo(timezone)
        self._now = now
        self._until = -math.inf
        self._hour = 0

    def __call__(self) -> int:
        now = self._now()
        if now >= self._until:
            local = datetime.fromtimestamp(now, self._tz)
            self._hour = hour_of_week(local)
            # NYC's UTC offsets are whole hours, so local hours end on UTC hours too.
            self._until = now - (local.minute * 60 + local.second + local.microsecond / 1e6)
            self._until += 3600.0
        return self._hour


def fixed_hour(how: int) -> Callable[[], int]:
    """A clock stuck at one hour of the week (tests, benchmarks)."""
    return lambda: how


@dataclass(frozen=True, slots=True)
class Surface:
    """The log of a ratio to the straight line, as a sum of effects:

    - ``by_distance``: values at the calibration's distance knots, linear in log
      distance between them and flat beyond the first and last;
    - the mean over the two ends of a place offset: the end's district's value plus its
      cell's own deviation (0 where the fit had no data: the coarser level applies);
    - the mean over the two ends' districts of a direction profile: values at
      ``DIRECTION_KNOTS`` bearings over 90°, periodic (street grids)."""

    by_distance: tuple[float, ...]
    district: Mapping[str, float]
    cell: Mapping[str, float]
    direction: Mapping[str, tuple[float, ...]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Surface:
        return cls(
            by_distance=tuple(float(v) for v in data["by_distance"]),
            district={str(k): float(v) for k, v in data.get("district", {}).items()},
            cell={str(k): float(v) for k, v in data.get("cell", {}).items()},
            direction={
                str(k): tuple(float(x) for x in v) for k, v in data.get("direction", {}).items()
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "by_distance": [round(v, 5) for v in self.by_distance],
            "district": {k: round(v, 5) for k, v in sorted(self.district.items())},
            "cell": {k: round(v, 5) for k, v in sorted(self.cell.items())},
            "direction": {k: [round(x, 5) for x in v] for k, v in sorted(self.direction.items())},
        }

    def place_offsets(self, district_of: Callable[[str], str]) -> list[float]:
        """Every value a place offset can take (0 for a place the fit never saw)."""
        values = [0.0, *self.district.values()]
        values += [self.district.get(district_of(c), 0.0) + v for c, v in self.cell.items()]
        return values

    def direction_values(self) -> list[float]:
        return [0.0, *(x for profile in self.direction.values() for x in profile)]


@dataclass(frozen=True, slots=True)
class EtaCalibration:
    """What ``benchmarks/calibrate_eta.py`` fitted. ``log_pace`` is the log of seconds
    per straight-line metre; ``log_detour`` the log of road metres per straight-line
    metre; ``hour_of_week`` adds to ``log_pace`` (168 values, Monday 00:00 first, in
    ``timezone``)."""

    cell_resolution: int
    district_resolution: int
    timezone: str
    distance_knots_m: tuple[float, ...]
    log_pace: Surface
    log_detour: Surface
    hour_of_week: tuple[float, ...]
    meta: Mapping[str, Any]
    # Districts the fit had trips in. A pair with an end elsewhere uses the fitted
    # global level, or, when ``uncovered`` is set, that fixed (detour factor, road
    # speed): evidence from one part of the city says little about another.
    coverage: frozenset[str] = frozenset()
    uncovered: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        knots = self.distance_knots_m
        if len(knots) < 2 or any(b <= a for a, b in itertools.pairwise(knots)):
            raise ValueError("distance knots must be at least two, increasing")
        for surface in (self.log_pace, self.log_detour):
            if len(surface.by_distance) != len(knots):
                raise ValueError("one by_distance value per distance knot")
            if any(len(p) != DIRECTION_KNOTS for p in surface.direction.values()):
                raise ValueError(f"direction profiles have {DIRECTION_KNOTS} values")
        if len(self.hour_of_week) != HOURS_PER_WEEK:
            raise ValueError(f"hour_of_week has {HOURS_PER_WEEK} values")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EtaCalibration:
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"calibration format {data.get('format')!r} is not supported")
        return cls(
            cell_resolution=int(data["cell_resolution"]),
            district_resolution=int(data["district_resolution"]),
            timezone=str(data["timezone"]),
            distance_knots_m=tuple(float(v) for v in data["distance_knots_m"]),
            log_pace=Surface.from_json(data["log_pace"]),
            log_detour=Surface.from_json(data["log_detour"]),
            hour_of_week=tuple(float(v) for v in data["hour_of_week"]),
            meta=dict(data.get("meta", {})),
            coverage=frozenset(str(d) for d in data.get("coverage", ())),
            uncovered=(
                None
                if data.get("uncovered") is None
                else (
                    float(data["uncovered"]["detour_factor"]),
                    float(data["uncovered"]["speed_mps"]),
                )
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT,
            "meta": dict(self.meta),
            "cell_resolution": self.cell_resolution,
            "district_resolution": self.district_resolution,
            "timezone": self.timezone,
            "distance_knots_m": list(self.distance_knots_m),
            "coverage": sorted(self.coverage),
            "uncovered": (
                None
                if self.uncovered is None
                else {"detour_factor": self.uncovered[0], "speed_mps": self.uncovered[1]}
            ),
            "hour_of_week": [round(v, 5) for v in self.hour_of_week],
            "log_pace": self.log_pace.to_json(),
            "log_detour": self.log_detour.to_json(),
        }

    @classmethod
    def load(cls, path: Path | None = None) -> EtaCalibration:
        return cls.from_json(json.loads((path or calibration_path()).read_text()))


@dataclass(frozen=True, slots=True)
class _Place:
    """One H3 cell's offsets, looked up once and remembered."""

    pace: float
    detour: float
    covered: bool
    pace_direction: tuple[float, ...] | None
    detour_direction: tuple[float, ...] | None


def _direction_value(profile: tuple[float, ...] | None, bearing_knots: float) -> float:
    if profile is None:
        return 0.0
    i = int(bearing_knots)
    f = bearing_knots - i
    return profile[i % DIRECTION_KNOTS] * (1.0 - f) + profile[(i + 1) % DIRECTION_KNOTS] * f


def _bearing_knots(origin: LatLng, destination: LatLng) -> float:
    """The bearing from origin to destination folded into [0°, 90°), in knot units."""
    dx = (destination.lng - origin.lng) * math.cos(math.radians(origin.lat))
    dy = destination.lat - origin.lat
    degrees = math.degrees(math.atan2(dy, dx)) % DIRECTION_PERIOD_DEG
    return degrees / (DIRECTION_PERIOD_DEG / DIRECTION_KNOTS)


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class CalibratedEtaModel(EtaModel):
    """Seconds = straight-line metres × exp(log pace), where log pace adds a trip-length
    curve, the hour of the week, both ends' places and the trip's direction; road
    metres likewise with the detour surface (never below the straight line).

    ``detour_factor`` and ``speed_mps`` (inherited) hold the model's typical values, a
    median-length trip (3.3 km) in the average hour at an unfitted place, for code that
    reads them directly. ``clock`` gives the current hour of the week (default: the
    wall clock in the calibration's time zone)."""

    calibration: EtaCalibration
    clock: Callable[[], int] = field(default=fixed_hour(0))
    _ln_knots: list[float] = field(init=False, repr=False)
    _places: dict[str, _Place] = field(init=False, repr=False)
    # The last point looked up and its place: a candidate search asks for one pickup
    # against many drivers, with the same LatLng object each time.
    _last: list[tuple[LatLng | None, _Place | None]] = field(init=False, repr=False)
    _reach: _ReachTable = field(init=False, repr=False)

    # Identity, not the two inherited numbers, tells models apart.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @classmethod
    def create(
        cls, calibration: EtaCalibration, *, clock: Callable[[], int] | None = None
    ) -> CalibratedEtaModel:
        return cls(calibration=calibration, clock=clock or HourOfWeekClock(calibration.timezone))

    def __post_init__(self) -> None:
        # Frozen: derived state is set once, here, the way dataclasses document.
        cal = self.calibration
        ln_knots = [math.log(k) for k in cal.distance_knots_m]
        ln_typical = math.log(3300.0)
        pace = math.exp(
            _interp(ln_knots, cal.log_pace.by_distance, ln_typical)
            + sum(cal.hour_of_week) / HOURS_PER_WEEK
        )
        detour = max(1.0, math.exp(_interp(ln_knots, cal.log_detour.by_distance, ln_typical)))
        object.__setattr__(self, "detour_factor", detour)
        object.__setattr__(self, "speed_mps", detour / pace)
        object.__setattr__(self, "_ln_knots", ln_knots)
        object.__setattr__(self, "_places", {})
        object.__setattr__(self, "_last", [(None, None)])
        object.__setattr__(self, "_reach", _ReachTable(cal))

    def _place(self, point: LatLng) -> _Place:
        last_point, last_place = self._last[0]
        if point is last_point and last_place is not None:
            return last_place
        cell = cells.cell_of(point, self.calibration.cell_resolution)
        place = self._places.get(cell)
        if place is None:
            place = self._new_place(cell)
        self._last[0] = (point, place)
        return place

    def _new_place(self, cell: str) -> _Place:
        cal = self.calibration
        district = cells.parent(cell, cal.district_resolution)
        pace, detour = cal.log_pace, cal.log_detour
        place = _Place(
            pace=pace.district.get(district, 0.0) + pace.cell.get(cell, 0.0),
            detour=detour.district.get(district, 0.0) + detour.cell.get(cell, 0.0),
            covered=cal.uncovered is None or district in cal.coverage,
            pace_direction=pace.direction.get(district),
            detour_direction=detour.direction.get(district),
        )
        if len(self._places) >= _PLACES_KEPT:
            self._places.clear()
        self._places[cell] = place
        return place

    def _log_pace(
        self, a: _Place, b: _Place, origin: LatLng, destination: LatLng, straight_m: float, how: int
    ) -> float:
        """Log seconds per straight-line metre, for a pair the fit covers."""
        cal = self.calibration
        value = _interp(self._ln_knots, cal.log_pace.by_distance, math.log(straight_m))
        value += 0.5 * (a.pace + b.pace) + cal.hour_of_week[how]
        if a.pace_direction is not None or b.pace_direction is not None:
            bearing = _bearing_knots(origin, destination)
            value += 0.5 * (
                _direction_value(a.pace_direction, bearing)
                + _direction_value(b.pace_direction, bearing)
            )
        return value

    def _detour(
        self, a: _Place, b: _Place, origin: LatLng, destination: LatLng, straight_m: float
    ) -> float:
        uncovered = self.calibration.uncovered
        if uncovered is not None and not (a.covered and b.covered):
            return uncovered[0]
        cal = self.calibration
        value = _interp(self._ln_knots, cal.log_detour.by_distance, math.log(straight_m))
        value += 0.5 * (a.detour + b.detour)
        if a.detour_direction is not None or b.detour_direction is not None:
            bearing = _bearing_knots(origin, destination)
            value += 0.5 * (
                _direction_value(a.detour_direction, bearing)
                + _direction_value(b.detour_direction, bearing)
            )
        return max(1.0, math.exp(value))

    def covers(self, origin: LatLng, destination: LatLng) -> bool:
        """Whether the fit speaks for this pair (else the ``uncovered`` constants do)."""
        return self._place(origin).covered and self._place(destination).covered

    def detour_factor_at(self, origin: LatLng, destination: LatLng) -> float:
        straight_m = max(haversine_m(origin, destination), 1.0)
        a, b = self._place(origin), self._place(destination)
        return self._detour(a, b, origin, destination, straight_m)

    def speed_mps_at(self, origin: LatLng, destination: LatLng, how: int) -> float:
        """Road metres per second: the detour factor over the pace."""
        straight_m = max(haversine_m(origin, destination), 1.0)
        a, b = self._place(origin), self._place(destination)
        uncovered = self.calibration.uncovered
        if uncovered is not None and not (a.covered and b.covered):
            return uncovered[1]
        pace = math.exp(self._log_pace(a, b, origin, destination, straight_m, how))
        return self._detour(a, b, origin, destination, straight_m) / pace

    def seconds_at(self, origin: LatLng, destination: LatLng, how: int) -> int:
        # The dispatcher's hot path (~16,000 calls per batch): _log_pace, inlined.
        straight_m = haversine_m(origin, destination)
        if straight_m < 1.0:
            return 0
        a, b = self._place(origin), self._place(destination)
        if not (a.covered and b.covered):
            # Exactly what EtaModel(*uncovered) says (``covered`` is only ever False
            # when the calibration has ``uncovered``).
            detour, speed = self.calibration.uncovered or (self.detour_factor, self.speed_mps)
            return math.ceil(straight_m * detour / speed)
        cal = self.calibration
        value = _interp(self._ln_knots, cal.log_pace.by_distance, math.log(straight_m))
        value += 0.5 * (a.pace + b.pace) + cal.hour_of_week[how]
        pa, pb = a.pace_direction, b.pace_direction
        if pa is not None and pb is not None:
            bearing = _bearing_knots(origin, destination)
            i = int(bearing)
            f = bearing - i
            j = (i + 1) % DIRECTION_KNOTS
            value += 0.5 * ((pa[i] + pb[i]) * (1.0 - f) + (pa[j] + pb[j]) * f)
        elif pa is not None or pb is not None:
            bearing = _bearing_knots(origin, destination)
            value += 0.5 * (_direction_value(pa, bearing) + _direction_value(pb, bearing))
        return math.ceil(straight_m * math.exp(value))

    def leg_at(self, origin: LatLng, destination: LatLng, how: int) -> Leg:
        straight_m = haversine_m(origin, destination)
        if straight_m < 1.0:
            return Leg(distance_m=round(straight_m), duration_s=0)
        a, b = self._place(origin), self._place(destination)
        road_m = straight_m * self._detour(a, b, origin, destination, straight_m)
        return Leg(distance_m=round(road_m), duration_s=self.seconds_at(origin, destination, how))

    def seconds(self, origin: LatLng, destination: LatLng) -> int:
        return self.seconds_at(origin, destination, self.clock())

    def leg(self, origin: LatLng, destination: LatLng) -> Leg:
        return self.leg_at(origin, destination, self.clock())

    def reach_m(self, seconds: float) -> float:
        """An upper bound on the straight-line distance of any pair whose ``seconds``
        is at most ``seconds``, this hour or the next (a search that straddles the hour
        must not miss anyone)."""
        how = self.clock()
        reach = max(self._reach.at(seconds, how), self._reach.at(seconds, how + 1))
        uncovered = self.calibration.uncovered
        if uncovered is not None:
            reach = max(reach, seconds * uncovered[1] / uncovered[0] * (1.0 + 1e-9))
        return reach


def _interp(xs: list[float], ys: tuple[float, ...], x: float) -> float:
    """Piecewise-linear through (xs, ys), flat beyond the ends."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x) - 1
    f = (x - xs[i]) / (xs[i + 1] - xs[i])
    return ys[i] * (1.0 - f) + ys[i + 1] * f


class _ReachTable:
    """Inverts the fastest the calibrated model ever is. For a straight distance d the
    model's time is at least ``exp(lowest offsets + hour) × f(d)`` with
    ``f(d) = d × exp(by_distance(d))``. Between two knots f is a power of d, so it is
    monotone there; on a grid that includes every knot, the largest grid point whose f
    (or any later f) is within the budget, plus one step, bounds every distance that
    fits the budget."""

    def __init__(self, cal: EtaCalibration) -> None:
        def district_of(cell: str) -> str:
            return cells.parent(cell, cal.district_resolution)

        lowest = min(cal.log_pace.place_offsets(district_of))
        lowest += min(cal.log_pace.direction_values())
        self._hour_offset = [lowest + h for h in cal.hour_of_week]
        ln_knots = [math.log(k) for k in cal.distance_knots_m]
        step = math.log(2.0) / 8
        grid = {math.exp(math.log(_REACH_GRID_MIN_M) + i * step) for i in range(_REACH_GRID_STEPS)}
        grid.update(cal.distance_knots_m)
        self._grid = sorted(grid)
        f = [
            d * math.exp(_interp(ln_knots, cal.log_pace.by_distance, math.log(d)))
            for d in self._grid
        ]
        suffix_min = f[:]
        for i in range(len(f) - 2, -1, -1):
            suffix_min[i] = min(f[i], suffix_min[i + 1])
        self._suffix_min = suffix_min
        # Beyond the grid f is linear: d × exp(last knot value).
        self._last_pace = math.exp(cal.log_pace.by_distance[-1])

    def at(self, seconds: float, how: int) -> float:
        budget = seconds / math.exp(self._hour_offset[how % HOURS_PER_WEEK])
        k = bisect.bisect_right(self._suffix_min, budget) - 1
        if k + 1 >= len(self._grid):
            reach = max(self._grid[-1], budget / self._last_pace)
        else:
            reach = self._grid[k + 1]
        return reach * (1.0 + 1e-9)
