"""The learned ETA model, judged against real trips it was not fitted on, and its live
correction, fed by finished trips through Redis as the service feeds it."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.data import DataFile, data_path
from core.models import Trip
from core.models.spatial import point_value
from dispatch import eta_feedback
from dispatch.runtime import Runtime
from geo.eta import learned as L
from geo.eta import load_eta_model
from geo.eta.learned import LearnedEtaModel, LiveCorrection
from geo.point import LatLng
from server.harness import ROOT

TIMES_SQUARE = LatLng(40.7580, -73.9855)
UNION_SQUARE = LatLng(40.7359, -73.9911)
JFK = LatLng(40.6413, -73.7781)


@pytest.fixture(scope="module")
def model() -> LearnedEtaModel:
    eta = load_eta_model("learned")
    assert isinstance(eta, LearnedEtaModel)
    return eta


@pytest.fixture(scope="module")
def held_out() -> L.ObservedTrips:
    trips = L.read_observed_trips(data_path(DataFile.TRIPS))
    return trips.take(trips.month >= 5)


def test_the_shipped_model_beats_the_baseline_on_real_trips_it_never_saw(
    model: LearnedEtaModel, held_out: L.ObservedTrips
) -> None:
    """Months 5-6 of the real 2016 trips; the baseline's speed was fitted on months 1-4."""
    meta = model.learned.meta
    assert meta["months"] == [1, 2, 3, 4] and meta["source"] == DataFile.TRIPS.value
    result = L.evaluate(model.learned, held_out, baseline_mps=meta["baseline_speed_mps"])
    assert result["n"] == len(held_out) > 20_000
    assert result["median_ape"] <= 0.6 * result["baseline"]["median_ape"]
    assert result["p90_ape"] <= 0.50
    assert result["median_ape"] <= 0.20


