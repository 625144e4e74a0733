"""What the simulated street does, as opposed to what the dispatcher estimates: legs that
take as long as real ones would, drivers who log on and off.

- ``Street``: a leg the dispatcher estimated at ``e`` seconds takes ``e × exp(r)`` on
  the street, ``r`` drawn from the learned model's own log residuals on the trips it
  never saw (the held-out months of ``data/nyc_taxi_trips_2016-01_2016-06.csv.gz``),
  among held-out trips of about the same predicted length. The dispatcher is therefore
  exactly as wrong in a replay as on real trips, and the KPIs are scored on the street.
- ``Shifts``: each driver's log-on and log-off on the simulated clock.
- ``bind_clock``: the dispatcher's ETA model reading the simulated clock (the learned
  model's hour of the week), not the wall clock.

Pure apart from ``Street.learned``, which reads the trips file once per process.
``docs/simulation.md`` documents the assumptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from geo.eta import EtaModel

Floats = npt.NDArray[np.float64]

# Held-out residuals are grouped into this many bands of predicted duration (equal
# counts): a short leg's relative error is larger than a long trip's, and pickup legs
# are short.
RESIDUAL_BANDS = 5
# Shifts (docs/simulation.md): lengths uniform in this range, in hours.
SHIFT_HOURS = (4.0, 10.0)


@dataclass(frozen=True, slots=True)
class Street:
    """Log residuals ``log(real / predicted)`` of held-out trips, by band of predicted
    seconds: ``edges_s`` are the inner band edges, ``residuals[b]`` band b's values."""

    edges_s: tuple[float, ...]
    residuals: tuple[Floats, ...]

    @classmethod
    def from_residuals(cls, predicted_s: Floats, log_residual: Floats) -> Street:
        """Bands of equal counts by ``predicted_s`` (at most ``RESIDUAL_BANDS``)."""
        if len(predicted_s) == 0 or len(predicted_s) != len(log_residual):
            raise ValueError("a street needs residuals, one per predicted duration")
        order = np.argsort(predicted_s, kind="stable")
        bands = np.array_split(order, min(RESIDUAL_BANDS, len(order)))
        edges = tuple(float(predicted_s[b[0]]) for b in bands[1:])
        return cls(edges, tuple(np.sort(log_residual[b]) for b in bands))

    @classmethod
    def learned(cls) -> Street:
        """The learned ETA model's residuals on its held-out months (cached)."""
        return _learned_street()

    def log_ratios(self, u: Floats, estimate_s: Floats) -> Floats:
        """One ``r`` per estimate, given a uniform ``u`` in [0, 1) for each: the
        ``u``-quantile (empirical, no interpolation) of the estimate's band. The
        simulator draws the ``u`` once per rider, so two policies replayed on one seed
        meet the same luck on the street for the same rider."""
        u, estimate_s = np.asarray(u, dtype=np.float64), np.asarray(estimate_s, dtype=np.float64)
        band = np.searchsorted(np.asarray(self.edges_s), estimate_s, side="right")
        out = np.empty(len(estimate_s))
        for b, values in enumerate(self.residuals):
            here = band == b
            at = np.minimum((u[here] * len(values)).astype(np.int64), len(values) - 1)
            out[here] = values[at]
        return out

    def draw(self, rng: np.random.Generator, estimate_s: Floats) -> Floats:
        """Street seconds for ``estimate_s``, drawing from ``rng``."""
        estimate_s = np.asarray(estimate_s, dtype=np.float64)
        return self.seconds(estimate_s, self.log_ratios(rng.random(len(estimate_s)), estimate_s))

    def seconds(self, estimate_s: Floats, log_ratio: Floats) -> Floats:
        """Street seconds: the estimate × exp(r), rounded up, at least one second."""
        return np.maximum(np.ceil(estimate_s * np.exp(log_ratio)), 1.0)


@lru_cache(maxsize=1)
def _learned_street() -> Street:
    from core.data import DataFile, data_path
    from geo.eta.learned import LearnedEta, read_observed_trips

    model = LearnedEta.load()
    trips = read_observed_trips(data_path(DataFile.TRIPS))
    held_out = trips.take(~np.isin(trips.month, model.meta["months"]))
    predicted = model.predict_s(held_out.features())
    return Street.from_residuals(predicted, np.log(held_out.duration_s / predicted))


