"""Demand to replay: a file of pickups (time and place, optionally drop-offs) read into
the riders' requests, with drop-offs drawn where the file has none, and the drivers'
start positions.

Pure apart from ``read_demand``, which reads the file: no Redis, no database, no wall
clock; the random draws come from seeded streams (``random_streams``), so a replay is
deterministic for a given seed. ``docs/simulation.md`` says what the demand files are.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from geo.eta import DEFAULT_MODEL, EtaModel
from geo.point import EARTH_RADIUS_M, LatLng
from simulation.defaults import DEFAULT_SEED

Floats = npt.NDArray[np.float64]

# Without --start/--end, replay the busiest this-many consecutive clock hours.
DEFAULT_WINDOW_HOURS = 2

# Trip length (road distance, what the meter and ``EtaModel.leg`` count) when the file
# has no drop-offs: lognormal through NYC's median ≈ 3.3 km and 90th percentile ≈ 10 km
# (TLC trip records; ``data/README.md``).
TRIP_ROAD_MEDIAN_M = 3_300.0
TRIP_ROAD_P90_M = 10_000.0
_Z90 = 1.2815515655446004  # standard normal 90th percentile
TRIP_LOG_SIGMA = math.log(TRIP_ROAD_P90_M / TRIP_ROAD_MEDIAN_M) / _Z90
# A drop-off outside the demand's 99% lat/lng box (water, New Jersey, Long Island) is
# redrawn, up to this many times; the rare one still outside after that is kept.
DROPOFF_REDRAWS = 20
# Drivers start where riders are: at a pickup of the replay, moved by Gaussian jitter of
# this many metres per axis (the file's 4 decimals are an ~11 m grid).
START_JITTER_M = 40.0
METRES_PER_DEGREE_LAT = EARTH_RADIUS_M * math.pi / 180
# The demand file's clock: NYC TLC records are in New York local time.
DEMAND_TZ = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True)
class DemandRows:
    """The rows of a demand file inside the replay window, as read (no randomness)."""

    start: datetime
    end: datetime
    # Seconds from ``start`` to each row's timestamp, in file order.
    offset_s: Floats
    pickup_lat: Floats
    pickup_lng: Floats
    # NaN where the file gives no drop-off.
    dropoff_lat: Floats
    dropoff_lng: Floats
    # The trip's real duration in seconds (pickup to drop-off); NaN where not known.
    duration_s: Floats
    # True when every timestamp is on the whole minute: arrivals are spread in it.
    minute_resolution: bool
    # The 99% lat/lng box of every pickup in the file: (lat_lo, lat_hi, lng_lo, lng_hi).
    bounds: tuple[float, float, float, float]

    def __len__(self) -> int:
        return len(self.offset_s)


@dataclass(frozen=True, slots=True)
class RideRequest:
    trip_id: str
    requested_s: float  # on the simulated clock: seconds since the replay's start
    pickup: LatLng
    dropoff: LatLng
    # The real trip's duration, when the file has one: the simulated trip lasts that.
    duration_s: float | None = None


def _open_text(path: Path) -> IO[str]:
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def parse_local_time(text: str, tz: tzinfo = DEMAND_TZ) -> datetime:
    """A timestamp as the file writes it (``2014-04-30 17:00:00``, local time); an
    offset in the text, if any, wins over ``tz``."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def busiest_window(hour_counts: Counter[datetime], hours: int) -> tuple[datetime, datetime]:
    """The ``hours`` consecutive clock hours with the most pickups (earliest on ties)."""
    if not hour_counts:
        raise ValueError("the demand file has no rows")
    best: tuple[int, datetime] | None = None
    for first in sorted(hour_counts):
        total = sum(hour_counts.get(first + timedelta(hours=h), 0) for h in range(hours))
        if best is None or total > best[0]:
            best = (total, first)
    assert best is not None
    return best[1], best[1] + timedelta(hours=hours)


# Either layout: the demand format (``lat, lon``, the April 2014 pickups) or the trips
# format (``pickup_lat, pickup_lon``, the 2016 trips with durations).
PICKUP_LAYOUTS = (("lat", "lon"), ("pickup_lat", "pickup_lon"))


