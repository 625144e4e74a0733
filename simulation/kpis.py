"""What a replay measured: a record per trip and per driver, and the KPIs over them
(definitions in ``docs/simulation.md``). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(slots=True)
class TripRecord:
    trip_id: str
    requested_s: float
    status: Literal["open", "matched", "expired"] = "open"
    driver_id: str | None = None
    offers: int = 0
    accepted_s: float | None = None
    # The accepted offer's pickup ETA: the dispatcher's estimate.
    pickup_eta_s: int | None = None
    # What the pickup leg took on the street (the estimate when the street is exact).
    pickup_street_s: float | None = None
    pickup_s: float | None = None
    dropoff_s: float | None = None
    expired_s: float | None = None
    distance_m: int | None = None
    # The trip as quoted (the fare's duration) and as driven (pickup to drop-off).
    duration_estimate_s: int | None = None
    duration_s: float | None = None
    # Whether ``duration_s`` is the real trip's, from the demand file.
    duration_real: bool = False
    driver_earnings_cents: int = 0


@dataclass(slots=True)
class DriverRecord:
    driver_id: str
    trips: int = 0
    earnings_cents: int = 0
    busy_s: float = 0.0  # accept → drop-off, summed
    online_from_s: float = 0.0  # logged on (or the replay's start, if earlier)
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
    pickup_estimate_mean_s: float | None
    eta_error: float | None
    eta_error_trip: float | None
    rider_wait_mean_s: float | None
    rider_wait_p95_s: float | None
    driver_utilisation: float
    drivers: int
    drivers_online_mean: float
    driver_earnings_total_cents: int
    earnings_per_online_hour_mean_cents: int
    earnings_per_online_hour_p10_cents: int
    earnings_per_online_hour_p50_cents: int
    earnings_per_online_hour_p90_cents: int
    earnings_gini: float
    earnings_gini_drivers: int
    simulated_s: float


@dataclass(frozen=True, slots=True)
class SimResult:
    kpis: Kpis
    trips: list[TripRecord]
    drivers: list[DriverRecord]


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


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


# A driver online for less than this share of the window is left out of the earnings
# Gini (30 minutes of a 2-hour replay): a rate over a few minutes is one trip or none,
# noise rather than (in)equality.
GINI_MIN_ONLINE_SHARE = 0.25


def median_ape(estimate: Sequence[float], actual: Sequence[float]) -> float | None:
    """Median of |estimate − actual| / actual (a fraction: 0.2 is 20%), as
    ``docs/eta.md`` scores ETA models; None without pairs. A pair whose actual is 0 s
    (a driver already at the pickup, on an exact street) has no relative error and is
    left out: its ratio would be NaN, which the CLI's JSON refuses."""
    e, a = np.asarray(estimate, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    keep = a > 0
    if not keep.any():
        return None
    return float(np.median(np.abs(e[keep] - a[keep]) / a[keep]))


def kpis(
    trips: Sequence[TripRecord],
    drivers: Sequence[DriverRecord],
    offers: int,
    declined: int,
    batches: int,
    simulated_s: float,
    *,
    window_s: float | None = None,
) -> Kpis:
    """``window_s``: the replay window (default ``simulated_s``), over which the mean
    number of drivers online is counted."""
    matched = [t for t in trips if t.status == "matched"]
    driven = [t for t in matched if t.pickup_eta_s is not None and t.pickup_street_s is not None]
    estimates = [float(t.pickup_eta_s) for t in driven]  # type: ignore[arg-type]
    etas = [float(t.pickup_street_s) for t in driven]  # type: ignore[arg-type]
    real = [t for t in matched if t.duration_real and t.duration_s]
    waits = [t.pickup_s - t.requested_s for t in matched if t.pickup_s is not None]
    online = sum(d.online_s for d in drivers)
    per_hour = [d.earnings_cents / (d.online_s / 3600) if d.online_s > 0 else 0.0 for d in drivers]
    window = simulated_s if window_s is None else window_s
    steady = [
        rate
        for rate, d in zip(per_hour, drivers, strict=True)
        if d.online_s >= GINI_MIN_ONLINE_SHARE * window
    ]
    in_window = sum(
        max(0.0, min(d.online_from_s + d.online_s, window) - min(d.online_from_s, window))
        for d in drivers
    )

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
        pickup_estimate_mean_s=_mean(estimates),
        eta_error=median_ape(estimates, etas),
        eta_error_trip=median_ape(
            [float(t.duration_estimate_s or 0) for t in real],
            [float(t.duration_s or 0) for t in real],
        ),
        rider_wait_mean_s=_mean(waits),
        rider_wait_p95_s=_pct(waits, 95),
        driver_utilisation=sum(d.busy_s for d in drivers) / online if online > 0 else 0.0,
        drivers=len(drivers),
        drivers_online_mean=in_window / window if window > 0 else 0.0,
        driver_earnings_total_cents=sum(d.earnings_cents for d in drivers),
        earnings_per_online_hour_mean_cents=round(float(np.mean(per_hour))) if per_hour else 0,
        earnings_per_online_hour_p10_cents=cents(10),
        earnings_per_online_hour_p50_cents=cents(50),
        earnings_per_online_hour_p90_cents=cents(90),
        earnings_gini=gini(steady),
        earnings_gini_drivers=len(steady),
        simulated_s=simulated_s,
    )
