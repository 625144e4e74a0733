"""The load plan's shape, the demand it replays and the verdict; plain Python, no Locust
(``loadtests.plan``, ``loadtests.trace``, ``loadtests.kpi``, ``loadtests.run``)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from geo.point import LatLng
from loadtests import kpi, trace
from loadtests.kpi import Thresholds, verdict
from loadtests.plan import LoadPlan
from tests.fixtures.demand import write_csv

# Inside the demo's Manhattan polygon, and outside it (Brooklyn).
MIDTOWN = LatLng(40.7549, -73.9840)
CHELSEA = LatLng(40.7465, -74.0014)
BROOKLYN = LatLng(40.6782, -73.9442)


def test_drivers_come_first_then_riders_ramp_hold_and_surge() -> None:
    plan = LoadPlan(
        duration_s=100, drivers=40, requests_per_minute=60, surge_factor=2.0, rider_pool=10
    )
    # Phases by share: drivers 0–15 s, riders ramp 15–30 s, hold 30–80 s, surge 80–100 s.
    assert plan.total_s == pytest.approx(100)
    assert plan.drivers_at(0.0) == 1  # the first member goes online at once
    assert 0 < plan.drivers_at(7.5) < 40
    assert plan.drivers_at(15.0) == 40
    assert plan.rate_multiplier(10.0) == 0.0 and plan.riders_at(10.0, 10) == 0
    assert plan.rate_multiplier(22.5) == pytest.approx(0.5)
    assert plan.rate_multiplier(50.0) == 1.0
    assert plan.rate_multiplier(90.0) == 2.0
    assert plan.riders_at(50.0, 10) == 5 and plan.riders_at(90.0, 10) == 10
    assert plan.rate_multiplier(100.0) == 0.0 and plan.drivers_at(100.0) == 0


def test_given_phases_win_over_shares_and_the_plan_round_trips() -> None:
    plan = LoadPlan(duration_s=100, driver_ramp_s=5, rider_ramp_s=0, hold_s=10, surge_s=0)
    assert plan.total_s == 15
    assert plan.rate_multiplier(5.0) == 1.0
    assert LoadPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    "bad",
    [{"decline_rate": 1.0}, {"cancel_rate": -0.1}, {"area": "queens"}, {"duration_s": 0}],
)
def test_a_bad_plan_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LoadPlan.from_mapping(bad)


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="drivres"):
        LoadPlan.from_mapping({"drivres": 10})


def test_the_demand_keeps_manhattan_trips_and_its_minute_rates(tmp_path: Path) -> None:
    rows = [("2014-04-30 17:00:00", MIDTOWN, CHELSEA)] * 3
    rows += [("2014-04-30 17:01:00", CHELSEA, MIDTOWN)]
    rows += [("2014-04-30 17:01:00", BROOKLYN, MIDTOWN)]  # outside the area
    demand_file = write_csv(tmp_path / "d.csv", rows)
    plan = LoadPlan(demand=str(demand_file), trace_start="2014-04-30 17:00:00", speedup=2)
    demand = trace.load(plan)
    assert len(demand.requests) == 4
    assert demand.per_minute[:2] == [3, 1]
    assert demand.rate_rpm(30.0) == 3.0 and demand.rate_rpm(90.0) == 1.0
    assert sum(demand.per_minute) == 4
    everywhere = trace.load(plan.with_(area="all"))
    assert len(everywhere.requests) == 5
    traced = plan.with_(trace=True, surge_factor=1.5)
    assert trace.peak_rpm(traced, demand) == pytest.approx(3 * 2 * 1.5)


def test_percentiles_are_nearest_rank() -> None:
    p = kpi.percentiles([float(v) for v in range(1, 101)])
    assert (p["n"], p["p50"], p["p95"], p["p99"], p["max"]) == (100, 50, 95, 99, 100)
    assert kpi.percentiles([])["p99"] is None


def test_the_verdict_names_each_missed_threshold() -> None:
    trips = {"requests": 10, "request_to_offer_s": kpi.percentiles([0.5] * 9 + [4.0])}
    th = Thresholds(max_p99_request_to_offer_s=3.0, max_error_rate=0.0)
    clean = kpi.LocustCounts(requests=100, failures=0, errors={})
    assert verdict(trips, clean, th) == ["p99 request→offer 4.0 s > 3 s"]
    fast = {"requests": 10, "request_to_offer_s": kpi.percentiles([0.5] * 10)}
    assert verdict(fast, clean, th) == []
    failing = kpi.LocustCounts(requests=100, failures=1, errors={"x": 1})
    assert verdict(fast, failing, th) == ["error rate 1.0000% > 0.0000%"]
    none = {"requests": 0, "request_to_offer_s": kpi.percentiles([])}
    assert "no trip was requested" in verdict(none, clean, th)


def _arrivals(plan: LoadPlan, trace_rpm: Callable[[float], float], seed: int) -> list[float]:
    """Every arrival of the rollout, as the locustfile's scheduler draws them."""
    rng = random.Random(seed)
    out: list[float] = []
    at: float | None = 0.0

    def rate(t: float) -> float:
        return plan.arrival_rate_per_s(t, trace_rpm)

    while at is not None:
        at = plan.next_arrival(at, rate_per_s=rate, rng=rng)
        if at is not None:
            out.append(at)
    return out


