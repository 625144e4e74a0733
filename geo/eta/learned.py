"""The learned model: trip durations learned from observed trips, not from our own routing.

A gradient-boosted regressor (scikit-learn's ``HistGradientBoostingRegressor``) predicts
log seconds from what is known when a rider asks: the straight line, the two ends'
displacement along and across Manhattan's street grid, where both ends are, and the
hour and day of the week in New York. It is fitted by ``coopride eta fit`` on
``data/nyc_taxi_trips_2016-01_2016-06.csv.gz`` (months 1-4; months 5-6 are held out)
and shipped as ``data/eta_model.pkl``. ``docs/eta.md`` has its error against the real
durations of the held-out trips, beside a constant-speed baseline fitted to the same
training trips.

A :class:`LiveCorrection` learns the drift (traffic, weather, an event) from the co-op's
own trips that finished in the last half hour: the mean log ratio of real to predicted
duration, shrunk toward zero by a few pseudo-trips so that one odd trip moves nothing.

Speed: the dispatcher asks for thousands of pickup legs at once. :meth:`LearnedEtaModel.
seconds_many` builds the feature matrix with numpy and predicts every pair in one call;
a single pair (a quote) costs one small predict. Distances (for fares) and the candidate
search radius come from the calibrated model, which this one wraps.
"""

from __future__ import annotations

import csv
import gzip
import math
import pickle
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core.data import DataFile, MissingDataError, data_path
from geo.eta.base import EtaModel, Leg
from geo.eta.calibrated import CalibratedEtaModel
from geo.eta.trees import MIN_SECONDS, TreeTables
from geo.point import EARTH_RADIUS_M, LatLng

Floats = npt.NDArray[np.float64]

MODEL_FORMAT = 1
TIMEZONE = "America/New_York"
# Manhattan's avenues run about 29° east of true north; distances along and across them
# are what a cab actually drives on the grid.
GRID_ROTATION_DEG = 29.0
# The local metric frame's origin (Midtown); any point near the city would do.
REF_LAT, REF_LNG = 40.75, -73.98
_KY = math.pi / 180.0 * EARTH_RADIUS_M
_KX = _KY * math.cos(math.radians(REF_LAT))
_COS, _SIN = math.cos(math.radians(GRID_ROTATION_DEG)), math.sin(math.radians(GRID_ROTATION_DEG))

FEATURES = (
    "straight_m",
    "along_grid_m",
    "across_grid_m",
    "grid_m",
    "pickup_lat",
    "pickup_lng",
    "dropoff_lat",
    "dropoff_lng",
    "pickup_grid_x",
    "pickup_grid_y",
    "dropoff_grid_x",
    "dropoff_grid_y",
    "hour_of_week",
    "hour_of_day",
    "day_of_week",
)
# The fitted regressor's settings, chosen by fitting on January-March and scoring April
# (never the held-out May-June; benchmarks/select_eta.py). 120 trees of up to 63 leaves,
# a fixed count: within a tenth of a point of the 196 trees that early stopping kept of
# 300 at rate 0.1 (April's median 17.7% alone either way), and a batch's prediction
# costs in proportion to the trees (16,000 legs: 72 ms against 138).
REGRESSOR_PARAMS: dict[str, Any] = {
    "loss": "squared_error",
    "max_iter": 120,
    "learning_rate": 0.15,
    "early_stopping": False,
    "max_leaf_nodes": 63,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    # Never faster for a longer trip, other things equal: +1 on the four distances. It
    # cost nothing on held-out trips when tried (18.1% with and without, 300 trees).
    "monotonic_cst": [1, 1, 1, 1] + [0] * 11,
}


# -- observed trips ------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedTrips:
    """Trips with observed durations, as columns, sorted by pickup time. Times are Unix
    seconds; ``hour_of_week``/``hour_of_day`` are New York local time."""

    pickup_s: Floats
    dropoff_s: Floats
    pickup_lat: Floats
    pickup_lng: Floats
    dropoff_lat: Floats
    dropoff_lng: Floats
    duration_s: Floats
    hour_of_week: Floats
    hour_of_day: Floats
    month: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.duration_s)

    def take(self, mask: npt.NDArray[np.bool_]) -> ObservedTrips:
        return ObservedTrips(**{name: getattr(self, name)[mask] for name in _COLUMNS})

    def features(self) -> Floats:
        return features(
            self.pickup_lat,
            self.pickup_lng,
            self.dropoff_lat,
            self.dropoff_lng,
            self.hour_of_week,
            self.hour_of_day,
        )