@dataclass(frozen=True, slots=True)
class Shifts:
    """Each driver's shift on the simulated clock: online from ``on_s`` to ``off_s``.

    A driver on a trip (or holding an offer) at ``off_s`` finishes it first, then logs
    off. ``None`` for a driver: online the whole replay (the fleet of old)."""

    on_s: tuple[float, ...]
    off_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.on_s) != len(self.off_s):
            raise ValueError("one log-off per log-on")
        if any(not off > on for on, off in zip(self.on_s, self.off_s, strict=True)):
            raise ValueError("a shift must end after it starts")

    def __len__(self) -> int:
        return len(self.on_s)

    @classmethod
    def draw(cls, rng: np.random.Generator, drivers: int, window_s: float) -> Shifts:
        """Shift lengths ``L`` uniform in ``SHIFT_HOURS``; the start uniform in
        ``[−L, window_s)``, so every shift overlaps the window and each driver is online
        at any instant of it with the same probability ``L / (L + window_s)``: the
        fleet online is steady, with drivers logging on and off throughout."""
        if not window_s > 0:
            raise ValueError("the window must be positive")
        lo, hi = SHIFT_HOURS
        length = rng.uniform(lo * 3600, hi * 3600, size=drivers)
        on = rng.uniform(-length, window_s)
        return cls(tuple(on.tolist()), tuple((on + length).tolist()))

    @classmethod
    def whole(cls, drivers: int, end_s: float) -> Shifts:
        """Everyone online from 0 to ``end_s``."""
        return cls((0.0,) * drivers, (end_s,) * drivers)

    def online_share(self, window_s: float) -> float:
        """The mean number online over [0, window_s) per driver."""
        if not self.on_s:
            return 0.0
        on, off = np.asarray(self.on_s), np.asarray(self.off_s)
        inside = np.clip(off, 0, window_s) - np.clip(on, 0, window_s)
        return float(inside.sum() / (len(on) * window_s))


class SimulatedClock:
    """New York's hour of the week and of the day at ``start_epoch_s + now_s``, for the
    learned model (``geo.eta.learned.LocalClock``'s answer on the simulated clock)."""

    __slots__ = ("_cache", "_tz", "now_s", "start_epoch_s")

    def __init__(self, start_epoch_s: float, timezone: str = "America/New_York") -> None:
        self.start_epoch_s = start_epoch_s
        self.now_s = 0.0
        self._tz = ZoneInfo(timezone)
        self._cache: tuple[float, tuple[float, float]] | None = None

    def __call__(self) -> tuple[float, float]:
        minute = math.floor((self.start_epoch_s + self.now_s) / 60) * 60.0
        if self._cache is None or self._cache[0] != minute:
            local = datetime.fromtimestamp(minute, self._tz)
            hours = (local.weekday() * 24.0 + local.hour, local.hour + local.minute / 60.0)
            self._cache = (minute, hours)
        return self._cache[1]


def bind_clock(model: EtaModel, clock: SimulatedClock) -> EtaModel:
    """``model`` reading ``clock``: the learned model gets the simulated hour and no
    live correction (a replay has no co-op trips to learn from); the time-free models
    are returned as they are."""
    from geo.eta.learned import LearnedEtaModel, LiveCorrection

    if isinstance(model, LearnedEtaModel):
        return replace(model, clock=clock, correction=LiveCorrection(), wall=lambda: 0.0)
    return model


def expected_online_share(window_s: float) -> float:
    """The share of a fleet with drawn shifts (``Shifts.draw``) online at any instant
    of a ``window_s`` window: E[L / (L + window_s)] for L uniform in ``SHIFT_HOURS``."""
    lo, hi = (h * 3600 for h in SHIFT_HOURS)
    # ∫ L / (L + W) dL / (hi − lo) = 1 − W ln((hi + W) / (lo + W)) / (hi − lo)
    return 1 - window_s * math.log((hi + window_s) / (lo + window_s)) / (hi - lo)
