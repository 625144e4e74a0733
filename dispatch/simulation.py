"""The simulator: real demand replayed through the dispatcher's own matching code.

A demand file (pickup time and place, optionally drop-off) is replayed against a fleet of
simulated drivers on a simulated clock. Every ``batch_s`` the simulated dispatcher does
what ``dispatch.dispatcher.Dispatcher.tick`` does: expire requests that waited too long,
search candidates for every queued request with the live index's rule (H3 cells ring
by ring, one ring past ``want``, ranked by ``geo.eta``, nearest
``CANDIDATES_PER_REQUEST`` within the maximum pickup ETA), and plan the batch with the
dispatcher's own planner (``dispatch.batch.planner``: greedy, or batched with the
fairness weight). Each assignment is an offer; after ``offer_accept_s`` the driver
accepts (or declines, at ``decline_rate``), drives to the pickup and then to the drop-off
in straight lines at the ETA model's effective speed, is paid the fare
(``fares.pricing.price``) at the drop-off and waits there for the next offer.

Pure apart from ``read_demand``, which reads the demand file: no Redis, no database, no
wall clock. Deterministic for a given seed. What is and is not simulated, and the KPIs'
definitions: ``docs/simulation.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import heapq
import io
import itertools
import json
import math
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from enum import IntEnum
from pathlib import Path
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core.fare_terms import OPENING_TERMS, FareRuleTerms
from core.settings import Settings
from dispatch import candidates
from dispatch.batch import fairness, planner
from dispatch.batch.planner import BATCH_MAX_REQUESTS, CANDIDATES_PER_REQUEST
from dispatch.batch.types import Candidate, DriverStats, Policy, Request
from fares.pricing import price
from geo import cells
from geo.eta import DEFAULT_MODEL, EtaModel
from geo.point import EARTH_RADIUS_M, LatLng

Floats = npt.NDArray[np.float64]


def _setting_default(name: str) -> Any:
    return Settings.model_fields[name].default


# The live service's defaults (``core.settings``), so a replay is the service as deployed.
DEFAULT_BATCH_S: float = _setting_default("dispatch_batch_s")
DEFAULT_MAX_PICKUP_ETA_S: int = _setting_default("max_pickup_eta_s")
DEFAULT_REQUEST_TIMEOUT_S: float = _setting_default("trip_request_timeout_s")
DEFAULT_RESOLUTION: int = _setting_default("h3_resolution")
# A driver reads the offer card and taps accept: a few seconds (the live offer lives
# 15 s, ``COOP_OFFER_TIMEOUT_S``; the simulated driver always answers in time).
DEFAULT_OFFER_ACCEPT_S = 4.0
DEFAULT_SEED = 20140430
# Without --start/--end, replay the busiest this-many consecutive clock hours.
DEFAULT_WINDOW_HOURS = 2

# The fare rule migration 0001 seeds (version 1). The simulator pays no per-trip
# cost-recovery fee (the period's budget is not simulated), so the driver keeps the
# whole fare.
SEEDED_FARE_RULE = FareRuleTerms(version=1, **OPENING_TERMS.payload())

# Trip length (road distance, what the meter and ``EtaModel.leg`` count) when the file
# has no drop-offs: lognormal through NYC's median ≈ 3.3 km and 90th percentile ≈ 10 km
# (TLC trip records; ``../shared/data/README.md``).
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


# ---------------------------------------------------------------------------------------
# Demand


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


def read_demand(
    path: Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window_hours: int = DEFAULT_WINDOW_HOURS,
    tz: tzinfo = DEMAND_TZ,
) -> DemandRows:
    """The rows of a demand CSV (gzip or plain) with ``start <= pickup_datetime < end``.

    Columns by name: ``pickup_datetime``, ``lat``, ``lon`` and optionally
    ``dropoff_lat``, ``dropoff_lon``; others (``base``) are ignored. Without ``start``
    and ``end`` the window is the busiest ``window_hours`` clock hours of the file; with
    one of them, the window is ``window_hours`` long from (or up to) it.
    """
    times: list[datetime] = []
    lat: list[float] = []
    lng: list[float] = []
    drop_lat: list[float] = []
    drop_lng: list[float] = []
    parsed: dict[str, datetime] = {}
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = {"pickup_datetime", "lat", "lon"} - set(header)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)} in {header}")
        i_t, i_lat, i_lng = (header.index(c) for c in ("pickup_datetime", "lat", "lon"))
        has_drop = "dropoff_lat" in header and "dropoff_lon" in header
        i_dlat = header.index("dropoff_lat") if has_drop else -1
        i_dlng = header.index("dropoff_lon") if has_drop else -1
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
        minute_resolution=minute,
        bounds=(float(lat_lo), float(lat_hi), float(lng_lo), float(lng_hi)),
    )


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


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams, so changing one input (the decline rate, the fleet)
    leaves the others' draws unchanged."""
    names = ("arrivals", "dropoffs", "drivers", "declines")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, children, strict=True)}


