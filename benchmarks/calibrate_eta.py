"""Fit the calibrated ETA model and write ``data/eta_calibration.json``.

Two sources of truth, in order of preference:

- ``--observed FILE``: real trips, a CSV with ``pickup_datetime`` (local time,
  ``YYYY-MM-DD HH:MM:SS``), ``pickup_lat``, ``pickup_lon``, ``dropoff_lat``,
  ``dropoff_lon``, ``duration_s`` and optionally ``distance_m`` (the metered road
  distance). The pace is fitted on the durations; the detour factor on ``distance_m``
  when the file has it, else it stays at ``geo.eta.DEFAULT_DETOUR_FACTOR`` (a duration
  alone cannot tell a long route from a slow one).
- otherwise (what this checkout has): the road-network reference. Origins are every real
  pickup of April 2014 (``data/nyc_uber_pickups_2014-04.csv.gz``; NYC TLC
  records released to FiveThirtyEight); each gets a destination at a distance drawn
  from NYC's trip-length distribution (log-normal, median 3.3 km, p90 10 km), in a
  random direction, moved to the nearest real pickup location (so destinations are on
  land, where people go). Where both ends are covered by the Midtown road graph
  (``geo/roads/``; map data © OpenStreetMap contributors, ODbL), the fastest route
  at the pickup's hour is the target. This is routing with assumed speeds, not observed
  durations: see ``docs/eta.md``.

The model (``geo.eta.calibrated.CalibratedEtaModel``) is fitted in log space by weighted least
squares with Huber weights: log(target ÷ straight-line metres) = a trip-length curve +
an hour-of-week term (pace only) + the mean of both ends' district (H3 res 6) and cell
(H3 res 8) offsets + the mean of both ends' districts' direction profiles. Offsets are
shrunk towards the coarser level (ridge penalties counted in trips), so a cell with few
trips keeps its district's value and a district with none the global one.

Run: ``.venv/bin/python benchmarks/calibrate_eta.py [--observed FILE] [--until DATE]``.
Fixed seed: the same inputs give the same file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from scipy import sparse  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from benchmarks.citygen import PICKUPS_CSV, haversine_m  # noqa: E402
from core.data import DataFile  # noqa: E402
from geo import cells, roads  # noqa: E402
from geo.eta import DEFAULT_DETOUR_FACTOR, DEFAULT_SPEED_MPS  # noqa: E402
from geo.eta.calibrated import (  # noqa: E402
    DIRECTION_KNOTS,
    DIRECTION_PERIOD_DEG,
    HOURS_PER_WEEK,
    EtaCalibration,
    Surface,
)
from geo.point import LatLng  # noqa: E402

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

SEED = 20140401
TIMEZONE = "America/New_York"
CELL_RESOLUTION = 8
# H3 res 6 cells are ~36 km²: a few neighbourhoods, small enough that one street grid
# (and so one direction profile) dominates each.
DISTRICT_RESOLUTION = 6
# Trip lengths (straight line) in NYC: log-normal with median 3.3 km and p90 10 km.
TRIP_MEDIAN_M = 3300.0
TRIP_P90_M = 10_000.0
TRIP_SIGMA = math.log(TRIP_P90_M / TRIP_MEDIAN_M) / 1.2815515655446004
TRIP_MIN_M, TRIP_MAX_M = 150.0, 40_000.0
# A destination is the real pickup location nearest the drawn point, if one is within
# this (else another direction is tried).
DEST_TOLERANCE_M, DEST_TOLERANCE_SHARE, DEST_TRIES = 150.0, 0.1, 8
DISTANCE_KNOTS_M: tuple[float, ...] = tuple(250.0 * 2**i for i in range(8))  # 250 m … 32 km
# Ridge penalties, in units of one trip's weight.
PENALTY_DISTANCE_STEP = 10.0  # on differences between neighbouring knots: flat tails
PENALTY_HOUR = 5.0
PENALTY_DISTRICT = 20.0
PENALTY_CELL = 20.0
PENALTY_DIRECTION = 20.0
# A district is covered by the fit when at least this many trip ends lie in it.
COVERAGE_MIN_TRIP_ENDS = 500
# Covered origins get this many destinations each (more trips where the target exists).
DRAWS_PER_COVERED_ORIGIN = 4
HUBER_K = 1.345
IRLS_ROUNDS = 5
# Observed trips outside these bounds are treated as recording errors.
OBSERVED_MIN_STRAIGHT_M = 50.0
OBSERVED_MAX_STRAIGHT_MPS = 40.0


@dataclass(frozen=True, slots=True)
class Pickups:
    lat: Floats
    lng: Floats
    minute: Ints  # minutes since 1970-01-01 00:00 local time (naive)


@dataclass(frozen=True, slots=True)
class Pairs:
    o_lat: Floats
    o_lng: Floats
    d_lat: Floats
    d_lng: Floats
    minute: Ints

    def __len__(self) -> int:
        return int(self.o_lat.size)

    def take(self, mask: npt.NDArray[np.bool_] | Ints) -> Pairs:
        return Pairs(
            self.o_lat[mask],
            self.o_lng[mask],
            self.d_lat[mask],
            self.d_lng[mask],
            self.minute[mask],
        )

    @property
    def straight_m(self) -> Floats:
        return haversine_m(self.o_lat, self.o_lng, self.d_lat, self.d_lng)

    @property
    def how(self) -> Ints:
        return hour_of_week(self.minute)


def hour_of_week(minute: Ints) -> Ints:
    """0 = Monday 00:00. 1970-01-01 was a Thursday (day 3 of the week)."""
    day = minute // 1440
    out: Ints = ((day + 3) % 7) * 24 + (minute % 1440) // 60
    return out


def parse_minute(text: str) -> int:
    """``YYYY-MM-DD HH:MM[:SS]`` local time → minutes since 1970-01-01 00:00 local."""
    when = datetime.fromisoformat(text.strip())
    days = when.toordinal() - 719163  # date(1970, 1, 1).toordinal()
    return days * 1440 + when.hour * 60 + when.minute


def load_pickups(path: Path = PICKUPS_CSV) -> Pickups:
    lat: list[float] = []
    lng: list[float] = []
    minute: list[int] = []
    days: dict[str, int] = {}
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:3] != ["pickup_datetime", "lat", "lon"]:
            raise ValueError(f"unexpected columns in {path}: {header}")
        for row in reader:
            stamp = row[0]
            day = days.get(stamp[:10])
            if day is None:
                day = days[stamp[:10]] = parse_minute(stamp[:10] + " 00:00")
            minute.append(day + int(stamp[11:13]) * 60 + int(stamp[14:16]))
            lat.append(float(row[1]))
            lng.append(float(row[2]))
    return Pickups(np.array(lat), np.array(lng), np.array(minute, dtype=np.int64))


def _xy(lat: Floats, lng: Floats) -> npt.NDArray[np.float64]:
    k = math.pi / 180.0 * 6_371_008.8
    return np.column_stack([lng * k * math.cos(math.radians(40.73)), lat * k])


def sample_pairs(pickups: Pickups, rng: np.random.Generator) -> Pairs:
    """Every pickup as an origin, with a destination as described in the module doc."""
    pool = np.unique(np.column_stack([pickups.lat, pickups.lng]), axis=0)
    tree = cKDTree(_xy(pool[:, 0], pool[:, 1]))
    n = pickups.lat.size
    origin = _xy(pickups.lat, pickups.lng)
    length = np.clip(
        rng.lognormal(math.log(TRIP_MEDIAN_M), TRIP_SIGMA, size=n), TRIP_MIN_M, TRIP_MAX_M
    )
    dest = np.full(n, -1, dtype=np.int64)
    for _ in range(DEST_TRIES):
        todo = np.nonzero(dest < 0)[0]
        if todo.size == 0:
            break
        angle = rng.uniform(0.0, 2 * math.pi, size=todo.size)
        target = origin[todo] + length[todo, None] * np.column_stack([np.cos(angle), np.sin(angle)])
        dist, nearest = tree.query(target)
        ok = dist <= np.maximum(DEST_TOLERANCE_M, DEST_TOLERANCE_SHARE * length[todo])
        dest[todo[ok]] = nearest[ok]
    keep = dest >= 0
    return Pairs(
        pickups.lat[keep],
        pickups.lng[keep],
        pool[dest[keep], 0],
        pool[dest[keep], 1],
        pickups.minute[keep],
    )


@dataclass(frozen=True, slots=True)
class Targets:
    """Pairs with what the model should predict for them."""

    pairs: Pairs
    seconds: Floats
    metres: Floats | None


def covered(router: roads.RoadRouter, pairs: Pairs) -> npt.NDArray[np.bool_]:
    a, _ = router.graph.snap_many(pairs.o_lat, pairs.o_lng)
    b, _ = router.graph.snap_many(pairs.d_lat, pairs.d_lng)
    out: npt.NDArray[np.bool_] = (a >= 0) & (b >= 0)
    return out


def road_reference(router: roads.RoadRouter, pairs: Pairs, *, metres: bool = True) -> Targets:
    """What ``RoadNetworkEtaModel`` says for pairs it covers (all of ``pairs`` must be):
    seconds at the pickup's hour, and (optionally) metres along the fastest route."""
    graph = router.graph
    a, a_off = graph.snap_many(pairs.o_lat, pairs.o_lng)
    b, b_off = graph.snap_many(pairs.d_lat, pairs.d_lng)
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("road_reference needs pairs the road graph covers")
    congestion = np.array([roads.congestion_factor(h) for h in range(HOURS_PER_WEEK)])
    table = np.asarray(router.table)
    free_flow = table[a, b] / roads.TABLE_SCALE + (a_off + b_off) / roads.ACCESS_MPS
    seconds = np.ceil(free_flow * congestion[pairs.how])
    if not metres:
        return Targets(pairs, seconds, None)
    route_m = np.empty(len(pairs))
    sources = np.unique(a)
    for start in range(0, sources.size, 256):
        chunk = sources[start : start + 256]
        _, lengths = graph.shortest_paths(chunk)
        row_of = {int(s): i for i, s in enumerate(chunk)}
        here = np.nonzero(np.isin(a, chunk))[0]
        rows = np.array([row_of[int(s)] for s in a[here]], dtype=np.int64)
        route_m[here] = lengths[rows, b[here]]
    return Targets(pairs, seconds, route_m + a_off + b_off)


