"""geo.eta: the straight-line model as before, the calibrated model (committed JSON), the
road-network model, the reach_m bound, and the calibration script's --observed path."""

from __future__ import annotations

import csv
import math
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import calibrate_eta
from geo import roads
from geo.eta import (
    DEFAULT_DETOUR_FACTOR,
    DEFAULT_MODEL,
    DEFAULT_SPEED_MPS,
    CalibratedEtaModel,
    EtaCalibration,
    EtaModel,
    HourOfWeekClock,
    Leg,
    RoadNetworkEtaModel,
    calibration_path,
    fixed_hour,
    load_eta_model,
)
from geo.point import LatLng, haversine_m

EMPIRE_STATE = LatLng(40.7484, -73.9857)
GRAND_CENTRAL = LatLng(40.7527, -73.9772)
JAMAICA = LatLng(40.7020, -73.8010)
FLUSHING = LatLng(40.7590, -73.8300)
TUESDAY_18H, TUESDAY_04H = 24 + 18, 24 + 4


@pytest.fixture(scope="module")
def calibration() -> EtaCalibration:
    return EtaCalibration.load()


@pytest.fixture(scope="module")
def router() -> roads.RoadRouter:
    return roads.RoadRouter.load()


def test_straight_line_model_is_unchanged() -> None:
    straight = haversine_m(EMPIRE_STATE, GRAND_CENTRAL)
    leg = DEFAULT_MODEL.leg(EMPIRE_STATE, GRAND_CENTRAL)
    assert leg == Leg(round(straight * 1.35), math.ceil(straight * 1.35 / 6.0))
    assert DEFAULT_MODEL.seconds(EMPIRE_STATE, GRAND_CENTRAL) == leg.duration_s
    assert DEFAULT_MODEL.reach_m(900) == pytest.approx(900 * 6.0 / 1.35)
    assert load_eta_model("straight") is DEFAULT_MODEL


def test_committed_calibration_is_small_and_loads_fast() -> None:
    assert calibration_path().stat().st_size < 200_000
    started = time.perf_counter()
    model = load_eta_model("calibrated")
    assert time.perf_counter() - started < 1.0
    assert isinstance(model, CalibratedEtaModel) and isinstance(model, EtaModel)
    assert "not observed durations" in model.calibration.meta["reference"]
    assert model.calibration.coverage  # Midtown's districts


def test_calibration_round_trips_through_json(calibration: EtaCalibration) -> None:
    again = EtaCalibration.from_json(calibration.to_json())
    a = CalibratedEtaModel.create(calibration, clock=fixed_hour(TUESDAY_18H))
    b = CalibratedEtaModel.create(again, clock=fixed_hour(TUESDAY_18H))
    assert a.leg(EMPIRE_STATE, GRAND_CENTRAL) == b.leg(EMPIRE_STATE, GRAND_CENTRAL)


def test_midtown_is_slower_than_the_straight_line_and_slowest_at_peak(
    calibration: EtaCalibration,
) -> None:
    model = CalibratedEtaModel.create(calibration)
    peak = model.seconds_at(EMPIRE_STATE, GRAND_CENTRAL, TUESDAY_18H)
    night = model.seconds_at(EMPIRE_STATE, GRAND_CENTRAL, TUESDAY_04H)
    assert night < peak
    assert peak > DEFAULT_MODEL.seconds(EMPIRE_STATE, GRAND_CENTRAL)
    leg = model.leg_at(EMPIRE_STATE, GRAND_CENTRAL, TUESDAY_18H)
    assert leg.distance_m >= haversine_m(EMPIRE_STATE, GRAND_CENTRAL)
    assert leg.duration_s == peak
    assert 1.0 <= model.detour_factor_at(EMPIRE_STATE, GRAND_CENTRAL) < 2.5
    assert 1.0 < model.speed_mps_at(EMPIRE_STATE, GRAND_CENTRAL, TUESDAY_18H) < 10.0


def test_calibrated_model_falls_back_outside_its_districts(calibration: EtaCalibration) -> None:
    model = CalibratedEtaModel.create(calibration, clock=fixed_hour(TUESDAY_18H))
    assert not model.covers(JAMAICA, FLUSHING)
    assert not model.covers(EMPIRE_STATE, JAMAICA)
    # As today, exactly: no evidence outside Midtown says otherwise.
    assert model.leg(JAMAICA, FLUSHING) == DEFAULT_MODEL.leg(JAMAICA, FLUSHING)
    assert model.seconds(EMPIRE_STATE, JAMAICA) == DEFAULT_MODEL.seconds(EMPIRE_STATE, JAMAICA)