def build_requests(
    rows: DemandRows, *, seed: int = DEFAULT_SEED, eta: EtaModel = DEFAULT_MODEL
) -> list[RideRequest]:
    """The replay's requests in arrival order (ids ``trp_000000``, …): minute-resolution
    timestamps spread uniformly within their minute, missing drop-offs drawn."""
    rng = _streams(seed)
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
    rng = _streams(seed)["drivers"]
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


# ---------------------------------------------------------------------------------------
# The simulation


@dataclass(frozen=True, slots=True)
class SimConfig:
    policy: Policy = "batched"
    # The co-op's vote in [0, 1]; the greedy policy ignores it, as the live one does.
    fairness_weight: float = 0.0
    batch_s: float = DEFAULT_BATCH_S
    offer_accept_s: float = DEFAULT_OFFER_ACCEPT_S
    decline_rate: float = 0.0
    max_pickup_eta_s: int = DEFAULT_MAX_PICKUP_ETA_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    resolution: int = DEFAULT_RESOLUTION
    fare: FareRuleTerms = SEEDED_FARE_RULE
    eta: EtaModel = DEFAULT_MODEL
    seed: int = DEFAULT_SEED
    # Drivers are online from 0 to here (or to their last drop-off, if later); the
    # replay window's length. None: the last request's time.
    shift_end_s: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("greedy", "batched"):
            raise ValueError(f"policy must be greedy or batched, got {self.policy!r}")
        fairness.check_weight(self.fairness_weight)
        if not (self.batch_s > 0 and math.isfinite(self.batch_s)):
            raise ValueError("batch_s must be positive")
        if not (self.offer_accept_s >= 0 and math.isfinite(self.offer_accept_s)):
            raise ValueError("offer_accept_s must not be negative")
        if not 0.0 <= self.decline_rate < 1.0:
            raise ValueError("decline_rate must be in [0, 1)")
        if self.max_pickup_eta_s <= 0 or self.request_timeout_s <= 0:
            raise ValueError("max_pickup_eta_s and request_timeout_s must be positive")

    @property
    def unmatched_penalty_s(self) -> int:
        """The dispatcher's: twice the longest pickup ever offered."""
        return planner.unmatched_penalty_s(self.max_pickup_eta_s)


@dataclass(slots=True)
class TripRecord:
    trip_id: str
    requested_s: float
    status: Literal["open", "matched", "expired"] = "open"
    driver_id: str | None = None
    offers: int = 0
    accepted_s: float | None = None
    pickup_eta_s: int | None = None
    pickup_s: float | None = None
    dropoff_s: float | None = None
    expired_s: float | None = None
    distance_m: int | None = None
    duration_s: int | None = None
    driver_earnings_cents: int = 0