def read_observed(path: Path) -> Targets:
    """Observed trips (see the module doc), implausible rows dropped."""
    rows: list[tuple[float, float, float, float, int, float, float]] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        needed = {
            "pickup_datetime",
            "pickup_lat",
            "pickup_lon",
            "dropoff_lat",
            "dropoff_lon",
            "duration_s",
        }
        if missing := needed - fields:
            raise ValueError(f"{path} lacks columns {sorted(missing)}")
        has_distance = "distance_m" in fields
        for row in reader:
            try:
                rows.append(
                    (
                        float(row["pickup_lat"]),
                        float(row["pickup_lon"]),
                        float(row["dropoff_lat"]),
                        float(row["dropoff_lon"]),
                        parse_minute(row["pickup_datetime"]),
                        float(row["duration_s"]),
                        float(row["distance_m"]) if has_distance else math.nan,
                    )
                )
            except (ValueError, KeyError):
                continue
    data = np.array(rows, dtype=np.float64).reshape(-1, 7)
    pairs = Pairs(data[:, 0], data[:, 1], data[:, 2], data[:, 3], data[:, 4].astype(np.int64))
    straight = pairs.straight_m
    ok = np.isfinite(data).all(axis=1) if has_distance else np.isfinite(data[:, :6]).all(axis=1)
    ok &= (straight >= OBSERVED_MIN_STRAIGHT_M) & (data[:, 5] > 0)
    ok &= straight / np.maximum(data[:, 5], 1e-9) <= OBSERVED_MAX_STRAIGHT_MPS
    if has_distance:
        ok &= data[:, 6] >= straight * 0.98
    return Targets(pairs.take(ok), data[ok, 5], data[ok, 6] if has_distance else None)


