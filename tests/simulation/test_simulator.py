"""simulation: the replay is deterministic, conserves riders, drivers and money,
matches as the live dispatcher would, and its CLI prints one JSON object.

Pure and fast: demand files are written to ``tmp_path``; no service is needed."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import candidates
from dispatch.batch.planner import CANDIDATES_PER_REQUEST
from dispatch.batch.types import POLICIES, Policy
from fares.pricing import price
from geo import cells
from geo.eta import DEFAULT_MODEL
from geo.point import LatLng
from simulation import defaults, demand, kpis, simulator
from simulation.demand import RideRequest
from simulation.simulator import SimConfig, simulate
from tests.fixtures.demand import check_conservation, random_demand_csv, write_csv

ROOT = Path(__file__).resolve().parents[2]
MIDTOWN = LatLng(40.7549, -73.9840)
DOWNTOWN = LatLng(40.7075, -74.0113)
BRONX = LatLng(40.8600, -73.8900)
NYC_BOUNDS = (40.633, 40.862, -74.178, -73.777)  # the README's 99% box
KPI_KEYS = {
    "requests",
    "eta_error",
    "matched",
    "expired",
    "still_open",
    "match_rate",
    "pickup_eta_mean_s",
    "pickup_eta_p50_s",
    "pickup_eta_p95_s",
    "rider_wait_mean_s",
    "driver_utilisation",
    "earnings_gini",
    "earnings_per_online_hour_p10_cents",
    "earnings_per_online_hour_p90_cents",
}


def moved(p: LatLng, *, east_m: float = 0.0, north_m: float = 0.0) -> LatLng:
    lat = p.lat + north_m / demand.METRES_PER_DEGREE_LAT
    per_deg_lng = demand.METRES_PER_DEGREE_LAT * math.cos(math.radians(p.lat))
    return LatLng(lat, p.lng + east_m / per_deg_lng)


def replay(csv_path: Path, drivers: int, config: SimConfig) -> kpis.SimResult:
    """The file replayed as ``coopride simulate`` does, with ``config``'s seed."""
    rows = demand.read_demand(csv_path)
    requests = demand.build_requests(rows, seed=config.seed)
    starts = demand.driver_starts(requests, drivers, seed=config.seed)
    window_s = (rows.end - rows.start).total_seconds()
    return simulate(requests, starts, replace(config, shift_end_s=window_s))


def test_the_unmatched_penalty_is_the_dispatchers() -> None:
    assert SimConfig(max_pickup_eta_s=900).unmatched_penalty_s == 1800


def test_a_request_timeout_no_offer_fits_in_is_refused() -> None:
    with pytest.raises(ValueError, match="request_timeout_s"):
        SimConfig(request_timeout_s=6.0, offer_accept_s=4.0, batch_s=2.0)
    assert SimConfig(request_timeout_s=6.5, offer_accept_s=4.0, batch_s=2.0).batch_s == 2.0


def test_same_seed_same_kpis(tmp_path: Path) -> None:
    demand_csv = random_demand_csv(tmp_path / "demand.csv", n=300, minutes=30, seed=1)
    config = SimConfig(policy="batched", fairness_weight=0.5, decline_rate=0.1, seed=7)
    first = replay(demand_csv, 25, config)
    again = replay(demand_csv, 25, config)
    assert asdict(first.kpis) == asdict(again.kpis)
    assert first.trips == again.trips
    other = replay(demand_csv, 25, replace(config, seed=8))
    assert [t.requested_s for t in other.trips] != [t.requested_s for t in first.trips]


@pytest.mark.parametrize(
    ("policy", "weight", "decline_rate"),
    [("greedy", 0.0, 0.0), ("batched", 0.0, 0.2), ("batched", 1.0, 0.2)],
)
def test_conservation(tmp_path: Path, policy: Policy, weight: float, decline_rate: float) -> None:
    demand_csv = random_demand_csv(tmp_path / "demand.csv", n=400, minutes=40, seed=2)
    config = SimConfig(policy=policy, fairness_weight=weight, decline_rate=decline_rate)
    result = replay(demand_csv, 20, config)
    check_conservation(result, config)
    k = result.kpis
    assert k.matched > 0 and k.expired > 0  # 20 drivers for 10 rides a minute: tight
    assert (k.declined > 0) == (decline_rate > 0)
    assert k.still_open == 0  # the replay runs on until every request is resolved


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_requests=st.integers(0, 40),
    n_drivers=st.integers(1, 6),
    policy=st.sampled_from(["greedy", "batched"]),
    weight=st.sampled_from([0.0, 1.0]),
    decline_rate=st.sampled_from([0.0, 0.5]),
)
def test_conservation_holds_for_any_small_replay(
    seed: int,
    n_requests: int,
    n_drivers: int,
    policy: Policy,
    weight: float,
    decline_rate: float,
) -> None:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 900, size=n_requests))
    pickups = [moved(MIDTOWN, east_m=x, north_m=y) for x, y in rng.normal(0, 1500, (n_requests, 2))]
    dropoffs = [
        moved(p, east_m=x, north_m=y)
        for p, (x, y) in zip(pickups, rng.normal(0, 2000, (n_requests, 2)), strict=True)
    ]
    requests = [
        RideRequest(f"trp_{i:03d}", float(t), p, d)
        for i, (t, p, d) in enumerate(zip(times, pickups, dropoffs, strict=True))
    ]
    starts = [moved(MIDTOWN, east_m=x, north_m=y) for x, y in rng.normal(0, 1500, (n_drivers, 2))]
    config = SimConfig(
        policy=policy,
        fairness_weight=weight,
        decline_rate=decline_rate,
        seed=seed,
        shift_end_s=900,
    )
    check_conservation(simulate(requests, starts, config), config)