@dataclass(slots=True)
class DriverRecord:
    driver_id: str
    trips: int = 0
    earnings_cents: int = 0
    busy_s: float = 0.0  # accept → drop-off, summed
    online_s: float = 0.0
    # (accepted_s, dropoff_s) of each trip, in order.
    intervals: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Kpis:
    requests: int
    matched: int
    expired: int
    still_open: int
    match_rate: float
    offers: int
    declined: int
    batches: int
    pickup_eta_mean_s: float | None
    pickup_eta_p50_s: float | None
    pickup_eta_p95_s: float | None
    rider_wait_mean_s: float | None
    rider_wait_p95_s: float | None
    driver_utilisation: float
    drivers: int
    driver_earnings_total_cents: int
    earnings_per_online_hour_mean_cents: int
    earnings_per_online_hour_p10_cents: int
    earnings_per_online_hour_p50_cents: int
    earnings_per_online_hour_p90_cents: int
    earnings_gini: float
    simulated_s: float


@dataclass(frozen=True, slots=True)
class SimResult:
    kpis: Kpis
    trips: list[TripRecord]
    drivers: list[DriverRecord]


class _Event(IntEnum):
    # Order among events at the same instant: a rider's request, then answers to
    # offers, then drivers finishing trips; all before a dispatch tick at that instant.
    ARRIVAL = 0
    RESPONSE = 1
    DROPOFF = 2


class _DriverState(IntEnum):
    AVAILABLE = 0
    OFFERED = 1
    ON_TRIP = 2


