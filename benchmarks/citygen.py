"""Realistic synthetic cities for benchmarks: riders and drivers placed like real New
York demand, and the sparse candidate graph built the way the dispatcher builds it.

Positions are sampled from every Uber pickup in NYC in April 2014
(``data/nyc_uber_pickups_2014-04.csv.gz``; NYC TLC records released to
FiveThirtyEight), with a fixed seed and a little jitter so that riders on the same
4-decimal corner are not all at one point. Requests come from the evening peak
(17:00–20:00, when the co-op is busiest and batching matters most); drivers are spread
like the whole month's demand, which is where drivers end up after drop-offs and where
they wait for work.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.data import DataFile
from dispatch.batch.types import Candidate, Request
from geo import cells
from geo.eta import EtaModel
from geo.point import EARTH_RADIUS_M, LatLng

ROOT = Path(__file__).resolve().parent.parent
PICKUPS_CSV = ROOT / "data" / DataFile.PICKUPS.value

# Hours (local time) whose pickups become the batch's requests.
PEAK_HOURS = range(17, 20)
# A GPS fix and a street address are a few tens of metres apart; the data's 4 decimals
# are an ~11 m grid. Gaussian jitter of this many metres on each axis.
JITTER_M = 40.0
METRES_PER_DEGREE_LAT = 111_195.0

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Pickups:
    lat: Floats
    lng: Floats
    hour: Ints


@dataclass(frozen=True, slots=True)
class City:
    request_ids: list[str]
    request_lat: Floats
    request_lng: Floats
    driver_ids: list[str]
    driver_lat: Floats
    driver_lng: Floats


def load_pickups(path: Path = PICKUPS_CSV) -> Pickups:
    lat: list[float] = []
    lng: list[float] = []
    hour: list[int] = []
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:3] != ["pickup_datetime", "lat", "lon"]:
            raise ValueError(f"unexpected columns in {path}: {header}")
        for row in reader:
            hour.append(int(row[0][11:13]))
            lat.append(float(row[1]))
            lng.append(float(row[2]))
    return Pickups(np.array(lat), np.array(lng), np.array(hour, dtype=np.int64))


def _sample(rng: np.random.Generator, lat: Floats, lng: Floats, n: int) -> tuple[Floats, Floats]:
    idx = rng.choice(len(lat), size=n, replace=False)
    jitter = rng.normal(0.0, JITTER_M, size=(2, n))
    out_lat = lat[idx] + jitter[0] / METRES_PER_DEGREE_LAT
    out_lng = lng[idx] + jitter[1] / (METRES_PER_DEGREE_LAT * np.cos(np.radians(lat[idx])))
    return out_lat, out_lng


def make_city(pickups: Pickups, *, requests: int, drivers: int, seed: int) -> City:
    """``requests`` riders from the evening peak and ``drivers`` drivers spread like the
    month's demand, with fixed ids (``trp_00000``, ``drv_00000``, …)."""
    rng = np.random.default_rng(seed)
    peak = np.isin(pickups.hour, list(PEAK_HOURS))
    r_lat, r_lng = _sample(rng, pickups.lat[peak], pickups.lng[peak], requests)
    d_lat, d_lng = _sample(rng, pickups.lat, pickups.lng, drivers)
    return City(
        request_ids=[f"trp_{i:05d}" for i in range(requests)],
        request_lat=r_lat,
        request_lng=r_lng,
        driver_ids=[f"drv_{i:05d}" for i in range(drivers)],
        driver_lat=d_lat,
        driver_lng=d_lng,
    )