def test_hand_made_demand_file(tmp_path: Path) -> None:
    """Two drivers, one in Midtown and one Downtown (~5.6 km apart: farther than a
    900 s pickup). Each nearby rider gets the nearby driver; a rider in the Bronx has
    nobody within reach and expires; a later rider near the first downtown drop-off gets
    the driver who made it."""
    r0_pickup, r0_dropoff = moved(MIDTOWN, east_m=-80, north_m=120), moved(MIDTOWN, north_m=1100)
    r1_pickup, r1_dropoff = moved(DOWNTOWN, east_m=100, north_m=60), moved(DOWNTOWN, north_m=900)
    r3_pickup = moved(r1_dropoff, east_m=150)
    demand_csv = write_csv(
        tmp_path / "hand.csv",
        [
            ("2014-04-30 17:00:00", r0_pickup, r0_dropoff),
            ("2014-04-30 17:01:00", r1_pickup, r1_dropoff),
            ("2014-04-30 17:02:00", BRONX, MIDTOWN),
            ("2014-04-30 17:30:00", r3_pickup, DOWNTOWN),
        ],
    )
    eta = DEFAULT_MODEL
    assert eta.seconds(MIDTOWN, DOWNTOWN) > 900 and eta.seconds(r0_dropoff, r3_pickup) > 900
    assert min(eta.seconds(p, BRONX) for p in (MIDTOWN, DOWNTOWN, r0_dropoff, r1_dropoff)) > 900

    rows = demand.read_demand(demand_csv)
    assert len(rows) == 4 and rows.minute_resolution
    assert rows.start.hour == 17 and (rows.end - rows.start).total_seconds() == 2 * 3600
    requests = demand.build_requests(rows, seed=3)
    assert [r.dropoff for r in requests] == [r0_dropoff, r1_dropoff, MIDTOWN, DOWNTOWN]
    for r, minute in zip(requests, (0, 1, 2, 30), strict=True):
        assert minute * 60 <= r.requested_s < (minute + 1) * 60

    config = SimConfig(policy="batched", seed=3, offer_accept_s=4.0)
    result = simulate(requests, [MIDTOWN, DOWNTOWN], config)
    check_conservation(result, config)
    t0, t1, t2, t3 = result.trips
    assert (t0.status, t0.driver_id, t0.pickup_eta_s) == (
        "matched",
        "drv_00000",
        eta.seconds(MIDTOWN, r0_pickup),
    )
    assert (t1.status, t1.driver_id, t1.pickup_eta_s) == (
        "matched",
        "drv_00001",
        eta.seconds(DOWNTOWN, r1_pickup),
    )
    assert t2.status == "expired" and t2.driver_id is None
    assert (t3.status, t3.driver_id, t3.pickup_eta_s) == (
        "matched",
        "drv_00001",
        eta.seconds(r1_dropoff, r3_pickup),
    )
    # Offered at the first tick after the request, accepted offer_accept_s later.
    assert t0.accepted_s == math.ceil(requests[0].requested_s / 2) * 2 + 4.0
    leg = eta.leg(r0_pickup, r0_dropoff)
    assert t0.accepted_s is not None and t0.pickup_eta_s is not None
    assert t0.dropoff_s == t0.accepted_s + t0.pickup_eta_s + leg.duration_s
    assert (
        t0.driver_earnings_cents
        == price(
            defaults.SEEDED_FARE_RULE, distance_m=leg.distance_m, duration_s=leg.duration_s
        ).total_cents
    )
    k = result.kpis
    assert (k.requests, k.matched, k.expired, k.still_open) == (4, 3, 1, 0)
    assert k.rider_wait_mean_s == pytest.approx(
        np.mean([t.pickup_s - t.requested_s for t in (t0, t1, t3)])  # type: ignore[operator]
    )


