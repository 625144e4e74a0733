"""Where and when riders appear: the demand file, read by the simulator's own reader.

``simulation.demand.read_demand`` and ``build_requests`` read the file (the busiest
hours, or from ``trace_start``), spread minute timestamps within their minute and draw
the drop-offs the file lacks; this module keeps the trips inside the service area and
gives the file's arrival rate minute by minute. Plain Python, no Locust.
"""

from __future__ import annotations

import bisect
import pickle
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

from loadtests.plan import LoadPlan
from simulation.city import MANHATTAN
from simulation.demand import RideRequest, build_requests, parse_local_time, read_demand

MINUTE_S = 60.0


@dataclass(frozen=True)
class Demand:
    requests: list[RideRequest]  # in arrival order, on the file's clock (s from start)
    span_s: float  # length of the replay window on the file's clock
    # Pickups in each minute of the window (real rate, requests per minute).
    per_minute: list[int]
    times_s: list[float]  # each request's requested_s, for bisecting

    def rate_rpm(self, replay_s: float) -> float:
        """The file's arrival rate (requests a minute) at ``replay_s`` on its clock; the
        replay wraps around at the end of the window."""
        if not self.per_minute:
            return 0.0
        minute = int((replay_s % self.span_s) // MINUTE_S)
        return float(self.per_minute[min(minute, len(self.per_minute) - 1)])

    def near(self, replay_s: float, rng: random.Random) -> RideRequest:
        """A trip of the file that arrived within the same minute as ``replay_s`` (any
        trip if that minute had none)."""
        at = replay_s % self.span_s
        lo = bisect.bisect_left(self.times_s, at - at % MINUTE_S)
        hi = bisect.bisect_left(self.times_s, at - at % MINUTE_S + MINUTE_S)
        if hi > lo:
            return self.requests[rng.randrange(lo, hi)]
        return self.requests[rng.randrange(len(self.requests))]

    @property
    def mean_rpm(self) -> float:
        return len(self.requests) / (self.span_s / MINUTE_S) if self.span_s else 0.0

    @property
    def peak_rpm(self) -> float:
        return float(max(self.per_minute, default=0))


def in_area(plan: LoadPlan, requests: list[RideRequest]) -> list[RideRequest]:
    if plan.area == "all":
        return requests
    polygon = shape(MANHATTAN)
    lat = np.array([[r.pickup.lat, r.dropoff.lat] for r in requests]).reshape(-1, 2)
    lng = np.array([[r.pickup.lng, r.dropoff.lng] for r in requests]).reshape(-1, 2)
    inside = shapely.contains_xy(polygon, lng, lat).all(axis=1)
    return [r for r, ok in zip(requests, inside.tolist(), strict=True) if ok]


def load(plan: LoadPlan) -> Demand:
    start = parse_local_time(plan.trace_start) if plan.trace_start else None
    rows = read_demand(Path(plan.demand), start=start)
    span_s = (rows.end - rows.start).total_seconds()
    requests = in_area(plan, build_requests(rows, seed=plan.seed))
    if not requests:
        raise ValueError(f"{plan.demand}: no trips inside the {plan.area} area in the window")
    per_minute = [0] * max(1, int(np.ceil(span_s / MINUTE_S)))
    for r in requests:
        per_minute[min(int(r.requested_s // MINUTE_S), len(per_minute) - 1)] += 1
    return Demand(
        requests=requests,
        span_s=span_s,
        per_minute=per_minute,
        times_s=[r.requested_s for r in requests],
    )


def peak_rpm(plan: LoadPlan, demand: Demand) -> float:
    """The highest arrival rate the plan asks for, in requests a minute of real time."""
    base = demand.peak_rpm * plan.speedup if plan.trace else plan.requests_per_minute
    return base * max(1.0, plan.surge_factor)


def load_in_child(plan: LoadPlan) -> Demand:
    """``load`` in a child process (``python -m loadtests.trace PLAN``). Reading the file
    is seconds of CPU: in a Locust process, a thread doing it would starve gevent's hub
    of the GIL, and a worker that misses its heartbeats is dropped by the master.
    Raises ``ValueError`` with the child's last line when it cannot."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.trace", plan.to_json()],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(said[-1] if said else f"exit {done.returncode}")
    demand = pickle.loads(done.stdout)  # our own child's answer
    assert isinstance(demand, Demand)
    return demand


if __name__ == "__main__":
    # By its module's name, so the answer unpickles as loadtests.trace.Demand.
    from loadtests import trace as this

    try:
        answer = this.load(LoadPlan.from_json(sys.argv[1]))
    except (OSError, ValueError) as exc:
        sys.exit(f"{type(exc).__name__}: {exc}")
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
