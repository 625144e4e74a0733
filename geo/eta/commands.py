"""``coopride eta fit`` and ``coopride eta evaluate``: the learned ETA model, fitted on
observed trips and scored against real durations it was not fitted on."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core import progress
from core.data import DataFile, data_dir
from geo.eta import learned

# The 2016 trips run January to June: fit on the first four months, hold out the last two.
TRAIN_MONTHS = (1, 2, 3, 4)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def fit(
    trips_path: Path, *, out: Path | None, months: tuple[int, ...], seed: int, quiet: bool
) -> int:
    with progress.bar(f"[eta] reading {trips_path.name}", total=None, enabled=not quiet):
        trips = learned.read_observed_trips(trips_path)
    train = trips.take(np.isin(trips.month, months))
    held_out = trips.take(~np.isin(trips.month, months))
    if len(train) == 0:
        print(f"coopride: {trips_path} has no trips in months {list(months)}", file=sys.stderr)
        return 2
    baseline = learned.baseline_speed_mps(train)
    with progress.bar(f"[eta] fitting on {len(train):,} trips", total=None, enabled=not quiet):
        model = _fit(train, trips_path, months=months, seed=seed, baseline=baseline)
    if len(held_out):
        # What a street model needs to be as wrong as the real world (docs/eta.md).
        residual = np.log(held_out.duration_s / model.predict_s(held_out.features()))
        model.meta["held_out"] = {
            "n": len(held_out),
            "log_residual_quantiles": {
                str(q): round(float(np.quantile(residual, q)), 4)
                for q in (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
            },
            "log_residual_std": round(float(np.std(residual)), 4),
        }
    target = out or data_dir() / DataFile.ETA_MODEL.value
    model.save(target)
    if not quiet:
        print(
            f"[eta] fitted on {len(train):,} trips (months {list(months)}), "
            f"baseline {baseline:.2f} m/s; wrote {target}",
            flush=True,
        )
    return 0


def _fit(
    train: learned.ObservedTrips,
    trips_path: Path,
    *,
    months: tuple[int, ...],
    seed: int,
    baseline: float,
) -> learned.LearnedEta:
    return learned.fit(
        train,
        seed=seed,
        meta={
            "source": trips_path.name,
            "months": list(months),
            "train_from": _iso(float(train.pickup_s[0])),
            "train_until": _iso(float(train.pickup_s[-1])),
            "baseline_speed_mps": baseline,
            "fitted_at": datetime.now(UTC).isoformat(),
        },
    )


def evaluate(trips_path: Path, *, model_path: Path | None, as_json: bool) -> int:
    """Scores the model on the file's trips outside its training window, replayed in
    time order with the live correction (only trips finished before each prediction)."""
    model = learned.LearnedEta.load(model_path)
    trips = learned.read_observed_trips(trips_path)
    meta = model.meta
    if meta.get("source") == trips_path.name:
        trips = trips.take(~np.isin(trips.month, meta["months"]))
    if len(trips) == 0:
        print(f"coopride: {trips_path} has no trips outside the model's training", file=sys.stderr)
        return 2
    result: dict[str, Any] = learned.evaluate(
        model, trips, baseline_mps=float(meta["baseline_speed_mps"])
    )
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        b = result["baseline"]
        print(
            f"[eta] {result['n']:,} held-out trips: median APE {result['median_ape']:.1%}, "
            f"p90 {result['p90_ape']:.1%}; constant {b['speed_mps']:.2f} m/s baseline: "
            f"median {b['median_ape']:.1%}, p90 {b['p90_ape']:.1%}",
            flush=True,
        )
    return 0