_COLUMNS = tuple(ObservedTrips.__dataclass_fields__)
# Either file layout: the 2016 trips' own columns, or the demand format with durations.
_LAYOUTS = (
    ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon"),
    ("lat", "lon", "dropoff_lat", "dropoff_lon"),
)


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


def read_observed_trips(path: Path) -> ObservedTrips:
    """The trips in ``path`` (CSV, gzip or plain): ``pickup_datetime`` (New York local
    time), the two ends (``pickup_lat, pickup_lon, dropoff_lat, dropoff_lon``, or the
    demand file's ``lat, lon, dropoff_lat, dropoff_lon``) and ``duration_s``; sorted by
    pickup time. A file without them is a ``ValueError`` naming what is missing."""
    tz = ZoneInfo(TIMEZONE)
    rows: list[tuple[float, float, float, float, float, float, float, float, int]] = []
    local_of: dict[str, datetime] = {}
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        layout = next((lay for lay in _LAYOUTS if set(lay) <= set(header)), None)
        if layout is None or not {"pickup_datetime", "duration_s"} <= set(header):
            raise ValueError(
                f"{path}: needs pickup_datetime, duration_s and the two ends "
                f"(pickup_lat/pickup_lon/dropoff_lat/dropoff_lon or lat/lon/dropoff_lat/"
                f"dropoff_lon); it has {header}"
            )
        i_t, i_d = header.index("pickup_datetime"), header.index("duration_s")
        i_ends = [header.index(c) for c in layout]
        for row in reader:
            if not row:
                continue
            text = row[i_t]
            local = local_of.get(text)
            if local is None:
                local = local_of[text] = datetime.fromisoformat(text).replace(tzinfo=tz)
            duration = float(row[i_d])
            start = local.timestamp()
            hod = local.hour + local.minute / 60.0 + local.second / 3600.0
            rows.append(
                (
                    start,
                    start + duration,
                    *(float(row[i]) for i in i_ends),
                    duration,
                    local.weekday() * 24.0 + local.hour,
                    hod,
                    local.month,
                )  # type: ignore[arg-type]
            )
    rows.sort(key=lambda r: r[0])
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 10)
    return ObservedTrips(
        pickup_s=a[:, 0],
        dropoff_s=a[:, 1],
        pickup_lat=a[:, 2],
        pickup_lng=a[:, 3],
        dropoff_lat=a[:, 4],
        dropoff_lng=a[:, 5],
        duration_s=a[:, 6],
        hour_of_week=a[:, 7],
        hour_of_day=a[:, 8],
        month=a[:, 9].astype(np.int64),
    )


# -- features ------------------------------------------------------------------------


def _grid_xy(lat: Floats, lng: Floats) -> tuple[Floats, Floats]:
    x = (lng - REF_LNG) * _KX
    y = (lat - REF_LAT) * _KY
    return x * _COS - y * _SIN, x * _SIN + y * _COS


def haversine_many(lat1: Floats, lng1: Floats, lat2: Floats, lng2: Floats) -> Floats:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lng2 - lng1) / 2) ** 2
    )
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0)))  # type: ignore[no-any-return]


