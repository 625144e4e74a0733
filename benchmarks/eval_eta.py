"""How wrong are the ETA models, and what does a call cost? Prints figures.

Hold-out by time: the calibrated model is fitted on trips that start before
``HOLDOUT_FROM`` (1-23 April 2014) and scored on the last week (24-30 April), with the
same sampling as ``benchmarks/calibrate_eta.py`` (same seed, same pairs).

The reference is NOT observed trip durations: this checkout has none (the April 2014
pickups carry no drop-off or duration, and no installable package here ships NYC trips
with durations). It is the road-network model (``geo/roads/``): fastest routes over
the OpenStreetMap Midtown extract (© OpenStreetMap contributors, ODbL) at assumed
speeds and congestion. So the figures say how closely each model reproduces that
routing, not how close any of them is to a real drive; ``docs/eta.md`` says what
observed durations would change.

Run: ``.venv/bin/python benchmarks/eval_eta.py`` (about a minute; builds the road cache
on first use).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.calibrate_eta import (  # noqa: E402
    SEED,
    Pairs,
    Targets,
    covered,
    fit,
    load_pickups,
    parse_minute,
    road_targets,
)
from core.settings import Settings  # noqa: E402
from geo import cells, roads  # noqa: E402
from geo.eta import (  # noqa: E402
    DEFAULT_DETOUR_FACTOR,
    DEFAULT_MODEL,
    DEFAULT_SPEED_MPS,
    CalibratedEtaModel,
    EtaModel,
    RoadNetworkEtaModel,
    fixed_hour,
)
from geo.point import LatLng  # noqa: E402

Floats = npt.NDArray[np.float64]

HOLDOUT_FROM = "2014-04-24"
OUTSIDE_SAMPLE = 50_000
TIMING_PAIRS = 20_000
MAX_PICKUP_ETA_S: int = Settings.model_fields["max_pickup_eta_s"].default
RESOLUTION: int = Settings.model_fields["h3_resolution"].default


def _split(targets: Targets, until_minute: int) -> tuple[Targets, Targets]:
    def part(mask: npt.NDArray[np.bool_]) -> Targets:
        metres = None if targets.metres is None else targets.metres[mask]
        return Targets(targets.pairs.take(mask), targets.seconds[mask], metres)

    before = targets.pairs.minute < until_minute
    return part(before), part(~before)


def _points(pairs: Pairs) -> list[tuple[LatLng, LatLng, int]]:
    how = pairs.how.tolist()
    return [
        (LatLng(a, b), LatLng(c, d), h)
        for a, b, c, d, h in zip(
            pairs.o_lat.tolist(),
            pairs.o_lng.tolist(),
            pairs.d_lat.tolist(),
            pairs.d_lng.tolist(),
            how,
            strict=True,
        )
    ]


def _predict(model: EtaModel, pairs: Pairs) -> Floats:
    if isinstance(model, CalibratedEtaModel | RoadNetworkEtaModel):
        at = model.seconds_at
        return np.array([at(a, b, h) for a, b, h in _points(pairs)], dtype=np.float64)
    return np.array([model.seconds(a, b) for a, b, _ in _points(pairs)], dtype=np.float64)


def _ape(predicted: Floats, reference: Floats) -> Floats:
    out: Floats = np.abs(predicted - reference) / np.maximum(reference, 1.0) * 100.0
    return out


def _row(label: str, ape: Floats, bias: Floats | None = None) -> str:
    p50, p90 = np.percentile(ape, [50, 90])
    text = f"  {label:<44} median APE {p50:5.1f}%   p90 APE {p90:6.1f}%"
    if bias is not None:
        text += f"   median ratio {np.median(bias):.2f}"
    return text


def _us_per_call(
    call: Callable[[LatLng, LatLng], object], points: list[tuple[LatLng, LatLng, int]]
) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for a, b, _h in points:
            call(a, b)
        best = min(best, time.perf_counter() - started)
    return best / len(points) * 1e6


def main() -> int:
    print(__doc__.split("\n\n")[0])
    print(
        "Reference: road-network routing over OSM (© OpenStreetMap contributors) with "
        "ASSUMED speeds and congestion — not observed durations (none exist offline here)."
    )
    t0 = time.perf_counter()
    pickups = load_pickups()
    router = roads.RoadRouter.load()
    pairs, targets = road_targets(pickups, router, seed=SEED)
    until = parse_minute(HOLDOUT_FROM + " 00:00")
    train, test = _split(targets, until)
    straight_uncovered = (DEFAULT_DETOUR_FACTOR, DEFAULT_SPEED_MPS)
    model = CalibratedEtaModel.create(
        fit(train, meta={}, uncovered=straight_uncovered), clock=fixed_hour(0)
    )
    road = RoadNetworkEtaModel(router=router, fallback=model)
    print(
        f"\nTrips with both ends on the Midtown road graph: {len(train.pairs):,} fitted "
        f"(1-23 April), {len(test.pairs):,} held out (24-30 April); "
        f"setup {time.perf_counter() - t0:.0f} s"
    )

    # The reference is what the road model says: check on a sample that it is.
    every = np.arange(0, len(test.pairs), max(1, len(test.pairs) // 500))
    sample = test.pairs.take(every)
    assert np.array_equal(_predict(road, sample), test.seconds[every]), "reference != road model"

    print("\nHeld-out trips inside the Midtown extract, against the road-network reference:")
    straight_pred = _predict(DEFAULT_MODEL, test.pairs)
    calibrated_pred = _predict(model, test.pairs)
    print(
        _row(
            "(a) straight line (DEFAULT_MODEL)",
            _ape(straight_pred, test.seconds),
            straight_pred / test.seconds,
        )
    )
    print(
        _row(
            "(b) calibrated, fitted 1-23 April",
            _ape(calibrated_pred, test.seconds),
            calibrated_pred / test.seconds,
        )
    )
    print(_row("    (road model itself: the reference)", np.zeros(1)))
    in_sample = _predict(model, train.pairs)
    print(_row("    calibrated on its own fitting trips", _ape(in_sample, train.seconds)))
    straight_m = test.pairs.straight_m
    for low, high in ((0, 1000), (1000, 2000), (2000, 10**9)):
        band = (straight_m >= low) & (straight_m < high)
        label = f"{low / 1000:g}-{high / 1000:g} km" if high < 10**9 else f"> {low / 1000:g} km"
        print(
            _row(
                f"  {label} ({band.sum():,}): straight",
                _ape(straight_pred[band], test.seconds[band]),
            )
        )
        print(_row(f"  {label}: calibrated", _ape(calibrated_pred[band], test.seconds[band])))
    hours = test.pairs.how % 24
    peak = (hours >= 16) & (hours < 19) & (test.pairs.how < 120)
    night = (hours >= 1) & (hours < 5)
    for label, mask in (("weekday 16-19h", peak), ("01-05h", night)):
        print(
            _row(
                f"  {label} ({mask.sum():,}): straight",
                _ape(straight_pred[mask], test.seconds[mask]),
                straight_pred[mask] / test.seconds[mask],
            )
        )
        print(
            _row(
                f"  {label}: calibrated",
                _ape(calibrated_pred[mask], test.seconds[mask]),
                calibrated_pred[mask] / test.seconds[mask],
            )
        )

    # Outside the extract there is no reference at all.
    rng = np.random.default_rng(SEED + 1)
    outside_all = pairs.take((pairs.minute >= until) & ~covered(router, pairs))
    outside = outside_all.take(
        rng.choice(len(outside_all), size=min(OUTSIDE_SAMPLE, len(outside_all)), replace=False)
    )
    covered_by_fit = np.array([model.covers(a, b) for a, b, _ in _points(outside)])
    print(
        f"\nHeld-out trips with an end outside the extract: {len(outside_all):,} "
        f"({OUTSIDE_SAMPLE:,} sampled). No reference exists for them."
    )
    print(
        f"  {covered_by_fit.mean() * 100:.1f}% have both ends in the fitted districts "
        f"({', '.join(sorted(model.calibration.coverage))}: Manhattan around Midtown);"
        " the rest use the straight-line model, as today."
    )
    holdout_model = CalibratedEtaModel.create(
        fit(test, meta={}, uncovered=straight_uncovered), clock=fixed_hour(0)
    )
    inside_fit = outside.take(covered_by_fit)
    a = _predict(model, inside_fit)
    b = _predict(holdout_model, inside_fit)
    print("  Self-consistency (stability of the fit, not accuracy), trips in fitted districts:")
    print(_row("fit 1-23 April vs fit 24-30 April", _ape(a, b), a / b))
    global_model = CalibratedEtaModel.create(fit(train, meta={}), clock=fixed_hour(0))
    g = _predict(global_model, outside)
    s = _predict(DEFAULT_MODEL, outside)
    print(
        "  If Midtown's fit were used citywide (--uncovered fitted), against today's straight line:"
    )
    print(_row("fitted global vs straight line", _ape(g, s), g / s))

    # Cost per call.
    inside_points = _points(test.pairs)[:TIMING_PAIRS]
    outside_points = _points(outside)[:TIMING_PAIRS]
    live = CalibratedEtaModel.create(model.calibration)  # wall clock, as in service
    live_road = RoadNetworkEtaModel(router=router, fallback=live)
    print("\nCost of one seconds() call (µs, best of 5 over 20,000 real pairs):")
    for label, call, points in (
        ("straight line", DEFAULT_MODEL.seconds, inside_points),
        ("calibrated, Midtown pair", live.seconds, inside_points),
        ("calibrated, pair outside the fit", live.seconds, outside_points),
        ("road, pair on the graph", live_road.seconds, inside_points),
        ("road, pair off the graph (falls back)", live_road.seconds, outside_points),
    ):
        print(f"  {label:<40} {_us_per_call(call, points):6.2f} µs")
    leg_us = _us_per_call(live_road.leg, inside_points[:2000])
    print(f"  {'road leg(), pair on the graph':<40} {leg_us:6.2f} µs")
    per_batch = 16_000
    print(
        f"  At {per_batch:,} calls per 2 s batch: calibrated ≈ "
        f"{_us_per_call(live.seconds, inside_points) * per_batch / 1000:.0f} ms, road ≈ "
        f"{_us_per_call(live_road.seconds, inside_points) * per_batch / 1000:.0f} ms"
    )

    print(f"\nCandidate search radius reach_m({MAX_PICKUP_ETA_S} s) and H3 res {RESOLUTION} rings:")
    for label, eta in (
        ("straight line", DEFAULT_MODEL),
        (
            "calibrated, Tue 18:00",
            CalibratedEtaModel.create(model.calibration, clock=fixed_hour(42)),
        ),
        (
            "calibrated, Tue 04:00",
            CalibratedEtaModel.create(model.calibration, clock=fixed_hour(28)),
        ),
        (
            "road, Tue 18:00",
            RoadNetworkEtaModel(
                router=router,
                fallback=CalibratedEtaModel.create(model.calibration, clock=fixed_hour(42)),
            ),
        ),
    ):
        reach = eta.reach_m(MAX_PICKUP_ETA_S)
        print(f"  {label:<40} {reach:8,.0f} m   {cells.rings_to_cover(reach, RESOLUTION)} rings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