def test_fitted_global_level_applies_outside_when_asked(calibration: EtaCalibration) -> None:
    data = calibration.to_json()
    data["uncovered"] = None
    model = CalibratedEtaModel.create(EtaCalibration.from_json(data))
    assert model.covers(JAMAICA, FLUSHING)
    seconds = model.seconds_at(JAMAICA, FLUSHING, TUESDAY_18H)
    assert seconds > 0 and seconds != DEFAULT_MODEL.seconds(JAMAICA, FLUSHING)


def test_road_model_routes_in_midtown_and_falls_back_elsewhere(
    calibration: EtaCalibration, router: roads.RoadRouter
) -> None:
    fallback = CalibratedEtaModel.create(calibration, clock=fixed_hour(TUESDAY_18H))
    model = RoadNetworkEtaModel(router=router, fallback=fallback)
    free_flow = router.free_flow_s(EMPIRE_STATE, GRAND_CENTRAL)
    assert free_flow is not None
    expected = math.ceil(free_flow * roads.congestion_factor(TUESDAY_18H))
    assert model.seconds(EMPIRE_STATE, GRAND_CENTRAL) == expected
    assert model.leg(EMPIRE_STATE, GRAND_CENTRAL).duration_s == expected
    assert model.seconds(JAMAICA, FLUSHING) == fallback.seconds(JAMAICA, FLUSHING)
    assert model.leg(EMPIRE_STATE, JAMAICA) == fallback.leg(EMPIRE_STATE, JAMAICA)


def test_clock_reads_local_hour_of_week() -> None:
    tz = ZoneInfo("America/New_York")
    wednesday = datetime(2014, 4, 30, 18, 59, 30, tzinfo=tz).timestamp()
    now = [wednesday]
    clock = HourOfWeekClock("America/New_York", now=lambda: now[0])
    assert clock() == 2 * 24 + 18
    now[0] += 31  # 19:00:01
    assert clock() == 2 * 24 + 19
    sunday_night = datetime(2014, 5, 4, 23, 30, tzinfo=tz).timestamp()
    now[0] = sunday_night
    assert clock() == 167


# --- reach_m: the candidate search must never miss a driver the model would accept ---

midtown_points = st.builds(
    LatLng,
    st.floats(40.737, 40.758, allow_nan=False),
    st.floats(-74.012, -73.964, allow_nan=False),
)
city_points = st.builds(
    LatLng,
    st.floats(40.55, 40.92, allow_nan=False),
    st.floats(-74.25, -73.70, allow_nan=False),
)
any_points = st.one_of(midtown_points, city_points)
hours = st.integers(0, 167)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=any_points, b=any_points, how=hours)
def test_reach_bounds_the_calibrated_model(
    calibration: EtaCalibration, a: LatLng, b: LatLng, how: int
) -> None:
    model = CalibratedEtaModel.create(calibration, clock=fixed_hour(how))
    assert haversine_m(a, b) <= model.reach_m(model.seconds(a, b))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=any_points, b=any_points, how=hours)
def test_reach_bounds_the_fitted_global_model(
    calibration: EtaCalibration, a: LatLng, b: LatLng, how: int
) -> None:
    data = calibration.to_json()
    data["uncovered"] = None
    model = CalibratedEtaModel.create(EtaCalibration.from_json(data), clock=fixed_hour(how))
    assert haversine_m(a, b) <= model.reach_m(model.seconds(a, b))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=any_points, b=any_points, how=hours)
def test_reach_bounds_the_road_model(
    calibration: EtaCalibration, router: roads.RoadRouter, a: LatLng, b: LatLng, how: int
) -> None:
    fallback = CalibratedEtaModel.create(calibration, clock=fixed_hour(how))
    model = RoadNetworkEtaModel(router=router, fallback=fallback)
    assert haversine_m(a, b) <= model.reach_m(model.seconds(a, b))


@settings(max_examples=200, deadline=None)
@given(seconds=st.floats(0, 20_000), how=hours)
def test_reach_grows_with_time(calibration: EtaCalibration, seconds: float, how: int) -> None:
    model = CalibratedEtaModel.create(calibration, clock=fixed_hour(how))
    assert model.reach_m(seconds) <= model.reach_m(seconds + 60)


def test_reach_holds_on_real_midtown_pairs(
    calibration: EtaCalibration, router: roads.RoadRouter
) -> None:
    """Dense check where hypothesis samples thinly: every pair of 300 real kerbside
    nodes, at the fastest and the slowest hour."""
    graph = router.graph
    rng = np.random.default_rng(11)
    nodes = rng.choice(graph.node_count, 300, replace=False)
    points = [LatLng(float(graph.lat[i]), float(graph.lng[i])) for i in nodes]
    for how in (TUESDAY_04H, TUESDAY_18H):
        fallback = CalibratedEtaModel.create(calibration, clock=fixed_hour(how))
        for model in (fallback, RoadNetworkEtaModel(router=router, fallback=fallback)):
            for a in points[:60]:
                for b in points:
                    assert haversine_m(a, b) <= model.reach_m(model.seconds(a, b))


