"""simulation.street and what the simulator does with it: legs on the street take what
real legs take (not the dispatcher's estimate), real durations are kept, drivers log on
and off.

Pure: demand files are written to ``tmp_path``; the learned model and the trips file
are read from ``data/``; no service is needed."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from geo.eta import DEFAULT_MODEL
from geo.eta.learned import LearnedEta
from geo.point import LatLng
from simulation import demand, street
from simulation.kpis import SimResult, median_ape
from simulation.simulator import SimConfig, simulate
from simulation.street import Shifts, Street
from tests.fixtures.demand import check_conservation, random_demand_csv

MIDTOWN = LatLng(40.7549, -73.9840)


@pytest.fixture(scope="module")
def learned_street() -> Street:
    return Street.learned()


def run(csv_path: Path, drivers: int, config: SimConfig) -> SimResult:
    rows = demand.read_demand(csv_path)
    requests = demand.build_requests(rows, seed=config.seed)
    starts = demand.driver_starts(requests, drivers, seed=config.seed)
    window_s = (rows.end - rows.start).total_seconds()
    return simulate(requests, starts, replace(config, shift_end_s=window_s))


def test_the_street_is_the_learned_models_held_out_error(learned_street: Street) -> None:
    """Pooled over its bands, the street's residuals are the held-out residuals that
    ``coopride eta fit`` summarised in the model's meta when it was fitted."""
    meta = LearnedEta.load().meta["held_out"]
    pooled = np.concatenate(learned_street.residuals)
    assert len(pooled) == meta["n"]
    for q, expected in meta["log_residual_quantiles"].items():
        assert np.quantile(pooled, float(q)) == pytest.approx(expected, abs=0.002)
    # Short legs (pickups) are estimated worse than long trips, relatively.
    spread = [float(np.subtract(*np.quantile(r, [0.9, 0.1]))) for r in learned_street.residuals]
    assert spread[0] > spread[-1]


def test_street_seconds_follow_the_residual_distribution_of_the_band() -> None:
    """A street built from known residuals: log(street / estimate) drawn for many legs
    has that distribution (quantiles within 0.02), each estimate in its own band."""
    rng = np.random.default_rng(1)
    predicted = np.concatenate([np.full(5000, 200.0), np.full(5000, 1200.0)])
    residual = np.concatenate([rng.normal(0.1, 0.4, 5000), rng.normal(0.0, 0.1, 5000)])
    s = Street.from_residuals(predicted, residual)
    for estimate, mean, sd in ((150.0, 0.1, 0.4), (2000.0, 0.0, 0.1)):
        est = np.full(20_000, estimate)
        drawn = s.draw(np.random.default_rng(2), est)
        assert (drawn >= 1).all() and (drawn == np.ceil(drawn)).all()
        log_ratio = np.log(drawn / est)
        for z in (-1.2816, -0.6745, 0.0, 0.6745, 1.2816):  # 10th … 90th percentiles
            q = 0.5 * (1 + math.erf(z / math.sqrt(2)))
            # ceil adds under 1/estimate to the log ratio.
            assert np.quantile(log_ratio, q) == pytest.approx(mean + z * sd, abs=0.02)


def test_same_seed_same_street(tmp_path: Path, learned_street: Street) -> None:
    demand_csv = random_demand_csv(tmp_path / "demand.csv", n=300, minutes=30, seed=1)
    config = SimConfig(policy="batched", street=learned_street, shifts=True, seed=7)
    first = run(demand_csv, 25, config)
    again = run(demand_csv, 25, config)
    assert asdict(first.kpis) == asdict(again.kpis)
    other = run(demand_csv, 25, replace(config, seed=8))
    assert other.kpis != first.kpis