def test_both_file_layouts_read_the_same_trips(tmp_path: Path) -> None:
    rows = [
        ("2016-03-01 08:00:05", "2016-03-01 08:10:05", 40.75, -73.98, 40.76, -73.97, 600),
        ("2016-03-01 07:00:00", "2016-03-01 07:05:00", 40.74, -73.99, 40.745, -73.985, 300),
    ]
    trips_2016 = tmp_path / "trips.csv.gz"
    with gzip.open(trips_2016, "wt") as f:
        f.write(
            "pickup_datetime,dropoff_datetime,pickup_lat,pickup_lon,dropoff_lat,dropoff_lon,duration_s\n"
        )
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")
    demand = tmp_path / "demand.csv"
    demand.write_text(
        "pickup_datetime,lat,lon,base,dropoff_lat,dropoff_lon,duration_s\n"
        + "".join(f"{r[0]},{r[2]},{r[3]},B1,{r[4]},{r[5]},{r[6]}\n" for r in rows)
    )
    a, b = L.read_observed_trips(trips_2016), L.read_observed_trips(demand)
    for name in L.ObservedTrips.__dataclass_fields__:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    # Sorted by pickup; New York local time (EST in March: UTC-5).
    assert list(a.duration_s) == [300, 600]
    assert a.pickup_s[0] == datetime(2016, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    assert a.hour_of_week[0] == 1 * 24 + 7 and a.hour_of_day[1] == pytest.approx(8 + 5 / 3600)


def test_a_file_without_durations_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "pickups.csv"
    path.write_text("pickup_datetime,lat,lon,base\n2014-04-01 00:00:00,40.7,-74.0,B\n")
    with pytest.raises(ValueError, match="duration_s"):
        L.read_observed_trips(path)


def test_a_batch_answers_what_each_pair_answers(model: LearnedEtaModel) -> None:
    origins = [TIMES_SQUARE, UNION_SQUARE, JFK, TIMES_SQUARE]
    destinations = [UNION_SQUARE, TIMES_SQUARE, TIMES_SQUARE, TIMES_SQUARE]
    batch = model.seconds_many(origins, destinations)
    assert batch == [model.seconds(o, d) for o, d in zip(origins, destinations, strict=True)]
    assert model.seconds_many([], []) == []
    # Real-world sense: a crosstown Midtown hop takes minutes, JFK to Midtown far longer.
    assert 180 < batch[0] < 1800 and batch[2] > 2 * batch[0]
    assert batch[3] >= L.MIN_SECONDS
    leg = model.leg(TIMES_SQUARE, UNION_SQUARE)
    assert leg.duration_s == batch[0] and leg.distance_m > 2000


def test_the_hour_matters_the_way_traffic_does(model: LearnedEtaModel) -> None:
    """Tuesday 18:00 (rush hour) is slower than Sunday 05:00 on the same trip."""
    rush = model.raw_seconds_at(TIMES_SQUARE, UNION_SQUARE, _ny(2016, 5, 3, 18))
    dawn = model.raw_seconds_at(TIMES_SQUARE, UNION_SQUARE, _ny(2016, 5, 8, 5))
    assert rush > 1.3 * dawn


def _ny(year: int, month: int, day: int, hour: int) -> float:
    # May 2016 is EDT, UTC-4.
    return datetime(year, month, day, hour + 4, tzinfo=UTC).timestamp()


def test_live_correction_shrinks_forgets_and_clamps() -> None:
    c = LiveCorrection()
    assert c.factor(1000.0) == 1.0
    c.observe(1000.0, predicted_s=600, actual_s=900)  # one slow trip moves little
    one = c.factor(1001.0)
    assert 1.0 < one < 1.05
    for t in range(1002, 1042):
        c.observe(float(t), predicted_s=600, actual_s=900)
    many = c.factor(1050.0)
    assert many > one
    assert many == pytest.approx(math.exp(41 * math.log(1.5) / (41 + L.LIVE_PRIOR_TRIPS)))
    assert c.factor(1000.0 + L.LIVE_WINDOW_S + 100) == 1.0  # the half hour has passed
    for t in range(5000, 5500):
        c.observe(float(t), predicted_s=100, actual_s=1000)
    assert c.factor(5600.0) == L.LIVE_MAX_FACTOR


def test_replay_uses_only_trips_finished_before_each_prediction(
    model: LearnedEtaModel, held_out: L.ObservedTrips
) -> None:
    first = held_out.take(np.arange(len(held_out)) < 200)
    alone = L.replay(model.learned, first, live=False)
    live = L.replay(model.learned, first)
    # The first trip of the file: nothing had finished, so nothing corrected it.
    assert live[0] == alone[0]
    finished_before = first.dropoff_s < first.pickup_s[-1]
    assert finished_before.any() and live[-1] != alone[-1]


async def test_finished_trips_correct_every_process_through_redis(runtime: Runtime) -> None:
    model = runtime.eta = load_eta_model("learned")  # COOP_ETA_MODEL=learned
    assert isinstance(model, LearnedEtaModel)
    before = model.seconds(TIMES_SQUARE, UNION_SQUARE)
    now = datetime.now(UTC)
    for k in range(30):
        requested = now - timedelta(minutes=20, seconds=k)
        predicted = model.raw_seconds_at(TIMES_SQUARE, UNION_SQUARE, requested.timestamp())
        trip = Trip(
            id=f"trp_eta{k}",
            pickup=point_value(TIMES_SQUARE.lat, TIMES_SQUARE.lng),
            dropoff=point_value(UNION_SQUARE.lat, UNION_SQUARE.lng),
            requested_at=requested,
            started_at=requested + timedelta(minutes=3),
            completed_at=requested + timedelta(minutes=3, seconds=1.5 * predicted),
        )
        await eta_feedback.record(runtime, trip)
    # A trip that did not really drive (meter stopped at once) is no evidence.
    await eta_feedback.record(
        runtime,
        Trip(
            id="trp_eta_x",
            pickup=point_value(TIMES_SQUARE.lat, TIMES_SQUARE.lng),
            dropoff=point_value(UNION_SQUARE.lat, UNION_SQUARE.lng),
            requested_at=now,
            started_at=now,
            completed_at=now + timedelta(seconds=5),
        ),
    )
    assert await eta_feedback.refresh(runtime) == 30
    after = model.seconds(TIMES_SQUARE, UNION_SQUARE)
    expected = math.exp(30 * math.log(1.5) / (30 + L.LIVE_PRIOR_TRIPS))
    assert after == pytest.approx(before * expected, rel=0.02)
    model.correction.replace_with(LiveCorrection())


def test_the_shipped_model_is_the_committed_file() -> None:
    assert data_path(DataFile.ETA_MODEL).parent == ROOT / "data"
    assert data_path(DataFile.ETA_MODEL).stat().st_size < 5_000_000
