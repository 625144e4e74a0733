"""The load plan: every knob of a city rollout, and the rollout's shape over time.

Plain Python (no Locust): ``coopride loadtest`` builds a plan from its command line or a
config file, hands it to the Locust subprocess as JSON (``--coop-plan``), and the
locustfile's shape and users read the same numbers. The shape, in four phases:

1. drivers ramp: members go online, 0 → ``drivers``; no riders yet;
2. riders ramp: the arrival rate climbs 0 → the base rate;
3. hold: the base rate;
4. surge: the base rate × ``surge_factor`` (an evening peak, a concert letting out).

The base rate is either ``requests_per_minute`` (Poisson arrivals at pickups drawn from
the demand file) or, with ``trace = true``, the demand file's own minute-by-minute rate
× ``speedup``. Riders are an open model: a rider arrives when the schedule says so, not
when the previous one finished; ``rider_pool`` phones (Locust users) take the arrivals
from a queue, so a busy phone delays no arrival unless every phone is busy.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.data import DataFile, data_dir

# The April 2014 pickups the project ships (data/README.md); `--demand` names another.
DEFAULT_DEMAND = data_dir() / DataFile.PICKUPS.value
# Phases as fractions of --duration when their lengths are not given.
PHASE_FRACTIONS = {
    "driver_ramp_s": 0.15,
    "rider_ramp_s": 0.15,
    "hold_s": 0.5,
    "surge_s": 0.2,
}
# A trip keeps one rider phone busy for roughly this long (request, wait, ride, receipt)
# at a drive speed-up of 1; the pool is sized from it (Little's law) with headroom.
TRIP_BUSY_S_AT_1X = 15 * 60.0
POOL_HEADROOM = 2.0
MIN_POOL = 4
# The arrival schedule's piecewise-constant rate is re-read this often (a Poisson process
# is memoryless, so drawing again after each step keeps it exact).
RATE_STEP_S = 2.0
# A run whose phones made fewer than this share of the planned requests measured the
# load generator, not the server (Locust short of CPU): its figures do not count.
GENERATOR_KEPT_UP = 0.8


@dataclass(frozen=True)
class LoadPlan:
    """One load test. Times are real (wall-clock) seconds unless a name says otherwise."""

    duration_s: float = 300.0
    driver_ramp_s: float | None = None
    rider_ramp_s: float | None = None
    hold_s: float | None = None
    surge_s: float | None = None

    drivers: int = 50
    requests_per_minute: float = 30.0
    surge_factor: float = 1.5
    # Trace replay: arrivals follow the demand file's own rate × speedup.
    trace: bool = False
    speedup: float = 1.0
    demand: str = str(DEFAULT_DEMAND)
    # Local time in the file where the replay starts; default: its busiest hours.
    trace_start: str | None = None
    # Only pickups and drop-offs inside the demo's Manhattan service area, which setup
    # creates when the server has none ("all": every pickup of the file, no area made).
    area: str = "manhattan"
    # Rider phones (Locust users) that take arrivals; None: from the peak rate.
    rider_pool: int | None = None

    # Driver behaviour.
    location_every_s: float = 4.0
    human_delay_s: tuple[float, float] = (0.5, 2.5)
    boarding_s: tuple[float, float] = (1.0, 3.0)
    decline_rate: float = 0.0
    # Drivers move this many times faster than the ETA model's street speed, so a
    # ten-minute ride fits a short test (timings on the road are compressed with it).
    drive_speedup: float = 10.0
    # Rider behaviour.
    cancel_rate: float = 0.0
    # A cancelling rider gives up within this many seconds of requesting.
    cancel_within_s: float = 20.0

    # The server's offer lifetime (COOP_OFFER_TIMEOUT_S): when an offer was made is
    # its expires_at minus this.
    offer_timeout_s: float = 15.0
    operator_token: str = "change-me"
    # Riders sign up under this name, so the KPIs find this run's trips.
    run_id: str = "loadtest"
    seed: int = 2014

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError("duration must be positive")
        if self.drivers < 0 or self.requests_per_minute < 0:
            raise ValueError("drivers and requests per minute must not be negative")
        if self.surge_factor < 0 or self.speedup <= 0 or self.drive_speedup <= 0:
            raise ValueError("surge factor must be ≥ 0, speed-ups > 0")
        for name in ("decline_rate", "cancel_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.area not in ("manhattan", "all"):
            raise ValueError("area must be manhattan or all")
        if self.location_every_s <= 0:
            raise ValueError("location interval must be positive")
        for name in ("driver_ramp_s", "rider_ramp_s", "hold_s", "surge_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")

    # -- phases --------------------------------------------------------------------------

    def phase(self, name: str) -> float:
        """A phase's length: as given, else its share of ``duration_s``."""
        value: float | None = getattr(self, name)
        return value if value is not None else PHASE_FRACTIONS[name] * self.duration_s

    @property
    def riders_start_s(self) -> float:
        return self.phase("driver_ramp_s")

    @property
    def surge_start_s(self) -> float:
        return self.riders_start_s + self.phase("rider_ramp_s") + self.phase("hold_s")

    @property
    def total_s(self) -> float:
        return self.surge_start_s + self.phase("surge_s")

    def rate_multiplier(self, t: float) -> float:
        """How much of the base arrival rate runs at ``t`` seconds into the test."""
        ramp = self.phase("rider_ramp_s")
        if t < self.riders_start_s or t >= self.total_s:
            return 0.0
        if t < self.riders_start_s + ramp:
            return (t - self.riders_start_s) / ramp if ramp > 0 else 1.0
        if t < self.surge_start_s:
            return 1.0
        return self.surge_factor

    def drivers_at(self, t: float) -> int:
        ramp = self.phase("driver_ramp_s")
        if t >= self.total_s:
            return 0
        if ramp <= 0 or t >= ramp:
            return self.drivers
        return max(1, math.ceil(self.drivers * t / ramp)) if self.drivers else 0

    def pool(self, peak_rpm: float) -> int:
        """Rider phones for a peak of ``peak_rpm`` requests a minute."""
        if self.rider_pool is not None:
            return self.rider_pool
        busy_s = TRIP_BUSY_S_AT_1X / self.drive_speedup + self.cancel_within_s
        return max(MIN_POOL, math.ceil(peak_rpm / 60.0 * busy_s * POOL_HEADROOM))

    def riders_at(self, t: float, pool: int) -> int:
        """Rider phones running at ``t``: the pool, scaled like the rate (never 0 while
        riders arrive, so a trickle still has someone to take it)."""
        m = self.rate_multiplier(t)
        if m <= 0:
            return 0
        top = max(1.0, self.surge_factor)
        return max(1, min(pool, math.ceil(pool * m / top)))

    def base_rpm(self, t: float, trace_rpm: Callable[[float], float]) -> float:
        """The base arrival rate at test time ``t``: the plan's, or the demand file's
        (``trace_rpm`` of the replay time) × ``speedup``."""
        if not self.trace:
            return self.requests_per_minute
        return trace_rpm((t - self.riders_start_s) * self.speedup) * self.speedup

    def arrival_rate_per_s(self, t: float, trace_rpm: Callable[[float], float]) -> float:
        """Riders arriving per second at test time ``t``, over the whole city."""
        m = self.rate_multiplier(t)
        return self.base_rpm(t, trace_rpm) * m / 60.0 if m > 0 else 0.0

    def planned_requests(self, trace_rpm: Callable[[float], float], step_s: float = 1.0) -> float:
        """How many riders the plan makes arrive over the whole rollout (the integral of
        ``arrival_rate_per_s``)."""
        steps = math.ceil(self.total_s / step_s)
        return sum(
            self.arrival_rate_per_s((k + 0.5) * step_s, trace_rpm) * step_s for k in range(steps)
        )

    def next_arrival(
        self, after: float, *, rate_per_s: Callable[[float], float], rng: random.Random
    ) -> float | None:
        """The next arrival after test time ``after`` of a Poisson process whose rate is
        ``rate_per_s(t)``, read every ``RATE_STEP_S``; None when the rollout ends first."""
        t = after
        while t < self.total_s:
            rate = rate_per_s(t)
            if rate > 0:
                wait = rng.expovariate(rate)
                if wait <= RATE_STEP_S:
                    return t + wait if t + wait < self.total_s else None
            t += RATE_STEP_S
        return None

    # -- (de)serialising -----------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> LoadPlan:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown load plan setting(s): {sorted(unknown)}")
        values = dict(data)
        for pair in ("human_delay_s", "boarding_s"):
            if pair in values:
                lo, hi = values[pair]
                values[pair] = (float(lo), float(hi))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        return cls.from_mapping(json.loads(text))

    def with_(self, **changes: Any) -> LoadPlan:
        return replace(self, **changes)