def test_batched_serves_the_rider_greedy_strands() -> None:
    """Two riders in one batch. Driver a is nearest to both; driver b can reach only
    rider 1 (877 s). Greedy gives a to rider 1, and rider 2, whom only a can reach,
    waits until expiry while a drives rider 1 far away. Batched sends b to rider 1 and a
    to rider 2 (the example of docs/dispatch-algorithm.md, on a map)."""
    a = MIDTOWN
    rider1 = moved(a, east_m=-100)
    rider2 = moved(a, east_m=150)
    b = moved(rider1, east_m=-3_900)
    eta = DEFAULT_MODEL
    assert eta.seconds(b, rider1) <= 900 < eta.seconds(b, rider2)
    requests = [
        RideRequest("trp_1", 0.5, rider1, moved(rider1, north_m=-8_000)),
        RideRequest("trp_2", 1.0, rider2, moved(rider2, north_m=1_000)),
    ]
    greedy = simulate(requests, [a, b], SimConfig(policy="greedy"))
    batched = simulate(requests, [a, b], SimConfig(policy="batched"))
    assert [(t.status, t.driver_id) for t in greedy.trips] == [
        ("matched", "drv_00000"),
        ("expired", None),
    ]
    assert [(t.status, t.driver_id) for t in batched.trips] == [
        ("matched", "drv_00001"),
        ("matched", "drv_00000"),
    ]


@pytest.mark.parametrize("policy", ["greedy", "batched"])
def test_a_rider_whose_nearest_drivers_all_went_to_others_is_served_in_the_same_batch(
    policy: Policy,
) -> None:
    """Nine riders at one corner in one batch, eight drivers around it and one farther:
    the first pass serves eight, the second finds the ninth the far driver, at the same
    tick, as the live dispatcher does."""
    corner = MIDTOWN
    starts = [moved(corner, east_m=50 + 10 * k) for k in range(CANDIDATES_PER_REQUEST)]
    starts.append(moved(corner, east_m=-2_500))
    assert DEFAULT_MODEL.seconds(starts[-1], corner) <= 900
    requests = [
        RideRequest(f"trp_{i}", 0.5, corner, moved(corner, north_m=2_000))
        for i in range(CANDIDATES_PER_REQUEST + 1)
    ]
    result = simulate(requests, starts, SimConfig(policy=policy))
    assert {t.status for t in result.trips} == {"matched"}
    assert {t.accepted_s for t in result.trips} == {2.0 + SimConfig().offer_accept_s}
    assert sorted(t.driver_id or "" for t in result.trips) == sorted(
        f"drv_{k:05d}" for k in range(len(starts))
    )


def test_a_request_that_would_expire_before_the_answer_gets_no_offer() -> None:
    """One driver, two waiting riders when it comes back from a trip. The first would
    expire 1 s later, before the driver could answer (its offer would be withdrawn), so
    the driver goes to the second, under either policy, and the first expires unoffered."""
    config = SimConfig(request_timeout_s=60.0)
    busy = RideRequest("trp_0", 0.0, MIDTOWN, moved(MIDTOWN, north_m=1_000))
    back_s = simulate([busy], [MIDTOWN], config).trips[0].dropoff_s
    assert back_s is not None
    tick_s = math.ceil(back_s / config.batch_s) * config.batch_s
    pickup = moved(MIDTOWN, north_m=800)
    late = [
        RideRequest("trp_1", tick_s - config.request_timeout_s + 1.0, pickup, MIDTOWN),
        RideRequest("trp_2", tick_s - 10.0, pickup, MIDTOWN),
    ]
    for policy in POLICIES:
        result = simulate([busy, *late], [MIDTOWN], replace(config, policy=policy))
        statuses = [(t.trip_id, t.status, t.offers) for t in result.trips]
        assert statuses == [
            ("trp_0", "matched", 1),
            ("trp_1", "expired", 0),
            ("trp_2", "matched", 1),
        ]
        assert result.trips[2].accepted_s == tick_s + config.offer_accept_s