def test_pickups_are_driven_on_the_street_not_the_estimate(
    tmp_path: Path, learned_street: Street
) -> None:
    demand_csv = random_demand_csv(tmp_path / "demand.csv", n=400, minutes=40, seed=2)
    config = SimConfig(policy="batched", street=learned_street, shifts=True)
    result = run(demand_csv, 80, config)
    check_conservation(result, config)
    matched = [t for t in result.trips if t.status == "matched"]
    assert len(matched) > 200
    est = np.array([t.pickup_eta_s for t in matched], dtype=float)
    driven = np.array([t.pickup_street_s for t in matched])
    assert (driven != est).mean() > 0.9
    for t in matched:
        assert t.pickup_s is not None and t.accepted_s is not None
        assert t.pickup_street_s is not None and t.duration_s is not None
        assert t.pickup_s == t.accepted_s + t.pickup_street_s
        assert t.dropoff_s == pytest.approx(t.pickup_s + t.duration_s)
    # Pickups in the first band (short legs) have that band's log error: its median
    # and its spread (with a tolerance of about three standard errors).
    short = est < learned_street.edges_s[0]
    assert short.sum() > 150
    log_ratio = np.log(driven[short] / est[short])
    band = learned_street.residuals[0]
    assert np.median(log_ratio) == pytest.approx(np.median(band), abs=0.1)
    iqr = np.subtract(*np.quantile(log_ratio, [0.75, 0.25]))
    assert iqr == pytest.approx(np.subtract(*np.quantile(band, [0.75, 0.25])), abs=0.12)
    k = result.kpis
    assert k.eta_error == pytest.approx(median_ape(list(est), list(driven)))
    assert k.pickup_eta_mean_s == pytest.approx(driven.mean())
    assert k.pickup_estimate_mean_s == pytest.approx(est.mean())
    assert k.eta_error_trip is None  # the file has no durations


def test_a_trip_with_a_real_duration_lasts_exactly_that(tmp_path: Path) -> None:
    """The 2016 trips' own columns are read as demand; each trip lasts its duration_s."""
    path = tmp_path / "trips.csv"
    lines = ["id,pickup_datetime,pickup_lat,pickup_lon,dropoff_lat,dropoff_lon,duration_s"]
    durations = [431, 1290, 77, 905]
    for k, seconds in enumerate(durations):
        lines.append(
            f"id{k},2016-03-14 17:0{k}:13,{MIDTOWN.lat + 0.002 * k},{MIDTOWN.lng},"
            f"{MIDTOWN.lat + 0.01},{MIDTOWN.lng + 0.01 * k},{seconds}"
        )
    path.write_text("\n".join(lines) + "\n")
    rows = demand.read_demand(path)
    assert not rows.minute_resolution and rows.duration_s.tolist() == durations
    requests = demand.build_requests(rows, seed=1)
    assert [r.duration_s for r in requests] == durations
    assert requests[0].dropoff == LatLng(MIDTOWN.lat + 0.01, MIDTOWN.lng)
    starts = [MIDTOWN, MIDTOWN, MIDTOWN, MIDTOWN]
    config = SimConfig(street=Street.from_residuals(np.array([100.0]), np.array([0.5])))
    result = simulate(requests, starts, replace(config, shift_end_s=7200))
    for t, seconds in zip(result.trips, durations, strict=True):
        assert t.status == "matched" and t.duration_real
        assert t.dropoff_s is not None and t.pickup_s is not None
        assert t.dropoff_s - t.pickup_s == seconds
        # The fare is on the trip as quoted, not on what it lasted.
        leg = DEFAULT_MODEL.leg(requests[0].pickup, requests[0].dropoff)
        assert t.duration_estimate_s is not None
        assert t.pickup_eta_s is not None
        assert t.pickup_street_s == max(1, math.ceil(t.pickup_eta_s * math.exp(0.5)))
    assert result.trips[0].duration_estimate_s == leg.duration_s
    expected = median_ape(
        [float(t.duration_estimate_s or 0) for t in result.trips], [float(d) for d in durations]
    )
    assert result.kpis.eta_error_trip == pytest.approx(expected)