def test_riders_arrive_at_the_planned_rate_through_ramp_hold_and_surge() -> None:
    plan = LoadPlan(duration_s=600, requests_per_minute=60, surge_factor=2.0)
    arrivals = _arrivals(plan, lambda _: 0.0, seed=1)
    # Expected: ramp 90 s at half the rate, hold 300 s, surge 120 s at twice the rate.
    expected = 60 / 60 * (90 * 0.5 + 300 + 120 * 2.0)
    assert abs(len(arrivals) - expected) < 4 * math.sqrt(expected)
    assert min(arrivals) >= plan.riders_start_s and max(arrivals) < plan.total_s
    in_surge = sum(1 for a in arrivals if a >= plan.surge_start_s)
    assert abs(in_surge - 240) < 4 * math.sqrt(240)


def test_a_trace_replay_follows_the_files_rate_times_the_speedup() -> None:
    plan = LoadPlan(
        duration_s=100,
        driver_ramp_s=0,
        rider_ramp_s=0,
        hold_s=300,
        surge_s=0,
        trace=True,
        speedup=3.0,
    )
    # The file: 10 requests a minute for its first 5 minutes, 40 after (replay seconds).
    arrivals = _arrivals(plan, lambda replay_s: 10.0 if replay_s < 300 else 40.0, seed=2)
    # Replayed 3× faster: 100 s at 30/min, then 200 s at 120/min.
    early = sum(1 for a in arrivals if a < 100)
    late = sum(1 for a in arrivals if a >= 100)
    assert abs(early - 50) < 4 * math.sqrt(50)
    assert abs(late - 400) < 4 * math.sqrt(400)


def test_planned_requests_integrate_the_rate_and_a_lagging_generator_fails_the_run() -> None:
    plan = LoadPlan(duration_s=600, requests_per_minute=60, surge_factor=2.0)
    planned = plan.planned_requests(lambda _: 0.0)
    assert planned == pytest.approx(90 * 0.5 + 300 + 120 * 2.0, rel=0.01)
    trips = {"requests": 400, "request_to_offer_s": kpi.percentiles([0.5] * 400)}
    th = Thresholds(max_p99_request_to_offer_s=3.0, max_error_rate=0.0)
    clean = kpi.LocustCounts(requests=1000, failures=0, errors={})
    assert verdict(trips, clean, th, planned_requests=planned) == [
        "the load generator fell behind: 400 of 585 planned requests made"
    ]
    trips["requests"] = 560
    assert verdict(trips, clean, th, planned_requests=planned) == []
    # A short run is not failed by chance: 1 of 3 is within Poisson's reach.
    few = {"requests": 1, "request_to_offer_s": kpi.percentiles([0.5])}
    assert verdict(few, clean, th, planned_requests=3.0) == []
