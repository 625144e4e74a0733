"""How wrong is each ETA model against real trips, and what does a batch of legs cost?

The truth is the observed door-to-door duration of real NYC yellow-cab trips
(``data/nyc_taxi_trips_2016-01_2016-06.csv.gz``; NYC TLC trip records, via Kaggle's NYC
Taxi Trip Duration competition). The learned model was fitted on January-April; every
figure here is on May-June, which no model saw. The baseline is one constant
straight-line speed, chosen on January-April in this same run.

Printed, for each model: median and p90 absolute percentage error (|predicted - real| /
real), on every held-out trip and on the trips inside the Midtown road extract (where
the road model routes). The learned model is scored twice: alone, and with its live
correction replayed in time order (each prediction sees only trips that had finished).
Then the time to estimate 16,000 pickup legs (2,000 requests × 8 drivers) in one call.

Run: ``.venv/bin/python benchmarks/eval_eta.py`` (about a minute; the road model builds
its cache on first use).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the packages importable
    sys.path.insert(0, str(ROOT))

from core.data import DataFile, data_path  # noqa: E402
from geo.eta import DEFAULT_MODEL, EtaModel, load_eta_model  # noqa: E402
from geo.eta import learned as learned_eta  # noqa: E402
from geo.eta.calibrated import CalibratedEtaModel, fixed_hour  # noqa: E402
from geo.point import LatLng  # noqa: E402

TRAIN_MONTHS = (1, 2, 3, 4)
LEGS = 16_000
RUNS = 7
# The Midtown OSM extract's bounds (data/README.md).
MIDTOWN = (40.7360, 40.7590, -74.0140, -73.9630)

Floats = npt.NDArray[np.float64]


def ape(predicted: Floats, actual: Floats) -> str:
    e = np.abs(predicted - actual) / actual
    return f"median {np.median(e):6.1%}   p90 {np.quantile(e, 0.9):6.1%}"


def per_trip(model: EtaModel, trips: learned_eta.ObservedTrips) -> Floats:
    """A per-pair model's seconds, each at its trip's own hour of the week."""
    out = np.empty(len(trips))
    for i in range(len(trips)):
        o = LatLng(float(trips.pickup_lat[i]), float(trips.pickup_lng[i]))
        d = LatLng(float(trips.dropoff_lat[i]), float(trips.dropoff_lng[i]))
        how = int(trips.hour_of_week[i])
        at = getattr(model, "seconds_at", None)
        out[i] = at(o, d, how) if at is not None else model.seconds(o, d)
    return out


def main() -> int:
    trips = learned_eta.read_observed_trips(data_path(DataFile.TRIPS))
    train = trips.take(np.isin(trips.month, TRAIN_MONTHS))
    test = trips.take(~np.isin(trips.month, TRAIN_MONTHS))
    inside = (
        (test.pickup_lat >= MIDTOWN[0])
        & (test.pickup_lat <= MIDTOWN[1])
        & (test.pickup_lng >= MIDTOWN[2])
        & (test.pickup_lng <= MIDTOWN[3])
        & (test.dropoff_lat >= MIDTOWN[0])
        & (test.dropoff_lat <= MIDTOWN[1])
        & (test.dropoff_lng >= MIDTOWN[2])
        & (test.dropoff_lng <= MIDTOWN[3])
    )
    print(
        f"real trips: {len(train):,} to fit (Jan-Apr 2016), {len(test):,} held out "
        f"(May-Jun), {int(inside.sum()):,} of them inside the Midtown road extract"
    )
    baseline_mps = learned_eta.baseline_speed_mps(train)
    straight = learned_eta.haversine_many(
        test.pickup_lat, test.pickup_lng, test.dropoff_lat, test.dropoff_lng
    )
    model = learned_eta.LearnedEta.load()
    rows: list[tuple[str, Floats]] = [
        (f"baseline: constant {baseline_mps:.2f} m/s", np.maximum(straight / baseline_mps, 1)),
        ("straight (1.35 detour, 6 m/s)", per_trip(DEFAULT_MODEL, test)),
        ("calibrated (fitted to our road model)", per_trip(load_eta_model("calibrated"), test)),
        ("road (Midtown graph; calibrated elsewhere)", per_trip(load_eta_model("road"), test)),
        ("learned, alone", learned_eta.replay(model, test, live=False)),
        ("learned + live correction (the service)", learned_eta.replay(model, test)),
    ]
    print(f"\n{'model':45} {'all held-out trips':28} {'both ends in Midtown':28}")
    for name, predicted in rows:
        print(
            f"{name:45} {ape(predicted, test.duration_s):28} "
            f"{ape(predicted[inside], test.duration_s[inside]):28}"
        )

    # 16,000 pickup legs: drivers within a few km of 2,000 real pickups.
    rng = np.random.default_rng(7)
    pick = rng.choice(len(test), size=LEGS // 8, replace=False)
    pickups = [LatLng(float(test.pickup_lat[i]), float(test.pickup_lng[i])) for i in pick]
    destinations = [p for p in pickups for _ in range(8)]
    origins = [
        LatLng(p.lat + float(rng.normal(0, 0.01)), p.lng + float(rng.normal(0, 0.012)))
        for p in destinations
    ]
    learned = load_eta_model("learned")
    calibrated = CalibratedEtaModel.create(
        load_eta_model("calibrated").calibration,  # type: ignore[attr-defined]
        clock=fixed_hour(90),
    )
    print(f"\n{LEGS:,} pickup legs in one call, median of {RUNS} runs:")
    for name, eta in (("learned (seconds_many)", learned), ("calibrated (per pair)", calibrated)):
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            eta.seconds_many(origins, destinations)
            times.append(time.perf_counter() - started)
        print(f"  {name:28} {statistics.median(times) * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