def haversine_m(lat1: Floats, lng1: Floats, lat2: Floats, lng2: Floats) -> Floats:
    """``geo.point.haversine_m``, vectorised (broadcasts like numpy)."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlmb = np.radians(lng2 - lng1)
    h = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    out: Floats = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return out


def eta_s(eta: EtaModel, lat1: Floats, lng1: Floats, lat2: Floats, lng2: Floats) -> Ints:
    """``EtaModel.seconds`` from (lat1, lng1) to (lat2, lng2): vectorised here for the
    straight-line model; any other model is asked as the dispatcher asks it, every leg
    in one ``seconds_many`` call (``dispatch.candidates.rank``)."""
    if type(eta) is not EtaModel:
        origins = [LatLng(float(a), float(b)) for a, b in zip(lat1, lng1, strict=True)]
        destinations = [LatLng(float(a), float(b)) for a, b in zip(lat2, lng2, strict=True)]
        return np.asarray(eta.seconds_many(origins, destinations), dtype=np.int64)
    road_m = haversine_m(lat1, lng1, lat2, lng2) * eta.detour_factor
    out: Ints = np.ceil(road_m / eta.speed_mps).astype(np.int64)
    return out


def driver_index(city: City, resolution: int) -> dict[str, list[int]]:
    """Drivers by H3 cell: what the live Redis index (``dispatch.presence``) holds."""
    by_cell: dict[str, list[int]] = defaultdict(list)
    for k in range(len(city.driver_ids)):
        point = LatLng(float(city.driver_lat[k]), float(city.driver_lng[k]))
        by_cell[cells.cell_of(point, resolution)].append(k)
    return by_cell


def _found_in_rings(
    by_cell: dict[str, list[int]], centre: str, k_max: int, want: int, extra_rings: int
) -> list[int]:
    """What ``presence.candidates`` returns: drivers ring by ring, stopping after the
    first ring that brings the count to ``want`` (then ``extra_rings`` more). The rings
    are those of ``cells.disk_by_ring(centre, k_max)``, computed only as far as the
    search goes."""
    found: list[int] = []
    stop_at = k_max
    for k in range(k_max + 1):
        for cell in cells.ring(centre, k):
            found.extend(by_cell.get(cell, ()))
        if len(found) >= want and stop_at == k_max:
            stop_at = min(k_max, k + extra_rings)
        if k >= stop_at:
            break
    return found


def exact_candidate_graph(
    city: City,
    *,
    eta: EtaModel,
    want: int,
    max_pickup_eta_s: int,
) -> list[Request]:
    """The live rule (``dispatch.presence`` since its GEO-set search): each request's
    exact ``want`` nearest drivers in straight line within the radius a driver covers in
    ``max_pickup_eta_s``, ranked by (ETA, driver id). Computed here with a KD-tree on
    the same equirectangular metres the Lua script uses."""
    from scipy.spatial import cKDTree

    if not city.request_ids or not city.driver_ids:
        return [Request(t, ()) for t in city.request_ids]
    lat0 = float(np.mean(city.request_lat))
    kx = METRES_PER_DEGREE_LAT * math.cos(math.radians(lat0))
    drivers = np.column_stack((city.driver_lng * kx, city.driver_lat * METRES_PER_DEGREE_LAT))
    riders = np.column_stack((city.request_lng * kx, city.request_lat * METRES_PER_DEGREE_LAT))
    tree = cKDTree(drivers)
    _, idx = tree.query(
        riders, k=[*range(1, want + 1)], distance_upper_bound=eta.reach_m(max_pickup_eta_s)
    )
    ids = city.driver_ids
    n = len(ids)
    # Every leg of the batch in one ETA call, as the dispatcher ranks them.
    found_of = [row[row < n] for row in idx]
    riders_of = np.repeat(np.arange(len(found_of)), [len(f) for f in found_of])
    drivers_of = np.concatenate(found_of).astype(np.int64) if found_of else np.array([], int)
    seconds_all = eta_s(
        eta,
        city.driver_lat[drivers_of],
        city.driver_lng[drivers_of],
        city.request_lat[riders_of],
        city.request_lng[riders_of],
    )
    out = []
    start = 0
    for i, found in enumerate(found_of):
        seconds = seconds_all[start : start + len(found)]
        start += len(found)
        edges = sorted(
            (int(s_), ids[int(d)])
            for s_, d in zip(seconds, found, strict=True)
            if s_ <= max_pickup_eta_s
        )
        out.append(Request(city.request_ids[i], tuple(Candidate(d, s_) for s_, d in edges)))
    return out


def candidate_graph(
    city: City,
    by_cell: dict[str, list[int]],
    *,
    eta: EtaModel,
    resolution: int,
    want: int,
    max_pickup_eta_s: int,
    extra_rings: int = 0,
    keep_all: bool = False,
) -> list[Request]:
    """Each request's nearest ``want`` drivers within ``max_pickup_eta_s``, searched as
    ``dispatch.candidates.search`` does (H3 disk grown ring by ring, up to the rings that
    cover the reachable radius), ranked by (ETA, driver id). With ``keep_all``, every
    driver the search found, as ``candidates.search`` returns them today.

    Requests in one cell see the same drivers (the search depends on the cell only), so
    each cell is searched once and its requests' ETAs computed together."""
    k_max = cells.rings_to_cover(eta.reach_m(max_pickup_eta_s), resolution)
    by_request_cell: dict[str, list[int]] = defaultdict(list)
    for i in range(len(city.request_ids)):
        point = LatLng(float(city.request_lat[i]), float(city.request_lng[i]))
        by_request_cell[cells.cell_of(point, resolution)].append(i)
    edges: list[tuple[Candidate, ...]] = [()] * len(city.request_ids)
    ids = city.driver_ids
    for centre, members in by_request_cell.items():
        found_ids = sorted(_found_in_rings(by_cell, centre, k_max, want, extra_rings))
        if not found_ids:
            continue
        found = np.array(found_ids, dtype=np.int64)
        rows = np.array(members, dtype=np.int64)
        seconds = eta_s(
            eta,
            city.driver_lat[found][None, :],
            city.driver_lng[found][None, :],
            city.request_lat[rows][:, None],
            city.request_lng[rows][:, None],
        )
        # Rank by (ETA, driver id): columns are in driver-id order, so one integer key
        # orders both, and a partial sort finds the first ``want`` of each row.
        n_found = len(found)
        key = seconds * n_found + np.arange(n_found, dtype=np.int64)
        if n_found > want and not keep_all:
            key = np.partition(key, want - 1, axis=1)[:, :want]
        key.sort(axis=1)
        for r, i in enumerate(members):
            edges[i] = tuple(
                Candidate(ids[found_ids[c]], s)
                for s, c in (divmod(k, n_found) for k in key[r].tolist())
                if s <= max_pickup_eta_s
            )
    return [Request(t, e) for t, e in zip(city.request_ids, edges, strict=True)]