def features(
    pickup_lat: Floats,
    pickup_lng: Floats,
    dropoff_lat: Floats,
    dropoff_lng: Floats,
    hour_of_week: Floats | float,
    hour_of_day: Floats | float,
) -> Floats:
    """The feature matrix (one row per trip, columns as :data:`FEATURES`); the hours are
    per trip, or one for all."""
    px, py = _grid_xy(pickup_lat, pickup_lng)
    dx, dy = _grid_xy(dropoff_lat, dropoff_lng)
    along, across = np.abs(dy - py), np.abs(dx - px)
    n = len(pickup_lat)
    how = np.broadcast_to(np.asarray(hour_of_week, dtype=np.float64), (n,))
    hod = np.broadcast_to(np.asarray(hour_of_day, dtype=np.float64), (n,))
    return np.column_stack(
        (
            haversine_many(pickup_lat, pickup_lng, dropoff_lat, dropoff_lng),
            along,
            across,
            along + across,
            pickup_lat,
            pickup_lng,
            dropoff_lat,
            dropoff_lng,
            px,
            py,
            dx,
            dy,
            how,
            hod,
            how // 24,
        )
    )


# -- the fitted artifact ---------------------------------------------------------------


@dataclass(frozen=True)
class LearnedEta:
    """The fitted regressor and what it was fitted on (``meta``)."""

    regressor: Any
    meta: dict[str, Any]

    def predict_s(self, x: Floats) -> Floats:
        return np.maximum(np.exp(self.regressor.predict(x)), MIN_SECONDS)  # type: ignore[no-any-return]

    def save(self, path: Path) -> None:
        """Write the model to ``path`` and its trees as plain arrays beside it (the same
        name with ``.npz``: ``geo.eta.trees``, what api processes quote with)."""
        payload = {"format": MODEL_FORMAT, "regressor": self.regressor, "meta": self.meta}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(pickle.dumps(payload, protocol=5))
        tmp.replace(path)
        TreeTables.from_regressor(self.regressor, self.meta).save(path.with_suffix(".npz"))

    @classmethod
    def load(cls, path: Path | None = None) -> LearnedEta:
        """The model at ``path`` (default: the data folder's ``eta_model.pkl``). Only
        files the co-op made are loaded: a pickle runs code when read."""
        path = path or data_path(DataFile.ETA_MODEL)
        payload = pickle.loads(path.read_bytes())
        if payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"ETA model format {payload.get('format')!r}, expected {MODEL_FORMAT}")
        meta = payload["meta"]
        fitted_with, running = meta.get("sklearn", ""), _sklearn_version()
        if fitted_with.split(".")[:2] != running.split(".")[:2]:
            # scikit-learn does not promise to read another release's models.
            raise MissingDataError(
                f"{path.name} was fitted with scikit-learn {fitted_with}, this is {running}: "
                f"refit it with `coopride eta fit --trips {DataFile.TRIPS.value}` (about a "
                f"minute) or install scikit-learn {fitted_with}"
            )
        return cls(regressor=payload["regressor"], meta=meta)