def gini(values: Iterable[float]) -> float:
    """Gini coefficient in [0, 1) of non-negative values: 0 when all are equal (or all
    zero), approaching 1 as one value takes everything. Mean absolute difference over
    all ordered pairs divided by twice the mean."""
    x = np.sort(np.asarray(list(values), dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


class _Simulation:
    def __init__(
        self, requests: Sequence[RideRequest], starts: Sequence[LatLng], config: SimConfig
    ) -> None:
        self.cfg = config
        self.requests = list(requests)
        width = max(5, len(str(max(0, len(starts) - 1))))
        self.driver_ids = [f"drv_{k:0{width}d}" for k in range(len(starts))]
        self.driver_index = {d: k for k, d in enumerate(self.driver_ids)}
        self.position = list(starts)
        self.state = [_DriverState.AVAILABLE] * len(starts)
        self.idle_since_s = [0.0] * len(starts)
        self.cell = [cells.cell_of(p, config.resolution) for p in starts]
        self.moves = [0] * len(starts)  # bumped whenever a driver's position changes
        self.eta_cache: dict[int, dict[int, tuple[int, int]]] = {}
        # The live index: available drivers without an offer, by H3 cell.
        self.index: dict[str, set[int]] = {}
        for k, c in enumerate(self.cell):
            self.index.setdefault(c, set()).add(k)
        self.k_max = candidates.max_rings(
            config.eta, max_pickup_eta_s=config.max_pickup_eta_s, resolution=config.resolution
        )
        self.rings: dict[str, tuple[tuple[str, ...], ...]] = {}
        self.ring_of: dict[str, dict[str, int]] = {}  # per centre: cell → ring
        self.pickup_cell = [cells.cell_of(r.pickup, config.resolution) for r in self.requests]
        self.trips = [TripRecord(r.trip_id, r.requested_s) for r in self.requests]
        self.drivers = [DriverRecord(d) for d in self.driver_ids]
        self.trip_index = {r.trip_id: i for i, r in enumerate(self.requests)}
        # Requests that are queued or hold an offer, in arrival order (a declined one
        # keeps its place, as ``offers`` requeues it); value: whether queued.
        self.open: dict[int, bool] = {}
        self.by_age: deque[int] = deque()  # the same requests, oldest first, for expiry
        self.excluded: dict[int, set[str]] = {}
        # trip → (offer number, driver, the offer's pickup ETA)
        self.offer_of_trip: dict[int, tuple[int, int, int]] = {}
        self.events: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.offers = 0
        self.declined = 0
        self.batches = 0
        self.decline_rng = _streams(config.seed)["declines"]

    # -- events --------------------------------------------------------------------

    def _push(self, at: float, kind: _Event, a: int, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, int(kind), self.seq, a, b))

    def _make_available(self, k: int, now: float | None = None) -> None:
        self.state[k] = _DriverState.AVAILABLE
        self.index.setdefault(self.cell[k], set()).add(k)
        if now is not None:
            self.idle_since_s[k] = now

    def _reserve(self, k: int) -> None:
        # The matcher never gives a driver two trips, and the index holds only
        # available drivers: an offer to a busy driver is a bug here.
        assert self.state[k] is _DriverState.AVAILABLE, self.driver_ids[k]
        self.state[k] = _DriverState.OFFERED
        members = self.index[self.cell[k]]
        members.discard(k)
        if not members:  # the index holds occupied cells only
            del self.index[self.cell[k]]

    def _on_arrival(self, i: int) -> None:
        self.open[i] = True
        self.by_age.append(i)

    def _on_response(self, now: float, i: int, offer_no: int) -> None:
        held = self.offer_of_trip.get(i)
        if held is None or held[0] != offer_no:
            return  # withdrawn: the request expired while the offer was out
        del self.offer_of_trip[i]
        _, k, pickup_eta_s = held
        assert self.state[k] is _DriverState.OFFERED
        if self.cfg.decline_rate > 0 and self.decline_rng.random() < self.cfg.decline_rate:
            self.declined += 1
            self.excluded.setdefault(i, set()).add(self.driver_ids[k])
            self.open[i] = True
            self._make_available(k)
            return
        request, trip = self.requests[i], self.trips[i]
        del self.open[i]
        self.eta_cache.pop(i, None)
        # The driver has not moved since the offer: the pickup takes the offered ETA.
        self.state[k] = _DriverState.ON_TRIP
        leg = self.cfg.eta.leg(request.pickup, request.dropoff)
        fare = price(self.cfg.fare, distance_m=leg.distance_m, duration_s=leg.duration_s)
        trip.status = "matched"
        trip.driver_id = self.driver_ids[k]
        trip.accepted_s = now
        trip.pickup_eta_s = pickup_eta_s
        trip.pickup_s = now + pickup_eta_s
        trip.dropoff_s = trip.pickup_s + leg.duration_s
        trip.distance_m = leg.distance_m
        trip.duration_s = leg.duration_s
        trip.driver_earnings_cents = fare.driver_earnings_cents
        self._push(trip.dropoff_s, _Event.DROPOFF, k, i)

    def _on_dropoff(self, now: float, k: int, i: int) -> None:
        trip, driver = self.trips[i], self.drivers[k]
        assert trip.accepted_s is not None and self.state[k] is _DriverState.ON_TRIP
        driver.trips += 1
        driver.earnings_cents += trip.driver_earnings_cents
        driver.busy_s += now - trip.accepted_s
        driver.intervals.append((trip.accepted_s, now))
        self.position[k] = self.requests[i].dropoff
        self.moves[k] += 1
        self.cell[k] = cells.cell_of(self.position[k], self.cfg.resolution)
        self._make_available(k, now)

    # -- dispatch ------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        """As ``trips.expire_unmatched``: a request still open ``request_timeout_s``
        after it was made expires, and an offer it holds is withdrawn."""
        cutoff = now - self.cfg.request_timeout_s
        while self.by_age:
            i = self.by_age[0]
            if i not in self.open:
                self.by_age.popleft()
                continue
            if not self.trips[i].requested_s < cutoff:
                break
            self.by_age.popleft()
            del self.open[i]
            self.eta_cache.pop(i, None)
            self.trips[i].status = "expired"
            self.trips[i].expired_s = now
            held = self.offer_of_trip.pop(i, None)
            if held is not None:
                self._make_available(held[1])

    def _rings(self, centre: str) -> tuple[tuple[str, ...], ...]:
        rings = self.rings.get(centre)
        if rings is None:
            rings = self.rings[centre] = cells.disk_by_ring(centre, self.k_max)
            self.ring_of[centre] = {c: k for k, ring in enumerate(rings) for c in ring}
        return rings

    def _found(self, centre: str, want: int) -> list[int]:
        """What ``presence.candidates`` returns: available drivers ring by ring; once a
        ring brings the count to ``want``, one ring more, then stop."""
        rings = self._rings(centre)
        ring_of = self.ring_of[centre]
        per_ring: list[list[int]] | None = None
        if len(self.index) < len(ring_of):
            # Fewer occupied cells than cells in the disk (scarce supply): bucket the
            # occupied cells by ring rather than look up every cell of the disk. The
            # walk below then finds the same drivers as walking the rings.
            per_ring = [[] for _ in rings]
            for c, in_cell in self.index.items():
                k = ring_of.get(c)
                if k is not None:
                    per_ring[k].extend(in_cell)
        found: list[int] = []
        stop_after: int | None = None
        for k, ring in enumerate(rings):
            if per_ring is not None:
                found.extend(per_ring[k])
            else:
                for c in ring:
                    members = self.index.get(c)
                    if members:
                        found.extend(members)
            if stop_after is None and len(found) >= want:
                stop_after = k + 1
            if stop_after is not None and k >= stop_after:
                break
        return found

    def _search(self, i: int, cache: dict[tuple[str, int], list[int]]) -> tuple[Candidate, ...]:
        """``candidates.search`` then the dispatcher's cut: nearest first by (ETA, driver
        id), none beyond the maximum pickup ETA, at most ``CANDIDATES_PER_REQUEST``."""
        excluded = self.excluded.get(i, set())
        want = CANDIDATES_PER_REQUEST + len(excluded)
        key = (self.pickup_cell[i], want)
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._found(*key)
        pickup = self.requests[i].pickup
        seconds = self.cfg.eta.seconds
        limit = self.cfg.max_pickup_eta_s
        # A queued request meets the same drivers tick after tick: their ETAs are kept
        # until the driver moves (a new position generation) or the request leaves.
        known = self.eta_cache.setdefault(i, {})
        ranked: list[tuple[int, str]] = []
        for k in found:
            driver_id = self.driver_ids[k]
            if driver_id in excluded:
                continue
            hit = known.get(k)
            if hit is not None and hit[0] == self.moves[k]:
                s = hit[1]
            else:
                s = seconds(self.position[k], pickup)
                known[k] = (self.moves[k], s)
            if s <= limit:
                ranked.append((s, driver_id))
        ranked.sort()
        return tuple(Candidate(d, s) for s, d in ranked[:CANDIDATES_PER_REQUEST])

    def _tick(self, now: float) -> None:
        self._expire(now)
        batch = [i for i, queued in self.open.items() if queued][:BATCH_MAX_REQUESTS]
        if not batch:
            return
        self.batches += 1
        cache: dict[tuple[str, int], list[int]] = {}
        requests = [Request(self.requests[i].trip_id, self._search(i, cache)) for i in batch]
        stats: dict[str, DriverStats] = {}
        if self.cfg.policy == "batched" and self.cfg.fairness_weight > 0:
            # As the live index stores them: idle since the last drop-off (or the
            # shift's start), and what the driver has been paid this shift.
            for r in requests:
                for c in r.candidates:
                    k = self.driver_index[c.driver_id]
                    stats[c.driver_id] = DriverStats(
                        idle_s=max(0, int(now - self.idle_since_s[k])),
                        shift_earnings_cents=self.drivers[k].earnings_cents,
                    )
        chosen = planner.plan(
            requests,
            policy=self.cfg.policy,
            max_pickup_eta_s=self.cfg.max_pickup_eta_s,
            stats=stats,
            fairness_weight=self.cfg.fairness_weight,
        ).assignments
        for a in chosen:
            i, k = self.trip_index[a.trip_id], self.driver_index[a.driver_id]
            self.offers += 1
            self.trips[i].offers += 1
            self.open[i] = False
            self.offer_of_trip[i] = (self.offers, k, a.pickup_eta_s)
            self._reserve(k)
            self._push(now + self.cfg.offer_accept_s, _Event.RESPONSE, i, self.offers)

    def run(self, progress: Callable[[int, int], None] | None = None) -> SimResult:
        for i, r in enumerate(self.requests):
            self._push(r.requested_s, _Event.ARRIVAL, i)
        batch_s = self.cfg.batch_s
        tick = 0  # dispatch ticks at tick × batch_s, from 0
        now = 0.0
        arrived, total = 0, len(self.requests)
        # Tell the caller every tenth of the replay (a long one takes minutes).
        next_report = max(1, total // 10)
        while self.open or self.events:
            if not self.open:
                # Nothing to dispatch until the next event: jump to the first tick at
                # or after it (the clock is simulated; idle ticks would do nothing).
                tick = max(tick, math.ceil(self.events[0][0] / batch_s))
            now = tick * batch_s
            while self.events and self.events[0][0] <= now:
                at, kind, _, a, b = heapq.heappop(self.events)
                if kind == _Event.ARRIVAL:
                    self._on_arrival(a)
                    arrived += 1
                    if progress is not None and (arrived >= next_report or arrived == total):
                        progress(arrived, total)
                        next_report = arrived + max(1, total // 10)
                elif kind == _Event.RESPONSE:
                    self._on_response(at, a, b)
                else:
                    self._on_dropoff(at, a, b)
            self._tick(now)
            tick += 1
        return self._result(now)

    def _result(self, end_s: float) -> SimResult:
        shift_end_s = self.cfg.shift_end_s
        if shift_end_s is None:
            shift_end_s = max((r.requested_s for r in self.requests), default=0.0)
        for d in self.drivers:
            last = d.intervals[-1][1] if d.intervals else 0.0
            d.online_s = max(shift_end_s, last)
        return SimResult(
            kpis(self.trips, self.drivers, self.offers, self.declined, self.batches, end_s),
            self.trips,
            self.drivers,
        )


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def kpis(
    trips: Sequence[TripRecord],
    drivers: Sequence[DriverRecord],
    offers: int,
    declined: int,
    batches: int,
    simulated_s: float,
) -> Kpis:
    matched = [t for t in trips if t.status == "matched"]
    etas = [float(t.pickup_eta_s) for t in matched if t.pickup_eta_s is not None]
    waits = [t.pickup_s - t.requested_s for t in matched if t.pickup_s is not None]
    online = sum(d.online_s for d in drivers)
    per_hour = [d.earnings_cents / (d.online_s / 3600) if d.online_s > 0 else 0.0 for d in drivers]

    def cents(q: float) -> int:
        return round(float(np.percentile(per_hour, q))) if per_hour else 0

    return Kpis(
        requests=len(trips),
        matched=len(matched),
        expired=sum(1 for t in trips if t.status == "expired"),
        still_open=sum(1 for t in trips if t.status == "open"),
        match_rate=len(matched) / len(trips) if trips else 0.0,
        offers=offers,
        declined=declined,
        batches=batches,
        pickup_eta_mean_s=_mean(etas),
        pickup_eta_p50_s=_pct(etas, 50),
        pickup_eta_p95_s=_pct(etas, 95),
        rider_wait_mean_s=_mean(waits),
        rider_wait_p95_s=_pct(waits, 95),
        driver_utilisation=sum(d.busy_s for d in drivers) / online if online > 0 else 0.0,
        drivers=len(drivers),
        driver_earnings_total_cents=sum(d.earnings_cents for d in drivers),
        earnings_per_online_hour_mean_cents=round(float(np.mean(per_hour))) if per_hour else 0,
        earnings_per_online_hour_p10_cents=cents(10),
        earnings_per_online_hour_p50_cents=cents(50),
        earnings_per_online_hour_p90_cents=cents(90),
        earnings_gini=gini(per_hour),
        simulated_s=simulated_s,
    )


def simulate(
    requests: Sequence[RideRequest],
    starts: Sequence[LatLng],
    config: SimConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Replay ``requests`` (in arrival order) against drivers starting at ``starts``
    (ids ``drv_00000``, … in that order) until every request is matched or expired and
    every trip has ended."""
    if any(b.requested_s < a.requested_s for a, b in itertools.pairwise(requests)):
        raise ValueError("requests must be in arrival order")
    if any(r.requested_s < 0 for r in requests):
        raise ValueError("requests must not come before the replay's start (0 s)")
    return _Simulation(requests, starts, config).run(progress)