def read_demand(
    path: Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window_hours: int = DEFAULT_WINDOW_HOURS,
    tz: tzinfo = DEMAND_TZ,
) -> DemandRows:
    """The rows of a demand CSV (gzip or plain) with ``start <= pickup_datetime < end``.

    Columns by name: ``pickup_datetime``, the pickup as ``lat``, ``lon`` (the demand
    format) or ``pickup_lat``, ``pickup_lon`` (the trips format), and optionally
    ``dropoff_lat``, ``dropoff_lon`` and ``duration_s`` (the real trip's seconds); others
    (``base``) are ignored. Without ``start`` and ``end`` the window is the busiest
    ``window_hours`` clock hours of the file; with one of them, the window is
    ``window_hours`` long from (or up to) it.
    """
    times: list[datetime] = []
    lat: list[float] = []
    lng: list[float] = []
    drop_lat: list[float] = []
    drop_lng: list[float] = []
    durations: list[float] = []
    parsed: dict[str, datetime] = {}
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        layout = next((lay for lay in PICKUP_LAYOUTS if set(lay) <= set(header)), None)
        if "pickup_datetime" not in header or layout is None:
            raise ValueError(
                f"{path}: needs pickup_datetime and the pickup as lat, lon or "
                f"pickup_lat, pickup_lon; it has {header}"
            )
        i_t = header.index("pickup_datetime")
        i_lat, i_lng = (header.index(c) for c in layout)
        has_drop = "dropoff_lat" in header and "dropoff_lon" in header
        i_dlat = header.index("dropoff_lat") if has_drop else -1
        i_dlng = header.index("dropoff_lon") if has_drop else -1
        i_dur = header.index("duration_s") if "duration_s" in header else -1
        for row in reader:
            if not row:
                continue
            text = row[i_t]
            moment = parsed.get(text)
            if moment is None:
                moment = parsed[text] = parse_local_time(text, tz)
            times.append(moment)
            lat.append(float(row[i_lat]))
            lng.append(float(row[i_lng]))
            if has_drop and row[i_dlat].strip() and row[i_dlng].strip():
                drop_lat.append(float(row[i_dlat]))
                drop_lng.append(float(row[i_dlng]))
            else:
                drop_lat.append(math.nan)
                drop_lng.append(math.nan)
            duration = row[i_dur].strip() if i_dur >= 0 else ""
            durations.append(_duration(duration, path) if duration else math.nan)
    if not times:
        raise ValueError(f"{path}: no rows")
    window = timedelta(hours=window_hours)
    if start is None and end is None:
        hours = Counter(t.replace(minute=0, second=0, microsecond=0) for t in times)
        start, end = busiest_window(hours, window_hours)
    elif start is None:
        assert end is not None
        start = end - window
    elif end is None:
        end = start + window
    if end <= start:
        raise ValueError("the replay window must end after it starts")
    all_lat, all_lng = np.asarray(lat), np.asarray(lng)
    lat_lo, lat_hi = np.percentile(all_lat, [0.5, 99.5])
    lng_lo, lng_hi = np.percentile(all_lng, [0.5, 99.5])
    keep = [i for i, t in enumerate(times) if start <= t < end]
    t0 = start.timestamp()
    offsets = np.array([times[i].timestamp() - t0 for i in keep], dtype=np.float64)
    minute = all(times[i].second == 0 and times[i].microsecond == 0 for i in keep)
    return DemandRows(
        start=start,
        end=end,
        offset_s=offsets,
        pickup_lat=all_lat[keep],
        pickup_lng=all_lng[keep],
        dropoff_lat=np.asarray(drop_lat)[keep],
        dropoff_lng=np.asarray(drop_lng)[keep],
        duration_s=np.asarray(durations)[keep],
        minute_resolution=minute,
        bounds=(float(lat_lo), float(lat_hi), float(lng_lo), float(lng_hi)),
    )


def _duration(text: str, path: Path) -> float:
    seconds = float(text)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{path}: duration_s must be a positive number of seconds, got {text!r}")
    return seconds


def destination(
    lat: Floats, lng: Floats, distance_m: Floats, bearing: Floats
) -> tuple[Floats, Floats]:
    """The points ``distance_m`` from (lat, lng) along great circles at ``bearing``
    (radians from north), vectorised."""
    phi1, lmb1 = np.radians(lat), np.radians(lng)
    d = distance_m / EARTH_RADIUS_M
    phi2 = np.arcsin(np.sin(phi1) * np.cos(d) + np.cos(phi1) * np.sin(d) * np.cos(bearing))
    lmb2 = lmb1 + np.arctan2(
        np.sin(bearing) * np.sin(d) * np.cos(phi1), np.cos(d) - np.sin(phi1) * np.sin(phi2)
    )
    return np.degrees(phi2), np.degrees(lmb2)