def test_candidate_search_is_the_live_rule() -> None:
    """The in-memory index finds, for any pickup, exactly the drivers the live Redis
    script would: ring by ring over ``disk_by_ring`` up to ``max_rings``, one ring past
    the ring that brings ``want``, whether few or many cells are occupied."""
    rng = np.random.default_rng(5)
    config = SimConfig()
    k_max = candidates.max_rings(
        config.eta, max_pickup_eta_s=config.max_pickup_eta_s, resolution=config.resolution
    )
    disk_cells = 1 + 3 * k_max * (k_max + 1)
    for n_drivers, spread_m in ((3, 3_000), (40, 3_000), (3_000, 6_000)):
        offsets = rng.normal(0, spread_m, (n_drivers, 2))
        starts = [moved(MIDTOWN, east_m=x, north_m=y) for x, y in offsets]
        sim = simulator._Simulation([], starts, config)
        # Both ways of walking the index are exercised: few and many occupied cells.
        assert (len(sim.index) < disk_cells) == (n_drivers < 1_000)
        for x, y in rng.normal(0, 3000, (30, 2)):
            centre = cells.cell_of(moved(MIDTOWN, east_m=x, north_m=y), config.resolution)
            rings = cells.disk_by_ring(centre, k_max)
            ring_of = {c: k for k, ring in enumerate(rings) for c in ring}
            by_ring: list[list[int]] = [[] for _ in rings]
            for d in range(n_drivers):
                if sim.cell[d] in ring_of:
                    by_ring[ring_of[sim.cell[d]]].append(d)
            for want in (1, 8, 10):
                expected: list[int] = []
                stop_after = None
                for k in range(len(rings)):
                    expected += by_ring[k]
                    if stop_after is None and len(expected) >= want:
                        stop_after = k + 1
                    if stop_after is not None and k >= stop_after:
                        break
                assert sorted(sim._found(centre, want)) == sorted(expected)


def test_drawn_dropoffs_look_like_nyc_trips() -> None:
    rng = np.random.default_rng(11)
    lat = rng.uniform(40.70, 40.80, size=5_000)
    lng = rng.uniform(-74.01, -73.94, size=5_000)
    d_lat, d_lng = demand.draw_dropoffs(np.random.default_rng(12), lat, lng, bounds=NYC_BOUNDS)
    road_m = np.array(
        [
            DEFAULT_MODEL.leg(LatLng(a, b), LatLng(c, d)).distance_m
            for a, b, c, d in zip(lat, lng, d_lat, d_lng, strict=True)
        ]
    )
    assert 2_500 <= np.median(road_m) <= 4_500
    assert 7_000 <= np.percentile(road_m, 90) <= 13_000
    inside = (d_lat >= NYC_BOUNDS[0]) & (d_lat <= NYC_BOUNDS[1])
    inside &= (d_lng >= NYC_BOUNDS[2]) & (d_lng <= NYC_BOUNDS[3])
    assert inside.all()


def test_default_window_is_the_busiest_hours(tmp_path: Path) -> None:
    rows: list[tuple[str, LatLng, LatLng | None]] = []
    for hour, count in ((8, 3), (17, 5), (18, 6), (19, 2), (22, 9)):
        rows += [(f"2014-04-30 {hour:02d}:{i:02d}:00", MIDTOWN, None) for i in range(count)]
    window = demand.read_demand(write_csv(tmp_path / "d.csv", rows))
    assert (window.start.hour, window.end.hour, len(window)) == (17, 19, 11)
    assert window.start.utcoffset() is not None  # local NYC time, never naive


def test_gini() -> None:
    assert kpis.gini([5, 5, 5, 5]) == 0.0
    assert kpis.gini([0, 0, 0]) == 0.0
    assert kpis.gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert kpis.gini([1, 2, 3, 4]) == pytest.approx(0.25)


def test_eta_error_leaves_out_legs_of_no_seconds() -> None:
    """A driver already at the pickup drives 0 s on an exact street: no relative error,
    and no NaN in the KPIs (the CLI's JSON refuses NaN)."""
    assert kpis.median_ape([0.0, 10.0, 12.0], [0.0, 8.0, 12.0]) == pytest.approx(0.125)
    assert kpis.median_ape([0.0], [0.0]) is None
    assert kpis.median_ape([], []) is None
    on_the_spot = RideRequest("trp_0", 0.5, MIDTOWN, moved(MIDTOWN, north_m=1_000))
    result = simulate([on_the_spot], [MIDTOWN], SimConfig())
    assert result.trips[0].pickup_street_s == 0 and result.kpis.eta_error is None


def test_cli_prints_one_json_object(tmp_path: Path) -> None:
    demand_csv = random_demand_csv(tmp_path / "demand.csv", n=60, minutes=20, seed=4)
    gz = tmp_path / "demand.csv.gz"
    gz.write_bytes(gzip.compress(demand_csv.read_bytes()))
    for path in (demand_csv, gz):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "server.cli",
                "simulate",
                "--demand",
                str(path),
                "--drivers",
                "3",
                "--policy",
                "batched",
                "--json",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert isinstance(out, dict) and out.keys() >= KPI_KEYS
        assert out["requests"] == 60
        assert out["matched"] + out["expired"] + out["still_open"] == 60
        assert out["scenario"]["policy"] == "batched"
        assert "[simulate]" in done.stderr  # progress on stderr, not stdout
        # Each tenth of the replay is reported, ending with all of it.
        replayed = [line for line in done.stderr.splitlines() if "requests replayed" in line]
        assert len(replayed) == 10 and replayed[-1].endswith("60/60 requests replayed")