# ---------------------------------------------------------------------------------------
# Command line (``coopride simulate``; the flags are declared in ``server/cli.py``)


def _parse_fare(text: str | None) -> FareRuleTerms:
    if text is None:
        return SEEDED_FARE_RULE
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError("--fare takes BASE,PER_KM,PER_MINUTE,MINIMUM in whole cents")
    base, per_km, per_minute, minimum = (int(p) for p in parts)
    return replace(
        SEEDED_FARE_RULE,
        version=0,
        base_cents=base,
        per_km_cents=per_km,
        per_minute_cents=per_minute,
        minimum_cents=minimum,
    )


def _arg(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def run_cli(args: argparse.Namespace) -> int:
    """``coopride simulate``: replay the file, print the KPIs (one JSON object on stdout
    with ``--json``); progress goes to stderr. Returns the exit status."""
    try:
        start = parse_local_time(args.start) if getattr(args, "start", None) else None
        end = parse_local_time(args.end) if getattr(args, "end", None) else None
        seed = int(_arg(args, "seed", DEFAULT_SEED))
        config = SimConfig(
            policy=args.policy,
            fairness_weight=float(_arg(args, "fairness", 0.0)),
            batch_s=float(_arg(args, "batch_s", DEFAULT_BATCH_S)),
            offer_accept_s=float(_arg(args, "offer_accept_s", DEFAULT_OFFER_ACCEPT_S)),
            decline_rate=float(_arg(args, "decline_rate", 0.0)),
            max_pickup_eta_s=int(_arg(args, "max_pickup_eta_s", DEFAULT_MAX_PICKUP_ETA_S)),
            request_timeout_s=float(_arg(args, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S)),
            fare=_parse_fare(getattr(args, "fare", None)),
            seed=seed,
        )
        speedup = float(_arg(args, "speedup", 1.0))
        if not speedup > 0:
            raise ValueError("--speedup must be positive")
        rows = read_demand(Path(args.demand), start=start, end=end)
        requests = build_requests(rows, seed=seed, eta=config.eta)
        if int(args.drivers) < 1:
            raise ValueError("--drivers must be at least 1")
        starts = driver_starts(requests, int(args.drivers), seed=seed)
    except (ValueError, OSError) as exc:
        print(f"coopride simulate: {exc}", file=sys.stderr)
        return 2
    if config.policy == "greedy" and config.fairness_weight > 0:
        print("[simulate] note: greedy ignores --fairness, as the live one does", file=sys.stderr)
    window_s = (rows.end - rows.start).total_seconds()
    config = replace(config, shift_end_s=window_s)
    print(
        f"[simulate] {len(requests)} requests from {rows.start:%Y-%m-%d %H:%M} to "
        f"{rows.end:%Y-%m-%d %H:%M} ({rows.start.tzname()}), {len(starts)} drivers, "
        f"policy {config.policy}, fairness {config.fairness_weight}, seed {seed}",
        file=sys.stderr,
        flush=True,
    )

    def report(arrived: int, total: int) -> None:
        print(f"[simulate] {arrived}/{total} requests replayed", file=sys.stderr, flush=True)

    result = simulate(requests, starts, config, progress=report)
    out: dict[str, Any] = asdict(result.kpis)
    out["scenario"] = {
        "demand": str(args.demand),
        "start": rows.start.isoformat(),
        "end": rows.end.isoformat(),
        "policy": config.policy,
        "drivers": len(starts),
        "fairness_weight": config.fairness_weight,
        "seed": seed,
        "batch_s": config.batch_s,
        "offer_accept_s": config.offer_accept_s,
        "decline_rate": config.decline_rate,
        "max_pickup_eta_s": config.max_pickup_eta_s,
        "request_timeout_s": config.request_timeout_s,
        "fare_cents": [
            config.fare.base_cents,
            config.fare.per_km_cents,
            config.fare.per_minute_cents,
            config.fare.minimum_cents,
        ],
        "speedup": speedup,
        "clock": "simulated",
    }
    if getattr(args, "json", False):
        print(json.dumps(out, allow_nan=False))
    else:
        for key, value in out.items():
            if key != "scenario":
                print(f"{key:<40} {value}")
    return 0