# --- the fit -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Design:
    """The columns every fit shares, for one set of pairs."""

    distance_w: Floats  # n × knots hat weights
    how: Ints
    o_cell: list[str]
    d_cell: list[str]
    o_district: list[str]
    d_district: list[str]
    bearing: Floats  # in direction-knot units, [0, DIRECTION_KNOTS)


def _cells(lat: Floats, lng: Floats) -> list[str]:
    return [
        cells.cell_of(LatLng(a, b), CELL_RESOLUTION)
        for a, b in zip(lat.tolist(), lng.tolist(), strict=True)
    ]


def _design(pairs: Pairs) -> _Design:
    straight = np.maximum(pairs.straight_m, 1.0)
    ln_knots = np.log(np.array(DISTANCE_KNOTS_M))
    x = np.log(straight)
    eye = np.eye(len(DISTANCE_KNOTS_M))
    weights = np.column_stack([np.interp(x, ln_knots, eye[j]) for j in range(eye.shape[0])])
    o_cell = _cells(pairs.o_lat, pairs.o_lng)
    d_cell = _cells(pairs.d_lat, pairs.d_lng)
    district_of = {c: cells.parent(c, DISTRICT_RESOLUTION) for c in set(o_cell) | set(d_cell)}
    dx = (pairs.d_lng - pairs.o_lng) * np.cos(np.radians(pairs.o_lat))
    dy = pairs.d_lat - pairs.o_lat
    degrees = np.mod(np.degrees(np.arctan2(dy, dx)), DIRECTION_PERIOD_DEG)
    return _Design(
        distance_w=weights,
        how=pairs.how,
        o_cell=o_cell,
        d_cell=d_cell,
        o_district=[district_of[c] for c in o_cell],
        d_district=[district_of[c] for c in d_cell],
        bearing=degrees / (DIRECTION_PERIOD_DEG / DIRECTION_KNOTS),
    )