def test_a_demand_file_without_the_pickup_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("pickup_datetime,latitude,longitude\n2016-03-14 17:00:00,40.7,-73.9\n")
    with pytest.raises(ValueError, match="pickup_lat, pickup_lon"):
        demand.read_demand(path)
    path.write_text("pickup_datetime,lat,lon,duration_s\n2016-03-14 17:00:00,40.7,-73.9,-5\n")
    with pytest.raises(ValueError, match="duration_s must be a positive"):
        demand.read_demand(path)


def test_shifts_are_respected(tmp_path: Path) -> None:
    """No offer to a driver before its shift starts or after it ends; a driver on a
    trip at the shift's end finishes it; online time is the shift within the replay."""
    demand_csv = random_demand_csv(tmp_path / "demand.csv", n=600, minutes=120, seed=3)
    config = SimConfig(policy="batched", shifts=True, seed=5, offer_accept_s=4.0)
    result = run(demand_csv, 40, config)
    shifts = Shifts.draw(demand.random_streams(5)["shifts"], 40, 7200.0)
    ids = [d.driver_id for d in result.drivers]
    on = dict(zip(ids, shifts.on_s, strict=True))
    off = dict(zip(ids, shifts.off_s, strict=True))
    assert any(0 < s < 7200 for s in shifts.on_s) and any(0 < s < 7200 for s in shifts.off_s)
    finished_late = 0
    for t in result.trips:
        if t.status != "matched":
            continue
        assert t.driver_id is not None and t.accepted_s is not None and t.dropoff_s is not None
        offered = t.accepted_s - config.offer_accept_s
        assert on[t.driver_id] <= offered < off[t.driver_id]
        finished_late += t.dropoff_s > off[t.driver_id]
    assert finished_late > 0  # some trips run past the shift's end, and are finished
    for d in result.drivers:
        assert d.online_from_s == max(0.0, on[d.driver_id])
        if off[d.driver_id] < 7200:
            last = d.intervals[-1][1] if d.intervals else 0.0
            assert d.online_from_s + d.online_s == pytest.approx(max(off[d.driver_id], last))
    k = result.kpis
    share = shifts.online_share(7200.0)
    assert 0.5 < share < 1.0
    assert k.drivers_online_mean == pytest.approx(40 * share, rel=0.05)


def test_shifts_are_drawn_as_documented() -> None:
    s = Shifts.draw(np.random.default_rng(0), 20_000, 7200.0)
    length = np.asarray(s.off_s) - np.asarray(s.on_s)
    lo, hi = street.SHIFT_HOURS
    assert length.min() >= lo * 3600 and length.max() <= hi * 3600
    assert (np.asarray(s.off_s) > 0).all() and (np.asarray(s.on_s) < 7200).all()
    # Online at any instant of the window with probability E[L / (L + W)].
    grid = np.linspace(lo, hi, 10_001) * 3600
    expected = float(np.mean(grid / (grid + 7200)))
    for t in (1.0, 3600.0, 7199.0):
        online = ((np.asarray(s.on_s) <= t) & (np.asarray(s.off_s) > t)).mean()
        assert online == pytest.approx(expected, abs=0.015)


def test_the_learned_model_reads_the_simulated_clock() -> None:
    """The same pickup leg at 04:00 and at 18:00 on the simulated clock: rush hour is
    slower, and the wall clock has nothing to do with it."""
    from geo.eta import load_eta_model

    model = load_eta_model("learned")
    clock = street.SimulatedClock(datetime.fromisoformat("2014-04-30T04:00:00-04:00").timestamp())
    bound = street.bind_clock(model, clock)
    a, b = MIDTOWN, LatLng(40.7306, -73.9866)
    night = bound.seconds(a, b)
    clock.now_s = 14 * 3600.0
    assert clock() == (2 * 24 + 18.0, 18.0)  # Wednesday 18:00
    assert bound.seconds(a, b) > night
    with pytest.raises(ValueError, match="start_epoch_s"):
        simulate([], [MIDTOWN], SimConfig(eta=model))