def driver_number(driver_id: str) -> int:
    """The column of ``driver_id`` (``drv_00042`` → 42) in ``City``'s arrays."""
    return int(driver_id.removeprefix("drv_"))


def only_requests(city: City, keep: list[int]) -> City:
    """The same city with only the requests at positions ``keep``."""
    return replace(
        city,
        request_ids=[city.request_ids[i] for i in keep],
        request_lat=city.request_lat[keep],
        request_lng=city.request_lng[keep],
    )


def only_drivers(city: City, keep: list[int]) -> City:
    """The same city with only the drivers at positions ``keep`` (ids unchanged)."""
    return replace(
        city,
        driver_ids=[city.driver_ids[k] for k in keep],
        driver_lat=city.driver_lat[keep],
        driver_lng=city.driver_lng[keep],
    )


def without_drivers(by_cell: dict[str, list[int]], gone: set[int]) -> dict[str, list[int]]:
    """The index after ``gone`` drivers took trips (no longer available)."""
    return {cell: [k for k in ks if k not in gone] for cell, ks in by_cell.items()}


def dense_eta_matrix(city: City, eta: EtaModel) -> Ints:
    """Every request × every driver pickup ETA (s)."""
    return eta_s(
        eta,
        city.driver_lat[None, :],
        city.driver_lng[None, :],
        city.request_lat[:, None],
        city.request_lng[:, None],
    )


def edge_mismatches(city: City, requests: list[Request], eta: EtaModel) -> Iterator[str]:
    """Edges whose vectorised ETA differs from ``eta.seconds`` (should be none)."""
    driver_at = {
        d: LatLng(float(la), float(ln))
        for d, la, ln in zip(city.driver_ids, city.driver_lat, city.driver_lng, strict=True)
    }
    for i, r in enumerate(requests):
        pickup = LatLng(float(city.request_lat[i]), float(city.request_lng[i]))
        for e in r.candidates:
            if eta.seconds(driver_at[e.driver_id], pickup) != e.pickup_eta_s:
                yield f"{r.trip_id}→{e.driver_id}"