# --- the calibration script's --observed path ------------------------------------------

TRUE_DETOUR, TRUE_SPEED_MPS = 1.28, 5.2


def _synthetic_trips(path: Path, *, with_distance: bool, n: int = 3000) -> None:
    """Trips across NYC whose road distance is TRUE_DETOUR × the straight line and whose
    speed is TRUE_SPEED_MPS, with 5% multiplicative noise on each."""
    rng = np.random.default_rng(5)
    columns = [
        "pickup_datetime",
        "pickup_lat",
        "pickup_lon",
        "dropoff_lat",
        "dropoff_lon",
        "duration_s",
    ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns + (["distance_m"] if with_distance else []))
        for i in range(n):
            o = LatLng(rng.uniform(40.60, 40.85), rng.uniform(-74.02, -73.78))
            length = float(np.clip(rng.lognormal(math.log(3300), 0.8), 300, 15_000))
            angle = rng.uniform(0, 2 * math.pi)
            d = LatLng(
                o.lat + length * math.sin(angle) / 111_195,
                o.lng + length * math.cos(angle) / (111_195 * math.cos(math.radians(o.lat))),
            )
            road_m = haversine_m(o, d) * TRUE_DETOUR * math.exp(rng.normal(0, 0.05))
            duration_s = road_m / TRUE_SPEED_MPS * math.exp(rng.normal(0, 0.05))
            when = f"2014-04-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"
            row = [when, o.lat, o.lng, d.lat, d.lng, round(duration_s, 1)]
            writer.writerow(row + ([round(road_m, 1)] if with_distance else []))
        writer.writerow(["2014-04-02 10:00:00", "x", "", "", "", ""])  # skipped, not fatal


def _probe_pairs() -> list[tuple[LatLng, LatLng]]:
    rng = np.random.default_rng(9)
    out = []
    for _ in range(200):
        o = LatLng(rng.uniform(40.62, 40.83), rng.uniform(-74.00, -73.80))
        out.append((o, LatLng(o.lat + rng.uniform(-0.03, 0.03), o.lng + rng.uniform(-0.03, 0.03))))
    return out


def test_observed_trips_recover_detour_and_speed(tmp_path: Path) -> None:
    trips, out = tmp_path / "trips.csv", tmp_path / "calibration.json"
    _synthetic_trips(trips, with_distance=True)
    assert calibrate_eta.main(["--observed", str(trips), "--out", str(out)]) == 0
    calibration = EtaCalibration.load(out)
    assert calibration.meta["reference"] == "observed trips"
    assert calibration.uncovered is None  # observed: the fitted global level applies
    model = CalibratedEtaModel.create(calibration)
    detours = [model.detour_factor_at(a, b) for a, b in _probe_pairs()]
    speeds = [model.speed_mps_at(a, b, h % 168) for h, (a, b) in enumerate(_probe_pairs())]
    assert np.median(detours) == pytest.approx(TRUE_DETOUR, rel=0.03)
    assert np.median(speeds) == pytest.approx(TRUE_SPEED_MPS, rel=0.03)
    assert min(detours) > TRUE_DETOUR * 0.93 and max(detours) < TRUE_DETOUR * 1.07
    for how, (a, b) in enumerate(_probe_pairs()[:50]):
        expected = haversine_m(a, b) * TRUE_DETOUR / TRUE_SPEED_MPS
        assert model.seconds_at(a, b, how % 168) == pytest.approx(expected, rel=0.1)


def test_observed_durations_alone_recover_the_pace(tmp_path: Path) -> None:
    trips, out = tmp_path / "trips.csv", tmp_path / "calibration.json"
    _synthetic_trips(trips, with_distance=False)
    assert calibrate_eta.main(["--observed", str(trips), "--out", str(out)]) == 0
    model = CalibratedEtaModel.create(EtaCalibration.load(out))
    paces = [
        model.seconds_at(a, b, how % 168) / haversine_m(a, b)
        for how, (a, b) in enumerate(_probe_pairs())
    ]
    assert np.median(paces) == pytest.approx(TRUE_DETOUR / TRUE_SPEED_MPS, rel=0.03)
    # A duration cannot tell a long route from a slow one: the detour stays the default.
    assert model.detour_factor_at(*_probe_pairs()[0]) == pytest.approx(
        DEFAULT_DETOUR_FACTOR, rel=1e-4
    )
    assert DEFAULT_SPEED_MPS == 6.0


def test_observed_file_without_needed_columns_is_refused(tmp_path: Path) -> None:
    trips = tmp_path / "trips.csv"
    trips.write_text("pickup_datetime,pickup_lat,pickup_lon\n2014-04-01 00:00:00,40.7,-73.9\n")
    with pytest.raises(ValueError, match="lacks columns"):
        calibrate_eta.main(["--observed", str(trips), "--out", str(tmp_path / "c.json")])