def _fit_surface(
    design: _Design, y: Floats, *, with_hours: bool
) -> tuple[Surface, tuple[float, ...], dict[str, float]]:
    """Weighted least squares with Huber weights; returns the surface, the hour-of-week
    offsets (zeros without ``with_hours``) and fit figures."""
    n = y.size
    n_knots = len(DISTANCE_KNOTS_M)
    districts = sorted(set(design.o_district) | set(design.d_district))
    cell_names = sorted(set(design.o_cell) | set(design.d_cell))
    col = 0
    knot_cols = np.arange(n_knots)
    col += n_knots
    hour_cols = np.arange(col, col + HOURS_PER_WEEK) if with_hours else np.array([], dtype=int)
    col += hour_cols.size
    district_col = {d: col + i for i, d in enumerate(districts)}
    col += len(districts)
    cell_col = {c: col + i for i, c in enumerate(cell_names)}
    col += len(cell_names)
    direction_col = {d: col + i * DIRECTION_KNOTS for i, d in enumerate(districts)}
    col += len(districts) * DIRECTION_KNOTS
    p = col

    rows: list[Ints] = []
    cols: list[Ints] = []
    vals: list[Floats] = []
    index = np.arange(n)
    for j in range(n_knots):
        nz = design.distance_w[:, j] > 0
        rows.append(index[nz])
        cols.append(np.full(int(nz.sum()), knot_cols[j]))
        vals.append(design.distance_w[nz, j])
    if with_hours:
        rows.append(index)
        cols.append(hour_cols[design.how])
        vals.append(np.ones(n))
    lower = np.floor(design.bearing).astype(np.int64) % DIRECTION_KNOTS
    frac = design.bearing - np.floor(design.bearing)
    for district_names, cell_list in (
        (design.o_district, design.o_cell),
        (design.d_district, design.d_cell),
    ):
        rows.append(index)
        cols.append(np.array([district_col[d] for d in district_names]))
        vals.append(np.full(n, 0.5))
        rows.append(index)
        cols.append(np.array([cell_col[c] for c in cell_list]))
        vals.append(np.full(n, 0.5))
        base = np.array([direction_col[d] for d in district_names])
        rows += [index, index]
        cols += [base + lower, base + (lower + 1) % DIRECTION_KNOTS]
        vals += [0.5 * (1.0 - frac), 0.5 * frac]
    x = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, p)
    )

    penalty = np.zeros((p, p))
    for j in range(n_knots - 1):
        a, b = knot_cols[j], knot_cols[j + 1]
        penalty[a, a] += PENALTY_DISTANCE_STEP
        penalty[b, b] += PENALTY_DISTANCE_STEP
        penalty[a, b] -= PENALTY_DISTANCE_STEP
        penalty[b, a] -= PENALTY_DISTANCE_STEP
    for c in hour_cols:
        penalty[c, c] += PENALTY_HOUR
    for c in district_col.values():
        penalty[c, c] += PENALTY_DISTRICT
    for c in cell_col.values():
        penalty[c, c] += PENALTY_CELL
    for c in direction_col.values():
        for k in range(DIRECTION_KNOTS):
            penalty[c + k, c + k] += PENALTY_DIRECTION

    weights = np.ones(n)
    beta = np.zeros(p)
    for _ in range(IRLS_ROUNDS):
        xw = x.multiply(weights[:, None]).tocsr()
        lhs = (x.T @ xw).toarray() + penalty
        rhs = xw.T @ y
        beta = np.linalg.solve(lhs, rhs)
        resid = y - x @ beta
        scale = 1.4826 * float(np.median(np.abs(resid))) + 1e-12
        weights = np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(resid), 1e-12))
    resid = y - x @ beta

    def b(c: int) -> float:
        return float(beta[c])

    surface = Surface(
        by_distance=tuple(b(c) for c in knot_cols),
        district={d: b(c) for d, c in district_col.items()},
        cell={c: b(i) for c, i in cell_col.items()},
        direction={
            d: tuple(b(c + k) for k in range(DIRECTION_KNOTS)) for d, c in direction_col.items()
        },
    )
    hours = tuple(b(c) for c in hour_cols) if with_hours else (0.0,) * HOURS_PER_WEEK
    figures = {
        "rows": float(n),
        "median_abs_log_error": float(np.median(np.abs(resid))),
        "rms_log_error": float(np.sqrt(np.mean(resid**2))),
    }
    return surface, hours, figures