def draw_dropoffs(
    rng: np.random.Generator,
    pickup_lat: Floats,
    pickup_lng: Floats,
    *,
    bounds: tuple[float, float, float, float],
    eta: EtaModel = DEFAULT_MODEL,
) -> tuple[Floats, Floats]:
    """A drop-off for each pickup: a road trip length from the lognormal through NYC's
    median and 90th percentile, driven as a straight line of ``length / detour factor``
    in a uniformly random direction; redrawn (length and direction) while it falls
    outside ``bounds``, up to ``DROPOFF_REDRAWS`` times."""
    n = len(pickup_lat)
    out_lat = np.empty(n)
    out_lng = np.empty(n)
    todo = np.arange(n)
    lat_lo, lat_hi, lng_lo, lng_hi = bounds
    for attempt in range(DROPOFF_REDRAWS + 1):
        road_m = rng.lognormal(math.log(TRIP_ROAD_MEDIAN_M), TRIP_LOG_SIGMA, size=len(todo))
        bearing = rng.uniform(0.0, 2 * math.pi, size=len(todo))
        d_lat, d_lng = destination(
            pickup_lat[todo], pickup_lng[todo], road_m / eta.detour_factor, bearing
        )
        out_lat[todo], out_lng[todo] = d_lat, d_lng
        inside = (d_lat >= lat_lo) & (d_lat <= lat_hi) & (d_lng >= lng_lo) & (d_lng <= lng_hi)
        todo = todo[~inside]
        if len(todo) == 0 or attempt == DROPOFF_REDRAWS:
            break
    return out_lat, out_lng


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams, so changing one input (the decline rate, the fleet)
    leaves the others' draws unchanged."""
    # New streams go at the end: a child's seed depends on its position only.
    names = ("arrivals", "dropoffs", "drivers", "declines", "street", "shifts", "moves")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, children, strict=True)}


def build_requests(
    rows: DemandRows, *, seed: int = DEFAULT_SEED, eta: EtaModel = DEFAULT_MODEL
) -> list[RideRequest]:
    """The replay's requests in arrival order (ids ``trp_000000``, …): minute-resolution
    timestamps spread uniformly within their minute, missing drop-offs drawn, real
    durations kept."""
    rng = random_streams(seed)
    offsets = rows.offset_s.copy()
    if rows.minute_resolution:
        offsets += rng["arrivals"].uniform(0.0, 60.0, size=len(offsets))
    d_lat, d_lng = rows.dropoff_lat.copy(), rows.dropoff_lng.copy()
    missing = np.isnan(d_lat) | np.isnan(d_lng)
    if missing.any():
        drawn_lat, drawn_lng = draw_dropoffs(
            rng["dropoffs"],
            rows.pickup_lat[missing],
            rows.pickup_lng[missing],
            bounds=rows.bounds,
            eta=eta,
        )
        d_lat[missing], d_lng[missing] = drawn_lat, drawn_lng
    order = np.argsort(offsets, kind="stable")
    width = max(6, len(str(len(order))))
    return [
        RideRequest(
            f"trp_{k:0{width}d}",
            float(offsets[i]),
            LatLng(float(rows.pickup_lat[i]), float(rows.pickup_lng[i])),
            LatLng(float(d_lat[i]), float(d_lng[i])),
            None if math.isnan(rows.duration_s[i]) else float(rows.duration_s[i]),
        )
        for k, i in enumerate(order.tolist())
    ]


def driver_starts(
    requests: Sequence[RideRequest], n: int, *, seed: int = DEFAULT_SEED
) -> list[LatLng]:
    """``n`` start positions drawn (with replacement) from the replay's pickups, each
    moved by ``START_JITTER_M`` of Gaussian jitter per axis."""
    if n < 0:
        raise ValueError("the fleet size must not be negative")
    if not requests and n:
        raise ValueError("no pickups to place drivers at")
    rng = random_streams(seed)["drivers"]
    picks = rng.integers(0, len(requests), size=n) if n else np.zeros(0, dtype=np.int64)
    jitter = rng.normal(0.0, START_JITTER_M, size=(2, n))
    out = []
    for k, i in enumerate(picks.tolist()):
        p = requests[i].pickup
        out.append(
            LatLng(
                p.lat + jitter[0, k] / METRES_PER_DEGREE_LAT,
                p.lng + jitter[1, k] / (METRES_PER_DEGREE_LAT * math.cos(math.radians(p.lat))),
            )
        )
    return out