def fit(trips: ObservedTrips, *, seed: int = 0, meta: dict[str, Any] | None = None) -> LearnedEta:
    """Fit log duration on ``trips`` (all of them: choose the training window first)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    regressor = HistGradientBoostingRegressor(**REGRESSOR_PARAMS, random_state=seed)
    regressor.fit(trips.features(), np.log(trips.duration_s))
    return LearnedEta(
        regressor=regressor,
        meta={
            **(meta or {}),
            "features": list(FEATURES),
            "params": REGRESSOR_PARAMS,
            "trips": len(trips),
            "seed": seed,
            "timezone": TIMEZONE,
            "sklearn": _sklearn_version(),
        },
    )


def _sklearn_version() -> str:
    from importlib.metadata import version

    return version("scikit-learn")


def baseline_speed_mps(trips: ObservedTrips) -> float:
    """One constant straight-line speed for the whole city, chosen on ``trips`` to give
    the lowest median absolute percentage error: the baseline a learned model must beat."""
    straight = haversine_many(
        trips.pickup_lat, trips.pickup_lng, trips.dropoff_lat, trips.dropoff_lng
    )
    speeds = np.arange(1.0, 15.0, 0.01)
    best = min(
        speeds,
        key=lambda v: float(np.median(np.abs(straight / v - trips.duration_s) / trips.duration_s)),
    )
    return float(best)


# -- live correction -------------------------------------------------------------------

# The last half hour of finished trips says how today differs from the fit; pseudo-trips
# of no correction keep a quiet half hour (or one odd trip) from moving it. 20, chosen
# on April with a model fitted on January-March (benchmarks/select_eta.py): the eight or
# so trips a half hour of the sampled file holds are mostly noise, and the correction
# made April's median error worse than none, 18.2% at 10 and 18.0% at 20 against 17.7%
# (held out, May-June, it helps: 18.05% against 18.2%). A co-op's own fleet finishes
# hundreds of trips in a half hour, where 20 hardly weighs against a real drift.
LIVE_WINDOW_S = 30 * 60
LIVE_PRIOR_TRIPS = 20.0
# A correction is a ratio; beyond these the evidence is a fault, not traffic.
LIVE_MIN_FACTOR, LIVE_MAX_FACTOR = 0.5, 2.0


@dataclass
class LiveCorrection:
    """The drift of the last ``window_s``: the mean log ratio of real to predicted
    duration of trips that finished in it, shrunk toward none by ``prior_trips``."""

    window_s: float = LIVE_WINDOW_S
    prior_trips: float = LIVE_PRIOR_TRIPS
    _finished: deque[tuple[float, float]] = field(default_factory=deque)
    _sum: float = 0.0

    def observe(self, finished_s: float, predicted_s: float, actual_s: float) -> None:
        """A trip that finished at ``finished_s`` (times must not go backwards)."""
        if predicted_s <= 0 or actual_s <= 0:
            return
        value = math.log(actual_s / predicted_s)
        self._finished.append((finished_s, value))
        self._sum += value

    def replace_with(self, other: LiveCorrection) -> None:
        """Take ``other``'s trips (a process's refresh from the shared list)."""
        self._finished, self._sum = deque(other._finished), other._sum

    def factor(self, now_s: float) -> float:
        while self._finished and self._finished[0][0] < now_s - self.window_s:
            self._sum -= self._finished.popleft()[1]
        n = len(self._finished)
        if n == 0:
            return 1.0
        return min(
            LIVE_MAX_FACTOR, max(LIVE_MIN_FACTOR, math.exp(self._sum / (n + self.prior_trips)))
        )


# -- evaluation ------------------------------------------------------------------------


def _ape_summary(predicted: Floats, actual: Floats) -> dict[str, float]:
    ape = np.abs(predicted - actual) / actual
    return {
        "median_ape": round(float(np.median(ape)), 4),
        "p90_ape": round(float(np.quantile(ape, 0.9)), 4),
    }


def replay(
    model: LearnedEta,
    trips: ObservedTrips,
    *,
    live: bool = True,
    correction: LiveCorrection | None = None,
) -> Floats:
    """The ETA a rider would have been quoted for each trip, in pickup order: the model,
    times the live correction (``correction``, empty; the service's by default) from
    trips that had finished by that moment only."""
    predicted = model.predict_s(trips.features())
    if not live:
        return predicted
    correction = correction or LiveCorrection()
    finish_order = np.argsort(trips.dropoff_s, kind="stable")
    j = 0
    quoted = np.empty_like(predicted)
    for i in range(len(trips)):
        now = trips.pickup_s[i]
        while j < len(finish_order) and trips.dropoff_s[finish_order[j]] < now:
            k = finish_order[j]
            correction.observe(trips.dropoff_s[k], predicted[k], trips.duration_s[k])
            j += 1
        quoted[i] = predicted[i] * correction.factor(now)
    return quoted


def evaluate(model: LearnedEta, trips: ObservedTrips, *, baseline_mps: float) -> dict[str, Any]:
    """Errors against the real durations of ``trips`` (fractions: 0.2 is 20%), the
    model with its live correction beside the constant-speed baseline."""
    straight = haversine_many(
        trips.pickup_lat, trips.pickup_lng, trips.dropoff_lat, trips.dropoff_lng
    )
    return {
        "n": len(trips),
        **_ape_summary(replay(model, trips), trips.duration_s),
        "without_live_correction": _ape_summary(replay(model, trips, live=False), trips.duration_s),
        "baseline": {
            **_ape_summary(np.maximum(straight / baseline_mps, 1.0), trips.duration_s),
            "speed_mps": round(baseline_mps, 3),
        },
    }


# -- the model the service uses ---------------------------------------------------------


class LocalClock:
    """New York's hour of the week and hour of the day, now (or at ``now()``)."""

    __slots__ = ("_now", "_tz")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._tz = ZoneInfo(TIMEZONE)
        self._now = now

    def __call__(self) -> tuple[float, float]:
        local = datetime.fromtimestamp(self._now(), self._tz)
        return local.weekday() * 24.0 + local.hour, local.hour + local.minute / 60.0


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class LearnedEtaModel(EtaModel):
    """Durations from :class:`LearnedEta` (times the live correction); road distance and
    the candidate search's reach from the calibrated model it wraps."""

    learned: LearnedEta | TreeTables
    fallback: CalibratedEtaModel
    clock: Any = field(default_factory=LocalClock)
    correction: LiveCorrection = field(default_factory=LiveCorrection)
    wall: Callable[[], float] = time.time

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __post_init__(self) -> None:
        object.__setattr__(self, "detour_factor", self.fallback.detour_factor)
        object.__setattr__(self, "speed_mps", self.fallback.speed_mps)

    def _factor(self) -> float:
        return self.correction.factor(self.wall())

    def seconds_many(self, origins: Sequence[LatLng], destinations: Sequence[LatLng]) -> list[int]:
        """One ETA per (origin, destination) pair, all predicted in one call."""
        if not origins:
            return []
        o = np.asarray([(p.lat, p.lng) for p in origins], dtype=np.float64)
        d = np.asarray([(p.lat, p.lng) for p in destinations], dtype=np.float64)
        how, hod = self.clock()
        x = features(o[:, 0], o[:, 1], d[:, 0], d[:, 1], how, hod)
        seconds = np.ceil(self.learned.predict_s(x) * self._factor())
        return [int(s) for s in seconds]

    def raw_seconds_at(self, origin: LatLng, destination: LatLng, at_s: float) -> float:
        """The model's own prediction for a trip asked for at ``at_s`` (Unix seconds),
        with no live correction: what a finished trip is compared with."""
        how, hod = LocalClock(lambda: at_s)()
        x = features(
            np.array([origin.lat]),
            np.array([origin.lng]),
            np.array([destination.lat]),
            np.array([destination.lng]),
            how,
            hod,
        )
        return float(self.learned.predict_s(x)[0])

    def seconds(self, origin: LatLng, destination: LatLng) -> int:
        return self.seconds_many([origin], [destination])[0]

    def leg(self, origin: LatLng, destination: LatLng) -> Leg:
        return Leg(
            distance_m=self.fallback.leg(origin, destination).distance_m,
            duration_s=self.seconds(origin, destination),
        )

    def reach_m(self, seconds: float) -> float:
        return self.fallback.reach_m(seconds)

    def observe(self, *, finished_s: float, predicted_s: float, actual_s: float) -> None:
        """A finished trip's real duration against what this model predicted for it."""
        self.correction.observe(finished_s, predicted_s, actual_s)


def load_learned_model(fallback: CalibratedEtaModel, path: Path | None = None) -> LearnedEtaModel:
    """The service's model. Prediction runs on the calling thread: scikit-learn's OpenMP
    threads spin while they wait, and beside an event loop and other processes on a
    small machine they made a 16,000-leg batch ten times slower, not faster."""
    from threadpoolctl import threadpool_limits

    learned = LearnedEta.load(path)  # loads scikit-learn and its OpenMP runtime first
    threadpool_limits(limits=1, user_api="openmp")
    return LearnedEtaModel(learned=learned, fallback=fallback)


def load_quote_model(fallback: CalibratedEtaModel, path: Path | None = None) -> LearnedEtaModel:
    """The same model for processes that estimate a leg at a time (an api process's
    quotes): its trees from ``data/eta_model.npz`` (``geo.eta.trees``), without importing
    scikit-learn, which takes seconds and a hundred megabytes per process."""
    tables = TreeTables.load(path or data_path(DataFile.ETA_TREES))
    return LearnedEtaModel(learned=tables, fallback=fallback)