def fit(
    targets: Targets, *, meta: dict[str, Any], uncovered: tuple[float, float] | None = None
) -> EtaCalibration:
    """The calibration for these targets (pace from seconds; detour from metres when
    present, else the default detour factor everywhere). With ``uncovered``, pairs with
    an end outside the districts the targets cover use that (detour factor, speed)."""
    pairs = targets.pairs
    if len(pairs) == 0:
        raise ValueError("nothing to fit")
    design = _design(pairs)
    straight = np.maximum(pairs.straight_m, 1.0)
    pace, hours, pace_fig = _fit_surface(
        design, np.log(np.maximum(targets.seconds, 1.0) / straight), with_hours=True
    )
    if targets.metres is not None:
        detour, _, detour_fig = _fit_surface(
            design, np.log(np.maximum(targets.metres, straight) / straight), with_hours=False
        )
    else:
        flat = math.log(DEFAULT_DETOUR_FACTOR)
        detour = Surface((flat,) * len(DISTANCE_KNOTS_M), {}, {}, {})
        detour_fig = {"rows": 0.0, "note": "no distances: default detour factor"}  # type: ignore[dict-item]
    ends: dict[str, int] = {}
    for district in design.o_district + design.d_district:
        ends[district] = ends.get(district, 0) + 1
    return EtaCalibration(
        coverage=frozenset(d for d, n in ends.items() if n >= COVERAGE_MIN_TRIP_ENDS),
        uncovered=uncovered,
        cell_resolution=CELL_RESOLUTION,
        district_resolution=DISTRICT_RESOLUTION,
        timezone=TIMEZONE,
        distance_knots_m=DISTANCE_KNOTS_M,
        log_pace=pace,
        log_detour=detour,
        hour_of_week=hours,
        meta={**meta, "fit": {"pace": pace_fig, "detour": detour_fig}},
    )


