"""Guidance in a replay: idle drivers move to where demand will be, as members advised by
the ``demand.map`` frame would (``coopride simulate --guidance``).

The forecast is built only from demand *before* the replay's window: the trailing
``FORECAST_WEEKS`` weeks of the same file, per hour of the week (what the live service
learns from its own trips). Nothing of the window itself, or after it, is read: a
replay cannot be guided by the riders it is about to serve.

The ranking is ``dispatch.demand_forecast``'s, the one the live route and frame use; the
simulator (``simulation.simulator``) drives a following driver toward the chosen cell's
centre in the time the street gives the ETA model's estimate (exactly the estimate
without a street), keeps it available for offers on the way (a member driving to a
better spot still takes a ride), and lets it wait there; a driver off shift is not
advised. A share of the
fleet, ``compliance``, follows the advice; the others wait where they are, as without
guidance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from dispatch import demand_forecast
from dispatch.demand_forecast import FORECAST_WEEKS, MAX_DRIVE_S, Rates
from geo import cells
from geo.point import LatLng
from simulation.demand import DemandRows, read_demand

# A driver who has waited this long without an offer looks at the map again.
REEVALUATE_S = 600.0
# A moving driver's position is brought up to date this often (seconds).
MOVE_STEP_S = 60.0
# Move only if the best cell beats staying put by this much (seconds of drive + wait):
# advice that changes by a few seconds is not worth a drive.
MIN_GAIN_S = 60
# Which drivers follow: an independent stream of the replay's seed.
_FOLLOWERS_STREAM = 0x6D1D


def rates_from_rows(
    rows: DemandRows, *, weeks: int, resolution: int
) -> dict[int, dict[str, float]]:
    """Forecast rates (hour of week → cell → requests per hour) from ``rows``, which
    span ``weeks`` weeks."""
    if len(rows) == 0:
        return {}
    t0 = rows.start.timestamp()
    # Timestamps repeat (minute resolution): convert each distinct one once.
    distinct, inverse = np.unique(rows.offset_s, return_inverse=True)
    how_of = [
        demand_forecast.hour_of_week(datetime.fromtimestamp(t0 + float(s), tz=rows.start.tzinfo))
        for s in distinct.tolist()
    ]
    observations = (
        (how_of[j], cells.cell_of(LatLng(lat, lng), resolution), 1.0)
        for j, lat, lng in zip(
            inverse.tolist(), rows.pickup_lat.tolist(), rows.pickup_lng.tolist(), strict=True
        )
    )
    return demand_forecast.build_rates(observations, weeks=weeks)


def history_rates(
    path: Path, *, before: datetime, weeks: int = FORECAST_WEEKS, resolution: int
) -> tuple[dict[int, dict[str, float]], int]:
    """The forecast from the file's pickups in the ``weeks`` weeks before ``before``,
    and the number of weeks it averages over (fewer when the file starts later)."""
    rows = read_demand(path, start=before - timedelta(weeks=weeks), end=before)
    if len(rows) == 0:
        return {}, weeks
    first = rows.start + timedelta(seconds=float(rows.offset_s.min()))
    observed = math.ceil((before - first) / timedelta(weeks=1))
    observed = max(1, min(weeks, observed))
    return rates_from_rows(rows, weeks=observed, resolution=resolution), observed


@dataclass(frozen=True)
class Guidance:
    """What ``SimConfig.guidance`` holds: the forecast, the replay's local start (to
    tell the hour of the week of a simulated second) and who follows it."""

    rates: Rates
    start: datetime
    compliance: float = 1.0
    reevaluate_s: float = REEVALUATE_S
    max_drive_s: float = MAX_DRIVE_S
    weeks: int = FORECAST_WEEKS
    _by_hour: dict[int, Mapping[str, float]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.compliance <= 1.0:
            raise ValueError("--guidance-compliance must be in [0, 1]")
        if self.start.tzinfo is None:
            raise ValueError("the replay's start needs a time zone")

    def rates_at(self, now_s: float) -> Mapping[str, float]:
        """The forecast for the hour of the week the simulated second ``now_s`` is in."""
        epoch_hour = math.floor((self.start.timestamp() + now_s) / 3600)
        found = self._by_hour.get(epoch_hour)
        if found is None:
            moment = datetime.fromtimestamp(epoch_hour * 3600, tz=self.start.tzinfo)
            found = self._by_hour[epoch_hour] = self.rates.get(
                demand_forecast.hour_of_week(moment), {}
            )
        return found

    def followers(self, n: int, seed: int) -> frozenset[int]:
        """The drivers (by index) who follow the advice: ``round(compliance × n)`` of
        them, drawn by the seed."""
        rng = np.random.default_rng([seed, _FOLLOWERS_STREAM])
        return frozenset(rng.permutation(n)[: round(self.compliance * n)].tolist())