def road_targets(
    pickups: Pickups, router: roads.RoadRouter, *, seed: int = SEED
) -> tuple[Pairs, Targets]:
    """All sampled pairs of the month (one per pickup), and the road reference for the
    pairs the graph covers, with DRAWS_PER_COVERED_ORIGIN destinations for each pickup
    it covers (same seed, same pairs)."""
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(pickups, rng)
    inside = [pairs.take(covered(router, pairs))]
    node, _ = router.graph.snap_many(pickups.lat, pickups.lng)
    at_kerb = node >= 0
    local = Pickups(pickups.lat[at_kerb], pickups.lng[at_kerb], pickups.minute[at_kerb])
    for _ in range(DRAWS_PER_COVERED_ORIGIN - 1):
        more = sample_pairs(local, rng)
        inside.append(more.take(covered(router, more)))
    both = Pairs(*(np.concatenate([getattr(p, f) for p in inside]) for f in Pairs.__slots__))
    order = np.argsort(both.minute, kind="stable")
    return pairs, road_reference(router, both.take(order))


def _percentiles(values: Floats) -> str:
    p50, p90 = np.percentile(values, [50, 90])
    return f"median {p50:,.0f} m, p90 {p90:,.0f} m"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observed", type=Path, help="CSV of observed trips (see above)")
    parser.add_argument("--pickups", type=Path, default=PICKUPS_CSV)
    parser.add_argument("--osm", type=Path, default=ROOT / "data" / DataFile.ROADS.value)
    parser.add_argument("--until", help="fit only on trips before this date (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / DataFile.ETA_CALIBRATION.value)
    parser.add_argument(
        "--uncovered",
        choices=["straight", "fitted"],
        help=(
            "pairs with an end outside the fitted districts: today's straight-line model "
            "(default without --observed) or the fitted global level (default with it)"
        ),
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    if args.observed is not None:
        targets = read_observed(args.observed)
        meta: dict[str, Any] = {
            "reference": "observed trips",
            "source": args.observed.name,
            "distances": targets.metres is not None,
        }
    else:
        pickups = load_pickups(args.pickups)
        router = roads.RoadRouter.load(args.osm)
        pairs, targets = road_targets(pickups, router, seed=args.seed)
        print(f"pairs sampled: {len(pairs):,} (straight line {_percentiles(pairs.straight_m)})")
        print(
            f"both ends on the Midtown road graph: {len(targets.pairs):,} "
            f"({_percentiles(targets.pairs.straight_m)})"
        )
        meta = {
            "reference": (
                "road-network routing over OpenStreetMap (Midtown extract "
                f"{args.osm.name}) with assumed speeds and congestion (geo/roads/), "
                "not observed durations"
            ),
            "map_credit": roads.OSM_CREDIT + " (ODbL 1.0)",
            "origins": f"{args.pickups.name} (NYC TLC via FiveThirtyEight)",
            "destinations": (
                f"log-normal trip length (median {TRIP_MEDIAN_M:.0f} m, p90 "
                f"{TRIP_P90_M:.0f} m), nearest real pickup location"
            ),
            "seed": args.seed,
        }
    if args.until:
        until = parse_minute(args.until + " 00:00")
        keep = targets.pairs.minute < until
        targets = Targets(
            targets.pairs.take(keep),
            targets.seconds[keep],
            None if targets.metres is None else targets.metres[keep],
        )
        meta["until"] = args.until
    mode = args.uncovered or ("fitted" if args.observed is not None else "straight")
    uncovered = (DEFAULT_DETOUR_FACTOR, DEFAULT_SPEED_MPS) if mode == "straight" else None
    calibration = fit(targets, meta=meta, uncovered=uncovered)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(calibration.to_json(), indent=1, ensure_ascii=False) + "\n")
    pace = calibration.meta["fit"]["pace"]
    print(
        f"fitted {len(targets.pairs):,} trips: {len(calibration.log_pace.cell)} cells, "
        f"{len(calibration.log_pace.district)} districts ({len(calibration.coverage)} covered, "
        f"elsewhere {'straight-line' if uncovered else 'fitted global'}); pace median |log error| "
        f"{pace['median_abs_log_error']:.3f}"
    )
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} bytes) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
